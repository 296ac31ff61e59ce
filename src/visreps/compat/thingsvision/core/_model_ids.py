"""THINGSvision 2.x's ``(model_name, source, model_parameters)`` → visreps model ids (:func:`model_id`)."""

from __future__ import annotations

import re
from typing import Any

from ....errors import VisrepsError

__all__ = ["SOURCES", "model_id"]

SOURCES = ("torchvision", "timm", "keras", "ssl", "custom", "vissl")

# THINGSvision's custom models → visreps ids (the ones with a fixed name)
_CUSTOM = {
    "alexnet_ecoset": "ecoset:alexnet",
    "resnet50_ecoset": "ecoset:resnet50",
    "vgg16_ecoset": "ecoset:vgg16",
    "vgg16bn_ecoset": "ecoset:vgg16_bn",
    "inception_ecoset": "ecoset:inception_v3",
    "alexnet_salobjsub": "salobjsub:alexnet",
}
_SIZES = {"small": "s", "base": "b", "large": "l", "huge": "h", "giant": "g"}


def _ssl_id(name: str) -> str:
    """THINGSvision's ``ssl`` names → visreps ``ssl:`` ids (``dino-vit-small-p16`` → ``ssl:dino-vits16``)."""
    m = re.fullmatch(r"(dino|dinov2|mae)-vit-(small|base|large|huge|giant)-p(\d+)", name)
    if m:
        return f"ssl:{m.group(1)}-vit{_SIZES[m.group(2)]}{m.group(3)}"
    return f"ssl:{name}"


def _custom_id(name: str, params: dict[str, Any]) -> str:
    low = name.lower()
    if low.startswith("cornet"):
        return f"cornet:{re.sub(r'^cornet[-_]?', '', low)}"
    if low == "clip":
        return f"clip:{str(params.get('variant', 'ViT-B/32')).replace('/', '-')}"
    if low == "openclip":
        return f"openclip:{params.get('variant', 'ViT-B-32-quickgelu')}/{params.get('dataset', 'laion400m_e32')}"
    if low in ("harmonization", "dreamsim"):
        if "variant" not in params:
            raise VisrepsError(f"{name} needs model_parameters={{'variant': ...}} (see `visreps models {low}`)")
        return f"{low}:{params['variant']}"
    if low in _CUSTOM:
        return _CUSTOM[low]
    raise VisrepsError(
        f"custom model {name!r} has no visreps counterpart; use one of cornet-s/-z/-r/-rt, clip, OpenCLIP, "
        f"Harmonization, DreamSim, {', '.join(sorted(_CUSTOM))}, or `visreps models` for every id"
    )


def model_id(model_name: str, source: str, model_parameters: dict[str, Any] | None = None) -> str:
    """The visreps model id of a THINGSvision 2.x ``(model_name, source, model_parameters)``.

    ``torchvision`` → ``torchvision:<name>``; ``timm`` → ``timm:<name>``; ``keras`` →
    ``keras:<name>``; ``ssl`` (and the deprecated ``vissl``) → ``ssl:<name>``, with
    ``dino-vit-small-p16`` → ``ssl:dino-vits16`` (likewise ``dinov2-``, ``mae-``); ``custom``:
    ``cornet-s`` → ``cornet:s``, ``clip`` + ``variant='ViT-B/32'`` → ``clip:ViT-B-32``,
    ``OpenCLIP`` + ``variant``/``dataset`` → ``openclip:<variant>/<dataset>``, ``Harmonization`` /
    ``DreamSim`` + ``variant`` → ``harmonization:<variant>`` / ``dreamsim:<variant>``,
    ``Alexnet_ecoset`` ... → ``ecoset:alexnet`` ..., ``AlexNet_SalObjSub`` → ``salobjsub:alexnet``.
    """
    if not isinstance(model_name, str) or not model_name.strip():
        raise VisrepsError(f"model_name must be a model name such as 'alexnet', got {model_name!r}")
    if source not in SOURCES:
        raise VisrepsError(f"source {source!r} is not known; use one of {', '.join(SOURCES[:-1])}")
    params = dict(model_parameters or {})
    if source in ("torchvision", "timm", "keras"):
        return f"{source}:{model_name}"
    if source in ("ssl", "vissl"):
        return _ssl_id(model_name)
    return _custom_id(model_name, params)
