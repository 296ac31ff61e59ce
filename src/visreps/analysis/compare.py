"""Compare many representations at once: pairwise RDM correlations and fits to reference RDMs.

The comparisons: :func:`compare_rdms`, :func:`compare_features` (every feature set with every other),
:func:`compare_to_reference` (with reference RDMs) and :func:`rsa_inference` (with per-subject references:
noise ceiling, bootstrap, tests). Their sources are collected, and their rows matched to images, by
:mod:`.featuresets`; reference RDMs are read by :mod:`.references`. Nothing here loads a model or
extracts: model ids come as sources to be extracted (:class:`visreps.workflows.ToExtract`), which
``visreps.compare_features`` (and friends) build from ``images=``, ``work_dir=`` and ``extract_options=``.

The names of :mod:`.references` and :mod:`.featuresets` are importable from here too, where they were.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypedDict, overload

import numpy as np

from ..errors import VisrepsError
from ..options import SESSIONS
from .featuresets import (
    HASH_COLUMN,
    HASH_DIGEST_SIZE,
    FeatureSet,
    Layers,
    ToBeExtracted,
    collect_features,
    feature_sets_of,
    file_hash,
    layers_for,
    manifest_hashes,
    match_rows,
    reorder_to_reference,
    source_items,
)
from .inference import InferenceOptions, RSAInference, run_inference
from .references import (
    REFERENCE_SUFFIXES,
    STACK_SUFFIXES,
    ReferenceStack,
    as_rdm,
    load_reference_rdm,
    load_reference_rdms,
    load_references,
)
from .references import _references as _named_references
from .rsa import (
    RDMCorrelation,
    check_comparison,
    check_method,
    compute_rdm,
    correlate_rdms,
    n_from_condensed,
    upper_triangle,
)

if TYPE_CHECKING:
    import pandas as pd
    from typing_extensions import Unpack

__all__ = [
    "HASH_COLUMN",
    "HASH_DIGEST_SIZE",
    "REFERENCE_SUFFIXES",
    "SESSIONS",
    "STACK_SUFFIXES",
    "FeatureSet",
    "InferenceOptions",
    "RDMOptions",
    "ReferenceStack",
    "ToBeExtracted",
    "as_rdm",
    "collect_features",
    "compare_features",
    "compare_rdms",
    "compare_to_reference",
    "feature_sets_of",
    "file_hash",
    "layers_for",
    "load_reference_rdm",
    "load_reference_rdms",
    "load_references",
    "manifest_hashes",
    "match_rows",
    "rsa_inference",
    "run_rsa_inference",
    "source_items",
]


@dataclass(frozen=True)
class RDMOptions:
    """How every feature set's RDM is computed (:func:`visreps.analysis.rsa.compute_rdm`), checked once."""

    rdm_method: str = "correlation"
    sigma: float | None = None
    block_size: int | None = None
    device: Any = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "rdm_method", check_method(self.rdm_method))

    def rdm_of(self, s: FeatureSet) -> np.ndarray:
        """The RDM of ``s``, its rows in the common image order; errors name the set."""
        try:
            rdm = compute_rdm(
                s.features, self.rdm_method, sigma=self.sigma, block_size=self.block_size, device=self.device
            )
        except VisrepsError as e:
            raise VisrepsError(f"{s.where}: {e}") from None
        if s.order is not None:
            rdm = rdm[np.ix_(s.order, s.order)]
        return rdm


class _CompareKeywords(TypedDict, total=False):
    """The keywords of :func:`compare_features` besides ``return_rdms`` (for its overloads only)."""

    layers: Layers
    rdm_method: str
    method: str
    sigma: float | None
    block_size: int | None
    device: Any


def _n_images(sets: list[FeatureSet]) -> int:
    return len(sets[0].paths) if sets[0].paths is not None else sets[0].n


# --------------------------------------------------------------------------- comparing


def compare_rdms(rdms: Mapping[str, Any], *, method: str = "pearson") -> pd.DataFrame:
    """Pairwise correlations of several RDMs (upper triangles) as a square DataFrame label × label.

    ``pearson`` and ``spearman`` are computed for all pairs at once (Pearson correlation of the
    condensed vectors, of their average ranks for Spearman: the same numbers as ``scipy.stats``);
    ``kendall`` and ``tau_a`` pair by pair with :func:`correlate_rdms`. The diagonal is 1.
    """
    import pandas as pd

    method = check_comparison(method)
    labels = [str(k) for k in rdms]
    if len(labels) < 1:
        raise VisrepsError("compare_rdms needs at least one RDM")
    vecs = [upper_triangle(v) for v in rdms.values()]
    m = len(vecs[0])
    for lab, v in zip(labels, vecs):
        if len(v) != m:
            raise VisrepsError(
                f"RDM {lab!r} has {n_from_condensed(len(v))} conditions but {labels[0]!r} has {n_from_condensed(m)}; "
                "compare RDMs of the same images"
            )
        if not np.isfinite(v).all():
            raise VisrepsError(f"RDM {lab!r} has NaN/inf entries")
        if np.all(v == v[0]):
            raise VisrepsError(f"RDM {lab!r} is constant; its correlation with anything is undefined")
    k = len(vecs)
    R = np.eye(k)
    if method in ("pearson", "spearman"):
        from scipy.stats import rankdata

        Z = np.empty((k, m))
        for i, v in enumerate(vecs):
            z = rankdata(v) if method == "spearman" else v.copy()
            z -= z.mean()
            z /= np.linalg.norm(z)
            Z[i] = z
        C = Z @ Z.T
        iu = np.triu_indices(k, 1)
        R[iu] = np.clip(C[iu], -1.0, 1.0)
        R.T[iu] = R[iu]
    else:
        for i in range(k):
            for j in range(i + 1, k):
                R[i, j] = R[j, i] = float(correlate_rdms(vecs[i], vecs[j], method))
    df = pd.DataFrame(R, index=pd.Index(labels, name="features"), columns=labels)
    df.attrs.update({"method": method, "n_conditions": n_from_condensed(m)})
    return df


@overload
def compare_features(
    sources: Any, *, return_rdms: Literal[False] = ..., **options: Unpack[_CompareKeywords]
) -> pd.DataFrame: ...
@overload
def compare_features(
    sources: Any, *, return_rdms: Literal[True], **options: Unpack[_CompareKeywords]
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]: ...
@overload
def compare_features(
    sources: Any, *, return_rdms: bool = ..., **options: Unpack[_CompareKeywords]
) -> pd.DataFrame | tuple[pd.DataFrame, dict[str, np.ndarray]]: ...
def compare_features(
    sources: Any,
    *,
    layers: Layers = None,
    rdm_method: str = "correlation",
    method: str = "pearson",
    sigma: float | None = None,
    block_size: int | None = None,
    device: Any = "auto",
    return_rdms: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """RDM of every feature set, correlated pairwise: a square DataFrame with model/layer labels.

    Model ids are extracted on the fly by :func:`visreps.compare_features` (``images=``, ``work_dir=``,
    ``extract_options=``), which calls this function with :class:`visreps.workflows.ToExtract` sources.

    Args:
        sources: arrays, output folders, ``Features``, :class:`FeatureSet`, a list of them, or a dict
            label → one of them; see :func:`collect_features`.
        layers: layers to use from every folder (default: all of a folder's layers).
        rdm_method: how each RDM is computed (see :func:`compute_rdm`; default ``correlation``).
        method: how RDMs are compared (see :func:`correlate_rdms`; default ``pearson``).
        sigma, block_size, device: passed to :func:`compute_rdm`.
        return_rdms: also return the dict label → RDM (rows in the common image order).

    Returns:
        DataFrame ``labels × labels`` of correlations (labels ``"<model>/<layer>"``; folder names
        replace model ids when one model appears twice). ``df.attrs`` holds ``rdm_method``,
        ``method``, ``n_conditions`` and ``sets`` (model, layer, folder of each label).
    """
    rdm = RDMOptions(rdm_method, sigma, block_size, device)
    method = check_comparison(method)
    sets = collect_features(sources, layers=layers)
    rdms = {s.label: rdm.rdm_of(s) for s in sets}
    df = compare_rdms(rdms, method=method)
    df.attrs["rdm_method"] = rdm.rdm_method
    df.attrs["sets"] = [
        {
            "label": s.label,
            "model": s.model,
            "weights": s.weights,
            "layer": s.layer,
            "folder": str(s.folder) if s.folder else None,
        }
        for s in sets
    ]
    return (df, rdms) if return_rdms else df


def compare_to_reference(
    sources: Any,
    reference: Any,
    *,
    layers: Layers = None,
    rdm_method: str = "correlation",
    method: str = "pearson",
    n_bootstrap: int = 0,
    ci: float = 0.95,
    seed: int | None = 0,
    reference_key: str | None = None,
    reference_order: Sequence[str] | str | os.PathLike | None = None,
    sigma: float | None = None,
    block_size: int | None = None,
    device: Any = "auto",
) -> pd.DataFrame:
    """Correlate every feature set's RDM with a reference RDM (brain or behaviour): a tidy DataFrame.

    Model ids are extracted on the fly by :func:`visreps.compare_to_reference` (``images=``, ``work_dir=``,
    ``extract_options=``), after the reference is read and checked.

    Args:
        sources: as in :func:`compare_features`.
        reference: a square RDM / condensed vector, a file (see :func:`load_reference_rdm`), a
            :class:`ReferenceStack` of one subject, or a dict name → either, to compare against several references.
        reference_order: the images of the reference's rows, in order (a list of manifest paths,
            or a text file with one per line; bare file names work when unique). Default: the
            reference's rows are the images in manifest order.
        n_bootstrap, ci, seed: bootstrap over conditions for a confidence interval (see
            :func:`correlate_rdms`).
        Other arguments as in :func:`compare_features`.

    Returns:
        DataFrame with one row per (reference, feature set): ``reference``, ``model``, ``weights``, ``layer``,
        ``label``, ``r`` and, with bootstrap, ``ci_low``, ``ci_high``; ``attrs`` holds the methods.
    """
    import pandas as pd

    rdm = RDMOptions(rdm_method, sigma, block_size, device)
    method = check_comparison(method)
    loaded = _named_references(reference, reference_key)
    sets = collect_features(sources, layers=layers)
    n_feat = _n_images(sets)
    idx: dict[str, np.ndarray | None] = {}
    for name, (r, names) in loaded.items():
        _check_size(f"reference RDM {name!r}", r.shape[0], n_feat)
        idx[name] = reorder_to_reference(sets, reference_order, n_feat, names, f"reference {name!r}")
    rows = []
    for s in sets:
        features_rdm = rdm.rdm_of(s)
        for name, (ref, _) in loaded.items():
            order = idx[name]
            ordered = features_rdm if order is None else features_rdm[np.ix_(order, order)]
            res: RDMCorrelation = correlate_rdms(ordered, ref, method, n_bootstrap=n_bootstrap, ci=ci, seed=seed)
            row: dict[str, Any] = {"reference": name, "model": s.model, "weights": s.weights, "layer": s.layer}
            row["label"] = s.label
            row["r"] = float(res)
            if n_bootstrap:
                row["ci_low"], row["ci_high"] = res.ci_low, res.ci_high
            rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs.update({"rdm_method": rdm.rdm_method, "method": method, "n_conditions": n_feat})
    if n_bootstrap:
        df.attrs.update({"n_bootstrap": int(n_bootstrap), "ci": float(ci), "seed": seed})
    return df


def rsa_inference(
    sources: Any,
    reference: Any,
    *,
    layers: Layers = None,
    rdm_method: str = "correlation",
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
    seed: int | None = 0,
    reference_key: str | None = None,
    reference_order: Sequence[str] | str | os.PathLike | None = None,
    reference_sessions: str = "mean",
    sigma: float | None = None,
    block_size: int | None = None,
    device: Any = "auto",
) -> RSAInference:
    """Every feature set's RDM against per-subject reference RDMs, with noise ceiling, bootstrap and tests.

    The feature sets are collected and aligned as in :func:`compare_to_reference` (same strict rules:
    the reference's conditions are the images in manifest order, or those of ``reference_order``);
    the subjects' RDMs come from :func:`load_reference_rdms`. The numbers are those of
    :func:`visreps.analysis.inference.rdm_inference` (formulas there): a model's ``r`` is its mean
    comparison with the subjects' RDMs.

    Model ids are extracted on the fly by :func:`visreps.rsa_inference` (``images=``, ``work_dir=``,
    ``extract_options=``), after the reference and every option are checked. The options are checked once
    (:class:`visreps.analysis.inference.InferenceOptions`, :class:`RDMOptions`) and the reference is read once
    (:class:`ReferenceStack`); :func:`run_rsa_inference` takes those objects.

    Args:
        sources: as in :func:`compare_features`.
        reference: see :func:`load_reference_rdms`; or a :class:`ReferenceStack` already loaded.
        reference_sessions: a struct array's sessions: ``"mean"`` per subject or ``"keep"`` (see
            :func:`load_reference_rdms`).
        noise_ceiling, bootstrap, n_bootstrap, test, test_type, n_permutations, correction, alpha, ci, seed:
            see :func:`visreps.analysis.inference.rdm_inference`.
        Other arguments as in :func:`compare_to_reference`.

    Returns:
        :class:`visreps.analysis.inference.RSAInference`; its ``table`` has the columns ``reference``,
        ``model``, ``layer``, ``label`` first, and ``attrs`` with the methods and ``subjects``.
    """
    rdm = RDMOptions(rdm_method, sigma, block_size, device)
    opts = InferenceOptions.pick(locals())  # the options, checked once
    stack = ReferenceStack.load(reference, key=reference_key, sessions=reference_sessions)
    return run_rsa_inference(sources, stack, opts, rdm, layers=layers, reference_order=reference_order)


def run_rsa_inference(
    sources: Any,
    reference: ReferenceStack,
    opts: InferenceOptions,
    rdm: RDMOptions | None = None,
    *,
    layers: Layers = None,
    reference_order: Sequence[str] | str | os.PathLike | None = None,
) -> RSAInference:
    """:func:`rsa_inference` of a loaded reference and checked options (what ``visreps compare`` calls)."""
    rdm = rdm or RDMOptions()
    opts.check_subjects(reference.n_subjects)  # before any source is extracted
    sets = collect_features(sources, layers=layers)
    n_feat = _n_images(sets)
    where = f"reference {reference.name!r}"
    _check_size(where, reference.n_conditions, n_feat)
    idx = reorder_to_reference(sets, reference_order, n_feat, reference.conditions, where)
    rdms = {}
    for s in sets:
        r = rdm.rdm_of(s)
        rdms[s.label] = r if idx is None else r[np.ix_(idx, idx)]
    res = run_inference(rdms, reference.rdms, opts)
    t = res.table
    t.insert(0, "layer", [s.layer for s in sets])
    t.insert(0, "weights", [s.weights for s in sets])
    t.insert(0, "model", [s.model for s in sets])
    t.insert(0, "reference", reference.name)
    t.attrs.update({"rdm_method": rdm.rdm_method, "subjects": list(reference.subjects)})
    return res


def _check_size(where: str, n_conditions: int, n_images: int) -> None:
    if n_conditions != n_images:
        raise VisrepsError(
            f"{where} has {n_conditions} conditions but the features have {n_images} images; "
            "the reference must describe the same images (see reference_order)"
        )
