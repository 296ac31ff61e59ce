"""Image sources beyond folders: HDF5 and .npy image arrays, text lists, one image file (issue 24)."""

import hashlib
import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import visreps
from visreps.cli import main
from visreps.errors import ImageError
from visreps.image_sources import ArraySource, open_source

N = 5


@pytest.fixture
def pixels():
    return np.random.default_rng(3).integers(0, 256, size=(N, 30, 40, 3), dtype=np.uint8)


@pytest.fixture
def folder(tmp_path, pixels):
    """The same images as PNG files (lossless), named so that their sorted order is the array's order."""
    root = tmp_path / "folder"
    root.mkdir()
    for i, a in enumerate(pixels):
        Image.fromarray(a).save(root / f"img{i}.png")
    return root


def _h5(path, **arrays):
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v, chunks=(1, *v.shape[1:]) if v.ndim == 4 and len(v) else None)
    return path


def _kw(small_prep, **more):
    return dict(layers=["3", "7"], preprocessing=small_prep, progress=False, batch_size=2, num_workers=0, **more)


def _manifest(out):
    lines = (out / "manifest.csv").read_text().splitlines()
    assert lines[0] == "index,path,label,blake2b"
    return [line.split(",") for line in lines[1:]]


def _digest(a):
    return hashlib.blake2b(np.ascontiguousarray(a).tobytes(), digest_size=16).hexdigest()


@pytest.mark.parametrize("kind", ["hdf5", "npy"])
def test_array_gives_the_same_features_as_the_folder(kind, tiny_net, small_prep, tmp_path, pixels, folder):
    if kind == "hdf5":
        src, name = _h5(tmp_path / "stimuli.hdf5", imgBrick=pixels), "imgBrick"
    else:
        src, name = tmp_path / "stimuli.npy", "stimuli.npy"
        np.save(src, pixels)
    ref = visreps.extract(tiny_net, folder, out=tmp_path / "ref", **_kw(small_prep))
    kw = _kw(small_prep, out=tmp_path / "o")
    kw["num_workers"] = 2  # each DataLoader worker opens the file itself
    res = visreps.extract(tiny_net, src, **kw)
    for layer in ("3", "7"):  # identical pixels, identical batches: identical numbers
        np.testing.assert_array_equal(np.asarray(res[layer]), np.asarray(ref[layer]))
    assert res.paths == [f"{name}/{i}" for i in range(N)]
    rows = _manifest(tmp_path / "o")
    assert rows == [[str(i), f"{name}/{i}", "", _digest(pixels[i])] for i in range(N)]
    meta = json.loads((tmp_path / "o" / "metadata.json").read_text())
    assert meta["images"]["root"] == str(src.resolve())
    assert meta["images"]["source"] == {"kind": kind, "key": "imgBrick" if kind == "hdf5" else None, "n": N}
    assert "source" not in json.loads((tmp_path / "ref" / "metadata.json").read_text())["images"]


def test_array_is_read_by_index_not_loaded_whole(tmp_path, pixels):
    src = open_source(_h5(tmp_path / "s.h5", imgBrick=pixels))
    assert isinstance(src, ArraySource)
    assert src._handle is None  # closed after the checks
    img, digest = src.read(src.items()[3])
    assert isinstance(src._array(), h5py.Dataset)  # an open dataset, not an array in memory
    np.testing.assert_array_equal(np.asarray(img), pixels[3])
    assert digest.hex() == _digest(pixels[3])
    npy = tmp_path / "s.npy"
    np.save(npy, pixels)
    s2 = open_source(npy)
    assert isinstance(s2, ArraySource)
    assert isinstance(s2._array(), np.memmap)


def test_list_file_and_single_image(tiny_net, small_prep, tmp_path, pixels, folder):
    ref = visreps.extract(tiny_net, folder, **_kw(small_prep))
    lists = tmp_path / "lists"
    lists.mkdir()
    listing = lists / "images.txt"
    # relative to the list file's folder, absolute, comments and blank lines ignored; any order
    listing.write_text(f"# my stimuli\n../folder/img4.png\n\n{folder / 'img1.png'}\n../folder/img2.png\n")
    res = visreps.extract(tiny_net, listing, out=tmp_path / "o", **_kw(small_prep))
    assert res.paths == ["../folder/img4.png", str(folder / "img1.png"), "../folder/img2.png"]
    for layer in ("3", "7"):
        np.testing.assert_allclose(res[layer], np.asarray(ref[layer])[[4, 1, 2]], rtol=1e-5, atol=1e-6)
    digest = hashlib.blake2b((folder / "img4.png").read_bytes(), digest_size=16).hexdigest()
    assert _manifest(tmp_path / "o")[0] == ["0", "../folder/img4.png", "", digest]
    one = visreps.extract(tiny_net, folder / "img2.png", **_kw(small_prep))
    assert one.paths == ["img2.png"]
    np.testing.assert_allclose(one["7"], np.asarray(ref["7"])[[2]], rtol=1e-5, atol=1e-6)
    listing.write_text("../folder/img4.png\nmissing.png\n")
    with pytest.raises(ImageError, match=r"line 2: 'missing.png' does not exist"):
        visreps.extract(tiny_net, listing, **_kw(small_prep))
    listing.write_text("../folder/img4.png\n../folder/img4.png\n")
    with pytest.raises(ImageError, match="listed twice"):
        visreps.extract(tiny_net, listing, **_kw(small_prep))


def test_images_key_needed_when_the_file_holds_several_arrays(tiny_net, small_prep, tmp_path, pixels, folder):
    src = _h5(tmp_path / "nsd.hdf5", imgBrick=pixels, labels=np.arange(N))
    with pytest.raises(ImageError, match=r"several arrays \(imgBrick, labels\); choose one with --images-key"):
        visreps.extract(tiny_net, src, **_kw(small_prep))
    with pytest.raises(ImageError, match=r"no array 'nope'; it holds: imgBrick, labels"):
        visreps.extract(tiny_net, src, images_key="nope", **_kw(small_prep))
    res = visreps.extract(tiny_net, src, images_key="imgBrick", **_kw(small_prep))
    ref = visreps.extract(tiny_net, folder, **_kw(small_prep))
    np.testing.assert_array_equal(res["7"], ref["7"])
    r = CliRunner().invoke(main, ["extract", "torchvision:alexnet", str(src), "-l", "x", "--out", str(tmp_path / "c")])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and "--images-key" in r.output, r.output
    with pytest.raises(ImageError, match="applies to HDF5 files"):
        visreps.extract(tiny_net, folder, images_key="imgBrick", **_kw(small_prep))


@pytest.mark.parametrize(
    ("array", "what"),
    [
        (np.zeros((2, 8, 8, 3), np.float32), r"shape \(2, 8, 8, 3\) and dtype float32"),
        (np.zeros((2, 8, 8), np.uint8), r"shape \(2, 8, 8\) and dtype uint8"),
        (np.zeros((2, 3, 8, 8), np.uint8), r"shape \(2, 3, 8, 8\)"),
        (np.zeros((0, 8, 8, 3), np.uint8), "holds no images"),
    ],
)
def test_wrong_dtype_or_shape_is_refused_in_one_line(array, what, tmp_path):
    h5 = _h5(tmp_path / "bad.h5", images=array)
    with pytest.raises(ImageError, match=what) as e:
        open_source(h5)
    assert "'images'" in str(e.value) and "\n" not in str(e.value)
    npy = tmp_path / "bad.npy"
    np.save(npy, array)
    r = CliRunner().invoke(main, ["extract", "torchvision:alexnet", str(npy), "-l", "x", "--out", str(tmp_path / "c")])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and "bad.npy" in r.output, r.output


def test_unknown_kind_of_file_is_refused(tmp_path):
    f = tmp_path / "stimuli.csv"
    f.write_text("a,b\n")
    with pytest.raises(ImageError, match="not an image source visreps reads"):
        open_source(f)
    with pytest.raises(ImageError, match=r"image file '.*nsd\.hdf5' does not exist"):
        open_source(tmp_path / "nsd.hdf5")
    with pytest.raises(ImageError, match="image folder .* does not exist"):
        open_source(tmp_path / "stimuli").items()


def test_order_on_an_hdf5_source(tiny_net, small_prep, tmp_path, pixels, folder):
    src = _h5(tmp_path / "stimuli.h5", imgBrick=pixels)
    order = tmp_path / "order.txt"
    order.write_text("imgBrick/3\n# comment\nimgBrick/0\nimgBrick/4\n")
    res = visreps.extract(tiny_net, src, order=order, out=tmp_path / "o", **_kw(small_prep))
    ref = visreps.extract(tiny_net, folder, order=["img3.png", "img0.png", "img4.png"], **_kw(small_prep))
    np.testing.assert_array_equal(res["7"], ref["7"])
    assert res.paths == ["imgBrick/3", "imgBrick/0", "imgBrick/4"]
    assert [r[3] for r in _manifest(tmp_path / "o")] == [_digest(pixels[i]) for i in (3, 0, 4)]
    order.write_text("imgBrick/3\nimgBrick/9\n")
    with pytest.raises(ImageError, match=r"line 2: 'imgBrick/9' is not an image of .*rows are named like 'imgBrick/0'"):
        visreps.extract(tiny_net, src, order=order, **_kw(small_prep))
    order.write_text("imgBrick/3\nimgBrick/3\n")
    with pytest.raises(ImageError, match="listed twice"):
        visreps.extract(tiny_net, src, order=order, **_kw(small_prep))


def test_resume_after_an_interrupted_run(tiny_net, small_prep, tmp_path, pixels):
    src = _h5(tmp_path / "stimuli.h5", imgBrick=pixels)
    full = visreps.extract(tiny_net, src, **_kw(small_prep))
    calls = {"n": 0}

    def boom(mod, inp, out):
        calls["n"] += 1
        if calls["n"] == 3:  # the dry run and one good batch, then stop
            raise KeyboardInterrupt

    hook = tiny_net[3].register_forward_hook(boom)
    out = tmp_path / "o"
    with pytest.raises(visreps.errors.ExtractionInterrupted):
        visreps.extract(tiny_net, src, out=out, **_kw(small_prep))
    hook.remove()
    assert json.loads((out / "metadata.partial.json").read_text())["images"]["n_done"] == 2
    res = visreps.extract(tiny_net, src, out=out, resume=True, **_kw(small_prep))
    for layer in ("3", "7"):
        np.testing.assert_array_equal(np.asarray(res[layer]), full[layer])
    assert [r[3] for r in _manifest(out)] == [_digest(a) for a in pixels]


def test_shards_of_an_npy_source_merge_to_the_whole(tiny_net, small_prep, tmp_path, pixels):
    src = tmp_path / "stimuli.npy"
    np.save(src, pixels)
    full = visreps.extract(tiny_net, src, **_kw(small_prep))
    shards = [tmp_path / "s1", tmp_path / "s2"]
    for i, s in enumerate(shards, 1):
        visreps.extract(tiny_net, src, out=s, shard=f"{i}/2", **_kw(small_prep))
    merged = visreps.merge_shards(tmp_path / "merged", shards)
    np.testing.assert_array_equal(np.asarray(merged["7"]), full["7"])
    assert merged.paths == [f"stimuli.npy/{i}" for i in range(N)]
    assert [r[3] for r in _manifest(tmp_path / "merged")] == [_digest(a) for a in pixels]


def test_source_travels_to_other_processes(tmp_path, pixels, small_prep):
    """Pickled (Ray tasks, spawned workers) without its open file; the Ray decoder reads through it."""
    import pickle

    from visreps.distributed import _decode_batch

    src = open_source(_h5(tmp_path / "s.h5", imgBrick=pixels))
    assert isinstance(src, ArraySource)
    src.read(src.items()[0])  # opened here
    copy = pickle.loads(pickle.dumps(src))
    assert copy._handle is None
    np.testing.assert_array_equal(np.asarray(copy.read(copy.items()[4])[0]), pixels[4])
    tf = small_prep.build()
    batch = {"i": np.array([0, 1]), "path": np.array(["imgBrick/2", "imgBrick/0"], dtype=object)}
    out = _decode_batch(batch, root=str(src.root), transform=tf, input_shape=(3, 16, 16), source=copy)
    assert out["err"].tolist() == ["", ""]
    np.testing.assert_array_equal(out["x"][0], tf(Image.fromarray(pixels[2])).numpy())
    assert out["hash"][1].tobytes().hex() == _digest(pixels[0])


def test_cli_extracts_an_hdf5_array_with_images_key(tiny_net, tmp_path, pixels):
    import torch

    src = _h5(tmp_path / "nsd.hdf5", imgBrick=pixels, labels=np.arange(N))
    model_file = tmp_path / "net.pt"
    torch.save(tiny_net, model_file)
    out = tmp_path / "cli"
    args = ["extract", f"file:{model_file}", str(src), "--images-key", "imgBrick", "-l", "7", "--out", str(out)]
    r = CliRunner().invoke(main, [*args, "--allow-pickle", "-q", "--workers", "0"])
    assert r.exit_code == 0, r.output
    res = visreps.load_features(out)
    api = visreps.extract(tiny_net, src, images_key="imgBrick", layers=["7"], progress=False, num_workers=0)
    assert res.paths == [f"imgBrick/{i}" for i in range(N)]
    np.testing.assert_allclose(np.asarray(res["7"]), api["7"], rtol=1e-5, atol=1e-6)


def test_work_dir_cache_keys_an_hdf5_source_by_its_pixels(tiny_net, small_prep, tmp_path, pixels):
    """The extract-then-analyse cache (visreps.workcache) takes an image array where it takes a folder."""
    from visreps.workcache import cached_extract, image_hashes

    src = _h5(tmp_path / "nsd.h5", imgBrick=pixels, labels=np.arange(N))
    assert image_hashes(src, images_key="imgBrick") == [(f"imgBrick/{i}", _digest(pixels[i])) for i in range(N)]
    opts = {"preprocessing": small_prep, "images_key": "imgBrick", "num_workers": 0}
    kw = dict(layers=["7"], work_dir=tmp_path / "work", options=opts, model=tiny_net)
    first = cached_extract("tiny", src, **kw)
    again = cached_extract("tiny", src, **kw)
    assert first.extracted and not again.extracted
    assert again.folder == first.folder and again.load().paths == [f"imgBrick/{i}" for i in range(N)]
    with h5py.File(src, "r+") as f:  # one image changed: a new entry
        f["imgBrick"][2] = 255 - pixels[2]
    assert cached_extract("tiny", src, **kw).folder != first.folder
