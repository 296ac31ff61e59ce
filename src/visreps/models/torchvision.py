"""Every model of ``torchvision.models.list_models()``: pretrained (weights API), random, or a file."""

from __future__ import annotations

import contextlib
import os
import pickle
from pathlib import Path
from typing import Any

from ..errors import WeightsError
from ._base import LoadedModel, Preprocessing, file_sha256
from ._card import ModelCard
from ._registry import register_source

#: the catalogue card of every torchvision model (the architecture is the model's name)
CARD = ModelCard(family="torchvision", architecture="", objective="supervised classification",
                 training_data="ImageNet-1k (the DEFAULT weights of torchvision)",
                 weights_licence="BSD-3-Clause (torchvision); see each weights enum for data terms",
                 paper="TorchVision maintainers, torchvision (2016); and the paper of each architecture")  # fmt: skip


def list_names() -> list[str]:
    from torchvision import models

    return sorted(models.list_models())


def _weights_enum(name: str):
    from torchvision import models

    try:
        return models.get_model_weights(name)
    except (ValueError, KeyError):
        return None


def resolve_weights(name: str, tag: str = "DEFAULT") -> Any:
    """The weights enum member ``tag`` (``DEFAULT``, ``IMAGENET1K_V2`` or ``Enum.MEMBER``) of model ``name``."""
    enum = _weights_enum(name)
    if enum is None:
        raise WeightsError(f"torchvision:{name} has no pretrained weights; use --random or --weights FILE")
    tag = tag.split(".")[-1]
    if tag not in enum.__members__:
        raise WeightsError(f"torchvision:{name} has no weights {tag!r}; choose one of: {', '.join(enum.__members__)}")
    return enum[tag]


def _checkpoint_path(weights) -> Path:
    from ..cache import torch_checkpoint_dir

    return torch_checkpoint_dir() / os.path.basename(weights.url)


def available_offline(name: str) -> bool:
    try:
        return _checkpoint_path(resolve_weights(name)).is_file()
    except WeightsError:
        return False


def preprocessing_from_weights(weights: Any) -> Preprocessing:
    t = weights.transforms()
    crop = getattr(t, "crop_size", None)
    resize = getattr(t, "resize_size", None)
    mean = getattr(t, "mean", None)
    std = getattr(t, "std", None)
    if mean is None or std is None or (crop is None and resize is None):
        return Preprocessing()
    interp = getattr(t, "interpolation", None)
    interp = interp.value if interp is not None else "bilinear"
    return Preprocessing(
        resize=int(resize[0]) if resize else None,
        crop=int(crop[0]) if crop else None,
        mean=tuple(mean),
        std=tuple(std),
        interpolation=interp,
    )


@contextlib.contextmanager
def _safe_checkpoint_loads():
    """torchvision's builders load checkpoints with ``torch.hub.load_state_dict_from_url``, whose default
    unpickles any object; a file planted in the cache would run code. Force ``weights_only=True``."""
    from torchvision.models._api import WeightsEnum

    original = WeightsEnum.get_state_dict

    def get_state_dict(self, *args, **kwargs):
        kwargs["weights_only"] = True
        return original(self, *args, **kwargs)

    WeightsEnum.get_state_dict = get_state_dict  # type: ignore[method-assign]
    try:
        yield
    finally:
        WeightsEnum.get_state_dict = original  # type: ignore[method-assign]


@register_source("torchvision")
def load(
    name: str, *, pretrained: bool = True, weights: str | None = None, seed: int = 0, device: Any = None
) -> LoadedModel:
    """Build ``torchvision:name``: pretrained (``weights`` may name a weights enum member such as
    ``IMAGENET1K_V2``), from a weights file, or randomly initialised with ``seed``."""
    import torch
    from torchvision import models

    from ..cache import cache_dir, missing_weights_error, offline
    from ..device import resolve_device
    from .custom import load_weights_file, looks_like_file

    dev = resolve_device(device)
    is_file = weights is not None and looks_like_file(weights)
    if (pretrained and weights is None) or (weights is not None and not is_file):
        w = resolve_weights(name, weights or "DEFAULT")
        path = _checkpoint_path(w)
        if not path.is_file() and offline():
            raise missing_weights_error(f"torchvision:{name} ({w})", path, w.url)
        old = torch.hub.get_dir()
        torch.hub.set_dir(str(cache_dir() / "torch" / "hub"))
        try:
            with _safe_checkpoint_loads():
                module = models.get_model(name, weights=w)
        except (OSError, RuntimeError, pickle.UnpicklingError) as e:  # URLError is an OSError
            if path.is_file():
                raise WeightsError(
                    f"cannot load cached weights {str(path)!r} as a plain state_dict ({type(e).__name__}); "
                    "delete the file to download it again"
                ) from None
            raise missing_weights_error(f"torchvision:{name} ({w})", path, w.url) from e
        finally:
            torch.hub.set_dir(old)
        record = {"kind": "pretrained", "name": str(w), "url": w.url, "file": str(path), "sha256": file_sha256(path)}
        prep = preprocessing_from_weights(w)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = models.get_model(name, weights=None)
        record = {"kind": "random", "seed": seed}
        if is_file and weights is not None:
            record = load_weights_file(module, weights)
        enum = _weights_enum(name)
        # the architecture's own input size (e.g. 299 for inception_v3) with ImageNet statistics
        prep = Preprocessing()
        if enum is not None:
            own = preprocessing_from_weights(enum["DEFAULT"])
            if own.crop and own.crop != 224:
                prep = Preprocessing(resize=own.resize, crop=own.crop)
    return LoadedModel.on_device(
        module,
        dev,
        preprocessing=prep,
        model_id=f"torchvision:{name}",
        weights=record,
    )
