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
@click.option("--source", default=None, help="Only this source (torchvision, timm, cornet, ssl, ...).")
@click.option("--offline-only", is_flag=True, help="Only models whose pretrained weights are on this machine.")
@click.option("--json", "as_json", is_flag=True, help="Print the catalogue as JSON (one object per model id).")
def models(pattern: str | None, source: str | None, offline_only: bool, as_json: bool) -> None:
    """List model ids by family, optionally matching PATTERN (substring or shell pattern like '*resnet*').

    Each family shows its architecture, training data, objective, the licence of its weights and the
    paper to cite. Models marked [offline] have pretrained weights on this machine already. --json
    gives the same catalogue to scripts: a list of objects with the keys id, family, architecture,
    training_data, objective, weights_licence, paper, url, sha256 and offline.
    """
    import json

    from ..errors import VisrepsError
    from ..models import catalogue

    rows = catalogue(pattern, source=source)
    if not rows:
        raise VisrepsError(f"no model matches {pattern!r}; try a shorter pattern, e.g. `visreps models resnet`")
    if offline_only:
        rows = [r for r in rows if r["offline"]]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo("no pretrained weights of these models are on this machine (see `visreps models --help`)")
        return
    click.echo("\n".join(format_catalogue(rows)))


#: the card fields shown for a family, in order, with their labels
_FIELDS = (
    ("architecture", "architecture"),
    ("training_data", "trained on"),
    ("objective", "objective"),
    ("weights_licence", "weights licence"),
    ("paper", "cite"),
)


def format_catalogue(rows: list[dict]) -> list[str]:
    """Lines of the catalogue: per family a header, the fields its ids share, then one line per id
    (``id  [offline]``, then the fields where it differs from the rest of its family)."""
    families: dict[str, list[dict]] = {}
    for r in rows:
        families.setdefault(r["family"], []).append(r)
    lines: list[str] = []
    for family, members in families.items():
        if lines:
            lines.append("")
        lines.append(f"{family} ({len(members)} model{'s' if len(members) != 1 else ''})")
        shared = [k for k, _ in _FIELDS if len({m[k] for m in members}) == 1 and members[0][k]]
        if len(members) == 1:
            shared = [k for k in shared if k != "architecture"]
        lines += [f"    {label}: {members[0][k]}" for k, label in _FIELDS if k in shared]
        for m in members:
            line = f"{m['id']}  [offline]" if m["offline"] else m["id"]
            own = [str(m[k]) for k, _ in _FIELDS if k not in shared and m[k] and m[k] != m["id"].split(":", 1)[1]]
            lines.append(f"  {line}" + (f"  ({'; '.join(own)})" if own else ""))
    return lines
