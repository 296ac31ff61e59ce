"""``visreps text``: CLIP text features from the command line."""

from __future__ import annotations

import click

from ..options import TEXT_POOL_MODES
from ._base import command_line, extraction_output_options, go_offline, quiet_option, split_layers, weights_options


@click.command("text")
@click.argument("model")
@click.argument("texts_file", type=click.Path(dir_okay=False))
@extraction_output_options
@click.option(
    "--layers",
    "-l",
    default="text_embedding",
    show_default=True,
    help="Comma-separated layers: text_embedding and/or text-tower modules (transformer.resblocks.N).",
)
@click.option(
    "--pool",
    default="eot",
    show_default=True,
    type=click.Choice(TEXT_POOL_MODES),
    help="For per-token layers: the end-of-text token (eot), every position (flatten), or keep the token axis (none).",
)
@weights_options
@click.option("--batch-size", "-b", type=click.IntRange(min=1), default=64, show_default=True)
@quiet_option
def text(
    model: str,
    texts_file: str,
    out: str,
    layers: str,
    pool: str,
    random_init: bool,
    weights: str | None,
    seed: int,
    offline: bool,
    fmt: str,
    batch_size: int,
    device: str,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Encode the texts of TEXTS_FILE (one per line, blank lines skipped) with the text tower of MODEL.

    MODEL is a CLIP id such as clip:ViT-B-32 or openclip:ViT-B-32/laion2b_s34b_b79k. The default
    layer is the text embedding (text_embedding); inner layers such as transformer.resblocks.5
    give the end-of-text token (--pool eot), all positions (--pool flatten) or keep the token axis
    (--pool none). manifest.csv lists the texts in row order.
    """
    from ..text import extract_text

    go_offline(offline)
    res = extract_text(
        model,
        texts_file,
        layers=split_layers(layers),
        out=out,
        format=fmt,
        pool=pool,
        batch_size=batch_size,
        overwrite=overwrite,
        pretrained=not random_init,
        weights=weights,
        seed=seed,
        device=device,
        progress=not quiet,
        command=command_line(),
    )
    if not quiet:
        click.echo(f"{len(res.manifest)} texts → {out}")
        for layer, rec in res.metadata["layers"].items():
            click.echo(f"  {layer:<30} {str(tuple(rec['shape'])):<22} {rec['file']}")
