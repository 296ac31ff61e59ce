"""The one batch loop of an extraction (:func:`drive`) and the single-process engine (:class:`LocalEngine`).

An engine yields a prepared :class:`~visreps.job.Job`'s batches (:class:`~visreps.job.Batch`) in image
order; :func:`drive` writes them into a sink, a batch and its progress record as one step that Ctrl-C
cannot split. :class:`visreps.distributed.RayEngine` is the other engine; :func:`visreps.extraction.run`
opens the sink, drives the loop and finishes the folder.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .capture import autocast, forward_with_backoff, make_capture, model_classes, top_classes
from .errors import ImageError, VisrepsError
from .job import Batch, BatchSource, Engine, ExtractionOptions, Job

if TYPE_CHECKING:
    from .data import ImageItem
    from .storage import Sink

__all__ = ["LocalEngine", "batch_source", "drive", "local_batches", "resolve_engine"]


@contextlib.contextmanager
def uninterruptible():
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


def local_batches(job: Job, items: Sequence[ImageItem]) -> Iterator[Batch]:
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


class LocalEngine:
    """The single-process engine: a DataLoader decodes the images in ``num_workers`` processes, the model runs here.

    It implements :class:`~visreps.job.Engine`: the options and the job stay as they are;
    :class:`visreps.distributed.RayEngine` is the other engine.
    """

    name = "local"

    def start(self, options: ExtractionOptions) -> ExtractionOptions:
        return options

    def attach(self, job: Job, options: ExtractionOptions, model: Any) -> None:
        return None

    def batches(self, job: Job, items: Sequence[ImageItem]) -> Iterator[Batch]:
        return local_batches(job, items)

    def close(self) -> None:
        return None


def resolve_engine(engine: Any) -> Engine:
    """The engine of :func:`visreps.extract` (``engine=``): ``"local"``/``None`` is a :class:`LocalEngine`; an
    object implementing :class:`~visreps.job.Engine` is used as it is (the options checked it)."""
    return LocalEngine() if engine is None or isinstance(engine, str) else engine


def batch_source(engine: Any) -> Callable[[Job, Sequence[ImageItem]], Iterable[Batch]]:
    """What :func:`visreps.extraction.run` reads batches from: an engine's (or any
    :class:`~visreps.job.BatchSource`'s) ``batches``, a function ``engine(job, items)``, or the local engine's."""
    if engine is None or (isinstance(engine, str) and engine == "local"):
        return LocalEngine().batches
    if isinstance(engine, BatchSource):
        return engine.batches
    if callable(engine):
        return cast("Callable[[Job, Sequence[ImageItem]], Iterable[Batch]]", engine)
    raise VisrepsError(
        f"engine={engine!r} is not valid: give an object with batches(job, items) (visreps.extraction.BatchSource), "
        "a function engine(job, items) yielding batches, or 'local'"
    )


@contextlib.contextmanager
def _closing(it: Iterator[Batch]) -> Iterator[Iterator[Batch]]:
    """Close the engine's generator when the loop ends early (stops its pipeline); plain iterators need nothing."""
    try:
        yield it
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


def _batch_arrays(job: Job, batch: Batch, nrows: int) -> dict[str, np.ndarray]:
    """The arrays one batch writes: its layers (reduced, unless the engine did it), content hashes, top-k."""
    if batch.event is not None:
        batch.event.synchronize()
    arrays = {k: np.asarray(batch.outs[k]) for k in job.keys}
    if job.reducer is not None and not batch.reduced:
        arrays.update(job.reducer.apply({k: arrays[k] for k in job.reducer.appliers}))
    if job.kind == "images":
        arrays["blake2b"] = _digest_rows(batch.digests, nrows)
    if batch.topk is not None:
        arrays["topk_index"], arrays["topk_prob"] = (np.asarray(t) for t in batch.topk)
    return arrays


def drive(
    job: Job, sink: Sink, batches: Iterable[Batch], state: dict[str, Any], *, progress: bool = True
) -> tuple[int, list]:
    """The batch loop: an engine's batches, in order, into the sink. Returns the rows written and the skipped images.

    Each batch's rows and the progress record that counts them are written as one step that
    Ctrl-C cannot split (:func:`uninterruptible`). On CUDA the host waits for a batch's copies
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
        arrays = _batch_arrays(job, batch, nrows)
        with uninterruptible():
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
                    with uninterruptible():
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
