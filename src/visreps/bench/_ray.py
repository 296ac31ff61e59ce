"""``visreps bench --engine ray``: each model's extraction is a Ray task that writes its own cache folder.

The driver checks the whole spec first (as with the local engine), then sends one task per distinct missing
cache request (two models with the same request share one task), each asking Ray for one GPU when the cluster
has GPUs (else an equal share of the CPUs, which its torch uses as threads). A task runs
:func:`visreps.workcache.cached_extract`: the cache folder is written under ``<name>.partial`` and renamed when
complete, exactly as in this process, so an interrupted bench resumes from the same folders with either engine.
When every task has ended, the driver reads the cache as usual (each folder verified) and only aggregates.

The image folder and ``work_dir`` must be the same paths on every machine of the cluster (a shared file system);
on one machine that is always so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import VisrepsError
from ._spec import ModelSpec, Spec, model_options


def _extract_task(model_id: str, images: str, layers: Any, work: str, options: dict, image_list: list, threads: int):
    """What runs in a Ray worker: one model's cache entry, found or extracted (its folder, key and the seconds)."""
    import torch

    from ..workcache import cached_extract

    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    entry = cached_extract(
        model_id, images, layers=layers, work_dir=work, options={**options, "progress": False}, image_list=image_list
    )
    return str(entry.folder), entry.key, round(time.perf_counter() - t0, 1)


def _resources(ray, device: str, n_tasks: int) -> tuple[str, dict[str, float], int]:
    """The device of the tasks, what each asks Ray for, and its torch threads (0: leave torch's default)."""
    res = ray.cluster_resources()
    gpus, cpus = float(res.get("GPU", 0)), float(res.get("CPU", 1))
    kind = device.split(":", 1)[0]
    if kind == "cuda" and gpus <= 0:
        raise VisrepsError(f"device = {device!r} asked for, but the Ray cluster has no GPUs; use device = 'auto'")
    if kind in ("auto", "cuda") and gpus > 0:
        return "cuda", {"num_gpus": 1.0, "num_cpus": 1.0}, 0
    share = max(1, int(cpus // max(1, n_tasks)))
    return ("cpu" if kind == "auto" else device), {"num_cpus": float(share)}, share


def extract_on_ray(
    s: Spec, work: Path, image_list: list, requests: Sequence[dict | None], missing: Sequence[bool], say: Callable
) -> set[str]:
    """Extract every missing model of ``s`` as a Ray task (see the module docs); returns the keys extracted.

    Raises:
        VisrepsError: the first model whose task failed (named by its label), after every task has ended, so the
            extractions that succeeded are in the cache for the next run.
    """
    from ..distributed import _clean_error, connect, import_ray
    from ..workcache import request_key

    todo: dict[str, tuple[int, ModelSpec]] = {}  # one task per distinct request, in spec order
    for i, (m, req, miss) in enumerate(zip(s.models, requests, missing)):
        if miss and req is not None:
            todo.setdefault(request_key(req), (i, m))
    if not todo:
        return set()
    ray = import_ray()
    started = connect(ray)
    try:
        device, asks, threads = _resources(ray, s.device, len(todo))
        task = ray.remote(_extract_task).options(**asks, max_retries=0)
        refs = {}
        for key, (i, m) in todo.items():
            opts = model_options(s, m, device)
            refs[task.remote(m.id, str(s.images), m.layers, str(work), opts, image_list, threads)] = (key, i, m)
            say(f"{m.label}: extracting as a Ray task ({', '.join(f'{k}={v:g}' for k, v in asks.items())})")
        return _wait(ray, refs, say, _clean_error)
    finally:
        if started:
            ray.shutdown()


def _wait(ray, refs: dict, say: Callable, clean: Callable) -> set[str]:
    """Wait for every task; say each as it ends; raise the first failure once all have ended."""
    done_keys, failures = set(), []
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        for ref in ready:
            key, i, m = refs[ref]
            try:
                _, _, seconds = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - a task's error comes back wrapped by Ray
                failures.append((i, m, clean(e)))
                say(f"{m.label}: failed")
                continue
            done_keys.add(key)
            say(f"{m.label}: extracted ({seconds:g} s)")
    if failures:
        _, m, err = min(failures, key=lambda f: f[0])  # the first in the spec, whichever task ended first
        more = f" ({len(failures) - 1} other model(s) failed too)" if len(failures) > 1 else ""
        raise VisrepsError(f"{m.where} ({m.label}): {err}{more}") from None
    return done_keys
