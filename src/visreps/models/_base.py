"""The object every model source returns, and the preprocessing shared by the sources."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

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

    def build(self) -> Callable:
        """A torchvision transform taking a PIL RGB image to a float tensor (3, H, W)."""
        from torchvision import transforms as T

        modes = {
            "bilinear": T.InterpolationMode.BILINEAR,
            "bicubic": T.InterpolationMode.BICUBIC,
            "nearest": T.InterpolationMode.NEAREST,
        }
        if self.interpolation not in modes:
            from ..errors import VisrepsError

            raise VisrepsError(
                f"interpolation {self.interpolation!r} is not supported; use one of {sorted(modes)}"
            )
        steps: list = []
        if self.resize:
            steps.append(T.Resize(self.resize, interpolation=modes[self.interpolation], antialias=True))
        if self.crop:
            steps.append(T.CenterCrop(self.crop))
        steps += [T.ToTensor(), T.Normalize(self.mean, self.std)]
        return T.Compose(steps)

    @classmethod
    def from_timm_config(cls, cfg: dict) -> "Preprocessing":
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


@dataclass
class LoadedModel:
    """A network ready for extraction.

    Attributes:
        module: the ``torch.nn.Module`` in eval mode on ``device``.
        preprocessing: how images become input tensors (see :class:`Preprocessing`).
        model_id: ``source:name`` (``"custom"`` for a user's module).
        weights: what the parameters are: ``{"kind": "pretrained"|"random"|"file"|"user", ...}``
            with the weight tag, file and sha256, or seed.
        device: the ``torch.device`` the module lives on.
    """

    module: Any
    preprocessing: Preprocessing
    model_id: str
    weights: dict
    device: Any = None
    backend: str = "torch"
    extra: dict = field(default_factory=dict)
    _transform: Callable | None = field(default=None, repr=False)

    @property
    def transform(self) -> Callable:
        """PIL RGB image → model input for one image (an adapter may supply its own)."""
        if self._transform is None:
            adapter = self.extra.get("adapter")
            build = getattr(adapter, "build_transform", None)
            self._transform = build(self.preprocessing) if build else self.preprocessing.build()
        return self._transform

    def with_preprocessing(self, preprocessing: Preprocessing) -> "LoadedModel":
        self.preprocessing = preprocessing
        self._transform = None
        return self

    def layer_names(self) -> list[str]:
        """Every addressable module name (dotted, as ``named_modules`` gives them)."""
        adapter = self.extra.get("adapter")
        if adapter is not None:
            return list(adapter.layer_names())
        return [n for n, _ in self.module.named_modules() if n]

    def dummy_input(self, n: int = 1):
        """A blank batch of ``n`` inputs as the model takes them (for dry runs)."""
        adapter = self.extra.get("adapter")
        if adapter is not None:
            return adapter.dummy_input(n)
        import torch

        return torch.zeros((n, *self.preprocessing.input_size()), device=self.device)

    def layers(self) -> list:
        """Every module with its type and output shape for one image (from a dry run)."""
        from ._layers import describe_layers

        return describe_layers(self)

    def print_layers(self, file=None) -> None:
        from ._layers import format_layer_tree

        print(format_layer_tree(self.layers()), file=file)
