"""Time and peak memory of blockwise RDMs from a memory-mapped .npy file.

Usage::

    python benchmarks/bench_rdm.py                      # 2,000 × 200,000 float32 (1.6 GB) + the small check
    python benchmarks/bench_rdm.py --n 500 --p 20000    # a quick run
    python benchmarks/bench_rdm.py --tmp /big/disk      # where the feature file is generated

Each measurement runs in a fresh subprocess that reports its wall time and peak resident memory
(``VmHWM`` from ``/proc/self/status``, which includes the interpreter and numpy/scipy, printed
separately as the baseline after imports). The feature file is generated in row chunks, so the
generator itself stays small; it is written just before the run and therefore mostly sits in the
page cache (a cold read from disk adds I/O time, not memory: blocks are read with file reads and
never mapped into the process).

The second part compares, on a smaller matrix, the blockwise RDM read from the memory-mapped
file with the one-shot RDM of the whole in-memory array (one block = all features) and with
scipy's ``pdist``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, sys, time
import numpy as np
from visreps.analysis import compute_rdm

def hwm_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
path, method, block, mode, out = sys.argv[1:6]
block = None if block == "None" else int(block)
base = hwm_mb()
X = np.load(path, mmap_mode="r") if mode == "mmap" else np.load(path)
t = time.perf_counter()
D = compute_rdm(X, method, block_size=block)
secs = time.perf_counter() - t
if out != "-":
    np.save(out, D)
print(json.dumps({"seconds": secs, "peak_rss_mb": hwm_mb(), "baseline_mb": base, "n": D.shape[0]}))
"""


def generate(path: Path, n: int, p: int, seed: int = 0, chunk_rows: int = 50) -> float:
    """ReLU-like float32 activations (mean > 0, like real layers), written in row chunks."""
    t = time.perf_counter()
    rng = np.random.default_rng(seed)
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, p))
    for r0 in range(0, n, chunk_rows):
        r1 = min(n, r0 + chunk_rows)
        block = rng.standard_normal((r1 - r0, p), dtype=np.float32)
        np.maximum(block, 0, out=block)
        block += 0.1 * (r0 // chunk_rows % 7)  # a little structure across images
        mm[r0:r1] = block
    mm.flush()
    del mm
    return time.perf_counter() - t


def measure(path: Path, method: str, block: int | None, mode: str = "mmap", out: Path | None = None) -> dict:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), method, str(block), mode, str(out) if out else "-"],
        capture_output=True,
        text=True,
        env=env,
    )
    if res.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="images (rows)")
    ap.add_argument("--p", type=int, default=200_000, help="features (columns)")
    ap.add_argument("--methods", default="correlation,euclidean", help="comma-separated RDM methods for the large case")
    ap.add_argument(
        "--block-size", type=int, default=None, help="features per block (default: compute_rdm's ≈128 MB blocks)"
    )
    ap.add_argument("--small-n", type=int, default=1000)
    ap.add_argument("--small-p", type=int, default=20_000)
    ap.add_argument("--tmp", default=None, help="folder for the generated feature files")
    ap.add_argument("--skip-large", action="store_true")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="visreps-bench-") as tmp:
        tmp = Path(tmp)
        print(f"machine: {os.cpu_count()} cores, numpy {np.__version__}")
        if not args.skip_large:
            big = tmp / "layer.npy"
            gb = args.n * args.p * 4 / 1e9
            print(f"\n== large: {args.n:,} × {args.p:,} float32 ({gb:.2f} GB) memory-mapped .npy ==")
            secs = generate(big, args.n, args.p)
            print(f"generated in {secs:.1f} s")
            block = args.block_size
            shown = min(args.p, block or max(1, (128 * 2**20) // (8 * args.n)))
            print(f"block: {shown:,} features (n × block × 8 B = {args.n * shown * 8 / 2**20:.0f} MB)")
            print(f"{'method':<14}{'time s':>9}{'peak RSS MB':>14}{'baseline MB':>14}{'RSS − baseline':>17}")
            for method in args.methods.split(","):
                r = measure(big, method.strip(), block)
                print(
                    f"{method:<14}{r['seconds']:>9.1f}{r['peak_rss_mb']:>14.0f}{r['baseline_mb']:>14.0f}"
                    f"{r['peak_rss_mb'] - r['baseline_mb']:>17.0f}"
                )
            print(
                f"(the feature file alone is {args.n * args.p * 4 / 2**20:,.0f} MB; "
                f"the float64 result {args.n**2 * 8 / 2**20:.0f} MB)"
            )
            big.unlink()

        n, p = args.small_n, args.small_p
        print(f"\n== blockwise vs one-shot: {n:,} × {p:,} float32 ==")
        small = tmp / "small.npy"
        generate(small, n, p, seed=1)
        X = np.load(small).astype(np.float64)
        from scipy.spatial.distance import pdist, squareform

        print(
            f"{'method':<14}{'blockwise s':>12}{'MB':>7}{'one-shot s':>12}{'MB':>7}{'pdist s':>9}"
            f"{'|block − one|':>15}{'|block − pdist|':>17}"
        )
        for method in ("correlation", "cosine", "euclidean", "sqeuclidean"):
            ob, oo = tmp / "b.npy", tmp / "o.npy"
            rb = measure(small, method, 1000, "mmap", ob)  # 1,000-feature blocks from the memmap
            ro = measure(small, method, p, "load", oo)  # the whole in-memory array as one block
            t = time.perf_counter()
            ref = squareform(pdist(X, method))
            tp = time.perf_counter() - t
            blocked, whole = np.load(ob), np.load(oo)
            print(
                f"{method:<14}{rb['seconds']:>12.2f}{rb['peak_rss_mb']:>7.0f}{ro['seconds']:>12.2f}{ro['peak_rss_mb']:>7.0f}"
                f"{tp:>9.2f}{np.abs(blocked - whole).max():>15.2e}{np.abs(blocked - ref).max():>17.2e}"
            )


if __name__ == "__main__":
    main()
