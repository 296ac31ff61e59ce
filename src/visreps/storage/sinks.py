"""Where the rows of a run go: a :class:`Sink` is a folder (:class:`OutputWriter`) or memory (:class:`MemorySink`).

Both check every batch for NaN and inf before it is kept (:func:`~visreps.storage.finite.check_finite`) and
both end with ``finish(...) -> Features``, so the batch loop of :mod:`visreps.extraction` never asks which
one it holds. The folder sink asks the run's format (:mod:`visreps.storage.formats`) for its file names,
row rules, extra bytes, store and writers, and follows the folder rules of :mod:`visreps.storage.folder`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np

from ..errors import OutputExistsError, VisrepsError
from .finite import check_finite
from .folder import (
    AUX_FILES,
    MANIFEST,
    METADATA,
    METADATA_PARTIAL,
    PARTIAL,
    PROGRESS,
    _file_sha256,
    _remove,
    _rename_final,
    file_bytes,
    human_bytes,
    prepare_output_folder,
    save_predictions,
    write_manifest,
)
from .formats import get_format
from .formats.npy import NpyWriter
from .reading import Features, load_features
from .record import RunRecord, to_json

#: the run record a sink writes: visreps' own :class:`RunRecord`, or a plain dict (``OutputWriter`` is public)
Record = RunRecord | dict[str, Any]


@dataclass(frozen=True)
class SinkPlan:
    """What a run will write: the per-image shapes of the layers (float32), the rows, the auxiliary arrays
    (:data:`AUX_FILES` name → ``(row_shape, dtype)``) and the extra files (predictions, a PCA fit)."""

    shapes: Mapping[str, tuple]
    n_rows: int
    aux: Mapping[str, tuple] = field(default_factory=dict)
    extra_files: tuple[str, ...] = ()

    @classmethod
    def of(cls, shapes: Mapping[str, tuple], n_rows: int, *, aux=None, extra_files: Sequence[str] = ()) -> SinkPlan:
        """The plan, with the shapes as tuples and the optional parts filled in."""
        return cls({k: tuple(v) for k, v in shapes.items()}, int(n_rows), dict(aux or {}), tuple(extra_files))


@runtime_checkable
class Sink(Protocol):
    """What the batch loop writes into: ``start``, then ``write`` and ``checkpoint`` per batch, then ``finish``
    (or ``abort``). ``folder`` is ``None`` in memory; ``last_state`` is the last progress recorded."""

    @property
    def folder(self) -> Path | None: ...

    last_state: dict | None
    bytes_needed: int

    def start(self, metadata: Record, plan: SinkPlan, resume_state: dict | None = None) -> None: ...

    def write(self, start: int, batch: Mapping[str, np.ndarray]) -> None: ...

    def checkpoint(self, state: dict) -> None: ...

    def aux_arrays(self, n_rows: int) -> dict[str, np.ndarray]: ...

    def add_files(self, write: Callable[[Path], None]) -> None: ...

    def finish(
        self, n_rows: int, manifest_rows: Sequence[tuple], metadata: Record, predictions: Any = None
    ) -> Features: ...

    def abort(self, metadata: Record | None = None) -> None: ...


class OutputWriter:
    """The folder sink: writes one extraction's output folder (see :mod:`visreps.storage` for the contract).

    Use: ``begin(metadata, shapes, n_rows)`` (checks everything, then creates the files), then
    ``write(row, arrays)`` and ``checkpoint(state)`` per batch, then ``finish(...)`` or ``abort(...)``.
    Nothing is written before ``begin`` has checked the layers against the format, the folder's
    files against the earlier run's record, and the free space.
    """

    def __init__(self, folder: str | os.PathLike, fmt: str, *, overwrite: bool = False, resume: bool = False):
        self.folder = Path(folder).expanduser()
        self.format = get_format(fmt)
        self.fmt = self.format.name
        self.resume = resume
        self.overwrite = overwrite
        if self.folder.exists() and not self.folder.is_dir():
            raise OutputExistsError(f"output {str(self.folder)!r} is a file, not a folder; choose another --out")
        self.writers: dict[str, Any] = {}
        self.aux: dict[str, NpyWriter] = {}
        self.store: Any = None
        self.files: dict[str, str] = {}
        self.progress_path = self.folder / PROGRESS
        self.last_state: dict | None = None
        self.planned: list[str] = []
        self.bytes_needed = 0

    @property
    def h5(self) -> Any:
        """The HDF5 store of an hdf5 run (kept for code written before formats had modules)."""
        return self.store if self.fmt == "hdf5" else None

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
            self.format.check_rows(layer, shape)
            fname = self.format.layer_file(layer)
            if self.format.one_file is None and fname in files.values():
                raise VisrepsError(f"layers map to the same file name {fname!r}; request them separately")
            files[layer] = fname
            names |= self.format.planned_names(fname)
        for key in self.aux_shapes:
            names.add(AUX_FILES[key] + PARTIAL)
        for extra in extra_files:
            names |= {extra, extra + PARTIAL}
        self.files = files
        self.planned = sorted(names)
        layer_bytes = [n_rows * int(np.prod(s, dtype=np.int64)) * 4 for s in self.shapes.values()]
        self.bytes_needed = sum(layer_bytes) + self.format.extra_bytes(layer_bytes)
        return self.planned

    def _check_space(self) -> None:
        import shutil

        if not self.format.size_known:  # text size depends on the numbers; checked as it is written
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
        metadata: Record,
        shapes: Mapping[str, tuple],
        n_rows: int,
        *,
        aux: Mapping[str, tuple] | None = None,
        extra_files: Sequence[str] = (),
        resume_state: dict | None = None,
    ) -> None:
        """:meth:`start` with the plan given as arguments."""
        self.start(metadata, SinkPlan.of(shapes, n_rows, aux=aux, extra_files=extra_files), resume_state)

    def start(self, metadata: Record, plan: SinkPlan, resume_state: dict | None = None) -> None:
        """Check, then create the folder's files: the metadata record first, then the preallocated arrays.

        ``metadata["files"]`` becomes the list of every name the run may create: the record that later runs
        trust to replace only these.
        """
        n_rows = plan.n_rows
        self.plan(plan.shapes, n_rows, aux=plan.aux, extra_files=plan.extra_files)
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
                        _remove(self.folder / name)
            raise

    def write_metadata(self, metadata: Record, *, final: bool = False) -> None:
        from .folder import _atomic_write_text

        name = METADATA if final else METADATA_PARTIAL
        _atomic_write_text(self.folder / name, to_json(metadata))
        if final:
            (self.folder / METADATA_PARTIAL).unlink(missing_ok=True)

    def _open(self, n_rows: int, resume_state: dict | None) -> None:
        resume = resume_state is not None
        sizes = (resume_state or {}).get("txt_bytes", {})
        fmt = self.format
        if fmt.one_file is not None:
            self.store = fmt.open_store(self.folder / fmt.one_file, resume=resume)
        for layer, shape in self.shapes.items():
            if self.store is not None:
                self.writers[layer] = self.store.add(layer, shape, n_rows, np.float32)
            else:
                path = self.folder / self.files[layer]
                self.writers[layer] = fmt.open_layer(path, shape, n_rows, resume=resume, size=sizes.get(layer, 0))
        for key, (row_shape, dtype) in self.aux_shapes.items():
            self.aux[key] = NpyWriter(self.folder / AUX_FILES[key], row_shape, n_rows, dtype, resume=resume)

    def sizes(self) -> dict[str, int]:
        """Bytes written so far to text arrays (a resumed run truncates them there)."""
        if not self.format.append_only:
            return {}
        return {k: w.size() for k, w in self.writers.items()}

    def write(self, start: int, batch: Mapping[str, np.ndarray]) -> None:
        """Write rows ``start, ...`` of each array, after :func:`check_finite` on the layers."""
        check_finite({k: v for k, v in batch.items() if k not in self.aux}, start, where=repr(str(self.folder)))
        for key, rows in batch.items():
            (self.aux[key] if key in self.aux else self.writers[key]).write(start, rows)

    def checkpoint(self, state: dict) -> None:
        """Record, atomically, that every row before ``state["rows"]`` is written (read back by resume)."""
        from .folder import _jsonable

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

    def add_files(self, write: Callable[[Path], None]) -> None:
        """Let ``write(folder)`` add the run's extra files (each under a partial name, renamed when complete)."""
        write(self.folder)

    def finish(
        self, n_rows: int, manifest_rows: Sequence[tuple], metadata: Record, predictions: Any = None
    ) -> Features:
        """Finish the arrays, write the predictions and the manifest, rename everything to its final name, record
        the checksums and write ``metadata.json`` last. Returns the folder, read back (:func:`load_features`)."""
        if predictions is not None:
            save_predictions(predictions, self.folder)
        partials = []
        if self.store is not None:
            partials.append(self.store.finish(n_rows))
        else:
            partials += [w.finish(n_rows) for w in self.writers.values()]
        write_manifest(self.folder / MANIFEST, manifest_rows)
        finals = [_rename_final(p) for p in partials]
        names = [MANIFEST, *sorted({f.name for f in finals}), *[e for e in metadata.get("extra_files") or []]]
        metadata = dict(metadata)
        metadata["checksums"] = {
            n: {"bytes": file_bytes(self.folder / n), "sha256": _file_sha256(self.folder / n)} for n in names
        }
        metadata["status"] = "complete"
        self.write_metadata(metadata, final=True)
        self.progress_path.unlink(missing_ok=True)
        return load_features(self.folder)

    def abort(self, metadata: Record | None = None) -> None:
        """Close every file; with ``metadata``, record it (status and error) in ``metadata.partial.json``."""
        for w in [*self.writers.values(), *self.aux.values()]:
            if hasattr(w, "abort"):
                w.abort()
        if self.store is not None:
            self.store.abort()
        if metadata is not None:
            try:
                self.write_metadata(metadata)
            except OSError:  # e.g. the disk is full: the record written at the start stays
                pass


class MemorySink:
    """The in-memory sink (``out=None``): the same calls as :class:`OutputWriter`, arrays in RAM."""

    folder: Path | None = None
    last_state: dict | None = None
    bytes_needed: int = 0

    def begin(self, metadata: Record, shapes: Mapping[str, tuple], n_rows: int, **options) -> None:
        """:meth:`start` with the plan given as arguments (``extra_files`` and ``resume_state`` mean nothing here)."""
        self.start(metadata, SinkPlan.of(shapes, n_rows, aux=options.get("aux")))

    def start(self, metadata: Record, plan: SinkPlan, resume_state: dict | None = None) -> None:
        """Room for the arrays and the auxiliary arrays of every row."""
        n_rows = plan.n_rows
        self.arrays = {k: np.empty((n_rows, *s), dtype=np.float32) for k, s in plan.shapes.items()}
        self.aux = {k: np.empty((n_rows, *s), dtype=d) for k, (s, d) in plan.aux.items()}

    def write(self, start: int, batch: Mapping[str, np.ndarray]) -> None:
        check_finite({k: v for k, v in batch.items() if k not in self.aux}, start, where="the extraction")
        for key, rows in batch.items():
            (self.aux if key in self.aux else self.arrays)[key][start : start + len(rows)] = rows

    def checkpoint(self, state: dict) -> None:
        self.last_state = state

    def aux_arrays(self, n_rows: int) -> dict[str, np.ndarray]:
        return {k: v[:n_rows] for k, v in self.aux.items()}

    def add_files(self, write: Callable[[Path], None]) -> None:
        return None  # a run in memory writes no files

    def finish(
        self, n_rows: int, manifest_rows: Sequence[tuple], metadata: Record, predictions: Any = None
    ) -> Features:
        """The arrays' first ``n_rows`` rows with their manifest (``index, path, label`` [, ``blake2b``])."""
        import pandas as pd

        metadata["status"] = "complete"
        columns: dict[str, Any] = {
            "index": range(n_rows),
            "path": [r[0] for r in manifest_rows],
            "label": [r[1] for r in manifest_rows],
        }
        if manifest_rows and all(len(r) > 2 and r[2] for r in manifest_rows):
            columns["blake2b"] = [r[2] for r in manifest_rows]
        features = {k: v[:n_rows] for k, v in self.arrays.items()}
        return Features(features, pd.DataFrame(columns), cast(dict, metadata), None, predictions)

    def abort(self, metadata: Record | None = None) -> None:
        pass
