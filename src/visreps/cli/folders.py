"""``visreps merge`` and ``visreps verify``: output folders after extraction."""

from __future__ import annotations

import click


@click.command()
@click.argument("out", type=click.Path(file_okay=False))
@click.argument("shards", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--overwrite", is_flag=True, help="Replace earlier results in OUT.")
def merge(out: str, shards: tuple[str, ...], overwrite: bool) -> None:
    """Join the finished shard folders SHARDS (from --shard I/N) into OUT, identical to a single run."""
    from ..storage import merge_shards

    res = merge_shards(out, shards, overwrite=overwrite)
    click.echo(f"merged {len(shards)} shards → {out}: {len(res.paths)} images, layers {', '.join(res.layers)}")


@click.command()
@click.argument("folder", type=click.Path(file_okay=False))
def verify(folder: str) -> None:
    """Check an output FOLDER: every file's size and SHA-256 against metadata.json, every layer's shape
    and dtype, and one manifest row per image. Exit code 0 when intact, 2 naming the damaged files."""
    from ..storage import verify as verify_folder

    sums = verify_folder(folder)
    click.echo(f"{folder}: intact ({len(sums)} files match their recorded SHA-256; shapes and rows agree)")
