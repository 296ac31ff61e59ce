"""``zarr``: one zarr v3 store ``features.zarr`` (a directory) with an array per layer, chunked along rows.

Needs the ``zarr`` package (3 or newer): ``pip install "visreps[zarr]"``. Rows are written in place, chunk by
chunk, so a run streams like ``npy``/``hdf5`` and resumes after Ctrl-C; the store is written as
``features.zarr.partial`` and renamed when complete. :func:`visreps.load_features` returns each layer as a
:class:`ZarrLayer`, which reads nothing until it is indexed (``layer[10:20]``, ``np.asarray(layer)``); its
``array`` is the underlying ``zarr.Array``. The store's size and SHA-256 in ``metadata.json`` cover every file
in it (their relative names and bytes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...errors import MissingExtraError, VisrepsError
from ..folder import PARTIAL, _check_size, _damaged
from ._base import Format, check_resumed, rows_per_chunk

ZARR_NAME = "features.zarr"


def _zarr():
    try:
        import zarr
    except ImportError:
        raise MissingExtraError(
            'the zarr format needs the zarr package (3 or newer): pip install "visreps[zarr]", or choose npy/hdf5'
        ) from None
    if int(zarr.__version__.split(".")[0]) < 3:
        raise MissingExtraError(
            f'the zarr format needs zarr 3 or newer (found {zarr.__version__}): pip install "visreps[zarr]"'
        )
    return zarr


class ZarrLayer:
    """One layer of a zarr store, read lazily: nothing is read until it is indexed or converted to an array."""

    def __init__(self, array: Any) -> None:
        self.array = array

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        return np.asarray(self.array[key])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        arr = np.asarray(self.array[...])
        return arr if dtype is None else arr.astype(dtype)

    def __repr__(self) -> str:
        return f"ZarrLayer(shape={self.shape}, dtype={self.dtype})"


class ZarrWriter:
    """Every layer as an array of one zarr v3 store (a directory), chunked along rows; rows written in place."""

    def __init__(self, path: Path, *, resume: bool = False):
        zarr = _zarr()
        self.final = Path(path)
        self.path = self.final.with_name(self.final.name + PARTIAL)
        if resume:
            try:
                self.group: Any = zarr.open_group(store=str(self.path), mode="r+")
            except Exception as e:  # noqa: BLE001 - a missing or damaged store
                raise VisrepsError(
                    f"cannot resume: {self.path.name} in {str(self.path.parent)!r} cannot be reopened ({e}); "
                    "start again with --overwrite"
                ) from None
        else:
            self.group = zarr.open_group(store=str(self.path), mode="w", zarr_format=3)

    def add(self, layer: str, row_shape: tuple, n_rows: int, dtype=np.float32) -> _ZarrLayerWriter:
        if layer in self.group:
            arr: Any = self.group[layer]
            check_resumed("array", layer, arr.shape, n_rows, row_shape)
            return _ZarrLayerWriter(arr)
        chunk = (rows_per_chunk(row_shape, n_rows, dtype), *row_shape)
        arr = self.group.create_array(name=layer, shape=(n_rows, *row_shape), chunks=chunk, dtype=dtype, fill_value=0)
        return _ZarrLayerWriter(arr)

    def finish(self, n_rows: int) -> Path:
        for _, arr in self.group.arrays():
            arr.resize((n_rows, *tuple(arr.shape)[1:]))
        return self.path

    def abort(self) -> None:
        return None  # every chunk is a file written whole: nothing is left open


class _ZarrLayerWriter:
    def __init__(self, array: Any) -> None:
        self.array = array

    def write(self, start: int, rows: np.ndarray) -> None:
        self.array[start : start + len(rows)] = rows


class ZarrFormat(Format):
    name: ClassVar[str] = "zarr"
    suffix: ClassVar[str] = ".zarr"
    one_file: ClassVar[str | None] = ZARR_NAME
    directory: ClassVar[bool] = True

    def open_store(self, path, *, resume) -> ZarrWriter:
        return ZarrWriter(path, resume=resume)

    def open_reader(self, folder: Path, metadata: dict) -> Any:
        zarr = _zarr()
        _check_size(folder, ZARR_NAME, metadata)
        try:
            return zarr.open_group(store=str(folder / ZARR_NAME), mode="r")
        except Exception as e:  # noqa: BLE001 - whatever zarr says, the store is not what metadata.json describes
            raise _damaged(folder / ZARR_NAME, f"cannot be opened as a zarr store ({type(e).__name__}: {e})") from None

    def read(self, path, layer, handle, *, mmap, expected, dtype) -> Any:
        if layer not in handle:
            raise _damaged(path, f"it has no array {layer!r}")
        arr = handle[layer]
        if expected and tuple(arr.shape) != expected or np.dtype(arr.dtype) != dtype:
            raise _damaged(path, f"array {layer!r} has shape {tuple(arr.shape)} {arr.dtype}, metadata.json records "
                           f"{expected} {dtype}")  # fmt: skip
        return ZarrLayer(arr) if mmap else np.asarray(arr[...])


FORMAT = ZarrFormat()
