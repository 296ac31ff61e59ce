"""Centring, normalisation, PCA (exact, randomized, incremental) and layer ensembles."""

import numpy as np
import pytest

import visreps
from visreps.analysis import (
    PCA,
    IncrementalPCA,
    center_features,
    compress_features,
    ensemble_features,
    feature_map_layers,
    normalize_features,
)
from visreps.errors import VisrepsError


def lowrank(n=200, p=60, rank=8, seed=0, noise=0.5, offset=3.0):
    rng = np.random.default_rng(seed)
    scales = np.linspace(5, 1, rank)
    signal = (rng.standard_normal((n, rank)) * scales) @ rng.standard_normal((rank, p))
    return signal + noise * rng.standard_normal((n, p)) + offset


def svd_reference(X):
    Xc = X - X.mean(0)
    U, S, Vt = np.linalg.svd(Xc, full_matrices=False)
    return U * S, S**2 / (S**2).sum(), Vt


def same_up_to_sign(A, B, tol):
    signs = np.sign(np.sum(A * B, axis=0))
    np.testing.assert_allclose(A, B * signs, rtol=tol, atol=tol)


def test_center_and_normalize_do_not_mutate():
    X = lowrank(n=20, p=7).astype(np.float32)
    before = X.copy()
    C = center_features(X)
    N = normalize_features(X)
    assert np.array_equal(X, before)
    assert C.dtype == np.float32 and N.dtype == np.float32
    np.testing.assert_allclose(C, X - X.astype(np.float64).mean(0), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(N.astype(np.float64), axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(N, X / np.linalg.norm(X, axis=1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(center_features(X, axis=1).mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(normalize_features(X, axis=0), axis=0), 1.0, rtol=1e-6)


def test_normalize_keeps_zero_rows_and_flattens():
    X = np.arange(24, dtype=np.float64).reshape(4, 2, 3)
    X[1] = 0
    N = normalize_features(X)
    assert N.shape == (4, 6) and np.all(N[1] == 0)
    assert center_features(np.array([[1, 2], [3, 4]])).dtype == np.float64  # integers become float64
    with pytest.raises(VisrepsError, match="axis must be 1"):
        normalize_features(X, axis=2)


@pytest.mark.parametrize("solver", ["gram", "covariance", "randomized", "auto"])
@pytest.mark.parametrize("shape", [(200, 60), (40, 120)])
def test_pca_equals_svd(solver, shape):
    X = lowrank(*shape)
    scores_ref, ratio_ref, Vt = svd_reference(X)
    pca = PCA(5, solver=solver, seed=1)
    scores = pca.fit_transform(X)
    tol = 1e-8
    np.testing.assert_allclose(pca.explained_variance_ratio_, ratio_ref[:5], rtol=tol, atol=1e-12)
    np.testing.assert_allclose(pca.explained_variance_, (scores_ref[:, :5] ** 2).sum(0) / (len(X) - 1), rtol=tol)
    same_up_to_sign(scores, scores_ref[:, :5], 1e-7)
    same_up_to_sign(pca.components_.T, Vt[:5].T, 1e-7)
    np.testing.assert_allclose(pca.transform(X), scores, rtol=1e-9, atol=1e-9)
    # deterministic signs: the largest loading of every component is positive
    assert np.all(pca.components_[np.arange(5), np.argmax(np.abs(pca.components_), axis=1)] > 0)


def test_retained_variance_picks_fewest_components():
    X = lowrank(n=100, p=50)
    _, ratio, _ = svd_reference(X)
    k = int(np.searchsorted(np.cumsum(ratio), 0.9) + 1)
    pca = PCA(retained_var=0.9).fit(X)
    assert pca.n_components_ == k and pca.explained_variance_ratio_.sum() >= 0.9
    assert ratio[: k - 1].sum() < 0.9
    assert compress_features(X, retained_var=0.9).shape == (100, k)


def test_randomized_pca_is_seeded():
    X = lowrank(n=80, p=70, noise=2.0)
    a = compress_features(X, n_components=3, solver="randomized", seed=5)
    b = compress_features(X, n_components=3, solver="randomized", seed=5)
    assert np.array_equal(a, b)


def test_pca_streams_memmap(tmp_path):
    X = lowrank(n=120, p=90).astype(np.float32)
    np.save(tmp_path / "l.npy", X)
    mm = np.load(tmp_path / "l.npy", mmap_mode="r")
    ref = PCA(4).fit(X.astype(np.float64))
    for solver in ("gram", "covariance", "randomized"):
        p = PCA(4, solver=solver, block_size=7).fit(mm)
        np.testing.assert_allclose(p.explained_variance_ratio_, ref.explained_variance_ratio_, rtol=1e-7)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(), "give exactly one of n_components"),
        (dict(n_components=3, retained_var=0.5), "give exactly one of n_components"),
        (dict(n_components=0), r"n_components must be an integer from 1 to 10"),
        (dict(retained_var=1.5), r"retained_var must be a fraction in \(0, 1\]"),
        (dict(retained_var=0.5, solver="randomized"), "retained_var needs the full spectrum"),
        (dict(n_components=2, solver="magic"), "solver 'magic' is not known"),
    ],
)
def test_pca_argument_errors(kwargs, message):
    with pytest.raises(VisrepsError, match=message):
        compress_features(lowrank(n=10, p=20), **kwargs)


def test_incremental_pca_on_memmap_matches_full_pca(tmp_path):
    X = lowrank(n=600, p=150, rank=10, seed=3).astype(np.float32)
    np.save(tmp_path / "layer.npy", X)
    mm = np.load(tmp_path / "layer.npy", mmap_mode="r")
    _, ratio, Vt = svd_reference(X.astype(np.float64))
    ipca = IncrementalPCA(10, batch_size=64).fit(mm)  # 10 batches, the short last one merged
    assert ipca.n_samples_seen_ == 600
    rel = np.abs(ipca.explained_variance_ratio_ / ratio[:10] - 1)
    assert rel.max() < 0.01  # within 1% of full PCA, component by component
    assert abs(ipca.explained_variance_ratio_.sum() / ratio[:10].sum() - 1) < 0.01
    np.testing.assert_allclose(ipca.mean_, X.astype(np.float64).mean(0), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ipca.var_, X.astype(np.float64).var(0), rtol=1e-9)
    # the same subspace: principal angles near zero
    s = np.linalg.svd(ipca.components_ @ Vt[:10].T, compute_uv=False)
    assert s.min() > 0.99
    scores = ipca.transform(mm)
    assert scores.shape == (600, 10)


def test_incremental_partial_fit_equals_fit_and_errors():
    X = lowrank(n=90, p=30)
    a = IncrementalPCA(4, batch_size=30).fit(X)
    b = IncrementalPCA(4)
    for i in range(0, 90, 30):
        b.partial_fit(X[i : i + 30])
    np.testing.assert_allclose(a.explained_variance_ratio_, b.explained_variance_ratio_, rtol=1e-12)
    with pytest.raises(VisrepsError, match="needs at least n_components=4 per batch"):
        IncrementalPCA(4).partial_fit(X[:3])
    with pytest.raises(VisrepsError, match="batch_size must be an integer >= n_components"):
        IncrementalPCA(4, batch_size=2)
    with pytest.raises(VisrepsError, match="not fitted yet"):
        IncrementalPCA(4).transform(X)


def test_ensemble_concatenation_and_pca():
    rng = np.random.default_rng(0)
    layers = {
        "conv1": rng.standard_normal((30, 2, 4, 4)),
        "pool1": rng.standard_normal((30, 10)) * 50,
        "fc": rng.standard_normal((30, 5)),
    }
    cat = ensemble_features(layers, ["conv1", "pool1"], penultimate="fc")
    parts = []
    for k in ("conv1", "pool1", "fc"):
        Xc = layers[k].reshape(30, -1) - layers[k].reshape(30, -1).mean(0)
        parts.append(Xc / np.linalg.norm(Xc))
    ref = np.concatenate(parts, axis=1)
    np.testing.assert_allclose(cat, ref, rtol=1e-12, atol=1e-12)
    raw = ensemble_features(layers, ["conv1", "pool1"], scale="none")
    np.testing.assert_array_equal(raw, np.concatenate([layers["conv1"].reshape(30, -1), layers["pool1"]], axis=1))
    # PCA of the ensemble without building it equals PCA of the concatenation
    sc = ensemble_features(layers, ["conv1", "pool1"], penultimate="fc", n_components=4)
    scores_ref, ratio_ref, _ = svd_reference(ref)
    same_up_to_sign(sc, scores_ref[:, :4], 1e-9)
    k = int(np.searchsorted(np.cumsum(ratio_ref), 0.8) + 1)
    assert ensemble_features(layers, penultimate="fc", retained_var=0.8).shape == (30, k)


def test_ensemble_errors():
    layers = {"a": np.ones((5, 3)), "b": np.zeros((4, 3))}
    with pytest.raises(VisrepsError, match=r"layers \['x'\] are not in the features; available: a, b"):
        ensemble_features(layers, ["x"])
    with pytest.raises(VisrepsError, match="layer 'b' has 4 rows"):
        ensemble_features(layers)
    with pytest.raises(VisrepsError, match="layer 'a' is constant"):
        ensemble_features({"a": np.ones((5, 3))})
    with pytest.raises(VisrepsError, match="scale 'z' is not known"):
        ensemble_features(layers, scale="z")


def test_feature_map_layers_of_a_module():
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(4, 4, 3),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 2),
    )
    assert feature_map_layers(net) == ["0", "2", "3"]
    assert feature_map_layers(net, kinds=["conv"]) == ["0", "3"]
    with pytest.raises(VisrepsError, match="kinds .* not known"):
        feature_map_layers(net, kinds=["dense"])


def test_feature_map_layers_of_a_model_id():
    """A model id is loaded by the workflow (visreps.feature_map_layers); the analysis function loads nothing."""
    pytest.importorskip("torchvision")
    from visreps import workflows

    assert visreps.feature_map_layers is workflows.feature_map_layers
    with pytest.raises(VisrepsError, match="for a model id use visreps.feature_map_layers"):
        feature_map_layers("torchvision:alexnet")
    with pytest.raises(VisrepsError, match="kinds .* not known"):
        workflows.feature_map_layers("nosuch:model", kinds=["dense"])  # checked before anything is loaded
    names = workflows.feature_map_layers("torchvision:alexnet")
    assert names == feature_map_layers(visreps.load_model("torchvision:alexnet", pretrained=False))
    assert names == [
        "features.0",
        "features.2",
        "features.3",
        "features.5",
        "features.6",
        "features.8",
        "features.10",
        "features.12",
    ]
