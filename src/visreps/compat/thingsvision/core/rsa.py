"""``thingsvision.core.rsa`` (2.x): :func:`compute_rdm`, :func:`correlate_rdms`, :func:`plot_rdm`.

Thin wrappers over :mod:`visreps.analysis` (``compute_rdm``, ``correlate_rdms``) and
:func:`visreps.plotting.plot_rdm`, with THINGSvision 2.7.3's signatures and results.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ....errors import VisrepsError
from .._warn import warn_once

__all__ = ["compute_rdm", "correlate_rdms", "plot_rdm"]

METHODS = ("correlation", "cosine", "euclidean", "gaussian")


def compute_rdm(X: Any, method: str) -> np.ndarray:
    """The ``n × n`` RDM of the rows of ``X``; maps to ``visreps.analysis.compute_rdm(X, method)``.

    ``correlation``: ``1 − r`` (Pearson r between rows); ``cosine``: ``1 − cos``; ``euclidean``:
    ``‖x_i − x_j‖₂``; ``gaussian``: ``1 − exp(−‖x_i − x_j‖² / m)`` with ``m`` the mean of all ``n²``
    squared distances (2.7.3's kernel; visreps' native ``gaussian`` uses ``2σ²`` with σ the median
    distance). float64, zero diagonal.
    """
    warn_once("visreps.compat.thingsvision.core.rsa.compute_rdm")
    from ...vision import compute_rdm as rdm_2021  # the same formulas, kept in one place

    if str(method) not in METHODS:
        raise VisrepsError(f"method {method!r} is not valid; use one of {', '.join(METHODS)}")
    return rdm_2021(np.asarray(X), method)


def correlate_rdms(rdm_1: Any, rdm_2: Any, correlation: str = "pearson") -> float:
    """Correlation of the upper triangles (``i < j``) of two RDMs; maps to
    ``visreps.analysis.correlate_rdms(rdm_1, rdm_2, correlation).r``.

    ``pearson``, ``spearman`` and (fixed: 2.7.3 raised ``AttributeError`` looking up
    ``scipy.stats.kendallr``) ``kendall`` (tau-b).
    """
    warn_once("visreps.compat.thingsvision.core.rsa.correlate_rdms")
    from ....analysis import correlate_rdms as correlate

    if correlation not in ("pearson", "spearman", "kendall"):
        raise VisrepsError(f"correlation {correlation!r} is not valid; use 'pearson', 'spearman' or 'kendall'")
    return float(correlate(np.asarray(rdm_1), np.asarray(rdm_2), correlation).r)


def plot_rdm(
    out_path: str,
    X: Any,
    method: str = "correlation",
    format: str = ".png",
    colormap: str = "cividis",
    show_plot: bool = False,
) -> None:
    """Plot the rank-transformed RDM of ``X`` to ``<out_path>/rdm<format>``; maps to
    ``visreps.plotting.plot_rdm(rdm, path, rank=True, cmap=colormap)``."""
    warn_once("visreps.compat.thingsvision.core.rsa.plot_rdm")
    from ...vision import plot_rdm as plot_2021

    plot_2021(out_path, np.asarray(X), method=method, format=format, colormap=colormap, show_plot=show_plot)
