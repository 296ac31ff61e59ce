"""Issue 19, part C: models, features and extraction keep their promises under hostile input.

Each test reproduces one finding of the issue (its number in the test's name or docstring) with files
the test writes itself: tiny ``transformers`` models saved with ``save_pretrained``, DreamSim zips with
hand-written members, a tiny torch network whose weights are NaN, fabricated gLocal transforms.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import visreps
from conftest import write_images
from visreps import storage
from visreps.cache import set_cache_dir, set_offline
from visreps.cli import main
from visreps.errors import DamagedOutputError, ImageError, VisrepsError, WeightsError
from visreps.models import Preprocessing, load_model

PREP = Preprocessing(resize=20, crop=16)


@pytest.fixture
def cache(tmp_path):
    set_cache_dir(tmp_path / "cache")
    set_offline(True)
    yield tmp_path / "cache"
    set_cache_dir(None)
    set_offline(None)


def one_line(e: BaseException) -> str:
    msg = str(e)
    assert "\n" not in msg and "Traceback" not in msg, msg
    return msg


def cli(*args) -> tuple[int, str]:
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r.exit_code, r.output


def net(nan: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    m = torch.nn.Sequential(
        OrderedDict(
            conv=torch.nn.Conv2d(3, 4, 3, padding=1),
            relu=torch.nn.ReLU(),
            avgpool=torch.nn.AdaptiveAvgPool2d(1),
            flat=torch.nn.Flatten(),
            fc=torch.nn.Linear(4, 5),
        )
    ).eval()
    if nan:
        with torch.no_grad():
            m.fc.weight.fill_(float("nan"))
    return m


def extract(model, root, out=None, **kw):
    kw.setdefault("layers", ["avgpool", "fc"])
    return visreps.extract(model, root, out=out, preprocessing=PREP, progress=False, num_workers=0, **kw)


@pytest.fixture
def images(tmp_path) -> Path:
    root = tmp_path / "images"
    write_images(root, [f"im{i}.png" for i in range(5)], size=(24, 20))
    return root


# --------------------------------------------------------------------------- DreamSim (10, 21)


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_10_dreamsim_zips_of_one_name_never_share_extracted_members(cache, tmp_path):
    from visreps.models import dreamsim as vds

    member = "clip_vitb32_single_lora/adapter_config.json"
    a = json.dumps({"r": 16, "lora_alpha": 32}).encode()
    b = json.dumps({"r": 16, "lora_alpha": 64}).encode()
    assert len(a) == len(b)  # same size: the old cache reused a's member for b
    za = _zip(tmp_path / "one" / "dreamsim_clip_vitb32_checkpoint.zip", {member: a})
    zb = _zip(tmp_path / "two" / "dreamsim_clip_vitb32_checkpoint.zip", {member: b})
    variant = vds.VARIANTS["clip_vitb32"]
    ra = vds._Release("dreamsim:clip_vitb32", variant, za)
    assert ra.member(member).read_bytes() == a
    rb = vds._Release("dreamsim:clip_vitb32", variant, zb)
    got = rb.member(member)
    assert got.read_bytes() == b  # the second zip's adapter, not the first one's
    assert rb.record["sha256"] == hashlib.sha256(zb.read_bytes()).hexdigest()
    assert rb.record["sha256"][:16] in str(got.parent)  # keyed by the content of the zip actually used


def test_21_dreamsim_adapter_config_not_json_is_one_line_naming_it(cache, tmp_path):
    z = _zip(
        tmp_path / "dreamsim_clip_vitb32_checkpoint.zip",
        {
            "clip_vitb32_pretrain.pth.tar": b"not loaded: the config is read first",
            "clip_vitb32_single_lora/adapter_config.json": b"{r: 16, lora_alpha",
            "clip_vitb32_single_lora/adapter_model.safetensors": b"x",
        },
    )
    with pytest.raises(WeightsError) as e:
        load_model("dreamsim:clip_vitb32", weights=z)
    msg = one_line(e.value)
    assert "adapter_config.json" in msg and "not valid JSON" in msg and str(z) in msg


# --------------------------------------------------------------------------- hf: folders (11, 22, 23, 24)

tr = pytest.importorskip("transformers")
SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
IMAGE = {"image_size": 32, "patch_size": 8}


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("vit")
    tr.ViTModel(tr.ViTConfig(**SMALL, **IMAGE)).save_pretrained(folder)
    return folder


def _copy_config(vit_folder: Path, dest: Path) -> Path:
    dest.mkdir()
    shutil.copy(vit_folder / "config.json", dest / "config.json")
    return dest


def test_11_hf_weights_sharing_no_key_are_refused(vit_folder, tmp_path):
    from safetensors.torch import save_file

    folder = _copy_config(vit_folder, tmp_path / "nokey")
    save_file({"encoder.block.0.weight": torch.zeros(3)}, folder / "model.safetensors")
    with pytest.raises(WeightsError) as e:
        load_model(f"hf:{folder}")
    msg = one_line(e.value)
    assert str(folder / "model.safetensors") in msg and "not pretrained" in msg and "(38 in all)" in msg


def test_11_hf_weights_missing_a_block_are_refused(vit_folder, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "missing"
    shutil.copytree(vit_folder, folder)
    sd = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in sd.items() if ".1." not in k}, folder / "model.safetensors")
    with pytest.raises(WeightsError, match=r"lack 16 parameter\(s\)") as e:
        load_model(f"hf:{folder}")
    assert "layers.1." in one_line(e.value)


def test_11_hf_classifier_checkpoint_lacks_only_the_documented_pooler(tmp_path):
    torch.manual_seed(0)
    clf = tr.ViTForImageClassification(tr.ViTConfig(**SMALL, **IMAGE, num_labels=3))
    clf.save_pretrained(tmp_path / "clf")
    lm = load_model(f"hf:{tmp_path / 'clf'}")
    assert lm.weights["kind"] == "pretrained"
    assert lm.weights["newly_initialized"] == ["pooler.dense.bias", "pooler.dense.weight"]
    own = lm.module.state_dict()
    for k, v in clf.vit.state_dict().items():  # every other parameter is the checkpoint's
        assert torch.equal(own[k], v), k


def test_22_hf_weights_of_another_width(vit_folder, tmp_path):
    folder = tmp_path / "wide"
    torch.manual_seed(0)
    tr.ViTModel(tr.ViTConfig(**{**SMALL, "hidden_size": 48}, **IMAGE)).save_pretrained(folder)
    shutil.copy(vit_folder / "config.json", folder / "config.json")
    with pytest.raises(WeightsError) as e:
        load_model(f"hf:{folder}")
    msg = one_line(e.value)
    assert str(folder / "model.safetensors") in msg and "other sizes" in msg and "config.json" in msg


def test_22_hf_truncated_safetensors(vit_folder, tmp_path):
    folder = tmp_path / "trunc"
    shutil.copytree(vit_folder, folder)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError) as e:
        load_model(f"hf:{folder}")
    msg = one_line(e.value)
    assert str(folder / "model.safetensors") in msg and "SafetensorError" in msg and "truncated" in msg


class _Payload:
    marker = ""

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_22_hf_pickled_bin_is_refused_and_never_run(vit_folder, tmp_path, images):
    folder = _copy_config(vit_folder, tmp_path / "pickled")
    payload = _Payload()
    payload.marker = str(tmp_path / "payload_ran")
    torch.save({"x": payload}, folder / "pytorch_model.bin")
    with pytest.raises(WeightsError) as e:
        load_model(f"hf:{folder}")
    msg = one_line(e.value)
    assert str(folder / "pytorch_model.bin") in msg and "arbitrary code" in msg and "Weights only" not in msg
    assert not (tmp_path / "payload_ran").exists()
    code, out = cli("extract", f"hf:{folder}", images, "--layers", "pooler", "--out", tmp_path / "o")
    assert code == 2 and out.count("\n") == 1 and "pytorch_model.bin" in out


def test_23_hf_text_config_is_named_a_text_model(tmp_path):
    tr.BertModel(tr.BertConfig(**SMALL, vocab_size=50)).save_pretrained(tmp_path / "bert")
    with pytest.raises(VisrepsError) as e:
        load_model(f"hf:{tmp_path / 'bert'}")
    msg = one_line(e.value)
    assert "model_type 'bert'" in msg and "is a text model" in msg and str(tmp_path / "bert") in msg


def test_24_hf_folder_weights_file_points_to_the_folder(vit_folder):
    with pytest.raises(WeightsError) as e:
        load_model(f"hf:{vit_folder}", weights=vit_folder / "model.safetensors")
    msg = one_line(e.value)
    assert msg.endswith(f"load its folder as hf:{vit_folder} (without --weights)")


# --------------------------------------------------------------------------- file:DIR (25)


def test_25_file_directory_says_it_is_a_directory(tmp_path, vit_folder):
    d = tmp_path / "weights_dir"
    d.mkdir()
    torch.save(net().state_dict(), d / "net.pt")
    with pytest.raises(WeightsError) as e:
        load_model(f"file:{d}", allow_pickle=True)
    msg = one_line(e.value)
    assert "is a directory" in msg and "does not exist" not in msg and f"file:{d / 'net.pt'}" in msg
    with pytest.raises(WeightsError, match=f"load it as hf:{vit_folder}"):
        load_model(f"file:{vit_folder}")
    with pytest.raises(WeightsError, match="is a directory, not a weights file"):
        load_model("torchvision:alexnet", pretrained=False, weights=d)


# --------------------------------------------------------------------------- images that cannot be read (30)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs symbolic links and FIFOs (POSIX)")
def test_30_dangling_link_loop_and_fifo_are_never_skipped_silently(tmp_path, images):
    (images / "dangling.jpg").symlink_to(images / "gone.jpg")
    (images / "loop_a.jpg").symlink_to(images / "loop_b.jpg")
    (images / "loop_b.jpg").symlink_to(images / "loop_a.jpg")
    os.mkfifo(images / "x.jpg")  # opening it would block: it must never be opened
    from visreps.data import find_images

    listed = [i.path for i in find_images(images)]
    assert {"dangling.jpg", "loop_a.jpg", "loop_b.jpg", "x.jpg"} <= set(listed) and len(listed) == 9
    with pytest.raises(ImageError) as e:
        extract(net(), images, tmp_path / "strict")
    assert "dangling.jpg" in one_line(e.value) and "symbolic link to a missing file" in str(e.value)
    res = extract(net(), images, tmp_path / "skip", skip_bad_images=True)
    assert len(res.manifest) == 5
    skipped = {s["path"]: s["error"] for s in res.metadata["images"]["skipped"]}
    assert "symbolic link to a missing file" in skipped["dangling.jpg"]
    assert "symbolic link loop" in skipped["loop_a.jpg"] and "symbolic link loop" in skipped["loop_b.jpg"]
    assert "FIFO" in skipped["x.jpg"] and "not opened" in skipped["x.jpg"]
    # an order file naming the FIFO: listed, then refused when read (not "does not exist")
    with pytest.raises(ImageError, match=r"x\.jpg.*FIFO"):
        extract(net(), images, None, order=["im0.png", "x.jpg"])


# --------------------------------------------------------------------------- non-finite features (12)


def test_12_nan_weights_refused_at_write_time_folder_left_unfinished(tmp_path, images):
    out = tmp_path / "nan"
    with pytest.raises(VisrepsError) as e:
        extract(net(nan=True), images, out)
    msg = one_line(e.value)
    assert "layer 'fc'" in msg and "image 'im0.png' (row 0)" in msg and "non-finite value (nan)" in msg
    assert not (out / "metadata.json").exists() and not (out / "fc.npy").exists()
    partial = json.loads((out / "metadata.partial.json").read_text())
    assert partial["status"] == "failed" and "non-finite" in partial["error"]
    with pytest.raises(VisrepsError, match="not complete|unfinished"):
        visreps.load_features(out)
    with pytest.raises(VisrepsError, match="layer 'fc' gives a non-finite value"):  # in memory too
        extract(net(nan=True), images, None)


class _InfForWhite(torch.nn.Module):
    """Per image the mean of each channel, and inf for a white image (normalised pixels > 1.5)."""

    def forward(self, x):
        m = x.mean(dim=(2, 3))
        return torch.where(m.mean(dim=1, keepdim=True) > 1.5, torch.full_like(m, float("inf")), m)


def test_12_inf_in_a_later_batch_names_that_image_and_keeps_earlier_rows(tmp_path, images):
    from PIL import Image

    Image.new("RGB", (24, 20), (255, 255, 255)).save(images / "im3.png")
    out = tmp_path / "inf"
    m = torch.nn.Sequential(OrderedDict(blow=_InfForWhite()))
    with pytest.raises(
        VisrepsError, match=r"layer 'blow' gives a non-finite value \(inf\) for image 'im3\.png' \(row 3\)"
    ):
        extract(m, images, out, layers=["blow"], batch_size=2)
    progress = json.loads((out / "progress.partial.json").read_text())
    assert progress["rows"] == 2 and progress["next_image"] == 2  # the first batch is kept: --resume continues


def _nan_folder(tmp_path, images, monkeypatch, name="old", fmt="npy") -> Path:
    """A complete folder holding NaN, as visreps wrote it before each batch was checked."""
    with monkeypatch.context() as m:
        m.setattr(storage.sinks, "check_finite", lambda *a, **k: None)
        extract(net(nan=True), images, tmp_path / name, format=fmt)
    return tmp_path / name


def test_12_verify_reports_non_finite_values(tmp_path, images, monkeypatch):
    folder = _nan_folder(tmp_path, images, monkeypatch)
    with pytest.raises(DamagedOutputError) as e:
        visreps.verify(folder)
    msg = one_line(e.value)
    assert "layer 'fc'" in msg and str(folder) in msg and "image 'im0.png', row 0" in msg
    code, out = cli("verify", folder)
    assert code == 2 and "non-finite" in out


def test_27_analysis_of_a_nan_layer_names_folder_and_layer(tmp_path, images, monkeypatch):
    write_images(images, [f"im{i}.png" for i in range(5, 10)], seed=1)  # 10 images: enough for 2 folds
    folder = _nan_folder(tmp_path, images, monkeypatch)
    good = extract(net(), images, tmp_path / "good").folder
    for args in (
        ("rsa", folder, "--layers", "fc", "--out", tmp_path / "rsa"),
        ("cka", good, folder),
        ("compare", f"{folder}::fc", f"{good}::fc", "--out", tmp_path / "cmp.csv"),
    ):
        code, out = cli(*args)
        assert code == 2 and out.count("\n") == 1, out
        assert str(folder / "fc.npy") in out and "NaN" in out, out
    names = [f"im{i}.png" for i in range(10)]
    np.savez(tmp_path / "resp.npz", responses=np.random.default_rng(0).standard_normal((10, 3)), images=names)
    with pytest.raises(VisrepsError) as e:
        visreps.encode(str(folder), str(tmp_path / "resp.npz"), layers=["fc"], folds=2)
    assert f"layer 'fc' of {str(folder)!r}" in one_line(e.value) and "NaN" in str(e.value)
    h5 = _nan_folder(tmp_path, images, monkeypatch, name="old_h5", fmt="hdf5")  # arrays in memory: no file to name
    code, out = cli("rsa", h5, "--layers", "fc", "--out", tmp_path / "rsa_h5")
    assert code == 2 and f"layer 'fc' of {str(h5)!r}" in out and "NaN" in out, out


# --------------------------------------------------------------------------- the manifest's hash (13)


def test_13_a_changed_manifest_is_refused_by_readers(tmp_path, images):
    folder = extract(net(), images, tmp_path / "f").folder
    man = folder / "manifest.csv"
    lines = man.read_text().splitlines()
    row1, row2 = lines[1].split(",", 1)[1], lines[2].split(",", 1)[1]
    lines[1], lines[2] = f"0,{row2}", f"1,{row1}"  # two rows swapped: the same size
    before = man.stat().st_size
    man.write_text("\n".join(lines) + "\n")
    assert man.stat().st_size == before
    with pytest.raises(DamagedOutputError) as e:
        visreps.load_features(folder)
    msg = one_line(e.value)
    assert str(man) in msg and "has changed" in msg and f"visreps verify {folder}" in msg
    code, out = cli("rsa", folder, "--out", tmp_path / "rsa")
    assert code == 2 and "manifest.csv" in out and "has changed" in out


# --------------------------------------------------------------------------- align (12, 14)


def _transform_file(path: Path, d: int = 4, **override) -> Path:
    rng = np.random.default_rng(0)
    arrays = {
        "weights": (rng.standard_normal((d, d)) / 2).astype(np.float32),
        "bias": rng.standard_normal(d).astype(np.float32),
        "mean": np.asarray(0.1, dtype=np.float32),
        "std": np.asarray(0.7, dtype=np.float32),
        **override,
    }
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def test_12_align_refuses_zero_std_and_nan_weights_before_writing(tmp_path, images):
    from visreps.analysis.align import align

    folder = extract(net(), images, tmp_path / "f").folder
    zero = _transform_file(tmp_path / "zero.npz", std=np.asarray(0.0, dtype=np.float32))
    w = np.ones((4, 4), dtype=np.float32)
    w[2, 1] = np.nan
    nan = _transform_file(tmp_path / "nan.npz", weights=w)
    for tf, var in ((zero, "'std'"), (nan, "'weights'")):
        out = tmp_path / f"out_{tf.stem}"
        with pytest.raises(WeightsError) as e:
            align(folder, model="torchvision:resnet18", layer="avgpool", transform_file=tf, out=out)
        msg = one_line(e.value)
        assert str(tf) in msg and f"variable {var}" in msg
        assert not out.exists()  # refused before the first file


def _random_folder(tmp_path, images, d=4) -> Path:
    """A folder whose metadata says random weights, with a layer 'avgpool' of d features."""
    m = torch.nn.Sequential(OrderedDict(conv=torch.nn.Conv2d(3, d, 3), avgpool=torch.nn.AdaptiveAvgPool2d(1)))
    folder = extract(m, images, tmp_path / "rand", layers=["avgpool"]).folder
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["weights"]["kind"] == "user"
    meta["weights"] = {"kind": "random", "seed": 3}  # as `visreps extract torchvision:resnet18 --random` records
    (folder / "metadata.json").write_text(json.dumps(meta))
    return folder


def test_14_align_refuses_random_weights_unless_forced(tmp_path, images):
    from visreps.analysis.align import align

    folder = _random_folder(tmp_path, images)
    tf = _transform_file(tmp_path / "t.npz")
    with pytest.raises(VisrepsError) as e:
        align(folder, model="torchvision:resnet18", layer="avgpool", transform_file=tf, out=tmp_path / "a")
    msg = one_line(e.value)
    assert "randomly initialised weights (seed 3)" in msg and "--force" in msg and not (tmp_path / "a").exists()
    code, out = cli("align", folder, "--model", "torchvision:resnet18", "--layers", "avgpool",
                    "--transform-file", tf, "--out", tmp_path / "b")  # fmt: skip
    assert code == 2 and "--force" in out
    res = align(
        folder, model="torchvision:resnet18", layer="avgpool", transform_file=tf, out=tmp_path / "c", force=True
    )
    assert res.metadata["transform"]["avgpool"]["forced_onto_random_weights"] is True
    X = np.asarray(visreps.load_features(folder)["avgpool"]).reshape(5, -1).astype(np.float64)
    t = np.load(tf)
    expected = ((X - float(t["mean"])) / float(t["std"])) @ t["weights"].astype(np.float64) + t["bias"]
    np.testing.assert_allclose(res["avgpool"], expected, rtol=1e-5, atol=1e-6)
