"""Figures of the behaviour and time analyses: odd-one-out accuracy, reweighted RSA, variance
partitioning and time-resolved RSA.

As the other figures of :mod:`visreps.plotting`: matplotlib's object API (``matplotlib.figure.Figure``, never
``pyplot``), so figures render on headless machines and leave a session's backend alone; every
function returns the ``Figure`` and saves it when ``out`` is given (the format from ``format`` or
the file's suffix). Each takes ``dpi``, ``figsize`` and ``format`` (:class:`~visreps.plotting.SaveKwargs`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import VisrepsError
from ..options import FIGURE_FORMATS
from ._layout import _figure
from ._save import FigureOptions, SaveKwargs

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from typing_extensions import Unpack

FORMATS = FIGURE_FORMATS  # one list of figure formats (visreps.plotting)


def _axes(figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """A figure of one panel."""
    fig = _figure(figsize)
    return fig, fig.add_subplot()


def _finish(fig: Figure, ax: Axes, title: str | None, opts: FigureOptions) -> Figure:
    """Title the panel, grow the figure until nothing sticks out and write it when ``out`` was given."""
    if title:
        ax.set_title(title)
    opts.save(fig, grow=True)
    return fig


def _table(obj: Any, attr: str, need: set[str], what: str):
    import pandas as pd

    df = getattr(obj, attr, obj)
    if not isinstance(df, pd.DataFrame) or not need <= set(df.columns):
        raise VisrepsError(f"the table needs the columns {sorted(need)}; pass the result of {what}")
    return df


def _labels(df) -> list[str]:
    if "model" in df and df["model"].nunique() == 1 and "layer" in df and (df["layer"] != "").all():
        return [str(x) for x in df["layer"]]
    return [str(x) for x in df["label"]]


def plot_odd_one_out(
    result: Any,
    out: str | os.PathLike | None = None,
    *,
    title: str | None = None,
    **figure: Unpack[SaveKwargs],
) -> Figure:
    """Odd-one-out accuracy per layer: bars with the bootstrap interval, chance (1/3) and the noise ceiling.

    ``result``: :func:`visreps.analysis.odd_one_out`'s result or its ``table``.
    """
    opts = FigureOptions.checked("plot_odd_one_out", out, figure, SaveKwargs)
    df = _table(result, "table", {"label", "accuracy"}, "visreps.analysis.odd_one_out")
    labels = _labels(df)
    fig, ax = _axes(opts.figsize or (max(4.0, 1.4 + 0.5 * len(df)), 4.0))
    x = np.arange(len(df))
    acc = df["accuracy"].to_numpy(dtype=np.float64)
    err = None
    if {"ci_low", "ci_high"} <= set(df.columns) and np.isfinite(df["ci_low"]).all():
        err = np.vstack([acc - df["ci_low"].to_numpy(dtype=np.float64), df["ci_high"].to_numpy(dtype=np.float64) - acc])
    ax.bar(x, acc, yerr=err, capsize=3, color="tab:blue")
    ax.axhline(1 / 3, color="0.4", linestyle=":", linewidth=1, label="chance (1/3)")
    if "ceiling" in df and np.isfinite(df["ceiling"]).any():
        c = float(df["ceiling"].dropna().iloc[0])
        ax.axhline(c, color="0.2", linestyle="--", linewidth=1, label=f"noise ceiling ({c:.3f})")
    ax.set_xticks(x, labels=labels, rotation=45 if len(df) > 3 else 0, ha="right" if len(df) > 3 else "center")
    ax.set_ylim(0, 1.16)  # the legend sits above 1
    ax.set_yticks(np.linspace(0, 1, 6))
    sim = df["similarity"].iloc[0] if "similarity" in df else "dot"
    ci = (getattr(df, "attrs", {}) or {}).get("ci")
    ax.set_ylabel(f"odd-one-out accuracy ({sim})" + (f", {round(100 * ci)}% bootstrap CI" if ci else ""))
    ax.legend(fontsize=8, loc="upper center", ncols=2, frameon=False)
    return _finish(fig, ax, title, opts)


def plot_frrsa(
    result: Any,
    out: str | os.PathLike | None = None,
    *,
    title: str | None = None,
    **figure: Unpack[SaveKwargs],
) -> Figure:
    """Feature-reweighted vs classical RSA per layer (and per reference): paired bars."""
    opts = FigureOptions.checked("plot_frrsa", out, figure, SaveKwargs)
    df = _table(result, "table", {"label", "r", "r_classical"}, "visreps.analysis.feature_reweighted_rsa")
    labels = list(dict.fromkeys(df["label"]))  # one pair of bars per layer: the mean over references
    r = np.array([df.loc[df["label"] == lab, "r"].mean() for lab in labels], dtype=np.float64)
    rc = np.array([df.loc[df["label"] == lab, "r_classical"].mean() for lab in labels], dtype=np.float64)
    fig, ax = _axes(opts.figsize or (max(4.5, 1.4 + 0.6 * len(labels)), 4.0))
    x = np.arange(len(labels))
    ax.bar(x - 0.2, rc, width=0.4, color="0.6", label="classical (all pairs)")
    ax.bar(x + 0.2, r, width=0.4, color="tab:orange", label="feature-reweighted (held-out pairs)")
    ax.axhline(0, color="black", linewidth=0.8)
    rot = len(labels) > 3
    ax.set_xticks(x, labels=labels, rotation=45 if rot else 0, ha="right" if rot else "center")
    ax.set_ylabel("correlation with the reference RDM")
    top = float(np.nanmax(np.concatenate([r, rc, [0.0]])))
    bottom = float(np.nanmin(np.concatenate([r, rc, [0.0]])))
    ax.set_ylim(bottom * 1.1, top + 0.35 * max(top - bottom, 1e-3))  # room for the legend
    ax.legend(fontsize=8, loc="upper left", frameon=False)
    return _finish(fig, ax, title, opts)


def plot_partition(
    result: Any,
    out: str | os.PathLike | None = None,
    *,
    max_targets: int = 30,
    title: str | None = None,
    **figure: Unpack[SaveKwargs],
) -> Figure:
    """Variance partitioning as stacked bars: the unique and shared parts of R², per target and their mean.

    ``result``: :func:`visreps.analysis.variance_partitioning`'s result (or its ``parts`` table).
    Positive parts stack upwards, negative ones (sets that hurt held-out prediction) downwards. With more
    than ``max_targets`` targets only the mean over targets is drawn.
    """
    import matplotlib

    opts = FigureOptions.checked("plot_partition", out, figure, SaveKwargs)
    df = _table(result, "parts", {"target", "part", "r2"}, "visreps.analysis.variance_partitioning")
    wide = df.pivot_table(index="target", columns="part", values="r2", sort=False)
    order = list(dict.fromkeys(df["part"]))
    wide = wide[order]
    targets = list(dict.fromkeys(df["target"]))
    rows = [] if len(targets) > max_targets else [wide.loc[t].to_numpy() for t in targets]
    names = [] if len(targets) > max_targets else [str(t) for t in targets]
    rows.append(wide.mean(axis=0).to_numpy())
    names.append(f"mean ({len(targets)})")
    V = np.array(rows)
    fig, ax = _axes(opts.figsize or (max(4.5, 2.5 + 0.4 * len(names)), 4.2))
    colours = matplotlib.colormaps["tab20"]
    x = np.arange(len(names))
    up, down = np.zeros(len(names)), np.zeros(len(names))
    for k, part in enumerate(order):
        v = V[:, k]
        pos = np.where(v > 0, v, 0.0)
        neg = np.where(v < 0, v, 0.0)
        ax.bar(x, pos, bottom=up, color=colours(k % 20), label=part)
        ax.bar(x, neg, bottom=down, color=colours(k % 20))
        up += pos
        down += neg
    ax.axhline(0, color="black", linewidth=0.8)
    rot = len(names) > 4
    ax.set_xticks(x, labels=names, rotation=45 if rot else 0, ha="right" if rot else "center")
    ax.set_ylabel("held-out R² (cross-validated)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _finish(fig, ax, title, opts)


def plot_timecourse(
    result: Any,
    out: str | os.PathLike | None = None,
    *,
    time_unit: str = "",
    title: str | None = None,
    **figure: Unpack[SaveKwargs],
) -> Figure:
    """Time-resolved RSA: one curve per layer with its bootstrap band; significant clusters as bars below.

    ``result``: :func:`visreps.analysis.time_resolved_rsa`'s result (or its ``timecourse`` table).
    """
    import matplotlib

    opts = FigureOptions.checked("plot_timecourse", out, figure, SaveKwargs)
    df = _table(result, "timecourse", {"label", "time", "r"}, "visreps.analysis.time_resolved_rsa")
    labels = list(dict.fromkeys(df["label"]))
    fig, ax = _axes(opts.figsize or (7.0, 4.2))
    colours = matplotlib.colormaps["tab10"]
    lo_all = (
        float(np.nanmin(df[["r", "ci_low"]].to_numpy(dtype=np.float64))) if "ci_low" in df else float(df["r"].min())
    )
    hi_all = (
        float(np.nanmax(df[["r", "ci_high"]].to_numpy(dtype=np.float64))) if "ci_high" in df else float(df["r"].max())
    )
    span = max(hi_all - lo_all, 1e-6)
    for k, lab in enumerate(labels):
        sub = df[df["label"] == lab]
        t = np.asarray(sub["time"], dtype=np.float64)
        colour = colours(k % 10)
        ax.plot(t, sub["r"], color=colour, linewidth=1.5, label=lab)
        if "ci_low" in sub and np.isfinite(sub["ci_low"]).any():
            ax.fill_between(t, sub["ci_low"], sub["ci_high"], color=colour, alpha=0.2, linewidth=0)
        if "significant" in sub and sub["significant"].any():
            y = lo_all - span * (0.05 + 0.04 * k)
            sig = np.asarray(sub["significant"], dtype=bool)
            ax.plot(t, np.where(sig, y, np.nan), color=colour, linewidth=4, solid_capstyle="butt")
    ax.axhline(0, color="black", linewidth=0.8)
    unit = f" ({time_unit})" if time_unit else ""
    ax.set_xlabel(f"time{unit}")
    method = (getattr(df, "attrs", {}) or {}).get("method", "")
    ax.set_ylabel(f"{method} correlation with the reference RDM".strip())
    marked = "significant" in df and bool(df["significant"].any())
    ax.legend(fontsize=8, title="bars: significant clusters" if marked else None)
    return _finish(fig, ax, title, opts)
