"""``visreps cka``: CKA between the layers of one or two output folders."""

from __future__ import annotations

import click

from ..options import CKA_KERNELS
from ._base import (
    check_figure_path,
    choice_option,
    compute_options,
    echo_replaced,
    folder_inputs,
    heatmap_options,
    overwrite_option,
    parse_source,
    pd_display,
    plan_outputs,
    split_list,
    write_figure,
)


@click.command()
@click.argument("a")
@click.argument("b", required=False)
@click.option("--layers-a", default=None, help="Comma-separated layers of A (default: all). Also A::layer1,layer2.")
@click.option("--layers-b", default=None, help="Comma-separated layers of B (default: all).")
@choice_option("--kernel", choices=CKA_KERNELS, default="linear")
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
@heatmap_options
@compute_options
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
    src_a, la = parse_source(a)
    la = la or split_list(layers_a)
    if b is None:
        src_b, lb = src_a, (split_list(layers_b) or la)
    else:
        src_b, lb = parse_source(b)
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
        with pd_display():
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
