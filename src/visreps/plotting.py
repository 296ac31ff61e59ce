"""Figures of RDMs and comparison tables.

Figures are built with matplotlib's object API (``matplotlib.figure.Figure`` rendered by the Agg,
PDF or SVG canvas), never through ``pyplot``: this works on headless machines without a display
and leaves the interactive backend of a user's session alone. Every function returns the
``Figure`` (it shows inline in Jupyter) and saves it when ``out`` is given.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import VisrepsError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FORMATS = ("png", "pdf", "svg", "jpg", "jpeg")


def _figure(figsize: Any) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _format_of(out: Path, fmt: str | None) -> str:
    f = (fmt or out.suffix.lstrip(".")).lower().lstrip(".")
    if f not in FORMATS:
        raise VisrepsError(
            f"cannot save a figure as {str(out)!r}: format {f or '(none)'!r} is not supported; "
            f"end the file name with one of {', '.join('.' + x for x in FORMATS)}"
        )
    return "jpeg" if f == "jpg" else f


def _save(fig, out, dpi, fmt) -> None:
    if out is None:
        return
    out = Path(out).expanduser()
    f = _format_of(out, fmt)
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float)) or dpi <= 0:
        raise VisrepsError(f"dpi must be a positive number, got {dpi!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, format=f, facecolor="white")


def _check_cmap(cmap: str):
    import matplotlib

    try:
        return matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    except KeyError:
        from .errors import closest

        hint = closest(str(cmap), list(matplotlib.colormaps))
        suggest = f"; did you mean {', '.join(hint)}?" if hint else ""
        raise VisrepsError(f"colormap {cmap!r} is not known{suggest}") from None


def _off_diagonal_limits(a: np.ndarray, vmin, vmax):
    """Colour limits from the off-diagonal entries (the diagonal would otherwise take the whole scale)."""
    if a.shape[0] < 2 or (vmin is not None and vmax is not None):
        return vmin, vmax
    off = a[~np.eye(a.shape[0], dtype=bool)]
    off = off[np.isfinite(off)]
    if off.size == 0 or off.min() == off.max():
        return vmin, vmax
    return (float(off.min()) if vmin is None else vmin), (float(off.max()) if vmax is None else vmax)


def plot_rdm(
    rdm: Any,
    out: str | os.PathLike | None = None,
    *,
    rank: bool = False,
    order: str | Sequence[int] | None = None,
    labels: Sequence[str] | None = None,
    cmap: str = "viridis",
    title: str | None = None,
    colorbar: bool = True,
    vmin: float | None = None,
    vmax: float | None = None,
    dpi: int = 200,
    figsize: tuple[float, float] = (6.0, 5.0),
    format: str | None = None,
) -> Figure:
    """Draw an RDM as an image and optionally save it.

    Args:
        rdm: square RDM or condensed vector (e.g. from :func:`visreps.analysis.compute_rdm`).
        out: file to write; the format comes from its suffix (``.png``, ``.pdf``, ``.svg``, ``.jpg``)
            unless ``format`` is given.
        rank: show the ranks of the dissimilarities (scaled to (0, 1]) instead of their values,
            which makes RDMs with different scales comparable by eye.
        order: ``"cluster"`` to order the conditions by average-linkage hierarchical clustering
            (similar conditions next to each other), or a permutation of ``range(n)``.
        labels: condition names for the axes (drawn when there are at most 60).
        cmap: a matplotlib colormap name.
        colorbar: draw a colour bar, labelled with what the colours mean.
        vmin, vmax: colour limits; by default the smallest and largest off-diagonal entries (the
            zero diagonal would otherwise stretch the scale), so the diagonal shows the lowest colour.
        dpi: resolution of raster formats.

    Returns:
        the ``matplotlib.figure.Figure``.
    """
    from .analysis.rsa import rank_transform, rdm_order, reorder, squareform

    a = squareform(rdm)
    if not np.isfinite(a).all():
        raise VisrepsError("the RDM has NaN/inf entries; it cannot be drawn")
    n = a.shape[0]
    if labels is not None and len(labels) != n:
        raise VisrepsError(f"labels has {len(labels)} names but the RDM has {n} conditions")
    if rank:
        a = rank_transform(a)
    if order is not None:
        if isinstance(order, str):
            if order != "cluster":
                raise VisrepsError(f"order must be 'cluster' or a permutation of the conditions, got {order!r}")
            idx = rdm_order(squareform(rdm))
        else:
            idx = np.asarray(order)
        a = reorder(a, idx)
        if labels is not None:
            labels = [labels[int(i)] for i in idx]
    cm = _check_cmap(cmap)
    vmin, vmax = _off_diagonal_limits(a, vmin, vmax)
    fig = _figure(figsize)
    ax = fig.add_subplot()
    im = ax.imshow(a, cmap=cm, vmin=vmin, vmax=vmax, interpolation="nearest")
    if labels is not None and n <= 60:
        ax.set_xticks(range(n), labels=list(labels), rotation=90, fontsize=max(4, min(9, 400 // n)))
        ax.set_yticks(range(n), labels=list(labels), fontsize=max(4, min(9, 400 // n)))
    else:
        ax.set_xlabel(f"condition ({n})")
        ax.set_ylabel(f"condition ({n})")
    if title:
        ax.set_title(title)
    if colorbar:
        cb = fig.colorbar(im, ax=ax, shrink=0.85)
        cb.set_label("dissimilarity rank (0–1)" if rank else "dissimilarity")
    _save(fig, out, dpi, format)
    return fig


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
    dpi: int = 200,
    figsize: tuple[float, float] | None = None,
    format: str | None = None,
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
    """
    import pandas as pd

    if isinstance(table, pd.DataFrame) and {"label", "r"} <= set(table.columns):
        return plot_reference_comparison(table, out, title=title, dpi=dpi, figsize=figsize, format=format)
    df = table if isinstance(table, pd.DataFrame) else pd.DataFrame(np.asarray(table))
    try:
        vals = df.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise VisrepsError("the comparison table must hold numbers only (labels in the index and columns)") from None
    if vals.ndim != 2 or vals.size == 0:
        raise VisrepsError(f"the comparison table must be 2-D and non-empty, got shape {vals.shape}")
    nr, nc = vals.shape
    if figsize is None:
        longest = max([len(str(x)) for x in list(df.index) + list(df.columns)] + [1])
        side = 0.45 * max(nr, nc) + 0.09 * longest + 2.5
        figsize = (min(30.0, side + 1.5), min(30.0, side))
    cm = _check_cmap(cmap)
    if nr == nc and list(map(str, df.index)) == list(map(str, df.columns)):  # pairwise: skip the self-comparisons
        vmin, vmax = _off_diagonal_limits(vals, vmin, vmax)
    fig = _figure(figsize)
    ax = fig.add_subplot()
    im = ax.imshow(vals, cmap=cm, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(nc), labels=[str(c) for c in df.columns], rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(nr), labels=[str(i) for i in df.index])
    if annotate is None:
        annotate = nr <= 15 and nc <= 15
    if annotate:
        lo, hi = im.get_clim()
        mid = (lo + hi) / 2
        for i in range(nr):
            for j in range(nc):
                v = vals[i, j]
                if np.isfinite(v):
                    ax.text(
                        j, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color="white" if v < mid else "black"
                    )
    attrs = getattr(df, "attrs", {}) or {}
    if colorbar_label is None:
        method = attrs.get("method")
        colorbar_label = f"{method} correlation" if method else "value"
        if attrs.get("rdm_method"):
            colorbar_label += f" of RDMs ({attrs['rdm_method']})"
    cb = fig.colorbar(im, ax=ax, shrink=0.85)
    cb.set_label(colorbar_label)
    if title:
        ax.set_title(title)
    _save(fig, out, dpi, format)
    return fig


def plot_reference_comparison(
    table: Any,
    out: str | os.PathLike | None = None,
    *,
    title: str | None = None,
    dpi: int = 200,
    figsize: tuple[float, float] | None = None,
    format: str | None = None,
) -> Figure:
    """Horizontal bars of each feature set's correlation with the reference RDM(s), with CI whiskers.

    ``table`` is the DataFrame of :func:`compare_to_reference` (columns ``label``, ``r``, and
    optionally ``reference``, ``ci_low``, ``ci_high``).
    """
    import pandas as pd

    df = table if isinstance(table, pd.DataFrame) else pd.DataFrame(table)
    if not {"label", "r"} <= set(df.columns):
        raise VisrepsError("the table needs the columns 'label' and 'r' (the result of compare_to_reference)")
    refs = list(dict.fromkeys(df["reference"])) if "reference" in df else [None]
    labels = list(dict.fromkeys(df["label"]))
    if figsize is None:
        longest = max(len(str(x)) for x in labels)
        figsize = (6.0 + 0.07 * longest, 1.2 + 0.35 * len(labels) * max(1, len(refs)))
    fig = _figure(figsize)
    ax = fig.add_subplot()
    h = 0.8 / len(refs)
    for k, ref in enumerate(refs):
        sub = df if ref is None else df[df["reference"] == ref]
        sub = sub.set_index("label").reindex(labels)
        y = np.arange(len(labels)) + (k - (len(refs) - 1) / 2) * h
        err = None
        if "ci_low" in sub and "ci_high" in sub:
            err = np.vstack([sub["r"] - sub["ci_low"], sub["ci_high"] - sub["r"]])
        ax.barh(y, sub["r"], height=h * 0.9, xerr=err, capsize=3, label=str(ref) if ref is not None else None)
    ax.set_yticks(range(len(labels)), labels=labels)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    attrs = getattr(df, "attrs", {}) or {}
    xl = f"{attrs.get('method', 'correlation')} correlation with the reference RDM"
    if attrs.get("ci"):
        xl += f" ({round(100 * attrs['ci'])}% bootstrap CI)"
    ax.set_xlabel(xl)
    if len(refs) > 1:
        ax.legend(title="reference", fontsize=8)
    if title:
        ax.set_title(title)
    _save(fig, out, dpi, format)
    return fig
