"""gLocal transforms (visreps.analysis.align, ``visreps align``) against the formula computed by hand.

The transform files are fabricated in the published format of LukasMut/gLocal
(``transforms/<model>/<module>/transform.npz`` with ``weights`` (d × d) float32, ``bias`` (d,) float32
or absent, and the scalars ``mean`` and ``std``) and placed in a temporary visreps cache; THINGSvision's
formula ``((X − mean) / std) @ weights + bias`` is computed here in numpy.
"""

from __future__ import annotations

import importlib
import json
from collections import OrderedDict
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import visreps
from conftest import write_images
from visreps.analysis.align import GLOCAL_TRANSFORMS, align, find_transform
from visreps.cache import set_cache_dir, set_offline
from visreps.cli import main
from visreps.errors import LayerNotFoundError, VisrepsError, WeightsError

align_mod = importlib.import_module("visreps.analysis.align")
D = 2048  # resnet50 / avgpool: a transform whose sha256 is not pinned (the fabricated file is accepted)


@pytest.fixture
def cache(tmp_path):
    set_cache_dir(tmp_path / "cache")
    set_offline(True)
    yield tmp_path / "cache"
    set_cache_dir(None)
    set_offline(None)


def _transform(name: str):
    return next(t for t in GLOCAL_TRANSFORMS if t.model == name)


def _fabricate(path, d: int, *, bias: bool = True, seed: int = 0, scalar_dtype=np.float32) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {
        "weights": (rng.standard_normal((d, d)) / np.sqrt(d)).astype(np.float32),
        "mean": np.asarray(rng.standard_normal() * 0.1, dtype=scalar_dtype),
        "std": np.asarray(0.5 + rng.random(), dtype=scalar_dtype),
    }
    if bias:
        arrays["bias"] = rng.standard_normal(d).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # np.savez appends .npz to a str path; the file object keeps the name
        np.savez(f, **arrays)
    return arrays


def _by_hand(X, tf) -> np.ndarray:
    Z = (X.astype(np.float64) - np.float64(tf["mean"])) / np.float64(tf["std"])
    out = Z @ tf["weights"].astype(np.float64)
    if "bias" in tf:
        out = out + tf["bias"].astype(np.float64)
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """An output folder with a layer ``avgpool`` of 2048 features per image (a small random network)."""
    tmp_path = tmp_path_factory.mktemp("align")
    root = tmp_path / "images"
    write_images(root, [f"im{i}.png" for i in range(5)], size=(20, 20))
    torch.manual_seed(0)
    net = torch.nn.Sequential(OrderedDict(conv=torch.nn.Conv2d(3, D, 3), avgpool=torch.nn.AdaptiveAvgPool2d(1))).eval()
    out = tmp_path / "feats"
    prep = visreps.Preprocessing(resize=12, crop=8)
    visreps.extract(
        net, root, layers=["avgpool", "conv"], out=out, pool={"conv": "avg"}, preprocessing=prep, progress=False
    )
    return out


def test_folder_matches_formula_and_records_transform(cache, folder, tmp_path):
    t = _transform("resnet50")
    tf = _fabricate(t.path, D)
    src = visreps.load_features(folder)
    res = align(folder, model="torchvision:resnet50", out=tmp_path / "aligned")
    assert res.layers == ["avgpool"]  # conv has no transform and is left out
    expected = _by_hand(np.asarray(src["avgpool"]).reshape(5, -1), tf)
    np.testing.assert_allclose(res["avgpool"], expected, rtol=1e-6, atol=1e-6)
    assert res["avgpool"].dtype == np.float32 and res["avgpool"].shape == (5, D)
    assert list(res.manifest["path"]) == list(src.manifest["path"])
    rec = res.metadata["transform"]["avgpool"]
    assert rec["url"] == t.url and rec["url"].startswith("https://raw.githubusercontent.com/LukasMut/gLocal/")
    assert rec["url"].endswith("/transforms/resnet50/avgpool/transform.npz")
    import hashlib

    assert rec["sha256"] == hashlib.sha256(t.path.read_bytes()).hexdigest() and rec["sha256_pinned"] is False
    assert visreps.verify(res.folder)  # checksums of the new folder hold
    # the array API gives the same numbers
    Y = align(np.asarray(src["avgpool"]), model="resnet50")
    np.testing.assert_allclose(Y, expected, rtol=1e-12, atol=1e-12)


def test_no_bias_and_float64_scalars(tmp_path, cache):
    # clip_ViT-L/14's published file has no bias and float64 mean/std
    p = tmp_path / "own" / "transform.npz"
    tf = _fabricate(p, 768, bias=False, scalar_dtype=np.float64)
    X = np.random.default_rng(1).standard_normal((7, 768)).astype(np.float32)
    Y = align(X, model="clip:ViT-L-14", transform_file=p)
    np.testing.assert_allclose(Y, _by_hand(X, tf), rtol=1e-10, atol=1e-10)


def test_cli_matches_formula(cache, folder, tmp_path):
    tf = _fabricate(_transform("resnet50").path, D, seed=3)
    out = tmp_path / "cli_out"
    r = CliRunner().invoke(
        main, ["align", str(folder), "--transform", "gLocal", "--model", "torchvision:resnet50", "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    X = np.load(folder / "avgpool.npy").reshape(5, -1)
    np.testing.assert_allclose(np.load(out / "avgpool.npy"), _by_hand(X, tf), rtol=1e-6, atol=1e-6)
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["transform"]["avgpool"]["model"] == "resnet50" and meta["status"] == "complete"
    # the model recorded in the folder is a custom network: without --model it has no transform
    r = CliRunner().invoke(main, ["align", str(folder), "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "no gLocal transform is published for the model" in r.output
    assert "clip_RN50 = clip:RN50 / layer embedding" in r.output and "\n" not in r.output.strip()


def test_offline_error_names_file_address_and_cache(cache, folder, tmp_path):
    t = _transform("resnet50")
    with pytest.raises(WeightsError) as e:
        align(folder, model="resnet50", out=tmp_path / "o")
    msg = str(e.value)
    assert "offline" in msg and t.url in msg and str(t.path) in msg
    assert not (tmp_path / "o").exists()


def test_pinned_hash_mismatch(cache, tmp_path):
    t = _transform("resnet18")
    assert t.sha256 and len(t.sha256) == 64
    _fabricate(t.path, 512)
    with pytest.raises(WeightsError, match=f"its sha256 is [0-9a-f]{{64}}, expected {t.sha256}"):
        align(np.zeros((2, 512), np.float32), model="torchvision:resnet18")


def test_bad_input(cache, folder, tmp_path, monkeypatch):
    with pytest.raises(VisrepsError, match=r"no gLocal transform.*'vit_b_16'.*available: .*resnet18"):
        align(np.zeros((2, 3)), model="vit_b_16")
    with pytest.raises(VisrepsError, match=r"closest: .*resnet50"):
        find_transform("resnet5")
    with pytest.raises(LayerNotFoundError, match=r"layer 'layer4'.*avgpool only"):
        find_transform("torchvision:resnet50", "layer4")
    with pytest.raises(VisrepsError, match="transform 'harmonize' is not known"):
        align(np.zeros((2, 3)), model="resnet50", transform="harmonize")
    _fabricate(_transform("resnet50").path, D)
    with pytest.raises(VisrepsError, match=r"shape \(2, 100\).*\(images × 2048\)"):
        align(np.zeros((2, 100)), model="resnet50")
    # a folder layer of the wrong width: the message says which layer and pooling the transform expects
    wrong = replace(_transform("resnet50"), dim=16)
    monkeypatch.setattr(align_mod, "GLOCAL_TRANSFORMS", (wrong,))
    _fabricate(wrong.path, 16)
    with pytest.raises(VisrepsError, match=r"layer 'avgpool' .* per-image shape \(2048,\).*vectors of 16"):
        align(folder, model="resnet50", out=tmp_path / "w")
    with pytest.raises(LayerNotFoundError, match="has no layer 'fc'"):
        align(folder, model="resnet50", layer="fc", out=tmp_path / "w")
    bad = tmp_path / "bad.npz"
    np.savez(bad, weights=np.zeros((4, 4)))
    with pytest.raises(WeightsError, match="needs weights .* mean and std"):
        align(np.zeros((2, 4)), model="resnet50", transform_file=bad)
