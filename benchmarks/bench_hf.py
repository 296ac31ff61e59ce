"""visreps on a Hugging Face ViT-Base against transformers' own ways, measured side by side in one run.

A ViT-Base-sized ``ViTModel`` (``ViTConfig()``: 12 layers, hidden 768, 224×224, patch 16; random
weights, seed 0) and its ``ViTImageProcessor`` are saved with ``save_pretrained`` to a temporary
folder and loaded by visreps as ``hf:<folder>``. The images are the 6 photos of ``examples/images``
repeated to ``--images`` files (default 128) in a temporary folder. Every contender reads the JPEG
files, decodes, preprocesses and runs the model with the same batch size (default 32), CPU, fp32:

* **bare**: ``model(**processor(images), output_hidden_states=True)`` per batch (decoding and the
  processor in this process), keeping ``hidden_states[12][:, 0]`` and ``pooler_output``;
* **pipeline**: ``pipeline("image-feature-extraction", model=model, image_processor=processor,
  batch_size=B)`` on the file paths (the last hidden state of every image);
* **visreps last**: ``visreps.extract(lm, folder, layers=["layers.11", "pooler"], pool={"layers.11":
  "cls", "pooler": "flatten"}, batch_size=B)`` in this process with the loaded model (decoding in
  visreps' default worker processes; the dry runs of ``prepare`` included);
* **visreps early**: the same with ``layers=["layers.2"]`` (the pass stops after block 2: early exit).

Each is timed once per repetition, interleaved (bare, pipeline, visreps last, visreps early, then
again), so that a busy moment of the machine hits all alike; printed are images/s (median of
``--reps``) and the median over repetitions of the per-repetition ratio to bare. visreps' features
are checked against the bare loop's (max abs difference). ``--profile`` also prints where visreps'
time goes (decode + preprocess per image, forward per batch).

Usage: ``python benchmarks/bench_hf.py [--images 128] [--batch 32] [--reps 3] [--profile]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_extract import OtherCPU, load1

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


def make_model(folder: Path) -> Path:
    """A ViT-Base ``ViTModel`` with random weights (seed 0) and its processor, saved with save_pretrained."""
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    ViTModel(ViTConfig()).save_pretrained(folder)
    ViTImageProcessor().save_pretrained(folder)
    return folder


def make_images(folder: Path, n: int) -> list[Path]:
    """The example photos copied round-robin to ``n`` files."""
    folder.mkdir(parents=True, exist_ok=True)
    src = sorted(p for p in EXAMPLES.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    paths = []
    for i in range(n):
        dst = folder / f"img_{i:04d}{src[i % len(src)].suffix}"
        shutil.copy(src[i % len(src)], dst)
        paths.append(dst)
    return paths


def bare(model, processor, paths: list[Path], batch: int) -> tuple[float, dict]:
    """Seconds of the bare transformers loop, and its features."""
    import torch
    from PIL import Image

    cls, pooled = [], []
    t = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(paths), batch):
            images = [Image.open(p).convert("RGB") for p in paths[s : s + batch]]
            out = model(**processor(images=images, return_tensors="pt"), output_hidden_states=True)
            cls.append(out.hidden_states[12][:, 0].clone())
            pooled.append(out.pooler_output.clone())
    sec = time.perf_counter() - t
    return sec, {"layers.11": torch.cat(cls).numpy(), "pooler": torch.cat(pooled).numpy()}


def pipe(extractor, paths: list[Path], batch: int) -> float:
    t = time.perf_counter()
    out = extractor([str(p) for p in paths], batch_size=batch, return_tensors=True)
    assert len(out) == len(paths)
    return time.perf_counter() - t


def with_visreps(lm, folder: Path, layers: list[str], batch: int) -> tuple[float, dict]:
    import visreps

    pool = {name: ("cls" if name.startswith("layers.") else "flatten") for name in layers}
    t = time.perf_counter()
    res = visreps.extract(lm, folder, layers=layers, pool=pool, batch_size=batch, progress=False)
    return time.perf_counter() - t, {k: res[k] for k in layers}


def profile(lm, paths: list[Path], batch: int) -> None:
    """Where visreps' time goes: ``prepare`` (its dry runs), decoding, its transform, and the forward
    pass with hooks vs without."""
    import torch

    from visreps.capture import make_capture, plan_layers
    from visreps.data import read_image
    from visreps.extraction import prepare

    for layers in (["layers.11", "pooler"], ["layers.2"]):
        t = time.perf_counter()
        prepare(lm, paths[0].parent, layers=layers, pool="flatten", batch_size=batch)
        print(f"  prepare (validation, dry runs on one blank image) for {layers}: {time.perf_counter() - t:.2f} s")

    t = time.perf_counter()
    decoded = [read_image(p)[0] for p in paths[:batch]]
    t_dec = (time.perf_counter() - t) / batch
    t = time.perf_counter()
    xs = torch.stack([lm.transform(im) for im in decoded])
    t_tr = (time.perf_counter() - t) / batch
    from transformers import AutoImageProcessor

    proc = AutoImageProcessor.from_pretrained(lm.weights["folder"])
    t = time.perf_counter()
    proc(images=decoded, return_tensors="pt")
    t_proc = (time.perf_counter() - t) / batch
    with torch.inference_mode():
        lm.module(xs)  # warm-up
        t = time.perf_counter()
        lm.module(xs, output_hidden_states=True)
        t_fwd = time.perf_counter() - t
        for layers in (["layers.11", "pooler"], ["layers.2"]):
            specs = plan_layers(lm, layers, pool="flatten")
            cap = make_capture(lm, specs)
            with cap:
                t = time.perf_counter()
                cap.run(xs)
                print(f"  forward with hooks on {layers}: {time.perf_counter() - t:.2f} s per batch of {batch}")
    print(f"  bare forward (output_hidden_states=True): {t_fwd:.2f} s per batch of {batch}")
    print(
        f"  per image: decode {t_dec * 1e3:.1f} ms, visreps transform {t_tr * 1e3:.1f} ms, "
        f"transformers processor (batched) {t_proc * 1e3:.1f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="also print where visreps' time goes")
    args = ap.parse_args()

    import torch
    import transformers
    from transformers import AutoImageProcessor, AutoModel, pipeline
    from transformers.utils import logging as hf_logging

    import visreps

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    work = Path(tempfile.mkdtemp(prefix="visreps-bench-hf-"))
    try:
        folder = make_model(work / "vit-base")
        paths = make_images(work / "images", args.images)
        lm = visreps.load_model(f"hf:{folder}", device="cpu")
        model = AutoModel.from_pretrained(folder).eval()
        processor = AutoImageProcessor.from_pretrained(folder)
        extractor = pipeline("image-feature-extraction", model=model, image_processor=processor, device="cpu")
        print(
            f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads, "
            f"{os.cpu_count()} cores; ViT-Base (random, seed 0), {args.images} JPEGs (examples/images repeated), "
            f"batch {args.batch}; median of {args.reps}; load average before: {load1():.2f}"
        )
        runs: dict[str, list[float]] = {"bare": [], "pipeline": [], "visreps last": [], "visreps early": []}
        diffs = []
        with OtherCPU() as other:
            for _ in range(args.reps):
                sec, ref = bare(model, processor, paths, args.batch)
                runs["bare"].append(sec)
                runs["pipeline"].append(pipe(extractor, paths, args.batch))
                sec, got = with_visreps(lm, work / "images", ["layers.11", "pooler"], args.batch)
                runs["visreps last"].append(sec)
                diffs.append(max(float(np.abs(got[k] - ref[k]).max()) for k in ref))
                runs["visreps early"].append(with_visreps(lm, work / "images", ["layers.2"], args.batch)[0])
        print(f"{'contender':<16}{'images/s':>10}{'× bare':>9}   seconds per run")
        for name, secs in runs.items():
            ratio = statistics.median(b / s for b, s in zip(runs["bare"], secs))
            per_run = ", ".join(f"{s:.1f}" for s in secs)
            print(f"{name:<16}{args.images / statistics.median(secs):>10.2f}{ratio:>8.2f}×   {per_run}")
        print(f"max |visreps - bare| over layers.11 (cls) and pooler: {max(diffs):.2e}")
        print(f"other processes used {other.cores:.2f} cores on average during the round")
        if args.profile:
            profile(lm, paths, args.batch)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
