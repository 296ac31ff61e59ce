"""Exceptions raised by visreps.

Every error carries a message that names the bad value and the way out; the CLI prints that
message as one line and exits with code 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class VisrepsError(Exception):
    """Base class of all user-facing visreps errors."""


class ModelNotFoundError(VisrepsError, KeyError):
    """An unknown or ambiguous model id."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class LayerNotFoundError(VisrepsError, KeyError):
    """A layer name that the model does not have."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ImageError(VisrepsError):
    """An image that cannot be found, read or decoded."""


class WeightsError(VisrepsError):
    """A weights file that does not fit the architecture, or weights that are not available."""


class OutputExistsError(VisrepsError, FileExistsError):
    """An output that would be overwritten without consent."""


class DamagedOutputError(VisrepsError):
    """A file of an output folder that does not match the folder's ``metadata.json`` (missing, truncated, altered)."""


class ExtractionInterrupted(VisrepsError):
    """Ctrl-C during an extraction. ``done`` of ``total`` images are written in ``folder`` (``None`` in memory);
    the same call with ``resume=True`` (``--resume``) continues from there."""

    def __init__(self, done: int, total: int, folder=None):
        self.done, self.total, self.folder = done, total, None if folder is None else str(folder)
        msg = f"interrupted after {done} of {total} images"
        if self.folder is not None:
            msg += (
                f"; {self.folder} holds the finished batches (*.partial files): "
                "continue with the same command plus --resume"
            )
        super().__init__(msg)


class MissingExtraError(VisrepsError, ImportError):
    """An optional dependency that is not installed."""


def closest(name: str, choices: Iterable[str], n: int = 5) -> list[str]:
    """The up to ``n`` entries of ``choices`` most similar to ``name``."""
    choices = list(choices)
    found = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if len(found) < n:
        low = name.lower()
        found += [c for c in choices if low and low in c.lower() and c not in found][: n - len(found)]
    return found


def closest_hint(name: str, choices: Iterable[str], *, prefix: str = "", lead: str = "; closest: ") -> str:
    """``"; closest: a, b"`` (each choice after ``prefix``) for the choices most like ``name``, else ``""``."""
    hint = closest(name, choices)
    return f"{lead}{', '.join(prefix + h for h in hint)}" if hint else ""
