"""The ``visreps encode`` command: cross-validated encoding models from output folders to responses.

Heavy modules (numpy, pandas, matplotlib, scikit-learn) are imported inside the command, so
``visreps --help`` stays fast.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import click

from ..options import ENCODING_MODELS, INNER_CV, SOLVERS
from ._base import choice_option, figure_options, label_option, overwrite_option, responses_options, split_list


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
    """``--groups FILE``: one group label per line in response-row order, or ``image,group`` lines matched by name
    (read by :func:`visreps.analysis._files.read_groups`: UTF-8, else Latin-1)."""
    from ..analysis._files import read_groups as read

    return read(path, names, n)


#: ``--help`` of ``--method``
METHOD_HELP = (
    "ridge (alpha per target by nested CV), pls (scikit-learn PLSRegression, scale=False), "
    "banded (himalaya banded ridge over all layers)."
)


@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="FOLDER... RESPONSES")
@click.option("--layers", "-l", default=None, help="Comma-separated layers of every folder (default: all).")
@choice_option("--method", "-m", choices=ENCODING_MODELS, default="ridge", help=METHOD_HELP)
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True, help="Outer cross-validation folds.")
@click.option(
    "--groups",
    type=click.Path(dir_okay=False),
    default=None,
    help="File: a group (e.g. category) per image, one per line in response order or 'image,group' lines; "
    "folds keep groups whole.",
)
@click.option("--alphas", default=None, help="Comma-separated ridge penalties (default: 1e-2 … 1e8, 11 values).")
@choice_option(
    "--inner",
    choices=INNER_CV,
    default="loo",
    help="How alphas are chosen on the training images: efficient leave-one-out or inner K-fold.",
)
@click.option("--inner-folds", type=click.IntRange(min=2), default=5, show_default=True)
@responses_options
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
@choice_option(
    "--solver",
    choices=SOLVERS,
    default="auto",
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
@click.option(
    "--plot-format",
    default="png",
    show_default=True,
    help="Comma-separated figure formats: png, pdf, svg, eps, tiff, jpg.",
)
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
    from ..analysis.encoding import DEFAULT_ALPHAS, EncodingModel, run_encoding
    from ..analysis.responses import load_responses
    from ..errors import VisrepsError
    from ._base import folder_inputs, labelled_sources, plan_outputs, plot_formats

    if len(paths) < 2:
        raise VisrepsError("give at least one FOLDER and then the RESPONSES file: visreps encode FOLDER RESPONSES")
    *folders, responses_path = paths
    out = Path(kw["out"])
    alphas = _alphas(kw["alphas"]) or DEFAULT_ALPHAS
    model = EncodingModel(alphas=alphas, **{k: kw[k] for k in MODEL_OPTIONS})  # checked once, before any file
    kw["plot_format"] = plot_formats(kw["plot_format"])
    srcs, layer_map = _sources(folders, kw["layers"])
    named = labelled_sources(srcs, kw["label"])
    tables = [n for n in RESULT_FILES if n != "band_weights.csv" or kw["method"] == "banded"]
    figure = () if kw["no_plot"] else (*(f"encoding.{f}" for f in kw["plot_format"]), "encoding.txt")
    inputs = [
        (responses_path, "the responses file"),
        (kw["groups"], "the --groups file"),
        (kw["order"], "the --order file"),
    ]
    inputs += [f for src in srcs for f in folder_inputs(src)]
    plan = plan_outputs([out / n for n in (*tables, *figure)], kw["overwrite"], inputs=inputs)
    resp = load_responses(responses_path, key=kw["key"], axes=kw["axes"], images=kw["order"])
    groups = None
    if kw["groups"]:
        names: list[Any] | None = resp.images if resp.images is not None else _manifest_paths(srcs[0])
        manifest = _manifest_paths(srcs[0])
        if names is not None and manifest is not None and all(isinstance(x, int) for x in names):
            names = [manifest[int(i)] if 0 <= int(i) < len(manifest) else str(i) for i in names]  # 0-based rows
        groups = read_groups(kw["groups"], names, resp.n_images)
    with warnings.catch_warnings(record=True) as caught:  # shown as "warning: ..." lines, not Python's format
        warnings.simplefilter("always")
        res = run_encoding(named, resp, model, layers=layer_map, groups=groups, ceiling=True if kw["ceiling"] else None)
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)
    _summary(res)
    _write(res, out, plan, kw)


#: the options of `visreps encode` that make its :class:`~visreps.analysis.encoding.EncodingModel` (with --alphas)
MODEL_OPTIONS = ("method", "folds", "inner", "inner_folds", "seed", "n_components", "n_iter", "solver", "nan")
MODEL_OPTIONS += ("ceiling_splits", "block_size", "device")

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


def _summary(res: Any) -> None:
    """The layers' scores on the terminal, with what r_mean and r_pooled_mean are."""
    import pandas as pd

    if res.dropped:
        click.echo(f"dropped {len(res.dropped)} target(s) with NaN values: {', '.join(res.dropped[:10])}")
    if res.constant:
        click.echo(f"{len(res.constant)} constant target(s) have NaN scores: {', '.join(res.constant[:10])}")
    cols = ("label", "weights", "n_targets", "r_mean", "r_sem", "r_pooled_mean", "r2_mean", "r_ceiled_mean")
    cols += ("ceiling_r",)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_rows", 200):
        click.echo(res.layers[[c for c in cols if c in res.layers]].round(4).to_string(index=False))
    click.echo(R_NOTE)


#: printed under the summary: the two mean correlations it shows
R_NOTE = (
    "r_mean: each target's r on each held-out fold, averaged over folds, then over targets; r_pooled_mean: each "
    "target's r over all out-of-fold predictions at once, then averaged over targets (steadier with few images "
    "per fold; it differs from r_mean when the folds' predictions differ in mean or scale)"
)


def _write(res: Any, out: Path, plan: Any, kw: dict[str, Any]) -> None:
    """Every planned file under a partial name, then all renamed together (see visreps.outputs)."""
    from ..plotting import figure_caption, plot_encoding
    from ._base import echo_replaced, write_figure

    writers = res.table_writers()
    with plan:
        for name, write in writers.items():
            plan.write(out / name, write)
        if not kw["no_plot"]:
            info = res.info
            fig = plot_encoding(res.layers, title=f"Encoding: {info['method']}, cross-validated", width=kw["width"])
            text = f"{figure_caption(fig)} {info['n_images']} images, {info['n_targets']} targets, "
            text += f"{info['n_folds']}-fold cross-validation."
            write_figure(plan, fig, [out / f"encoding.{f}" for f in kw["plot_format"]], dpi=kw["dpi"], caption=text)
    echo_replaced(plan)
    click.echo(f"results → {out}: {', '.join(p.name for p in plan.files)}")
