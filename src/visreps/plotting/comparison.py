"""The model-comparison figure: scores of models and layers against one or more targets, as bars or
layer-depth curves, with intervals, the noise ceiling and significance (:func:`plot_model_comparison`)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import VisrepsError
from ..options import DEPTHS, PLOT_ERRORS, PLOT_KINDS
from ._layout import PANEL_MIN_WIDTH, _chars, _figure, _outside_legend, _root, _style, _tall_enough, _wrap
from ._marks import _ceiling, _draw_bars, _draw_curve, _intervals, _significance_column
from ._save import FigureKwargs, FigureOptions, _set_caption
from ._style import _ceiling_patch, _line, _patch, _rename, _sources, _table_styles

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from typing_extensions import Unpack

_METHOD_NAMES = {"pearson": "Pearson r", "spearman": "Spearman ρ", "kendall": "Kendall τ", "tau_a": "Kendall τa"}


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
    **figure: Unpack[FigureKwargs],
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
        **figure: ``ax`` (one target; bars, or curves with ``depth="relative"``), ``width``, ``dpi``,
            ``figsize``, ``format``, ``caption`` (:class:`~visreps.plotting.FigureKwargs`); the caption is
            always available as :func:`figure_caption`.

    Returns:
        the ``matplotlib.figure.Figure`` (saved to ``out`` when given; format from its suffix).
    """
    opts = FigureOptions.checked("plot_model_comparison", out, figure)
    plan = _plan(result, pairwise, kind, error, depth, labels, colors, opts)
    with _style():
        return _comparison_figure(plan, opts, title=title, ylabel=ylabel)


@dataclass(frozen=True)
class _Plan:
    """What a comparison figure shows, checked: the targets (name, table, pairwise table), the sources in order
    with their styles and display names, and the grid of panels."""

    targets: list[tuple[str | None, Any, Any]]
    styles: dict[str, dict[str, Any]]
    names: dict[str, str]
    uniq: list[str]
    kind: str
    error: str
    depth: str
    nrows: int
    ncols: int

    @property
    def small(self) -> bool:
        """Small multiples: one panel per source, each curve on its own layer names."""
        return self.kind == "curve" and self.depth == "layers" and len(self.uniq) > 1

    @property
    def wrapped(self) -> bool:
        """The small multiples of a target take several rows (the width gives fewer columns than sources)."""
        return self.small and self.ncols < len(self.uniq)


def _plan(
    result: Any, pairwise: Any, kind: str, error: str, depth: str, labels: Any, colors: Any, opts: FigureOptions
) -> _Plan:
    """The checked :class:`_Plan` of :func:`plot_model_comparison`'s arguments."""
    for name, value, valid in (("kind", kind, PLOT_KINDS), ("error", error, PLOT_ERRORS), ("depth", depth, DEPTHS)):
        if value not in valid:
            raise VisrepsError(f"{name} must be {' or '.join(map(repr, valid))}, got {value!r}")
    import pandas as pd

    targets = _targets(result, pairwise)
    all_df = [t[1] for t in targets]
    names = _rename([s for df in all_df for s in _sources(df)], labels, all_df[0])
    joined = pd.concat([d[[c for c in ("label", "model", "weights", "layer") if c in d]] for d in all_df])
    uniq, styles = _table_styles(joined, colors)
    uniq = list(dict.fromkeys(uniq))
    small = kind == "curve" and depth == "layers" and len(uniq) > 1
    nrows, ncols = _panel_shape(len(targets), len(uniq), small, opts.inches, opts.figsize)
    if opts.ax is not None and (nrows * ncols > 1):
        raise VisrepsError(
            "ax= takes one panel; this figure has "
            + (
                f"{len(uniq)} sources on their own layers (use depth='relative')"
                if small
                else f"{len(targets)} targets (draw each into its own ax)"
            )
        )
    return _Plan(targets, styles, names, uniq, kind, error, depth, nrows, ncols)


def _panel_shape(n_targets: int, n_sources: int, small: bool, inches: Any, figsize: Any) -> tuple[int, int]:
    """Rows and columns of panels: one per target, or (small multiples) one per source per target, wrapped
    into rows of as many as give each at least :data:`PANEL_MIN_WIDTH` inches of the width."""
    if not small:
        return 1, n_targets
    fit = inches if figsize is None else float(figsize[0])
    ncols = n_sources if fit is None else min(n_sources, max(1, int(fit // PANEL_MIN_WIDTH)))
    return n_targets * -(-n_sources // ncols), ncols


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


def _comparison_figure(plan: _Plan, opts: FigureOptions, *, title: str | None, ylabel: str | None) -> Figure:
    """Draw the planned comparison: the panels of every target, axis labels, title, legend and caption."""
    fig, axes = _new_grid(plan, opts)
    n_pairs = sum(_draw_target(plan, fig, axes, ti) for ti in range(len(plan.targets)))
    _label_axes(plan, fig, axes, ylabel)
    if title:
        if opts.owned:
            fig.suptitle(_wrap(title, _chars(fig.get_figwidth(), 9)), fontsize=9)
        else:
            axes[0, 0].set_title(_wrap(title, _chars(fig.get_figwidth() * 0.5, 9)), fontsize=9)
    _legend(plan, fig, axes[0, -1], opts.owned)
    _set_caption(fig, _caption_lines(plan, n_pairs))
    if plan.wrapped and opts.owned:
        _tall_enough(fig, [a for a in axes.flat if a.get_visible()], rows=plan.nrows)
    opts.save(fig)
    return fig


def _new_grid(plan: _Plan, opts: FigureOptions) -> tuple[Figure, Any]:
    """A figure of its own sized to the panels (bars by their number, curves by the panels), or the user's ``ax``;
    and the axes as an ``nrows`` × ``ncols`` object array."""
    if not opts.owned:
        return _root(opts.ax), np.array([[opts.ax]])
    n_bars = max(len(t[1]) for t in plan.targets)
    if plan.kind == "bars":
        default_w = min(30.0, max(3.5, 1.2 + (0.32 * n_bars + 0.6) * plan.ncols))
    else:
        default_w = min(30.0, max(3.5, 1.8 * plan.ncols + 1.0)) if plan.small else 5.0 * plan.ncols
    fig = _figure(opts.size(default_w, (2.0 if plan.wrapped else 3.2) * plan.nrows + 0.6))
    names = [t[0] for t in plan.targets]
    return fig, _panel_grid(fig, names, plan.nrows, plan.ncols, len(plan.uniq) if plan.wrapped else 0)


def _draw_target(plan: _Plan, fig: Figure, axes: Any, ti: int) -> int:
    """The panels of target ``ti``: its noise-ceiling band, zero line and bars or curves; returns the number of
    pair lines drawn."""
    tname, df, pw = plan.targets[ti]
    src = _sources(df)
    nc = _ceiling(df)
    per = plan.nrows // len(plan.targets)  # rows of panels per target
    at = [(ti * per + k // plan.ncols, k % plan.ncols) for k in range(len(plan.uniq))]
    panels = [(axes[r, c], s) for (r, c), s in zip(at, plan.uniq)] if plan.small else [(axes[0, ti], None)]
    n_pairs = 0
    for a, only in panels:
        if nc is not None:
            a.axhspan(nc[0], nc[1], color="0.86", linewidth=0, zorder=0, label="noise ceiling")
        a.axhline(0, color="black", linewidth=0.6, zorder=1)
        if plan.kind == "bars":
            n_pairs += _draw_bars(a, df, plan.styles, src, plan.error, pw)
        elif plan.small:
            _draw_own_curve(plan, fig, a, df, src, only, named=ti == 0 or plan.wrapped)
        else:
            several = len(set(src)) > 1
            for s in dict.fromkeys(src):
                rows = np.flatnonzero(np.asarray(src) == s)
                _draw_curve(a, df, rows, plan.styles[s], plan.error, plan.depth, band=not several, source=s)
            if plan.depth == "relative":
                a.set_xlim(-0.05, 1.05)
                a.set_xlabel("relative depth\n(layer / last layer)")
        if len(plan.targets) > 1 and not plan.small:
            a.set_title(_wrap(str(tname), _chars(fig.get_figwidth() / plan.ncols, 8)), fontsize=8)
    return n_pairs


def _draw_own_curve(plan: _Plan, fig: Figure, a: Axes, df: Any, src: list[str], only: Any, named: bool) -> None:
    """One small multiple: source ``only``'s curve on its own layer names, titled with its name when ``named``."""
    rows = np.flatnonzero(np.asarray(src) == only)
    if len(rows):
        _draw_curve(a, df, rows, plan.styles[only], plan.error, plan.depth, source=str(only))
    if named:  # in rows of their own, every panel names its source
        fs = 8 if plan.ncols < 5 else 7
        a.set_title(_wrap(plan.names[only], _chars((fig.get_figwidth() - 0.9) / plan.ncols, fs)), fontsize=fs)


def _label_axes(plan: _Plan, fig: Figure, axes: Any, ylabel: str | None) -> None:
    """The y label of each row of panels: ``ylabel``, else the score with the reference (named per target when
    the targets' small multiples sit in one row each)."""
    attrs = getattr(plan.targets[0][1], "attrs", {}) or {}
    what = _METHOD_NAMES.get(str(attrs.get("method", "")), str(attrs.get("method") or "score"))
    yl = ylabel or f"{what} with the reference" + ("\n(mean over subjects)" if attrs.get("n_subjects", 1) > 1 else "")
    for row in range(plan.nrows):
        head = f"{plan.targets[row][0]}: " if plan.small and len(plan.targets) > 1 and not plan.wrapped else ""
        if plan.wrapped:  # one label per row of panels: no taller than the row
            axes[row, 0].set_ylabel(_wrap(" ".join(yl.split()), 22))
        else:
            axes[row, 0].set_ylabel(_wrap(head + yl, 40) if "\n" not in yl else head + yl)


def _legend(plan: _Plan, fig: Figure, ax: Axes, owned: bool) -> None:
    """The sources' styles and the noise-ceiling band, outside the axes; none when it would tell nothing (one
    source alone, or small multiples whose panels are titled with their sources)."""
    handles = [_patch(plan.styles[s]) if plan.kind == "bars" else _line(plan.styles[s]) for s in plan.uniq]
    shown = [plan.names[s] for s in plan.uniq]
    if any(_ceiling(t[1]) is not None for t in plan.targets):
        handles.append(_ceiling_patch())
        shown.append("noise ceiling")
    n = len(plan.uniq)
    if n > 1 or len(handles) > n or (plan.kind == "bars" and "layer" in plan.targets[0][1]):
        if not (plan.small and len(handles) == n):
            _outside_legend(fig, ax, handles, shown, owned)


def _caption_lines(plan: _Plan, n_pairs: int) -> list[str]:
    """The caption: what the scores are (:func:`_comparison_caption`), where the pairwise tests are, and the
    layers of each source on a relative-depth axis."""
    lines = _comparison_caption(plan.targets[0][1], plan.kind, plan.error, n_pairs, list(plan.names.values()))
    if not n_pairs and any(t[2] is not None and len(t[2]) for t in plan.targets):
        lines.append("Pairwise tests: in the pairwise table.")
    if plan.kind == "curve" and plan.depth == "relative":
        first = plan.targets[0][1]
        for s in plan.uniq:
            layers = [str(v) for v, x in zip(first.get("layer", first["label"]), _sources(first)) if x == s]
            lines.append(f"{plan.names[s]}: {', '.join(layers)}.")
    return lines


def plot_reference_comparison(
    table: Any,
    out: str | os.PathLike | None = None,
    *,
    title: str | None = None,
    labels: Mapping[str, str] | Sequence[str] | None = None,
    colors: Mapping[str, Any] | Sequence[Any] | str | None = None,
    **figure: Unpack[FigureKwargs],
) -> Figure:
    """Bars of each feature set's correlation with the reference RDM(s), with CI whiskers: one panel per reference.

    ``table`` is the DataFrame of :func:`compare_to_reference` (columns ``label``, ``r``, and
    optionally ``reference``, ``model``, ``weights``, ``layer``, ``ci_low``, ``ci_high``). The same
    figure as :func:`plot_model_comparison` with ``kind="bars"`` (vertical bars, one colour per source).
    """
    import pandas as pd

    opts = FigureOptions.checked("plot_reference_comparison", out, figure)
    df = table if isinstance(table, pd.DataFrame) else pd.DataFrame(table)
    if not {"label", "r"} <= set(df.columns):
        raise VisrepsError("the table needs the columns 'label' and 'r' (the result of compare_to_reference)")
    attrs = getattr(df, "attrs", {}) or {}
    yl = f"{attrs.get('method', 'correlation')} correlation\nwith the reference RDM"
    plan = _plan(df, None, "bars", "ci", "layers", labels, colors, opts)
    with _style():
        return _comparison_figure(plan, opts, title=title, ylabel=yl)
