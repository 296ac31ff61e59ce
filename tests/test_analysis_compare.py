"""Model comparison tables and reference RDMs, on output folders built by hand per the folder contract."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import pdist, squareform

import visreps
from visreps.analysis import (
    collect_features,
    compare_features,
    compare_rdms,
    compare_to_reference,
    correlate_rdms,
    load_reference_rdm,
)
from visreps.errors import VisrepsError

PATHS = [f"cls{i % 2}/img{i:02d}.png" for i in range(12)]


def make_output_folder(folder, model, layers, paths=PATHS, fmt="npy"):
    """An extraction output folder per the contract: <layer>.npy, manifest.csv, metadata.json."""
    folder = Path(folder)
    folder.mkdir(parents=True)
    meta = {"model": model, "layers": {}, "status": "complete", "format": fmt}
    for name, arr in layers.items():
        np.save(folder / f"{name}.npy", np.asarray(arr, dtype=np.float32))
        meta["layers"][name] = {"shape": list(np.shape(arr)), "dtype": "float32", "file": f"{name}.npy"}
    manifest = pd.DataFrame({"index": range(len(paths)), "path": paths, "label": [p.split("/")[0] for p in paths]})
    manifest.to_csv(folder / "manifest.csv", index=False)
    (folder / "metadata.json").write_text(json.dumps(meta))
    return folder


def feats(seed, n=12, p=40, shape=None):
    rng = np.random.default_rng(seed)
    if shape:
        p = int(np.prod(shape))
    X = rng.standard_normal((n, p)).astype(np.float32)
    return X.reshape(n, *shape) if shape else X


@pytest.fixture
def three_folders(tmp_path):
    a = make_output_folder(
        tmp_path / "alex", "torchvision:alexnet", {"conv1": feats(0, shape=(2, 4, 5)), "fc7": feats(1)}
    )
    b = make_output_folder(tmp_path / "res", "timm:resnet18", {"layer4": feats(2), "fc": feats(3, p=7)})
    c = make_output_folder(tmp_path / "vgg", "torchvision:vgg16", {"fc2": feats(4, p=300)})
    return a, b, c


def as64(x):
    return np.asarray(x, dtype=np.float64).reshape(len(x), -1)


def test_compare_folders_table_equals_pairwise_scipy(three_folders):
    df = compare_features(list(three_folders))
    labels = [
        "alexnet/conv1",  # display labels: the short name (these metadata record no weights)
        "alexnet/fc7",
        "resnet18/layer4",
        "resnet18/fc",
        "vgg16/fc2",
    ]
    assert list(df.index) == labels and list(df.columns) == labels
    a, b, c = three_folders
    where = [(a, "conv1"), (a, "fc7"), (b, "layer4"), (b, "fc"), (c, "fc2")]
    arrays = [np.load(f / f"{layer}.npy") for f, layer in where]
    vecs = [pdist(as64(x), "correlation") for x in arrays]
    for i in range(5):
        for j in range(5):
            expect = 1.0 if i == j else stats.pearsonr(vecs[i], vecs[j]).statistic
            assert df.iloc[i, j] == pytest.approx(expect, abs=1e-10)
    assert (df.attrs["rdm_method"], df.attrs["method"], df.attrs["n_conditions"]) == ("correlation", "pearson", 12)
    assert df.attrs["sets"][0]["model"] == "torchvision:alexnet" and df.attrs["sets"][0]["layer"] == "conv1"


@pytest.mark.parametrize("method", ["spearman", "kendall", "tau_a"])
def test_compare_other_methods_equal_correlate_rdms(three_folders, method):
    df, rdms = compare_features(
        list(three_folders),
        layers={str(three_folders[0]): ["fc7"]},
        rdm_method="euclidean",
        method=method,
        return_rdms=True,
    )
    labs = list(df.index)
    assert "alexnet/conv1" not in labs  # only the requested layer of that folder
    for i, a in enumerate(labs):
        for j, b in enumerate(labs):
            if i != j:
                assert df.iloc[i, j] == pytest.approx(float(correlate_rdms(rdms[a], rdms[b], method)), abs=1e-10)
    if method == "spearman":
        x, y = squareform(rdms[labs[0]], checks=False), squareform(rdms[labs[1]], checks=False)
        assert df.iloc[0, 1] == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-10)


def test_rows_are_aligned_by_image_path(tmp_path):
    X = feats(7)
    perm = np.random.default_rng(0).permutation(12)
    a = make_output_folder(tmp_path / "a", "m", {"l": X})
    b = make_output_folder(tmp_path / "b", "m", {"l": X[perm]}, paths=[PATHS[i] for i in perm])
    df = compare_features([a, b])
    # the same model with the same weights twice: the folder names tell the labels apart
    assert list(df.index) == ["m [a]/l", "m [b]/l"]
    assert df.iloc[0, 1] == pytest.approx(1.0, abs=1e-12)
    c = make_output_folder(tmp_path / "c", "m", {"l": X}, paths=[p.replace("img00", "other") for p in PATHS])
    with pytest.raises(VisrepsError, match="extracted from different images"):
        compare_features([a, c])


def test_arrays_features_objects_and_errors(three_folders):
    X, Y = feats(1), feats(2)
    df = compare_features({"x": X, "y": Y}, rdm_method="cosine")
    assert list(df.index) == ["x", "y"]
    expect = stats.pearsonr(pdist(as64(X), "cosine"), pdist(as64(Y), "cosine")).statistic
    assert df.iloc[0, 1] == pytest.approx(expect, abs=1e-10)
    res = visreps.load_features(three_folders[1])
    df2 = compare_features([res, three_folders[2]])
    assert list(df2.index) == ["resnet18/layer4", "resnet18/fc", "vgg16/fc2"]
    with pytest.raises(VisrepsError, match="has 11 rows"):
        compare_features({"x": X, "y": Y[:11]})
    with pytest.raises(VisrepsError, match="not an output folder"):
        compare_features(["/no/such/folder"])
    with pytest.raises(VisrepsError, match="no layer 'nope'"):
        compare_features([three_folders[0]], layers=["nope"])


def test_compare_rdms_directly():
    rng = np.random.default_rng(0)
    r = {k: squareform(rng.random(45)) for k in "abc"}
    df = compare_rdms(r, method="spearman")
    expect = stats.spearmanr(squareform(r["a"]), squareform(r["c"])).statistic
    assert df.loc["a", "c"] == pytest.approx(expect, abs=1e-12)
    assert np.array_equal(df.to_numpy(), df.to_numpy().T)
    with pytest.raises(VisrepsError, match="has 9 conditions but 'a' has 10"):
        compare_rdms({"a": r["a"], "b": r["b"][:9, :9]})


# ---- reference RDMs ---------------------------------------------------------------------------


def brain_rdm(seed=11, n=12):
    rng = np.random.default_rng(seed)
    return squareform(pdist(rng.standard_normal((n, 6))))


def test_load_reference_rdm_formats(tmp_path):
    R = brain_rdm()
    np.save(tmp_path / "r.npy", R)
    np.save(tmp_path / "v.npy", squareform(R))  # condensed
    from scipy.io import savemat

    savemat(tmp_path / "r.mat", {"rdm": R})
    savemat(tmp_path / "two.mat", {"rdm": R, "other": R + 1, "note": "text"})
    np.savetxt(tmp_path / "r.txt", R)
    np.savetxt(tmp_path / "plain.csv", R, delimiter=",", fmt="%.17g")
    names = [f"im{i}" for i in range(12)]
    pd.DataFrame(R, index=names, columns=names).to_csv(tmp_path / "labelled.csv", float_format="%.17g")
    pd.DataFrame(R, columns=names).to_csv(tmp_path / "header.csv", index=False, float_format="%.17g")
    for name in ("r.npy", "v.npy", "r.mat", "r.txt", "plain.csv", "labelled.csv", "header.csv"):
        np.testing.assert_allclose(load_reference_rdm(tmp_path / name), R, rtol=1e-15, atol=1e-15, err_msg=name)
    np.testing.assert_allclose(load_reference_rdm(tmp_path / "two.mat", key="other"), R + 1)
    with pytest.raises(VisrepsError, match=r"several matrices \(rdm, other\); choose one with key="):
        load_reference_rdm(tmp_path / "two.mat")
    with pytest.raises(VisrepsError, match="has no variable 'x'"):
        load_reference_rdm(tmp_path / "two.mat", key="x")


def test_reference_rdm_validation(tmp_path):
    np.save(tmp_path / "rect.npy", np.ones((3, 4)))
    np.save(tmp_path / "vec.npy", np.ones(7))
    bad = brain_rdm()
    bad[2, 5] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    asym = brain_rdm()
    asym[0, 1] += 1
    np.save(tmp_path / "asym.npy", asym)
    (tmp_path / "words.csv").write_text("1,2\nfoo,bar\n")
    with pytest.raises(VisrepsError, match=r"square n × n matrix .*shape \(3, 4\)"):
        load_reference_rdm(tmp_path / "rect.npy")
    with pytest.raises(VisrepsError, match="length 7, which is not n"):
        load_reference_rdm(tmp_path / "vec.npy")
    with pytest.raises(VisrepsError, match=r"NaN/inf entries \(first at row 2, column 5\)"):
        load_reference_rdm(tmp_path / "nan.npy")
    with pytest.warns(UserWarning, match="not symmetric; only its upper triangle"):
        load_reference_rdm(tmp_path / "asym.npy")
    with pytest.raises(VisrepsError, match="not numbers"):
        load_reference_rdm(tmp_path / "words.csv")
    with pytest.raises(VisrepsError, match="does not exist"):
        load_reference_rdm(tmp_path / "none.npy")
    (tmp_path / "r.xlsx").write_text("x")
    with pytest.raises(VisrepsError, match="format '.xlsx' is not supported"):
        load_reference_rdm(tmp_path / "r.xlsx")


def test_compare_to_reference(three_folders, tmp_path):
    R = brain_rdm()
    np.savetxt(tmp_path / "brain.csv", R, delimiter=",", fmt="%.17g")
    df = compare_to_reference(list(three_folders), tmp_path / "brain.csv", method="spearman")
    assert list(df.columns) == ["reference", "model", "weights", "layer", "label", "r"]
    assert len(df) == 5 and set(df["reference"]) == {"brain"}
    x = np.load(three_folders[2] / "fc2.npy")
    expect = stats.spearmanr(pdist(as64(x), "correlation"), squareform(R)).statistic
    assert df.set_index("label").loc["vgg16/fc2", "r"] == pytest.approx(expect, abs=1e-10)
    # bootstrap adds an interval; several references
    df2 = compare_to_reference([three_folders[2]], {"brain": R, "behaviour": brain_rdm(12)}, n_bootstrap=20, seed=1)
    assert list(df2["reference"]) == ["brain", "behaviour"]
    assert np.all(df2["ci_low"] <= df2["r"]) and np.all(df2["r"] <= df2["ci_high"])
    again = compare_to_reference([three_folders[2]], {"brain": R, "behaviour": brain_rdm(12)}, n_bootstrap=20, seed=1)
    pd.testing.assert_frame_equal(df2, again)
    with pytest.raises(VisrepsError, match="has 11 conditions but the features have 12 images"):
        compare_to_reference([three_folders[2]], R[:11, :11])


def test_reference_order_reorders_features(three_folders, tmp_path):
    x = as64(np.load(three_folders[2] / "fc2.npy"))
    perm = np.random.default_rng(3).permutation(12)
    R = squareform(pdist(x[perm], "correlation"))  # the reference's rows are the images in `perm` order
    (tmp_path / "order.txt").write_text("\n".join(Path(PATHS[i]).name for i in perm))  # bare names work when unique
    df = compare_to_reference([three_folders[2]], R, reference_order=tmp_path / "order.txt")
    assert df["r"].iloc[0] == pytest.approx(1.0, abs=1e-12)
    assert compare_to_reference([three_folders[2]], R)["r"].iloc[0] < 0.9


def test_model_ids_are_extracted_once_into_work_dir(tmp_path, monkeypatch):
    """visreps.compare_features (the workflow) extracts model ids, then compares; analysis never extracts."""
    import visreps.extraction
    from conftest import write_images
    from visreps import workflows

    images = tmp_path / "images"
    write_images(images, PATHS)
    calls = []

    def fake_extract(model, imgs, *, layers, out=None, overwrite=False, **kw):
        calls.append((model, list(layers), out is not None))
        from visreps.data import find_images

        paths = [i.path for i in find_images(imgs)]
        arrays = {layer: feats(len(layer) + len(model), n=len(paths)) for layer in layers}
        if out is None:
            from visreps.storage import Features

            man = pd.DataFrame({"index": range(len(paths)), "path": paths, "label": ""})
            return Features(arrays, man, {"model": model, "status": "complete"})
        import shutil

        shutil.rmtree(out, ignore_errors=True)
        make_output_folder(out, model, arrays, paths=paths)
        return visreps.load_features(out)

    monkeypatch.setattr(visreps.extraction, "extract", fake_extract)
    assert visreps.compare_features is workflows.compare_features  # what user code calls
    work = tmp_path / "work"
    df = workflows.compare_features(["fake:a", "fake:b"], layers=["l1"], images=images, work_dir=work)
    assert list(df.index) == ["fake:a/l1", "fake:b/l1"] and len(calls) == 2
    workflows.compare_features(["fake:a", "fake:b"], layers=["l1"], images=images, work_dir=work)
    assert len(calls) == 2  # reused
    workflows.compare_features(["fake:a"], layers=["l1", "l22"], images=images, work_dir=work)
    assert calls[-1] == ("fake:a", ["l1", "l22"], True)  # the missing layer extracted (with the one it had)
    workflows.compare_features(["fake:a"], layers=["l1"], images=images, work_dir=work, extract_options={"pool": "avg"})
    assert len(calls) == 4  # other options: extracted again
    workflows.compare_features(["fake:a"], layers=["l1"], images=images)
    assert calls[-1] == ("fake:a", ["l1"], False)  # no work_dir: in memory
    with pytest.raises(VisrepsError, match="which layers of 'fake:a'"):
        workflows.compare_features(["fake:a"], images=images)
    # one model twice with different layers, keyed by label (as the seeds' compare_models does)
    df = workflows.compare_features(
        {"a1": "fake:a", "a2": "fake:a"}, layers={"a1": ["l1"], "a2": ["l22"]}, images=images, work_dir=work
    )
    assert list(df.index) == ["a1/l1", "a2/l22"]
    # a single model id, and model ids mixed with a folder, in a dict and a list
    assert list(workflows.compare_features("fake:a", layers=["l1", "l22"], images=images, work_dir=work).index) == [
        "fake:a/l1",
        "fake:a/l22",
    ]
    folder = make_output_folder(tmp_path / "f", "m", {"x": feats(7)})
    df = workflows.compare_features({"mine": folder, "a": "fake:a"}, layers={"a": ["l1"]}, images=images, work_dir=work)
    assert list(df.index) == ["mine/x", "a/l1"]
    n_calls = len(calls)
    with pytest.raises(VisrepsError, match="method 'nope'"):
        workflows.compare_features(["fake:b"], layers=["l1"], images=images, method="nope")
    assert len(calls) == n_calls  # a wrong name fails before anything is extracted
    # the analysis function takes no model ids: a model id names no folder
    with pytest.raises(VisrepsError, match="not an output folder.*visreps.compare_features"):
        compare_features(["fake:a"], layers=["l1"])
    with pytest.raises(TypeError):
        compare_features(["fake:a"], layers=["l1"], images=images)
    assert len(calls) == n_calls


def test_workflow_reads_the_reference_before_extracting(tmp_path, monkeypatch):
    import visreps.extraction
    from visreps.workflows import compare_to_reference as workflow_compare_to_reference

    monkeypatch.setattr(visreps.extraction, "extract", lambda *a, **k: pytest.fail("extracted"))
    with pytest.raises(VisrepsError, match="does not exist"):
        workflow_compare_to_reference(["fake:a"], tmp_path / "missing.npy", layers=["l1"], images=tmp_path)


def test_feature_sets_are_taken_as_they_are(three_folders):
    sets = collect_features(list(three_folders))
    again = collect_features([sets[:2], sets[2]])
    assert [s.label for s in again] == [s.label for s in sets[:3]]
    df = compare_features(sets)
    assert df.equals(compare_features(list(three_folders)))
    assert sets[0].order is None and again[0] is not sets[0]  # copies: the caller's sets are not changed


def test_collect_features_layer_dict_by_model_label(three_folders):
    sets = collect_features({"A": three_folders[0], "B": three_folders[1]}, layers={"A": ["fc7"], "B": None})
    assert [(s.model, s.layer) for s in sets] == [("A", "fc7"), ("B", "layer4"), ("B", "fc")]
