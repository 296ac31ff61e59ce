"""An output folder as a place visreps writes into: its fixed names, the ownership record, atomic writes, hashes.

Everything here is about files, not about arrays: which names a run owns (the ``files`` list of its record),
how a folder is made ready for a run (:func:`prepare_output_folder`), how a file is written under a partial
name and renamed when complete, how a file (or a directory store such as ``features.zarr``) is sized and
hashed, and how a full disk is recognised.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import DamagedOutputError, OutputExistsError, VisrepsError
from ..outputs import read_record_json

MANIFEST = "manifest.csv"
METADATA = "metadata.json"
METADATA_PARTIAL = "metadata.partial.json"
PARTIAL = ".partial"
PROGRESS = "progress.partial.json"
#: auxiliary per-row arrays a run may keep beside the layers (never layer names: they start with a dot)
AUX_FILES = {"topk_index": ".topk_index.npy", "topk_prob": ".topk_prob.npy", "blake2b": ".blake2b.npy"}
PREDICTION_FILES = ("predictions.csv", "predictions.json")
PCA_FIT = "pca_fit.npz"  # the PCA of a run reduced with pca:K (visreps.reduce), copied by merge_shards

_REDO = "extract again into a new folder (or delete the damaged folder first)"


def _damaged(path: Path, what: str) -> DamagedOutputError:
    return DamagedOutputError(f"{str(path)!r} is damaged: {what}; {_REDO}")


def _check_size(folder: Path, name: str, metadata: dict) -> None:
    """The file (or directory store) ``name`` is there and has the byte size ``metadata.json`` records."""
    rec = (metadata.get("checksums") or {}).get(name)
    path = folder / name
    if not path.exists():
        raise DamagedOutputError(f"{str(path)!r} is missing (metadata.json lists it); {_REDO}")
    if rec is not None and file_bytes(path) != rec.get("bytes"):
        raise _damaged(path, f"{file_bytes(path)} bytes where metadata.json recorded {rec.get('bytes')}")


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


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _safe_name(name: object) -> bool:
    """A plain file name inside the folder (a record naming ``../x`` or ``/etc/x`` is ignored)."""
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name


# --------------------------------------------------------------------------- files and directory stores


def _store_files(path: Path) -> list[Path]:
    """The files of ``path``: itself, or (a directory store) every file under it, in a fixed order."""
    if path.is_dir() and not path.is_symlink():
        return sorted((p for p in path.rglob("*") if p.is_file()), key=lambda p: p.relative_to(path).as_posix())
    return [path]


def file_bytes(path: Path) -> int:
    """The size of a file, or of every file of a directory store together."""
    return sum(p.stat().st_size for p in _store_files(path))


def _file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file; of a directory store, of every file's relative name and bytes in name order."""
    import hashlib

    h = hashlib.sha256()
    is_store = path.is_dir() and not path.is_symlink()
    for p in _store_files(path):
        if is_store:
            h.update(p.relative_to(path).as_posix().encode("utf-8", "surrogateescape") + b"\0")
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(chunk), b""):
                h.update(block)
    return h.hexdigest()


def _is_store(path: Path) -> bool:
    """A directory that a format writes as its one store (``features.zarr``, or its partial name)."""
    from .formats import FORMATS

    if not path.is_dir() or path.is_symlink():
        return False
    return any(f.directory and path.name in f.planned_names(f.layer_file("")) for f in FORMATS.values())


def _remove(path: Path) -> None:
    """Remove a file, a link or a format's directory store (nothing if absent; any other directory is left alone)."""
    if _is_store(path):
        shutil.rmtree(path)
    elif path.is_file() or path.is_symlink():
        path.unlink()


def _rename_final(partial: Path) -> Path:
    final = partial.with_name(partial.name[: -len(PARTIAL)])
    if _is_store(final):  # a directory store of an earlier, owned run (os.replace cannot replace a full directory)
        shutil.rmtree(final)
    os.replace(partial, final)
    return final


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + PARTIAL)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _jsonable(obj):
    import numpy as np

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


def _is_disk_full(e: BaseException, folder: Path) -> bool:
    import errno

    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(e, (OSError, RuntimeError)):  # h5py reports a failed write without errno
        try:
            return shutil.disk_usage(folder).free < (1 << 20) and "write" in str(e).lower()
        except OSError:
            return False
    return False


# --------------------------------------------------------------------------- ownership


def _is_run_record(info: Any) -> bool:
    return isinstance(info, dict) and isinstance(info.get("layers"), dict) and "status" in info


def read_record(folder: Path) -> dict | None:
    """The run record (``metadata.json`` or ``metadata.partial.json``) of an earlier visreps run, if any.

    Raises:
        OutputExistsError: a metadata file is there but is not a visreps record (damaged, or not ours).
    """
    for name in (METADATA, METADATA_PARTIAL):
        path = folder / name
        if not path.is_file():
            continue
        info = read_record_json(path, _is_run_record, OutputExistsError)
        info["_record"] = name
        return info
    return None


def owned_files(folder: Path) -> set[str]:
    """Names of the files an earlier visreps run recorded as written into ``folder`` (only these may be replaced).

    The record is the earlier run's ``metadata.json`` (or ``metadata.partial.json``): its ``files``
    list names everything the run created, temporary files included. Records of visreps 0.1,
    which had no such list, own their metadata, manifest, layer files and listed extra files.
    """
    from .formats import FORMATS

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
                for fmt in FORMATS.values():  # every name a format plans for this file, staging names included
                    names |= fmt.planned_names(f)
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
        _remove(folder / name)


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
