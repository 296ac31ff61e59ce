"""``thingsvision.utils.storing`` (2.x): :func:`save_features`, :func:`split_features`, :func:`merge_features`.

The files of THINGSvision 2.7.3 (``features.npy``, ``features.pt``, ``features.hdf5`` with the
dataset ``features``, ``features.txt``, ``features.mat``; splits ``features_01`` ...), each
written under a temporary name and renamed when complete. The native API writes one file per
layer with ``manifest.csv`` and ``metadata.json`` while it extracts
(``visreps.extract(..., out=folder, format="npy"|"hdf5"|"mat"|"txt"|"pt")``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, cast

import numpy as np

from ....errors import VisrepsError
from ....storage import get_format
from ..._files import atomic
from .._warn import warn_once

__all__ = ["FILE_FORMATS", "merge_features", "save_features", "split_features", "store_features"]

FILE_FORMATS = ("hdf5", "npy", "mat", "pt", "txt")
#: THINGSvision 2.x's pattern of the image suffixes removed from names in ``.mat`` files
EXTENSIONS = r"(.eps|.jpg|.jpeg|.png|.PNG|.tif|.tiff)$"


def _check_format(file_format: Any) -> str:
    if file_format not in FILE_FORMATS:
        raise VisrepsError(f"file_format {file_format!r} is not valid; use one of {', '.join(FILE_FORMATS)}")
    return file_format


def _numpy(features: Any) -> np.ndarray:
    if hasattr(features, "detach"):
        return features.detach().cpu().numpy()
    return np.asarray(features)


def _names(root: Path) -> list[str] | None:
    path = root / "file_names.txt"
    if not path.is_file():
        return None
    return [re.sub(EXTENSIONS, "", line.strip()) for line in path.read_text(encoding="utf-8").splitlines()]


def _write(path: Path, features: Any, fmt: str, names: list[str] | None = None) -> None:
    """One array in one 2.x file (``hdf5``: the dataset ``features``; ``mat``: ``features`` and ``file_names``)."""
    with atomic(path) as tmp:
        if fmt == "pt":
            import torch

            torch.save(features if isinstance(features, torch.Tensor) else torch.from_numpy(_numpy(features)), tmp)
        elif fmt == "npy":
            with open(tmp, "wb") as f:
                np.save(f, _numpy(features))
        elif fmt == "hdf5":
            import h5py

            with h5py.File(tmp, "w") as f:
                f.create_dataset("features", data=_numpy(features))
        elif fmt == "mat":
            from scipy.io import savemat

            record: dict[str, Any] = {"features": _numpy(features)}
            if names is not None and len(names) == len(record["features"]):
                record["file_names"] = np.array(names, dtype=object)
            savemat(tmp, record)
        else:
            np.savetxt(tmp, _numpy(features))


def store_features(root: str, features: Any, file_format: str) -> None:
    """Write ``<root>/features.<format>`` (``hdf5``: ``features.hdf5``); see :func:`save_features`."""
    warn_once("visreps.compat.thingsvision.utils.storing.store_features")
    fmt = _check_format(file_format)
    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    _check_txt(features, fmt)
    _write(folder / f"features.{fmt}", features, fmt, _names(folder) if fmt == "mat" else None)
    print("...Features successfully saved to disk.\n")


def _fits(features: Any, fmt: str) -> bool:
    """Whether the rows of ``features`` fit the format (txt: 2-D arrays only, the rule of visreps' txt format)."""
    return get_format(fmt).rows_fit(tuple(np.shape(features)[1:])) or len(np.shape(features)) < 2


def _check_txt(features: Any, fmt: str) -> None:
    if not _fits(features, fmt):
        raise VisrepsError(
            f"features of shape {tuple(np.shape(features))} cannot be saved as txt (2-D only): "
            "use file_format='npy', 'hdf5', 'mat' or 'pt', or extract with flatten_acts=True"
        )


def save_features(features: Any, out_path: str, file_format: str, n_splits: int = 10) -> None:
    """THINGSvision 2.x's ``save_features``: ``<out_path>/features.<format>``.

    Maps to ``visreps.extract(..., out=folder, format=...)`` (which writes while it extracts).
    Formats: ``npy`` (``np.save``), ``pt`` (``torch.save`` of a tensor; arrays are converted),
    ``hdf5`` (``features.hdf5``, dataset ``features``), ``txt`` (``np.savetxt``, 2-D only), ``mat``
    (variable ``features``, rows = images, plus ``file_names`` when ``file_names.txt`` is in the
    folder). If memory runs out, the rows are split into ``n_splits`` files (:func:`split_features`).

    ``txt`` of a 3-D or 4-D array writes nothing and warns (2.7.3 printed a message).
    Changed from 2.7.3: ``.mat`` holds ``features`` and ``file_names`` (2.7.3 wrote one variable per
    image, named after the file, which dropped names MATLAB cannot use and which its own
    ``merge_features`` could not read).
    """
    warn_once("visreps.compat.thingsvision.utils.storing.save_features")
    import warnings

    fmt = _check_format(file_format)
    if not _fits(features, fmt):  # as 2.7.3: nothing written, and said so
        warnings.warn(
            f"features of shape {tuple(np.shape(features))} were not saved: txt holds 2-D arrays only; use "
            "file_format='npy', 'hdf5', 'mat' or 'pt', or extract with flatten_acts=True",
            UserWarning,
            stacklevel=2,
        )
        return
    if fmt == "pt" and not hasattr(features, "detach"):
        warnings.warn(
            f"Expected features to be of type <torch.Tensor> but got {type(features)}; converting them", stacklevel=2
        )
    try:
        store_features(out_path, features, fmt)
    except MemoryError:
        print("\n...Could not save features as one single file due to memory problems; splitting them.\n")
        split_features(out_path, features, fmt, n_splits)


def split_features(root: str, features: Any, file_format: str, n_splits: int) -> None:
    """Write the rows of ``features`` in ``n_splits`` consecutive blocks: ``features_01.<format>`` ...

    ``hdf5``: one ``features.hdf5`` with the datasets ``features_01`` .... Fixed from 2.7.3: it
    wrote ``n_splits − 1`` files, and every ``.mat`` split without ``file_names.txt`` held all rows.
    """
    warn_once("visreps.compat.thingsvision.utils.storing.split_features")
    fmt = _check_format(file_format)
    if not isinstance(n_splits, int) or isinstance(n_splits, bool) or n_splits < 1:
        raise VisrepsError(f"n_splits must be a positive integer, got {n_splits!r}")
    _check_txt(features, fmt)
    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, len(features), n_splits + 1, dtype=int)
    names = _names(folder) if fmt == "mat" else None
    if fmt == "hdf5":
        import h5py

        with atomic(folder / "features.hdf5") as tmp, h5py.File(tmp, "w") as f:
            for i in range(n_splits):
                f.create_dataset(f"features_{i + 1:02d}", data=_numpy(features[bounds[i] : bounds[i + 1]]))
        return
    for i in range(n_splits):
        part = features[bounds[i] : bounds[i + 1]]
        sub = names[bounds[i] : bounds[i + 1]] if names is not None and len(names) == len(features) else None
        _write(folder / f"features_{i + 1:02d}.{fmt}", part, fmt, sub)


def merge_features(root: str, file_format: str) -> np.ndarray:
    """The splits of :func:`split_features` joined back, in order (an ndarray).

    Fixed from 2.7.3, whose ``merge_features`` failed for every format (``h5py.file``, and a file
    number parsed from the name with its digits removed), could not read ``.mat`` splits and was not
    exported from ``thingsvision.utils.storing``.
    """
    warn_once("visreps.compat.thingsvision.utils.storing.merge_features")
    fmt = _check_format(file_format)
    folder = Path(root)
    if fmt == "hdf5":
        import h5py

        path = folder / "features.hdf5"
        if not path.is_file():
            raise VisrepsError(f"{str(path)!r} does not exist; split_features(..., 'hdf5') writes it")
        with h5py.File(path, "r") as f:
            keys = sorted((str(k) for k in f.keys() if re.fullmatch(r"features_\d+", str(k))), key=_number)
            if not keys:
                raise VisrepsError(f"{str(path)!r} holds no features_NN datasets")
            return np.concatenate([np.asarray(cast(Any, f[k])[()]) for k in keys])
    found = sorted((_number(n), n) for n in os.listdir(folder) if re.fullmatch(rf"features_\d+\.{fmt}", n))
    if not found:
        raise VisrepsError(f"no features_NN.{fmt} files in {str(root)!r}; split_features writes them")
    return np.concatenate([_read(folder / name, fmt) for _, name in found])


def _number(name: str) -> int:
    """The split number of ``features_NN`` (``.ext``)."""
    return int(name.split("_")[1].split(".")[0])


def _read(path: Path, fmt: str) -> np.ndarray:
    if fmt == "npy":
        return np.load(path)
    if fmt == "txt":
        return np.loadtxt(path, ndmin=2)
    if fmt == "pt":
        import torch

        return torch.load(path, weights_only=True).numpy()
    from scipy.io import loadmat

    data = loadmat(path)
    if "features" not in data:
        raise VisrepsError(f"{str(path)!r} has no variable 'features'; it was not written by split_features")
    return data["features"]
