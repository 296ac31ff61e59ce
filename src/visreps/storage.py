"""Writing and reading extraction output folders.

An output folder holds

* one array per layer: ``<layer>.npy`` (also ``.mat``, ``.pt``, ``.txt``), or one
  ``features.h5`` with a dataset per layer;
* ``manifest.csv``: ``index,path,label``: row ``i`` of every array is image ``path``
  (relative to the image root, POSIX);
* ``metadata.json``: model, weights, preprocessing, layers and shapes, options, versions,
  ``"status": "complete"``.

A file under its final name is complete: arrays are written under ``<name>.partial`` and
renamed when the run finishes; ``metadata.json`` is written last. While a run is under way (or
after it died) the folder holds ``metadata.partial.json`` with ``"status": "running"``.

Streaming: ``npy``, ``hdf5`` and ``txt`` arrays are preallocated on disk and every batch is
written into place with ``pwrite`` (not a memory map), so the process's memory does not grow with
the number of images. ``mat`` and ``pt`` are staged as ``.npy`` and converted at the end (the
conversion holds one layer in memory: prefer npy/hdf5 for very large layers).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .errors import LayerNotFoundError, OutputExistsError, VisrepsError, closest

FORMATS = ("npy", "hdf5", "mat", "pt", "txt")
SUFFIX = {"npy": ".npy", "mat": ".mat", "pt": ".pt", "txt": ".txt"}
H5_NAME = "features.h5"
MANIFEST = "manifest.csv"
METADATA = "metadata.json"
METADATA_PARTIAL = "metadata.partial.json"
PARTIAL = ".partial"


def check_format(fmt: str) -> str:
    f = {"h5": "hdf5", "hdf": "hdf5"}.get(str(fmt).lower(), str(fmt).lower())
    if f not in FORMATS:
        raise VisrepsError(f"file format {fmt!r} is not supported; use one of {', '.join(FORMATS)}")
    return f


def layer_filename(layer: str, fmt: str) -> str:
    """File name of a layer's array: the layer name with characters unsafe in file names replaced."""
    safe = re.sub(r"[^A-Za-z0-9._@-]", "_", layer)
    return safe + SUFFIX[fmt]


# --------------------------------------------------------------------------- npy streaming

_NPY_MAGIC = b"\x93NUMPY\x01\x00"


def _npy_header(shape: tuple, dtype: np.dtype, total_len: int | None = None) -> bytes:
    d = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (np.lib.format.dtype_to_descr(dtype), tuple(shape))
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
                    f"cannot resume: {self.path.name} is missing or has an unexpected size in {str(self.path.parent)!r}; "
                    "start again with --overwrite"
                )
            self.fd = os.open(self.path, os.O_RDWR)
            return
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(self.fd, header)
        os.ftruncate(self.fd, size)

    def write(self, start: int, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
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


class TxtWriter:
    """A 2-D array as text, one row per line, appended batch by batch."""

    def __init__(self, path: Path, row_shape: tuple, n_rows: int, dtype=np.float32, *, resume: bool = False,
                 size: int | None = None):
        if len(row_shape) != 1:
            raise VisrepsError(
                f"txt holds 2-D arrays only, but layer output per image has shape {tuple(row_shape)}; "
                "flatten or pool it (--pool flatten/avg/max), or choose npy/hdf5"
            )
        self.final = Path(path)
        self.path = self.final.with_name(self.final.name + PARTIAL)
        if resume:
            if not self.path.is_file() or size is None or self.path.stat().st_size < size:
                raise VisrepsError(f"cannot resume: {self.path.name} is missing or shorter than recorded; start again with --overwrite")
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


class _StagedWriter(NpyWriter):
    """mat/pt: stream into a staging .npy, convert at the end."""

    def __init__(self, path: Path, row_shape: tuple, n_rows: int, dtype=np.float32, fmt: str = "mat", *, resume: bool = False):
        self.target = Path(path)
        self.fmt = fmt
        super().__init__(self.target.with_name(self.target.name + ".stage.npy"), row_shape, n_rows, dtype, resume=resume)

    def finish(self, n_rows: int) -> Path:
        staged = super().finish(n_rows)
        out = self.target.with_name(self.target.name + PARTIAL)
        arr = np.load(staged, mmap_mode="r")
        if self.fmt == "mat":
            from scipy.io import savemat

            savemat(out, {"features": np.asarray(arr)}, do_compression=False)
        else:
            import torch

            with open(out, "wb") as f:
                torch.save(torch.from_numpy(np.array(arr)), f)
        del arr
        os.unlink(staged)
        return out


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

    def add(self, layer: str, row_shape: tuple, n_rows: int, dtype=np.float32) -> "_H5Layer":
        if layer in self.h5:
            ds = self.h5[layer]
            if ds.shape != (n_rows, *row_shape):
                raise VisrepsError(f"cannot resume: dataset {layer!r} has shape {ds.shape}, expected {(n_rows, *row_shape)}")
            return _H5Layer(ds)
        row_bytes = int(np.prod(row_shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        chunk_rows = int(max(1, min(n_rows, (1 << 20) // max(1, row_bytes))))
        ds = self.h5.create_dataset(
            layer, shape=(n_rows, *row_shape), maxshape=(None, *row_shape), dtype=dtype, chunks=(chunk_rows, *row_shape)
        )
        return _H5Layer(ds)

    def finish(self, n_rows: int) -> Path:
        for name in self.h5:
            self.h5[name].resize(n_rows, axis=0)
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


def _rename_final(partial: Path) -> Path:
    final = partial.with_name(partial.name[: -len(PARTIAL)])
    os.replace(partial, final)
    return final


class OutputWriter:
    """Writes one extraction's output folder; see the module docstring for the contract."""

    def __init__(self, folder: str | os.PathLike, fmt: str, *, overwrite: bool = False, resume: bool = False):
        self.folder = Path(folder).expanduser()
        self.fmt = check_format(fmt)
        self.resume = resume
        if not resume:
            prepare_output_folder(self.folder, overwrite=overwrite)
        self.writers: dict[str, Any] = {}
        self.h5: H5Writer | None = None
        self.files: dict[str, str] = {}

    def write_metadata(self, metadata: dict, *, final: bool = False) -> None:
        name = METADATA if final else METADATA_PARTIAL
        _atomic_write_text(self.folder / name, json.dumps(_jsonable(metadata), indent=2))
        if final:
            (self.folder / METADATA_PARTIAL).unlink(missing_ok=True)

    def open_layers(self, shapes: Mapping[str, tuple], n_rows: int, dtype=np.float32, *, resume_state: dict | None = None) -> None:
        """Preallocate one array per layer (or reopen them, to resume a run)."""
        resume = resume_state is not None
        sizes = (resume_state or {}).get("txt_bytes", {})
        if self.fmt == "hdf5":
            self.h5 = H5Writer(self.folder / H5_NAME, resume=resume)
        for layer, shape in shapes.items():
            if self.fmt == "hdf5":
                self.writers[layer] = self.h5.add(layer, tuple(shape), n_rows, dtype)
                self.files[layer] = H5_NAME
                continue
            fname = layer_filename(layer, self.fmt)
            if fname in self.files.values():
                raise VisrepsError(f"layers map to the same file name {fname!r}; request them separately")
            path = self.folder / fname
            if self.fmt == "npy":
                self.writers[layer] = NpyWriter(path, tuple(shape), n_rows, dtype, resume=resume)
            elif self.fmt == "txt":
                self.writers[layer] = TxtWriter(path, tuple(shape), n_rows, dtype, resume=resume, size=sizes.get(layer, 0))
            else:
                self.writers[layer] = _StagedWriter(path, tuple(shape), n_rows, dtype, fmt=self.fmt, resume=resume)
            self.files[layer] = fname

    def sizes(self) -> dict[str, int]:
        """Bytes written so far to text arrays (a resumed run truncates them there)."""
        return {k: w.size() for k, w in self.writers.items() if isinstance(w, TxtWriter)}

    def write(self, start: int, batch: Mapping[str, np.ndarray]) -> None:
        for layer, rows in batch.items():
            self.writers[layer].write(start, rows)

    def finish(self, n_rows: int, manifest_rows: Sequence[tuple[str, str]], metadata: dict) -> None:
        partials = []
        if self.h5 is not None:
            partials.append(self.h5.finish(n_rows))
        else:
            partials += [w.finish(n_rows) for w in self.writers.values()]
        write_manifest(self.folder / MANIFEST, manifest_rows)
        for p in partials:
            _rename_final(p)
        metadata = dict(metadata)
        metadata["status"] = "complete"
        self.write_metadata(metadata, final=True)

    def abort(self) -> None:
        for w in self.writers.values():
            if hasattr(w, "abort"):
                w.abort()
        if self.h5 is not None:
            self.h5.abort()


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + PARTIAL)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_manifest(path: Path, rows: Sequence[tuple[str, str]]) -> None:
    import csv

    tmp = path.with_name(path.name + PARTIAL)
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["index", "path", "label"])
        for i, (p, label) in enumerate(rows):
            w.writerow([i, p, label])
    os.replace(tmp, path)


def _visreps_files(folder: Path) -> list[Path]:
    """Files a previous visreps run wrote into ``folder`` (the only ones --overwrite removes)."""
    names = {MANIFEST, METADATA, METADATA_PARTIAL, H5_NAME, "progress.partial.json", "predictions.csv", "predictions.json"}
    found = [p for p in folder.iterdir() if p.name in names or p.name.endswith((PARTIAL, ".stage.npy", ".partial.json.tmp"))]
    for meta_name in (METADATA, METADATA_PARTIAL):
        meta = folder / meta_name
        if meta.is_file():
            try:
                info = json.loads(meta.read_text())
                for rec in (info.get("layers") or {}).values():
                    f = folder / rec.get("file", "")
                    if f.is_file() and f.parent == folder:
                        found.append(f)
                for extra in info.get("extra_files", []):
                    if (folder / extra).is_file():
                        found.append(folder / extra)
            except (ValueError, OSError, AttributeError):
                pass
    return sorted(set(found))


def prepare_output_folder(folder: Path, *, overwrite: bool) -> None:
    """Create ``folder``; refuse a folder with earlier results unless ``overwrite``."""
    if folder.exists() and not folder.is_dir():
        raise OutputExistsError(f"output {str(folder)!r} is a file, not a folder; choose another --out")
    folder.mkdir(parents=True, exist_ok=True)
    previous = _visreps_files(folder)
    if not previous:
        return
    if not overwrite:
        raise OutputExistsError(
            f"output folder {str(folder)!r} already holds results ({previous[0].name}, ...); "
            "pass --overwrite (overwrite=True) to replace them, or choose another --out"
        )
    for p in previous:
        p.unlink(missing_ok=True)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


# --------------------------------------------------------------------------- reading


class Features(Mapping):
    """Per-layer feature arrays with the images they belong to.

    Behaves like a dict ``layer → array`` (rows = images, in manifest order).

    Attributes:
        features: dict of layer name → array (``np.memmap`` for npy folders read with mmap).
        manifest: ``pandas.DataFrame`` with ``index, path, label``.
        metadata: the run's metadata dict.
        folder: the output folder (``None`` for in-memory results).
    """

    def __init__(self, features: dict, manifest, metadata: dict, folder: Path | None = None):
        self.features = features
        self.manifest = manifest
        self.metadata = metadata
        self.folder = folder

    def __getitem__(self, layer: str):
        if layer not in self.features:
            hint = closest(layer, self.features)
            raise LayerNotFoundError(
                f"no layer {layer!r} in these features; available: {', '.join(self.features)}"
                + (f" (closest: {', '.join(hint)})" if hint else "")
            )
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


def read_manifest(folder: Path):
    import pandas as pd

    path = folder / MANIFEST
    if not path.is_file():
        raise VisrepsError(f"{str(folder)!r} has no {MANIFEST}; it is not a finished visreps output folder")
    return pd.read_csv(path, dtype={"path": str, "label": str}, keep_default_na=False)


def load_features(folder: str | os.PathLike, layers: Sequence[str] | str | None = None, *, mmap: bool = True) -> Features:
    """Read a finished output folder.

    Args:
        folder: the ``--out`` folder of an extraction.
        layers: which layers (default: all).
        mmap: memory-map npy arrays instead of reading them (no memory used until rows are touched).

    Raises:
        VisrepsError: the folder is not finished (an interrupted run) or not a visreps folder.
    """
    folder = Path(folder).expanduser()
    meta_path = folder / METADATA
    if not meta_path.is_file():
        if (folder / METADATA_PARTIAL).is_file():
            raise VisrepsError(
                f"{str(folder)!r} holds an unfinished extraction (status running or interrupted); "
                "run the extraction again with --overwrite"
            )
        raise VisrepsError(f"{str(folder)!r} is not a visreps output folder (no {METADATA})")
    metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    if metadata.get("status", "complete") != "complete":
        raise VisrepsError(f"{str(folder)!r} is not complete (status {metadata.get('status')!r})")
    info = metadata.get("layers") or {}
    if isinstance(layers, str):
        layers = [layers]
    wanted = list(layers) if layers is not None else list(info)
    fmt = metadata.get("format", "npy")
    features: dict[str, Any] = {}
    h5 = None
    for layer in wanted:
        if layer not in info:
            hint = closest(layer, info)
            raise LayerNotFoundError(
                f"{str(folder)!r} has no layer {layer!r}; available: {', '.join(info)}"
                + (f" (closest: {', '.join(hint)})" if hint else "")
            )
        path = folder / info[layer].get("file", layer_filename(layer, fmt) if fmt != "hdf5" else H5_NAME)
        if path.suffix == ".h5":
            import h5py

            if h5 is None:
                h5 = h5py.File(path, "r")
            features[layer] = h5[layer][()]
        elif path.suffix == ".npy":
            features[layer] = np.load(path, mmap_mode="r" if mmap else None)
        elif path.suffix == ".mat":
            from scipy.io import loadmat

            features[layer] = loadmat(path)["features"]
        elif path.suffix == ".pt":
            import torch

            features[layer] = torch.load(path, map_location="cpu", weights_only=True).numpy()
        elif path.suffix == ".txt":
            features[layer] = np.loadtxt(path, dtype=np.float32, ndmin=2)
        else:
            raise VisrepsError(f"unknown feature file {str(path)!r}")
    if h5 is not None:
        h5.close()
    return Features(features, read_manifest(folder), metadata, folder)


# --------------------------------------------------------------------------- shards

#: metadata fields that must be equal for a run to be resumed or its shards merged
RUN_IDENTITY = ("model", "weights", "preprocessing", "format", "layers_requested", "options_identity", "images_identity")
#: fields that differ between runs that computed the same numbers (time, machine load)
VOLATILE = ("created", "seconds", "command")


def _read_meta(folder: Path) -> dict:
    meta = folder / METADATA
    if not meta.is_file():
        state = "unfinished" if (folder / METADATA_PARTIAL).is_file() else "not a visreps output folder"
        raise VisrepsError(f"shard {str(folder)!r} is {state}; finish it (--resume) before merging")
    return json.loads(meta.read_text(encoding="utf-8"))


def _rows(arr, start: int, stop: int) -> np.ndarray:
    return np.asarray(arr[start:stop])


def merge_shards(out: str | os.PathLike, shards: Sequence[str | os.PathLike], *, overwrite: bool = False,
                 chunk_rows: int = 256) -> Features:
    """Join finished shard folders (``extract(..., shard="I/N")``) into one folder equal to a single run.

    The shards must come from the same run (model, weights, preprocessing, layers, options and
    image list) and cover all N slices exactly once; arrays are copied in chunks, so memory
    stays flat for npy/hdf5.

    Raises:
        VisrepsError: a shard is unfinished, from another run, missing or given twice.
    """
    folders = [Path(s).expanduser() for s in shards]
    if not folders:
        raise VisrepsError("no shard folders given")
    metas = [_read_meta(f) for f in folders]
    for f, m in zip(folders, metas):
        if "shard" not in m:
            raise VisrepsError(f"{str(f)!r} is not a shard (it was not extracted with --shard I/N)")
    ref = metas[0]
    for f, m in zip(folders[1:], metas[1:]):
        changed = [k for k in RUN_IDENTITY if m.get(k) != ref.get(k)]
        if m["shard"]["count"] != ref["shard"]["count"]:
            changed.append("shard count")
        if changed:
            raise VisrepsError(
                f"shard {str(f)!r} comes from a different run than {str(folders[0])!r} (differs in {', '.join(changed)}); "
                "merge only shards of one extraction"
            )
    count = ref["shard"]["count"]
    order = sorted(range(len(metas)), key=lambda j: metas[j]["shard"]["index"])
    indices = [metas[j]["shard"]["index"] for j in order]
    dup = sorted({i for i in indices if indices.count(i) > 1})
    if dup:
        raise VisrepsError(f"shard(s) {', '.join(f'{i}/{count}' for i in dup)} given twice (overlap); give each shard once")
    missing = sorted(set(range(1, count + 1)) - set(indices))
    if missing:
        raise VisrepsError(f"shard(s) {', '.join(f'{i}/{count}' for i in missing)} missing (gap); extract them before merging")
    expect = 0
    for j in order:
        s = metas[j]["shard"]
        if s["start"] != expect:
            raise VisrepsError(f"shard {str(folders[j])!r} starts at image {s['start']}, expected {expect}")
        expect = s["stop"]
    if expect != ref["images"]["n_found"]:
        raise VisrepsError(f"the shards cover {expect} of {ref['images']['n_found']} images")

    parts = [load_features(folders[j]) for j in order]
    layers = list(ref["layers"])
    total = sum(len(p.manifest) for p in parts)
    writer = OutputWriter(out, ref["format"], overwrite=overwrite)
    meta = json.loads(json.dumps(ref))
    meta.pop("shard")
    meta["status"] = "running"
    meta["created"] = min(m["created"] for m in metas)
    meta["seconds"] = round(sum(m.get("seconds", 0) for m in metas), 3)
    meta["images"]["n_extracted"] = total
    meta["images"]["skipped"] = [s for j in order for s in metas[j]["images"].get("skipped", [])]
    for k in layers:
        meta["layers"][k]["shape"][0] = total
    writer.write_metadata(meta)
    try:
        writer.open_layers({k: tuple(ref["layers"][k]["shape"][1:]) for k in layers}, total)
        row = 0
        for part in parts:
            n = len(part.manifest)
            for s in range(0, n, chunk_rows):
                writer.write(row + s, {k: _rows(part[k], s, min(n, s + chunk_rows)) for k in layers})
            row += n
    except BaseException:
        writer.abort()
        raise
    manifest_rows = [(p, l) for part in parts for p, l in zip(part.paths, part.labels)]
    if "predictions.csv" in (ref.get("extra_files") or []):
        import pandas as pd

        from .extraction import save_predictions

        table = pd.concat([pd.read_csv(folders[j] / "predictions.csv", keep_default_na=False) for j in order], ignore_index=True)
        table["index"] = range(len(table))
        save_predictions(table, writer.folder)
    writer.finish(total, manifest_rows, meta)
    return load_features(writer.folder)
