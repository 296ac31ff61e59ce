"""Honest layer selection: the split, the selection scores, the committed layer and its held-out score.

For every model × target, each layer is scored on the *selection* images, the best one is
committed, and the reported score is the committed layer's score on the *test* images only:

* RSA targets: the model RDM and every subject's RDM restricted to the test images; score = mean
  over subjects of the comparison (:func:`visreps.analysis.rdm_inference`), with the noise ceiling,
  bootstrap interval and pairwise tests (FDR) computed on the same test images.
* Odd-one-out targets (``triplets``): a layer's score is its accuracy on the triplets whose three images are all
  in the part (selection or test; mixed triplets are in neither), with the bootstrap interval over test triplets,
  the ceiling from repeated test triplets and exact McNemar tests between models.
* Time-resolved targets (``time_rdms``): a layer's selection score is the peak over time of its mean-over-subjects
  correlation on the selection images; the committed layer's latency ``t*`` is that peak's time, and its score the
  correlation at ``t*`` on the test images (interval, ceiling and tests at ``t*``, see :func:`time_test`).
* Encoding targets: cross-validated encoding (:func:`visreps.analysis.encode`) trained and tested
  within the test images; score = mean over targets of the held-out Pearson r of all out-of-fold
  predictions at once (``r_pooled``: with few test images a fold's own r is ±1 or undefined); ceiling = mean of
  ``√ρ`` (split-half reliability of the test images' repetitions); interval and pairwise tests over
  targets (paired t-tests, FDR).
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any

import numpy as np

from ..errors import VisrepsError


def make_split(labels: list[str], share: float, seed: int) -> np.ndarray:
    """``True`` for the selection images, ``False`` for the test images.

    Seeded (``numpy.random.default_rng(seed)``) and stratified by label when the images have more
    than one class folder: within each label (in sorted order) the images are permuted and the first
    ``round(share · count)`` go to selection. Without labels, all images form one group.
    """
    lab = np.asarray([str(x) for x in labels], dtype=object)
    groups = sorted(set(lab.tolist())) if len(set(lab.tolist())) > 1 else [None]
    rng = np.random.default_rng(seed)
    sel = np.zeros(len(lab), dtype=bool)
    for g in groups:
        members = np.arange(len(lab)) if g is None else np.flatnonzero(lab == g)
        perm = rng.permutation(members)
        sel[perm[: int(round(share * len(members)))]] = True
    return sel


def folds_of(sel: np.ndarray, cv: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(selection indices, test indices)`` per fold: the split, and with ``cv = 2`` also its swap."""
    a, b = np.flatnonzero(sel), np.flatnonzero(~sel)
    return [(a, b)] if cv == 1 else [(a, b), (b, a)]


def _sub(rdm: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return rdm[np.ix_(idx, idx)]


def _best(scores: dict[str, float], where: str) -> str:
    finite = {k: v for k, v in scores.items() if np.isfinite(v)}
    if not finite:
        raise VisrepsError(f"{where}: no layer has a defined selection score (constant features?); choose other layers")
    return max(finite, key=lambda k: finite[k])  # the first of equal maxima, in layer order


# --------------------------------------------------------------------------- RSA


def rsa_layer_scores(rdms: dict[str, np.ndarray | None], ref: np.ndarray, idx: np.ndarray | None, method: str) -> dict:
    """Score of every layer's RDM (``None``: undefined) against the subjects' RDMs, on the images ``idx``."""
    from ..analysis import rdm_inference

    ok = {k: (v if idx is None else _sub(v, idx)) for k, v in rdms.items() if v is not None}
    out = {k: float("nan") for k in rdms}
    if ok:
        D = ref if idx is None else ref[:, idx][:, :, idx]
        table = rdm_inference(ok, D, method=method).table
        out.update(dict(zip(ok, table["r"].astype(float))))
    return out


def rsa_test(
    committed: dict[str, np.ndarray], ref: np.ndarray, idx: np.ndarray, analysis: dict[str, Any], factors: str | None
) -> tuple[dict[str, dict[str, float]], Any]:
    """Held-out scores of the committed RDMs (label → RDM) on the images ``idx``: rows and pairwise table.

    The noise ceiling is :func:`visreps.analysis.rdm_noise_ceiling` of the subjects' RDMs on the same
    test images (not bootstrapped: the bench reports its bounds, not a test against them).
    """
    from ..analysis import rdm_inference, rdm_noise_ceiling

    D = ref[:, idx][:, :, idx]
    method = analysis["rsa"]["compare"]
    models = {k: _sub(v, idx) for k, v in committed.items()}
    pairwise = analysis["test"] == "pairwise" and len(models) > 1 and factors
    res = rdm_inference(
        models,
        D,
        method=method,
        bootstrap=factors,
        n_bootstrap=int(analysis["bootstrap"]["n"]),
        test="pairwise" if pairwise else None,
        correction=analysis["correction"],
        ci=float(analysis["ci"]),
        seed=analysis["bootstrap"]["seed"],
    )
    nc = rdm_noise_ceiling(D, method) if len(D) >= 2 else None
    t = res.table
    rows = {}
    for i, lab in enumerate(t["label"]):
        rows[lab] = {
            "score": float(t["r"].iloc[i]),
            "ceiling_lower": nc.lower if nc is not None else np.nan,
            "ceiling_upper": nc.upper if nc is not None else np.nan,
            "ci_low": float(t["ci_low"].iloc[i]) if "ci_low" in t else np.nan,
            "ci_high": float(t["ci_high"].iloc[i]) if "ci_high" in t else np.nan,
        }
    return rows, res.pairwise


# --------------------------------------------------------------------------- encoding


def _encode(X: Any, resp: Any, idx: np.ndarray | None, analysis: dict[str, Any], *, ceiling: bool):
    from ..analysis import encode

    enc = analysis["encoding"]
    Xs = np.asarray(X if idx is None else X[idx], dtype=np.float32)
    r = resp if idx is None else resp.take_images(idx)
    kw: dict[str, Any] = {}
    if enc.get("alphas") is not None:
        kw["alphas"] = enc["alphas"]
    has_reps = "repetitions" in r.axes and r.n_repetitions >= 2
    with warnings.catch_warnings():  # the per-fold r of small folds: the bench scores r_pooled, not them
        warnings.filterwarnings("ignore", message="a test fold has only")
        return encode(
            Xs.reshape(len(Xs), -1),
            r,
            method=enc["model"],
            folds=int(enc["folds"]),
            seed=int(analysis["selection"]["seed"]),
            ceiling=True if (ceiling and has_reps) else None,
            **kw,
        )


def encoding_layer_scores(feats: Any, layers: list[str], resp: Any, idx: np.ndarray | None, analysis) -> dict:
    """Mean over targets of the cross-validated r of every layer, within the images ``idx``."""
    out = {}
    for layer in layers:
        res = _encode(feats[layer], resp, idx, analysis, ceiling=False)
        out[layer] = float(res.layers["r_pooled_mean"].iloc[0])
    return out


def encoding_test(committed: dict[str, Any], resp: Any, idx: np.ndarray, analysis: dict[str, Any]):
    """Held-out scores of the committed layers (label → array) within the images ``idx``: rows and pairwise."""
    import pandas as pd
    from scipy import stats

    per_target: dict[str, np.ndarray] = {}
    rows = {}
    level = float(analysis["ci"])
    for lab, X in committed.items():
        res = _encode(X, resp, idx, analysis, ceiling=True)
        r = res.targets["r_pooled"].to_numpy(dtype=np.float64)
        per_target[lab] = r
        ok = r[np.isfinite(r)]
        score = float(ok.mean()) if len(ok) else np.nan
        half = np.nan
        if len(ok) > 1:
            half = float(stats.t.ppf((1 + level) / 2, len(ok) - 1) * ok.std(ddof=1) / np.sqrt(len(ok)))
        ceil = float(res.layers["ceiling_r"].iloc[0]) if "ceiling_r" in res.layers else np.nan
        rows[lab] = {
            "score": score,
            "ceiling_lower": np.nan,
            "ceiling_upper": ceil,
            "ci_low": score - half,
            "ci_high": score + half,
        }
    pairwise = None
    labels = list(committed)
    if analysis["test"] == "pairwise" and len(labels) > 1:
        recs = []
        for i in range(len(labels)):
            for j in range(i + 1, len(labels)):
                a, b = per_target[labels[i]], per_target[labels[j]]
                keep = np.isfinite(a) & np.isfinite(b)
                d = a[keep] - b[keep]
                p = float(stats.ttest_rel(a[keep], b[keep]).pvalue) if len(d) > 1 and np.any(d != d[0]) else np.nan
                recs.append(
                    {
                        "a": labels[i],
                        "b": labels[j],
                        "r_a": rows[labels[i]]["score"],
                        "r_b": rows[labels[j]]["score"],
                        "difference": rows[labels[i]]["score"] - rows[labels[j]]["score"],
                        "se_difference": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else np.nan,
                        "p": p,
                    }
                )
        pairwise = with_corrected(pd.DataFrame(recs), analysis["correction"])
    return rows, pairwise


def with_corrected(pairwise: Any, correction: str) -> Any:
    """``pairwise`` with ``p_corrected`` (``correction`` over the defined p values) and ``significant`` (< 0.05)."""
    from ..analysis import correct_pvalues

    p = pairwise["p"].to_numpy(dtype=np.float64)
    corrected = np.full(len(p), np.nan)
    finite = np.isfinite(p)
    if finite.any():
        corrected[finite] = correct_pvalues(p[finite], correction)
    pairwise["p_corrected"] = corrected
    pairwise["significant"] = corrected < 0.05
    return pairwise


def restrict_responses(resp: Any, paths: list[str], where: str) -> Any:
    """The responses with their image rows in the images' order (matched by name when the file names them)."""
    from ..analysis.responses import match_images

    idx = match_images(
        resp.images, paths, n_rows=resp.n_images, n_features=len(paths), where=where, features="the images"
    )
    inv = np.empty(len(idx), dtype=np.intp)
    inv[idx] = np.arange(len(idx))
    return replace(resp.take_images(inv), images=None)


# --------------------------------------------------------------------------- odd-one-out


def triplets_within(rows: np.ndarray, idx: np.ndarray | None) -> np.ndarray:
    """The triplets (mask) whose three images are all among the images ``idx`` (``None``: all triplets).

    A triplet that mixes the parts is in neither: a layer is chosen on choices about selection images only, and
    scored on choices about test images only, as the other targets are.
    """
    return np.ones(len(rows), dtype=bool) if idx is None else np.asarray(np.isin(rows, idx).all(axis=1))


def triplet_agreement(X: Any, rows: np.ndarray, odd: np.ndarray, similarity: str, name: str) -> np.ndarray:
    """Per triplet, whether the layer's odd one out is the human's (a tie for the closest pair: no)."""
    from ..analysis.behaviour import choices_from_similarities, triplet_similarities

    return choices_from_similarities(*triplet_similarities(X, rows, similarity, name=name)) == odd


def ooo_test(agree: dict[str, np.ndarray], rows: np.ndarray, odd: np.ndarray, mask: np.ndarray, analysis) -> tuple:
    """Held-out accuracy of the committed layers (label → per-triplet agreement) on the triplets ``mask``.

    Interval: the percentile bootstrap over triplets (:func:`visreps.analysis.behaviour.bootstrap_accuracy`);
    ceiling (upper): the agreement of repeated test triplets with their most frequent choice (none without
    repeats); pairwise: exact McNemar tests on the test triplets (FDR, or the spec's correction).
    """
    import pandas as pd
    from scipy import stats

    from ..analysis.behaviour import bootstrap_accuracy, noise_ceiling

    ceiling, _, _ = noise_ceiling(rows[mask], odd[mask])
    n_boot, level = int(analysis["bootstrap"]["n"]), float(analysis["ci"])
    rng = np.random.default_rng(analysis["bootstrap"]["seed"])
    out = {}
    for lab, a in agree.items():
        acc = float(a[mask].mean())
        lo, hi = (np.nan, np.nan)
        if n_boot:
            lo, hi = bootstrap_accuracy(acc, int(mask.sum()), n_bootstrap=n_boot, ci=level, rng=rng)
        out[lab] = {"score": acc, "ceiling_lower": np.nan, "ceiling_upper": ceiling, "ci_low": lo, "ci_high": hi}
    labels = list(agree)
    if analysis["test"] != "pairwise" or len(labels) < 2:
        return out, None
    recs = []
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            a, b = agree[labels[i]][mask], agree[labels[j]][mask]
            only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
            d = a.astype(np.float64) - b.astype(np.float64)
            p = float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue) if only_a + only_b else 1.0
            se = float(d.std(ddof=1) / np.sqrt(len(d)))
            recs.append({"a": labels[i], "b": labels[j], "r_a": out[labels[i]]["score"]})
            recs[-1].update(r_b=out[labels[j]]["score"], difference=float(d.mean()), se_difference=se, p=p)
    return out, with_corrected(pd.DataFrame(recs), analysis["correction"])


# --------------------------------------------------------------------------- time-resolved RSA


def time_courses(rdm: np.ndarray, D: np.ndarray, idx: np.ndarray | None, method: str) -> np.ndarray:
    """``r[s, t]``: the model RDM against every subject's RDM at every time point, on the images ``idx``."""
    from ..analysis.timeseries import timecourse

    if idx is None:
        return timecourse(rdm, D, method)
    return timecourse(_sub(rdm, idx), D[:, :, idx][:, :, :, idx], method)


def _peak(r: np.ndarray) -> tuple[float, int]:
    """The largest mean-over-subjects correlation and its time index (NaN, 0 when none is defined)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a time point where every subject's r is NaN
        mean = np.nanmean(r, axis=0)
    if not np.isfinite(mean).any():
        return float("nan"), 0
    t = int(np.nanargmax(mean))
    return float(mean[t]), t


def time_layer_scores(rdms: dict[str, np.ndarray | None], D: np.ndarray, idx: np.ndarray | None, method: str) -> dict:
    """Every layer's peak (over time) of the mean-over-subjects correlation, on the images ``idx``."""
    return {k: (_peak(time_courses(v, D, idx, method))[0] if v is not None else float("nan")) for k, v in rdms.items()}


def time_test(chosen: dict[str, np.ndarray], D: np.ndarray, times: np.ndarray, parts, analysis: dict[str, Any]):
    """Held-out scores of the committed layers (label → RDM): each at its own latency, chosen on the selection images.

    ``parts``: (selection indices, test indices). The latency ``t*`` of a model is the peak of its committed layer's
    mean course on the selection images; ``score`` is the mean over subjects of its correlation at ``t*`` on the test
    images. Interval: subjects resampled (images, with one subject); ceiling: Nili et al.'s bounds of the subjects'
    test RDMs at ``t*``; pairwise: paired t-tests over subjects (FDR), each model at its own ``t*``.
    """
    import pandas as pd
    from scipy import stats

    from ..analysis import rdm_noise_ceiling
    from ..analysis.timeseries import _image_bootstrap

    si, ti = parts
    method, level = analysis["rsa"]["compare"], float(analysis["ci"])
    n_boot, rng = int(analysis["bootstrap"]["n"]), np.random.default_rng(analysis["bootstrap"]["seed"])
    Dt = D[:, :, ti][:, :, :, ti]
    rows, at = {}, {}
    for lab, rdm in chosen.items():
        t = _peak(time_courses(rdm, D, si, method))[1]
        r = time_courses(rdm, D, ti, method)[:, t]
        at[lab] = r
        if len(r) >= 2:
            boot = r[rng.integers(0, len(r), size=(n_boot, len(r)))].mean(axis=1)
            nc = rdm_noise_ceiling(Dt[:, t], method)
            lower, upper = nc.lower, nc.upper
        else:
            boot = _image_bootstrap(_sub(rdm, ti), Dt[:, t : t + 1], method, n_boot, rng)[:, 0]
            lower = upper = np.nan
        lo, hi = np.nanquantile(boot, [(1 - level) / 2, 1 - (1 - level) / 2])
        rows[lab] = {"score": float(np.mean(r)), "ceiling_lower": lower, "ceiling_upper": upper}
        rows[lab].update(ci_low=float(lo), ci_high=float(hi), time=float(times[t]))
    labels = list(chosen)
    if analysis["test"] != "pairwise" or len(labels) < 2 or len(D) < 2:
        return rows, None
    recs = []
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            a, b = at[labels[i]], at[labels[j]]
            d = a - b
            p = float(stats.ttest_rel(a, b).pvalue) if np.any(d != d[0]) else np.nan
            recs.append({"a": labels[i], "b": labels[j], "r_a": rows[labels[i]]["score"]})
            se = float(d.std(ddof=1) / np.sqrt(len(d)))
            recs[-1].update(r_b=rows[labels[j]]["score"], difference=float(d.mean()), se_difference=se, p=p)
    return rows, with_corrected(pd.DataFrame(recs), analysis["correction"])
