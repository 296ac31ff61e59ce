"""Figures of RDMs, comparison tables, model comparisons and encoding scores, ready for a journal.

Figures are built with matplotlib's object API (``matplotlib.figure.Figure`` rendered by the Agg,
PDF, SVG or PS canvas), never through ``pyplot``: this works on headless machines without a display
and leaves the interactive backend of a user's session alone. Every function returns the ``Figure``
(it shows inline in Jupyter), draws into ``ax=`` when given, and saves the figure when ``out`` is given.

One style for every figure:

* each source (a model with its weights) is named by its display label (:mod:`visreps.labels`,
  overridable with ``labels={...}``) and has one colour (``colors=``); a source with random weights
  is drawn in a lighter shade of its architecture's colour, hatched, so a reader tells the control
  from the trained network in colour and in grey;
* bars are vertical, layers in depth order; each model is plotted on its own layer names (small
  multiples) or on a relative depth axis (``depth="relative"``);
* the title names the analysis; the details (images, subjects, bootstrap, test, correction) go to
  the caption, written next to the figure as ``<name>.txt`` with ``caption=True``;
* figures are sized to a journal column (``width="single"`` 89 mm or ``"double"`` 183 mm), written as
  png, pdf, svg, eps, tiff or jpg (:data:`FIGURE_FORMATS`) at ``dpi`` (default 300) under a partial
  name, renamed when complete; long labels wrap, legends sit outside the axes, nothing is clipped.

The package holds one module per figure kind (:mod:`~visreps.plotting.rdm`, :mod:`~visreps.plotting.heatmap`,
:mod:`~visreps.plotting.comparison`, :mod:`~visreps.plotting.encoding`, :mod:`~visreps.plotting.behaviour`) on
three shared pieces: ``_layout`` (sizes, wrapping, legends, nothing clipped), ``_style`` (a source's colour and
hatch) and ``_save`` (formats, dpi, captions, partial names). Every public name is importable from here.
The options every figure takes (``ax``, ``width``, ``dpi``, ``figsize``, ``format``, ``caption``) are declared
once, as :class:`FigureKwargs`, and checked once, as a :class:`FigureOptions` built on a figure function's first
line.
"""

from __future__ import annotations

from ..options import FIGURE_FORMATS
from ._layout import PANEL_MIN_WIDTH, WIDTHS, figure_width
from ._marks import MAX_PAIR_LINES
from ._save import (
    DEFAULT_DPI,
    FORMATS,
    RASTER_FORMATS,
    FigureKwargs,
    FigureOptions,
    GridKwargs,
    SaveKwargs,
    caption_path,
    figure_caption,
    figure_format,
    save_figure,
)
from ._style import _sources as _sources  # the source label of each table row (read by tests)
from ._style import source_styles
from .comparison import plot_model_comparison, plot_reference_comparison
from .encoding import plot_encoding
from .heatmap import plot_comparison
from .rdm import plot_rdm, plot_rdms

__all__ = [
    "DEFAULT_DPI",
    "FIGURE_FORMATS",
    "FORMATS",
    "FigureKwargs",
    "FigureOptions",
    "GridKwargs",
    "MAX_PAIR_LINES",
    "PANEL_MIN_WIDTH",
    "RASTER_FORMATS",
    "SaveKwargs",
    "WIDTHS",
    "caption_path",
    "figure_caption",
    "figure_format",
    "figure_width",
    "plot_comparison",
    "plot_encoding",
    "plot_model_comparison",
    "plot_rdm",
    "plot_rdms",
    "plot_reference_comparison",
    "save_figure",
    "source_styles",
]
