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


def plot_encoding(
    table: Any,
    out: str | os.PathLike | None = None,
    *,
    score: str = "r",
    ceiling: bool = True,
    title: str | None = None,
    dpi: int = 200,
    figsize: tuple[float, float] | None = None,
    format: str | None = None,
) -> Figure:
    """Encoding scores per layer: bars of the mean over targets with ±SEM error bars, and the ceiling.

    Args:
        table: the per-layer table of :func:`visreps.analysis.encode` (``result.layers``), or the
            :class:`~visreps.analysis.EncodingResult` itself. Bars follow its rows (layers in depth
            order), coloured by model, with the layer names on the x axis.
        score: ``r`` (default), ``r2``, ``r_ceiled`` or ``r2_ceiled``: the columns
            ``<score>_mean`` and ``<score>_sem`` (SEM across targets) are drawn.
        ceiling: draw the noise ceiling when the table has one: for ``r`` the mean over targets of
            ``√ρ`` (column ``ceiling_r``), for ceiled scores the line at 1.
    """
    import pandas as pd

    df = getattr(table, "layers", table)
    if not isinstance(df, pd.DataFrame) or f"{score}_mean" not in df.columns:
        have = sorted(c[:-5] for c in getattr(df, "columns", []) if str(c).endswith("_mean"))
        raise VisrepsError(
            f"the table has no {score!r} scores (columns {score}_mean, {score}_sem); it has: {have or 'none'}; "
            "pass result.layers of visreps.analysis.encode"
        )
    labels = [str(x) for x in df["layer"]] if df["model"].nunique() == 1 else [str(x) for x in df["label"]]
    if figsize is None:
        figsize = (max(4.0, 1.2 + 0.45 * len(df)), 4.2)
    fig = _figure(figsize)
    ax = fig.add_subplot()
    import matplotlib

    colours = matplotlib.colormaps["tab10"]
    models = list(dict.fromkeys(df["model"]))
    x = np.arange(len(df))
    sem = df[f"{score}_sem"].to_numpy(dtype=np.float64) if f"{score}_sem" in df else None
    for k, model in enumerate(models):
        sel = (df["model"] == model).to_numpy()
        ax.bar(
            x[sel],
            df[f"{score}_mean"].to_numpy(dtype=np.float64)[sel],
            yerr=None if sem is None else np.nan_to_num(sem[sel]),
            capsize=3,
            color=colours(k % 10),
            label=str(model),
        )
    if ceiling and score in ("r_ceiled", "r2_ceiled"):
        ax.axhline(1.0, color="0.3", linestyle="--", linewidth=1, label="noise ceiling")
    elif ceiling and score == "r" and "ceiling_r" in df and np.isfinite(df["ceiling_r"]).any():
        c = float(np.nanmean(df["ceiling_r"].to_numpy(dtype=np.float64)))
        half = float(np.nanmean(df["ceiling_r_sem"].to_numpy(dtype=np.float64))) if "ceiling_r_sem" in df else 0.0
        if np.isfinite(half) and half > 0:
            ax.axhspan(c - half, c + half, color="0.6", alpha=0.4, linewidth=0)
        ax.axhline(c, color="0.3", linestyle="--", linewidth=1, label=f"noise ceiling (mean √ρ = {c:.3f})")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, labels=labels, rotation=45 if len(df) > 3 else 0, ha="right" if len(df) > 3 else "center")
    names = {"r": "Pearson r", "r2": "R²", "r_ceiled": "r / √ceiling", "r2_ceiled": "R² / ceiling"}
    ax.set_ylabel(f"held-out {names.get(score, score)} (mean ± SEM over targets)")
    if len(models) > 1 or ceiling:
        handles, _ = ax.get_legend_handles_labels()
        if len(handles) > 1:
            ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    _save(fig, out, dpi, format)
    return fig


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


def plot_model_comparison(
    result: Any,
    out: str | os.PathLike | None = None,
    *,
    pairwise: Any = None,
    kind: str = "bars",
    error: str = "ci",
    title: str | None = None,
    ylabel: str | None = None,
    dpi: int = 200,
    figsize: tuple[float, float] | None = None,
    format: str | None = None,
) -> Figure:
    """The standard model-comparison figure: scores with error bars, the noise-ceiling band, significance marks.

    ``result`` is the :class:`visreps.analysis.inference.RSAInference` of :func:`visreps.rsa_inference`
    (or its ``table``: columns ``label``, ``r`` and, when present, ``ci_low``/``ci_high`` or ``se``,
    ``noise_ceiling_lower``/``noise_ceiling_upper``, ``significant_zero`` or
    ``significant_permutation``, ``model``, ``layer``).

    * ``kind="bars"``: one bar per model/layer in table order; whiskers are the interval
      (``error="ci"``) or ± one standard error (``error="se"``); an asterisk above a bar marks a
      score significantly above zero (after the table's correction); a line over two bars marks a
      significant pairwise difference (dot at the better one, tick at the worse), from
      ``result.pairwise`` or ``pairwise``.
    * ``kind="curve"``: a layer-depth curve per model (x = the layer's position in the table), the
      interval as a shaded band; filled markers are significant vs zero, open ones not (pairwise
      tests are in the table only).

    The grey band spans the noise ceiling from its lower to its upper bound.

    Returns:
        the ``matplotlib.figure.Figure`` (saved to ``out`` when given; format from its suffix).
    """
    import pandas as pd

    df = getattr(result, "table", result)
    if pairwise is None:
        pairwise = getattr(result, "pairwise", None)
    if not isinstance(df, pd.DataFrame) or not {"label", "r"} <= set(df.columns):
        raise VisrepsError("plot_model_comparison needs the result of rsa_inference (a table with 'label' and 'r')")
    if kind not in ("bars", "curve"):
        raise VisrepsError(f"kind must be 'bars' or 'curve', got {kind!r}")
    if error not in ("ci", "se"):
        raise VisrepsError(f"error must be 'ci' or 'se', got {error!r}")
    labels = [str(x) for x in df["label"]]
    r = df["r"].to_numpy(dtype=np.float64)
    lo = hi = None
    if error == "ci" and {"ci_low", "ci_high"} <= set(df.columns):
        lo, hi = df["ci_low"].to_numpy(dtype=np.float64), df["ci_high"].to_numpy(dtype=np.float64)
    elif "se" in df:
        se = df["se"].to_numpy(dtype=np.float64)
        lo, hi = r - se, r + se
    sig = _significance_column(df)
    attrs = getattr(df, "attrs", {}) or {}
    nc = None
    if {"noise_ceiling_lower", "noise_ceiling_upper"} <= set(df.columns):
        nc = (float(df["noise_ceiling_lower"].iloc[0]), float(df["noise_ceiling_upper"].iloc[0]))
    if figsize is None:
        longest = max(len(x) for x in labels)
        width = 3.5 + 0.45 * len(labels) if kind == "bars" else 7.0
        figsize = (min(30.0, max(5.0, width)), 4.0 + (0.06 * longest if kind == "bars" else 0.5))
    fig = _figure(figsize)
    ax = fig.add_subplot()
    if nc is not None:
        ax.axhspan(nc[0], nc[1], color="0.8", alpha=0.7, linewidth=0, label="noise ceiling", zorder=0)
    ax.axhline(0, color="black", linewidth=0.8)
    n_pairs = 0
    if kind == "bars":
        n_pairs = _draw_bars(ax, labels, r, lo, hi, sig, nc, pairwise)
    else:
        _draw_curves(ax, df, r, lo, hi, sig)
    method = attrs.get("method", "")
    what = f"{method} correlation" if method else "score"
    subjects = "\n(mean over subjects)" if attrs.get("n_subjects", 1) > 1 else ""
    ax.set_ylabel(ylabel or f"{what} with the reference{subjects}")
    notes = []
    if lo is not None:
        notes.append(f"{round(100 * attrs.get('ci', 0.95))}% CI" if error == "ci" and "ci_low" in df else "± SE")
        if attrs.get("bootstrap"):
            notes[-1] += f", bootstrap over {attrs['bootstrap'].replace(',', ' and ')}"
    if sig is not None:
        mark = "*" if kind == "bars" else "filled"
        notes.append(f"{mark}: p < {attrs.get('alpha', 0.05):g} vs 0 ({attrs.get('correction', 'fdr')})")
    if n_pairs:
        notes.append("lines: pairwise p < " + f"{attrs.get('alpha', 0.05):g} (dot: better)")
    if notes:
        ax.set_title(("" if not title else title + "\n") + "; ".join(notes), fontsize=9)
    elif title:
        ax.set_title(title)
    if nc is not None or kind == "curve":
        ax.legend(fontsize=8, loc="best")
    _save(fig, out, dpi, format)
    return fig


def _draw_bars(ax, labels, r, lo, hi, sig, nc, pairwise) -> int:
    """Bars with whiskers, asterisks for significance vs 0, lines for significant pairs; returns the pairs drawn."""
    tops = hi if hi is not None else r
    x = np.arange(len(labels))
    yerr = None if lo is None or hi is None else np.vstack([r - lo, hi - r])
    ax.bar(x, r, width=0.7, color="C0", yerr=yerr, capsize=3, zorder=2)
    tilt = len(labels) > 3 or max(len(x) for x in labels) > 12
    ax.set_xticks(x, labels=labels, rotation=45 if tilt else 0, ha="right" if tilt else "center")
    span = float(np.nanmax(np.abs(np.concatenate([tops, [nc[1] if nc else 0.0, 1e-3]]))))
    step = 0.06 * span
    if sig is not None:
        for i in np.flatnonzero(sig):
            ax.text(float(i), max(tops[i], r[i]) + 0.3 * step, "*", ha="center", va="bottom", fontsize=12)
    y0 = max(float(np.nanmax(tops)), nc[1] if nc else -np.inf) + 1.2 * step
    pairs = _pair_rows(pairwise, labels, r)
    n_pairs = len(pairs)
    top = _draw_pairs(ax, pairs, y0, step)
    ax.set_ylim(top=max(ax.get_ylim()[1], top + step))
    ax.set_xlim(-0.6, len(labels) - 0.4)
    return n_pairs


def _draw_curves(ax, df, r, lo, hi, sig) -> None:
    models = list(dict.fromkeys(df["model"])) if "model" in df else [None]
    longest: list[str] = []
    for k, model in enumerate(models):
        rows = np.arange(len(df)) if model is None else np.flatnonzero((df["model"] == model).to_numpy())
        x = np.arange(len(rows))
        names = [str(v) for v in (df["layer"].iloc[rows] if "layer" in df else df["label"].iloc[rows])]
        if len(names) > len(longest):
            longest = names
        color = f"C{k % 10}"
        ax.plot(x, r[rows], color=color, linewidth=1.5, label=str(model) if model is not None else None)
        if lo is not None and hi is not None:
            ax.fill_between(x, lo[rows], hi[rows], color=color, alpha=0.2, linewidth=0)
        filled = np.ones(len(rows), dtype=bool) if sig is None else sig[rows]
        ax.scatter(x[filled], r[rows][filled], color=color, zorder=3, s=22)
        ax.scatter(x[~filled], r[rows][~filled], facecolors="white", edgecolors=color, zorder=3, s=22)
    ax.set_xticks(range(len(longest)), labels=longest, rotation=45 if len(longest) > 3 else 0, ha="right")
    ax.set_xlabel("layer (depth)")
