"""Writing and reading extraction output folders.

An output folder holds

* one array per layer: ``<layer>.npy`` (also ``.mat``, ``.pt``, ``.txt``), or one
  ``features.h5`` with a dataset per layer;
* ``manifest.csv``: ``index,path,label``: row ``i`` of every array is image ``path``
  (relative to the image root, POSIX);
* ``metadata.json``: model, weights, preprocessing, layers and shapes, options, versions,
  ``"status": "complete"``.

Finite or refused: every batch of features is checked for NaN and inf before it is written (by both
sinks); a non-finite value stops the run with an error naming the layer and the image, and the folder
stays unfinished (``metadata.partial.json``, status ``failed``). :func:`verify` also scans every layer.

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
import platform
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .errors import DamagedOutputError, LayerNotFoundError, OutputExistsError, VisrepsError, closest
from .options import FORMATS

if TYPE_CHECKING:
    import h5py


SUFFIX = {"npy": ".npy", "mat": ".mat", "pt": ".pt", "txt": ".txt"}
H5_NAME = "features.h5"
MANIFEST = "manifest.csv"
METADATA = "metadata.json"
METADATA_PARTIAL = "metadata.partial.json"
PARTIAL = ".partial"


def versions() -> dict[str, str]:
    """Versions of Python and of the packages that decide the numbers, for the metadata."""
    from importlib import metadata as md

    out = {"python": platform.python_version()}
    for pkg in (
        "visreps",
        "torch",
        "torchvision",
        "timm",
        "numpy",
        "pillow",
        "open_clip_torch",
        "transformers",
        "keras",
        "tensorflow",
        "tensorflow-cpu",
    ):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


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
        if len(row_shape) != 1:
            raise VisrepsError(
                f"txt holds 2-D arrays only, but layer output per image has shape {tuple(row_shape)}; "
                "flatten or pool it (--pool flatten/avg/max), or choose npy/hdf5"
            )
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


class _StagedWriter(NpyWriter):
    """mat/pt: stream into a staging .npy, convert at the end."""

    def __init__(
        self, path: Path, row_shape: tuple, n_rows: int, dtype=np.float32, fmt: str = "mat", *, resume: bool = False
    ):
        self.target = Path(path)
        self.fmt = fmt
        super().__init__(
            self.target.with_name(self.target.name + ".stage.npy"), row_shape, n_rows, dtype, resume=resume
        )

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

    def add(self, layer: str, row_shape: tuple, n_rows: int, dtype=np.float32) -> _H5Layer:
        if layer in self.h5:
            ds = cast("h5py.Dataset", self.h5[layer])
            if ds.shape != (n_rows, *row_shape):
                raise VisrepsError(
                    f"cannot resume: dataset {layer!r} has shape {ds.shape}, expected {(n_rows, *row_shape)}"
                )
            return _H5Layer(ds)
        row_bytes = int(np.prod(row_shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        chunk_rows = int(max(1, min(n_rows, (1 << 20) // max(1, row_bytes))))
        ds = self.h5.create_dataset(
            layer, shape=(n_rows, *row_shape), maxshape=(None, *row_shape), dtype=dtype, chunks=(chunk_rows, *row_shape)
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


def _rename_final(partial: Path) -> Path:
    final = partial.with_name(partial.name[: -len(PARTIAL)])
    os.replace(partial, final)
    return final


PROGRESS = "progress.partial.json"
#: auxiliary per-row arrays a run may keep beside the layers (never layer names: they start with a dot)
AUX_FILES = {"topk_index": ".topk_index.npy", "topk_prob": ".topk_prob.npy", "blake2b": ".blake2b.npy"}
PREDICTION_FILES = ("predictions.csv", "predictions.json")
PCA_FIT = "pca_fit.npz"  # the PCA of a run reduced with pca:K (visreps.reduce), copied by merge_shards


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _safe_name(name: object) -> bool:
    """A plain file name inside the folder (a record naming ``../x`` or ``/etc/x`` is ignored)."""
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name


def read_record(folder: Path) -> dict | None:
    """The run record (``metadata.json`` or ``metadata.partial.json``) of an earlier visreps run, if any.

    Raises:
        OutputExistsError: a metadata file is there but is not a visreps record (damaged, or not ours).
    """
    for name in (METADATA, METADATA_PARTIAL):
        path = folder / name
        if not path.is_file():
            continue
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as e:
            raise OutputExistsError(
                f"{str(path)!r} is not a readable visreps record ({e.__class__.__name__}); visreps does not replace "
                "files it cannot prove it wrote: move or delete it yourself, or choose another --out"
            ) from None
        if not isinstance(info, dict) or not isinstance(info.get("layers"), dict) or "status" not in info:
            raise OutputExistsError(f"{str(path)!r} was not written by visreps; move it away or choose another --out")
        info["_record"] = name
        return info
    return None


def owned_files(folder: Path) -> set[str]:
    """Names of the files an earlier visreps run recorded as written into ``folder`` (only these may be replaced).

    The record is the earlier run's ``metadata.json`` (or ``metadata.partial.json``): its ``files``
    list names everything the run created, temporary files included. Records of visreps 0.1,
    which had no such list, own their metadata, manifest, layer files and listed extra files.
    """
    info = read_record(folder)
    if info is None:
        return set()
    names = {info["_record"]}
    if isinstance(info.get("files"), list):
        names |= {n for n in info["files"] if _safe_name(n)}
    else:  # visreps 0.1 records
        names |= {METADATA, METADATA_PARTIAL, MANIFEST, PROGRESS}
        for rec in info["layers"].values():
            f = rec.get("file") if isinstance(rec, dict) else None
            if isinstance(f, str) and _safe_name(f):
                names |= {f, f + PARTIAL, f + ".stage.npy" + PARTIAL}
        names |= {n for n in info.get("extra_files") or [] if _safe_name(n)}
    return names


def prepare_output_folder(folder: Path, *, overwrite: bool, planned: Sequence[str] = (), resume: bool = False) -> None:
    """Create ``folder`` and make room for a run that will write the files ``planned``.

    Files are replaced only with ``overwrite`` and only when an earlier visreps run recorded them
    as its own; a planned name held by any other file is an error, with or without ``overwrite``.
    Files that the new run does not write are left alone.

    Raises:
        OutputExistsError: earlier results without ``overwrite``, or a name clash with a file
            visreps did not write.
        VisrepsError: the folder cannot be created or written.
    """
    if folder.exists() and not folder.is_dir():
        raise OutputExistsError(f"output {str(folder)!r} is a file, not a folder; choose another --out")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise VisrepsError(
            f"cannot create the output folder {str(folder)!r}: {e.strerror or e}; "
            "choose a folder you can write to (--out)"
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise VisrepsError(
            f"cannot write into the output folder {str(folder)!r} (permission denied); choose another --out"
        )
    owned = owned_files(folder)
    present = {p.name for p in folder.iterdir()}
    clash = sorted(n for n in planned if n in present and n not in owned)
    if clash:
        more = f" (and {len(clash) - 1} more)" if len(clash) > 1 else ""
        raise OutputExistsError(
            f"output folder {str(folder)!r} holds {clash[0]!r}{more}, which visreps did not write and would have to "
            "replace; visreps never replaces files it did not write: move it away or choose another --out"
        )
    if resume:
        return
    previous = sorted(owned & present)
    if not previous:
        return
    if not overwrite and not _nothing_kept(folder):
        raise OutputExistsError(
            f"output folder {str(folder)!r} already holds results of an earlier run ({previous[0]}, ...); "
            "pass --overwrite (overwrite=True) to replace them, or choose another --out"
        )
    for name in previous:
        p = folder / name
        if p.is_file() or p.is_symlink():
            p.unlink()


def _nothing_kept(folder: Path) -> bool:
    """Whether the folder's record is of a run that failed or was stopped before writing any row."""
    if (folder / METADATA).exists():
        return False
    try:
        info = json.loads((folder / METADATA_PARTIAL).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    images = info.get("images") or {}
    return info.get("status") in ("failed", "interrupted") and images.get("rows_written") == 0


def _is_disk_full(e: BaseException, folder: Path) -> bool:
    import errno
    import shutil

    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(e, (OSError, RuntimeError)):  # h5py reports a failed write without errno
        try:
            return shutil.disk_usage(folder).free < (1 << 20) and "write" in str(e).lower()
        except OSError:
            return False
    return False


def first_nonfinite(arr: Any, *, chunk_bytes: int = 64 * 2**20) -> tuple[int, float] | None:
    """``(row, value)`` of the first row of ``arr`` (rows first) holding NaN or ±inf, or ``None``.

    Read in blocks of rows (``chunk_bytes`` each), so a memory-mapped or HDF5 layer is never held whole.
    """
    if len(arr) == 0 or np.dtype(arr.dtype).kind not in "fc":
        return None
    row_bytes = max(1, int(np.prod(arr.shape[1:], dtype=np.int64)) * np.dtype(arr.dtype).itemsize)
    step = max(1, chunk_bytes // row_bytes)
    for r0 in range(0, len(arr), step):
        block = np.asarray(arr[r0 : r0 + step])
        with np.errstate(over="ignore", invalid="ignore"):
            total = block.sum()
        if np.isfinite(total):  # one fast pass: NaN and inf propagate; an overflow only costs the exact pass
            continue
        bad = ~np.isfinite(block.reshape(len(block), -1))
        if bad.any():
            r, c = np.argwhere(bad)[0]
            return r0 + int(r), float(block.reshape(len(block), -1)[r, c])
    return None


class NonFiniteError(VisrepsError):
    """A layer gave NaN or inf: the layer, the output row, the value, the image (when known) and the output."""

    def __init__(self, layer: str, row: int, value: float, where: str, image: str | None = None) -> None:
        self.layer, self.row, self.value, self.where, self.image = layer, row, value, where, image
        what = f"image {image!r} (row {row})" if image is not None else f"row {row}"
        super().__init__(
            f"layer {layer!r} gives a non-finite value ({value}) for {what}; features must be finite, so {where} "
            "is left unfinished. Check the weights (a file of NaNs?) and the inputs, or extract with --precision fp32 "
            "(float16 overflows to inf)"
        )

    def naming(self, image: str) -> NonFiniteError:
        """The same error, naming the image of its row."""
        return NonFiniteError(self.layer, self.row, self.value, self.where, image)


def check_finite(
    batch: Mapping[str, Any], start: int, *, names: Sequence[str] | None = None, where: str = "the output"
) -> None:
    """Refuse a batch of layer arrays (rows ``start, start+1, ...``) holding NaN or inf.

    Raises:
        NonFiniteError: naming the layer, the value, the first such row (and its image, ``names[i]``) and ``where``.
    """
    for layer, rows in batch.items():
        hit = first_nonfinite(rows)
        if hit is None:
            continue
        i, value = hit
        raise NonFiniteError(layer, start + i, value, where, names[i] if names is not None and i < len(names) else None)


class OutputWriter:
    """The folder sink: writes one extraction's output folder (see the module docstring for the contract).

    Use: ``begin(metadata, shapes, n_rows)`` (checks everything, then creates the files), then
    ``write(row, arrays)`` and ``checkpoint(state)`` per batch, then ``finish(...)`` or ``abort(...)``.
    Nothing is written before ``begin`` has checked the layers against the format, the folder's
    files against the earlier run's record, and the free space.
    """

    def __init__(self, folder: str | os.PathLike, fmt: str, *, overwrite: bool = False, resume: bool = False):
        self.folder = Path(folder).expanduser()
        self.fmt = check_format(fmt)
        self.resume = resume
        self.overwrite = overwrite
        if self.folder.exists() and not self.folder.is_dir():
            raise OutputExistsError(f"output {str(self.folder)!r} is a file, not a folder; choose another --out")
        self.writers: dict[str, Any] = {}
        self.aux: dict[str, NpyWriter] = {}
        self.h5: H5Writer | None = None
        self.files: dict[str, str] = {}
        self.progress_path = self.folder / PROGRESS
        self.last_state: dict | None = None
        self.planned: list[str] = []
        self.bytes_needed = 0

    # ------------------------------------------------------------------ planning
    def plan(
        self,
        shapes: Mapping[str, tuple],
        n_rows: int,
        *,
        aux: Mapping[str, tuple] | None = None,
        extra_files: Sequence[str] = (),
    ) -> list[str]:
        """Check the layers against the format and list every file name the run may create."""
        self.shapes = {k: tuple(v) for k, v in shapes.items()}
        self.aux_shapes = dict(aux or {})
        names = {
            METADATA,
            METADATA_PARTIAL,
            METADATA_PARTIAL + PARTIAL,
            MANIFEST,
            MANIFEST + PARTIAL,
            PROGRESS,
            PROGRESS + ".tmp",
        }
        files: dict[str, str] = {}
        for layer, shape in self.shapes.items():
            if self.fmt == "txt" and len(shape) != 1:
                raise VisrepsError(
                    f"txt holds 2-D arrays only, but layer {layer!r} gives per image an array of shape {shape}; "
                    "flatten or pool it (--pool flatten/avg/max), or choose npy/hdf5"
                )
            fname = H5_NAME if self.fmt == "hdf5" else layer_filename(layer, self.fmt)
            if self.fmt != "hdf5" and fname in files.values():
                raise VisrepsError(f"layers map to the same file name {fname!r}; request them separately")
            files[layer] = fname
            names |= {fname, fname + PARTIAL}
            if self.fmt in ("mat", "pt"):
                names.add(fname + ".stage.npy" + PARTIAL)
        for key in self.aux_shapes:
            names.add(AUX_FILES[key] + PARTIAL)
        for extra in extra_files:
            names |= {extra, extra + PARTIAL}
        self.files = files
        self.planned = sorted(names)
        layer_bytes = [n_rows * int(np.prod(s, dtype=np.int64)) * 4 for s in self.shapes.values()]
        self.bytes_needed = sum(layer_bytes) + (max(layer_bytes, default=0) if self.fmt in ("mat", "pt") else 0)
        return self.planned

    def _check_space(self) -> None:
        import shutil

        if self.fmt == "txt":  # text size depends on the numbers; checked as it is written
            return
        free = shutil.disk_usage(self.folder).free
        if self.bytes_needed > free:
            raise VisrepsError(
                f"not enough space in {str(self.folder)!r}: the arrays need {human_bytes(self.bytes_needed)}, "
                f"{human_bytes(free)} is free; reduce the layers while extracting (--reduce srp:4096), pool them "
                "(--pool avg), free space or choose another --out"
            )

    # ------------------------------------------------------------------ the run
    def begin(
        self,
        metadata: dict,
        shapes: Mapping[str, tuple],
        n_rows: int,
        *,
        aux: Mapping[str, tuple] | None = None,
        extra_files: Sequence[str] = (),
        resume_state: dict | None = None,
    ) -> None:
        """Check, then create the folder's files: the metadata record first, then the preallocated arrays.

        ``shapes`` are per-image shapes of the layers (float32); ``aux`` maps auxiliary array names
        (:data:`AUX_FILES`) to ``(row_shape, dtype)``. ``metadata["files"]`` becomes the list of
        every name the run may create: the record that later runs trust to replace only these.
        """
        self.plan(shapes, n_rows, aux={k: v for k, v in (aux or {}).items()}, extra_files=extra_files)
        prepare_output_folder(self.folder, overwrite=self.overwrite, planned=self.planned, resume=self.resume)
        if not self.resume:
            self._check_space()
        metadata["files"] = self.planned
        created_before = {p.name for p in self.folder.iterdir()}
        try:
            self.write_metadata(metadata)
            self._open(n_rows, resume_state)
        except BaseException:
            self.abort()
            if not self.resume:  # nothing of this run is worth keeping: remove what it created
                for name in self.planned:
                    if name not in created_before:
                        (self.folder / name).unlink(missing_ok=True)
            raise

    def write_metadata(self, metadata: dict, *, final: bool = False) -> None:
        name = METADATA if final else METADATA_PARTIAL
        _atomic_write_text(self.folder / name, json.dumps(_jsonable(metadata), indent=2))
        if final:
            (self.folder / METADATA_PARTIAL).unlink(missing_ok=True)

    def _open(self, n_rows: int, resume_state: dict | None) -> None:
        resume = resume_state is not None
        sizes = (resume_state or {}).get("txt_bytes", {})
        if self.fmt == "hdf5":
            self.h5 = H5Writer(self.folder / H5_NAME, resume=resume)
        for layer, shape in self.shapes.items():
            path = self.folder / self.files[layer]
            if self.fmt == "hdf5":
                assert self.h5 is not None
                self.writers[layer] = self.h5.add(layer, shape, n_rows, np.float32)
            elif self.fmt == "npy":
                self.writers[layer] = NpyWriter(path, shape, n_rows, np.float32, resume=resume)
            elif self.fmt == "txt":
                self.writers[layer] = TxtWriter(
                    path, shape, n_rows, np.float32, resume=resume, size=sizes.get(layer, 0)
                )
            else:
                self.writers[layer] = _StagedWriter(path, shape, n_rows, np.float32, fmt=self.fmt, resume=resume)
        for key, (row_shape, dtype) in self.aux_shapes.items():
            self.aux[key] = NpyWriter(self.folder / AUX_FILES[key], row_shape, n_rows, dtype, resume=resume)

    def sizes(self) -> dict[str, int]:
        """Bytes written so far to text arrays (a resumed run truncates them there)."""
        return {k: w.size() for k, w in self.writers.items() if isinstance(w, TxtWriter)}

    def write(self, start: int, batch: Mapping[str, np.ndarray]) -> None:
        """Write rows ``start, ...`` of each array, after :func:`check_finite` on the layers."""
        check_finite({k: v for k, v in batch.items() if k not in self.aux}, start, where=repr(str(self.folder)))
        for key, rows in batch.items():
            (self.aux[key] if key in self.aux else self.writers[key]).write(start, rows)

    def checkpoint(self, state: dict) -> None:
        """Record, atomically, that every row before ``state["rows"]`` is written (read back by resume)."""
        state = {**state, "txt_bytes": self.sizes()}
        tmp = self.progress_path.with_name(self.progress_path.name + ".tmp")
        tmp.write_text(json.dumps(_jsonable(state)), encoding="utf-8")
        os.replace(tmp, self.progress_path)
        self.last_state = state

    def load_checkpoint(self) -> dict | None:
        if not self.progress_path.is_file():
            return None
        try:
            return json.loads(self.progress_path.read_text(encoding="utf-8"))
        except ValueError:
            raise VisrepsError(
                f"cannot resume: {str(self.progress_path)!r} is damaged; start again with --overwrite"
            ) from None

    def aux_arrays(self, n_rows: int) -> dict[str, np.ndarray]:
        """The auxiliary arrays' first ``n_rows`` rows, read into memory; their files are removed."""
        out = {}
        for key, w in self.aux.items():
            path = w.finish(n_rows)
            out[key] = np.load(path)
            path.unlink()
        self.aux = {}
        return out

    def finish(self, n_rows: int, manifest_rows: Sequence[tuple], metadata: dict) -> dict:
        """Finish the arrays, write the manifest, rename everything to its final name, record the
        checksums and write ``metadata.json`` last. Returns the final metadata."""
        partials = []
        if self.h5 is not None:
            partials.append(self.h5.finish(n_rows))
        else:
            partials += [w.finish(n_rows) for w in self.writers.values()]
        write_manifest(self.folder / MANIFEST, manifest_rows)
        finals = [_rename_final(p) for p in partials]
        names = [MANIFEST, *sorted({f.name for f in finals}), *[e for e in metadata.get("extra_files") or []]]
        metadata = dict(metadata)
        metadata["checksums"] = {
            n: {"bytes": (self.folder / n).stat().st_size, "sha256": _file_sha256(self.folder / n)} for n in names
        }
        metadata["status"] = "complete"
        self.write_metadata(metadata, final=True)
        self.progress_path.unlink(missing_ok=True)
        return metadata

    def abort(self, metadata: dict | None = None) -> None:
        """Close every file; with ``metadata``, record it (status and error) in ``metadata.partial.json``."""
        for w in [*self.writers.values(), *self.aux.values()]:
            if hasattr(w, "abort"):
                w.abort()
        if self.h5 is not None:
            self.h5.abort()
        if metadata is not None:
            try:
                self.write_metadata(metadata)
            except OSError:  # e.g. the disk is full: the record written at the start stays
                pass


class MemorySink:
    """The in-memory sink (``out=None``): the same calls as :class:`OutputWriter`, arrays in RAM."""

    folder = None
    last_state = None

    def begin(
        self,
        metadata: dict,
        shapes: Mapping[str, tuple],
        n_rows: int,
        *,
        aux: Mapping[str, tuple] | None = None,
        extra_files: Sequence[str] = (),
        resume_state: dict | None = None,
    ) -> None:
        self.arrays = {k: np.empty((n_rows, *s), dtype=np.float32) for k, s in shapes.items()}
        self.aux = {k: np.empty((n_rows, *s), dtype=d) for k, (s, d) in (aux or {}).items()}

    def write(self, start: int, batch: Mapping[str, np.ndarray]) -> None:
        check_finite({k: v for k, v in batch.items() if k not in self.aux}, start, where="the extraction")
        for key, rows in batch.items():
            (self.aux if key in self.aux else self.arrays)[key][start : start + len(rows)] = rows

    def checkpoint(self, state: dict) -> None:
        self.last_state = state

    def aux_arrays(self, n_rows: int) -> dict[str, np.ndarray]:
        return {k: v[:n_rows] for k, v in self.aux.items()}

    def abort(self, metadata: dict | None = None) -> None:
        pass


def _file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + PARTIAL)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_manifest(path: Path, rows: Sequence[tuple]) -> None:
    """``index,path,label`` (and ``blake2b``, the image's content hash, when the rows carry it).

    Paths that are not valid UTF-8 (file names in another encoding) keep their original bytes
    (surrogate escapes), so the manifest names the file exactly as it is on disk.
    """
    import csv

    tmp = path.with_name(path.name + PARTIAL)
    with_hash = bool(rows) and all(len(r) > 2 and r[2] for r in rows)
    with open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["index", "path", "label", *(["blake2b"] if with_hash else [])])
        for i, r in enumerate(rows):
            w.writerow([i, r[0], r[1], *([r[2]] if with_hash else [])])
    os.replace(tmp, path)


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


_REDO = "extract again into a new folder (or delete the damaged folder first)"


def _damaged(path: Path, what: str) -> DamagedOutputError:
    return DamagedOutputError(f"{str(path)!r} is damaged: {what}; {_REDO}")


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


def _check_size(folder: Path, name: str, metadata: dict) -> None:
    rec = (metadata.get("checksums") or {}).get(name)
    path = folder / name
    if not path.is_file():
        raise DamagedOutputError(f"{str(path)!r} is missing (metadata.json lists it); {_REDO}")
    if rec is not None and path.stat().st_size != rec.get("bytes"):
        raise _damaged(path, f"{path.stat().st_size} bytes where metadata.json recorded {rec.get('bytes')}")


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


def _read_layer(folder: Path, layer: str, metadata: dict, mmap: bool, h5):
    """One layer's array, checked against its metadata record (file, shape, dtype, byte size)."""
    rec = metadata["layers"][layer]
    fmt = metadata.get("format", "npy")
    fname = rec.get("file") or (H5_NAME if fmt == "hdf5" else layer_filename(layer, fmt))
    path = folder / fname
    expected = tuple(int(x) for x in rec.get("shape") or ())
    dtype = np.dtype(rec.get("dtype", "float32"))
    try:
        if path.suffix == ".h5":
            arr = h5[layer] if layer in h5 else None
            if arr is None:
                raise _damaged(path, f"it has no dataset {layer!r}")
            if expected and tuple(arr.shape) != expected:
                raise _damaged(
                    path, f"dataset {layer!r} has shape {tuple(arr.shape)}, metadata.json records {expected}"
                )
            return arr[()]
        _check_size(folder, fname, metadata)
        if path.suffix == ".npy":
            head = np.load(path, mmap_mode="r")  # reads the header; a file shorter than it promises fails here
            shape, dt = tuple(head.shape), head.dtype
            need = int(head.offset) + int(head.nbytes)
            del head
            if expected and shape != expected or dt != dtype:
                raise _damaged(path, f"shape {shape} {dt}, metadata.json records {expected} {dtype}")
            if path.stat().st_size != need:
                raise _damaged(path, f"{path.stat().st_size} bytes where its header needs {need}")
            return np.load(path, mmap_mode="r" if mmap else None)
        if path.suffix == ".mat":
            from scipy.io import loadmat

            arr = loadmat(path)["features"]
        elif path.suffix == ".pt":
            import torch

            arr = torch.load(path, map_location="cpu", weights_only=True).numpy()
        elif path.suffix == ".txt":
            arr = np.loadtxt(path, dtype=np.float32, ndmin=2)
        else:
            raise VisrepsError(f"unknown feature file {str(path)!r}")
    except VisrepsError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever the reader says, the file is not what metadata.json describes
        raise _damaged(path, f"cannot be read ({type(e).__name__}: {e})") from None
    if expected and tuple(arr.shape) != expected:
        raise _damaged(path, f"it holds an array of shape {tuple(arr.shape)}, metadata.json records {expected}")
    return arr


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
        mmap: memory-map npy arrays instead of reading them (no memory used until rows are touched).

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
    fmt = metadata.get("format", "npy")
    features: dict[str, Any] = {}
    h5 = None
    try:
        for layer in wanted:
            if layer not in info:
                hint = closest(layer, info)
                raise LayerNotFoundError(
                    f"{str(folder)!r} has no layer {layer!r}; available: {', '.join(info)}"
                    + (f" (closest: {', '.join(hint)})" if hint else "")
                )
            if fmt == "hdf5" and h5 is None:
                import h5py

                _check_size(folder, H5_NAME, metadata)
                try:
                    h5 = h5py.File(folder / H5_NAME, "r")
                except OSError as e:
                    raise _damaged(folder / H5_NAME, f"cannot be opened as HDF5 ({e})") from None
            features[layer] = _read_layer(folder, layer, metadata, mmap, h5)
    finally:
        if h5 is not None:
            h5.close()
    manifest = read_manifest(folder, metadata)
    for layer, arr in features.items():
        if len(arr) != len(manifest):
            raise _damaged(folder / MANIFEST, f"{len(manifest)} rows, but layer {layer!r} has {len(arr)}")
    predictions = None
    if "predictions.csv" in (metadata.get("extra_files") or []):
        import pandas as pd

        _check_size(folder, "predictions.csv", metadata)
        try:
            predictions = pd.read_csv(
                folder / "predictions.csv", keep_default_na=False, encoding_errors="surrogateescape"
            )
        except (ValueError, pd.errors.ParserError) as e:
            raise _damaged(folder / "predictions.csv", f"not a readable table ({e})") from None
        for c in predictions.columns:  # written from float32 with %.9g: read back exactly
            if c.startswith("prob_"):
                predictions[c] = predictions[c].astype(np.float32)
    return Features(features, manifest, metadata, folder, predictions)


def verify(folder: str | os.PathLike) -> dict[str, str]:
    """Check a finished output folder completely: every file's size and SHA-256 against ``metadata.json``,
    then every layer's shape and dtype and the manifest's rows (as :func:`load_features` does).

    Returns:
        ``{file name: sha256}`` of the files checked.

    Raises:
        DamagedOutputError: naming every damaged file.
    """
    folder = Path(folder).expanduser()
    metadata = read_metadata(folder)
    sums = metadata.get("checksums") or {}
    bad = []
    for name, rec in sums.items():
        path = folder / name
        if not _safe_name(name):
            continue
        if not path.is_file():
            bad.append(f"{name} (missing)")
        elif path.stat().st_size != rec.get("bytes"):
            bad.append(f"{name} ({path.stat().st_size} bytes, recorded {rec.get('bytes')})")
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


# --------------------------------------------------------------------------- shards

#: metadata fields that must be equal for a run to be resumed or its shards merged
RUN_IDENTITY = (
    "model",
    "weights",
    "preprocessing",
    "format",
    "layers_requested",
    "options_identity",
    "images_identity",
    "reduce",  # per layer: method, K, seed (and the PCA fit's hash)
)


def _read_meta(folder: Path) -> dict:
    meta = folder / METADATA
    if not meta.is_file():
        state = "unfinished" if (folder / METADATA_PARTIAL).is_file() else "not a visreps output folder"
        raise VisrepsError(f"shard {str(folder)!r} is {state}; finish it (--resume) before merging")
    return read_metadata(folder)


def _rows(arr, start: int, stop: int) -> np.ndarray:
    return np.asarray(arr[start:stop])


def merge_shards(
    out: str | os.PathLike, shards: Sequence[str | os.PathLike], *, overwrite: bool = False, chunk_rows: int = 256
) -> Features:
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
                f"shard {str(f)!r} comes from a different run than {str(folders[0])!r} "
                f"(differs in {', '.join(changed)}); "
                "merge only shards of one extraction"
            )
    count = ref["shard"]["count"]
    order = sorted(range(len(metas)), key=lambda j: metas[j]["shard"]["index"])
    indices = [metas[j]["shard"]["index"] for j in order]
    dup = sorted({i for i in indices if indices.count(i) > 1})
    if dup:
        raise VisrepsError(
            f"shard(s) {', '.join(f'{i}/{count}' for i in dup)} given twice (overlap); give each shard once"
        )
    missing = sorted(set(range(1, count + 1)) - set(indices))
    if missing:
        raise VisrepsError(
            f"shard(s) {', '.join(f'{i}/{count}' for i in missing)} missing (gap); extract them before merging"
        )
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
    for key in ("shard", "checksums", "files"):
        meta.pop(key, None)
    meta["status"] = "running"
    meta["created"] = min(m["created"] for m in metas)
    meta["seconds"] = round(sum(m.get("seconds", 0) for m in metas), 3)
    meta["images"]["n_extracted"] = total
    meta["images"]["skipped"] = [s for j in order for s in metas[j]["images"].get("skipped", [])]
    for k in layers:
        meta["layers"][k]["shape"][0] = total
    extra = [e for e in ref.get("extra_files") or [] if e in (*PREDICTION_FILES, PCA_FIT)]
    writer.begin(meta, {k: tuple(ref["layers"][k]["shape"][1:]) for k in layers}, total, extra_files=extra)
    try:
        row = 0
        for part in parts:
            n = len(part.manifest)
            for s in range(0, n, chunk_rows):
                writer.write(row + s, {k: _rows(part[k], s, min(n, s + chunk_rows)) for k in layers})
            row += n
        with_hash = all("blake2b" in part.manifest for part in parts)
        manifest_rows = [
            (p, lab, h) if with_hash else (p, lab)
            for part in parts
            for p, lab, h in zip(
                part.paths, part.labels, part.manifest["blake2b"] if with_hash else [""] * len(part.manifest)
            )
        ]
        _merge_extra_files(parts, folders[order[0]], writer.folder, extra)
        writer.finish(total, manifest_rows, meta)
    except BaseException as e:
        meta["status"] = "failed"
        meta["error"] = f"{type(e).__name__}: {e}"
        writer.abort(meta)
        raise
    return load_features(writer.folder)


def _merge_extra_files(parts: Sequence[Features], first: Path, folder: Path, extra: Sequence[str]) -> None:
    """The merged folder's extra files: the shards' predictions joined, and their (one) PCA fit copied."""
    if "predictions.csv" in extra:
        import pandas as pd

        table = pd.concat([p.predictions for p in parts if p.predictions is not None], ignore_index=True)
        table["index"] = range(len(table))
        for c in table.columns:  # float32 probabilities, printed with %.9g, read back exactly
            if c.startswith("prob_"):
                table[c] = table[c].astype(np.float32)
        save_predictions(table, folder)
    if PCA_FIT in extra:  # the shards' one fit (equal in all: its hash is part of the run's identity)
        shutil.copyfile(first / PCA_FIT, folder / (PCA_FIT + PARTIAL))
        os.replace(folder / (PCA_FIT + PARTIAL), folder / PCA_FIT)


def save_predictions(table, folder: Path) -> None:
    """``predictions.csv`` and ``predictions.json`` of a top-k table, each written under a temporary name first."""
    k = sum(1 for c in table.columns if c.startswith("class_"))
    records = [
        {
            "index": int(row["index"]),
            "path": row["path"],
            "top_k": [
                {"class": int(row[f"class_{r}"]), "name": row[f"name_{r}"], "probability": float(row[f"prob_{r}"])}
                for r in range(1, k + 1)
            ],
        }
        for _, row in table.iterrows()
    ]
    csv_tmp = folder / ("predictions.csv" + PARTIAL)
    table.to_csv(csv_tmp, index=False, float_format="%.9g", encoding="utf-8", errors="surrogateescape")
    json_tmp = folder / ("predictions.json" + PARTIAL)
    json_tmp.write_text(json.dumps(records, indent=1), encoding="utf-8")
    os.replace(csv_tmp, folder / "predictions.csv")
    os.replace(json_tmp, folder / "predictions.json")
