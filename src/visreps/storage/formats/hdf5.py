"""``hdf5``: one ``features.h5`` with a dataset per layer, resizable along rows; read into memory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np

from ...errors import VisrepsError
from ..folder import PARTIAL, _check_size, _damaged
from ._base import Format, check_resumed, rows_per_chunk

if TYPE_CHECKING:
    import h5py

H5_NAME = "features.h5"


class H5Writer:
    """All layers as datasets of one HDF5 file, resizable along rows."""

    def __init__(self, path: Path, *, resume: bool = False):
        import h5py

        self.final = Path(path)
        self.path = self.final.with_name(self.final.name + PARTIAL)
        if resume:
            try:
                self.h5 = h5py.File(self.path, "r+")
            except OSError as e:
                raise VisrepsError(
                    f"cannot resume: {self.path.name} in {str(self.path.parent)!r} cannot be reopened ({e}); "
                    "HDF5 files may not survive a killed process: start again with --overwrite"
                ) from e
        else:
            self.h5 = h5py.File(self.path, "w")

    def add(self, layer: str, row_shape: tuple, n_rows: int, dtype=np.float32) -> _H5Layer:
        if layer in self.h5:
            ds = cast("h5py.Dataset", self.h5[layer])
            check_resumed("dataset", layer, ds.shape, n_rows, row_shape)
            return _H5Layer(ds)
        chunk = (rows_per_chunk(row_shape, n_rows, dtype), *row_shape)
        ds = self.h5.create_dataset(
            layer, shape=(n_rows, *row_shape), maxshape=(None, *row_shape), dtype=dtype, chunks=chunk
        )
        return _H5Layer(ds)

    def finish(self, n_rows: int) -> Path:
        for name in self.h5:
            cast("h5py.Dataset", self.h5[name]).resize(n_rows, axis=0)
        self.h5.flush()
        self.h5.close()
        return self.path

    def abort(self) -> None:
        try:
            self.h5.close()
        except Exception:  # noqa: BLE001
            pass


class _H5Layer:
    def __init__(self, ds):
        self.ds = ds

    def write(self, start: int, rows: np.ndarray) -> None:
        self.ds[start : start + len(rows)] = rows
        self.ds.file.flush()


class Hdf5Format(Format):
    name: ClassVar[str] = "hdf5"
    suffix: ClassVar[str] = ".h5"
    aliases: ClassVar[tuple[str, ...]] = ("h5", "hdf")
    one_file: ClassVar[str | None] = H5_NAME

    def open_store(self, path, *, resume) -> H5Writer:
        return H5Writer(path, resume=resume)

    def open_reader(self, folder: Path, metadata: dict) -> Any:
        import h5py

        _check_size(folder, H5_NAME, metadata)
        try:
            return h5py.File(folder / H5_NAME, "r")
        except OSError as e:
            raise _damaged(folder / H5_NAME, f"cannot be opened as HDF5 ({e})") from None

    def close_reader(self, handle: Any) -> None:
        handle.close()

    def read(self, path, layer, handle, *, mmap, expected, dtype) -> Any:
        arr = handle[layer] if layer in handle else None
        if arr is None:
            raise _damaged(path, f"it has no dataset {layer!r}")
        if expected and tuple(arr.shape) != expected:
            raise _damaged(path, f"dataset {layer!r} has shape {tuple(arr.shape)}, metadata.json records {expected}")
        return arr[()]


FORMAT = Hdf5Format()
