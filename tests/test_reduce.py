"""Reductions while extracting (--reduce srp:K / srp:auto / pca:K) and layer selection by pattern (globs, blocks).

Every reduced array is checked against scikit-learn on the raw features of the same run: the SRP
matrix rebuilt from metadata.json's random_state, IncrementalPCA/PCA on the fit set.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import visreps
from conftest import write_images
from visreps.errors import VisrepsError
from visreps.reduce import SrpApply, layer_seed, parse_reduce, srp_matrix

sklearn = pytest.importorskip("sklearn")
from sklearn.decomposition import PCA, IncrementalPCA  # noqa: E402
from sklearn.random_projection import SparseRandomProjection, johnson_lindenstrauss_min_dim  # noqa: E402

LAYERS = ["0", "3", "7"]  # widths at 16 px: 4*16*16 = 1024, 6*8*8 = 384, 5


@pytest.fixture
def net():
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 5),
    ).eval()


@pytest.fixture
def images(tmp_path):
    root = tmp_path / "images"
    write_images(root, [f"img{i:02d}.png" for i in range(14)])
    return root


@pytest.fixture
def kw(small_prep):
    return dict(preprocessing=small_prep, batch_size=4, num_workers=0, progress=False)


@pytest.fixture
def raw(net, images, kw):
    return visreps.extract(net, images, layers=LAYERS, **kw)


def rows_close(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(b).max())))


# --------------------------------------------------------------------------- SRP


def test_srp_equals_sklearn_rebuilt_from_metadata(net, images, kw, raw, tmp_path):
    res = visreps.extract(net, images, layers=LAYERS, out=tmp_path / "srp", reduce="srp:50", seed=3, **kw)
    meta = json.loads((tmp_path / "srp" / "metadata.json").read_text())
    rec = meta["reduce"]
    assert rec["0"]["method"] == rec["3"]["method"] == "srp" and rec["0"]["n_components"] == 50
    assert rec["0"]["random_state"] == layer_seed(3, "0") != rec["3"]["random_state"]
    assert rec["7"] == {
        "method": "none",
        "n_components": 5,
        "random_state": None,
        "input_width": 5,
        "reason": "width 5 <= 50: kept as it is",
    }
    assert meta["layers"]["0"]["shape"] == [14, 50] and meta["layers"]["7"]["shape"] == [14, 5]
    for layer in ("0", "3"):
        srp = SparseRandomProjection(n_components=50, random_state=rec[layer]["random_state"])
        X = raw[layer]
        expected = srp.fit_transform(X)
        assert (srp.components_ != srp_matrix(X.shape[1], 50, rec[layer]["random_state"])).nnz == 0
        assert srp.components_.nnz == rec[layer]["nnz"]
        rows_close(res[layer], expected)
    np.testing.assert_array_equal(res["7"], raw["7"])  # kept raw, bit for bit
    again = visreps.extract(net, images, layers=LAYERS, reduce="srp:50", seed=3, **kw)
    np.testing.assert_array_equal(again["0"], res["0"])  # same seed, same numbers
    # the hooks reduce channels-last maps in memory order (columns permuted); contiguous maps as they are
    assert res.metadata["options"]["channels_last"] is True
    nchw = visreps.extract(net, images, layers=LAYERS, reduce="srp:50", seed=3, channels_last=False, **kw)
    rows_close(nchw["0"], res["0"])
    other = visreps.extract(net, images, layers=LAYERS, reduce="srp:50", seed=4, **kw)
    assert other.metadata["reduce"]["0"]["random_state"] != rec["0"]["random_state"]


@pytest.mark.parametrize("backend", ["numba", "torch", "sklearn"])
def test_srp_backends_equal_sklearn_transform(backend):
    if backend == "numba":
        pytest.importorskip("numba")
    x = np.random.default_rng(1).standard_normal((70, 3000)).astype(np.float32)  # two kernel chunks of rows
    srp = SparseRandomProjection(n_components=64, random_state=11).fit(x)
    out = SrpApply(srp_matrix(3000, 64, 11), backend).apply(x)
    assert out.dtype == np.float32 and out.shape == (70, 64)
    rows_close(out, srp.transform(x))


def test_srp_auto_uses_the_jl_bound(net, images, kw):
    res = visreps.extract(net, images, layers=LAYERS, reduce="srp:auto:0.9", **kw)
    k = johnson_lindenstrauss_min_dim(14, eps=0.9)
    rec = res.metadata["reduce"]["0"]
    assert rec["n_components"] == k and rec["eps"] == 0.9 and rec["jl_n_images"] == 14
    assert res["0"].shape == (14, k)
    assert res.metadata["options"]["reduce"] == "srp:auto:0.9"


# --------------------------------------------------------------------------- PCA


def test_pca_equals_sklearn_on_the_fit_set(net, images, kw, raw, tmp_path):
    res = visreps.extract(net, images, layers=LAYERS, out=tmp_path / "pca", reduce="pca:4:10", **kw)
    rec = res.metadata["reduce"]["0"]
    assert rec["method"] == "pca" and rec["n_components"] == 4 and rec["solver"] == "IncrementalPCA"
    assert rec["fit"]["n_images"] == 10 and rec["fit"]["images"] == "the first 10 images of the run"
    for layer in LAYERS:  # all wider than 4
        fit = raw[layer][:10].astype(np.float64)
        ipca = IncrementalPCA(n_components=4).fit(fit)  # 10 rows < 2 chunks of max(4, batch 4): one partial_fit
        rows_close(res[layer], ipca.transform(raw[layer]))
        pca = PCA(n_components=4, svd_solver="full").fit(fit)
        ratio = res.metadata["reduce"][layer]["explained_variance_ratio"]
        np.testing.assert_allclose(ratio, pca.explained_variance_ratio_.sum(), rtol=1e-4)
        signs = np.sign(np.sum(res[layer] * pca.transform(raw[layer]), axis=0))  # PCA's sign is a convention
        rows_close(res[layer] * signs, pca.transform(raw[layer]))
    assert (tmp_path / "pca" / "pca_fit.npz").is_file()
    visreps.verify(tmp_path / "pca")  # pca_fit.npz has its checksum too
    reused = visreps.extract(
        net, images, layers=LAYERS, reduce="pca:4", reduce_fit=tmp_path / "pca" / "pca_fit.npz", **kw
    )
    np.testing.assert_array_equal(reused["0"], res["0"])
    assert reused.metadata["reduce"]["0"]["fit_sha256"] == rec["fit_sha256"]


def test_pca_fit_folder_and_streaming(net, images, kw, tmp_path):
    fit_dir = tmp_path / "fit"
    write_images(fit_dir, [f"f{i:02d}.png" for i in range(11)], seed=5)
    res = visreps.extract(net, images, layers=["0"], reduce="pca:2", reduce_fit=fit_dir, **kw)
    fit_raw = visreps.extract(net, fit_dir, layers=["0"], **kw)["0"]
    raw0 = visreps.extract(net, images, layers=["0"], **kw)["0"]
    assert res.metadata["reduce"]["0"]["fit"]["n_images"] == 11
    # 11 rows in chunks of 4 (= max(K, batch)): partial fits on rows 0-3 and 4-10, as IncrementalPCA does them
    ipca = IncrementalPCA(n_components=2)
    ipca.partial_fit(fit_raw[:4])
    ipca.partial_fit(fit_raw[4:])
    rows_close(res["0"], ipca.transform(raw0))


def test_streaming_pca_is_exact_for_low_rank_data():
    from visreps.reduce import StreamingPca

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((40, 3)) @ rng.standard_normal((3, 30)) + 2).astype(np.float32)
    s = StreamingPca(3, 5)
    for i in range(0, 40, 3):
        s.add(x[i : i + 3])
    fit = s.finish()
    assert s.n_chunks > 2
    pca = PCA(n_components=3, svd_solver="full").fit(x.astype(np.float64))
    got = (x - fit["mean"]) @ fit["components"].T
    signs = np.sign(np.sum(got * pca.transform(x), axis=0))
    rows_close(got * signs, pca.transform(x))


# --------------------------------------------------------------------------- layer patterns and blocks


def _names(module):
    return [n for n, _ in module.named_modules() if n]


def test_blocks_and_globs_on_torchvision_timm_vit():
    import timm
    import torchvision

    from visreps.models._select import expand_layers

    meta = torch.device("meta")  # the architectures only: no weights to initialise
    with meta:
        r18, r50 = torchvision.models.resnet18(), torchvision.models.resnet50()
        vit, alex = torchvision.models.vit_b_16(), torchvision.models.alexnet()
        tvit = timm.create_model("vit_tiny_patch16_224", pretrained=False)
        tres = timm.create_model("resnet18", pretrained=False)
    blocks18 = [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    assert expand_layers(_names(r18), "blocks", r18) == [*blocks18, "avgpool"]
    b50 = expand_layers(_names(r50), ["blocks"], r50)
    assert len(b50) == 17 and b50[0] == "layer1.0" and b50[-2:] == ["layer4.2", "avgpool"]
    assert expand_layers(_names(r18), "layer?.*", r18) == blocks18  # '*' stays within one dotted part
    assert expand_layers(_names(r18), "layer4.**", r18)[:3] == ["layer4.0", "layer4.0.conv1", "layer4.0.bn1"]
    assert expand_layers(_names(r18), "fc,layer[34].1", r18) == ["fc", "layer3.1", "layer4.1"]
    assert expand_layers(_names(vit), "blocks", vit) == [f"encoder.layers.encoder_layer_{i}" for i in range(12)]
    assert expand_layers(_names(tvit), "blocks", tvit) == [f"blocks.{i}" for i in range(12)]
    assert expand_layers(_names(tvit), "blocks.*", tvit) == [f"blocks.{i}" for i in range(12)]
    assert expand_layers(_names(tres), "blocks", tres) == [*blocks18, "global_pool"]
    assert expand_layers(_names(alex), "blocks", alex) == ["features.2", "features.5", "features.12",
                                                         "classifier.2", "classifier.5"]  # fmt: skip
    with pytest.raises(VisrepsError, match="matches no layer"):
        expand_layers(_names(r18), "layer9.*", r18)


def test_extract_with_a_pattern_and_reduce(images, kw, tmp_path):
    from visreps.models import Preprocessing

    kw = {**kw, "preprocessing": Preprocessing(resize=32, crop=32)}
    res = visreps.extract("torchvision:resnet18", images, layers="layer4.*", pretrained=False, reduce="srp:64", **kw)
    assert res.layers == ["layer4.0", "layer4.1"]
    assert res.metadata["layers_requested"] == ["layer4.*"]
    assert res["layer4.0"].shape == (14, 64)  # 512 * 1 * 1 = 512 wide at 32 px


# --------------------------------------------------------------------------- folders: analysis, resume, shards


def test_reduced_folders_round_trip_through_analysis(net, images, kw, tmp_path):
    from visreps.analysis import compute_rdm
    from visreps.cli import main

    a = tmp_path / "a"
    visreps.extract(net, images, layers=LAYERS, out=a, reduce="srp:40", **kw)
    feats = visreps.load_features(a)
    run = CliRunner()
    r = run.invoke(main, ["rsa", str(a), "--no-plot", "--method", "correlation"])
    assert r.exit_code == 0, r.output
    rdm = np.load(a / "rsa" / "rdm_0_correlation.npy")
    np.testing.assert_allclose(rdm, compute_rdm(feats["0"], "correlation"), atol=1e-6)
    r = run.invoke(main, ["cka", str(a), "--layers-a", "0,3"])
    assert r.exit_code == 0, r.output
    r = run.invoke(main, ["compare", f"{a}::0,3", "--no-plot", "--out", str(tmp_path / "cmp.csv")])
    assert r.exit_code == 0, r.output
    responses = tmp_path / "resp.npy"
    np.save(responses, np.random.default_rng(0).standard_normal((14, 3)))
    r = run.invoke(main, ["encode", str(a), str(responses), "--folds", "2", "--no-plot",
                          "--out", str(tmp_path / "enc.csv")])  # fmt: skip
    assert r.exit_code == 0, r.output
    with pytest.raises(VisrepsError, match="reduced while extracting"):
        visreps.align(a, model="torchvision:resnet18", layer="0")


def test_reduced_shards_merge_and_verify(net, images, kw, tmp_path):
    for spec in ("srp:40", "pca:3"):
        whole = visreps.extract(net, images, layers=LAYERS, reduce=spec, **kw)
        parts = [tmp_path / f"{spec[:3]}{i}" for i in (1, 2)]
        for i, p in enumerate(parts, 1):
            visreps.extract(net, images, layers=LAYERS, out=p, shard=f"{i}/2", reduce=spec, **kw)
        merged = visreps.merge_shards(tmp_path / f"{spec[:3]}_all", parts)
        visreps.verify(tmp_path / f"{spec[:3]}_all")
        assert merged.metadata["reduce"] == whole.metadata["reduce"]
        for layer in LAYERS:
            rows_close(merged[layer], whole[layer])


def test_resume_a_reduced_run(net, images, kw, tmp_path):
    out = tmp_path / "cut"
    whole = visreps.extract(net, images, layers=LAYERS, reduce="srp:40", **kw)
    calls = {"n": 0}

    def stop_after_two(mod, inp, output):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt

    h = net[0].register_forward_hook(stop_after_two)
    with pytest.raises(visreps.errors.ExtractionInterrupted):
        visreps.extract(net, images, layers=LAYERS, out=out, reduce="srp:40", **kw)
    h.remove()
    with pytest.raises(VisrepsError, match="reduced with srp:40, this one with pca:3; resume with --reduce srp:40"):
        visreps.extract(net, images, layers=LAYERS, out=out, reduce="pca:3", resume=True, **kw)
    with pytest.raises(VisrepsError, match="resume with --reduce srp:40"):
        visreps.extract(net, images, layers=LAYERS, out=out, resume=True, **kw)
    res = visreps.extract(net, images, layers=LAYERS, out=out, reduce="srp:40", resume=True, **kw)
    for layer in LAYERS:
        np.testing.assert_array_equal(res[layer], whole[layer])
    visreps.verify(out)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "spec, message",
    [
        ("tsne:3", "unknown reduction 'tsne:3'"),
        ("srp", "unknown reduction 'srp'"),
        ("srp:x", "reduction 'srp:x' is not valid"),
        ("srp:0", "positive integer"),
        ("pca:5:3", "a fit set of 3 images cannot give 5 components"),
        ("srp:auto:2", "eps must be between 0 and 1"),
    ],
)
def test_bad_reductions(spec, message):
    with pytest.raises(VisrepsError, match=message):
        parse_reduce(spec)


def test_bad_input_before_any_work(net, images, kw, tmp_path):
    out = tmp_path / "o"
    with pytest.raises(VisrepsError, match="needs at least 20 fit images, but the run has 14 images"):
        visreps.extract(net, images, layers=LAYERS, out=out, reduce="pca:20", **kw)
    with pytest.raises(VisrepsError, match="--reduce-fit .*nowhere.* does not exist"):
        visreps.extract(net, images, layers=LAYERS, out=out, reduce="pca:2", reduce_fit=tmp_path / "nowhere", **kw)
    with pytest.raises(VisrepsError, match="use it with --reduce pca:K"):
        visreps.extract(net, images, layers=LAYERS, out=out, reduce="srp:3", reduce_fit=images, **kw)
    with pytest.raises(VisrepsError, match="keeps the shape"):
        visreps.extract(net, images, layers=LAYERS, out=out, reduce="srp:3", pool="none", **kw)
    assert not out.exists()


def test_cli_reduce_errors_are_one_line(images, tmp_path):
    from visreps.cli import main

    run = CliRunner()
    base = [
        "extract",
        "torchvision:resnet18",
        str(images),
        "--random",
        "--layers",
        "layer4.*",
        "-o",
        str(tmp_path / "o"),
    ]
    r = run.invoke(main, [*base, "--reduce", "umap:3"])
    assert r.exit_code == 2 and "unknown reduction 'umap:3'" in r.output and "Traceback" not in r.output
    r = run.invoke(main, [*base, "--reduce", "pca:3", "--reduce-fit", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_k_wider_than_a_layer_is_kept_and_said_in_the_plan(net, images, kw, capsys):
    res = visreps.extract(net, images, layers=LAYERS, reduce="srp:500", **{**kw, "progress": True})
    err = capsys.readouterr().err
    assert "plan: 3 layer(s)" in err and "2 kept raw (no wider than K): 3, 7" in err and "disk:" in err
    assert [res.metadata["reduce"][k]["method"] for k in LAYERS] == ["srp", "none", "none"]
    assert res["3"].shape == (14, 384)


def test_a_disk_too_small_is_refused_before_the_first_image(net, images, kw, tmp_path, monkeypatch):
    """The plan's disk figure is checked against the free space before the first image, suggesting --reduce."""
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    out = tmp_path / "small"
    with pytest.raises(VisrepsError, match=r"not enough space .* reduce the layers while extracting \(--reduce srp"):
        visreps.extract(net, images, layers=LAYERS, out=out, **kw)
    assert not (out / "metadata.partial.json").exists()
