"""Extraction speed and memory, measured side by side in one run.

Prints, for the same real photos (batch 32, CPU):

* the bare torch forward pass of the *full* model on pre-made tensors, in both memory layouts
  (NCHW and channels-last); the faster one is the **ceiling**;
* visreps' **marginal** throughput through the CLI (``visreps extract MODEL PHOTOS --random
  --layers LAYER --pool avg --out ... -q``, a fresh subprocess each time): images/s between two
  dataset sizes, ``(n2 - n1) / (t(n2) - t(n1))``, so that process start, model loading and the
  dry runs cancel out; and its ratio to the ceiling. resnet50 ``avgpool`` between 128 and 256
  photos (target ≥ 0.95×), alexnet ``features.2`` between 256 and 1,024 (early exit: above 1×; a longer span,
  since it runs ~20× faster and process start varies by a second);
* the peak RSS of extracting alexnet ``features.0`` flattened (774 kB per image) at two dataset
  sizes, each in a fresh process (target: growth < 300 MB from 256 to 2,048 images).

Every figure is the median of ``--reps`` repetitions (default 3), interleaved (bare NCHW, bare
channels-last, CLI n1, CLI n2, then again), so that a busy moment of the machine hits all alike.
Printed with each model: ``load``, the 1-minute load average before its round (measure on a quiet
machine: < 0.8 on 2 cores), and ``other``, the cores that *other* processes used on average during
the round (all busy CPU time of /proc/stat minus this process's and its children's; the round's own
load average is ~2 on 2 cores and says nothing). Other processes take cores from the forward pass:
re-measure when ``other`` exceeds ~0.05.

Usage: ``python benchmarks/bench_extract.py [--reps 3] [--big 2048] [--workdir DIR] [--skip-rss]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _photos import make_photos

# model, layer, the two dataset sizes of the marginal throughput
CASES = [("torchvision:resnet50", "avgpool", 128, 256), ("torchvision:alexnet", "features.2", 256, 1024)]


def load1() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return float("nan")


class OtherCPU:
    """Cores used by *other* processes while a block runs: all busy CPU time (/proc/stat) minus this
    process's and its children's, per second of wall time (Linux; ``nan`` elsewhere)."""

    @staticmethod
    def _busy() -> float:
        try:
            f = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        except OSError:
            return float("nan")
        v = [int(x) for x in f]
        return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait

    @staticmethod
    def _own() -> float:
        import resource

        a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime

    def __enter__(self):
        self.t, self.busy, self.own = time.perf_counter(), self._busy(), self._own()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.t
        self.cores = max(0.0, (self._busy() - self.busy) - (self._own() - self.own)) / wall


def premade(lm, folder: Path, n: int):
    """The first ``n`` photos, decoded and preprocessed beforehand, as one (n, 3, H, W) tensor."""
    import torch

    from visreps.data import find_images, load_image

    items = find_images(folder)[:n]
    return torch.stack([lm.transform(load_image(i.absolute(folder))) for i in items])


def bare_forward(lm, xs, batch: int, channels_last: bool) -> float:
    """Images/s of ``module(x)`` on pre-made tensors, in one memory layout (after one warm-up batch)."""
    import torch

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    lm.module.to(memory_format=fmt)
    batches = [xs[s : s + batch].contiguous(memory_format=fmt) for s in range(0, len(xs), batch)]
    try:
        with torch.inference_mode():
            lm.module(batches[0])  # warm-up (oneDNN primitives of this layout)
            t = time.perf_counter()
            for x in batches:
                lm.module(x)
            return len(xs) / (time.perf_counter() - t)
    finally:
        lm.module.to(memory_format=torch.contiguous_format)


def visreps_cmd() -> list[str]:
    """The ``visreps`` console script of this interpreter's environment (next to ``sys.executable``)."""
    exe = Path(sys.executable).parent / ("visreps.exe" if os.name == "nt" else "visreps")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "import sys; from visreps.cli import main; sys.exit(main())"]


def cli_seconds(model_id: str, layer: str, folder: Path, out: Path, batch: int, extra: list[str]) -> float:
    """Wall time of one ``visreps extract`` subprocess (process start and model loading included)."""
    cmd = [
        *visreps_cmd(),
        "extract",
        model_id,
        str(folder),
        "--random",
        "--layers",
        layer,
        "--pool",
        "avg",
        "--batch-size",
        str(batch),
        "--out",
        str(out),
        "--overwrite",
        "-q",
        *extra,
    ]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def speed(model_id: str, layer: str, n1: int, n2: int, work: Path, batch: int, reps: int, extra: list[str]) -> dict:
    import visreps

    f1 = make_photos(work / f"photos_{n1}", n1)  # the same seed: the first n1 photos of f2
    f2 = make_photos(work / f"photos_{n2}", n2)
    lm = visreps.load_model(model_id, pretrained=False)
    xs = premade(lm, f2, min(n2, 128))
    nchw, cl, t1, t2 = [], [], [], []
    load_before = load1()
    with OtherCPU() as other:
        for _ in range(reps):
            nchw.append(bare_forward(lm, xs, batch, channels_last=False))
            cl.append(bare_forward(lm, xs, batch, channels_last=True))
            t1.append(cli_seconds(model_id, layer, f1, work / "out_cli", batch, extra))
            t2.append(cli_seconds(model_id, layer, f2, work / "out_cli", batch, extra))
    marg = [(n2 - n1) / (b - a) if b > a else float("nan") for a, b in zip(t1, t2)]
    r = {
        "model": model_id,
        "layer": layer,
        "n1": n1,
        "n2": n2,
        "nchw": statistics.median(nchw),
        "channels_last": statistics.median(cl),
        "visreps": statistics.median([m for m in marg if m == m] or [float("nan")]),
        "runs": {"nchw": nchw, "channels_last": cl, "t1": t1, "t2": t2, "marginal": marg},
        "load": load_before,
        "other_cores": other.cores,
    }
    r["ceiling"] = max(r["nchw"], r["channels_last"])
    r["ratio"] = r["visreps"] / r["ceiling"]
    return r


RSS_CHILD = r"""
import json, resource, sys, time
import visreps
folder, out = sys.argv[1], sys.argv[2]
lm = visreps.load_model("torchvision:alexnet", pretrained=False)
t = time.perf_counter()
res = visreps.extract(lm, folder, layers=["features.0"], batch_size=32, progress=False, out=out, overwrite=True)
print(json.dumps({"n": len(res.paths), "shape": list(res["features.0"].shape), "seconds": time.perf_counter() - t,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def peak_rss(folder: Path, out: Path) -> dict:
    r = subprocess.run(
        [sys.executable, "-c", RSS_CHILD, str(folder), str(out)], capture_output=True, text=True, check=True
    )
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3, help="repetitions; every figure is their median")
    ap.add_argument("--images", type=int, default=256, help="photos of the smaller peak-RSS run")
    ap.add_argument("--big", type=int, default=2048, help="photos of the larger peak-RSS run")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--models", default="resnet50,alexnet", help="comma-separated subset of resnet50,alexnet")
    ap.add_argument("--cli-args", default="", help="extra arguments of every `visreps extract`, e.g. '--workers 1'")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "visreps-bench")
    ap.add_argument("--json", action="store_true", help="also print every run's raw figures as JSON")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-rss", action="store_true")
    args = ap.parse_args()
    import torch

    work = args.workdir
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores; "
        f"500×375 JPEG photos; batch {args.batch}; median of {args.reps}"
    )
    if not args.skip_speed:
        wanted = args.models.split(",")
        print("images/s. bare: the full model on pre-made tensors (ceiling = the faster layout);")
        print("visreps: marginal throughput of `visreps extract` between n1 and n2 photos (CLI, subprocess)")
        print(
            f"{'model':<22}{'layer':<12}{'n1→n2':>9}{'bare NCHW':>11}{'bare CL':>9}{'ceiling':>9}"
            f"{'visreps':>9}{'ratio':>8}   load  other"
        )
        for model_id, layer, n1, n2 in CASES:
            if model_id.split(":")[1] not in wanted:
                continue
            r = speed(model_id, layer, n1, n2, work, args.batch, args.reps, args.cli_args.split())
            print(
                f"{model_id:<22}{layer:<12}{f'{n1}→{n2}':>9}{r['nchw']:>11.1f}{r['channels_last']:>9.1f}"
                f"{r['ceiling']:>9.1f}{r['visreps']:>9.1f}{r['ratio']:>7.2f}×   {r['load']:.2f}{r['other_cores']:>7.2f}"
            )
            if args.json:
                print("  " + json.dumps(r["runs"]))
    if not args.skip_rss:
        small = make_photos(work / f"photos_{args.images}", args.images)
        big = make_photos(work / f"photos_{args.big}", args.big, seed=1)
        a = peak_rss(small, work / "rss_small")
        b = peak_rss(big, work / "rss_big")
        print(f"alexnet features.0 flattened ({a['shape'][1]} floats/image), peak RSS of a fresh process:")
        for r in (a, b):
            mb = r["n"] * r["shape"][1] * 4 / 2**20
            print(f"  {r['n']:>6} images: {r['peak_rss_mb']:8.0f} MB  ({r['seconds']:.1f} s, output {mb:.0f} MB)")
        print(f"  growth: {b['peak_rss_mb'] - a['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
