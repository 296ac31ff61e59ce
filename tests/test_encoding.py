"""Encoding models against scikit-learn and himalaya, kernel = primal, streaming = in memory, known truth, bad input."""

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from test_analysis_compare import PATHS, make_output_folder
from visreps.analysis import encode, make_folds
from visreps.analysis.encoding import fold_scores
from visreps.cli import main
from visreps.errors import VisrepsError
from visreps.plotting import plot_encoding

ALPHAS = np.logspace(-2, 4, 7)


def problem(n=60, p=200, t=6, seed=0, offset=3.0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    W = rng.standard_normal((p, t)) / np.sqrt(p)
    Y = X @ W + 0.7 * rng.standard_normal((n, t)) + offset
    return X, Y


def predictions(res):
    (pred,) = res.predictions.values()
    return pred


@pytest.mark.parametrize("p, solver", [(200, "kernel"), (200, "primal"), (20, "primal"), (20, "kernel")])
def test_ridge_loo_equals_sklearn_ridgecv_same_folds(p, solver):
    from sklearn.linear_model import RidgeCV

    X, Y = problem(n=60, p=p)
    res = encode(X, Y, alphas=ALPHAS, folds=5, solver=solver, return_predictions=True)
    assert res.info["solvers"] == {"features 1": solver}
    ref = np.empty_like(Y)
    for f in range(5):
        te = res.fold_of == f
        m = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(X[~te], Y[~te])
        ref[te] = m.predict(X[te])
        np.testing.assert_array_equal(res.folds[res.folds.fold == f].alpha.to_numpy(), m.alpha_)
    np.testing.assert_allclose(predictions(res), ref, rtol=0, atol=1e-6)
    r, r2 = zip(*[fold_scores(Y[res.fold_of == f], ref[res.fold_of == f]) for f in range(5)])
    np.testing.assert_allclose(res.targets.r, np.mean(r, axis=0), atol=1e-6)
    np.testing.assert_allclose(res.targets.r2, np.mean(r2, axis=0), atol=1e-6)
    from sklearn.metrics import r2_score

    te = res.fold_of == 0
    np.testing.assert_allclose(res.folds[res.folds.fold == 0].r2, r2_score(Y[te], ref[te], multioutput="raw_values"))


@pytest.mark.parametrize("p, solver", [(150, "kernel"), (15, "primal")])
def test_ridge_kfold_equals_himalaya(p, solver):
    from himalaya.kernel_ridge import KernelRidgeCV
    from himalaya.ridge import RidgeCV

    X, Y = problem(n=80, p=p, seed=1)
    res = encode(X, Y, alphas=ALPHAS, inner="kfold", solver=solver, return_predictions=True)
    for f in range(5):
        te = res.fold_of == f
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            krr = KernelRidgeCV(alphas=ALPHAS, kernel="linear", cv=5, fit_intercept=True).fit(X[~te], Y[~te])
            rr = RidgeCV(alphas=ALPHAS, cv=5, fit_intercept=True).fit(X[~te], Y[~te])
        chosen = res.folds[res.folds.fold == f].alpha.to_numpy()
        np.testing.assert_allclose(chosen, krr.best_alphas_, rtol=1e-9)
        np.testing.assert_allclose(chosen, rr.best_alphas_, rtol=1e-9)
        np.testing.assert_allclose(predictions(res)[te], krr.predict(X[te]), atol=1e-6)
        np.testing.assert_allclose(predictions(res)[te], rr.predict(X[te]), atol=1e-6)


def test_kernel_form_equals_primal_form():
    X, Y = problem(n=50, p=30, seed=2)
    for inner in ("loo", "kfold"):
        k = encode(X, Y, alphas=ALPHAS, solver="kernel", inner=inner, return_predictions=True)
        p = encode(X, Y, alphas=ALPHAS, solver="primal", inner=inner, return_predictions=True)
        np.testing.assert_allclose(predictions(k), predictions(p), atol=1e-9)
        pd.testing.assert_series_equal(k.targets.alpha, p.targets.alpha)


def test_streamed_memmap_folder_equals_in_memory(tmp_path):
    X, Y = problem(n=len(PATHS), p=90, seed=3)
    X32 = X.astype(np.float32)
    folder = make_output_folder(tmp_path / "f", "m", {"conv": X32.reshape(len(PATHS), 9, 10)})
    streamed = encode(folder, Y, alphas=ALPHAS, folds=3, block_size=7, return_predictions=True)
    memory = encode(X32.astype(np.float64), Y, alphas=ALPHAS, folds=3, return_predictions=True)
    assert streamed.info["solvers"] == {"m/conv": "kernel"}
    np.testing.assert_allclose(predictions(streamed), predictions(memory), rtol=1e-9, atol=1e-9)
    assert streamed.images == PATHS


def test_gram_on_a_torch_device_equals_numpy(tmp_path):
    """device=: the Gram matrix accumulated by torch (here a torch.device("cpu"): the code path a GPU takes) gives
    the numpy/BLAS result, for ridge, PLS and banded ridge; the device is recorded."""
    import torch

    X, Y = problem(n=len(PATHS), p=90, seed=4)
    folder = make_output_folder(tmp_path / "f", "m", {"a": X[:, :60], "b": X[:, 60:]})
    for method in ("ridge", "pls", "banded"):
        kw = dict(alphas=ALPHAS, folds=3, block_size=11, return_predictions=True, method=method, solver="kernel")
        if method == "banded":
            kw.update(n_iter=3)
        on_numpy = encode(folder, Y, device="cpu", **kw)
        on_torch = encode(folder, Y, device=torch.device("cpu"), **kw)
        assert on_torch.predictions.keys() == on_numpy.predictions.keys()
        for label, pred in on_numpy.predictions.items():
            np.testing.assert_allclose(on_torch.predictions[label], pred, rtol=1e-9, atol=1e-9)
        assert on_numpy.info["device"] == "cpu" and on_torch.info["device"] == "cpu"
    with pytest.raises(VisrepsError, match="device 'gpu0' is not valid; use auto, cpu, cuda"):
        encode(X, Y, device="gpu0")


@pytest.mark.parametrize("p", [120, 15])
def test_pls_equals_sklearn_on_raw_features(p):
    from sklearn.cross_decomposition import PLSRegression

    X, Y = problem(n=60, p=p, seed=4)
    res = encode(X, Y, method="pls", n_components=4, return_predictions=True)
    ref = np.empty_like(Y)
    for f in range(5):
        te = res.fold_of == f
        ref[te] = PLSRegression(n_components=4, scale=False).fit(X[~te], Y[~te]).predict(X[te])
    np.testing.assert_allclose(predictions(res), ref, atol=1e-6)


def test_banded_ridge_weights_the_informative_band():
    rng = np.random.default_rng(5)
    A, B = rng.standard_normal((60, 40)), rng.standard_normal((60, 40))
    Y = A @ rng.standard_normal((40, 4)) + 0.5 * rng.standard_normal((60, 4))
    res = encode({"a": A, "b": B}, Y, method="banded", n_iter=6, alphas=np.logspace(-1, 4, 6))
    assert list(res.layers.label) == ["banded(a + b)"]
    w = res.band_weights.pivot(index="target", columns="band", values="weight")
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    assert (w["a"] > 0.6).all() and res.targets.r.mean() > 0.5
    assert set(res.targets.columns) >= {"weight:a", "weight:b"}


def test_ceiling_normalised_score_recovers_the_noiseless_truth():
    """Known weights and noise, 4 repetitions: r/√ρ equals the r of the predictions with the noiseless signal.

    Tolerance: the mean over 150 targets within 0.01 (measured 0.001–0.003 over seeds); the raw
    score is far below (≈ 0.75 × the truth, ρ ≈ 0.64).
    """
    rng = np.random.default_rng(0)
    n, p, t, reps = 240, 30, 150, 4
    X = rng.standard_normal((n, p))
    S = X @ (rng.standard_normal((p, t)) / np.sqrt(p))
    R = S[None] + rng.normal(0.0, 1.5, (reps, n, t))
    res = encode(X, R, axes="repetitions,images,targets", ceiling=True, return_predictions=True)
    pred = predictions(res)
    truth = np.mean([fold_scores(S[res.fold_of == f], pred[res.fold_of == f])[0] for f in range(5)], axis=0)
    assert abs(res.targets.r_ceiled.mean() - truth.mean()) < 0.01
    assert res.targets.r.mean() < truth.mean() - 0.15
    assert abs(res.ceiling.mean() - 1 / (1 + 1.5**2 / reps)) < 0.05
    row = res.layers.iloc[0]
    assert row.r_ceiled_mean == pytest.approx(res.targets.r_ceiled.mean())
    assert row.ceiling_r == pytest.approx(np.sqrt(res.ceiling).mean())
    given = encode(X, R.mean(axis=0), ceiling=res.ceiling)
    np.testing.assert_allclose(given.targets.r_ceiled, res.targets.r_ceiled)


def test_folds_random_groups_and_explicit():
    f = make_folds(23, 5, seed=1)
    assert sorted(np.bincount(f)) == [4, 4, 5, 5, 5]
    np.testing.assert_array_equal(f, make_folds(23, 5, seed=1))
    groups = np.repeat(np.arange(8), [1, 2, 3, 4, 5, 1, 2, 3])
    g = make_folds(len(groups), 4, groups=groups, seed=0)
    for label in np.unique(groups):
        assert len(set(g[groups == label])) == 1
    np.testing.assert_array_equal(make_folds(4, [7, 7, 9, 9]), [0, 0, 1, 1])


def test_groups_keep_categories_in_one_fold():
    X, Y = problem(n=40, p=50)
    groups = np.repeat(["cat", "dog", "car", "cup", "hat"], 8)
    res = encode(X, Y, groups=groups, folds=5)
    assert all(len(set(res.fold_of[groups == g])) == 1 for g in set(groups))


def test_constant_targets_score_nan_with_a_warning_naming_how_many():
    X, Y = problem(n=40, p=50)
    Y[:, 1] = 2.0
    Y[:, 4] = 0.0
    with pytest.warns(
        UserWarning, match=r"2 of 6 targets are constant across images \(e\.g\. \['1', '4'\]\): scores NaN"
    ):
        res = encode(X, Y)
    assert res.constant == ["1", "4"]
    assert res.targets.r.isna().tolist() == [False, True, False, False, True, False]
    assert res.layers.n_targets.iloc[0] == 4


def test_nan_error_and_drop_through_encode():
    X, Y = problem(n=40, p=50)
    Y[3, 2] = np.nan
    with pytest.raises(
        VisrepsError, match=r"1 NaN/inf value\(s\) in 1 of 6 targets \(first: target '2', image 'row 3'\)"
    ):
        encode(X, Y)
    with pytest.warns(UserWarning, match=r"dropped 1 of 6 targets"):
        res = encode(X, Y, nan="drop")
    assert res.dropped == ["2"] and res.target_labels == ["0", "1", "3", "4", "5"]
    assert len(res.targets) == 5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"folds": 50}, r"fewer images \(40\) than folds \(50\)"),
        ({"folds": 1}, "folds must be at least 2"),
        ({"groups": np.repeat([0, 1, 2], [13, 13, 14])}, r"fewer groups \(3\) than folds \(5\)"),
        ({"ceiling": True}, "split-half noise ceiling needs responses with a repetitions axis"),
        ({"ceiling": np.ones(4)}, "ceiling has 4 values but there are 6 targets"),
        ({"alphas": [1, -1]}, "alphas must be positive finite numbers"),
        ({"method": "lasso"}, "method='lasso' is not known; use one of ridge, pls, banded"),
        ({"inner": "gcv"}, "inner='gcv' is not known"),
        ({"method": "banded"}, "needs at least 2 layers"),
    ],
)
def test_bad_options(kwargs, message):
    X, Y = problem(n=40, p=50)
    with pytest.raises(VisrepsError, match=message):
        encode(X, Y, **kwargs)


def test_mismatched_image_sets(tmp_path):
    X, Y = problem(n=len(PATHS), p=30)
    folder = make_output_folder(tmp_path / "f", "m", {"fc": X})
    with pytest.raises(VisrepsError, match=r"have 11 rows \(images\) but the features have 12"):
        encode(folder, Y[:11])
    names = list(PATHS)
    names[5] = "cls1/unknown.png"
    with pytest.raises(VisrepsError, match=r"name 1 image\(s\) that are not in the features' manifest.*unknown.png"):
        encode(folder, Y, order=names)
    shuffled = np.random.default_rng(0).permutation(len(PATHS))
    a = encode(folder, Y[shuffled], order=[PATHS[i] for i in shuffled], folds=make_folds(12, 3)[shuffled])
    b = encode(folder, Y, folds=make_folds(12, 3))
    pd.testing.assert_frame_equal(a.layers, b.layers)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_cli_end_to_end_tables_figure_and_values(tmp_path):
    rng = np.random.default_rng(7)
    X1, X2 = rng.standard_normal((12, 40)), rng.standard_normal((12, 5))
    folder = make_output_folder(tmp_path / "alex", "torchvision:alexnet", {"conv": X1, "fc": X2})
    reps = (X1 @ rng.standard_normal((40, 5)))[None] + rng.standard_normal((3, 12, 5))
    order = rng.permutation(12)
    np.savez(tmp_path / "resp.npz", responses=reps[:, order], images=np.array([PATHS[i] for i in order]))
    out = tmp_path / "enc"
    r = run(
        "encode",
        folder,
        tmp_path / "resp.npz",
        "--axes",
        "repetitions,images,targets",
        "--ceiling",
        "--folds",
        3,
        "-o",
        out,
    )
    assert r.exit_code == 0, r.output
    assert "results → " in r.output and "alexnet/conv" in r.output
    for name in ("layers.csv", "targets.csv", "folds.csv", "fold_of_image.csv"):
        assert (out / name).is_file()
    with Image.open(out / "encoding.png") as im:
        assert im.format == "PNG" and im.size[0] > 100
    api = encode(folder, tmp_path / "resp.npz", axes="repetitions,images,targets", ceiling=True, folds=3)
    written = pd.read_csv(out / "targets.csv")
    np.testing.assert_array_equal(written.r.to_numpy(), api.targets.r.to_numpy())  # full precision
    np.testing.assert_array_equal(written.r_ceiled.to_numpy(), api.targets.r_ceiled.to_numpy())
    assert list(pd.read_csv(out / "layers.csv").label) == ["alexnet/conv", "alexnet/fc"]

    before = (out / "layers.csv").read_bytes()
    args = ["encode", str(folder), str(tmp_path / "resp.npz"), "--axes", "repetitions,images,targets", "-o", str(out)]
    again = CliRunner().invoke(main, [*args, "--folds", "2"])
    assert again.exit_code == 2 and len(again.output.strip().splitlines()) == 1
    assert f"{out / 'layers.csv'}" in again.output and "already exist" in again.output
    assert "--overwrite" in again.output
    assert (out / "layers.csv").read_bytes() == before  # nothing replaced without consent
    assert run(*args, "--folds", 2, "--overwrite").exit_code == 0
    assert (out / "layers.csv").read_bytes() != before
    # only what this run would write counts: with --no-plot the earlier figure is no clash (tables elsewhere)
    other = tmp_path / "other"
    other.mkdir()
    (other / "encoding.png").write_bytes(b"a figure of the user's")
    no_plot = ["encode", str(folder), str(tmp_path / "resp.npz"), "--axes", "repetitions,images,targets"]
    assert run(*no_plot, "-o", str(other), "--folds", 2, "--no-plot").exit_code == 0
    assert (other / "encoding.png").read_bytes() == b"a figure of the user's"
    assert run(*no_plot, "-o", str(other), "--folds", 2).exit_code == 2  # with the figure: refused


def test_cli_groups_nan_drop_and_pls(tmp_path):
    rng = np.random.default_rng(8)
    folder = make_output_folder(tmp_path / "m", "m", {"fc": rng.standard_normal((12, 30))})
    Y = rng.standard_normal((12, 4))
    Y[2, 1] = np.nan
    lines = ["image,a,b,c,d"] + [
        f"{p}," + ",".join("" if np.isnan(v) else f"{v:.17g}" for v in row) for p, row in zip(PATHS, Y)
    ]
    (tmp_path / "r.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "groups.txt").write_text("\n".join(f"{p},{p.split('/')[0]}" for p in PATHS) + "\n")
    out = tmp_path / "o"
    args = ["--nan", "drop", "--groups", tmp_path / "groups.txt", "--folds", 2, "-m", "pls", "--n-components", 2]
    r = run("encode", folder, tmp_path / "r.csv", *args, "--no-plot", "-o", out)
    assert r.exit_code == 0, r.output
    assert "dropped 1 target(s) with NaN values: b" in r.output
    assert "warning: dropped 1 of 4 targets with NaN/inf values (e.g. ['b'])" in r.output
    folds = pd.read_csv(out / "fold_of_image.csv")
    assert folds.groupby(folds.image.str[:4]).fold.nunique().max() == 1
    assert not (out / "encoding.png").exists()


@pytest.mark.parametrize(
    "make, args, message",
    [
        (
            lambda d: np.save(d / "r.npy", np.ones((11, 3))),
            ["--folds", "2"],
            r"have 11 rows \(images\) but the features",
        ),
        (lambda d: np.save(d / "r.npy", np.ones((12, 3))), ["--folds", "20"], r"fewer images \(12\) than folds \(20\)"),
        (lambda d: (d / "r.npy").write_text("junk"), [], "cannot read .* as a numeric .npy array"),
        (lambda d: np.save(d / "r.npy", np.full((12, 2), np.nan)), [], r"24 NaN/inf value\(s\) in 2 of 2 targets"),
    ],
)
def test_cli_errors_are_one_line_exit_2(tmp_path, make, args, message):
    folder = make_output_folder(tmp_path / "m", "m", {"fc": np.random.default_rng(0).standard_normal((12, 8))})
    make(tmp_path)
    r = CliRunner().invoke(main, ["encode", str(folder), str(tmp_path / "r.npy"), *args])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and re.search(message, lines[0]), r.output


def test_plot_encoding_draws_bars_and_rejects_unknown_scores(tmp_path):
    X, Y = problem(n=40, p=50)
    res = encode({"a": X, "b": X[:, :10]}, Y)
    fig = plot_encoding(res, tmp_path / "e.png", title="t")
    assert len(fig.axes[0].patches) == 2 and (tmp_path / "e.png").is_file()
    with pytest.raises(VisrepsError, match="has no 'r_ceiled' scores"):
        plot_encoding(res.layers, score="r_ceiled")


def test_groups_file_in_row_order_or_by_image(tmp_path):
    from visreps.cli.encode import read_groups

    (tmp_path / "plain.txt").write_text("cat\ncat\ndog\n")
    assert read_groups(str(tmp_path / "plain.txt"), None, 3) == ["cat", "cat", "dog"]
    (tmp_path / "named.csv").write_text("image,group\nx/b.png,dog\nx/a.png,cat\n")
    assert read_groups(str(tmp_path / "named.csv"), ["a.png", "x/b.png"], 2) == ["cat", "dog"]
    with pytest.raises(VisrepsError, match="has 3 lines but the responses have 4 images"):
        read_groups(str(tmp_path / "plain.txt"), None, 4)
    with pytest.raises(VisrepsError, match=r"gives no group for 1 image\(s\), e\.g\. \['c.png'\]"):
        read_groups(str(tmp_path / "named.csv"), ["a.png", "c.png"], 2)
