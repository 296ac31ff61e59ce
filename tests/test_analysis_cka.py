"""CKA against straightforward reference implementations, and its invariances."""

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform

from visreps.analysis import cka, cka_from_grams, gram_matrix, hsic
from visreps.analysis._source import FeatureSource
from visreps.analysis.cka import _use_feature_space
from visreps.errors import VisrepsError


def pair(n=40, p=30, q=20, seed=0, offset=0.0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) + offset
    Y = X[:, : min(p, q)] @ rng.standard_normal((min(p, q), q)) + 0.7 * rng.standard_normal((n, q)) - offset
    return X, Y


# ---- references, written from the formulas ---------------------------------------------------


def ref_kernel(X, kernel, sigma=None):
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    if kernel == "linear":
        return X @ X.T  # raw, uncentred
    d = pdist(X)
    s = np.median(d) if sigma is None else sigma
    return np.exp(-(squareform(d) ** 2) / (2 * s**2))


def ref_hsic0(K, L):
    n = len(K)
    H = np.eye(n) - np.ones((n, n)) / n
    return np.trace(K @ H @ L @ H) / (n - 1) ** 2


def ref_hsic1(K, L):
    """Song et al. (2012), term by term."""
    n = len(K)
    Kt, Lt = K.copy(), L.copy()
    np.fill_diagonal(Kt, 0)
    np.fill_diagonal(Lt, 0)
    one = np.ones(n)
    total = (
        np.trace(Kt @ Lt)
        + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
        - 2 / (n - 2) * one @ Kt @ Lt @ one
    )
    return total / (n * (n - 3))


def ref_cka(X, Y, kernel="linear", unbiased=False):
    K, L = ref_kernel(X, kernel), ref_kernel(Y, kernel)
    h = ref_hsic1 if unbiased else ref_hsic0
    return h(K, L) / np.sqrt(h(K, K) * h(L, L))


def ref_linear_feature_space(X, Y):
    X = X - X.mean(0)
    Y = Y - Y.mean(0)
    return np.linalg.norm(X.T @ Y) ** 2 / (np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y))


COMBOS = [("linear", False), ("linear", True), ("rbf", False), ("rbf", True)]


@pytest.mark.parametrize("kernel, unbiased", COMBOS)
@pytest.mark.parametrize("shape", [(40, 30, 20), (300, 6, 4)])  # Gram route (wide) and feature-space route (narrow)
def test_cka_equals_reference(kernel, unbiased, shape):
    X, Y = pair(*shape, offset=3.0)  # offsets: the linear kernel reference is not centred
    got = cka(X, Y, kernel=kernel, unbiased=unbiased)
    assert got == pytest.approx(ref_cka(X, Y, kernel, unbiased), abs=1e-10)
    if kernel == "linear" and not unbiased:
        assert got == pytest.approx(ref_linear_feature_space(X, Y), abs=1e-10)


def test_both_linear_routes_are_used_and_agree():
    X, Y = pair(300, 6, 4)
    assert _use_feature_space(FeatureSource(X), FeatureSource(Y))
    assert not _use_feature_space(FeatureSource(X[:8]), FeatureSource(Y[:8]))
    from visreps.analysis.cka import _cka_inplace

    for unbiased in (False, True):
        gram = _cka_inplace(gram_matrix(X), gram_matrix(Y), unbiased=unbiased)
        assert cka(X, Y, unbiased=unbiased) == pytest.approx(gram, abs=1e-12)


@pytest.mark.parametrize("kernel, unbiased", COMBOS)
def test_self_similarity_is_one_and_invariances(kernel, unbiased):
    X, Y = pair(n=30, p=12, q=9, seed=1)
    assert cka(X, X, kernel=kernel, unbiased=unbiased) == pytest.approx(1.0, abs=1e-12)
    base = cka(X, Y, kernel=kernel, unbiased=unbiased)
    Q, _ = np.linalg.qr(np.random.default_rng(2).standard_normal((12, 12)))
    assert cka(X @ Q, Y, kernel=kernel, unbiased=unbiased) == pytest.approx(base, abs=1e-10)  # orthogonal
    assert cka(7.5 * X, Y, kernel=kernel, unbiased=unbiased) == pytest.approx(base, abs=1e-10)  # isotropic scaling
    assert cka(X + 4.0, Y, kernel=kernel, unbiased=unbiased) == pytest.approx(base, abs=1e-10)  # translation
    assert cka(Y, X, kernel=kernel, unbiased=unbiased) == pytest.approx(base, abs=1e-12)  # symmetric
    assert 0 < base < 1


def test_hsic_values_and_inputs_untouched():
    X, Y = pair(n=15, p=5, q=4, seed=3)
    K, L = ref_kernel(X, "linear"), ref_kernel(Y, "rbf")
    K0, L0 = K.copy(), L.copy()
    assert hsic(K, L) == pytest.approx(ref_hsic0(K, L), rel=1e-12)
    assert hsic(K, L, unbiased=True) == pytest.approx(ref_hsic1(K, L), rel=1e-10)
    expect = ref_hsic1(K, L) / np.sqrt(ref_hsic1(K, K) * ref_hsic1(L, L))
    assert cka_from_grams(K, L, unbiased=True) == pytest.approx(expect, rel=1e-10)
    assert np.array_equal(K, K0) and np.array_equal(L, L0)


def test_rbf_sigma_can_be_set():
    X, Y = pair(n=20, p=6, q=5, seed=4)
    K, L = ref_kernel(X, "rbf", 2.0), ref_kernel(Y, "rbf", 3.0)
    expect = ref_hsic0(K, L) / np.sqrt(ref_hsic0(K, K) * ref_hsic0(L, L))
    assert cka(X, Y, kernel="rbf", sigma=(2.0, 3.0)) == pytest.approx(expect, abs=1e-12)
    np.testing.assert_allclose(gram_matrix(X, kernel="rbf", sigma=2.0), K, rtol=1e-12, atol=1e-13)


def test_memmapped_features_blockwise(tmp_path):
    X, Y = pair(n=25, p=60, q=45, seed=5)
    np.save(tmp_path / "x.npy", X.astype(np.float32).reshape(25, 3, 4, 5))
    np.save(tmp_path / "y.npy", Y.astype(np.float32))
    mx = np.load(tmp_path / "x.npy", mmap_mode="r")
    my = np.load(tmp_path / "y.npy", mmap_mode="r")
    Xf, Yf = X.astype(np.float32).astype(np.float64), Y.astype(np.float32).astype(np.float64)
    for kernel, unbiased in COMBOS:
        got = cka(mx, my, kernel=kernel, unbiased=unbiased, block_size=7)
        assert got == pytest.approx(ref_cka(Xf, Yf, kernel, unbiased), abs=1e-10)
    assert cka(tmp_path / "x.npy", tmp_path / "y.npy") == pytest.approx(ref_cka(Xf, Yf), abs=1e-10)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda X, Y: cka(X, Y[:-1]), "X has 10 rows and Y has 9"),
        (lambda X, Y: cka(X, Y, kernel="poly"), "kernel 'poly' is not known; use one of linear, rbf"),
        (lambda X, Y: cka(X, Y, sigma=1.0), "sigma is the bandwidth of kernel='rbf'"),
        (lambda X, Y: cka(X[:3], Y[:3], unbiased=True), "unbiased CKA needs at least 4 images"),
        (lambda X, Y: cka(np.ones_like(X), Y), "first representation has no variance"),
        (lambda X, Y: cka(X, Y, kernel="rbf", sigma=0), "sigma must be a positive number"),
    ],
)
def test_errors(call, message):
    X, Y = pair(n=10, p=4, q=3)
    with pytest.raises(VisrepsError, match=message):
        call(X, Y)
