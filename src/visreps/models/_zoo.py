"""Published checkpoints of research model families, and the catalogue card every model id carries.

A family (self-supervised ResNets, DINO, Ecoset, ...) is a table of :class:`ZooModel` entries; each says
how the model id becomes a network with the original weights:

* ``build()``: the architecture, randomly initialised (torchvision/timm where they have it);
* ``checkpoint``: the published file (:class:`Checkpoint`: address, cache file name, sha256);
* ``keys``: a :class:`KeyMap` from the checkpoint's own layout (nesting such as VISSL's
  ``classy_state_dict``, prefixes such as ``module.``/``backbone.``, dropped heads) to ``build()``'s
  state_dict keys; errors about keys are reported in the checkpoint's own terms;
* ``preprocessing``: the transform the model was trained with;
* ``card``: the :class:`ModelCard` shown by ``visreps models`` (family, architecture, training data,
  objective, weights licence, paper).

:func:`register_zoo` turns such a table into a model source (``ssl:simclr-rn50``): pretrained weights are
downloaded once into the cache (``<cache>/torch/hub/checkpoints``), checked against their sha256, and
recorded in the metadata (address, file, sha256); ``pretrained=False`` is a seeded random
initialisation; ``weights=FILE`` loads a local copy of the original file through the same key map.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from http.client import HTTPException
from pathlib import Path
from typing import Any
from urllib.error import URLError

from ..errors import WeightsError
from ._base import LoadedModel, Preprocessing, file_sha256
from ._card import ModelCard
from ._registry import no_model_error, register_source
from .custom import mismatch_report, shape_mismatches

__all__ = [
    "Checkpoint",
    "KeyMap",
    "ModelCard",
    "ZooModel",
    "fetch_checkpoint",
    "load_zoo_model",
    "register_zoo",
    "verify_sha256",
]


@dataclass(frozen=True)
class Checkpoint:
    """A published weights file.

    Attributes:
        url: its address.
        sha256: its full sha256 (64 hex digits), checked at download and at every load; ``None``: not
            pinned (the file's hash is recorded in the metadata all the same).
        filename: its name in the cache (default: the last part of ``url``); give one when two
            families publish files under the same name.
    """

    url: str
    sha256: str | None = None
    filename: str | None = None

    @property
    def name(self) -> str:
        return self.filename or os.path.basename(self.url.split("?", 1)[0])

    @property
    def path(self) -> Path:
        """Where the cache keeps (or will keep) the file."""
        from ..cache import torch_checkpoint_dir

        return torch_checkpoint_dir() / self.name


@dataclass(frozen=True)
class KeyMap:
    """From a checkpoint's own layout to the keys of the architecture visreps builds.

    Applied in order: ``nested`` (dotted path of dict keys holding the weights, e.g.
    ``classy_state_dict.base_model.model.trunk``; each part is looked up as written, so keys
    containing dots are not supported there), ``drop`` (keys starting with any of these prefixes,
    e.g. projection heads, are left out), ``prefixes`` (pairs ``(original, new)``: the first pair
    whose original prefix starts a key rewrites it; keys no pair matches are kept as they are).
    ``rename`` is a function applied last (for layouts that prefixes cannot express); give
    ``unrename`` with it so errors can name keys in the checkpoint's terms.
    """

    nested: str = ""
    drop: tuple[str, ...] = ()
    prefixes: tuple[tuple[str, str], ...] = ()
    rename: Callable[[str], str] | None = None
    unrename: Callable[[str], str] | None = None

    def unwrap(self, obj: Any, path: Path | str) -> Mapping[str, Any]:
        """The weights dict inside a checkpoint object (``nested`` followed)."""
        for part in [p for p in self.nested.split(".") if p]:
            if not isinstance(obj, Mapping) or part not in obj:
                have = ", ".join(map(str, list(obj)[:8])) if isinstance(obj, Mapping) else type(obj).__name__
                raise WeightsError(
                    f"checkpoint {str(path)!r} has no {part!r} on the path {self.nested!r} (found: {have}); "
                    "is it the original file of this model?"
                )
            obj = obj[part]
        if not isinstance(obj, Mapping):
            raise WeightsError(f"checkpoint {str(path)!r} holds no dict of tensors at {self.nested or 'its top'!r}")
        return obj

    def to_model(self, key: str) -> str | None:
        """The architecture's name of a checkpoint key (``None``: dropped)."""
        if any(key.startswith(d) for d in self.drop):
            return None
        for old, new in self.prefixes:
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        return self.rename(key) if self.rename else key

    def to_original(self, key: str) -> str:
        """The checkpoint's name of an architecture key (for error messages)."""
        if self.unrename:
            key = self.unrename(key)
        for old, new in self.prefixes:
            if key.startswith(new) and (new or old):
                return old + key[len(new) :]
        return key

    def convert(self, obj: Any, path: Path | str) -> tuple[dict[str, Any], dict[str, str]]:
        """Returns the state_dict in the architecture's keys and, for each of its keys, the original key."""
        import torch

        out: dict[str, Any] = {}
        origin: dict[str, str] = {}
        for key, value in self.unwrap(obj, path).items():
            if not isinstance(value, torch.Tensor):
                continue
            new = self.to_model(str(key))
            if new is None:
                continue
            out[new] = value
            origin[new] = str(key)
        return out, origin


def load_mapped(module: Any, obj: Any, keys: KeyMap, path: Path | str, what: str) -> None:
    """Load a checkpoint object into ``module`` through ``keys``, strictly.

    Raises:
        WeightsError: keys missing, unexpected or of the wrong shape, named as the checkpoint names them.
    """
    sd, origin = keys.convert(obj, path)
    own = module.state_dict()
    missing = [keys.to_original(k) for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [origin[k] for k in sd if k not in own]
    wrong = shape_mismatches(own, sd, origin.__getitem__)
    if missing or unexpected or wrong:
        labels = ("keys missing from the file", "unexpected keys in the file", "shape mismatches")
        report = mismatch_report(missing, unexpected, wrong, labels=labels, most=6)
        raise WeightsError(
            f"checkpoint {str(path)!r} does not fit {what}: {report}. Is it the original file of this model id "
            "(not a fine-tuned or converted copy)?"
        )
    for k, v in own.items():  # counters old files lack; they play no part in evaluation
        if k not in sd and k.endswith("num_batches_tracked"):
            sd[k] = v
    module.load_state_dict(sd, strict=True)


@dataclass(frozen=True)
class ZooModel:
    """One model id of a family (see the module docstring).

    Attributes:
        build: the architecture, randomly initialised from the global torch RNG.
        card: the catalogue entry.
        checkpoint: the published file (``None``: no pretrained weights, random or ``weights=`` only).
        keys: the checkpoint's layout → ``build()``'s keys.
        preprocessing: the transform it was trained with.
        prefix_tokens: class/register tokens of a transformer's outputs (``None``: the module's own).
        after_load: applied to the module after the weights are in (e.g. turn a head into identity).
    """

    build: Callable[[], Any]
    card: ModelCard
    checkpoint: Checkpoint | None = None
    keys: KeyMap = field(default_factory=KeyMap)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    prefix_tokens: int | None = None
    after_load: Callable[[Any], Any] | None = None


def verify_sha256(path: Path, expected: str | None, url: str | None = None) -> str:
    """The sha256 of ``path``; raises :class:`WeightsError` if ``expected`` is given and differs."""
    actual = file_sha256(path)
    if expected and actual.lower() != expected.lower():
        where = f" (published at {url})" if url else ""
        raise WeightsError(
            f"{path} is not the published file{where}: its sha256 is {actual}, expected {expected}; "
            f"delete it and download it again"
        )
    return actual


def fetch_checkpoint(ckpt: Checkpoint, what: str) -> Path:
    """The cached file of ``ckpt``, downloaded first if missing (unless offline), its sha256 checked.

    Raises:
        WeightsError: offline and not cached, the download failed (naming the address and the cache
            path to place the file at), or the file's sha256 is not the pinned one (naming both).
    """
    import torch

    from ..cache import missing_weights_error, offline

    path = ckpt.path
    if path.is_file():
        return path
    if offline():
        raise missing_weights_error(what, path, ckpt.url)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(ckpt.url, str(tmp), progress=False)
        verify_sha256(tmp, ckpt.sha256, ckpt.url)
        os.replace(tmp, path)
    except (OSError, URLError, HTTPException) as e:
        raise missing_weights_error(what, path, ckpt.url) from e
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _seeded_build(model: ZooModel, seed: int) -> Any:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model.build()


def load_zoo_model(
    source: str,
    name: str,
    model: ZooModel,
    *,
    pretrained: bool = True,
    weights: str | os.PathLike | None = None,
    seed: int = 0,
    device: Any = None,
) -> LoadedModel:
    """Build ``model`` and give it its weights: a local copy of the original file, the published file, or a seed.

    The weights record in the metadata holds the address, the file and its sha256 (and whether that
    hash is the pinned one).
    """
    from .custom import open_checkpoint, pickle_allowed

    model_id = f"{source}:{name}"
    record: dict[str, Any]
    path: Path | None = None
    if weights is not None:
        path = Path(weights).expanduser()
        record = {"kind": "file", "file": str(path.resolve())}
    elif pretrained:  # the file first: a missing one is reported before the network is built
        if model.checkpoint is None:
            raise WeightsError(
                f"{model_id} has no published weights; use random weights (--random) or a file (--weights FILE)"
            )
        path = fetch_checkpoint(model.checkpoint, model_id)
        record = {"kind": "pretrained", "name": model_id, "url": model.checkpoint.url, "file": str(path)}
    else:
        record = {"kind": "random", "seed": seed}
    module = _seeded_build(model, seed)
    if path is not None:
        pinned = model.checkpoint.sha256 if (model.checkpoint and weights is None) else None
        sha = verify_sha256(path, pinned, model.checkpoint.url if model.checkpoint else None)
        obj, unpickled = open_checkpoint(path, allow_pickle=pickle_allowed())
        load_mapped(module, obj, model.keys, path, model_id)
        record.update(sha256=sha, sha256_pinned=bool(pinned))
        if unpickled:
            record["allow_pickle"] = True
    if model.after_load is not None:
        module = model.after_load(module) or module
    return LoadedModel.on_device(
        module,
        device,
        preprocessing=model.preprocessing,
        model_id=model_id,
        weights=record,
        prefix_tokens=model.prefix_tokens,
    )


def register_zoo(source: str, models: Mapping[str, ZooModel], *, module: str) -> Callable[..., LoadedModel]:
    """Register the model source ``source`` whose ids are the keys of ``models``; returns its ``load``.

    Args:
        source: the source part of the ids.
        models: name → :class:`ZooModel`.
        module: ``__name__`` of the module that holds the table (where the source is said to come from).
    """

    def list_names() -> list[str]:
        return list(models)

    def check_name(name: str) -> str:
        if name not in models:
            raise no_model_error(source, name, models, tail=f" (see `visreps models {source}:`)")
        return name

    def available_offline(name: str) -> bool:
        ckpt = models[name].checkpoint if name in models else None
        return ckpt is not None and ckpt.path.is_file()

    def card(name: str) -> ModelCard:
        entry = models[check_name(name)]
        ckpt = entry.checkpoint
        if ckpt is None or entry.card.url:
            return entry.card
        return replace(entry.card, url=ckpt.url, sha256=entry.card.sha256 or ckpt.sha256)

    def load(name: str, **options: Any) -> LoadedModel:  # pretrained, weights, seed, device: load_zoo_model's
        return load_zoo_model(source, name, models[check_name(name)], **options)

    load.__module__ = module
    register_source(
        source, list_names=list_names, available_offline=available_offline, check_name=check_name, card=card
    )(load)
    return load
