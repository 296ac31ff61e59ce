"""The ``visreps bench`` command: many models × layers × targets from one spec, one ranked table."""

from __future__ import annotations

import click

from ..options import BENCH_ENGINES
from ._base import quiet_option

_OUT_HELP = "Output folder of the tables, figure and report."
_ENGINE_HELP = (
    "Where the models are extracted: local (this process, one model after the other) or ray (each missing model a "
    "Ray task with its own GPU or a share of the CPUs; needs visreps[ray]; joins RAY_ADDRESS when set)."
)


@click.command("bench")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help=_OUT_HELP)
@click.option("--engine", type=click.Choice(BENCH_ENGINES), default="local", show_default=True, help=_ENGINE_HELP)
@quiet_option
def bench(spec: str, out: str, engine: str, quiet: bool) -> None:
    """Rank models (and their layers) against brain or behaviour targets with honest layer selection.

    SPEC is a TOML file (see docs/bench.md): images, [[models]], [[targets]] and [analysis]. Each
    layer is scored on the selection images, the best is committed and scored on the held-out test
    images, with noise ceilings, bootstrap intervals and pairwise tests on those images. Writes
    ranking.csv, pairwise.csv, layers.csv, split.csv, ranking.png/.pdf, report.md and bench.json to
    --out; extractions are cached in work_dir (default OUT/cache) and reused by every later bench.
    Rerun the same command after an interruption to continue.
    """
    from ..bench import bench as run_bench

    res = run_bench(spec, out=out, engine=engine, progress=not quiet)
    if not quiet:
        cols = ["target", "rank", "label", "layer", "score", "normalised", "ci_low", "ci_high"]
        click.echo(res.ranking[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
