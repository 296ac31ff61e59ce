"""The ``hf:`` ids and the Hugging Face Hub: parsing ``ORG/NAME[@REVISION]`` and folders, the cache, quiet loading.

See :mod:`visreps.models.hf` for what the ids mean.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MissingExtraError, ModelNotFoundError, WeightsError

INSTALL_HINT = 'pip install "visreps[hf]"'
#: a Hub repository id: NAME or ORG/NAME (letters, digits, ``-``, ``_``, ``.``; at most 96 characters)
_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?")
#: a revision: branch, tag or commit (branches may hold ``/``, e.g. ``refs/pr/3``)
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,254}")
#: the weights files of a saved model, preferred first
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def import_transformers() -> Any:
    """``transformers``, or a :class:`~visreps.errors.MissingExtraError` saying how to install it."""
    try:
        import transformers
    except ImportError as e:
        raise MissingExtraError(f"Hugging Face models (hf:...) need the package transformers: {INSTALL_HINT}") from e
    return transformers


@dataclass(frozen=True)
class HFName:
    """A parsed ``hf:`` name: a local folder, or a Hub repository with an optional revision."""

    folder: Path | None = None
    repo: str | None = None
    revision: str | None = None

    @property
    def source(self) -> str:
        """What ``from_pretrained`` takes: the folder's path or the repository id."""
        return str(self.folder) if self.folder is not None else str(self.repo)

    def describe(self) -> str:
        if self.folder is not None:
            return f"folder {str(self.folder)!r}"
        return f"hf:{self.repo}@{self.revision or 'main'}"


def _looks_like_path(s: str) -> bool:
    """A name that can only be a path: absolute, relative (``./``), ``~``, a drive, or more than ORG/NAME."""
    head = s.partition("@")[0]
    return s.startswith(("/", ".", "~")) or "\\" in s or head.count("/") > 1 or bool(re.match(r"[A-Za-z]:", s))


def parse_name(name: str) -> HFName:
    """``"ORG/NAME@REV"`` → a Hub :class:`HFName`; an existing folder (or a path-like name) → a folder.

    Raises:
        ModelNotFoundError: a malformed id, a path to a missing folder, or a folder without ``config.json``.
    """
    s = str(name).strip()
    if not s:
        raise ModelNotFoundError("hf: needs a Hub id or a folder, e.g. hf:facebook/dinov2-small or hf:./my_model")
    path = Path(s).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"hf: folder {str(path)!r} has no config.json; give a folder written by save_pretrained "
                "(config.json and the weights, optionally preprocessor_config.json)"
            )
        return HFName(folder=path.resolve())
    if _looks_like_path(s):
        raise ModelNotFoundError(
            f"hf: folder {str(path)!r} does not exist; give a folder written by save_pretrained, "
            "or a Hub id such as hf:facebook/dinov2-small"
        )
    repo, at, revision = s.partition("@")
    if not _REPO.fullmatch(repo) or (at and not _REVISION.fullmatch(revision)):
        raise ModelNotFoundError(
            f"hf:{s} is not a valid Hugging Face id; write hf:ORG/NAME, hf:ORG/NAME@REVISION "
            "(a branch, tag or commit) or hf:FOLDER (a folder written by save_pretrained)"
        )
    return HFName(repo=repo, revision=revision or None)


def _cached_file(repo: str, filename: str, revision: str | None) -> Path | None:
    """The file of ``repo`` at ``revision`` in visreps' Hugging Face cache, if it is there."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on huggingface_hub
        return None
    from ..cache import hf_cache_dir

    hit = try_to_load_from_cache(repo, filename, cache_dir=str(hf_cache_dir()), revision=revision)
    return Path(hit) if isinstance(hit, str) else None


def _commit(hf: HFName) -> str | None:
    """The commit the revision of a Hub id resolved to (the snapshot folder of its cached config.json)."""
    if hf.repo is None:
        return None
    hit = _cached_file(hf.repo, "config.json", hf.revision)
    return hit.parent.name if hit is not None else None


def _missing(hf: HFName, reason: BaseException | None = None) -> WeightsError:
    """The error for files of a Hub id that are neither in the cache nor downloadable."""
    from ..cache import hf_cache_dir, offline

    assert hf.repo is not None
    rev = hf.revision or "main"
    detail = str(reason).strip().splitlines()[0][:160] if reason is not None and str(reason).strip() else ""
    why = "offline mode is on" if offline() else f"the download failed: {type(reason).__name__}: {detail}"
    return WeightsError(
        f"hf:{hf.repo} at revision {rev} is not in the cache {hf_cache_dir()} ({why}): run once online to download "
        f"it, or `hf download {hf.repo} --revision {rev} --cache-dir {hf_cache_dir()}`, or save the model with "
        "save_pretrained and use hf:FOLDER"
    )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """transformers' loading reports and progress bars off (what matters goes into the weights record)."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _hub_kwargs(hf: HFName) -> dict[str, Any]:
    from ..cache import hf_cache_dir, offline

    if hf.folder is not None:
        return {"local_files_only": True}
    return {"revision": hf.revision, "cache_dir": str(hf_cache_dir()), "local_files_only": offline()}
