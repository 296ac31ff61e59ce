"""``visreps extract``: layer activations of a model for a folder of images."""

from __future__ import annotations

from typing import Any

import click

from ..options import ENGINES, POOL_MODES, PRECISIONS, RECURRENT_MODES
from ._base import (
    batch_size,
    command_line,
    extraction_output_options,
    go_offline,
    quiet_option,
    split_layers,
    weights_options,
)


@click.command()
@click.argument("model")
@click.argument("images", type=click.Path())
@click.option(
    "--layers",
    "-l",
    required=True,
    help="Comma-separated layer names (see `visreps layers MODEL`); name@tK for a time step; glob patterns "
    "('layer?.*': * stays within one dotted part, ** crosses dots) and 'blocks' (the model's main blocks).",
)
@extraction_output_options
@weights_options
@click.option(
    "--pool",
    default="flatten",
    show_default=True,
    type=click.Choice(POOL_MODES),
    help="flatten, keep shape (none), global average/max pooling of spatial maps (avg, max), or for "
    "transformer tokens the class token (cls) or the mean of patch tokens (patch_mean).",
)
@click.option(
    "--recurrent",
    type=click.Choice(RECURRENT_MODES),
    default=None,
    help="For modules that run several times per pass: every time step or the last.",
)
@click.option(
    "--batch-size",
    "-b",
    default="32",
    show_default=True,
    callback=lambda c, p, v: batch_size(v),
    help="Images per forward pass, or 'auto' (largest that fits in GPU memory; 32 on CPU).",
)
@click.option(
    "--workers", type=click.IntRange(min=0), default=None, help="Decoding processes (default: number of cores)."
)
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True)
@click.option(
    "--channels-last/--no-channels-last",
    default=None,
    help="Channels-last memory layout for convolutions (default: automatic, on for CNNs on CPU/CUDA).",
)
@click.option(
    "--order",
    type=click.Path(dir_okay=False),
    default=None,
    help="Text file of relative image paths (or row names such as imgBrick/3): these images, in this order.",
)
@click.option(
    "--images-key",
    default=None,
    metavar="KEY",
    help="Which array of an HDF5 IMAGES file holding several (e.g. imgBrick).",
)
@click.option(
    "--skip-bad-images", is_flag=True, help="Skip unreadable images (recorded in metadata.json) instead of stopping."
)
@click.option(
    "--top-k",
    type=click.IntRange(min=1),
    default=None,
    help="Also save the top-K ImageNet classes per image (predictions.csv).",
)
@click.option(
    "--reduce",
    default=None,
    metavar="srp:K|srp:auto|pca:K",
    help="Reduce every layer while extracting: sparse random projection to K dimensions (scikit-learn's "
    "matrix, per-layer seeds from --seed), srp:auto (Johnson-Lindenstrauss K), or a K-component PCA.",
)
@click.option(
    "--reduce-fit",
    default=None,
    type=click.Path(),
    help="With --reduce pca:K: a folder of images to fit the PCA on, or the pca_fit.npz of an earlier run "
    "(default: the first max(K, 1000) images of the run).",
)
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out from its last fully written batch.")
@click.option(
    "--shard",
    default=None,
    metavar="I/N",
    help="Only the I-th of N contiguous slices of the images (join with `visreps merge`).",
)
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default="local",
    show_default=True,
    help="local: this process (decoding in --workers processes); ray: a Ray Data pipeline, decoding in Ray "
    "tasks and the model in --ray-actors actors (needs `pip install visreps[ray]`).",
)
@click.option(
    "--ray-address",
    default=None,
    metavar="ADDRESS",
    help="With --engine ray: join the running Ray cluster at ADDRESS (host:6379, or 'auto'); default: start Ray here.",
)
@click.option(
    "--ray-actors",
    type=click.IntRange(min=1),
    default=None,
    help="With --engine ray: model replicas (actors), e.g. one per GPU.  [default: 2]",
)
@quiet_option
def extract(
    model: str,
    images: str,
    layers: str,
    out: str,
    engine: str,
    workers: int | None,
    ray_address: str | None,
    ray_actors: int | None,
    offline: bool,
    quiet: bool,
    allow_pickle: bool,
    **options: Any,
) -> None:
    """Extract layer activations of MODEL for every image in IMAGES into --out.

    MODEL is an id such as torchvision:alexnet, timm:resnet50 or timm:tf_efficientnet_lite0.
    IMAGES is a folder of images, an HDF5 (.h5/.hdf5) or .npy file holding one N x H x W x 3 uint8
    image array, a .txt list of image paths, or one image file.
    """
    from ..errors import VisrepsError
    from ..extraction import extract as run

    go_offline(offline)
    kwargs = _extract_kwargs(layers=layers, out=out, quiet=quiet, allow_pickle=allow_pickle, **options)
    if engine == "ray":
        if workers is not None:
            raise VisrepsError("--workers is for --engine local; with --engine ray, Ray tasks decode the images")
        from ..distributed import RayEngine

        res = run(model, images, engine=RayEngine(num_actors=ray_actors or 2, address=ray_address), **kwargs)
    else:
        if ray_address is not None or ray_actors is not None:
            raise VisrepsError("--ray-address and --ray-actors apply to --engine ray; add --engine ray or drop them")
        res = run(model, images, engine="local", num_workers=workers, **kwargs)
    if not quiet:
        _summary(res.metadata, out, options["top_k"])


def _extract_kwargs(*, layers: str, out: str, quiet: bool, random_init: bool, fmt: str, **options: Any) -> dict:
    """The keyword arguments of :func:`visreps.extract` for the command's options.

    The options not named here (``--weights``, ``--pool``, ``--batch-size``, ``--shard``...) are
    spelled as the keyword arguments of :func:`visreps.extract` and passed on as they are.
    """
    return dict(
        layers=split_layers(layers),
        out=out,
        format=fmt,
        progress=not quiet,
        pretrained=not random_init,
        command=command_line(),
        **options,
    )


def _summary(meta: dict, out: str, top_k: int | None) -> None:
    n = meta["images"]["n_extracted"]
    secs = meta.get("seconds") or 0
    click.echo(f"{n} images → {out}  ({secs:.1f} s, {n / secs if secs else 0:.1f} images/s)")
    reduce = meta.get("reduce") or {}
    for layer, rec in meta["layers"].items():
        how = reduce.get(layer, {}).get("method")
        note = f"  ({how} from {reduce[layer]['input_width']})" if how in ("srp", "pca") else ""
        click.echo(f"  {layer:<30} {str(tuple(rec['shape'])):<22} {rec['file']}{note}")
    if meta["images"].get("skipped"):
        click.echo(f"  skipped {len(meta['images']['skipped'])} unreadable image(s): see metadata.json")
    if top_k:
        click.echo(f"  top-{top_k} ImageNet predictions: {out}/predictions.csv")
