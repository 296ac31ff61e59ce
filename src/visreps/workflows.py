"""Extract, then compare: the analysis functions of :mod:`visreps.analysis` for model ids too.

:mod:`visreps.analysis` takes features that exist (arrays, output folders, ``Features``) and
never loads a model. The functions here accept the same sources plus model ids such as
``"torchvision:alexnet"`` (with ``images=`` and ``layers=``): they extract those first (into
``work_dir`` when given, reusing an earlier extraction there; in memory otherwise) and then call
the analysis function of the same name. ``visreps.compare_features``,
``visreps.compare_to_reference``, ``visreps.feature_map_layers`` and ``visreps compare`` are these.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from .analysis import compare as _compare
from .analysis import transforms as _transforms
from .analysis.compare import FeatureSet, feature_sets_of, layers_for, source_items
from .analysis.rsa import check_comparison, check_method
from .errors import VisrepsError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["collect_features", "compare_features", "compare_to_reference", "feature_map_layers", "rsa_inference"]

Layers = Sequence[str] | Mapping[str, Sequence[str]] | str | None


def collect_features(
    sources: Any,
    *,
    layers: Layers = None,
    images: str | os.PathLike | None = None,
    work_dir: str | os.PathLike | None = None,
    extract_options: Mapping[str, Any] | None = None,
) -> list[FeatureSet]:
    """:func:`visreps.analysis.collect_features`, with model ids extracted first.

    ``sources`` as there, plus model ids such as ``"torchvision:alexnet"`` together with
    ``images`` and ``layers``: the layers are extracted (into the cache ``work_dir`` when given,
    :mod:`visreps.workcache`: one verified entry per request, keyed by the model, its weights,
    the options, the layers and the images' content, never replaced; in memory otherwise).
    ``extract_options`` are keyword arguments for :func:`visreps.extract` (``pretrained``, ``pool``,
    ``batch_size``, ``device``...).

    Raises:
        VisrepsError: as :func:`visreps.analysis.collect_features`; a model id without layers; any
            error of the extraction.
    """
    sources = _extract_model_ids(sources, layers, images, work_dir, extract_options)
    return _compare.collect_features(sources, layers=layers)


@overload
def compare_features(
    sources: Any,
    *,
    layers: Layers = ...,
    images: str | os.PathLike | None = ...,
    rdm_method: str = ...,
    method: str = ...,
    sigma: float | None = ...,
    block_size: int | None = ...,
    device: Any = ...,
    work_dir: str | os.PathLike | None = ...,
    extract_options: Mapping[str, Any] | None = ...,
    return_rdms: Literal[False] = ...,
) -> pd.DataFrame: ...
@overload
def compare_features(
    sources: Any,
    *,
    layers: Layers = ...,
    images: str | os.PathLike | None = ...,
    rdm_method: str = ...,
    method: str = ...,
    sigma: float | None = ...,
    block_size: int | None = ...,
    device: Any = ...,
    work_dir: str | os.PathLike | None = ...,
    extract_options: Mapping[str, Any] | None = ...,
    return_rdms: Literal[True],
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]: ...
@overload
def compare_features(
    sources: Any,
    *,
    layers: Layers = ...,
    images: str | os.PathLike | None = ...,
    rdm_method: str = ...,
    method: str = ...,
    sigma: float | None = ...,
    block_size: int | None = ...,
    device: Any = ...,
    work_dir: str | os.PathLike | None = ...,
    extract_options: Mapping[str, Any] | None = ...,
    return_rdms: bool = ...,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[str, np.ndarray]]: ...
def compare_features(
    sources: Any,
    *,
    layers: Layers = None,
    images: str | os.PathLike | None = None,
    rdm_method: str = "correlation",
    method: str = "pearson",
    sigma: float | None = None,
    block_size: int | None = None,
    device: Any = "auto",
    work_dir: str | os.PathLike | None = None,
    extract_options: Mapping[str, Any] | None = None,
    return_rdms: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """RDM of every feature set, correlated pairwise: :func:`visreps.analysis.compare_features` for model ids too.

    Args:
        sources: arrays, output folders, ``Features``, model ids (with ``images`` and ``layers``),
            a list of them, or a dict label → one of them; see :func:`collect_features`.
        layers: layers to use from every folder/model (default: all of a folder's layers).
        images: the image folder, when ``sources`` has model ids to extract.
        rdm_method, method, sigma, block_size, device, return_rdms: as in
            :func:`visreps.analysis.compare_features`.
        work_dir: where model ids are extracted to (and reused from); default: in memory.
        extract_options: keyword arguments for :func:`visreps.extract` (``pretrained``, ``pool``,
            ``batch_size``, ``device``...).

    Returns:
        As :func:`visreps.analysis.compare_features`: the DataFrame ``labels × labels`` of
        correlations (and the dict label → RDM with ``return_rdms``).
    """
    check_method(rdm_method)  # wrong names fail before anything is extracted
    check_comparison(method)
    sources = _extract_model_ids(sources, layers, images, work_dir, extract_options)
    return _compare.compare_features(
        sources,
        layers=layers,
        rdm_method=rdm_method,
        method=method,
        sigma=sigma,
        block_size=block_size,
        device=device,
        return_rdms=return_rdms,
    )


def compare_to_reference(
    sources: Any,
    reference: Any,
    *,
    layers: Layers = None,
    images: str | os.PathLike | None = None,
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
    work_dir: str | os.PathLike | None = None,
    extract_options: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Correlate every feature set's RDM with a reference RDM: :func:`visreps.analysis.compare_to_reference`
    for model ids too.

    ``images``, ``work_dir`` and ``extract_options`` as in :func:`compare_features`; the other
    arguments and the result as in :func:`visreps.analysis.compare_to_reference`. The reference is
    read and checked before any model is extracted.
    """
    check_method(rdm_method)
    check_comparison(method)
    with warnings.catch_warnings():  # only the check here; the analysis function warns when it reads them
        warnings.simplefilter("ignore")
        _compare.load_references(reference, key=reference_key)
    sources = _extract_model_ids(sources, layers, images, work_dir, extract_options)
    return _compare.compare_to_reference(
        sources,
        reference,
        layers=layers,
        rdm_method=rdm_method,
        method=method,
        n_bootstrap=n_bootstrap,
        ci=ci,
        seed=seed,
        reference_key=reference_key,
        reference_order=reference_order,
        sigma=sigma,
        block_size=block_size,
        device=device,
    )


def rsa_inference(
    sources: Any,
    reference: Any,
    *,
    layers: Layers = None,
    images: str | os.PathLike | None = None,
    work_dir: str | os.PathLike | None = None,
    extract_options: Mapping[str, Any] | None = None,
    reference_key: str | None = None,
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
    reference_order: Sequence[str] | str | os.PathLike | None = None,
    sigma: float | None = None,
    block_size: int | None = None,
    device: Any = "auto",
) -> Any:
    """Model RDMs against per-subject reference RDMs with noise ceiling, bootstrap and tests:
    :func:`visreps.analysis.compare.rsa_inference` for model ids too.

    ``images``, ``work_dir`` and ``extract_options`` as in :func:`compare_features`; the other
    arguments (``noise_ceiling``, ``n_bootstrap``, ``seed``, ...) and the result as in
    :func:`visreps.analysis.compare.rsa_inference`. The reference and every option are checked
    before any model is extracted.
    """
    from .analysis.inference import check_bootstrap, check_correction, check_subjects, check_tests

    check_method(rdm_method)
    check_comparison(method)
    check_bootstrap(bootstrap)
    check_tests(test)
    check_correction(correction)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stack, _ = _compare.load_reference_rdms(reference, key=reference_key)
    check_subjects(len(stack), noise_ceiling=bool(noise_ceiling), bootstrap=bootstrap)
    sources = _extract_model_ids(sources, layers, images, work_dir, extract_options)
    return _compare.rsa_inference(
        sources,
        reference,
        layers=layers,
        reference_key=reference_key,
        rdm_method=rdm_method,
        method=method,
        noise_ceiling=noise_ceiling,
        bootstrap=bootstrap,
        n_bootstrap=n_bootstrap,
        test=test,
        test_type=test_type,
        n_permutations=n_permutations,
        correction=correction,
        alpha=alpha,
        ci=ci,
        seed=seed,
        reference_order=reference_order,
        sigma=sigma,
        block_size=block_size,
        device=device,
    )


def feature_map_layers(model: Any, *, kinds: Sequence[str] = ("conv", "maxpool")) -> list[str]:
    """Names of a model's convolution and/or max-pooling modules, in network order.

    ``model`` is a model id (loaded with random weights: the types do not depend on them), a
    :class:`~visreps.models.LoadedModel` or a ``torch.nn.Module``; see
    :func:`visreps.analysis.feature_map_layers`, which takes the latter two.
    """
    if hasattr(model, "named_modules"):
        return _transforms.feature_map_layers(model, kinds=kinds)
    _transforms.check_kinds(kinds)  # before loading the model
    from .models import load_model

    lm = load_model(model, pretrained=False, device="cpu")
    return _transforms.feature_map_layers(lm, kinds=kinds)


# --------------------------------------------------------------------------- extracting model ids


def _is_model_id(src: Any) -> bool:
    """A string that names no file or folder: a model id (``source:name``) to extract."""
    return isinstance(src, (str, os.PathLike)) and not Path(src).expanduser().exists()


def _extract_model_ids(sources: Any, layers: Layers, images, work_dir, extract_options) -> Any:
    """``sources`` with every model id replaced by the :class:`FeatureSet` list of its extracted layers."""
    if images is None:
        return sources  # without images a model id is not extracted: the analysis function names it
    items = source_items(sources)
    if not any(_is_model_id(src) for _, src in items):
        return sources
    done = [
        (
            label,
            _extract_model(str(src), label, layers, images, work_dir, extract_options) if _is_model_id(src) else src,
        )
        for label, src in items
    ]
    if isinstance(sources, Mapping):
        return {k: src for k, (_, src) in zip(sources, done)}
    return [src for _, src in done]


def _extract_model(
    model_id: str, label: str | None, layers: Layers, images, work_dir, extract_options
) -> list[FeatureSet]:
    wanted = layers_for(layers, label, model_id) if label is not None else None
    wanted = wanted or layers_for(layers, model_id, model_id)
    if not wanted:
        raise VisrepsError(f"which layers of {model_id!r}? pass layers=[...] (see `visreps layers {model_id}`)")
    from .extraction import extract

    opts = dict(extract_options or {})
    opts.setdefault("progress", False)
    if work_dir is None:
        res = extract(model_id, images, layers=wanted, out=None, **opts)
        return feature_sets_of(res, label or model_id, wanted)
    from .workcache import cached_extract

    # one cache entry per request (model, weights, options, layers, the images' content): never replaced
    entry = cached_extract(model_id, images, layers=wanted, work_dir=work_dir, options=opts)
    return feature_sets_of(entry.load(wanted), label or model_id, wanted)
