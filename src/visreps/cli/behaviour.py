"""The behaviour and time commands of the ``visreps`` CLI: ``odd-one-out``, ``frrsa``, ``partition``, ``time-rsa``.

Every command plans all the files it writes before any work and writes them as one transaction
(:class:`visreps.outputs.OutputPlan`, as ``rsa``, ``compare`` and ``encode`` do): an existing file is an error
without ``--overwrite``, an input file (or a file inside an input folder) is never an output, every file is
written under a partial name and all are renamed together at the end. Tables are CSV at full precision.
Heavy modules are imported inside the commands.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..options import (
    CORRELATIONS,
    FRRSA_MEASURES,
    OOO_SIMILARITIES,
    PARTITION_SCALES,
    TAILS,
    TIME_RDM_METHODS,
)
from ._base import check_figure_path, choice_option, echo_replaced, overwrite_option, responses_options, split_list
from ._base import plan_outputs as _plan_outputs

F = TypeVar("F", bound=Callable[..., Any])

# --------------------------------------------------------------------------- shared pieces


def _outputs_options(default_out: str) -> Callable[[F], F]:
    def deco(f: F) -> F:
        f = overwrite_option(f)
        f = click.option(
            "--dpi", type=click.IntRange(min=10), default=300, show_default=True, help="Resolution of raster figures."
        )(f)
        f = click.option("--no-plot", is_flag=True, help="Only write the tables.")(f)
        f = click.option(
            "--plot",
            "plot_path",
            type=click.Path(dir_okay=False),
            default=None,
            help="Figure file (.png/.pdf/.svg/.eps/.tiff/.jpg; default: the table's name with .png).",
        )(f)
        f = click.option(
            "--out",
            "-o",
            type=click.Path(dir_okay=False),
            default=default_out,
            show_default=True,
            help="CSV table to write (full precision).",
        )(f)
        return f

    return deco


def _sibling(table: Path, suffix: str) -> Path:
    return table.with_name(f"{table.stem}_{suffix}.csv")


def _figure_path(table: Path, plot_path: str | None, no_plot: bool) -> Path | None:
    if no_plot:
        return None
    p = Path(plot_path) if plot_path else table.with_suffix(".png")
    check_figure_path(p, "--plot")  # a format of visreps.plotting.FIGURE_FORMATS, before any work
    return p


def plan_outputs(outputs: Iterable[Path | None], inputs: Iterable[Any], overwrite: bool, options: str) -> Any:
    """The checked output plan (:class:`visreps.outputs.OutputPlan`) of a command, before any work: ``inputs`` are
    files and folders it reads (every existing file of an input folder is an input too)."""
    files: list[Any] = []
    trees: list[Any] = []
    for item in inputs:
        if item is None:
            continue
        (trees if Path(item).expanduser().is_dir() else files).append(item)
    return _plan_outputs([p for p in outputs if p is not None], overwrite, options, inputs=files, trees=trees)


def write_table(plan: Any, df: Any, path: Path) -> None:
    """The table as CSV at full precision, through the plan (a partial name, renamed with the run's files)."""
    plan.write(path, lambda p: df.to_csv(p, index=False))


def write_figure(plan: Any, plot: Callable[..., Any], result: Any, path: Path, **kw: Any) -> None:
    """Draw with ``plot(result, partial_path, format=...)`` through the plan."""
    plan.write(path, lambda p: plot(result, p, format=path.suffix.lstrip("."), **kw))


def write_run(
    plan: Any,
    tables: Iterable[tuple[Any, Path | None]],
    msg: str,
    figure: tuple[Path | None, Callable[..., Any], Any] | None = None,
    **plot_kw: Any,
) -> None:
    """A command's tables (those with a path) and its figure (``(path or None, plot, result)``) through the plan as
    one transaction (partial names, renamed together at the end); then what was replaced and ``msg``."""
    with plan:
        for df, path in tables:
            if path is not None:
                write_table(plan, df, path)
        fig, plot, result = figure or (None, None, None)
        if fig is not None and plot is not None:
            write_figure(plan, plot, result, fig, **plot_kw)
            msg += f", figure → {fig}"
    echo_replaced(plan)
    click.echo(msg)


def _echo_table(df: Any, drop: Iterable[str] = ()) -> None:
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_rows", 60):
        click.echo(df.drop(columns=[c for c in drop if c in df.columns]).round(4).to_string(index=False))


def _layers_option(f: F) -> F:
    return click.option("--layers", "-l", default=None, help="Comma-separated layers (default: every layer).")(f)


# --------------------------------------------------------------------------- odd-one-out


@click.command("odd-one-out")
@click.argument("folder", type=click.Path(file_okay=False))
@click.argument("triplets", type=click.Path(dir_okay=False))
@_layers_option
@choice_option(
    "--similarity",
    choices=OOO_SIMILARITIES,
    default="dot",
    help="Pair similarity: dot product (as gLocal) or cosine; the odd one out is left by the most similar pair.",
)
@click.option("--per-triplet", type=click.Path(dir_okay=False), default=None, help="CSV of every triplet's choices.")
@click.option("--n-bootstrap", type=click.IntRange(min=0), default=1000, show_default=True, help="Triplet resamples.")
@click.option("--ci", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@_outputs_options("odd_one_out.csv")
def odd_one_out(
    folder: str,
    triplets: str,
    layers: str | None,
    similarity: str,
    per_triplet: str | None,
    n_bootstrap: int,
    ci: float,
    seed: int,
    out: str,
    plot_path: str | None,
    no_plot: bool,
    dpi: int,
    overwrite: bool,
) -> None:
    """Odd-one-out accuracy of every layer of FOLDER on the human choices in TRIPLETS.

    TRIPLETS: a CSV/TSV with a header (three image columns and optionally a `choice` column naming
    the odd one out), a TXT (three per line) or an NPY (m × 3 manifest indices). Without `choice`
    the odd one out is the last of the three. Images are manifest paths, unique file names, or
    0-based manifest indices. Writes OUT (one row per layer: accuracy, ci_low, ci_high, ceiling
    with repeated triplets) and a bar chart.
    """
    from ..analysis.behaviour import odd_one_out as run
    from ..plotting_behaviour import plot_odd_one_out

    table = Path(out)
    fig = _figure_path(table, plot_path, no_plot)
    extra = Path(per_triplet) if per_triplet else None
    plan = plan_outputs([table, extra, fig], [folder, triplets], overwrite, "--out/--plot/--per-triplet")
    res = run(
        folder, triplets, layers=split_list(layers), similarity=similarity, n_bootstrap=n_bootstrap, ci=ci, seed=seed
    )
    _echo_table(res.table, drop=("label", "model"))
    msg = f"table → {table}" + (f", per triplet → {extra}" if extra else "")
    title = f"odd-one-out: {int(res.table['n_triplets'].iloc[0])} triplets ({similarity})"
    figure = (fig, plot_odd_one_out, res)
    write_run(plan, [(res.table, table), (res.per_triplet, extra)], msg, figure, dpi=dpi, title=title)


# --------------------------------------------------------------------------- time-resolved RSA


def _read_times(value: str | None) -> Any:
    """``--times``: a text file with one time per line, or ``START:STEP`` (e.g. ``-0.1:0.01``)."""
    import numpy as np

    from ..errors import VisrepsError

    if value is None:
        return None
    if Path(value).is_file():
        try:
            return np.loadtxt(value, dtype=np.float64, ndmin=1)
        except ValueError as e:
            raise VisrepsError(f"--times {value!r}: one number per line is needed ({e})") from None
    start, sep, step = value.partition(":")
    if sep:
        try:
            return ("range", float(start), float(step))
        except ValueError:
            pass
    raise VisrepsError(f"--times {value!r} is neither a file of times nor START:STEP (e.g. -0.1:0.01)")


#: ``--help`` of ``time-rsa --times``
TIMES_HELP = (
    "The time of every point: a text file (one per line) or START:STEP (default: the file's `times`, else 0, 1, ...)."
)


@click.command("time-rsa")
@click.argument("folder", type=click.Path(file_okay=False))
@click.argument("reference", type=click.Path(dir_okay=False))
@_layers_option
@click.option("--reference-key", default=None, help="Variable of a .npz/.mat/.h5 reference holding the RDM stack.")
@click.option("--times", default=None, help=TIMES_HELP)
@click.option("--time-unit", default="", help="Unit of the times, for the figure's axis (e.g. s, ms).")
@click.option("--order", type=click.Path(dir_okay=False), default=None, help="Text file: the image of every RDM row.")
@choice_option("--rdm-method", choices=TIME_RDM_METHODS, default="correlation")
@choice_option("--method", "-m", choices=CORRELATIONS, default="spearman")
@click.option("--n-bootstrap", type=click.IntRange(min=0), default=1000, show_default=True)
@click.option("--n-permutations", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--threshold", type=float, default=None, help="Cluster-forming t threshold (default: MNE's, p = 0.05).")
@choice_option("--tail", choices=TAILS, default="1")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True)
@click.option("--ci", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@_outputs_options("time_rsa.csv")
def time_rsa(folder: str, reference: str, **p: Any) -> None:
    """Time-resolved RSA: every layer's RDM against REFERENCE RDMs over time (MEG/EEG).

    REFERENCE: (time, n, n) or (subjects, time, n, n) RDMs in a .npy/.npz/.mat/.h5 file. Writes OUT
    (one row per layer and time: r, ci_low, ci_high, significant), OUT_peaks.csv (peak latency with
    its bootstrap interval), OUT_clusters.csv (clusters of MNE's permutation test, with 2+ subjects)
    and the figure.
    """
    import numpy as np

    from ..analysis.timeseries import load_time_rdms, time_resolved_rsa
    from ..plotting_behaviour import plot_timecourse

    table = Path(p["out"])
    fig = _figure_path(table, p["plot_path"], p["no_plot"])
    peaks, clusters = _sibling(table, "peaks"), _sibling(table, "clusters")
    plan = plan_outputs([table, peaks, clusters, fig], [folder, reference, p["order"]], p["overwrite"], "--out/--plot")
    times = _read_times(p["times"])
    ref = load_time_rdms(
        reference, key=p["reference_key"], images=p["order"], times=None if isinstance(times, tuple) else times
    )
    if isinstance(times, tuple):
        ref.times = times[1] + times[2] * np.arange(len(ref.times))
    res = time_resolved_rsa(
        folder,
        ref,
        layers=split_list(p["layers"]),
        tail=int(p["tail"]),
        **{
            k: p[k]
            for k in ("rdm_method", "method", "n_bootstrap", "ci", "n_permutations", "threshold", "alpha", "seed")
        },
    )
    _echo_table(res.peaks, drop=("label", "model"))
    if res.info["n_subjects"] < 2:
        click.echo("one subject: no cluster test over time (it needs RDMs of 2+ subjects)")
    msg = f"tables → {table}, {peaks}, {clusters}"
    title = f"{ref.n_subjects} subject(s), {res.info['n_images']} images, {p['rdm_method']} RDMs"
    tables = [(res.timecourse, table), (res.peaks, peaks), (res.clusters, clusters)]
    figure = (fig, plot_timecourse, res)
    write_run(plan, tables, msg, figure, dpi=p["dpi"], time_unit=p["time_unit"], title=title)


# --------------------------------------------------------------------------- variance partitioning


@click.command("partition")
@click.argument("sources", nargs=-1, required=True)
@click.option("--responses", "-r", type=click.Path(dir_okay=False), required=True, help="Response file (as encode).")
@_layers_option
@responses_options
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True)
@choice_option(
    "--scale",
    choices=PARTITION_SCALES,
    default="equal",
    help="equal: every feature set scaled to unit mean squared centred row norm before joining.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the folds.")
@_outputs_options("partition.csv")
def partition(sources: tuple[str, ...], **p: Any) -> None:
    """Variance partitioning of 2-4 feature sets (each chosen layer of SOURCES is one set) in encoding models.

    Writes OUT (one row per target and part: unique and shared R²), OUT_subsets.csv (the held-out
    R² of every subset model), OUT_summary.csv (mean, median, SEM per part) and stacked bars.
    """
    from ..analysis.partition import variance_partitioning
    from ..plotting_behaviour import plot_partition

    table = Path(p["out"])
    fig = _figure_path(table, p["plot_path"], p["no_plot"])
    subsets, summary = _sibling(table, "subsets"), _sibling(table, "summary")
    inputs = [*sources, p["responses"], p["order"]]
    plan = plan_outputs([table, subsets, summary, fig], inputs, p["overwrite"], "--out/--plot")
    res = variance_partitioning(
        list(sources),
        p["responses"],
        layers=split_list(p["layers"]),
        **{k: p[k] for k in ("folds", "seed", "scale", "nan", "order", "key", "axes")},
    )
    _echo_table(res.summary)
    msg = f"tables → {table}, {subsets}, {summary}"
    tables = [(res.parts, table), (res.subsets, subsets), (res.summary, summary)]
    title = f"variance partitioning: {', '.join(res.sets)}"
    write_run(plan, tables, msg, (fig, plot_partition, res), dpi=p["dpi"], title=title)


# --------------------------------------------------------------------------- reweighted RSA


@click.command("frrsa")
@click.argument("sources", nargs=-1, required=True)
@click.option("--reference", "-r", type=click.Path(), required=True, help="Reference RDM(s) (as compare --reference).")
@_layers_option
@click.option("--reference-key", default=None, help="Variable of a .mat/.npz/.h5 reference.")
@click.option("--order", type=click.Path(dir_okay=False), default=None, help="Text file: the image of every RDM row.")
@choice_option(
    "--measure",
    choices=FRRSA_MEASURES,
    default="sqeuclidean",
    help="Per-channel matrix: sqeuclidean (for dissimilarities) or dot (for similarities).",
)
@click.option("--no-preprocess", is_flag=True, help="Do not z-score/L2-normalise each image's pattern first.")
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True, help="Outer folds.")
@click.option("--repeats", type=click.IntRange(min=1), default=10, show_default=True, help="Outer repeats.")
@click.option("--weighted", is_flag=True, help="Instead: weighted RSA, one non-negative weight per layer (rsatoolbox).")
@click.option("--seed", type=int, default=0, show_default=True)
@_outputs_options("frrsa.csv")
def frrsa(sources: tuple[str, ...], **p: Any) -> None:
    """Feature-reweighted RSA of every layer of SOURCES against --reference (Kaniuth & Hebart 2022).

    Writes OUT (one row per layer and reference RDM: r reweighted and cross-validated, r_classical),
    OUT_splits.csv and the figure. With --weighted: weighted RSA of the layers together (one weight
    per layer, fitted and cross-validated over images), OUT with the weights and scores.
    """
    from ..plotting_behaviour import plot_frrsa

    table = Path(p["out"])
    fig = None if p["weighted"] else _figure_path(table, p["plot_path"], p["no_plot"])
    splits = None if p["weighted"] else _sibling(table, "splits")
    plan = plan_outputs([table, splits, fig], [*sources, p["reference"], p["order"]], p["overwrite"], "--out/--plot")
    if p["weighted"]:
        df = _weighted(sources, p)
        _echo_table(df)
        write_run(plan, [(df, table)], f"table → {table}")
        return
    from ..analysis.frrsa import feature_reweighted_rsa

    res = feature_reweighted_rsa(
        list(sources),
        p["reference"],
        layers=split_list(p["layers"]),
        preprocess=not p["no_preprocess"],
        outer_folds=p["folds"],
        key=p["reference_key"],
        **{k: p[k] for k in ("measure", "repeats", "seed", "order")},
    )
    assert splits is not None
    _echo_table(res.table, drop=("label", "model"))
    title = f"feature-reweighted RSA ({p['measure']})"
    tables = [(res.table, table), (res.splits, splits)]
    write_run(plan, tables, f"tables → {table}, {splits}", (fig, plot_frrsa, res), dpi=p["dpi"], title=title)


def _weighted(sources: tuple[str, ...], p: dict[str, Any]) -> Any:
    """``frrsa --weighted``: the layers' correlation RDMs weighted together (rsatoolbox's fit_regress_nn)."""
    import numpy as np

    from ..analysis.compare import collect_features, load_reference_rdms
    from ..analysis.frrsa import reference_rows, weighted_rsa
    from ..analysis.rsa import compute_rdm

    stack, _ = load_reference_rdms(p["reference"], key=p["reference_key"])
    sets = collect_features(list(sources), layers=split_list(p["layers"]))
    rows_of = reference_rows(sets, stack.shape[-1], p["order"])
    rdms = {s.label: compute_rdm(s.features, "correlation")[np.ix_(r, r)] for s, r in zip(sets, rows_of)}
    df, info = weighted_rsa(rdms, stack, folds=p["folds"], seed=p["seed"])
    df["r_fit"] = info["r_fit"]
    df["r_cv"] = info["r_cv"]
    return df


#: the commands of this module, in the order ``visreps --help`` lists them
COMMANDS = (odd_one_out, frrsa, partition, time_rsa)
