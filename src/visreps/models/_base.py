"""The object every model source returns, the contract of its backend, and the shared preprocessing.

The typed contract between the model sources and the engines (capture, extraction, text):

* :class:`LoadedModel`: the network, its preprocessing and weights record, and typed fields for
  what some models need beyond that: ``adapter`` (a non-torch :class:`Backend`, e.g. Keras),
  ``prefix_tokens`` and ``seq_first`` (how token outputs of transformers are laid out), ``text``
  (a :class:`TextTower` for models with a text encoder) and ``preprocessing_extra`` (recorded in
  the metadata beside the preprocessing).
* :class:`Backend`: how the engines drive a model of one framework: its layer names, a blank
  input, a capture of requested layer outputs, the layer table, the image transform. A non-torch
  source sets ``LoadedModel.adapter`` to one. Torch modules need none: their
  :class:`~visreps.models._base.TorchBackend` answers the same questions except ``capture``
  (a :class:`SupportsLayers`); :func:`visreps.capture.make_capture` builds the torch capture from
  the typed fields (forward hooks live in :mod:`visreps.capture`, above the models, so the models
  never import it).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ._layers import LayerInfo

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """Resize → centre crop → to tensor → normalise, the pipeline every image goes through.

    Args:
        resize: length of the shorter image side after resizing (``None``: no resize).
        crop: side of the square centre crop (``None``: no crop).
        mean, std: per-channel normalisation applied to pixel values in [0, 1].
        interpolation: ``bilinear``, ``bicubic`` or ``nearest`` (antialiased when downsizing).
    """

    resize: int | None = 256
    crop: int | None = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"

    def to_dict(self) -> dict[str, Any]:
        return {
            "resize": self.resize,
            "crop": self.crop,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
        }

    def input_size(self) -> tuple[int, int, int]:
        side = self.crop or self.resize or 224
        return (3, side, side)

    def build(self) -> Callable[[Any], Any]:
        """A torchvision transform taking a PIL RGB image to a float tensor (3, H, W)."""
        from torchvision import transforms as T

        modes = {
            "bilinear": T.InterpolationMode.BILINEAR,
            "bicubic": T.InterpolationMode.BICUBIC,
            "nearest": T.InterpolationMode.NEAREST,
        }
        if self.interpolation not in modes:
            from ..errors import VisrepsError

            raise VisrepsError(f"interpolation {self.interpolation!r} is not supported; use one of {sorted(modes)}")
        steps: list[Any] = []
        if self.resize:
            steps.append(T.Resize(self.resize, interpolation=modes[self.interpolation], antialias=True))
        if self.crop:
            steps.append(T.CenterCrop(self.crop))
        steps += [T.ToTensor(), T.Normalize(self.mean, self.std)]
        return T.Compose(steps)

    @classmethod
    def from_timm_config(cls, cfg: dict[str, Any]) -> Preprocessing:
        """Translate a timm data config (``resolve_data_config``) into a Preprocessing."""
        size = int(cfg["input_size"][-1])
        crop_pct = float(cfg.get("crop_pct") or 0.875)
        interp = cfg.get("interpolation", "bilinear")
        if interp not in ("bilinear", "bicubic", "nearest"):
            interp = "bicubic"
        return cls(
            resize=int(math.floor(size / crop_pct)),
            crop=size,
            mean=tuple(float(m) for m in cfg["mean"]),
            std=tuple(float(s) for s in cfg["std"]),
            interpolation=interp,
        )


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- the backend contract


class CaptureSpec(Protocol):
    """What a capture reads of a requested layer (:class:`visreps.capture.LayerSpec` has it)."""

    module: str  # the layer's name
    pool: str  # a mode of :data:`visreps.pooling.POOL_MODES`
    call: int | None  # a single call (time step) asked for, else None
    keys: tuple[str, ...]  # output array names, one per kept call
    calls: int  # how often the layer runs per forward pass


@runtime_checkable
class BackendCapture(Protocol):
    """The interface of :class:`visreps.capture.Capture`: hooks on the requested layers for one pass.

    A context manager (hooks are in place inside ``with``); ``run(x)`` runs one forward pass and
    returns ``{key: array (B, ...)}``; ``counts`` is how often each requested layer ran in it;
    ``result`` is the model's own output (``None`` when the pass stopped early).
    """

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: Any) -> Any: ...

    def run(self, x: Any) -> dict[str, Any]: ...

    @property
    def counts(self) -> dict[str, int]: ...

    @property
    def result(self) -> Any: ...


@runtime_checkable
class SupportsLayers(Protocol):
    """What every backend answers, torch's included: the part of :class:`Backend` without ``capture``.

    Attributes:
        kind: the framework, ``"torch"`` or ``"keras"`` (what ``LoadedModel.backend`` records).
    """

    @property
    def kind(self) -> str: ...

    def layer_names(self) -> list[str]:
        """Every addressable layer name, in model order."""
        ...

    def dummy_input(self, n: int = 1) -> Any:
        """A blank batch of ``n`` inputs as the model takes them (for dry runs)."""
        ...

    def describe_layers(self) -> list[LayerInfo]:
        """Every layer with its type and output shape for one image."""
        ...

    def build_transform(self, preprocessing: Preprocessing) -> Callable[[Any], Any]:
        """PIL RGB image → model input for one image, following ``preprocessing``."""
        ...


@runtime_checkable
class Backend(SupportsLayers, Protocol):
    """How the extraction engine drives a model of a non-torch framework (``LoadedModel.adapter``).

    Everything of :class:`SupportsLayers`, and ``capture``: the object that collects the requested
    layer outputs of one forward pass. A torch model has no adapter: its
    :class:`~visreps.models._base.TorchBackend` is a :class:`SupportsLayers`, and
    :func:`visreps.capture.make_capture` hooks the module itself.
    """

    def capture(
        self, specs: Sequence[CaptureSpec], *, expected: dict[str, int] | None, stop_early: bool
    ) -> BackendCapture:
        """The capture of ``specs`` (``expected``: calls per layer per pass; ``None`` on the dry run)."""
        ...


@dataclass
class TextTower:
    """The text encoder of a model that has one (CLIP, OpenCLIP).

    Attributes:
        clip_model: the whole open_clip model (its ``encode_text`` is the text embedding).
        tokenizer: texts → token ids (n, context_length), e.g. a :class:`~visreps.models.clip.LazyTokenizer`.
        text_pool: ``(pool_type, eos_id)`` of the token the model's text embedding is read from
            when it picks one (``argmax``/``eos``/``first``/``last``), ``None`` otherwise.
    """

    clip_model: Any
    tokenizer: Callable[[Sequence[str]], Any]
    text_pool: tuple[str, int | None] | None = None


@dataclass
class LoadedModel:
    """A network ready for extraction.

    Attributes:
        module: the ``torch.nn.Module`` in eval mode on ``device`` (a ``keras.Model`` with a Keras adapter).
        preprocessing: how images become input tensors (see :class:`Preprocessing`).
        model_id: ``source:name`` (``"custom"`` for a user's module).
        weights: what the parameters are: ``{"kind": "pretrained"|"random"|"file"|"user", ...}``
            with the weight tag, file and sha256, or seed.
        device: the ``torch.device`` the module lives on.
        backend: the framework, ``"torch"`` or the adapter's ``kind`` (recorded in the metadata).
        adapter: the :class:`Backend` of a non-torch model (``None``: a torch module, driven by
            :class:`~visreps.models._base.TorchBackend` and forward hooks).
        prefix_tokens: class/register tokens before the patch tokens of a transformer's outputs
            (``cls``/``patch_mean`` pooling); ``None``: the module's ``num_prefix_tokens``, else 1.
        seq_first: names of modules whose outputs are sequence-first (tokens, batch, dim).
        text: the text encoder of a CLIP/OpenCLIP model (``None``: the model has none).
        preprocessing_extra: entries recorded in the metadata beside the preprocessing (e.g. the
            Keras ``preprocess_input`` applied to each batch).
        class_names: the names of the model's output classes, in output order (``None``: ImageNet-1k;
            ``()``: not known, so top-k predictions are refused).
    """

    module: Any
    preprocessing: Preprocessing
    model_id: str
    weights: dict[str, Any]
    device: Any = None
    backend: str = "torch"
    adapter: Backend | None = None
    prefix_tokens: int | None = None
    seq_first: frozenset[str] = frozenset()
    text: TextTower | None = None
    preprocessing_extra: dict[str, Any] = field(default_factory=dict)
    class_names: tuple[str, ...] | None = None
    _transform: Callable[[Any], Any] | None = field(default=None, repr=False)

    @classmethod
    def on_device(cls, module: Any, device: Any, **fields: Any) -> LoadedModel:
        """The torch ``module`` moved to ``device`` (``auto``, ``cpu``, ``cuda:N``..., see
        :func:`visreps.device.resolve_device`) in eval mode, with the other ``fields`` of a :class:`LoadedModel`."""
        from ..device import resolve_device

        dev = resolve_device(device)
        return cls(module=module.to(dev).eval(), device=dev, **fields)

    def __post_init__(self) -> None:
        self.seq_first = frozenset(self.seq_first)
        if self.adapter is not None:
            self.backend = self.adapter.kind

    @property
    def driver(self) -> SupportsLayers:
        """The backend answering for this model: the adapter, else a :class:`~visreps.models._base.TorchBackend`."""
        if self.adapter is not None:
            return self.adapter
        return TorchBackend(self)

    @property
    def token_prefix(self) -> int:
        """``prefix_tokens`` resolved: the field, else the module's ``num_prefix_tokens``, else 1."""
        if self.prefix_tokens is not None:
            return int(self.prefix_tokens)
        return int(getattr(self.module, "num_prefix_tokens", 1))

    @property
    def transform(self) -> Callable[[Any], Any]:
        """PIL RGB image → model input for one image (the backend's transform of ``preprocessing``)."""
        if self._transform is None:
            self._transform = self.driver.build_transform(self.preprocessing)
        return self._transform

    def with_preprocessing(self, preprocessing: Preprocessing) -> LoadedModel:
        """Use ``preprocessing`` from now on (the transform is rebuilt); returns ``self``."""
        self.preprocessing = preprocessing
        self._transform = None
        return self

    def layer_names(self) -> list[str]:
        """Every addressable layer name (dotted, as ``named_modules`` gives them for torch)."""
        return list(self.driver.layer_names())

    def dummy_input(self, n: int = 1) -> Any:
        """A blank batch of ``n`` inputs as the model takes them (for dry runs)."""
        return self.driver.dummy_input(n)

    def layers(self) -> list[LayerInfo]:
        """Every layer with its type and output shape for one image (from a dry run)."""
        return self.driver.describe_layers()

    def print_layers(self, file: Any = None) -> None:
        """Print :meth:`layers` as an indented table."""
        from ._layers import format_layer_tree

        print(format_layer_tree(self.layers()), file=file)


# A torch LoadedModel has no adapter; its driver is a TorchBackend over it. It answers everything a Backend does
# except ``capture``: the forward hooks are visreps.capture.Capture, which sits above the models in the import
# layers, so visreps.capture.make_capture builds it from the model's typed fields.
class TorchBackend:
    """Layer names, blank inputs, the layer table and the image transform of a torch model.

    Args:
        lm: the model; read at each call, so a later ``with_preprocessing`` is seen (and a
            subclass's own ``dummy_input``, e.g. the token ids of a CLIP text tower, is used).
    """

    kind = "torch"

    def __init__(self, lm: LoadedModel) -> None:
        self.lm = lm

    def layer_names(self) -> list[str]:
        """Every named module (dotted, as ``named_modules`` gives them), the root excluded."""
        return [n for n, _ in self.lm.module.named_modules() if n]

    def dummy_input(self, n: int = 1) -> Any:
        """Zeros of shape (n, *preprocessing.input_size()) on the model's device."""
        import torch

        return torch.zeros((n, *self.lm.preprocessing.input_size()), device=self.lm.device)

    def describe_layers(self) -> list[LayerInfo]:
        """Every named module with its type and output shape for one blank input (one dry run)."""
        from ._layers import describe_module

        return describe_module(self.lm.module, self.lm.dummy_input())

    def build_transform(self, preprocessing: Preprocessing) -> Callable[[Any], Any]:
        """The torchvision transform of ``preprocessing`` (PIL RGB image → float tensor (3, H, W))."""
        return preprocessing.build()
