"""Reweighted RSA: feature-reweighted RSA (Kaniuth & Hebart 2022) and weighted RSA over several RDMs.

**Feature-reweighted RSA** (:func:`feature_reweighted_rsa`, the algorithm of the ``frrsa`` package,
non-negative variant). Every channel ``c`` of a layer gives its own representational matrix over
image pairs: ``measure="sqeuclidean"`` (default, for dissimilarity references) ``d_c(i, j) = Σ_s
(x_ics − x_jcs)²``, ``measure="dot"`` (for similarity references) ``d_c(i, j) = Σ_s x_ics x_jcs``,
with ``s`` the positions of an N-D layer (one per channel for a flat layer: the ``frrsa`` case).
The reference's pairs are predicted as ``ŷ = Σ_c β_c z_c + ȳ`` with ``z_c`` the channel's pair
values standardised over the training pairs (mean 0, SD 1, ``ddof=0``; as ``StandardScaler``),
``ȳ`` the training pairs' mean and non-negative ``β`` minimising ``‖y − ȳ − Zβ‖² + α‖β‖²``
(solved exactly as a non-negative least-squares problem of size channels × channels, from ``ZᵀZ + αI``).

Cross-validation is over **images**: ``repeats × outer_folds`` random splits
(``sklearn.model_selection.ShuffleSplit(test_size=1/outer_folds, random_state=seed)``, as frrsa's
``random`` splitter) fit on the pairs among the training images and score the prediction of the pairs
among the held-out images (Pearson r, or Spearman). ``α`` is chosen per split from
``hyperparams`` by the same scheme inside the training images (``inner_repeats × inner_folds``
random splits, largest mean score; an undefined score, from a constant prediction, never wins).
The reported ``r`` is ``tanh(mean(arctanh(r_split)))``.
With ``preprocess=True`` each image's pattern is first z-scored across its features (``dot``) or
scaled to unit L2 norm (``sqeuclidean``), as frrsa's ``preprocess``. frrsa lowers a fold number that
leaves a test set of two images or fewer (``n / k ≤ 2``) until it does not; so does visreps.

**Weighted RSA** (:func:`weighted_rsa`, rsatoolbox's ``ModelWeighted`` fitted with
``fit_regress_nn``): several model RDMs ``m_k`` (layers, models) are combined as ``Σ_k θ_k m_k``
with ``θ ≥ 0`` fitted by non-negative least squares to the pooled reference (``method="corr"``:
the subjects' z-scored vectors averaged, models centred; ``"cosine"``: vectors scaled to unit
root-mean-square, averaged), ``θ`` scaled to unit norm. The fit is scored by the mean over subjects
of the Pearson correlation (``corr``) or cosine similarity (``cosine``) of the weighted RDM with
each subject's RDM, in-sample and cross-validated over images (fit on the pairs among the training
images, scored on the pairs among the held-out images).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import VisrepsError
from ..options import CORRELATIONS as SCORES
from ..options import FRRSA_MEASURES as MEASURES
from ._params import LayerSelection, is_whole

if TYPE_CHECKING:
    import pandas as pd


WEIGHTED_METHODS = ("corr", "cosine")
#: frrsa's default candidates for the non-negative fit
DEFAULT_HYPERPARAMS = (1e-1, 1e0, 1e1, 5e1, 1e2, 5e2, 1e3, 4e3, 7e3, 1e4, 3e4, 5e4, 7e4, 1e5)
#: the pair × channel matrix of all images may take at most this many bytes
_PAIR_BYTES = 2 * 2**30


@dataclass
class FRRSAResult:
    """What :func:`feature_reweighted_rsa` returns.

    Attributes:
        table: one row per (layer, reference RDM): ``label``, ``model``, ``layer``, ``reference``, ``r``
            (reweighted, cross-validated), ``r_classical`` (the unweighted RDM of the same measure, all
            pairs), ``n_channels``, ``n_splits``, ``alpha`` (median of the chosen α).
        splits: one row per (layer, reference, split): ``split``, ``r``, ``alpha``.
        weights: label → ``β`` per channel ``(references, channels)`` from a fit on all images with each
            reference's mean chosen α (standardised units).
        info: the options.
    """

    table: pd.DataFrame
    splits: pd.DataFrame
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- pieces


def pair_features(X: np.ndarray, measure: str) -> np.ndarray:
    """Per-channel values of every pair ``i < j`` (``pdist`` order): ``(n(n−1)/2, channels)``.

    ``X``: ``(n, channels, positions)``.
    """
    n = X.shape[0]
    iu, ju = np.triu_indices(n, 1)
    if measure == "dot":
        return np.einsum("pcs,pcs->pc", X[iu], X[ju])
    out = np.empty((len(iu), X.shape[1]))
    for c0 in range(0, len(iu), 4096):
        d = X[iu[c0 : c0 + 4096]] - X[ju[c0 : c0 + 4096]]
        out[c0 : c0 + 4096] = np.einsum("pcs,pcs->pc", d, d)
    return out


def _pairs_within(n: int, idx: np.ndarray) -> np.ndarray:
    """Condensed indices of the pairs among ``idx`` (in the order of ``combinations(idx, 2)``)."""
    a, b = np.triu_indices(len(idx), 1)
    u, v = idx[a], idx[b]
    lo, hi = np.minimum(u, v), np.maximum(u, v)
    return n * lo - lo * (lo + 1) // 2 + (hi - lo - 1)


def _standardise(Z_tr: np.ndarray, Z_te: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = Z_tr.mean(axis=0)
    sd = Z_tr.std(axis=0)
    sd[sd == 0] = 1.0  # StandardScaler leaves constant columns at scale 1
    return (Z_tr - mu) / sd, (Z_te - mu) / sd


def nonnegative_ridge(Z: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """``argmin_{β ≥ 0} ‖y − Zβ‖² + α‖β‖²`` (exact; see :func:`nonnegative_ridge_gram`)."""
    return nonnegative_ridge_gram(Z.T @ Z, Z.T @ y, alpha)


def nonnegative_ridge_gram(G: np.ndarray, b: np.ndarray, alpha: float) -> np.ndarray:
    """Non-negative ridge from ``G = ZᵀZ`` and ``b = Zᵀy``: with ``G + αI = L Lᵀ`` (Cholesky),
    ``‖y − Zβ‖² + α‖β‖² = ‖Lᵀβ − L⁻¹b‖² + const``, so ``β`` is the non-negative least-squares solution
    of the ``p × p`` system ``Lᵀβ ≈ L⁻¹b`` (``scipy.optimize.nnls``), whatever the number of pairs."""
    from scipy.linalg import cholesky, solve_triangular
    from scipy.optimize import nnls

    p = G.shape[0]
    A = G + (alpha + 1e-12 * max(float(np.trace(G)) / max(p, 1), 1.0)) * np.eye(p)  # jitter: α = 0 stays solvable
    L = cholesky(A, lower=True, check_finite=False)
    rhs = solve_triangular(L, b, lower=True, check_finite=False)
    return nnls(np.ascontiguousarray(L.T), rhs, maxiter=50 * max(p, 10))[0]


def _score(y: np.ndarray, pred: np.ndarray, score: str) -> float:
    """Pearson r (or Spearman ρ: Pearson r of the ranks, ties averaged); NaN when either is constant."""
    if np.ptp(pred) == 0 or np.ptp(y) == 0:
        return float("nan")
    if score == "spearman":
        from scipy.stats import rankdata

        y, pred = rankdata(y), rankdata(pred)
    yc, pc = y - y.mean(), pred - pred.mean()
    return float(np.clip(yc @ pc / np.sqrt((yc @ yc) * (pc @ pc)), -1.0, 1.0))


def _fit_predict(P, y_all, n, tr, te, alphas, score, clip) -> np.ndarray:
    """Scores ``(alphas,)`` of fits on the pairs among ``tr`` predicting the pairs among ``te``."""
    ptr, pte = _pairs_within(n, tr), _pairs_within(n, te)
    Z_tr, Z_te = _standardise(P[ptr], P[pte])
    y_tr, y_te = y_all[ptr], y_all[pte]
    mu = y_tr.mean()
    G, b = Z_tr.T @ Z_tr, Z_tr.T @ (y_tr - mu)
    out = np.empty(len(alphas))
    for k, a in enumerate(alphas):
        pred = Z_te @ nonnegative_ridge_gram(G, b, a) + mu
        if clip is not None:
            pred = np.clip(pred, clip[0], clip[1])
        out[k] = _score(y_te, pred, score)
    return out


def _adjust_folds(n: int, k: int) -> int:
    while k > 1 and not n / k > 2:
        k -= 1
    return k


def _splits(n: int, k: int, reps: int, seed: int | None):
    from sklearn.model_selection import ShuffleSplit

    return list(
        ShuffleSplit(n_splits=k * reps, test_size=1 / k, train_size=1 - 1 / k, random_state=seed).split(np.arange(n))
    )


def frrsa_target(
    P: np.ndarray,
    y_all: np.ndarray,
    n: int,
    *,
    hyperparams: np.ndarray,
    outer: tuple[int, int] = (5, 10),
    inner: tuple[int, int] = (5, 5),
    score: str = "pearson",
    clip: tuple[float | None, float | None] | None = None,
    seed: int | None = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Cross-validated scores and chosen α of every outer split, for one reference (pair vector ``y_all``)."""
    scores, chosen = [], []
    for tr, te in _splits(n, _adjust_folds(n, outer[0]), outer[1], seed):
        k_in = _adjust_folds(len(tr), inner[0])
        inner_scores = np.array(
            [
                _fit_predict(P, y_all, n, tr[a], tr[b], hyperparams, score, clip)
                for a, b in _splits(len(tr), k_in, inner[1], seed)
            ]
        )
        mean = np.nan_to_num(inner_scores.mean(axis=0), nan=-np.inf)  # frrsa's argmax would pick a NaN
        best = hyperparams[int(np.argmax(mean))]
        chosen.append(best)
        scores.append(_fit_predict(P, y_all, n, tr, te, np.array([best]), score, clip)[0])
    return np.array(scores), np.array(chosen)


def _channels(features: Any, name: str) -> np.ndarray:
    X = np.asarray(features, dtype=np.float64)
    if X.ndim < 2:
        raise VisrepsError(f"{name}: features must be (images, channels, ...), got shape {X.shape}")
    if not np.isfinite(X).all():
        raise VisrepsError(f"{name} contains NaN or infinite values; check the extraction")
    return X.reshape(X.shape[0], X.shape[1], -1)


def _preprocess(X: np.ndarray, measure: str) -> np.ndarray:
    flat = X.reshape(len(X), -1)
    if measure == "dot":
        sd = flat.std(axis=1, keepdims=True)
        flat = (flat - flat.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0)
    else:
        norm = np.linalg.norm(flat, axis=1, keepdims=True)
        flat = flat / np.where(norm > 0, norm, 1.0)
    return flat.reshape(X.shape)


# --------------------------------------------------------------------------- feature-reweighted RSA


def feature_reweighted_rsa(
    features: Any,
    reference: Any,
    *,
    layers: LayerSelection = None,
    measure: str = "sqeuclidean",
    preprocess: bool = True,
    outer_folds: int = 5,
    repeats: int = 10,
    inner_folds: int = 5,
    inner_repeats: int = 5,
    hyperparams: Any = DEFAULT_HYPERPARAMS,
    score: str = "pearson",
    clip: tuple[float | None, float | None] | None = None,
    seed: int = 0,
    key: str | None = None,
    order: Sequence[str] | str | os.PathLike | None = None,
) -> FRRSAResult:
    """Feature-reweighted RSA of every layer against reference RDM(s) (see the module documentation).

    Args:
        features: output folders, ``Features``, arrays, or a list/dict of them; a layer ``(n, channels, ...)``
            gives one matrix per channel (summed over positions).
        reference: an RDM or a stack ``(subjects, n, n)`` (array or file, as ``compare --reference``); each
            RDM is a target of its own.
        measure: ``sqeuclidean`` (default; for dissimilarities) or ``dot`` (for similarity matrices).
        preprocess: z-score (``dot``) or L2-normalise (``sqeuclidean``) each image's pattern first.
        outer_folds, repeats, inner_folds, inner_repeats: the random splits (frrsa: 5 × 10 outer, 5 × 5 inner).
        hyperparams: the α candidates (frrsa's non-negative defaults).
        score: ``pearson`` or ``spearman``.
        clip: ``(low, high)`` bounds for the predictions (frrsa clips, e.g., distances at 0); ``None``: none.
        seed: ``random_state`` of the splits.
        order: the image of every reference row (a list or an order file); default: manifest order.

    Raises:
        VisrepsError: fewer than 9 images (frrsa's minimum), bad options, NaN, image sets that do not match,
            a pair matrix over 2 GB (pool the layer to fewer channels).
    """
    import pandas as pd

    from .compare import collect_features

    _check_frrsa(measure, score, outer_folds, repeats, inner_folds, inner_repeats)
    alphas = np.sort(np.atleast_1d(np.asarray(hyperparams, dtype=np.float64)))
    if alphas.size == 0 or (alphas < 0).any() or not np.isfinite(alphas).all():
        raise VisrepsError(f"hyperparams must be non-negative numbers, got {hyperparams!r}")
    stack, ref_names = _reference_stack(reference, key)
    n = stack.shape[-1]
    if n < 9:
        raise VisrepsError(f"feature-reweighted RSA needs at least 9 images (as frrsa), the reference has {n}")
    sets = collect_features(features, layers=layers)
    rows_of = reference_rows(sets, n, order)
    iu = np.triu_indices(n, 1)
    Y = stack[:, iu[0], iu[1]]
    opts = {"hyperparams": alphas, "outer": (outer_folds, repeats), "inner": (inner_folds, inner_repeats)}
    opts.update(score=score, clip=clip, seed=seed)
    rows, split_rows, weights = [], [], {}
    for s, rows_s in zip(sets, rows_of):
        X = _channels(np.asarray(s.features)[rows_s], s.label)
        if len(iu[0]) * X.shape[1] * 8 > _PAIR_BYTES:
            raise VisrepsError(
                f"{s.label}: {X.shape[1]} channels × {len(iu[0])} image pairs would take more than 2 GB; pool "
                "the layer (extract with --pool avg) or use fewer images"
            )
        P = pair_features(_preprocess(X, measure) if preprocess else X, measure)
        weights[s.label] = np.zeros((len(Y), X.shape[1]))
        for t, y in enumerate(Y):
            ident = {"label": s.label, "model": s.model, "layer": s.layer, "reference": ref_names[t]}
            row, splits, weights[s.label][t] = _frrsa_one(P, y, n, opts)
            rows.append({**ident, **row})
            split_rows.append(pd.DataFrame({**ident, **splits}))
    info = {"measure": measure, "preprocess": preprocess, "outer": [outer_folds, repeats], "score": score}
    info.update(inner=[inner_folds, inner_repeats], hyperparams=alphas.tolist(), seed=seed, n_images=n)
    info["clip"] = None if clip is None else list(clip)
    out = FRRSAResult(pd.DataFrame(rows), pd.concat(split_rows, ignore_index=True), weights, info)
    out.table.attrs.update(info)
    return out


def _reference_stack(reference: Any, key: str | None) -> tuple[np.ndarray, list[str]]:
    """The reference RDM(s) as ``(subjects, n, n)`` and their names (files: as ``compare --reference``)."""
    from .compare import as_rdm, load_reference_rdms

    if isinstance(reference, (str, os.PathLike)):
        stack, names = load_reference_rdms(reference, key=key)
        return stack, list(names)
    a = np.asarray(reference, dtype=np.float64)
    stack = np.stack([as_rdm(r, name=f"reference RDM {i}") for i, r in enumerate(a[None] if a.ndim == 2 else a)])
    return stack, [str(i) for i in range(len(stack))]


def reference_rows(sets: list[Any], n: int, order: Any) -> list[np.ndarray]:
    """The feature row of every reference row, for every set (``order``: the reference's images)."""
    from .responses import match_images, read_order

    first = next((s for s in sets if s.paths is not None), sets[0])
    names = None if order is None else read_order(order, n, where="the reference")
    idx = match_images(names, first.paths, n_rows=n, n_features=first.n, where="the reference")
    return [idx if s.order is None or s is first else s.order[idx] for s in sets]


def _frrsa_one(P: np.ndarray, y: np.ndarray, n: int, opts: dict[str, Any]):
    """One layer and one reference: the table row, the per-split columns and the weights of a fit on all images."""
    sc, ch = frrsa_target(P, y, n, **opts)
    r = float(np.tanh(np.nanmean(np.arctanh(np.clip(sc, -1 + 1e-15, 1 - 1e-15)))))
    row = {"r": r, "r_classical": _score(y, P.sum(axis=1), opts["score"]), "n_channels": P.shape[1]}
    row.update(n_splits=len(sc), alpha=float(np.median(ch)))
    Z, _ = _standardise(P, P[:0])
    w = nonnegative_ridge(Z, y - y.mean(), float(np.mean(ch)))
    return row, {"split": np.arange(len(sc)), "r": sc, "alpha": ch}, w


def _check_frrsa(measure, score, *ints) -> None:
    if measure not in MEASURES:
        raise VisrepsError(f"measure must be one of {', '.join(MEASURES)}, got {measure!r}")
    if score not in SCORES:
        raise VisrepsError(f"score must be one of {', '.join(SCORES)}, got {score!r}")
    for v in ints:
        if not is_whole(v) or v < 1:
            raise VisrepsError(f"folds and repeats must be positive integers, got {v!r}")


# --------------------------------------------------------------------------- weighted RSA (rsatoolbox)


def _pooled(D: np.ndarray, method: str) -> np.ndarray:
    """rsatoolbox's ``pool_rdm``: the subjects' vectors made comparable and averaged."""
    if method == "cosine":
        D = D / np.sqrt(np.mean(D**2, axis=1, keepdims=True))
        return D.mean(axis=0)
    D = (D - D.mean(axis=1, keepdims=True)) / D.std(axis=1, keepdims=True)
    y = D.mean(axis=0)
    return y - y.min() + 0.01


def fit_weights(M: np.ndarray, D: np.ndarray, method: str = "corr") -> np.ndarray:
    """Non-negative weights of the model vectors ``M`` ``(k, pairs)`` for the reference vectors ``D``
    ``(subjects, pairs)``: rsatoolbox's ``fit_regress_nn`` (unit norm)."""
    from scipy.optimize import nnls

    A = M - M.mean(axis=1, keepdims=True) if method == "corr" else M
    theta = nnls(A.T, _pooled(D, method))[0]
    norm = np.sqrt(np.sum(theta**2))
    return theta / norm if norm > 0 else theta


def _evaluate(pred: np.ndarray, D: np.ndarray, method: str) -> float:
    """Mean over subjects of the Pearson r (``corr``) or cosine similarity (``cosine``) with ``pred``."""
    if method == "corr":
        p = pred - pred.mean()
        Dc = D - D.mean(axis=1, keepdims=True)
    else:
        p, Dc = pred, D
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.mean(Dc @ p / (np.linalg.norm(Dc, axis=1) * np.linalg.norm(p))))


def weighted_rsa(
    rdms: Mapping[str, Any],
    reference: Any,
    *,
    method: str = "corr",
    folds: int | Sequence[int] | np.ndarray | None = 5,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Weighted RSA: non-negative weights of several model RDMs fitted to the reference (see the module docs).

    Args:
        rdms: label → square RDM (e.g. of each layer, :func:`visreps.analysis.compute_rdm`), rows in the
            reference's order.
        reference: a square RDM or a stack ``(subjects, n, n)``.
        method: ``corr`` (default) or ``cosine`` (rsatoolbox's evaluation methods).
        folds: number of image folds (or a fold per image) for the cross-validated score; ``None``: none.
        seed: seed of the folds (:func:`visreps.analysis.make_folds`).

    Returns:
        ``(table, info)``: one row per RDM with its ``weight`` (unit-norm θ); ``info`` holds ``r_fit``
        (in-sample), ``r_cv`` (mean over folds), ``r_folds`` and ``fold_of``.
    """
    import pandas as pd

    from .encoding import make_folds

    if method not in WEIGHTED_METHODS:
        raise VisrepsError(f"method must be one of {', '.join(WEIGHTED_METHODS)}, got {method!r}")
    labels = list(rdms)
    if len(labels) < 2:
        raise VisrepsError("weighted RSA needs at least 2 model RDMs (layers or models) to weight")
    R = np.asarray(reference, dtype=np.float64)
    R = R[None] if R.ndim == 2 else R
    n = R.shape[-1]
    mats = [np.asarray(rdms[k], dtype=np.float64) for k in labels]
    bad = [k for k, m in zip(labels, mats) if m.shape != (n, n)]
    if bad:
        raise VisrepsError(f"the RDMs {bad} are not {n} × {n} like the reference")
    iu = np.triu_indices(n, 1)
    M = np.stack([m[iu] for m in mats])
    D = R[:, iu[0], iu[1]]
    theta = fit_weights(M, D, method)
    info: dict[str, Any] = {"method": method, "r_fit": _evaluate(theta @ M, D, method)}
    if folds is not None:
        fold_of = make_folds(n, folds, seed=seed)
        r_f = []
        for f in range(int(fold_of.max()) + 1):
            tr, te = np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)
            ptr, pte = _pairs_within(n, tr), _pairs_within(n, te)
            th = fit_weights(M[:, ptr], D[:, ptr], method)
            r_f.append(_evaluate(th @ M[:, pte], D[:, pte], method))
        info.update(r_cv=float(np.nanmean(r_f)), r_folds=r_f, fold_of=fold_of)
    table = pd.DataFrame({"label": labels, "weight": theta})
    table.attrs.update({k: v for k, v in info.items() if k != "fold_of"})
    return table, info
