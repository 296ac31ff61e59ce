"""A reduction attached to an extraction (``reduce=``): planned before the first batch, recorded, saved, resumed.

The projections and the PCA themselves are in :mod:`visreps.reduce`; this module plans them for a prepared
:class:`~visreps.job.Job` (the SRP matrices, the streamed PCA fit on a fit set of images or a loaded
``pca_fit.npz``), saves the fit next to the arrays, and refuses to resume a run with another reduction.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .engine import local_batches
from .errors import ImageError, VisrepsError
from .job import ExtractionOptions, Job

if TYPE_CHECKING:
    from .data import ImageItem
    from .reduce import Reducer, ReduceSpec

__all__ = ["attach_reducer", "resume_reduction_first", "same_reduction", "save_fit"]


def attach_reducer(job: Job, options: ExtractionOptions) -> None:
    """Plan the run's reductions (SRP matrices; the PCA fit runs here) and record them in the job's metadata."""
    from .reduce import check_shapes, srp_plan

    rspec = options.reduction
    if rspec is None:
        return
    check_shapes(job.shapes, {k: s.pool for s in job.specs for k in s.keys})
    if rspec.method == "srp":
        reducer = srp_plan(rspec, job.shapes, seed=options.seed, n_images=len(job.items))
    else:
        reducer = _pca_reducer(job, rspec, options.reduce_fit)
    job.raw_shapes = dict(job.shapes)
    job.shapes = reducer.out_shapes(job.shapes)
    job.reducer = reducer
    for k, shape in job.shapes.items():
        job.metadata["layers"][k]["shape"] = [job.metadata["layers"][k]["shape"][0], *shape]
    job.metadata["reduce"] = reducer.records
    if reducer.pca_fits:
        job.metadata["extra_files"] = [*job.metadata.get("extra_files", []), "pca_fit.npz"]


def _pca_reducer(job: Job, rspec: ReduceSpec, reduce_fit: Any) -> Reducer:
    """The PCA of a run: loaded from a saved fit, or fitted (streamed) on a fit set of images."""
    from .data import find_images
    from .reduce import DEFAULT_PCA_FIT_IMAGES, check_loaded_fit, load_pca_fit, pca_records

    k = cast(int, rspec.k)  # a PCA always has its K (only srp:auto leaves it to the data)
    wide = {key: s for key, s in job.shapes.items() if int(np.prod(s)) > k}
    path = None if reduce_fit is None else Path(reduce_fit).expanduser().resolve()
    if path is not None and path.is_file():
        fits, info = load_pca_fit(path)
        check_loaded_fit(fits, info, rspec, job.shapes, job.lm.model_id, path)
        info = {**info, "loaded_from": str(path)}
        return pca_records(rspec, job.shapes, {key: fits[key] for key in wide}, info)
    if path is not None:
        items, root = find_images(path), path
        source, short = f"the images of {str(path)!r}", f"{str(path)!r} holds {{n}} images"
    else:
        items, root = job.items[: rspec.fit_images or max(k, DEFAULT_PCA_FIT_IMAGES)], job.root
        source, short = f"the first {len(items)} images of the run", f"the run has {len(job.items)} images"
    if len(items) < k:
        raise VisrepsError(
            f"a PCA with {k} components needs at least {k} fit images, but {short.format(n=len(items))}; "
            f"use fewer components (pca:{len(items)}), more fit images (--reduce-fit FOLDER), or srp:{k}"
        )
    t0 = time.perf_counter()
    fits = _fit_pca(job, items, root, wide, k) if wide else {}
    list_hash = hashlib.sha256("\n".join(i.path for i in items).encode("utf-8", "surrogateescape")).hexdigest()
    info = {
        "model": job.lm.model_id,
        "images": source,
        "root": str(root),
        "n_images": len(items),
        "image_list_sha256": list_hash,
        "batch_size": job.batch_size,
        "chunk_rows": max(k, job.batch_size),
    }
    job.metadata["reduce_fit_seconds"] = round(time.perf_counter() - t0, 3)  # not in "reduce": runs compare that
    return pca_records(rspec, job.shapes, fits, info)


def _fit_pca(job: Job, items: list[ImageItem], root: Path, wide: dict, k: int) -> dict:
    """Stream the fit images through the model and each wide layer's IncrementalPCA."""
    from .data import BAD_IMAGE_HINT
    from .reduce import StreamingPca

    fitters = {key: StreamingPca(k, max(k, job.batch_size)) for key in wide}
    from .image_sources import FolderSource

    source = job.source if root == job.root else FolderSource(root)  # the run's own images, or a fit folder
    fit_job = dataclasses.replace(
        job, items=list(items), root=root, source=source, top_k=None, start=0, stop=len(items)
    )
    for batch in local_batches(fit_job, items):
        if batch.bad and not job.skip_bad_images:
            raise ImageError(f"{batch.bad[0][1]} (in the PCA fit set); {BAD_IMAGE_HINT}")
        if batch.outs is None:
            continue
        if batch.event is not None:
            batch.event.synchronize()
        for key, f in fitters.items():
            f.add(np.asarray(batch.outs[key]))
    return {key: f.finish() for key, f in fitters.items()}


def save_fit(job: Job, folder: Path) -> None:
    """The run's PCA fit as ``pca_fit.npz`` (written under a partial name, then renamed), for reuse."""
    from .reduce import PCA_FIT_FILE, save_pca_fit
    from .storage import PARTIAL

    red = job.reducer
    if red is None:
        return
    partial = folder / (PCA_FIT_FILE + PARTIAL)
    save_pca_fit(partial, red.pca_fits, {**red.pca_info, "layers": sorted(red.pca_fits)})
    os.replace(partial, folder / PCA_FIT_FILE)


def same_reduction(folder: Path, was: str | None, now: str | None) -> None:
    """Refuse to resume a run with another reduction than the interrupted one's."""
    if was == now:
        return
    how = f"resume with --reduce {was}" if was else "resume without --reduce"
    raise VisrepsError(
        f"cannot resume {str(folder)!r}: the interrupted run was reduced with {was or 'no reduction'}, this one "
        f"with {now or 'no reduction'}; {how}, or start again with --overwrite"
    )


def resume_reduction_first(out: Any, spec: ReduceSpec | None) -> None:
    """The reduction check of a resume, before the model is loaded or a PCA fitted."""
    from .storage import METADATA_PARTIAL

    path = Path(out).expanduser() / METADATA_PARTIAL
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # no record (or a damaged one): the full check in run() says so
    same_reduction(path.parent, (old.get("options") or {}).get("reduce"), None if spec is None else str(spec))
