"""Variance partitioning: subset R² against scikit-learn's RidgeCV, and the inclusion–exclusion closed forms."""

import itertools

import numpy as np
import pytest

from visreps.analysis.encoding import make_folds
from visreps.analysis.partition import partition_from_r2, subsets_of, variance_partitioning
from visreps.errors import VisrepsError

ALPHAS = np.logspace(-2, 4, 7)


def data(k=3, n=40, seed=0):
    rng = np.random.default_rng(seed)
    sets = {name: rng.standard_normal((n, p)) for name, p in zip("ABCD"[:k], (6, 9, 5, 7))}
    shared = rng.standard_normal((n, 2))
    sets["A"][:, :2] += shared
    sets["B"][:, :2] += shared
    Y = sets["A"][:, :3] @ rng.standard_normal((3, 4)) + sets["B"][:, 2:5] @ rng.standard_normal((3, 4))
    Y += 0.8 * rng.standard_normal(Y.shape)
    return sets, Y


def sklearn_r2(sets, Y, fold_of):
    """R² of every subset model, computed directly: scaled features side by side, RidgeCV, out-of-fold."""
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.model_selection import PredefinedSplit, cross_val_predict

    scaled = []
    for X in sets.values():
        Xc = X - X.mean(axis=0)
        scaled.append(X / np.sqrt((Xc**2).sum() / len(X)))
    out = {}
    for S in subsets_of(len(scaled)):
        Xs = np.hstack([scaled[i] for i in S])
        model = RidgeCV(alphas=ALPHAS, alpha_per_target=True)
        pred = cross_val_predict(model, Xs, Y, cv=PredefinedSplit(fold_of))
        out[S] = r2_score(Y, pred, multioutput="raw_values")
    return out


@pytest.mark.parametrize("k", [2, 3])
def test_subset_r2_and_parts_equal_sklearn(k):
    sets, Y = data(k)
    res = variance_partitioning(sets, Y, alphas=ALPHAS, folds=4, seed=2)
    fold_of = make_folds(len(Y), 4, seed=2)
    ref = sklearn_r2(sets, Y, fold_of)
    names = list(sets)
    for S, r2 in ref.items():
        got = res.subsets[res.subsets["subset"] == "+".join(names[i] for i in S)]["r2"].to_numpy()
        np.testing.assert_allclose(got, r2, atol=1e-8)
    parts = res.parts.pivot(index="target", columns="part", values="r2").loc[res.subsets["target"].unique()]
    full = ref[tuple(range(k))]
    np.testing.assert_allclose(parts.sum(axis=1), full, atol=1e-8)  # the parts add up to R²(all)
    if k == 2:
        np.testing.assert_allclose(parts["unique A"], full - ref[(1,)], atol=1e-8)
        np.testing.assert_allclose(parts["unique B"], full - ref[(0,)], atol=1e-8)
        np.testing.assert_allclose(parts["shared A+B"], ref[(0,)] + ref[(1,)] - full, atol=1e-8)
    else:  # three sets: the seven regions of the Venn diagram, written out
        a, b, c = ref[(0,)], ref[(1,)], ref[(2,)]
        ab, ac, bc, abc = ref[(0, 1)], ref[(0, 2)], ref[(1, 2)], full
        np.testing.assert_allclose(parts["unique A"], abc - bc, atol=1e-8)
        np.testing.assert_allclose(parts["shared A+B"], ac + bc - c - abc, atol=1e-8)
        np.testing.assert_allclose(parts["shared A+B+C"], a + b + c - ab - ac - bc + abc, atol=1e-8)
    assert set(res.summary["part"]) == set(parts.columns)


def test_partition_closed_form_four_sets():
    """Hand-made R² from disjoint 'variance regions': the inversion returns each region's size."""
    rng = np.random.default_rng(0)
    regions = {T: rng.uniform(0, 1, 3) for T in subsets_of(4)}
    r2 = {S: sum(v for T, v in regions.items() if set(T) & set(S)) for S in subsets_of(4)}
    parts = partition_from_r2(r2, 4)
    for T in subsets_of(4):
        np.testing.assert_allclose(parts[T], regions[T], atol=1e-12)
    assert len(list(itertools.chain(parts))) == 15


def test_needs_two_to_four_sets():
    sets, Y = data(2)
    with pytest.raises(VisrepsError, match="needs 2 to 4 feature sets, got 1"):
        variance_partitioning({"A": sets["A"]}, Y)
    with pytest.raises(VisrepsError, match="scale must be one of"):
        variance_partitioning(sets, Y, scale="zscore")


def test_cli_partition(tmp_path):
    import pandas as pd
    from click.testing import CliRunner

    from test_analysis_compare import PATHS, make_output_folder
    from visreps.cli import main

    sets, Y = data(2, n=12)
    folder = make_output_folder(tmp_path / "net", "m", {"A": sets["A"], "B": sets["B"]})
    pd.DataFrame(Y, index=pd.Index(PATHS, name="image"), columns=["t0", "t1", "t2", "t3"]).to_csv(tmp_path / "resp.csv")
    out = tmp_path / "vp.csv"
    args = ["partition", folder, "--responses", tmp_path / "resp.csv", "--folds", "3", "--out", out]
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    parts = pd.read_csv(out)
    assert set(parts["part"]) == {"unique A", "unique B", "shared A+B"}
    subsets = pd.read_csv(tmp_path / "vp_subsets.csv")
    full = subsets[subsets["subset"] == "A+B"].set_index("target")["r2"]
    total = parts.groupby("target")["r2"].sum()
    np.testing.assert_allclose(total.loc[full.index], full, atol=1e-12)
    assert (tmp_path / "vp_summary.csv").exists() and (tmp_path / "vp.png").stat().st_size > 1000
