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

from ._base import split_list

F = TypeVar("F", bound=Callable[..., Any])

RDM_METHODS = ("correlation", "cosine", "euclidean", "sqeuclidean", "gaussian")
COMPARE_METHODS = ("pearson", "spearman", "kendall", "tau_a")
RDM_FILE_FORMATS = ("npy", "csv", "txt", "mat")
PLOT_FORMATS = ("png", "pdf", "svg", "jpg")


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
    f = click.option(
        "--dpi", type=click.IntRange(min=10), default=200, show_default=True, help="Resolution of PNG/JPG figures."
    )(f)
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
@click.option("--plot-format", type=click.Choice(PLOT_FORMATS), default="png", show_default=True)
@click.option("--no-plot", is_flag=True, help="Only write the RDM files.")
@click.option("--rank", is_flag=True, help="Plot ranks of the dissimilarities instead of their values.")
@click.option("--cluster", is_flag=True, help="Order the plotted conditions by hierarchical clustering.")
@_plot_options
@_block_size_option
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
    block_size: int | None,
    device: str,
) -> None:
    """RDM of each layer in FOLDER (an output folder of `visreps extract`): a file and a plot per layer.

    Writes OUT/rdm_<layer>_<method>.<format> (square n × n, rows in manifest.csv order) and
    OUT/rdm_<layer>_<method>.<plot-format>.
    """
    from ..analysis.rsa import compute_rdm
    from ..plotting import plot_rdm
    from ..storage import layer_filename, load_features

    if sigma is not None and method != "gaussian":
        raise click.BadParameter("--sigma is the bandwidth of --method gaussian", param_hint="--sigma")
    res = load_features(folder, split_list(layers), mmap=True)
    outdir = Path(out) if out else Path(folder) / "rsa"
    outdir.mkdir(parents=True, exist_ok=True)
    labels = list(res.manifest["path"]) if len(res.manifest) <= 60 else None
    for layer in res.layers:
        rdm = compute_rdm(res[layer], method, sigma=sigma, block_size=block_size, device=device)
        stem = f"rdm_{layer_filename(layer, 'npy')[:-4]}_{method}"
        path = outdir / f"{stem}.{fmt}"
        _save_rdm(rdm, path, fmt)
        msg = f"{layer}: {rdm.shape[0]}×{rdm.shape[1]} RDM → {path}"
        if not no_plot:
            ppath = outdir / f"{stem}.{plot_format}"
            plot_rdm(
                rdm,
                ppath,
                rank=rank,
                order="cluster" if cluster else None,
                labels=labels,
                cmap=cmap,
                dpi=dpi,
                title=f"{res.model} {layer} ({method})",
            )
            msg += f", {ppath}"
        click.echo(msg)


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
    type=click.Path(dir_okay=False),
    default=None,
    help="Reference RDM (brain/behaviour) file: .npy, .mat, .csv, .txt; compares each layer with it.",
)
@click.option("--reference-key", default=None, help="Variable of a .mat/.npz reference holding the RDM.")
@click.option(
    "--reference-order",
    type=click.Path(dir_okay=False),
    default=None,
    help="Text file: the image paths of the reference's rows, one per line (default: manifest order).",
)
@click.option("--rdm-method", type=click.Choice(RDM_METHODS), default="correlation", show_default=True)
@click.option(
    "--method",
    "-m",
    type=click.Choice(COMPARE_METHODS),
    default="pearson",
    show_default=True,
    help="How RDMs are correlated (upper triangles): pearson, spearman, kendall (tau-b), tau_a.",
)
@click.option(
    "--bootstrap",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Bootstrap resamples of the images for a confidence interval (with --reference).",
)
@click.option("--ci", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
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
    help="Figure file (default: the CSV name with .png).",
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
@_plot_options
@_block_size_option
def compare(
    sources: tuple[str, ...],
    layers: str | None,
    reference: str | None,
    reference_key: str | None,
    reference_order: str | None,
    rdm_method: str,
    method: str,
    bootstrap: int,
    ci: float,
    seed: int,
    out: str,
    plot_path: str | None,
    no_plot: bool,
    images: str | None,
    work_dir: str | None,
    random_init: bool,
    cmap: str,
    dpi: int,
    block_size: int | None,
    device: str,
) -> None:
    """Correlate the RDMs of several output folders / layers: a table (CSV) and a heatmap.

    SOURCES are output folders of `visreps extract` (every layer, or --layers), optionally
    FOLDER::layer1,layer2; or model ids with --images. With --reference, every layer's RDM is
    correlated with that RDM instead (table of r per layer, bar chart).
    """
    from ..errors import VisrepsError
    from ..plotting import plot_comparison, plot_reference_comparison
    from ..workflows import compare_features, compare_to_reference

    srcs, layer_map = _sources_and_layers(sources, layers)
    if bootstrap and reference is None:
        raise click.UsageError("--bootstrap needs --reference (intervals are for fits to a reference RDM)")
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
    table = Path(out)
    table.parent.mkdir(parents=True, exist_ok=True)
    if reference is None:
        df = compare_features(srcs, **common)
        if df.shape[0] < 2:
            raise VisrepsError("only one layer to compare; give several folders or layers, or a --reference RDM")
        df.to_csv(table, float_format="%.6g")
        with _pd_display():
            click.echo(df.round(3).to_string())
    else:
        df = compare_to_reference(
            srcs,
            reference,
            reference_key=reference_key,
            reference_order=reference_order,
            n_bootstrap=bootstrap,
            ci=ci,
            seed=seed,
            **common,
        )
        df.to_csv(table, index=False, float_format="%.6g")
        with _pd_display():
            click.echo(df.drop(columns=["label"]).round(4).to_string(index=False))
    msg = f"table → {table}"
    if not no_plot:
        ppath = Path(plot_path) if plot_path else table.with_suffix(".png")
        title = f"{df.attrs.get('method')} correlation of {rdm_method} RDMs ({df.attrs.get('n_conditions')} images)"
        if reference is None:
            plot_comparison(df, ppath, cmap=cmap, dpi=dpi, title=title)
        else:
            plot_reference_comparison(df, ppath, dpi=dpi, title=title + f" with {Path(reference).name}")
        msg += f", figure → {ppath}"
    click.echo(msg)


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
@click.option("--kernel", type=click.Choice(["linear", "rbf"]), default="linear", show_default=True)
@click.option("--unbiased", is_flag=True, help="Unbiased HSIC estimator (debiased CKA).")
@click.option(
    "--sigma", type=float, default=None, help="RBF bandwidth (default: median pairwise distance of each layer)."
)
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None, help="Write the table as CSV.")
@click.option(
    "--plot", "plot_path", type=click.Path(dir_okay=False), default=None, help="Write a heatmap (.png/.pdf/.svg/.jpg)."
)
@_plot_options
@_block_size_option
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
    block_size: int | None,
    device: str,
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
    src_a, la = _parse_source(a)
    la = la or split_list(layers_a)
    if b is None:
        src_b, lb = src_a, (split_list(layers_b) or la)
    else:
        src_b, lb = _parse_source(b)
        lb = lb or split_list(layers_b)
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
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(out, float_format="%.6g")
        click.echo(f"table → {out}")
    if plot_path:
        plot_comparison(
            df,
            plot_path,
            cmap=cmap,
            dpi=dpi,
            colorbar_label=df.attrs["method"],
            vmin=None,
            title=f"{df.attrs['method']}: {name_a} (rows) vs {name_b} (columns)",
        )
        click.echo(f"figure → {plot_path}")
