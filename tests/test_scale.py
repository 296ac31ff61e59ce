"""Resume after Ctrl-C / kill, shards and their merge."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import visreps
from conftest import write_images
from visreps.errors import VisrepsError
from visreps.storage.formats import FORMATS as FORMAT_REGISTRY


@pytest.fixture(scope="module")
def many_images(tmp_path_factory):
    root = tmp_path_factory.mktemp("many")
    write_images(root, [f"c{i % 3}/img_{i:03d}.png" for i in range(48)], size=(48, 40), seed=4)
    return root


ARGS = [
    "extract",
    "torchvision:resnet18",
    "--random",
    "--seed",
    "2",
    "--layers",
    "layer3,fc",
    "--batch-size",
    "2",
    "--workers",
    "1",
    "-q",
]


def cli(*args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "visreps.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw
    )


def wait_for_progress(out, at_least, proc, timeout=600):  # a limit for a hung run, not a speed check
    t = time.time()
    p = out / "progress.partial.json"
    while time.time() - t < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"finished before it could be interrupted: {proc.communicate()}")
        try:
            if json.loads(p.read_text())["next_image"] >= at_least:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError("no progress")


def close(actual, expected):
    """Equal to float32 rounding: for runs whose batches differ (oneDNN picks kernels by batch shape and CPU)."""
    expected = np.asarray(expected)
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=1e-5, atol=1e-6 * float(np.abs(expected).max()))


def same_folder(a, b, fmt="npy"):
    """Bit-for-bit equal folders. Only for runs in one environment whose batches are the same: same batch size
    and the same batch boundaries (every image goes through the network in a batch of the same shape)."""
    fa, fb = visreps.load_features(a), visreps.load_features(b)
    assert fa.layers == fb.layers
    for k in fa.layers:
        np.testing.assert_array_equal(np.asarray(fa[k]), np.asarray(fb[k]))  # bit for bit
    assert (a / "manifest.csv").read_bytes() == (b / "manifest.csv").read_bytes()
    ma, mb = fa.metadata, fb.metadata
    for m in (ma, mb):
        for key in ("created", "seconds", "command", "files"):  # files: what this folder's own run created
            m.pop(key, None)
        m["options"].pop("num_workers", None)
    assert ma == mb


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_run_resumes_bit_identical(many_images, tmp_path, sig):
    full = tmp_path / "full"
    assert cli(*ARGS, str(many_images), "--out", str(full)).wait() == 0
    out = tmp_path / "cut"
    proc = cli(*ARGS, str(many_images), "--out", str(out))
    wait_for_progress(out, 10, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    if sig == signal.SIGINT:
        assert proc.returncode == 130
        assert "Traceback" not in err and "continue with the same command plus --resume" in err
        assert json.loads((out / "metadata.partial.json").read_text())["status"] == "interrupted"
    assert not (out / "metadata.json").exists() and not (out / "layer3.npy").exists()
    done = json.loads((out / "progress.partial.json").read_text())["next_image"]
    assert 10 <= done < 48
    # bit-identical is promised because the resumed run's batches are the full run's: progress is saved after
    # whole batches of 2 counted from image 0, so the resume starts on a batch boundary (48 is even: no short batch)
    assert done % 2 == 0
    # a changed option or image set is refused, naming what changed
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "visreps.cli",
            *[a if a != "2" else "3" for a in ARGS],
            str(many_images),
            "--out",
            str(out),
            "--resume",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "seed" in r.stderr and "weights" in r.stderr
    (many_images / "c0" / "extra.png").write_bytes((many_images / "c0" / "img_000.png").read_bytes())
    try:
        r = subprocess.run(
            [sys.executable, "-m", "visreps.cli", *ARGS, str(many_images), "--out", str(out), "--resume"],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 2 and "images_identity" in r.stderr, r.stderr
    finally:
        (many_images / "c0" / "extra.png").unlink()
    r = subprocess.run(
        [sys.executable, "-m", "visreps.cli", *ARGS, str(many_images), "--out", str(out), "--resume"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    same_folder(full, out)
    assert not list(out.glob("*partial*"))


def test_resume_refuses_finished_or_missing(tiny_net, image_dir, small_prep, tmp_path):
    kw = dict(layers=["3"], preprocessing=small_prep, progress=False)
    with pytest.raises(VisrepsError, match="no interrupted extraction to resume"):
        visreps.extract(tiny_net, image_dir, out=tmp_path / "none", resume=True, **kw)
    visreps.extract(tiny_net, image_dir, out=tmp_path / "done", **kw)
    with pytest.raises(VisrepsError, match="finished extraction; nothing to resume"):
        visreps.extract(tiny_net, image_dir, out=tmp_path / "done", resume=True, **kw)


@pytest.mark.parametrize("fmt", [n for n, f in FORMAT_REGISTRY.items() if f.stage is None])  # written as it goes
def test_resume_in_process_every_streamed_format(tiny_net, many_images, small_prep, tmp_path, fmt):
    kw = dict(layers=["3", "7"], preprocessing=small_prep, progress=False, format=fmt, batch_size=4, num_workers=0)
    full = visreps.extract(tiny_net, many_images, out=tmp_path / "full", **kw)
    calls = {"n": 0}

    def stop(mod, inp, out):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt

    h = tiny_net[7].register_forward_hook(stop)
    with pytest.raises(visreps.errors.ExtractionInterrupted):
        visreps.extract(tiny_net, many_images, out=tmp_path / "cut", **kw)
    h.remove()
    # exact equality is promised: the resume starts after whole batches of 4, so its batches are the full run's
    # (48 images: 12 batches of 4 in both)
    assert json.loads((tmp_path / "cut" / "progress.partial.json").read_text())["next_image"] % 4 == 0
    res = visreps.extract(tiny_net, many_images, out=tmp_path / "cut", resume=True, **kw)
    for k in ("3", "7"):
        np.testing.assert_array_equal(np.asarray(res[k]), np.asarray(full[k]))


@pytest.mark.parametrize("fmt", [n for n, f in FORMAT_REGISTRY.items() if f.row_ndim is None and f.stage is None])
def test_four_shards_merge_to_one_run(many_images, tmp_path, fmt):
    kw = dict(
        layers=["layer2", "fc"],
        pretrained=False,
        seed=1,
        progress=False,
        format=fmt,
        batch_size=4,
        preprocessing={"resize": 40, "crop": 32},
        top_k=2,
    )
    lm = visreps.load_model("torchvision:resnet18", pretrained=False, seed=1, preprocessing={"resize": 40, "crop": 32})
    visreps.extract(
        lm,
        many_images,
        out=tmp_path / "single",
        **{k: v for k, v in kw.items() if k not in ("pretrained", "seed", "preprocessing")},
    )
    shards = []
    for i in range(1, 5):
        d = tmp_path / f"s{i}"
        visreps.extract(
            lm,
            many_images,
            out=d,
            shard=f"{i}/4",
            **{k: v for k, v in kw.items() if k not in ("pretrained", "seed", "preprocessing")},
        )
        shards.append(d)
    assert [len(visreps.load_features(d).paths) for d in shards] == [12, 12, 12, 12]
    # bit for bit is promised only because the batch boundaries coincide: the shards are contiguous slices
    # starting at images 0, 12, 24, 36, multiples of the batch size 4, so every shard's batches are exactly the
    # single run's batches (with e.g. 50 images or batch size 5 they would not be, and only a tolerance would hold)
    starts = [visreps.load_features(d).metadata["shard"]["start"] for d in shards]
    assert starts == [0, 12, 24, 36] and all(s % kw["batch_size"] == 0 for s in starts) and 48 % kw["batch_size"] == 0
    merged = visreps.merge_shards(tmp_path / "merged", list(reversed(shards)))
    same_folder(tmp_path / "single", tmp_path / "merged")
    assert (tmp_path / "single" / "predictions.csv").read_text() == (
        tmp_path / "merged" / "predictions.csv"
    ).read_text()
    assert len(merged.paths) == 48
    with pytest.raises(VisrepsError, match=r"shard\(s\) 3/4 missing \(gap\)"):
        visreps.merge_shards(tmp_path / "m2", [shards[0], shards[1], shards[3]])
    with pytest.raises(VisrepsError, match=r"shard\(s\) 2/4 given twice \(overlap\)"):
        visreps.merge_shards(tmp_path / "m3", [shards[0], shards[1], shards[1], shards[2], shards[3]])
    other = tmp_path / "other"
    visreps.extract("torchvision:resnet18", many_images, out=other, shard="4/4", **{**kw, "seed": 9})
    with pytest.raises(VisrepsError, match="different run .* weights"):
        visreps.merge_shards(tmp_path / "m4", [*shards[:3], other])


def test_shard_argument_checked(tiny_net, image_dir):
    with pytest.raises(VisrepsError, match="write I/N"):
        visreps.extract(tiny_net, image_dir, layers=["0"], shard="a/b")
    with pytest.raises(VisrepsError, match="between 1 and N"):
        visreps.extract(tiny_net, image_dir, layers=["0"], shard="5/4")


class _OOMAbove(torch.nn.Module):
    """Wraps a network and raises the CUDA out-of-memory error for batches larger than ``limit``."""

    def __init__(self, net, limit):
        super().__init__()
        self.net = net
        self.limit = limit
        self.sizes = []

    def forward(self, x):
        self.sizes.append(len(x))
        if len(x) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return self.net(x)


def test_out_of_memory_batch_is_split_not_fatal(tiny_net, image_dir, small_prep):
    ref = visreps.extract(
        tiny_net, image_dir, layers=["3", "7"], preprocessing=small_prep, progress=False, batch_size=6
    )
    wrapped = _OOMAbove(tiny_net, limit=2)
    res = visreps.extract(
        wrapped, image_dir, layers=["net.3", "net.7"], preprocessing=small_prep, progress=False, batch_size=6
    )
    # the back-off runs batches of 1 and 2 where the reference ran one batch of 6: other kernels, so equal only
    # to float32 rounding (an absolute tolerance too, for values near 0)
    close(res["net.7"], ref["7"])
    close(res["net.3"], ref["3"])
    # the one batch of 6 runs out of memory; each half of 3 too; 1 + 2 fit
    assert wrapped.sizes[-7:] == [6, 3, 1, 2, 3, 1, 2]


def test_other_errors_are_not_swallowed(image_dir, small_prep):
    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 2, 3)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            if self.calls > 1:  # the dry run passes, the first batch fails
                raise RuntimeError("CUDA error: device-side assert triggered")
            return self.conv(x)

    with pytest.raises(RuntimeError, match="device-side assert"):
        visreps.extract(Broken(), image_dir, layers=["conv"], preprocessing=small_prep, progress=False)


def test_batch_size_search_backs_off(tiny_net, small_prep):
    from visreps import extraction

    lm = visreps.load_model(_OOMAbove(tiny_net, limit=40), preprocessing=small_prep)
    specs = extraction.plan_layers(lm, ["net.7"])
    assert extraction.find_batch_size(lm, specs) == 32  # CPU: no search, the default
    lm.device = type("Dev", (), {"type": "cuda"})()  # pretend: the search only runs on GPUs
    lm.dummy_input = lambda n=1: torch.zeros((n, 3, 16, 16))
    assert extraction.find_batch_size(lm, specs, start=512) == 32  # 512 → 256 → 128 → 64 → 32 fits
    lm.module.limit = 0
    with pytest.raises(VisrepsError, match="even a batch of 1 image"):
        extraction.find_batch_size(lm, specs, start=4)
    assert extraction.is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate"))
    assert not extraction.is_out_of_memory(RuntimeError("shape mismatch"))
