"""``visreps bench`` vs the same extract + compare/encode runs done one by one, and a rerun of the unchanged spec.

Usage::

    python benchmarks/bench_bench.py            # the example images (32) × 3 models × 4 layers × 2 targets
    python benchmarks/bench_bench.py --device cuda

Three models (two seeded random AlexNets and the pretrained EfficientNet-Lite0, 4 layers each,
globally average-pooled) against the two example targets of ``examples/bench`` (an RDM stack of 4
subjects and responses in 4 repetitions):

* **bench**: ``visreps.bench(spec, out=...)`` with a fresh cache (extracts the three models, selects
  a layer per model × target on half of the images, scores it on the other half with ceilings, a
  1,000-sample bootstrap and pairwise tests, writes tables, figure and report).
* **one by one**: the same three ``visreps.extract`` runs into folders, then per model
  ``visreps.rsa_inference`` (every layer against the RDM stack, noise ceiling, 1,000-sample
  bootstrap over subjects and images) and ``visreps.encode`` (every layer, 5 folds, split-half ceiling):
  what a user runs without bench, on all images (no selection/test split, no figure).
* **rerun**: ``visreps.bench`` again with the same spec and output folder (nothing extracted: the
  cache entries are verified, the outputs' checksums checked and reused); and into a new output
  folder (nothing extracted, every analysis again).

The one-by-one analysis runs twice: without the noise ceiling (the bench computes the ceiling's
bounds once per target and does not bootstrap them, so this is the matching work) and with a
bootstrapped ceiling (``noise_ceiling=True``, what ``visreps compare --noise-ceiling --bootstrap``
runs). Models are loaded once before any timing (imports, weights files in the page cache).

Each of the three is timed in one process, one after the other; the wall times are printed side by
side. The targets of the issue: bench ≤ 1.15 × one by one; rerun < 5 % of the first bench.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "bench"
ALEX = ["features.2", "features.5", "features.12", "classifier.5"]
MODELS = [
    {"id": "torchvision:alexnet", "weights": "random", "seed": 1, "layers": ALEX},
    {"id": "torchvision:alexnet", "weights": "random", "seed": 2, "layers": ALEX},
    {"id": "timm:tf_efficientnet_lite0", "layers": ["blocks.1", "blocks.3", "blocks.5", "global_pool"]},
]


def spec(work: Path, device: str) -> dict:
    return {
        "images": str(EXAMPLE / "stimuli"),
        "work_dir": str(work),
        "device": device,
        "models": [{**m, "pool": "avg"} for m in MODELS],
        "targets": [
            {"name": "hIT", "rdms": str(EXAMPLE / "hIT_subjects.npy")},
            {"name": "V4", "responses": str(EXAMPLE / "v4.npy")},
        ],
        "analysis": {"bootstrap": {"factors": "subjects,images", "n": 1000}, "test": "pairwise"},
    }


def one_by_one(tmp: Path, device: str, ceiling: bool) -> float:
    """The extractions, then the analyses; returns the time of the extractions alone."""
    import numpy as np

    import visreps

    resp = np.load(EXAMPLE / "v4.npy")
    t0 = time.perf_counter()
    for k, m in enumerate(MODELS):
        kw = {"pretrained": False, "seed": m["seed"]} if m.get("weights") == "random" else {}
        visreps.extract(m["id"], EXAMPLE / "stimuli", layers=m["layers"], out=tmp / f"m{k}", pool="avg",
                        device=device, progress=False, **kw)  # fmt: skip
    t_extract = time.perf_counter() - t0
    for k in range(len(MODELS)):
        folder = tmp / f"m{k}"
        visreps.rsa_inference(
            [folder], EXAMPLE / "hIT_subjects.npy", rdm_method="correlation", method="spearman",
            bootstrap="subjects,images", n_bootstrap=1000, noise_ceiling=ceiling,
        )  # fmt: skip
        visreps.encode(folder, resp, axes="repetitions,images,targets", folds=5, ceiling=True)
    return t_extract


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    import visreps

    for m in MODELS:  # warm-up: imports and weights files read once, before any timing
        kw = {"pretrained": False, "seed": m["seed"]} if m.get("weights") == "random" else {}
        visreps.load_model(m["id"], device=args.device, **kw)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        s = spec(tmp / "cache", args.device)
        t0 = time.perf_counter()
        visreps.bench(s, out=tmp / "out", progress=False)
        t_bench = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = visreps.bench(s, out=tmp / "out", progress=False)
        t_rerun = time.perf_counter() - t0
        assert res.extracted == []
        t0 = time.perf_counter()
        res = visreps.bench(s, out=tmp / "out2", progress=False)  # cache hits, every analysis again
        t_new_out = time.perf_counter() - t0
        assert res.extracted == []
        t0 = time.perf_counter()
        t_extract = one_by_one(tmp / "a", args.device, ceiling=False)
        t_sep = time.perf_counter() - t0
        t0 = time.perf_counter()
        one_by_one(tmp / "b", args.device, ceiling=True)
        t_sep_nc = time.perf_counter() - t0
    print(f"{'':28s}{'wall s':>10s}")
    print(f"{'bench (cold cache)':28s}{t_bench:10.2f}")
    print(f"{'bench, cached, new --out':28s}{t_new_out:10.2f}   (nothing extracted, every analysis again)")
    print(
        f"{'extract + rsa/encode, each':28s}{t_sep:10.2f}   bench / one by one = {t_bench / t_sep:.2f} (target <= 1.15)"
    )
    print(
        f"{'bench rerun (unchanged)':28s}{t_rerun:10.2f}   rerun / first = {100 * t_rerun / t_bench:.1f} %"
        " (target < 5 %)"
    )
    print(f"{'  of which extract':28s}{t_extract:10.2f}")
    print(f"{'... with bootstrapped ceiling':28s}{t_sep_nc:10.2f}   bench / this = {t_bench / t_sep_nc:.2f}")
    print(f"python {sys.version.split()[0]}, visreps {visreps.__version__}, device {args.device}")


if __name__ == "__main__":
    main()
