"""Model sources keyed by ``source:name``: a lazy table of their modules, and the sources they register.

A source is a module that builds models of one kind (``torchvision``, ``timm``, ``cornet``,
``clip``, ``openclip``, ``keras``). It registers itself when imported, by decorating its ``load``
function with :func:`register_source`, as torchvision's ``register_model`` registers builders::

    CARD = ModelCard(family="timm", architecture="", ...)  # the catalogue card of every name


    @register_source("timm")
    def load(name: str, *, pretrained: bool = True, weights: str | None = None, seed: int = 0,
             device: Any = None) -> LoadedModel: ...

which records a typed :class:`Source` from the functions of that module (or those given to the
decorator): ``list_names() -> list[str]`` (every name it can build),
``load(name, *, pretrained, weights, seed, device) -> LoadedModel``, and optionally
``available_offline(name) -> bool`` (pretrained weights already on this machine),
``check_name(name)`` (raise :class:`~visreps.errors.ModelNotFoundError` for an unknown name; by
default the name must be one of ``list_names()``) and its catalogue card: ``card(name) -> ModelCard``,
or ``CARD``, one :class:`~visreps.models.ModelCard` for every name. So a new source is one module, plus
its line in :data:`SOURCE_MODULES`.

Sources are imported only when used, so listing torchvision's models never imports timm, and
``import visreps`` or ``visreps --help`` imports none of them (nor torch). Discovery is therefore
a declared table, :data:`SOURCE_MODULES` (source name → module path, nothing imported): the
first use of a source imports its module, whose decorator fills the registry. A module outside the
table registers a source too, by being imported before the source is used.

``optional=True`` marks a source whose dependencies are an extra (``clip``/``openclip``:
open_clip_torch; ``keras``: TensorFlow and Keras). The modules themselves are part of the package
and import without the extra; a missing extra is reported when the source is used, by a
:class:`~visreps.errors.MissingExtraError` naming the install command, and listing every model
leaves out an optional source whose names cannot be listed without its extra.

A source reads a ``weights`` file with :func:`visreps.models.custom.load_weights_file`, which
honours the ``allow_pickle`` opt-in of the :func:`~visreps.models.load_model` call in progress
(safe ``torch.load(weights_only=True)`` or safetensors otherwise), so ``load`` needs no such argument.
"""

from __future__ import annotations

import fnmatch
import importlib
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..errors import ModelNotFoundError, VisrepsError, closest, closest_hint
from ._card import ModelCard, source_card, unknown_card

if TYPE_CHECKING:
    from ._base import LoadedModel

#: source name → module implementing it (imported on first use; the module registers the source)
SOURCE_MODULES: dict[str, str] = {
    "torchvision": "visreps.models.torchvision",
    "timm": "visreps.models.timm",
    "cornet": "visreps.models.cornet",
    "clip": "visreps.models.clip",
    "openclip": "visreps.models.openclip",
    "keras": "visreps.models.keras",
    "hf": "visreps.models.hf",
    "ssl": "visreps.models.ssl",
    "ecoset": "visreps.models.ecoset",
    "salobjsub": "visreps.models.salobjsub",
    "harmonization": "visreps.models.harmonization",
    "dreamsim": "visreps.models.dreamsim",
}

#: the sources a bare model name (``alexnet``) is looked up in
BARE_NAME_SOURCES: tuple[str, ...] = ("torchvision", "timm", "cornet")


class LoadFunction(Protocol):
    """The ``load`` of a source."""

    def __call__(
        self, name: str, *, pretrained: bool = ..., weights: str | None = ..., seed: int = ..., device: Any = ...
    ) -> LoadedModel: ...


@dataclass(frozen=True)
class Source:
    """A registered model source (see the module docstring).

    Attributes:
        name: the source part of model ids (``timm`` in ``timm:resnet50``).
        load: builds ``source:name``.
        list_names: every name the source can build.
        available_offline: whether pretrained weights of a name are on this machine (``None``: never known).
        check_name: raises :class:`~visreps.errors.ModelNotFoundError` for a name it cannot build
            (``None``: the name must be one of ``list_names()``).
        optional: its dependencies are an extra (see the module docstring).
        module: the module that registered it.
        card: the catalogue card: one :class:`~visreps.models.ModelCard` for every name (its empty
            ``architecture`` is the name), or a function of the name (``None``: a card saying "unknown").
    """

    name: str
    load: LoadFunction
    list_names: Callable[[], list[str]]
    available_offline: Callable[[str], bool] | None = None
    check_name: Callable[[str], object] | None = None
    optional: bool = False
    module: str = ""
    card: Callable[[str], ModelCard] | ModelCard | None = None

    def describe(self, name: str) -> ModelCard:
        """The catalogue card of ``name``."""
        if self.card is None:
            return unknown_card(self.name, name)
        if isinstance(self.card, ModelCard):
            return source_card(self.card, name)
        return self.card(name)

    def check(self, name: str) -> None:
        """Raise :class:`~visreps.errors.ModelNotFoundError` unless this source can build ``name``."""
        if self.check_name is not None:
            self.check_name(name)
            return
        names = self.list_names()
        if name not in names:
            raise no_model_error(self.name, name, names)


def no_model_error(
    source: str, name: str, names: Iterable[str], *, tail: str = " (see `visreps models PATTERN`)"
) -> ModelNotFoundError:
    """``"{source} has no model {name!r}; closest: {source}:a, ...{tail}"``, the error of an unknown name."""
    return ModelNotFoundError(f"{source} has no model {name!r}{closest_hint(name, names, prefix=f'{source}:')}{tail}")


_REGISTRY: dict[str, Source] = {}

L = TypeVar("L", bound=LoadFunction)


def register_source(
    name: str,
    *,
    list_names: Callable[[], list[str]] | None = None,
    available_offline: Callable[[str], bool] | None = None,
    check_name: Callable[[str], object] | None = None,
    optional: bool = False,
    card: Callable[[str], ModelCard] | ModelCard | None = None,
) -> Callable[[L], L]:
    """Decorator of a source module's ``load``: registers the :class:`Source` ``name`` (see the module docstring).

    Without ``list_names``, the source is the module that defines ``load``: its ``list_names``,
    ``available_offline``, ``check_name`` and ``card`` (else ``CARD``), those defined above ``load``, are
    the source's. With ``list_names``, only the functions given are (a module that registers several sources).

    Re-importing the same module registers it again; another module taking an existing name is an error.
    """
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise VisrepsError(f"a source name is letters, digits, '-' and '_', got {name!r}")

    def decorate(load: L) -> L:
        module = getattr(load, "__module__", "") or ""
        old = _REGISTRY.get(name)
        if old is not None and old.module != module:
            raise VisrepsError(f"model source {name!r} is registered by {old.module} already (not {module})")
        given: dict[str, Any] = {
            "list_names": list_names,
            "available_offline": available_offline,
            "check_name": check_name,
            "card": card,
        }
        if list_names is None:  # the module's own: it is executing, so what stands above load is there
            own = vars(sys.modules[module]) if module in sys.modules else {}
            given = {k: v if v is not None else own.get(k) for k, v in given.items()}
            given["card"] = given["card"] or own.get("CARD")
        if not callable(given["list_names"]):
            raise VisrepsError(f"model source {name!r} ({module}) has no list_names function")
        _REGISTRY[name] = Source(name=name, load=load, optional=optional, module=module, **given)
        return load

    return decorate


def source_names() -> list[str]:
    """Every source: the declared table's, then those registered from elsewhere."""
    return list(SOURCE_MODULES) + sorted(set(_REGISTRY) - set(SOURCE_MODULES))


def get_source(source: str) -> Source:
    """The registered :class:`Source` ``source``, importing its module first if need be.

    Raises:
        ModelNotFoundError: no such source.
    """
    if source not in _REGISTRY and source in SOURCE_MODULES:
        importlib.import_module(SOURCE_MODULES[source])
    found = _REGISTRY.get(source)
    if found is None:
        if source in SOURCE_MODULES:  # a bug of the package, not of the caller
            raise VisrepsError(f"{SOURCE_MODULES[source]} does not register the model source {source!r}")
        raise ModelNotFoundError(
            f"unknown model source {source!r}; available sources: {', '.join(sorted(source_names()))}"
        )
    return found


def _names(source: str) -> list[str]:
    return list(get_source(source).list_names())


def resolve(model_id: str, sources: Iterable[str] | None = None) -> tuple[str, str]:
    """Split ``source:name``; a bare name resolves when exactly one of ``sources`` has it.

    Args:
        model_id: ``source:name``, or a bare name (``alexnet``, the 2021 spelling ``cornet-s``).
        sources: where a bare name is looked up (default: :data:`BARE_NAME_SOURCES`).

    Raises:
        ModelNotFoundError: empty, unknown or ambiguous; the message lists the closest ids.
    """
    if not isinstance(model_id, str) or not model_id.strip():
        raise ModelNotFoundError(f"model id must be a non-empty string like 'torchvision:alexnet', got {model_id!r}")
    model_id = model_id.strip()
    available = source_names()
    if ":" in model_id:
        source, name = model_id.split(":", 1)
        if source in available:
            return source, name
    cornet = re.fullmatch(r"cornet[-_ ]?(z|r|rt|s)", model_id, flags=re.IGNORECASE)
    if cornet and "cornet" in available:  # the 2021 spelling: cornet-s
        return "cornet", cornet.group(1).lower()
    searched = [s for s in (sources or BARE_NAME_SOURCES) if s in available]
    owners = [s for s in searched if model_id in _names(s)]
    if len(owners) == 1:
        return owners[0], model_id
    if len(owners) > 1:
        choices = ", ".join(f"{s}:{model_id}" for s in owners)
        raise ModelNotFoundError(f"model name {model_id!r} is ambiguous; write one of: {choices}")
    by_name: dict[str, list[str]] = {}
    for s in searched:
        for n in _names(s):
            by_name.setdefault(n, []).append(f"{s}:{n}")
    hint = [i for n in closest(model_id.split(":")[-1], by_name) for i in by_name[n]]
    msg = f"unknown model {model_id!r}" + (f"; closest: {', '.join(hint)}" if hint else "")
    raise ModelNotFoundError(msg + " (see `visreps models PATTERN`)")


def list_models(pattern: str | None = None, *, source: str | None = None) -> list[str]:
    """All model ids, optionally filtered by a shell-style ``pattern`` (``*resnet*``) or a substring.

    An optional source whose extra is missing lists nothing (loading from it says how to install it).
    """
    out: list[str] = []
    for s in [source] if source else source_names():
        src = get_source(s)
        try:
            names = src.list_names()
        except ImportError:  # MissingExtraError included
            if src.optional:
                continue
            raise
        out += [f"{s}:{n}" for n in names]
    if pattern:
        pat = pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"
        out = [m for m in out if fnmatch.fnmatch(m.lower(), pat.lower())]
    return out


def available_offline(model_id: str) -> bool:
    """Whether the pretrained weights of ``model_id`` are already on this machine."""
    source, name = resolve(model_id)
    fn = get_source(source).available_offline
    return bool(fn is not None and fn(name))


def model_card(model_id: str) -> ModelCard:
    """The catalogue card of ``model_id`` (family, architecture, training data, objective, licence, paper)."""
    source, name = resolve(model_id)
    src = get_source(source)
    src.check(name)
    return src.describe(name)


def catalogue(pattern: str | None = None, *, source: str | None = None) -> list[dict[str, Any]]:
    """Every model id matching ``pattern`` (as :func:`list_models`) with its card and ``offline`` flag.

    Returns:
        One dict per id: ``id``, the :class:`~visreps.models.ModelCard` fields (``family``,
        ``architecture``, ``training_data``, ``objective``, ``weights_licence``, ``paper``, ``url``,
        ``sha256``) and ``offline`` (pretrained weights on this machine).
    """
    rows = []
    for mid in list_models(pattern, source=source):
        src_name, name = mid.split(":", 1)
        src = get_source(src_name)
        fn = src.available_offline
        rows.append({"id": mid, **src.describe(name).to_dict(), "offline": bool(fn is not None and fn(name))})
    return rows
