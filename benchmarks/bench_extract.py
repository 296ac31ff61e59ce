"""Extraction speed and memory, measured side by side in one run.

Prints, for the same real photos (batch 32, CPU):

* images/s of ``visreps.extract`` end to end (decode → preprocess → forward → write .npy) and of a
  bare torch forward pass of the *full* model on pre-made tensors, and their ratio:
  resnet50 ``avgpool`` (target ≥ 0.95×) and alexnet ``features.2`` (target ≥ 1.3×, early exit);
* the peak RSS of extracting alexnet ``features.0`` flattened (774 kB per image) at two dataset
  sizes, each in a fresh process (target: growth < 300 MB from 256 to 2,048 images).

Usage: ``python benchmarks/bench_extract.py [--images 256] [--big 2048] [--workdir DIR]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _photos import make_photos


def bare_forward(lm, folder: Path, batch: int, repeats: int = 1) -> float:
    """Images/s of ``module(x)`` on tensors preprocessed beforehand (the compute ceiling)."""
    import torch

    from visreps.data import find_images, load_image

    items = find_images(folder)
    xs = torch.stack([lm.transform(load_image(i.absolute(folder))) for i in items])
    with torch.inference_mode():
        lm.module(xs[:batch])  # warm-up
        t = time.perf_counter()
        for _ in range(repeats):
            for s in range(0, len(xs), batch):
                lm.module(xs[s : s + batch])
        return repeats * len(xs) / (time.perf_counter() - t)


def visreps_e2e(lm, folder: Path, layer: str, batch: int, out: Path, **kw) -> float:
    import visreps

    visreps.extract(
        lm, folder, layers=[layer], batch_size=batch, progress=False, out=out, overwrite=True, **kw
    )  # warm-up
    t = time.perf_counter()
    res = visreps.extract(lm, folder, layers=[layer], batch_size=batch, progress=False, out=out, overwrite=True, **kw)
    n = len(res.paths)
    return n / (time.perf_counter() - t)


def speed(model_id: str, layer: str, folder: Path, batch: int, work: Path, **kw) -> dict:
    import visreps

    lm = visreps.load_model(model_id, pretrained=False)
    # interleaved, best of two each, so that a busy moment of the machine hits all three alike
    bare, e2e, plain = [], [], []
    for _ in range(2):
        bare.append(bare_forward(lm, folder, batch))
        e2e.append(visreps_e2e(lm, folder, layer, batch, work / "o1", **kw))
        plain.append(visreps_e2e(lm, folder, layer, batch, work / "o2", channels_last=False, **kw))
    b, e, p = max(bare), max(e2e), max(plain)
    return {
        "model": model_id,
        "layer": layer,
        "bare_img_s": b,
        "visreps_img_s": e,
        "ratio": e / b,
        "visreps_plain_img_s": p,
        "ratio_plain": p / b,
    }


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
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--big", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "visreps-bench")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-rss", action="store_true")
    args = ap.parse_args()
    import torch

    work = args.workdir
    small = make_photos(work / f"photos_{args.images}", args.images)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.images} photos 500×375 JPEG; batch {args.batch}"
    )
    if not args.skip_speed:
        print("images/s; 'visreps' is the default (channels-last convolutions on CPU), 'same layout' forces the")
        print("bare forward's contiguous layout, so its ratio is visreps's own overhead (decode, hooks, writes)")
        print(
            f"{'model':<22}{'layer':<12}{'bare forward':>14}{'visreps':>10}{'ratio':>8}{'same layout':>13}{'ratio':>8}"
        )
        for model_id, layer in [("torchvision:resnet50", "avgpool"), ("torchvision:alexnet", "features.2")]:
            r = speed(model_id, layer, small, args.batch, work)
            print(
                f"{model_id:<22}{layer:<12}{r['bare_img_s']:>14.1f}{r['visreps_img_s']:>10.1f}{r['ratio']:>7.2f}×"
                f"{r['visreps_plain_img_s']:>13.1f}{r['ratio_plain']:>7.2f}×"
            )
    if not args.skip_rss:
        big = make_photos(work / f"photos_{args.big}", args.big, seed=1)
        a = peak_rss(small, work / "rss_small")
        b = peak_rss(big, work / "rss_big")
        print(f"alexnet features.0 flattened ({a['shape'][1]} floats/image), peak RSS of a fresh process:")
        print(
            f"  {a['n']:>6} images: {a['peak_rss_mb']:8.0f} MB  ({a['seconds']:.1f} s, output {a['n'] * a['shape'][1] * 4 / 2**20:.0f} MB)"
        )
        print(
            f"  {b['n']:>6} images: {b['peak_rss_mb']:8.0f} MB  ({b['seconds']:.1f} s, output {b['n'] * b['shape'][1] * 4 / 2**20:.0f} MB)"
        )
        print(f"  growth: {b['peak_rss_mb'] - a['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
