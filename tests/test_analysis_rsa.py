"""RDMs against scipy's pdist, RDM comparisons against scipy.stats and hand-written references."""

import itertools
import pickle

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import pdist
from scipy.spatial.distance import squareform as sp_squareform

from visreps.analysis import (
    RDMCorrelation,
    compute_rdm,
    correlate_rdms,
    kendall_tau_a,
    rank_transform,
    rdm_order,
    reorder,
    squareform,
    upper_triangle,
)
from visreps.analysis.rsa import bootstrap_conditions
from visreps.errors import VisrepsError

TOL = 1e-10


def rand(n=40, p=300, seed=0, offset=0.0):
    return np.random.default_rng(seed).standard_normal((n, p)) + offset


def reference(X, method, sigma=None):
    """scipy's pdist-based RDM; gaussian = 1 − exp(−d²/(2σ²)), σ = median pdist unless given."""
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    if method == "gaussian":
        d = pdist(X, "euclidean")
        s = np.median(d) if sigma is None else sigma
        return sp_squareform(1 - np.exp(-(d**2) / (2 * s**2)))
    return sp_squareform(pdist(X, method))


METHODS = ["correlation", "cosine", "euclidean", "sqeuclidean", "gaussian"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("block_size", [None, 1, 7, 64, 300])
def test_rdm_equals_pdist(method, block_size):
    X = rand()
    D = compute_rdm(X, method, block_size=block_size)
    R = reference(X, method)
    assert D.shape == (40, 40) and D.dtype == np.float64
    np.testing.assert_allclose(D, R, rtol=TOL, atol=TOL)
    assert np.array_equal(D, D.T)  # exactly symmetric
    assert np.all(np.diag(D) == 0)


@pytest.mark.parametrize("method", METHODS)
def test_blockwise_equals_one_shot(method):
    X = rand(n=60, p=500, seed=3)
    one = compute_rdm(X, method, block_size=500)  # one block = the whole matrix
    for bs in (1, 13, 128, 499):
        np.testing.assert_allclose(compute_rdm(X, method, block_size=bs), one, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_condensed_is_pdist_order(method):
    X = rand(n=12, p=20, seed=1)
    v = compute_rdm(X, method, condensed=True)
    assert v.shape == (66,)
    np.testing.assert_allclose(v, sp_squareform(reference(X, method), checks=False), rtol=TOL, atol=TOL)


def test_large_offset_correlation_and_euclidean_stay_exact():
    # activations with a mean far above their spread: the Gram route must not cancel
    X = rand(n=30, p=200, seed=2, offset=1e4)
    for method in ("correlation", "euclidean", "sqeuclidean"):
        np.testing.assert_allclose(compute_rdm(X, method, block_size=17), reference(X, method), rtol=1e-9, atol=1e-9)


def test_gaussian_bandwidth_rule_and_user_sigma():
    X = rand(n=25, p=30, seed=4)
    d = pdist(X)
    s = np.median(d)
    D = compute_rdm(X, "gaussian")
    # closed form at the median distance: a pair at distance σ has 1 − exp(−1/2)
    k = np.argmin(np.abs(d - s))
    assert abs(sp_squareform(D, checks=False)[k] - (1 - np.exp(-(d[k] ** 2) / (2 * s**2)))) < TOL
    np.testing.assert_allclose(
        compute_rdm(X, "gaussian", sigma=2.5), reference(X, "gaussian", sigma=2.5), rtol=TOL, atol=TOL
    )
    assert np.all((D >= 0) & (D < 1))


def test_float32_memmap_nd_input(tmp_path):
    X = rand(n=20, p=3 * 4 * 5, seed=5).astype(np.float32).reshape(20, 3, 4, 5)
    np.save(tmp_path / "layer.npy", X)
    mm = np.load(tmp_path / "layer.npy", mmap_mode="r")
    for method in METHODS:
        np.testing.assert_allclose(
            compute_rdm(mm, method, block_size=7), reference(X.astype(np.float64), method), rtol=TOL, atol=TOL
        )
    # a path works, and a row slice of the memmap (a view with its own file offset) too
    np.testing.assert_allclose(compute_rdm(tmp_path / "layer.npy"), reference(X, "correlation"), rtol=TOL, atol=TOL)
    np.testing.assert_allclose(
        compute_rdm(mm[5:15], "cosine", block_size=11), reference(X[5:15], "cosine"), rtol=TOL, atol=TOL
    )


def test_memmap_is_read_without_mapping_pages(tmp_path):
    from visreps.analysis._source import FeatureSource

    X = rand(n=10, p=50).astype(np.float32)
    np.save(tmp_path / "a.npy", X)
    mm = np.load(tmp_path / "a.npy", mmap_mode="r")
    src = FeatureSource(mm[2:8])
    assert src._file is not None  # read from the file, not through the mapping
    np.testing.assert_array_equal(src.cols(3, 17), X[2:8, 3:17].astype(np.float64))
    np.testing.assert_array_equal(src.rows(1, 4), X[3:6].astype(np.float64))


def test_input_not_modified_and_other_array_types():
    X = rand(n=10, p=20)
    before = X.copy()
    for method in METHODS:
        compute_rdm(X, method, block_size=3)
    assert np.array_equal(X, before)
    np.testing.assert_allclose(compute_rdm(X.tolist(), "euclidean"), reference(X, "euclidean"), rtol=TOL, atol=TOL)
    np.testing.assert_allclose(compute_rdm(np.asfortranarray(X), "cosine"), reference(X, "cosine"), rtol=TOL, atol=TOL)


def test_torch_backend_equals_numpy():
    torch = pytest.importorskip("torch")
    X = rand(n=30, p=100, seed=7)
    for method in METHODS:
        np.testing.assert_allclose(
            compute_rdm(X, method, block_size=9, device=torch.device("cpu")), reference(X, method), rtol=TOL, atol=TOL
        )
    np.testing.assert_allclose(
        compute_rdm(torch.from_numpy(X), "correlation"), reference(X, "correlation"), rtol=TOL, atol=TOL
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(method="manhattan"), "RDM method 'manhattan' is not known; use one of correlation, cosine"),
        (dict(method="euclidean", sigma=1.0), "sigma is the bandwidth of method='gaussian'"),
        (dict(method="gaussian", sigma=-1), "sigma must be a positive number"),
        (dict(method="correlation", block_size=0), "block_size must be a positive integer"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(VisrepsError, match=message):
        compute_rdm(rand(n=5, p=4), **kwargs)


def test_undefined_rows_are_named():
    X = rand(n=6, p=10)
    X[2] = 3.0
    with pytest.raises(VisrepsError, match=r"rows 2 .*constant.*method='euclidean'"):
        compute_rdm(X, "correlation")
    X[4] = 0.0
    with pytest.raises(VisrepsError, match=r"rows 4 .*all zero"):
        compute_rdm(X, "cosine")
    X[5, 3] = np.nan
    with pytest.raises(VisrepsError, match=r"NaN or infinite values \(rows 5\)"):
        compute_rdm(X, "euclidean")
    with pytest.raises(VisrepsError, match=r"one row per image.*reshape\(-1, 1\)"):
        compute_rdm(np.arange(5.0))
    with pytest.raises(VisrepsError, match="at least 2 rows"):
        compute_rdm(np.ones((1, 4)))


def test_square_condensed_roundtrip_matches_scipy():
    D = reference(rand(n=9, p=5), "euclidean")
    v = upper_triangle(D)
    np.testing.assert_array_equal(v, sp_squareform(D, checks=False))
    np.testing.assert_array_equal(squareform(v), sp_squareform(v))
    with pytest.raises(VisrepsError, match="length 7 is not a condensed RDM"):
        squareform(np.ones(7))
    with pytest.raises(VisrepsError, match=r"square matrix.*shape \(3, 4\)"):
        upper_triangle(np.ones((3, 4)))


# --------------------------------------------------------------------------- comparisons


def two_rdms(n=30, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 20))
    Y = X + rng.standard_normal((n, 20))
    a, b = reference(X, "correlation"), reference(Y, "euclidean")
    if ties:  # coarse, categorical-like RDMs with many ties
        a, b = np.round(a * 3), np.round(b / 2)
    return a, b


@pytest.mark.parametrize("ties", [False, True])
def test_comparisons_equal_scipy_on_upper_triangles(ties):
    a, b = two_rdms(ties=ties)
    x, y = sp_squareform(a, checks=False), sp_squareform(b, checks=False)
    expect = {
        "pearson": stats.pearsonr(x, y).statistic,
        "spearman": stats.spearmanr(x, y).statistic,
        "kendall": stats.kendalltau(x, y).statistic,  # tau-b
    }
    for method, value in expect.items():
        r = correlate_rdms(a, b, method)
        assert abs(r - value) < TOL, method
        assert abs(correlate_rdms(x, y, method) - value) < TOL  # condensed input
    assert abs(correlate_rdms(a, b, "tau_b") - expect["kendall"]) < TOL


def tau_a_reference(x, y):
    """Straightforward O(m²) Kendall tau-a: (concordant − discordant) / (m(m−1)/2)."""
    s = 0
    m = len(x)
    for i, j in itertools.combinations(range(m), 2):
        s += np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
    return s / (m * (m - 1) / 2)


@pytest.mark.parametrize("ties", [False, True])
def test_tau_a_equals_reference(ties):
    a, b = two_rdms(n=14, seed=2, ties=ties)
    x, y = sp_squareform(a, checks=False), sp_squareform(b, checks=False)
    ref = tau_a_reference(x, y)
    assert abs(correlate_rdms(a, b, "tau_a") - ref) < 1e-12
    assert abs(kendall_tau_a(x, y) - ref) < 1e-12
    if ties:  # tau-a < tau-b in magnitude when there are ties
        assert abs(ref) < abs(stats.kendalltau(x, y).statistic)


def test_only_the_upper_triangle_is_used():
    a, b = two_rdms()
    a2 = a.copy()
    a2[np.tril_indices(len(a), -1)] = 123.0  # garbage below the diagonal
    np.fill_diagonal(a2, 5.0)
    for method in ("pearson", "spearman", "kendall", "tau_a"):
        assert correlate_rdms(a2, b, method) == correlate_rdms(a, b, method)


def test_bootstrap_matches_reference_resampling_and_is_seeded():
    a, b = two_rdms(n=12, seed=5)
    res = correlate_rdms(a, b, "spearman", n_bootstrap=30, ci=0.9, seed=3)
    # reference: same draws, pairs (k < l) of resampled conditions with distinct originals
    rng = np.random.default_rng(3)
    expect = []
    for _ in range(30):
        s = rng.integers(0, 12, size=12)
        xs, ys = [], []
        for k, m in itertools.combinations(range(12), 2):
            if s[k] != s[m]:
                xs.append(a[s[k], s[m]])
                ys.append(b[s[k], s[m]])
        expect.append(stats.spearmanr(xs, ys).statistic)
    np.testing.assert_allclose(res.samples, expect, rtol=1e-12, atol=1e-12)
    lo, hi = np.percentile(expect, [5, 95])
    assert res.ci_low == pytest.approx(lo) and res.ci_high == pytest.approx(hi)
    assert res.ci_low <= float(res) <= res.ci_high
    again = correlate_rdms(a, b, "spearman", n_bootstrap=30, ci=0.9, seed=3)
    assert np.array_equal(again.samples, res.samples)
    assert not np.array_equal(correlate_rdms(a, b, "spearman", n_bootstrap=30, seed=4).samples, res.samples)


def test_bootstrap_vectorised_helper_all_methods():
    a, b = two_rdms(n=10, seed=6)
    x, y = sp_squareform(a, checks=False), sp_squareform(b, checks=False)
    for method in ("pearson", "kendall", "tau_a"):
        s = bootstrap_conditions(x, y, 10, method, n_bootstrap=5, seed=0)
        assert s.shape == (5,) and np.all(np.abs(s[np.isfinite(s)]) <= 1)


def test_correlation_result_is_a_float_that_pickles():
    a, b = two_rdms()
    r = correlate_rdms(a, b, "pearson")
    assert isinstance(r, float) and isinstance(r, RDMCorrelation)
    assert r.method == "pearson" and r.n_conditions == 30 and r.n_pairs == 435 and r.ci_low is None
    r2 = pickle.loads(pickle.dumps(correlate_rdms(a, b, "pearson", n_bootstrap=3)))
    assert r2 == r and r2.ci_low is not None and len(r2.samples) == 3
    assert "method='pearson'" in repr(r)


def test_comparison_errors():
    a, b = two_rdms()
    with pytest.raises(
        VisrepsError, match="comparison method 'cka' is not known; use one of pearson, spearman, kendall, tau_a"
    ):
        correlate_rdms(a, b, "cka")
    with pytest.raises(VisrepsError, match=r"different numbers of conditions \(30 and 29\)"):
        correlate_rdms(a, b[:29, :29])
    with pytest.raises(VisrepsError, match="first RDM is constant"):
        correlate_rdms(np.ones((30, 30)), b)
    with pytest.raises(VisrepsError, match="n_bootstrap must be an integer"):
        correlate_rdms(a, b, n_bootstrap=-1)
    with pytest.raises(VisrepsError, match="ci must be a level between 0 and 1"):
        correlate_rdms(a, b, n_bootstrap=2, ci=95)
    bad = a.copy()
    bad[0, 3] = np.nan
    with pytest.raises(VisrepsError, match="1 NaN/inf entries"):
        correlate_rdms(bad, b)


def test_rank_transform_order_and_reorder():
    D = reference(rand(n=8, p=5), "euclidean")
    R = rank_transform(D)
    v = sp_squareform(D, checks=False)
    np.testing.assert_allclose(sp_squareform(R, checks=False), stats.rankdata(v) / len(v))
    # two well-separated clusters come out contiguous
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 0.1, (5, 3)), rng.normal(5, 0.1, (5, 3))])[[0, 5, 1, 6, 2, 7, 3, 8, 4, 9]]
    o = rdm_order(reference(X, "euclidean"))
    groups = [int(i % 2) for i in o]
    assert groups in ([0] * 5 + [1] * 5, [1] * 5 + [0] * 5)
    P = reorder(D, np.arange(8)[::-1])
    assert P[0, 1] == D[7, 6]
    with pytest.raises(VisrepsError, match="permutation of 0..7"):
        reorder(D, [0, 0, 1, 2, 3, 4, 5, 6])


def test_registries_are_the_option_values_one_documented_function_each():
    """An RDM method or a comparison is one registered function (its formula in its docstring) per option value."""
    from visreps import options
    from visreps.analysis import rsa

    assert tuple(rsa.RDM_FUNCTIONS) == options.RDM_METHODS
    assert tuple(rsa.COMPARISON_FUNCTIONS) == options.COMPARISONS
    for f in [*rsa.RDM_FUNCTIONS.values(), *rsa.COMPARISON_FUNCTIONS.values()]:
        assert f.__doc__ and ("=" in f.__doc__ or "−" in f.__doc__), f.__name__
    with pytest.raises(ValueError, match="add it there first"):
        rsa.rdm_method("manhattan")
    with pytest.raises(ValueError, match="add it there first"):
        rsa.comparison("cosine")


def test_a_new_rdm_method_and_comparison_are_one_function_each(monkeypatch):
    """Adding a value to visreps.options and registering one function makes it usable by compute_rdm and
    correlate_rdms (checked against scipy)."""
    from visreps import options
    from visreps.analysis import rsa

    monkeypatch.setattr(rsa, "METHODS", (*options.RDM_METHODS, "cityblock"))
    monkeypatch.setattr(rsa, "COMPARISONS", (*options.COMPARISONS, "weighted_tau"))
    monkeypatch.setattr(rsa, "RDM_FUNCTIONS", dict(rsa.RDM_FUNCTIONS))
    monkeypatch.setattr(rsa, "COMPARISON_FUNCTIONS", dict(rsa.COMPARISON_FUNCTIONS))

    @rsa.rdm_method("cityblock")
    def cityblock(src, *, sigma, block_size, device):
        """``Σ_k |x_ik − x_jk|``."""
        return sp_squareform(pdist(src.rows(0, src.n), "cityblock"))

    @rsa.comparison("weighted_tau")
    def weighted_tau(x, y):
        """scipy's weighted tau."""
        return float(stats.weightedtau(x, y).statistic)

    X = rand(12, 30)
    assert np.array_equal(compute_rdm(X, "cityblock"), sp_squareform(pdist(X, "cityblock")))
    a, b = compute_rdm(X), compute_rdm(rand(12, 30, seed=1))
    r = correlate_rdms(a, b, "weighted_tau")
    assert r.method == "weighted_tau"
    assert float(r) == stats.weightedtau(upper_triangle(a), upper_triangle(b)).statistic
