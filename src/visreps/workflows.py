"""Extract, then compare: model ids as sources of the analysis functions.

:mod:`visreps.analysis` takes features that exist (arrays, output folders, ``Features``) and sources still
to be extracted (objects with a ``feature_sets(label, layers)`` method), and never loads a model.
:class:`ToExtract` is such a source: a model id with its images, extracted when the analysis asks for its
layers (after every option and the reference are checked), into ``work_dir`` when given (reusing an
earlier extraction there) or in memory.

``visreps.compare_features``, ``visreps.compare_to_reference``, ``visreps.rsa_inference``,
``visreps.collect_features`` and ``visreps compare`` are the analysis functions of the same name with three
more keyword arguments, ``images``, ``work_dir`` and ``extract_options``: model ids among the sources become
:class:`ToExtract` sources (:func:`model_sources`), and the one analysis function does the rest. Their
other arguments, results and documentation are those of :mod:`visreps.analysis.compare`.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .analysis import compare as _compare
from .analysis import transforms as _transforms
from .analysis.featuresets import FeatureSet, feature_sets_of, layers_for, source_items
from .errors import VisrepsError

__all__ = [
    "ToExtract",
    "collect_features",
    "compare_features",
    "compare_to_reference",
    "feature_map_layers",
    "model_sources",
    "rsa_inference",
]


@dataclass(frozen=True)
class ToExtract:
    """A model id to extract from ``images`` when an analysis asks for its layers (a source of
    :func:`visreps.analysis.compare.collect_features`).

    Attributes:
        model_id: e.g. ``"torchvision:alexnet"``.
        images: the image folder (or any image source of :func:`visreps.extract`).
        work_dir: the cache of extractions (:mod:`visreps.workcache`: one verified entry per request, keyed by
            the model, its weights, the options, the layers and the images' content, never replaced); ``None``:
            in memory.
        options: keyword arguments for :func:`visreps.extract` (``pretrained``, ``pool``, ``batch_size``,
            ``device``...).
    """

    model_id: str
    images: str | os.PathLike
    work_dir: str | os.PathLike | None = None
    options: Mapping[str, Any] | None = None

    def feature_sets(self, label: str | None, layers: Any) -> list[FeatureSet]:
        """Extract the layers ``layers`` names for this source (by ``label`` or model id): one set per layer."""
        model_id = self.model_id
        wanted = layers_for(layers, label, model_id) if label is not None else None
        wanted = wanted or layers_for(layers, model_id, model_id)
        if not wanted:
            raise VisrepsError(f"which layers of {model_id!r}? pass layers=[...] (see `visreps layers {model_id}`)")
        from .extraction import extract

        opts = dict(self.options or {})
        opts.setdefault("progress", False)
        if self.work_dir is None:
            res = extract(model_id, self.images, layers=wanted, out=None, **opts)
            return feature_sets_of(res, label or model_id, wanted)
        from .workcache import cached_extract

        # one cache entry per request (model, weights, options, layers, the images' content): never replaced
        entry = cached_extract(model_id, self.images, layers=wanted, work_dir=self.work_dir, options=opts)
        return feature_sets_of(entry.load(wanted), label or model_id, wanted)


def _is_model_id(src: Any) -> bool:
    """A string that names no file or folder: a model id (``source:name``) to extract."""
    return isinstance(src, (str, os.PathLike)) and not Path(src).expanduser().exists()


def model_sources(
    sources: Any,
    *,
    images: str | os.PathLike | None = None,
    work_dir: str | os.PathLike | None = None,
    extract_options: Mapping[str, Any] | None = None,
) -> Any:
    """``sources`` with every model id replaced by a :class:`ToExtract` (a list stays a list, a dict a dict).

    Without ``images`` a model id is left as it is (the analysis function then says what to give).
    """
    if images is None:
        return sources
    items = source_items(sources)
    if not any(_is_model_id(src) for _, src in items):
        return sources
    done = [ToExtract(str(src), images, work_dir, extract_options) if _is_model_id(src) else src for _, src in items]
    if isinstance(sources, Mapping):
        return dict(zip(sources, done))
    return done


_MODEL_IDS = """

    Model ids (e.g. ``"torchvision:alexnet"``) among ``sources`` are extracted first, with three more
    keyword arguments: ``images`` (the image folder), ``work_dir`` (where they are extracted to and reused
    from, :mod:`visreps.workcache`; default: in memory) and ``extract_options`` (keyword arguments for
    :func:`visreps.extract`: ``pretrained``, ``pool``, ``batch_size``, ``device``...). A model id needs
    ``layers``. Everything is checked, and a reference read, before any model is extracted.
"""


def _with_model_ids(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The analysis function ``fn`` with model ids among its sources (:func:`model_sources`)."""

    @functools.wraps(fn)
    def entry(sources: Any, *args: Any, images=None, work_dir=None, extract_options=None, **kwargs: Any) -> Any:
        return fn(
            model_sources(sources, images=images, work_dir=work_dir, extract_options=extract_options), *args, **kwargs
        )

    sig = inspect.signature(fn)
    extra = [
        inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None)
        for n in ("images", "work_dir", "extract_options")
    ]
    entry.__signature__ = sig.replace(parameters=[*sig.parameters.values(), *extra])  # type: ignore[attr-defined]
    entry.__doc__ = (fn.__doc__ or "").rstrip() + _MODEL_IDS
    entry.__module__ = __name__
    del entry.__wrapped__  # type: ignore[attr-defined]  # its own signature (above), not fn's
    return entry


collect_features = _with_model_ids(_compare.collect_features)
""":func:`visreps.analysis.compare.collect_features`, model ids extracted first (``images``, ``work_dir``,
``extract_options``)."""

compare_features = _with_model_ids(_compare.compare_features)
""":func:`visreps.analysis.compare.compare_features`, model ids extracted first (``images``, ``work_dir``,
``extract_options``)."""

compare_to_reference = _with_model_ids(_compare.compare_to_reference)
""":func:`visreps.analysis.compare.compare_to_reference`, model ids extracted first (``images``, ``work_dir``,
``extract_options``) once the reference is read and checked."""

rsa_inference = _with_model_ids(_compare.rsa_inference)
""":func:`visreps.analysis.compare.rsa_inference`, model ids extracted first (``images``, ``work_dir``,
``extract_options``) once the reference and every option are checked."""


def feature_map_layers(model: Any, **options: Any) -> list[str]:
    """:func:`visreps.analysis.transforms.feature_map_layers` for model ids too (``kinds=`` as there).

    A model id is loaded with random weights (the module types do not depend on them), after ``kinds`` is
    checked.
    """
    if not hasattr(model, "named_modules"):
        if "kinds" in options:
            _transforms.check_kinds(options["kinds"])  # before the model is loaded
        from .models import load_model

        model = load_model(model, pretrained=False, device="cpu")
    return _transforms.feature_map_layers(model, **options)
