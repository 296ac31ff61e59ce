"""Time-resolved RSA for MEG/EEG: each layer's RDM against reference RDMs over time.

The reference is a stack of RDMs ``time × n × n``, or ``subjects × time × n × n``. At every time
point ``t`` and for every subject ``s``, the layer's RDM is correlated with the reference RDM over
the upper triangles (``method``: Pearson r, or Spearman ρ = Pearson r of the ranks), giving
``r[s, t]``; the time course is the mean over subjects.

* **Bootstrap bands.** With several subjects, subjects are resampled with replacement
  (``n_bootstrap`` times); with one, images are resampled (pairs of an image with its own copy are
  left out, as in rsatoolbox). The band is the percentile interval of the resampled mean curves.
* **Clusters over time.** With several subjects, MNE-Python's cluster-based permutation test
  (``mne.stats.permutation_cluster_1samp_test``: one-sample t over subjects at each time point,
  clusters of adjacent time points above ``threshold``, cluster mass against sign-flip
  permutations, ``tail=1``: correlations above 0 by default) on ``r[s, t]``. With one subject, no
  cluster test is run (``clusters`` is empty and ``info["cluster_test"]`` says why).
* **Peak latency.** The time of the largest mean correlation; its interval is the percentile
  interval of the peak times of the bootstrap curves.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import VisrepsError
from ..options import CORRELATIONS as METHODS
from ._params import LayerSelection, check_bootstrap, is_whole

if TYPE_CHECKING:
    import pandas as pd


TIME_RDM_SUFFIXES = (".npy", ".npz", ".mat", ".h5", ".hdf5")


@dataclass
class TimeRDMs:
    """Reference RDMs over time: ``rdms`` ``(subjects, time, n, n)``, the ``times``, the image of each row."""

    rdms: np.ndarray
    times: np.ndarray
    images: list[str] | None = None
    source: Path | None = None

    @property
    def n_subjects(self) -> int:
        return len(self.rdms)


@dataclass
class TimeRSAResult:
    """What :func:`time_resolved_rsa` returns.

    Attributes:
        timecourse: one row per (layer, time): ``label``, ``model``, ``layer``, ``time``, ``r`` (mean over
            subjects), ``ci_low``, ``ci_high`` (bootstrap band), ``significant`` (in a cluster with
            ``p < alpha``).
        peaks: one row per layer: ``peak_time``, ``peak_r``, ``peak_ci_low``, ``peak_ci_high``.
        clusters: one row per (layer, cluster): ``start``, ``stop`` (first and last time), ``p_value``,
            ``significant``.
        subjects: label → ``r`` per subject and time ``(subjects, time)``.
        info: method, rdm_method, n_subjects, n_bootstrap, bootstrap (subjects/images), cluster settings.
    """

    timecourse: pd.DataFrame
    peaks: pd.DataFrame
    clusters: pd.DataFrame
    subjects: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- reading


def read_time_rdm_file(path: Path, key: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The RDM stack of a ``.npy``/``.npz``/``.mat``/``.h5`` file, and its ``times`` variable when it has one
    (read by the one reader of users' files, :mod:`visreps.analysis._files`)."""
    from ._files import pick_variable, read_variables

    if path.suffix.lower() == ".npy":
        try:
            return np.load(path, allow_pickle=False), None
        except (ValueError, OSError, EOFError) as e:
            raise VisrepsError(f"cannot read {str(path)!r} as a numeric .npy array: {e}") from None
    variables, _ = read_variables(path)
    arr, _ = pick_variable(variables, key, path, keep=lambda name, a: a.ndim in (3, 4), what="RDM stack")
    times = variables.get("times")
    return arr, None if times is None else np.asarray(times, dtype=np.float64).ravel()


def as_time_rdms(arr: Any, *, name: str = "the reference") -> np.ndarray:
    """Validate a ``time × n × n`` or ``subjects × time × n × n`` stack; returned 4-D float64."""
    try:
        a = np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise VisrepsError(f"{name} is not numeric ({e})") from None
    if a.ndim not in (3, 4) or a.shape[-1] != a.shape[-2]:
        hint = ""
        if a.ndim in (3, 4) and a.shape[0] == a.shape[1]:
            hint = (
                "; it looks like (n, n, ...): put time (and subjects) first, e.g. np.moveaxis(rdms, (0, 1), (-2, -1))"
            )
        raise VisrepsError(
            f"{name} must be RDMs over time, shaped (time, n, n) or (subjects, time, n, n); got {a.shape}{hint}"
        )
    if a.shape[-1] < 3:
        raise VisrepsError(f"{name}: RDMs of {a.shape[-1]} images; at least 3 are needed")
    if not np.isfinite(a).all():
        bad = np.argwhere(~np.isfinite(a))[0].tolist()
        raise VisrepsError(f"{name} holds NaN or infinite values (e.g. at index {bad}); fill or drop them")
    return a[None] if a.ndim == 3 else a


def load_time_rdms(
    reference: Any,
    *,
    times: Any = None,
    key: str | None = None,
    images: Sequence[str] | str | os.PathLike | None = None,
) -> TimeRDMs:
    """Reference RDMs over time from a file or an array (see :func:`as_time_rdms`).

    ``times``: one value per time point (default: the file's ``times`` variable, else 0, 1, ...).
    ``images``: the image of every RDM row (a list or an order file); default: manifest order.
    """
    from .responses import read_order

    source = None
    file_times = None
    if isinstance(reference, (str, os.PathLike)):
        source = Path(reference).expanduser()
        if not source.is_file():
            raise VisrepsError(f"reference RDM file {str(source)!r} does not exist")
        if source.suffix.lower() not in TIME_RDM_SUFFIXES:
            raise VisrepsError(
                f"reference {str(source)!r}: format {source.suffix or '(none)'!r} is not supported; use "
                f"{', '.join(TIME_RDM_SUFFIXES)}"
            )
        reference, file_times = read_time_rdm_file(source, key)
    name = f"reference {source.name!r}" if source else "the reference"
    rdms = as_time_rdms(reference, name=name)
    t = file_times if times is None else np.asarray(times, dtype=np.float64).ravel()
    if t is None:
        t = np.arange(rdms.shape[1], dtype=np.float64)
    if len(t) != rdms.shape[1]:
        raise VisrepsError(f"{name} has {rdms.shape[1]} time points but {len(t)} times were given; give one per point")
    names = None if images is None else read_order(images, rdms.shape[-1], where=name)
    return TimeRDMs(rdms, t, names, source)


# --------------------------------------------------------------------------- correlations


def _ranks(v: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(v, axis=-1)


def _corr_rows(x: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Pearson r of ``x`` (P,) with every row of ``Y`` (..., P); NaN where a vector is constant."""
    xc = x - x.mean()
    Yc = Y - Y.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        den = np.sqrt((xc @ xc) * np.einsum("...p,...p->...", Yc, Yc))
        return np.where(den > 0, (Yc @ xc) / np.where(den > 0, den, 1.0), np.nan)


def timecourse(layer_rdm: np.ndarray, rdms: np.ndarray, method: str = "spearman") -> np.ndarray:
    """``r[s, t]``: the layer's RDM correlated with every reference RDM (upper triangles)."""
    n = layer_rdm.shape[0]
    iu = np.triu_indices(n, 1)
    x = layer_rdm[iu]
    Y = rdms[..., iu[0], iu[1]]
    if method == "spearman":
        x, Y = _ranks(x), _ranks(Y)
    return _corr_rows(x, Y)


def _image_bootstrap(layer_rdm, rdms, method, n_bootstrap, rng) -> np.ndarray:
    """Mean-over-subjects curves of ``n_bootstrap`` image resamples ``(n_bootstrap, time)``."""
    n = layer_rdm.shape[0]
    iu, ju = np.triu_indices(n, 1)
    out = np.empty((n_bootstrap, rdms.shape[1]))
    for k in range(n_bootstrap):
        s = rng.integers(0, n, size=n)
        si, sj = s[iu], s[ju]
        keep = si != sj
        a, b = si[keep], sj[keep]
        x = layer_rdm[a, b]
        Y = rdms[:, :, a, b]
        if method == "spearman":
            x, Y = _ranks(x), _ranks(Y)
        out[k] = np.nanmean(_corr_rows(x, Y), axis=0)
    return out


def cluster_test(
    r: np.ndarray, *, n_permutations: int, threshold: float | None, tail: int, seed: int
) -> list[tuple[np.ndarray, float]]:
    """MNE's one-sample cluster permutation test over time on ``r`` ``(subjects, time)``: (mask, p) per cluster."""
    try:
        from mne.stats import permutation_cluster_1samp_test
    except ImportError:
        from ..errors import MissingExtraError

        raise MissingExtraError("the cluster test over time needs MNE-Python: pip install 'visreps[brain]'") from None
    import inspect

    seeding = "rng" if "rng" in inspect.signature(permutation_cluster_1samp_test).parameters else "seed"
    kw: dict[str, Any] = {seeding: seed}  # MNE 1.6–1.10: seed=; later: rng=
    _, clusters, pvals, _ = permutation_cluster_1samp_test(
        r, threshold=threshold, n_permutations=n_permutations, tail=tail, out_type="mask", verbose=False, **kw
    )
    out = []
    for c, p in zip(clusters, pvals):
        mask = np.zeros(r.shape[1], dtype=bool)
        mask[c] = True  # a boolean mask, or (for 1-D data) a tuple holding a slice
        out.append((mask, float(p)))
    return out


# --------------------------------------------------------------------------- the entry point


def _check(method: str, n_bootstrap: Any, ci: Any, tail: Any, n_permutations: Any) -> None:
    if method not in METHODS:
        raise VisrepsError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    check_bootstrap(n_bootstrap, ci, zero="no bands")
    if tail not in (-1, 0, 1):
        raise VisrepsError(f"tail must be 1 (r > 0), -1 (r < 0) or 0 (both), got {tail!r}")
    if not is_whole(n_permutations) or n_permutations < 1:
        raise VisrepsError(f"n_permutations must be a positive integer, got {n_permutations!r}")


def time_resolved_rsa(
    features: Any,
    reference: Any,
    *,
    times: Any = None,
    layers: LayerSelection = None,
    rdm_method: str = "correlation",
    method: str = "spearman",
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    n_permutations: int = 1000,
    threshold: float | None = None,
    tail: int = 1,
    alpha: float = 0.05,
    seed: int = 0,
    key: str | None = None,
    order: Sequence[str] | str | os.PathLike | None = None,
    block_size: int | None = None,
    device: Any = "auto",
) -> TimeRSAResult:
    """Correlation time course of every layer's RDM with reference RDMs over time (see the module documentation).

    Args:
        features: output folders, ``Features``, arrays, or a list/dict of them.
        reference: ``(time, n, n)`` or ``(subjects, time, n, n)`` RDMs: an array, a :class:`TimeRDMs`, or a file
            (``.npy``, ``.npz``, ``.mat``, ``.h5``; the variable ``key``, else the one 3-D/4-D array).
        times: the time of every point (default: the file's ``times``, else 0, 1, ...).
        rdm_method: the layers' RDM (:func:`visreps.analysis.compute_rdm`).
        method: ``spearman`` (default) or ``pearson`` correlation of the upper triangles.
        n_bootstrap: resamples (subjects, or images with one subject) for the bands and the peak interval.
        n_permutations, threshold, tail: MNE's cluster test (``threshold=None``: the t value of p = 0.05).
        alpha: clusters with ``p < alpha`` are significant.
        order: the image of every reference row (a list or an order file); default: manifest order.

    Raises:
        VisrepsError: a stack that is not ``(time, n, n)``/``(subjects, time, n, n)`` (with the transpose
            to use), NaN, image sets that do not match, bad options.
    """
    import pandas as pd

    from .compare import collect_features
    from .responses import match_images
    from .rsa import compute_rdm

    _check(method, n_bootstrap, ci, tail, n_permutations)
    ref = (
        reference if isinstance(reference, TimeRDMs) else load_time_rdms(reference, times=times, key=key, images=order)
    )
    sets = collect_features(features, layers=layers)
    first = next((s for s in sets if s.paths is not None), sets[0])
    where = f"reference {ref.source.name!r}" if ref.source else "the reference"
    idx = match_images(ref.images, first.paths, n_rows=ref.rdms.shape[-1], n_features=first.n, where=where)
    n_sub = ref.n_subjects
    rng = np.random.default_rng(seed)
    boot_subjects = rng.integers(0, n_sub, size=(n_bootstrap, n_sub)) if n_sub > 1 else None
    rows, peaks, clusters, per_subject = [], [], [], {}
    for s in sets:
        rows_s = idx if s.order is None or s is first else s.order[idx]
        rdm = compute_rdm(s.features, rdm_method, block_size=block_size, device=device)[np.ix_(rows_s, rows_s)]
        r = per_subject[s.label] = timecourse(rdm, ref.rdms, method)
        mean = np.nanmean(r, axis=0)
        boot = _bootstrap_curves(r, rdm, ref.rdms, method, n_bootstrap, boot_subjects, rng)
        sig, found = _clusters(r, ref.times, n_permutations, threshold, tail, seed, alpha)
        ident = {"label": s.label, "model": s.model, "layer": s.layer}
        rows.append(_course_table(ident, ref.times, mean, boot, ci, sig))
        peaks.append({**ident, **_peak(mean, boot, ref.times, ci)})
        clusters += [{**ident, **c} for c in found]
    info = {"method": method, "rdm_method": rdm_method, "n_subjects": n_sub, "n_bootstrap": int(n_bootstrap)}
    info.update(bootstrap="subjects" if n_sub > 1 else "images", ci=float(ci), seed=seed, alpha=float(alpha))
    info.update(n_permutations=int(n_permutations), threshold=threshold, tail=int(tail), n_images=int(len(idx)))
    info["cluster_test"] = "mne.stats.permutation_cluster_1samp_test" if n_sub > 1 else "none: one subject"
    cl_cols = ["label", "model", "layer", "cluster", "start", "stop", "p_value", "significant"]
    out = TimeRSAResult(
        pd.concat(rows, ignore_index=True), pd.DataFrame(peaks), pd.DataFrame(clusters, columns=cl_cols), per_subject
    )
    out.info = info
    for df in (out.timecourse, out.peaks, out.clusters):
        df.attrs.update(info)
    return out


def _bootstrap_curves(r, rdm, rdms, method, n_bootstrap, boot_subjects, rng) -> np.ndarray:
    """Bootstrap mean curves ``(n_bootstrap, time)``: subjects resampled (``boot_subjects``), else images."""
    if n_bootstrap == 0:
        return np.empty((0, r.shape[1]))
    if boot_subjects is not None:
        return np.stack([np.nanmean(r[b], axis=0) for b in boot_subjects])
    return _image_bootstrap(rdm, rdms, method, n_bootstrap, rng)


def _clusters(r, times, n_permutations, threshold, tail, seed, alpha) -> tuple[np.ndarray, list[dict[str, Any]]]:
    sig = np.zeros(r.shape[1], dtype=bool)
    if r.shape[0] < 2:
        return sig, []
    found = []
    for k, (mask, p) in enumerate(
        cluster_test(r, n_permutations=n_permutations, threshold=threshold, tail=tail, seed=seed)
    ):
        at = np.flatnonzero(mask)
        found.append(
            {
                "cluster": k,
                "start": float(times[at[0]]),
                "stop": float(times[at[-1]]),
                "p_value": p,
                "significant": p < alpha,
            }
        )
        if p < alpha:
            sig |= mask
    return sig, found


def _course_table(ident, times, mean, boot, ci, sig) -> pd.DataFrame:
    import pandas as pd

    if len(boot):
        lo, hi = np.nanquantile(boot, [(1 - ci) / 2, 1 - (1 - ci) / 2], axis=0)
    else:
        lo = hi = np.full(len(mean), np.nan)
    return pd.DataFrame({**ident, "time": times, "r": mean, "ci_low": lo, "ci_high": hi, "significant": sig})


def _peak(mean: np.ndarray, boot: np.ndarray, times: np.ndarray, ci: float) -> dict[str, float]:
    if np.isnan(mean).all():
        return {"peak_time": np.nan, "peak_r": np.nan, "peak_ci_low": np.nan, "peak_ci_high": np.nan}
    k = int(np.nanargmax(mean))
    lo = hi = np.nan
    ok = ~np.isnan(boot).all(axis=1) if len(boot) else np.zeros(0, dtype=bool)
    if ok.any():
        at = times[np.nanargmax(boot[ok], axis=1)]
        lo, hi = np.quantile(at, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return {"peak_time": float(times[k]), "peak_r": float(mean[k]), "peak_ci_low": float(lo), "peak_ci_high": float(hi)}
