"""How sources look: one colour per architecture, random weights lighter and hatched (bars) or dashed (curves),
the display names of the sources, and the legend handles of these styles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import VisrepsError

if TYPE_CHECKING:
    from matplotlib.axes import Axes

_HATCHES = ("////", "\\\\\\\\", "xxxx", "....")  # random sources of one architecture: one pattern each
_DASHES = ("--", ":", "-.", (0, (5, 1, 1, 1)))
_LIGHTER = (0.45, 0.62, 0.3, 0.75)


def _check_cmap(cmap: Any):
    import matplotlib

    try:
        return matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    except KeyError:
        from ..errors import closest_hint

        hint = closest_hint(str(cmap), list(matplotlib.colormaps), lead="; did you mean ")
        suggest = f"{hint}?" if hint else ""
        raise VisrepsError(f"colormap {cmap!r} is not known{suggest}") from None


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


def _line_handle():
    from matplotlib.lines import Line2D

    return Line2D([0], [0], color="0.3", linestyle="--", linewidth=1)
