"""The behaviour and time figures' earlier home: they live in :mod:`visreps.plotting.behaviour` now.

Kept so that ``from visreps.plotting_behaviour import plot_odd_one_out`` (and the other three) keeps working.
"""

from __future__ import annotations

from .plotting import DEFAULT_DPI, FIGURE_FORMATS
from .plotting.behaviour import FORMATS, plot_frrsa, plot_odd_one_out, plot_partition, plot_timecourse

__all__ = [
    "DEFAULT_DPI",
    "FIGURE_FORMATS",
    "FORMATS",
    "plot_frrsa",
    "plot_odd_one_out",
    "plot_partition",
    "plot_timecourse",
]
