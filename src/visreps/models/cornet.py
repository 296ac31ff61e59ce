"""CORnet-Z, -R, -RT and -S (Kubilius, Schrimpf et al., DiCarlo lab), written for visreps.

The four networks are rebuilt here from their published architecture (github.com/dicarlolab/CORnet)
so that nothing outside visreps has to be installed. Module names, layer types, hyperparameters and
parameter shapes are those of the original release, so ``print(model)`` shows the original tree and
the published ImageNet checkpoints load unchanged (their keys carry a ``module.`` prefix because
they were saved from ``nn.DataParallel``; the loader strips it).

Model ids: ``cornet:z``, ``cornet:r``, ``cornet:rt``, ``cornet:s`` (``S``, ``cornet_s``, ``CORnet-S``
are accepted too).

Areas and time steps. Each network has four areas ``V1``, ``V2``, ``V4``, ``IT`` and a ``decoder``.
The recurrent areas run several time steps per forward pass and call their ``output`` module once
per step, as the original does, so a forward hook on ``V4.output`` fires once per step (visreps
names the steps ``V4.output@t0`` ... ``V4.output@t3``):

=========  ============================================  ======================================
model      steps per forward pass                        recurrence
=========  ============================================  ======================================
CORnet-Z   1 in every area                               none (feedforward)
CORnet-S   V1 1, V2 2, V4 4, IT 2                        within an area: step t > 0 feeds the
                                                         area's own output back through conv1-3
CORnet-R   ``times`` (default 5) in V1, V2, V4 and IT    state of each area; the area above sees
                                                         this step's output (legacy unrolling)
CORnet-RT  ``times`` (default 5) in V1, V2, V4 and IT    state of each area; the area above sees
                                                         the previous step's output (biological
                                                         unrolling, the "CORnet-R" of the paper)
=========  ============================================  ======================================

In CORnet-R and -RT the areas above V1 start (t = 0) from an all-zero input, so IT first sees
the image at t = 1 (R) or t = 3 (RT); the decoder reads IT after the last step.

Pretrained weights are the original ImageNet checkpoints, downloaded once into visreps's cache
(``<cache>/torch/hub/checkpoints/cornet_s-1d3f7974.pth`` etc.; see :mod:`visreps.cache`).
Images are preprocessed as in the original validation: resize 256, centre crop 224, ImageNet
mean/std.
"""

from __future__ import annotations

import os
from http.client import HTTPException
from pathlib import Path
from typing import Any
from urllib.error import URLError

import torch
from torch import nn

from ..errors import ModelNotFoundError, VisrepsError, WeightsError
from ._base import LoadedModel, Preprocessing, file_sha256
from ._card import ModelCard
from ._cornet_nets import (
    AREAS,
    DEFAULT_TIMES,
    S_TIMES,
    CORblock_R,
    CORblock_RT,
    CORblock_S,
    CORblock_Z,
    CORnet_R,
    CORnet_RT,
    CORnet_S,
    CORnet_Z,
    Flatten,
    _check_times,
)
from ._registry import register_source

#: the catalogue card of every cornet model (the architecture is the model's name)
CARD = ModelCard(family="CORnet", architecture="", objective="supervised classification",
                 training_data="ImageNet-1k", weights_licence="GPL-3.0 (dicarlolab/CORnet release)",
                 paper="Kubilius et al., Brain-like object recognition with high-performing shallow recurrent ANNs, "
                 "NeurIPS 2019")  # fmt: skip


__all__ = [
    "AREAS",
    "DEFAULT_TIMES",
    "S_TIMES",
    "CORblock_R",
    "CORblock_RT",
    "CORblock_S",
    "CORblock_Z",
    "CORnet_R",
    "CORnet_RT",
    "CORnet_S",
    "CORnet_Z",
    "Flatten",
    "available_offline",
    "build",
    "check_name",
    "checkpoint_path",
    "checkpoint_url",
    "fetch_checkpoint",
    "list_names",
    "load",
]

#: Hash tag in the file name of each published checkpoint.
_CHECKPOINT_TAGS: dict[str, str] = {"r": "5930a990", "rt": "933c001c", "s": "1d3f7974", "z": "5c427c9c"}
_URL = "https://s3.amazonaws.com/cornet-models/cornet_{name}-{tag}.pth"

#: Names of the one published set of weights of each variant, accepted as ``weights=``.
_WEIGHT_TAGS = ("DEFAULT", "IMAGENET")

# --------------------------------------------------------------------------- source protocol


def list_names() -> list[str]:
    """The CORnet variants: ``["r", "rt", "s", "z"]`` (model ids ``cornet:r`` etc.)."""
    return sorted(_CHECKPOINT_TAGS)


def _canonical(name: str) -> str | None:
    if not isinstance(name, str):
        return None
    key = name.strip().lower().replace("-", "_").replace(":", "_")
    if key.startswith("cornet"):
        key = key[len("cornet") :].lstrip("_")
    return key if key in _CHECKPOINT_TAGS else None


def check_name(name: str) -> str:
    """Validate a CORnet name and return its canonical form.

    Args:
        name: ``z``, ``r``, ``rt`` or ``s`` in any case, optionally prefixed ``cornet_``/``cornet-``
            (``S``, ``cornet_s``, ``CORnet-S``).

    Returns:
        The canonical name (``"s"``).

    Raises:
        ModelNotFoundError: the name is not a CORnet variant; the message lists the valid ids.
    """
    key = _canonical(name)
    if key is None:
        choices = ", ".join(f"cornet:{n}" for n in list_names())
        raise ModelNotFoundError(f"cornet has no model {name!r}; choose one of {choices} (e.g. cornet:s)")
    return key


def checkpoint_url(name: str) -> str:
    """URL of the published ImageNet checkpoint of CORnet ``name``."""
    key = check_name(name)
    return _URL.format(name=key, tag=_CHECKPOINT_TAGS[key])


def checkpoint_path(name: str) -> Path:
    """Where visreps's cache keeps the checkpoint of CORnet ``name`` (whether or not it is there)."""
    from ..cache import torch_checkpoint_dir

    return torch_checkpoint_dir() / os.path.basename(checkpoint_url(name))


def available_offline(name: str) -> bool:
    """Whether the pretrained checkpoint of CORnet ``name`` is already in the cache."""
    try:
        return checkpoint_path(name).is_file()
    except ModelNotFoundError:
        return False


def build(name: str, times: int | None = None) -> nn.Module:
    """Build a randomly initialised CORnet (in train mode, on the CPU, from the global RNG).

    Args:
        name: ``z``, ``r``, ``rt`` or ``s`` (see :func:`check_name`).
        times: time steps of CORnet-R/-RT (default 5); CORnet-Z and -S have fixed steps.

    Returns:
        The network, with the module names of the original release.

    Raises:
        ModelNotFoundError: unknown name.
        VisrepsError: ``times`` given for CORnet-Z/-S, or not a positive integer.
    """
    key = check_name(name)
    if key in ("r", "rt"):
        times = DEFAULT_TIMES if times is None else _check_times(times)
        return CORnet_R(times) if key == "r" else CORnet_RT(times)
    if times is not None:
        fixed = "1 step per area" if key == "z" else "V2 2, V4 4, IT 2 steps"
        raise VisrepsError(
            f"times={times!r}: only cornet:r and cornet:rt take a number of time steps; "
            f"cornet:{key} has fixed steps ({fixed}); leave times unset"
        )
    return CORnet_Z() if key == "z" else CORnet_S()


def fetch_checkpoint(name: str) -> Path:
    """The cached checkpoint of CORnet ``name``, downloaded first if missing (unless offline).

    Returns:
        Path of the checkpoint file in the cache.

    Raises:
        WeightsError: offline and not cached, or the download failed; the message names the URL
            and the path where to place the file by hand.
    """
    from ..cache import missing_weights_error, offline

    key = check_name(name)
    url, path = checkpoint_url(key), checkpoint_path(key)
    if path.is_file():
        return path
    if offline():
        raise missing_weights_error(f"cornet:{key}", path, url)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(tmp))
        os.replace(tmp, path)
    except (OSError, URLError, HTTPException) as e:  # URLError is an OSError; HTTPException is not
        raise missing_weights_error(f"cornet:{key}", path, url) from e
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _fill_num_batches_tracked(module: nn.Module, state_dict: dict) -> dict:
    """Add BatchNorm ``num_batches_tracked`` counters a checkpoint lacks (PyTorch < 0.4.1 files).

    PyTorch's own BatchNorm loader does the same for old files; the counter plays no part in
    evaluation. Other missing keys are left for the strict check to report.
    """
    out = dict(state_dict)
    for key, value in module.state_dict().items():
        if key.endswith(".num_batches_tracked") and key not in out:
            if key[: -len("num_batches_tracked")] + "running_mean" in out:
                out[key] = value.clone()
    return out


def _load_checkpoint(module: nn.Module, path: Path, *, allow_pickle: bool = False) -> bool:
    """Load a checkpoint into ``module`` (``torch.load(weights_only=True)`` unless ``allow_pickle``).

    Returns:
        Whether the file needed full unpickling (only possible with ``allow_pickle``).
    """
    from .custom import extract_state_dict, load_state_dict_strict, open_checkpoint

    obj, unpickled = open_checkpoint(path, allow_pickle=allow_pickle)
    sd = extract_state_dict(obj, path)
    load_state_dict_strict(module, _fill_num_batches_tracked(module, sd), path)
    return unpickled


@register_source("cornet")
def load(
    name: str, *, pretrained: bool = True, weights: str | os.PathLike | None = None, seed: int = 0, device: Any = None
) -> LoadedModel:
    """Load CORnet ``name`` for extraction.

    Args:
        name: ``z``, ``r``, ``rt`` or ``s`` (see :func:`check_name`).
        pretrained: load the original ImageNet checkpoint (downloaded once into the cache);
            ``False``: random initialisation from ``seed``.
        weights: a local weights file (state_dict, with or without ``module.`` prefixes, or a
            checkpoint dict holding one under ``state_dict``); overrides ``pretrained``. The tags
            ``"DEFAULT"`` and ``"imagenet"`` name the published checkpoint (same as ``pretrained``).
        seed: seed of the random initialisation (the global RNG is left untouched).
        device: ``auto``/``None``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Returns:
        The network in eval mode on the device, with ImageNet preprocessing (resize 256, centre
        crop 224) and a record of its weights (URL, file and sha256, or the seed).

    Raises:
        ModelNotFoundError: unknown name.
        WeightsError: weights unavailable (offline or download failed) or not fitting the model.
    """
    from ..device import resolve_device

    key = check_name(name)
    dev = resolve_device(device)
    if weights is not None and str(weights).upper() in _WEIGHT_TAGS and not Path(weights).expanduser().exists():
        weights, pretrained = None, True
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = build(key)
    if weights is not None:
        from .custom import pickle_allowed

        path = Path(weights).expanduser()
        unpickled = _load_checkpoint(module, path, allow_pickle=pickle_allowed())  # load_model's opt-in
        record: dict[str, Any] = {"kind": "file", "file": str(path.resolve()), "sha256": file_sha256(path)}
        if unpickled:
            record["allow_pickle"] = True
    elif pretrained:
        path = fetch_checkpoint(key)
        try:
            _load_checkpoint(module, path)
        except WeightsError as e:
            raise WeightsError(f"{e} The cached file may be damaged: delete {path} to download it again.") from e
        record = {
            "kind": "pretrained",
            "name": f"cornet_{key} ImageNet (dicarlolab)",
            "url": checkpoint_url(key),
            "file": str(path),
            "sha256": file_sha256(path),
        }
    else:
        record = {"kind": "random", "seed": seed}
    return LoadedModel.on_device(
        module,
        dev,
        preprocessing=Preprocessing(),
        model_id=f"cornet:{key}",
        weights=record,
    )
