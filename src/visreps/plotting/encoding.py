"""Encoding scores per layer: :func:`plot_encoding`."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import VisrepsError
from ._layout import _names_below, _new_or_given, _outside_legend, _style, _title, _wrap
from ._save import FigureKwargs, FigureOptions, _set_caption
from ._style import _bars, _ceiling_patch, _line_handle, _patch, _rename, _table_styles

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from typing_extensions import Unpack


def plot_encoding(
    table: Any,
    out: str | os.PathLike | None = None,
    *,
    score: str = "r",
    ceiling: bool = True,
    title: str | None = None,
    labels: Mapping[str, str] | Sequence[str] | None = None,
    colors: Mapping[str, Any] | Sequence[Any] | str | None = None,
    **figure: Unpack[FigureKwargs],
) -> Figure:
    """Encoding scores per layer: bars of the mean over targets with ±SEM error bars, and the ceiling.

    Args:
        table: the per-layer table of :func:`visreps.analysis.encode` (``result.layers``), or the
            :class:`~visreps.analysis.EncodingResult` itself. Bars follow its rows (layers in depth
            order), one colour per source (model and weights; random weights lighter and hatched),
            with the layer names on the x axis.
        score: ``r`` (default), ``r2``, ``r_ceiled`` or ``r2_ceiled``: the columns
            ``<score>_mean`` and ``<score>_sem`` (SEM across targets) are drawn.
        ceiling: draw the noise ceiling when the table has one: for ``r`` the mean over targets of
            ``√ρ`` (column ``ceiling_r``) as a band of ± its SEM, for ceiled scores the line at 1.
        labels, colors: as in :func:`plot_model_comparison`.
        **figure: ``ax``, ``width``, ``dpi``, ``figsize``, ``format``, ``caption``: where and how the figure is
            drawn and saved (:class:`~visreps.plotting.FigureKwargs`).
    """
    opts = FigureOptions.checked("plot_encoding", out, figure)
    df = _scores(table, score)
    src, styles = _table_styles(df, colors)
    names = _rename(src, labels, df)
    uniq = list(dict.fromkeys(src))
    with _style():
        fig, ax = _new_or_given(opts.ax, opts.size(max(3.5, 1.4 + 0.32 * len(df)), 3.4))
        handles: list[Any] = [_patch(styles[s]) for s in uniq]
        shown = [names[s] for s in uniq]
        band = _encoding_ceiling(ax, df, score, ceiling)
        if band:
            handles.append(_ceiling_patch() if band != "line" else _line_handle())
            shown.append("noise ceiling")
        _draw_scores(ax, df, score, [styles[s] for s in src])
        if len(handles) > 1 or len(uniq) > 1:
            _outside_legend(fig, ax, handles, shown, opts.owned)
        if title:
            _title(fig, ax, title, opts.owned)
        _set_caption(fig, _encoding_caption(table, score, band, any(styles[s]["random"] for s in uniq)))
        opts.save(fig)
    return fig


_SCORE_NAMES = {"r": "Pearson r", "r2": "R²", "r_ceiled": "r / √ceiling", "r2_ceiled": "R² / ceiling"}


def _scores(table: Any, score: str) -> Any:
    """The per-layer table of an encoding result (or the table itself), checked to hold ``score``'s means."""
    import pandas as pd

    df = getattr(table, "layers", table)
    if not isinstance(df, pd.DataFrame) or f"{score}_mean" not in df.columns:
        have = sorted(c[:-5] for c in getattr(df, "columns", []) if str(c).endswith("_mean"))
        raise VisrepsError(
            f"the table has no {score!r} scores (columns {score}_mean, {score}_sem); it has: {have or 'none'}; "
            "pass result.layers of visreps.analysis.encode"
        )
    return df


def _draw_scores(ax: Axes, df: Any, score: str, styles: list[dict[str, Any]]) -> None:
    """One bar per row (mean ± SEM over targets) in its source's style, the layer names below, the score's name."""
    ticks = [_wrap(str(x), 22) for x in (df["layer"] if "layer" in df else df["label"])]
    x = np.arange(len(df))
    mean = df[f"{score}_mean"].to_numpy(dtype=np.float64)
    sem = df[f"{score}_sem"].to_numpy(dtype=np.float64) if f"{score}_sem" in df else None
    _bars(ax, x, mean, None if sem is None else np.nan_to_num(sem), styles)
    ax.axhline(0, color="black", linewidth=0.6)
    _names_below(ax, x, ticks, len(df) > 3 or max(len(t) for t in ticks) > 10)
    ax.set_xlim(-0.6, len(df) - 0.4)
    ax.set_ylabel(f"held-out {_SCORE_NAMES.get(score, score)}\n(mean ± SEM over targets)")


def _encoding_caption(table: Any, score: str, band: str, random: bool) -> list[str]:
    """What the bars are, the images and folds (from the result's ``info``), the ceiling drawn, random weights."""
    info = getattr(table, "info", None)
    info = info if isinstance(info, Mapping) else {}
    lines = [f"Encoding: held-out {_SCORE_NAMES.get(score, score)} per layer, mean ± SEM over targets."]
    if info.get("n_images"):
        lines.append(f"{info['n_images']} images.")
    if info.get("n_folds") or info.get("folds"):
        lines.append(f"{info.get('n_folds') or info.get('folds')}-fold cross-validation.")
    if band:
        lines.append(
            "Grey band: noise ceiling (mean over targets of √ρ ± SEM)."
            if band == "band"
            else "Dashed line: the noise ceiling."
        )
    if random:
        lines.append("Hatched, lighter: random (untrained) weights.")
    return lines


def _encoding_ceiling(ax, df, score: str, ceiling: bool) -> str:
    """Draw the ceiling of an encoding table; returns ``"band"``, ``"line"`` or ``""``."""
    if not ceiling:
        return ""
    if score in ("r_ceiled", "r2_ceiled"):
        ax.axhline(1.0, color="0.3", linestyle="--", linewidth=1)
        return "line"
    if score == "r" and "ceiling_r" in df and np.isfinite(df["ceiling_r"].to_numpy(dtype=np.float64)).any():
        c = float(np.nanmean(df["ceiling_r"].to_numpy(dtype=np.float64)))
        half = float(np.nanmean(df["ceiling_r_sem"].to_numpy(dtype=np.float64))) if "ceiling_r_sem" in df else 0.0
        half = half if np.isfinite(half) and half > 0 else 0.005 * max(abs(c), 1e-3)
        ax.axhspan(c - half, c + half, color="0.86", linewidth=0, zorder=0)
        ax.axhline(c, color="0.45", linewidth=0.8, zorder=1)
        return "band"
    return ""
