"""``visreps text``: CLIP text features from the command line (wired into :mod:`visreps.cli` by ``register``)."""

from __future__ import annotations

import functools
import sys

import click


def _text(model, texts_file, out, layers, pool, random_init, weights, seed, offline, fmt, batch_size, device,
          overwrite, quiet):
    """Encode the texts of TEXTS_FILE (one per line, blank lines skipped) with the text tower of MODEL.

    MODEL is a CLIP id such as clip:ViT-B-32 or openclip:ViT-B-32/laion2b_s34b_b79k. The default
    layer is the text embedding (text_embedding); inner layers such as transformer.resblocks.5
    give the end-of-text token (--pool eot), all positions (--pool flatten) or keep the token axis
    (--pool none). manifest.csv lists the texts in row order.
    """
    from .cache import set_offline
    from .text import extract_text

    if offline:
        set_offline(True)
    res = extract_text(
        model, texts_file, layers=[s.strip() for s in layers.split(",") if s.strip()], out=out, format=fmt,
        pool=pool, batch_size=batch_size, overwrite=overwrite, pretrained=not random_init, weights=weights,
        seed=seed, device=device, progress=not quiet, command=" ".join(["visreps", *sys.argv[1:]]),
    )
    if not quiet:
        click.echo(f"{len(res.manifest)} texts → {out}")
        for layer, rec in res.metadata["layers"].items():
            click.echo(f"  {layer:<30} {str(tuple(rec['shape'])):<22} {rec['file']}")


def register(group: click.Group) -> click.Command:
    """Add the ``text`` command to ``group`` (the ``visreps`` group); returns the command.

    Call it after :mod:`visreps.cli` has defined its shared weight options (e.g. at the end of
    ``cli.py``): the command reuses ``--random/--weights/--seed/--offline`` from there.
    """
    cmd = _command()
    group.add_command(cmd)
    return cmd


@functools.lru_cache(maxsize=1)
def _command() -> click.Command:
    from .cli import _weights_options

    f = _text
    f = click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")(f)
    f = click.option("--overwrite", is_flag=True, help="Replace earlier results in the output folder.")(f)
    f = click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")(f)
    f = click.option("--batch-size", "-b", type=click.IntRange(min=1), default=64, show_default=True)(f)
    f = click.option("--format", "fmt", default="npy", show_default=True,
                     type=click.Choice(["npy", "hdf5", "mat", "pt", "txt"]))(f)
    f = _weights_options(f)
    f = click.option("--pool", default="eot", show_default=True, type=click.Choice(["eot", "flatten", "none"]),
                     help="For per-token layers: the end-of-text token (eot), every position (flatten), or keep the token axis (none).")(f)
    f = click.option("--layers", "-l", default="text_embedding", show_default=True,
                     help="Comma-separated layers: text_embedding and/or text-tower modules (transformer.resblocks.N).")(f)
    f = click.option("--out", "-o", required=True, type=click.Path(), help="Output folder.")(f)
    f = click.argument("texts_file", type=click.Path(dir_okay=False))(f)
    f = click.argument("model")(f)
    return click.command("text")(f)
