"""Single-process engine vs Ray engine, side by side on the same real photos.

Prints images/s of ``visreps.extract`` and ``visreps.distributed.extract_ray`` (2 actors by
default) for the same photos, model, layer and batch size, written to .npy folders, and checks
that both folders hold the same rows and equal arrays. Two figures per engine:

* ``loop``: images / seconds of the batch loop as recorded in metadata.json (decode → forward →
  write; for Ray this includes starting the actors and the decoding tasks);
* ``call``: images / wall time of the whole call (model load, layer planning, the loop, finishing).

A local Ray instance is started once before the runs (its start-up time is printed apart). Runs
alternate (local, ray, local, ray) and the best of each is shown; the machine's load average is
printed before and after, since other processes change the figures.

Usage: ``python benchmarks/bench_ray.py [--images 512] [--model torchvision:resnet50] [--layer avgpool]
[--actors 2] [--batch 32] [--ray-cpus N] [--repeats 2] [--workdir DIR]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _photos import make_photos


def timed(fn, *args, **kw):
    t = time.perf_counter()
    res = fn(*args, **kw)
    wall = time.perf_counter() - t
    n = len(res.paths)
    return res, {"loop": n / res.metadata["seconds"], "call": n / wall, "wall": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--model", default="torchvision:resnet50")
    ap.add_argument("--layer", default="avgpool")
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--ray-cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "visreps-bench")
    args = ap.parse_args()

    import numpy as np
    import torch

    import visreps
    from visreps.distributed import extract_ray, import_ray

    ray = import_ray()
    folder = make_photos(args.workdir / f"photos_{args.images}", args.images)
    cpus = args.ray_cpus or os.cpu_count()
    load0 = os.getloadavg()
    t = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, logging_level="warning", log_to_driver=False)
    ray_start = time.perf_counter() - t
    print(
        f"{args.images} photos 500×375 JPEG; {args.model} layer {args.layer!r} (random weights: same compute); "
        f"batch {args.batch}; CPU only"
    )
    print(
        f"torch {torch.__version__} ({torch.get_num_threads()} threads in this process), ray {ray.__version__}; "
        f"{os.cpu_count()} cores; local Ray instance with {cpus} CPUs started in {ray_start:.1f} s (not counted below)"
    )
    print(f"load average before: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}")
    kw = dict(layers=[args.layer], pretrained=False, batch_size=args.batch, progress=False, overwrite=True)
    best: dict[str, dict] = {}
    results = {}
    try:
        for r in range(args.repeats):
            for engine in ("local", "ray"):
                out = args.workdir / f"out_{engine}"
                if engine == "local":
                    res, fig = timed(visreps.extract, args.model, folder, out=out, **kw)
                else:
                    res, fig = timed(extract_ray, args.model, folder, out=out, num_actors=args.actors, **kw)
                results[engine] = res
                print(
                    f"  run {r + 1} {engine:<5}: loop {fig['loop']:7.1f} img/s, "
                    f"call {fig['call']:7.1f} img/s ({fig['wall']:.1f} s)"
                )
                if engine not in best or fig["loop"] > best[engine]["loop"]:
                    best[engine] = fig
        meta = results["ray"].metadata["options"]["ray"]
        a, b = results["local"], results["ray"]
        same = a.paths == b.paths and np.allclose(
            np.asarray(a[args.layer]), np.asarray(b[args.layer]), rtol=1e-5, atol=1e-6
        )
    finally:
        ray.shutdown()
    load1 = os.getloadavg()
    print(f"load average after:  {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    print(f"{'engine':<34}{'loop img/s':>12}{'call img/s':>12}")
    print(f"{'single process (visreps.extract)':<34}{best['local']['loop']:>12.1f}{best['local']['call']:>12.1f}")
    label = f"ray, {args.actors} actors × {meta['cpus_per_actor']:g} CPU"
    print(f"{label:<34}{best['ray']['loop']:>12.1f}{best['ray']['call']:>12.1f}")
    print(
        f"ray / single process: {best['ray']['loop'] / best['local']['loop']:.2f}× (loop), "
        f"{best['ray']['call'] / best['local']['call']:.2f}× (call); outputs equal: {same}"
    )


if __name__ == "__main__":
    main()
