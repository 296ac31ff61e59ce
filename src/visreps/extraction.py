"""The extraction job and its one batch loop: prepare (validate, load, plan), run (engine → sink), extract.

The forward pass itself (hooks, early exit, the forward step shared by every engine) is in
:mod:`visreps.capture`; the folder and memory sinks are in :mod:`visreps.storage`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .capture import (
    PRECISIONS,
    RECURRENT_MODES,
    LayerSpec,
    autocast,
    check_topk,
    dry_shapes,
    find_batch_size,
    forward_with_backoff,
    imagenet_classes,
    is_out_of_memory,
    make_capture,
    model_classes,
    plan_layers,
    predictions_table,
    set_memory_format,
    top_classes,
    use_channels_last,
)
from .errors import ExtractionInterrupted, ImageError, VisrepsError
from .pooling import POOL_MODES, pool_output
from .storage import Features, OutputWriter, Sink, versions

__all__ = [
    "Batch",
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


def parse_shard(shard) -> tuple[int, int] | None:
    """``"2/4"`` or ``(2, 4)`` → (2, 4): the 2nd of 4 contiguous slices (1-based)."""
    if shard is None:
        return None
    try:
        if isinstance(shard, str):
            i, n = (int(p) for p in shard.split("/"))
        else:
            i, n = (int(p) for p in shard)
    except (ValueError, TypeError):
        raise VisrepsError(f"shard {shard!r} is not valid; write I/N, e.g. 2/4 for the second of four slices") from None
    if not (n >= 1 and 1 <= i <= n):
        raise VisrepsError(f"shard {shard!r} is not valid: I must be between 1 and N (e.g. 1/4 ... 4/4)")
    return i, n


def shard_bounds(n_images: int, i: int, n: int) -> tuple[int, int]:
    """Start and stop of the i-th (1-based) of n contiguous, near-equal slices of n_images."""
    return (i - 1) * n_images // n, i * n_images // n


@dataclass
class Job:
    """Everything one extraction needs, decided before the first batch (see :func:`prepare`)."""

    lm: Any
    items: list
    root: Path
    specs: list
    keys: list
    shapes: dict
    metadata: dict
    fmt: str
    batch_size: int
    workers: int
    precision: str
    channels_last: bool
    top_k: int | None
    skip_bad_images: bool
    start: int = 0  # first image index of this job in ``items`` (shards)
    stop: int = 0
    kind: str = "images"  # or "texts" (visreps.text): no content hashes, no image metadata
    source: Any = None  # the image source (visreps.image_sources) the dataset reads through
    unit: str = "img"  # of the progress bar
    reducer: Any = None  # visreps.reduce.Reducer: applied to every batch before it is written
    raw_shapes: dict | None = None  # per-image shapes before the reduction


def _check_options(batch_size: Any, num_workers: Any, precision: str, top_k: Any) -> None:
    if batch_size != "auto" and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1):
        raise VisrepsError(f"batch_size must be a positive integer or 'auto', got {batch_size!r}")
    if num_workers is not None and (not isinstance(num_workers, int) or num_workers < 0):
        raise VisrepsError(f"num_workers must be an integer >= 0, got {num_workers!r}")
    if precision not in PRECISIONS:
        raise VisrepsError(f"precision {precision!r} is not valid; use one of {', '.join(PRECISIONS)}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1 or top_k > 1000):
        raise VisrepsError(f"top_k must be an integer between 1 and 1000, got {top_k!r}")


def _plan(lm, layers, *, pool, recurrent, channels_last, top_k) -> tuple[list[LayerSpec], list[str], dict, bool]:
    """Layer specs, output keys, per-image shapes and the memory layout, all from dry runs before any write."""
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
    if top_k is not None:
        check_topk(lm, specs, top_k)
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
) -> dict[str, Any]:
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
    return dict(
        new_record("images", lm, layers=records, fmt=fmt, options=options, command=command, source=images,
                   versions_=versions(), layers_requested=requested,
                   options_identity={**identity, "device_type": lm.device.type})
    )  # fmt: skip


def prepare(
    model: Any,
    images: str | os.PathLike,
    *,
    layers: Sequence[str] | str,
    format: str = "npy",
    pool: str | Mapping[str, str] = "flatten",
    batch_size: int | str = 32,
    num_workers: int | None = None,
    device: str | None = "auto",
    precision: str = "fp32",
    order: str | os.PathLike | Sequence[str] | None = None,
    skip_bad_images: bool = False,
    recurrent: str | None = None,
    pretrained: bool = True,
    weights: str | os.PathLike | None = None,
    seed: int = 0,
    preprocessing: Any = None,
    channels_last: bool | None = None,
    top_k: int | None = None,
    shard: str | tuple[int, int] | None = None,
    command: str | None = None,
    allow_pickle: bool = False,
    images_key: str | None = None,
    reduce: str | None = None,
    reduce_fit: str | os.PathLike | None = None,
) -> Job:
    """Validate the arguments, load the model, find the images, plan the layers and build the metadata.

    ``allow_pickle`` is :func:`~visreps.models.load_model`'s opt-in to unpickling a whole model file.
    ``reduce``/``reduce_fit``: see :func:`extract` and :mod:`visreps.reduce` (a PCA is fitted here).
    """
    from .data import default_workers
    from .image_sources import open_source
    from .models import load_model
    from .storage import check_format

    _check_options(batch_size, num_workers, precision, top_k)
    fmt = check_format(format)
    shard_ = parse_shard(shard)
    rspec = _check_reduce(reduce, reduce_fit)
    source = open_source(images, images_key=images_key)
    items = source.items(order)
    start, stop = (0, len(items)) if shard_ is None else shard_bounds(len(items), *shard_)
    if stop <= start:
        raise VisrepsError(f"shard {shard!r} of {len(items)} images is empty; use fewer shards")
    lm = load_model(
        model,
        pretrained=pretrained,
        weights=weights,
        seed=seed,
        device=device,
        preprocessing=preprocessing,
        allow_pickle=allow_pickle,
    )
    if lm.backend != "torch" and precision != "fp32":
        raise VisrepsError(
            f"precision {precision!r} applies to PyTorch models; {lm.model_id} ({lm.backend}) runs in float32: "
            "use precision='fp32'"
        )
    specs, keys, shapes, cl = _plan(
        lm, layers, pool=pool, recurrent=recurrent, channels_last=channels_last, top_k=top_k
    )
    batch_size = find_batch_size(lm, specs) if batch_size == "auto" else int(batch_size)
    n = stop - start
    root = source.root
    workers = default_workers(n, batch_size) if num_workers is None else num_workers
    options = {
        "batch_size": batch_size,
        "num_workers": workers,
        "device": str(lm.device),
        "precision": precision,
        "recurrent": recurrent,
        "channels_last": cl,
        "skip_bad_images": skip_bad_images,
        "top_k": top_k,
    }
    if rspec is not None:
        options.update(reduce=str(rspec), reduce_fit=None if reduce_fit is None else str(reduce_fit))
    metadata = _run_metadata(lm, items, root, order, layers, specs, shapes, fmt, n, options, command)
    if source.describe() is not None:
        metadata["images"]["source"] = source.describe()
    if shard_ is not None:
        metadata["shard"] = {"index": shard_[0], "count": shard_[1], "start": start, "stop": stop}
    job = Job(lm, items, root, specs, keys, shapes, metadata, fmt, batch_size, workers, precision, cl, top_k,
              skip_bad_images, start, stop, source=source)  # fmt: skip
    if rspec is not None:
        _attach_reducer(job, rspec, reduce_fit, seed)
    return job


def _check_reduce(reduce: Any, reduce_fit: Any):
    """The parsed reduction, after checking ``reduce_fit`` (before any work)."""
    from .reduce import parse_reduce

    rspec = parse_reduce(reduce)
    if reduce_fit is not None:
        if rspec is None or rspec.method != "pca":
            raise VisrepsError("reduce_fit (--reduce-fit) is the fit set of a PCA; use it with --reduce pca:K")
        path = Path(reduce_fit).expanduser()
        if not path.exists():
            raise VisrepsError(
                f"--reduce-fit {str(reduce_fit)!r} does not exist; give a folder of images to fit the PCA on "
                "(or the pca_fit.npz of an earlier run), or leave it out to fit on the first images of the run"
            )
        if rspec.fit_images is not None:
            raise VisrepsError(f"reduce {str(rspec)!r} names a number of fit images; with --reduce-fit write pca:K")
    return rspec


def _attach_reducer(job: Job, rspec: Any, reduce_fit: Any, seed: int) -> None:
    """Plan the run's reductions (SRP matrices; the PCA fit runs here) and record them in the job's metadata."""
    from .reduce import check_shapes, srp_plan

    check_shapes(job.shapes, {k: s.pool for s in job.specs for k in s.keys})
    if rspec.method == "srp":
        reducer = srp_plan(rspec, job.shapes, seed=seed, n_images=len(job.items))
    else:
        reducer = _pca_reducer(job, rspec, reduce_fit)
    job.raw_shapes = dict(job.shapes)
    job.shapes = reducer.out_shapes(job.shapes)
    job.reducer = reducer
    for k, shape in job.shapes.items():
        job.metadata["layers"][k]["shape"] = [job.metadata["layers"][k]["shape"][0], *shape]
    job.metadata["reduce"] = reducer.records
    if reducer.pca_fits:
        job.metadata["extra_files"] = [*job.metadata.get("extra_files", []), "pca_fit.npz"]


def _pca_reducer(job: Job, rspec: Any, reduce_fit: Any):
    """The PCA of a run: loaded from a saved fit, or fitted (streamed) on a fit set of images."""
    from .data import find_images
    from .reduce import DEFAULT_PCA_FIT_IMAGES, check_loaded_fit, load_pca_fit, pca_records

    k = rspec.k
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


def _fit_pca(job: Job, items: list, root: Path, wide: dict, k: int) -> dict:
    """Stream the fit images through the model and each wide layer's IncrementalPCA."""
    import dataclasses

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


def _check_resumable(sink: OutputWriter, metadata: dict) -> dict:
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


def _same_reduction(folder: Path, was: str | None, now: str | None) -> None:
    """Refuse to resume a run with another reduction than the interrupted one's."""
    if was == now:
        return
    how = f"resume with --reduce {was}" if was else "resume without --reduce"
    raise VisrepsError(
        f"cannot resume {str(folder)!r}: the interrupted run was reduced with {was or 'no reduction'}, this one "
        f"with {now or 'no reduction'}; {how}, or start again with --overwrite"
    )


def _resume_reduction_first(out: Any, reduce: Any) -> None:
    """The reduction check of a resume, before the model is loaded or a PCA fitted."""
    from .reduce import parse_reduce
    from .storage import METADATA_PARTIAL

    path = Path(out).expanduser() / METADATA_PARTIAL
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # no record (or a damaged one): the full check in run() says so
    spec = parse_reduce(reduce)
    _same_reduction(path.parent, (old.get("options") or {}).get("reduce"), None if spec is None else str(spec))


@contextlib.contextmanager
def _uninterruptible():
    """Hold Ctrl-C (SIGINT) back while a batch is written and its progress recorded, then deliver it.

    A batch's rows and the progress record that counts them are then one step: an interrupt lands
    before or after it, never between. Only the main thread can own signal handlers; elsewhere
    (and where SIGINT is ignored) this does nothing.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    except (ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            if callable(previous) and previous is not signal.default_int_handler:
                previous(signal.SIGINT, None)
            elif previous is not signal.SIG_IGN:
                raise KeyboardInterrupt


@dataclass
class Batch:
    """One batch as an engine yields it to :func:`run`, in the order of the images.

    Attributes:
        idx: positions (in the engine's ``items``) of the images whose rows ``outs`` holds, in order.
        bad: ``(position, error message)`` of the images that could not be read.
        outs: ``{key: array or tensor (len(idx), ...)}``; ``None`` when every image was bad.
        topk: ``(indices, probabilities)`` of the top-k classes, or ``None``.
        event: a CUDA event to wait for before reading ``outs`` (``None`` off CUDA).
        digests: the content hashes of the good images (:func:`visreps.data.content_hash`), as
            bytes or a ``(len(idx), 16)`` uint8 array.
    """

    idx: list
    bad: list
    outs: Any = None
    topk: Any = None
    event: Any = None
    digests: Any = ()
    reduced: bool = False  # ``outs`` already reduced by the engine (the Ray actors)


def local_batches(job: Job, items: Sequence):
    """The single-process batch source of :func:`run`: a DataLoader decodes ``items``, the model runs here.

    Yields one :class:`Batch` per batch, in the order of ``items``. Another engine
    (:mod:`visreps.distributed`) yields the same and :func:`run` writes it.
    """
    import torch

    from .data import ImageDataset, make_loader

    lm = job.lm
    dataset = (
        ImageDataset(job.root, items, lm.transform) if job.source is None else job.source.dataset(items, lm.transform)
    )
    loader = make_loader(
        dataset, batch_size=job.batch_size, num_workers=job.workers, pin_memory=lm.device.type == "cuda"
    )
    reducers = _hook_reducers(job)
    cap = make_capture(lm, job.specs, stop_early=job.top_k is None, reducers=reducers)
    cuda = lm.device.type == "cuda"
    with cap:
        for idx, x, bad, digests in loader:
            outs = topk = event = None
            if x is not None:
                with torch.inference_mode(), autocast(lm.device, job.precision):
                    if lm.backend == "torch":
                        x = x.to(lm.device, non_blocking=True)
                        if job.channels_last:
                            x = x.contiguous(memory_format=torch.channels_last)
                    outs, result = forward_with_backoff(cap, x)
                    if job.top_k is not None:
                        topk = top_classes(result, job.top_k, lm.model_id, n_classes=len(model_classes(lm)))
                    if cuda:
                        event = torch.cuda.Event()
                        event.record()
            yield Batch(idx, bad, outs, topk, event, digests, reduced=bool(reducers))


def _hook_reducers(job: Job) -> dict:
    """The reductions the forward hooks apply themselves (torch models on the CPU): no raw copy of a layer is made.
    Elsewhere (CUDA, other frameworks) :func:`drive` reduces the rows on the host."""
    from .reduce import hook_reducer

    red = job.reducer
    if red is None or job.lm.adapter is not None or job.lm.device.type != "cpu":
        return {}
    return {key: hook_reducer(a) for key, a in red.appliers.items()}


def _digest_rows(digests, n: int) -> np.ndarray:
    from .data import DIGEST_SIZE

    if isinstance(digests, np.ndarray):
        return digests.astype(np.uint8, copy=False).reshape(n, DIGEST_SIZE)
    out = np.zeros((n, DIGEST_SIZE), np.uint8)
    for j, d in enumerate(digests):
        if d:
            out[j] = np.frombuffer(d, np.uint8)
    return out


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


class LocalEngine:
    """The single-process engine: a DataLoader decodes the images in ``num_workers`` processes, the model runs here.

    An engine adapts the options of :func:`prepare` (``start``), adapts the prepared job
    (``attach``), yields its batches (``batches``, see :class:`Batch`) and releases what it holds
    (``close``); :class:`visreps.distributed.RayEngine` is the other one.
    """

    name = "local"

    def start(self, options: dict[str, Any]) -> dict[str, Any]:
        return options

    def attach(self, job: Job, recipe: dict[str, Any]) -> None:
        return None

    def batches(self, job: Job, items: Sequence) -> Iterator[Batch]:
        return local_batches(job, items)

    def close(self) -> None:
        return None


def _engine(engine: Any) -> Any:
    if engine is None or engine == "local":
        return LocalEngine()
    if all(hasattr(engine, m) for m in ("start", "attach", "batches", "close")):
        return engine
    raise VisrepsError(f"engine {engine!r} is not valid; use 'local', 'ray' or visreps.distributed.RayEngine(...)")


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


@contextlib.contextmanager
def _closing(it: Iterator[Batch]) -> Iterator[Iterator[Batch]]:
    """Close the engine's generator when the loop ends early (stops its pipeline); plain iterators need nothing."""
    try:
        yield it
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


def drive(
    job: Job, sink, batches: Iterable[Batch], state: dict[str, Any], *, progress: bool = True
) -> tuple[int, list]:
    """The batch loop: an engine's batches, in order, into the sink. Returns the rows written and the skipped images.

    Each batch's rows and the progress record that counts them are written as one step that
    Ctrl-C cannot split (:func:`_uninterruptible`). On CUDA the host waits for a batch's copies
    once, when the next batch has been queued, so copies and writes overlap the next forward pass.
    """
    from tqdm.auto import tqdm

    from .data import BAD_IMAGE_HINT
    from .storage import NonFiniteError

    first, row, skipped = state["next_image"], state["rows"], list(state["skipped"])
    items = job.items[job.start + first : job.stop]
    bar = tqdm(
        total=job.stop - job.start,
        initial=first,
        unit=job.unit,
        disable=not progress,
        desc=job.lm.model_id,
        leave=False,
        dynamic_ncols=True,
    )

    def flush(p) -> None:
        nonlocal row
        nrows, batch, done_after, n_skipped = p
        if batch.event is not None:
            batch.event.synchronize()
        arrays = {k: np.asarray(batch.outs[k]) for k in job.keys}
        if job.reducer is not None and not getattr(batch, "reduced", False):
            arrays.update(job.reducer.apply({k: arrays[k] for k in job.reducer.appliers}))
        if job.kind == "images":
            arrays["blake2b"] = _digest_rows(batch.digests, nrows)
        if batch.topk is not None:
            arrays["topk_index"], arrays["topk_prob"] = (np.asarray(t) for t in batch.topk)
        with _uninterruptible():
            try:
                sink.write(row, arrays)
            except NonFiniteError as e:  # the sink knows the row; name its image (or text)
                item = items[batch.idx[e.row - row]]
                raise e.naming(getattr(item, "path", item)) from None
            sink.checkpoint({"next_image": done_after, "rows": row + nrows, "skipped": skipped[:n_skipped]})
            row += nrows

    pending = None
    read = first
    try:
        with _closing(iter(batches)) as it:
            for batch in it:
                for i, err in batch.bad:
                    if not job.skip_bad_images:
                        raise ImageError(f"{err}; {BAD_IMAGE_HINT}")
                    skipped.append({"path": items[i].path, "error": err})
                read += len(batch.idx) + len(batch.bad)
                current = (len(batch.idx), batch, read, len(skipped)) if batch.outs is not None else None
                if pending is not None:
                    p, pending = pending, None  # taken before it is written: never written twice
                    flush(p)
                pending = current
                if pending is None:  # a batch of bad images only: nothing to wait for
                    with _uninterruptible():
                        sink.checkpoint({"next_image": read, "rows": row, "skipped": list(skipped)})
                bar.update(len(batch.idx) + len(batch.bad))
            if pending is not None:
                p, pending = pending, None
                flush(p)
    except BaseException as e:
        if pending is not None and not isinstance(e, OSError):  # its forward pass finished: keep it
            try:
                flush(pending)
            except BaseException:  # noqa: BLE001 - the first error is the one to report
                pass
        e.visreps_state = (row, skipped)  # type: ignore[attr-defined]
        raise
    finally:
        bar.close()
    return row, skipped


def _failed(job: Job, sink: Sink, e: BaseException, first: int) -> BaseException:
    """Record a run that stopped (metadata status and error) and return the error to raise for it."""
    row, skipped = getattr(e, "visreps_state", (0, []))
    done = (sink.last_state or {}).get("next_image", first)
    metadata = job.metadata
    metadata["status"] = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
    if job.kind == "images":
        metadata["images"]["n_done"] = done
        metadata["images"]["rows_written"] = (sink.last_state or {}).get("rows", row)
        metadata["images"]["skipped"] = skipped
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
        engine: :class:`LocalEngine` (default), :class:`visreps.distributed.RayEngine`, any object
            with ``batches(job, items)``, or a function ``engine(job, items)`` yielding :class:`Batch`.

    Raises:
        ExtractionInterrupted: Ctrl-C; the folder keeps every finished batch for ``resume=True``.
    """
    batches_of = engine.batches if hasattr(engine, "batches") else (engine or LocalEngine().batches)
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
        job.metadata["images"].update(n_done=job.stop - job.start, rows_written=0, skipped=skipped)
        job.metadata["error"] = str(err)
        sink.abort(job.metadata)
        raise err
    try:
        with _uninterruptible():  # renames and the final record: Ctrl-C waits for them
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
        for key in ("n_done", "rows_written"):
            metadata["images"].pop(key, None)
        metadata["images"]["n_extracted"] = row
        metadata["images"]["skipped"] = skipped
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


def _save_fit(job: Job, folder: Path) -> None:
    """The run's PCA fit as ``pca_fit.npz`` (written under a partial name, then renamed), for reuse."""
    from .reduce import PCA_FIT_FILE, save_pca_fit
    from .storage import PARTIAL

    partial = folder / (PCA_FIT_FILE + PARTIAL)
    save_pca_fit(partial, job.reducer.pca_fits, {**job.reducer.pca_info, "layers": sorted(job.reducer.pca_fits)})
    os.replace(partial, folder / PCA_FIT_FILE)


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
        images: the image folder (flat or with class subfolders), an HDF5 (``.h5``/``.hdf5``) or
            ``.npy`` file holding one ``N × H × W × 3`` uint8 image array, a ``.txt`` file listing
            image paths (absolute, or relative to the list's folder), or one image file
            (see :mod:`visreps.image_sources` for the manifest's row names).
        layers: module names (``["features.2", "classifier.1"]`` or ``"features.2,classifier.1"``);
            ``name@tK`` takes time step K of a recurrent module; glob patterns (``"layer?.*"``: ``*``
            within one dotted part, ``**`` across dots) and ``"blocks"`` (the model's main blocks, see
            :mod:`visreps.models._select`) expand to the names they match, in model order.
        out: output folder; ``None`` keeps the arrays in memory.
        format: ``npy``, ``hdf5``, ``mat``, ``pt`` or ``txt``.
        pool: ``flatten`` (default), ``none`` (keep shape), ``avg`` or ``max`` (global pooling of
            spatial maps), ``cls``/``patch_mean`` (transformer tokens); a dict sets it per layer.
        batch_size: images per forward pass, or ``"auto"``: the largest power of two up to 512 that
            fits in GPU memory (32 on the CPU). A batch that runs out of device memory during the
            run is split in halves instead of crashing.
        num_workers: decoding processes (default: one per core, at most 8; none for tiny sets).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``.
        precision: ``fp32``, or ``fp16``/``bf16`` autocast (arrays are stored as float32).
        order: a text file (or list) of relative image paths giving the images and their order (for an
            image array or list, of manifest row names such as ``imgBrick/3``).
        overwrite: replace the results in an existing output folder.
        resume: continue an interrupted run in ``out`` from its last fully written batch, after
            checking that model, weights, layers, options and images are the same.
        shard: ``"I/N"`` or ``(I, N)``: only the I-th of N contiguous slices of the ordered
            images (join the shard folders with :func:`visreps.merge_shards`).
        skip_bad_images: skip unreadable images (recorded in the metadata) instead of stopping.
        recurrent: for modules that run several times per pass: ``all`` (one array per time step,
            ``layer@t0``...) or ``last``.
        progress: show a progress bar (images/s).
        channels_last: run convolutions in channels-last memory layout, which oneDNN/cuDNN run
            faster. ``None`` (default): on for torch models with 2-D convolutions on CPU/CUDA, off
            if the model cannot run that way. The module gets its layout back afterwards.
        top_k: also record the K most probable ImageNet-1k classes per image (the model must end
            in a 1000-way classifier); saved as ``predictions.csv``/``.json`` and in
            ``result.predictions``. The forward pass then runs to the end.
        allow_pickle: allow unpickling a whole model file (``"file:model.pt"``) or a weights file
            holding Python objects besides tensors, which can run arbitrary code: only for files you
            trust (see :func:`~visreps.models.load_model`).
        engine: ``"local"`` (this process; images decoded in ``num_workers`` processes) or a
            :class:`visreps.distributed.RayEngine` that spreads the run over a Ray cluster; the
            output is the same.
        images_key: which array of an HDF5 file holding several (``"imgBrick"``).
        reduce: reduce every layer while extracting, so raw activations never reach the disk:
            ``"srp:K"`` (sparse random projection, scikit-learn's matrix for a per-layer seed derived
            from ``seed``), ``"srp:auto"`` (K from the Johnson–Lindenstrauss bound), ``"pca:K"``
            (IncrementalPCA fitted on ``reduce_fit`` or the first ``max(K, 1000)`` images; ``"pca:K:M"``:
            the first M). A layer no wider than K is kept as it is. Recorded per layer in
            ``metadata["reduce"]``; see :mod:`visreps.reduce`.
        reduce_fit: the fit set of ``pca:K``: a folder of images, or the ``pca_fit.npz`` an earlier
            run saved in its output folder (reused as it is).

    Returns:
        :class:`~visreps.storage.Features`: ``result[layer]`` is an array with one row per image,
        ``result.manifest`` ties rows to image paths.
    """
    return _extract(dict(locals()))  # every argument of this call, by name


_RUN_ARGS = ("out", "overwrite", "resume", "progress")


def _extract(args: dict[str, Any]):
    """The body of :func:`extract`: the engine adapts the options, :func:`prepare` checks them, :func:`run` runs."""
    if args["resume"] and args["out"] is None:
        raise VisrepsError("resume=True needs the output folder of the interrupted run (out=...)")
    if args["resume"] and args["overwrite"]:
        raise VisrepsError("choose either resume (continue the interrupted run) or overwrite (start again), not both")
    if args["resume"]:
        _resume_reduction_first(args["out"], args["reduce"])
    eng = _engine(args.pop("engine"))
    model, images = args.pop("model"), args.pop("images")
    run_args = {k: args.pop(k) for k in _RUN_ARGS}
    args.update(eng.start({k: args[k] for k in ("device", "num_workers", "batch_size")}))
    try:
        job = prepare(model, images, **args)
        if run_args["progress"]:
            import sys

            print(plan_text(job, run_args["out"]), file=sys.stderr)
        weights = args["weights"]
        recipe = {
            "model": model,
            "pretrained": args["pretrained"],
            "weights": None if weights is None else str(weights),
            "seed": args["seed"],
            "channels_last": args["channels_last"],
            "allow_pickle": args["allow_pickle"],
        }
        eng.attach(job, recipe)
        return run(job, engine=eng, **run_args)
    finally:
        eng.close()
