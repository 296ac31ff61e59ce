"""The Ray engine gives the single-process result: same rows in the same order, equal arrays.

A local Ray instance with 2 CPUs (no dashboard) is started once for the module and shut down at
the end; the pipeline uses 2 actors. Without Ray, the engine says which extra to install.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import visreps
from conftest import write_images
from visreps.errors import ImageError, MissingExtraError

PREP = {"resize": 40, "crop": 32}

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own, when it copies its context


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="warning", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray") / "images"
    names = [f"{'cats' if j % 3 else 'dogs'}/img_{j:02d}.{'png' if j % 2 else 'jpg'}" for j in range(16)]
    write_images(root, names[:8], size=(48, 36), seed=1)
    write_images(root, names[8:], size=(36, 50), seed=2)
    return root


def _close(actual, expected, *, rtol=1e-5, atol=None, err_msg=""):
    """Equal to float32 rounding. Ray actors are other processes with other thread counts than the single-process
    run (and the resumed run starts mid-way), and oneDNN picks kernels by batch shape, threads and CPU, so bit
    equality is not promised; ``atol`` defaults to 1e-6 of the largest value, for values near 0."""
    expected = np.asarray(expected)
    if atol is None:
        atol = 1e-6 * float(np.abs(expected).max())
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=rtol, atol=atol, err_msg=err_msg)


def _same_output(a, b, *, rtol=1e-5, atol=None):
    """Two output folders hold the same rows, in the same order, with equal arrays (to float32 rounding)."""
    fa, fb = a.folder, b.folder
    pd.testing.assert_frame_equal(pd.read_csv(fa / "manifest.csv"), pd.read_csv(fb / "manifest.csv"))
    assert sorted(p.name for p in fa.iterdir()) == sorted(p.name for p in fb.iterdir())
    assert a.layers == b.layers
    for k in a.layers:
        assert a[k].shape == b[k].shape, k
        _close(b[k], a[k], rtol=rtol, atol=atol, err_msg=k)
    ma = json.loads((fa / "metadata.json").read_text())
    mb = json.loads((fb / "metadata.json").read_text())
    for field in (
        "status",
        "model",
        "weights",
        "preprocessing",
        "layers_requested",
        "layers",
        "format",
        "options_identity",
        "images_identity",
    ):
        assert ma[field] == mb[field], field
    for field in ("root", "n_found", "n_extracted", "skipped", "image_list_sha256"):
        assert ma["images"][field] == mb["images"][field], field
    return ma, mb


def test_ray_engine_equals_single_process(ray_local, photos, tmp_path):
    kw = dict(
        layers=["layer2", "avgpool"],
        pretrained=False,
        seed=3,
        preprocessing=PREP,
        batch_size=4,
        progress=False,
        top_k=3,
    )
    local = visreps.extract("torchvision:resnet18", photos, out=tmp_path / "local", **kw)
    from visreps.distributed import extract_ray

    remote = extract_ray("torchvision:resnet18", photos, out=tmp_path / "ray", num_actors=2, **kw)
    assert len(remote.paths) == 16 and remote.paths == sorted(remote.paths)
    _, meta = _same_output(local, remote)
    assert meta["options"]["engine"] == "ray"
    assert meta["options"]["ray"]["actors"] == 2
    pl = pd.read_csv(tmp_path / "local" / "predictions.csv")
    pr = pd.read_csv(tmp_path / "ray" / "predictions.csv")
    assert list(pl["path"]) == list(pr["path"])
    np.testing.assert_allclose(pr[["prob_1", "prob_2", "prob_3"]], pl[["prob_1", "prob_2", "prob_3"]], rtol=1e-5)


@pytest.fixture(scope="module")
def with_bad(photos, tmp_path_factory):
    """The photos plus an empty file and a file that is not an image, inside the sorted order."""
    import shutil

    root = tmp_path_factory.mktemp("ray_bad") / "images"
    shutil.copytree(photos, root)
    (root / "cats" / "img_04b.png").write_bytes(b"")
    (root / "dogs" / "img_00a.jpg").write_bytes(b"this is not a jpeg" * 10)
    return root


def test_ray_skips_bad_images_like_single_process(ray_local, with_bad, tiny_net, small_prep, tmp_path):
    from visreps.distributed import extract_ray

    kw = dict(layers=["3", "7"], preprocessing=small_prep, batch_size=3, progress=False, skip_bad_images=True)
    local = visreps.extract(tiny_net, with_bad, out=tmp_path / "local", **kw)
    remote = extract_ray(tiny_net, with_bad, out=tmp_path / "ray", num_actors=1, **kw)
    ma, mb = _same_output(local, remote)
    assert len(remote.paths) == 16
    assert [s["path"] for s in mb["images"]["skipped"]] == ["cats/img_04b.png", "dogs/img_00a.jpg"]


def test_ray_stops_on_bad_image_with_the_single_process_message(ray_local, with_bad, tiny_net, small_prep, tmp_path):
    from visreps.distributed import extract_ray

    kw = dict(layers=["7"], preprocessing=small_prep, batch_size=4, progress=False)
    with pytest.raises(ImageError) as local:
        visreps.extract(tiny_net, with_bad, out=tmp_path / "local", **kw)
    with pytest.raises(ImageError) as remote:
        extract_ray(tiny_net, with_bad, out=tmp_path / "ray", num_actors=1, **kw)
    assert str(remote.value) == str(local.value)
    assert "img_04b.png" in str(remote.value) and "--skip-bad-images" in str(remote.value)
    meta = json.loads((tmp_path / "ray" / "metadata.partial.json").read_text())
    assert meta["status"] == "failed"


def test_ray_resumes_a_run_interrupted_in_single_process(ray_local, photos, tiny_net, small_prep, tmp_path):
    """Resume goes through the same writer: the Ray engine continues a local run (txt: rows appended in order)."""
    from visreps.distributed import extract_ray

    kw = dict(layers=["3", "7"], preprocessing=small_prep, batch_size=4, progress=False, format="txt")
    full = visreps.extract(tiny_net, photos, out=tmp_path / "full", **kw)
    calls = {"n": 0}

    def stop(mod, inp, out):
        calls["n"] += 1
        if calls["n"] == 1 + 3:  # after the dry run and two batches
            raise KeyboardInterrupt

    h = tiny_net[7].register_forward_hook(stop)
    with pytest.raises(visreps.errors.ExtractionInterrupted):
        visreps.extract(tiny_net, photos, out=tmp_path / "cut", num_workers=0, **kw)
    h.remove()
    state = json.loads((tmp_path / "cut" / "progress.partial.json").read_text())
    assert 0 < state["next_image"] < 16
    res = extract_ray(tiny_net, photos, out=tmp_path / "cut", resume=True, num_actors=1, **kw)
    for k in ("3", "7"):
        _close(res[k], full[k])
    assert res.paths == full.paths


def test_ray_reads_an_hdf5_image_array(ray_local, tiny_net, small_prep, tmp_path):
    """An HDF5 image array (issue 24): Ray tasks open the file themselves; rows and hashes as single-process."""
    import h5py

    from visreps.distributed import extract_ray

    pixels = np.random.default_rng(5).integers(0, 256, size=(6, 30, 40, 3), dtype=np.uint8)
    with h5py.File(tmp_path / "stimuli.h5", "w") as f:
        f["imgBrick"] = pixels
    kw = dict(layers=["7"], preprocessing=small_prep, batch_size=4, progress=False)
    local = visreps.extract(tiny_net, tmp_path / "stimuli.h5", out=tmp_path / "local", **kw)
    remote = extract_ray(tiny_net, tmp_path / "stimuli.h5", out=tmp_path / "ray", num_actors=1, **kw)
    assert remote.paths == local.paths == [f"imgBrick/{i}" for i in range(6)]
    _close(remote["7"], local["7"])
    assert (tmp_path / "ray" / "manifest.csv").read_text() == (tmp_path / "local" / "manifest.csv").read_text()


def test_actor_errors_come_back_as_one_clean_error(ray_local, photos, tmp_path):
    """An error inside an actor (here: images of different sizes without a crop) is a VisrepsError with its message."""
    from visreps.distributed import extract_ray
    from visreps.errors import VisrepsError

    with pytest.raises(VisrepsError, match=r"different sizes .*set a crop"):
        extract_ray(
            "torchvision:resnet18",
            photos,
            layers=["avgpool"],
            out=tmp_path / "o",
            pretrained=False,
            preprocessing={"resize": 32, "crop": None},
            batch_size=16,
            progress=False,
            num_actors=1,
        )
    assert json.loads((tmp_path / "o" / "metadata.partial.json").read_text())["status"] == "failed"


def test_missing_ray_names_the_extra(monkeypatch, photos, tmp_path):
    from visreps.distributed import extract_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "ray.data", None)
    with pytest.raises(MissingExtraError, match=r"pip install visreps\[ray\]"):
        extract_ray("torchvision:resnet18", photos, layers=["avgpool"], out=tmp_path / "o", pretrained=False)
    assert not (tmp_path / "o").exists()  # nothing was loaded or written


def test_cli_engine_ray_without_ray(monkeypatch, photos, tmp_path):
    from click.testing import CliRunner

    from visreps.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)
    r = CliRunner().invoke(
        main,
        [
            "extract",
            "torchvision:resnet18",
            str(photos),
            "--layers",
            "avgpool",
            "--random",
            "--out",
            str(tmp_path / "o"),
            "--engine",
            "ray",
        ],
    )
    assert r.exit_code == 2
    assert "pip install visreps[ray]" in r.output and "Traceback" not in r.output


def test_cli_ray_options_need_engine_ray(photos, tmp_path):
    from click.testing import CliRunner

    from visreps.cli import main

    r = CliRunner().invoke(
        main,
        [
            "extract",
            "torchvision:resnet18",
            str(photos),
            "--layers",
            "avgpool",
            "--random",
            "--out",
            str(tmp_path / "o"),
            "--ray-actors",
            "4",
        ],
    )
    assert r.exit_code == 2 and "--engine ray" in r.output


def test_invalid_actor_count(photos, tmp_path):
    from visreps.distributed import extract_ray
    from visreps.errors import VisrepsError

    with pytest.raises(VisrepsError, match="num_actors must be a positive integer, got 0"):
        extract_ray("torchvision:resnet18", photos, layers=["avgpool"], out=tmp_path / "o", num_actors=0)


def test_unreachable_cluster_fails_fast():
    """Ray retries a dead address for minutes; visreps checks the port first (nothing listens on port 1)."""
    from visreps.distributed import connect
    from visreps.errors import VisrepsError

    class NotStarted:  # ray is neither imported nor started for this
        @staticmethod
        def is_initialized():
            return False

        @staticmethod
        def init(**kw):
            raise AssertionError("ray.init must not be reached")

    with pytest.raises(VisrepsError, match=r"cannot reach the Ray cluster at '127.0.0.1:1'.*ray start --head"):
        connect(NotStarted, "127.0.0.1:1")
    with pytest.raises(VisrepsError, match=r"Ray address 'host:port' is not valid"):
        connect(NotStarted, "host:port")


def test_ray_engine_reduces_in_its_actors(ray_local, photos, tmp_path):
    """--reduce srp:K with the Ray engine: the actors project (only reduced rows travel), same numbers as local."""
    kw = dict(layers=["layer2", "avgpool"], pretrained=False, seed=3, preprocessing=PREP, batch_size=4, progress=False)
    local = visreps.extract("torchvision:resnet18", photos, out=tmp_path / "local", reduce="srp:64", **kw)
    from visreps.distributed import extract_ray

    remote = extract_ray("torchvision:resnet18", photos, out=tmp_path / "ray", num_actors=2, reduce="srp:64", **kw)
    ma, mb = _same_output(local, remote)
    assert ma["reduce"] == mb["reduce"] and mb["reduce"]["layer2"]["method"] == "srp"
    assert remote["layer2"].shape == (16, 64) and remote["avgpool"].shape == (16, 64)


# --------------------------------------------------------------------------- visreps bench --engine ray


def _bench_spec(tmp_path, stimuli=None) -> dict:
    from conftest import REPO

    example = REPO / "examples" / "bench"
    layers = ["features.5", "classifier.5"]
    return {
        "images": str(stimuli or example / "stimuli"),
        "work_dir": str(tmp_path / "cache"),
        "device": "cpu",
        "models": [
            {"id": "torchvision:alexnet", "weights": "random", "seed": s, "layers": layers, "pool": "avg"}
            for s in (1, 2)
        ],
        "targets": [
            {"name": "hIT", "rdms": str(example / "hIT_subjects.npy")},
            {"name": "V4", "responses": str(example / "v4.npy")},
        ],
        "analysis": {"bootstrap": {"n": 50}, "encoding": {"folds": 3}},
    }


def test_bench_engine_ray_equals_local(ray_local, tmp_path, capsys):
    """Each model extracted in a Ray task into its own cache folder; the tables equal the local engine's."""
    local = visreps.bench(_bench_spec(tmp_path / "l"), out=tmp_path / "l" / "out", progress=False)
    remote = visreps.bench(_bench_spec(tmp_path / "r"), out=tmp_path / "r" / "out", engine="ray", progress=True)
    said = capsys.readouterr().err
    assert said.count("extracting as a Ray task (num_cpus=1)") == 2 and "alexnet (random, seed 2): extracted (" in said
    assert remote.extracted == local.extracted == ["alexnet (random, seed 1)", "alexnet (random, seed 2)"]
    assert [Path(c["folder"]).parent for c in remote.cache] == [tmp_path / "r" / "cache"] * 2
    assert [c["key"] for c in remote.cache] == [c["key"] for c in local.cache]  # the same requests, the same keys
    for c in remote.cache:
        assert json.loads((Path(c["folder"]) / "metadata.json").read_text())["status"] == "complete"
    for name in ("ranking", "layers"):
        a, b = getattr(local, name), getattr(remote, name)
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-4, atol=1e-6)
    again = visreps.bench(_bench_spec(tmp_path / "r"), out=tmp_path / "r" / "out2", engine="ray", progress=False)
    assert again.extracted == []  # all in the cache: no task


def test_bench_engine_ray_names_the_model_whose_task_failed(ray_local, tmp_path):
    """A task's error comes back as one line naming the first model (in spec order) whose task failed."""
    import shutil

    from conftest import REPO

    stimuli = tmp_path / "stimuli"
    shutil.copytree(REPO / "examples" / "bench" / "stimuli", stimuli)
    spec = _bench_spec(tmp_path, stimuli)
    bad = sorted(stimuli.rglob("*.png"))[3]
    bad.write_bytes(b"not an image")  # the same names (the targets still match), one file undecodable
    with pytest.raises(visreps.VisrepsError) as e:
        visreps.bench(spec, out=tmp_path / "out", engine="ray", progress=False)
    msg = str(e.value)
    assert msg.startswith("models[0] (alexnet (random, seed 1)): ") and bad.name in msg and "\n" not in msg
    assert msg.endswith("(1 other model(s) failed too)")
    assert not list((tmp_path / "cache").glob("*-*[!l]"))  # no finished cache folder: only .partial ones and keys
