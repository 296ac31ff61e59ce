"""``visreps compare``: the layers' RDMs correlated with each other, or with reference RDMs (with inference).

The command builds the option objects once (:class:`visreps.analysis.inference.InferenceOptions`,
:class:`visreps.analysis.compare.RDMOptions`), reads the reference once
(:class:`visreps.analysis.references.ReferenceStack`) and passes them down; model ids given with ``--images``
become :class:`visreps.workflows.ToExtract` sources. The files a run writes are described once
(:data:`_TABLES`, :func:`_figures`): the plan made before any work and the writers read the same table.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ..options import COMPARISONS, CORRECTIONS, DEPTHS, PLOT_KINDS, RDM_METHODS, TEST_TYPES
from ._base import (
    check_figure_path,
    choice_option,
    compute_options,
    echo_replaced,
    folder_inputs,
    heatmap_options,
    label_option,
    labelled_sources,
    overwrite_option,
    parse_source,
    pd_display,
    plan_outputs,
    plot_formats,
    split_list,
    write_figure,
)


def _sources_and_layers(args: tuple[str, ...], layers_opt: str | None) -> tuple[list[str], dict[str, list[str]] | None]:
    sources: list[str] = []
    per: dict[str, list[str]] = {}
    common = split_list(layers_opt)
    for a in args:
        src, layers = parse_source(a)
        sources.append(src)
        if layers is not None:
            per[src] = layers
        elif common is not None:
            per[src] = common
    return sources, (per or None)


def _once(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> str | None:
    """An option given at most once: a second one would silently replace the first (``multiple=True`` collects
    them so that this can refuse)."""
    if len(value) > 1:
        opt = param.opts[0]
        hint = " (compare with each in turn, one command per reference)" if opt == "--reference" else ""
        raise click.BadParameter(f"given {len(value)} times ({', '.join(value)}); give it once{hint}", param_hint=opt)
    return value[0] if value else None


def _given_once(*decls: str, **kw: Any) -> Any:
    """An option that may be given once (:func:`_once`)."""
    return click.option(*decls, multiple=True, callback=_once, **kw)


# --------------------------------------------------------------------------- the files a run writes


@dataclass(frozen=True)
class _Table:
    """One table of ``compare``'s inference: its name after the OUT stem, when a run writes it, how."""

    suffix: str  # "" is OUT itself
    planned: Callable[[Any], bool]  # from the InferenceOptions: whether a run with them writes it
    present: Callable[[Any], bool]  # from the result: whether it has this table
    write: Callable[[Any, Path], None]

    def path(self, table: Path) -> Path:
        return table if not self.suffix else table.with_name(table.stem + self.suffix)


_TABLES = (
    _Table("", lambda o: True, lambda r: True, lambda r, p: r.table.to_csv(p, index=False)),
    _Table(
        "_pairwise.csv",
        lambda o: "pairwise" in o.test,
        lambda r: r.pairwise is not None,
        lambda r, p: r.pairwise.to_csv(p, index=False),
    ),
    _Table(
        "_bootstrap.csv",
        lambda o: bool(o.bootstrap),
        lambda r: r.bootstrap is not None,
        lambda r, p: r.samples().to_csv(p),
    ),
)


def _figures(table: Path, formats: list[str], plot_path: str | None, *, inference: bool) -> list[Path]:
    """The figures of ``compare``: --plot, else the table's name with the (first, or with inference every) format."""
    if plot_path:
        return [Path(plot_path)]
    return [table.with_suffix("." + f) for f in (formats if inference else formats[:1])]


def _outputs(table: Path, formats: list[str], p: dict[str, Any], opts: Any) -> list[Path]:
    """Every file ``compare`` may write with these options (``opts``: the InferenceOptions of an inference run,
    else ``None``), checked for earlier results before any work."""
    paths = [t.path(table) for t in _TABLES if opts is not None and t.planned(opts)] or [table]
    if not p["no_plot"]:
        from ..plotting import caption_path

        figures = _figures(table, formats, p["plot_path"], inference=opts is not None)
        paths += figures + list(dict.fromkeys(caption_path(f) for f in figures))
    return paths


def _write_tables(res: Any, table: Path, plan: Any) -> list[Path]:
    """The tables of ``compare``'s inference that the run has (:data:`_TABLES`), written through ``plan``."""
    written = []
    for t in _TABLES:
        if t.present(res):
            written.append(t.path(table))
            plan.write(written[-1], lambda out, t=t: t.write(res, out))
    return written


@click.command()
@click.argument("sources", nargs=-1, required=True)
@click.option(
    "--layers",
    "-l",
    default=None,
    help="Comma-separated layers to use from every source (default: all). Per source: FOLDER::layer1,layer2.",
)
@_given_once(
    "--reference",
    "-r",
    type=click.Path(),
    help="Reference RDM (brain/behaviour): a file (.npy, .mat, .csv, .txt, .h5; a (subjects, n, n) stack gives "
    "one RDM per subject) or a folder of per-subject files; compares each layer with it.",
)
@_given_once(
    "--reference-key",
    help="Variable of a .mat/.npz/.h5 reference holding the RDM(s); a struct's field (RDM or RDMs.RDM).",
)
@_given_once(
    "--reference-order",
    type=click.Path(dir_okay=False),
    help="Text file: the image paths of the reference's rows, one per line (default: the names the reference "
    "file holds, else manifest order).",
)
@choice_option("--rdm-method", choices=RDM_METHODS, default="correlation")
@choice_option(
    "--method",
    "-m",
    choices=COMPARISONS,
    default="pearson",
    help="How RDMs are correlated (upper triangles): pearson, spearman, kendall (tau-b), tau_a.",
)
@click.option(
    "--bootstrap",
    default=None,
    metavar="N|FACTORS",
    help="With --reference: resample images, subjects or subjects,images (both factors, with rsatoolbox's variance "
    "correction) --n-bootstrap times; a number N: N image resamples for a percentile interval (as before).",
)
@click.option("--n-bootstrap", type=click.IntRange(min=2), default=1000, show_default=True, help="Bootstrap samples.")
@click.option("--noise-ceiling", is_flag=True, help="Lower and upper noise-ceiling bounds (needs RDMs of 2+ subjects).")
@click.option(
    "--test",
    default=None,
    help="Comma-separated: pairwise (differences between layers/models, needs --bootstrap), permutation "
    "(image labels shuffled, --n-permutations times). A test vs 0 comes with every --bootstrap.",
)
@choice_option(
    "--test-type",
    choices=TEST_TYPES,
    default="t",
    help="t: t-tests with the bootstrap variance (rsatoolbox's default); bootstrap: from the bootstrap samples.",
)
@choice_option(
    "--correction",
    choices=CORRECTIONS,
    default="fdr",
    help="Multiple-comparison correction within each family of tests (fdr = Benjamini–Hochberg).",
)
@click.option("--n-permutations", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True)
@choice_option(
    "--figure",
    choices=PLOT_KINDS,
    default="bars",
    help="With --noise-ceiling/--bootstrap FACTORS/--test: bars per layer, or a layer-depth curve per model.",
)
@choice_option(
    "--depth",
    choices=DEPTHS,
    default="layers",
    help="--figure curve: each model on its own layer names (one panel per model), or all on a relative depth axis.",
)
@click.option(
    "--plot-format",
    default="png",
    show_default=True,
    help="Comma-separated figure formats (png, pdf, svg, eps, tiff, jpg) when --plot is not given.",
)
@click.option("--ci", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap and permutations.")
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False),
    default="comparison.csv",
    show_default=True,
    help="CSV table to write.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Figure file (.png .pdf .svg .eps .tiff .jpg; default: the CSV name with .png); its caption goes to .txt.",
)
@click.option("--no-plot", is_flag=True)
@click.option(
    "--images",
    type=click.Path(file_okay=False),
    default=None,
    help="Image folder, to extract SOURCES given as model ids (e.g. torchvision:alexnet).",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where model ids are extracted to and reused from (default: in memory).",
)
@click.option("--random", "random_init", is_flag=True, help="Model ids: random (seeded) weights instead of pretrained.")
@label_option
@heatmap_options
@compute_options
@overwrite_option
def compare(
    sources: tuple[str, ...],
    layers: str | None,
    reference: str | None,
    reference_key: str | None,
    reference_order: str | None,
    rdm_method: str,
    method: str,
    bootstrap: str | None,
    n_bootstrap: int,
    noise_ceiling: bool,
    test: str | None,
    test_type: str,
    correction: str,
    n_permutations: int,
    alpha: float,
    figure: str,
    depth: str,
    plot_format: str,
    ci: float,
    seed: int,
    out: str,
    plot_path: str | None,
    no_plot: bool,
    images: str | None,
    work_dir: str | None,
    random_init: bool,
    label: tuple[str, ...],
    cmap: str,
    dpi: int,
    width: str | None,
    block_size: int | None,
    device: str,
    overwrite: bool,
) -> None:
    """Correlate the RDMs of several output folders / layers: a table (CSV) and a heatmap.

    SOURCES are output folders of `visreps extract` (every layer, or --layers), optionally
    FOLDER::layer1,layer2; or model ids with --images. With --reference, every layer's RDM is
    correlated with that RDM instead (table of r per layer, bar chart).

    With per-subject reference RDMs, --noise-ceiling, --bootstrap subjects,images or --test, the
    scores are mean correlations over subjects with noise ceiling, bootstrap intervals and tests:
    OUT (one row per layer), OUT_pairwise.csv, OUT_bootstrap.csv (the samples), all at full
    precision, and the figure (bars or a layer-depth curve with the noise-ceiling band).

    Every table carries `label` (the model with its weights, e.g. "alexnet (random, seed 1)/fc6";
    rename with --label SOURCE=NAME) and `weights` columns; the figure's caption (images, subjects,
    bootstrap, test, correction) is written next to it as .txt.
    """
    if plot_path and not no_plot:
        check_figure_path(plot_path, "--plot")  # a format no figure can be written in is refused before any work
    srcs, layer_map = _sources_and_layers(sources, layers)
    named = labelled_sources(srcs, label)
    p = click.get_current_context().params
    n_legacy, opts = _inference_options(p)
    table, formats = Path(out), plot_formats(plot_format)
    stack, inference = _reference(p, opts, n_legacy) if opts is not None else (None, False)
    planned = _outputs(table, formats, p, opts if inference else None)
    plan = _plan(planned, p, srcs)
    from ..workflows import model_sources

    extract_options = {"pretrained": not random_init} if images else None
    todo = model_sources(named, images=images, work_dir=work_dir, extract_options=extract_options)
    if inference:
        _compare_inference(todo, stack, opts, layer_map, table, formats, p, plan)
    else:
        _compare_plain(todo, stack, layer_map, table, formats, n_legacy, p, plan)
    echo_replaced(plan)


def _inference_options(p: dict[str, Any]) -> tuple[int, Any]:
    """``--bootstrap`` as a number of image resamples (the percentile interval of before, else 0) and the
    inference options, checked once (``None`` without ``--reference``, where asking for inference is an error)."""
    from ..analysis.inference import InferenceOptions, check_bootstrap

    value = (p["bootstrap"] or "").strip()
    n_legacy = 0
    if value.isdigit():
        if int(value) < 2:
            raise click.BadParameter(
                f"{value} resample gives no interval; give at least 2 (1000 is usual)", param_hint="--bootstrap"
            )
        n_legacy = int(value)
    if p["reference"] is None:
        if value and not n_legacy:
            check_bootstrap(value)  # a factor that is not known is named first
        if p["bootstrap"] or p["noise_ceiling"] or p["test"]:
            what = "--bootstrap" if p["bootstrap"] else "--noise-ceiling" if p["noise_ceiling"] else "--test"
            raise click.UsageError(f"{what} needs --reference: a reference RDM to compare the layers with")
        return n_legacy, None
    bootstrap = ("images",) if n_legacy else value
    opts = InferenceOptions.pick(p, bootstrap=bootstrap, n_bootstrap=n_legacy or p["n_bootstrap"])
    return n_legacy, opts


def _reference(p: dict[str, Any], opts: Any, n_legacy: int) -> tuple[Any, bool]:
    """The reference, read once, and whether the run is an inference one: asked for (noise ceiling, bootstrap
    factors, tests) or RDMs of several subjects."""
    from ..analysis.references import ReferenceStack

    reference = p["reference"]
    asked = bool((opts.bootstrap and not n_legacy) or opts.noise_ceiling or opts.test)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stack = ReferenceStack.load(reference, key=p["reference_key"])
    folder = Path(reference).is_dir()
    averaged = [nm for nm in stack.subjects if nm.endswith(" sessions)")]
    if averaged and not asked and not folder:  # a struct array RDMs(subject, session): say what was done
        names = stack.subjects
        click.echo(f"reference {Path(reference).name}: {len(names)} subjects, {averaged[0].split('(', 1)[1][:-1]} each")
    inference = asked or folder or stack.n_subjects > 1
    if inference:  # said as reading them says them; a one-RDM comparison says them as one RDM's
        for w in caught:
            warnings.warn(w.message, stacklevel=2)
    return stack, inference


def _plan(planned: list[Path], p: dict[str, Any], srcs: list[str]) -> Any:
    """The output plan of ``compare``: its files, none of them an input (sources, reference, order, images)."""
    inputs: list[Any] = [(p["reference_order"], "the --reference-order file")]
    inputs += [f for src in srcs for f in folder_inputs(src)]
    trees = [p["images"], p["work_dir"]]
    reference = p["reference"]
    if reference is not None:
        if Path(reference).is_dir():
            trees.append(reference)
        else:
            inputs.append((reference, "the --reference file"))
    return plan_outputs(planned, p["overwrite"], "--out/--plot", inputs=inputs, trees=trees)


def _rdm_keywords(p: dict[str, Any], layer_map: Any) -> dict[str, Any]:
    keys = ("rdm_method", "method", "block_size", "device")
    return {"layers": layer_map, **{k: p[k] for k in keys}}


def _compare_plain(
    srcs: Any, stack: Any, layer_map: Any, table: Path, formats: list[str], n_legacy: int, p: dict[str, Any], plan: Any
) -> None:
    """``compare`` without inference: layers with each other (heatmap) or with one reference RDM (bars)."""
    from ..analysis.compare import compare_features, compare_to_reference
    from ..errors import VisrepsError
    from ..plotting import figure_caption, plot_comparison, plot_reference_comparison

    if stack is None:
        df = compare_features(srcs, **_rdm_keywords(p, layer_map))
        if df.shape[0] < 2:
            raise VisrepsError("only one layer to compare; give several folders or layers, or a --reference RDM")
        with pd_display():
            click.echo(df.round(3).to_string())
    else:
        df = compare_to_reference(
            srcs,
            stack,
            reference_key=p["reference_key"],
            reference_order=p["reference_order"],
            n_bootstrap=n_legacy,
            ci=p["ci"],
            seed=p["seed"],
            **_rdm_keywords(p, layer_map),
        )
        with pd_display():
            click.echo(_shown(df).round(4).to_string(index=False))
    msg = f"table → {table}"
    with plan:  # under partial names, renamed together at the end
        plan.write(table, lambda path: df.to_csv(path, index=stack is None))  # full precision, as every table
        if not p["no_plot"]:
            ppath = _figures(table, formats, p["plot_path"], inference=False)[0]
            if stack is None:
                fig = plot_comparison(df, cmap=p["cmap"], title="RSA: the layers' RDMs compared", width=p["width"])
                caption = figure_caption(fig)
            else:
                fig = plot_reference_comparison(df, title="RSA: each layer's RDM vs the reference", width=p["width"])
                caption = f"{figure_caption(fig)} Reference: {Path(p['reference']).name}."
            write_figure(plan, fig, [ppath], dpi=p["dpi"], caption=caption)
            msg += f", figure → {ppath}"
    click.echo(msg)


def _shown(df: Any) -> Any:
    """The columns of a table printed to the terminal: ``label`` (model, weights, layer) and ``weights`` first."""
    drop = [c for c in ("model", "layer", "n_valid_samples") if c in df]
    return df.drop(columns=drop)


def _compare_inference(
    srcs: Any, stack: Any, opts: Any, layer_map: Any, table: Path, formats: list[str], p: dict[str, Any], plan: Any
) -> None:
    """``compare`` with per-subject references: noise ceiling, bootstrap, tests; tables and the figure."""
    from ..analysis.compare import RDMOptions, run_rsa_inference
    from ..plotting import figure_caption, plot_model_comparison

    rdm = RDMOptions(p["rdm_method"], None, p["block_size"], p["device"])
    res = run_rsa_inference(srcs, stack, opts, rdm, layers=layer_map, reference_order=p["reference_order"])
    attrs = res.table.attrs
    with pd_display():
        click.echo(_shown(res.table).round(4).to_string(index=False))
        if res.noise_ceiling is not None:
            nc = res.noise_ceiling
            click.echo(f"noise ceiling ({len(attrs['subjects'])} subjects): lower {nc.lower:.4f}, upper {nc.upper:.4f}")
        if res.pairwise is not None:
            click.echo(res.pairwise.round(4).to_string(index=False))
    with plan:  # under partial names, renamed together at the end
        written = _write_tables(res, table, plan)
        msg = "tables → " + ", ".join(map(str, written))
        if not p["no_plot"]:
            paths = _figures(table, formats, p["plot_path"], inference=True)
            fig = plot_model_comparison(
                res, kind=p["figure"], depth=p["depth"], title="RSA: models vs the reference RDMs", width=p["width"]
            )
            caption = f"{figure_caption(fig)} Reference: {Path(p['reference']).name}."
            write_figure(plan, fig, paths, dpi=p["dpi"], caption=caption)
            msg += ", figure → " + ", ".join(map(str, paths))
    click.echo(msg)
