"""Figures of RDMs: one RDM (:func:`plot_rdm`) or a grid of them on one colour scale (:func:`plot_rdms`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import VisrepsError
from ._layout import _chars, _figure, _new_or_given, _style, _title, _wrap
from ._save import FigureKwargs, FigureOptions, GridKwargs, _set_caption
from ._style import _check_cmap, _rename

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from typing_extensions import Unpack


def _off_diagonal_limits(a: np.ndarray, vmin, vmax):
    """Colour limits from the off-diagonal entries (the diagonal would otherwise take the whole scale)."""
    if a.shape[0] < 2 or (vmin is not None and vmax is not None):
        return vmin, vmax
    off = a[~np.eye(a.shape[0], dtype=bool)]
    off = off[np.isfinite(off)]
    if off.size == 0 or off.min() == off.max():
        return vmin, vmax
    return (float(off.min()) if vmin is None else vmin), (float(off.max()) if vmax is None else vmax)


def _order_of(a: np.ndarray, order: Any, categories: Sequence[Any] | None) -> np.ndarray | None:
    from ..analysis.rsa import rdm_order

    if order is None:
        return None
    n = a.shape[0]
    if isinstance(order, str):
        if order == "cluster":
            return rdm_order(a)
        if order == "category":
            if categories is None:
                raise VisrepsError("order='category' needs categories= (the manifest's label column)")
            first = {c: i for i, c in reversed(list(enumerate(categories)))}
            return np.array(sorted(range(n), key=lambda i: (first[categories[i]], i)))
        raise VisrepsError(f"order must be 'cluster', 'category' or a permutation of the conditions, got {order!r}")
    idx = np.asarray(order)
    if sorted(idx.tolist()) != list(range(n)):
        raise VisrepsError(f"order must be a permutation of range({n})")
    return idx


def _draw_categories(ax: Axes, cats: Sequence[Any], fontsize: float) -> None:
    """Lines between runs of one category and the category's name at the middle of its run."""
    runs: list[tuple[Any, int, int]] = []
    for i, c in enumerate(cats):
        if runs and runs[-1][0] == c:
            runs[-1] = (c, runs[-1][1], i)
        else:
            runs.append((c, i, i))
    for _, a, _ in runs[1:]:
        ax.axhline(a - 0.5, color="white", linewidth=0.8)
        ax.axvline(a - 0.5, color="white", linewidth=0.8)
    mids = [(a + b) / 2 for _, a, b in runs]
    names = [_wrap(str(c), 14) for c, _, _ in runs]
    ax.set_xticks(mids, labels=names, rotation=90, fontsize=fontsize)
    ax.set_yticks(mids, labels=names, fontsize=fontsize)
    ax.tick_params(length=0)


def plot_rdm(
    rdm: Any,
    out: str | os.PathLike | None = None,
    *,
    rank: bool = False,
    order: str | Sequence[int] | None = None,
    labels: Sequence[str] | None = None,
    categories: Sequence[Any] | None = None,
    cmap: str = "viridis",
    title: str | None = None,
    colorbar: bool = True,
    vmin: float | None = None,
    vmax: float | None = None,
    **figure: Unpack[FigureKwargs],
) -> Figure:
    """Draw an RDM as an image and optionally save it.

    Args:
        rdm: square RDM or condensed vector (e.g. from :func:`visreps.analysis.compute_rdm`).
        out: file to write; the format comes from its suffix (one of :data:`FIGURE_FORMATS`)
            unless ``format`` is given.
        rank: show the ranks of the dissimilarities (scaled to (0, 1]) instead of their values,
            which makes RDMs with different scales comparable by eye.
        order: ``"cluster"`` to order the conditions by average-linkage hierarchical clustering
            (similar conditions next to each other), ``"category"`` to group them by ``categories``,
            or a permutation of ``range(n)``.
        labels: condition names for the axes (drawn when there are at most 60).
        categories: one category per condition (e.g. the manifest's ``label`` column): lines at the
            category boundaries and the category names on the axes.
        cmap: a matplotlib colormap name.
        colorbar: draw a colour bar, labelled with what the colours mean.
        vmin, vmax: colour limits; by default the smallest and largest off-diagonal entries (the
            zero diagonal would otherwise stretch the scale), so the diagonal shows the lowest colour.
        **figure: ``ax``, ``width``, ``dpi``, ``figsize``, ``format``, ``caption``: where and how the figure is
            drawn and saved (:class:`~visreps.plotting.FigureKwargs`).

    Returns:
        the ``matplotlib.figure.Figure``.
    """
    opts = FigureOptions.checked("plot_rdm", out, figure)
    a, labels, categories = _prepared(rdm, rank, order, labels, categories)
    n = a.shape[0]
    cm = _check_cmap(cmap)
    vmin, vmax = _off_diagonal_limits(a, vmin, vmax)
    with _style():
        fig, ax = _new_or_given(opts.ax, opts.size(6.0, 5.0))
        im = ax.imshow(a, cmap=cm, vmin=vmin, vmax=vmax, interpolation="nearest")
        _name_conditions(ax, n, labels, categories)
        if title:
            _title(fig, ax, title, opts.owned)
        if colorbar:
            _colorbar(fig, im, ax, rank, 0.85)
        _set_caption(fig, [f"RDM of {n} conditions{' (ranks)' if rank else ''}."])
        opts.save(fig)
    return fig


def _prepared(rdm: Any, rank: bool, order: Any, labels: Any, categories: Any) -> tuple[np.ndarray, Any, Any]:
    """The RDM as drawn (square, checked finite, ranked with ``rank``, in ``order``) and its labels and
    categories in that order."""
    from ..analysis.rsa import rank_transform, reorder, squareform

    a = squareform(rdm)
    if not np.isfinite(a).all():
        raise VisrepsError("the RDM has NaN/inf entries; it cannot be drawn")
    n = a.shape[0]
    if labels is not None and len(labels) != n:
        raise VisrepsError(f"labels has {len(labels)} names but the RDM has {n} conditions")
    if categories is not None and len(categories) != n:
        raise VisrepsError(f"categories has {len(categories)} entries but the RDM has {n} conditions")
    idx = _order_of(a, order, categories)
    if rank:
        a = rank_transform(a)
    if idx is not None:
        a = reorder(a, idx)
        labels = None if labels is None else [labels[int(i)] for i in idx]
        categories = None if categories is None else [categories[int(i)] for i in idx]
    return a, labels, categories


def _name_conditions(ax: Axes, n: int, labels: Sequence[str] | None, categories: Sequence[Any] | None) -> None:
    """The axes of one RDM: category boundaries and names, else the conditions' names (at most 60), else a count."""
    if categories is not None:
        _draw_categories(ax, categories, 7)
    elif labels is not None and n <= 60:
        fs = max(4, min(8, 400 // max(n, 1)))
        shown = [_wrap(x, 24) for x in labels]
        ax.set_xticks(range(n), labels=shown, rotation=90, fontsize=fs)
        ax.set_yticks(range(n), labels=shown, fontsize=fs)
    else:
        ax.set_xlabel(f"condition ({n})")
        ax.set_ylabel(f"condition ({n})")


def _colorbar(fig: Figure, im: Any, ax: Any, rank: bool, shrink: float) -> None:
    """The colour bar of RDMs, labelled with what the colours mean."""
    cb = fig.colorbar(im, ax=ax, shrink=shrink)
    cb.set_label("dissimilarity rank (0–1)" if rank else "dissimilarity")


def _square_rdms(items: list[tuple[Any, Any]], rank: bool) -> list[np.ndarray]:
    """The RDMs as square matrices (ranks with ``rank``), checked: finite, all of one size."""
    from ..analysis.rsa import rank_transform, squareform

    mats: list[np.ndarray] = []
    for k, r in items:
        a = squareform(r)
        if not np.isfinite(a).all():
            raise VisrepsError(f"RDM {k!r} has NaN/inf entries; it cannot be drawn")
        if mats and a.shape != mats[0].shape:
            raise VisrepsError(f"RDM {k!r} has {a.shape[0]} conditions but {items[0][0]!r} has {mats[0].shape[0]}")
        mats.append(rank_transform(a) if rank else a)
    return mats


def plot_rdms(
    rdms: Mapping[str, Any] | Sequence[Any],
    out: str | os.PathLike | None = None,
    *,
    labels: Mapping[str, str] | Sequence[str] | None = None,
    categories: Sequence[Any] | None = None,
    order: str | Sequence[int] | None = None,
    rank: bool = False,
    ncols: int | None = None,
    cmap: str = "viridis",
    title: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    **figure: Unpack[GridKwargs],
) -> Figure:
    """A grid of RDMs (several models or layers) on one shared colour scale, as in the THINGSvision paper's Fig. 2A.

    Args:
        rdms: a dict name → RDM (square or condensed; the names are the panels' titles, e.g. the
            ``label`` of :func:`visreps.analysis.compare_features` with ``return_rdms=True``), or a list.
        labels: panel titles: a dict name → title or a list in order (default: the names).
        categories: one category per condition (e.g. ``features.manifest["label"]``): boundaries and
            names on every panel.
        order: ``"category"`` (group the conditions by ``categories``), ``"cluster"`` (hierarchical
            clustering of the first RDM, applied to all so the panels stay comparable) or a permutation.
        rank: show ranks (0–1) of each RDM's dissimilarities, so RDMs of different scales share the colours.
        ncols: panels per row (default: up to 4, as many as fit 1.7 inches each in ``width``).
        vmin, vmax: the shared colour limits (default: the smallest and largest off-diagonal entry of all).
        **figure: ``width`` (``"single"``, ``"double"``: the default, or inches), ``dpi``, ``figsize``,
            ``format``, ``caption`` (:class:`~visreps.plotting.GridKwargs`).
    """
    opts = FigureOptions.checked("plot_rdms", out, figure, GridKwargs, width="double")
    items = list(rdms.items()) if isinstance(rdms, Mapping) else [(f"RDM {i + 1}", r) for i, r in enumerate(rdms)]
    if not items:
        raise VisrepsError("plot_rdms needs at least one RDM")
    names = [str(k) for k, _ in items]
    titles = _rename(names, labels)
    mats, categories = _ordered(items, rank, order, categories)
    lo, hi = _shared_limits(mats, vmin, vmax)
    w = opts.inches or 7.2
    ncols = int(ncols or min(4, len(mats), max(1, int(w // 1.7))))  # panels of at least 1.7 inches
    if ncols < 1:
        raise VisrepsError(f"ncols must be at least 1, got {ncols}")
    nrows = -(-len(mats) // ncols)
    panel = w / (ncols + 0.35)
    size = tuple(opts.figsize) if opts.figsize is not None else (w, panel * nrows + 0.5 + (0.3 if title else 0))
    cm = _check_cmap(cmap)
    with _style():
        fig = _figure(size)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        im = _draw_panels(axes, mats, [titles[k] for k in names], categories, (cm, lo, hi), _chars(panel, 8))
        if title:
            fig.suptitle(_wrap(title, _chars(w, 9)), fontsize=9)
        if im is not None:
            _colorbar(fig, im, axes, rank, 0.8)
        _set_caption(fig, [_rdms_caption(mats, rank, order)])
        opts.save(fig)
    return fig


def _rdms_caption(mats: list[np.ndarray], rank: bool, order: Any) -> str:
    """What the grid shows: how many conditions and panels, ranks or values, in which order."""
    how = {"cluster": " ordered by clustering of the first", "category": " grouped by category"}
    ordered = how.get(order, "") if isinstance(order, str) else ""
    n = mats[0].shape[0]
    return f"RDMs of {n} conditions, {len(mats)} panels on one colour scale{' (ranks)' if rank else ''}{ordered}."


def _ordered(items: list[tuple[Any, Any]], rank: bool, order: Any, categories: Any) -> tuple[list[np.ndarray], Any]:
    """The RDMs as drawn (square, checked, ranked with ``rank``, all in the order of the first) and the categories
    in that order."""
    from ..analysis.rsa import reorder, squareform

    mats = _square_rdms(items, rank)
    n = mats[0].shape[0]
    if categories is not None and len(categories) != n:
        raise VisrepsError(f"categories has {len(categories)} entries but the RDMs have {n} conditions")
    idx = _order_of(squareform(items[0][1]), order, categories)
    if idx is not None:
        mats = [reorder(a, idx) for a in mats]
        categories = None if categories is None else [categories[int(i)] for i in idx]
    return mats, categories


def _shared_limits(mats: list[np.ndarray], vmin: float | None, vmax: float | None) -> tuple[Any, Any]:
    """One colour scale for all panels: ``vmin``/``vmax``, else the extremes of all the off-diagonal entries."""
    lims = [_off_diagonal_limits(a, None, None) for a in mats]
    lows, highs = [x[0] for x in lims if x[0] is not None], [x[1] for x in lims if x[1] is not None]
    lo = vmin if vmin is not None else (min(lows) if lows else None)
    hi = vmax if vmax is not None else (max(highs) if highs else None)
    return lo, hi


def _draw_panels(axes: Any, mats: list[np.ndarray], titles: list[str], categories: Any, scale: tuple, chars: int):
    """One RDM per panel on the shared colour ``scale`` (colormap, low, high); spare panels hidden. Returns the
    last image (for the colour bar), ``None`` when there is none."""
    cm, lo, hi = scale
    im = None
    for k, ax in enumerate(axes.flat):
        if k >= len(mats):
            ax.set_axis_off()
            continue
        im = ax.imshow(mats[k], cmap=cm, vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(_wrap(titles[k], chars), fontsize=8)
        if categories is not None:
            _draw_categories(ax, categories, 6)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
    return im
