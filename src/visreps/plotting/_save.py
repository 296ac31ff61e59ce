"""Writing a figure: its format (:data:`FIGURE_FORMATS`), resolution, caption, partial name renamed when complete."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from ..errors import VisrepsError
from ..options import FIGURE_FORMATS
from ._layout import _fit, figure_width

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: the earlier name of :data:`FIGURE_FORMATS`
FORMATS = FIGURE_FORMATS
#: formats drawn in pixels, for which ``dpi`` sets the resolution
RASTER_FORMATS = ("png", "tiff", "jpg")
_ALIASES = {"tif": "tiff", "jpeg": "jpg"}
_MPL_FORMAT = {"jpg": "jpeg"}
#: resolution of raster figures unless ``dpi`` is given (journals ask for 300 or more)
DEFAULT_DPI = 300


def format_name(name: str) -> str:
    """A format as written (``.PNG``, ``jpeg``, ``tif``) in the spelling of :data:`FIGURE_FORMATS` (``png``, ``jpg``,
    ``tiff``); not checked."""
    f = str(name).lower().lstrip(".")
    return _ALIASES.get(f, f)


def figure_format(path: str | os.PathLike, format: str | None = None) -> str:
    """The format of a figure file (from ``format`` or the file name's suffix), checked against :data:`FIGURE_FORMATS`.

    Call it before any work to refuse a bad ``--plot`` early. ``tif`` and ``jpeg`` are read as ``tiff``
    and ``jpg``.
    """
    f = format_name(format or Path(path).suffix)
    if f not in FIGURE_FORMATS:
        raise VisrepsError(
            f"cannot save a figure as {str(path)!r}: format {f or '(none)'!r} is not supported; "
            f"end the file name with one of {', '.join('.' + x for x in FIGURE_FORMATS)}"
        )
    return f


def caption_path(out: str | os.PathLike) -> Path:
    """The caption file written next to a figure: the figure's name with ``.txt``."""
    return Path(out).expanduser().with_suffix(".txt")


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
    return _write(fig, out, f, dpi, caption)


def _write(fig: Figure, out: Path, f: str, dpi: float, caption: str | None) -> Path:
    """:func:`save_figure` once its arguments are checked: ``f`` is a format of :data:`FIGURE_FORMATS`."""
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


class SaveKwargs(TypedDict, total=False):
    """How every figure is sized and written: keyword arguments of every figure function (:class:`FigureOptions`).

    Attributes:
        dpi: resolution of raster formats (default :data:`DEFAULT_DPI`, 300).
        figsize: the size in inches, overriding ``width`` (default: sized to the content).
        format: the format when ``out``'s suffix does not say it (one of :data:`FIGURE_FORMATS`).
    """

    dpi: float
    figsize: tuple[float, float] | None
    format: str | None


class GridKwargs(SaveKwargs, total=False):
    """The keyword arguments of a figure of its own (a grid of panels): those of :class:`SaveKwargs` and these.

    Attributes:
        width: ``"single"`` or ``"double"`` journal column (89 or 183 mm), or inches.
        caption: also write the caption next to the figure (``<name>.txt``); it is always available as
            :func:`figure_caption`.
    """

    width: str | float | None
    caption: bool


class FigureKwargs(GridKwargs, total=False):
    """The keyword arguments of a figure that can be drawn into a user's figure: those of :class:`GridKwargs` and this.

    Attributes:
        ax: draw into these axes (of your own figure) instead of a new figure; the figure is then
            neither resized nor titled over all its panels.
    """

    ax: Axes | None


@dataclass(frozen=True)
class FigureOptions:
    """Where and how a figure is drawn and saved: the options every figure function takes, checked once.

    A figure function builds it on its first line from its keyword arguments, so a bad ``width``, a file
    name of no figure format or a bad ``dpi`` is refused before anything is drawn; the drawing code takes
    the object and never checks again.

    Attributes:
        out: the file to write (``None``: nothing is written); its format from its suffix or ``format``.
        ax: axes of a user's figure to draw into (``None``: a figure of visreps' own, grown to fit).
        width: ``"single"`` or ``"double"`` journal column, or inches (``None``: sized to the content).
        dpi: resolution of raster formats.
        figsize: the size in inches, overriding ``width``.
        format: the format when ``out``'s suffix does not say it.
        caption: also write the caption next to the figure (``<name>.txt``).
    """

    out: str | os.PathLike | None = None
    ax: Any = None
    width: str | float | None = None
    dpi: float = DEFAULT_DPI
    figsize: tuple[float, float] | None = None
    format: str | None = None
    caption: bool = False
    #: ``width`` in inches (``None``: sized to the content)
    inches: float | None = field(init=False, default=None)
    #: the format ``out`` is written in (one of :data:`FIGURE_FORMATS`; empty without ``out``)
    suffix: str = field(init=False, default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "inches", figure_width(self.width))
        if self.out is not None:
            object.__setattr__(self, "suffix", figure_format(self.out, self.format))
            _check_dpi(self.dpi)

    @classmethod
    def checked(
        cls,
        function: str,
        out: str | os.PathLike | None,
        given: Mapping[str, Any],
        takes: Any = FigureKwargs,
        **default,
    ) -> FigureOptions:
        """The options of a call of the figure function named ``function``: its ``out`` and the keyword arguments
        ``given`` (those of the TypedDict ``takes``; another one is a ``TypeError``, as for any function), over
        its ``default`` ones."""
        for key in given:
            if key not in takes.__annotations__:
                raise TypeError(f"{function}() got an unexpected keyword argument {key!r}")
        return cls(out, **{**default, **given})

    @property
    def owned(self) -> bool:
        """The figure is visreps' own (no ``ax`` given): it is sized, grown to fit and titled over all its panels."""
        return self.ax is None

    @property
    def grow(self) -> bool:
        """Neither a width nor a size was asked for: the figure may grow wider until nothing sticks out."""
        return self.inches is None and self.figsize is None

    def size(self, default_w: float, height: float) -> tuple[float, float]:
        """``figsize``, else ``width`` (a narrower width gets a little less height), else the default size."""
        if self.figsize is not None:
            return tuple(self.figsize)  # type: ignore[return-value]
        w = self.inches
        if w is None:
            return (default_w, height)
        return (w, height * (w / default_w) ** 0.5 if w < default_w else height)

    def save(self, fig: Figure, *, grow: bool | None = None) -> None:
        """Grow a figure of visreps' own until nothing sticks out (wider too, with ``grow``: default :attr:`grow`),
        then write it to :attr:`out` with its caption when asked (nothing is written without ``out``)."""
        if self.owned:
            _fit(fig, grow_width=self.grow if grow is None else grow)
        if self.out is not None:
            caption = figure_caption(fig) if self.caption else None
            _write(fig, Path(self.out).expanduser(), self.suffix, self.dpi, caption)


def figure_caption(fig: Figure) -> str:
    """The details of a figure drawn by visreps (what its caption file holds): images, subjects, intervals, tests."""
    return str(getattr(fig, "_visreps_caption_text", "") or "")


def _set_caption(fig: Figure, lines: Sequence[str]) -> None:
    old = figure_caption(fig)
    text = " ".join(x.strip() for x in lines if x and x.strip())
    fig._visreps_caption_text = (old + " " + text).strip() if old else text  # type: ignore[attr-defined]
