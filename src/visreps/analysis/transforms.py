"""Feature transforms: centring, L2 normalisation, PCA (exact, randomized, incremental), layer ensembles.

None of these modify the caller's array; they return new float arrays. The PCA fits stream their
input in blocks, so a memory-mapped ``.npy`` (e.g. from :func:`visreps.load_features`) is never
loaded whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import VisrepsError
from ._source import FeatureSource, stream_gram

PCA_SOLVERS = ("auto", "gram", "covariance", "randomized")

# the exact solvers decompose a min(n, p)² matrix; above this size, "auto" goes randomized when it can
_EXACT_MAX_DIM = 4000


def _float_array(X: Any, name: str = "features") -> tuple[np.ndarray, np.dtype]:
    arr = np.asarray(FeatureSource(X, name=name).arr)
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    return arr, arr.dtype


def center_features(X: Any, *, axis: int = 0) -> np.ndarray:
    """Subtract the mean: ``X − mean(X, axis)``; a new array, ``X`` is not modified.

    ``axis=0`` (default) centres every feature (column) over the images, ``x_ij − (1/n) Σ_i x_ij``;
    ``axis=1`` centres every image (row) over its features. N-D inputs are flattened to
    ``(n, features)``. Means are accumulated in float64; the result keeps a float input's dtype
    (float64 for integer input).
    """
    arr, dt = _float_array(X)
    if axis not in (0, 1):
        raise VisrepsError(f"axis must be 0 (centre each feature over images) or 1 (centre each image), got {axis!r}")
    mean = arr.mean(axis=axis, dtype=np.float64, keepdims=True)
    return (arr - mean).astype(dt, copy=False)


def normalize_features(X: Any, *, axis: int = 1) -> np.ndarray:
    """Divide by the L2 norm: each row (image, ``axis=1``, default) becomes ``x / ‖x‖₂``.

    ``axis=0`` normalises each feature (column) instead. All-zero rows stay zero (their norm is
    0). A new array; ``X`` is not modified. N-D inputs are flattened to ``(n, features)``.
    """
    arr, dt = _float_array(X)
    if axis not in (0, 1):
        raise VisrepsError(f"axis must be 1 (each image/row) or 0 (each feature/column), got {axis!r}")
    norm = np.sqrt(np.einsum("ij,ij->i" if axis == 1 else "ij,ij->j", arr, arr, dtype=np.float64))
    norm = norm[:, None] if axis == 1 else norm[None, :]
    safe = np.where(norm > 0, norm, 1.0)
    return (arr / safe).astype(dt, copy=False)


# --------------------------------------------------------------------------- PCA


def _check_k_or_fraction(n_components, retained_var, max_k: int) -> tuple[int | None, float | None]:
    if (n_components is None) == (retained_var is None):
        raise VisrepsError(
            "give exactly one of n_components (how many components) and retained_var (fraction of variance "
            "to keep, e.g. 0.9)"
        )
    if n_components is not None:
        if (
            isinstance(n_components, bool)
            or not isinstance(n_components, (int, np.integer))
            or not 1 <= n_components <= max_k
        ):
            raise VisrepsError(
                f"n_components must be an integer from 1 to {max_k} (= min(images, features)), got {n_components!r}"
            )
        return int(n_components), None
    try:
        f = float(retained_var)
    except (TypeError, ValueError):
        f = float("nan")
    if not 0 < f <= 1:
        raise VisrepsError(
            f"retained_var must be a fraction in (0, 1], e.g. 0.9 for 90% of the variance, got {retained_var!r}"
        )
    return None, f


def _k_for_fraction(ratio: np.ndarray, fraction: float) -> int:
    cum = np.cumsum(ratio)
    k = int(np.searchsorted(cum, fraction - 1e-12) + 1)
    return min(k, len(ratio))


def _flip_signs(components: np.ndarray, *others: np.ndarray) -> None:
    """Make the largest-magnitude loading of every component positive (deterministic signs), in place."""
    idx = np.argmax(np.abs(components), axis=1)
    signs = np.sign(components[np.arange(len(components)), idx])
    signs[signs == 0] = 1.0
    components *= signs[:, None]
    for o in others:
        o *= signs[None, :] if o.ndim == 2 else signs


class PCA:
    """Principal component analysis of a feature matrix (rows = images), streamed in blocks.

    Keeps ``n_components`` components, or the fewest components whose explained variance
    reaches ``retained_var`` (a fraction of the total). Features are centred (``mean_``); the
    components are the right singular vectors of the centred data, scores are ``(X − mean_) Vᵀ``.
    Signs are fixed so that each component's largest-magnitude loading is positive.

    Solvers:

    * ``gram`` (exact; for ``n ≤ p``, wide layers): eigendecomposition of the ``n × n`` Gram
      matrix of the centred data accumulated over column blocks; components need one more pass.
    * ``covariance`` (exact; for ``n > p``): eigendecomposition of the ``p × p`` covariance,
      accumulated over row blocks.
    * ``randomized`` (seeded; Halko et al. 2011): a random ``p × (k + 10)`` projection (drawn from
      ``numpy.random.default_rng(seed)``) with ``n_iter`` power iterations, over row blocks;
      needs ``n_components``.
    * ``auto``: an exact solver when ``min(n, p) ≤ 4000`` or ``retained_var`` is used, else
      randomized.

    Attributes (after :meth:`fit`): ``n_components_``, ``mean_`` (p,), ``components_`` (k, p),
    ``explained_variance_`` (k,; variances with ``n − 1`` denominator), ``explained_variance_ratio_``
    (k,), ``singular_values_`` (k,), ``total_variance_``.
    """

    def __init__(
        self,
        n_components: int | None = None,
        *,
        retained_var: float | None = None,
        solver: str = "auto",
        seed: int | None = 0,
        n_iter: int = 4,
        block_size: int | None = None,
    ):
        if solver not in PCA_SOLVERS:
            raise VisrepsError(f"solver {solver!r} is not known; use one of {', '.join(PCA_SOLVERS)}")
        self.n_components = n_components
        self.retained_var = retained_var
        self.solver = solver
        self.seed = seed
        self.n_iter = n_iter
        self.block_size = block_size
        self._train_scores = None

    # ---------------------------------------------------------------- fitting
    def fit(self, X: Any) -> PCA:
        src = FeatureSource(X)
        if src.n < 2:
            raise VisrepsError(f"PCA needs at least 2 rows (images), got shape {src.shape_in}")
        k, frac = _check_k_or_fraction(self.n_components, self.retained_var, min(src.n, src.p))
        solver = self.solver
        if solver == "auto":  # (k is None exactly when frac is not)
            if k is not None and min(src.n, src.p) > _EXACT_MAX_DIM and k < min(src.n, src.p) // 2:
                solver = "randomized"
            else:
                solver = "gram" if src.n <= src.p else "covariance"
        if solver == "randomized" and frac is not None:
            raise VisrepsError(
                "retained_var needs the full spectrum: use solver='gram'/'covariance'/'auto', or give n_components"
            )
        self.solver_ = solver
        if solver == "gram":
            self._fit_gram(src, k, frac)
        elif solver == "covariance":
            self._fit_covariance(src, k, frac)
        else:
            self._fit_randomized(src, k)
        self.n_features_in_ = src.p
        return self

    def _finish(self, eigvals: np.ndarray, total_ss: float, n: int, k: int | None, frac: float | None):
        ev = np.clip(eigvals, 0.0, None)
        self.total_variance_ = float(total_ss / (n - 1))
        ratio = ev / total_ss if total_ss > 0 else np.zeros_like(ev)
        if k is None:
            assert frac is not None  # _check_k_or_fraction gives exactly one of k and frac
            k = _k_for_fraction(ratio, frac)
        self.n_components_ = int(k)
        self.singular_values_ = np.sqrt(ev[:k])
        self.explained_variance_ = ev[:k] / (n - 1)
        self.explained_variance_ratio_ = ratio[:k]
        return k

    def _fit_gram(self, src: FeatureSource, k, frac):
        res = stream_gram(src, center="columns", block_size=self.block_size)
        G, mean = res["G"], res["col_means"]
        total = float(np.trace(G))
        w, U = np.linalg.eigh(G)
        del G
        w, U = w[::-1], U[:, ::-1]
        k = self._finish(w, total, src.n, k, frac)
        U = np.ascontiguousarray(U[:, :k])
        s = self.singular_values_
        if np.any(s <= 0):
            raise VisrepsError(f"the data have rank below n_components={k}; ask for fewer components")
        # components V = Xcᵀ U / s, one more pass over column blocks
        V = np.empty((k, src.p))
        for c0, c1, B in src.iter_cols(self.block_size):
            B -= mean[c0:c1]
            V[:, c0:c1] = (B.T @ U).T / s[:, None]
        scores = U * s[None, :]
        _flip_signs(V, scores)
        self.mean_, self.components_ = mean, V
        self._train_scores = scores

    def _column_means(self, src: FeatureSource) -> np.ndarray:
        mean = np.zeros(src.p)
        for _, _, B in src.iter_rows(self.block_size):
            mean += B.sum(axis=0)
        return mean / src.n

    def _fit_covariance(self, src: FeatureSource, k, frac):
        mean = self._column_means(src)
        C = np.zeros((src.p, src.p))
        for _, _, B in src.iter_rows(self.block_size):
            B -= mean
            C += B.T @ B
        total = float(np.trace(C))
        w, V = np.linalg.eigh(C)
        w, V = w[::-1], V[:, ::-1]
        k = self._finish(w, total, src.n, k, frac)
        comps = np.ascontiguousarray(V[:, :k].T)
        _flip_signs(comps)
        self.mean_, self.components_ = mean, comps
        self._train_scores = None

    def _fit_randomized(self, src: FeatureSource, k):
        rng = np.random.default_rng(self.seed)
        n, p = src.n, src.p
        ell = min(k + 10, n, p)
        mean = self._column_means(src)

        def times(M):  # Xc @ M, (n, ell); also Σ‖Xc‖²
            out = np.empty((n, M.shape[1]))
            ss = 0.0
            for r0, r1, B in src.iter_rows(self.block_size):
                B -= mean
                out[r0:r1] = B @ M
                ss += float(np.einsum("ij,ij->", B, B))
            return out, ss

        def t_times(Q):  # Xcᵀ @ Q, (p, ell)
            out = np.zeros((p, Q.shape[1]))
            for r0, r1, B in src.iter_rows(self.block_size):
                B -= mean
                out += B.T @ Q[r0:r1]
            return out

        Y, total = times(rng.standard_normal((p, ell)))
        for _ in range(int(self.n_iter)):
            Q, _ = np.linalg.qr(Y)
            Z, _ = np.linalg.qr(t_times(Q))
            Y, _ = times(Z)
        Q, _ = np.linalg.qr(Y)
        Bt = t_times(Q)  # (p, ell) = (Qᵀ Xc)ᵀ
        Ub, s, Vt = np.linalg.svd(Bt.T, full_matrices=False)
        self._finish(s**2, total, n, k, None)
        comps = np.ascontiguousarray(Vt[:k])
        scores = (Q @ Ub[:, :k]) * s[None, :k]
        _flip_signs(comps, scores)
        self.mean_, self.components_ = mean, comps
        self._train_scores = scores

    # ---------------------------------------------------------------- applying
    def transform(self, X: Any) -> np.ndarray:
        """Scores ``(X − mean_) components_ᵀ`` (n × k float64), streamed over row blocks."""
        if not hasattr(self, "components_"):
            raise VisrepsError("this PCA is not fitted yet; call fit(X) first")
        return _project(X, self.mean_, self.components_, self.block_size)

    def fit_transform(self, X: Any) -> np.ndarray:
        self.fit(X)
        if self._train_scores is not None:
            return self._train_scores
        return self.transform(X)


def _project(X, mean, components, block_size) -> np.ndarray:
    src = FeatureSource(X)
    if src.p != components.shape[1]:
        raise VisrepsError(f"features have {src.p} columns but the PCA was fitted on {components.shape[1]}")
    out = np.empty((src.n, components.shape[0]))
    for r0, r1, B in src.iter_rows(block_size):
        B -= mean
        out[r0:r1] = B @ components.T
    return out


def compress_features(
    X: Any,
    *,
    n_components: int | None = None,
    retained_var: float | None = None,
    seed: int | None = 0,
    solver: str = "auto",
    block_size: int | None = None,
) -> np.ndarray:
    """PCA scores of ``X``: the first ``n_components``, or as many as retain ``retained_var`` of the variance.

    Equivalent to ``PCA(n_components, retained_var=..., seed=seed).fit_transform(X)`` (see :class:`PCA`
    for the solvers; ``seed`` matters only for the randomized one). Returns ``(n, k)`` float64.
    """
    pca = PCA(n_components, retained_var=retained_var, seed=seed, solver=solver, block_size=block_size)
    return pca.fit_transform(X)


class IncrementalPCA:
    """PCA fitted batch by batch (Ross et al. 2008; the algorithm of scikit-learn's IncrementalPCA).

    For data too large for any exact solver: memory is one batch plus ``(k + batch + 1) × p``
    for the SVD of the current components stacked with the new batch, whatever the number of images.
    :meth:`fit` streams rows from an array, a ``np.memmap`` or a ``.npy`` path (read from the file,
    never loaded whole); :meth:`partial_fit` takes one batch at a time. The explained variances are
    an approximation of full PCA's that is typically within a fraction of a percent.

    Args:
        n_components: components to keep (each batch needs at least this many rows; a short last
            batch is merged into the one before).
        batch_size: rows per batch in :meth:`fit`; default: the most rows that fit ≈128 MB in
            float64, at least ``2 · n_components``.

    Attributes: ``components_`` (k, p), ``mean_`` (p,), ``var_`` (p,), ``singular_values_``,
    ``explained_variance_``, ``explained_variance_ratio_``, ``n_samples_seen_``.
    """

    def __init__(self, n_components: int, *, batch_size: int | None = None):
        if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)) or n_components < 1:
            raise VisrepsError(f"n_components must be a positive integer, got {n_components!r}")
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < n_components
        ):
            raise VisrepsError(f"batch_size must be an integer >= n_components ({n_components}), got {batch_size!r}")
        self.n_components = int(n_components)
        self.batch_size = batch_size
        self.n_samples_seen_ = 0

    def _batches(self, n: int, p: int) -> list[tuple[int, int]]:
        b = self.batch_size or max(2 * self.n_components, (128 * 2**20) // (8 * p))
        bounds = [(r0, min(n, r0 + b)) for r0 in range(0, n, b)]
        if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < self.n_components:
            last = bounds.pop()
            bounds[-1] = (bounds[-1][0], last[1])
        return bounds

    def fit(self, X: Any) -> IncrementalPCA:
        src = FeatureSource(X)
        if self.n_components > min(src.n, src.p):
            raise VisrepsError(
                f"n_components={self.n_components} is more than min(images, features) = {min(src.n, src.p)}"
            )
        self.n_samples_seen_ = 0
        from ._source import _prefetch

        for _, _, B in _prefetch(self._batches(src.n, src.p), src.rows):
            self._update(B)
        return self

    def partial_fit(self, X: Any) -> IncrementalPCA:
        """Update the fit with one batch of rows (at least ``n_components`` of them)."""
        src = FeatureSource(X)
        self._update(src.rows(0, src.n))
        return self

    def _update(self, B: np.ndarray) -> None:
        b, p = B.shape
        k = self.n_components
        if b < k:
            raise VisrepsError(f"a batch has {b} rows but IncrementalPCA needs at least n_components={k} per batch")
        if self.n_samples_seen_ and p != self.mean_.shape[0]:
            raise VisrepsError(f"this batch has {p} features, earlier batches had {self.mean_.shape[0]}")
        if k > p:
            raise VisrepsError(f"n_components={k} is more than the {p} features")
        bmean = B.mean(axis=0)
        B -= bmean
        bm2 = np.einsum("ij,ij->j", B, B)
        if self.n_samples_seen_ == 0:
            n_new = b
            self.mean_, self._m2 = bmean, bm2
            A = B
        else:
            n_old = self.n_samples_seen_
            n_new = n_old + b
            delta = bmean - self.mean_
            corr = np.sqrt(n_old * b / n_new) * (self.mean_ - bmean)
            A = np.vstack([self.singular_values_[:, None] * self.components_, B, corr[None, :]])
            self._m2 = self._m2 + bm2 + delta**2 * (n_old * b / n_new)
            self.mean_ = self.mean_ + delta * (b / n_new)
        _, s, Vt = np.linalg.svd(A, full_matrices=False)
        comps = np.ascontiguousarray(Vt[:k])
        _flip_signs(comps)
        self.components_ = comps
        self.singular_values_ = s[:k]
        self.n_samples_seen_ = n_new
        self.var_ = self._m2 / n_new
        total = float(self._m2.sum())
        self.explained_variance_ = s[:k] ** 2 / max(n_new - 1, 1)
        self.explained_variance_ratio_ = s[:k] ** 2 / total if total > 0 else np.zeros(k)

    def transform(self, X: Any) -> np.ndarray:
        """Scores ``(X − mean_) components_ᵀ`` (n × k), streamed over row blocks."""
        if not self.n_samples_seen_:
            raise VisrepsError("this IncrementalPCA is not fitted yet; call fit(X) or partial_fit(batch) first")
        return _project(X, self.mean_, self.components_, self.batch_size)

    def fit_transform(self, X: Any) -> np.ndarray:
        return self.fit(X).transform(X)


# --------------------------------------------------------------------------- ensembles

#: module types of feature-map layers, by kind
FEATURE_MAP_KINDS = {
    "conv": ("Conv1d", "Conv2d", "Conv3d"),
    "maxpool": ("MaxPool1d", "MaxPool2d", "MaxPool3d", "AdaptiveMaxPool2d"),
    "avgpool": ("AvgPool2d", "AdaptiveAvgPool2d"),
}


def check_kinds(kinds: Sequence[str]) -> set[str]:
    """The module type names of the feature-map ``kinds`` (see :data:`FEATURE_MAP_KINDS`)."""
    bad = [k for k in kinds if k not in FEATURE_MAP_KINDS]
    if bad or not kinds:
        raise VisrepsError(f"kinds {list(kinds)!r} not known; choose from {', '.join(FEATURE_MAP_KINDS)}")
    return {t for k in kinds for t in FEATURE_MAP_KINDS[k]}


def feature_map_layers(model: Any, *, kinds: Sequence[str] = ("conv", "maxpool")) -> list[str]:
    """Names of a model's convolution and/or max-pooling modules, in network order.

    ``model`` is a :class:`~visreps.models.LoadedModel` or a ``torch.nn.Module`` (this never
    loads a model; for a model id use :func:`visreps.feature_map_layers`, i.e.
    :func:`visreps.workflows.feature_map_layers`). ``kinds``: any of ``conv``, ``maxpool``,
    ``avgpool``. Use the names as ``layers=`` of :func:`visreps.extract` and then
    :func:`ensemble_features`.
    """
    types = check_kinds(kinds)
    if hasattr(model, "named_modules"):
        return [n for n, m in model.named_modules() if n and type(m).__name__ in types]
    if callable(getattr(model, "layers", None)):  # a LoadedModel: its layer table (a dry run)
        return [info.name for info in model.layers() if info.type in types]
    raise VisrepsError(
        f"feature_map_layers takes a loaded model or a torch module, not {type(model).__name__} {model!r}; "
        "for a model id use visreps.feature_map_layers (it loads the model)"
    )


def ensemble_features(
    features: Mapping[str, Any],
    layers: Sequence[str] | None = None,
    *,
    penultimate: str | None = None,
    scale: str = "unit",
    n_components: int | None = None,
    retained_var: float | None = None,
    seed: int | None = 0,
    block_size: int | None = None,
) -> np.ndarray:
    """Concatenate several layers' features into one ensemble, optionally reduced with PCA.

    For feature-map ensembles (conv / max-pool layers, see :func:`feature_map_layers`),
    optionally with the penultimate layer appended, then PCA to keep the dimensions that carry
    most of the variance.

    Args:
        features: layer → array (rows = the same images), e.g. :func:`visreps.load_features`'s result.
        layers: the layers to concatenate, in order (default: all of ``features`` except ``penultimate``).
        penultimate: a layer appended last (e.g. the penultimate fully connected layer).
        scale: ``unit`` (default): every layer is centred over images and divided by its Frobenius
            norm ``‖Xc‖_F``, so each layer carries the same total variance whatever its width;
            ``none``: raw features as they are.
        n_components, retained_var: reduce the ensemble with exact PCA to this many components /
            this fraction of variance (give at most one). Without them the concatenation itself is
            returned (it can be very wide).
        seed: kept for API symmetry with :func:`compress_features` (the exact PCA used here is
            deterministic).

    Returns:
        ``(n, Σ features)`` float32/float64 concatenation, or ``(n, k)`` float64 PCA scores.
        With PCA the concatenation is never built: the ensemble's Gram matrix is the sum of the
        layers' Gram matrices (each streamed in blocks), and the scores come from it.
    """
    if not isinstance(features, Mapping):
        raise VisrepsError("features must be a mapping layer → array (e.g. visreps.load_features(folder))")
    if scale not in ("unit", "none"):
        raise VisrepsError(f"scale {scale!r} is not known; use 'unit' (equal variance per layer) or 'none'")
    names, srcs = _ensemble_layers(features, layers, penultimate)
    n = srcs[0].n
    if n_components is None and retained_var is None:
        return _concatenate(features, names, n, scale)
    k_req, frac = _check_k_or_fraction(n_components, retained_var, min(n, sum(s.p for s in srcs)))
    G = np.zeros((n, n))
    for k, s in zip(names, srcs):
        g = stream_gram(s, center="columns", block_size=block_size)["G"]
        if scale == "unit":
            tr = float(np.trace(g))
            if tr <= 0:
                raise VisrepsError(f"layer {k!r} is constant over the images; leave it out of the ensemble")
            g /= tr
        G += g
        del g
    total = float(np.trace(G))
    w, U = np.linalg.eigh(G)
    w, U = np.clip(w[::-1], 0.0, None), U[:, ::-1]
    ratio = w / total
    if k_req is not None:
        k = k_req
    else:
        assert frac is not None  # _check_k_or_fraction gives exactly one of k_req and frac
        k = _k_for_fraction(ratio, frac)
    scores = U[:, :k] * np.sqrt(w[:k])[None, :]
    # deterministic signs: the largest-magnitude score of each component is positive
    _flip_signs(scores.T)
    return np.ascontiguousarray(scores)


def _ensemble_layers(
    features: Mapping[str, Any], layers: Sequence[str] | None, penultimate: str | None
) -> tuple[list[str], list[FeatureSource]]:
    """The ensemble's layers in order (``penultimate`` last) and their sources; all present, once, same images."""
    names = list(layers) if layers is not None else [k for k in features if k != penultimate]
    if penultimate is not None:
        names.append(penultimate)
    if not names:
        raise VisrepsError("no layers to concatenate; pass layers=[...]")
    missing = [k for k in names if k not in features]
    if missing:
        raise VisrepsError(f"layers {missing} are not in the features; available: {', '.join(map(str, features))}")
    if len(set(names)) != len(names):
        raise VisrepsError(f"a layer is listed twice in {names}")
    srcs = [FeatureSource(features[k], name=f"layer {k!r}") for k in names]
    n = srcs[0].n
    for k, s in zip(names, srcs):
        if s.n != n:
            raise VisrepsError(
                f"layer {k!r} has {s.n} rows but layer {names[0]!r} has {n}; all layers must be the same images"
            )
    return names, srcs


def _concatenate(features: Mapping[str, Any], names: list[str], n: int, scale: str) -> np.ndarray:
    """The layers side by side; with ``scale="unit"`` each centred and divided by its Frobenius norm."""
    parts = []
    for k in names:
        X = np.asarray(features[k]).reshape(n, -1)
        if scale == "unit":
            X = X.astype(np.float64) - X.mean(axis=0, dtype=np.float64)
            norm = np.linalg.norm(X)
            if norm == 0:
                raise VisrepsError(f"layer {k!r} is constant over the images; leave it out of the ensemble")
            X = X / norm
        parts.append(X)
    return np.concatenate(parts, axis=1)
