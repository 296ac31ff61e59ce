"""What an output format is: one :class:`Format` object per module of :mod:`visreps.storage.formats`.

A format answers every question the folder sink, the readers and the disk plan ask about it: its file
names (one file per layer, or one file or store for all layers), the names a run may leave behind
(partial and staging names, which the ownership record must list), the rows it can hold, the extra
bytes it needs while it writes, how it writes (a writer per layer, after an optional store shared by
all layers) and how it reads a layer back (checked against ``metadata.json``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from ...errors import VisrepsError
from ..folder import PARTIAL


class LayerWriter(Protocol):
    """Writes the rows of one layer (``write``), then ends (``finish`` returns the partial file, or ``None`` when
    the layer lives in a store finished as a whole) or stops (``abort``)."""

    def write(self, start: int, rows: np.ndarray) -> None: ...


class Store(Protocol):
    """One file or directory holding every layer (hdf5, zarr): ``add`` a layer, ``finish`` or ``abort`` all."""

    def add(self, layer: str, row_shape: tuple, n_rows: int, dtype: Any = np.float32) -> LayerWriter: ...

    def finish(self, n_rows: int) -> Path: ...

    def abort(self) -> None: ...


def safe_file_name(layer: str) -> str:
    """A layer name with the characters unsafe in file names replaced."""
    return re.sub(r"[^A-Za-z0-9._@-]", "_", layer)


def rows_per_chunk(row_shape: tuple, n_rows: int, dtype: Any = np.float32) -> int:
    """Rows per chunk of a chunked store (hdf5, zarr): about 1 MiB, at least one row, at most every row."""
    row_bytes = int(np.prod(row_shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    return int(max(1, min(n_rows, (1 << 20) // max(1, row_bytes))))


def check_resumed(what: str, layer: str, shape: tuple, n_rows: int, row_shape: tuple) -> None:
    """A store's existing array of ``layer`` (a dataset, an array) has the shape the resumed run expects."""
    if tuple(shape) != (n_rows, *row_shape):
        raise VisrepsError(f"cannot resume: {what} {layer!r} has shape {tuple(shape)}, expected {(n_rows, *row_shape)}")


class Format:
    """One output format. Subclasses set the class attributes and override the writer and reader hooks."""

    #: the name of ``--format`` (a key of :data:`visreps.options.FORMATS`)
    name: ClassVar[str] = ""
    #: the file suffix of a layer file (or of the one file)
    suffix: ClassVar[str] = ""
    #: other spellings accepted for the name (``h5`` for ``hdf5``)
    aliases: ClassVar[tuple[str, ...]] = ()
    #: the one file (or store) holding every layer, e.g. ``features.h5``; ``None``: one file per layer
    one_file: ClassVar[str | None] = None
    #: the one file is a directory (a zarr store): sized and hashed over its files
    directory: ClassVar[bool] = False
    #: the number of dimensions a row may have (``txt``: 1, a 2-D array); ``None``: any
    row_ndim: ClassVar[int | None] = None
    #: rows are written once, in order (``txt``): a resumed run truncates the file at the recorded size
    append_only: ClassVar[bool] = False
    #: staging file suffix of formats converted at the end (``mat``, ``pt``: a ``.stage.npy``)
    stage: ClassVar[str | None] = None
    #: the bytes are known before the run, so the free space is checked then (not for text)
    size_known: ClassVar[bool] = True

    # ------------------------------------------------------------------ names and rules
    def layer_file(self, layer: str) -> str:
        """The file of ``layer`` in an output folder (the one file for formats that hold every layer in one)."""
        return self.one_file or safe_file_name(layer) + self.suffix

    def planned_names(self, fname: str) -> set[str]:
        """Every name a run may create for the file ``fname``: itself, its partial name and staging names."""
        names = {fname, fname + PARTIAL}
        if self.stage is not None:
            names.add(fname + self.stage + PARTIAL)
        return names

    def rows_fit(self, row_shape: tuple) -> bool:
        """Whether rows of this shape (per image) can be written in this format."""
        return self.row_ndim is None or len(row_shape) == self.row_ndim

    def check_rows(self, layer: str | None, row_shape: tuple) -> None:
        """Refuse rows this format cannot hold, naming the layer and the way out."""
        if self.rows_fit(row_shape):
            return
        what = f"layer {layer!r} gives per image" if layer is not None else "layer output per image has"
        raise VisrepsError(
            f"{self.name} holds 2-D arrays only, but {what} an array of shape {tuple(row_shape)}; "
            "flatten or pool it (--pool flatten/avg/max), or choose npy/hdf5"
        )

    def extra_bytes(self, layer_bytes: list[int]) -> int:
        """Bytes needed on disk beyond the arrays themselves while the run writes (staging copies)."""
        return 0

    # ------------------------------------------------------------------ writing
    def open_store(self, path: Path, *, resume: bool) -> Store | None:
        """The one store of every layer (``None`` for formats with a file per layer)."""
        return None

    def open_layer(
        self, path: Path, row_shape: tuple, n_rows: int, *, resume: bool, size: int = 0, dtype: Any = np.float32
    ) -> Any:
        """The writer of one layer's file (formats with a file per layer)."""
        raise NotImplementedError(self.name)

    # ------------------------------------------------------------------ reading
    def open_reader(self, folder: Path, metadata: dict) -> Any:
        """A handle shared by the layers of one read (the opened store), or ``None``."""
        return None

    def close_reader(self, handle: Any) -> None:
        return None

    def read(self, path: Path, layer: str, handle: Any, *, mmap: bool, expected: tuple, dtype: np.dtype) -> Any:
        """One layer's array. Raises :class:`~visreps.errors.DamagedOutputError` naming ``path`` when the file is
        not what ``metadata.json`` records; any other exception is reported as an unreadable file."""
        raise NotImplementedError(self.name)
