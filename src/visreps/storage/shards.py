"""Joining the shard folders of one extraction (``extract(..., shard="I/N")``) into the folder of a single run."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np

from ..errors import VisrepsError
from .folder import METADATA, METADATA_PARTIAL, PARTIAL, PCA_FIT, PREDICTION_FILES, save_predictions
from .reading import Features, load_features, read_metadata
from .record import RUN_IDENTITY, RunRecord, merged_record
from .sinks import OutputWriter, SinkPlan


def _read_meta(folder: Path) -> dict:
    meta = folder / METADATA
    if not meta.is_file():
        state = "unfinished" if (folder / METADATA_PARTIAL).is_file() else "not a visreps output folder"
        raise VisrepsError(f"shard {str(folder)!r} is {state}; finish it (--resume) before merging")
    return read_metadata(folder)


def _rows(arr, start: int, stop: int) -> np.ndarray:
    return np.asarray(arr[start:stop])


def _same_run(folders: list[Path], metas: list[dict]) -> None:
    """Every folder is a shard of the run of the first one (model, weights, ..., shard count)."""
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


def _shard_order(folders: list[Path], metas: list[dict]) -> list[int]:
    """The positions of the shards in shard order, after checking they cover every image once."""
    ref = metas[0]
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
    return order


def _manifest_rows(parts: Sequence[Features]) -> list[tuple]:
    """The shards' manifest rows, joined (with the content hashes when every shard has them)."""
    with_hash = all("blake2b" in part.manifest for part in parts)
    return [
        (p, lab, h) if with_hash else (p, lab)
        for part in parts
        for p, lab, h in zip(
            part.paths, part.labels, part.manifest["blake2b"] if with_hash else [""] * len(part.manifest)
        )
    ]


def merge_shards(
    out: str | os.PathLike, shards: Sequence[str | os.PathLike], *, overwrite: bool = False, chunk_rows: int = 256
) -> Features:
    """Join finished shard folders (``extract(..., shard="I/N")``) into one folder equal to a single run.

    The shards must come from the same run (model, weights, preprocessing, layers, options and
    image list) and cover all N slices exactly once; arrays are copied in chunks, so memory
    stays flat for npy/hdf5/zarr.

    Raises:
        VisrepsError: a shard is unfinished, from another run, missing or given twice.
    """
    folders = [Path(s).expanduser() for s in shards]
    if not folders:
        raise VisrepsError("no shard folders given")
    metas = [_read_meta(f) for f in folders]
    _same_run(folders, metas)
    order = _shard_order(folders, metas)
    ref = metas[0]
    parts = [load_features(folders[j]) for j in order]
    layers = list(ref["layers"])
    total = sum(len(p.manifest) for p in parts)
    writer = OutputWriter(out, ref["format"], overwrite=overwrite)
    meta: dict = dict(merged_record(cast(RunRecord, ref), [cast(RunRecord, metas[j]) for j in order], total))
    extra = [e for e in ref.get("extra_files") or [] if e in (*PREDICTION_FILES, PCA_FIT)]
    writer.start(meta, SinkPlan.of({k: ref["layers"][k]["shape"][1:] for k in layers}, total, extra_files=extra))
    try:
        row = 0
        for part in parts:
            n = len(part.manifest)
            for s in range(0, n, chunk_rows):
                writer.write(row + s, {k: _rows(part[k], s, min(n, s + chunk_rows)) for k in layers})
            row += n
        writer.add_files(lambda folder: _merge_extra_files(parts, folders[order[0]], folder, extra))
        return writer.finish(total, _manifest_rows(parts), meta)
    except BaseException as e:
        meta["status"] = "failed"
        meta["error"] = f"{type(e).__name__}: {e}"
        writer.abort(meta)
        raise


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
