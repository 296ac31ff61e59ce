"""Cross-validation folds of the encoding models: the outer folds of the images, scikit-learn's inner
``KFold`` splits, and the checks that every fold can be fitted and scored.

:func:`make_folds` is public (:mod:`visreps.analysis`); :mod:`~visreps.analysis.encoding`,
:mod:`~visreps.analysis.partition` and :mod:`~visreps.analysis.frrsa` share it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import VisrepsError


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


def inner_splits(n: int, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's ``KFold(k)`` without shuffling: contiguous parts, the first ``n % k`` one longer."""
    if n < k:
        raise VisrepsError(f"a training set of {n} images cannot be split into {k} inner folds; use fewer inner folds")
    out = []
    idx = np.arange(n)
    for part in np.array_split(idx, k):
        out.append((np.setdiff1d(idx, part), part))
    return out


def check_folds(fold_of: np.ndarray, inner_folds: int | None = None, *, stacklevel: int = 3) -> None:
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
            stacklevel=stacklevel,
        )


def groups_of(groups: Any, n: int) -> np.ndarray | None:
    """``groups`` as an array of one label per response row (``n``), or ``None``."""
    if groups is None:
        return None
    g = np.asarray(groups)
    if g.shape != (n,):
        raise VisrepsError(f"groups: one label per response row ({n}) is needed, got {len(g)}")
    return g
