"""Figures of the behaviour and time analyses: odd-one-out accuracy, reweighted RSA, variance partitioning and
time-resolved RSA.

They are defined in :mod:`visreps.plotting.behaviour`, next to the other figures; this module keeps the earlier
import (``from visreps.plotting_behaviour import plot_odd_one_out``) working.
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
