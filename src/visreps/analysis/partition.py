"""Variance partitioning: the unique and shared explained variance of two to four feature sets.

For ``k`` feature sets (layers, models) and every non-empty subset ``S`` of them, a cross-validated
ridge encoding model is fitted on the sets of ``S`` side by side (Lescroart et al. 2015; Net2Brain's
variance partitioning), with the machinery of :func:`visreps.analysis.encode`: the same outer
folds for every subset, ridge with an intercept, an alpha per target chosen by efficient
leave-one-out on the training images (scikit-learn's ``RidgeCV``). The score of a subset is
``R²(S) = 1 − Σ(y − ŷ)² / Σ(y − ȳ)²`` of all its out-of-fold predictions at once (the
``r2_pooled`` of :func:`encode`), per target.

Side by side means concatenated features: the joint Gram matrix is the sum of the sets' Gram
matrices. With ``scale="equal"`` (default) each set is first divided by the root of its mean
squared centred row norm (``√(trace(Kc)/n)``, from all images, no targets involved), so that a
set is not favoured for its larger numbers by the one shared alpha; ``scale="none"`` keeps them.

The partition (inclusion–exclusion, a Möbius inversion): with ``U`` all sets and
``F(R) = R²(U) − R²(U \\ R)`` the variance lost without the sets ``R``, the part explained by
exactly the sets ``T`` (unique to one set when ``|T| = 1``, shared by ``T`` and by no other set
otherwise) is ``a(T) = Σ_{W ⊆ T} (−1)^{|T|−|W|} F(W)`` (``F(∅) = 0``). For two sets: unique A =
``R²(AB) − R²(B)``, shared = ``R²(A) + R²(B) − R²(AB)``. The parts add up to ``R²(U)``. With
noise, a part can come out negative (a set that hurts held-out prediction); it is reported as is.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import VisrepsError
from ..options import PARTITION_SCALES as SCALES
from ._params import LayerSelection

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class PartitionResult:
    """What :func:`variance_partitioning` returns.

    Attributes:
        parts: one row per (target, part): ``target``, ``part`` (e.g. ``unique A``, ``shared A+B``),
            ``sets`` (the sets of the part, joined by ``+``), ``n_sets``, ``r2``.
        subsets: one row per (target, subset model): ``target``, ``subset``, ``r2``.
        summary: one row per part: ``part``, ``sets``, ``mean_r2``, ``median_r2``, ``sem_r2`` over targets.
        sets: the feature sets' labels, in order.
        info: folds, alphas, scale, seed, n_images, n_targets.
    """

    parts: pd.DataFrame
    subsets: pd.DataFrame
    summary: pd.DataFrame
    sets: list[str]
    info: dict[str, Any] = field(default_factory=dict)


def subsets_of(k: int) -> list[tuple[int, ...]]:
    """Every non-empty subset of ``range(k)``, smallest first."""
    return [c for size in range(1, k + 1) for c in itertools.combinations(range(k), size)]


def partition_from_r2(r2: Mapping[tuple[int, ...], np.ndarray], k: int) -> dict[tuple[int, ...], np.ndarray]:
    """The part explained by exactly each subset of sets, from the ``R²`` of every subset model."""
    full = tuple(range(k))
    F: dict[tuple[int, ...], np.ndarray] = {}
    for R in subsets_of(k):
        rest = tuple(i for i in full if i not in R)
        F[R] = r2[full] - (r2[rest] if rest else 0.0)
    parts = {}
    for T in subsets_of(k):
        total = np.zeros_like(r2[full])
        for size in range(1, len(T) + 1):
            for W in itertools.combinations(T, size):
                total = total + (-1) ** (len(T) - len(W)) * F[W]
        parts[T] = total
    return parts


def part_name(T: tuple[int, ...], labels: Sequence[str]) -> str:
    names = "+".join(labels[i] for i in T)
    return f"unique {names}" if len(T) == 1 else f"shared {names}"


def _pooled_r2(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    yc = y - y.mean(axis=0)
    ss = np.einsum("ij,ij->j", yc, yc)
    res = y - pred
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ss > 0, 1.0 - np.einsum("ij,ij->j", res, res) / np.where(ss > 0, ss, 1.0), np.nan)


def variance_partitioning(
    features: Any,
    responses: Any,
    *,
    layers: LayerSelection = None,
    alphas: Any = None,
    folds: int | Sequence[int] | np.ndarray = 5,
    groups: Any = None,
    seed: int = 0,
    scale: str = "equal",
    nan: str = "error",
    order: Sequence[str] | str | os.PathLike | None = None,
    key: str | None = None,
    axes: str | Sequence[str] | None = None,
    block_size: int | None = None,
    device: Any = "auto",
) -> PartitionResult:
    """Unique and shared explained variance of 2–4 feature sets per target (see the module documentation).

    Args:
        features: 2–4 feature sets: output folders with ``layers``, arrays, or a dict label → array/folder
            (as :func:`visreps.analysis.collect_features`); each layer is one set.
        responses: a response file, :class:`~visreps.analysis.Responses` or array (as :func:`encode`).
        alphas: ridge penalties (default: :func:`encode`'s ``logspace(-2, 8, 11)``).
        folds, groups, seed: the outer folds (:func:`visreps.analysis.make_folds`), the same for every subset.
        scale: ``equal`` (default: every set scaled to unit mean squared centred row norm) or ``none``.
        nan, order, key, axes: as :func:`encode`.

    Raises:
        VisrepsError: fewer than 2 or more than 4 sets, responses that do not match, bad options.
    """
    import pandas as pd

    from ._folds import check_folds, groups_of, make_folds
    from .compare import collect_features
    from .encoding import DEFAULT_ALPHAS, EncodingModel
    from .responses import apply_nan_policy, match_sets, responses_from

    if scale not in SCALES:
        raise VisrepsError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    alphas = DEFAULT_ALPHAS if alphas is None else alphas
    model = EncodingModel(alphas=alphas, folds=folds, seed=seed, nan=nan, block_size=block_size, device=device)
    resp = responses_from(responses, key=key, axes=axes, order=order)
    sets = collect_features(features, layers=layers)
    if not 2 <= len(sets) <= 4:
        raise VisrepsError(
            f"variance partitioning needs 2 to 4 feature sets, got {len(sets)} ({', '.join(s.label for s in sets)}); "
            "choose the layers with layers=... (CLI: --layers)"
        )
    rows_of, _ = match_sets(sets, resp)
    Y, _, labels = resp.flat()
    Y, _, labels, dropped, _ = apply_nan_policy(Y, None, labels, nan=model.nan, images=resp.images)
    fold_of = make_folds(Y.shape[0], model.folds, groups=groups_of(groups, resp.n_images), seed=model.seed)
    check_folds(fold_of)
    grams = _set_grams(sets, rows_of, scale, model.block_size, model.device)
    alpha_arr = model.alpha_array
    k = len(sets)
    r2 = {S: _subset_r2(np.sum([grams[i] for i in S], axis=0), Y, fold_of, alpha_arr) for S in subsets_of(k)}
    names = _set_names(sets)
    parts = partition_from_r2(r2, k)
    part_rows = [
        pd.DataFrame(
            {"target": labels, "part": part_name(T, names), "sets": "+".join(names[i] for i in T), "n_sets": len(T)}
        ).assign(r2=v)
        for T, v in parts.items()
    ]
    subset_rows = [
        pd.DataFrame({"target": labels, "subset": "+".join(names[i] for i in S), "r2": v}) for S, v in r2.items()
    ]
    parts_df = pd.concat(part_rows, ignore_index=True)
    info = {"n_folds": int(fold_of.max()) + 1, "alphas": alpha_arr.tolist(), "scale": scale, "seed": seed}
    info.update(n_images=int(Y.shape[0]), n_targets=len(labels), dropped=dropped, sets=names)
    out = PartitionResult(parts_df, pd.concat(subset_rows, ignore_index=True), _summary(parts_df), names, info)
    for df in (out.parts, out.subsets, out.summary):
        df.attrs.update(info)
    return out


def _set_names(sets) -> list[str]:
    """The sets' layer names when they are layers of one model (short part names), else their labels."""
    layers = [s.layer for s in sets]
    if len({s.model for s in sets}) == 1 and all(layers) and len(set(layers)) == len(layers):
        return layers
    return [s.label for s in sets]


def _set_grams(sets, rows_of, scale: str, block_size: int | None, device: Any) -> list[np.ndarray]:
    """Each set's Gram matrix of column-centred features (response row order), scaled with ``scale="equal"``."""
    from ._source import FeatureSource, stream_gram

    grams = []
    for s, rows in zip(sets, rows_of):
        src = FeatureSource(s.features, name=s.label)
        K = stream_gram(src, center="columns", block_size=block_size, device=device)["G"][np.ix_(rows, rows)]
        if scale == "equal":
            Kc = K - K.mean(axis=0) - K.mean(axis=1)[:, None] + K.mean()
            tr = float(np.trace(Kc)) / len(K)
            K = K / tr if tr > 0 else K
        grams.append(K)
    return grams


def _subset_r2(K: np.ndarray, Y: np.ndarray, fold_of: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Pooled out-of-fold R² per target of ridge on the joint kernel ``K`` (alpha per target by LOO)."""
    from ._ridge import KernelDesign, ridge_fold

    design = KernelDesign(K)
    pred = np.empty(Y.shape)
    for f in range(int(fold_of.max()) + 1):
        te, tr = np.flatnonzero(fold_of == f), np.flatnonzero(fold_of != f)
        pred[te], _ = ridge_fold(design, tr, te, Y, alphas, "loo", 5)
    return _pooled_r2(Y, pred)


def _summary(parts: pd.DataFrame) -> pd.DataFrame:
    g = parts.groupby(["part", "sets", "n_sets"], sort=False)["r2"]
    df = g.agg(mean_r2="mean", median_r2="median", sd="std", n="count").reset_index()
    df["sem_r2"] = df["sd"] / np.sqrt(df["n"])
    return df.drop(columns=["sd", "n"])
