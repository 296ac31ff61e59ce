"""Hooks on the requested layers, one forward pass, early exit, pooling, and the batch loop.

How a forward pass is captured:

1. A dry run on one blank image counts how often each requested module runs per forward pass
   (recurrent modules run several times) and records its output shape.
2. During extraction, forward hooks copy each requested output (after tuple selection and
   pooling/flattening) to the host. Once every requested module has run as often as the dry run
   said, the hook raises an internal signal that ends the forward pass: modules after the last
   requested layer never run.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import ImageError, LayerNotFoundError, VisrepsError, closest

POOL_MODES = ("flatten", "none", "avg", "max", "cls", "patch_mean")
RECURRENT_MODES = ("all", "last")
PRECISIONS = ("fp32", "fp16", "bf16")


class _StopForward(Exception):
    """Raised by the last hook to end the forward pass early."""


# --------------------------------------------------------------------------- output handling


def _first_tensor(out):
    import torch

    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        for o in out:
            t = _first_tensor(o)
            if t is not None:
                return t
    if isinstance(out, Mapping):
        for o in out.values():
            t = _first_tensor(o)
            if t is not None:
                return t
    return None


def pool_output(t, mode: str, layer: str = "", prefix_tokens: int = 1, *, channels_last: bool = False):
    """Apply a pooling mode to a batch of outputs ``t`` of shape (B, ...) (a torch tensor).

    ``flatten``: (B, prod(rest)) in the tensor's own axis order; ``none``: unchanged;
    ``avg``/``max``: global average/max over the spatial axes of (B, C, H, W) or (B, C, T, H, W)
    maps (of (B, H, W, C) maps with ``channels_last``, as Keras gives them) → (B, C); 2-D outputs
    pass through.
    Token sequences (B, N, D) of transformers: ``cls`` takes token 0 → (B, D); ``patch_mean``
    averages the patch tokens, i.e. all but the first ``prefix_tokens`` (class/register tokens)
    → (B, D); ``none``/``flatten`` keep all tokens.
    """
    if mode == "none":
        return t
    if mode == "flatten":
        return t.reshape(t.shape[0], -1)
    if mode in ("cls", "patch_mean"):
        if t.dim() == 2:  # already one vector per image (e.g. an embedding)
            return t
        if t.dim() != 3:
            raise VisrepsError(
                f"--pool {mode} is for token sequences (batch, tokens, dim), but layer {layer!r} "
                f"outputs {tuple(t.shape)}; use --pool avg/max/flatten/none"
            )
        if mode == "cls":
            return t[:, 0]
        if t.shape[1] <= prefix_tokens:
            raise VisrepsError(f"layer {layer!r} has {t.shape[1]} tokens, no patch tokens after {prefix_tokens} prefix token(s)")
        return t[:, prefix_tokens:].float().mean(dim=1)
    if t.dim() == 2:
        return t
    if t.dim() == 3:
        raise VisrepsError(
            f"layer {layer!r} outputs a 3-D tensor {tuple(t.shape)} (e.g. tokens × channels): "
            f"--pool {mode} is ambiguous there; use --pool cls, patch_mean, flatten or none"
        )
    dims = tuple(range(1, t.dim() - 1)) if channels_last else tuple(range(2, t.dim()))
    return t.float().mean(dim=dims) if mode == "avg" else t.amax(dim=dims)


@dataclass
class LayerSpec:
    """A requested layer: module name, which call(s), how to pool."""

    module: str
    pool: str
    call: int | None = None  # a single time step asked for with name@tK
    keys: tuple[str, ...] = ()  # output array names, set after the dry run
    calls: int = 0  # how often the module runs per forward pass


def _parse_layers(module_names: Sequence[str], layers, pool) -> list[LayerSpec]:
    if isinstance(layers, str):
        layers = [s.strip() for s in layers.split(",") if s.strip()]
    if not layers:
        raise VisrepsError("no layers requested; name at least one (see `visreps layers MODEL`)")
    valid = set(module_names)
    specs = []
    seen = set()
    for spec in layers:
        name, call = spec, None
        if "@t" in spec:
            name, _, step = spec.rpartition("@t")
            if not step.isdigit():
                raise VisrepsError(f"layer {spec!r}: a time step is written name@tK with K a number, e.g. V4.output@t3")
            call = int(step)
        if name not in valid:
            hint = closest(name, module_names)
            raise LayerNotFoundError(
                f"model has no layer {name!r}"
                + (f"; closest: {', '.join(hint)}" if hint else "")
                + " (list them with `visreps layers MODEL`)"
            )
        if spec in seen:
            raise VisrepsError(f"layer {spec!r} is requested twice")
        seen.add(spec)
        mode = pool.get(spec, pool.get(name, "flatten")) if isinstance(pool, Mapping) else pool
        if mode not in POOL_MODES:
            raise VisrepsError(f"pool mode {mode!r} for layer {spec!r} is not valid; use one of {', '.join(POOL_MODES)}")
        specs.append(LayerSpec(name, mode, call))
    if isinstance(pool, Mapping):
        unknown = set(pool) - {s for s in layers} - {s.module for s in specs}
        if unknown:
            raise VisrepsError(f"pool given for layer(s) not requested: {sorted(unknown)}")
    return specs


class Capture:
    """Forward hooks that collect the requested outputs of one forward pass and stop early."""

    def __init__(self, module, specs: list[LayerSpec], *, stop_early: bool = True,
                 seq_first: frozenset = frozenset(), prefix_tokens: int = 1):
        self.module = module
        self.seq_first = seq_first  # modules whose outputs are (tokens, batch, dim)
        self.prefix_tokens = prefix_tokens
        self.specs = specs
        self.stop_early = stop_early
        self.by_module: dict[str, list[LayerSpec]] = {}
        for s in specs:
            self.by_module.setdefault(s.module, []).append(s)
        self.counts: dict[str, int] = {}
        self.outputs: dict[str, list] = {}
        self.handles = []
        self.expected: dict[str, int] | None = None

    def __enter__(self):
        mods = dict(self.module.named_modules())
        for name in self.by_module:
            self.handles.append(mods[name].register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def _hook(self, name: str):
        def hook(mod, inputs, out):
            call = self.counts.get(name, 0)
            self.counts[name] = call + 1
            t = _first_tensor(out)
            if t is None:
                raise VisrepsError(f"layer {name!r} returned {type(out).__name__} without any tensor; choose another layer")
            if name in self.seq_first and t.dim() == 3:
                t = t.transpose(0, 1)
            for spec in self.by_module[name]:
                if self.expected is None:  # dry run: keep the shapes of each call
                    self.outputs.setdefault(f"{spec.module}#{call}#{id(spec)}", []).append(pool_output(t, spec.pool, name, self.prefix_tokens).shape)
                    continue
                for key, wanted in zip(spec.keys, _wanted_calls(spec)):
                    if wanted == call:
                        p = pool_output(t, spec.pool, name, self.prefix_tokens)
                        if p.device.type == "cuda":  # into pinned memory, without waiting for the device
                            self.outputs[key] = p.detach().to("cpu", dtype=_host_dtype(p), non_blocking=True)
                        else:  # a copy: later in-place ops (ReLU(inplace=True)) must not change it
                            self.outputs[key] = p.detach().to("cpu", dtype=_host_dtype(p), copy=True)
            if self.expected is not None and self.stop_early and all(
                self.counts.get(m, 0) >= n for m, n in self.expected.items()
            ):
                raise _StopForward

        return hook

    def run(self, x):
        """Run one forward pass; returns the captured outputs (and keeps the model's own in ``.result``)."""
        self.counts = {}
        self.outputs = {}
        self.result = None
        try:
            self.result = self.module(x)
        except _StopForward:
            pass
        return self.outputs


def make_capture(lm, specs: list[LayerSpec], *, stop_early: bool = True):
    """The capture object of a model: forward hooks for torch, the backend adapter's otherwise.

    A non-torch backend puts an adapter in ``lm.extra["adapter"]`` whose ``capture(specs,
    stop_early=...)`` returns an object with the same interface as :class:`Capture`: a context
    manager with ``run(x) -> {key: array (B, ...)}``, ``counts``, ``result`` and ``expected``.
    """
    adapter = lm.extra.get("adapter")
    if adapter is not None:
        return adapter.capture(specs, stop_early=stop_early)
    prefix = lm.extra.get("prefix_tokens", getattr(lm.module, "num_prefix_tokens", 1))
    return Capture(lm.module, specs, stop_early=stop_early, seq_first=frozenset(lm.extra.get("seq_first", ())),
                   prefix_tokens=int(prefix))


def _host_dtype(t):
    import torch

    return torch.float32 if t.is_floating_point() else t.dtype


def _wanted_calls(spec: LayerSpec) -> list[int]:
    if spec.call is not None:
        return [spec.call]
    return list(range(spec.calls)) if len(spec.keys) > 1 else [spec.calls - 1]


def plan_layers(lm, layers, *, pool="flatten", recurrent: str | None = None) -> list[LayerSpec]:
    """Validate the requested layers and find, by a dry run, how often each runs and its shape."""
    import torch

    if recurrent is not None and recurrent not in RECURRENT_MODES:
        raise VisrepsError(f"recurrent={recurrent!r} is not valid; use 'all' (every time step) or 'last'")
    specs = _parse_layers(lm.layer_names(), layers, pool)
    x = lm.dummy_input()
    cap = make_capture(lm, specs, stop_early=False)
    with cap, torch.inference_mode():
        try:
            cap.run(x)
        except VisrepsError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure of the user's forward is reported the same way
            raise VisrepsError(
                f"the model's forward pass failed on a blank batch of shape {tuple(x.shape)}: {type(e).__name__}: {e}. "
                "Check that the preprocessing gives the input size the model expects (preprocessing={'resize': ..., 'crop': ...})"
            ) from e
    for spec in specs:
        n = cap.counts.get(spec.module, 0)
        spec.calls = n
        if n == 0:
            raise VisrepsError(
                f"layer {spec.module!r} never runs in the model's forward pass, so it has no output; "
                "choose a layer that `visreps layers MODEL` shows with a shape"
            )
        if spec.call is not None:
            if spec.call >= n:
                raise VisrepsError(f"layer {spec.module!r} runs {n} time(s) per pass; time steps are @t0..@t{n - 1}")
            spec.keys = (f"{spec.module}@t{spec.call}",)
        elif n > 1:
            if recurrent is None:
                raise VisrepsError(
                    f"layer {spec.module!r} runs {n} times in one forward pass (recurrence); choose "
                    f"recurrent='all' (--recurrent all: one array per time step {spec.module}@t0..@t{n - 1}) "
                    f"or recurrent='last' (--recurrent last), or name one step, e.g. {spec.module}@t{n - 1}"
                )
            spec.keys = tuple(f"{spec.module}@t{i}" for i in range(n)) if recurrent == "all" else (spec.module,)
        else:
            spec.keys = (spec.module,)
    return specs


def _dry_shapes(lm, specs: list[LayerSpec]) -> dict[str, tuple]:
    """Per-image output shape of every output key."""
    import torch

    x = lm.dummy_input()
    cap = make_capture(lm, specs)
    cap.expected = {s.module: s.calls for s in specs}
    with cap, torch.inference_mode():
        out = cap.run(x)
    return {k: tuple(v.shape[1:]) for k, v in out.items()}


# --------------------------------------------------------------------------- layer listing


def describe_layers(lm) -> list:
    """Every named module with its type, output shape for one image, and calls per pass."""
    import torch

    from .models._base import LayerInfo

    adapter = lm.extra.get("adapter")
    if adapter is not None:
        return adapter.describe_layers()
    infos: dict[str, Any] = {}
    handles = []

    def make(name):
        def hook(mod, inputs, out):
            info = infos[name]
            info.calls += 1
            t = _first_tensor(out)
            if t is not None and info.shape is None:
                info.shape = tuple(t.shape[1:])

        return hook

    for name, mod in lm.module.named_modules():
        if not name:
            continue
        infos[name] = LayerInfo(name=name, type=type(mod).__name__, shape=None, depth=name.count("."),
                                detail=mod.extra_repr())
        handles.append(mod.register_forward_hook(make(name)))
    try:
        with torch.inference_mode():
            lm.module(lm.dummy_input())
    finally:
        for h in handles:
            h.remove()
    return list(infos.values())


def format_layer_tree(infos: Sequence) -> str:
    """One line per module, indented by depth: name, output shape for one image (×calls per pass
    for modules that run more than once), and the module as PyTorch prints it (type and arguments)."""
    rows = []
    for info in infos:
        shape = "not run" if info.shape is None else "(" + ", ".join(str(s) for s in info.shape) + ")"
        if info.calls > 1:
            shape += f" ×{info.calls}"
        rows.append(("  " * info.depth + info.name, shape, f"{info.type}({info.detail})"))
    w0 = max((len(r[0]) for r in rows), default=5)
    w1 = max((len(r[1]) for r in rows), default=5)
    lines = [f"{'layer':<{w0}}  {'output shape':<{w1}}  module"]
    lines += [f"{name:<{w0}}  {shape:<{w1}}  {module}" for name, shape, module in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the batch loop


def versions() -> dict[str, str]:
    from importlib import metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("visreps", "torch", "torchvision", "timm", "numpy", "pillow", "open_clip_torch", "keras", "tensorflow",
                "tensorflow-cpu"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _set_memory_format(lm, channels_last: bool) -> None:
    import torch

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    lm.module.to(memory_format=fmt)


def _use_channels_last(lm, wanted: bool | None) -> bool:
    import torch

    if lm.backend != "torch":
        return False
    if wanted is None:
        wanted = lm.device.type in ("cpu", "cuda") and any(
            isinstance(m, torch.nn.Conv2d) for m in lm.module.modules()
        )
    if wanted:
        _set_memory_format(lm, True)
    return bool(wanted)


def _autocast(device, precision: str):
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def parse_shard(shard) -> tuple[int, int] | None:
    """``"2/4"`` or ``(2, 4)`` → (2, 4): the 2nd of 4 contiguous slices (1-based)."""
    if shard is None:
        return None
    try:
        if isinstance(shard, str):
            i, n = (int(p) for p in shard.split("/"))
        else:
            i, n = (int(p) for p in shard)
    except (ValueError, TypeError):
        raise VisrepsError(f"shard {shard!r} is not valid; write I/N, e.g. 2/4 for the second of four slices") from None
    if not (n >= 1 and 1 <= i <= n):
        raise VisrepsError(f"shard {shard!r} is not valid: I must be between 1 and N (e.g. 1/4 ... 4/4)")
    return i, n


def shard_bounds(n_images: int, i: int, n: int) -> tuple[int, int]:
    """Start and stop of the i-th (1-based) of n contiguous, near-equal slices of n_images."""
    return (i - 1) * n_images // n, i * n_images // n




@dataclass
class Job:
    """Everything one extraction needs, decided before the first batch (see :func:`prepare`)."""

    lm: Any
    items: list
    root: Path
    specs: list
    keys: list
    shapes: dict
    metadata: dict
    fmt: str
    batch_size: int
    workers: int
    precision: str
    channels_last: bool
    top_k: int | None
    skip_bad_images: bool
    start: int = 0  # first image index of this job in ``items`` (shards)
    stop: int = 0


def prepare(
    model, images, *, layers, format="npy", pool="flatten", batch_size=32, num_workers=None, device="auto",
    precision="fp32", order=None, skip_bad_images=False, recurrent=None, pretrained=True, weights=None, seed=0,
    preprocessing=None, channels_last=None, top_k=None, shard=None, command=None,
) -> Job:
    """Validate the arguments, load the model, find the images, plan the layers and build the metadata."""
    from .data import default_workers, find_images
    from .models import load_model
    from .storage import check_format, layer_filename

    if batch_size != "auto" and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1):
        raise VisrepsError(f"batch_size must be a positive integer or 'auto', got {batch_size!r}")
    if num_workers is not None and (not isinstance(num_workers, int) or num_workers < 0):
        raise VisrepsError(f"num_workers must be an integer >= 0, got {num_workers!r}")
    if precision not in PRECISIONS:
        raise VisrepsError(f"precision {precision!r} is not valid; use one of {', '.join(PRECISIONS)}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1 or top_k > 1000):
        raise VisrepsError(f"top_k must be an integer between 1 and 1000, got {top_k!r}")
    fmt = check_format(format)
    shard_ = parse_shard(shard)
    items = find_images(images, order=order)
    start, stop = (0, len(items)) if shard_ is None else shard_bounds(len(items), *shard_)
    if stop <= start:
        raise VisrepsError(f"shard {shard!r} of {len(items)} images is empty; use fewer shards")
    lm = load_model(model, pretrained=pretrained, weights=weights, seed=seed, device=device, preprocessing=preprocessing)
    if lm.backend != "torch" and precision != "fp32":
        raise VisrepsError(
            f"precision {precision!r} applies to PyTorch models; {lm.model_id} ({lm.backend}) runs in float32: use precision='fp32'"
        )
    cl = _use_channels_last(lm, channels_last)
    try:
        specs = plan_layers(lm, layers, pool=pool, recurrent=recurrent)
    except VisrepsError:
        if not cl or channels_last:
            raise
        _set_memory_format(lm, False)  # some models reshape with .view() and need contiguous tensors
        cl = False
        specs = plan_layers(lm, layers, pool=pool, recurrent=recurrent)
    shapes = _dry_shapes(lm, specs)
    keys = [k for s in specs for k in s.keys]
    shapes = {k: shapes[k] for k in keys}
    if batch_size == "auto":
        batch_size = find_batch_size(lm, specs)
    n = stop - start
    root = Path(images).expanduser().resolve()
    workers = default_workers(n, batch_size) if num_workers is None else num_workers
    list_hash = hashlib.sha256("\n".join(i.path for i in items).encode()).hexdigest()
    requested = [layers] if isinstance(layers, str) else list(layers)
    metadata: dict[str, Any] = {
        "status": "running",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": lm.model_id,
        "backend": lm.backend,
        "weights": lm.weights,
        "preprocessing": {**lm.preprocessing.to_dict(), **lm.extra.get("preprocessing_extra", {})},
        "images": {
            "root": str(root),
            "order_file": str(Path(order).resolve()) if isinstance(order, (str, os.PathLike)) else None,
            "n_found": len(items),
            "image_list_sha256": list_hash,
        },
        "layers_requested": requested,
        "layers": {
            k: {
                "module": s.module,
                "call": int(k.rpartition("@t")[2]) if "@t" in k else (s.calls - 1 if s.calls > 1 else 0),
                "calls_per_pass": s.calls,
                "pool": s.pool,
                "shape": [n, *shapes[k]],
                "dtype": "float32",
                "file": (layer_filename(k, fmt) if fmt != "hdf5" else "features.h5"),
            }
            for s in specs
            for k in s.keys
        },
        "format": fmt,
        "options": {
            "batch_size": batch_size,
            "num_workers": workers,
            "device": str(lm.device),
            "precision": precision,
            "recurrent": recurrent,
            "channels_last": cl,
            "skip_bad_images": skip_bad_images,
            "top_k": top_k,
        },
        # what must not change between the parts of one run (resume, shards): same numbers, same rows
        "options_identity": {"batch_size": batch_size, "precision": precision, "recurrent": recurrent,
                              "channels_last": cl, "skip_bad_images": skip_bad_images, "top_k": top_k,
                              "device_type": lm.device.type},
        "images_identity": {"image_list_sha256": list_hash, "n_found": len(items)},
        "versions": versions(),
        "command": command,
    }
    if shard_ is not None:
        metadata["shard"] = {"index": shard_[0], "count": shard_[1], "start": start, "stop": stop}
    return Job(lm, items, root, specs, keys, shapes, metadata, fmt, batch_size, workers, precision, cl, top_k,
               skip_bad_images, start, stop)


class _Progress:
    """How far a run has got: written (atomically) after every batch, read by ``resume``."""

    NAME = "progress.partial.json"

    def __init__(self, folder: Path | None):
        self.path = None if folder is None else folder / self.NAME

    def save(self, state: dict) -> None:
        if self.path is None:
            return
        import json

        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.path)

    def load(self) -> dict | None:
        import json

        if self.path is None or not self.path.is_file():
            return None
        return json.loads(self.path.read_text())


def _check_resumable(folder: Path, metadata: dict) -> dict:
    """The earlier run's state, after checking that it is the same run."""
    import json

    from .storage import METADATA, METADATA_PARTIAL, RUN_IDENTITY

    if (folder / METADATA).is_file():
        raise VisrepsError(f"{str(folder)!r} holds a finished extraction; nothing to resume (use --overwrite to redo it)")
    meta_path = folder / METADATA_PARTIAL
    if not meta_path.is_file():
        raise VisrepsError(f"{str(folder)!r} holds no interrupted extraction to resume; run without --resume")
    old = json.loads(meta_path.read_text())
    changed = [f for f in RUN_IDENTITY if old.get(f) != metadata.get(f)]
    if old.get("shard") != metadata.get("shard"):
        changed.append("shard")
    if changed:
        details = []
        for f in changed:
            a, b = old.get(f), metadata.get(f)
            if isinstance(a, dict) and isinstance(b, dict):
                keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                details.append(f"{f} ({', '.join(f'{k}: {a.get(k)!r} → {b.get(k)!r}' for k in keys)})")
            else:
                details.append(f"{f} ({a!r} → {b!r})")
        raise VisrepsError(
            f"cannot resume {str(folder)!r}: the run differs from the interrupted one in " + "; ".join(details)
            + ". Resume with the same model, weights, layers, options and images, or start again with --overwrite"
        )
    state = _Progress(folder).load() or {"next_image": 0, "rows": 0, "skipped": [], "txt_bytes": {}}
    return state


def is_out_of_memory(e: BaseException) -> bool:
    """Whether ``e`` is a device out-of-memory error (CUDA, MPS)."""
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(e, oom):
        return True
    return isinstance(e, RuntimeError) and "out of memory" in str(e).lower()


def _free_device_memory(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


def forward_with_backoff(cap, x):
    """Run one batch; on out-of-memory, run it in halves (recursively) instead of crashing.

    Returns the captured outputs and the model's own output (``None`` when the pass stopped early).
    """
    import torch

    try:
        outs = cap.run(x)
        return outs, cap.result
    except Exception as e:  # noqa: BLE001 - only out-of-memory is handled here
        if not is_out_of_memory(e) or len(x) == 1:
            raise
    device = getattr(x, "device", None)
    if device is not None:
        _free_device_memory(device)
    half = len(x) // 2
    a, ra = forward_with_backoff(cap, x[:half])
    b, rb = forward_with_backoff(cap, x[half:])
    outs = {k: torch.cat([torch.as_tensor(a[k]), torch.as_tensor(b[k])]) for k in a}
    result = None
    if ra is not None and rb is not None:
        result = torch.cat([_first_tensor(ra), _first_tensor(rb)])
    return outs, result


def find_batch_size(lm, specs, *, start: int = 512, minimum: int = 1) -> int:
    """The largest power-of-two batch (≤ ``start``) whose forward pass fits in device memory.

    Tries a blank batch of ``start`` inputs and halves on out-of-memory. On the CPU (where memory
    errors end the process rather than raise) it returns 32 without trying.
    """
    import torch

    if lm.backend != "torch" or lm.device.type == "cpu":
        return 32
    cap = make_capture(lm, specs)
    cap.expected = {s.module: s.calls for s in specs}
    b = start
    with cap, torch.inference_mode():
        while True:
            try:
                cap.run(lm.dummy_input(b))
                return b
            except Exception as e:  # noqa: BLE001
                if not is_out_of_memory(e):
                    raise
                _free_device_memory(lm.device)
                if b // 2 < minimum:
                    raise VisrepsError(
                        f"even a batch of {b} image(s) does not fit in {lm.device} memory; use a smaller model, "
                        "precision='fp16'/'bf16', or device='cpu'"
                    ) from e
                b //= 2


def local_batches(job: Job, items: Sequence):
    """The single-process batch source of :func:`run`: a DataLoader decodes ``items``, the model runs here.

    Yields ``(idx, bad, outs, topk, event)`` per batch, in the order of ``items``: ``idx`` the
    positions in ``items`` of the images whose rows ``outs`` holds (in order); ``bad`` the
    ``(position, error message)`` of the images that could not be read; ``outs`` ``{key: array or
    tensor}`` (``None`` when every image of the batch was bad); ``topk`` ``(indices, probabilities)``
    or ``None``; ``event`` a CUDA event to wait for before reading ``outs`` (``None`` off CUDA).
    Another engine (:mod:`visreps.distributed`) yields the same and :func:`run` writes it.
    """
    import torch

    from .data import ImageDataset, make_loader

    lm = job.lm
    dataset = ImageDataset(job.root, items, lm.transform)
    loader = make_loader(dataset, batch_size=job.batch_size, num_workers=job.workers, pin_memory=lm.device.type == "cuda")
    cap = make_capture(lm, job.specs, stop_early=job.top_k is None)
    cap.expected = {s.module: s.calls for s in job.specs}
    cuda = lm.device.type == "cuda"
    with cap:
        for idx, x, bad in loader:
            outs = topk = event = None
            if x is not None:
                with torch.inference_mode(), _autocast(lm.device, job.precision):
                    if lm.backend == "torch":
                        x = x.to(lm.device, non_blocking=True)
                        if job.channels_last:
                            x = x.contiguous(memory_format=torch.channels_last)
                    outs, result = forward_with_backoff(cap, x)
                    if job.top_k is not None:
                        topk = _topk(result, job.top_k, lm.model_id)
                    if cuda:
                        event = torch.cuda.Event()
                        event.record()
            yield idx, bad, outs, topk, event


def run(job: Job, *, out=None, overwrite: bool = False, resume: bool = False, progress: bool = True, engine=None):
    """Run a prepared job: the batch loop, streaming to ``out`` (or memory), then the finishing touches.

    ``engine(job, items)`` gives the batches (default :func:`local_batches`, see there), in the
    order of ``items``; :mod:`visreps.distributed` passes its Ray pipeline here.
    """
    from tqdm.auto import tqdm

    from .data import BAD_IMAGE_HINT
    from .storage import Features, NpyWriter, OutputWriter

    lm, keys, metadata = job.lm, job.keys, job.metadata
    n = job.stop - job.start
    state = {"next_image": 0, "rows": 0, "skipped": [], "txt_bytes": {}}
    writer = None
    if out is not None:
        folder = Path(out).expanduser()
        if resume:
            state = _check_resumable(folder, metadata)
            writer = OutputWriter(folder, job.fmt, resume=True)
            writer.open_layers(job.shapes, n, resume_state=state)
        else:
            writer = OutputWriter(folder, job.fmt, overwrite=overwrite)
            writer.write_metadata(metadata)
            writer.open_layers(job.shapes, n)
    arrays = None if writer is not None else {k: np.empty((n, *job.shapes[k]), dtype=np.float32) for k in keys}
    topk_w = None
    if job.top_k is not None:
        if writer is not None:
            topk_w = {
                "index": NpyWriter(writer.folder / ".topk_index.npy", (job.top_k,), n, np.int64, resume=resume),
                "prob": NpyWriter(writer.folder / ".topk_prob.npy", (job.top_k,), n, np.float32, resume=resume),
            }
        else:
            topk_arr = {"index": np.empty((n, job.top_k), np.int64), "prob": np.empty((n, job.top_k), np.float32)}
    tracker = _Progress(writer.folder if writer is not None else None)
    first = state["next_image"]
    row = state["rows"]
    skipped = list(state["skipped"])
    items = job.items[job.start + first : job.stop]
    batches = (engine or local_batches)(job, items)
    bar = tqdm(total=n, initial=first, unit="img", disable=not progress, desc=lm.model_id, leave=False, dynamic_ncols=True)
    done = first

    def flush(p) -> None:
        """Write one finished batch. On CUDA this is where the host waits for the device: once per batch,
        after the next batch has been queued, so copies and writes overlap the next forward pass."""
        nonlocal row, done
        nrows, outs, topk, done_after, n_skipped, event = p
        if event is not None:
            event.synchronize()
        batch = {k: np.asarray(outs[k]) for k in keys}
        if writer is not None:
            writer.write(row, batch)
        else:
            for k in keys:
                arrays[k][row : row + nrows] = batch[k]
        if topk is not None:
            i_k, p_k = (np.asarray(t) for t in topk)
            if topk_w is not None:
                topk_w["index"].write(row, i_k)
                topk_w["prob"].write(row, p_k)
            else:
                topk_arr["index"][row : row + nrows] = i_k
                topk_arr["prob"][row : row + nrows] = p_k
        row += nrows
        done = done_after
        if writer is not None:
            tracker.save({"next_image": done, "rows": row, "skipped": skipped[:n_skipped], "txt_bytes": writer.sizes()})

    pending = None
    read = first
    t0 = time.perf_counter()
    try:
        with contextlib.closing(batches):
            for idx, bad, outs, topk, event in batches:
                for i, err in bad:
                    if not job.skip_bad_images:
                        raise ImageError(f"{err}; {BAD_IMAGE_HINT}")
                    skipped.append({"path": items[i].path, "error": err})
                read += len(idx) + len(bad)
                current = None
                if outs is not None:
                    current = (len(idx), outs, topk, read, len(skipped), event)
                if pending is not None:
                    flush(pending)
                pending = current
                if pending is None:  # a batch of bad images only: nothing to wait for
                    done = read
                    if writer is not None:
                        tracker.save({"next_image": done, "rows": row, "skipped": skipped, "txt_bytes": writer.sizes()})
                bar.update(len(idx) + len(bad))
            if pending is not None:
                flush(pending)
                pending = None
    except BaseException as e:
        bar.close()
        if pending is not None:  # its forward pass finished: keep it, so a resume has less to redo
            try:
                flush(pending)
            except BaseException:  # noqa: BLE001 - the first error is the one to report
                pass
        if job.channels_last:
            _set_memory_format(lm, False)
        if writer is not None:
            writer.abort()
            for w in (topk_w or {}).values():
                w.abort()
            metadata["status"] = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
            metadata["images"]["n_done"] = done
            metadata["error"] = f"{type(e).__name__}: {e}"
            writer.write_metadata(metadata)
        if isinstance(e, KeyboardInterrupt):
            e.visreps_done = (done, n, str(writer.folder) if writer is not None else None)  # type: ignore[attr-defined]
        raise
    bar.close()
    if job.channels_last:
        _set_memory_format(lm, False)
    elapsed = time.perf_counter() - t0
    if row == 0:
        if writer is not None:
            writer.abort()
        raise ImageError(f"none of the {n} images under {str(job.root)!r} could be read; see the metadata for the errors")
    skipped_paths = {s["path"] for s in skipped}
    kept = [it for it in job.items[job.start : job.stop] if it.path not in skipped_paths]
    manifest_rows = [(it.path, it.label) for it in kept]
    metadata["status"] = "running"
    metadata.pop("error", None)
    metadata["images"].pop("n_done", None)
    metadata["images"]["n_extracted"] = row
    metadata["images"]["skipped"] = skipped
    metadata["seconds"] = round(elapsed, 3)
    for k in keys:
        metadata["layers"][k]["shape"][0] = row
    predictions = None
    if job.top_k is not None:
        if topk_w is not None:
            idx_arr = np.load(topk_w["index"].finish(row))
            prob_arr = np.load(topk_w["prob"].finish(row))
        else:
            idx_arr, prob_arr = topk_arr["index"][:row], topk_arr["prob"][:row]
        predictions = predictions_table(idx_arr, prob_arr, [p for p, _ in manifest_rows])
        metadata["extra_files"] = ["predictions.csv", "predictions.json"]
    if writer is not None:
        if predictions is not None:
            save_predictions(predictions, writer.folder)
            for w in topk_w.values():
                w.path.unlink(missing_ok=True)
        writer.finish(row, manifest_rows, metadata)
        if tracker.path is not None:
            tracker.path.unlink(missing_ok=True)
        from .storage import load_features

        res = load_features(writer.folder)
    else:
        import pandas as pd

        metadata["status"] = "complete"
        manifest = pd.DataFrame({"index": range(row), "path": [p for p, _ in manifest_rows], "label": [l for _, l in manifest_rows]})
        res = Features({k: v[:row] for k, v in arrays.items()}, manifest, metadata, None)
    res.predictions = predictions
    return res


def extract(
    model,
    images: str | os.PathLike,
    *,
    layers: Sequence[str] | str,
    out: str | os.PathLike | None = None,
    format: str = "npy",
    pool: str | Mapping[str, str] = "flatten",
    batch_size: int | str = 32,
    num_workers: int | None = None,
    device: str | None = "auto",
    precision: str = "fp32",
    order: str | os.PathLike | Sequence[str] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    shard: str | tuple[int, int] | None = None,
    skip_bad_images: bool = False,
    recurrent: str | None = None,
    progress: bool = True,
    pretrained: bool = True,
    weights: str | os.PathLike | None = None,
    seed: int = 0,
    preprocessing=None,
    channels_last: bool | None = None,
    top_k: int | None = None,
    command: str | None = None,
):
    """Extract the activations of one or more layers for every image in a folder.

    Args:
        model: a model id (``"timm:efficientnet_lite0"``), a ``torch.nn.Module`` or a
            :class:`~visreps.models.LoadedModel` (then ``pretrained/weights/seed`` are ignored).
        images: the image folder (flat or with class subfolders).
        layers: module names (``["features.2", "classifier.1"]`` or ``"features.2,classifier.1"``);
            ``name@tK`` takes time step K of a recurrent module.
        out: output folder; ``None`` keeps the arrays in memory.
        format: ``npy``, ``hdf5``, ``mat``, ``pt`` or ``txt``.
        pool: ``flatten`` (default), ``none`` (keep shape), ``avg`` or ``max`` (global pooling of
            spatial maps), ``cls``/``patch_mean`` (transformer tokens); a dict sets it per layer.
        batch_size: images per forward pass, or ``"auto"``: the largest power of two up to 512 that
            fits in GPU memory (32 on the CPU). A batch that runs out of device memory during the
            run is split in halves instead of crashing.
        num_workers: decoding processes (default: one per core, at most 8; none for tiny sets).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``.
        precision: ``fp32``, or ``fp16``/``bf16`` autocast (arrays are stored as float32).
        order: a text file (or list) of relative image paths giving the images and their order.
        overwrite: replace the results in an existing output folder.
        resume: continue an interrupted run in ``out`` from its last fully written batch, after
            checking that model, weights, layers, options and images are the same.
        shard: ``"I/N"`` or ``(I, N)``: only the I-th of N contiguous slices of the ordered
            images (join the shard folders with :func:`visreps.merge_shards`).
        skip_bad_images: skip unreadable images (recorded in the metadata) instead of stopping.
        recurrent: for modules that run several times per pass: ``all`` (one array per time step,
            ``layer@t0``...) or ``last``.
        progress: show a progress bar (images/s).
        channels_last: run convolutions in channels-last memory layout, which oneDNN/cuDNN run
            faster. ``None`` (default): on for torch models with 2-D convolutions on CPU/CUDA, off
            if the model cannot run that way. The module gets its layout back afterwards.
        top_k: also record the K most probable ImageNet-1k classes per image (the model must end
            in a 1000-way classifier); saved as ``predictions.csv``/``.json`` and in
            ``result.predictions``. The forward pass then runs to the end.

    Returns:
        :class:`~visreps.storage.Features`: ``result[layer]`` is an array with one row per image,
        ``result.manifest`` ties rows to image paths.
    """
    if resume and out is None:
        raise VisrepsError("resume=True needs the output folder of the interrupted run (out=...)")
    if resume and overwrite:
        raise VisrepsError("choose either resume (continue the interrupted run) or overwrite (start again), not both")
    job = prepare(
        model, images, layers=layers, format=format, pool=pool, batch_size=batch_size, num_workers=num_workers,
        device=device, precision=precision, order=order, skip_bad_images=skip_bad_images, recurrent=recurrent,
        pretrained=pretrained, weights=weights, seed=seed, preprocessing=preprocessing, channels_last=channels_last,
        top_k=top_k, shard=shard, command=command,
    )
    return run(job, out=out, overwrite=overwrite, resume=resume, progress=progress)


# --------------------------------------------------------------------------- ImageNet predictions


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names, in class-index order (from torchvision's weight metadata)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def _topk(result, k: int, model_id: str):
    import torch

    t = _first_tensor(result)
    if t is None or t.dim() != 2 or t.shape[1] != 1000:
        shape = None if t is None else tuple(t.shape[1:])
        raise VisrepsError(
            f"top-k class predictions need a model that ends in an ImageNet-1k classifier (1000 outputs); "
            f"{model_id} outputs {shape}"
        )
    p = torch.softmax(t.float(), dim=1)
    v, i = torch.topk(p, k, dim=1)
    nb = i.device.type == "cuda"
    return i.to("cpu", non_blocking=nb), v.to("cpu", non_blocking=nb)


def predictions_table(indices: np.ndarray, probs: np.ndarray, paths: Sequence[str]):
    """One row per image: index, path, then class_k, name_k, prob_k for k = 1..K (most probable first)."""
    import pandas as pd

    names = imagenet_classes()
    cols: dict[str, Any] = {"index": np.arange(len(paths)), "path": list(paths)}
    for r in range(indices.shape[1]):
        cols[f"class_{r + 1}"] = indices[:, r]
        cols[f"name_{r + 1}"] = [names[c] for c in indices[:, r]]
        cols[f"prob_{r + 1}"] = probs[:, r]
    return pd.DataFrame(cols)


def save_predictions(table, folder: Path) -> None:
    import json

    k = sum(1 for c in table.columns if c.startswith("class_"))
    records = [
        {
            "index": int(row["index"]),
            "path": row["path"],
            "top_k": [
                {"class": int(row[f"class_{r}"]), "name": row[f"name_{r}"], "probability": float(row[f"prob_{r}"])}
                for r in range(1, k + 1)
            ],
        }
        for _, row in table.iterrows()
    ]
    csv_tmp = folder / "predictions.csv.partial"
    table.to_csv(csv_tmp, index=False, float_format="%.6g")
    json_tmp = folder / "predictions.json.partial"
    json_tmp.write_text(json.dumps(records, indent=1), encoding="utf-8")
    os.replace(csv_tmp, folder / "predictions.csv")
    os.replace(json_tmp, folder / "predictions.json")
