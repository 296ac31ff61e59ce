"""The bootstrap of model–reference RDM comparisons (rsatoolbox's definitions; see :mod:`.inference`).

* **over images** (``eval_bootstrap_pattern``): resample the ``n`` images with replacement; a pair of copies
  of one image has no dissimilarity, so those entries are dropped; samples with fewer than 3 distinct images
  are invalid (NaN). Variance ``n/(n−1) · var_boot``.
* **over subjects** (``eval_bootstrap_rdm``): resample the subjects. Variance ``S/(S−1) · var_boot``.
* **both** (``eval_dual_bootstrap`` without cross-validation): each sample draws subjects and images once
  and evaluates three resamples with them (both, subjects only, images only); the variance is rsatoolbox's
  ``_dual_bootstrap`` formula (see :func:`bootstrap_variances`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import VisrepsError
from ..options import BOOTSTRAP_FACTORS
from .ceilings import ceiling_from_vectors, rdm_similarities, subject_vectors

#: fewest images an image bootstrap accepts (with fewer, too many samples have < 3 distinct images)
MIN_BOOTSTRAP_IMAGES = 5


def check_bootstrap(bootstrap: Any) -> tuple[str, ...]:
    """Normalise ``bootstrap`` (``None``, ``"images"``, ``"subjects"``, ``"subjects,images"`` or a list) to a tuple."""
    if bootstrap is None or bootstrap is False or bootstrap == "":
        return ()
    items = [x.strip() for x in bootstrap.split(",")] if isinstance(bootstrap, str) else [str(x) for x in bootstrap]
    alias = {"stimuli": "images", "conditions": "images", "patterns": "images", "rdms": "subjects", "both": ""}
    out = set()
    for it in items:
        low = alias.get(it.lower(), it.lower())
        if it.lower() == "both":
            out |= set(BOOTSTRAP_FACTORS)
        elif low in BOOTSTRAP_FACTORS:
            out.add(low)
        elif low:
            raise VisrepsError(
                f"bootstrap over {it!r} is not known; use images, subjects, or subjects,images (both factors)"
            )
    return tuple(f for f in BOOTSTRAP_FACTORS if f in out)


def _pair_index(n: int, img: np.ndarray) -> np.ndarray:
    """Condensed indices of the pairs of resampled images that are two different originals (``pdist`` order)."""
    iu, ju = np.triu_indices(len(img), 1)
    si, sj = img[iu], img[ju]
    keep = si != sj
    u, v = np.minimum(si[keep], sj[keep]), np.maximum(si[keep], sj[keep])
    return n * u - u * (u + 1) // 2 + (v - u - 1)


def draw_bootstrap_indices(
    n_subjects: int, n_images: int, factors: Sequence[str], n_bootstrap: int, seed: Any = 0
) -> list[tuple[np.ndarray | None, np.ndarray | None]]:
    """The resamples ``(subject indices, image indices)`` (``None``: that factor is not resampled).

    Drawn with ``numpy.random.default_rng(seed).integers``, per sample the subjects first, then the
    images (the order of ``rsatoolbox.inference.bootstrap_sample``).
    """
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_bootstrap):
        s = rng.integers(0, n_subjects, size=n_subjects) if "subjects" in factors else None
        i = rng.integers(0, n_images, size=n_images) if "images" in factors else None
        out.append((s, i))
    return out


@dataclass
class BootstrapResult:
    """Bootstrap evaluations of several models against subjects' RDMs.

    Attributes:
        factors: what was resampled: ``("images",)``, ``("subjects",)`` or ``("subjects", "images")``.
        evaluations: ``(variants, n_bootstrap, models)``; one variant for a single factor, three for
            both (``[both, subjects only, images only]``, the same draws). NaN for invalid samples.
        ceilings: ``(variants, n_bootstrap, 2)`` noise-ceiling ``(lower, upper)`` per sample (NaN when
            not computed or undefined, e.g. a sample of one distinct subject).
        n_subjects, n_images: sizes of the data.
        indices: the draws (see :func:`draw_bootstrap_indices`).
    """

    factors: tuple[str, ...]
    evaluations: np.ndarray
    ceilings: np.ndarray
    n_subjects: int
    n_images: int
    indices: list = field(repr=False, default_factory=list)

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.evaluations[0, :, 0])

    @property
    def dof(self) -> int:
        """Degrees of freedom of the t-tests: ``n−1``, ``S−1`` or ``min(S, n)−1`` (as rsatoolbox)."""
        if self.factors == ("images",):
            return self.n_images - 1
        if self.factors == ("subjects",):
            return self.n_subjects - 1
        return min(self.n_subjects, self.n_images) - 1


def _evaluate(models: np.ndarray, data: np.ndarray, groups: np.ndarray, method: str, ceiling: bool):
    evals = rdm_similarities(models, data, method).mean(axis=1)
    nc = np.full(2, np.nan)
    if ceiling:
        per = ceiling_from_vectors(data, method, groups)
        nc = per.mean(axis=0)
    return evals, nc


def bootstrap_evaluations(
    models: Any,
    data: Any,
    *,
    method: str = "pearson",
    factors: Any = ("subjects", "images"),
    n_bootstrap: int = 1000,
    seed: Any = 0,
    ceiling: bool = True,
    indices: Sequence[tuple[Any, Any]] | None = None,
) -> BootstrapResult:
    """Bootstrap the mean-over-subjects comparison of every model RDM with the subjects' RDMs.

    For a resample with subject indices ``s`` and image indices ``i``, the data are the RDMs of
    subjects ``s`` (copies kept: a subject drawn twice counts twice in the mean) restricted to the
    pairs of ``i`` that are two different originals, and every model RDM is restricted the same way;
    a model's evaluation is ``(1/|s|) Σ_{t∈s} sim(model_i, v_t,i)``. With ``ceiling`` the
    noise-ceiling bounds of the resampled data are computed too (:func:`ceiling_from_vectors`:
    copies of a subject are left out together and count once, as rsatoolbox).

    Args:
        models: ``(models, m)`` condensed model RDMs (or ``(models, n, n)``).
        data: ``(subjects, m)`` condensed subject RDMs (or ``(subjects, n, n)``).
        method: comparison method (see :func:`visreps.analysis.ceilings.rdm_similarities`).
        factors: ``images``, ``subjects`` or both.
        n_bootstrap, seed: number of samples and seed of :func:`draw_bootstrap_indices`.
        ceiling: also bootstrap the noise ceiling (needs ``subjects >= 2``).
        indices: the draws to use instead of drawing (e.g. to reproduce another program's samples).

    Raises:
        VisrepsError: a subject bootstrap or ceiling with one subject; fewer than
            ``MIN_BOOTSTRAP_IMAGES`` images for an image bootstrap.
    """
    from .rsa import check_comparison, n_from_condensed

    method = check_comparison(method)
    fac = check_bootstrap(factors)
    if not fac:
        raise VisrepsError("bootstrap_evaluations needs factors: images, subjects or subjects,images")
    M = subject_vectors(models, name="the model RDMs", need=1)
    D = subject_vectors(data, name="the reference", need=2 if ("subjects" in fac or ceiling) else 1)
    if M.shape[1] != D.shape[1]:
        raise VisrepsError(
            f"model RDMs have {n_from_condensed(M.shape[1])} images, the reference {n_from_condensed(D.shape[1])}"
        )
    check_images(n_from_condensed(D.shape[1]), fac)
    return run_bootstrap(M, D, method, fac, check_count(n_bootstrap, "n_bootstrap", 2), seed, ceiling, indices)


def check_count(value: Any, name: str, minimum: int) -> int:
    """An integer option (``n_bootstrap``, ``n_permutations``) of at least ``minimum``, else the error naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise VisrepsError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_images(n: int, factors: tuple[str, ...]) -> None:
    """Refuse an image bootstrap of fewer than :data:`MIN_BOOTSTRAP_IMAGES` images."""
    if "images" in factors and n < MIN_BOOTSTRAP_IMAGES:
        raise VisrepsError(
            f"too few images to bootstrap over: {n} (need at least {MIN_BOOTSTRAP_IMAGES}; samples with fewer than "
            "3 distinct images have no correlation); bootstrap over subjects only, or use more images"
        )


def run_bootstrap(
    M: np.ndarray,
    D: np.ndarray,
    method: str,
    fac: tuple[str, ...],
    n_bootstrap: int,
    seed: Any,
    ceiling: bool,
    indices: Sequence[tuple[Any, Any]] | None = None,
) -> BootstrapResult:
    """:func:`bootstrap_evaluations` of checked arguments: condensed ``M`` (models) and ``D`` (subjects)."""
    from .rsa import n_from_condensed

    n, S = n_from_condensed(D.shape[1]), len(D)
    draws = list(indices) if indices is not None else draw_bootstrap_indices(S, n, fac, int(n_bootstrap), seed)
    variants = 3 if len(fac) == 2 else 1
    evals = np.full((variants, len(draws), len(M)), np.nan)
    ceils = np.full((variants, len(draws), 2), np.nan)
    all_s = np.arange(S)
    for k, (s_idx, i_idx) in enumerate(draws):
        s_idx = all_s if s_idx is None else np.asarray(s_idx)
        pair = None if i_idx is None else _pair_index(n, np.asarray(i_idx))
        if i_idx is not None and len(np.unique(i_idx)) < 3:
            continue  # invalid sample (rsatoolbox: NaN)
        cases = [(s_idx, pair)] if variants == 1 else [(s_idx, pair), (s_idx, None), (all_s, pair)]
        for v, (ss, pp) in enumerate(cases):
            dv = D[ss] if pp is None else D[ss][:, pp]
            mv = M if pp is None else M[:, pp]
            evals[v, k], ceils[v, k] = _evaluate(mv, dv, ss, method, ceiling and len(np.unique(ss)) > 1)
    return BootstrapResult(fac, evals, ceils, S, n, draws)


def _cov_pairwise(x: np.ndarray) -> np.ndarray:
    """Sample covariance (ddof 1) of the columns of ``x``, each pair over the rows where both are finite."""
    k = x.shape[1]
    out = np.full((k, k), np.nan)
    ok = np.isfinite(x)
    for i in range(k):
        for j in range(i, k):
            rows = ok[:, i] & ok[:, j]
            if rows.sum() > 1:
                a, b = x[rows, i], x[rows, j]
                out[i, j] = out[j, i] = ((a - a.mean()) * (b - b.mean())).sum() / (rows.sum() - 1)
    return out


def _dual(v: np.ndarray, n_rdm: int, n_pattern: int) -> np.ndarray:
    cs, ci = n_rdm / (n_rdm - 1), n_pattern / (n_pattern - 1)
    var = cs * v[1] + ci * v[2] - (n_pattern * n_rdm / (n_pattern - 1) / (n_rdm - 1)) * (v[0] - v[1] - v[2])
    var = np.maximum(np.maximum(var, cs * v[1]), ci * v[2])
    return np.minimum(var, v[0])


def bootstrap_variances(result: BootstrapResult) -> dict[str, np.ndarray]:
    """Variances of the model evaluations, of their pairwise differences and of model − lower ceiling.

    Per variant, ``C`` is the sample covariance (ddof 1) over the valid samples of the columns
    ``[models…, ceiling lower, ceiling upper]`` (pairs of columns over the samples where both are
    defined). From it: ``var_i = C_ii``, ``var(i − j) = C_ii + C_jj − 2 C_ij``,
    ``var(i − lower) = C_ii + C_LL − 2 C_iL``. Then, as rsatoolbox:

    * one factor of size ``k`` (``n`` images or ``S`` subjects): ``k/(k−1) · var``;
    * both factors, with ``v_b``, ``v_s``, ``v_i`` the variances of the both / subjects-only /
      images-only resamples::

        var = S/(S−1) v_s + n/(n−1) v_i − n S / ((n−1)(S−1)) · (v_b − v_s − v_i)

      bounded below by ``max(S/(S−1) v_s, n/(n−1) v_i)`` and above by ``v_b``.

    Returns:
        dict with ``model`` ``(models,)``, ``difference`` ``(models, models)`` and ``ceiling``
        ``(models,)`` (variance of model − lower bound; NaN without ceilings).
    """
    ev, nc = result.evaluations, result.ceilings
    ok = result.valid
    n_mod = ev.shape[2]
    derived = []
    for v in range(ev.shape[0]):
        C = _cov_pairwise(np.concatenate([ev[v][ok], nc[v][ok]], axis=1))
        d = np.diag(C)
        model = d[:n_mod]
        diff = model[:, None] + model[None, :] - 2 * C[:n_mod, :n_mod]
        np.fill_diagonal(diff, 0.0)
        ceil = model + d[n_mod] - 2 * C[:n_mod, n_mod]
        derived.append((model, diff, ceil))
    if ev.shape[0] == 1:
        k = result.n_images if result.factors == ("images",) else result.n_subjects
        f = k / (k - 1)
        model, diff, ceil = derived[0]
        return {"model": f * model, "difference": f * diff, "ceiling": f * ceil}
    S, n = result.n_subjects, result.n_images
    return {
        name: _dual(np.stack([d[j] for d in derived]), S, n)
        for j, name in enumerate(("model", "difference", "ceiling"))
    }
