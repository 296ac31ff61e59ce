"""The heatmap of a comparison table (row labels × column labels): :func:`plot_comparison`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import VisrepsError
from ._layout import _new_or_given, _style, _title, _wrap
from ._save import FigureKwargs, FigureOptions, _set_caption
from ._style import _check_cmap
from .comparison import plot_reference_comparison
from .rdm import _off_diagonal_limits

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from typing_extensions import Unpack


def plot_comparison(
    table: Any,
    out: str | os.PathLike | None = None,
    *,
    title: str | None = None,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    annotate: bool | None = None,
    colorbar_label: str | None = None,
    labels: Mapping[str, str] | None = None,
    **figure: Unpack[FigureKwargs],
) -> Figure:
    """A heatmap of a comparison table (row labels × column labels), e.g. from :func:`compare_features`.

    A long table from :func:`compare_to_reference` (columns ``label`` and ``r``) is drawn with
    :func:`plot_reference_comparison` instead.

    Args:
        table: a pandas DataFrame of numbers (or a 2-D array).
        annotate: write the values in the cells (default: when there are at most 15 rows and columns).
        vmin, vmax: colour limits; for a pairwise table (same labels on both axes) the default
            spans the off-diagonal values, so the self-comparisons (1) do not flatten the scale.
        colorbar_label: default: the comparison method from ``table.attrs``.
        labels: a dict row/column label → the name to show.
        **figure: ``ax``, ``width``, ``dpi``, ``figsize``, ``format``, ``caption``: where and how the figure is
            drawn and saved (:class:`~visreps.plotting.FigureKwargs`).
    """
    import pandas as pd

    if isinstance(table, pd.DataFrame) and {"label", "r"} <= set(table.columns):
        return plot_reference_comparison(table, out, title=title, labels=labels, **figure)
    opts = FigureOptions.checked("plot_comparison", out, figure)
    df, vals = _numbers(table)
    nr, nc = vals.shape
    names = dict(labels or {})
    rows = [_wrap(names.get(str(i), str(i)), 36) for i in df.index]
    cols = [_wrap(names.get(str(c), str(c)), 36) for c in df.columns]
    cm = _check_cmap(cmap)
    if nr == nc and list(map(str, df.index)) == list(map(str, df.columns)):  # pairwise: skip the self-comparisons
        vmin, vmax = _off_diagonal_limits(vals, vmin, vmax)
    with _style():
        fig, ax = _new_or_given(opts.ax, _heatmap_size(opts, rows + cols, max(nr, nc)))
        im = ax.imshow(vals, cmap=cm, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
        ax.set_xticks(range(nc), labels=cols, rotation=45, ha="right", rotation_mode="anchor")
        ax.set_yticks(range(nr), labels=rows)
        if annotate or (annotate is None and nr <= 15 and nc <= 15):
            _annotate(ax, vals, *im.get_clim())
        attrs = getattr(df, "attrs", {}) or {}
        colorbar_label = _value_name(attrs) if colorbar_label is None else colorbar_label
        fig.colorbar(im, ax=ax, shrink=0.85).set_label(colorbar_label)
        if title:
            _title(fig, ax, title, opts.owned)
        if attrs.get("n_conditions"):
            _set_caption(fig, [f"{colorbar_label} over {attrs['n_conditions']} images."])
        opts.save(fig, grow=opts.inches is None)
    return fig


def _numbers(table: Any) -> tuple[Any, np.ndarray]:
    """The table as a DataFrame and its values as a non-empty 2-D float array."""
    import pandas as pd

    df = table if isinstance(table, pd.DataFrame) else pd.DataFrame(np.asarray(table))
    try:
        vals = df.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise VisrepsError("the comparison table must hold numbers only (labels in the index and columns)") from None
    if vals.ndim != 2 or vals.size == 0:
        raise VisrepsError(f"the comparison table must be 2-D and non-empty, got shape {vals.shape}")
    return df, vals


def _heatmap_size(opts: FigureOptions, names: list[str], cells: int) -> tuple[float, float]:
    """``figsize``, else the ``width`` asked for (a little less tall than wide), else room for ``cells`` cells a
    side and the longest of the row and column ``names``."""
    if opts.figsize is not None:
        return opts.figsize
    if opts.inches is not None:
        return (opts.inches, opts.inches * 0.9)
    longest = min(max([len(x) for x in names] + [1]), 36)
    side = 0.45 * cells + 0.09 * longest + 2.5
    return (min(30.0, side + 1.5), min(30.0, side))


def _annotate(ax: Axes, vals: np.ndarray, lo: float, hi: float) -> None:
    """Each finite value written in its cell, white on the darker half of the colour scale."""
    mid = (lo + hi) / 2
    for i in range(vals.shape[0]):
        for j in range(vals.shape[1]):
            v = vals[i, j]
            if np.isfinite(v):
                c = "white" if v < mid else "black"
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color=c)


def _value_name(attrs: Any) -> str:
    """What the values of a comparison table are, from its ``attrs``: e.g. ``spearman correlation of RDMs (cosine)``."""
    method = attrs.get("method")
    name = f"{method} correlation" if method else "value"
    if attrs.get("rdm_method"):
        name += f" of RDMs ({attrs['rdm_method']})"
    return name
