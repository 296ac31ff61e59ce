"""Issue 10: nothing silently wrong, nothing lost, nothing overwritten without consent (Python API level).

The command-line view of the same cases is in tests/test_bad_input.py.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

import visreps
from conftest import write_images
from visreps import storage
from visreps.data import find_images
from visreps.errors import ImageError, OutputExistsError, VisrepsError
from visreps.storage import DamagedOutputError, load_features, verify
from visreps.storage.formats import FORMATS


@pytest.fixture(scope="module")
def eight_images(tmp_path_factory):
    root = tmp_path_factory.mktemp("eight")
    write_images(root, [f"img_{i}.png" for i in range(8)], size=(24, 20), seed=7)
    return root


def _kw(small_prep, **more):
    return dict(layers=["3", "7"], preprocessing=small_prep, progress=False, batch_size=3, num_workers=0, **more)


# --------------------------------------------------------------------------- item 0: an interrupt never splits a batch


class _Injector:
    """Raises KeyboardInterrupt at the k-th event, an event being the entry to or the return from one of the
    primitive steps of writing a batch (array writes, the progress record, renames)."""

    TARGETS = [
        (storage.formats.npy, "_pwrite"),
        (storage.TxtWriter, "write"),
        (storage._H5Layer, "write"),
        (storage.formats.zarr._ZarrLayerWriter, "write"),
        (storage.OutputWriter, "write"),
        (storage.OutputWriter, "checkpoint"),
        (storage.os, "replace"),
    ]

    def __init__(self, monkeypatch, k: int | None):
        self.k, self.n = k, 0
        for owner, name in self.TARGETS:
            monkeypatch.setattr(owner, name, self._wrap(getattr(owner, name)))

    def _tick(self):
        if threading.current_thread() is not threading.main_thread():
            return  # Python delivers Ctrl-C to the main thread only (zarr writes its chunks from a worker thread)
        self.n += 1
        if self.k is not None and self.n == self.k:
            self.k = None  # once
            raise KeyboardInterrupt

    def _wrap(self, fn):
        def wrapped(*a, **kw):
            self._tick()
            out = fn(*a, **kw)
            self._tick()
            return out

        return wrapped


@pytest.mark.slow
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_interrupt_at_every_point_of_the_write_path_resumes_exactly(
    tiny_net, eight_images, small_prep, tmp_path, monkeypatch, fmt
):
    kw = _kw(small_prep, format=fmt)
    full = visreps.extract(tiny_net, eight_images, out=tmp_path / "full", **kw)
    with monkeypatch.context() as m:
        counter = _Injector(m, None)
        visreps.extract(tiny_net, eight_images, out=tmp_path / "count", **kw)
        events = counter.n
    assert events > 20
    for k in range(1, events + 1):
        out = tmp_path / f"k{k}"
        with monkeypatch.context() as m:
            _Injector(m, k)
            try:
                visreps.extract(tiny_net, eight_images, out=out, **kw)
                interrupted = False
            except (visreps.errors.ExtractionInterrupted, KeyboardInterrupt):  # the latter while finishing
                interrupted = True
        if interrupted and (out / "metadata.json").exists():  # it fell after the final record: complete
            interrupted = False
        if interrupted:
            try:
                res = visreps.extract(tiny_net, eight_images, out=out, resume=True, **kw)
            except VisrepsError as e:
                progress = out / "progress.partial.json"
                if "holds no interrupted extraction" in str(e):  # interrupted before the record was written
                    assert not progress.exists()
                else:  # only while finishing (every row written, files being renamed) is a resume refused
                    assert "cannot resume" in str(e) and "--overwrite" in str(e), (k, e)
                    assert json.loads(progress.read_text())["next_image"] == 8, (k, e)
                res = visreps.extract(tiny_net, eight_images, out=out, overwrite=True, **kw)
        else:  # the interrupt fell after the finish: the folder is complete
            res = load_features(out)
        assert len(res.manifest) == 8, k
        for layer in ("3", "7"):
            assert np.asarray(res[layer]).shape[0] == 8, (k, layer)
            np.testing.assert_array_equal(np.asarray(res[layer]), np.asarray(full[layer]), err_msg=f"event {k}")
        assert list(res.manifest["path"]) == list(full.manifest["path"])
        verify(out)


def test_sigint_is_held_back_while_a_batch_is_written(tiny_net, eight_images, small_prep, tmp_path, monkeypatch):
    """A real SIGINT arriving inside the write of a batch is delivered after the batch and its record."""
    import signal

    from visreps import extraction

    seen = []
    original = storage.OutputWriter.write

    def write_and_signal(self, start, batch):
        if start == 3 and not seen:
            seen.append(start)
            os.kill(os.getpid(), signal.SIGINT)  # lands in the middle of the write
        return original(self, start, batch)

    monkeypatch.setattr(storage.OutputWriter, "write", write_and_signal)
    out = tmp_path / "o"
    with pytest.raises(visreps.errors.ExtractionInterrupted):
        visreps.extract(tiny_net, eight_images, out=out, **_kw(small_prep))
    progress = json.loads((out / "progress.partial.json").read_text())
    assert progress["rows"] == progress["next_image"] == 6  # the batch at rows 3-5 was finished and recorded
    assert extraction  # the module under test


# --------------------------------------------------------------------------- item 2: symlink loops


def test_symlink_loop_and_aliases_visit_each_real_file_once(tmp_path):
    root = tmp_path / "imgs"
    write_images(root, ["a.png", "sub/b.png"])
    os.symlink("..", root / "sub" / "loop")
    os.symlink(root, root / "self")
    os.symlink(root / "a.png", root / "z_alias.png")
    os.symlink(root / "missing.png", root / "dangling.png")
    # a dangling link named like an image is listed (issue 19, finding 30): reading it fails and names it
    assert [i.path for i in find_images(root)] == ["a.png", "dangling.png", "sub/b.png"]


# --------------------------------------------------------------------------- item 3: content hashes


def test_manifest_records_the_content_hash_of_every_image(tiny_net, image_dir, small_prep, tmp_path):
    res = visreps.extract(tiny_net, image_dir, out=tmp_path / "o", **_kw(small_prep))
    mem = visreps.extract(tiny_net, image_dir, **_kw(small_prep))
    for feats in (res, mem):
        for p, h in zip(feats.paths, feats.manifest["blake2b"]):
            assert h == hashlib.blake2b((image_dir / p).read_bytes(), digest_size=16).hexdigest()


# --------------------------------------------------------------------------- item 4: damaged folders


def _cut(path: Path, n: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - n])


@pytest.mark.parametrize(
    "fmt,victim",
    [(f, FORMATS[f].layer_file("3")) for f in FORMATS] + [("npy", "manifest.csv"), ("npy", "metadata.json")],
)
def test_truncated_file_of_every_format_is_named(tiny_net, image_dir, small_prep, tmp_path, fmt, victim):
    out = tmp_path / fmt
    visreps.extract(tiny_net, image_dir, out=out, **_kw(small_prep, format=fmt))
    assert sorted(verify(out)) == sorted(json.loads((out / "metadata.json").read_text())["checksums"])
    path = out / victim
    if path.is_dir():  # a directory store (zarr): its largest file
        path = max((p for p in path.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    if victim.endswith(".txt") or victim == "manifest.csv":  # one whole line less: still parses
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(lines[:-1]))
    else:
        _cut(path, max(1, path.stat().st_size // 3))
    with pytest.raises(DamagedOutputError, match=victim.replace(".", r"\.")):
        load_features(out)
    with pytest.raises(DamagedOutputError, match=victim.replace(".", r"\.")):
        verify(out)


def test_verify_catches_a_changed_value_that_keeps_the_size(tiny_net, image_dir, small_prep, tmp_path):
    out = tmp_path / "o"
    visreps.extract(tiny_net, image_dir, out=out, **_kw(small_prep))
    arr = np.load(out / "7.npy")
    arr[2, 1] += 1
    np.save(out / "7.npy", arr)
    load_features(out)  # shapes and sizes agree: only the checksum can tell
    with pytest.raises(DamagedOutputError, match=r"7\.npy \(SHA-256 differs"):
        verify(out)


def test_wrong_row_count_against_metadata(tiny_net, image_dir, small_prep, tmp_path):
    out = tmp_path / "o"
    visreps.extract(tiny_net, image_dir, out=out, **_kw(small_prep))
    meta = json.loads((out / "metadata.json").read_text())
    meta["layers"]["3"]["shape"][0] = 7
    (out / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(DamagedOutputError, match=r"3\.npy.*\(7, 384\)"):
        load_features(out)


# --------------------------------------------------------------------------- items 5, 6: ownership


def test_a_users_file_under_a_layer_name_is_never_replaced(tiny_net, image_dir, small_prep, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    mine = out / "3.npy"
    np.save(mine, np.arange(3))
    before = mine.read_bytes()
    for overwrite in (False, True):
        with pytest.raises(OutputExistsError, match=r"'3\.npy'.*did not write"):
            visreps.extract(tiny_net, image_dir, out=out, overwrite=overwrite, **_kw(small_prep))
        assert mine.read_bytes() == before
        assert sorted(p.name for p in out.iterdir()) == ["3.npy"]


def test_overwrite_removes_only_what_the_earlier_run_recorded(tiny_net, image_dir, small_prep, tmp_path):
    out = tmp_path / "o"
    visreps.extract(tiny_net, image_dir, out=out, **_kw(small_prep))
    mine = {"predictions.csv": b"my own table\n", "draft.partial": b"draft", "notes.txt": b"notes"}
    for name, data in mine.items():
        (out / name).write_bytes(data)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        visreps.extract(tiny_net, image_dir, out=out, **_kw(small_prep))
    res = visreps.extract(tiny_net, image_dir, out=out, overwrite=True, **{**_kw(small_prep), "layers": ["7"]})
    for name, data in mine.items():
        assert (out / name).read_bytes() == data, name
    assert not (out / "3.npy").exists()  # the earlier run's layer, recorded as its own, was replaced
    assert res.layers == ["7"]


def test_predictions_never_replace_a_users_table(image_dir, small_prep, tmp_path):
    from torch import nn

    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 1000)).eval()
    out = tmp_path / "o"
    visreps.extract(net, image_dir, out=out, **{**_kw(small_prep), "layers": ["3"]})
    (out / "predictions.csv").write_text("my own table\n")
    with pytest.raises(OutputExistsError, match="predictions.csv"):
        visreps.extract(net, image_dir, out=out, overwrite=True, top_k=3, **{**_kw(small_prep), "layers": ["3"]})
    assert (out / "predictions.csv").read_text() == "my own table\n"
    (out / "predictions.csv").unlink()
    res = visreps.extract(net, image_dir, out=out, overwrite=True, top_k=3, **{**_kw(small_prep), "layers": ["3"]})
    assert list(load_features(out).predictions["path"]) == res.paths


def test_a_crafted_record_cannot_delete_files_outside_the_folder(tiny_net, image_dir, small_prep, tmp_path):
    out = tmp_path / "o"
    visreps.extract(tiny_net, image_dir, out=out, **_kw(small_prep))
    victim = tmp_path / "precious.txt"
    victim.write_text("keep")
    meta = json.loads((out / "metadata.json").read_text())
    meta["files"] += ["../precious.txt", str(victim)]
    (out / "metadata.json").write_text(json.dumps(meta))
    visreps.extract(tiny_net, image_dir, out=out, overwrite=True, **_kw(small_prep))
    assert victim.read_text() == "keep"


def test_a_metadata_file_that_is_not_ours_is_not_replaced(tiny_net, image_dir, small_prep, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "metadata.json").write_text('{"author": "me"}')
    with pytest.raises(OutputExistsError, match="metadata.json.*not written by visreps"):
        visreps.extract(tiny_net, image_dir, out=out, overwrite=True, **_kw(small_prep))
    assert (out / "metadata.json").read_text() == '{"author": "me"}'


# --------------------------------------------------------------------------- item 8: disk full


def test_disk_full_during_the_run_is_one_error_and_resumable(tiny_net, eight_images, small_prep, tmp_path, monkeypatch):
    out = tmp_path / "o"
    full = visreps.extract(tiny_net, eight_images, **_kw(small_prep))
    calls = {"n": 0}
    real = storage.formats.npy._pwrite

    def pwrite(fd, data, offset):
        calls["n"] += 1
        if calls["n"] > 8:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    with monkeypatch.context() as m:
        m.setattr(storage.formats.npy, "_pwrite", pwrite)
        with pytest.raises(VisrepsError, match=r"no space left on the device of .*'.*/o'.*--resume"):
            visreps.extract(tiny_net, eight_images, out=out, **_kw(small_prep))
    assert not (out / "metadata.json").exists() and not (out / "3.npy").exists()
    meta = json.loads((out / "metadata.partial.json").read_text())
    assert meta["status"] == "failed"
    res = visreps.extract(tiny_net, eight_images, out=out, resume=True, **_kw(small_prep))
    np.testing.assert_array_equal(np.asarray(res["3"]), full["3"])


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )


@pytest.mark.slow
def test_disk_full_on_a_real_small_filesystem(tiny_net, eight_images, small_prep, tmp_path):
    disk = tmp_path / "disk"
    if not _tmpfs(disk, "64k"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        big = dict(_kw(small_prep), layers=["1"])  # 8 × 4×16×16 floats = 32 KB; fill the disk first
        (disk / "filler").write_bytes(b"\0" * (40 * 1024))
        with pytest.raises(VisrepsError, match=r"not enough space in .*disk.*need.*free"):
            visreps.extract(tiny_net, eight_images, out=disk / "o", **big)
        assert not (disk / "o" / "metadata.partial.json").exists()  # refused before writing anything
        # space that runs out during the run (the preallocated file is sparse until written)
        (disk / "filler").unlink()
        (disk / "filler2").write_bytes(b"\0" * (10 * 1024))
        shutil.rmtree(disk / "o", ignore_errors=True)
        hog = disk / "hog"
        try:
            with pytest.raises(VisrepsError, match="no space left|not enough space"):
                visreps.extract(tiny_net, eight_images, out=disk / "o2", **dict(big, layers=["0", "1"]))
        finally:
            hog.unlink(missing_ok=True)
        assert not (disk / "o2" / "metadata.json").exists() and not (disk / "o2" / "0.npy").exists()
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


# --------------------------------------------------------------------------- item 9, 12, 13


def test_unwritable_output_place(tiny_net, image_dir, small_prep):
    with pytest.raises(VisrepsError, match=r"cannot create the output folder '/proc/x/out'"):
        visreps.extract(tiny_net, image_dir, out="/proc/x/out", **_kw(small_prep))


def test_a_refused_run_writes_nothing(tiny_net, image_dir, small_prep, tmp_path):
    out = tmp_path / "o"
    with pytest.raises(VisrepsError, match="txt holds 2-D arrays only"):
        visreps.extract(tiny_net, image_dir, out=out, **_kw(small_prep, format="txt", pool="none"))
    assert not out.exists() or not list(out.iterdir())
    with pytest.raises(VisrepsError, match="top-k class predictions need"):
        visreps.extract(tiny_net, image_dir, out=out, **_kw(small_prep, top_k=3))  # 5 outputs, not 1000
    assert not out.exists() or not list(out.iterdir())
    visreps.extract(tiny_net, image_dir, out=out, **_kw(small_prep, format="txt"))  # the corrected command


def test_every_image_bad_names_them_and_records_them(tiny_net, small_prep, tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    for i in range(5):
        (root / f"x{i}.jpg").write_bytes(b"not an image %d" % i)
    out = tmp_path / "o"
    with pytest.raises(ImageError, match=r"none of the 5 images.*x0\.jpg.*x1\.jpg.*x2\.jpg.*and 2 more") as e:
        visreps.extract(tiny_net, root, out=out, skip_bad_images=True, **_kw(small_prep))
    assert "metadata.partial.json" in str(e.value)
    meta = json.loads((out / "metadata.partial.json").read_text())
    assert meta["status"] == "failed"
    assert sorted(s["path"] for s in meta["images"]["skipped"]) == [f"x{i}.jpg" for i in range(5)]
    # nothing was kept, so the corrected run may take the folder without --overwrite
    write_images(root, ["good.png"])
    res = visreps.extract(tiny_net, root, out=out, skip_bad_images=True, **_kw(small_prep))
    assert res.paths == ["good.png"] and len(res.metadata["images"]["skipped"]) == 5


# --------------------------------------------------------------------------- item 10: file names and order files


def test_file_name_that_is_not_utf8_round_trips(tiny_net, small_prep, tmp_path):
    root = tmp_path / "imgs"
    write_images(root, ["a.png", "b.png"])
    os.rename(root / "b.png", os.path.join(os.fsencode(root), b"caf\xe9.png"))
    out = tmp_path / "o"
    res = visreps.extract(tiny_net, root, out=out, **_kw(small_prep))
    assert res.paths == ["a.png", "caf\udce9.png"]
    assert load_features(out).paths == ["a.png", "caf\udce9.png"]
    assert b"caf\xe9.png" in (out / "manifest.csv").read_bytes()
    # the manifest names the file as it is on disk
    assert os.path.exists(os.path.join(os.fsencode(root), os.fsencode(res.paths[1])))


def test_order_file_in_latin1(tmp_path):
    root = tmp_path / "imgs"
    write_images(root, ["a.png", "café.png"])
    order = tmp_path / "order.txt"
    order.write_bytes("café.png\na.png\n".encode("latin-1"))
    with pytest.raises(ImageError, match=r"order.txt', line 1: .* not valid UTF-8; save the order file as UTF-8"):
        find_images(root, order=order)
    order.write_bytes("café.png\na.png\n".encode())
    assert [i.path for i in find_images(root, order=order)] == ["café.png", "a.png"]
    # a Latin-1 order file naming a Latin-1 file name matches it byte for byte
    os.rename(root / "café.png", os.path.join(os.fsencode(root), "café.png".encode("latin-1")))
    order.write_bytes("café.png\na.png\n".encode("latin-1"))
    assert [i.path for i in find_images(root, order=order)] == ["caf\udce9.png", "a.png"]


def test_a_planted_file_in_the_torchvision_cache_cannot_run_code(tmp_path, monkeypatch):
    """torchvision's builders unpickle checkpoints by default; visreps loads them with weights_only=True."""
    import pathlib

    import torch

    from visreps.models.torchvision import _checkpoint_path, resolve_weights

    class Payload:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    marker = tmp_path / "ran"
    monkeypatch.setenv("VISREPS_CACHE", str(tmp_path / "cache"))
    import visreps.cache

    monkeypatch.setattr(visreps.cache, "_override", {})
    path = _checkpoint_path(resolve_weights("alexnet"))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"x": Payload()}, path)
    with pytest.raises(visreps.errors.WeightsError, match="as a plain state_dict.*delete the file"):
        visreps.load_model("torchvision:alexnet")
    assert not marker.exists()
