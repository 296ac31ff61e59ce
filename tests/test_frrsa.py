"""Feature-reweighted RSA against the frrsa code, and weighted RSA against rsatoolbox."""

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform

from visreps.analysis.frrsa import (
    feature_reweighted_rsa,
    nonnegative_ridge,
    pair_features,
    weighted_rsa,
)
from visreps.errors import VisrepsError

sys.path.insert(0, str(Path(__file__).parent / "reference"))

HYPER = [1e-1, 1e1, 1e3, 1e5]
HYPER3 = [1e-1, 1e2, 1e5]


def toy(n=14, c=5, seed=0):
    """A reference RDM built from channels 0 and 1 with unequal weights, plus noise."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, c))
    d = 3 * pdist(X[:, :1], "sqeuclidean") + pdist(X[:, 1:2], "sqeuclidean") + 0.3 * rng.random(n * (n - 1) // 2)
    return X, squareform(d)


def test_pair_features_are_channel_rdms():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((6, 3, 4))
    P = pair_features(X, "sqeuclidean")
    for c in range(3):
        np.testing.assert_allclose(P[:, c], pdist(X[:, c], "sqeuclidean"))
    iu = np.triu_indices(6, 1)
    np.testing.assert_allclose(pair_features(X, "dot")[:, 1], (X[:, 1] @ X[:, 1].T)[iu])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_nonnegative_ridge_equals_sklearn_positive_ridge():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(2)
    Z = rng.standard_normal((60, 8))
    y = Z @ np.array([1.0, -2, 0.5, 0, 3, -1, 0, 0.2]) + 0.1 * rng.standard_normal(60)
    for alpha in (0.1, 1000.0):
        ref = Ridge(alpha=alpha, fit_intercept=False, positive=True, solver="lbfgs", tol=1e-10, max_iter=20000)
        np.testing.assert_allclose(nonnegative_ridge(Z, y, alpha), ref.fit(Z, y).coef_, atol=1e-6)


@pytest.mark.slow  # frrsa's lbfgs fits take ≈50 ms each
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("measure, preprocess", [("sqeuclidean", True), ("dot", False)])
def test_scores_equal_frrsa_reference(measure, preprocess):
    """Same data, splits (random_state) and hyperparameters: frrsa's per-split scores, α and final score."""
    ref = pytest.importorskip("frrsa_ref")
    X, rdm = toy(n=12)
    target = rdm if measure == "sqeuclidean" else -rdm  # dot: similarities
    target_measure = "euclidean" if measure == "sqeuclidean" else "pearson_sim"
    score, split_scores, chosen = ref.frrsa_nonnegative(
        target.copy(),
        X.T.copy(),
        preprocess,
        [measure, target_measure],
        cv=[3, 1],
        hyperparams=HYPER3,
        random_state=4,
        tol=1e-12,
    )
    clip = (0.0, None) if measure == "sqeuclidean" else None
    res = feature_reweighted_rsa(
        {"net": X},
        target,
        measure=measure,
        preprocess=preprocess,
        outer_folds=3,
        repeats=1,
        hyperparams=HYPER3,
        clip=clip,
        seed=4,
    )
    np.testing.assert_allclose(res.splits["alpha"], chosen)
    np.testing.assert_allclose(res.splits["r"], split_scores, atol=1e-5)
    assert res.table.loc[0, "r"] == pytest.approx(score, abs=1e-5)
    if measure == "sqeuclidean":  # with frrsa's own solver tolerance (lbfgs, tol=1e-3): close
        score_default, *_ = ref.frrsa_nonnegative(
            target.copy(),
            X.T.copy(),
            preprocess,
            [measure, target_measure],
            cv=[3, 1],
            hyperparams=HYPER3,
            random_state=4,
        )
        assert res.table.loc[0, "r"] == pytest.approx(score_default, abs=1e-2)


def test_reweighting_finds_the_channels():
    X, rdm = toy(n=16)
    res = feature_reweighted_rsa(X, rdm, preprocess=False, outer_folds=4, repeats=2, hyperparams=HYPER)
    row = res.table.iloc[0]
    w = next(iter(res.weights.values()))[0]
    assert row["r"] > row["r_classical"] and row["r"] > 0.9
    assert w[0] > w[1] > max(w[2:]) and (w >= 0).all()
    assert row["n_channels"] == 5 and row["n_splits"] == 8


def test_frrsa_errors():
    X, rdm = toy(n=8)
    with pytest.raises(VisrepsError, match="at least 9 images"):
        feature_reweighted_rsa(X, rdm)
    X, rdm = toy()
    with pytest.raises(VisrepsError, match="measure must be one of"):
        feature_reweighted_rsa(X, rdm, measure="cosine")


@pytest.mark.parametrize("method", ["corr", "cosine"])
def test_weighted_rsa_equals_rsatoolbox(method):
    """Weights (fit_regress_nn), in-sample and cross-validated scores as rsatoolbox computes them."""
    import rsatoolbox as rsa

    rng = np.random.default_rng(3)
    n = 12
    layers = {f"l{k}": squareform(pdist(rng.standard_normal((n, 6)))) for k in range(3)}
    base = 2 * layers["l0"] + layers["l2"]
    subjects = np.stack([base + rng.random((n, n)) * 0.5 for _ in range(3)])
    subjects = (subjects + subjects.transpose(0, 2, 1)) / 2
    for s in subjects:
        np.fill_diagonal(s, 0)
    table, info = weighted_rsa(layers, subjects, method=method, folds=3, seed=1)

    data = rsa.rdm.RDMs(np.stack([s[np.triu_indices(n, 1)] for s in subjects]))
    model_rdms = rsa.rdm.RDMs(np.stack([m[np.triu_indices(n, 1)] for m in layers.values()]))
    model = rsa.model.ModelWeighted("weighted", model_rdms)
    theta = rsa.model.fit_regress_nn(model, data, method=method)
    np.testing.assert_allclose(table["weight"], theta, atol=1e-8)
    fit = rsa.rdm.compare(model.predict_rdm(theta), data, method=method).mean()
    assert info["r_fit"] == pytest.approx(fit, abs=1e-10)
    r_folds = []
    for f in range(3):
        tr, te = np.flatnonzero(info["fold_of"] != f), np.flatnonzero(info["fold_of"] == f)
        m_tr = rsa.model.ModelWeighted("w", model_rdms.subsample_pattern("index", tr))
        th = rsa.model.fit_regress_nn(m_tr, data.subsample_pattern("index", tr), method=method)
        pred = rsa.model.ModelWeighted("w", model_rdms.subsample_pattern("index", te)).predict_rdm(th)
        r_folds.append(rsa.rdm.compare(pred, data.subsample_pattern("index", te), method=method).mean())
    np.testing.assert_allclose(info["r_folds"], r_folds, atol=1e-8)


def test_cli_frrsa_and_weighted(tmp_path):
    import pandas as pd
    from click.testing import CliRunner

    from test_analysis_compare import make_output_folder
    from visreps.cli import main

    X, rdm = toy(n=12)
    paths = [f"img{i:02d}.png" for i in range(12)]
    folder = make_output_folder(tmp_path / "net", "m", {"fc": X, "fc2": X[:, :3]}, paths=paths)
    np.save(tmp_path / "ref.npy", rdm)
    out = tmp_path / "fr.csv"
    args = ["frrsa", folder, "--reference", tmp_path / "ref.npy", "--folds", "3", "--repeats", "1", "--out", out]
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    df = pd.read_csv(out)
    direct = feature_reweighted_rsa(folder, rdm, outer_folds=3, repeats=1).table
    np.testing.assert_array_equal(df["r"], direct["r"])
    assert (tmp_path / "fr_splits.csv").exists() and (tmp_path / "fr.png").exists()
    args = [
        "frrsa",
        folder,
        "--reference",
        tmp_path / "ref.npy",
        "--weighted",
        "--folds",
        "3",
        "--out",
        tmp_path / "w.csv",
    ]
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    w = pd.read_csv(tmp_path / "w.csv")
    assert list(w.columns) == ["label", "weight", "r_fit", "r_cv"] and len(w) == 2
