"""``visreps layers`` and ``visreps models``: what a model has, which models there are."""

from __future__ import annotations

import click

from ._base import go_offline, weights_options


@click.command()
@click.argument("model")
@weights_options
@click.option("--device", default="cpu", show_default=True)
def layers(
    model: str, random_init: bool, weights: str | None, seed: int, offline: bool, device: str, allow_pickle: bool
) -> None:
    """Print every layer of MODEL with its type and output shape for one image.

    Shapes come from a dry run; the architecture alone decides them, so random weights are used
    unless --weights is given.
    """
    from ..models import load_model

    go_offline(offline)
    lm = load_model(model, pretrained=False, weights=weights, seed=seed, device=device, allow_pickle=allow_pickle)
    p = lm.preprocessing
    shape = p.input_size() if lm.backend == "torch" else tuple(lm.dummy_input(1).shape[1:])
    click.echo(f"{lm.model_id}  input {shape}  (resize {p.resize}, crop {p.crop})")
    lm.print_layers()


@click.command()
@click.argument("pattern", required=False)
@click.option("--source", default=None, help="Only this source (torchvision, timm, cornet, ...).")
@click.option("--offline-only", is_flag=True, help="Only models whose pretrained weights are on this machine.")
def models(pattern: str | None, source: str | None, offline_only: bool) -> None:
    """List model ids, optionally matching PATTERN (substring or shell pattern like '*resnet*').

    Models marked [offline] have pretrained weights on this machine already.
    """
    from ..errors import VisrepsError
    from ..models import available_offline, list_models

    ids = list_models(pattern, source=source)
    if not ids:
        raise VisrepsError(f"no model matches {pattern!r}; try a shorter pattern, e.g. `visreps models resnet`")
    shown = 0
    for mid in ids:
        here = available_offline(mid)
        if offline_only and not here:
            continue
        click.echo(f"{mid}  [offline]" if here else mid)
        shown += 1
    if not shown:
        click.echo("no pretrained weights of these models are on this machine (see `visreps models --help`)")
