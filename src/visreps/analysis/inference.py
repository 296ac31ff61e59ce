"""Statistical inference on model–reference RDM comparisons: bootstrap, permutation tests, corrections.

The reference is one RDM per subject (a stack ``(subjects, n, n)``); a model's score is the mean
over subjects of its comparison with each subject's RDM, as in ``rsatoolbox.inference.eval_fixed``.
This module follows rsatoolbox's definitions (Schütt et al. 2023, *Statistical inference on
representational geometries*, eLife; Nili et al. 2014):

* **bootstrap over images** (``rsatoolbox`` ``eval_bootstrap_pattern``): resample the ``n`` images
  with replacement; a pair of copies of one image has no dissimilarity, so those entries are
  dropped (rsatoolbox marks them NaN); samples with fewer than 3 distinct images are invalid
  (NaN) and left out. Variance ``n/(n−1) · var_boot``.
* **bootstrap over subjects** (``eval_bootstrap_rdm``): resample the subjects with replacement.
  Variance ``S/(S−1) · var_boot``.
* **both** (``eval_dual_bootstrap`` without cross-validation): each sample draws subjects and
  images once and evaluates three resamples with them: both factors, subjects only, images only.
  Bootstrapping both factors at once counts the interaction twice; the corrected variance is
  rsatoolbox's ``_dual_bootstrap`` formula (see :func:`bootstrap_variances`).
* **tests**: t-tests with the corrected variances (rsatoolbox's default ``t-test``), or the
  bootstrap-distribution tests (``bootstrap``); permutation tests of image labels; Benjamini–Hochberg
  FDR or Bonferroni correction within each family of tests.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import VisrepsError
from ..options import BOOTSTRAP_FACTORS, CORRECTIONS, TEST_TYPES
from .ceilings import ceiling_from_vectors, rdm_noise_ceiling, rdm_similarities, subject_vectors

if TYPE_CHECKING:
    import pandas as pd


#: fewest images an image bootstrap accepts (with fewer, too many samples have < 3 distinct images)
MIN_BOOTSTRAP_IMAGES = 5


# --------------------------------------------------------------------------- arguments


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


def check_correction(correction: Any) -> str:
    c = "none" if correction is None else str(correction).lower()
    c = {"bh": "fdr", "fdr_bh": "fdr", "benjamini-hochberg": "fdr", "holm": "holm"}.get(c, c)
    if c not in CORRECTIONS:
        raise VisrepsError(f"correction {correction!r} is not known; use one of {', '.join(CORRECTIONS)}")
    return c


def correct_pvalues(p: Any, correction: str = "fdr") -> np.ndarray:
    """Multiple-comparison corrected p-values of one family of tests.

    * ``fdr``: Benjamini–Hochberg, ``p_(i) · k / i`` for the ``i``-th smallest of ``k`` p-values, made
      monotone from the largest down and capped at 1 (``scipy.stats.false_discovery_control``, ``bh``).
    * ``bonferroni``: ``min(1, k · p)``.
    * ``none``: unchanged.

    NaN p-values are left out of ``k`` and stay NaN.
    """
    from scipy.stats import false_discovery_control

    correction = check_correction(correction)
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if not ok.any() or correction == "none":
        return p.copy()
    if correction == "bonferroni":
        out[ok] = np.minimum(1.0, p[ok] * ok.sum())
    else:
        out[ok] = false_discovery_control(p[ok], method="bh")
    return out


# --------------------------------------------------------------------------- bootstrap


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
    n, S = n_from_condensed(D.shape[1]), len(D)
    if "images" in fac and n < MIN_BOOTSTRAP_IMAGES:
        raise VisrepsError(
            f"too few images to bootstrap over: {n} (need at least {MIN_BOOTSTRAP_IMAGES}; samples with fewer than "
            "3 distinct images have no correlation); bootstrap over subjects only, or use more images"
        )
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 2:
        raise VisrepsError(f"n_bootstrap must be an integer >= 2, got {n_bootstrap!r}")
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


# --------------------------------------------------------------------------- tests


def t_test_zero(estimate: Any, variance: Any, dof: int) -> np.ndarray:
    """One-sided t-test of ``estimate > 0``: ``p = 1 − F_t(estimate / √variance; dof)`` (rsatoolbox ``t_test_0``)."""
    from scipy import stats

    t = np.asarray(estimate, dtype=np.float64) / np.sqrt(np.maximum(variance, np.finfo(float).eps))
    return 1 - stats.t.cdf(t, dof)


def t_test_two_sided(difference: Any, variance: Any, dof: int) -> np.ndarray:
    """Two-sided t-test of ``difference ≠ 0``: ``p = 2 (1 − F_t(|d| / √variance; dof))`` (rsatoolbox ``t_tests``)."""
    from scipy import stats

    t = np.asarray(difference, dtype=np.float64) / np.sqrt(np.maximum(variance, np.finfo(float).eps))
    return 2 * (1 - stats.t.cdf(np.abs(t), dof))


def bootstrap_pair_pvalues(samples: Any) -> np.ndarray:
    """Two-sided bootstrap test of each pair of columns (rsatoolbox ``bootstrap_pair_tests``).

    ``q_ij`` is the fraction of samples with ``x_i < x_j`` among those where they differ;
    ``p_ij = (N−1)/N · 2 min(q_ij, 1 − q_ij) + 1/N`` for ``N`` samples; the diagonal is 1.
    """
    x = np.asarray(samples, dtype=np.float64)
    N, k = x.shape
    p = np.ones((k, k))
    for i in range(k - 1):
        for j in range(i + 1, k):
            q = np.sum(x[:, i] < x[:, j]) / (N - np.sum(x[:, i] == x[:, j]))
            p[i, j] = p[j, i] = (N - 1) / N * 2 * min(q, 1 - q) + 1 / N
    return p


def permutation_test(
    model: Any,
    data: Any,
    *,
    method: str = "pearson",
    n_permutations: int = 1000,
    seed: Any = 0,
) -> tuple[float, float, np.ndarray]:
    """Permutation test of a model–reference comparison: shuffle the image labels of the model RDM.

    The statistic is ``T = (1/S) Σ_s sim(model, v_s)``; under the null hypothesis the model's image
    labels are exchangeable, so ``T_π`` is computed with rows and columns of the model RDM permuted
    by ``π`` (the same ``π`` for all subjects). One-sided (``T`` larger than chance):

    * when ``n! <= n_permutations``, all ``n!`` permutations are enumerated (the identity included):
      ``p = #{π : T_π ≥ T − γ} / n!`` (exact);
    * else ``n_permutations`` random permutations (``numpy.random.default_rng(seed)``):
      ``p = (1 + #{T_π ≥ T − γ}) / (1 + n_permutations)``.

    ``γ = 100 ε |T|`` absorbs round-off (ε the float64 machine epsilon), as ``scipy.stats.permutation_test``.

    Args:
        model: the model RDM (square or condensed).
        data: ``(subjects, n, n)`` / ``(subjects, m)`` reference RDMs, or one RDM.

    Returns:
        ``(T, p, null distribution)``.
    """
    from .rsa import check_comparison, n_from_condensed, squareform, upper_triangle

    method = check_comparison(method)
    mv = upper_triangle(model)
    d = np.asarray(data, dtype=np.float64)
    D = subject_vectors(d[None] if (d.ndim == 1 or (d.ndim == 2 and d.shape[0] == d.shape[1])) else d, need=1)
    if len(mv) != D.shape[1]:
        raise VisrepsError("the model RDM and the reference describe different numbers of images")
    if isinstance(n_permutations, bool) or not isinstance(n_permutations, (int, np.integer)) or n_permutations < 1:
        raise VisrepsError(f"n_permutations must be an integer >= 1, got {n_permutations!r}")
    n = n_from_condensed(len(mv))
    sq = squareform(mv)
    exact = n <= 12 and math.factorial(n) <= n_permutations
    if exact:
        perms: Any = itertools.permutations(range(n))
    else:
        rng = np.random.default_rng(seed)
        perms = (rng.permutation(n) for _ in range(int(n_permutations)))
    iu = np.triu_indices(n, 1)
    stat = float(rdm_similarities(mv, D, method).mean())
    null = []
    batch: list[np.ndarray] = []
    for perm in perms:
        p = np.asarray(perm)
        batch.append(sq[np.ix_(p, p)][iu])
        if len(batch) == 256:
            null.append(rdm_similarities(np.stack(batch), D, method).mean(axis=1))
            batch = []
    if batch:
        null.append(rdm_similarities(np.stack(batch), D, method).mean(axis=1))
    nd = np.concatenate(null)
    gamma = abs(100 * np.finfo(np.float64).eps * stat)
    count = int(np.sum(nd >= stat - gamma))
    p_value = count / len(nd) if exact else (count + 1) / (len(nd) + 1)
    return stat, float(p_value), nd


# --------------------------------------------------------------------------- the whole analysis


@dataclass
class RSAInference:
    """The result of :func:`rdm_inference`: tables (pandas DataFrames) and the numbers behind them.

    Attributes:
        table: one row per model: ``label``, ``r`` and, as requested, the ceiling, bootstrap, test columns.
        pairwise: one row per pair of models (``None`` without a pairwise test).
        noise_ceiling: :class:`visreps.analysis.ceilings.NoiseCeiling` (``None`` without).
        bootstrap: :class:`BootstrapResult` (``None`` without).
        null: label → permutation null distribution (empty without a permutation test).
    """

    table: pd.DataFrame
    pairwise: pd.DataFrame | None = None
    noise_ceiling: Any = None
    bootstrap: BootstrapResult | None = None
    null: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def samples(self) -> pd.DataFrame:
        """The bootstrap evaluations (the both-factors variant), one column per model, one row per sample."""
        import pandas as pd

        if self.bootstrap is None:
            raise VisrepsError("no bootstrap was run; pass bootstrap='images', 'subjects' or 'subjects,images'")
        df = pd.DataFrame(self.bootstrap.evaluations[0], columns=list(self.table["label"]))
        df.insert(0, "noise_ceiling_upper", self.bootstrap.ceilings[0][:, 1])
        df.insert(0, "noise_ceiling_lower", self.bootstrap.ceilings[0][:, 0])
        df.index.name = "sample"
        return df


def check_tests(test: Any) -> tuple[str, ...]:
    """Normalise ``test`` (``None``, ``pairwise``, ``permutation``, ``zero`` or a comma list) to a tuple."""
    if test is None or test == "":
        return ()
    items = [x.strip().lower() for x in test.split(",")] if isinstance(test, str) else [str(x).lower() for x in test]
    for it in items:
        if it not in ("pairwise", "permutation", "zero"):
            raise VisrepsError(f"test {it!r} is not known; use pairwise, permutation or zero (comma separated)")
    return tuple(dict.fromkeys(x for x in items if x))


def _model_and_reference(model_rdms: Mapping[str, Any], reference: Any) -> tuple[list[str], np.ndarray, np.ndarray]:
    from .rsa import n_from_condensed, upper_triangle

    labels = [str(k) for k in model_rdms]
    if not labels:
        raise VisrepsError("no model RDMs to evaluate")
    M = np.stack([upper_triangle(v) for v in model_rdms.values()])
    ref = np.asarray(reference, dtype=np.float64)
    one = ref.ndim == 1 or (ref.ndim == 2 and ref.shape[0] == ref.shape[1])
    D = subject_vectors(ref[None] if one else ref, need=1)
    if M.shape[1] != D.shape[1]:
        raise VisrepsError(
            f"the model RDMs describe {n_from_condensed(M.shape[1])} images but the reference "
            f"{n_from_condensed(D.shape[1])}; both must describe the same images"
        )
    return labels, M, D


def _check_levels(test_type: str, ci: Any, alpha: Any, tests: tuple[str, ...], fac: tuple[str, ...]) -> None:
    if test_type not in TEST_TYPES:
        raise VisrepsError(f"test_type {test_type!r} is not known; use one of {', '.join(TEST_TYPES)}")
    if not (isinstance(ci, (int, float)) and 0 < ci < 1) or not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise VisrepsError(f"ci and alpha must be between 0 and 1, got ci={ci!r}, alpha={alpha!r}")
    if "pairwise" in tests and not fac:
        raise VisrepsError(
            "a pairwise test needs a bootstrap for the variance of the differences: add bootstrap='subjects,images' "
            "(CLI: --bootstrap subjects,images)"
        )


def check_subjects(n_subjects: int, *, noise_ceiling: bool, bootstrap: Any) -> None:
    """Raise the error for a one-subject reference asked for a noise ceiling or a bootstrap over subjects."""
    if n_subjects < 2 and (noise_ceiling or "subjects" in check_bootstrap(bootstrap)):
        what = "a noise ceiling" if noise_ceiling else "a bootstrap over subjects"
        raise VisrepsError(
            f"the reference has one subject's RDM, but {what} needs RDMs of at least 2 subjects (a (subjects, n, n) "
            "stack or a folder of per-subject files); bootstrap over images instead"
        )


def rdm_inference(
    model_rdms: Mapping[str, Any],
    reference: Any,
    *,
    method: str = "pearson",
    noise_ceiling: bool = False,
    bootstrap: Any = None,
    n_bootstrap: int = 1000,
    test: Any = None,
    test_type: str = "t",
    n_permutations: int = 1000,
    correction: str = "fdr",
    alpha: float = 0.05,
    ci: float = 0.95,
    seed: Any = 0,
) -> RSAInference:
    """Compare model RDMs with subjects' reference RDMs: scores, noise ceiling, bootstrap, tests.

    Score of model ``k``: ``r_k = (1/S) Σ_s sim(model_k, v_s)`` over the ``S`` subjects (one RDM:
    ``S = 1``). Columns of :attr:`RSAInference.table` (all at full precision):

    * ``r``; with ``noise_ceiling``: ``noise_ceiling_lower``, ``noise_ceiling_upper``
      (:func:`visreps.analysis.ceilings.rdm_noise_ceiling`) and the score as a fraction of each,
      ``r_over_lower = r / lower``, ``r_over_upper = r / upper``.
    * with ``bootstrap``: ``se = √var`` (:func:`bootstrap_variances`), the interval
      ``ci_low, ci_high = r ∓ t_{dof}((1+ci)/2) · se`` and the test of ``r > 0``: ``p_zero``
      (``test_type='t'``: :func:`t_test_zero` with ``dof`` of :attr:`BootstrapResult.dof`;
      ``'bootstrap'``: ``(1 + #{samples ≤ 0}) / N``), ``p_zero_corrected`` (``correction`` over the
      models), ``significant_zero = p_zero_corrected < alpha``; with ceilings also ``p_ceiling``, the
      two-sided test of ``r`` against the lower bound (``t``: :func:`t_test_two_sided` of
      ``r − lower``; ``bootstrap``: ``(1 + #{lower_b − r_b ≤ 0}) / N``, rsatoolbox's formula).
    * with ``test`` including ``permutation``: ``p_permutation`` (:func:`permutation_test`),
      ``p_permutation_corrected``, ``significant_permutation``.

    With ``test`` including ``pairwise`` (needs ``bootstrap``), :attr:`RSAInference.pairwise` has a row
    per pair ``a``, ``b``: ``r_a``, ``r_b``, ``difference = r_a − r_b``, ``se_difference``, ``p``
    (``t``: two-sided t-test of the difference; ``bootstrap``: :func:`bootstrap_pair_pvalues`),
    ``p_corrected`` (over all pairs), ``significant``.

    The estimates are the scores on all data (not the mean of the bootstrap samples, which rsatoolbox
    uses); everything is seeded by ``seed``.

    Args:
        model_rdms: label → model RDM (square or condensed), all for the same ``n`` images.
        reference: ``(subjects, n, n)`` stack, ``(subjects, m)`` condensed stack, or one RDM.
        method: ``pearson``, ``spearman``, ``kendall`` or ``tau_a``.
        noise_ceiling: compute the noise ceiling (needs 2+ subjects).
        bootstrap: ``images``, ``subjects`` or ``subjects,images`` (needs 2+ subjects for ``subjects``).
        n_bootstrap: bootstrap samples.
        test: ``zero`` (implied by a bootstrap), ``pairwise`` (needs a bootstrap), ``permutation``.
        test_type: ``t`` (default, rsatoolbox's) or ``bootstrap``.
        n_permutations: permutations per model (all of them when ``n!`` is not larger).
        correction: ``fdr`` (Benjamini–Hochberg), ``bonferroni`` or ``none``, within each family.
        alpha: significance level for the ``significant*`` columns.
        ci: level of the intervals.
        seed: seed of the bootstrap and the permutations.

    Raises:
        VisrepsError: a one-subject reference with ``noise_ceiling`` or a subject bootstrap; mismatched
            numbers of images; too few images to bootstrap; a pairwise test without bootstrap.
    """
    import pandas as pd
    from scipy import stats

    from .rsa import check_comparison, n_from_condensed

    method = check_comparison(method)
    fac = check_bootstrap(bootstrap)
    tests = check_tests(test)
    correction = check_correction(correction)
    _check_levels(test_type, ci, alpha, tests, fac)
    labels, M, D = _model_and_reference(model_rdms, reference)
    S = len(D)
    check_subjects(S, noise_ceiling=noise_ceiling, bootstrap=fac)
    r = rdm_similarities(M, D, method).mean(axis=1)
    table = pd.DataFrame({"label": labels, "r": r})
    out = RSAInference(table=table)
    if noise_ceiling:
        nc = rdm_noise_ceiling(D, method)
        out.noise_ceiling = nc
        table["noise_ceiling_lower"], table["noise_ceiling_upper"] = nc.lower, nc.upper
        with np.errstate(divide="ignore", invalid="ignore"):
            table["r_over_lower"], table["r_over_upper"] = r / nc.lower, r / nc.upper
    if fac:
        bs = bootstrap_evaluations(
            M, D, method=method, factors=fac, n_bootstrap=n_bootstrap, seed=seed, ceiling=noise_ceiling
        )
        out.bootstrap = bs
        _bootstrap_columns(out, r, alpha, ci, test_type, correction, tests, stats)
    if "permutation" in tests:
        _permutation_columns(out, M, D, method, n_permutations, seed, correction, alpha)
    table.attrs.update(method=method, n_conditions=n_from_condensed(M.shape[1]), n_subjects=S)
    table.attrs.update(bootstrap=",".join(fac) or None, n_bootstrap=int(n_bootstrap) if fac else 0)
    table.attrs.update(test_type=test_type, correction=correction, alpha=float(alpha), ci=float(ci), seed=seed)
    if out.noise_ceiling is not None:
        table.attrs["noise_ceiling"] = (out.noise_ceiling.lower, out.noise_ceiling.upper)
    if out.pairwise is not None:
        out.pairwise.attrs.update(table.attrs)
    return out


def _permutation_columns(out: RSAInference, M, D, method, n_permutations, seed, correction, alpha) -> None:
    table = out.table
    ps = []
    for lab, mv in zip(table["label"], M):
        _, p, nd = permutation_test(mv, D, method=method, n_permutations=n_permutations, seed=seed)
        out.null[lab] = nd
        ps.append(p)
    table["p_permutation"] = ps
    table["p_permutation_corrected"] = correct_pvalues(ps, correction)
    table["significant_permutation"] = table["p_permutation_corrected"] < alpha


def _bootstrap_columns(out: RSAInference, r, alpha, ci, test_type, correction, tests, stats) -> None:
    import pandas as pd

    bs, table = out.bootstrap, out.table
    assert bs is not None
    var = bootstrap_variances(bs)
    se = np.sqrt(np.maximum(var["model"], 0))
    dof = bs.dof
    q = stats.t.ppf((1 + ci) / 2, dof)
    table["se"], table["ci_low"], table["ci_high"] = se, r - q * se, r + q * se
    ok = bs.valid
    samples = bs.evaluations[0][ok]
    table["n_valid_samples"] = int(ok.sum())
    if test_type == "t":
        p_zero = t_test_zero(r, var["model"], dof)
    else:
        p_zero = (np.sum(samples <= 0, axis=0) + 1) / len(samples)
    table["p_zero"] = p_zero
    table["p_zero_corrected"] = correct_pvalues(p_zero, correction)
    table["significant_zero"] = table["p_zero_corrected"] < alpha
    if out.noise_ceiling is not None:
        lower = out.noise_ceiling.lower
        if test_type == "t":
            table["p_ceiling"] = t_test_two_sided(r - lower, var["ceiling"], dof)
        else:
            lows = bs.ceilings[0][ok][:, :1]
            table["p_ceiling"] = (np.sum(lows - samples <= 0, axis=0) + 1) / len(samples)
    if "pairwise" in tests:
        k = len(r)
        iu, ju = np.triu_indices(k, 1)
        diff = r[iu] - r[ju]
        if test_type == "t":
            p = t_test_two_sided(diff, var["difference"][iu, ju], dof)
        else:
            p = bootstrap_pair_pvalues(samples)[iu, ju]
        labels = list(table["label"])
        out.pairwise = pd.DataFrame(
            {
                "a": [labels[i] for i in iu],
                "b": [labels[j] for j in ju],
                "r_a": r[iu],
                "r_b": r[ju],
                "difference": diff,
                "se_difference": np.sqrt(np.maximum(var["difference"][iu, ju], 0)),
                "p": p,
            }
        )
        out.pairwise["p_corrected"] = correct_pvalues(p, correction)
        out.pairwise["significant"] = out.pairwise["p_corrected"] < alpha
