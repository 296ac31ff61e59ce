"""``npy``: one ``<layer>.npy`` per layer, preallocated and written in place with ``pwrite``; read memory-mapped.

Also the staging writer of the formats converted at the end (``mat``, ``pt``), which stream into a ``.npy``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...errors import VisrepsError
from ..folder import PARTIAL, _damaged
from ._base import Format

_NPY_MAGIC = b"\x93NUMPY\x01\x00"


def _npy_header(shape: tuple, dtype: np.dtype, total_len: int | None = None) -> bytes:
    d = f"{{'descr': {np.lib.format.dtype_to_descr(dtype)!r}, 'fortran_order': False, 'shape': {tuple(shape)!r}, }}"
    base = len(_NPY_MAGIC) + 2
    if total_len is None:
        total_len = base + len(d) + 1 + 16  # room for the row count to change length
        total_len = -(-total_len // 64) * 64
    pad = total_len - base - len(d) - 1
    if pad < 0:
        raise ValueError("npy header does not fit")
    body = (d + " " * pad + "\n").encode("latin1")
    return _NPY_MAGIC + len(body).to_bytes(2, "little") + body


def _pwrite(fd: int, data, offset: int) -> None:
    view = memoryview(data).cast("B")
    while len(view):
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


class NpyWriter:
    """A ``.npy`` file of ``n_rows`` rows preallocated on disk; rows written in place."""

    def __init__(self, path: Path, row_shape: tuple, n_rows: int, dtype=np.float32, *, resume: bool = False):
        self.final = Path(path)
        self.path = self.final.with_name(self.final.name + PARTIAL)
        self.row_shape = tuple(row_shape)
        self.dtype = np.dtype(dtype)
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        header = _npy_header((n_rows, *self.row_shape), self.dtype)
        self.header_len = len(header)
        size = self.header_len + n_rows * self.row_bytes
        if resume:
            if not self.path.is_file() or self.path.stat().st_size != size:
                raise VisrepsError(
                    f"cannot resume: {self.path.name} is missing or has an unexpected size in "
                    f"{str(self.path.parent)!r}; "
                    "start again with --overwrite"
                )
            self.fd = os.open(self.path, os.O_RDWR)
            return
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(self.fd, header)
        os.ftruncate(self.fd, size)

    def write(self, start: int, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        # looked up in the module at each call, so a test can wrap it (tests/test_trust.py)
        _pwrite(self.fd, rows, self.header_len + start * self.row_bytes)

    def finish(self, n_rows: int) -> Path:
        header = _npy_header((n_rows, *self.row_shape), self.dtype, total_len=self.header_len)
        _pwrite(self.fd, header, 0)
        os.ftruncate(self.fd, self.header_len + n_rows * self.row_bytes)
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        return self.path

    def abort(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class StagedWriter:
    """Formats converted at the end (mat, pt): rows stream into ``<file>.stage.npy.partial`` (an :class:`NpyWriter`),
    then ``convert`` writes the whole array to ``<file>.partial`` (one layer in memory) and the staging file goes."""

    def __init__(self, target: Path, stage: NpyWriter, convert: Callable[[Path, np.ndarray], None]) -> None:
        self.target, self.stage, self.convert = Path(target), stage, convert

    def write(self, start: int, rows: np.ndarray) -> None:
        self.stage.write(start, rows)

    def finish(self, n_rows: int) -> Path:
        staged = self.stage.finish(n_rows)
        out = self.target.with_name(self.target.name + PARTIAL)
        arr = np.load(staged, mmap_mode="r")
        self.convert(out, arr)
        del arr
        os.unlink(staged)
        return out

    def abort(self) -> None:
        self.stage.abort()


class StagedFormat(Format):
    """A format written whole at the end from a staging ``.npy`` (``mat``, ``pt``): subclasses give ``convert``."""

    stage: ClassVar[str | None] = ".stage.npy"

    @staticmethod
    def convert(out: Path, arr: np.ndarray) -> None:
        raise NotImplementedError

    def extra_bytes(self, layer_bytes: list[int]) -> int:
        return max(layer_bytes, default=0)  # the staging copy of the layer being converted

    def open_layer(self, path, row_shape, n_rows, *, resume, size=0, dtype=np.float32) -> Any:
        stage = NpyWriter(path.with_name(path.name + ".stage.npy"), row_shape, n_rows, dtype, resume=resume)
        return StagedWriter(path, stage, self.convert)


class NpyFormat(Format):
    name: ClassVar[str] = "npy"
    suffix: ClassVar[str] = ".npy"

    def open_layer(self, path, row_shape, n_rows, *, resume, size=0, dtype=np.float32) -> Any:
        return NpyWriter(path, row_shape, n_rows, dtype, resume=resume)

    def read(self, path, layer, handle, *, mmap, expected, dtype) -> Any:
        head = np.load(path, mmap_mode="r")  # reads the header; a file shorter than it promises fails here
        shape, dt = tuple(head.shape), head.dtype
        need = int(head.offset) + int(head.nbytes)
        del head
        if expected and shape != expected or dt != dtype:
            raise _damaged(path, f"shape {shape} {dt}, metadata.json records {expected} {dtype}")
        if path.stat().st_size != need:
            raise _damaged(path, f"{path.stat().st_size} bytes where its header needs {need}")
        return np.load(path, mmap_mode="r" if mmap else None)


FORMAT = NpyFormat()
