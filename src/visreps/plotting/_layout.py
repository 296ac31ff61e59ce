"""Sizes and layout of a figure: journal widths, one font, wrapped text, titles, legends outside the axes,
and the "grow until nothing sticks out" logic run before a figure of visreps' own is saved."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import VisrepsError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: figure widths in inches: a journal's single column (89 mm) and double column (183 mm)
WIDTHS = {"single": 89 / 25.4, "double": 183 / 25.4}
#: small multiples (one panel per source) wrap into rows rather than get narrower than this, in inches
PANEL_MIN_WIDTH = 1.6
_FONT = {"font.size": 8.0, "axes.titlesize": 9.0, "axes.labelsize": 8.0, "legend.fontsize": 7.0}


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


def _names_below(ax: Axes, x: Any, names: list[str], tilt: bool) -> None:
    """Names under the x positions ``x``, tilted by 60° (right-aligned to their tick) when ``tilt``."""
    ax.set_xticks(x, labels=names, rotation=60 if tilt else 0, ha="right" if tilt else "center", rotation_mode="anchor")
