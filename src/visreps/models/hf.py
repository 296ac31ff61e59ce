"""Vision models of the Hugging Face ``transformers`` library: ``hf:ORG/NAME[@REVISION]`` and ``hf:FOLDER``.

Ids:

* ``hf:ORG/NAME`` (e.g. ``hf:facebook/dinov2-small``): a repository of the Hugging Face Hub,
  downloaded into ``<visreps cache>/huggingface`` (:func:`visreps.cache.hf_cache_dir`);
  ``hf:ORG/NAME@REVISION`` pins a branch, tag or commit. The weights record of the metadata keeps
  the requested revision and the commit it resolved to. With visreps offline
  (``VISREPS_OFFLINE=1``, ``--offline``) only the cache is read, and a missing file is a
  :class:`~visreps.errors.WeightsError` naming the repository, the revision and the cache folder.
* ``hf:FOLDER``: a folder written by ``save_pretrained`` (``config.json``, the weights, and
  optionally ``preprocessor_config.json``). An existing folder wins over a Hub id of the same spelling.

Pretrained means loaded: weights the checkpoint lacks are accepted only under :data:`OPTIONAL_PREFIXES`
(the pooler a classifier checkpoint does not save; listed as ``newly_initialized``); anything else missing
is a :class:`~visreps.errors.WeightsError`, as are weights of other sizes, a damaged or pickled weights file
(never unpickled) and a config that is not an image model (BERT: "is a text model"), each in one line.

The Hub cannot be enumerated, so ``hf`` lists no names; any syntactically valid id is accepted.

The module is ``transformers.AutoModel`` of the config (``ViTModel``, ``Dinov2Model``,
``ConvNextModel``, ...). A dual image-text model (CLIP, SigLIP, any config with a ``vision_config``)
gives its vision tower, the ``AutoModel`` of ``config.vision_config`` (``CLIPVisionModel``,
``SiglipVisionModel``); its weights are read from the dual checkpoint. Layers are the module names of
``named_modules()`` in the installed transformers version (transformers 5: ``embeddings``,
``layers.11`` of a ViT, ``encoder.layer.11`` of a DINOv2, ``encoder.stages.2`` of a ConvNeXt,
``layernorm``, ``pooler``); ``visreps layers hf:...`` lists them.

Token pooling knows the tokens before the patch tokens (:func:`count_prefix_tokens`): ViT, BEiT,
CLIP 1 (class token), DeiT 2 (class and distillation token), DINOv2 1 + ``num_register_tokens``,
SigLIP and Swin 0 (``cls`` is then an error, ``patch_mean`` averages all tokens); convolutional
networks (ConvNeXt, ResNet) output maps, not tokens.

Preprocessing is the model's own image processor (``AutoImageProcessor``), expressed as an
:class:`HFPreprocessing`: resize (shortest edge, or both sides to a square), centre crop, rescale,
normalise, computed exactly as transformers' torchvision image processors compute them (uint8
antialiased resize, crop offset ``int((H - h) / 2)``, fused ``(x - mean/r) / (std/r)``). At load time
the translation is checked against the processor on three probe images; a processor it cannot express
(a non-square size, padding, a custom ``_preprocess``, a PIL-backend processor) is run itself, image
by image (``resize_mode="processor"``, recorded in the metadata).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MissingExtraError, ModelNotFoundError, VisrepsError, WeightsError
from ._base import IMAGENET_MEAN, IMAGENET_STD, LoadedModel, Preprocessing, file_sha256
from ._registry import register_source

INSTALL_HINT = 'pip install "visreps[hf]"'
#: a Hub repository id: NAME or ORG/NAME (letters, digits, ``-``, ``_``, ``.``; at most 96 characters)
_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?")
#: a revision: branch, tag or commit (branches may hold ``/``, e.g. ``refs/pr/3``)
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,254}")
#: the weights files of a saved model, preferred first
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
#: the largest per-pixel difference between visreps' transform and the processor accepted as exact
PIXEL_TOLERANCE = 1e-4


def import_transformers() -> Any:
    """``transformers``, or a :class:`~visreps.errors.MissingExtraError` saying how to install it."""
    try:
        import transformers
    except ImportError as e:
        raise MissingExtraError(f"Hugging Face models (hf:...) need the package transformers: {INSTALL_HINT}") from e
    return transformers


# --------------------------------------------------------------------------- ids


@dataclass(frozen=True)
class HFName:
    """A parsed ``hf:`` name: a local folder, or a Hub repository with an optional revision."""

    folder: Path | None = None
    repo: str | None = None
    revision: str | None = None

    @property
    def source(self) -> str:
        """What ``from_pretrained`` takes: the folder's path or the repository id."""
        return str(self.folder) if self.folder is not None else str(self.repo)

    def describe(self) -> str:
        if self.folder is not None:
            return f"folder {str(self.folder)!r}"
        return f"hf:{self.repo}@{self.revision or 'main'}"


def _looks_like_path(s: str) -> bool:
    """A name that can only be a path: absolute, relative (``./``), ``~``, a drive, or more than ORG/NAME."""
    head = s.partition("@")[0]
    return s.startswith(("/", ".", "~")) or "\\" in s or head.count("/") > 1 or bool(re.match(r"[A-Za-z]:", s))


def parse_name(name: str) -> HFName:
    """``"ORG/NAME@REV"`` → a Hub :class:`HFName`; an existing folder (or a path-like name) → a folder.

    Raises:
        ModelNotFoundError: a malformed id, a path to a missing folder, or a folder without ``config.json``.
    """
    s = str(name).strip()
    if not s:
        raise ModelNotFoundError("hf: needs a Hub id or a folder, e.g. hf:facebook/dinov2-small or hf:./my_model")
    path = Path(s).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"hf: folder {str(path)!r} has no config.json; give a folder written by save_pretrained "
                "(config.json and the weights, optionally preprocessor_config.json)"
            )
        return HFName(folder=path.resolve())
    if _looks_like_path(s):
        raise ModelNotFoundError(
            f"hf: folder {str(path)!r} does not exist; give a folder written by save_pretrained, "
            "or a Hub id such as hf:facebook/dinov2-small"
        )
    repo, at, revision = s.partition("@")
    if not _REPO.fullmatch(repo) or (at and not _REVISION.fullmatch(revision)):
        raise ModelNotFoundError(
            f"hf:{s} is not a valid Hugging Face id; write hf:ORG/NAME, hf:ORG/NAME@REVISION "
            "(a branch, tag or commit) or hf:FOLDER (a folder written by save_pretrained)"
        )
    return HFName(repo=repo, revision=revision or None)


def list_names() -> list[str]:
    """Nothing: the Hub cannot be enumerated (any valid ``hf:ORG/NAME`` or ``hf:FOLDER`` loads)."""
    return []


def check_name(name: str) -> None:
    """Raise :class:`~visreps.errors.ModelNotFoundError` unless ``name`` is a valid Hub id or an existing folder."""
    parse_name(name)


def _cached_file(repo: str, filename: str, revision: str | None) -> Path | None:
    """The file of ``repo`` at ``revision`` in visreps' Hugging Face cache, if it is there."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on huggingface_hub
        return None
    from ..cache import hf_cache_dir

    hit = try_to_load_from_cache(repo, filename, cache_dir=str(hf_cache_dir()), revision=revision)
    return Path(hit) if isinstance(hit, str) else None


def available_offline(name: str) -> bool:
    """Whether ``hf:name`` loads without the network: the folder exists, or config and weights are in the cache."""
    try:
        hf = parse_name(name)
    except ModelNotFoundError:
        return False
    if hf.folder is not None:
        return True
    assert hf.repo is not None
    return _cached_file(hf.repo, "config.json", hf.revision) is not None and any(
        _cached_file(hf.repo, f, hf.revision) is not None for f in WEIGHT_FILES
    )


def _commit(hf: HFName) -> str | None:
    """The commit the revision of a Hub id resolved to (the snapshot folder of its cached config.json)."""
    if hf.repo is None:
        return None
    hit = _cached_file(hf.repo, "config.json", hf.revision)
    return hit.parent.name if hit is not None else None


def _missing(hf: HFName, reason: BaseException | None = None) -> WeightsError:
    """The error for files of a Hub id that are neither in the cache nor downloadable."""
    from ..cache import hf_cache_dir, offline

    assert hf.repo is not None
    rev = hf.revision or "main"
    detail = str(reason).strip().splitlines()[0][:160] if reason is not None and str(reason).strip() else ""
    why = "offline mode is on" if offline() else f"the download failed: {type(reason).__name__}: {detail}"
    return WeightsError(
        f"hf:{hf.repo} at revision {rev} is not in the cache {hf_cache_dir()} ({why}): run once online to download "
        f"it, or `hf download {hf.repo} --revision {rev} --cache-dir {hf_cache_dir()}`, or save the model with "
        "save_pretrained and use hf:FOLDER"
    )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """transformers' loading reports and progress bars off (what matters goes into the weights record)."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _hub_kwargs(hf: HFName) -> dict[str, Any]:
    from ..cache import hf_cache_dir, offline

    if hf.folder is not None:
        return {"local_files_only": True}
    return {"revision": hf.revision, "cache_dir": str(hf_cache_dir()), "local_files_only": offline()}


# --------------------------------------------------------------------------- preprocessing


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


# --------------------------------------------------------------------------- the module


#: prefix tokens (class, distillation, register) per ``model_type``; ``None`` marks convolutional networks
PREFIX_TOKENS: dict[str, Callable[[Any], int | None]] = {
    "vit": lambda c: 1,
    "deit": lambda c: 2,
    "beit": lambda c: 1,
    "data2vec-vision": lambda c: 1,
    "dinov2": lambda c: 1,
    "dinov2_with_registers": lambda c: 1 + int(getattr(c, "num_register_tokens", 0)),
    "clip_vision_model": lambda c: 1,
    "siglip_vision_model": lambda c: 0,
    "siglip2_vision_model": lambda c: 0,
    "swin": lambda c: 0,
    "swinv2": lambda c: 0,
    "convnext": lambda c: None,
    "convnextv2": lambda c: None,
    "resnet": lambda c: None,
}


def count_prefix_tokens(module: Any, config: Any) -> int:
    """Tokens before the patch tokens in the outputs of ``module``: :data:`PREFIX_TOKENS` by
    ``config.model_type``, else counted from the embeddings' ``cls_token``/``class_embedding``,
    ``distillation_token`` and ``register_tokens``. Convolutional networks: 0 (their maps are not tokens)."""
    rule = PREFIX_TOKENS.get(getattr(config, "model_type", ""))
    if rule is not None:
        return rule(config) or 0
    emb = getattr(module, "embeddings", None)
    n = sum(getattr(emb, a, None) is not None for a in ("cls_token", "class_embedding", "distillation_token"))
    reg = getattr(emb, "register_tokens", None)
    return n + (int(reg.shape[1]) if reg is not None and getattr(reg, "dim", lambda: 0)() == 3 else 0)


def architecture(config: Any, where: str = "the config") -> tuple[Any, Any]:
    """``(model class, its config)``: the ``AutoModel`` class of ``config``, or of its ``vision_config``
    for a dual image-text model (CLIP, SigLIP: the vision tower)."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    cfg = getattr(config, "vision_config", None) or config
    _check_vision(cfg, where)
    try:
        return MODEL_MAPPING[type(cfg)], cfg
    except KeyError:
        raise VisrepsError(
            f"transformers has no AutoModel for model_type {getattr(cfg, 'model_type', '?')!r}; "
            "hf: loads vision backbones (ViT, DeiT, DINOv2, Swin, ConvNeXt, BEiT, CLIP/SigLIP vision towers, ...)"
        ) from None


def _check_vision(cfg: Any, where: str) -> None:
    """Refuse the config of a text model (BERT, GPT-2: a vocabulary, no image size or input channels)."""
    from transformers.models.auto import modeling_auto

    kind = getattr(cfg, "model_type", None) or "?"
    image_types = getattr(modeling_auto, "MODEL_FOR_IMAGE_MAPPING_NAMES", {})
    if kind in image_types or any(getattr(cfg, a, None) is not None for a in ("image_size", "num_channels")):
        return
    text_types = [
        getattr(modeling_auto, n, {})
        for n in ("MODEL_FOR_MASKED_LM_MAPPING_NAMES", "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES")
    ]
    if not (getattr(cfg, "vocab_size", None) or any(kind in t for t in text_types)):
        return  # not known as a text model: an image model transformers does not list as one is let through
    raise VisrepsError(
        f"{where} (model_type {kind!r}) is a text model: it has no image size or input channels; hf: loads vision "
        "backbones (ViT, DeiT, DINOv2, Swin, ConvNeXt, BEiT, CLIP/SigLIP vision towers, ...); for CLIP text "
        "features use `visreps text`"
    )


def _load_config(hf: HFName) -> Any:
    transformers = import_transformers()
    try:
        with _quiet():
            return transformers.AutoConfig.from_pretrained(hf.source, **_hub_kwargs(hf))
    except (OSError, ValueError) as e:
        if hf.folder is not None:
            raise WeightsError(f"cannot read the config of {hf.describe()}: {' '.join(str(e).split())[:300]}") from e
        raise _missing(hf, e) from e


def _load_processor(hf: HFName, config: Any) -> tuple[HFPreprocessing, dict[str, Any]]:
    """The preprocessing of the model's image processor (defaults when it has none)."""
    transformers = import_transformers()
    try:
        with _quiet():
            processor = transformers.AutoImageProcessor.from_pretrained(hf.source, **_hub_kwargs(hf))
    except (OSError, ValueError, KeyError) as e:
        note = f"no image processor ({type(e).__name__}): ImageNet preprocessing at the model's image size"
        return default_preprocessing(config), {"hf_preprocessing_note": note}
    return preprocessing_of(processor)


def _weights_record(hf: HFName, info: dict[str, Any], seed: int) -> dict[str, Any]:
    """The metadata ``weights`` entry of pretrained weights (Hub: revision and commit; folder: file hashes)."""
    record: dict[str, Any] = {"kind": "pretrained"}
    if hf.folder is not None:
        record["folder"] = str(hf.folder)
        record["files"] = {f: file_sha256(hf.folder / f) for f in WEIGHT_FILES if (hf.folder / f).is_file()}
    else:
        record.update(repo=hf.repo, revision=hf.revision or "main", commit=_commit(hf))
    missing = sorted(info.get("missing_keys") or [])
    if missing:  # e.g. the pooler of a ViTModel read from a classifier checkpoint
        record["newly_initialized"] = missing
        record["seed"] = seed
    return record


def _build(hf: HFName, config: Any, *, pretrained: bool, weights: str | None, seed: int) -> tuple[Any, dict]:
    """The module and its weights record."""
    import torch

    from .custom import load_weights_file

    cls, cfg = architecture(config, f"the config of {hf.describe()}")
    with torch.random.fork_rng(devices=[]), _quiet():
        torch.manual_seed(seed)
        if pretrained and weights is None:
            module, info = _from_pretrained(cls, hf)
            _check_loaded(hf, info)
            return module, _weights_record(hf, info, seed)
        module = cls._from_config(cfg) if hasattr(cls, "_from_config") else cls(cfg)
    origin: dict[str, Any] = {"config": hf.describe()}
    if hf.repo is not None:
        origin["commit"] = _commit(hf)
    if weights is not None:
        try:
            return module, {**load_weights_file(module, weights), **origin}
        except WeightsError as e:
            if Path(weights).name not in WEIGHT_FILES:
                raise
            folder = Path(weights).expanduser().resolve().parent
            raise WeightsError(
                f"{e}; {Path(weights).name} is a file written by save_pretrained, in transformers' own key layout: "
                f"load its folder as hf:{folder} (without --weights)"
            ) from None
    return module, {"kind": "random", "seed": seed, **origin}


#: parameters a checkpoint may lack (initialised from the seed and listed as ``newly_initialized``): the
#: pooler of a backbone read from a classifier checkpoint (``ViTForImageClassification`` saves none)
OPTIONAL_PREFIXES = ("pooler.",)


def _weights_file(hf: HFName) -> str:
    """How messages name the weights of ``hf``: the folder's weights file, or the Hub id."""
    if hf.folder is not None:
        found = [f for f in WEIGHT_FILES if (hf.folder / f).is_file()]
        return repr(str(hf.folder / found[0])) if found else hf.describe()
    return hf.describe()


def _from_pretrained(cls: Any, hf: HFName) -> tuple[Any, dict[str, Any]]:
    """``cls.from_pretrained`` with every failure as one line naming the file (transformers raises OSError,
    RuntimeError for other sizes, safetensors' SafetensorError for a damaged file, UnpicklingError, ...)."""
    import pickle

    try:
        return cls.from_pretrained(hf.source, output_loading_info=True, **_hub_kwargs(hf))
    except pickle.UnpicklingError:
        raise WeightsError(
            f"{_weights_file(hf)} is a pickle holding Python objects besides tensors: unpickling it can run "
            "arbitrary code, so hf: does not load it; if you trust the file, load the model in Python and save it "
            "again with save_pretrained (safetensors)"
        ) from None
    except OSError as e:
        if hf.folder is None:
            raise _missing(hf, e) from e
        raise WeightsError(
            f"{hf.describe()} has no weights transformers can read ({' '.join(str(e).split())[:200]}); "
            f"save the model there with save_pretrained, or use random weights (--random)"
        ) from e
    except Exception as e:  # noqa: BLE001 - RuntimeError (sizes), SafetensorError, EOFError, network errors, ...
        if isinstance(e, RuntimeError) and ("mismatched" in str(e) or "size mismatch" in str(e)):
            raise WeightsError(
                f"the weights {_weights_file(hf)} have other sizes than the config.json of {hf.describe()} "
                "describes (e.g. another hidden_size); give the config.json the weights were saved with"
            ) from None
        if hf.folder is None:
            raise _missing(hf, e) from None
        reason = " ".join(str(e).split())[:160]
        raise WeightsError(
            f"cannot read the weights {_weights_file(hf)} ({type(e).__name__}: {reason}); the file is damaged or "
            "truncated: save the model again with save_pretrained"
        ) from None


def _check_loaded(hf: HFName, info: dict[str, Any]) -> None:
    """Pretrained means loaded: refuse weights the checkpoint lacks beyond :data:`OPTIONAL_PREFIXES`."""
    missing = sorted(k for k in info.get("missing_keys") or [] if not k.startswith(OPTIONAL_PREFIXES))
    if not missing:
        return
    show = ", ".join(missing[:6]) + (f" ... ({len(missing)} in all)" if len(missing) > 6 else "")
    raise WeightsError(
        f"the weights {_weights_file(hf)} lack {len(missing)} parameter(s) of the architecture its config.json "
        f"describes ({show}): they would be random, not pretrained; check that the weights belong to this config, "
        "or use random weights on purpose (--random)"
    )


@register_source("hf", list_names=list_names, available_offline=available_offline, check_name=check_name, optional=True)
def load(
    name: str, *, pretrained: bool = True, weights: str | None = None, seed: int = 0, device: Any = None
) -> LoadedModel:
    """Load ``hf:ORG/NAME[@REVISION]`` or ``hf:FOLDER``: pretrained, a weights file, or random.

    Args:
        name: a Hub id (with an optional ``@revision``) or a folder written by ``save_pretrained``.
        pretrained: load the saved weights; ``False``: ``AutoModel`` of the config, initialised
            under ``torch.manual_seed(seed)`` (the same seed gives the same numbers).
        weights: a state_dict file (.safetensors, .pt/.bin) of the module (for a dual model, of its
            vision tower), loaded strictly into the architecture of the config.
        seed: the seed of a random initialisation (also of weights a checkpoint lacks).
        device: ``auto``, ``cpu``, ``cuda``, ...

    Raises:
        MissingExtraError: transformers is not installed.
        WeightsError: files that are not in the cache offline or cannot be downloaded (naming the
            repository, revision and cache folder), weights missing beyond the pooler, of other
            sizes, damaged or pickled, or a weights file that does not fit.
        VisrepsError: a config that is not an image model (e.g. a text model).
    """
    from ..device import resolve_device

    transformers = import_transformers()
    hf = parse_name(name)
    config = _load_config(hf)
    module, record = _build(hf, config, pretrained=pretrained, weights=weights, seed=seed)
    prep, extra = _load_processor(hf, config)
    cfg = getattr(config, "vision_config", None) or config
    prefix = count_prefix_tokens(module, cfg)
    record["architecture"] = {
        "class": type(module).__name__,
        "model_type": getattr(cfg, "model_type", None),
        "prefix_tokens": prefix,
        "transformers": transformers.__version__,
    }
    dev = resolve_device(device)
    return LoadedModel(
        module=module.to(dev).eval(),
        preprocessing=prep,
        model_id=f"hf:{str(name).strip()}",
        weights=record,
        device=dev,
        prefix_tokens=prefix,
        preprocessing_extra=extra,
    )
