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
import json
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


def _check_topk(lm, specs: list[LayerSpec], k: int) -> None:
    """Refuse top-k before anything is written when the model does not end in a 1000-way classifier."""
    import torch

    cap = make_capture(lm, specs, stop_early=False)
    cap.expected = {s.module: s.calls for s in specs}
    with cap, torch.inference_mode():
        cap.run(lm.dummy_input())
    _topk(cap.result, k, lm.model_id)


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
    preprocessing=None, channels_last=None, top_k=None, shard=None, command=None, allow_pickle=False,
) -> Job:
    """Validate the arguments, load the model, find the images, plan the layers and build the metadata.

    ``allow_pickle`` is :func:`~visreps.models.load_model`'s opt-in to unpickling a whole model file.
    """
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
    lm = load_model(model, pretrained=pretrained, weights=weights, seed=seed, device=device,
                    preprocessing=preprocessing, allow_pickle=allow_pickle)
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
    if top_k is not None:
        _check_topk(lm, specs, top_k)
    keys = [k for s in specs for k in s.keys]
    shapes = {k: shapes[k] for k in keys}
    if batch_size == "auto":
        batch_size = find_batch_size(lm, specs)
    n = stop - start
    root = Path(images).expanduser().resolve()
    workers = default_workers(n, batch_size) if num_workers is None else num_workers
    list_hash = hashlib.sha256("\n".join(i.path for i in items).encode("utf-8", "surrogateescape")).hexdigest()
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


def _check_resumable(sink, metadata: dict) -> dict:
    """The earlier run's progress, after checking that it is the same run."""
    from .storage import METADATA, METADATA_PARTIAL, RUN_IDENTITY

    folder = sink.folder
    if (folder / METADATA).is_file():
        raise VisrepsError(f"{str(folder)!r} holds a finished extraction; nothing to resume (use --overwrite to redo it)")
    meta_path = folder / METADATA_PARTIAL
    if not meta_path.is_file():
        raise VisrepsError(f"{str(folder)!r} holds no interrupted extraction to resume; run without --resume")
    try:
        old = json.loads(meta_path.read_text(encoding="utf-8"))
    except ValueError:
        raise VisrepsError(f"cannot resume: {str(meta_path)!r} is damaged; start again with --overwrite") from None
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
    return sink.load_checkpoint() or {"next_image": 0, "rows": 0, "skipped": [], "txt_bytes": {}}


@contextlib.contextmanager
def _uninterruptible():
    """Hold Ctrl-C (SIGINT) back while a batch is written and its progress recorded, then deliver it.

    A batch's rows and the progress record that counts them are then one step: an interrupt lands
    before or after it, never between. Only the main thread can own signal handlers; elsewhere
    (and where SIGINT is ignored) this does nothing.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    except (ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            if callable(previous) and previous is not signal.default_int_handler:
                previous(signal.SIGINT, None)
            elif previous is not signal.SIG_IGN:
                raise KeyboardInterrupt


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


@dataclass
class Batch:
    """One batch as an engine yields it to :func:`run`, in the order of the images.

    Attributes:
        idx: positions (in the engine's ``items``) of the images whose rows ``outs`` holds, in order.
        bad: ``(position, error message)`` of the images that could not be read.
        outs: ``{key: array or tensor (len(idx), ...)}``; ``None`` when every image was bad.
        topk: ``(indices, probabilities)`` of the top-k classes, or ``None``.
        event: a CUDA event to wait for before reading ``outs`` (``None`` off CUDA).
        digests: the content hashes of the good images (:func:`visreps.data.content_hash`), as
            bytes or a ``(len(idx), 16)`` uint8 array.
    """

    idx: list
    bad: list
    outs: Any = None
    topk: Any = None
    event: Any = None
    digests: Any = ()


def local_batches(job: Job, items: Sequence):
    """The single-process batch source of :func:`run`: a DataLoader decodes ``items``, the model runs here.

    Yields one :class:`Batch` per batch, in the order of ``items``. Another engine
    (:mod:`visreps.distributed`) yields the same and :func:`run` writes it.
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
        for idx, x, bad, digests in loader:
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
            yield Batch(idx, bad, outs, topk, event, digests)


def _digest_rows(digests, n: int) -> np.ndarray:
    from .data import DIGEST_SIZE

    if isinstance(digests, np.ndarray):
        return digests.astype(np.uint8, copy=False).reshape(n, DIGEST_SIZE)
    out = np.zeros((n, DIGEST_SIZE), np.uint8)
    for j, d in enumerate(digests):
        if d:
            out[j] = np.frombuffer(d, np.uint8)
    return out


def _aux_shapes(job: Job) -> dict:
    from .data import DIGEST_SIZE

    aux = {"blake2b": ((DIGEST_SIZE,), np.uint8)}
    if job.top_k is not None:
        aux["topk_index"] = ((job.top_k,), np.int64)
        aux["topk_prob"] = ((job.top_k,), np.float32)
    return aux


def _none_readable(job: Job, skipped: list, folder) -> ImageError:
    n = job.stop - job.start
    shown = "; ".join(f"{s['path']}: {s['error']}" for s in skipped[:3])
    more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    where = f" (all listed in {str(Path(folder) / 'metadata.partial.json')!r})" if folder is not None else ""
    return ImageError(
        f"none of the {n} images under {str(job.root)!r} could be read{where}: {shown}{more}; "
        "check that these are image files (jpg, png, ...) and not empty or truncated"
    )


def _write_error(e: BaseException, sink, job: Job, done: int) -> VisrepsError | None:
    """A clear error for a failed write to the output folder (disk full, permissions), else ``None``."""
    from .storage import _is_disk_full, human_bytes

    folder = getattr(sink, "folder", None)
    if folder is None or not isinstance(e, (OSError, RuntimeError)) or isinstance(e, VisrepsError):
        return None
    n = job.stop - job.start
    if _is_disk_full(e, folder):
        import shutil

        try:
            free = human_bytes(shutil.disk_usage(folder).free)
        except OSError:
            free = "unknown"
        return VisrepsError(
            f"no space left on the device of {str(folder)!r} after {done} of {n} images: the arrays need "
            f"{human_bytes(sink.bytes_needed)} in all and {free} is free; free space (or choose another --out and "
            "start again), then continue with the same command plus --resume"
        )
    if isinstance(e, OSError) and e.filename is not None:
        return VisrepsError(
            f"cannot write {str(e.filename)!r}: {e.strerror or e}; check the output folder {str(folder)!r} "
            "(space, permissions), then continue with the same command plus --resume"
        )
    return None


def run(job: Job, *, out=None, overwrite: bool = False, resume: bool = False, progress: bool = True, engine=None):
    """Run a prepared job: the batch loop, streaming into a sink (folder or memory), then the finishing touches.

    ``engine(job, items)`` gives the batches (default :func:`local_batches`, see there), in the
    order of ``items``; :mod:`visreps.distributed` passes its Ray pipeline here.

    Each batch's rows and the progress record that counts them are written as one step that
    Ctrl-C cannot split (:func:`_uninterruptible`); a resumed run starts after the last recorded
    batch and overwrites anything written after it.
    """
    from tqdm.auto import tqdm

    from .data import BAD_IMAGE_HINT
    from .storage import PREDICTION_FILES, MemorySink, OutputWriter

    lm, keys, metadata = job.lm, job.keys, job.metadata
    n = job.stop - job.start
    state = {"next_image": 0, "rows": 0, "skipped": [], "txt_bytes": {}}
    if out is not None:
        sink = OutputWriter(out, job.fmt, overwrite=overwrite, resume=resume)
        if resume:
            state = _check_resumable(sink, metadata)
    else:
        sink = MemorySink()
    extra = list(PREDICTION_FILES) if job.top_k is not None else []
    try:
        sink.begin(metadata, job.shapes, n, aux=_aux_shapes(job), extra_files=extra,
                   resume_state=state if resume else None)
    except (OSError, RuntimeError) as e:
        wrapped = _write_error(e, sink, job, state["next_image"])
        if wrapped is None:
            raise
        raise wrapped from None
    first = state["next_image"]
    row = state["rows"]
    skipped = list(state["skipped"])
    sink.last_state = dict(state)
    items = job.items[job.start + first : job.stop]
    batches = (engine or local_batches)(job, items)
    bar = tqdm(total=n, initial=first, unit="img", disable=not progress, desc=lm.model_id, leave=False, dynamic_ncols=True)

    def flush(p) -> None:
        """Write one finished batch and record it. On CUDA this is where the host waits for the device:
        once per batch, after the next batch has been queued, so copies and writes overlap the next pass."""
        nonlocal row
        nrows, batch, done_after, n_skipped, event = p
        if event is not None:
            event.synchronize()
        arrays = {k: np.asarray(batch.outs[k]) for k in keys}
        arrays["blake2b"] = _digest_rows(batch.digests, nrows)
        if batch.topk is not None:
            arrays["topk_index"], arrays["topk_prob"] = (np.asarray(t) for t in batch.topk)
        with _uninterruptible():
            sink.write(row, arrays)
            sink.checkpoint({"next_image": done_after, "rows": row + nrows, "skipped": skipped[:n_skipped]})
            row += nrows

    pending = None
    read = first
    t0 = time.perf_counter()
    try:
        with contextlib.closing(batches):
            for batch in batches:
                for i, err in batch.bad:
                    if not job.skip_bad_images:
                        raise ImageError(f"{err}; {BAD_IMAGE_HINT}")
                    skipped.append({"path": items[i].path, "error": err})
                read += len(batch.idx) + len(batch.bad)
                current = (len(batch.idx), batch, read, len(skipped), batch.event) if batch.outs is not None else None
                if pending is not None:
                    p, pending = pending, None  # taken before it is written: never written twice
                    flush(p)
                pending = current
                if pending is None:  # a batch of bad images only: nothing to wait for
                    with _uninterruptible():
                        sink.checkpoint({"next_image": read, "rows": row, "skipped": list(skipped)})
                bar.update(len(batch.idx) + len(batch.bad))
            if pending is not None:
                p, pending = pending, None
                flush(p)
    except BaseException as e:
        bar.close()
        if pending is not None and not isinstance(e, OSError):  # its forward pass finished: keep it
            p, pending = pending, None
            try:
                flush(p)
            except BaseException:  # noqa: BLE001 - the first error is the one to report
                pass
        if job.channels_last:
            _set_memory_format(lm, False)
        done = (sink.last_state or {}).get("next_image", first)
        wrapped = _write_error(e, sink, job, done)
        metadata["status"] = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        metadata["images"]["n_done"] = done
        metadata["images"]["rows_written"] = (sink.last_state or {}).get("rows", row)
        metadata["images"]["skipped"] = skipped
        metadata["error"] = f"{type(e).__name__}: {e}"
        sink.abort(metadata)
        if isinstance(e, KeyboardInterrupt):
            e.visreps_done = (done, n, str(sink.folder) if sink.folder is not None else None)  # type: ignore[attr-defined]
        if wrapped is not None:
            raise wrapped from None
        raise
    bar.close()
    if job.channels_last:
        _set_memory_format(lm, False)
    elapsed = time.perf_counter() - t0
    if row == 0:
        err = _none_readable(job, skipped, sink.folder)
        metadata["status"] = "failed"
        metadata["images"]["n_done"] = n
        metadata["images"]["rows_written"] = 0
        metadata["images"]["skipped"] = skipped
        metadata["error"] = str(err)
        sink.abort(metadata)
        raise err
    try:
        with _uninterruptible():  # renames and the final record: Ctrl-C waits for them
            return _finish(job, sink, row, skipped, elapsed)
    except (OSError, RuntimeError) as e:
        wrapped = _write_error(e, sink, job, n)
        if wrapped is None:
            raise
        sink.abort()
        raise wrapped from None


def _finish(job: Job, sink, row: int, skipped: list, elapsed: float):
    """Manifest rows, predictions and metadata of a finished loop; the sink's files under their final names."""
    from .storage import Features, load_features, save_predictions

    metadata = job.metadata
    skipped_paths = {s["path"] for s in skipped}
    kept = [it for it in job.items[job.start : job.stop] if it.path not in skipped_paths]
    if len(kept) != row:
        raise VisrepsError(f"internal error: {row} rows written for {len(kept)} images; please report this")
    aux = sink.aux_arrays(row)
    hashes = [bytes(h).hex() for h in aux["blake2b"]]
    manifest_rows = [(it.path, it.label, h) for it, h in zip(kept, hashes)]
    metadata["status"] = "running"
    metadata.pop("error", None)
    metadata["images"].pop("n_done", None)
    metadata["images"].pop("rows_written", None)
    metadata["images"]["n_extracted"] = row
    metadata["images"]["skipped"] = skipped
    metadata["seconds"] = round(elapsed, 3)
    for k in job.keys:
        metadata["layers"][k]["shape"][0] = row
    predictions = None
    if job.top_k is not None:
        predictions = predictions_table(aux["topk_index"], aux["topk_prob"], [p for p, _, _ in manifest_rows])
        metadata["extra_files"] = ["predictions.csv", "predictions.json"]
    if sink.folder is None:
        import pandas as pd

        metadata["status"] = "complete"
        manifest = pd.DataFrame({"index": range(row), "path": [r[0] for r in manifest_rows],
                                 "label": [r[1] for r in manifest_rows], "blake2b": hashes})
        return Features({k: v[:row] for k, v in sink.arrays.items()}, manifest, metadata, None, predictions)
    if predictions is not None:
        save_predictions(predictions, sink.folder)
    sink.finish(row, manifest_rows, metadata)
    return load_features(sink.folder)


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
    allow_pickle: bool = False,
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
        allow_pickle: allow unpickling a whole model file (``"file:model.pt"``) or a weights file
            holding Python objects besides tensors, which can run arbitrary code: only for files you
            trust (see :func:`~visreps.models.load_model`).

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
        top_k=top_k, shard=shard, command=command, allow_pickle=allow_pickle,
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
