"""Noise ceilings: how well the best possible model could do, given the noise in the data.

* :func:`split_half_reliability`: for responses with repetitions (repetitions × images × targets),
  the Spearman–Brown-corrected split-half reliability of every target (voxel, neuron, ...).
* :func:`rdm_noise_ceiling`: for RDMs of several subjects, the lower and upper bounds of Nili et al.
  (2014), as ``rsatoolbox.inference.noise_ceiling`` computes them, for every comparison method of
  :func:`visreps.analysis.rsa.correlate_rdms`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..errors import VisrepsError


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise VisrepsError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def split_half_reliability(responses: Any, *, n_splits: int = 100, seed: int | None = 0) -> np.ndarray:
    """Spearman–Brown-corrected split-half reliability of every target.

    ``responses`` holds ``R`` repeated measurements of every image: shape
    ``(repetitions, images, targets)``. For each of ``n_splits`` random splits of the repetitions
    (a permutation of ``0..R−1`` drawn with ``numpy.random.default_rng(seed)``; half A is its first
    ``⌊R/2⌋`` repetitions, half B the other ``⌈R/2⌉``), the mean response of each half is taken per
    image and target, and the two half means are correlated across images (Pearson) for every
    target: ``r_s,t = corr_images(mean_A[:, t], mean_B[:, t])``. The reliability is the
    Spearman–Brown correction of the mean over splits::

        r̄_t = (1 / n_splits) Σ_s r_s,t          ρ_t = 2 r̄_t / (1 + r̄_t)

    ``ρ_t`` estimates the correlation between two independent means of all ``R`` repetitions
    (exact for an even ``R``; for an odd ``R`` the halves differ by one repetition). It can be
    negative (down to −∞ as ``r̄ → −1``) for targets that carry no image signal.

    Args:
        responses: array-like ``(repetitions, images, targets)``, ``repetitions >= 2``, ``images >= 3``.
        n_splits: random half splits to average (>= 1).
        seed: seed of the splits (same seed, same result).

    Returns:
        float64 array ``(targets,)``. A target that is constant within a half (for every image,
        or across images) in every split gets NaN, with a warning naming how many targets did.

    Raises:
        VisrepsError: not 3-D, fewer than 2 repetitions or 3 images, NaN/inf entries, bad ``n_splits``.
    """
    n_splits = _check_int(n_splits, "n_splits", 1)
    try:
        x = np.asarray(responses, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise VisrepsError(f"responses are not numeric ({e})") from None
    if x.ndim != 3:
        raise VisrepsError(
            f"split_half_reliability needs responses shaped (repetitions, images, targets), got shape {x.shape}; "
            "add the missing axis (e.g. responses[..., None] for one target)"
        )
    r_reps, n_img, _ = x.shape
    if r_reps < 2:
        raise VisrepsError(f"split-half reliability needs at least 2 repetitions, got {r_reps}")
    if n_img < 3:
        raise VisrepsError(f"split-half reliability needs at least 3 images to correlate across, got {n_img}")
    bad = ~np.isfinite(x)
    if bad.any():
        rep, img, tgt = np.argwhere(bad)[0]
        raise VisrepsError(
            f"responses have {int(bad.sum())} NaN/inf entries (first at repetition {rep}, image {img}, target {tgt}); "
            "drop or fill them before computing reliability"
        )
    rng = np.random.default_rng(seed)
    half = r_reps // 2
    rs = np.empty((n_splits, x.shape[2]))
    with np.errstate(invalid="ignore", divide="ignore"):
        for s in range(n_splits):
            perm = rng.permutation(r_reps)
            a = x[perm[:half]].mean(axis=0)
            b = x[perm[half:]].mean(axis=0)
            a -= a.mean(axis=0)
            b -= b.mean(axis=0)
            rs[s] = (a * b).sum(axis=0) / np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
        rs = np.clip(rs, -1.0, 1.0)
        ok = np.isfinite(rs)
        r_mean = np.where(ok, rs, 0.0).sum(axis=0) / ok.sum(axis=0)  # mean over the splits where r is defined
        rho = 2.0 * r_mean / (1.0 + r_mean)
    n_nan = int(np.isnan(rho).sum())
    if n_nan:
        warnings.warn(
            f"split-half reliability is undefined (NaN) for {n_nan} of {x.shape[2]} targets: their half means are "
            "constant across images",
            stacklevel=2,
        )
    return rho


# --------------------------------------------------------------------------- comparing sets of RDM vectors


def _rank_rows(v: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(v, axis=1)


def _zscore_rows(v: np.ndarray) -> np.ndarray:
    z = v - v.mean(axis=1, keepdims=True)
    norm = np.sqrt((z * z).sum(axis=1, keepdims=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        return z / norm


def rdm_similarities(a: Any, b: Any, method: str = "pearson") -> np.ndarray:
    """Every row of ``a`` compared with every row of ``b``: condensed RDM vectors, shape ``(len(a), len(b))``.

    The same numbers as :func:`visreps.analysis.correlate_rdms` (and ``rsatoolbox.rdm.compare`` with
    ``corr``, ``spearman``, ``kendall``, ``tau-a``): ``pearson`` is ``ẑ_a · ẑ_b`` with ``ẑ`` the
    centred, unit-norm vector; ``spearman`` the same of the average ranks; ``kendall`` is scipy's
    tau-b and ``tau_a`` Kendall's tau-a, pair by pair. A constant vector gives NaN.

    Args:
        a, b: ``(k, m)`` arrays of condensed RDMs (``m = n(n−1)/2`` entries each), or one vector each.
        method: ``pearson``, ``spearman``, ``kendall`` (tau-b) or ``tau_a``.
    """
    from .rsa import _correlate_vectors, check_comparison

    method = check_comparison(method)
    a2 = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b2 = np.atleast_2d(np.asarray(b, dtype=np.float64))
    if a2.ndim != 2 or b2.ndim != 2:
        raise VisrepsError(f"rdm_similarities compares condensed RDM vectors (k, m); got shapes {a2.shape}, {b2.shape}")
    if a2.shape[1] != b2.shape[1]:
        raise VisrepsError(f"RDM vectors of different lengths ({a2.shape[1]} and {b2.shape[1]}); use the same images")
    if method in ("pearson", "spearman"):
        if method == "spearman":
            a2, b2 = _rank_rows(a2), _rank_rows(b2)
        return np.clip(_zscore_rows(a2) @ _zscore_rows(b2).T, -1.0, 1.0)
    out = np.empty((len(a2), len(b2)))
    for i, x in enumerate(a2):
        for j, y in enumerate(b2):
            if np.all(x == x[0]) or np.all(y == y[0]):
                out[i, j] = np.nan
            else:
                out[i, j] = _correlate_vectors(x, y, method)
    return out


def pool_rdms(vectors: Any, method: str = "pearson") -> np.ndarray:
    """The group-average RDM that the noise ceiling compares each subject with (``rsatoolbox`` ``pool_rdm``).

    ``pearson``: the mean of the subjects' z-scored vectors, ``mean_s((v_s − v̄_s) / sd(v_s))``;
    ``spearman``, ``kendall``, ``tau_a``: the mean of their ranks (ties averaged). The pooled
    vector is the one that maximises the mean comparison with the subjects under that method
    (exactly for ``pearson``/``spearman``; rsatoolbox uses mean ranks for tau too, and warns it is
    an approximation there).

    Args:
        vectors: ``(subjects, m)`` condensed RDMs.
        method: the comparison method.

    Returns:
        the pooled condensed vector ``(m,)``.
    """
    from .rsa import check_comparison

    method = check_comparison(method)
    v = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    if method == "pearson":
        z = v - v.mean(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            z /= z.std(axis=1, keepdims=True)
        return z.mean(axis=0)
    return _rank_rows(v).mean(axis=0)


class NoiseCeiling(tuple):
    """``(lower, upper)``: the noise-ceiling bounds, a tuple with names; ``per_subject`` holds each subject's bounds."""

    lower: float
    upper: float
    method: str
    per_subject: np.ndarray

    def __new__(cls, lower: float, upper: float, *, method: str, per_subject: np.ndarray):
        obj = super().__new__(cls, (float(lower), float(upper)))
        obj.lower, obj.upper, obj.method, obj.per_subject = float(lower), float(upper), method, per_subject
        return obj

    def __reduce__(self):
        return (_make_noise_ceiling, (self.lower, self.upper, self.method, self.per_subject))

    def __repr__(self) -> str:
        return f"NoiseCeiling(lower={self.lower:.6g}, upper={self.upper:.6g}, method={self.method!r})"


def _make_noise_ceiling(lower, upper, method, per_subject):
    return NoiseCeiling(lower, upper, method=method, per_subject=per_subject)


def ceiling_from_vectors(vectors: np.ndarray, method: str, groups: np.ndarray | None = None) -> np.ndarray:
    """Noise-ceiling bounds of condensed RDMs ``(k, m)`` whose rows belong to ``groups`` (subjects).

    Rows with the same group are copies of one subject (a bootstrap sample over subjects): they are
    left out together and each subject counts once in the means, as in
    ``rsatoolbox.inference.boot_noise_ceiling``. Returns ``[[lower_g, upper_g] per subject]`` as a
    ``(subjects, 2)`` array; the lower bound is NaN when there is only one subject.
    """
    v = np.asarray(vectors, dtype=np.float64)
    g = np.arange(len(v)) if groups is None else np.asarray(groups)
    uniq = np.unique(g)
    pooled_all = pool_rdms(v, method)
    out = np.full((len(uniq), 2), np.nan)
    for k, s in enumerate(uniq):
        mine = g == s
        test = v[np.flatnonzero(mine)[0]]
        out[k, 1] = rdm_similarities(pooled_all, test, method)[0, 0]
        if len(uniq) > 1:
            out[k, 0] = rdm_similarities(pool_rdms(v[~mine], method), test, method)[0, 0]
    return out


def rdm_noise_ceiling(rdms: Any, method: str = "pearson") -> NoiseCeiling:
    """The lower and upper bound of the noise ceiling of several subjects' RDMs (Nili et al. 2014).

    With ``v_s`` the condensed RDM of subject ``s`` of ``S``, ``pool`` as in :func:`pool_rdms` and
    ``sim`` the comparison ``method`` (:func:`rdm_similarities`)::

        upper = (1/S) Σ_s sim(pool(v_1 … v_S), v_s)            every subject vs the mean of all (incl. itself)
        lower = (1/S) Σ_s sim(pool(v_t : t ≠ s), v_s)          leave one subject out

    The true model's expected score lies between the two (the upper bound overestimates it, as each
    subject is part of the mean it is compared with; the lower bound underestimates it). Same as
    ``rsatoolbox.inference.boot_noise_ceiling(rdms, method)`` (``pearson`` ↔ ``corr``, ``tau_a`` ↔
    ``tau-a``; for ``kendall`` and ``tau_a`` the pooled RDM is the mean rank, as there).

    Args:
        rdms: ``(subjects, n, n)`` square RDMs or ``(subjects, n(n−1)/2)`` condensed ones, ``subjects >= 2``.
        method: ``pearson`` (default), ``spearman``, ``kendall`` (tau-b) or ``tau_a``.

    Returns:
        :class:`NoiseCeiling` ``(lower, upper)``, with ``per_subject`` ``(subjects, 2)``.

    Raises:
        VisrepsError: fewer than 2 subjects, bad shapes, NaN/inf entries, a constant subject RDM.
    """
    from .rsa import check_comparison

    method = check_comparison(method)
    v = subject_vectors(rdms)
    per = ceiling_from_vectors(v, method)
    return NoiseCeiling(per[:, 0].mean(), per[:, 1].mean(), method=method, per_subject=per)


def subject_vectors(rdms: Any, *, name: str = "the reference", need: int = 2) -> np.ndarray:
    """Validated condensed RDMs ``(subjects, m)`` of a ``(subjects, n, n)`` or ``(subjects, m)`` stack.

    Raises:
        VisrepsError: not a stack, fewer than ``need`` subjects, NaN/inf entries, a constant RDM.
    """
    from .rsa import n_from_condensed, upper_triangle

    try:
        a = np.asarray(rdms, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise VisrepsError(f"{name} is not numeric ({e})") from None
    if a.ndim == 3 and a.shape[1] == a.shape[2]:
        v = np.stack([upper_triangle(x) for x in a]) if len(a) else np.empty((0, 0))
    elif a.ndim == 2:
        n_from_condensed(a.shape[1])
        v = a
    else:
        raise VisrepsError(
            f"{name} must be a stack of RDMs shaped (subjects, n, n) or (subjects, n(n−1)/2), got shape {a.shape}"
        )
    if len(v) < need:
        raise VisrepsError(
            f"{name} has {len(v)} subject RDM(s); a noise ceiling or a bootstrap over subjects needs at least {need} "
            "(give one RDM per subject: a (subjects, n, n) stack or a folder of files)"
        )
    if not np.isfinite(v).all():
        s = int(np.argwhere(~np.isfinite(v))[0, 0])
        raise VisrepsError(f"{name}: the RDM of subject {s} has NaN/inf entries; fill or drop those conditions")
    for s, row in enumerate(v):
        if np.all(row == row[0]):
            raise VisrepsError(
                f"{name}: the RDM of subject {s} is constant; its correlation with anything is undefined"
            )
    return v
