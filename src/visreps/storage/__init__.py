"""Writing and reading extraction output folders.

An output folder holds

* one array per layer: ``<layer>.npy`` (also ``.mat``, ``.pt``, ``.txt``), or one
  ``features.h5`` with a dataset per layer, or one zarr v3 store ``features.zarr`` with an array per layer;
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

Streaming: ``npy``, ``hdf5``, ``zarr`` and ``txt`` arrays are written batch by batch (``npy`` preallocated
and written into place with ``pwrite``, not a memory map; ``hdf5`` and ``zarr`` chunk by chunk; ``txt``
appended), so the process's memory does not grow with the number of images. ``mat`` and ``pt`` are staged
as ``.npy`` and converted at the end (the conversion holds one layer in memory: prefer npy/hdf5/zarr for very
large layers).

The package: :mod:`~visreps.storage.formats` (one module per format and the registry ``FORMATS``),
:mod:`~visreps.storage.folder` (names, ownership, atomic writes, hashes), :mod:`~visreps.storage.sinks`
(``Sink``, ``OutputWriter``, ``MemorySink``), :mod:`~visreps.storage.reading` (``Features``,
``load_features``, ``verify``), :mod:`~visreps.storage.record` (``RunRecord``, the ``metadata.json``),
:mod:`~visreps.storage.shards` (``merge_shards``) and :mod:`~visreps.storage.finite` (NaN and inf).
Every public name of the module this package replaced, and every private one that other modules or tests
used, is still importable from here (``_StagedWriter`` is now :class:`~visreps.storage.formats.npy.StagedWriter`).
"""

from __future__ import annotations

import os

from ..errors import DamagedOutputError, LayerNotFoundError, OutputExistsError, VisrepsError, closest
from ..options import FORMATS
from .finite import NonFiniteError, check_finite, first_nonfinite
from .folder import (
    _REDO,
    AUX_FILES,
    MANIFEST,
    METADATA,
    METADATA_PARTIAL,
    PARTIAL,
    PCA_FIT,
    PREDICTION_FILES,
    PROGRESS,
    _atomic_write_text,
    _check_size,
    _damaged,
    _file_sha256,
    _is_disk_full,
    _jsonable,
    _nothing_kept,
    _rename_final,
    _safe_name,
    file_bytes,
    human_bytes,
    owned_files,
    prepare_output_folder,
    read_record,
    save_predictions,
    versions,
    write_manifest,
)
from .formats import FORMATS as FORMAT_REGISTRY
from .formats import Format, get_format
from .formats.hdf5 import H5_NAME, H5Writer, _H5Layer
from .formats.npy import _NPY_MAGIC, NpyWriter, StagedWriter, _npy_header, _pwrite
from .formats.txt import TxtWriter
from .formats.zarr import ZARR_NAME, ZarrLayer, ZarrWriter
from .reading import Features, _read_layer, _verify_finite, load_features, read_manifest, read_metadata, verify
from .record import RUN_IDENTITY, LayerRecord, RunRecord
from .shards import _merge_extra_files, _read_meta, _rows, merge_shards
from .sinks import MemorySink, OutputWriter, Sink, SinkPlan

#: the file suffix of each format with a file per layer (``hdf5`` and ``zarr`` keep every layer in one file)
SUFFIX = {name: f.suffix for name, f in FORMAT_REGISTRY.items() if f.one_file is None}


def check_format(fmt: str) -> str:
    """The name of the format ``fmt`` (any case; ``h5``/``hdf`` for ``hdf5``), or an error listing the formats."""
    return get_format(fmt).name


def layer_filename(layer: str, fmt: str) -> str:
    """File name of a layer's array: the layer name with characters unsafe in file names replaced
    (the one file, e.g. ``features.h5``, for formats that hold every layer in one)."""
    return get_format(fmt).layer_file(layer)


__all__ = [
    "AUX_FILES",
    "FORMATS",
    "FORMAT_REGISTRY",
    "H5_NAME",
    "MANIFEST",
    "METADATA",
    "METADATA_PARTIAL",
    "PARTIAL",
    "PCA_FIT",
    "PREDICTION_FILES",
    "PROGRESS",
    "RUN_IDENTITY",
    "SUFFIX",
    "ZARR_NAME",
    "DamagedOutputError",
    "Features",
    "Format",
    "H5Writer",
    "LayerNotFoundError",
    "LayerRecord",
    "MemorySink",
    "NonFiniteError",
    "NpyWriter",
    "OutputExistsError",
    "OutputWriter",
    "RunRecord",
    "Sink",
    "SinkPlan",
    "StagedWriter",
    "TxtWriter",
    "VisrepsError",
    "ZarrLayer",
    "ZarrWriter",
    "check_finite",
    "check_format",
    "closest",
    "file_bytes",
    "first_nonfinite",
    "get_format",
    "human_bytes",
    "layer_filename",
    "load_features",
    "merge_shards",
    "owned_files",
    "prepare_output_folder",
    "read_manifest",
    "read_metadata",
    "read_record",
    "save_predictions",
    "verify",
    "versions",
    "write_manifest",
]
# private names of the module this package replaced, still importable from it
_KEPT = (_REDO, _atomic_write_text, _check_size, _damaged, _file_sha256, _is_disk_full, _jsonable, _nothing_kept,
         _rename_final, _safe_name, _H5Layer, _NPY_MAGIC, _npy_header, _pwrite, _read_layer, _verify_finite,
         _merge_extra_files, _read_meta, _rows, os)  # fmt: skip
