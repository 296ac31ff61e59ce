"""Encoding models: cross-validated regression from network layers to brain or behavioural responses.

:func:`encode` predicts every target (voxel, neuron, behavioural dimension) of a response set from
each layer of one or more feature folders, on held-out images, and reports per target and per
layer how well it does (Pearson r and R²), raw and as a fraction of the data's noise ceiling.

The method, for one layer ``X`` (images × features) and targets ``Y`` (images × targets):

* **Outer cross-validation.** The images are split into ``K`` folds (shuffled with ``seed``; with
  ``groups``, whole groups go to one fold, so a category is never both trained and tested on).
  Each fold is predicted from a model fitted on the other folds.
* **Ridge with an intercept.** On the training images, ``X`` and ``Y`` are centred with the
  training means ``μ_X``, ``μ_Y``; ``β(α) = (XcᵀXc + αI)⁻¹ XcᵀYc``; a test image's prediction is
  ``ŷ = (x − μ_X) β + μ_Y``. The intercept is not penalised.
* **One spectrum for all alphas.** With ``Kc = Xc Xcᵀ = U Λ Uᵀ`` (the eigenvectors orthogonal to
  the constant vector), ``Z = Uᵀ Yc`` and ``T = Kc(test, train) U``, the test predictions are
  ``Ŷ = T diag(1/(λ + α)) Z + μ_Y`` for every ``α`` at the cost of one product.
  *Kernel form* (features ≥ training images): the Gram matrix ``K = X Xᵀ`` is accumulated over
  column blocks read from the (memory-mapped) layer, never loaded whole, once per layer; each
  fold centres it with the training means: for ``i`` any image and ``j`` a training image,
  ``Kc_ij = K_ij − m_i − m_j + m̄`` with ``m_i = (1/n_tr) Σ_{k∈train} K_ik`` and
  ``m̄ = (1/n_tr) Σ_{j∈train} m_j``, which is exactly ``(x_i − μ_X)·(x_j − μ_X)``; then ``Kc(train,
  train)`` is eigendecomposed. *Primal form* (features < training images): the layer is read into
  memory and the training ``Xc = U S Vᵀ`` is decomposed (``Λ = S²``, ``T = (X_test − μ_X) V S``).
* **Alpha per target by nested CV on the training images.** ``inner="loo"`` (default): efficient
  leave-one-out, the criterion of scikit-learn's ``RidgeCV`` (``gcv`` mode, ``alpha_per_target``):
  with the hat matrix of ridge plus unpenalised intercept, the LOO residual of image ``i`` is
  ``e_i = c_i / d_i``, ``c = G⁻¹ Yc``, ``d = diag(G⁻¹)``, ``G⁻¹ = U diag(1/(λ+α)) Uᵀ +
  (P⊥ − U Uᵀ)/α`` (``P⊥`` the projector orthogonal to the constant; the second term vanishes when
  ``U`` spans it); ``α_t = argmin_α mean_i e_i,t²`` (the first of equal minima).
  ``inner="kfold"``: ``inner_folds`` contiguous folds of the training images (scikit-learn's
  unshuffled ``KFold``, as himalaya's ``KernelRidgeCV(cv=k)``), each refitted with its own
  centring; ``α_t = argmin_α mean_folds MSE − 1e-10 · log α`` (himalaya's criterion and tie-break).
* **Scores** on each held-out fold, per target: Pearson ``r = Σ(ŷ−ŷ̄)(y−ȳ) / (‖ŷ−ŷ̄‖‖y−ȳ‖)``
  and ``R² = 1 − Σ(y−ŷ)² / Σ(y−ȳ)²`` (``ȳ`` the test fold's mean, as ``sklearn.metrics.r2_score``);
  a target's score is the mean over folds (``r_pooled``, ``r2_pooled``: the same of all out-of-fold
  predictions at once).
* **Ceiling.** ``ρ_t`` is the reliability of the target's mean response (split-half,
  Spearman–Brown corrected: :func:`visreps.analysis.ceilings.split_half_reliability`). The largest
  correlation a noiseless model can reach with noisy data is ``√ρ`` (correction for attenuation,
  Spearman 1904), so ``r_ceiled = r / √ρ`` and ``r2_ceiled = R² / ρ``; both are NaN where ``ρ ≤ 0``.
  (Brain-Score divides ``r`` by ``ρ`` itself, which over-corrects when ``ρ < 1``.)

``method="pls"`` fits scikit-learn's ``PLSRegression(n_components, scale=False)`` (Brain-Score's
neural-predictivity regression) to all targets jointly. It is fitted to each fold's kernel-PCA
scores (training ``U √Λ``, test ``T / √Λ``), the coordinates of the centred images in the span of
the training images: PLS without scaling depends on the features only through that span and is
unchanged by a rotation of them, so this is PLS on the raw features, whatever their number.
``method="banded"`` fits banded ridge over all the chosen layers at once (one band each) with
himalaya's ``MultipleKernelRidgeCV`` on the per-layer Gram matrices (random search of band
weights, ``inner_folds`` inner folds), and reports each band's weight per target.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import VisrepsError
from ..options import ENCODING_MODELS as METHODS
from ..options import INNER_CV as INNER
from ..options import SOLVERS
from ._source import FeatureSource, resolve_device, stream_gram
from .responses import Responses, as_responses, clean_targets, load_responses, match_images

if TYPE_CHECKING:
    import pandas as pd

    from .compare import FeatureSet


#: default ridge penalties: 10⁻² … 10⁸, one per decade
DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-2, 8, 11))
_TARGET_CHUNK_BYTES = 32 * 2**20
#: default bytes of one float64 block of features streamed into the Gram matrix
_STREAM_BLOCK_BYTES = 32 * 2**20


@dataclass
class EncodingResult:
    """What :func:`encode` returns.

    Attributes:
        targets: one row per (layer, target): ``label``, ``model``, ``layer``, ``target``, ``r``,
            ``r2`` (means over folds), ``r_sd``/``r2_sd`` (their SD over folds), ``r_pooled``/``r2_pooled``
            (the same scores of all out-of-fold predictions at once, steadier with few images), ``alpha`` (ridge:
            the median over folds of the chosen alpha), with a ceiling ``ceiling`` (``ρ``),
            ``r_ceiled``, ``r2_ceiled``; banded: ``weight:<band>`` per band.
        folds: one row per (layer, target, fold): ``r``, ``r2``, ``n_test``, ``alpha``.
        layers: one row per layer: ``n_targets`` (with a score), mean, median and SEM over targets
            (``SD / √n``) of ``r``, ``r2`` (and the ceiled scores), ``r_fold_sd`` (SD over folds of the
            fold's mean r over targets), ``ceiling_r`` and ``ceiling_r_sem`` (mean and SEM of ``√ρ``).
        fold_of: the fold of every image (response row order).
        images: the image of every response row (manifest paths), or ``None``.
        target_labels: the targets fitted (after dropping NaN targets).
        dropped: targets dropped for NaN values (``nan="drop"``).
        constant: targets constant across images (scores NaN).
        ceiling: ``ρ`` per target (``None`` without a ceiling).
        band_weights: banded only: one row per (target, band) with the band's weight (mean over folds).
        predictions: with ``return_predictions=True``: label → out-of-fold predictions (images × targets).
        info: method, alphas, folds, inner, seed, n_images, n_targets, solver per layer.
    """

    targets: pd.DataFrame
    folds: pd.DataFrame
    layers: pd.DataFrame
    fold_of: np.ndarray
    images: list[str] | None
    target_labels: list[str]
    dropped: list[str] = field(default_factory=list)
    constant: list[str] = field(default_factory=list)
    ceiling: np.ndarray | None = None
    band_weights: pd.DataFrame | None = None
    predictions: dict[str, np.ndarray] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def table_writers(self) -> dict[str, Callable[[Any], None]]:
        """The tables :meth:`save` writes: file name → a function writing that table to a path (full precision).

        ``layers.csv``, ``targets.csv``, ``folds.csv``, ``fold_of_image.csv`` (``image, fold``) and, banded
        only, ``band_weights.csv``."""
        import pandas as pd

        full = "%.17g"
        images = self.images if self.images is not None else list(range(len(self.fold_of)))
        out: dict[str, Callable[[Any], None]] = {
            "layers.csv": lambda p: self.layers.to_csv(p, index=False, float_format=full),
            "targets.csv": lambda p: self.targets.to_csv(p, index=False, float_format=full),
            "folds.csv": lambda p: self.folds.to_csv(p, index=False, float_format=full),
            "fold_of_image.csv": lambda p: pd.DataFrame({"image": images, "fold": self.fold_of}).to_csv(p, index=False),
        }
        bands = self.band_weights
        if bands is not None:
            out["band_weights.csv"] = lambda p: bands.to_csv(p, index=False, float_format=full)
        return out

    def save(
        self, folder: str | os.PathLike, *, overwrite: bool = False, inputs: Sequence[str | os.PathLike] = ()
    ) -> list[Any]:
        """Write the tables (:meth:`table_writers`) into ``folder`` as one transaction (:mod:`visreps.outputs`).

        Every file is checked before the first is written: none may be the responses file of the run
        or one of ``inputs``; existing ones are an error unless ``overwrite``, which also removes the
        other files of the earlier run it replaces (e.g. a banded run's ``band_weights.csv``). The
        tables are written under partial names and renamed together at the end. Returns their paths.

        Raises:
            VisrepsError: a clash as above, or a file that cannot be written (named).
        """
        from pathlib import Path

        from ..outputs import OutputPlan

        writers = self.table_writers()
        plan = OutputPlan(overwrite=overwrite, options="folder", command="visreps.analysis.encode(...).save")
        plan.add(*(Path(folder) / name for name in writers))
        plan.add_inputs(self.info.get("responses"), what="the responses file").add_inputs(*inputs)
        with plan.check():
            for name, write in writers.items():
                plan.write(Path(folder) / name, write)
        return plan.files

    def __repr__(self) -> str:
        return (
            f"EncodingResult({self.info.get('method')}, {len(self.layers)} layer(s), {len(self.target_labels)} "
            f"targets, {self.info.get('n_images')} images, {self.info.get('n_folds')} folds)"
        )


# --------------------------------------------------------------------------- folds


def make_folds(n: int, folds: int | Sequence[int] | np.ndarray = 5, *, groups: Any = None, seed: int = 0) -> np.ndarray:
    """The outer fold of each of ``n`` images.

    * ``folds`` an integer ``K``, no groups: a random permutation of the images
      (``numpy.random.default_rng(seed)``) cut into ``K`` consecutive parts whose sizes differ by
      at most one (``numpy.array_split``).
    * with ``groups`` (one label per image): the groups are shuffled with ``seed``, then taken
      from the largest to the smallest (stable) and each put in the fold with the fewest images so
      far (lowest index on ties): every group lies in one fold (as scikit-learn's ``GroupKFold``).
    * ``folds`` an array of ``n`` fold labels: used as given.

    Raises:
        VisrepsError: fewer than 2 folds, fewer images (or groups) than folds, an empty fold.
    """
    if not isinstance(folds, (int, np.integer)) or isinstance(folds, bool):
        lab = np.asarray(folds)
        if lab.shape != (n,):
            raise VisrepsError(
                f"folds: give a number of folds or one fold label per image ({n}), got shape {lab.shape}"
            )
        _, fold_of = np.unique(lab, return_inverse=True)
        if fold_of.max() < 1:
            raise VisrepsError("folds: the labels name only one fold; cross-validation needs at least 2")
        return fold_of.astype(np.intp)
    k = int(folds)
    if k < 2:
        raise VisrepsError(f"folds must be at least 2, got {k}")
    if n < k:
        raise VisrepsError(f"fewer images ({n}) than folds ({k}); use at most {n} folds or more images")
    rng = np.random.default_rng(seed)
    fold_of = np.empty(n, dtype=np.intp)
    if groups is None:
        for f, part in enumerate(np.array_split(rng.permutation(n), k)):
            fold_of[part] = f
        return fold_of
    g = np.asarray(groups)
    if g.shape != (n,):
        raise VisrepsError(f"groups: one label per image is needed ({n}), got {g.shape[0] if g.ndim else 0}")
    uniq, inv = np.unique(g, return_inverse=True)
    if len(uniq) < k:
        raise VisrepsError(f"fewer groups ({len(uniq)}) than folds ({k}); use at most {len(uniq)} folds")
    order = rng.permutation(len(uniq))
    sizes = np.bincount(inv, minlength=len(uniq))
    order = order[np.argsort(-sizes[order], kind="stable")]
    load = np.zeros(k, dtype=np.int64)
    group_fold = np.empty(len(uniq), dtype=np.intp)
    for gi in order:
        f = int(np.argmin(load))
        group_fold[gi] = f
        load[f] += sizes[gi]
    return group_fold[inv]


def _inner_splits(n: int, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's ``KFold(k)`` without shuffling: contiguous parts, the first ``n % k`` one longer."""
    if n < k:
        raise VisrepsError(f"a training set of {n} images cannot be split into {k} inner folds; use fewer inner folds")
    out = []
    idx = np.arange(n)
    for part in np.array_split(idx, k):
        out.append((np.setdiff1d(idx, part), part))
    return out


# --------------------------------------------------------------------------- designs (kernel or primal)


@dataclass
class _Spectrum:
    """One training set's centred design: ``Kc = U diag(lam) Uᵀ`` (``U ⊥ 1``) and the test projections ``T``."""

    U: np.ndarray
    lam: np.ndarray
    T: np.ndarray
    complete: bool  # U spans the whole complement of the constant vector


class KernelDesign:
    """A layer as its Gram matrix ``K = X Xᵀ`` (images in response order)."""

    kind = "kernel"

    def __init__(self, K: np.ndarray):
        self.K = K
        self.n = K.shape[0]

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


class PrimalDesign:
    """A layer held in memory as ``X`` (images × features, fewer features than images)."""

    kind = "primal"

    def __init__(self, X: np.ndarray):
        self.X = X
        self.n = X.shape[0]

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
    for a_idx, b_idx in _inner_splits(len(tr), inner_folds):
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
    model = MultipleKernelRidgeCV(
        kernels="precomputed",
        solver="random_search",
        solver_params=params,
        fit_intercept=True,
        cv=inner_folds,
        random_state=seed,
    )
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


# --------------------------------------------------------------------------- checks


def _check_alphas(alphas: Any) -> np.ndarray:
    try:
        a = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    except (TypeError, ValueError):
        raise VisrepsError(f"alphas must be positive numbers, got {alphas!r}") from None
    if a.ndim != 1 or a.size == 0 or not np.isfinite(a).all() or (a <= 0).any():
        raise VisrepsError(f"alphas must be positive finite numbers (e.g. numpy.logspace(-2, 8, 11)), got {alphas!r}")
    return a


def _check_choice(value: str, choices: Sequence[str], what: str) -> str:
    v = str(value).lower()
    if v not in choices:
        raise VisrepsError(f"{what}={value!r} is not known; use one of {', '.join(choices)}")
    return v


def _ceiling_of(
    ceiling: Any, reps: np.ndarray | None, n_flat: int, keep: np.ndarray, ceiling_splits: int, seed: int
) -> np.ndarray | None:
    """``ρ`` per kept target: an array (for all targets or for the kept ones), or split-half from repetitions."""
    if ceiling is None or ceiling is False:
        return None
    if ceiling is True or (isinstance(ceiling, str) and ceiling in ("split-half", "split_half", "auto")):
        if reps is None:
            raise VisrepsError(
                "a split-half noise ceiling needs responses with a repetitions axis (e.g. axes="
                "'repetitions,images,targets', CLI: --axes); or pass the ceiling per target as an array"
            )
        from .ceilings import split_half_reliability

        return split_half_reliability(reps, n_splits=ceiling_splits, seed=seed)
    c = np.asarray(ceiling, dtype=np.float64).ravel()
    if len(c) == n_flat:
        return c[keep]
    if len(c) == len(keep):
        return c
    raise VisrepsError(f"ceiling has {len(c)} values but there are {n_flat} targets ({len(keep)} after dropping NaN)")


# --------------------------------------------------------------------------- the entry point


def encode(
    features: Any,
    responses: Any,
    *,
    layers: Sequence[str] | Mapping[str, Sequence[str]] | str | None = None,
    method: str = "ridge",
    alphas: Any = DEFAULT_ALPHAS,
    folds: int | Sequence[int] | np.ndarray = 5,
    groups: Any = None,
    inner: str = "loo",
    inner_folds: int = 5,
    seed: int = 0,
    n_components: int = 25,
    n_iter: int = 20,
    ceiling: Any = None,
    ceiling_splits: int = 100,
    nan: str = "error",
    order: Sequence[str] | str | os.PathLike | None = None,
    key: str | None = None,
    axes: str | Sequence[str] | None = None,
    solver: str = "auto",
    block_size: int | None = None,
    device: Any = "auto",
    return_predictions: bool = False,
) -> EncodingResult:
    """Cross-validated encoding models from each layer to every response target (see the module documentation).

    Args:
        features: output folders (memory-mapped), ``Features``, arrays, or a list/dict of them
            (as :func:`visreps.analysis.collect_features`); the rows of several folders are aligned.
        responses: a file (:func:`visreps.analysis.load_responses`), a :class:`Responses`, or an
            array shaped as ``axes`` says (default images × targets).
        layers: layers of every folder (default: all), or a dict folder/model → layers.
        method: ``ridge`` (default), ``pls`` or ``banded`` (all chosen layers as bands of one model).
        alphas: ridge penalties to choose from (default ``logspace(-2, 8, 11)``).
        folds: number of outer folds (default 5), or a fold label per image.
        groups: a label per response row (e.g. category): folds keep groups whole.
        inner: ``loo`` (efficient leave-one-out, default) or ``kfold`` (``inner_folds`` folds).
        seed: seed of the folds (and of banded ridge's random search and the split-half ceiling).
        n_components: PLS components (Brain-Score: 25), clipped to the training set's rank.
        n_iter: banded ridge: band-weight candidates of the random search.
        ceiling: ``True`` (split-half reliability of the repetitions) or ``ρ`` per target; adds the
            ceiled scores ``r/√ρ`` and ``R²/ρ``.
        ceiling_splits: random half splits of the split-half reliability.
        nan: ``"error"`` (default) or ``"drop"``: targets with NaN are dropped (listed in ``dropped``, warned).
        order, key, axes: passed to :func:`visreps.analysis.load_responses` (``order`` is the
            images of the response rows: a list or a file with one image path per line).
        solver: ``auto`` (kernel form when features ≥ images, else primal), ``kernel`` or ``primal``.
        block_size: features per block when streaming the Gram matrix (default: float64 blocks of ≈32 MB,
            ``32 MB / (8 · images)`` features; two are in memory at a time).
        device: where the Gram matrix of each layer (the ``images² × features`` products, most of the
            work) is accumulated: ``"auto"`` (default: CUDA via torch when a GPU is available, else
            numpy/BLAS), ``"cpu"``, ``"cuda"``/``"cuda:N"`` or a ``torch.device``; always float64. The
            fold solves (``images × images``) run on the CPU.
        return_predictions: keep the out-of-fold predictions of every layer.

    Returns:
        :class:`EncodingResult` with tables per target, per fold and per layer.

    Raises:
        VisrepsError: unreadable responses, image sets that do not match, NaN with ``nan="error"``,
            fewer images than folds, a ceiling without repetitions, bad options.
    """
    from .compare import collect_features

    method = _check_choice(method, METHODS, "method")
    inner = _check_choice(inner, INNER, "inner")
    solver = _check_choice(solver, SOLVERS, "solver")
    alpha_arr = _check_alphas(alphas)
    resp = (
        load_responses(responses, key=key, axes=axes, images=order)
        if isinstance(responses, (str, os.PathLike))
        else as_responses(responses, axes=axes, images=order)
    )
    sets = collect_features(features, layers=layers)
    rows_of, images = _match(sets, resp)
    Y, reps, labels = resp.flat()
    n_flat = len(labels)
    Y, reps, labels, dropped, keep = clean_targets(Y, reps, labels, nan=nan, images=resp.images)
    rho = _ceiling_of(ceiling, reps, n_flat, keep, ceiling_splits, seed)
    fold_of = make_folds(Y.shape[0], folds, groups=_groups(groups, resp), seed=seed)
    _check_folds(fold_of, int(inner_folds) if method == "banded" or inner == "kfold" else None)
    constant = _constant_targets(Y, labels)
    opts: dict[str, Any] = dict(
        alphas=alpha_arr, inner=inner, inner_folds=int(inner_folds), n_components=int(n_components)
    )
    opts.update(n_iter=int(n_iter), seed=seed, solver=solver, block_size=block_size)
    opts["device"] = resolve_device(device) or "cpu"  # a bad device is an error before any work
    fits = _fit_all(method, sets, rows_of, Y, fold_of, constant, opts)
    result = _tables(fits, Y, labels, fold_of, rho, alpha_arr)
    result.images, result.dropped = images, dropped
    result.constant = [labels[t] for t in np.flatnonzero(constant)]
    if return_predictions:
        result.predictions = {f["label"]: f["pred"] for f in fits}
    result.info.update(_run_info(method, opts, alpha_arr, fold_of, Y.shape[0], len(labels), fits, resp))
    if method == "ridge":
        _warn_grid_ends(result.targets, alpha_arr)
    return result


#: :func:`encode` warns when the chosen ridge penalty is at an end of the grid for at least this share of fits
GRID_END_SHARE = 0.1


def _warn_grid_ends(targets: pd.DataFrame, alphas: np.ndarray) -> None:
    """One warning, with the counts, when many targets' chosen alpha (median over folds) is the grid's smallest or
    largest: the best penalty may lie outside the grid, which ``--alphas`` (``alphas=``) widens."""
    if len(np.unique(alphas)) < 2:
        return
    a = targets["alpha"].to_numpy(dtype=np.float64)
    a = a[np.isfinite(a)]
    lo, hi = float(alphas.min()), float(alphas.max())
    n_lo, n_hi = int(np.sum(a == lo)), int(np.sum(a == hi))
    if not len(a) or (n_lo + n_hi) < GRID_END_SHARE * len(a):
        return
    new_lo, new_hi = (lo / 1e3 if n_lo else lo), (hi * 1e3 if n_hi else hi)
    decades = np.arange(np.floor(np.log10(new_lo)), np.ceil(np.log10(new_hi)) + 1)
    wider = ",".join(f"{10.0**d:g}" for d in decades)
    warnings.warn(
        f"the chosen ridge penalty is at an end of the alpha grid for {n_lo + n_hi} of {len(a)} (layer, target) "
        f"fits ({n_lo} at the smallest, {lo:g}; {n_hi} at the largest, {hi:g}; median over folds, the alpha column "
        "of targets.csv; a target without signal picks the largest): the best penalty may lie outside the grid; "
        "widen it with --alphas (alphas=), "
        f"e.g. --alphas {wider}",
        UserWarning,
        stacklevel=3,
    )


def _run_info(method, opts, alphas, fold_of, n_images, n_targets, fits, resp) -> dict[str, Any]:
    """``EncodingResult.info``: the options and sizes of the run."""
    dev = opts["device"]
    return {
        **{k: v for k, v in opts.items() if k in ("inner", "inner_folds", "seed", "solver")},
        "method": method,
        "alphas": alphas.tolist(),
        "n_folds": int(fold_of.max()) + 1,
        "n_images": int(n_images),
        "n_targets": n_targets,
        "solvers": {f["label"]: f["solver"] for f in fits},
        "responses": str(resp.source) if resp.source else None,
        "n_components": opts["n_components"] if method == "pls" else None,
        "device": dev if isinstance(dev, str) else str(dev),
    }


def _match(sets: list[FeatureSet], resp: Responses) -> tuple[list[np.ndarray], list[str] | None]:
    """Feature rows of every response row, for every set; and the manifest path of every response row."""
    ref = next((s for s in sets if s.paths is not None), None)
    paths = ref.paths if ref is not None else None
    n = len(paths) if paths is not None else sets[0].n
    where = f"responses in {resp.source.name!r}" if resp.source else "responses"
    idx = match_images(resp.images, paths, n_rows=resp.n_images, n_features=n, where=where)
    rows = [idx if s.order is None else s.order[idx] for s in sets]
    return rows, None if paths is None else [paths[i] for i in idx]


def _groups(groups: Any, resp: Responses) -> Any:
    if groups is None:
        return None
    g = np.asarray(groups)
    if g.shape != (resp.n_images,):
        raise VisrepsError(f"groups: one label per response row ({resp.n_images}) is needed, got {len(g)}")
    return g


def _check_folds(fold_of: np.ndarray, inner_folds: int | None = None) -> None:
    """Every outer fold has images, every training set 3 or more (and at least ``inner_folds``, when inner folds
    split it: banded ridge, ``inner="kfold"``)."""
    sizes = np.bincount(fold_of)
    n = len(fold_of)
    if (sizes == 0).any():
        raise VisrepsError("a fold has no images; use fewer folds")
    if (n - sizes).min() < 3:
        raise VisrepsError(f"a training set would have {(n - sizes).min()} images; use more images or fewer folds")
    if inner_folds is not None and (n - sizes).min() < inner_folds:
        raise VisrepsError(
            f"inner_folds={inner_folds} (--inner-folds) is more than the {(n - sizes).min()} training images of an "
            "outer fold; lower --inner-folds, or use fewer --folds"
        )
    if sizes.min() < 3:
        warnings.warn(
            f"a test fold has only {sizes.min()} image(s): its Pearson r is ±1 or NaN; use fewer folds, or read "
            "r_pooled (all out-of-fold predictions at once)",
            stacklevel=3,
        )


def _constant_targets(Y: np.ndarray, labels: list[str]) -> np.ndarray:
    const = np.ptp(Y, axis=0) == 0
    if const.any():
        names = [labels[t] for t in np.flatnonzero(const)]
        warnings.warn(
            f"{len(names)} of {len(labels)} targets are constant across images (e.g. {names[:3]}): scores NaN",
            stacklevel=3,
        )
    return const


def _fit_all(
    method: str,
    sets: list[FeatureSet],
    rows_of: list[np.ndarray],
    Y: np.ndarray,
    fold_of: np.ndarray,
    constant: np.ndarray,
    opts: dict[str, Any],
) -> list[dict[str, Any]]:
    """Out-of-fold predictions and per-fold choices of every layer (or of the one banded model)."""
    live = np.flatnonzero(~constant)
    Yl = Y[:, live] if len(live) < Y.shape[1] else Y
    n_folds = int(fold_of.max()) + 1
    if method == "banded":
        if len(sets) < 2:
            raise VisrepsError("method='banded' needs at least 2 layers (the bands); give more layers or folders")
        designs = [
            layer_design(
                s.features, rows, solver="kernel", block_size=opts["block_size"], name=s.where, device=opts["device"]
            )
            for s, rows in zip(sets, rows_of)
        ]
        return [_banded(sets, designs, Yl, live, Y.shape[1], fold_of, n_folds, opts)]
    fits = []
    for s, rows in zip(sets, rows_of):
        d = layer_design(
            s.features, rows, solver=opts["solver"], block_size=opts["block_size"], name=s.where, device=opts["device"]
        )
        pred, chosen = _cross_validate(lambda tr, te, d=d: _one_fold(method, d, tr, te, Yl, opts), fold_of, Yl.shape)
        fit = {"label": s.label, "model": s.model, "weights": s.weights, "layer": s.layer, "solver": d.kind}
        fit.update(_full(pred, chosen, live, Y.shape[1], n_folds))
        fits.append(fit)
        del d  # the next layer's Gram matrix replaces this one
    return fits


def _one_fold(method: str, d, tr, te, Y, opts) -> tuple[np.ndarray, np.ndarray | None]:
    if method == "ridge":
        return ridge_fold(d, tr, te, Y, opts["alphas"], opts["inner"], opts["inner_folds"])
    return pls_fold(d, tr, te, Y, opts["n_components"]), None


def _cross_validate(
    fit: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, Any]], fold_of: np.ndarray, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray | None]:
    n_folds = int(fold_of.max()) + 1
    pred = np.empty(shape)
    chosen = None
    for f in range(n_folds):
        te = np.flatnonzero(fold_of == f)
        tr = np.flatnonzero(fold_of != f)
        p, c = fit(tr, te)
        pred[te] = p
        if c is not None:
            if chosen is None:
                chosen = np.empty((n_folds, shape[1]), dtype=np.intp)
            chosen[f] = c
    return pred, chosen


def _full(pred: np.ndarray, chosen: np.ndarray | None, live: np.ndarray, n_t: int, n_folds: int) -> dict[str, Any]:
    """Predictions and choices spread back to all targets (constant targets: NaN / -1)."""
    if len(live) == n_t:
        return {"pred": pred, "alpha_idx": chosen}
    full = np.full((pred.shape[0], n_t), np.nan)
    full[:, live] = pred
    ch = None
    if chosen is not None:
        ch = np.full((n_folds, n_t), -1, dtype=np.intp)
        ch[:, live] = chosen
    return {"pred": full, "alpha_idx": ch}


def _banded(
    sets: list[FeatureSet],
    designs: list[Any],
    Y: np.ndarray,
    live: np.ndarray,
    n_t: int,
    fold_of: np.ndarray,
    n_folds: int,
    opts: dict[str, Any],
) -> dict[str, Any]:
    bands = [s.label for s in sets]
    pred = np.empty(Y.shape)
    weights = np.full((n_folds, len(bands), n_t), np.nan)
    alpha_eff = np.full((n_folds, n_t), np.nan)
    for f in range(n_folds):
        te = np.flatnonzero(fold_of == f)
        tr = np.flatnonzero(fold_of != f)
        p, w, a = banded_fold(designs, tr, te, Y, opts["alphas"], opts["inner_folds"], opts["n_iter"], opts["seed"])
        pred[te] = p
        weights[f][:, live] = w
        alpha_eff[f, live] = a
    out: dict[str, Any] = {"label": "banded(" + " + ".join(bands) + ")", "model": "banded", "layer": " + ".join(bands)}
    out.update(_full(pred, None, live, n_t, n_folds))
    out.update(solver="kernel", alpha_values=alpha_eff, band_weights=weights, bands=bands)
    return out


def _nan_stats(v: np.ndarray) -> tuple[int, float, float, float]:
    """Count, mean, median and SEM (``SD / √n``, ``ddof=1``) of the finite values."""
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return 0, np.nan, np.nan, np.nan
    sem = float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else np.nan
    return len(v), float(np.mean(v)), float(np.median(v)), sem


def _tables(
    fits: list[dict[str, Any]],
    Y: np.ndarray,
    labels: list[str],
    fold_of: np.ndarray,
    rho: np.ndarray | None,
    alphas: np.ndarray,
) -> EncodingResult:
    import pandas as pd

    n_folds = int(fold_of.max()) + 1
    n_t = len(labels)
    fold_rows, target_rows, layer_rows, band_rows = [], [], [], []
    depth: dict[str, int] = {}
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # means of all-NaN columns (constant targets)
        root = None if rho is None else np.where(rho > 0, np.sqrt(np.where(rho > 0, rho, 1.0)), np.nan)
        for fit in fits:
            ident = {
                "label": fit["label"],
                "model": fit["model"],
                "weights": fit.get("weights", ""),
                "layer": fit["layer"],
            }
            r_f = np.empty((n_folds, n_t))
            r2_f = np.empty((n_folds, n_t))
            for f in range(n_folds):
                te = fold_of == f
                r_f[f], r2_f[f] = fold_scores(Y[te], fit["pred"][te])
            a_f = fit.get("alpha_values")
            if a_f is None and fit.get("alpha_idx") is not None:
                idx = fit["alpha_idx"]
                a_f = np.where(idx >= 0, alphas[np.maximum(idx, 0)], np.nan)
            fold_rows.append(
                pd.DataFrame(
                    {
                        **{k: v for k, v in ident.items()},
                        "target": np.tile(labels, n_folds),
                        "fold": np.repeat(np.arange(n_folds), n_t),
                        "n_test": np.repeat(np.bincount(fold_of, minlength=n_folds), n_t),
                        "r": r_f.ravel(),
                        "r2": r2_f.ravel(),
                        "alpha": np.nan if a_f is None else a_f.ravel(),
                    }
                )
            )
            cols: dict[str, Any] = {**ident, "target": labels}
            cols["r"], cols["r2"] = np.nanmean(r_f, axis=0), np.nanmean(r2_f, axis=0)
            cols["r_sd"], cols["r2_sd"] = np.nanstd(r_f, axis=0, ddof=1), np.nanstd(r2_f, axis=0, ddof=1)
            cols["r_pooled"], cols["r2_pooled"] = fold_scores(Y, fit["pred"])
            cols["alpha"] = np.nan if a_f is None else np.nanmedian(a_f, axis=0)
            if rho is not None and root is not None:
                cols["ceiling"] = rho
                cols["r_ceiled"] = cols["r"] / root
                cols["r2_ceiled"] = np.where(rho > 0, cols["r2"] / np.where(rho > 0, rho, 1.0), np.nan)
            if fit.get("band_weights") is not None:
                mean_w = np.nanmean(fit["band_weights"], axis=0)
                for b, band in enumerate(fit["bands"]):
                    cols[f"weight:{band}"] = mean_w[b]
                    band_rows.append(pd.DataFrame({"target": labels, "band": band, "weight": mean_w[b]}))
            target_rows.append(pd.DataFrame(cols))
            depth[fit["model"]] = depth.get(fit["model"], -1) + 1
            row: dict[str, Any] = {**ident, "depth": depth[fit["model"]], "solver": fit["solver"]}
            for name in ("r", "r2", "r_pooled", "r2_pooled", "r_ceiled", "r2_ceiled"):
                if name in cols:
                    n, m, med, sem = _nan_stats(np.asarray(cols[name], dtype=np.float64))
                    row.update({f"{name}_mean": m, f"{name}_median": med, f"{name}_sem": sem})
                    if name == "r":
                        row["n_targets"] = n
            fold_means = np.nanmean(r_f, axis=1)
            row["r_fold_sd"] = float(np.std(fold_means, ddof=1)) if n_folds > 1 else np.nan
            if root is not None:
                _, row["ceiling_r"], _, row["ceiling_r_sem"] = _nan_stats(root)
            layer_rows.append(row)
    bands = pd.concat(band_rows, ignore_index=True) if band_rows else None
    return EncodingResult(
        targets=pd.concat(target_rows, ignore_index=True),
        folds=pd.concat(fold_rows, ignore_index=True),
        layers=pd.DataFrame(layer_rows),
        fold_of=fold_of,
        images=None,
        target_labels=list(labels),
        ceiling=rho,
        band_weights=bands,
    )
