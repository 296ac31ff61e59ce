"""The analysis commands of the ``visreps`` CLI: ``rsa``, ``compare``, ``cka``.

Heavy modules (numpy, pandas, matplotlib, scipy) are imported inside the commands, so
``visreps --help`` stays fast. ``compare`` goes through :mod:`visreps.workflows` (it extracts
model ids given with ``--images``); ``rsa`` and ``cka`` read output folders only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict, TypeVar

import click

from ..options import (
    CKA_KERNELS,
    COMPARISONS,
    CORRECTIONS,
    DEPTHS,
    PLOT_KINDS,
    RDM_FILE_FORMATS,
    RDM_METHODS,
    TEST_TYPES,
)
from ._base import (
    check_figure_path,
    echo_replaced,
    figure_options,
    folder_inputs,
    label_option,
    labelled_sources,
    overwrite_option,
    plan_outputs,
    plot_formats,
    split_list,
    write_figure,
)

F = TypeVar("F", bound=Callable[..., Any])


def _parse_source(arg: str) -> tuple[str, list[str] | None]:
    """``FOLDER`` or ``FOLDER::layer1,layer2``."""
    if "::" in arg:
        src, _, layers = arg.rpartition("::")
        return src, split_list(layers)
    return arg, None


def _sources_and_layers(args: tuple[str, ...], layers_opt: str | None) -> tuple[list[str], dict[str, list[str]] | None]:
    sources: list[str] = []
    per: dict[str, list[str]] = {}
    common = split_list(layers_opt)
    for a in args:
        src, layers = _parse_source(a)
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


class _CompareOptions(TypedDict):
    """The arguments ``compare`` passes both to ``compare_features`` and to ``compare_to_reference``."""

    layers: dict[str, list[str]] | None
    images: str | None
    rdm_method: str
    method: str
    block_size: int | None
    device: str
    work_dir: str | None
    extract_options: dict[str, bool] | None


def _block_size_option(f: F) -> F:
    f = click.option(
        "--device", default="auto", show_default=True, help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N."
    )(f)
    f = click.option(
        "--block-size",
        type=click.IntRange(min=1),
        default=None,
        help="Features read per block (memory ≈ 2 × images × block × 8 bytes). Default: ≈128 MB blocks.",
    )(f)
    return f


def _plot_options(f: F) -> F:
    f = figure_options(f)
    f = click.option("--cmap", default="viridis", show_default=True, help="Matplotlib colormap.")(f)
    return f


def _save_rdm(rdm: Any, path: Path, fmt: str) -> None:
    import numpy as np

    if fmt == "npy":
        np.save(path, rdm)
    elif fmt == "csv":
        np.savetxt(path, rdm, delimiter=",", fmt="%.17g")
    elif fmt == "txt":
        np.savetxt(path, rdm, fmt="%.17g")
    else:
        from scipy.io import savemat

        savemat(path, {"rdm": rdm})


@click.command()
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--layers", "-l", default=None, help="Comma-separated layers (default: every layer in FOLDER).")
@click.option(
    "--method",
    "-m",
    type=click.Choice(RDM_METHODS),
    default="correlation",
    show_default=True,
    help="Dissimilarity: correlation = 1 − Pearson r; cosine; euclidean = plain L2; sqeuclidean; gaussian = 1 − RBF.",
)
@click.option(
    "--sigma", type=float, default=None, help="Bandwidth of --method gaussian (default: median pairwise distance)."
)
@click.option(
    "--out", "-o", type=click.Path(file_okay=False), default=None, help="Folder for the results (default: FOLDER/rsa)."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(RDM_FILE_FORMATS),
    default="npy",
    show_default=True,
    help="File format of the RDMs.",
)
@click.option(
    "--plot-format",
    default="png",
    show_default=True,
    help="Comma-separated figure formats: png, pdf, svg, eps, tiff, jpg.",
)
@click.option("--no-plot", is_flag=True, help="Only write the RDM files.")
@click.option("--rank", is_flag=True, help="Plot ranks of the dissimilarities instead of their values.")
@click.option("--cluster", is_flag=True, help="Order the plotted conditions by hierarchical clustering.")
@_plot_options
@_block_size_option
@overwrite_option
def rsa(
    folder: str,
    layers: str | None,
    method: str,
    sigma: float | None,
    out: str | None,
    fmt: str,
    plot_format: str,
    no_plot: bool,
    rank: bool,
    cluster: bool,
    cmap: str,
    dpi: int,
    width: str | None,
    block_size: int | None,
    device: str,
    overwrite: bool,
) -> None:
    """RDM of each layer in FOLDER (an output folder of `visreps extract`): a file and a plot per layer.

    Writes OUT/rdm_<layer>_<method>.<format> (square n × n, rows in manifest.csv order) and
    OUT/rdm_<layer>_<method>.<plot-format> (one per format).
    """
    from ..analysis.rsa import compute_rdm
    from ..labels import label_from_metadata
    from ..plotting import plot_rdm
    from ..storage import layer_filename, load_features

    if sigma is not None and method != "gaussian":
        raise click.BadParameter("--sigma is the bandwidth of --method gaussian", param_hint="--sigma")
    formats = plot_formats(plot_format)
    res = load_features(folder, split_list(layers), mmap=True)
    outdir = Path(out) if out else Path(folder) / "rsa"
    stems = {layer: outdir / f"rdm_{layer_filename(layer, 'npy')[:-4]}_{method}" for layer in res.layers}
    exts = (fmt,) if no_plot else (fmt, *formats)
    planned = [p.with_name(f"{p.name}.{ext}") for p in stems.values() for ext in exts]
    plan = plan_outputs(planned, overwrite, inputs=folder_inputs(folder))
    labels = list(res.manifest["path"]) if len(res.manifest) <= 60 else None
    done = []
    with plan:  # each file under a partial name; all renamed when every layer is done
        for layer in res.layers:
            where = f"layer {layer!r} of {str(folder)!r}"  # names the layer in errors (e.g. NaN)
            rdm = compute_rdm(res[layer], method, sigma=sigma, block_size=block_size, device=device, name=where)
            stem = stems[layer].name
            path = outdir / f"{stem}.{fmt}"
            plan.write(path, lambda p: _save_rdm(rdm, p, fmt))  # noqa: B023 - called at once
            msg = f"{layer}: {rdm.shape[0]}×{rdm.shape[1]} RDM → {path}"
            if not no_plot:
                fig = plot_rdm(
                    rdm,
                    rank=rank,
                    order="cluster" if cluster else None,
                    labels=labels,
                    cmap=cmap,
                    width=width,
                    title=f"RDM of {label_from_metadata(res.metadata)} {layer} ({method})",
                )
                write_figure(plan, fig, [outdir / f"{stem}.{f}" for f in formats], dpi=dpi)
                msg += "".join(f", {outdir / f'{stem}.{f}'}" for f in formats)
            done.append(msg)
    for msg in done:  # said once the files are under their final names
        click.echo(msg)
    echo_replaced(plan)


@click.command()
@click.argument("sources", nargs=-1, required=True)
@click.option(
    "--layers",
    "-l",
    default=None,
    help="Comma-separated layers to use from every source (default: all). Per source: FOLDER::layer1,layer2.",
)
@click.option(
    "--reference",
    "-r",
    type=click.Path(),
    multiple=True,
    callback=_once,
    help="Reference RDM (brain/behaviour): a file (.npy, .mat, .csv, .txt, .h5; a (subjects, n, n) stack gives "
    "one RDM per subject) or a folder of per-subject files; compares each layer with it.",
)
@click.option(
    "--reference-key",
    multiple=True,
    callback=_once,
    help="Variable of a .mat/.npz/.h5 reference holding the RDM(s); a struct's field (RDM or RDMs.RDM).",
)
@click.option(
    "--reference-order",
    type=click.Path(dir_okay=False),
    multiple=True,
    callback=_once,
    help="Text file: the image paths of the reference's rows, one per line (default: the names the reference "
    "file holds, else manifest order).",
)
@click.option("--rdm-method", type=click.Choice(RDM_METHODS), default="correlation", show_default=True)
@click.option(
    "--method",
    "-m",
    type=click.Choice(COMPARISONS),
    default="pearson",
    show_default=True,
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
@click.option(
    "--test-type",
    type=click.Choice(TEST_TYPES),
    default="t",
    show_default=True,
    help="t: t-tests with the bootstrap variance (rsatoolbox's default); bootstrap: from the bootstrap samples.",
)
@click.option(
    "--correction",
    type=click.Choice(CORRECTIONS),
    default="fdr",
    show_default=True,
    help="Multiple-comparison correction within each family of tests (fdr = Benjamini–Hochberg).",
)
@click.option("--n-permutations", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True)
@click.option(
    "--figure",
    type=click.Choice(PLOT_KINDS),
    default="bars",
    show_default=True,
    help="With --noise-ceiling/--bootstrap FACTORS/--test: bars per layer, or a layer-depth curve per model.",
)
@click.option(
    "--depth",
    type=click.Choice(DEPTHS),
    default="layers",
    show_default=True,
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
@_plot_options
@_block_size_option
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
    n_legacy, factors = _parse_bootstrap(bootstrap)
    if (bootstrap or noise_ceiling or test) and reference is None:
        what = "--bootstrap" if bootstrap else "--noise-ceiling" if noise_ceiling else "--test"
        raise click.UsageError(f"{what} needs --reference: a reference RDM to compare the layers with")
    extract_options = {"pretrained": not random_init} if images else None
    common = _CompareOptions(
        layers=layer_map,
        images=images,
        rdm_method=rdm_method,
        method=method,
        block_size=block_size,
        device=device,
        work_dir=work_dir,
        extract_options=extract_options,
    )
    table, formats, params = Path(out), _plot_formats(plot_format), click.get_current_context().params
    if plot_path and not no_plot:
        check_figure_path(plot_path, "--plot")
    inference = reference is not None and bool(
        factors or noise_ceiling or test or _several_subjects(reference, reference_key)
    )
    planned = _compare_outputs(table, formats, params, inference, n_legacy, factors)
    inputs: list[Any] = [(reference_order, "the --reference-order file")]
    inputs += [f for src in srcs for f in folder_inputs(src)]
    trees = [images, work_dir]
    if reference is not None:
        if Path(reference).is_dir():
            trees.append(reference)
        else:
            inputs.append((reference, "the --reference file"))
    plan = plan_outputs(planned, overwrite, "--out/--plot", inputs=inputs, trees=trees)
    if inference:
        _compare_inference(named, common, table, formats, n_legacy, factors, params, plan)
    else:
        _compare_plain(named, common, table, formats, n_legacy, params, plan)
    echo_replaced(plan)


def _compare_plain(
    srcs: Any,
    common: _CompareOptions,
    table: Path,
    formats: list[str],
    n_legacy: int,
    p: dict[str, Any],
    plan: Any,
) -> None:
    """``compare`` without inference: layers with each other (heatmap) or with one reference RDM (bars)."""
    from ..errors import VisrepsError
    from ..plotting import figure_caption, plot_comparison, plot_reference_comparison
    from ..workflows import compare_features, compare_to_reference

    reference = p["reference"]
    if reference is None:
        df = compare_features(srcs, **common)
        if df.shape[0] < 2:
            raise VisrepsError("only one layer to compare; give several folders or layers, or a --reference RDM")
        with _pd_display():
            click.echo(df.round(3).to_string())
    else:
        df = compare_to_reference(
            srcs,
            reference,
            reference_key=p["reference_key"],
            reference_order=p["reference_order"],
            n_bootstrap=n_legacy,
            ci=p["ci"],
            seed=p["seed"],
            **common,
        )
        with _pd_display():
            click.echo(_shown(df).round(4).to_string(index=False))
    msg = f"table → {table}"
    with plan:  # under partial names, renamed together at the end
        plan.write(table, lambda path: df.to_csv(path, index=reference is None))  # full precision, as every table
        if not p["no_plot"]:
            ppath = _plot_paths(table, formats, p["plot_path"], inference=False)[0]
            if reference is None:
                fig = plot_comparison(df, cmap=p["cmap"], title="RSA: the layers' RDMs compared", width=p["width"])
                caption = figure_caption(fig)
            else:
                fig = plot_reference_comparison(df, title="RSA: each layer's RDM vs the reference", width=p["width"])
                caption = f"{figure_caption(fig)} Reference: {Path(reference).name}."
            write_figure(plan, fig, [ppath], dpi=p["dpi"], caption=caption)
            msg += f", figure → {ppath}"
    click.echo(msg)


class _InferenceOptions(TypedDict):
    """The inference arguments of ``compare`` passed on to ``rsa_inference``."""

    bootstrap: tuple[str, ...]
    n_bootstrap: int
    noise_ceiling: bool
    test: str | None
    test_type: str
    correction: str
    n_permutations: int
    alpha: float
    ci: float
    seed: int


def _plot_paths(table: Path, formats: list[str], plot_path: str | None, *, inference: bool) -> list[Path]:
    """The figures of ``compare``: --plot, else the table's name with the (first, or with inference every) format."""
    if plot_path:
        return [Path(plot_path)]
    return [table.with_suffix("." + f) for f in (formats if inference else formats[:1])]


def _compare_outputs(
    table: Path, formats: list[str], p: dict[str, Any], inference: bool, n_legacy: int, factors: tuple[str, ...]
) -> list[Path]:
    """Every file ``compare`` may write with these options (checked for earlier results before any work)."""
    paths = [table]
    if inference:
        if p["test"] and "pairwise" in p["test"]:
            paths.append(table.with_name(table.stem + "_pairwise.csv"))
        if factors or n_legacy:
            paths.append(table.with_name(table.stem + "_bootstrap.csv"))
    if not p["no_plot"]:
        figures = _plot_paths(table, formats, p["plot_path"], inference=inference)
        from ..plotting import caption_path

        paths += figures + list(dict.fromkeys(caption_path(f) for f in figures))
    return paths


def _parse_bootstrap(value: str | None) -> tuple[int, tuple[str, ...]]:
    """``--bootstrap``: a number of image resamples (the percentile interval of before) or factors to resample."""
    if value is None or value.strip() == "":
        return 0, ()
    if value.strip().isdigit():
        if int(value) < 2:
            raise click.BadParameter(
                f"{value.strip()} resample gives no interval; give at least 2 (1000 is usual)", param_hint="--bootstrap"
            )
        return int(value), ()
    from ..analysis.inference import check_bootstrap

    return 0, check_bootstrap(value)


def _plot_formats(value: str) -> list[str]:
    return plot_formats(value)


def _shown(df: Any) -> Any:
    """The columns of a table printed to the terminal: ``label`` (model, weights, layer) and ``weights`` first."""
    drop = [c for c in ("model", "layer", "n_valid_samples") if c in df]
    return df.drop(columns=drop)


def _several_subjects(reference: str, key: str | None) -> bool:
    """Whether the reference holds RDMs of several subjects (a folder or a stack)."""
    import warnings

    from ..analysis.compare import load_reference_rdms

    if Path(reference).is_dir():
        return True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stack, names = load_reference_rdms(reference, key=key)
    averaged = [nm for nm in names if nm.endswith(" sessions)")]
    if averaged:  # a struct array RDMs(subject, session): say what was done with the sessions
        click.echo(f"reference {Path(reference).name}: {len(names)} subjects, {averaged[0].split('(', 1)[1][:-1]} each")
    return stack.shape[0] > 1


def _compare_inference(
    srcs: Any,
    common: _CompareOptions,
    table: Path,
    formats: list[str],
    n_legacy: int,
    factors: tuple[str, ...],
    params: dict[str, Any],
    plan: Any,
) -> None:
    """``compare`` with per-subject references: noise ceiling, bootstrap, tests; tables and the figure."""
    from ..plotting import figure_caption, plot_model_comparison
    from ..workflows import rsa_inference

    p = params
    reference = p["reference"]
    inference = _InferenceOptions(
        bootstrap=factors or (("images",) if n_legacy else ()),
        n_bootstrap=n_legacy or p["n_bootstrap"],
        noise_ceiling=p["noise_ceiling"],
        test=p["test"],
        test_type=p["test_type"],
        correction=p["correction"],
        n_permutations=p["n_permutations"],
        alpha=p["alpha"],
        ci=p["ci"],
        seed=p["seed"],
    )
    res = rsa_inference(
        srcs, reference, reference_key=p["reference_key"], reference_order=p["reference_order"], **common, **inference
    )
    attrs = res.table.attrs
    with _pd_display():
        click.echo(_shown(res.table).round(4).to_string(index=False))
        if res.noise_ceiling is not None:
            nc = res.noise_ceiling
            click.echo(f"noise ceiling ({len(attrs['subjects'])} subjects): lower {nc.lower:.4f}, upper {nc.upper:.4f}")
        if res.pairwise is not None:
            click.echo(res.pairwise.round(4).to_string(index=False))
    with plan:  # under partial names, renamed together at the end
        written = _inference_tables(res, table, plan)
        msg = "tables → " + ", ".join(map(str, written))
        if not p["no_plot"]:
            paths = _plot_paths(table, formats, p["plot_path"], inference=True)
            fig = plot_model_comparison(
                res, kind=p["figure"], depth=p["depth"], title="RSA: models vs the reference RDMs", width=p["width"]
            )
            caption = f"{figure_caption(fig)} Reference: {Path(reference).name}."
            write_figure(plan, fig, paths, dpi=p["dpi"], caption=caption)
            msg += ", figure → " + ", ".join(map(str, paths))
    click.echo(msg)


def _inference_tables(res: Any, table: Path, plan: Any) -> list[Path]:
    """The tables of ``compare``'s inference: OUT, OUT_pairwise.csv, OUT_bootstrap.csv (those the run has)."""
    plan.write(table, lambda out: res.table.to_csv(out, index=False))
    written = [table]
    if res.pairwise is not None:
        written.append(table.with_name(table.stem + "_pairwise.csv"))
        plan.write(written[-1], lambda out: res.pairwise.to_csv(out, index=False))
    if res.bootstrap is not None:
        written.append(table.with_name(table.stem + "_bootstrap.csv"))
        plan.write(written[-1], lambda out: res.samples().to_csv(out))
    return written


class _pd_display:
    """pandas display options for tables printed to the terminal."""

    def __enter__(self) -> None:
        import pandas as pd

        self.ctx = pd.option_context("display.width", 200, "display.max_columns", 50, "display.max_rows", 200)
        self.ctx.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self.ctx.__exit__(*exc)


@click.command()
@click.argument("a")
@click.argument("b", required=False)
@click.option("--layers-a", default=None, help="Comma-separated layers of A (default: all). Also A::layer1,layer2.")
@click.option("--layers-b", default=None, help="Comma-separated layers of B (default: all).")
@click.option("--kernel", type=click.Choice(CKA_KERNELS), default="linear", show_default=True)
@click.option("--unbiased", is_flag=True, help="Unbiased HSIC estimator (debiased CKA).")
@click.option(
    "--sigma", type=float, default=None, help="RBF bandwidth (default: median pairwise distance of each layer)."
)
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None, help="Write the table as CSV.")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write a heatmap (.png .pdf .svg .eps .tiff .jpg).",
)
@_plot_options
@_block_size_option
@overwrite_option
def cka(
    a: str,
    b: str | None,
    layers_a: str | None,
    layers_b: str | None,
    kernel: str,
    unbiased: bool,
    sigma: float | None,
    out: str | None,
    plot_path: str | None,
    cmap: str,
    dpi: int,
    width: str | None,
    block_size: int | None,
    device: str,
    overwrite: bool,
) -> None:
    """CKA between the layers of output folders A and B (or among A's layers if B is omitted).

    Prints a table: rows are A's layers, columns B's layers. Images are matched by content when
    both manifests record content hashes (the same images under other names are aligned; the
    same names with other content are an error), else by path.
    """
    from ..analysis.cka import cka_table
    from ..plotting import plot_comparison

    if sigma is not None and kernel != "rbf":
        raise click.BadParameter("--sigma is the bandwidth of --kernel rbf", param_hint="--sigma")
    if plot_path:
        check_figure_path(plot_path, "--plot")
    src_a, la = _parse_source(a)
    la = la or split_list(layers_a)
    if b is None:
        src_b, lb = src_a, (split_list(layers_b) or la)
    else:
        src_b, lb = _parse_source(b)
        lb = lb or split_list(layers_b)
    inputs = [*folder_inputs(src_a), *folder_inputs(src_b)]
    plan = plan_outputs([p for p in (out, plot_path) if p], overwrite, "--out/--plot", inputs=inputs)
    df = cka_table(
        src_a,
        src_b,
        layers_a=la,
        layers_b=lb,
        kernel=kernel,
        unbiased=unbiased,
        sigma=sigma,
        block_size=block_size,
        device=device,
    )
    name_a, name_b = df.attrs["a"], df.attrs["b"]
    if df.size == 1:
        click.echo(f"{df.attrs['method']} {name_a}/{df.index[0]} vs {name_b}/{df.columns[0]}: {df.iloc[0, 0]:.6f}")
    else:
        with _pd_display():
            click.echo(f"{df.attrs['method']}: rows {name_a}, columns {name_b}")
            click.echo(df.round(4).to_string())
    if not plan.files:
        return
    title = f"{df.attrs['method']}: {name_a} (rows) vs {name_b} (columns)"
    with plan:  # under partial names, renamed together at the end
        if out:
            plan.write(out, lambda p: df.to_csv(p))  # full precision, as every table
        if plot_path:
            fig = plot_comparison(df, cmap=cmap, colorbar_label=df.attrs["method"], width=width, vmin=None, title=title)
            write_figure(plan, fig, [plot_path], dpi=dpi)
    echo_replaced(plan)
    if out:
        click.echo(f"table → {out}")
    if plot_path:
        click.echo(f"figure → {plot_path}")
