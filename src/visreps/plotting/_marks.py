"""What one panel of a model comparison shows: bars or layer-depth curves with their intervals, marks of
significance against zero, lines over significantly different pairs, read from the comparison table."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._layout import _names_below, _wrap
from ._style import _bars, _lighter

#: at most this many significant pairwise differences are drawn as lines over the bars (else: the table only)
MAX_PAIR_LINES = 12


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
    _names_below(ax, x, ticks, len(ticks) > 3 or max(len(t) for t in ticks) > 10)
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
        _names_below(ax, x, names, n > 1 and max(len(t) for t in names) > 3)
        ax.set_xlim(-0.5, n - 0.5)
