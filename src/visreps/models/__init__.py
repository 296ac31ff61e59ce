"""Model sources and :func:`load_model`.

Model ids are ``source:name`` (``torchvision:alexnet``, ``timm:resnet50``, ``cornet:s``); a bare
name resolves when exactly one source has it. Sources register themselves when first used (see
:mod:`visreps.models._registry`); every one returns a :class:`LoadedModel` (see
:mod:`visreps.models._base` for its typed contract and the :class:`Backend` protocol).
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import VisrepsError
from ._base import Backend, BackendCapture, LoadedModel, Preprocessing, SupportsLayers, TextTower
from ._card import ModelCard
from ._layers import LayerInfo
from ._registry import (
    Source,
    available_offline,
    catalogue,
    get_source,
    list_models,
    model_card,
    register_source,
    resolve,
)

__all__ = [
    "Backend",
    "BackendCapture",
    "LayerInfo",
    "LoadedModel",
    "ModelCard",
    "Preprocessing",
    "Source",
    "SupportsLayers",
    "TextTower",
    "available_offline",
    "catalogue",
    "list_models",
    "load_model",
    "model_card",
    "register_source",
]


def _is_keras_model(obj: Any) -> bool:
    from .keras import is_keras_model

    return is_keras_model(obj)


def load_model(
    model: Any,
    *,
    pretrained: bool = True,
    weights: str | os.PathLike | None = None,
    seed: int = 0,
    device: str | None = "auto",
    preprocessing: Preprocessing | dict | None = None,
    allow_pickle: bool = False,
) -> LoadedModel:
    """Load a network for extraction.

    Args:
        model: a model id (``"torchvision:alexnet"``, ``"timm:resnet50"``, a bare name), a
            ``torch.nn.Module`` or ``keras.Model`` of your own (for a Keras model's
            ``preprocess_input`` use :func:`visreps.from_keras_model`), a :class:`LoadedModel`
            (returned as is), or ``"file:PATH"`` for a whole pickled torch model (needs
            ``allow_pickle=True``) or a ``.keras`` file.
        pretrained: load the source's pretrained weights (``False``: random initialisation).
        weights: a local weights file (state_dict .pt/.pth, safetensors; Keras: .weights.h5,
            .h5, .keras) to load into the architecture, or a named weight of the source (e.g. ``"IMAGENET1K_V2"``).
        seed: the seed of a random initialisation (recorded in the metadata).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        preprocessing: override the model's own preprocessing (a :class:`Preprocessing` or a
            dict of its fields, e.g. ``{"resize": 224, "crop": 224}``).
        allow_pickle: allow unpickling a whole model file (``"file:model.pt"``) or a weights file
            holding Python objects besides tensors, which can run arbitrary code: only for files you
            trust. Without it, weights files load with ``torch.load(weights_only=True)`` or
            safetensors, and such a file is an error naming this opt-in (never a fallback).

    Returns:
        A :class:`LoadedModel` in eval mode on the device.

    Raises:
        WeightsError: among others, a file that needs ``allow_pickle``.
    """
    if not isinstance(allow_pickle, bool):
        raise VisrepsError(f"allow_pickle must be True or False, got {allow_pickle!r}")
    if isinstance(model, LoadedModel):
        lm = model
    elif isinstance(model, str):
        lm = _load_id(
            model, pretrained=pretrained, weights=weights, seed=seed, device=device, allow_pickle=allow_pickle
        )
    else:
        lm = _wrap_object(model, weights=weights, device=device, allow_pickle=allow_pickle)
    if preprocessing is not None:
        lm.with_preprocessing(_preprocessing_of(lm, preprocessing))
    return lm


def _load_id(
    model: str, *, pretrained: bool, weights: str | os.PathLike | None, seed: int, device: Any, allow_pickle: bool
) -> LoadedModel:
    """A model id: ``file:PATH`` (a ``.keras`` file or a pickled torch model) or ``source:name``."""
    if model.startswith("file:") and model.lower().endswith(".keras"):
        from .keras import load_model_file

        return load_model_file(model[5:], device=device)
    if model.startswith("file:"):
        from .custom import load_pickled_model

        return load_pickled_model(model[5:], device=device, allow_pickle=allow_pickle)
    source, name = resolve(model)
    src = get_source(source)
    src.check(name)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise VisrepsError(f"seed must be an integer, got {seed!r}")
    from .custom import pickle_scope

    with pickle_scope(allow_pickle):  # the source's --weights file honours the opt-in
        return src.load(
            name, pretrained=pretrained, weights=None if weights is None else str(weights), seed=seed, device=device
        )


def _wrap_object(model: Any, *, weights: str | os.PathLike | None, device: Any, allow_pickle: bool) -> LoadedModel:
    """A user's ``keras.Model`` or ``torch.nn.Module`` (with a weights file loaded into it)."""
    if _is_keras_model(model):  # decided without importing TensorFlow
        from .keras import check_device, from_keras_model

        check_device(device)
        return from_keras_model(model, weights=weights)
    try:
        import torch
    except ImportError as e:  # pragma: no cover
        raise VisrepsError("torch is required") from e
    if not isinstance(model, torch.nn.Module):
        raise VisrepsError(
            "model must be a model id string, a torch.nn.Module, a keras.Model or a LoadedModel, "
            f"got {type(model).__name__}"
        )
    from .custom import from_module, load_weights_file

    lm = from_module(model, device=device)
    if weights is not None:
        lm.weights = load_weights_file(lm.module, os.fspath(weights), allow_pickle=allow_pickle)
        lm.module.to(lm.device).eval()
    return lm


def _preprocessing_of(lm: LoadedModel, preprocessing: Preprocessing | dict) -> Preprocessing:
    """``preprocessing``, or the model's own with the fields of a dict replaced (unknown fields are an error)."""
    if not isinstance(preprocessing, dict):
        return preprocessing
    base = lm.preprocessing.to_dict()
    unknown = set(preprocessing) - set(base)
    if unknown:
        raise VisrepsError(f"unknown preprocessing field(s) {sorted(unknown)}; valid: {sorted(base)}")
    base.update(preprocessing)
    base["mean"], base["std"] = tuple(base["mean"]), tuple(base["std"])
    return type(lm.preprocessing)(**base)
