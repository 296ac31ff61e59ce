"""A Hugging Face image processor as visreps preprocessing (:class:`HFPreprocessing`), checked against the processor.

See :mod:`visreps.models.hf`: the processor is translated into resize, centre crop, rescale and normalise computed
as transformers' torchvision processors compute them, checked on probe images, and run itself where it cannot be
expressed (``resize_mode="processor"``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import VisrepsError
from ._base import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from ._hf_hub import _quiet, import_transformers

#: the largest per-pixel difference between visreps' transform and the processor accepted as exact
PIXEL_TOLERANCE = 1e-4


@dataclass(frozen=True)
class HFPreprocessing(Preprocessing):
    """A Hugging Face image processor as visreps preprocessing.

    Pipeline (exactly that of transformers' torchvision image processors): the PIL RGB image as a
    uint8 tensor; resize with antialiasing (``resize_mode="shortest"``: the shorter side to
    ``resize``, the longer to ``int(resize * long / short)``; ``"squash"``: both sides to ``resize``);
    centre crop to ``crop`` with offset ``int((H - crop) / 2)`` (zero padding if the image is smaller);
    then ``(x - mean / r) / (std / r)`` in float32 with ``r = rescale_factor`` (i.e. ``(x·r - mean) / std``).
    ``resize_mode="processor"`` runs the processor itself (``processor_config``), image by image;
    the other fields then only describe it.

    Args:
        resize_mode: ``shortest``, ``squash`` or ``processor``.
        rescale_factor: ``r`` above (``1/255`` for 8-bit images).
        interpolation: ``bilinear``, ``bicubic``, ``nearest-exact``, ``lanczos`` (torchvision's names).
        processor: the processor's class name (recorded).
        processor_config: its JSON (``resize_mode="processor"`` only).
        input_hw: the output height and width in ``processor`` mode.
    """

    resize_mode: str = "shortest"
    rescale_factor: float = 1 / 255
    processor: str = ""
    processor_config: str = ""
    input_hw: tuple[int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d.update(resize_mode=self.resize_mode, rescale_factor=self.rescale_factor, processor=self.processor)
        if self.resize_mode == "processor":
            d["processor_config"] = self.processor_config
            d["input_hw"] = list(self.input_hw or ())
        return d

    def input_size(self) -> tuple[int, int, int]:
        if self.resize_mode == "processor" and self.input_hw:
            return (3, int(self.input_hw[0]), int(self.input_hw[1]))
        if self.resize_mode == "squash" and not self.crop:
            return (3, self.resize or 224, self.resize or 224)
        return super().input_size()

    def build(self) -> Callable[[Any], Any]:
        if self.resize_mode == "processor":
            return ProcessorTransform(self.processor, self.processor_config)
        if self.resize_mode not in ("shortest", "squash"):
            raise VisrepsError(
                f"resize_mode {self.resize_mode!r} is not valid; use 'shortest', 'squash' or 'processor'"
            )
        return HFTransform(self)


class HFTransform:
    """PIL RGB image → float tensor (3, H, W), as :class:`HFPreprocessing` describes (picklable)."""

    def __init__(self, prep: HFPreprocessing) -> None:
        import torch
        from torchvision.transforms import InterpolationMode

        self.resize, self.crop, self.mode = prep.resize, prep.crop, prep.resize_mode
        try:
            self.interpolation = InterpolationMode(prep.interpolation)
        except ValueError:
            raise VisrepsError(
                f"interpolation {prep.interpolation!r} is not one of torchvision's "
                f"{[m.value for m in InterpolationMode]}"
            ) from None
        r = float(prep.rescale_factor)
        # transformers' fused rescale and normalise: mean and std scaled by 1/r in float32
        self.mean = torch.tensor(prep.mean) * (1.0 / r)
        self.std = torch.tensor(prep.std) * (1.0 / r)

    def size(self, h: int, w: int) -> tuple[int, int]:
        """The (height, width) after resizing an image of (h, w)."""
        s = int(self.resize or 0)
        if self.mode == "squash":
            return s, s
        if w <= h:
            return int(s * h / w), s
        return s, int(s * w / h)

    def __call__(self, img: Any) -> Any:
        import numpy as np
        import torch
        from torchvision.transforms.v2 import functional as F

        # (3, H, W) as a view of the (H, W, 3) pixels: the channels-last layout torch's uint8 antialiased
        # resize works in (3-4x faster than on a contiguous copy, the same bits)
        x = torch.from_numpy(np.array(img.convert("RGB") if img.mode != "RGB" else img)).permute(2, 0, 1)
        if self.resize:
            x = F.resize(x, list(self.size(*x.shape[-2:])), interpolation=self.interpolation, antialias=True)
        if self.crop:
            x = _center_crop(x, int(self.crop))
        x = x.to(torch.float32, memory_format=torch.contiguous_format)
        # (x - mean/r) / (std/r), as torchvision's normalize computes it for transformers
        return x.sub_(self.mean.view(-1, 1, 1)).div_(self.std.view(-1, 1, 1))


def _center_crop(x: Any, c: int) -> Any:
    """transformers' centre crop of (3, H, W) to (3, c, c): zero padding if smaller, offset ``int((H - c) / 2)``."""
    from torchvision.transforms.v2 import functional as F

    h, w = x.shape[-2:]
    if c > h or c > w:
        pad = [max(c - w, 0) // 2, max(c - h, 0) // 2, (max(c - w, 0) + 1) // 2, (max(c - h, 0) + 1) // 2]
        x = F.pad(x, pad, fill=0)
        h, w = x.shape[-2:]
    top, left = int((h - c) / 2.0), int((w - c) / 2.0)
    return x[..., top : top + c, left : left + c]


class ProcessorTransform:
    """The image processor itself on one PIL image → float tensor (3, H, W) (picklable: rebuilt from its JSON)."""

    def __init__(self, processor: str, config: str) -> None:
        self.processor_name, self.config = processor, config
        self._processor: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"processor_name": self.processor_name, "config": self.config, "_processor": None}

    def __call__(self, img: Any) -> Any:
        if self._processor is None:
            transformers = import_transformers()
            cls = getattr(transformers, self.processor_name)
            with _quiet():
                self._processor = cls.from_dict(json.loads(self.config))
        return self._processor(images=img, return_tensors="pt")["pixel_values"][0]


def _size(size: Any) -> dict[str, Any]:
    """A processor's ``size``/``crop_size`` (dict or SizeDict) as a dict of its set entries."""
    if size is None:
        return {}
    items = size.items() if hasattr(size, "items") else vars(size).items()
    return {k: v for k, v in items if v is not None}


def _interpolation(resample: Any) -> str | None:
    """torchvision's name of a processor's ``resample`` (a PIL resampling code), as transformers maps it."""
    if resample is None:
        return "bilinear"
    if hasattr(resample, "value") and isinstance(resample.value, str):  # already an InterpolationMode
        return str(resample.value)
    names = {0: "nearest-exact", 2: "bilinear", 3: "bicubic", 1: "lanczos"}
    return names.get(int(resample))


def translate_processor(processor: Any) -> HFPreprocessing | str:
    """The :class:`HFPreprocessing` of a processor, or the reason it cannot be expressed as one."""
    name = type(processor).__name__
    if getattr(processor, "backend", "") != "torchvision":
        return f"{name} is not a torchvision-backend processor"
    own = [
        k for k in ("_preprocess", "resize", "center_crop", "rescale_and_normalize") if k in type(processor).__dict__
    ]
    convnext = name == "ConvNextImageProcessor"
    if own and not (convnext and set(own) <= {"_preprocess", "resize"}):
        return f"{name} has its own {', '.join(own)}"
    if getattr(processor, "do_pad", None):
        return f"{name} pads images"
    interp = _interpolation(getattr(processor, "resample", None))
    if interp is None or interp not in ("nearest-exact", "bilinear", "bicubic"):
        return f"{name} resamples with {getattr(processor, 'resample', None)!r}"
    size, crop = _size(processor.size) if processor.do_resize else {}, _size(getattr(processor, "crop_size", None))
    resize, mode, crop_side = None, "shortest", None
    if convnext and size:  # ConvNeXt: shortest edge S/crop_pct then crop S below 384, else squash to S
        s = int(size["shortest_edge"])
        resize, mode, crop_side = (int(s / processor.crop_pct), "shortest", s) if s < 384 else (s, "squash", None)
    elif set(size) == {"shortest_edge"}:
        resize = int(size["shortest_edge"])
    elif set(size) == {"height", "width"} and size["height"] == size["width"]:
        resize, mode = int(size["height"]), "squash"
    elif size:
        return f"{name} resizes to {size} (only a shortest edge or a square size is expressible)"
    if getattr(processor, "do_center_crop", False) and not convnext:
        if set(crop) != {"height", "width"} or crop["height"] != crop["width"]:
            return f"{name} crops to {crop} (only a square crop is expressible)"
        crop_side = int(crop["height"])
    if not processor.do_normalize:
        return f"{name} does not normalise"
    return HFPreprocessing(
        resize=resize,
        crop=crop_side,
        mean=tuple(float(m) for m in processor.image_mean),
        std=tuple(float(s) for s in processor.image_std),
        interpolation=interp,
        resize_mode=mode,
        rescale_factor=float(processor.rescale_factor) if processor.do_rescale else 1.0,
        processor=name,
    )


def probe_images() -> list[Any]:
    """Three deterministic RGB images: small landscape and portrait (odd sizes: crop rounding, upsampling)
    and a larger one (antialiased downsampling to the usual 224-384)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for h, w in ((45, 67), (71, 39), (301, 453)):
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w)], axis=-1)
        noise = rng.integers(-40, 40, size=(h, w, 3))
        out.append(Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)))
    return out


def preprocessing_of(processor: Any) -> tuple[HFPreprocessing, dict[str, Any]]:
    """The preprocessing of ``processor``: its translation if it reproduces the processor on the
    :func:`probe_images` (max abs difference ≤ :data:`PIXEL_TOLERANCE`), else the processor itself.

    Returns:
        The preprocessing and the note recorded in the metadata (``preprocessing_extra``).
    """
    name = type(processor).__name__
    images = probe_images()
    ref = [processor(images=im, return_tensors="pt")["pixel_values"][0] for im in images]
    prep = translate_processor(processor)
    if isinstance(prep, HFPreprocessing):
        transform = prep.build()
        mine = [transform(im) for im in images]
        same = all(a.shape == b.shape for a, b in zip(mine, ref))
        diff = max(float((a - b).abs().max()) for a, b in zip(mine, ref)) if same else float("inf")
        if diff <= PIXEL_TOLERANCE:
            return prep, {"hf_image_processor": name, "hf_preprocessing_max_abs_diff": diff}
        reason = f"visreps' transform differs from {name} by {diff:.3g} on a probe image"
    else:
        reason = prep
    config = json.dumps(processor.to_dict(), default=str)
    hw = (int(ref[0].shape[-2]), int(ref[0].shape[-1]))
    fallback = HFPreprocessing(
        resize=None,
        crop=None,
        mean=tuple(float(m) for m in (getattr(processor, "image_mean", None) or IMAGENET_MEAN)),
        std=tuple(float(s) for s in (getattr(processor, "image_std", None) or IMAGENET_STD)),
        resize_mode="processor",
        processor=name,
        processor_config=config,
        input_hw=hw,
    )
    if any(tuple(r.shape[-2:]) != hw for r in ref):
        raise VisrepsError(f"{name} gives images of different sizes; visreps needs one input size per model")
    return fallback, {"hf_image_processor": name, "hf_preprocessing_note": f"run by the processor itself: {reason}"}


def default_preprocessing(config: Any) -> HFPreprocessing:
    """No ``preprocessor_config.json``: ImageNet's pipeline at the config's ``image_size`` (224 if none)."""
    side = getattr(config, "image_size", None) or 224
    side = int(side[0] if isinstance(side, (list, tuple)) else side)
    return HFPreprocessing(resize=int(side / 0.875), crop=side, interpolation="bilinear", rescale_factor=1 / 255)
