"""Writing a bench's outputs as one transaction, through the analysis output plan (:mod:`visreps.outputs`):
partial names first, renamed together when all are written.

``bench.json`` is written (and renamed) last and records the files of the run (``files``); a later bench
into the same folder replaces those files and nothing else.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import numpy as np

RECORD = "bench.json"
#: the files of a bench, in the order they are renamed into the output folder (``bench.json`` last)
OUTPUT_FILES = (
    "ranking.csv",
    "pairwise.csv",
    "layers.csv",
    "split.csv",
    "ranking.png",
    "ranking.pdf",
    "report.md",
    RECORD,
)


def owned_outputs(out: Path) -> set[str]:
    """Names of the files an earlier bench recorded as its own in ``out/bench.json``."""
    try:
        rec = json.loads((out / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return set()
    files = rec.get("files") if isinstance(rec, dict) and rec.get("tool") == "visreps bench" else None
    return {f for f in files if isinstance(f, str) and "/" not in f} | {RECORD} if isinstance(files, list) else set()


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, np.generic):
        return x.item()
    return x


def _markdown_table(df) -> str:
    cols = [
        "rank",
        "target",
        "label",
        "layer",
        "score",
        "ceiling_lower",
        "ceiling_upper",
        "normalised",
        "ci_low",
        "ci_high",
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            cells.append(f"{v:.3f}" if isinstance(v, float) and c != "rank" else str(int(v) if c == "rank" else v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _report(spec, ranking, split) -> str:
    sel = spec.analysis["selection"]
    n_sel = int((split["part"] == "selection").sum())
    cv = int(sel["cv"])
    how = (
        "the layer chosen on each half and scored on the other, averaged"
        if cv == 2
        else ("each layer scored on the selection images, the best committed and scored on the test images")
    )
    return "\n".join(
        [
            "# visreps bench",
            "",
            f"{len(spec.models)} model(s) × {len(spec.targets)} target(s) on {len(split)} images "
            f"({n_sel} selection, {len(split) - n_sel} test; split seed {sel['seed']}): {how}.",
            "`score` is the held-out score of the committed `layer`; `normalised` divides it by the upper noise "
            "ceiling (RSA), the split-half ceiling (encoding) or the repeated triplets' agreement (odd-one-out), "
            "each computed on the same test images.",
            "",
            _markdown_table(ranking),
            "",
            "![ranking](ranking.png)",
            "",
            "Tables: `ranking.csv`, `pairwise.csv` (tests between models, FDR), `layers.csv` (every layer's selection "
            "score and its score on all images: the layer profile, not for ranking), `split.csv`. `bench.json` holds "
            "the spec, the versions, the cache folders with their checksums and the split.",
            "",
        ]
    )


def _figure(ranking, layers, png: Path, pdf: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    targets = list(dict.fromkeys(ranking["target"]))
    fig, axes = plt.subplots(2, len(targets), figsize=(4.8 * len(targets), 7.5), squeeze=False)
    for j, t in enumerate(targets):
        r = ranking[ranking["target"] == t].sort_values("rank", ascending=False)
        ax = axes[0, j]
        y = np.arange(len(r))
        err = np.vstack([r["score"] - r["ci_low"], r["ci_high"] - r["score"]])
        ax.barh(y, r["score"], xerr=np.where(np.isfinite(err), err, 0), color="#4C72B0", capsize=3)
        at = r["time"].to_numpy() if "time" in r else np.full(len(r), np.nan)  # time-resolved targets: the latency
        ticks = [
            f"{lab}\n[{lay}{'' if np.isnan(t) else f' @ {t:g}'}]" for lab, lay, t in zip(r["label"], r["layer"], at)
        ]
        ax.set_yticks(y, ticks, fontsize=8)
        lo, hi = r["ceiling_lower"].iloc[-1], r["ceiling_upper"].iloc[-1]  # the top model's (time: at its latency)
        if np.isfinite(hi):
            ax.axvspan(lo if np.isfinite(lo) else hi, hi, color="grey", alpha=0.3, label="noise ceiling")
            ax.axvline(hi, color="grey", lw=1)
            ax.legend(fontsize=7, loc="lower right")
        ax.axvline(0, color="black", lw=0.8)
        if r["kind"].iloc[0] == "odd-one-out":  # three images: a guess is right one time in three
            ax.axvline(1 / 3, color="#C44E52", lw=1, ls="--", label="chance (1/3)")
            ax.legend(fontsize=7, loc="lower right")
        kind = r["kind"].iloc[0]
        ax.set_title(f"{t}{'' if t == kind else f' ({kind})'}: held-out score", fontsize=10)
        ax.set_xlabel(
            "accuracy of the committed layer (test triplets)"
            if kind == "odd-one-out"
            else "score of the committed layer (test images)"
        )
        ax2 = axes[1, j]
        lt = layers[layers["target"] == t]
        for lab, g in lt.groupby("label", sort=False):
            line = ax2.plot(g["depth"], g["score_all_images"], marker=".", label=lab)[0]
            c = g[g["committed"]]
            ax2.plot(c["depth"], c["score_all_images"], "*", ms=12, color=line.get_color())
        ax2.set_xlabel("layer depth (0: first requested, 1: last)")
        ax2.set_ylabel("score on all images (profile, not for ranking)")
        ax2.set_title(f"{t}: layer profiles (★ committed)", fontsize=10)
        ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=110, format="png", bbox_inches="tight", pad_inches=0.05)  # nothing clipped
    fig.savefig(pdf, format="pdf", bbox_inches="tight", pad_inches=0.05)
    plt.close(fig)


def reuse_outputs(out: Path, fingerprint: str) -> tuple | None:
    """``(ranking, pairwise, layers, split, cache)`` of an earlier bench in ``out`` with this fingerprint, every
    file intact; else ``None``."""
    import pandas as pd

    from ..models._base import file_sha256

    try:
        rec = json.loads((out / RECORD).read_text(encoding="utf-8"))
        if rec.get("fingerprint") != fingerprint:
            return None
        for name, digest in rec["checksums"].items():
            if "/" in name or file_sha256(out / name) != digest:
                return None
        tables = [
            pd.read_csv(out / f"{n}.csv", keep_default_na=False, na_values=[""])
            for n in ("ranking", "pairwise", "layers", "split")
        ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError, pd.errors.ParserError):
        return None
    return (*tables, [{**c, "extracted": False} for c in rec.get("cache", [])])


def plan_outputs(out: Path, spec) -> Any:
    """The checked :class:`visreps.outputs.OutputPlan` of a bench's files in ``out`` (before any work).

    The bench's own rule of ownership (:func:`owned_outputs`: only files an earlier bench recorded in its
    ``bench.json`` are replaced) is checked by the caller first, so the plan replaces (``overwrite``) what
    it finds; it refuses the spec, the targets and the image folder as outputs. Raises ``VisrepsError``.
    """
    from ..outputs import OutputPlan

    plan = OutputPlan(overwrite=True, options="--out")
    plan.add(*(out / name for name in OUTPUT_FILES))  # bench.json last: renamed last, its presence says complete
    plan.add_inputs(*(t.path for t in spec.targets), what="target")
    plan.add_inputs(spec.source, what="spec")
    folder = spec.images.is_dir()
    plan.add_inputs(spec.images, what="image folder" if folder else "image file", tree=folder)
    return plan.check()


def write_outputs(
    plan: Any, spec, ranking, pairwise, layers, split, cache: list[dict[str, Any]], fingerprint: str
) -> None:
    """Every output through ``plan`` (partial names, renamed together when all are written); ``bench.json`` last."""
    from ..models._base import file_sha256

    out = plan.files[0].parent
    tables = {"ranking": ranking, "pairwise": pairwise, "layers": layers}
    with plan:  # an error or Ctrl-C in the block removes the partial files
        for name, df in tables.items():
            plan.write(out / f"{name}.csv", lambda p, df=df: df.to_csv(p, index=False, float_format="%.17g"))
        plan.write(out / "split.csv", lambda p: split.to_csv(p, index=False))
        _figure(ranking, layers, plan.partial(out / "ranking.png"), plan.partial(out / "ranking.pdf"))
        plan.write(out / "report.md", lambda p: p.write_text(_report(spec, ranking, split), encoding="utf-8"))
        checksums = {name: file_sha256(plan.partial(out / name)) for name in OUTPUT_FILES if name != RECORD}
        record = _record(spec, split, cache, fingerprint, checksums)
        plan.write(out / RECORD, lambda p: p.write_text(json.dumps(record, indent=1), encoding="utf-8"))


def _record(spec, split, cache: list[dict[str, Any]], fingerprint: str, checksums: dict[str, str]) -> dict[str, Any]:
    """The content of ``bench.json``: the spec, the versions, the cache entries, the split, the files and checksums."""
    from ..storage import versions

    sel = spec.analysis["selection"]
    return {
        "tool": "visreps bench",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "spec": _jsonable(spec.raw),
        "spec_file": str(spec.source) if spec.source else None,
        "spec_base": str(spec.base),
        "analysis": _jsonable(spec.analysis),
        "versions": versions(),
        "images": str(spec.images),
        "cache": _jsonable(cache),
        "split": {
            "share": sel["split"],
            "seed": sel["seed"],
            "cv": sel["cv"],
            "stratified": len(set(split["label"])) > 1,
            "selection": [p for p, part in zip(split["path"], split["part"]) if part == "selection"],
            "test": [p for p, part in zip(split["path"], split["part"]) if part == "test"],
        },
        "files": list(OUTPUT_FILES),
        "fingerprint": fingerprint,
        "checksums": checksums,
    }
