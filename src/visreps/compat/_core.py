"""What :mod:`visreps.compat.vision` and :mod:`visreps.compat.model_class` both need.

Model names, the model behind what a script passes, the module prompt (:func:`show_model`), the
image loader (:class:`ImageLoader`) and the extraction itself (:func:`extract_features`). Both
modules import this one; it imports neither, so there is no import cycle.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ImageError, LayerNotFoundError, VisrepsError, closest_hint
from . import deprecated

if TYPE_CHECKING:
    from ..models import LoadedModel

#: the feature-map ensembles of the README's note 4
ENSEMBLES = ("conv_ensemble", "maxpool_ensemble")
#: weights of the second-to-last and last layer of an ensemble (as in THINGSvision 2021)
ENSEMBLE_WEIGHTS = (3.0, 5.0)


# --------------------------------------------------------------------------- models


def model_id(model_name: str, backend: str = "pt") -> str:
    """The visreps model id of a THINGSvision model name.

    ``alexnet``, ``vgg16_bn``, ``resnet50`` ... → ``torchvision:<name>``; ``cornet-s`` (also
    ``cornet_s``, ``-z``, ``-r``, ``-rt``) → ``cornet:s``; ``clip-ViT`` → ``clip:ViT-B-32``;
    ``clip-RN`` → ``clip:RN50`` (``clip-<arch>`` → ``clip:<arch>`` for other CLIP architectures);
    any name with ``backend='tf'`` → ``keras:<name>`` (``VGG16``, ``ResNet50`` ...). A name that
    already is a visreps id (``timm:resnet18``) is returned unchanged.
    """
    if not isinstance(model_name, str) or not model_name.strip():
        raise VisrepsError(f"model_name must be a name such as 'alexnet', 'cornet-s' or 'clip-ViT', got {model_name!r}")
    name = model_name.strip()
    if backend not in ("pt", "tf"):
        raise VisrepsError(f"backend {backend!r} is not valid; use 'pt' (PyTorch) or 'tf' (TensorFlow/Keras)")
    if ":" in name:
        return name
    if backend == "tf":
        return f"keras:{name}"
    if re.match(r"^clip", name, flags=re.IGNORECASE):
        rest = re.sub(r"^clip[-_]?", "", name, flags=re.IGNORECASE)
        if rest.lower() in ("", "vit"):
            return "clip:ViT-B-32" if rest else "clip:RN50"
        if rest.lower() in ("rn", "resnet"):
            return "clip:RN50"
        return f"clip:{rest}"
    m = re.fullmatch(r"cornet[-_ ]?(z|r|rt|s)", name, flags=re.IGNORECASE)
    if m:
        return f"cornet:{m.group(1).lower()}"
    return f"torchvision:{name}"


def loaded(model: Any, device: Any = None) -> LoadedModel:
    """The :class:`~visreps.models.LoadedModel` behind what a script passes as ``model``.

    A :class:`visreps.model_class.Model` (anything carrying its ``LoadedModel`` as ``.lm``), a
    ``LoadedModel``, or a ``torch.nn.Module`` (loaded where it is unless ``device`` is given).
    """
    from ..models import LoadedModel, load_model

    inner = getattr(model, "lm", None)
    if isinstance(inner, LoadedModel):
        return inner
    if isinstance(model, LoadedModel):
        return model
    if device is None:  # keep a user's module where it is
        first = next(iter(model.parameters()), None) if callable(getattr(model, "parameters", None)) else None
        device = first.device if first is not None else "cpu"
    try:
        return load_model(model, device=device)
    except VisrepsError as e:
        raise VisrepsError(
            f"model must be what vision.load_model or Model(...) returns (or a torch.nn.Module), got "
            f"{type(model).__name__}: {e}"
        ) from e


def is_clip(lm: LoadedModel) -> bool:
    """Whether ``lm`` is a CLIP model (it has a text tower)."""
    return lm.text is not None


def architecture(lm: LoadedModel, model_name: str = "") -> str:
    """What the original printed for a model: the module tree (CLIP: the image tower's modules)."""
    if lm.backend == "keras":
        lines: list[str] = []
        lm.module.summary(print_fn=lambda s, *a, **k: lines.append(s))
        return "\n".join(lines)
    if is_clip(lm) or str(model_name).lower().startswith("clip"):
        names = [n for n in lm.layer_names() if n.startswith("visual.")]
        return "\n".join(names + ["visual    (the image embedding: what encode_image returns)"])
    return str(lm.module)


@deprecated(new="visreps.load_model(...).print_layers() and extract(..., layers=[...])")
def show_model(model: Any, model_name: str) -> str:
    """Print the architecture and ask on stdin which module to extract; returns its name.

    Deprecated: use ``visreps.load_model(...).print_layers()`` (or ``visreps layers MODEL``) and
    pass the name to ``visreps.extract(..., layers=[name])``.

    An answer that is not a module of the model (nor ``conv_ensemble``/``maxpool_ensemble``) is
    refused with the closest valid names, and the question is asked again. Works with piped
    stdin (``echo features.10 | python script.py``); quotes around the answer are ignored.

    Raises:
        VisrepsError: stdin ended before a valid module name was given.
    """
    lm = loaded(model)
    print(architecture(lm, model_name))
    names = list(lm.layer_names())
    valid = set(names) | ({"visual"} if is_clip(lm) else set())
    if lm.backend == "torch":
        valid |= set(ENSEMBLES)
    print("\nEnter part of the model for which you would like to extract features:\n", flush=True)
    while True:
        try:
            answer = input()
        except EOFError:
            raise VisrepsError(
                f"no module name given for {model_name} (stdin ended); type one of the names printed above, "
                "or pass module_name directly"
            ) from None
        answer = answer.strip().strip("'\"").strip()
        if answer in valid:
            print()
            return answer
        hint = closest_hint(answer, sorted(valid)) if answer else ""
        print(f"{answer!r} is not a module of {model_name}{hint}. Enter one of the names printed above:", flush=True)


# --------------------------------------------------------------------------- data


class ImageLoader:
    """What :func:`~visreps.vision.load_dl` returns: the images, their order, targets and transform.

    Iterating gives ``(X, y)`` mini-batches as the original PyTorch loader did (``X``: the
    transformed images stacked; ``y``: targets of shape ``(B, 1)``), every image included (the
    last batch may be smaller). :func:`extract_features` does not iterate it: it hands
    ``root``, ``file_names`` and ``transform`` to visreps's extraction engine.

    Attributes:
        root: the image folder.
        out_path: where ``file_names.txt`` was written.
        batch_size: images per mini-batch.
        transform: the image transform (``transforms`` of :func:`~visreps.vision.load_dl`).
        file_names: image paths relative to ``root`` (POSIX), in extraction order.
        targets: ``int64`` array, one per image (see :func:`~visreps.vision.load_dl`).
        classes: class folder names, index = target (empty for a flat folder).
        backend: ``pt`` or ``tf``.
    """

    def __init__(
        self,
        root: str | Path,
        out_path: str | Path,
        batch_size: int,
        transform: Callable,
        items: Sequence[Any],
        targets: np.ndarray,
        classes: Sequence[str],
        backend: str,
    ) -> None:
        self.root = Path(root).expanduser()
        self.out_path = Path(out_path).expanduser()
        self.batch_size = batch_size
        self.transform = transform
        self.items = list(items)
        self.targets = targets
        self.classes = list(classes)
        self.backend = backend

    @property
    def file_names(self) -> list[str]:
        return [it.path for it in self.items]

    @property
    def idx_to_cls(self) -> dict[int, str]:
        return dict(enumerate(self.classes))

    @property
    def cls_to_idx(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}

    @property
    def dataset(self) -> Any:
        from ..data import ImageDataset

        return ImageDataset(self.root, self.items, self.transform)

    def __len__(self) -> int:
        return -(-len(self.items) // self.batch_size)

    def __iter__(self) -> Iterator:
        import torch

        from ..data import BAD_IMAGE_HINT, make_loader

        loader = make_loader(self.dataset, batch_size=self.batch_size, num_workers=0)
        for idx, x, bad, _digests in loader:
            if bad:
                raise ImageError(f"{bad[0][1]}; {BAD_IMAGE_HINT}")
            y = torch.as_tensor(self.targets[idx]).reshape(-1, 1)
            yield x, y

    def __repr__(self) -> str:
        return f"ImageLoader({len(self.items)} images from {str(self.root)!r}, batch_size={self.batch_size})"


# --------------------------------------------------------------------------- extraction


def _model_for(lm: LoadedModel, loader: ImageLoader) -> LoadedModel:
    """``lm`` running with the loader's transform (a shallow copy when it differs from the model's own)."""
    from ..data import load_image
    from ..models import Preprocessing

    t = loader.transform
    if t is None or t is lm.transform:
        return lm
    prep = getattr(t, "visreps_preprocessing", None)
    if prep is None:  # a transform built by the script: take the input size from the first image
        x = t(load_image(loader.items[0].absolute(loader.root)))
        shape = tuple(int(s) for s in getattr(x, "shape", ()))
        base = lm.preprocessing

        @dataclasses.dataclass(frozen=True)
        class _Probed(Preprocessing):
            def input_size(self, _shape: tuple[int, ...] = shape) -> tuple[int, ...]:
                return _shape

        prep = _Probed(
            resize=None,
            crop=shape[-1] if shape else None,
            mean=base.mean,
            std=base.std,
            interpolation=base.interpolation,
        )
    return dataclasses.replace(lm, preprocessing=prep, _transform=t)


def _move(lm: LoadedModel, device: Any) -> None:
    if device is None or lm.backend != "torch":
        return
    from ..device import resolve_device

    dev = resolve_device(device)
    if dev != lm.device:
        lm.module.to(dev)
        lm.device = dev


def _probabilities(predictions: Any, n_classes: int = 1000) -> np.ndarray:
    """Full softmax rows back from the engine's top-1000 table (exact: the same float32 values)."""
    k = sum(1 for c in predictions.columns if str(c).startswith("class_"))
    idx = predictions[[f"class_{r}" for r in range(1, k + 1)]].to_numpy()
    p = predictions[[f"prob_{r}" for r in range(1, k + 1)]].to_numpy(dtype=np.float32)
    out = np.zeros((len(predictions), n_classes), dtype=np.float32)
    out[np.arange(len(predictions))[:, None], idx] = p
    return out


def run_in_memory(
    lm: LoadedModel,
    root: Any,
    order: list[str],
    layers: list[str],
    *,
    pool: str,
    batch_size: int,
    top_k: int | None = None,
    progress: bool = True,
) -> Any:
    """The features of the images ``order`` (relative to ``root``), in memory, as both compatibility layers extract
    them: visreps' engine (:func:`visreps.extraction.prepare`, :func:`~visreps.extraction.run`) keeping the last
    time step of recurrent layers; ``top_k``: the ImageNet predictions too."""
    from ..extraction import prepare, run

    job = prepare(lm, root, layers=layers, pool=pool, batch_size=batch_size, order=order, recurrent="last", top_k=top_k)
    return run(job, out=None, progress=progress)


def _engine(lm: LoadedModel, loader: ImageLoader, layers: list[str], pool: str, top_k: int | None) -> Any:
    return run_in_memory(
        lm, loader.root, loader.file_names, layers, pool=pool, batch_size=loader.batch_size, top_k=top_k
    )


def _ensemble(lm: LoadedModel, loader: ImageLoader, module_name: str, top_k: int | None) -> tuple[np.ndarray, Any]:
    from ..analysis import ensemble_features, feature_map_layers

    if lm.backend != "torch":
        raise VisrepsError(f"{module_name} is available for PyTorch models only, not {lm.model_id}")
    kind = "conv" if module_name == "conv_ensemble" else "maxpool"
    layers = feature_map_layers(lm.module, kinds=(kind,))
    if not layers:
        raise VisrepsError(f"{lm.model_id} has no {kind} modules for a {module_name}")
    res = _engine(lm, loader, layers, "max", top_k)
    alpha, beta = ENSEMBLE_WEIGHTS
    weighted = {k: np.asarray(res[k]) for k in layers}
    if len(layers) >= 2:
        weighted[layers[-2]] = weighted[layers[-2]] * np.float32(alpha)
    weighted[layers[-1]] = weighted[layers[-1]] * np.float32(beta)
    return ensemble_features(weighted, layers, scale="none"), res


@deprecated(new="visreps.extract(model, images, layers=[module_name], pool='flatten')")
def extract_features(
    model: Any,
    data_loader: ImageLoader,
    module_name: str,
    batch_size: int,
    flatten_acts: bool,
    device: Any = None,
    clip: bool = False,
    return_probabilities: bool = False,
) -> tuple[np.ndarray, ...]:
    """Activations of one module for every image of ``data_loader``: ``(features, targets[, probabilities])``.

    Deprecated: use ``visreps.extract(model, root, layers=[module_name], pool="flatten"|"none")``.

    Runs visreps's extraction engine (the code of :func:`visreps.extract`), so the arrays equal
    the modern API's for the same model, layer, images and transform.

    Args:
        model: from :func:`~visreps.vision.load_model` or ``Model(...)`` (or a ``torch.nn.Module``).
        data_loader: from :func:`~visreps.vision.load_dl`; its order and transform are used.
        module_name: a module name (``features.10``, ``decoder.flatten``, ``visual``); for CLIP,
            ``visual`` is the image embedding (visreps's ``embedding``). A module that runs several
            times per forward pass (CORnet's recurrent areas) gives its last time step, as in the
            original. ``conv_ensemble`` / ``maxpool_ensemble``: every ``Conv2d`` / ``MaxPool2d``
            module, each globally max-pooled per feature map (``(N, channels)``), the second-to-last
            layer multiplied by 3 and the last by 5 (the original's weights), concatenated in
            network order; :func:`visreps.analysis.ensemble_features` is the modern, scale-free
            alternative.
        batch_size: ignored; the loader's batch size is used (as in the original).
        flatten_acts: ``True``: one vector per image (``(N, C·H·W)``); ``False``: the module's
            output shape is kept (``(N, C, H, W)``).
        device: move the model to this device first (default: where it is).
        clip: ``True`` for CLIP models (kept for old scripts; visreps knows a CLIP model anyway).
        return_probabilities: also return the softmax of the model's final 1000 ImageNet logits,
            ``(N, 1000)`` float32 (not for CLIP models).

    Returns:
        ``features`` (float32), ``targets`` (int64, see :func:`~visreps.vision.load_dl`) and, with
        ``return_probabilities``, ``probabilities``.
    """
    if not isinstance(data_loader, ImageLoader):
        raise VisrepsError(
            "data_loader must come from vision.load_dl(...) (it carries the image order), "
            f"got {type(data_loader).__name__}"
        )
    lm = loaded(model, device)
    _move(lm, device)
    clip_model = is_clip(lm)
    if clip and not clip_model:
        raise VisrepsError(
            f"clip=True is for CLIP models (clip-ViT, clip-RN), but the model is {lm.model_id}; pass clip=False"
        )
    if return_probabilities and clip_model:
        raise VisrepsError(
            "class probabilities are not available for CLIP models (they have no ImageNet classifier); "
            "pass return_probabilities=False"
        )
    run_lm = _model_for(lm, data_loader)
    top_k = 1000 if return_probabilities else None
    if module_name in ENSEMBLES:
        features, res = _ensemble(run_lm, data_loader, module_name, top_k)
    else:
        layer = "embedding" if (clip_model and module_name == "visual") else module_name
        names = lm.layer_names()
        if layer not in names:
            hint = closest_hint(layer, names + list(ENSEMBLES))
            raise LayerNotFoundError(
                f"{lm.model_id} has no module {module_name!r}{hint} (vision.show_model prints them all)"
            )
        res = _engine(run_lm, data_loader, [layer], "flatten" if flatten_acts else "none", top_k)
        features = np.asarray(res[layer])
    targets = np.asarray(data_loader.targets)
    if len(features) != len(targets):  # pragma: no cover - the engine stops on unreadable images
        raise VisrepsError(f"{len(features)} feature rows for {len(targets)} images")
    if return_probabilities:
        return features, targets, _probabilities(res.predictions)
    return features, targets
