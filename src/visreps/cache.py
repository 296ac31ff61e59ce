"""One weights cache for every source, and the offline switch.

* ``VISREPS_CACHE`` (or ``set_cache_dir``) moves the cache; default ``~/.cache/visreps``.
  Torch checkpoints live in ``<cache>/torch/hub/checkpoints``, Hugging Face files (timm,
  OpenCLIP) in ``<cache>/huggingface``.
* ``VISREPS_OFFLINE=1`` (or ``set_offline(True)``, CLI ``--offline``) never touches the network:
  a missing file is an error that names the file and where to put it.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import WeightsError

_override: dict = {}


def cache_dir() -> Path:
    d = _override.get("dir") or os.environ.get("VISREPS_CACHE") or "~/.cache/visreps"
    return Path(d).expanduser()


def set_cache_dir(path: str | os.PathLike | None) -> None:
    """Move the weights cache for this process (``None`` restores the default)."""
    if path is None:
        _override.pop("dir", None)
    else:
        _override["dir"] = str(path)


def offline() -> bool:
    if "offline" in _override:
        return bool(_override["offline"])
    return os.environ.get("VISREPS_OFFLINE", "").lower() in ("1", "true", "yes")


def set_offline(value: bool | None) -> None:
    if value is None:
        _override.pop("offline", None)
    else:
        _override["offline"] = bool(value)


def torch_checkpoint_dir() -> Path:
    return cache_dir() / "torch" / "hub" / "checkpoints"


def hf_cache_dir() -> Path:
    return cache_dir() / "huggingface"


def missing_weights_error(what: str, path: Path, url: str | None) -> WeightsError:
    how = f"download {url} and place it at {path}" if url else f"place the file at {path}"
    reason = "offline mode is on" if offline() else "the download failed"
    return WeightsError(
        f"pretrained weights for {what} are not in the cache ({reason}): {how}, "
        f"or use random weights (--random) or a local file (--weights FILE)"
    )
