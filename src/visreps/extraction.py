"""The extraction job and its one batch loop: prepare (load, plan), run (engine → sink), extract.

Options are checked once, in :class:`~visreps.job.ExtractionOptions` (with :class:`~visreps.job.Job`,
:class:`~visreps.job.Batch` and the :class:`~visreps.job.Engine` protocol in :mod:`visreps.job`); the batch
loop and the local engine are in :mod:`visreps.engine`; a reduction attached to a run in
:mod:`visreps.extract_reduce`; the forward pass itself (hooks, early exit) in :mod:`visreps.capture`; the
folder and memory sinks in :mod:`visreps.storage`. Every name these held here is still importable from here.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .capture import (
    PRECISIONS,
    RECURRENT_MODES,
    LayerSpec,
    check_topk,
    dry_shapes,
    find_batch_size,
    imagenet_classes,
    is_out_of_memory,
    model_classes,
    plan_layers,
    predictions_table,
    set_memory_format,
    use_channels_last,
)
from .engine import LocalEngine, batch_source, drive, local_batches, resolve_engine, uninterruptible
from .errors import ExtractionInterrupted, ImageError, VisrepsError
from .extract_reduce import attach_reducer, resume_reduction_first
from .extract_reduce import same_reduction as _same_reduction
from .extract_reduce import save_fit as _save_fit
from .job import Batch, BatchSource, Engine, ExtractionOptions, Job, parse_shard, shard_bounds
from .pooling import POOL_MODES, pool_output
from .storage import Features, OutputWriter, Sink, versions
from .storage.record import RunRecord

__all__ = [
    "Batch",
    "BatchSource",
    "Engine",
    "ExtractionOptions",
    "Job",
    "extract",
    "local_batches",
    "prepare",
    "run",
    "versions",
    "parse_shard",
    "shard_bounds",
    "LayerSpec",
    "PRECISIONS",
    "RECURRENT_MODES",
    "POOL_MODES",
    "find_batch_size",
    "imagenet_classes",
    "is_out_of_memory",
    "plan_layers",
    "pool_output",
    "predictions_table",
    "LocalEngine",
    "drive",
]


def _plan(lm, options: ExtractionOptions) -> tuple[list[LayerSpec], list[str], dict, bool]:
    """Layer specs, output keys, per-image shapes and the memory layout, all from dry runs before any write."""
    layers, pool, recurrent, channels_last = options.layers, options.pool, options.recurrent, options.channels_last
    cl = use_channels_last(lm, channels_last)
    try:
        specs = plan_layers(lm, layers, pool=pool, recurrent=recurrent)
    except VisrepsError:
        if not cl or channels_last:
            raise
        set_memory_format(lm, False)  # some models reshape with .view() and need contiguous tensors
        cl = False
        specs = plan_layers(lm, layers, pool=pool, recurrent=recurrent)
    shapes = dry_shapes(lm, specs)
    if options.top_k is not None:
        check_topk(lm, specs, options.top_k)
    keys = [k for s in specs for k in s.keys]
    return specs, keys, {k: shapes[k] for k in keys}, cl


def _run_metadata(
    lm,
    items: list,
    root: Path,
    order: Any,
    layers: Any,
    specs: list[LayerSpec],
    shapes: dict,
    fmt: str,
    n: int,
    options: dict[str, Any],
    command: str | None,
) -> RunRecord:
    """The metadata record of an image extraction, as :func:`prepare` decided it (status ``running``)."""
    from .storage.record import layer_record, new_record

    list_hash = hashlib.sha256("\n".join(i.path for i in items).encode("utf-8", "surrogateescape")).hexdigest()
    requested = [layers] if isinstance(layers, str) else list(layers)
    identity = {
        k: options[k] for k in ("batch_size", "precision", "recurrent", "channels_last", "skip_bad_images", "top_k")
    }
    images = {
        "root": str(root),
        "order_file": str(Path(order).resolve()) if isinstance(order, (str, os.PathLike)) else None,
        "n_found": len(items),
        "image_list_sha256": list_hash,
    }
    records = {
        k: layer_record(k, module=s.module, pool=s.pool, shape=[n, *shapes[k]], fmt=fmt, calls=s.calls,
                        call=int(k.rpartition("@t")[2]) if "@t" in k else (s.calls - 1 if s.calls > 1 else 0))
        for s in specs
        for k in s.keys
    }  # fmt: skip
    return new_record("images", lm, layers=records, fmt=fmt, options=options, command=command, source=images,
                      versions_=versions(), layers_requested=requested,
                      options_identity={**identity, "device_type": lm.device.type})  # fmt: skip


def prepare(model: Any, images: str | os.PathLike, options: ExtractionOptions | None = None, **kwargs: Any) -> Job:
    """Load the model, find the images, plan the layers and build the metadata of a run.

    Args:
        model, images: as in :func:`extract`.
        options: the run's :class:`~visreps.job.ExtractionOptions`; or leave it out and give the
            keyword arguments of :func:`extract` (``layers=...``, ``pool=...``), checked here once.
            ``allow_pickle`` is :func:`~visreps.models.load_model`'s opt-in to unpickling a whole model
            file; ``reduce``/``reduce_fit``: see :func:`extract` (a PCA is fitted here).
    """
    from .data import default_workers
    from .image_sources import open_source
    from .models import load_model

    if options is None:
        options = ExtractionOptions(**kwargs)
    elif kwargs:
        raise TypeError(f"prepare() takes options or keyword arguments, not both (got {', '.join(kwargs)})")
    source = open_source(images, images_key=options.images_key)
    items = source.items(options.order)
    shard = options.shard_range
    start, stop = (0, len(items)) if shard is None else shard_bounds(len(items), *shard)
    if stop <= start:
        raise VisrepsError(f"shard {options.shard!r} of {len(items)} images is empty; use fewer shards")
    weights = options.weights
    lm = load_model(model, pretrained=options.pretrained, weights=weights, seed=options.seed, device=options.device,
                    preprocessing=options.preprocessing, allow_pickle=options.allow_pickle)  # fmt: skip
    if lm.backend != "torch" and options.precision != "fp32":
        raise VisrepsError(
            f"precision {options.precision!r} applies to PyTorch models; {lm.model_id} ({lm.backend}) runs in "
            "float32: use precision='fp32'"
        )
    specs, keys, shapes, cl = _plan(lm, options)
    batch_size = find_batch_size(lm, specs) if options.batch_size == "auto" else int(options.batch_size)
    n = stop - start
    workers = default_workers(n, batch_size) if options.num_workers is None else options.num_workers
    record = _options_record(options, lm, batch_size, workers, cl)
    metadata = _run_metadata(lm, items, source.root, options.order, options.layers, specs, shapes, options.fmt, n,
                             record, options.command)  # fmt: skip
    if source.describe() is not None:
        metadata.setdefault("images", {})["source"] = source.describe()
    if shard is not None:
        metadata["shard"] = {"index": shard[0], "count": shard[1], "start": start, "stop": stop}
    job = Job(lm, items, source.root, specs, keys, shapes, metadata, options.fmt, batch_size, workers,
              options.precision, cl, options.top_k, options.skip_bad_images, start, stop, source=source,
              options=options)  # fmt: skip
    attach_reducer(job, options)
    return job


def _options_record(options: ExtractionOptions, lm, batch_size: int, workers: int, cl: bool) -> dict[str, Any]:
    """The ``options`` of the run record: as decided (batch size, workers, device, memory layout), not as asked."""
    record = {
        "batch_size": batch_size,
        "num_workers": workers,
        "device": str(lm.device),
        "precision": options.precision,
        "recurrent": options.recurrent,
        "channels_last": cl,
        "skip_bad_images": options.skip_bad_images,
        "top_k": options.top_k,
    }
    if options.reduction is not None:
        fit = options.reduce_fit
        record.update(reduce=str(options.reduction), reduce_fit=None if fit is None else str(fit))
    return record


def _check_resumable(sink: OutputWriter, metadata: RunRecord) -> dict:
    """The earlier run's progress, after checking that it is the same run."""
    from .storage import METADATA, METADATA_PARTIAL
    from .storage.record import RUN_IDENTITY

    folder = sink.folder
    if (folder / METADATA).is_file():
        raise VisrepsError(
            f"{str(folder)!r} holds a finished extraction; nothing to resume (use --overwrite to redo it)"
        )
    meta_path = folder / METADATA_PARTIAL
    if not meta_path.is_file():
        raise VisrepsError(f"{str(folder)!r} holds no interrupted extraction to resume; run without --resume")
    try:
        old = json.loads(meta_path.read_text(encoding="utf-8"))
    except ValueError:
        raise VisrepsError(f"cannot resume: {str(meta_path)!r} is damaged; start again with --overwrite") from None
    _same_reduction(folder, (old.get("options") or {}).get("reduce"), (metadata.get("options") or {}).get("reduce"))
    changed = [f for f in RUN_IDENTITY if old.get(f) != metadata.get(f)]
    if old.get("shard") != metadata.get("shard"):
        changed.append("shard")
    if changed:
        details = []
        for f in changed:
            a, b = old.get(f), metadata.get(f)
            if isinstance(a, dict) and isinstance(b, dict):
                keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                details.append(f"{f} ({', '.join(f'{k}: {a.get(k)!r} → {b.get(k)!r}' for k in keys)})")
            else:
                details.append(f"{f} ({a!r} → {b!r})")
        raise VisrepsError(
            f"cannot resume {str(folder)!r}: the run differs from the interrupted one in "
            + "; ".join(details)
            + ". Resume with the same model, weights, layers, options and images, or start again with --overwrite"
        )
    return sink.load_checkpoint() or {"next_image": 0, "rows": 0, "skipped": [], "txt_bytes": {}}


def _aux_shapes(job: Job) -> dict:
    from .data import DIGEST_SIZE

    aux: dict[str, tuple] = {"blake2b": ((DIGEST_SIZE,), np.uint8)} if job.kind == "images" else {}
    if job.top_k is not None:
        aux["topk_index"] = ((job.top_k,), np.int64)
        aux["topk_prob"] = ((job.top_k,), np.float32)
    return aux


def _none_readable(job: Job, skipped: list, folder) -> ImageError:
    n = job.stop - job.start
    shown = "; ".join(f"{s['path']}: {s['error']}" for s in skipped[:3])
    more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    where = f" (all listed in {str(Path(folder) / 'metadata.partial.json')!r})" if folder is not None else ""
    return ImageError(
        f"none of the {n} images under {str(job.root)!r} could be read{where}: {shown}{more}; "
        "check that these are image files (jpg, png, ...) and not empty or truncated"
    )


def _write_error(e: BaseException, sink: Sink, job: Job, done: int) -> VisrepsError | None:
    """A clear error for a failed write to the output folder (disk full, permissions), else ``None``."""
    from .storage import _is_disk_full, human_bytes

    folder = sink.folder
    if folder is None or not isinstance(e, (OSError, RuntimeError)) or isinstance(e, VisrepsError):
        return None
    n = job.stop - job.start
    if _is_disk_full(e, folder):
        import shutil

        try:
            free = human_bytes(shutil.disk_usage(folder).free)
        except OSError:
            free = "unknown"
        return VisrepsError(
            f"no space left on the device of {str(folder)!r} after {done} of {n} images: the arrays need "
            f"{human_bytes(sink.bytes_needed)} in all and {free} is free; free space (or choose another --out and "
            "start again), then continue with the same command plus --resume"
        )
    if isinstance(e, OSError) and e.filename is not None:
        return VisrepsError(
            f"cannot write {str(e.filename)!r}: {e.strerror or e}; check the output folder {str(folder)!r} "
            "(space, permissions), then continue with the same command plus --resume"
        )
    return None


def _open_sink(job: Job, out, *, overwrite: bool, resume: bool):
    """The sink of a run (a folder or memory) with its files created, and the progress to start from."""
    from .storage import PREDICTION_FILES, MemorySink, SinkPlan

    n = job.stop - job.start
    state: dict[str, Any] = {"next_image": 0, "rows": 0, "skipped": [], "txt_bytes": {}}
    sink: Sink = MemorySink()
    if out is not None:
        writer = OutputWriter(out, job.fmt, overwrite=overwrite, resume=resume)
        if resume:
            state = _check_resumable(writer, job.metadata)
        sink = writer
    extra: list[str] = list(PREDICTION_FILES) if job.top_k is not None else []
    if job.reducer is not None and job.reducer.pca_fits:
        extra.append("pca_fit.npz")
    try:
        sink.start(job.metadata, SinkPlan.of(job.shapes, n, aux=_aux_shapes(job), extra_files=extra),
                   state if resume else None)  # fmt: skip
    except (OSError, RuntimeError) as e:
        wrapped = _write_error(e, sink, job, state["next_image"])
        if wrapped is None:
            raise
        raise wrapped from None
    sink.last_state = dict(state)
    return sink, state


def _failed(job: Job, sink: Sink, e: BaseException, first: int) -> BaseException:
    """Record a run that stopped (metadata status and error) and return the error to raise for it."""
    row, skipped = getattr(e, "visreps_state", (0, []))
    done = (sink.last_state or {}).get("next_image", first)
    metadata = job.metadata
    metadata["status"] = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
    if job.kind == "images":
        images = metadata.setdefault("images", {})
        images.update(n_done=done, rows_written=(sink.last_state or {}).get("rows", row), skipped=skipped)
    metadata["error"] = f"{type(e).__name__}: {e}"
    sink.abort(metadata)
    if isinstance(e, KeyboardInterrupt):
        return ExtractionInterrupted(done, job.stop - job.start, sink.folder)
    wrapped = _write_error(e, sink, job, done)
    return wrapped if wrapped is not None else e


def run(
    job: Job, *, out=None, overwrite: bool = False, resume: bool = False, progress: bool = True, engine: Any = None
):
    """Run a prepared job: an engine's batches through :func:`drive` into a sink (folder or memory), then finish.

    Args:
        job: from :func:`prepare` (or the text equivalent, :mod:`visreps.text`).
        out, overwrite, resume, progress: as in :func:`extract`.
        engine: :class:`LocalEngine` (default), :class:`visreps.distributed.RayEngine`, any
            :class:`~visreps.job.BatchSource` (an object with ``batches(job, items)``), or a function
            ``engine(job, items)`` yielding :class:`Batch`.

    Raises:
        ExtractionInterrupted: Ctrl-C; the folder keeps every finished batch for ``resume=True``.
    """
    batches_of = batch_source(engine)
    sink, state = _open_sink(job, out, overwrite=overwrite, resume=resume)
    items = job.items[job.start + state["next_image"] : job.stop]
    t0 = time.perf_counter()
    try:
        row, skipped = drive(job, sink, batches_of(job, items), state, progress=progress)
    except BaseException as e:
        if job.channels_last:
            set_memory_format(job.lm, False)
        err = _failed(job, sink, e, state["next_image"])
        if err is e:
            raise
        raise err from (e if isinstance(err, ExtractionInterrupted) else None)
    if job.channels_last:
        set_memory_format(job.lm, False)
    elapsed = time.perf_counter() - t0
    if row == 0:
        err = _none_readable(job, skipped, sink.folder)
        job.metadata["status"] = "failed"
        if job.kind == "images":
            job.metadata.setdefault("images", {}).update(n_done=job.stop - job.start, rows_written=0, skipped=skipped)
        job.metadata["error"] = str(err)
        sink.abort(job.metadata)
        raise err
    try:
        with uninterruptible():  # renames and the final record: Ctrl-C waits for them
            return _finish(job, sink, row, skipped, elapsed)
    except (OSError, RuntimeError) as e:
        wrapped = _write_error(e, sink, job, job.stop - job.start)
        if wrapped is None:
            raise
        sink.abort()
        raise wrapped from None


def _finish(job: Job, sink: Sink, row: int, skipped: list, elapsed: float) -> Features:
    """Manifest rows, predictions and metadata of a finished loop; the sink's files under their final names."""
    metadata = job.metadata
    skipped_paths = {s["path"] for s in skipped}
    kept = [it for it in job.items[job.start : job.stop] if it.path not in skipped_paths]
    if len(kept) != row:
        raise VisrepsError(f"internal error: {row} rows written for {len(kept)} items; please report this")
    aux = sink.aux_arrays(row)
    hashes = [bytes(h).hex() for h in aux["blake2b"]] if "blake2b" in aux else None
    manifest_rows = [(it.path, it.label, *([hashes[j]] if hashes else [])) for j, it in enumerate(kept)]
    metadata["status"] = "running"
    metadata.pop("error", None)
    if job.kind == "images":
        images = metadata.setdefault("images", {})
        for key in ("n_done", "rows_written"):
            images.pop(key, None)
        images.update(n_extracted=row, skipped=skipped)
        metadata["seconds"] = round(elapsed, 3)
    for k in job.keys:
        metadata["layers"][k]["shape"][0] = row
    predictions = None
    if job.top_k is not None:
        paths = [r[0] for r in manifest_rows]
        predictions = predictions_table(aux["topk_index"], aux["topk_prob"], paths, model_classes(job.lm))
        metadata["extra_files"] = ["predictions.csv", "predictions.json", *metadata.get("extra_files", [])]
    if job.reducer is not None and job.reducer.pca_fits:
        sink.add_files(lambda folder: _save_fit(job, folder))
    return sink.finish(row, manifest_rows, metadata, predictions)


def plan_text(job: Job, out: Any = None) -> str:
    """The plan of a prepared run, as printed before it starts: layers, reductions, disk and memory."""
    import shutil

    from .storage import human_bytes

    n = job.stop - job.start
    width = {k: int(np.prod(s, dtype=np.int64)) for k, s in job.shapes.items()}
    raw = {k: int(np.prod(s, dtype=np.int64)) for k, s in (job.raw_shapes or job.shapes).items()}
    per_image = 4 * sum(width.values())
    lines = [f"plan: {len(job.keys)} layer(s) of {job.lm.model_id}, {n} images, batch {job.batch_size}"]
    red = job.reducer
    if red is not None:
        kept = [k for k, r in red.records.items() if r["method"] == "none"]
        lines.append(
            f"  reduce {red.spec}: {len(job.keys) - len(kept)} layer(s) reduced"
            + (f", {len(kept)} kept raw (no wider than K): {', '.join(kept)}" if kept else "")
        )
    disk = f"  disk: {human_bytes(n * per_image)} ({human_bytes(per_image)} per image"
    if red is not None:
        disk += f"; raw: {human_bytes(n * 4 * sum(raw.values()))}"
    disk += ")"
    if out is not None:
        where = Path(out).expanduser().resolve()
        while not where.exists() and where != where.parent:
            where = where.parent
        try:
            disk += f"; {human_bytes(shutil.disk_usage(where).free)} free"
        except OSError:
            pass
    lines.append(disk)
    model = sum(t.numel() * t.element_size() for t in _tensors(job.lm))
    batch_raw = job.batch_size * 4 * sum(raw.values())
    mats = red.matrix_bytes() if red is not None else 0
    mem = f"  memory: about {human_bytes(model + 2 * batch_raw + mats)} (model {human_bytes(model)}, "
    mem += f"raw activations of two batches {human_bytes(2 * batch_raw)}"
    if red is not None and mats:
        mem += f", {'projection matrices' if red.spec.method == 'srp' else 'PCA components'} {human_bytes(mats)}"
    lines.append(mem + "), the same for any number of images")
    return "\n".join(lines)


def _tensors(lm) -> list:
    module = lm.module if lm.backend == "torch" else None
    if module is None or not hasattr(module, "parameters"):
        return []
    return [*module.parameters(), *module.buffers()]


def extract(
    model,
    images: str | os.PathLike,
    *,
    layers: Sequence[str] | str,
    out: str | os.PathLike | None = None,
    format: str = "npy",
    pool: str | Mapping[str, str] = "flatten",
    batch_size: int | str = 32,
    num_workers: int | None = None,
    device: str | None = "auto",
    precision: str = "fp32",
    order: str | os.PathLike | Sequence[str] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    shard: str | tuple[int, int] | None = None,
    skip_bad_images: bool = False,
    recurrent: str | None = None,
    progress: bool = True,
    pretrained: bool = True,
    weights: str | os.PathLike | None = None,
    seed: int = 0,
    preprocessing=None,
    channels_last: bool | None = None,
    top_k: int | None = None,
    command: str | None = None,
    allow_pickle: bool = False,
    engine: Any = "local",
    images_key: str | None = None,
    reduce: str | None = None,
    reduce_fit: str | os.PathLike | None = None,
):
    """Extract the activations of one or more layers for every image in a folder.

    Args:
        model: a model id (``"timm:efficientnet_lite0"``), a ``torch.nn.Module`` or a
            :class:`~visreps.models.LoadedModel` (then ``pretrained/weights/seed`` are ignored).
        images: an image folder (flat or with class subfolders), an ``.h5``/``.hdf5``/``.npy`` file of one
            ``N × H × W × 3`` uint8 array, a ``.txt`` list of image paths, or one image (see image_sources).
        layers: module names (``["features.2", "classifier.1"]`` or ``"features.2,classifier.1"``); ``name@tK``: time
            step K of a recurrent module; glob patterns (``"layer?.*"``; ``**`` crosses dots) and ``"blocks"`` (the
            model's main blocks, :mod:`visreps.models._select`) expand to the names they match, in model order.
        out: output folder; ``None`` keeps the arrays in memory.
        format: ``npy``, ``hdf5``, ``mat``, ``pt`` or ``txt``.
        pool: ``flatten``, ``none`` (keep shape), ``avg``/``max`` (global), ``cls``/``patch_mean``; a dict: per layer.
        batch_size: images per forward pass, or ``"auto"``: the largest power of two up to 512 that fits in GPU
            memory (32 on the CPU). A batch that runs out of device memory is split in halves instead of crashing.
        num_workers: decoding processes (default: one per core, at most 8; none for tiny sets).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``.
        precision: ``fp32``, or ``fp16``/``bf16`` autocast (arrays are stored as float32).
        order: a text file or list of relative image paths (or row names such as ``imgBrick/3``): these, in this order.
        overwrite: replace the results in an existing output folder.
        resume: continue an interrupted run in ``out`` from its last written batch (same model, options, images).
        shard: ``"I/N"`` or ``(I, N)``: the I-th of N contiguous slices of the images (join: ``visreps.merge_shards``).
        skip_bad_images: skip unreadable images (recorded in the metadata) instead of stopping.
        recurrent: for modules that run several times per pass: ``all`` (one array per time step,
            ``layer@t0``...) or ``last``.
        progress: show a progress bar (images/s).
        channels_last: channels-last memory layout for convolutions (faster in oneDNN/cuDNN); ``None`` (default):
            on for torch models with 2-D convolutions on CPU/CUDA unless the model cannot run that way.
        top_k: also record the K most probable ImageNet-1k classes per image (the model must end in a 1000-way
            classifier) in ``predictions.csv``/``.json`` and ``result.predictions``.
        allow_pickle: allow unpickling a model file (``"file:model.pt"``) or a weights file holding Python objects,
            which can run arbitrary code: only for files you trust (:func:`~visreps.models.load_model`).
        engine: ``"local"`` (this process; ``num_workers`` decoders) or a :class:`visreps.distributed.RayEngine`
            over a Ray cluster (any :class:`~visreps.job.Engine`); the output is the same.
        images_key: which array of an HDF5 file holding several (``"imgBrick"``).
        reduce: reduce every layer while extracting (raw activations never reach the disk): ``"srp:K"`` (sparse
            random projection, per-layer seeds from ``seed``), ``"srp:auto"`` (Johnson–Lindenstrauss K), ``"pca:K"``
            (IncrementalPCA fitted on ``reduce_fit`` or the first ``max(K, 1000)`` images; ``"pca:K:M"``: the first
            M). A layer no wider than K is kept. Recorded in ``metadata["reduce"]``; see :mod:`visreps.reduce`.
        reduce_fit: the fit set of ``pca:K``: a folder of images, or the ``pca_fit.npz`` an earlier run saved in
            its output folder (reused as it is).

    Returns:
        :class:`~visreps.storage.Features`: ``result[layer]`` is an array with one row per image,
        ``result.manifest`` ties rows to image paths.
    """
    options = ExtractionOptions(**{k: v for k, v in locals().items() if k not in ("model", "images")})
    return _extract(model, images, options)


def _extract(model: Any, images: str | os.PathLike, options: ExtractionOptions):
    """The body of :func:`extract`: the engine adapts the options, :func:`prepare` plans, :func:`run` runs."""
    if options.resume:
        resume_reduction_first(options.out, options.reduction)
    eng = resolve_engine(options.engine)
    options = eng.start(options)
    try:
        job = prepare(model, images, options)
        if options.progress:
            import sys

            print(plan_text(job, options.out), file=sys.stderr)
        eng.attach(job, options, model)
        return run(job, engine=eng, **options.run_arguments())
    finally:
        eng.close()
