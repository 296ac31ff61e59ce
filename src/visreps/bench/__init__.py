"""``visreps bench``: many models × their layers × several brain or behaviour targets, one ranked table.

Each layer is scored on *selection* images and the best one is committed; the reported score is the
committed layer's score on held-out *test* images, with the noise ceiling, a bootstrap interval and
pairwise tests computed on those same test images. Extractions come from the cache of
:mod:`visreps.workcache` (one verified entry per request, never replaced). See ``docs/bench.md``.
"""

from __future__ import annotations

import sys
import types

from ._run import OUTPUT_FILES, BenchResult, bench
from ._spec import Spec, parse_spec

__all__ = ["OUTPUT_FILES", "BenchResult", "Spec", "bench", "parse_spec"]


class _CallableModule(types.ModuleType):
    """``visreps.bench`` is this package and the function: ``visreps.bench(spec, out=...)`` works either way."""

    def __call__(self, spec, **kwargs):
        return bench(spec, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
