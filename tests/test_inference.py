"""Bootstrap, tests and corrections of model–reference RDM comparisons, checked against rsatoolbox and scipy."""

import warnings

import numpy as np
import pytest
from scipy import stats

from visreps.analysis.ceilings import rdm_noise_ceiling, rdm_similarities
from visreps.analysis.inference import (
    bootstrap_evaluations,
    bootstrap_pair_pvalues,
    bootstrap_variances,
    correct_pvalues,
    permutation_test,
    rdm_inference,
    t_test_two_sided,
    t_test_zero,
)
from visreps.analysis.rsa import correlate_rdms, squareform, upper_triangle
from visreps.errors import VisrepsError

RSA_METHOD = {"pearson": "corr", "spearman": "spearman", "kendall": "kendall", "tau_a": "tau-a"}


def synthetic(n=10, subjects=5, models=(0.5, 1.0, 3.0), seed=0):
    """Subjects' RDMs = a shared RDM + noise; model RDMs = the shared RDM + more or less noise (condensed)."""
    rng = np.random.default_rng(seed)
    m = n * (n - 1) // 2
    base = rng.random(m)
    data = base + rng.normal(size=(subjects, m)) * 0.6
    mods = np.stack([base + rng.normal(size=m) * s for s in models])
    return mods, data


@pytest.mark.parametrize("method", list(RSA_METHOD))
def test_similarities_match_visreps_and_rsatoolbox(method):
    from rsatoolbox.rdm import RDMs, compare

    mods, data = synthetic(n=8)
    data[0, :4] = data[0, 4]  # ties
    got = rdm_similarities(mods, data, method)
    np.testing.assert_allclose(got, compare(RDMs(mods), RDMs(data), RSA_METHOD[method]), rtol=1e-10, atol=1e-12)
    assert got[1, 2] == pytest.approx(float(correlate_rdms(mods[1], data[2], method)), abs=1e-12)


class _Recorder:
    """Wraps rsatoolbox's bootstrap samplers to record the draws it makes."""

    def __init__(self, monkeypatch):
        import rsatoolbox.inference.evaluate as ev

        self.draws = []
        for name, kind in (
            ("bootstrap_sample", "both"),
            ("bootstrap_sample_pattern", "images"),
            ("bootstrap_sample_rdm", "subjects"),
        ):
            monkeypatch.setattr(ev, name, self._wrap(getattr(ev, name), kind))

    def _wrap(self, fn, kind):
        def wrapped(*a, **k):
            out = fn(*a, **k)
            if kind == "both":
                self.draws.append((out[1], out[2]))
            else:
                self.draws.append((None, out[1]) if kind == "images" else (out[1], None))
            return out

        return wrapped


@pytest.mark.parametrize(
    "method, factors",
    [(m, f) for m in ("pearson", "spearman") for f in ("images", "subjects", "subjects,images")]
    + [("kendall", "subjects,images"), ("tau_a", "images")],
)
def test_bootstrap_matches_rsatoolbox_draw_for_draw(monkeypatch, method, factors):
    """Same draws as rsatoolbox: every sample's evaluation and ceiling, and the (corrected) variances, agree."""
    import rsatoolbox.inference.evaluate as ev
    from rsatoolbox.model import ModelFixed
    from rsatoolbox.rdm import RDMs

    mods, data = synthetic()
    models = [ModelFixed(f"m{i}", RDMs(v[None])) for i, v in enumerate(mods)]
    rec = _Recorder(monkeypatch)
    np.random.seed(3)
    rm = RSA_METHOD[method]
    N = 60 if method in ("pearson", "spearman") else 20  # tau is computed pair by pair (slow in both programs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if factors == "images":
            res = ev.eval_bootstrap_pattern(models, RDMs(data), method=rm, N=N)
        elif factors == "subjects":
            res = ev.eval_bootstrap_rdm(models, RDMs(data), method=rm, N=N)
        else:
            res = ev.eval_dual_bootstrap(models, RDMs(data), method=rm, N=N, k_pattern=1, k_rdm=1)
    mine = bootstrap_evaluations(mods, data, method=method, factors=factors, indices=rec.draws)
    if factors == "subjects,images":  # rsatoolbox: (N, models, folds, cv, [both, subjects, images])
        theirs, mine_e = res.evaluations[:, :, 0, 0, :], np.moveaxis(mine.evaluations, 0, -1)
        their_nc, mine_nc = res.noise_ceiling[:, :, 0, :], np.moveaxis(mine.ceilings, [0, 2], [2, 0])
    else:
        theirs, mine_e = res.evaluations, mine.evaluations[0]
        their_nc, mine_nc = res.noise_ceiling, mine.ceilings[0].T
    np.testing.assert_array_equal(np.isnan(theirs), np.isnan(mine_e))
    np.testing.assert_allclose(mine_e, theirs, rtol=1e-12, atol=1e-12, equal_nan=True)
    ok = np.isfinite(mine_nc)  # mine: NaN for samples of one distinct subject (rsatoolbox: lower = upper)
    assert ok.mean() > 0.95
    np.testing.assert_allclose(mine_nc[ok], np.asarray(their_nc)[ok], rtol=1e-12, atol=1e-12)
    var = bootstrap_variances(mine)
    np.testing.assert_allclose(np.sqrt(var["model"]), res.get_sem(), rtol=1e-10)
    iu = np.triu_indices(len(mods), 1)
    np.testing.assert_allclose(var["difference"][iu], res.diff_var, rtol=1e-10)
    if factors != "subjects":  # rsatoolbox's eval_bootstrap_rdm drops the ceiling from its covariance
        np.testing.assert_allclose(var["ceiling"], res.noise_ceil_var[:, 0], rtol=1e-10)
    # the t-tests, given rsatoolbox's estimate (the mean of the bootstrap samples)
    est = res.get_means()
    np.testing.assert_allclose(t_test_zero(est, var["model"], mine.dof), res.test_zero(), rtol=1e-10, atol=1e-14)
    diffs = est[:, None] - est[None, :]
    p = t_test_two_sided(diffs[iu], var["difference"][iu], mine.dof)
    np.testing.assert_allclose(p, res.test_pairwise()[iu], rtol=1e-9, atol=1e-14)
    if factors != "subjects,images":
        np.testing.assert_allclose(
            bootstrap_pair_pvalues(mine.evaluations[0][mine.valid]), res.test_pairwise("bootstrap"), rtol=1e-12
        )


def test_bootstrap_seeded_and_se_plausible():
    mods, data = synthetic()
    a = rdm_inference(dict(zip("abc", mods)), data, bootstrap="subjects,images", n_bootstrap=200, seed=1)
    b = rdm_inference(dict(zip("abc", mods)), data, bootstrap="subjects,images", n_bootstrap=200, seed=1)
    np.testing.assert_array_equal(a.table["se"], b.table["se"])
    c = rdm_inference(dict(zip("abc", mods)), data, bootstrap="subjects,images", n_bootstrap=200, seed=2)
    # another seed: the same SE within Monte-Carlo error (the SE of an SE from N samples is about SE / √(2N) = 5 %)
    np.testing.assert_allclose(c.table["se"], a.table["se"], rtol=0.25)
    assert (a.table["se"] > 0).all()


def test_rdm_inference_table_columns_and_values():
    mods, data = synthetic()
    res = rdm_inference(
        {"good": mods[0], "ok": mods[1], "poor": mods[2]},
        data,
        noise_ceiling=True,
        bootstrap="subjects,images",
        n_bootstrap=100,
        test="pairwise,permutation",
        n_permutations=99,
    )
    t = res.table
    np.testing.assert_allclose(t["r"], rdm_similarities(mods, data).mean(1), rtol=1e-12)
    nc = rdm_noise_ceiling(data)
    assert t["noise_ceiling_lower"].iloc[0] == nc.lower and t["noise_ceiling_upper"].iloc[0] == nc.upper
    np.testing.assert_allclose(t["r_over_lower"], t["r"] / nc.lower)
    np.testing.assert_allclose(t["r_over_upper"], t["r"] / nc.upper)
    q = stats.t.ppf(0.975, 4)  # dof = min(5 subjects, 10 images) − 1
    np.testing.assert_allclose(t["ci_high"] - t["r"], q * t["se"])
    np.testing.assert_allclose(t["p_zero_corrected"], stats.false_discovery_control(t["p_zero"]))
    assert len(res.pairwise) == 3 and list(res.pairwise[["a", "b"]].iloc[0]) == ["good", "ok"]
    np.testing.assert_allclose(res.pairwise["difference"], [t.r[0] - t.r[1], t.r[0] - t.r[2], t.r[1] - t.r[2]])
    assert (t["p_permutation"] >= 0.01).all() and t["p_permutation"].iloc[0] == pytest.approx(0.01)
    assert res.samples().shape == (100, 5)


def test_permutation_exact_matches_scipy():
    rng = np.random.default_rng(5)
    n = 5
    model = squareform(rng.random(10))
    subj = np.stack([model + rng.normal(size=(n, n)) * 0.3 for _ in range(3)])
    subj = (subj + subj.transpose(0, 2, 1)) / 2
    for s in subj:
        np.fill_diagonal(s, 0)
    subj_v = np.stack([upper_triangle(s) for s in subj])
    for method in ("pearson", "spearman"):
        stat, p, null = permutation_test(model, subj, method=method, n_permutations=1000)
        assert len(null) == 120  # 5! ≤ 1000: every permutation

        def statistic(idx, method=method):
            i = np.asarray(idx, dtype=int)
            return rdm_similarities(upper_triangle(model[np.ix_(i, i)]), subj_v, method).mean()

        ref = stats.permutation_test(
            (np.arange(n),), statistic, permutation_type="pairings", alternative="greater", n_resamples=1000
        )
        assert stat == pytest.approx(ref.statistic, abs=1e-12)
        assert p == pytest.approx(ref.pvalue, abs=1e-12)


def test_permutation_random_p_value():
    # a model unrelated to the data: p is uniform, so over many seeds its mean is about 1/2; an identical model: 1/(N+1)
    rng = np.random.default_rng(0)
    data = rng.random((3, 45))
    _, p_same, _ = permutation_test(data[0], data[:1], n_permutations=199)
    assert p_same == pytest.approx(1 / 200)
    ps = [permutation_test(rng.random(45), data, n_permutations=99, seed=s)[1] for s in range(40)]
    assert 0.35 < np.mean(ps) < 0.65


def test_corrections():
    p = np.array([0.01, 0.04, 0.03, 0.2, np.nan])
    np.testing.assert_allclose(correct_pvalues(p, "bonferroni"), [0.04, 0.16, 0.12, 0.8, np.nan])
    # Benjamini–Hochberg by hand: sorted 0.01, 0.03, 0.04, 0.2 → ×4/1, ×4/2, ×4/3, ×4/4, then the running minimum
    np.testing.assert_allclose(correct_pvalues(p, "fdr"), [0.04, 0.05333333333, 0.05333333333, 0.2, np.nan])
    np.testing.assert_array_equal(correct_pvalues(p, "none"), p)
    with pytest.raises(VisrepsError, match="correction 'holm' is not known"):
        correct_pvalues(p, "holm")


def test_bad_input():
    mods, data = synthetic()
    one = {"a": mods[0]}
    with pytest.raises(VisrepsError, match="one subject's RDM, but a noise ceiling needs"):
        rdm_inference(one, data[0], noise_ceiling=True)
    with pytest.raises(VisrepsError, match="one subject's RDM, but a bootstrap over subjects needs"):
        rdm_inference(one, data[:1], bootstrap="subjects")
    with pytest.raises(VisrepsError, match="describe 10 images but the reference 9"):
        rdm_inference(one, data[:, :36])
    small_m, small_d = synthetic(n=4)
    with pytest.raises(VisrepsError, match="too few images to bootstrap over: 4"):
        rdm_inference({"a": small_m[0]}, small_d, bootstrap="images")
    rdm_inference({"a": small_m[0]}, small_d, bootstrap="subjects", n_bootstrap=10)  # subjects only: fine
    with pytest.raises(VisrepsError, match="pairwise test needs a bootstrap"):
        rdm_inference(one, data, test="pairwise")
    with pytest.raises(VisrepsError, match="bootstrap over 'voxels' is not known"):
        rdm_inference(one, data, bootstrap="voxels")
    with pytest.raises(VisrepsError, match="needs at least 2"):
        rdm_noise_ceiling(data[:1])


def test_plot_model_comparison(tmp_path):
    from visreps.plotting import plot_model_comparison

    mods, data = synthetic(n=30, subjects=8, models=(0.3, 1.0, 4.0))
    res = rdm_inference(
        {"a/l1": mods[0], "a/l2": mods[1], "b/l1": mods[2]},
        data,
        noise_ceiling=True,
        bootstrap="subjects,images",
        n_bootstrap=100,
        test="pairwise",
    )
    assert res.pairwise["significant"].any() and res.table["significant_zero"].any()
    fig = plot_model_comparison(res, tmp_path / "bars.pdf")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a/l1", "a/l2", "b/l1"]
    assert sum(t.get_text() == "*" for t in ax.texts) == int(res.table["significant_zero"].sum())
    band = [p for p in ax.patches if p.get_label() == "noise ceiling"]
    assert len(band) == 1  # the ceiling band spans lower to upper
    assert (tmp_path / "bars.pdf").read_bytes()[:4] == b"%PDF"
    res.table["model"], res.table["layer"] = ["a", "a", "b"], ["l1", "l2", "l1"]
    curve = plot_model_comparison(res, tmp_path / "curve.png", kind="curve", error="se")
    assert len(curve.axes[0].get_lines()) >= 2
    with pytest.raises(VisrepsError, match="kind must be 'bars' or 'curve'"):
        plot_model_comparison(res, kind="violin")
