"""Reading a finished output folder: :class:`Features`, :func:`load_features`, :func:`verify`, and their checks.

Every file is checked against ``metadata.json`` before use (present, the recorded byte size, shape and dtype);
:func:`verify` also checks every file's SHA-256 and scans every layer for NaN and inf. How a layer is read is
its format's business (:mod:`visreps.storage.formats`): ``npy`` memory-mapped, ``zarr`` lazily, the others
into memory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DamagedOutputError, LayerNotFoundError, VisrepsError, closest_hint
from .finite import first_nonfinite
from .folder import _REDO, MANIFEST, METADATA, METADATA_PARTIAL, _check_size, _damaged, _file_sha256, _safe_name
from .formats import get_format


def _no_layer(what: str, layer: str, layers: Sequence[str]) -> LayerNotFoundError:
    """``what`` (which names ``layer``), the layers there are and the closest ones."""
    hint = closest_hint(layer, layers, lead=" (closest: ")
    return LayerNotFoundError(f"{what}; available: {', '.join(layers)}" + (hint + ")" if hint else ""))


class Features(Mapping):
    """Per-layer feature arrays with the images they belong to.

    Behaves like a dict ``layer → array`` (rows = images, in manifest order).

    Attributes:
        features: dict of layer name → array (``np.memmap`` for npy folders read with mmap; a lazy
            :class:`~visreps.storage.formats.zarr.ZarrLayer` for zarr folders).
        manifest: ``pandas.DataFrame`` with ``index, path, label`` (and ``blake2b``, the content
            hash of each image file, for image extractions).
        metadata: the run's metadata dict.
        folder: the output folder (``None`` for in-memory results).
        predictions: the top-k ImageNet predictions table (``top_k=...``), else ``None``.
    """

    def __init__(self, features: dict, manifest, metadata: dict, folder: Path | None = None, predictions=None):
        self.features = features
        self.manifest = manifest
        self.metadata = metadata
        self.folder = folder
        self.predictions = predictions

    def __getitem__(self, layer: str):
        if layer not in self.features:
            raise _no_layer(f"no layer {layer!r} in these features", layer, list(self.features))
        return self.features[layer]

    def __iter__(self) -> Iterator[str]:
        return iter(self.features)

    def __len__(self) -> int:
        return len(self.features)

    @property
    def layers(self) -> list[str]:
        return list(self.features)

    @property
    def paths(self) -> list[str]:
        return list(self.manifest["path"])

    @property
    def labels(self) -> list[str]:
        return list(self.manifest["label"])

    @property
    def model(self) -> str:
        return self.metadata.get("model", "")

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in self.features.items())
        where = f" from {self.folder}" if self.folder else ""
        return f"Features({self.model!r}, {len(self.manifest)} images, {{{shapes}}}{where})"


def read_metadata(folder: Path) -> dict:
    """``metadata.json`` of a finished output folder, checked to be a complete visreps record."""
    meta_path = folder / METADATA
    if not meta_path.is_file():
        if (folder / METADATA_PARTIAL).is_file():
            raise VisrepsError(
                f"{str(folder)!r} holds an unfinished extraction (status running, interrupted or failed); "
                "continue it with the same command plus --resume, or run it again with --overwrite"
            )
        raise VisrepsError(f"{str(folder)!r} is not a visreps output folder (no {METADATA})")
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise _damaged(meta_path, f"not valid JSON ({e})") from None
    if not isinstance(metadata, dict) or not isinstance(metadata.get("layers"), dict):
        raise _damaged(meta_path, "it is not a visreps metadata record (no layers)")
    if metadata.get("status", "complete") != "complete":
        raise VisrepsError(f"{str(folder)!r} is not complete (status {metadata.get('status')!r})")
    return metadata


def read_manifest(folder: Path, metadata: dict | None = None):
    """``manifest.csv`` as a DataFrame (``index, path, label`` [, ``blake2b``]), checked against the metadata."""
    import pandas as pd

    path = folder / MANIFEST
    if not path.is_file():
        raise VisrepsError(f"{str(folder)!r} has no {MANIFEST}; it is not a finished visreps output folder")
    if metadata is not None:
        _check_size(folder, MANIFEST, metadata)
    import csv
    import hashlib
    import io

    data = path.read_bytes()  # hashed and parsed from the same bytes
    recorded = ((metadata or {}).get("checksums") or {}).get(MANIFEST, {}).get("sha256")
    if recorded and hashlib.sha256(data).hexdigest() != recorded:
        raise DamagedOutputError(
            f"{str(path)!r} has changed since the run wrote it (its SHA-256 is not the one metadata.json records): "
            f"its rows may no longer name the arrays' rows, so it is not used. Run `visreps verify {folder}` to see "
            f"what else changed; restore the manifest or {_REDO}"
        )
    # the csv module, not pandas' parser: paths that are not UTF-8 come back as the same surrogate escapes
    rows = list(csv.reader(io.StringIO(data.decode("utf-8", errors="surrogateescape"), newline="")))
    header = rows[0] if rows else []
    if header[:3] != ["index", "path", "label"]:
        raise _damaged(path, f"columns {header}, expected index, path, label")
    if any(len(r) != len(header) for r in rows[1:]):
        bad = next(i for i, r in enumerate(rows[1:], 2) if len(r) != len(header))
        raise _damaged(path, f"line {bad} does not have the {len(header)} columns of the header")
    try:
        # object columns: pandas' own string type refuses the surrogate escapes of non-UTF-8 names
        df = pd.DataFrame({c: pd.Series([r[j] for r in rows[1:]], dtype=object) for j, c in enumerate(header)})
        df["index"] = np.array([int(v) for v in df["index"]], dtype=np.int64)
    except ValueError as e:
        raise _damaged(path, f"its index column is not made of integers ({e})") from None
    if metadata is not None:
        n = (metadata.get("images") or {}).get("n_extracted")
        if n is not None and len(df) != n:
            raise _damaged(path, f"{len(df)} rows where metadata.json records {n} images")
        if len(df) and not np.array_equal(df["index"].to_numpy(), np.arange(len(df))):
            raise _damaged(path, "its index column is not 0, 1, 2, ...")
    return df


def _read_layer(folder: Path, layer: str, metadata: dict, mmap: bool, handle: Any = None):
    """One layer's array, checked against its metadata record (file, shape, dtype, byte size)."""
    rec = metadata["layers"][layer]
    fmt = get_format(metadata.get("format", "npy"))
    fname = rec.get("file") or fmt.layer_file(layer)
    path = folder / fname
    expected = tuple(int(x) for x in rec.get("shape") or ())
    dtype = np.dtype(rec.get("dtype", "float32"))
    try:
        if fmt.one_file is None:
            _check_size(folder, fname, metadata)
        arr = fmt.read(path, layer, handle, mmap=mmap, expected=expected, dtype=dtype)
    except VisrepsError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever the reader says, the file is not what metadata.json describes
        raise _damaged(path, f"cannot be read ({type(e).__name__}: {e})") from None
    if expected and tuple(arr.shape) != expected:
        raise _damaged(path, f"it holds an array of shape {tuple(arr.shape)}, metadata.json records {expected}")
    return arr


def _read_predictions(folder: Path, metadata: dict):
    """The top-k table of a run extracted with ``top_k`` (``predictions.csv``), else ``None``."""
    if "predictions.csv" not in (metadata.get("extra_files") or []):
        return None
    import pandas as pd

    _check_size(folder, "predictions.csv", metadata)
    try:
        predictions = pd.read_csv(folder / "predictions.csv", keep_default_na=False, encoding_errors="surrogateescape")
    except (ValueError, pd.errors.ParserError) as e:
        raise _damaged(folder / "predictions.csv", f"not a readable table ({e})") from None
    for c in predictions.columns:  # written from float32 with %.9g: read back exactly
        if c.startswith("prob_"):
            predictions[c] = predictions[c].astype(np.float32)
    return predictions


def load_features(
    folder: str | os.PathLike, layers: Sequence[str] | str | None = None, *, mmap: bool = True
) -> Features:
    """Read a finished output folder, after checking every file against its ``metadata.json``.

    Each layer's file must exist and hold the recorded shape and dtype, with the byte size
    recorded at finish time; the manifest must have one row per image. (``verify`` also checks
    each file's SHA-256.)

    Args:
        folder: the ``--out`` folder of an extraction.
        layers: which layers (default: all).
        mmap: memory-map npy arrays instead of reading them (no memory used until rows are touched); zarr
            layers are then lazy :class:`~visreps.storage.formats.zarr.ZarrLayer` objects (read when indexed).

    Raises:
        VisrepsError: the folder is not finished (an interrupted run) or not a visreps folder.
        DamagedOutputError: a file is missing, truncated or does not match the metadata.
    """
    folder = Path(folder).expanduser()
    metadata = read_metadata(folder)
    info = metadata["layers"]
    if isinstance(layers, str):
        layers = [layers]
    wanted = list(layers) if layers is not None else list(info)
    fmt = get_format(metadata.get("format", "npy"))
    features: dict[str, Any] = {}
    handle, opened = None, False
    try:
        for layer in wanted:
            if layer not in info:
                raise _no_layer(f"{str(folder)!r} has no layer {layer!r}", layer, list(info))
            if not opened:  # the one store of hdf5/zarr, opened (and checked) once
                handle, opened = fmt.open_reader(folder, metadata), True
            features[layer] = _read_layer(folder, layer, metadata, mmap, handle)
    finally:
        if handle is not None:
            fmt.close_reader(handle)
    manifest = read_manifest(folder, metadata)
    for layer, arr in features.items():
        if len(arr) != len(manifest):
            raise _damaged(folder / MANIFEST, f"{len(manifest)} rows, but layer {layer!r} has {len(arr)}")
    return Features(features, manifest, metadata, folder, _read_predictions(folder, metadata))


def verify(folder: str | os.PathLike) -> dict[str, str]:
    """Check a finished output folder completely: every file's size and SHA-256 against ``metadata.json``,
    then every layer's shape and dtype and the manifest's rows (as :func:`load_features` does).

    Returns:
        ``{file name: sha256}`` of the files checked.

    Raises:
        DamagedOutputError: naming every damaged file.
    """
    from .folder import file_bytes

    folder = Path(folder).expanduser()
    metadata = read_metadata(folder)
    sums = metadata.get("checksums") or {}
    bad = []
    for name, rec in sums.items():
        path = folder / name
        if not _safe_name(name):
            continue
        if not path.exists():
            bad.append(f"{name} (missing)")
        elif file_bytes(path) != rec.get("bytes"):
            bad.append(f"{name} ({file_bytes(path)} bytes, recorded {rec.get('bytes')})")
        elif _file_sha256(path) != rec.get("sha256"):
            bad.append(f"{name} (SHA-256 differs from the one recorded)")
    if bad:
        raise DamagedOutputError(f"{len(bad)} damaged file(s) in {str(folder)!r}: {'; '.join(bad)}; {_REDO}")
    feats = load_features(folder, mmap=True)
    _verify_finite(feats)
    if not sums:
        raise VisrepsError(
            f"{str(folder)!r} was written by a visreps version that recorded no checksums; its shapes and row "
            "counts are consistent, but its contents cannot be verified"
        )
    return {n: r.get("sha256", "") for n, r in sums.items()}


def _verify_finite(feats: Features) -> None:
    """Refuse a folder whose layers hold NaN or inf (written before visreps checked each batch)."""
    for layer, arr in feats.items():
        hit = first_nonfinite(arr)
        if hit is not None:
            row, value = hit
            raise DamagedOutputError(
                f"layer {layer!r} of {str(feats.folder)!r} holds non-finite values (first: {value} for image "
                f"{feats.paths[row]!r}, row {row}); its files match their checksums, but analyses refuse it. "
                f"Check the model's weights and {_REDO}"
            )
