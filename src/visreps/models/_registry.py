"""Model sources keyed by ``source:name``.

A source is a module in :mod:`visreps.models` that defines

* ``list_names() -> list[str]``: every name it can build;
* ``load(name, *, pretrained, weights, seed, device) -> LoadedModel``;
* optionally ``available_offline(name) -> bool``: pretrained weights already on this machine.

A source reads a ``weights`` file with :func:`visreps.models.custom.load_weights_file`, which
honours the ``allow_pickle`` opt-in of the :func:`~visreps.models.load_model` call in progress
(safe ``torch.load(weights_only=True)`` or safetensors otherwise), so ``load`` needs no such argument.

Sources are imported only when used, so listing a torchvision model never imports timm.
"""

from __future__ import annotations

import fnmatch
import re
import importlib
import importlib.util
from typing import Iterable

from ..errors import ModelNotFoundError, closest

#: source name → module implementing it
SOURCES: dict[str, str] = {
    "torchvision": "visreps.models.torchvision",
    "timm": "visreps.models.timm",
}

#: extra sources (added by other modules of the package, e.g. cornet, clip, keras)
_OPTIONAL_SOURCES = {
    "cornet": "visreps.models.cornet",
    "clip": "visreps.models.clip",
    "openclip": "visreps.models.openclip",
    "keras": "visreps.models.keras",
}


def _available_sources() -> dict[str, str]:
    found = dict(SOURCES)
    for name, mod in _OPTIONAL_SOURCES.items():
        if importlib.util.find_spec(mod) is not None:
            found[name] = mod
    return found


def source_module(source: str):
    sources = _available_sources()
    if source not in sources:
        raise ModelNotFoundError(
            f"unknown model source {source!r}; available sources: {', '.join(sorted(sources))}"
        )
    return importlib.import_module(sources[source])


def _names(source: str) -> list[str]:
    return list(source_module(source).list_names())


def resolve(model_id: str, sources: Iterable[str] | None = None) -> tuple[str, str]:
    """Split ``source:name``; a bare name resolves when exactly one source has it."""
    if not isinstance(model_id, str) or not model_id.strip():
        raise ModelNotFoundError(f"model id must be a non-empty string like 'torchvision:alexnet', got {model_id!r}")
    model_id = model_id.strip()
    available = _available_sources()
    if ":" in model_id:
        source, name = model_id.split(":", 1)
        if source in available:
            return source, name
    cornet = re.fullmatch(r"cornet[-_ ]?(z|r|rt|s)", model_id, flags=re.IGNORECASE)
    if cornet and "cornet" in available:  # the 2021 spelling: cornet-s
        return "cornet", cornet.group(1).lower()
    sources = list(sources or ["torchvision", "timm", "cornet"])
    owners = []
    for s in sources:
        if s in available and model_id in _names(s):
            owners.append(s)
    if len(owners) == 1:
        return owners[0], model_id
    if len(owners) > 1:
        choices = ", ".join(f"{s}:{model_id}" for s in owners)
        raise ModelNotFoundError(f"model name {model_id!r} is ambiguous; write one of: {choices}")
    by_name: dict[str, list[str]] = {}
    for s in sources:
        if s in available:
            for n in _names(s):
                by_name.setdefault(n, []).append(f"{s}:{n}")
    hint = [i for n in closest(model_id.split(":")[-1], by_name) for i in by_name[n]]
    msg = f"unknown model {model_id!r}"
    if hint:
        msg += f"; closest: {', '.join(hint)}"
    msg += " (see `visreps models PATTERN`)"
    raise ModelNotFoundError(msg)


def check_name(source: str, name: str) -> None:
    names = _names(source)
    if name not in names:
        hint = closest(name, names)
        msg = f"{source} has no model {name!r}"
        if hint:
            msg += f"; closest: {', '.join(f'{source}:{h}' for h in hint)}"
        raise ModelNotFoundError(msg + " (see `visreps models PATTERN`)")


def list_models(pattern: str | None = None, *, source: str | None = None) -> list[str]:
    """All model ids, optionally filtered by a shell-style ``pattern`` (``*resnet*``) or a substring."""
    sources = [source] if source else list(_available_sources())
    seen_modules = set()
    out: list[str] = []
    for s in sources:
        try:
            names = _names(s)
        except ImportError:
            continue
        seen_modules.add(s)
        out += [f"{s}:{n}" for n in names]
    if pattern:
        pat = pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"
        out = [m for m in out if fnmatch.fnmatch(m.lower(), pat.lower())]
    return out


def available_offline(model_id: str) -> bool:
    source, name = resolve(model_id)
    mod = source_module(source)
    fn = getattr(mod, "available_offline", None)
    return bool(fn and fn(name))
