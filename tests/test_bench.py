"""``visreps bench``: honest layer selection, checked against rsatoolbox and scikit-learn, the cache, the spec."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import visreps
from conftest import REPO
from visreps.errors import VisrepsError

EXAMPLE = REPO / "examples" / "bench"
ALEX = ["features.2", "features.5", "features.12", "classifier.5"]


def _models(seeds=(1, 2)) -> list[dict]:
    return [{"id": "torchvision:alexnet", "weights": "random", "seed": s, "layers": ALEX, "pool": "avg"} for s in seeds]


def _spec(tmp: Path, targets: list[dict], **analysis) -> dict:
    return {
        "images": str(EXAMPLE / "stimuli"),
        "work_dir": str(tmp / "cache"),
        "device": "cpu",
        "models": _models(),
        "targets": targets,
        "analysis": {
            "rsa": {"rdm": "correlation", "compare": "spearman"},
            "encoding": {"model": "ridge", "folds": 5},
            "selection": {"split": 0.5, "seed": 0},
            "bootstrap": {"factors": "subjects,images", "n": 200},
            "test": "pairwise",
            **analysis,
        },
    }


EXAMPLE_TARGETS = [
    {"name": "hIT", "rdms": str(EXAMPLE / "hIT_subjects.npy")},
    {"name": "V4", "responses": str(EXAMPLE / "v4.npy")},
]


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """One bench of two seeded random AlexNets × 4 layers × the example targets (extracts both models)."""
    tmp = tmp_path_factory.mktemp("bench")
    spec = _spec(tmp, EXAMPLE_TARGETS)
    res = visreps.bench(spec, out=tmp / "out", progress=False)
    return tmp, spec, res


def _features(res, label: str, layer: str) -> np.ndarray:
    rec = next(c for c in res.cache if c["label"] == label)
    return np.asarray(visreps.load_features(rec["folder"], [layer])[layer], dtype=np.float64)


def test_outputs_columns_and_the_stratified_split(first):
    tmp, _, res = first
    out = tmp / "out"
    from visreps.bench import OUTPUT_FILES

    for name in OUTPUT_FILES:
        assert (out / name).is_file(), name
    assert not (out / ".bench-partial").exists()
    ranking = pd.read_csv(out / "ranking.csv")
    need = (
        "target, model, label, weights, layer, score, ceiling_lower, ceiling_upper, normalised, ci_low, ci_high, rank"
    )
    assert set(need.split(", ")) <= set(ranking.columns)
    assert len(ranking) == 4 and sorted(set(ranking["target"])) == ["V4", "hIT"]
    assert set(ranking["label"]) == {"alexnet (random, seed 1)", "alexnet (random, seed 2)"}
    assert set(ranking["weights"]) == {"random, seed 1", "random, seed 2"}
    for _, g in ranking.groupby("target"):
        assert sorted(g["rank"]) == [1, 2] and g.sort_values("rank")["score"].is_monotonic_decreasing
    assert np.allclose(ranking["normalised"], ranking["score"] / ranking["ceiling_upper"])
    assert (ranking["ci_low"] < ranking["score"]).all() and (ranking["score"] < ranking["ci_high"]).all()
    layers = pd.read_csv(out / "layers.csv")
    assert len(layers) == 2 * 2 * 4 and not layers["for_ranking"].any()
    assert layers.groupby(["target", "label"])["committed"].sum().eq(1).all()
    split = pd.read_csv(out / "split.csv")
    assert list(split.columns) == ["path", "label", "part"] and len(split) == 32
    counts = split.groupby(["label", "part"]).size()
    assert (counts == 8).all()  # stratified: half of each class folder in each part
    pairwise = pd.read_csv(out / "pairwise.csv")
    assert len(pairwise) == 2 and {"p", "p_corrected", "significant"} <= set(pairwise.columns)
    record = json.loads((out / "bench.json").read_text())
    assert record["split"]["selection"] == list(split["path"][split["part"] == "selection"])
    assert all(c["checksums"] for c in record["cache"]) and record["versions"]["numpy"]
    assert "| rank |" in (out / "report.md").read_text()


def test_rsa_scores_and_ceilings_match_rsatoolbox(first):
    """Selection scores per layer (selection images), held-out score and ceiling (test images) = rsatoolbox's."""
    from rsatoolbox.inference import boot_noise_ceiling, eval_fixed
    from rsatoolbox.model import ModelFixed
    from rsatoolbox.rdm import RDMs, compare
    from scipy.spatial.distance import pdist, squareform

    tmp, _, res = first
    split = pd.read_csv(tmp / "out" / "split.csv")
    sel = np.flatnonzero(split["part"] == "selection")
    test = np.flatnonzero(split["part"] == "test")
    data = np.load(EXAMPLE / "hIT_subjects.npy")
    layers = res.layers[(res.layers["target"] == "hIT") & (res.layers["label"] == "alexnet (random, seed 1)")]
    for _, row in layers.iterrows():
        rdm = squareform(pdist(_features(res, row["label"], row["layer"]), "correlation"))
        theirs = compare(RDMs(rdm[np.ix_(sel, sel)][None]), RDMs(data[:, sel][:, :, sel]), method="spearman")
        assert row["selection_score"] == pytest.approx(theirs.mean(), abs=1e-10)
    rank = res.ranking.set_index(["target", "label"]).loc[("hIT", "alexnet (random, seed 1)")]
    rdm = squareform(pdist(_features(res, "alexnet (random, seed 1)", rank["layer"]), "correlation"))
    d_test = RDMs(data[:, test][:, :, test])
    ev = eval_fixed(ModelFixed("m", RDMs(rdm[np.ix_(test, test)][None])), d_test, method="spearman")
    assert rank["score"] == pytest.approx(float(np.mean(ev.evaluations)), abs=1e-10)
    lower, upper = boot_noise_ceiling(d_test, method="spearman")
    assert (rank["ceiling_lower"], rank["ceiling_upper"]) == pytest.approx((lower, upper), abs=1e-10)


@pytest.mark.slow
def test_rsa_bootstrap_interval_agrees_with_rsatoolbox(first):
    """The interval is rdm_inference's on the test images; its width agrees with rsatoolbox's dual bootstrap SE."""
    from rsatoolbox.inference import eval_dual_bootstrap
    from rsatoolbox.model import ModelFixed
    from rsatoolbox.rdm import RDMs
    from scipy import stats
    from scipy.spatial.distance import pdist, squareform

    tmp, spec, res = first
    split = pd.read_csv(tmp / "out" / "split.csv")
    test = np.flatnonzero(split["part"] == "test")
    data = np.load(EXAMPLE / "hIT_subjects.npy")[:, test][:, :, test]
    rank = res.ranking.set_index(["target", "label"]).loc[("hIT", "alexnet (random, seed 1)")]
    rdm = squareform(pdist(_features(res, "alexnet (random, seed 1)", rank["layer"]), "correlation"))[
        np.ix_(test, test)
    ]
    mine = visreps.analysis.rdm_inference(
        {"m": rdm}, data, method="spearman", bootstrap="subjects,images", n_bootstrap=200
    )
    assert (rank["ci_low"], rank["ci_high"]) == pytest.approx(
        (mine.table["ci_low"].iloc[0], mine.table["ci_high"].iloc[0]), abs=1e-12
    )
    theirs = eval_dual_bootstrap(
        ModelFixed("m", RDMs(rdm[None])), RDMs(data), method="spearman", N=200, k_pattern=1, k_rdm=1
    )
    se_theirs = float(np.sqrt(theirs.variances.ravel()[0]))
    q = stats.t.ppf(0.975, min(len(data), len(test)) - 1)
    se_mine = (rank["ci_high"] - rank["ci_low"]) / (2 * q)
    assert se_mine == pytest.approx(se_theirs, rel=0.35)  # independent draws: agreement within Monte-Carlo error


def test_encoding_scores_match_sklearn_ridgecv(first):
    """The selection score of a layer = mean over units of r of RidgeCV's out-of-fold predictions (same folds)."""
    from sklearn.linear_model import RidgeCV

    from visreps.analysis.encoding import DEFAULT_ALPHAS, make_folds

    tmp, _, res = first
    split = pd.read_csv(tmp / "out" / "split.csv")
    sel = np.flatnonzero(split["part"] == "selection")
    Y = np.load(EXAMPLE / "v4.npy").mean(axis=0)[sel]
    layers = res.layers[(res.layers["target"] == "V4") & (res.layers["label"] == "alexnet (random, seed 2)")]
    for _, row in layers.iterrows():
        X = _features(res, row["label"], row["layer"]).astype(np.float32).astype(np.float64)[sel]
        fold = make_folds(len(sel), 5, seed=0)
        pred = np.empty_like(Y)
        for f in range(5):
            te = fold == f
            pred[te] = RidgeCV(alphas=DEFAULT_ALPHAS, alpha_per_target=True).fit(X[~te], Y[~te]).predict(X[te])
        r = [np.corrcoef(pred[:, t], Y[:, t])[0, 1] for t in range(Y.shape[1])]
        assert row["selection_score"] == pytest.approx(np.mean(r), abs=1e-6)


def test_known_best_layer_is_committed_and_new_targets_extract_nothing(first, tmp_path):
    tmp, spec, res = first
    rng = np.random.default_rng(5)
    lab = "alexnet (random, seed 1)"
    X = _features(res, lab, "features.5")
    subjects = []
    for _ in range(4):
        Z = X + rng.normal(0, 0.5 * X.std(axis=0) + 1e-6, size=X.shape)  # noise per feature, half its SD
        subjects.append(1 - np.corrcoef(Z))
    stack = np.stack(subjects)
    for s in stack:
        np.fill_diagonal(s, 0)
    np.save(tmp_path / "known.npy", (stack + stack.transpose(0, 2, 1)) / 2)
    Xe = _features(res, lab, "features.2")
    U = np.linalg.svd(Xe - Xe.mean(0), full_matrices=False)[0][:, :3]  # its main directions over the images
    signal = U @ rng.normal(size=(3, 8)) * np.sqrt(len(U))
    np.save(tmp_path / "known_resp.npy", np.stack([signal + rng.normal(0, 0.3, signal.shape) for _ in range(3)]))
    targets = [
        {"name": "known", "rdms": str(tmp_path / "known.npy")},
        {"name": "known_enc", "responses": str(tmp_path / "known_resp.npy")},
    ]
    spec2 = {**spec, "targets": targets}
    res2 = visreps.bench(spec2, out=tmp_path / "out", progress=False)
    assert res2.extracted == []  # a new target: nothing extracted
    chosen = res2.ranking.set_index(["target", "label"])["layer"]
    assert chosen[("known", lab)] == "features.5"
    assert chosen[("known_enc", lab)] == "features.2"


def test_triplet_target_matches_odd_one_out_on_each_part(first, tmp_path):
    """An odd-one-out target: each layer's selection score, the committed layer, its held-out accuracy, interval,
    ceiling and the McNemar test equal visreps.analysis.odd_one_out (itself checked against gLocal) and scipy on
    the triplets whose three images are all in the part."""
    from scipy import stats

    from visreps.analysis import odd_one_out

    tmp, spec, res0 = first
    target = {"name": "ooo", "triplets": str(EXAMPLE / "triplets.csv"), "similarity": "cosine"}
    res = visreps.bench({**spec, "targets": [target]}, out=tmp_path / "out", progress=False)
    assert res.extracted == []  # the models are in the cache already
    trip = pd.read_csv(EXAMPLE / "triplets.csv")
    part = res.split.set_index("path")["part"]
    where = np.stack([part[trip[c]].to_numpy() for c in ("image_1", "image_2", "image_3")], axis=1)
    parts = {p: trip[(where == p).all(axis=1)] for p in ("selection", "test")}
    ranking = res.ranking.set_index("label")
    agree = {}
    for c in res0.cache:
        lab = c["label"]
        sel = odd_one_out(c["folder"], parts["selection"], similarity="cosine", n_bootstrap=0).table
        lay = res.layers[res.layers["label"] == lab].set_index("layer")
        np.testing.assert_allclose(lay.loc[sel["layer"], "selection_score"], sel["accuracy"], rtol=0, atol=1e-12)
        best = sel["layer"].iloc[int(np.argmax(sel["accuracy"].to_numpy()))]
        assert ranking.loc[lab, "layer"] == best and ranking.loc[lab, "kind"] == "odd-one-out"
        held = odd_one_out(c["folder"], parts["test"], layers=[best], similarity="cosine", n_bootstrap=0)
        assert ranking.loc[lab, "score"] == held.table["accuracy"].iloc[0]
        assert ranking.loc[lab, "n_test"] == len(parts["test"]) > 10
        agree[lab] = next(iter(held.choices.values())) == held.odd
        assert ranking.loc[lab, "ci_low"] < ranking.loc[lab, "score"] < ranking.loc[lab, "ci_high"]
    # the ceiling: repeated test triplets agreeing with their most frequent choice (NaN without repeats)
    ceiling = odd_one_out(res0.cache[0]["folder"], parts["test"], n_bootstrap=0).table.get("ceiling")
    want = float(ceiling.iloc[0]) if ceiling is not None else np.nan
    np.testing.assert_allclose(ranking["ceiling_upper"].to_numpy(), want)
    a, b = agree["alexnet (random, seed 1)"], agree["alexnet (random, seed 2)"]
    p = stats.binomtest(int((a & ~b).sum()), int((a != b).sum()), 0.5).pvalue
    assert res.pairwise["p"].iloc[0] == pytest.approx(p, abs=1e-12)


def test_triplet_target_commits_the_layer_the_choices_come_from(first, tmp_path):
    tmp, spec, res0 = first
    rng = np.random.default_rng(8)
    lab = "alexnet (random, seed 2)"
    X = _features(res0, lab, "features.12")
    paths = res0.split["path"].tolist()
    rows = np.array([rng.choice(len(paths), 3, replace=False) for _ in range(1500)])
    G = X @ X.T
    s = np.stack([G[rows[:, 1], rows[:, 2]], G[rows[:, 0], rows[:, 2]], G[rows[:, 0], rows[:, 1]]], axis=1)
    odd = rows[np.arange(len(rows)), np.argmax(s, axis=1)]  # the dot-product choice of features.12
    names = np.asarray(paths, dtype=object)
    pd.DataFrame({"a": names[rows[:, 0]], "b": names[rows[:, 1]], "c": names[rows[:, 2]], "choice": names[odd]}).to_csv(
        tmp_path / "t.csv", index=False
    )
    spec2 = {**spec, "targets": [{"name": "t", "triplets": str(tmp_path / "t.csv")}]}
    res = visreps.bench(spec2, out=tmp_path / "o", progress=False)
    row = res.ranking.set_index("label").loc[lab]
    assert row["layer"] == "features.12" and row["score"] == 1.0


def test_triplet_target_problems_are_named(first, tmp_path):
    tmp, spec, _ = first
    trip = pd.read_csv(EXAMPLE / "triplets.csv")
    trip.head(40).to_csv(tmp_path / "few.csv", index=False)
    bad = trip.head(100).copy()
    bad.loc[3, "image_2"] = "blobs/b99.png"
    bad.to_csv(tmp_path / "unknown.csv", index=False)
    targets = [
        {"name": "few", "triplets": str(tmp_path / "few.csv")},
        {"name": "unknown", "triplets": str(tmp_path / "unknown.csv"), "similarity": "cosin"},
        {"name": "rdm", "rdms": str(EXAMPLE / "hIT_subjects.npy"), "similarity": "dot", "times": [0, 1]},
    ]
    with pytest.raises(VisrepsError) as e:
        visreps.bench({**spec, "targets": targets}, out=tmp_path / "o", progress=False)
    msg = str(e.value)
    assert "targets[0].triplets: " in msg and "at least 10 each are needed" in msg
    assert "targets[1].similarity: 'cosin' is not one of dot, cosine; closest: cosine" in msg
    assert "targets[1].triplets: " in msg and "blobs/b99.png" in msg
    assert "targets[2].similarity: only for triplets targets" in msg
    assert "targets[2].times: a list of numbers, one per time point of time_rdms, got [0, 1]" in msg
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_an_hdf5_image_array_benches_like_the_same_images_in_a_folder(tmp_path, capsys):
    """images = an HDF5 file (images_key naming its array): the same tables as the same pixels as PNG files."""
    import h5py
    from PIL import Image

    files = sorted((EXAMPLE / "stimuli").rglob("*.png"))
    pixels = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    flat = tmp_path / "flat"  # no class folders: neither source has labels, so both splits are the same
    flat.mkdir()
    for f in files:
        shutil.copy(f, flat / f.name)
    with h5py.File(tmp_path / "stimuli.hdf5", "w") as h:
        h.create_dataset("imgBrick", data=pixels)
        h.create_dataset("other", data=np.zeros((2, 3)))
    trip = pd.read_csv(EXAMPLE / "triplets.csv")
    index = {str(Path(p).relative_to(EXAMPLE / "stimuli")): i for i, p in enumerate(files)}
    np.save(tmp_path / "t.npy", trip[["image_1", "image_2", "image_3"]].map(index.get).to_numpy(dtype=np.int64))
    targets = [*EXAMPLE_TARGETS[:1], {"name": "ooo", "triplets": str(tmp_path / "t.npy")}]
    out = {}
    for name, images, key in (("folder", flat, None), ("hdf5", tmp_path / "stimuli.hdf5", "imgBrick")):
        spec = {**_spec(tmp_path / name, targets), "images": str(images), "models": _models((1,))}
        if key:
            spec["images_key"] = key
        out[name] = visreps.bench(spec, out=tmp_path / name / "out", progress=False)
    h, f = out["hdf5"], out["folder"]
    assert h.split["path"].tolist() == [f"imgBrick/{i}" for i in range(len(files))]
    assert (h.split["part"] == f.split["part"]).all()
    cols = ["target", "layer", "score", "ceiling_upper", "ci_low", "ci_high", "n_test"]
    pd.testing.assert_frame_equal(h.ranking[cols], f.ranking[cols], check_exact=False, rtol=1e-6)
    capsys.readouterr()
    again = visreps.bench(spec, out=tmp_path / "hdf5" / "out", progress=True)  # the plan asks what the run asked
    assert again.extracted == [] and [c["folder"] for c in again.cache] == [c["folder"] for c in h.cache]
    assert "holds the results of this spec already" in capsys.readouterr().err
    with pytest.raises(VisrepsError, match="images: .*imgBrick, other"):
        visreps.bench({**spec, "images_key": None}, out=tmp_path / "none", progress=False)


def test_the_plan_says_the_disk_each_model_needs_and_refuses_what_does_not_fit(tmp_path, monkeypatch, capsys):
    """Before any work: bytes per image of every model to extract (after its reduction), the hint to reduce a wide
    one, and a work_dir without room for all is a problem naming the widest model and the way out."""
    import collections

    spec = _spec(tmp_path, EXAMPLE_TARGETS[:1])
    wide = ["features.0", "features.1", "features.2"]  # flattened: (64·55·55 · 2 + 64·27·27) · 4 bytes per image
    spec["models"] = [
        {"id": "torchvision:alexnet", "weights": "random", "layers": wide, "label": "wide"},
        {"id": "torchvision:alexnet", "weights": "random", "layers": wide, "label": "reduced", "reduce": "srp:1000"},
    ]
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 10**7, 10**7))  # 10 MB free
    with pytest.raises(VisrepsError) as e:
        visreps.bench(spec, out=tmp_path / "out", progress=True)
    per_image = 4 * (2 * 64 * 55 * 55 + 64 * 27 * 27)
    said = capsys.readouterr().err
    assert f"plan: wide: {per_image / 1e6:.1f} MB per image" in said and "add reduce" in said.split("\n")[0]
    assert "plan: reduced: 12.0 KB per image, 384.0 KB for 32 images" in said  # 3 layers × 1000 values × 4 bytes
    assert "add reduce" not in said.split("\n")[1]
    msg = str(e.value)
    assert f"work_dir: the extractions need {32 * (per_image + 12000) / 1e6:.1f} MB and " in msg
    assert "has 10.0 MB free" in msg
    assert 'add reduce = "srp:4096" to the widest model (models[0]: wide)' in msg
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def _time_rdms(res, lab: str, layer: str, peak: int, rng, n_time: int = 10) -> np.ndarray:
    """4 subjects' RDMs over time: noise, plus the RDM of ``layer`` of model ``lab`` around time ``peak``."""
    X = _features(res, lab, layer)
    signal = 1 - np.corrcoef(X)
    out = np.empty((4, n_time, len(X), len(X)))
    for s in range(4):
        for t in range(n_time):
            w = np.exp(-((t - peak) ** 2) / 2.0)
            m = rng.random((len(X), len(X)))
            m = w * signal + (1.2 - w) * (m + m.T) / 2
            np.fill_diagonal(m, 0)
            out[s, t] = m
    return out


def _courses(feats: dict, D: np.ndarray, idx: np.ndarray, layers: list[str]) -> dict[str, np.ndarray]:
    """``r[s, t]`` of every layer on the images ``idx``, by visreps.analysis.time_resolved_rsa."""
    from visreps.analysis import time_resolved_rsa

    sub = {k: feats[k][idx] for k in layers}
    res = time_resolved_rsa(sub, D[:, :, idx][:, :, :, idx], method="spearman", n_bootstrap=10, n_permutations=10)
    return {k: res.subjects[k] for k in layers}


def test_time_target_matches_time_resolved_rsa_on_each_part(first, tmp_path):
    """A time-resolved target: each layer's selection score is the peak of visreps.analysis.time_resolved_rsa's
    course on the selection images; the committed layer's latency is that peak's time and its score the course at
    that time on the test images; the ceiling and the paired tests over subjects agree with their definitions."""
    from scipy import stats

    from visreps.analysis import rdm_noise_ceiling

    tmp, spec, res0 = first
    times = [-100.0 + 50 * k for k in range(10)]
    np.save(
        tmp_path / "meg.npy", _time_rdms(res0, "alexnet (random, seed 1)", "features.5", 6, np.random.default_rng(4))
    )
    target = {"name": "MEG", "time_rdms": str(tmp_path / "meg.npy"), "times": times}
    res = visreps.bench({**spec, "targets": [target]}, out=tmp_path / "out", progress=False)
    D = np.load(tmp_path / "meg.npy")
    part = res.split["part"].to_numpy()
    parts = {p: np.flatnonzero(part == p) for p in ("selection", "test")}
    ranking = res.ranking.set_index("label")
    at = {}
    for c in res0.cache:
        lab = c["label"]
        lay = res.layers[res.layers["label"] == lab].set_index("layer")
        feats = {layer: _features(res0, lab, layer) for layer in ALEX}

        sel = _courses(feats, D, parts["selection"], ALEX)
        peaks = {k: float(v.mean(axis=0).max()) for k, v in sel.items()}
        np.testing.assert_allclose([lay.loc[k, "selection_score"] for k in ALEX], [peaks[k] for k in ALEX], atol=1e-9)
        best = max(peaks, key=peaks.get)
        t = int(np.argmax(sel[best].mean(axis=0)))
        r = _courses(feats, D, parts["test"], [best])[best][:, t]
        row = ranking.loc[lab]
        assert row["layer"] == best and row["time"] == times[t] and row["kind"] == "time-rsa"
        assert row["score"] == pytest.approx(r.mean(), abs=1e-9)
        nc = rdm_noise_ceiling(D[:, t][:, parts["test"]][:, :, parts["test"]], "spearman")
        assert (row["ceiling_lower"], row["ceiling_upper"]) == pytest.approx((nc.lower, nc.upper), abs=1e-12)
        assert row["ci_low"] < row["score"] < row["ci_high"]
        at[lab] = r
    assert ranking.loc["alexnet (random, seed 1)", "layer"] == "features.5"
    assert ranking.loc["alexnet (random, seed 1)", "time"] == times[6]  # the latency the signal was put at
    p = stats.ttest_rel(at["alexnet (random, seed 1)"], at["alexnet (random, seed 2)"]).pvalue
    assert res.pairwise["p"].iloc[0] == pytest.approx(p, abs=1e-12)
    spec_bad = {
        **spec,
        "targets": [{**target, "times": times[:3]}],
        "analysis": {**spec["analysis"], "rsa": {"compare": "kendall"}},
    }
    with pytest.raises(VisrepsError) as e:
        visreps.bench(spec_bad, out=tmp_path / "bad", progress=False)
    assert "10 time points but 3 times were given" in str(e.value)
    with pytest.raises(VisrepsError) as e:
        visreps.bench({**spec_bad, "targets": [target]}, out=tmp_path / "bad", progress=False)
    assert "analysis.rsa.compare: 'kendall' for the time-resolved target 'MEG'" in str(e.value)
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_pure_noise_held_out_scores_are_centred_on_zero(first, tmp_path):
    """The committed layer's held-out score on noise targets is centred on 0; the best in-sample score is not."""
    tmp, spec, _ = first
    rng = np.random.default_rng(11)
    targets = []
    for k in range(20):
        m = rng.random((4, 32, 32))
        m = (m + m.transpose(0, 2, 1)) / 2
        for s in m:
            np.fill_diagonal(s, 0)
        np.save(tmp_path / f"noise{k}.npy", m)
        targets.append({"name": f"noise{k}", "rdms": str(tmp_path / f"noise{k}.npy")})
    spec2 = {
        **spec,
        "targets": targets,
        "analysis": {**spec["analysis"], "bootstrap": {"factors": "images", "n": 20}, "test": "none"},
    }
    res = visreps.bench(spec2, out=tmp_path / "out", progress=False)
    held = res.ranking["score"].to_numpy()
    best_in_sample = res.layers.groupby(["target", "label"])["selection_score"].max().to_numpy()
    se = held.std(ddof=1) / np.sqrt(len(held))
    assert abs(held.mean()) < 3 * se
    t_in = best_in_sample.mean() / (best_in_sample.std(ddof=1) / np.sqrt(len(best_in_sample)))
    assert t_in > 3 and best_in_sample.mean() > held.mean() + 2 * se


@pytest.mark.slow
def test_rerun_and_added_model_extract_only_what_is_new(first):
    tmp, spec, res = first
    again = visreps.bench(spec, out=tmp / "out", progress=False)
    assert again.extracted == []
    pd.testing.assert_frame_equal(again.ranking, res.ranking, check_dtype=False)
    spec3 = {**spec, "models": _models((1, 2, 7))}
    res3 = visreps.bench(spec3, out=tmp / "out3", progress=False)
    assert res3.extracted == ["alexnet (random, seed 7)"]
    cv = {**spec, "analysis": {**spec["analysis"], "selection": {"split": 0.5, "seed": 0, "cv": 2}}}
    res4 = visreps.bench(cv, out=tmp / "out_cv", progress=False)
    assert res4.extracted == [] and (res4.ranking["n_folds"] == 2).all()
    assert "selection_score_swapped" in res4.layers and sorted(set(res4.pairwise["fold"])) == [0, 1]


def test_the_whole_spec_is_checked_first_one_line_per_problem(tmp_path):
    np.save(tmp_path / "small.npy", np.zeros((3, 10, 10)))
    spec = _spec(tmp_path, [{"name": "a", "rdms": str(tmp_path / "small.npy")}, {"name": "b", "respones": "x.npy"}])
    spec["wrok_dir"] = "x"
    spec["models"] = [
        {"id": "torchvision:alexnet", "weights": "random", "layers": ["features.99"], "reduce": "srp:zero"},
        {"id": "torchvision:no_such_net", "weights": "random", "layers": ["x"], "sed": 1},
    ]
    spec["analysis"]["selection"] = {"split": 0.05, "seed": 0}
    spec["analysis"]["rsa"] = {"rdm": "corelation"}
    with pytest.raises(VisrepsError) as e:
        visreps.bench(spec, out=tmp_path / "out", progress=False)
    msg = str(e.value)
    assert "\n" not in msg
    for part in (
        "wrok_dir: unknown key (did you mean 'work_dir'?)",
        "models[1].sed: unknown key (did you mean 'seed'?)",
        "targets[1].respones: unknown key (did you mean 'responses'?)",
        "targets[0].rdms: 10 × 10 RDMs for 32 images",
        "models[0].layers:",
        "models[0].reduce:",
        "features.99",
        "models[1].id: 'torchvision:no_such_net' cannot be loaded",
        "analysis.selection.split: 2 selection and 30 test images",
        "analysis.rsa.rdm: 'corelation' is not one of",
    ):
        assert part in msg, part
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()  # nothing done


def test_outputs_never_replace_foreign_files_or_inputs(first, tmp_path):
    tmp, spec, _ = first
    out = tmp_path / "out"
    out.mkdir()
    (out / "ranking.csv").write_text("mine")
    with pytest.raises(VisrepsError, match="ranking.csv' exists and was not written by visreps bench"):
        visreps.bench(spec, out=out, progress=False)
    assert (out / "ranking.csv").read_text() == "mine"
    with pytest.raises(VisrepsError, match="lies in the image folder"):
        visreps.bench(spec, out=EXAMPLE / "stimuli" / "out", progress=False)


def test_cli_bench(first, tmp_path):
    from click.testing import CliRunner

    from visreps.cli import main

    tmp, spec, _ = first
    shutil.copytree(EXAMPLE / "stimuli", tmp_path / "stimuli")
    shutil.copy(EXAMPLE / "hIT_subjects.npy", tmp_path)
    lines = ['images = "stimuli/"', f'work_dir = "{tmp / "cache"}"', 'device = "cpu"']
    for m in _models():
        lines += [
            "[[models]]",
            f'id = "{m["id"]}"',
            'weights = "random"',
            f"seed = {m['seed']}",
            f"layers = {json.dumps(ALEX)}",
            'pool = "avg"',
        ]
    lines += ["[[targets]]", 'name = "hIT"', 'rdms = "hIT_subjects.npy"', "[analysis]", "bootstrap = { n = 100 }"]
    (tmp_path / "spec.toml").write_text("\n".join(lines))
    r = CliRunner().invoke(main, ["bench", str(tmp_path / "spec.toml"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "alexnet (random, seed 1)" in r.output and (tmp_path / "o" / "ranking.png").is_file()
    (tmp_path / "bad.toml").write_text('images = "stimuli/"\nmodels = 3\n')
    r = CliRunner().invoke(main, ["bench", str(tmp_path / "bad.toml"), "--out", str(tmp_path / "o2")])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "targets: none given" in r.output


def test_engine_is_checked_before_anything_is_read(tmp_path, monkeypatch):
    """A wrong engine, or --engine ray without the extra: one line, before the spec is read (it does not exist)."""
    import sys

    from click.testing import CliRunner

    from visreps.cli import main

    with pytest.raises(VisrepsError, match=r"engine 'rya' is not a bench engine; use one of local, ray; closest: ray"):
        visreps.bench(tmp_path / "nothing.toml", out=tmp_path / "o", engine="rya")
    monkeypatch.setitem(sys.modules, "ray", None)
    r = CliRunner().invoke(
        main, ["bench", str(tmp_path / "nothing.toml"), "--out", str(tmp_path / "o"), "--engine", "ray"]
    )
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "pip install visreps[ray]" in r.output, r.output
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_the_spec_of_the_issue_runs_as_written(tmp_path):
    shutil.copytree(EXAMPLE, tmp_path / "bench", ignore=shutil.ignore_patterns("cache"))
    res = visreps.bench(tmp_path / "bench" / "spec.toml", out=tmp_path / "out", progress=False)
    assert set(res.ranking["target"]) == {"hIT", "V4"} and len(res.ranking) == 4
    assert (tmp_path / "bench" / "cache").is_dir()  # work_dir relative to the spec's folder


@pytest.mark.slow
def test_an_interrupted_bench_continues_where_it_stopped(first, tmp_path, monkeypatch):
    """Ctrl-C during the third model's extraction: no outputs; run again, only that model is extracted."""
    import visreps.extraction

    tmp, spec, _ = first
    spec3 = {**spec, "models": _models((1, 2, 8))}
    real = visreps.extraction.extract

    def interrupted(model, images, **kw):
        if kw.get("seed") == 8:
            raise KeyboardInterrupt
        return real(model, images, **kw)

    monkeypatch.setattr(visreps.extraction, "extract", interrupted)
    with pytest.raises(KeyboardInterrupt):
        visreps.bench(spec3, out=tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "ranking.csv").exists()
    monkeypatch.undo()
    res = visreps.bench(spec3, out=tmp_path / "out", progress=False)
    assert res.extracted == ["alexnet (random, seed 8)"] and len(res.ranking) == 6


def test_responses_rows_are_matched_to_images_by_name(first, tmp_path):
    """A responses file whose `images` names its rows in another order gives the same ranking as one in image order."""
    tmp, spec, res = first
    split = pd.read_csv(tmp / "out" / "split.csv")
    v4 = np.load(EXAMPLE / "v4.npy")
    order = np.arange(len(split))[::-1]
    np.savez(tmp_path / "v4_named.npz", responses=v4[:, order], images=np.array(split["path"], dtype=str)[order])
    spec2 = {**spec, "targets": [{"name": "V4", "responses": str(tmp_path / "v4_named.npz")}]}
    named = visreps.bench(spec2, out=tmp_path / "out", progress=False)
    mine = res.ranking[res.ranking["target"] == "V4"].reset_index(drop=True)
    pd.testing.assert_frame_equal(named.ranking, mine, check_exact=False, rtol=1e-12)


def test_outputs_are_one_transaction_of_the_analysis_output_plan(first, tmp_path, monkeypatch):
    """Ctrl-C while the outputs are written leaves no file (final or partial); a complete run is recorded as the
    analysis commands' runs are (``.visreps-outputs.json``), ``bench.json`` listing the same files."""
    import importlib

    from visreps.models._base import file_sha256
    from visreps.outputs import recorded_files

    tmp, spec, res = first
    out = tmp_path / "out"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module("visreps.bench._outputs"), "_figure", interrupted)
    with pytest.raises(KeyboardInterrupt):
        visreps.bench(spec, out=out, progress=False)
    assert not out.exists() or list(out.iterdir()) == []
    monkeypatch.undo()
    again = visreps.bench(spec, out=out, progress=False)
    pd.testing.assert_frame_equal(again.ranking, res.ranking, check_dtype=False)
    from visreps.bench import OUTPUT_FILES

    assert sorted(p.name for p in out.iterdir()) == sorted([*OUTPUT_FILES, ".visreps-outputs.json"])
    assert recorded_files(out) == sorted(OUTPUT_FILES)
    record = json.loads((out / "bench.json").read_text())
    assert record["files"] == list(OUTPUT_FILES)
    assert record["checksums"] == {n: file_sha256(out / n) for n in OUTPUT_FILES if n != "bench.json"}
