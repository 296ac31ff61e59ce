"""``visreps rsa``: the RDM of every layer of an output folder, as files and figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..options import RDM_FILE_FORMATS, RDM_METHODS
from ._base import (
    choice_option,
    compute_options,
    echo_replaced,
    folder_inputs,
    heatmap_options,
    overwrite_option,
    plan_outputs,
    plot_formats,
    split_list,
    write_figure,
)


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
@choice_option(
    "--method",
    "-m",
    choices=RDM_METHODS,
    default="correlation",
    help="Dissimilarity: correlation = 1 − Pearson r; cosine; euclidean = plain L2; sqeuclidean; gaussian = 1 − RBF.",
)
@click.option(
    "--sigma", type=float, default=None, help="Bandwidth of --method gaussian (default: median pairwise distance)."
)
@click.option(
    "--out", "-o", type=click.Path(file_okay=False), default=None, help="Folder for the results (default: FOLDER/rsa)."
)
@choice_option("--format", "fmt", choices=RDM_FILE_FORMATS, default="npy", help="File format of the RDMs.")
@click.option(
    "--plot-format",
    default="png",
    show_default=True,
    help="Comma-separated figure formats: png, pdf, svg, eps, tiff, jpg.",
)
@click.option("--no-plot", is_flag=True, help="Only write the RDM files.")
@click.option("--rank", is_flag=True, help="Plot ranks of the dissimilarities instead of their values.")
@click.option("--cluster", is_flag=True, help="Order the plotted conditions by hierarchical clustering.")
@heatmap_options
@compute_options
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
