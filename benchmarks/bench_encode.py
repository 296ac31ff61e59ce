"""Cross-validated ridge encoding: visreps vs himalaya ``KernelRidgeCV`` vs scikit-learn ``RidgeCV``, one run.

Usage::

    python benchmarks/bench_encode.py           # 2,000 images × 100,000 features (float32: 800 MB) × 5,000 targets
    python benchmarks/bench_encode.py --small   # 300 × 5,000 × 200: a quick check
    python benchmarks/bench_encode.py --n 1000 --p 50000 --t 2000 --tmp /big/disk
    python benchmarks/bench_encode.py --only visreps,himalaya

The data: a float32 ``.npy`` feature matrix ``X = F L + E`` (``F`` images × 40 latent factors,
``L`` 40 × features, unit Gaussian noise ``E``; written in row chunks, so the generator stays
small) and float64 targets ``Y = F B + 2 E'`` (``B`` 40 × targets). The same 5 outer folds
(:func:`visreps.analysis.make_folds`, seed 0) and the same 10 alphas (``logspace(-1, 8, 10)``) go to
all three:

* **visreps**: ``encode(np.load(path, mmap_mode="r"), Y, alphas=..., folds=fold_of)``: the Gram
  matrix streamed from the memory-mapped file in column blocks, alpha per target by efficient
  leave-one-out, all alphas from one eigendecomposition per fold.
* **scikit-learn**: for each outer fold ``RidgeCV(alphas, alpha_per_target=True).fit(X_train,
  Y_train).predict(X_test)`` (the same leave-one-out criterion), ``X`` loaded in memory.
* **himalaya**: for each outer fold ``KernelRidgeCV(alphas, kernel="linear", cv=5,
  fit_intercept=True)`` (inner 5-fold CV), ``X`` loaded in memory, on **every backend installed**:
  ``himalaya:numpy`` (its default), ``himalaya:torch`` (CPU) and ``himalaya:torch_cuda`` when a GPU is
  there. A peer is compared in its fastest configuration: the summary names the fastest himalaya.

Each runs in a fresh subprocess that reports its wall time (from after loading ``X``; for visreps
from the call, which includes reading the file) and its peak resident memory (``VmHWM`` of
``/proc/self/status``; the baseline after imports is printed too). The held-out Pearson r of
every target and fold is compared between the three (visreps and scikit-learn optimise the same
criterion; himalaya chooses alphas by inner 5-fold CV, so its scores differ a little).
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
import json, sys, time, warnings
import numpy as np

def hwm_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

which, xpath, ypath, fpath, out = sys.argv[1:6]
from visreps.analysis.encoding import fold_scores
Y = np.load(ypath)
fold_of = np.load(fpath)
alphas = np.logspace(-1, 8, 10)
n_folds = int(fold_of.max()) + 1
if which == "visreps":
    from visreps.analysis import encode
    base = hwm_mb()
    t = time.perf_counter()
    res = encode(np.load(xpath, mmap_mode="r"), Y, alphas=alphas, folds=fold_of)
    secs = time.perf_counter() - t
    r = res.folds.r.to_numpy().reshape(n_folds, -1)
else:
    if which == "sklearn":
        from sklearn.linear_model import RidgeCV
    else:
        from himalaya.backend import set_backend
        from himalaya.kernel_ridge import KernelRidgeCV
        backend = set_backend(which.split(":", 1)[1], on_error="raise")
    base = hwm_mb()
    X = np.load(xpath)
    t = time.perf_counter()
    r = np.empty((n_folds, Y.shape[1]))
    for f in range(n_folds):
        te = fold_of == f
        if which == "sklearn":
            m = RidgeCV(alphas=alphas, alpha_per_target=True).fit(X[~te], Y[~te])
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m = KernelRidgeCV(alphas=alphas, kernel="linear", cv=5, fit_intercept=True).fit(X[~te], Y[~te])
        pred = m.predict(X[te])
        if which.startswith("himalaya"):
            pred = backend.to_numpy(pred)
        pred = np.asarray(pred, dtype=np.float64)
        r[f] = fold_scores(Y[te], pred)[0]
        del m, pred
    secs = time.perf_counter() - t
np.save(out, r)
print(json.dumps({"seconds": secs, "peak_rss_mb": hwm_mb(), "baseline_mb": base}))
"""


def generate(xpath: Path, ypath: Path, n: int, p: int, t: int, k: int = 40, seed: int = 0) -> float:
    """Write ``X`` (float32 .npy, in row chunks) and ``Y`` (float64 .npy); return the seconds it took."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    F = rng.standard_normal((n, k))
    L = (rng.standard_normal((k, p)) / np.sqrt(k)).astype(np.float32)
    mm = np.lib.format.open_memmap(xpath, mode="w+", dtype=np.float32, shape=(n, p))
    chunk = max(1, (64 << 20) // (4 * p))
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        block = F[r0:r1].astype(np.float32) @ L
        block += rng.standard_normal((r1 - r0, p), dtype=np.float32)
        mm[r0:r1] = block
    mm.flush()
    del mm
    B = rng.standard_normal((k, t)) / np.sqrt(k)
    np.save(ypath, F @ B + 2.0 * rng.standard_normal((n, t)))
    return time.perf_counter() - t0


def himalaya_backends() -> list[str]:
    """The himalaya backends this machine can run: numpy always, torch when installed, torch_cuda with a GPU."""
    out = ["numpy"]
    try:
        import torch
    except ImportError:
        return out
    out.append("torch")
    if torch.cuda.is_available():
        out.append("torch_cuda")
    return out


def expand(names: list[str]) -> list[str]:
    """``himalaya`` stands for every installed backend (``himalaya:numpy``, ``himalaya:torch``, ...)."""
    out = []
    for w in names:
        out += [f"himalaya:{b}" for b in himalaya_backends()] if w == "himalaya" else [w]
    return out


def run_child(which: str, xpath: Path, ypath: Path, fpath: Path, out: Path) -> dict:
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, which, str(xpath), str(ypath), str(fpath), str(out)],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="images")
    ap.add_argument("--p", type=int, default=100_000, help="features")
    ap.add_argument("--t", type=int, default=5000, help="targets")
    ap.add_argument("--small", action="store_true", help="300 images × 5,000 features × 200 targets")
    ap.add_argument("--only", default="visreps,sklearn,himalaya", help="comma-separated subset")
    ap.add_argument("--tmp", default=None, help="folder for the generated files (default: a temporary folder)")
    args = ap.parse_args()
    if args.small:
        args.n, args.p, args.t = 300, 5000, 200
    which = expand([w.strip() for w in args.only.split(",") if w.strip()])
    from visreps.analysis import make_folds

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        d = Path(tmp)
        xpath, ypath, fpath = d / "X.npy", d / "Y.npy", d / "folds.npy"
        secs = generate(xpath, ypath, args.n, args.p, args.t)
        np.save(fpath, make_folds(args.n, 5, seed=0))
        size_mb = args.n * args.p * 4 / 2**20
        print(
            f"X: {args.n} images × {args.p} features float32 ({size_mb:.0f} MiB, written in {secs:.1f} s); "
            f"{args.t} targets; 5 folds × 10 alphas; {os.cpu_count()} CPUs"
        )
        results, r = {}, {}
        for w in which:
            res = run_child(w, xpath, ypath, fpath, d / f"r_{w}.npy")
            results[w] = res
            if "error" in res:
                print(f"{w:>19}: failed: {res['error']}")
                continue
            r[w] = np.load(d / f"r_{w}.npy")
            print(
                f"{w:>19}: {res['seconds']:8.1f} s   peak RSS {res['peak_rss_mb']:7.0f} MiB "
                f"(after imports {res['baseline_mb']:.0f} MiB)   mean held-out r {np.nanmean(r[w]):.4f}"
            )
        if "visreps" in r:
            others = {w: results[w]["seconds"] for w in r if w != "visreps"}
            for w, s in others.items():
                diff = np.nanmax(np.abs(r[w] - r["visreps"]))
                ratio = s / results["visreps"]["seconds"]
                print(f"{w} / visreps time: {ratio:.2f}×; max |Δr| per target and fold {diff:.2e}")
            if others:
                fastest = min(others, key=lambda w: others[w])
                best = others[fastest]
                v = results["visreps"]
                verdict = "yes" if v["seconds"] <= best else "no"
                print(f"fastest peer: {fastest} ({best:.1f} s), {best / v['seconds']:.2f}× the time of visreps")
                print(
                    f"visreps at least as fast as the fastest peer: {verdict} "
                    f"({v['seconds']:.1f} s vs {best:.1f} s); peak RSS {v['peak_rss_mb']:.0f} MiB "
                    f"vs feature matrix {size_mb:.0f} MiB: {'below' if v['peak_rss_mb'] < size_mb else 'NOT below'}"
                )


if __name__ == "__main__":
    main()
