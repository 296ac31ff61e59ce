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
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import VisrepsError
from ..options import BOOTSTRAP_FACTORS, CORRECTIONS, TEST_TYPES
from .bootstrap import (
    MIN_BOOTSTRAP_IMAGES,
    BootstrapResult,
    bootstrap_evaluations,
    bootstrap_variances,
    check_bootstrap,
    check_count,
    check_images,
    draw_bootstrap_indices,
    run_bootstrap,
)
from .ceilings import rdm_noise_ceiling, rdm_similarities, subject_vectors

if TYPE_CHECKING:
    import pandas as pd

__all__ = [  # the bootstrap lives in .bootstrap; its names are kept here, where they were
    "BOOTSTRAP_FACTORS",
    "MIN_BOOTSTRAP_IMAGES",
    "BootstrapResult",
    "InferenceOptions",
    "RSAInference",
    "bootstrap_evaluations",
    "bootstrap_pair_pvalues",
    "bootstrap_variances",
    "check_bootstrap",
    "check_correction",
    "check_subjects",
    "check_tests",
    "correct_pvalues",
    "draw_bootstrap_indices",
    "permutation_test",
    "rdm_inference",
    "t_test_two_sided",
    "t_test_zero",
]

# --------------------------------------------------------------------------- arguments


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
    return _corrected(p, check_correction(correction))


def _corrected(p: Any, correction: str) -> np.ndarray:
    """:func:`correct_pvalues` with a checked ``correction``."""
    from scipy.stats import false_discovery_control

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
    from .rsa import check_comparison, upper_triangle

    method = check_comparison(method)
    mv = upper_triangle(model)
    d = np.asarray(data, dtype=np.float64)
    D = subject_vectors(d[None] if (d.ndim == 1 or (d.ndim == 2 and d.shape[0] == d.shape[1])) else d, need=1)
    if len(mv) != D.shape[1]:
        raise VisrepsError("the model RDM and the reference describe different numbers of images")
    return run_permutations(mv, D, method, check_count(n_permutations, "n_permutations", 1), seed)


def run_permutations(mv: np.ndarray, D: np.ndarray, method: str, n_permutations: int, seed: Any):
    """:func:`permutation_test` of checked arguments: a condensed model RDM and ``(subjects, m)`` references."""
    from .rsa import n_from_condensed, squareform

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


@dataclass(frozen=True)
class InferenceOptions:
    """The options of :func:`rdm_inference` (and ``rsa_inference``, ``visreps compare``), checked once.

    Built (and validated, with messages naming the bad parameter and the valid values) on the first line of the
    public functions, which keep their keyword arguments, and passed down as one object: nothing below checks
    them again. ``bootstrap`` and ``test`` are normalised to tuples (``"subjects,images"`` → ``("subjects",
    "images")``), ``method`` and ``correction`` to their canonical names. The meaning of every field is in
    :func:`rdm_inference`.
    """

    method: str = "pearson"
    noise_ceiling: bool = False
    bootstrap: Any = ()
    n_bootstrap: int = 1000
    test: Any = ()
    test_type: str = "t"
    n_permutations: int = 1000
    correction: str = "fdr"
    alpha: float = 0.05
    ci: float = 0.95
    seed: Any = 0

    def __post_init__(self) -> None:
        from .rsa import check_comparison

        fix = {"method": check_comparison(self.method), "bootstrap": check_bootstrap(self.bootstrap)}
        fix.update(test=check_tests(self.test), correction=check_correction(self.correction))
        for k, v in fix.items():
            object.__setattr__(self, k, v)
        if self.test_type not in TEST_TYPES:
            raise VisrepsError(f"test_type {self.test_type!r} is not known; use one of {', '.join(TEST_TYPES)}")
        ci, alpha = self.ci, self.alpha
        if not (isinstance(ci, (int, float)) and 0 < ci < 1) or not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
            raise VisrepsError(f"ci and alpha must be between 0 and 1, got ci={ci!r}, alpha={alpha!r}")
        if "pairwise" in self.test and not self.bootstrap:
            raise VisrepsError(
                "a pairwise test needs a bootstrap for the variance of the differences: add "
                "bootstrap='subjects,images' (CLI: --bootstrap subjects,images)"
            )
        if self.bootstrap:
            object.__setattr__(self, "n_bootstrap", check_count(self.n_bootstrap, "n_bootstrap", 2))
        if "permutation" in self.test:
            object.__setattr__(self, "n_permutations", check_count(self.n_permutations, "n_permutations", 1))

    @classmethod
    def pick(cls, values: Mapping[str, Any], **override: Any) -> InferenceOptions:
        """The options named in ``values`` (a function's keyword arguments, the CLI's parameters; other names are
        left out), with ``override`` on top: checked once, here."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in {**values, **override}.items() if k in names})

    def check_subjects(self, n_subjects: int) -> None:
        """The error for a one-subject reference asked for a noise ceiling or a bootstrap over subjects."""
        _check_subjects(n_subjects, self.noise_ceiling, self.bootstrap)

    def attrs(self) -> dict[str, Any]:
        """What a result table's ``attrs`` record of these options."""
        fac = self.bootstrap
        return {
            "bootstrap": ",".join(fac) or None,
            "n_bootstrap": int(self.n_bootstrap) if fac else 0,
            "test_type": self.test_type,
            "correction": self.correction,
            "alpha": float(self.alpha),
            "ci": float(self.ci),
            "seed": self.seed,
        }


def check_subjects(n_subjects: int, *, noise_ceiling: bool, bootstrap: Any) -> None:
    """Raise the error for a one-subject reference asked for a noise ceiling or a bootstrap over subjects."""
    _check_subjects(n_subjects, noise_ceiling, check_bootstrap(bootstrap))


def _check_subjects(n_subjects: int, noise_ceiling: bool, factors: tuple[str, ...]) -> None:
    if n_subjects < 2 and (noise_ceiling or "subjects" in factors):
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
    return run_inference(model_rdms, reference, InferenceOptions.pick(locals()))


def run_inference(model_rdms: Mapping[str, Any], reference: Any, opts: InferenceOptions) -> RSAInference:
    """:func:`rdm_inference` with its options as one checked object."""
    import pandas as pd

    from .rsa import n_from_condensed

    labels, M, D = _model_and_reference(model_rdms, reference)
    opts.check_subjects(len(D))
    r = rdm_similarities(M, D, opts.method).mean(axis=1)
    table = pd.DataFrame({"label": labels, "r": r})
    out = RSAInference(table=table)
    if opts.noise_ceiling:
        nc = rdm_noise_ceiling(D, opts.method)
        out.noise_ceiling = nc
        table["noise_ceiling_lower"], table["noise_ceiling_upper"] = nc.lower, nc.upper
        with np.errstate(divide="ignore", invalid="ignore"):
            table["r_over_lower"], table["r_over_upper"] = r / nc.lower, r / nc.upper
    if opts.bootstrap:
        check_images(n_from_condensed(D.shape[1]), opts.bootstrap)
        out.bootstrap = run_bootstrap(
            M, D, opts.method, opts.bootstrap, opts.n_bootstrap, opts.seed, ceiling=opts.noise_ceiling
        )
        _bootstrap_columns(out, r, opts)
    if "permutation" in opts.test:
        _permutation_columns(out, M, D, opts)
    table.attrs.update(method=opts.method, n_conditions=n_from_condensed(M.shape[1]), n_subjects=len(D))
    table.attrs.update(opts.attrs())
    if out.noise_ceiling is not None:
        table.attrs["noise_ceiling"] = (out.noise_ceiling.lower, out.noise_ceiling.upper)
    if out.pairwise is not None:
        out.pairwise.attrs.update(table.attrs)
    return out


def _permutation_columns(out: RSAInference, M: np.ndarray, D: np.ndarray, opts: InferenceOptions) -> None:
    table = out.table
    ps = []
    for lab, mv in zip(table["label"], M):
        _, p, nd = run_permutations(mv, D, opts.method, opts.n_permutations, opts.seed)
        out.null[lab] = nd
        ps.append(p)
    table["p_permutation"] = ps
    table["p_permutation_corrected"] = _corrected(ps, opts.correction)
    table["significant_permutation"] = table["p_permutation_corrected"] < opts.alpha


def _bootstrap_columns(out: RSAInference, r: np.ndarray, opts: InferenceOptions) -> None:
    import pandas as pd
    from scipy import stats

    alpha, ci, test_type, correction = opts.alpha, opts.ci, opts.test_type, opts.correction

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
    table["p_zero_corrected"] = _corrected(p_zero, correction)
    table["significant_zero"] = table["p_zero_corrected"] < alpha
    if out.noise_ceiling is not None:
        lower = out.noise_ceiling.lower
        if test_type == "t":
            table["p_ceiling"] = t_test_two_sided(r - lower, var["ceiling"], dof)
        else:
            lows = bs.ceilings[0][ok][:, :1]
            table["p_ceiling"] = (np.sum(lows - samples <= 0, axis=0) + 1) / len(samples)
    if "pairwise" in opts.test:
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
        out.pairwise["p_corrected"] = _corrected(p, correction)
        out.pairwise["significant"] = out.pairwise["p_corrected"] < alpha
