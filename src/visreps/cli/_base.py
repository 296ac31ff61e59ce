"""What the command modules of :mod:`visreps.cli` share: option decorators and value parsers.

Every command module imports this module only (never another command module, nor
:mod:`visreps.cli` itself); heavy libraries are imported inside the commands, so ``visreps --help``
starts fast.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..options import FIGURE_WIDTHS

F = TypeVar("F", bound=Callable[..., Any])


def batch_size(value: str) -> int | str:
    """``--batch-size``: a positive integer or ``auto``."""
    if str(value).lower() == "auto":
        return "auto"
    try:
        b = int(value)
    except ValueError:
        b = 0
    if b < 1:
        raise click.BadParameter(f"{value!r} is not a positive integer or 'auto'", param_hint="--batch-size")
    return b


def split_list(value: str | None) -> list[str] | None:
    """A comma-separated list (``None`` when it names nothing)."""
    if value is None:
        return None
    out = [s.strip() for s in value.split(",") if s.strip()]
    return out or None


def split_layers(value: str) -> list[str]:
    """``--layers a,b``: the layer names (an empty list when there are none)."""
    return split_list(value) or []


def command_line() -> str:
    """The command as typed (recorded in ``metadata.json``)."""
    return " ".join(["visreps", *sys.argv[1:]])


def weights_options(f: F) -> F:
    """``--random/--weights/--seed/--offline``, and ``--allow-pickle`` for commands taking ``allow_pickle``."""
    f = click.option("--offline", is_flag=True, help="Never touch the network; a missing weights file is an error.")(f)
    f = click.option("--seed", type=int, default=0, show_default=True, help="Seed of a random initialisation.")(f)
    if "allow_pickle" in inspect.signature(f).parameters:
        f = click.option(
            "--allow-pickle",
            is_flag=True,
            help="Allow unpickling a whole model file, which can run arbitrary code: only for files you trust.",
        )(f)
    f = click.option(
        "--weights",
        "weights",
        default=None,
        metavar="FILE|TAG",
        help="Local weights file (.pt/.pth/.safetensors state_dict; Keras: .weights.h5/.h5/.keras) "
        "or a named weight (e.g. IMAGENET1K_V2).",
    )(f)
    f = click.option(
        "--random", "random_init", is_flag=True, help="Random initialisation (seeded) instead of pretrained weights."
    )(f)
    return f


def quiet_option(f: F) -> F:
    """``--quiet/-q``: no progress bar or summary."""
    return click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")(f)


def go_offline(offline: bool) -> None:
    """``--offline``: never touch the network from here on."""
    if offline:
        from ..cache import set_offline

        set_offline(True)


def overwrite_option(f: F) -> F:
    """``--overwrite``: replace the result files of an earlier run of the same command."""
    return click.option("--overwrite", is_flag=True, help="Replace result files that an earlier run wrote.")(f)


def refuse_to_replace(paths: Iterable[Any], overwrite: bool, options: str = "--out") -> None:
    """Checked before any work: files this command is about to write that exist already are an error, unless
    ``--overwrite`` (nothing is replaced without consent). ``options``: those that name the files.

    Kept for callers of before; the analysis commands plan their files with :func:`plan_outputs`."""
    plan_outputs(paths, overwrite, options)


def plan_outputs(
    paths: Iterable[Any], overwrite: bool, options: str = "--out", inputs: Iterable[Any] = (), trees: Iterable[Any] = ()
) -> Any:
    """The checked :class:`visreps.outputs.OutputPlan` of every file a command will write (before any work).

    ``inputs``: files the command reads, each a path or ``(path, what)`` (never written over, even with
    ``--overwrite``); ``trees``: folders whose existing files are all inputs (an image folder).
    Raises ``VisrepsError``."""
    from ..outputs import OutputPlan

    plan = OutputPlan(overwrite=overwrite, options=options, command=command_line())
    plan.add(*paths).add_inputs(*trees, what="input folder", tree=True)
    for item in inputs:
        path, what = item if isinstance(item, tuple) else (item, "input")
        plan.add_inputs(path, what=what)
    return plan.check()


def folder_inputs(folder: Any) -> list[tuple[Any, str]]:
    """The files of an output folder that an analysis reads: its record, manifest and layer files (and
    ``folder`` itself when it is a file, e.g. a responses file); nothing when it is no path."""
    from pathlib import Path

    p = Path(str(folder)).expanduser()
    if not p.is_dir():
        return [(p, "input")] if p.exists() else []
    from ..storage import MANIFEST, METADATA, owned_files

    try:
        names = owned_files(p)
    except Exception:  # noqa: BLE001 - a damaged record: the analysis names it; the two known files still count
        names = set()
    return [(p / n, f"feature folder {str(p)!r}") for n in sorted(names | {METADATA, MANIFEST})]


def check_figure_path(path: Any, option: str) -> None:
    """A figure file's name ends with a format of :data:`visreps.plotting.FIGURE_FORMATS` (checked before any work;
    ``.tif`` and ``.jpeg`` count as ``.tiff`` and ``.jpg``)."""
    from pathlib import Path

    from ..errors import VisrepsError
    from ..plotting import FIGURE_FORMATS, figure_format

    try:
        figure_format(path)
    except VisrepsError:
        ext = Path(str(path)).suffix.lower().lstrip(".")
        raise VisrepsError(
            f"{option} {str(path)!r}: {f'format {ext!r}' if ext else 'no format'} is not a figure format; end the "
            f"name with one of {', '.join('.' + f for f in FIGURE_FORMATS)}"
        ) from None


def figure_formats(ctx: click.Context | None, param: click.Parameter | None, value: str | None) -> list[str]:
    """``--plot-format png[,pdf]``: figure formats of :data:`visreps.plotting.FIGURE_FORMATS` (click callback)."""
    return plot_formats(value)


def figure_format(ctx: click.Context | None, param: click.Parameter | None, value: str | None) -> str:
    """``--plot-format FMT``: one figure format of :data:`visreps.plotting.FIGURE_FORMATS` (click callback)."""
    formats = plot_formats(value)
    if len(formats) > 1:
        raise click.BadParameter(f"{value!r}: give one format, e.g. png", param_hint="--plot-format")
    return formats[0]


def write_figure(plan: Any, fig: Any, paths: Iterable[str | Path], *, dpi: int, caption: str | None = None) -> None:
    """Write a drawn figure in each of ``paths`` (and its caption, ``<name>.txt``, once per name) through an output
    plan: partial names, renamed with the run's other files. Every path must be in the plan."""
    from ..plotting import caption_path, save_figure

    captions: list[Path] = []
    for path in paths:
        plan.write(path, lambda p: save_figure(fig, p, dpi=dpi))
        if caption and caption_path(path) not in captions:
            captions.append(caption_path(path))
    text = (caption or "").rstrip() + "\n"
    for cap in captions:
        plan.write(cap, lambda p: Path(p).write_text(text, encoding="utf-8"))


def echo_replaced(plan: Any) -> None:
    """Say which files of an earlier run an ``--overwrite`` run removed (or kept, changed since)."""
    if plan.summary():
        click.echo(plan.summary())


def figure_options(f: F) -> F:
    """``--dpi`` (raster figures, default 300) and ``--width single|double`` (a journal's column), for every figure."""
    f = click.option(
        "--width",
        type=click.Choice(FIGURE_WIDTHS),
        default=None,
        help="Figure width: a journal's single (89 mm) or double (183 mm) column (default: sized to the content).",
    )(f)
    f = click.option(
        "--dpi",
        type=click.IntRange(min=10),
        default=300,
        show_default=True,
        help="Resolution of raster figures (png, tiff, jpg).",
    )(f)
    return f


def label_option(f: F) -> F:
    """``--label SOURCE=NAME`` (repeatable): the name a source goes by in tables, legends and titles."""
    return click.option(
        "--label",
        "label",
        multiple=True,
        metavar="SOURCE=NAME",
        help='Name a source in tables and figures (repeatable), e.g. --label runs/alexnet_rand="AlexNet, untrained".',
    )(f)


def plot_formats(value: str | None, option: str = "--plot-format") -> list[str]:
    """A comma-separated list of figure formats, each one of :data:`visreps.plotting.FIGURE_FORMATS`."""
    from ..plotting import FIGURE_FORMATS

    aliases = {"tif": "tiff", "jpeg": "jpg"}
    formats = [aliases.get(x, x) for x in (s.lower().lstrip(".") for s in split_list(value) or ["png"])]
    bad = [x for x in formats if x not in FIGURE_FORMATS]
    if bad:
        raise click.BadParameter(f"{', '.join(bad)}: use {', '.join(FIGURE_FORMATS)}", param_hint=option)
    return list(dict.fromkeys(formats))


def labelled_sources(sources: list[str], labels: Iterable[str]) -> list[str] | dict[str, str]:
    """``SOURCES`` with ``--label SOURCE=NAME`` applied: a dict name → source (a source's own key names nothing)."""
    from ..errors import VisrepsError
    from ..labels import parse_label_option

    names = parse_label_option(list(labels))
    if not names:
        return sources
    unknown = [s for s in names if s not in sources]
    if unknown:
        raise VisrepsError(
            f"--label names {', '.join(map(repr, unknown))}, not one of the SOURCES ({', '.join(sources)}); "
            "write the source as given on the command line"
        )
    keyed = {names.get(s, s): s for s in sources}
    if len(keyed) < len(sources):
        raise VisrepsError("--label gives two sources the same name; every source needs its own")
    return keyed


def extraction_output_options(f: F) -> F:
    """``--out/-o``, ``--format``, ``--device`` and ``--overwrite``: the options ``extract`` and ``text`` share."""
    from ..options import FORMATS

    f = click.option("--overwrite", is_flag=True, help="Replace earlier results in the output folder.")(f)
    f = click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")(f)
    f = click.option("--format", "fmt", default="npy", show_default=True, type=click.Choice(FORMATS))(f)
    return click.option("--out", "-o", required=True, type=click.Path(), help="Output folder.")(f)


def choice_option(*decls: str, choices: tuple[str, ...], default: str | None, **kw: Any) -> Callable[[F], F]:
    """A ``click.Choice`` option of one tuple of :mod:`visreps.options`, its default shown (other keywords: click's)."""
    return click.option(*decls, type=click.Choice(choices), default=default, show_default=default is not None, **kw)


def parse_source(arg: str) -> tuple[str, list[str] | None]:
    """``FOLDER`` or ``FOLDER::layer1,layer2``: the source and its layers (``None``: not given)."""
    if "::" in arg:
        src, _, layers = arg.rpartition("::")
        return src, split_list(layers)
    return arg, None


def compute_options(f: F) -> F:
    """``--block-size`` and ``--device`` of the commands that compute RDMs or Gram matrices."""
    f = click.option(
        "--device", default="auto", show_default=True, help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N."
    )(f)
    return click.option(
        "--block-size",
        type=click.IntRange(min=1),
        default=None,
        help="Features read per block (memory ≈ 2 × images × block × 8 bytes). Default: ≈128 MB blocks.",
    )(f)


def heatmap_options(f: F) -> F:
    """:func:`figure_options` and ``--cmap`` (a matplotlib colormap), for the commands that draw matrices."""
    f = figure_options(f)
    return click.option("--cmap", default="viridis", show_default=True, help="Matplotlib colormap.")(f)


class pd_display:
    """pandas display options for tables printed to the terminal (a context manager)."""

    def __enter__(self) -> None:
        import pandas as pd

        self.ctx = pd.option_context("display.width", 200, "display.max_columns", 50, "display.max_rows", 200)
        self.ctx.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self.ctx.__exit__(*exc)


def responses_options(f: F) -> F:
    """``--order``, ``--key``, ``--axes`` and ``--nan``: how a responses file is read
    (:mod:`visreps.analysis.responses`), shared by the commands that read one (``encode``, ``partition``)."""
    from ..options import NAN_POLICIES

    nan_help = "Responses with NaN: stop with an error, or drop those targets (listed)."
    f = choice_option("--nan", choices=NAN_POLICIES, default="error", help=nan_help)(f)
    axes_help = "Axes of the responses array, e.g. repetitions,images,targets (default images,targets)."
    f = click.option("--axes", default=None, help=axes_help)(f)
    f = click.option("--key", default=None, help="Variable/dataset of an npz/mat/hdf5 responses file.")(f)
    order_help = "Text file: the image of every response row, one manifest path (or unique file name) per line."
    return click.option("--order", type=click.Path(dir_okay=False), default=None, help=order_help)(f)
