"""The ``visreps`` command line.

Every error is one line on stderr and exit code 2; Ctrl-C says what was done and exits 130.
Heavy libraries are imported inside the commands, so ``visreps --help`` starts fast.
"""

from __future__ import annotations

import sys

import click

from .errors import VisrepsError


class _Error(click.ClickException):
    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class VisrepsGroup(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except VisrepsError as e:
            raise _Error(str(e)) from None
        except KeyboardInterrupt as e:
            done = getattr(e, "visreps_done", None)
            msg = "interrupted"
            if done:
                msg += f" after {done[0]} of {done[1]} images"
                if done[2]:
                    msg += (f"; {done[2]} holds the finished batches (*.partial files): "
                            "continue with the same command plus --resume")
            click.echo(msg, err=True)
            ctx.exit(130)
        except MemoryError:
            raise _Error("out of memory; lower --batch-size, or pool the layer (--pool avg)") from None
        except OSError as e:  # a file the command reads or writes: name it instead of a traceback
            where = f" {e.filename!r}" if e.filename is not None else ""
            raise _Error(f"cannot access{where}: {e.strerror or e}; check the path, its permissions and free space") from None


@click.group(cls=VisrepsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="visreps")
def main() -> None:
    """Extract hidden-layer activations of deep networks for a folder of images, and compare them."""


def _batch_size(value: str):
    if str(value).lower() == "auto":
        return "auto"
    try:
        b = int(value)
    except ValueError:
        b = 0
    if b < 1:
        raise click.BadParameter(f"{value!r} is not a positive integer or 'auto'", param_hint="--batch-size")
    return b


def _split_layers(value: str) -> list[str]:
    return [s.strip() for s in value.split(",") if s.strip()]


def _weights_options(f):
    """``--random/--weights/--seed/--offline``, and ``--allow-pickle`` for commands taking ``allow_pickle``."""
    import inspect

    f = click.option("--offline", is_flag=True, help="Never touch the network; a missing weights file is an error.")(f)
    f = click.option("--seed", type=int, default=0, show_default=True, help="Seed of a random initialisation.")(f)
    if "allow_pickle" in inspect.signature(f).parameters:
        f = click.option(
            "--allow-pickle", is_flag=True,
            help="Allow unpickling a whole model file, which can run arbitrary code: only for files you trust.",
        )(f)
    f = click.option(
        "--weights", "weights", default=None, metavar="FILE|TAG",
        help="Local weights file (.pt/.pth/.safetensors state_dict; Keras: .weights.h5/.h5/.keras) or a named weight (e.g. IMAGENET1K_V2).",
    )(f)
    f = click.option("--random", "random_init", is_flag=True, help="Random initialisation (seeded) instead of pretrained weights.")(f)
    return f


@main.command()
@click.argument("model")
@click.argument("images", type=click.Path(file_okay=False))
@click.option("--layers", "-l", required=True, help="Comma-separated layer names (see `visreps layers MODEL`); name@tK for a time step.")
@click.option("--out", "-o", required=True, type=click.Path(), help="Output folder.")
@_weights_options
@click.option("--format", "fmt", default="npy", show_default=True, type=click.Choice(["npy", "hdf5", "mat", "pt", "txt"]))
@click.option("--pool", default="flatten", show_default=True, type=click.Choice(["flatten", "none", "avg", "max", "cls", "patch_mean"]),
              help="flatten, keep shape (none), global average/max pooling of spatial maps (avg, max), or for transformer tokens the class token (cls) or the mean of patch tokens (patch_mean).")
@click.option("--recurrent", type=click.Choice(["all", "last"]), default=None,
              help="For modules that run several times per pass: every time step or the last.")
@click.option("--batch-size", "-b", default="32", show_default=True, callback=lambda c, p, v: _batch_size(v),
              help="Images per forward pass, or 'auto' (largest that fits in GPU memory; 32 on CPU).")
@click.option("--workers", type=click.IntRange(min=0), default=None, help="Decoding processes (default: number of cores).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp32", show_default=True)
@click.option("--channels-last/--no-channels-last", default=None,
              help="Channels-last memory layout for convolutions (default: automatic, on for CNNs on CPU/CUDA).")
@click.option("--order", type=click.Path(dir_okay=False), default=None, help="Text file of relative image paths: these images, in this order.")
@click.option("--skip-bad-images", is_flag=True, help="Skip unreadable images (recorded in metadata.json) instead of stopping.")
@click.option("--top-k", type=click.IntRange(min=1), default=None, help="Also save the top-K ImageNet classes per image (predictions.csv).")
@click.option("--overwrite", is_flag=True, help="Replace earlier results in the output folder.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out from its last fully written batch.")
@click.option("--shard", default=None, metavar="I/N", help="Only the I-th of N contiguous slices of the images (join with `visreps merge`).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process (decoding in --workers processes); ray: a Ray Data pipeline, decoding in Ray tasks "
                   "and the model in --ray-actors actors (needs `pip install visreps[ray]`).")
@click.option("--ray-address", default=None, metavar="ADDRESS",
              help="With --engine ray: join the running Ray cluster at ADDRESS (host:6379, or 'auto'); default: start Ray here.")
@click.option("--ray-actors", type=click.IntRange(min=1), default=None,
              help="With --engine ray: model replicas (actors), e.g. one per GPU.  [default: 2]")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
def extract(model, images, layers, out, random_init, weights, seed, offline, fmt, pool, recurrent, batch_size, workers,
            device, precision, channels_last, order, skip_bad_images, top_k, overwrite, resume, shard, engine, ray_address,
            ray_actors, quiet, allow_pickle):
    """Extract layer activations of MODEL for every image in IMAGES into --out.

    MODEL is an id such as torchvision:alexnet, timm:resnet50 or timm:tf_efficientnet_lite0.
    """
    from .cache import set_offline

    if offline:
        set_offline(True)
    kwargs = dict(
        layers=_split_layers(layers), out=out, format=fmt, pool=pool, batch_size=batch_size, device=device,
        precision=precision, order=order, overwrite=overwrite, skip_bad_images=skip_bad_images, recurrent=recurrent,
        progress=not quiet, pretrained=not random_init, weights=weights, seed=seed, channels_last=channels_last,
        top_k=top_k, resume=resume, shard=shard, command=" ".join(["visreps", *sys.argv[1:]]),
        allow_pickle=allow_pickle,
    )
    if engine == "ray":
        if workers is not None:
            raise VisrepsError("--workers is for --engine local; with --engine ray, Ray tasks decode the images")
        from .distributed import extract_ray

        res = extract_ray(model, images, num_actors=ray_actors or 2, ray_address=ray_address, **kwargs)
    else:
        if ray_address is not None or ray_actors is not None:
            raise VisrepsError("--ray-address and --ray-actors apply to --engine ray; add --engine ray or drop them")
        from .extraction import extract as run

        res = run(model, images, num_workers=workers, **kwargs)
    if not quiet:
        meta = res.metadata
        n = meta["images"]["n_extracted"]
        secs = meta.get("seconds") or 0
        click.echo(f"{n} images → {out}  ({secs:.1f} s, {n / secs if secs else 0:.1f} images/s)")
        for layer, rec in meta["layers"].items():
            click.echo(f"  {layer:<30} {str(tuple(rec['shape'])):<22} {rec['file']}")
        if meta["images"].get("skipped"):
            click.echo(f"  skipped {len(meta['images']['skipped'])} unreadable image(s): see metadata.json")
        if top_k:
            click.echo(f"  top-{top_k} ImageNet predictions: {out}/predictions.csv")


@main.command()
@click.argument("model")
@_weights_options
@click.option("--device", default="cpu", show_default=True)
def layers(model, random_init, weights, seed, offline, device, allow_pickle):
    """Print every layer of MODEL with its type and output shape for one image.

    Shapes come from a dry run; the architecture alone decides them, so random weights are used
    unless --weights is given.
    """
    from .cache import set_offline
    from .models import load_model

    if offline:
        set_offline(True)
    lm = load_model(model, pretrained=False, weights=weights, seed=seed, device=device, allow_pickle=allow_pickle)
    p = lm.preprocessing
    shape = p.input_size() if lm.backend == "torch" else tuple(lm.dummy_input(1).shape[1:])
    click.echo(f"{lm.model_id}  input {shape}  (resize {p.resize}, crop {p.crop})")
    lm.print_layers()


@main.command()
@click.argument("pattern", required=False)
@click.option("--source", default=None, help="Only this source (torchvision, timm, cornet, ...).")
@click.option("--offline-only", is_flag=True, help="Only models whose pretrained weights are on this machine.")
def models(pattern, source, offline_only):
    """List model ids, optionally matching PATTERN (substring or shell pattern like '*resnet*').

    Models marked [offline] have pretrained weights on this machine already.
    """
    from .models import available_offline, list_models

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


@main.command()
@click.argument("out", type=click.Path(file_okay=False))
@click.argument("shards", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--overwrite", is_flag=True, help="Replace earlier results in OUT.")
def merge(out, shards, overwrite):
    """Join the finished shard folders SHARDS (from --shard I/N) into OUT, identical to a single run."""
    from .storage import merge_shards

    res = merge_shards(out, shards, overwrite=overwrite)
    click.echo(f"merged {len(shards)} shards → {out}: {len(res.paths)} images, layers {', '.join(res.layers)}")


@main.command()
@click.argument("folder", type=click.Path(file_okay=False))
def verify(folder):
    """Check an output FOLDER: every file's size and SHA-256 against metadata.json, every layer's shape
    and dtype, and one manifest row per image. Exit code 0 when intact, 2 naming the damaged files."""
    from .storage import verify as verify_folder

    sums = verify_folder(folder)
    click.echo(f"{folder}: intact ({len(sums)} files match their recorded SHA-256; shapes and rows agree)")


def _register_extras() -> None:
    from ._cli_analysis import register as register_analysis
    from ._cli_text import register as register_text

    register_text(main)
    register_analysis(main)


_register_extras()


if __name__ == "__main__":  # python -m visreps.cli
    main()
