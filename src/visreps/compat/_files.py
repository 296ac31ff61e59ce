"""The file formats of the 2021 API: single arrays, row-block splits and the text-slice layout.

These files are the 2021 API's own (a ``# Array shape`` header in ``.txt``, a ``file_names``
cell array and MATLAB columns in ``.mat``, plain ``np.save`` / one HDF5 dataset), so they are not
written by :mod:`visreps.storage`'s streaming writers, whose bytes differ; they share its file
suffixes and its write-to-``.partial``-then-rename convention (and its atomic text writer).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .. import storage
from ..errors import VisrepsError

#: file formats of ``save_features`` / ``save_targets`` / ``split_features``
FILE_FORMATS = ("npy", "hdf5", "mat", "txt")
FILE_NAMES = "file_names.txt"
#: the file suffix of each format, as :mod:`visreps.storage`'s formats name their files (HDF5: ``.h5``)
SUFFIX = {f: storage.get_format(f).suffix for f in FILE_FORMATS}

#: ``path``'s text written under a temporary name and renamed when complete
write_text = storage._atomic_write_text


def check_format(file_format: str) -> str:
    """``npy``, ``hdf5``, ``mat`` or ``txt`` (also ``.npy``, ``h5``, ``hdf``); anything else is refused."""
    try:
        f = storage.get_format(str(file_format).lstrip(".")).name
    except VisrepsError:
        f = None
    if f not in FILE_FORMATS:
        raise VisrepsError(f"file format {file_format!r} is not supported; use one of {', '.join(FILE_FORMATS)}")
    return f


@contextmanager
def atomic(path: Path) -> Iterator[Path]:
    """A temporary name next to ``path`` to write to; renamed to ``path`` when the block succeeds, removed if not."""
    tmp = path.with_name(path.name + storage.PARTIAL)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def _txt_fmt(arr: np.ndarray) -> str:
    """A printf format that gives the exact value back: 9 significant digits for float32, 17 for float64."""
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
        return "%d"
    if arr.dtype == np.float16:
        return "%.5g"
    if arr.dtype == np.float32:
        return "%.9g"
    return "%.17g"


def write_txt(path: Path, arr: np.ndarray) -> None:
    """A header ``# Array shape: (...)`` and ``# dtype: ...``, then rows; arrays with more than two
    dimensions as 2-D slices over the last two axes, each followed by ``# New slice``."""
    arr = np.asarray(arr)
    fmt = _txt_fmt(arr)
    with atomic(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(f"# Array shape: {tuple(arr.shape)}\n# dtype: {arr.dtype.name}\n")
        if arr.ndim <= 2:
            np.savetxt(f, arr.reshape(len(arr), -1) if arr.ndim == 2 else arr, fmt=fmt)
        else:
            for s in arr.reshape(-1, arr.shape[-2], arr.shape[-1]):
                np.savetxt(f, s, fmt=fmt)
                f.write("# New slice\n")


def read_txt(path: Path) -> np.ndarray:
    """An array written by :func:`write_txt`, in its shape and dtype."""
    shape, dtype = None, None
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.startswith("#"):
                break
            m = re.match(r"#\s*Array shape:\s*\(([\d,\s]*)\)", line)
            if m:
                shape = tuple(int(s) for s in m.group(1).replace(",", " ").split())
            m = re.match(r"#\s*dtype:\s*(\S+)", line)
            if m:
                dtype = np.dtype(m.group(1))
    if shape is not None and int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype=dtype or np.float64)
    data = np.loadtxt(path, dtype=dtype or np.float64, ndmin=2, comments="#")
    return data.reshape(shape) if shape is not None else data


def file_names(folder: Path, n: int) -> list[str] | None:
    """The names of ``folder/file_names.txt`` when it lists exactly ``n`` rows."""
    p = folder / FILE_NAMES
    if not p.is_file():
        return None
    names = p.read_text(encoding="utf-8").splitlines()
    return names if len(names) == n else None


def write_array(path: Path, arr: np.ndarray, fmt: str, name: str, names: list[str] | None = None) -> None:
    """``arr`` as one file: ``npy``; ``hdf5`` dataset ``name``; ``mat`` variable ``name`` (vectors as
    columns) and ``file_names`` when ``names`` are given; ``txt`` (:func:`write_txt`)."""
    if fmt == "txt":
        write_txt(path, arr)
        return
    with atomic(path) as tmp:
        if fmt == "npy":
            with open(tmp, "wb") as f:
                np.save(f, arr)
        elif fmt == "hdf5":
            import h5py

            with h5py.File(tmp, "w") as h5:
                h5.create_dataset(name, data=arr)
        else:
            from scipy.io import savemat

            variables: dict[str, Any] = {name: arr}
            if names is not None:
                variables["file_names"] = np.array(names, dtype=object)
            with open(tmp, "wb") as f:
                savemat(f, variables, do_compression=False, oned_as="column")


def _read_array(path: Path, fmt: str, name: str = "features") -> np.ndarray:
    if fmt == "npy":
        return np.load(path)
    if fmt == "mat":
        from scipy.io import loadmat

        variables = loadmat(path)
        if name not in variables:
            held = sorted(k for k in variables if not k.startswith("__"))
            raise VisrepsError(f"{str(path)!r} has no variable {name!r} (it holds {held})")
        return variables[name]
    return read_txt(path)


def check_splits(n_splits: Any) -> int:
    if isinstance(n_splits, bool) or not isinstance(n_splits, (int, np.integer)) or n_splits < 1:
        raise VisrepsError(f"n_splits must be a positive integer, got {n_splits!r}")
    return int(n_splits)


def split(folder: Path, arr: np.ndarray, fmt: str, n_splits: int, prefix: str) -> list[str]:
    """``arr`` as ``n_splits`` consecutive row blocks ``<prefix>_01`` ... (``hdf5``: datasets of one file)."""
    n_splits = min(check_splits(n_splits), max(1, len(arr)))
    bounds = [len(arr) * i // n_splits for i in range(n_splits + 1)]
    width = max(2, len(str(n_splits)))
    names = file_names(folder, len(arr)) if fmt == "mat" else None
    written = []
    if fmt == "hdf5":
        import h5py

        with atomic(folder / f"{prefix}.h5") as tmp, h5py.File(tmp, "w") as h5:
            for i in range(n_splits):
                key = f"{prefix}_{i + 1:0{width}d}"
                h5.create_dataset(key, data=arr[bounds[i] : bounds[i + 1]])
                written.append(key)
        return written
    for i in range(n_splits):
        fname = f"{prefix}_{i + 1:0{width}d}{SUFFIX[fmt]}"
        part_names = names[bounds[i] : bounds[i + 1]] if names is not None else None
        write_array(folder / fname, arr[bounds[i] : bounds[i + 1]], fmt, "features", part_names)
        written.append(fname)
    return written


def merge(folder: Path, fmt: str | None, prefixes: Sequence[str]) -> np.ndarray:
    """The splits of :func:`split` (first prefix first) joined, else the single ``<prefix>.<ext>``."""
    if not folder.is_dir():
        raise VisrepsError(f"{str(folder)!r} is not a folder; give the folder the splits were saved to")
    formats = [fmt] if fmt else list(FILE_FORMATS)
    for prefix in prefixes:
        for f in formats:
            if f == "hdf5":
                path = folder / f"{prefix}.h5"
                if not path.is_file():
                    continue
                import h5py

                h5: Any
                with h5py.File(path, "r") as h5:
                    keys = [k for k in h5.keys() if re.fullmatch(rf"{prefix}_(\d+)", k)]
                    if keys:
                        keys.sort(key=lambda k: int(k.rsplit("_", 1)[1]))
                        return np.concatenate([h5[k][()] for k in keys], axis=0)
                    if prefix in h5:
                        return h5[prefix][()]
                continue
            pattern = re.compile(rf"{prefix}_(\d+){re.escape(SUFFIX[f])}")
            parts = sorted(
                (int(m.group(1)), p) for p in folder.iterdir() if (m := pattern.fullmatch(p.name)) and p.is_file()
            )
            if parts:
                return np.concatenate([_read_array(p, f) for _, p in parts], axis=0)
    for prefix in prefixes:  # no splits: the single file
        for f in formats:
            path = folder / f"{prefix}{SUFFIX[f]}"
            if f != "hdf5" and path.is_file():
                return _read_array(path, f)
    what = f"{prefixes[0]}_01{SUFFIX[fmt]}" if fmt else f"{prefixes[0]}_01.<npy|h5|mat|txt>"
    raise VisrepsError(
        f"no feature splits ({what} ...) in {str(folder)!r}; give the folder passed to split_features/save_features"
    )
