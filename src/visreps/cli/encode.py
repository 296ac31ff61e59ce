"""The ``visreps encode`` command: cross-validated encoding models from output folders to responses.

Heavy modules (numpy, pandas, matplotlib, scikit-learn) are imported inside the command, so
``visreps --help`` stays fast.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import click

from ._base import (
    figure_options,
    label_option,
    labelled_sources,
    overwrite_option,
    plot_formats,
    refuse_to_replace,
    split_list,
)

PLOT_FORMATS = ("png", "pdf", "svg", "eps", "tiff", "jpg")  # = visreps.plotting.FIGURE_FORMATS (tested)


def _alphas(value: str | None) -> list[float] | None:
    """``--alphas 0.1,1,10``: positive numbers."""
    if value is None:
        return None
    out = []
    for part in split_list(value) or []:
        try:
            a = float(part)
        except ValueError:
            a = -1.0
        if not a > 0 or a == float("inf"):
            raise click.BadParameter(f"{part!r} is not a positive number", param_hint="--alphas")
        out.append(a)
    if not out:
        raise click.BadParameter("give at least one alpha, e.g. 0.1,1,10,100", param_hint="--alphas")
    return out


def read_groups(path: str, names: list[str] | None, n: int) -> list[str]:
    """``--groups FILE``: one group label per line in response-row order, or ``image,group`` lines matched by name."""
    from ..errors import VisrepsError

    lines = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    split = [[c.strip() for c in ln.replace("\t", ",").split(",")] for ln in lines]
    if all(len(c) == 2 for c in split) and split:
        if split[0][0].lower() in ("image", "path", "file", "filename", "stimulus") and len(split) == n + 1:
            split = split[1:]
        table = {c[0]: c[1] for c in split}
        by_name = {Path(k).name: v for k, v in table.items()}
        if names is None:
            raise VisrepsError(f"groups file {path!r} names images, but the responses' rows have no image names")
        missing = [m for m in names if m not in table and Path(m).name not in by_name]
        if missing:
            raise VisrepsError(f"groups file {path!r} gives no group for {len(missing)} image(s), e.g. {missing[:3]}")
        return [table[m] if m in table else by_name[Path(m).name] for m in names]
    if any(len(c) != 1 for c in split):
        raise VisrepsError(f"groups file {path!r}: give one group per line, or 'image,group' on every line")
    if len(lines) != n:
        raise VisrepsError(f"groups file {path!r} has {len(lines)} lines but the responses have {n} images")
    return lines


@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="FOLDER... RESPONSES")
@click.option("--layers", "-l", default=None, help="Comma-separated layers of every folder (default: all).")
@click.option(
    "--method",
    "-m",
    type=click.Choice(["ridge", "pls", "banded"]),
    default="ridge",
    show_default=True,
    help="ridge (alpha per target by nested CV), pls (scikit-learn PLSRegression, scale=False), "
    "banded (himalaya banded ridge over all layers).",
)
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True, help="Outer cross-validation folds.")
@click.option(
    "--groups",
    type=click.Path(dir_okay=False),
    default=None,
    help="File: a group (e.g. category) per image, one per line in response order or 'image,group' lines; "
    "folds keep groups whole.",
)
@click.option("--alphas", default=None, help="Comma-separated ridge penalties (default: 1e-2 … 1e8, 11 values).")
@click.option(
    "--inner",
    type=click.Choice(["loo", "kfold"]),
    default="loo",
    show_default=True,
    help="How alphas are chosen on the training images: efficient leave-one-out or inner K-fold.",
)
@click.option("--inner-folds", type=click.IntRange(min=2), default=5, show_default=True)
@click.option(
    "--order",
    type=click.Path(dir_okay=False),
    default=None,
    help="Text file: the image of every response row, one manifest path (or unique file name) per line.",
)
@click.option("--key", default=None, help="Variable/dataset of an npz/mat/hdf5 responses file.")
@click.option(
    "--axes",
    default=None,
    help="Axes of the responses array, e.g. repetitions,images,targets (default images,targets).",
)
@click.option(
    "--nan",
    type=click.Choice(["error", "drop"]),
    default="error",
    show_default=True,
    help="Responses with NaN: stop with an error, or drop those targets (listed).",
)
@click.option(
    "--ceiling",
    is_flag=True,
    help="Split-half noise ceiling from the repetitions axis; adds r/√ceiling and R²/ceiling.",
)
@click.option("--ceiling-splits", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--n-components", type=click.IntRange(min=1), default=25, show_default=True, help="PLS components.")
@click.option(
    "--n-iter", type=click.IntRange(min=1), default=20, show_default=True, help="Banded: random-search draws."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the folds (and ceiling, banded search).")
@click.option(
    "--solver",
    type=click.Choice(["auto", "kernel", "primal"]),
    default="auto",
    show_default=True,
    help="kernel: stream the Gram matrix; primal: read the layer; auto: kernel when features ≥ images.",
)
@click.option("--block-size", type=click.IntRange(min=1), default=None, help="Features per streamed block.")
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="Where each layer's Gram matrix is computed: auto (CUDA when available, else CPU), cpu, cuda or cuda:N.",
)
@click.option(
    "--out", "-o", type=click.Path(file_okay=False), default="encoding", show_default=True, help="Folder for results."
)
@click.option("--plot-format", default="png", show_default=True, help="Comma-separated: png, pdf, svg, eps, tiff, jpg.")
@click.option("--no-plot", is_flag=True)
@label_option
@figure_options
@overwrite_option
def encode(paths: tuple[str, ...], **kw: Any) -> None:
    """Predict brain/behavioural RESPONSES from every layer of FOLDER(s): cross-validated encoding models.

    FOLDER... are output folders of `visreps extract` (FOLDER::layer1,layer2 picks layers);
    RESPONSES is a file of images × targets (.npy .npz .mat .h5 .csv .tsv .txt). Writes to OUT:
    layers.csv (per layer: mean/median/SEM of r and R² over targets), targets.csv (per target),
    folds.csv (per fold), fold_of_image.csv, band_weights.csv (banded), encoding.<plot-format> and
    its caption encoding.txt. Tables carry `label` (model and weights; --label SOURCE=NAME) and `weights`.
    """
    from ..analysis.encoding import DEFAULT_ALPHAS
    from ..analysis.encoding import encode as run_encode
    from ..analysis.responses import load_responses
    from ..errors import VisrepsError

    if len(paths) < 2:
        raise VisrepsError("give at least one FOLDER and then the RESPONSES file: visreps encode FOLDER RESPONSES")
    *folders, responses_path = paths
    out = Path(kw["out"])
    kw["plot_format"] = plot_formats(kw["plot_format"])
    figure = () if kw["no_plot"] else (*(f"encoding.{f}" for f in kw["plot_format"]), "encoding.txt")
    refuse_to_replace([out / n for n in (*RESULT_FILES, *figure)], kw["overwrite"])
    srcs, layer_map = _sources(folders, kw["layers"])
    named = labelled_sources(srcs, kw["label"])
    resp = load_responses(responses_path, key=kw["key"], axes=kw["axes"], images=kw["order"])
    groups = None
    if kw["groups"]:
        names = resp.images if resp.images is not None else _manifest_paths(srcs[0])
        groups = read_groups(kw["groups"], names, resp.n_images)
    with warnings.catch_warnings(record=True) as caught:  # shown as "warning: ..." lines, not Python's format
        warnings.simplefilter("always")
        res = run_encode(
            named,
            resp,
            layers=layer_map,
            method=kw["method"],
            alphas=_alphas(kw["alphas"]) or DEFAULT_ALPHAS,
            folds=kw["folds"],
            groups=groups,
            inner=kw["inner"],
            inner_folds=kw["inner_folds"],
            seed=kw["seed"],
            n_components=kw["n_components"],
            n_iter=kw["n_iter"],
            ceiling=True if kw["ceiling"] else None,
            ceiling_splits=kw["ceiling_splits"],
            nan=kw["nan"],
            solver=kw["solver"],
            block_size=kw["block_size"],
            device=kw["device"],
        )
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)
    _write(res, Path(kw["out"]), kw)


#: the tables `visreps encode` writes into --out (besides the figure)
RESULT_FILES = ("layers.csv", "targets.csv", "folds.csv", "fold_of_image.csv", "band_weights.csv")


def _sources(folders: list[str], layers_opt: str | None) -> tuple[list[str], dict[str, list[str]] | None]:
    per: dict[str, list[str]] = {}
    common = split_list(layers_opt)
    srcs = []
    for a in folders:
        src, sep, layers = a.rpartition("::") if "::" in a else (a, "", "")
        srcs.append(src)
        chosen = split_list(layers) if sep else common
        if chosen is not None:
            per[src] = chosen
    return srcs, (per or None)


def _manifest_paths(folder: str) -> list[str] | None:
    from ..storage import read_manifest

    try:
        return list(read_manifest(Path(folder))["path"])
    except Exception:  # noqa: BLE001 - encode() names the folder's problem itself
        return None


def _write(res: Any, out: Path, kw: dict[str, Any]) -> None:
    import pandas as pd

    from ..plotting import plot_encoding

    out.mkdir(parents=True, exist_ok=True)
    full = "%.17g"
    res.layers.to_csv(out / "layers.csv", index=False, float_format=full)
    res.targets.to_csv(out / "targets.csv", index=False, float_format=full)
    res.folds.to_csv(out / "folds.csv", index=False, float_format=full)
    images = res.images if res.images is not None else list(range(len(res.fold_of)))
    pd.DataFrame({"image": images, "fold": res.fold_of}).to_csv(out / "fold_of_image.csv", index=False)
    written = ["layers.csv", "targets.csv", "folds.csv", "fold_of_image.csv"]
    if res.band_weights is not None:
        res.band_weights.to_csv(out / "band_weights.csv", index=False, float_format=full)
        written.append("band_weights.csv")
    if res.dropped:
        click.echo(f"dropped {len(res.dropped)} target(s) with NaN values: {', '.join(res.dropped[:10])}")
    if res.constant:
        click.echo(f"{len(res.constant)} constant target(s) have NaN scores: {', '.join(res.constant[:10])}")
    cols = [
        c
        for c in ("label", "weights", "n_targets", "r_mean", "r_sem", "r2_mean", "r_ceiled_mean", "ceiling_r")
        if c in res.layers
    ]
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_rows", 200):
        click.echo(res.layers[cols].round(4).to_string(index=False))
    if not kw["no_plot"]:
        from ..plotting import figure_caption, save_figure

        info = res.info
        fig = plot_encoding(res.layers, title=f"Encoding: {info['method']}, cross-validated", width=kw["width"])
        text = f"{figure_caption(fig)} {info['n_images']} images, {info['n_targets']} targets, "
        text += f"{info['n_folds']}-fold cross-validation."
        for f in kw["plot_format"]:
            save_figure(fig, out / f"encoding.{f}", dpi=kw["dpi"], caption=text)
            written.append(f"encoding.{f}")
        written.append("encoding.txt")
    click.echo(f"results → {out}: {', '.join(written)}")
