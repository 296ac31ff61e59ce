"""``txt``: one ``<layer>.txt`` per layer, one row per line (``%.9g``), appended batch by batch; 2-D arrays only."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...errors import VisrepsError
from ..folder import PARTIAL
from ._base import Format


class TxtWriter:
    """A 2-D array as text, one row per line, appended batch by batch."""

    def __init__(
        self,
        path: Path,
        row_shape: tuple,
        n_rows: int,
        dtype=np.float32,
        *,
        resume: bool = False,
        size: int | None = None,
    ):
        FORMAT.check_rows(None, tuple(row_shape))
        self.final = Path(path)
        self.path = self.final.with_name(self.final.name + PARTIAL)
        if resume:
            if not self.path.is_file() or size is None or self.path.stat().st_size < size:
                raise VisrepsError(
                    f"cannot resume: {self.path.name} is missing or shorter than recorded; start again with --overwrite"
                )
            self.f = open(self.path, "r+")
            self.f.truncate(size)  # drop a batch that was half written when the run stopped
            self.f.seek(size)
        else:
            self.f = open(self.path, "w")

    def write(self, start: int, rows: np.ndarray) -> None:
        np.savetxt(self.f, np.asarray(rows).reshape(len(rows), -1), fmt="%.9g")
        self.f.flush()

    def size(self) -> int:
        return self.f.tell()

    def finish(self, n_rows: int) -> Path:
        self.f.close()
        return self.path

    def abort(self) -> None:
        self.f.close()


class TxtFormat(Format):
    name: ClassVar[str] = "txt"
    suffix: ClassVar[str] = ".txt"
    row_ndim: ClassVar[int | None] = 1
    append_only: ClassVar[bool] = True
    size_known: ClassVar[bool] = False  # text size depends on the numbers; checked as it is written

    def open_layer(self, path, row_shape, n_rows, *, resume, size=0, dtype=np.float32) -> Any:
        return TxtWriter(path, row_shape, n_rows, dtype, resume=resume, size=size)

    def read(self, path, layer, handle, *, mmap, expected, dtype) -> Any:
        return np.loadtxt(path, dtype=np.float32, ndmin=2)


FORMAT = TxtFormat()
