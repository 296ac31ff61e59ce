"""The result tables of :func:`visreps.analysis.encode`: per fold, per target and per layer.

Each fit (one layer, or the one banded model) brings its out-of-fold predictions and the penalty chosen in each
fold; :func:`tables` scores every held-out fold (:func:`~visreps.analysis._ridge.fold_scores`), averages over folds
per target, divides by the noise ceiling where one is given, and summarises over targets per layer.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from ._ridge import fold_scores

if TYPE_CHECKING:
    import pandas as pd

#: :func:`visreps.analysis.encode` warns when the chosen ridge penalty is at an end of the grid for at least this
#: share of fits
GRID_END_SHARE = 0.1
#: the scores summarised over targets in the layers table (those present)
LAYER_SCORES = ("r", "r2", "r_pooled", "r2_pooled", "r_ceiled", "r2_ceiled")


def nan_stats(v: np.ndarray) -> tuple[int, float, float, float]:
    """Count, mean, median and SEM (``SD / √n``, ``ddof=1``) of the finite values."""
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return 0, np.nan, np.nan, np.nan
    sem = float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else np.nan
    return len(v), float(np.mean(v)), float(np.median(v)), sem


def tables(
    fits: list[dict[str, Any]],
    Y: np.ndarray,
    labels: list[str],
    fold_of: np.ndarray,
    rho: np.ndarray | None,
    alphas: np.ndarray,
) -> dict[str, Any]:
    """``targets``, ``folds`` and ``layers`` tables (and ``band_weights``, banded only: else ``None``) of the fits.

    ``ρ`` (``rho``) is the ceiling per target; ``r_ceiled = r / √ρ`` and ``r2_ceiled = R² / ρ``, NaN where ``ρ ≤ 0``.
    """
    import pandas as pd

    fold_rows, target_rows, layer_rows, band_rows = [], [], [], []
    depth: dict[str, int] = {}
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # means of all-NaN columns (constant targets)
        root = None if rho is None else np.where(rho > 0, np.sqrt(np.where(rho > 0, rho, 1.0)), np.nan)
        for fit in fits:
            ident = {k: fit.get(k, "") for k in ("label", "model", "weights", "layer")}
            r_f, r2_f = _per_fold(fit["pred"], Y, fold_of)
            a_f = _alpha_values(fit, alphas)
            fold_rows.append(_fold_table(ident, labels, fold_of, r_f, r2_f, a_f))
            cols = _target_columns(ident, labels, fit, Y, r_f, r2_f, a_f, rho, root)
            for band, weight in _band_weights(fit):
                cols[f"weight:{band}"] = weight
                band_rows.append(pd.DataFrame({"target": labels, "band": band, "weight": weight}))
            target_rows.append(pd.DataFrame(cols))
            depth[fit["model"]] = depth.get(fit["model"], -1) + 1
            layer_rows.append(_layer_row(ident, depth[fit["model"]], fit["solver"], cols, r_f, root))
    return {
        "targets": pd.concat(target_rows, ignore_index=True),
        "folds": pd.concat(fold_rows, ignore_index=True),
        "layers": pd.DataFrame(layer_rows),
        "band_weights": pd.concat(band_rows, ignore_index=True) if band_rows else None,
    }


def _per_fold(pred: np.ndarray, Y: np.ndarray, fold_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson r and R² of every (fold, target) on the fold's held-out images."""
    n_folds = int(fold_of.max()) + 1
    r_f = np.empty((n_folds, Y.shape[1]))
    r2_f = np.empty((n_folds, Y.shape[1]))
    for f in range(n_folds):
        te = fold_of == f
        r_f[f], r2_f[f] = fold_scores(Y[te], pred[te])
    return r_f, r2_f


def _alpha_values(fit: dict[str, Any], alphas: np.ndarray) -> np.ndarray | None:
    """The penalty of every (fold, target): banded's effective alphas, ridge's chosen ones (NaN for constant
    targets), ``None`` for PLS."""
    a_f = fit.get("alpha_values")
    if a_f is None and fit.get("alpha_idx") is not None:
        idx = fit["alpha_idx"]
        a_f = np.where(idx >= 0, alphas[np.maximum(idx, 0)], np.nan)
    return a_f


def _fold_table(ident: dict[str, Any], labels: list[str], fold_of: np.ndarray, r_f, r2_f, a_f) -> pd.DataFrame:
    import pandas as pd

    n_folds, n_t = r_f.shape
    return pd.DataFrame(
        {
            **ident,
            "target": np.tile(labels, n_folds),
            "fold": np.repeat(np.arange(n_folds), n_t),
            "n_test": np.repeat(np.bincount(fold_of, minlength=n_folds), n_t),
            "r": r_f.ravel(),
            "r2": r2_f.ravel(),
            "alpha": np.nan if a_f is None else a_f.ravel(),
        }
    )


def _target_columns(ident, labels, fit, Y, r_f, r2_f, a_f, rho, root) -> dict[str, Any]:
    """One layer's rows of the targets table: fold means and SDs, pooled scores, the alpha, the ceiled scores."""
    cols: dict[str, Any] = {**ident, "target": labels}
    cols["r"], cols["r2"] = np.nanmean(r_f, axis=0), np.nanmean(r2_f, axis=0)
    cols["r_sd"], cols["r2_sd"] = np.nanstd(r_f, axis=0, ddof=1), np.nanstd(r2_f, axis=0, ddof=1)
    cols["r_pooled"], cols["r2_pooled"] = fold_scores(Y, fit["pred"])
    cols["alpha"] = np.nan if a_f is None else np.nanmedian(a_f, axis=0)
    if rho is not None and root is not None:
        cols["ceiling"] = rho
        cols["r_ceiled"] = cols["r"] / root
        cols["r2_ceiled"] = np.where(rho > 0, cols["r2"] / np.where(rho > 0, rho, 1.0), np.nan)
    return cols


def _band_weights(fit: dict[str, Any]) -> list[tuple[str, np.ndarray]]:
    """Banded: each band's weight per target (mean over folds); else nothing."""
    if fit.get("band_weights") is None:
        return []
    mean_w = np.nanmean(fit["band_weights"], axis=0)
    return [(band, mean_w[b]) for b, band in enumerate(fit["bands"])]


def _layer_row(ident, depth: int, solver: str, cols: dict[str, Any], r_f: np.ndarray, root) -> dict[str, Any]:
    """One row of the layers table: count, mean, median and SEM over targets of each score, and the fold SD."""
    row: dict[str, Any] = {**ident, "depth": depth, "solver": solver}
    for name in LAYER_SCORES:
        if name in cols:
            n, m, med, sem = nan_stats(np.asarray(cols[name], dtype=np.float64))
            row.update({f"{name}_mean": m, f"{name}_median": med, f"{name}_sem": sem})
            if name == "r":
                row["n_targets"] = n
    fold_means = np.nanmean(r_f, axis=1)
    row["r_fold_sd"] = float(np.std(fold_means, ddof=1)) if len(r_f) > 1 else np.nan
    if root is not None:
        _, row["ceiling_r"], _, row["ceiling_r_sem"] = nan_stats(root)
    return row


def warn_grid_ends(targets: pd.DataFrame, alphas: np.ndarray, *, stacklevel: int = 3) -> None:
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
        stacklevel=stacklevel,
    )
