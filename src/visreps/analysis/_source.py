"""Block access to feature matrices, and streamed Gram matrices.

A feature matrix has one row per condition (image) and any number of features; N-D arrays are
flattened to ``(n, prod(rest))``. :class:`FeatureSource` hands out blocks of columns or rows as
float64 without ever holding the whole matrix: a memory-mapped ``.npy`` (``np.load(...,
mmap_mode="r")``, or what :func:`visreps.load_features` returns) is read with plain file reads
(``readinto`` at an offset) straight into the block buffer, so its pages are never mapped into
the process and never count towards its resident memory.

:func:`stream_gram` accumulates ``G = B Bᵀ`` over column blocks ``B`` (``n × block_size``) in
float64, which is the one pass over the data that RDMs, CKA and Gram-space PCA need. Reading
columns in blocks (rather than rows) means every block holds all rows, so centring each *feature*
(column) is exact within the block, and the data are read once.
"""

from __future__ import annotations

import mmap
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import numpy as np

from ..errors import VisrepsError

#: Default bytes of one float64 block (``n × block_size × 8``). Two blocks are alive at a time
#: (one being read while the other is multiplied).
DEFAULT_BLOCK_BYTES = 128 * 2**20

DEVICES_HELP = "use 'cpu' (numpy/BLAS), 'auto' (CUDA when available), 'cuda' or 'cuda:N'"


def _is_torch_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach") and hasattr(x, "cpu")


class FeatureSource:
    """A 2-D view ``(n_rows, n_features)`` of a feature array that reads blocks on demand.

    Args:
        features: an array-like with rows first (ndarray, ``np.memmap``, torch tensor, h5py
            dataset, nested lists) or the path of a ``.npy`` file (memory-mapped).
        name: how error messages call this matrix.
    """

    def __init__(self, features: Any, *, name: str = "features"):
        self.name = name
        arr = features
        if isinstance(arr, (str, os.PathLike)):
            path = Path(arr).expanduser()
            if path.suffix.lower() != ".npy":
                raise VisrepsError(
                    f"{name}: {str(path)!r} is not a .npy file; pass an array, a .npy path, or load an output "
                    "folder with visreps.load_features(folder)"
                )
            if not path.is_file():
                raise VisrepsError(f"{name}: file {str(path)!r} does not exist")
            arr = np.load(path, mmap_mode="r")
        elif _is_torch_tensor(arr):
            arr = arr.detach().cpu().numpy()
        elif not isinstance(arr, np.ndarray):
            arr = np.asarray(arr)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise VisrepsError(f"{name} must be a numeric array, got dtype {arr.dtype}")
        if np.issubdtype(arr.dtype, np.complexfloating):
            raise VisrepsError(f"{name} must be real-valued, got dtype {arr.dtype}")
        if arr.ndim < 2:
            raise VisrepsError(
                f"{name} must have one row per image and the features along the other axes; got shape "
                f"{tuple(arr.shape)}. For one feature per image use features.reshape(-1, 1)"
            )
        n = int(arr.shape[0])
        p = int(np.prod(arr.shape[1:], dtype=np.int64))
        if n == 0 or p == 0:
            raise VisrepsError(f"{name} is empty (shape {tuple(arr.shape)})")
        self.shape_in = tuple(arr.shape)
        self.n, self.p = n, p
        self.dtype = arr.dtype
        self._file: str | None = None
        self._pos = 0
        if isinstance(arr, np.memmap) and arr.ndim >= 2 and arr.flags.c_contiguous:
            self._file, self._pos = _memmap_file_position(arr)
        # a 2-D view (free for C-contiguous arrays); blocks of a memmap are read from its file instead
        self.arr = arr.reshape(n, p)

    # ------------------------------------------------------------------ reading
    def cols(self, c0: int, c1: int) -> np.ndarray:
        """Columns ``c0:c1`` of every row as a new C-contiguous float64 array ``(n, c1-c0)``."""
        if self._file is None:
            out = np.array(self.arr[:, c0:c1], dtype=np.float64, order="C")
        else:
            w = c1 - c0
            isz = self.dtype.itemsize
            buf = np.empty((self.n, w), dtype=self.dtype)
            view = buf.reshape(-1).view(np.uint8).data  # a memoryview of the buffer's bytes
            with open(self._file, "rb", buffering=0) as f:
                if w == self.p:
                    _read_into(f, view, self._pos)
                else:
                    step = w * isz
                    row_bytes = self.p * isz
                    for i in range(self.n):
                        _read_into(f, view[i * step : (i + 1) * step], self._pos + i * row_bytes + c0 * isz)
            out = buf.astype(np.float64)
        self._check_finite(out, row0=0)
        return out

    def rows(self, r0: int, r1: int) -> np.ndarray:
        """Rows ``r0:r1`` (all features) as a new C-contiguous float64 array ``(r1-r0, p)``."""
        if self._file is None:
            out = np.array(self.arr[r0:r1], dtype=np.float64, order="C")
        else:
            isz = self.dtype.itemsize
            buf = np.empty((r1 - r0, self.p), dtype=self.dtype)
            with open(self._file, "rb", buffering=0) as f:
                _read_into(f, buf.reshape(-1).view(np.uint8).data, self._pos + r0 * self.p * isz)
            out = buf.astype(np.float64)
        self._check_finite(out, row0=r0)
        return out

    def _check_finite(self, block: np.ndarray, row0: int) -> None:
        if not np.isfinite(block).all():
            bad = np.flatnonzero(~np.isfinite(block).all(axis=1))
            rows = ", ".join(str(int(r) + row0) for r in bad[:5]) + (" ..." if len(bad) > 5 else "")
            where = f" (file {self._file!r})" if self._file is not None else ""
            raise VisrepsError(
                f"{self.name}{where} contains NaN or infinite values (rows {rows}); check the extraction "
                "(e.g. fp16 overflow: extract with --precision fp32) or drop those images"
            )

    # ------------------------------------------------------------------ blocking
    def col_block(self, block_size: int | None) -> int:
        """Columns per block: ``block_size`` or the default that keeps a float64 block ≈128 MB."""
        if block_size is None:
            return int(max(1, min(self.p, DEFAULT_BLOCK_BYTES // (8 * self.n))))
        return int(min(self.p, check_block_size(block_size)))

    def row_block(self, block_size: int | None) -> int:
        if block_size is None:
            return int(max(1, min(self.n, DEFAULT_BLOCK_BYTES // (8 * self.p))))
        return int(min(self.n, check_block_size(block_size)))

    def iter_cols(self, block_size: int | None) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yields ``(c0, c1, block)`` over column blocks; the next block is read while the caller works."""
        w = self.col_block(block_size)
        yield from _prefetch([(c0, min(c0 + w, self.p)) for c0 in range(0, self.p, w)], self.cols)

    def iter_rows(self, block_size: int | None) -> Iterator[tuple[int, int, np.ndarray]]:
        w = self.row_block(block_size)
        yield from _prefetch([(r0, min(r0 + w, self.n)) for r0 in range(0, self.n, w)], self.rows)


def check_block_size(block_size: Any) -> int:
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise VisrepsError(f"block_size must be a positive integer (or None for the default), got {block_size!r}")
    return int(block_size)


def _prefetch(
    ranges: list[tuple[int, int]], read: Callable[[int, int], np.ndarray]
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(a, b, read(a, b))`` for each range, reading one range ahead in a thread."""
    if not ranges:
        return
    if len(ranges) == 1:
        a, b = ranges[0]
        yield a, b, read(a, b)
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        fut = pool.submit(read, *ranges[0])
        for k, (a, b) in enumerate(ranges):
            block = fut.result()
            if k + 1 < len(ranges):
                fut = pool.submit(read, *ranges[k + 1])
            yield a, b, block
            del block


def _read_into(f, view: memoryview, offset: int) -> None:
    """Fill ``view`` from the unbuffered file ``f`` at ``offset`` (no mapping, no extra copy)."""
    f.seek(offset)
    while len(view):
        got = f.readinto(view)
        if not got:
            raise VisrepsError("feature file ended early: it is truncated or still being written")
        view = view[got:]


def _memmap_file_position(arr: np.memmap) -> tuple[str | None, int]:
    """File name and byte position of ``arr``'s first element, if it can be read from the file.

    Only read-only or shared-write maps qualify: a copy-on-write map (``mode="c"``) may hold
    changes that are not in the file.
    """
    mm = getattr(arr, "_mmap", None)
    filename = getattr(arr, "filename", None)
    if mm is None or not filename or getattr(arr, "mode", "r") not in ("r", "r+", "readonly", "readwrite"):
        return None, 0
    try:
        base = np.frombuffer(mm, dtype=np.uint8)
    except (TypeError, ValueError, BufferError):
        return None, 0
    base_addr = base.ctypes.data
    del base
    offset = int(getattr(arr, "offset", 0))
    map_start = offset - offset % mmap.ALLOCATIONGRANULARITY
    pos = map_start + (arr.ctypes.data - base_addr)
    if pos < 0 or not os.path.isfile(filename):
        return None, 0
    return str(filename), int(pos)


# --------------------------------------------------------------------------- Gram accumulation


def _gpu_driver_present() -> bool:
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/kfd")


def resolve_device(device: Any) -> Any:
    """``None`` for the numpy/BLAS path, else a ``torch.device``."""
    if device is None or device == "cpu":
        return None
    if not isinstance(device, str) and type(device).__name__ != "device":
        raise VisrepsError(f"device {device!r} is not valid; {DEVICES_HELP}")
    if device == "auto":
        if "torch" not in sys.modules and sys.platform.startswith("linux") and not _gpu_driver_present():
            return None  # no GPU driver: do not pay for importing torch
        try:
            import torch
        except ImportError:
            return None
        return torch.device("cuda") if torch.cuda.is_available() else None
    try:
        from ..device import resolve_device as _resolve
    except ImportError:  # pragma: no cover - the core package always has it
        _resolve = None
    if _resolve is not None:
        dev = _resolve(device)
    else:
        import torch

        dev = torch.device(device)
    if dev.type == "mps":
        raise VisrepsError(f"device {device!r}: MPS has no float64, which these analyses need; use device='cpu'")
    return None if dev.type == "cpu" and device == "cpu" else dev


class _NumpyGram:
    """``G += B Bᵀ`` in place with BLAS ``dsyrk`` (upper triangle), symmetrised at the end."""

    def __init__(self, n: int):
        self.G = np.zeros((n, n), dtype=np.float64, order="F")

    def add(self, B: np.ndarray) -> None:
        # scipy.linalg.blas re-exports the f2py module's routines with `import *`; pyright cannot see them
        from scipy.linalg.blas import dsyrk  # pyright: ignore[reportAttributeAccessIssue]

        out = dsyrk(1.0, B.T, beta=1.0, c=self.G, trans=1, lower=0, overwrite_c=1)
        if out is not self.G:  # pragma: no cover - f2py copied; keep the result
            self.G = np.asfortranarray(out)

    def result(self) -> np.ndarray:
        G = self.G
        _fill_lower_from_upper(G)
        return G.T  # C-contiguous; equal to G since G is symmetric


class _TorchGram:
    def __init__(self, n: int, device):
        import torch

        self.torch = torch
        self.device = device
        self.G = torch.zeros((n, n), dtype=torch.float64, device=device)

    def add(self, B: np.ndarray) -> None:
        t = self.torch.from_numpy(B).to(self.device)
        self.G.addmm_(t, t.T)

    def result(self) -> np.ndarray:
        G = self.G.cpu().numpy()
        _fill_lower_from_upper(G)
        return G


def _fill_lower_from_upper(G: np.ndarray, rb: int = 1024) -> None:
    """Copy the upper triangle onto the lower one, in row blocks (no n×n temporaries)."""
    n = G.shape[0]
    for i0 in range(0, n, rb):
        i1 = min(n, i0 + rb)
        if i0:
            G[i0:i1, :i0] = G[:i0, i0:i1].T
        blk = G[i0:i1, i0:i1]
        il = np.tril_indices(i1 - i0, -1)
        blk[il] = blk.T[il]


def gram_accumulator(n: int, device: Any) -> _NumpyGram | _TorchGram:
    dev = resolve_device(device)
    return _NumpyGram(n) if dev is None else _TorchGram(n, dev)


def stream_gram(
    src: FeatureSource, *, center: str, block_size: int | None = None, device: Any = "cpu"
) -> dict[str, np.ndarray]:
    """Accumulate the Gram matrix of ``src`` over column blocks in float64.

    Args:
        center: ``"none"``: ``G = X Xᵀ``. ``"columns"``: ``G = Xc Xcᵀ`` with every feature centred
            over the rows (exact: a column block holds all rows). ``"shift_rows"``: ``G = Y Yᵀ`` with
            ``Y = X − s 1ᵀ`` and ``s`` the row means over the first block; the row sums of ``Y`` are
            returned too, so that row-centred products follow exactly as
            ``Yc Ycᵀ = G − (Y1)(Y1)ᵀ / p`` (the shift keeps that subtraction free of cancellation).

    Returns:
        dict with ``G`` (n × n float64, symmetric, C-contiguous), and for ``shift_rows`` also
        ``shift`` and ``row_sums``; for ``columns`` also ``col_means`` (p,).
    """
    if center not in ("none", "columns", "shift_rows"):
        raise ValueError(center)
    acc = gram_accumulator(src.n, device)
    shift: np.ndarray | None = None
    row_sums = np.zeros(src.n) if center == "shift_rows" else None  # not None exactly for "shift_rows"
    col_means = np.empty(src.p) if center == "columns" else None  # not None exactly for "columns"
    for c0, c1, B in src.iter_cols(block_size):
        if col_means is not None:
            mu = B.mean(axis=0)
            col_means[c0:c1] = mu
            B -= mu
        elif row_sums is not None:
            if shift is None:
                shift = cast(np.ndarray, B.mean(axis=1))  # numpy's stubs type a mean over an axis as Any
            B -= shift[:, None]
            row_sums += B.sum(axis=1)
        acc.add(B)
    out = {"G": acc.result()}
    if row_sums is not None:
        assert shift is not None  # src.p >= 1 (FeatureSource rejects empty arrays): the first block set it
        out["shift"] = shift
        out["row_sums"] = row_sums
    if col_means is not None:
        out["col_means"] = col_means
    return out
