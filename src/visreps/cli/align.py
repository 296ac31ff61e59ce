"""``visreps align``: apply a published transform (gLocal) to the features of an output folder."""

from __future__ import annotations

import click

from ._base import split_list


@click.command()
@click.argument("folder", type=click.Path(file_okay=False, exists=True))
@click.option("--transform", default="gLocal", show_default=True, help="The transform (only gLocal).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="New folder [default: FOLDER_gLocal].")
@click.option("--model", default=None, help="Model id or gLocal name [default: the folder's model].")
@click.option("--layers", "layers", default=None, help="Layers of FOLDER to transform (comma-separated).")
@click.option("--transform-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="A local copy of the published transform.npz.")  # fmt: skip
@click.option("--overwrite", is_flag=True, help="Replace earlier results in OUT.")
@click.option("--offline", is_flag=True, help="Never touch the network; a missing transform file is an error.")
@click.option("--force", is_flag=True, help="Apply it to a folder of random weights too (the transforms were "
              "fitted on pretrained weights; recorded in the metadata).")  # fmt: skip
def align(
    folder: str,
    transform: str,
    out: str | None,
    model: str | None,
    layers: str | None,
    transform_file: str | None,
    overwrite: bool,
    offline: bool,
    force: bool,
) -> None:
    """Write FOLDER's features aligned with human similarity judgements into a new output folder.

    gLocal (Muttenthaler et al., NeurIPS 2023): Y = ((X - mean) / std) @ W + b with the published
    weights W, bias b and the scalar mean and std of the model's layer; available for clip:RN50,
    clip:ViT-L-14, two openclip:ViT-L-14 tags, DINO/DINOv2 ViT-B/L, torchvision resnet18/resnet50
    (avgpool), vgg16 (classifier.3) and alexnet (classifier.4).
    """
    from ..analysis.align import align as run
    from ..cache import set_offline

    if offline:
        set_offline(True)
    res = run(
        folder,
        transform=transform,
        model=model,
        layer=split_list(layers),
        out=out,
        overwrite=overwrite,
        transform_file=transform_file,
        force=force,
    )
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in res.items())
    click.echo(f"aligned ({transform}) → {res.folder}: {shapes}")
