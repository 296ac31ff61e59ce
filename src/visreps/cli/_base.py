"""What the command modules of :mod:`visreps.cli` share: option decorators and value parsers.

Every command module imports this module only (never another command module, nor
:mod:`visreps.cli` itself); heavy libraries are imported inside the commands, so ``visreps --help``
starts fast.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

FORMATS = ("npy", "hdf5", "mat", "pt", "txt")


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
    ``--overwrite`` (nothing is replaced without consent). ``options``: those that name the files."""
    from pathlib import Path

    from ..errors import VisrepsError

    held = list(dict.fromkeys(str(p) for p in paths if Path(p).exists()))
    if held and not overwrite:
        what = "exists" if len(held) == 1 else "exist"
        raise VisrepsError(
            f"{', '.join(held)} already {what}; choose another {options}, or add --overwrite to replace"
            f" {'it' if len(held) == 1 else 'them'}"
        )


def figure_options(f: F) -> F:
    """``--dpi`` (raster figures, default 300) and ``--width single|double`` (a journal's column), for every figure."""
    f = click.option(
        "--width",
        type=click.Choice(["single", "double"]),
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
