"""The ridge, PLS and banded-ridge solvers of :func:`visreps.analysis.encode`, one fold at a time.

A layer becomes a *design* (:class:`KernelDesign`: its Gram matrix, streamed in column blocks; or
:class:`PrimalDesign`: the centred features in memory), which gives each training set's centred
spectrum (:class:`_Spectrum`); from it every alpha's predictions cost one product, the penalty per
target is chosen by efficient leave-one-out (:func:`loo_select`) or inner K-fold (:func:`kfold_select`),
and :func:`ridge_fold`, :func:`pls_fold` and :func:`banded_fold` predict a held-out fold. The formulas
are in :mod:`visreps.analysis.encoding`'s documentation; :func:`fold_scores` scores a fold.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ._folds import inner_splits
from ._source import FeatureSource, stream_gram

_TARGET_CHUNK_BYTES = 32 * 2**20
#: default bytes of one float64 block of features streamed into the Gram matrix
_STREAM_BLOCK_BYTES = 32 * 2**20


@dataclass
class _Spectrum:
    """One training set's centred design: ``Kc = U diag(lam) Uᵀ`` (``U ⊥ 1``) and the test projections ``T``."""

    U: np.ndarray
    lam: np.ndarray
    T: np.ndarray
    complete: bool  # U spans the whole complement of the constant vector


@dataclass(eq=False, repr=False)  # no element-wise == or printing of the whole matrix
class KernelDesign:
    """A layer as its Gram matrix ``K = X Xᵀ`` (images in response order; ``n`` of them)."""

    K: np.ndarray
    kind: ClassVar[str] = "kernel"

    @property
    def n(self) -> int:
        return int(self.K.shape[0])

    def fold(self, tr: np.ndarray, te: np.ndarray) -> _Spectrum:
        """Centre with the training means (``Kc_ij = K_ij − m_i − m_j + m̄``) and eigendecompose."""
        Ktr = self.K[np.ix_(tr, tr)]
        m = Ktr.mean(axis=1)
        mm = m.mean()
        Ktr -= m[:, None]
        Ktr -= m[None, :]
        Ktr += mm
        Kte = self.K[np.ix_(te, tr)]
        mt = Kte.mean(axis=1)
        Kte -= mt[:, None]
        Kte -= m[None, :]
        Kte += mm
        U, lam = _kernel_spectrum(Ktr)
        return _Spectrum(U, lam, Kte @ U, True)


@dataclass(eq=False, repr=False)
class PrimalDesign:
    """A layer held in memory as ``X`` (``n`` images × features, fewer features than images)."""

    X: np.ndarray
    kind: ClassVar[str] = "primal"
    n: int = field(init=False)

    def __post_init__(self) -> None:
        self.n = int(self.X.shape[0])

    def fold(self, tr: np.ndarray, te: np.ndarray) -> _Spectrum:
        """SVD of the centred training rows ``Xc = U S Vᵀ``; ``lam = S²``, ``T = (X_te − μ) V S``."""
        from scipy.linalg import svd

        mu = self.X[tr].mean(axis=0)
        Xc = self.X[tr] - mu
        U, s, Vt = svd(Xc, full_matrices=False, check_finite=False)
        r = int((s > s[0] * max(Xc.shape) * np.finfo(np.float64).eps).sum()) if len(s) and s[0] > 0 else 0
        U, s, Vt = U[:, :r], s[:r], Vt[:r]
        T = ((self.X[te] - mu) @ Vt.T) * s
        return _Spectrum(np.ascontiguousarray(U), s * s, T, r >= len(tr) - 1)


def _kernel_spectrum(Kc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvectors of a training-centred kernel orthogonal to the constant vector, and their eigenvalues.

    ``Kc 1 = 0``; the constant direction is split off exactly by decomposing ``Kc − s·11ᵀ/n`` with
    ``s = trace(Kc)/n`` (the mean eigenvalue; 1 for an all-zero kernel): it is the one eigenvector
    with eigenvalue ``−s`` (the smallest, as ``Kc`` is positive semi-definite) and is dropped.
    Round-off negatives are set to 0.
    """
    from scipy.linalg import eigh

    n = Kc.shape[0]
    s = float(np.trace(Kc)) / n
    s = s if s > 0 else 1.0
    Kc -= s / n
    lam, Q = eigh(Kc, overwrite_a=True, check_finite=False)
    return Q[:, 1:], np.maximum(lam[1:], 0.0)


def layer_design(
    features: Any,
    rows: np.ndarray,
    *,
    solver: str = "auto",
    block_size: int | None = None,
    name: str,
    device: Any = "cpu",
):
    """The design of one layer for the response rows ``rows`` (feature row of each response row).

    ``solver="auto"``: the kernel form when the layer has at least as many features as images,
    else the primal form. The kernel is streamed (:func:`visreps.analysis._source.stream_gram`,
    features centred by their overall means, which leaves every fold's centring exact and keeps
    the sums well conditioned), its products on ``device`` (``"cpu"``: numpy/BLAS; a CUDA device:
    torch, float64); the primal form reads the layer into memory (float64).
    """
    src = FeatureSource(features, name=name)
    kind = solver if solver != "auto" else ("kernel" if src.p >= len(rows) else "primal")
    if kind == "kernel":
        if block_size is None:  # smaller blocks than the RDMs' 128 MB: the targets need memory too
            block_size = max(1, min(src.p, _STREAM_BLOCK_BYTES // (8 * src.n)))
        K = stream_gram(src, center="columns", block_size=block_size, device=device)["G"]
        return KernelDesign(np.ascontiguousarray(K[np.ix_(rows, rows)]))
    X = src.cols(0, src.p)
    return PrimalDesign(np.ascontiguousarray(X[rows] - X.mean(axis=0)))


# --------------------------------------------------------------------------- alpha selection


def _chunks(n_rows: int, n_cols: int) -> list[slice]:
    w = max(1, min(n_cols, _TARGET_CHUNK_BYTES // (8 * max(1, n_rows))))
    return [slice(c, min(c + w, n_cols)) for c in range(0, n_cols, w)]


def loo_select(sp: _Spectrum, Yc: np.ndarray, alphas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-target alpha index minimising the efficient leave-one-out MSE (scikit-learn ``RidgeCV`` gcv).

    ``e = c / d`` with ``c = G⁻¹ Yc``, ``d = diag(G⁻¹)``; see the module documentation.

    Returns:
        ``(best index per target, LOO MSE (n_alphas × targets))``.
    """
    n = Yc.shape[0]
    U, lam = sp.U, sp.lam
    U2 = U * U
    mse = np.empty((len(alphas), Yc.shape[1]))
    for sl in _chunks(n, Yc.shape[1]):
        Yb = Yc[:, sl]
        Z = U.T @ Yb
        for a, alpha in enumerate(alphas):
            if sp.complete:
                w = 1.0 / (lam + alpha)
                C = U @ (w[:, None] * Z)
                d = U2 @ w
            else:  # G⁻¹ = U diag(w − 1/α) Uᵀ + P⊥/α
                g = -lam / (alpha * (lam + alpha))
                C = U @ (g[:, None] * Z)
                C += Yb / alpha
                d = U2 @ g + (1.0 - 1.0 / n) / alpha
            C /= d[:, None]
            mse[a, sl] = np.einsum("ij,ij->j", C, C) / n
    return np.argmin(mse, axis=0), mse


def kfold_select(design, tr: np.ndarray, Y: np.ndarray, alphas: np.ndarray, inner_folds: int) -> np.ndarray:
    """Per-target alpha index by inner K-fold CV on the training images ``tr`` (himalaya's criterion)."""
    scores = np.zeros((len(alphas), Y.shape[1]))
    for a_idx, b_idx in inner_splits(len(tr), inner_folds):
        sp = design.fold(tr[a_idx], tr[b_idx])
        Ya, Yb = Y[tr[a_idx]], Y[tr[b_idx]]
        mu = Ya.mean(axis=0)
        Z = sp.U.T @ (Ya - mu)
        for a, alpha in enumerate(alphas):
            P = sp.T @ (Z / (sp.lam + alpha)[:, None])
            P += mu
            P -= Yb
            scores[a] += np.einsum("ij,ij->j", P, P) / len(b_idx)
    scores /= inner_folds
    scores -= 1e-10 * np.log(alphas)[:, None]
    return np.argmin(scores, axis=0)


def ridge_fold(
    design, tr: np.ndarray, te: np.ndarray, Y: np.ndarray, alphas: np.ndarray, inner: str, inner_folds: int
) -> tuple[np.ndarray, np.ndarray]:
    """Fit on ``tr`` with an alpha per target chosen by nested CV; return (test predictions, alpha index)."""
    sp = design.fold(tr, te)
    mu = Y[tr].mean(axis=0)
    Yc = Y[tr] - mu
    if inner == "loo":
        best, _ = loo_select(sp, Yc, alphas)
    else:
        best = kfold_select(design, tr, Y, alphas, inner_folds)
    pred = np.empty((len(te), Y.shape[1]))
    for sl in _chunks(len(tr), Y.shape[1]):
        Z = sp.U.T @ Yc[:, sl]
        Z /= sp.lam[:, None] + alphas[best[sl]][None, :]
        pred[:, sl] = sp.T @ Z + mu[sl]
    return pred, best


def pls_fold(design, tr: np.ndarray, te: np.ndarray, Y: np.ndarray, n_components: int) -> np.ndarray:
    """PLS (scikit-learn ``PLSRegression(scale=False)``) on the fold's kernel-PCA scores; test predictions."""
    try:
        from sklearn.cross_decomposition import PLSRegression
    except ImportError:
        from ..errors import MissingExtraError

        raise MissingExtraError("method='pls' needs scikit-learn: pip install 'visreps[brain]'") from None

    sp = design.fold(tr, te)
    keep = sp.lam > sp.lam.max(initial=0.0) * len(tr) * np.finfo(np.float64).eps
    if not keep.any():
        return np.tile(Y[tr].mean(axis=0), (len(te), 1))
    root = np.sqrt(sp.lam[keep])
    S_tr = sp.U[:, keep] * root
    S_te = sp.T[:, keep] / root
    k = min(int(n_components), S_tr.shape[1], len(tr) - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # scikit-learn: y residual constant at iteration ...
        pls = PLSRegression(n_components=k, scale=False).fit(S_tr, Y[tr])
        return np.asarray(pls.predict(S_te)).reshape(len(te), -1)


def banded_fold(
    designs: Sequence[KernelDesign],
    tr: np.ndarray,
    te: np.ndarray,
    Y: np.ndarray,
    alphas: np.ndarray,
    inner_folds: int,
    n_iter: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Banded ridge (himalaya ``MultipleKernelRidgeCV``, precomputed kernels, random search) on one fold.

    Returns:
        test predictions, band weights (bands × targets; ``γ_b = exp(δ_b) / Σ exp(δ)``, summing to
        1 per target) and the effective alpha per target (``1 / Σ_b exp(δ_b)``).
    """
    try:
        from himalaya.kernel_ridge import MultipleKernelRidgeCV
    except ImportError:
        from ..errors import MissingExtraError

        raise MissingExtraError("method='banded' needs himalaya: pip install 'visreps[brain]'") from None
    Ks_tr = np.stack([d.K[np.ix_(tr, tr)] for d in designs])
    Ks_te = np.stack([d.K[np.ix_(te, tr)] for d in designs])
    params = {"n_iter": int(n_iter), "alphas": np.asarray(alphas), "progress_bar": False}
    search = {"solver": "random_search", "solver_params": params, "cv": inner_folds, "random_state": seed}
    model = MultipleKernelRidgeCV(kernels="precomputed", fit_intercept=True, **search)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(Ks_tr, Y[tr])
        pred = np.asarray(model.predict(Ks_te), dtype=np.float64).reshape(len(te), -1)
    deltas = np.asarray(model.deltas_, dtype=np.float64)
    e = np.exp(deltas)
    return pred, e / e.sum(axis=0), 1.0 / e.sum(axis=0)


# --------------------------------------------------------------------------- scores


def fold_scores(y: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson r and R² (``1 − SSE / Σ(y − ȳ)²``) per column; NaN where undefined (a constant column)."""
    yc = y - y.mean(axis=0)
    pc = pred - pred.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        den = np.sqrt(np.einsum("ij,ij->j", yc, yc) * np.einsum("ij,ij->j", pc, pc))
        r = np.where(den > 0, np.einsum("ij,ij->j", yc, pc) / np.where(den > 0, den, 1.0), np.nan)
        ss = np.einsum("ij,ij->j", yc, yc)
        res = y - pred
        r2 = np.where(ss > 0, 1.0 - np.einsum("ij,ij->j", res, res) / np.where(ss > 0, ss, 1.0), np.nan)
    return np.clip(r, -1.0, 1.0), r2
