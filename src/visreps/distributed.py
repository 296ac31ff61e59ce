"""Extraction as a Ray Data pipeline: decoding in parallel tasks, the model in a pool of actors.

The driver (the process that calls :func:`extract_ray`) does everything that decides the result
exactly as a single-process run does: :func:`visreps.extract` checks the options once
(:class:`visreps.job.ExtractionOptions`), :func:`visreps.extraction.prepare` loads the model, finds
and orders the images, plans the layers and builds the metadata, and
:func:`visreps.extraction.run` writes the output folder (resume, progress, interruption, the
manifest and the finishing touches are the same code). Only the batch source differs:

1. ``ray.data.from_pandas`` makes blocks of image positions and relative paths (whole batches);
2. ``map_batches(decode_batch)`` tasks read and preprocess the images with the model's transform
   (:class:`visreps.data.ImageDataset`, so unreadable images give the same messages);
3. ``map_batches(Extractor, compute=ActorPoolStrategy(size=num_actors))``: each actor loads the
   model once (the driver's loaded model is sent through Ray's object store, so the workers need
   no weights files and compute with the very same parameters) and runs
   :func:`visreps.capture.make_capture` on its batches, on a GPU of its own when the cluster
   has GPUs;
4. the driver takes the results in image order (``preserve_order``, plus a reorder buffer keyed
   by image position) and hands them to ``run``, which writes row after row: skipped images leave
   no gap, and row ``i`` of every array is row ``i`` of the manifest, as in a single-process run.

What runs inside Ray (the decoding function and the actor) is in :mod:`visreps.ray_workers`. Ray is
imported only in these two modules, and only when this engine is asked for.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import MissingExtraError, VisrepsError
from .job import Batch, ExtractionOptions, Job
from .ray_workers import Extractor, raise_failure
from .ray_workers import decode_batch as _decode_batch  # its old name here

if TYPE_CHECKING:
    from .data import ImageItem

INSTALL_HINT = "pip install visreps[ray]"


def import_ray():
    """Import Ray (and Ray Data), or say which extra to install."""
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise MissingExtraError(
            f"the Ray engine (--engine ray, visreps.extract_ray) needs Ray Data, which is not installed "
            f"({e}); install it with `{INSTALL_HINT}`, or use the default single-process engine"
        ) from None
    return ray


def _clean_error(e: BaseException) -> BaseException:
    """The visreps error inside a Ray exception (re-raised as itself), or a one-line summary."""
    seen = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        # Ray wraps a task's error in a subclass of it (whose message is a traceback) that keeps the
        # original as ``.cause``: take the plain exception
        if isinstance(cur, VisrepsError) and not type(cur).__module__.startswith("ray."):
            return cur
        cur = getattr(cur, "cause", None) or cur.__cause__
    last = str(e).strip().splitlines()
    return VisrepsError(
        f"the Ray pipeline failed: {type(e).__name__}: {last[-1] if last else ''} "
        "(Ray's worker logs are under /tmp/ray/session_latest/logs)"
    )


@contextlib.contextmanager
def _quiet_data_context(ray):
    """Ray Data settings for this run (results in order, no Ray progress bars), restored afterwards."""
    ctx = ray.data.DataContext.get_current()
    saved = (
        ctx.execution_options.preserve_order,
        ctx.enable_progress_bars,
        getattr(ctx, "enable_operator_progress_bars", None),
        getattr(ctx, "enable_auto_log_stats", None),
    )
    loggers = [logging.getLogger(n) for n in ("ray.data", "ray.data._internal.progress")]
    levels = [lg.level for lg in loggers]
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False  # visreps shows its own bar (images/s)
    if saved[2] is not None:
        ctx.enable_operator_progress_bars = False
    if saved[3] is not None:
        ctx.enable_auto_log_stats = False
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    # a run of fewer blocks than actors is fine (small image sets); Ray Data warns about it
    warnings.filterwarnings("ignore", message=r"The minimum number of concurrent actors", category=UserWarning)
    try:
        yield ctx
    finally:
        ctx.execution_options.preserve_order = saved[0]
        ctx.enable_progress_bars = saved[1]
        if saved[2] is not None:
            ctx.enable_operator_progress_bars = saved[2]
        if saved[3] is not None:
            ctx.enable_auto_log_stats = saved[3]
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def connect(ray, address: str | None = None, *, num_cpus: int | None = None) -> bool:
    """Use the Ray instance already running in this process, join the cluster at ``address``, or
    start a local instance; returns whether this call started Ray (then shut it down after use)."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        _probe(address)
        try:
            ray.init(address=address, logging_level=logging.WARNING)
        except Exception as e:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError
            raise VisrepsError(
                f"cannot connect to the Ray cluster at {address!r} ({type(e).__name__}: {e}); start it with "
                "`ray start --head` on the head machine and give the address it prints (host:6379), "
                "or 'auto' on a machine of the cluster. If the cluster uses token authentication (`ray start` "
                "does by default in recent Ray), set RAY_AUTH_MODE=token here and give this machine the head's "
                "token (~/.ray/auth_token, or RAY_AUTH_TOKEN)"
            ) from None
        return True
    ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    return True


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail fast when nothing listens at a ``host:port`` address (Ray itself retries for minutes)."""
    import socket

    target = address.split("://", 1)[-1]
    if target in ("auto", "local") or not target:
        return
    host, _, port = target.rpartition(":")
    if not host:
        host, port = target, "6379"
    try:
        port_n = int(port)
    except ValueError:
        raise VisrepsError(
            f"Ray address {address!r} is not valid; write host:port (e.g. 10.0.0.5:6379) or 'auto'"
        ) from None
    try:
        socket.create_connection((host.strip("[]"), port_n), timeout=timeout).close()
    except OSError as e:
        raise VisrepsError(
            f"cannot reach the Ray cluster at {address!r} ({e}); start it with `ray start --head` on the head machine "
            "and give the address it prints (host:6379), or 'auto' on a machine of the cluster"
        ) from None


def _plan_resources(ray, device: str | None, num_actors: int, cpus_per_actor, gpus_per_actor) -> dict:
    """Where the actors run (device), what each asks Ray for, and how many torch threads each uses."""
    res = ray.cluster_resources()
    total_cpus = float(res.get("CPU", 0))
    total_gpus = float(res.get("GPU", 0))
    node_cpus = max((float(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")), default=total_cpus)
    dev = str(device or "auto")
    kind = dev.split(":", 1)[0]
    if kind not in ("auto", "cpu", "cuda", "mps"):
        raise VisrepsError(f"device {device!r} is not valid; use auto, cpu, cuda or mps (Ray gives each actor its GPU)")
    if kind == "auto":
        kind = "cuda" if total_gpus > 0 else "cpu"
    if kind == "cuda" and total_gpus <= 0:
        raise VisrepsError(f"device {device!r} asked for, but the Ray cluster has no GPUs; use --device cpu or auto")
    if gpus_per_actor is None:
        gpus_per_actor = min(1.0, total_gpus / num_actors) if kind == "cuda" else 0.0
    if gpus_per_actor and kind != "cuda":
        raise VisrepsError(f"gpus_per_actor={gpus_per_actor} needs device 'cuda' or 'auto', not {device!r}")
    if gpus_per_actor < 0 or gpus_per_actor > max(1.0, total_gpus):
        raise VisrepsError(f"gpus_per_actor={gpus_per_actor} is not possible on a cluster with {total_gpus:g} GPUs")
    if cpus_per_actor is None:
        # leave about a quarter of the CPUs to the decoding tasks; an actor must fit on one machine
        cpus_per_actor = 1.0 if kind == "cuda" else max(0.5, round(0.75 * min(node_cpus, total_cpus / num_actors), 2))
    if not isinstance(cpus_per_actor, (int, float)) or cpus_per_actor <= 0:
        raise VisrepsError(f"cpus_per_actor must be a positive number, got {cpus_per_actor!r}")
    if node_cpus and cpus_per_actor > node_cpus:
        raise VisrepsError(
            f"cpus_per_actor={cpus_per_actor} does not fit on any machine of the Ray cluster (the largest has "
            f"{node_cpus:g} CPUs); ask for fewer"
        )
    decode_cpus = 0.5 if cpus_per_actor != 0.5 else 0.45  # different resources keep Ray from fusing the two stages
    return {
        "device": "cuda" if kind == "cuda" else kind,
        "num_cpus": float(cpus_per_actor),
        "num_gpus": float(gpus_per_actor),
        "decode_cpus": decode_cpus,
        "threads": max(1, int(round(cpus_per_actor))) if kind == "cpu" else 0,
        "cluster": {"CPU": total_cpus, "GPU": total_gpus},
    }


def _model_for_actors(ray, job, model, recipe: dict) -> dict:
    """What the actors need to get the model: an object-store reference to the driver's loaded
    model (torch models: same parameters everywhere, no weights files on the workers), else a
    recipe to load it by id."""
    import pickle

    lm = job.lm
    moved = None
    if lm.backend == "torch" and lm.device.type != "cpu":  # send CPU tensors; each actor moves them to its device
        moved = lm.device
        lm.module.to("cpu")
    try:
        return {"model_ref": ray.put(lm)}
    except (pickle.PicklingError, TypeError, AttributeError, ValueError) as e:
        if isinstance(model, str):
            return {"recipe": recipe}
        raise VisrepsError(
            f"the model {lm.model_id!r} cannot be sent to the Ray workers ({type(e).__name__}: {e}); define its class "
            "in an importable module, or pass a model id so that each worker loads it"
        ) from None
    finally:
        if moved is not None:
            lm.module.to(moved)


def _blocks(items: Sequence, batch_size: int, cpus: float) -> list:
    """Input blocks of whole batches: enough blocks to keep the decoding tasks busy, at most 8 batches each."""
    import pandas as pd

    n = len(items)
    batches = math.ceil(n / batch_size)
    per_block = max(1, min(8, batches // max(1, int(2 * cpus))))
    rows = per_block * batch_size
    return [
        pd.DataFrame(
            {"i": np.arange(s, min(n, s + rows), dtype=np.int64), "path": [it.path for it in items[s : s + rows]]}
        )
        for s in range(0, n, rows)
    ]


def ray_batches(ray, plan: dict, actor_spec: dict):
    """The Ray engine's batch source for :func:`visreps.extraction.run` (same contract as
    :func:`visreps.extraction.local_batches`)."""

    def source(job, items):
        keys = job.keys
        cols = {k: f"layer{j}" for j, k in enumerate(keys)}
        spec = {**actor_spec, "columns": cols}
        input_shape = tuple(job.lm.dummy_input(1).shape[1:])
        with _quiet_data_context(ray):
            ds = ray.data.from_pandas(_blocks(items, job.batch_size, plan["cluster"]["CPU"] or 1))
            ds = ds.map_batches(
                _decode_batch,
                batch_size=None,
                batch_format="numpy",
                num_cpus=plan["decode_cpus"],
                fn_kwargs={
                    "root": str(job.root),
                    "transform": job.lm.transform,
                    "input_shape": input_shape,
                    "source": job.source,
                },
            )
            ds = ds.map_batches(
                Extractor,
                batch_size=job.batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=plan["num_actors"]),
                num_cpus=plan["num_cpus"],
                num_gpus=plan["num_gpus"] or None,
                fn_constructor_kwargs={"spec": spec},
            )
            expected = 0
            pending: dict[int, Mapping[str, np.ndarray]] = {}
            results = iter(ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2))
            try:
                for out in results:
                    fail = [f for f in out["fail"] if f]
                    if fail:
                        raise_failure(fail[0])
                    for start, part in _contiguous_parts(out):
                        pending[start] = part
                    while expected in pending:
                        part = pending.pop(expected)
                        expected += len(part["i"])
                        yield _to_batch(part, cols, job.top_k, reduced=job.reducer is not None)
            except (GeneratorExit, VisrepsError):
                raise
            except Exception as e:  # noqa: BLE001 - Ray's wrappers become the visreps error inside, or one line
                raise _clean_error(e) from None
            finally:
                close = getattr(results, "close", None)
                if close is not None:
                    close()  # stops the pipeline when the run ends early (bad image, Ctrl-C)
            if expected != len(items) or pending:
                raise VisrepsError(f"the Ray pipeline returned {expected} of {len(items)} images; run again")

    return source


def _contiguous_parts(out: Mapping[str, np.ndarray]):
    """Split an output batch into runs of consecutive image positions (sorted first)."""
    i = np.asarray(out["i"])
    if len(i) == 0:
        return []
    if np.any(np.diff(i) < 0):
        order = np.argsort(i, kind="stable")
        out = {k: np.asarray(v)[order] for k, v in out.items()}
        i = out["i"]
    cuts = np.flatnonzero(np.diff(i) != 1) + 1
    if len(cuts) == 0:
        return [(int(i[0]), out)]
    parts = []
    for seg in np.split(np.arange(len(i)), cuts):
        parts.append((int(i[seg[0]]), {k: np.asarray(v)[seg] for k, v in out.items()}))
    return parts


def _to_batch(part: Mapping[str, np.ndarray], cols: Mapping[str, str], top_k, *, reduced: bool = False):
    i = np.asarray(part["i"])
    err = np.asarray(part["err"])
    good = np.array([not e for e in err], dtype=bool)
    idx = [int(j) for j in i[good]]
    bad = [(int(j), str(e)) for j, e in zip(i[~good], err[~good])]
    if not idx:
        return Batch(idx, bad)
    outputs = {k: np.asarray(part[c])[good] for k, c in cols.items()}
    topk = (np.asarray(part["topk_index"])[good], np.asarray(part["topk_prob"])[good]) if top_k is not None else None
    return Batch(idx, bad, outputs, topk, None, np.asarray(part["hash"], np.uint8)[good], reduced=reduced)


@dataclass
class RayEngine:
    """The Ray Data engine for :func:`visreps.extract` (``engine=RayEngine(...)``): the same output folder,
    computed by a pool of actors.

    Images are read and preprocessed in parallel Ray tasks; ``num_actors`` actors each hold the
    model (loaded once per actor, on a GPU of its own when the cluster has GPUs) and run the
    batches; the results are written in image order by the same loop as a local run (same rows,
    same manifest, same metadata plus ``options.engine = "ray"``). Resume, shards, skipping
    unreadable images and top-k predictions work as there.

    Ray: if this process already called ``ray.init``, that instance is used (and left running);
    else ``address`` (or the ``RAY_ADDRESS`` environment variable) names a running cluster to join
    (``"host:6379"``, or ``"auto"`` on a machine of the cluster); else a local instance is started
    (``num_cpus`` CPUs, default all) and shut down at the end. On a cluster, every machine needs
    visreps with the same versions of its dependencies, and the images under the same path.

    Args:
        num_actors: model replicas (actors); with GPUs, at most one per GPU is useful.
        address: address of a running Ray cluster (see above).
        cpus_per_actor: CPUs each actor reserves (default: 1 with a GPU, else about three quarters
            of a machine's share, leaving the rest to decoding); CPU actors use as many torch threads.
        gpus_per_actor: GPUs each actor reserves (default: 1, or a fraction when there are fewer
            GPUs than actors).
        num_cpus: CPUs of a local Ray instance started here (default: all).
    """

    num_actors: int = 2
    address: str | None = None
    cpus_per_actor: float | None = None
    gpus_per_actor: float | None = None
    num_cpus: int | None = None
    name: str = field(default="ray", init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.num_actors, int) or isinstance(self.num_actors, bool) or self.num_actors < 1:
            raise VisrepsError(f"num_actors must be a positive integer, got {self.num_actors!r}")
        self._ray: Any = None
        self._started = False
        self._plan: dict = {}
        self._spec: dict = {}

    def start(self, options: ExtractionOptions) -> ExtractionOptions:
        """Join or start Ray and plan the actors; the driver plans the layers on the CPU, without decoders."""
        device = options.device
        if options.batch_size == "auto" and str(device).startswith(("cuda", "mps")):
            raise VisrepsError(
                "batch_size='auto' searches GPU memory in one process; with the Ray engine give a number "
                "(each actor splits a batch that runs out of device memory in halves)"
            )
        if options.num_workers is not None:
            raise VisrepsError("num_workers is for the local engine; with the Ray engine, Ray tasks decode the images")
        self._ray = import_ray()
        self._started = connect(self._ray, self.address, num_cpus=self.num_cpus)
        self._plan = _plan_resources(self._ray, device, self.num_actors, self.cpus_per_actor, self.gpus_per_actor)
        self._plan["num_actors"] = self.num_actors
        return options.adapted(device="cpu", num_workers=0)

    def attach(self, job: Job, options: ExtractionOptions, model: Any) -> None:
        """Record the engine in the job's metadata and prepare what every actor needs to build the model."""
        from . import cache
        from .capture import set_memory_format

        plan = self._plan
        if job.channels_last and options.channels_last is None and plan["device"] not in ("cpu", "cuda"):
            set_memory_format(job.lm, False)  # automatic channels-last is for oneDNN/cuDNN only
            job.channels_last = False
        meta = job.metadata
        meta["options"].update(
            device=plan["device"],
            num_workers=None,
            channels_last=job.channels_last,
            engine="ray",
            ray={
                "actors": self.num_actors,
                "cpus_per_actor": plan["num_cpus"],
                "gpus_per_actor": plan["num_gpus"],
                "address": self.address
                or os.environ.get("RAY_ADDRESS")
                or ("existing" if not self._started else "local"),
                "cluster_cpus": plan["cluster"]["CPU"],
                "cluster_gpus": plan["cluster"]["GPU"],
            },
        )
        meta.setdefault("options_identity", {}).update(device_type=plan["device"], channels_last=job.channels_last)
        recipe = {
            "model": model,
            "pretrained": options.pretrained,
            "weights": None if options.weights is None else str(options.weights),
            "seed": options.seed,
            "allow_pickle": options.allow_pickle,
            "preprocessing": job.lm.preprocessing,
            "cache": dict(cache._override),
        }
        self._spec = {
            **_model_for_actors(self._ray, job, model, recipe),
            "device": plan["device"],
            "threads": plan["threads"],
            "specs": job.specs,
            "shapes": job.shapes,
            "precision": job.precision,
            "channels_last": job.channels_last,
            "top_k": job.top_k,
            "reducer": job.reducer,  # SRP matrices / PCA fits: each actor reduces its batches
        }

    def batches(self, job: Job, items: Sequence[ImageItem]) -> Iterator[Batch]:
        return ray_batches(self._ray, self._plan, self._spec)(job, items)

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False


def extract_ray(
    model,
    images: str | os.PathLike,
    *,
    num_actors: int = 2,
    ray_address: str | None = None,
    cpus_per_actor: float | None = None,
    gpus_per_actor: float | None = None,
    ray_num_cpus: int | None = None,
    **options: Any,
):
    """:func:`visreps.extract` with ``engine=RayEngine(num_actors, ray_address, ...)`` (see :class:`RayEngine`).

    ``options`` are those of :func:`visreps.extract` (``batch_size`` is the batch of each actor's
    forward pass; ``device`` the actors' device: ``auto`` uses GPUs when the cluster has them).

    Raises:
        MissingExtraError: Ray is not installed (``pip install visreps[ray]``).
    """
    from .extraction import extract

    if "engine" in options:
        raise VisrepsError("extract_ray chooses the engine itself; call visreps.extract(..., engine=...) instead")
    engine = RayEngine(num_actors, ray_address, cpus_per_actor, gpus_per_actor, ray_num_cpus)  # in field order
    return extract(model, images, engine=engine, **options)
