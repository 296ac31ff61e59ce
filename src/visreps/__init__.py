"""visreps: hidden-layer activations of deep networks for any image set, and their analysis.

Quick use::

    import visreps
    model = visreps.load_model("timm:tf_efficientnet_lite0")       # pretrained, offline
    feats = visreps.extract(model, "examples/images", layers=["global_pool", "classifier"], out="out/lite0")
    feats["global_pool"].shape, feats.paths                      # rows tied to image files
    visreps.load_features("out/lite0")                            # read it back later

Heavy libraries (torch, timm) are imported when first used, so ``import visreps`` is fast.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _metadata_version
from typing import Any

try:  # the version is written once, in pyproject.toml
    __version__ = _metadata_version("visreps")
except _PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

_LAZY = {
    "load_model": "visreps.models",
    "list_models": "visreps.models",
    "LoadedModel": "visreps.models",
    "Preprocessing": "visreps.models",
    "extract": "visreps.extraction",
    "extract_ray": "visreps.distributed",
    "from_keras_model": "visreps.models.keras",
    "load_features": "visreps.storage",
    "Features": "visreps.storage",
    "merge_shards": "visreps.storage",
    "verify": "visreps.storage",
    "extract_text": "visreps.text",
    "find_images": "visreps.data",
    "load_image": "visreps.data",
    "set_cache_dir": "visreps.cache",
    "compute_rdm": "visreps.analysis",
    "correlate_rdms": "visreps.analysis",
    "compare_features": "visreps.workflows",
    "collect_features": "visreps.workflows",
    "compare_to_reference": "visreps.workflows",
    "rsa_inference": "visreps.workflows",
    "load_reference_rdms": "visreps.analysis",
    "rdm_noise_ceiling": "visreps.analysis",
    "split_half_reliability": "visreps.analysis",
    "plot_model_comparison": "visreps.plotting",
    "load_reference_rdm": "visreps.analysis",
    "encode": "visreps.analysis",
    "load_responses": "visreps.analysis",
    "cka": "visreps.analysis",
    "center_features": "visreps.analysis",
    "normalize_features": "visreps.analysis",
    "compress_features": "visreps.analysis",
    "PCA": "visreps.analysis",
    "IncrementalPCA": "visreps.analysis",
    "ensemble_features": "visreps.analysis",
    "feature_map_layers": "visreps.workflows",
    "plot_rdm": "visreps.plotting",
    "plot_comparison": "visreps.plotting",
    "plot_rdms": "visreps.plotting",
    "plot_encoding": "visreps.plotting",
    "plot_reference_comparison": "visreps.plotting",
    "source_label": "visreps.labels",
    "set_offline": "visreps.cache",
    "align": "visreps.analysis",
    "bench": "visreps.bench",
}

from .errors import VisrepsError as VisrepsError  # noqa: E402  (cheap, no heavy imports)

__all__ = sorted([*_LAZY, "VisrepsError", "__version__"])


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'visreps' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
