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
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import VisrepsError
from .options import FIGURE_FORMATS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: the file formats a figure can be written in (the file name's suffix, or ``format=``)

#: the earlier name of :data:`FIGURE_FORMATS`
FORMATS = FIGURE_FORMATS
#: formats drawn in pixels, for which ``dpi`` sets the resolution
RASTER_FORMATS = ("png", "tiff", "jpg")
_ALIASES = {"tif": "tiff", "jpeg": "jpg"}
_MPL_FORMAT = {"jpg": "jpeg"}
#: at most this many significant pairwise differences are drawn as lines over the bars (else: the table only)
MAX_PAIR_LINES = 12
#: resolution of raster figures unless ``dpi`` is given (journals ask for 300 or more)
DEFAULT_DPI = 300
#: figure widths in inches: a journal's single column (89 mm) and double column (183 mm)
WIDTHS = {"single": 89 / 25.4, "double": 183 / 25.4}
#: small multiples (one panel per source) wrap into rows rather than get narrower than this, in inches
PANEL_MIN_WIDTH = 1.6
_METHOD_NAMES = {"pearson": "Pearson r", "spearman": "Spearman ρ", "kendall": "Kendall τ", "tau_a": "Kendall τa"}
_FONT = {"font.size": 8.0, "axes.titlesize": 9.0, "axes.labelsize": 8.0, "legend.fontsize": 7.0}
_HATCHES = ("////", "\\\\\\\\", "xxxx", "....")  # random sources of one architecture: one pattern each
_DASHES = ("--", ":", "-.", (0, (5, 1, 1, 1)))
_LIGHTER = (0.45, 0.62, 0.3, 0.75)


# --------------------------------------------------------------------------- formats, sizes and saving


def figure_format(path: str | os.PathLike, format: str | None = None) -> str:
    """The format of a figure file (from ``format`` or the file name's suffix), checked against :data:`FIGURE_FORMATS`.

    Call it before any work to refuse a bad ``--plot`` early. ``tif`` and ``jpeg`` are read as ``tiff``
    and ``jpg``.
    """
    f = (format or Path(path).suffix).lower().lstrip(".")
    f = _ALIASES.get(f, f)
    if f not in FIGURE_FORMATS:
        raise VisrepsError(
            f"cannot save a figure as {str(path)!r}: format {f or '(none)'!r} is not supported; "
            f"end the file name with one of {', '.join('.' + x for x in FIGURE_FORMATS)}"
        )
    return f


def caption_path(out: str | os.PathLike) -> Path:
    """The caption file written next to a figure: the figure's name with ``.txt``."""
    return Path(out).expanduser().with_suffix(".txt")


def figure_width(width: str | float | None) -> float | None:
    """``width``: ``"single"`` or ``"double"`` (a journal's column, :data:`WIDTHS`), inches, or ``None``."""
    if width is None:
        return None
    if isinstance(width, str):
        if width not in WIDTHS:
            raise VisrepsError(f"width must be 'single', 'double' or a number of inches, got {width!r}")
        return WIDTHS[width]
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0.5 <= width <= 40:
        raise VisrepsError(f"width must be 'single', 'double' or a number of inches (0.5–40), got {width!r}")
    return float(width)


def _check_dpi(dpi: Any) -> None:
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float)) or dpi <= 0:
        raise VisrepsError(f"dpi must be a positive number, got {dpi!r}")


def save_figure(
    fig: Figure,
    out: str | os.PathLike,
    *,
    dpi: float = DEFAULT_DPI,
    format: str | None = None,
    caption: str | None = None,
) -> Path:
    """Write ``fig`` to ``out`` (format from the suffix or ``format``) under a partial name, renamed when complete.

    ``caption``: text written next to the figure as ``<name>.txt`` (also via a partial name).
    """
    out = Path(out).expanduser()
    f = figure_format(out, format)
    _check_dpi(dpi)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    try:
        meta = {"Software": "visreps"} if f in ("png",) else None
        fig.savefig(partial, dpi=dpi, format=_MPL_FORMAT.get(f, f), facecolor="white", metadata=meta)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    if caption:
        cpath = caption_path(out)
        cpartial = cpath.with_name(f".{cpath.name}.partial")
        cpartial.write_text(caption.rstrip() + "\n", encoding="utf-8")
        os.replace(cpartial, cpath)
    return out


def _fit(fig: Figure, *, grow_width: bool = False, tries: int = 8) -> None:
    """Grow the figure until everything drawn lies inside it (long labels, wrapped titles, legends below).

    The height grows (and the width, unless a journal width was asked for) by what sticks out, and the
    constrained layout is run again; a layout that collapsed for lack of room gets the room it needs.
    """
    import warnings

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    for _ in range(tries):
        canvas = FigureCanvasAgg(fig)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "constrained_layout not applied": fixed below
            canvas.draw()
        bb = fig.get_tightbbox(canvas.get_renderer())
        w, h = fig.get_size_inches()
        pad = 0.02
        over_h = max(0.0, pad - bb.y0) + max(0.0, bb.y1 - h + pad)
        over_w = max(0.0, pad - bb.x0) + max(0.0, bb.x1 - w + pad)
        if over_h <= 0 and (over_w <= 0 or not grow_width):
            if over_w <= 0:
                return
            fig.set_figheight(h * 1.15)  # a fixed width that does not fit: more height lets the layout wrap
            continue
        fig.set_figheight(min(40.0, h + 1.2 * over_h + 0.1))
        if grow_width and over_w > 0:
            fig.set_figwidth(min(40.0, w + 1.2 * over_w + 0.1))


def _save(
    fig: Figure, out: Any, dpi: Any, fmt: str | None, caption: bool = False, *, owned: bool = True, grow: bool = True
) -> None:
    if owned:
        _fit(fig, grow_width=grow)
    text = figure_caption(fig)
    if out is None:
        return
    save_figure(fig, out, dpi=dpi, format=fmt, caption=text if caption else None)


def figure_caption(fig: Figure) -> str:
    """The details of a figure drawn by visreps (what its caption file holds): images, subjects, intervals, tests."""
    return str(getattr(fig, "_visreps_caption_text", "") or "")


def _set_caption(fig: Figure, lines: Sequence[str]) -> None:
    old = figure_caption(fig)
    text = " ".join(x.strip() for x in lines if x and x.strip())
    fig._visreps_caption_text = (old + " " + text).strip() if old else text  # type: ignore[attr-defined]


def _figure(figsize: Any) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _style():
    import matplotlib

    return matplotlib.rc_context(dict(_FONT))  # type: ignore[arg-type]


def _root(ax: Axes) -> Figure:
    """The figure that holds ``ax`` (the top one when ``ax`` lies in a subfigure)."""
    fig: Any = ax.figure
    while getattr(fig, "figure", fig) is not fig and getattr(fig, "figure", None) is not None:
        fig = fig.figure
    return fig


def _new_or_given(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return _root(ax), ax
    fig = _figure(figsize)
    return fig, fig.add_subplot()


def _size(width: Any, figsize: Any, default_w: float, height: float) -> tuple[float, float]:
    if figsize is not None:
        return tuple(figsize)  # type: ignore[return-value]
    w = figure_width(width)
    if w is None:
        return (default_w, height)
    return (w, height * (w / default_w) ** 0.5 if w < default_w else height)


def _wrap(text: str, width: int) -> str:
    """Text broken into lines of at most ``width`` characters, at spaces or after ``/`` (in a word if need be)."""
    text = str(text)
    if len(text) <= width or "\n" in text:
        return text
    import re

    width = max(6, width)
    tokens = [t for t in re.split(r"(?<=/)|(?= )", text) if t]
    lines: list[str] = []
    cur = ""
    for tok in tokens:
        if cur and len(cur) + len(tok) > width:
            lines.append(cur.rstrip())
            cur = tok.lstrip()
        else:
            cur += tok
        while len(cur) > width:
            lines.append(cur[:width])
            cur = cur[width:]
    if cur.strip():
        lines.append(cur.rstrip())
    return "\n".join(lines)


def _chars(inches: float, fontsize: float = 8.0) -> int:
    """About how many characters of ``fontsize`` fit in ``inches``."""
    return max(8, int(inches * 72 / (0.7 * fontsize)))


def _title(fig: Figure, ax: Axes, title: str, owned: bool) -> None:
    """The title centred over the whole figure (so it never runs off an edge), or over ``ax`` in a user's figure."""
    if owned:
        fig.suptitle(_wrap(title, _chars(fig.get_figwidth() * 0.92, 9)), fontsize=9)
    else:
        ax.set_title(_wrap(title, _chars(ax.get_position().width * fig.get_figwidth(), 9)), fontsize=9)


def _check_cmap(cmap: Any):
    import matplotlib

    try:
        return matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    except KeyError:
        from .errors import closest

        hint = closest(str(cmap), list(matplotlib.colormaps))
        suggest = f"; did you mean {', '.join(hint)}?" if hint else ""
        raise VisrepsError(f"colormap {cmap!r} is not known{suggest}") from None


# --------------------------------------------------------------------------- sources, labels and colours


def _sources(df: Any) -> list[str]:
    """The source label of each row: ``label`` without its ``/layer`` (the model with its weights)."""
    labels = [str(x) for x in df["label"]] if "label" in df else [str(x) for x in df["model"]]
    layers = [str(x) for x in df["layer"]] if "layer" in df else [""] * len(labels)
    out = []
    for lab, layer in zip(labels, layers):
        out.append(lab[: -len(layer) - 1] if layer and lab.endswith("/" + layer) else lab)
    return out


def _rename(names: Sequence[str], labels: Any, df: Any = None) -> dict[str, str]:
    """``labels=``: a dict source label (or model id) → display name, or a list in the sources' order."""
    uniq = list(dict.fromkeys(names))
    if labels is None:
        return {s: s for s in uniq}
    if isinstance(labels, Mapping):
        models = {}
        if df is not None and "model" in df:
            for s, m in zip(_sources(df), df["model"]):
                models.setdefault(s, str(m))
        unknown = [k for k in labels if k not in uniq and k not in models.values()]
        if unknown:
            raise VisrepsError(f"labels names {', '.join(map(repr, unknown))}, not a source of this figure: {uniq}")
        out = {}
        for s in uniq:
            out[s] = str(labels.get(s, labels.get(models.get(s, "\0"), s)))
    else:
        labels = list(labels)
        if len(labels) != len(uniq):
            raise VisrepsError(f"labels has {len(labels)} names but the figure has {len(uniq)} sources: {uniq}")
        out = {s: str(n) for s, n in zip(uniq, labels)}
    if len(set(out.values())) < len(out):
        raise VisrepsError(
            f"labels gives two sources the same name: {sorted(out.values())}; every source needs its own"
        )
    return out


def _is_random(df: Any, sources: Sequence[str]) -> dict[str, bool]:
    weights = [str(x) for x in df["weights"]] if "weights" in df else [""] * len(sources)
    out: dict[str, bool] = {}
    for s, w in zip(sources, weights):
        out[s] = out.get(s, False) or w.startswith("random") or "(random" in s
    return out


def _families(df: Any, sources: Sequence[str]) -> dict[str, str]:
    models = [str(x) for x in df["model"]] if "model" in df else list(sources)
    out: dict[str, str] = {}
    for s, m in zip(sources, models):
        out.setdefault(s, m)
    return out


def _lighter(color: Any, amount: float = 0.5) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(color)
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount)


def source_styles(
    sources: Sequence[str],
    *,
    random: Mapping[str, bool] | None = None,
    families: Mapping[str, str] | None = None,
    colors: Any = None,
) -> dict[str, dict[str, Any]]:
    """One style per source: ``{"color", "edgecolor", "hatch", "random"}``.

    Each architecture gets a colour of the palette (``colors``: a dict source → colour, a list of
    colours, or a colormap name; default ``tab10``); a source with random weights takes the lighter
    shade of its architecture's colour (when the same figure holds that architecture with other weights)
    and is hatched.
    """
    from matplotlib.colors import to_rgb

    uniq = list(dict.fromkeys(sources))
    random = dict(random or {})
    families = dict(families or {})
    if isinstance(colors, Mapping):
        missing = [s for s in uniq if s not in colors]
        if missing:
            raise VisrepsError(f"colors has no colour for {', '.join(map(repr, missing))}")
        base = {s: colors[s] for s in uniq}
    else:
        if colors is None or isinstance(colors, str):
            cmap = _check_cmap(colors or "tab10")
            n = getattr(cmap, "N", 10)
            palette = [cmap(i % n) for i in range(max(len(uniq), 1))] if n <= 20 else None
            if palette is None:
                palette = [cmap(x) for x in np.linspace(0, 1, max(len(uniq), 2))]
        else:
            palette = list(colors)
            if not palette:
                raise VisrepsError("colors is empty; give a list of colours, a dict source → colour or a colormap")
        # a random source shares the colour of the first trained source of its architecture (lighter, hatched)
        first_trained: dict[str, str] = {}
        for s in uniq:
            if not random.get(s):
                first_trained.setdefault(families.get(s, s), s)
        keys = [first_trained.get(families.get(s, s), s) if random.get(s) else s for s in uniq]
        order = list(dict.fromkeys(keys))
        base = {s: palette[order.index(k) % len(palette)] for s, k in zip(uniq, keys)}
    try:
        out = {}
        nth: dict[Any, int] = {}  # the how-many-th random source of this colour
        for s in uniq:
            rnd = bool(random.get(s))
            c = to_rgb(base[s])
            j = nth.get(c, 0)
            if rnd:
                nth[c] = j + 1
            out[s] = {
                "color": _lighter(c, _LIGHTER[j % 4]) if rnd else c,
                "edgecolor": c,
                "hatch": _HATCHES[j % 4] if rnd else None,
                "linestyle": _DASHES[j % 4] if rnd else "-",
                "random": rnd,
            }
    except ValueError as e:
        raise VisrepsError(f"colors: {e}") from None
    return out


def _table_styles(df: Any, colors: Any) -> tuple[list[str], dict[str, dict[str, Any]]]:
    src = _sources(df)
    return src, source_styles(src, random=_is_random(df, src), families=_families(df, src), colors=colors)


def _bars(ax: Axes, x: np.ndarray, heights: np.ndarray, yerr: Any, styles: list[dict[str, Any]]) -> None:
    """Vertical bars in the sources' styles (hatch set per bar: older matplotlib takes one hatch per call)."""
    bars = ax.bar(
        x,
        heights,
        width=0.72,
        color=[st["color"] for st in styles],
        edgecolor=[st["edgecolor"] for st in styles],
        linewidth=0.6,
        yerr=yerr,
        capsize=2,
        error_kw={"elinewidth": 0.8},
        zorder=2,
    )
    for patch, st in zip(bars.patches, styles):
        if st["hatch"]:
            patch.set_hatch(st["hatch"])


def _outside_legend(fig: Figure, ax: Axes, handles: list[Any], names: list[str], owned: bool, title: str | None = None):
    """A legend that sits outside the axes: below the panels on a figure of our own, right of ``ax`` otherwise."""
    if not handles:
        return
    if owned:
        ncols = max(1, min(len(handles), int(fig.get_figwidth() // 2.2)))
        names = [_wrap(n, _chars(fig.get_figwidth() / ncols - 0.45, 7)) for n in names]
        fig.legend(handles, names, loc="outside lower center", ncols=ncols, frameon=False, title=title)
    else:
        names = [_wrap(n, 30) for n in names]
        ax.legend(handles, names, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, frameon=False)


def _patch(style: dict[str, Any]):
    from matplotlib.patches import Patch

    return Patch(facecolor=style["color"], edgecolor=style["edgecolor"], hatch=style["hatch"], linewidth=0.8)


def _line(style: dict[str, Any]):
    from matplotlib.lines import Line2D

    marker = "s" if style["random"] else "o"
    return Line2D([0], [0], color=style["edgecolor"], linestyle=style["linestyle"], marker=marker, markersize=4)


def _ceiling_patch():
    from matplotlib.patches import Patch

    return Patch(facecolor="0.86", edgecolor="none")


# --------------------------------------------------------------------------- RDMs


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
    from .analysis.rsa import rdm_order

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
    ax: Axes | None = None,
    width: str | float | None = None,
    dpi: int = DEFAULT_DPI,
    figsize: tuple[float, float] | None = None,
    format: str | None = None,
    caption: bool = False,
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
        ax: draw into these axes (of your own figure) instead of a new figure.
        width: ``"single"`` or ``"double"`` journal column, or inches.
        dpi: resolution of raster formats.
        caption: also write the details next to the figure (``<name>.txt``).

    Returns:
        the ``matplotlib.figure.Figure``.
    """
    from .analysis.rsa import rank_transform, reorder, squareform

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
    cm = _check_cmap(cmap)
    vmin, vmax = _off_diagonal_limits(a, vmin, vmax)
    owned, grow = ax is None, figure_width(width) is None and figsize is None
    with _style():
        fig, ax = _new_or_given(ax, _size(width, figsize, 6.0, 5.0))
        im = ax.imshow(a, cmap=cm, vmin=vmin, vmax=vmax, interpolation="nearest")
        fs = max(4, min(8, 400 // max(n, 1)))
        if categories is not None:
            _draw_categories(ax, categories, 7)
        elif labels is not None and n <= 60:
            shown = [_wrap(x, 24) for x in labels]
            ax.set_xticks(range(n), labels=shown, rotation=90, fontsize=fs)
            ax.set_yticks(range(n), labels=shown, fontsize=fs)
        else:
            ax.set_xlabel(f"condition ({n})")
            ax.set_ylabel(f"condition ({n})")
        if title:
            _title(fig, ax, title, owned)
        if colorbar:
            cb = fig.colorbar(im, ax=ax, shrink=0.85)
            cb.set_label("dissimilarity rank (0–1)" if rank else "dissimilarity")
        _set_caption(fig, [f"RDM of {n} conditions{' (ranks)' if rank else ''}."])
        _save(fig, out, dpi, format, caption, owned=owned, grow=grow)
    return fig


def _square_rdms(items: list[tuple[Any, Any]], rank: bool) -> list[np.ndarray]:
    """The RDMs as square matrices (ranks with ``rank``), checked: finite, all of one size."""
    from .analysis.rsa import rank_transform, squareform

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
    width: str | float | None = "double",
    dpi: int = DEFAULT_DPI,
    figsize: tuple[float, float] | None = None,
    format: str | None = None,
    caption: bool = False,
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
        width: ``"single"``, ``"double"`` (default) or inches.
    """
    from .analysis.rsa import reorder, squareform

    items = list(rdms.items()) if isinstance(rdms, Mapping) else [(f"RDM {i + 1}", r) for i, r in enumerate(rdms)]
    if not items:
        raise VisrepsError("plot_rdms needs at least one RDM")
    names = [str(k) for k, _ in items]
    titles = _rename(names, labels)
    mats = _square_rdms(items, rank)
    n = mats[0].shape[0]
    if categories is not None and len(categories) != n:
        raise VisrepsError(f"categories has {len(categories)} entries but the RDMs have {n} conditions")
    idx = _order_of(squareform(items[0][1]), order, categories)
    if idx is not None:
        mats = [reorder(a, idx) for a in mats]
        categories = None if categories is None else [categories[int(i)] for i in idx]
    lims = [_off_diagonal_limits(a, None, None) for a in mats]
    lows, highs = [x[0] for x in lims if x[0] is not None], [x[1] for x in lims if x[1] is not None]
    lo = vmin if vmin is not None else (min(lows) if lows else None)
    hi = vmax if vmax is not None else (max(highs) if highs else None)
    w = figure_width(width) or 7.2
    ncols = int(ncols or min(4, len(mats), max(1, int(w // 1.7))))  # panels of at least 1.7 inches
    if ncols < 1:
        raise VisrepsError(f"ncols must be at least 1, got {ncols}")
    nrows = -(-len(mats) // ncols)
    panel = w / (ncols + 0.35)
    size = tuple(figsize) if figsize is not None else (w, panel * nrows + 0.5 + (0.3 if title else 0))
    cm = _check_cmap(cmap)
    with _style():
        fig = _figure(size)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        im = None
        for k, ax in enumerate(axes.flat):
            if k >= len(mats):
                ax.set_axis_off()
                continue
            im = ax.imshow(mats[k], cmap=cm, vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_title(_wrap(titles[names[k]], _chars(panel, 8)), fontsize=8)
            if categories is not None:
                _draw_categories(ax, categories, 6)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
        if title:
            fig.suptitle(_wrap(title, _chars(w, 9)), fontsize=9)
        if im is not None:
            cb = fig.colorbar(im, ax=axes, shrink=0.8)
            cb.set_label("dissimilarity rank (0–1)" if rank else "dissimilarity")
        how = {"cluster": " ordered by clustering of the first", "category": " grouped by category"}
        _set_caption(
            fig,
            [
                f"RDMs of {n} conditions, {len(mats)} panels on one colour scale"
                f"{' (ranks)' if rank else ''}{how.get(order, '') if isinstance(order, str) else ''}."
            ],
        )
        _save(fig, out, dpi, format, caption, grow=figure_width(width) is None and figsize is None)
    return fig


# --------------------------------------------------------------------------- comparison heatmap


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
    ax: Axes | None = None,
    width: str | float | None = None,
    dpi: int = DEFAULT_DPI,
    figsize: tuple[float, float] | None = None,
    format: str | None = None,
    caption: bool = False,
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
        ax: draw into these axes instead of a new figure.
        width: ``"single"``, ``"double"`` or inches.
    """
    import pandas as pd

    if isinstance(table, pd.DataFrame) and {"label", "r"} <= set(table.columns):
        return plot_reference_comparison(
            table, out, title=title, labels=labels, ax=ax, width=width, dpi=dpi, figsize=figsize, format=format
        )
    df = table if isinstance(table, pd.DataFrame) else pd.DataFrame(np.asarray(table))
    try:
        vals = df.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise VisrepsError("the comparison table must hold numbers only (labels in the index and columns)") from None
    if vals.ndim != 2 or vals.size == 0:
        raise VisrepsError(f"the comparison table must be 2-D and non-empty, got shape {vals.shape}")
    nr, nc = vals.shape
    names = dict(labels or {})
    rows = [_wrap(names.get(str(i), str(i)), 36) for i in df.index]
    cols = [_wrap(names.get(str(c), str(c)), 36) for c in df.columns]
    if figsize is None and figure_width(width) is None:
        longest = max([len(x) for x in rows + cols] + [1])
        longest = min(longest, 36)
        side = 0.45 * max(nr, nc) + 0.09 * longest + 2.5
        figsize = (min(30.0, side + 1.5), min(30.0, side))
    elif figsize is None:
        w = figure_width(width) or 6.0
        figsize = (w, w * 0.9)
    cm = _check_cmap(cmap)
    if nr == nc and list(map(str, df.index)) == list(map(str, df.columns)):  # pairwise: skip the self-comparisons
        vmin, vmax = _off_diagonal_limits(vals, vmin, vmax)
    owned, grow = ax is None, figure_width(width) is None
    with _style():
        fig, ax = _new_or_given(ax, figsize)
        im = ax.imshow(vals, cmap=cm, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
        ax.set_xticks(range(nc), labels=cols, rotation=45, ha="right", rotation_mode="anchor")
        ax.set_yticks(range(nr), labels=rows)
        if annotate is None:
            annotate = nr <= 15 and nc <= 15
        if annotate:
            lo, hi = im.get_clim()
            mid = (lo + hi) / 2
            for i in range(nr):
                for j in range(nc):
                    v = vals[i, j]
                    if np.isfinite(v):
                        c = "white" if v < mid else "black"
                        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color=c)
        attrs = getattr(df, "attrs", {}) or {}
        if colorbar_label is None:
            method = attrs.get("method")
            colorbar_label = f"{method} correlation" if method else "value"
            if attrs.get("rdm_method"):
                colorbar_label += f" of RDMs ({attrs['rdm_method']})"
        cb = fig.colorbar(im, ax=ax, shrink=0.85)
        cb.set_label(colorbar_label)
        if title:
            _title(fig, ax, title, owned)
        if attrs.get("n_conditions"):
            _set_caption(fig, [f"{colorbar_label} over {attrs['n_conditions']} images."])
        _save(fig, out, dpi, format, caption, owned=owned, grow=grow)
    return fig


# --------------------------------------------------------------------------- model comparison (bars, curves)


def _targets(result: Any, pairwise: Any) -> list[tuple[str | None, Any, Any]]:
    """(name, table, pairwise) per target: a result, a dict name → result, a list, or a table of several references."""
    import pandas as pd

    if isinstance(result, Mapping):
        items = [(str(k), v) for k, v in result.items()]
    elif isinstance(result, (list, tuple)):
        items = [(None, v) for v in result]
    else:
        items = [(None, result)]
    out: list[tuple[str | None, Any, Any]] = []
    for name, res in items:
        df = getattr(res, "table", res)
        pw = getattr(res, "pairwise", None) if pairwise is None or len(items) > 1 else pairwise
        if not isinstance(df, pd.DataFrame) or not {"label", "r"} <= set(df.columns):
            raise VisrepsError(
                "plot_model_comparison needs the result of rsa_inference or compare_to_reference "
                "(a table with 'label' and 'r'), a list of them or a dict name → result"
            )
        refs = list(dict.fromkeys(df["reference"])) if "reference" in df else [None]
        if name is None and len(refs) > 1:
            for ref in refs:
                sub = df[df["reference"] == ref].reset_index(drop=True)
                sub.attrs.update(df.attrs)
                out.append((str(ref), sub, None))
            continue
        out.append((name if name is not None else (str(refs[0]) if refs[0] is not None else None), df, pw))
    if not out:
        raise VisrepsError("plot_model_comparison: nothing to draw")
    return out


def _intervals(df: Any, error: str) -> tuple[np.ndarray, Any, Any]:
    r = df["r"].to_numpy(dtype=np.float64)
    lo = hi = None
    if error == "ci" and {"ci_low", "ci_high"} <= set(df.columns):
        lo, hi = df["ci_low"].to_numpy(dtype=np.float64), df["ci_high"].to_numpy(dtype=np.float64)
    elif "se" in df:
        se = df["se"].to_numpy(dtype=np.float64)
        lo, hi = r - se, r + se
    return r, lo, hi


def _ceiling(df: Any) -> tuple[float, float] | None:
    if {"noise_ceiling_lower", "noise_ceiling_upper"} <= set(df.columns):
        return float(df["noise_ceiling_lower"].iloc[0]), float(df["noise_ceiling_upper"].iloc[0])
    return None


def _significance_column(df: Any) -> Any:
    for col in ("significant_zero", "significant_permutation"):
        if col in df:
            return df[col].astype(bool).to_numpy()
    return None


def _pair_rows(pairwise: Any, labels: list[str], r: np.ndarray) -> list[tuple[int, int, int]]:
    """Significant pairs as (left bar, right bar, better bar), narrowest spans first."""
    if pairwise is None or len(pairwise) == 0 or "significant" not in pairwise:
        return []
    pos = {lab: i for i, lab in enumerate(labels)}
    out = []
    for a, b, sig in zip(pairwise["a"], pairwise["b"], pairwise["significant"]):
        if bool(sig) and a in pos and b in pos:
            i, j = sorted((pos[a], pos[b]))
            out.append((i, j, i if r[i] >= r[j] else j))
    return sorted(out, key=lambda t: (t[1] - t[0], t[0]))


def _draw_pairs(ax, pairs: list[tuple[int, int, int]], y0: float, step: float) -> float:
    """Stack one line per significant pair above ``y0`` (pairs that do not overlap share a row); returns the top."""
    rows: list[list[tuple[int, int]]] = []
    top = y0
    for i, j, better in pairs:
        k = next((k for k, row in enumerate(rows) if all(j < a or i > b for a, b in row)), len(rows))
        if k == len(rows):
            rows.append([])
        rows[k].append((i, j))
        y = y0 + (k + 1) * step
        ax.plot([i, j], [y, y], color="0.25", linewidth=0.9, solid_capstyle="butt")
        ax.plot([better], [y], marker="o", markersize=3.5, color="0.25")
        ax.plot([i + j - better], [y], marker="|", markersize=6, color="0.25")
        top = max(top, y)
    return top


def _draw_bars(ax, df, styles, sources, error, pairwise) -> int:
    """Vertical bars in table order, coloured per source; whiskers, asterisks vs 0, pair lines; returns the pairs."""
    labels = [str(x) for x in df["label"]]
    r, lo, hi = _intervals(df, error)
    sig = _significance_column(df)
    nc = _ceiling(df)
    tops = hi if hi is not None else r
    x = np.arange(len(labels))
    yerr = None if lo is None or hi is None else np.vstack([r - lo, hi - r])
    _bars(ax, x, r, yerr, [styles[s] for s in sources])
    ticks = [str(v) for v in df["layer"]] if "layer" in df and all(str(v) for v in df["layer"]) else None
    if ticks is None or len(set(sources)) == 1 and len(set(ticks)) < len(ticks):
        ticks = labels
    ticks = [_wrap(t, 22) for t in ticks]
    tilt = len(ticks) > 3 or max(len(t) for t in ticks) > 10
    ax.set_xticks(x, labels=ticks, rotation=60 if tilt else 0, ha="right" if tilt else "center", rotation_mode="anchor")
    finite = np.concatenate([tops[np.isfinite(tops)], r[np.isfinite(r)], [nc[1] if nc else 0.0, 1e-3]])
    span = float(np.nanmax(np.abs(finite)))
    step = 0.06 * span
    if sig is not None:
        for i in np.flatnonzero(sig):
            ax.text(float(i), max(tops[i], r[i]) + 0.3 * step, "*", ha="center", va="bottom", fontsize=10)
    y0 = max(float(np.nanmax(finite)), nc[1] if nc else -np.inf) + 1.2 * step
    pairs = _pair_rows(pairwise, labels, r)
    if len(pairs) > MAX_PAIR_LINES:  # more lines than a reader can follow: the pairwise table holds them
        pairs = []
    top = _draw_pairs(ax, pairs, y0, step)
    ax.set_ylim(top=max(ax.get_ylim()[1], top + 1.5 * step))
    ax.set_xlim(-0.6, len(labels) - 0.4)
    return len(pairs)


def _draw_curve(ax, df, rows, style, error, depth: str, *, band: bool = True, source: str = "") -> None:
    """One source's layer-depth curve: line, interval band, filled markers where significant vs 0."""
    r, lo, hi = _intervals(df, error)
    sig = _significance_column(df)
    n = len(rows)
    x = np.arange(n, dtype=np.float64)
    if depth == "relative":
        x = x / max(n - 1, 1)
    edge = style["edgecolor"]
    ax.plot(x, r[rows], color=edge, linewidth=1.3, linestyle=style["linestyle"], zorder=3, gid=f"series:{source}")
    if lo is not None and hi is not None and band:
        ax.fill_between(x, lo[rows], hi[rows], color=_lighter(edge, 0.75), linewidth=0, zorder=1)
    elif lo is not None and hi is not None:  # several sources on one axis: whiskers, so no band hides another
        err = np.vstack([r[rows] - lo[rows], hi[rows] - r[rows]])
        ax.errorbar(x, r[rows], yerr=err, fmt="none", ecolor=edge, elinewidth=0.7, capsize=1.5, zorder=2)
    filled = np.ones(n, dtype=bool) if sig is None else sig[rows]
    marker = "s" if style["random"] else "o"
    ax.scatter(x[filled], r[rows][filled], color=edge, zorder=4, s=14, marker=marker)
    ax.scatter(x[~filled], r[rows][~filled], facecolors="white", edgecolors=edge, zorder=4, s=14, marker=marker)
    if depth != "relative":
        names = [_wrap(str(v), 18) for v in (df["layer"].iloc[rows] if "layer" in df else df["label"].iloc[rows])]
        tilt = n > 1 and max(len(t) for t in names) > 3
        ax.set_xticks(
            x, labels=names, rotation=60 if tilt else 0, ha="right" if tilt else "center", rotation_mode="anchor"
        )
        ax.set_xlim(-0.5, n - 0.5)


def _comparison_caption(df: Any, kind: str, error: str, n_pairs: int, names: Sequence[str]) -> list[str]:
    attrs = getattr(df, "attrs", {}) or {}
    r, lo, _ = _intervals(df, error)
    lines = []
    bits = []
    if attrs.get("n_conditions"):
        bits.append(f"{attrs['n_conditions']} images")
    if attrs.get("n_subjects"):
        bits.append(f"{attrs['n_subjects']} subject{'s' if attrs['n_subjects'] != 1 else ''}")
    method = attrs.get("method")
    rdm = attrs.get("rdm_method")
    what = f"{method} correlation" if method else "score"
    if rdm:
        what += f" of {rdm} RDMs"
    lines.append(f"{what[0].upper() + what[1:]}{' (' + ', '.join(bits) + ')' if bits else ''}.")
    if attrs.get("n_subjects", 1) > 1:
        lines.append("Scores are the mean over subjects.")
    if lo is not None:
        if error == "ci" and "ci_low" in df:
            how = f"{round(100 * attrs.get('ci', 0.95))}% confidence interval"
        else:
            how = "± one standard error"
        if attrs.get("bootstrap"):
            nb = attrs.get("n_bootstrap")
            how += f", bootstrap over {str(attrs['bootstrap']).replace(',', ' and ')}"
            how += f" ({nb} samples)" if nb else ""
        elif attrs.get("n_bootstrap"):
            how += f", bootstrap over images ({attrs['n_bootstrap']} samples)"
        lines.append(f"{'Whiskers' if kind == 'bars' else 'Bands'}: {how}.")
    if _significance_column(df) is not None:
        mark = "Asterisks" if kind == "bars" else "Filled markers"
        test = "t-test" if attrs.get("test_type", "t") == "t" else "bootstrap test"
        lines.append(
            f"{mark}: r > 0, p < {attrs.get('alpha', 0.05):g} ({test}, {attrs.get('correction', 'fdr')} correction)."
        )
    if n_pairs:
        lines.append(f"Lines: pairwise difference p < {attrs.get('alpha', 0.05):g} (dot at the better).")
    if _ceiling(df) is not None:
        lines.append("Grey band: noise ceiling (lower to upper bound).")
    if any("(random" in n for n in names):
        lines.append("Hatched, lighter or dashed: random (untrained) weights.")
    return lines


def plot_model_comparison(
    result: Any,
    out: str | os.PathLike | None = None,
    *,
    pairwise: Any = None,
    kind: str = "bars",
    error: str = "ci",
    depth: str = "layers",
    title: str | None = None,
    ylabel: str | None = None,
    labels: Mapping[str, str] | Sequence[str] | None = None,
    colors: Mapping[str, Any] | Sequence[Any] | str | None = None,
    ax: Axes | None = None,
    width: str | float | None = None,
    dpi: int = DEFAULT_DPI,
    figsize: tuple[float, float] | None = None,
    format: str | None = None,
    caption: bool = False,
) -> Figure:
    """The standard model-comparison figure: scores with error bars, the noise-ceiling band, significance marks.

    ``result`` is the :class:`visreps.analysis.inference.RSAInference` of :func:`visreps.rsa_inference`
    (or its ``table``: columns ``label``, ``r`` and, when present, ``weights``, ``ci_low``/``ci_high``
    or ``se``, ``noise_ceiling_lower``/``noise_ceiling_upper``, ``significant_zero`` or
    ``significant_permutation``, ``model``, ``layer``), the table of :func:`compare_to_reference`,
    or several targets: a dict name → result (e.g. ``{"hIT": res_h, "mIT": res_m}``), a list of
    results, or a table with several ``reference`` values. Each target gets its own panel with its own
    noise-ceiling band, on a shared y axis.

    Every source (a model with its weights; see :mod:`visreps.labels`) has its own colour; random
    weights are drawn lighter and hatched (bars) or dashed with square markers (curves).

    * ``kind="bars"``: one bar per model/layer in table order, the layer names on the x axis; whiskers
      are the interval (``error="ci"``) or ± one standard error (``error="se"``); an asterisk above a
      bar marks a score significantly above zero (after the table's correction); a line over two bars
      marks a significant pairwise difference (dot at the better one, tick at the worse), from
      ``result.pairwise`` or ``pairwise``.
    * ``kind="curve"``: a layer-depth curve per source, the interval as a band; filled markers are
      significant vs zero, open ones not. ``depth="layers"``: one panel per source, each on its own
      layer names (small multiples, wrapped into rows, a block per target headed by its name, when the
      width gives a panel less than :data:`PANEL_MIN_WIDTH` inches); ``depth="relative"``: all sources
      on one axis of relative depth (layer index / (number of layers − 1)), the layers named in the caption.

    Args:
        title: the figure's title (the analysis); the details go to the caption.
        labels: display names: a dict source label (or model id) → name, or a list in the sources' order.
        colors: a dict source → colour, a list of colours or a colormap name (default ``tab10``).
        ax: draw into these axes (one target; bars, or curves with ``depth="relative"``).
        width: ``"single"`` or ``"double"`` journal column, or inches.
        caption: also write the caption next to the figure (``<name>.txt``); it is always
            available as :func:`figure_caption`.

    Returns:
        the ``matplotlib.figure.Figure`` (saved to ``out`` when given; format from its suffix).
    """
    if kind not in ("bars", "curve"):
        raise VisrepsError(f"kind must be 'bars' or 'curve', got {kind!r}")
    if error not in ("ci", "se"):
        raise VisrepsError(f"error must be 'ci' or 'se', got {error!r}")
    if depth not in ("layers", "relative"):
        raise VisrepsError(f"depth must be 'layers' or 'relative', got {depth!r}")
    targets = _targets(result, pairwise)
    all_df = [t[1] for t in targets]
    sources_all = [s for df in all_df for s in _sources(df)]
    names = _rename(sources_all, labels, all_df[0])
    import pandas as pd

    joined = pd.concat([d[[c for c in ("label", "model", "weights", "layer") if c in d]] for d in all_df])
    src_j = _sources(joined)
    styles = source_styles(src_j, random=_is_random(joined, src_j), families=_families(joined, src_j), colors=colors)
    uniq = list(dict.fromkeys(src_j))
    small_multiples = kind == "curve" and depth == "layers" and len(uniq) > 1
    nrows, ncols = _panel_shape(len(targets), len(uniq), small_multiples, width, figsize)
    if ax is not None and (nrows * ncols > 1):
        raise VisrepsError(
            "ax= takes one panel; this figure has "
            + (
                f"{len(uniq)} sources on their own layers (use depth='relative')"
                if small_multiples
                else f"{len(targets)} targets (draw each into its own ax)"
            )
        )
    with _style():
        return _comparison_figure(
            targets,
            styles,
            names,
            uniq,
            kind,
            error,
            depth,
            small_multiples,
            (nrows, ncols),
            title=title,
            ylabel=ylabel,
            ax=ax,
            width=width,
            figsize=figsize,
            save=(out, dpi, format, caption),
        )


def _panel_shape(n_targets: int, n_sources: int, small: bool, width: Any, figsize: Any) -> tuple[int, int]:
    """Rows and columns of panels: one per target, or (small multiples) one per source per target, wrapped
    into rows of as many as give each at least :data:`PANEL_MIN_WIDTH` inches of the width."""
    if not small:
        return 1, n_targets
    fit = figure_width(width) if figsize is None else float(figsize[0])
    ncols = n_sources if fit is None else min(n_sources, max(1, int(fit // PANEL_MIN_WIDTH)))
    return n_targets * -(-n_sources // ncols), ncols


def _tall_enough(fig: Figure, panels: list, rows: int, min_height: float = 1.1, tries: int = 8) -> None:
    """Grow the figure's height until every panel's plot area is at least ``min_height`` inches tall.

    Long wrapped titles and tilted layer names take their room from the plot areas of a fixed-width
    figure; the ``rows`` rows of panels share each inch added. A layout that collapsed for lack of
    room (constrained layout then places nothing) first gets 15 % more height.
    """
    import warnings

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    for _ in range(tries):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            FigureCanvasAgg(fig).draw()
        h = fig.get_figheight()
        if any("collapsed" in str(w.message) for w in caught):
            fig.set_figheight(min(60.0, h * 1.15))
            continue
        short = min_height - min(a.get_window_extent().height for a in panels) / fig.dpi
        if short <= 0.02:
            return
        fig.set_figheight(min(60.0, h + 1.1 * short * rows))


def _panel_grid(fig: Figure, target_names: list, nrows: int, ncols: int, wrap: int) -> Any:
    """The comparison's axes (an ``nrows`` × ``ncols`` object array of Axes) with a shared y axis.

    ``wrap`` > 0 (the number of sources, when they take several rows per target): each target gets a
    block of rows of its own (a subfigure headed by the target's name), the y axis shared within it,
    and the slots past the last source hidden.
    """
    if not wrap:
        return fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    per = nrows // len(target_names)
    blocks = []
    for sub, name in zip(fig.subfigures(len(target_names), 1, squeeze=False)[:, 0], target_names):
        block = sub.subplots(per, ncols, squeeze=False, sharey=True)
        for a in block.flat[wrap:]:
            a.set_visible(False)
        if len(target_names) > 1:
            sub.suptitle(_wrap(str(name), _chars(fig.get_figwidth(), 9)), fontsize=9, fontweight="bold")
        blocks.append(block)
    return np.vstack(blocks)


def _comparison_figure(
    targets, styles, names, uniq, kind, error, depth, small, shape, *, title, ylabel, ax, width, figsize, save
) -> Figure:
    nrows, ncols = shape
    n_bars = max(len(t[1]) for t in targets)
    if kind == "bars":
        default_w = min(30.0, max(3.5, 1.2 + (0.32 * n_bars + 0.6) * ncols))
    else:
        default_w = min(30.0, max(3.5, 1.8 * ncols + 1.0)) if small else 5.0 * ncols
    wrapped = small and ncols < len(uniq)
    size = _size(width, figsize, default_w, (2.0 if wrapped else 3.2) * nrows + 0.6)
    owned = ax is None
    if owned:
        fig = _figure(size)
        axes = _panel_grid(fig, [t[0] for t in targets], nrows, ncols, len(uniq) if wrapped else 0)
    else:
        fig = _root(ax)
        axes = np.array([[ax]])
    n_pairs = 0
    for ti, (tname, df, pw) in enumerate(targets):
        src = _sources(df)
        nc = _ceiling(df)
        per = int(nrows) // len(targets)  # rows of panels per target
        at = [(ti * per + k // int(ncols), k % int(ncols)) for k in range(len(uniq))]
        panels = [(axes[r, c], s) for (r, c), s in zip(at, uniq)] if small else [(axes[0, ti], None)]
        for a, only in panels:
            if nc is not None:
                a.axhspan(nc[0], nc[1], color="0.86", linewidth=0, zorder=0, label="noise ceiling")
            a.axhline(0, color="black", linewidth=0.6, zorder=1)
            if kind == "bars":
                n_pairs += _draw_bars(a, df, styles, src, error, pw)
            elif small:
                rows = np.flatnonzero(np.asarray(src) == only)
                if len(rows):
                    _draw_curve(a, df, rows, styles[only], error, depth, source=str(only))
                if ti == 0 or wrapped:  # in rows of their own, every panel names its source
                    fs = 8 if ncols < 5 else 7
                    a.set_title(_wrap(names[only], _chars((fig.get_figwidth() - 0.9) / ncols, fs)), fontsize=fs)
            else:
                several = len(set(src)) > 1
                for s in dict.fromkeys(src):
                    rows = np.flatnonzero(np.asarray(src) == s)
                    _draw_curve(a, df, rows, styles[s], error, depth, band=not several, source=s)
                if depth == "relative":
                    a.set_xlim(-0.05, 1.05)
                    a.set_xlabel("relative depth\n(layer / last layer)")
            if len(targets) > 1 and not small:
                a.set_title(_wrap(str(tname), _chars(fig.get_figwidth() / ncols, 8)), fontsize=8)
    df0 = targets[0][1]
    attrs = getattr(df0, "attrs", {}) or {}
    what = _METHOD_NAMES.get(str(attrs.get("method", "")), str(attrs.get("method") or "score"))
    yl = ylabel or f"{what} with the reference" + ("\n(mean over subjects)" if attrs.get("n_subjects", 1) > 1 else "")
    for row in range(nrows):
        head = f"{targets[row][0]}: " if small and len(targets) > 1 and not wrapped else ""
        if wrapped:  # one label per row of panels: no taller than the row
            axes[row, 0].set_ylabel(_wrap(" ".join(yl.split()), 22))
        else:
            axes[row, 0].set_ylabel(_wrap(head + yl, 40) if "\n" not in yl else head + yl)
    if title:
        if owned:
            fig.suptitle(_wrap(title, _chars(fig.get_figwidth(), 9)), fontsize=9)
        else:
            axes[0, 0].set_title(_wrap(title, _chars(fig.get_figwidth() * 0.5, 9)), fontsize=9)
    handles = [_patch(styles[s]) if kind == "bars" else _line(styles[s]) for s in uniq]
    shown = [names[s] for s in uniq]
    if any(_ceiling(t[1]) is not None for t in targets):
        handles.append(_ceiling_patch())
        shown.append("noise ceiling")
    if len(uniq) > 1 or len(handles) > len(uniq) or (kind == "bars" and "layer" in df0):
        if not (small and len(handles) == len(uniq)):
            _outside_legend(fig, axes[0, -1], handles, shown, owned)
    lines = _comparison_caption(df0, kind, error, n_pairs, list(names.values()))
    if not n_pairs and any(t[2] is not None and len(t[2]) for t in targets):
        lines.append("Pairwise tests: in the pairwise table.")
    if kind == "curve" and depth == "relative":
        for s in uniq:
            layers = [
                str(v) for t in targets[:1] for v, x in zip(t[1].get("layer", t[1]["label"]), _sources(t[1])) if x == s
            ]
            lines.append(f"{names[s]}: {', '.join(layers)}.")
    _set_caption(fig, lines)
    if wrapped and owned:
        _tall_enough(fig, [a for a in axes.flat if a.get_visible()], rows=nrows)
    out, dpi, fmt, caption = save
    _save(fig, out, dpi, fmt, caption, owned=owned, grow=figure_width(width) is None and figsize is None)
    return fig


def plot_reference_comparison(
    table: Any,
    out: str | os.PathLike | None = None,
    *,
    title: str | None = None,
    labels: Mapping[str, str] | Sequence[str] | None = None,
    colors: Mapping[str, Any] | Sequence[Any] | str | None = None,
    ax: Axes | None = None,
    width: str | float | None = None,
    dpi: int = DEFAULT_DPI,
    figsize: tuple[float, float] | None = None,
    format: str | None = None,
    caption: bool = False,
) -> Figure:
    """Bars of each feature set's correlation with the reference RDM(s), with CI whiskers: one panel per reference.

    ``table`` is the DataFrame of :func:`compare_to_reference` (columns ``label``, ``r``, and
    optionally ``reference``, ``model``, ``weights``, ``layer``, ``ci_low``, ``ci_high``). The same
    figure as :func:`plot_model_comparison` with ``kind="bars"`` (vertical bars, one colour per source).
    """
    import pandas as pd

    df = table if isinstance(table, pd.DataFrame) else pd.DataFrame(table)
    if not {"label", "r"} <= set(df.columns):
        raise VisrepsError("the table needs the columns 'label' and 'r' (the result of compare_to_reference)")
    attrs = getattr(df, "attrs", {}) or {}
    yl = f"{attrs.get('method', 'correlation')} correlation\nwith the reference RDM"
    return plot_model_comparison(
        df,
        out,
        kind="bars",
        error="ci",
        title=title,
        ylabel=yl,
        labels=labels,
        colors=colors,
        ax=ax,
        width=width,
        dpi=dpi,
        figsize=figsize,
        format=format,
        caption=caption,
    )


# --------------------------------------------------------------------------- encoding


def plot_encoding(
    table: Any,
    out: str | os.PathLike | None = None,
    *,
    score: str = "r",
    ceiling: bool = True,
    title: str | None = None,
    labels: Mapping[str, str] | Sequence[str] | None = None,
    colors: Mapping[str, Any] | Sequence[Any] | str | None = None,
    ax: Axes | None = None,
    width: str | float | None = None,
    dpi: int = DEFAULT_DPI,
    figsize: tuple[float, float] | None = None,
    format: str | None = None,
    caption: bool = False,
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
        labels, colors, ax, width, caption: as in :func:`plot_model_comparison`.
    """
    import pandas as pd

    df = getattr(table, "layers", table)
    if not isinstance(df, pd.DataFrame) or f"{score}_mean" not in df.columns:
        have = sorted(c[:-5] for c in getattr(df, "columns", []) if str(c).endswith("_mean"))
        raise VisrepsError(
            f"the table has no {score!r} scores (columns {score}_mean, {score}_sem); it has: {have or 'none'}; "
            "pass result.layers of visreps.analysis.encode"
        )
    src, styles = _table_styles(df, colors)
    names = _rename(src, labels, df)
    uniq = list(dict.fromkeys(src))
    ticks = [_wrap(str(x), 22) for x in (df["layer"] if "layer" in df else df["label"])]
    if len(uniq) > 1 and "layer" not in df:
        ticks = [_wrap(str(x), 22) for x in df["label"]]
    owned = ax is None
    with _style():
        fig, ax = _new_or_given(ax, _size(width, figsize, max(3.5, 1.4 + 0.32 * len(df)), 3.4))
        x = np.arange(len(df))
        mean = df[f"{score}_mean"].to_numpy(dtype=np.float64)
        sem = df[f"{score}_sem"].to_numpy(dtype=np.float64) if f"{score}_sem" in df else None
        handles: list[Any] = [_patch(styles[s]) for s in uniq]
        shown = [names[s] for s in uniq]
        band = _encoding_ceiling(ax, df, score, ceiling)
        if band:
            handles.append(_ceiling_patch() if band != "line" else _line_handle())
            shown.append("noise ceiling")
        _bars(ax, x, mean, None if sem is None else np.nan_to_num(sem), [styles[s] for s in src])
        ax.axhline(0, color="black", linewidth=0.6)
        tilt = len(df) > 3 or max(len(t) for t in ticks) > 10
        ax.set_xticks(
            x, labels=ticks, rotation=60 if tilt else 0, ha="right" if tilt else "center", rotation_mode="anchor"
        )
        ax.set_xlim(-0.6, len(df) - 0.4)
        kinds = {"r": "Pearson r", "r2": "R²", "r_ceiled": "r / √ceiling", "r2_ceiled": "R² / ceiling"}
        ax.set_ylabel(f"held-out {kinds.get(score, score)}\n(mean ± SEM over targets)")
        if len(handles) > 1 or len(uniq) > 1:
            _outside_legend(fig, ax, handles, shown, owned)
        if title:
            _title(fig, ax, title, owned)
        info = getattr(table, "info", None)
        info = info if isinstance(info, Mapping) else {}
        lines = [f"Encoding: held-out {kinds.get(score, score)} per layer, mean ± SEM over targets."]
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
        if any(styles[s]["random"] for s in uniq):
            lines.append("Hatched, lighter: random (untrained) weights.")
        _set_caption(fig, lines)
        _save(fig, out, dpi, format, caption, owned=owned, grow=figure_width(width) is None and figsize is None)
    return fig


def _line_handle():
    from matplotlib.lines import Line2D

    return Line2D([0], [0], color="0.3", linestyle="--", linewidth=1)


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
