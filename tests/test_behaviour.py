"""Odd-one-out accuracy: against gLocal's evaluation code, closed forms on tiny cases, strict matching."""

import itertools
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from test_analysis_compare import PATHS, make_output_folder
from visreps.analysis.behaviour import (
    choices_from_similarities,
    load_triplets,
    noise_ceiling,
    odd_one_out,
)
from visreps.errors import VisrepsError

sys.path.insert(0, str(Path(__file__).parent / "reference"))


def all_triplets(n, seed=0, m=None):
    t = np.array(list(itertools.combinations(range(n), 3)))
    rng = np.random.default_rng(seed)
    t = rng.permuted(t, axis=1)
    return t if m is None else t[rng.choice(len(t), m, replace=False)]


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_choices_and_accuracy_equal_glocal_reference(similarity):
    """The same features and triplets (odd one out last) give gLocal's choices and accuracy exactly."""
    glocal = pytest.importorskip("glocal_ooo")
    rng = np.random.default_rng(1)
    X = rng.standard_normal((12, 7))
    trip = all_triplets(12, m=150)
    ref_choices, _ = glocal.get_predictions(X, trip, dist=similarity)
    res = odd_one_out({"net": X}, trip, similarity=similarity, n_bootstrap=0)
    np.testing.assert_array_equal(res.choices["net"], ref_choices.numpy().astype(int))
    assert res.table.loc[0, "accuracy"] == pytest.approx(glocal.accuracy(ref_choices), abs=5e-5)
    assert res.table.loc[0, "similarity"] == similarity


def test_closed_form_tiny_case():
    """Hand-set 2-D points: a, b close together and c far: c is the odd one out (dot and cosine)."""
    X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    # triplets, odd one out last: (0,1,2) right; (0,2,1): layer says 2 -> wrong; (2,3,0) right
    trip = np.array([[0, 1, 2], [0, 2, 1], [2, 3, 0]])
    for sim in ("dot", "cosine"):
        res = odd_one_out(X, trip, similarity=sim, n_bootstrap=0)
        np.testing.assert_array_equal(next(iter(res.choices.values())), [2, 1, 2])
        assert res.table.loc[0, "accuracy"] == pytest.approx(2 / 3)
        assert res.table.loc[0, "n_undecided"] == 0


def test_ties_are_no_choice():
    s = np.array([1.0, 2.0, 3.0, 3.0])
    np.testing.assert_array_equal(
        choices_from_similarities(np.array([3.0, 1, 1, 5]), np.array([1.0, 3, 1, 5]), np.array([1.0, 1, 3, 5])),
        [2, 1, 0, -1],
    )
    # two pairs tied for the largest: undecided (gLocal would pick the first pair)
    assert choices_from_similarities(s[[3]], s[[3]], s[[0]])[0] == -1
    X = np.zeros((3, 4))  # all similarities 0
    res = odd_one_out(X, np.array([[0, 1, 2]]), n_bootstrap=0)
    assert res.table.loc[0, "accuracy"] == 0 and res.table.loc[0, "n_undecided"] == 1


def test_noise_ceiling_closed_form():
    """Triplet {0,1,2} shown 4 times (choices 2,2,2,0) and {3,4,5} twice (5,4); {6,7,8} once: (3+1)/6."""
    rows = np.array([[0, 1, 2], [1, 0, 2], [2, 1, 0], [1, 2, 0], [3, 4, 5], [3, 5, 4], [6, 7, 8]])
    odd = np.array([2, 2, 0, 2, 2, 2, 2])
    ceiling, n_rep, mask = noise_ceiling(rows, odd)
    assert ceiling == pytest.approx(4 / 6)
    assert n_rep == 2
    np.testing.assert_array_equal(mask, [1, 1, 1, 1, 1, 1, 0])


def test_bootstrap_interval_matches_resampling_triplets():
    """The binomial draws give the interval of resampling triplet indices (within Monte-Carlo error)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((15, 5))
    trip = all_triplets(15, m=300)
    res = odd_one_out(X, trip, n_bootstrap=4000, seed=3)
    agree = next(iter(res.choices.values())) == 2
    boots = [agree[rng.integers(0, len(agree), len(agree))].mean() for _ in range(4000)]
    lo, hi = np.quantile(boots, [0.025, 0.975])
    row = res.table.iloc[0]
    assert row["ci_low"] == pytest.approx(lo, abs=0.012) and row["ci_high"] == pytest.approx(hi, abs=0.012)
    again = odd_one_out(X, trip, n_bootstrap=4000, seed=3).table
    assert again.loc[0, "ci_low"] == row["ci_low"]  # seeded


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(5)
    return make_output_folder(
        tmp_path / "net",
        "torchvision:alexnet",
        {"fc": rng.standard_normal((12, 6)), "conv": rng.standard_normal((12, 2, 3, 3))},
    )


def test_names_choice_column_and_per_triplet_table(folder, tmp_path):
    """A CSV naming images (file names) with a `choice` column gives the same as indices with the odd one last."""
    idx = all_triplets(12, seed=2, m=40)
    names = [[Path(PATHS[i]).name for i in row] for row in idx]
    # the choice column names the last image, but the columns are rotated: order must not matter
    df = pd.DataFrame([[r[1], r[2], r[0], r[2]] for r in names], columns=["a", "b", "c", "choice"])
    df.to_csv(tmp_path / "t.csv", index=False)
    by_name = odd_one_out(folder, tmp_path / "t.csv", n_bootstrap=0)
    by_index = odd_one_out(folder, idx, n_bootstrap=0)
    np.testing.assert_allclose(by_name.table["accuracy"], by_index.table["accuracy"])
    assert by_name.info["choice_from"] == "choice column"
    per = by_name.per_triplet
    assert len(per) == 2 * 40 and set(per["label"]) == set(by_name.table["label"])
    first = per[per["label"] == by_name.table.loc[0, "label"]]
    assert first["agree"].mean() == pytest.approx(by_name.table.loc[0, "accuracy"])
    assert list(first["human"][:3]) == [PATHS[i] for i in idx[:3, 2]]
    # the same triplets as a text file and an npy file
    np.save(tmp_path / "t.npy", idx)
    (tmp_path / "t.txt").write_text("\n".join(" ".join(r) for r in names))
    for f in ("t.npy", "t.txt"):
        np.testing.assert_allclose(
            odd_one_out(folder, tmp_path / f, n_bootstrap=0).table["accuracy"], by_index.table["accuracy"]
        )


def test_strict_matching_errors(folder, tmp_path):
    (tmp_path / "bad.txt").write_text("img00.png img01.png nothere.png\n")
    with pytest.raises(VisrepsError, match=r"not in the manifest.*nothere\.png"):
        odd_one_out(folder, tmp_path / "bad.txt")
    (tmp_path / "amb.txt").write_text("img00.png c/x.png x.png\n")
    amb = make_output_folder(
        tmp_path / "amb", "m", {"x": np.ones((3, 2))}, paths=["a/img00.png", "b/img00.png", "c/x.png"]
    )
    with pytest.raises(VisrepsError, match="match several manifest paths"):
        odd_one_out(amb, tmp_path / "amb.txt")
    with pytest.raises(VisrepsError, match=r"outside 0\.\.11"):
        odd_one_out(folder, np.array([[0, 1, 12]]))
    with pytest.raises(VisrepsError, match="one image twice"):
        odd_one_out(folder, np.array([[0, 1, 1]]))
    pd.DataFrame({"a": ["img00.png"], "b": ["img01.png"], "c": ["img02.png"], "choice": ["img05.png"]}).to_csv(
        tmp_path / "c.csv", index=False
    )
    with pytest.raises(VisrepsError, match="'choice' 'img05.png' is not one of its"):
        odd_one_out(folder, tmp_path / "c.csv")
    (tmp_path / "h.csv").write_text("0,1,2\n3,4,5\n")
    with pytest.raises(VisrepsError, match="must be a header"):
        load_triplets(tmp_path / "h.csv")
    with pytest.raises(VisrepsError, match="similarity must be one of"):
        odd_one_out(folder, np.array([[0, 1, 2]]), similarity="euclid")


def test_nan_features_named(tmp_path):
    X = np.ones((4, 3))
    X[2, 1] = np.nan
    with pytest.raises(VisrepsError, match=r"NaN or infinite values \(rows \[2\]\)"):
        odd_one_out({"net": X}, np.array([[0, 1, 2]]))


def test_ceiling_in_table(folder):
    trip = np.array([[0, 1, 2], [1, 0, 2], [0, 2, 1], [3, 4, 5]])
    res = odd_one_out(folder, trip, n_bootstrap=10)
    assert res.table.loc[0, "ceiling"] == pytest.approx(2 / 3)
    assert res.table.loc[0, "n_repeated"] == 1
    assert {"layer", "accuracy", "ci_low", "ci_high", "n_triplets"} <= set(res.table.columns)


# --------------------------------------------------------------------------- the command


def run_cli(*args):
    from click.testing import CliRunner

    from visreps.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_cli_odd_one_out_tables_figure_and_refusals(folder, tmp_path):
    trip = all_triplets(12, seed=4, m=30)
    np.save(tmp_path / "t.npy", np.vstack([trip, trip[:5]]))  # 5 repeated triplets: a ceiling
    out, per = tmp_path / "res" / "ooo.csv", tmp_path / "per.csv"
    r = run_cli(
        "odd-one-out",
        folder,
        tmp_path / "t.npy",
        "--layers",
        "fc",
        "--out",
        out,
        "--per-triplet",
        per,
        "--similarity",
        "cosine",
        "--n-bootstrap",
        "200",
    )
    assert r.exit_code == 0, r.output
    df = pd.read_csv(out)
    expect = odd_one_out(folder, tmp_path / "t.npy", layers=["fc"], similarity="cosine", n_bootstrap=200).table
    assert list(df["layer"]) == ["fc"] and df.loc[0, "similarity"] == "cosine"
    assert df.loc[0, "accuracy"] == expect.loc[0, "accuracy"]  # full precision: equal floats
    assert df.loc[0, "ci_low"] == expect.loc[0, "ci_low"] and df.loc[0, "ceiling"] == 1.0
    assert len(pd.read_csv(per)) == 35
    assert out.with_suffix(".png").stat().st_size > 1000
    assert not list(tmp_path.rglob("*.partial*"))
    again = run_cli("odd-one-out", folder, tmp_path / "t.npy", "--out", out)
    assert again.exit_code == 2 and "already exist" in again.output and "--overwrite" in again.output
    same = run_cli(
        "odd-one-out",
        folder,
        tmp_path / "t.npy",
        "--out",
        tmp_path / "x.csv",
        "--per-triplet",
        tmp_path / "t.npy",
        "--overwrite",
    )
    assert same.exit_code == 2 and "is an input of this run" in same.output
    bad = run_cli("odd-one-out", folder, tmp_path / "nothere.csv", "--out", tmp_path / "y.csv")
    assert bad.exit_code == 2 and "does not exist" in bad.output and "Traceback" not in bad.output


def test_headerless_csv_is_refused(tmp_path):
    (tmp_path / "t.csv").write_text("a.jpg,b.jpg,c.jpg\nd.jpg,e.jpg,f.jpg\n")
    with pytest.raises(VisrepsError, match="looks like a triplet, not a header"):
        load_triplets(tmp_path / "t.csv")


@pytest.mark.parametrize(
    "cmd, options",
    [
        (
            "odd-one-out",
            ["--layers", "--similarity", "--per-triplet", "--n-bootstrap", "--out", "--plot", "--overwrite"],
        ),
        ("time-rsa", ["--times", "--order", "--method", "--n-permutations", "--threshold", "--tail", "--out"]),
        ("partition", ["--responses", "--layers", "--folds", "--scale", "--out", "--no-plot"]),
        ("frrsa", ["--reference", "--measure", "--no-preprocess", "--folds", "--repeats", "--weighted", "--out"]),
    ],
)
def test_commands_registered_with_their_options(cmd, options):
    r = run_cli(cmd, "--help")
    assert r.exit_code == 0, r.output
    listed = {w.rstrip(",") for ln in r.output.splitlines() if ln.lstrip().startswith("-") for w in ln.split()}
    assert not [o for o in options if o not in listed], r.output
    assert cmd in run_cli("--help").output


def test_per_triplet_products_equal_the_gram_path(monkeypatch):
    """Many distinct images: the products are summed per triplet, block by block; the same similarities."""
    import visreps.analysis.behaviour as beh

    rng = np.random.default_rng(7)
    X = rng.standard_normal((20, 9))
    rows = all_triplets(20, m=60)
    gram = beh.triplet_similarities(X, rows, "cosine")
    monkeypatch.setattr(beh, "_GRAM_LIMIT", 2)
    monkeypatch.setattr(beh, "_BLOCK_BYTES", 8 * 20 * 4)  # blocks of 4 columns
    direct = beh.triplet_similarities(X, rows, "cosine")
    for a, b in zip(gram, direct):
        np.testing.assert_allclose(a, b, atol=1e-12)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    np.testing.assert_allclose(direct[0], np.einsum("ij,ij->i", Xn[rows[:, 0]], Xn[rows[:, 1]]), atol=1e-12)


def test_folders_in_another_order_are_aligned_by_name(tmp_path):
    """A second folder holding the same images in another row order gives the same accuracy (rows matched by path)."""
    rng = np.random.default_rng(8)
    X = rng.standard_normal((12, 5))
    perm = rng.permutation(12)
    a = make_output_folder(tmp_path / "a", "m1", {"fc": X})
    b = make_output_folder(tmp_path / "b", "m2", {"fc": X[perm]}, paths=[PATHS[i] for i in perm])
    res = odd_one_out([a, b], all_triplets(12, m=50), n_bootstrap=0)
    assert res.table.loc[0, "accuracy"] == res.table.loc[1, "accuracy"]
    np.testing.assert_array_equal(*res.choices.values())


def test_figures_return_figures_and_name_bad_tables(tmp_path):
    from visreps.plotting_behaviour import plot_frrsa, plot_odd_one_out, plot_partition, plot_timecourse

    res = odd_one_out(np.random.default_rng(0).standard_normal((6, 3)), all_triplets(6), n_bootstrap=20)
    fig = plot_odd_one_out(res, tmp_path / "o.svg")
    assert fig.axes and (tmp_path / "o.svg").read_text().startswith("<?xml")
    for plot, what in (
        (plot_frrsa, "feature_reweighted_rsa"),
        (plot_partition, "variance_partitioning"),
        (plot_timecourse, "time_resolved_rsa"),
        (plot_odd_one_out, "odd_one_out"),
    ):
        with pytest.raises(VisrepsError, match=what):
            plot(pd.DataFrame({"x": [1]}))
    with pytest.raises(VisrepsError, match="format 'bmp' is not supported"):
        plot_odd_one_out(res, tmp_path / "o.bmp")
