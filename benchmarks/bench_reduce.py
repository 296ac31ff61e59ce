"""Every block of a ResNet-50 for many images: reductions while extracting, measured side by side in one run.

Random-init torchvision ResNet-50, its 16 bottleneck blocks + ``avgpool`` (``--layers blocks``),
batch 16, real photos (500×375 JPEG), CPU. Prints:

* **projection alone**: one batch of the 17 layers' activations (36 M non-zeros in the 16 matrices of
  ``srp:4096``) through scikit-learn's ``transform``, torch's CSR product and visreps' numba kernel,
  and the largest difference to scikit-learn (relative to the largest value);
* **throughput**, images/s: the **ceiling** (a bare forward pass on pre-made tensors with hooks that copy
  the 17 raw outputs, the faster memory layout); ``visreps extract --layers blocks --reduce srp:4096``
  and ``--reduce pca:K:M`` (marginal: ``(n2 - n1) / (t(n2) - t(n1))`` of two CLI subprocesses, so that
  process start, model loading, the SRP matrices and the PCA fit cancel out); THINGSvision 2.7.3's
  ``extract_features`` with the 17 ``module_names`` (marginal too, in this process) when it is importable;
* **peak RSS** of each visreps subprocess at n1 and n2 images, **disk per image** (reduced vs raw);
* the **PCA fit time** (recorded in ``metadata.json``);
* **RDM agreement**: for the first ``--subset`` photos, the Pearson r between the upper triangles of
  the correlation-distance RDM of every SRP-reduced layer and of the raw layer (min and per layer).

The defaults (64 → 128 photos, one repetition) are smaller than the issue's 256 → 1,024 because the
development machine is shared; ``load`` and ``other`` say how busy it was (see bench_extract.py).

Usage: ``python benchmarks/bench_reduce.py [--n1 64] [--n2 128] [--k 4096] [--pca 32] [--subset 64]
[--reps 1] [--workdir DIR] [--skip-thingsvision]``
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
from bench_extract import OtherCPU, bare_forward, load1, premade

MODEL = "torchvision:resnet50"
BATCH = 16

CLI_CHILD = r"""
import json, resource, sys, time
from visreps.cli import main
t = time.perf_counter()
try:
    main(sys.argv[1:])
except SystemExit as e:
    if e.code:
        raise
# VmHWM: this process's own peak (ru_maxrss would include the parent's, inherited across fork + exec)
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")]
peak = int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": time.perf_counter() - t, "peak_rss_mb": peak}), file=sys.stderr)
"""


def cli_run(folder: Path, out: Path, reduce: str) -> dict:
    """One ``visreps extract --layers blocks --reduce ...`` in a fresh process: wall time, peak RSS, metadata."""
    args = ["extract", MODEL, str(folder), "--random", "--layers", "blocks", "--reduce", reduce,
            "--batch-size", str(BATCH), "--out", str(out), "--overwrite", "-q"]  # fmt: skip
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", CLI_CHILD, *args], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(f"visreps extract failed: {r.stderr[-2000:]}")
    child = json.loads(r.stderr.strip().splitlines()[-1])
    meta = json.loads((out / "metadata.json").read_text())
    return {"wall": wall, **child, "meta": meta}


def ceiling(lm, xs, layers: list[str]) -> dict:
    """The bare forward pass with hooks that copy the raw outputs of ``layers`` (both layouts)."""
    mods = dict(lm.module.named_modules())
    kept: list = []
    handles = [mods[n].register_forward_hook(lambda m, i, o: kept.append(o.detach().clone())) for n in layers]
    try:
        res = {}
        for cl in (False, True):
            kept.clear()
            res["channels_last" if cl else "nchw"] = bare_forward(lm, xs, BATCH, channels_last=cl)
            kept.clear()
        return res
    finally:
        for h in handles:
            h.remove()


def projection_alone(lm, xs, layers: list[str], k: int, seed: int = 0) -> list[tuple[str, float, float]]:
    """Seconds to project one batch of the layers' activations, per backend, and the largest relative error."""
    import numpy as np
    import torch

    from visreps.reduce import SrpApply, layer_seed, srp_matrix

    mods = dict(lm.module.named_modules())
    acts: dict[str, np.ndarray] = {}
    handles = [
        mods[n].register_forward_hook(lambda m, i, o, n=n: acts.__setitem__(n, o.reshape(len(o), -1).numpy().copy()))
        for n in layers
    ]
    with torch.inference_mode():
        lm.module(xs[:BATCH])
    for h in handles:
        h.remove()
    wide = {n: a for n, a in acts.items() if a.shape[1] > k}
    mats = {n: srp_matrix(a.shape[1], k, layer_seed(seed, n)) for n, a in wide.items()}
    nnz = sum(m.nnz for m in mats.values())
    ref = {n: SrpApply(m, "sklearn").apply(wide[n]) for n, m in mats.items()}
    rows = []
    for backend in ("sklearn", "torch", "numba"):
        try:
            appl = {n: SrpApply(m, backend) for n, m in mats.items()}
        except ImportError:
            continue
        for n, a in appl.items():  # warm-up (numba compiles once)
            a.apply(wide[n][:2])
        times = []
        for _ in range(3):
            t = time.perf_counter()
            outs = {n: a.apply(wide[n]) for n, a in appl.items()}
            times.append(time.perf_counter() - t)
        err = max(float(np.abs(outs[n] - ref[n]).max() / np.abs(ref[n]).max()) for n in outs)
        rows.append((backend, statistics.median(times), err))
    print(f"projection alone: one batch of {BATCH}, {len(mats)} matrices, {nnz / 1e6:.1f} M non-zeros (median of 3)")
    for backend, secs, err in rows:
        print(f"  {backend:<8} {secs:7.3f} s   max |diff| / max |sklearn| = {err:.1e}")
    return rows


def thingsvision_marginal(f1: Path, f2: Path, n1: int, n2: int, layers: list[str]) -> float | None:
    """Images/s of THINGSvision 2.7.3's extract_features (17 module_names), marginal between n1 and n2 photos."""
    try:
        import numpy

        if not hasattr(numpy, "AxisError"):
            numpy.AxisError = numpy.exceptions.AxisError  # type: ignore[attr-defined]
        from thingsvision import get_extractor
        from thingsvision.utils.data import DataLoader, ImageDataset
    except Exception as e:  # noqa: BLE001 - any import failure: the column is skipped with a note
        print(f"THINGSvision 2.7.3 not importable ({type(e).__name__}: {e}); column skipped")
        return None
    ext = get_extractor(model_name="resnet50", source="torchvision", device="cpu", pretrained=False)
    times = []
    for folder in (f1, f2):
        ds = ImageDataset(root=str(folder), out_path=str(folder.parent / "tv_out"), backend=ext.get_backend(),
                          transforms=ext.get_transformations())  # fmt: skip
        dl = DataLoader(dataset=ds, batch_size=BATCH, backend=ext.get_backend())
        t = time.perf_counter()
        feats = ext.extract_features(batches=dl, module_name=None, module_names=layers, flatten_acts=True,
                                     output_type="ndarray")  # fmt: skip
        times.append(time.perf_counter() - t)
        del feats
    return (n2 - n1) / (times[1] - times[0]) if times[1] > times[0] else float("nan")


def rdm_agreement(lm, folder: Path, reduced: Path, layers: list[str], subset: int) -> dict[str, float]:
    """Pearson r of the upper triangles of the correlation RDMs, SRP-reduced vs raw, per layer."""
    import numpy as np

    import visreps
    from visreps.analysis import compute_rdm

    red = visreps.load_features(reduced)
    raw = visreps.extract(lm, folder, layers=layers, batch_size=BATCH, progress=False, order=red.paths[:subset])
    iu = np.triu_indices(subset, 1)
    out = {}
    for n in layers:
        a = compute_rdm(raw[n], "correlation")[iu]
        b = compute_rdm(np.asarray(red[n][:subset]), "correlation")[iu]
        out[n] = float(np.corrcoef(a, b)[0, 1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n1", type=int, default=64)
    ap.add_argument("--n2", type=int, default=128)
    ap.add_argument("--k", type=int, default=4096, help="SRP dimensions")
    ap.add_argument("--pca", type=int, default=32, help="PCA components, fitted on the first --pca images")
    ap.add_argument("--subset", type=int, default=64, help="photos of the raw-vs-SRP RDM comparison")
    ap.add_argument("--reps", type=int, default=1, help="repetitions of the throughput runs (median)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "visreps-bench-reduce")
    ap.add_argument("--skip-thingsvision", action="store_true")
    args = ap.parse_args()
    import torch

    import visreps
    from visreps.capture import resolve_layers

    work = args.workdir
    f1 = make_photos(work / f"photos_{args.n1}", args.n1)
    f2 = make_photos(work / f"photos_{args.n2}", args.n2)
    lm = visreps.load_model(MODEL, pretrained=False)
    layers = resolve_layers(lm, "blocks")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores; {MODEL} random "
        f"init, {len(layers)} layers (blocks), batch {BATCH}; {args.n1} → {args.n2} photos; load {load1():.2f}"
    )
    xs = premade(lm, f2, min(args.n2, 64))
    projection_alone(lm, xs, layers, args.k)
    srp, pca, ceil = [], [], []
    pspec = f"pca:{args.pca}:{args.pca}"
    with OtherCPU() as other:
        for _ in range(args.reps):
            c = ceiling(lm, xs, layers)
            ceil.append(max(c.values()))
            srp.append([cli_run(f, work / f"srp_{i}", f"srp:{args.k}") for i, f in enumerate((f1, f2))])
            pca.append([cli_run(f, work / f"pca_{i}", pspec) for i, f in enumerate((f1, f2))])
    tv = None if args.skip_thingsvision else thingsvision_marginal(f1, f2, args.n1, args.n2, layers)

    def marginal(runs):  # of the whole process (wall), and of the batch loop alone (metadata "seconds")
        wall = statistics.median((args.n2 - args.n1) / (b["wall"] - a["wall"]) for a, b in runs)
        loop = statistics.median((args.n2 - args.n1) / (b["meta"]["seconds"] - a["meta"]["seconds"]) for a, b in runs)
        return wall, loop

    c = statistics.median(ceil)
    (s, sl), (p, pl) = marginal(srp), marginal(pca)
    print(f"throughput, images/s (load {load1():.2f}, other processes {other.cores:.2f} cores):")
    print(f"  ceiling (bare forward, hooks copying the {len(layers)} raw outputs) {c:8.2f}")
    for name, w, lo in ((f"srp:{args.k}", s, sl), (pspec, p, pl)):
        print(f"  visreps --reduce {name:<10} marginal: process {w:6.2f} ({w / c:.2f}x), batch loop {lo:6.2f} "
              f"({lo / c:.2f}x the ceiling)")  # fmt: skip
    if tv is not None:
        print(
            f"  THINGSvision 2.7.3 extract_features (17 module_names, marginal) {tv:8.2f}   {tv / c:.2f}x the ceiling"
        )
    meta = srp[-1][1]["meta"]
    reduced = sum(4 * r["n_components"] for r in meta["reduce"].values())
    raw = sum(4 * r["input_width"] for r in meta["reduce"].values())
    print(f"disk per image: {reduced / 1e3:.0f} kB reduced (srp:{args.k}) vs {raw / 1e6:.1f} MB raw")
    for name, runs in (("srp", srp[-1]), ("pca", pca[-1])):
        print(f"peak RSS ({name}): " + ", ".join(f"{n} images {r['peak_rss_mb']:.0f} MB" for n, r in
                                                 zip((args.n1, args.n2), runs)))  # fmt: skip
    fit = pca[-1][0]["meta"]["reduce"][layers[0]]["fit"]
    secs = pca[-1][0]["meta"]["reduce_fit_seconds"]
    print(f"PCA fit ({pspec}: IncrementalPCA on {fit['n_images']} images, all layers): {secs:.1f} s")
    agree = rdm_agreement(lm, f2, work / "srp_1", layers, min(args.subset, args.n2))
    print(f"RDM agreement (correlation RDMs, {min(args.subset, args.n2)} photos), Pearson r SRP vs raw: "
          f"min {min(agree.values()):.4f}")  # fmt: skip
    print("  " + ", ".join(f"{n} {r:.4f}" for n, r in agree.items()))


if __name__ == "__main__":
    main()
