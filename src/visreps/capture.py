"""Hooks on the requested layers, one forward pass, early exit, and the forward step every engine shares.

How a forward pass is captured:

1. A dry run on one blank image counts how often each requested module runs per forward pass
   (recurrent modules run several times) and records its output shape (:func:`plan_layers`). A
   PyTorch model makes it on the meta device, where nothing is computed; a model that cannot run
   there (an operation without a meta kernel, a branch on a value) makes it for real.
2. During extraction, forward hooks copy each requested output (after tuple selection and
   pooling/flattening, :mod:`visreps.pooling`) to the host. Once every requested module has run
   as often as the dry run said, the hook raises an internal signal that ends the forward pass:
   modules after the last requested layer never run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import LayerNotFoundError, VisrepsError, closest_hint
from .models._imagenet import imagenet_classes, model_classes, predictions_table, top_classes  # noqa: F401 (re-export)
from .options import PRECISIONS as PRECISIONS
from .options import RECURRENT_MODES
from .pooling import POOL_MODES, first_tensor, pool_output

if TYPE_CHECKING:
    from .models import BackendCapture, LoadedModel


class _StopForward(Exception):
    """Raised by the last hook to end the forward pass early."""


# --------------------------------------------------------------------------- output handling


@dataclass
class LayerSpec:
    """A requested layer: module name, which call(s), how to pool."""

    module: str
    pool: str
    call: int | None = None  # a single time step asked for with name@tK
    keys: tuple[str, ...] = ()  # output array names, set after the dry run
    calls: int = 0  # how often the module runs per forward pass
    shapes: dict[str, tuple] = field(default_factory=dict)  # per-image shape of each key, from the dry run


def parse_layers(module_names: Sequence[str], layers, pool) -> list[LayerSpec]:
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
            raise LayerNotFoundError(
                f"model has no layer {name!r}{closest_hint(name, module_names)} (list them with `visreps layers MODEL`)"
            )
        if spec in seen:
            raise VisrepsError(f"layer {spec!r} is requested twice")
        seen.add(spec)
        mode = pool.get(spec, pool.get(name, "flatten")) if isinstance(pool, Mapping) else pool
        if mode not in POOL_MODES:
            raise VisrepsError(
                f"pool mode {mode!r} for layer {spec!r} is not valid; use one of {', '.join(POOL_MODES)}"
            )
        specs.append(LayerSpec(name, mode, call))
    if isinstance(pool, Mapping):
        unknown = set(pool) - {s for s in layers} - {s.module for s in specs}
        if unknown:
            raise VisrepsError(f"pool given for layer(s) not requested: {sorted(unknown)}")
    return specs


class Capture:
    """Forward hooks that collect the requested outputs of one forward pass and stop early."""

    def __init__(
        self,
        module,
        specs: list[LayerSpec],
        *,
        expected: dict[str, int] | None = None,
        stop_early: bool = True,
        seq_first: frozenset = frozenset(),
        prefix_tokens: int = 1,
        reducers: Mapping[str, Any] | None = None,
    ):
        """``expected``: how often each requested module runs per pass (from :func:`plan_layers`);
        ``None`` for the dry run that finds it, which records shapes and never stops early.
        ``reducers``: per output key, a function that reduces the layer's output on the CPU right in the
        hook (:func:`visreps.reduce.hook_reducer`), so the raw output is never copied."""
        self.reducers = dict(reducers or {})
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
        self.handles: list = []
        self.expected = expected
        self.result: Any = None

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
            t = first_tensor(out)
            if t is None:
                raise VisrepsError(
                    f"layer {name!r} returned {type(out).__name__} without any tensor; choose another layer"
                )
            if name in self.seq_first and t.dim() == 3:
                t = t.transpose(0, 1)
            for spec in self.by_module[name]:
                if self.expected is None:  # dry run: keep the shapes of each call
                    self.outputs.setdefault(f"{spec.module}#{call}#{id(spec)}", []).append(
                        pool_output(t, spec.pool, name, self.prefix_tokens).shape
                    )
                    continue
                for key, wanted in zip(spec.keys, wanted_calls(spec)):
                    reduce = self.reducers.get(key)
                    if wanted == call and reduce is not None and t.device.type == "cpu":
                        src = t if spec.pool == "flatten" else pool_output(t, spec.pool, name, self.prefix_tokens)
                        self.outputs[key] = reduce(src.detach())  # read in place, before later in-place ops
                    elif wanted == call:
                        p = pool_output(t, spec.pool, name, self.prefix_tokens)
                        if p.device.type == "cuda":  # into pinned memory, without waiting for the device
                            self.outputs[key] = p.detach().to("cpu", dtype=host_dtype(p), non_blocking=True)
                        else:  # a copy: later in-place ops (ReLU(inplace=True)) must not change it
                            self.outputs[key] = p.detach().to("cpu", dtype=host_dtype(p), copy=True)
            if (
                self.expected is not None
                and self.stop_early
                and all(self.counts.get(m, 0) >= n for m, n in self.expected.items())
            ):
                raise _StopForward

        return hook

    def run(self, x, forward: Any = None):
        """Run one forward pass; returns the captured outputs (and keeps the model's own in ``.result``).
        ``forward`` replaces ``self.module`` as the callable that takes ``x`` (the meta dry run's)."""
        self.counts = {}
        self.outputs = {}
        self.result = None
        try:
            self.result = (forward or self.module)(x)
        except _StopForward:
            pass
        return self.outputs


def make_capture(
    lm: LoadedModel,
    specs: list[LayerSpec],
    *,
    stop_early: bool = True,
    dry_run: bool = False,
    reducers: Mapping[str, Any] | None = None,
) -> BackendCapture:
    """The capture object of a model: the backend adapter's for a non-torch model, forward hooks otherwise.

    Unless ``dry_run``, the calls per pass that :func:`plan_layers` found (``spec.calls``) tell the
    capture when the forward pass may stop. A non-torch model's ``lm.adapter`` (a
    :class:`~visreps.models.Backend`) returns an object with the interface of :class:`Capture`
    (:class:`~visreps.models.BackendCapture`): a context manager with ``run(x) -> {key: array (B, ...)}``,
    ``counts`` and ``result``. A torch model gets a :class:`Capture` built from its typed fields
    (``seq_first``, ``prefix_tokens``): the models never import this module.
    """
    expected = None if dry_run else {s.module: s.calls for s in specs}
    if lm.adapter is not None:
        return lm.adapter.capture(specs, expected=expected, stop_early=stop_early)
    return Capture(
        lm.module,
        specs,
        expected=expected,
        stop_early=stop_early,
        seq_first=lm.seq_first,
        prefix_tokens=lm.token_prefix,
        reducers=reducers,
    )


def host_dtype(t):
    import torch

    return torch.float32 if t.is_floating_point() else t.dtype


def wanted_calls(spec: LayerSpec) -> list[int]:
    if spec.call is not None:
        return [spec.call]
    return list(range(spec.calls)) if len(spec.keys) > 1 else [spec.calls - 1]


def resolve_layers(lm, layers) -> list[str]:
    """``layers`` with glob patterns and ``blocks`` expanded to layer names (:mod:`visreps.models._select`)."""
    from .models._select import expand_layers

    return expand_layers(lm.layer_names(), layers, lm.module if lm.adapter is None else None, lm.model_id)


def plan_layers(
    lm, layers, *, pool: str | Mapping[str, str] = "flatten", recurrent: str | None = None
) -> list[LayerSpec]:
    """Validate the requested layers and find, by a dry run, how often each runs and its shape."""
    import torch

    if recurrent is not None and recurrent not in RECURRENT_MODES:
        raise VisrepsError(f"recurrent={recurrent!r} is not valid; use 'all' (every time step) or 'last'")
    specs = parse_layers(lm.layer_names(), resolve_layers(lm, layers), pool)
    x = lm.dummy_input()
    cap = make_capture(lm, specs, stop_early=False, dry_run=True)
    with cap, torch.inference_mode():
        try:
            if not (isinstance(cap, Capture) and meta_dry_run(cap, x)):
                cap.run(x)
        except VisrepsError:
            raise
        except Exception as e:
            raise VisrepsError(
                f"the model's forward pass failed on a blank batch of shape {tuple(x.shape)}: {type(e).__name__}: {e}. "
                "Check that the preprocessing gives the input size the model expects "
                "(preprocessing={'resize': ..., 'crop': ...})"
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
        recorded = getattr(cap, "outputs", {})
        seen = [recorded.get(f"{spec.module}#{c}#{id(spec)}") for c in wanted_calls(spec)]
        if all(v is not None for v in seen):  # the torch dry run records them (an adapter's may not run the model)
            spec.shapes = {k: tuple(v[0][1:]) for k, v in zip(spec.keys, seen) if v is not None}
    return specs


#: below this many parameters the real dry run is as fast as the meta one (about 0.03 s here), so it is made for real
META_MIN_PARAMETERS = 10_000_000


def meta_dry_run(cap: Capture, x: Any) -> bool:
    """The dry run of a torch model on the meta device: every parameter and buffer, and the blank batch,
    replaced by meta tensors (:func:`torch.func.functional_call`), so the hooks see each call and each
    output shape while nothing is computed (a ViT-B/16 at 224 px: 0.07 s instead of 0.23 s on 2 cores). Models
    under :data:`META_MIN_PARAMETERS` parameters run for real (as fast, and nothing to gain).

    Returns False, with the capture reset, when the model cannot run that way (an operation without a
    meta kernel, a branch on a tensor's value, a tensor kept outside the parameters and buffers); the
    caller then makes the dry run for real, which also gives any genuine error its usual message.
    """
    import torch
    from torch.func import functional_call

    module = cap.module
    if not isinstance(x, torch.Tensor) or sum(p.numel() for p in module.parameters()) < META_MIN_PARAMETERS:
        return False
    state = {name: torch.empty_like(t, device="meta") for name, t in module.named_parameters()}
    state.update((name, torch.empty_like(t, device="meta")) for name, t in module.named_buffers())
    try:
        cap.run(x.to("meta"), forward=lambda inp: functional_call(module, state, (inp,)))
    except Exception:  # noqa: BLE001 - any failure on meta means: run it for real
        cap.counts, cap.outputs, cap.result = {}, {}, None
        return False
    cap.result = None  # meta tensors: nothing to keep
    return True


def dry_shapes(lm, specs: list[LayerSpec]) -> dict[str, tuple]:
    """Per-image output shape of every output key (those :func:`plan_layers` recorded, else from a dry run)."""
    import torch

    if all(set(spec.keys) <= set(spec.shapes) for spec in specs):
        return {k: spec.shapes[k] for spec in specs for k in spec.keys}
    x = lm.dummy_input()
    cap = make_capture(lm, specs)
    with cap, torch.inference_mode():
        out = cap.run(x)
    return {k: tuple(v.shape[1:]) for k, v in out.items()}


def check_topk(lm, specs: list[LayerSpec], k: int) -> None:
    """Refuse top-k before anything is written: the model's classes are unknown, or its output is not
    one score per class (1000 for ImageNet-1k, ``len(lm.class_names)`` for a model that names its own)."""
    import torch

    names = model_classes(lm)
    if k > len(names):
        raise VisrepsError(f"top_k={k} is more than the {len(names)} classes of {lm.model_id}")
    cap = make_capture(lm, specs, stop_early=False)
    with cap, torch.inference_mode():
        cap.run(lm.dummy_input())
    top_classes(cap.result, k, lm.model_id, n_classes=len(names))


# --------------------------------------------------------------------------- layer listing


def set_memory_format(lm, channels_last: bool) -> None:
    import torch

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    lm.module.to(memory_format=fmt)


def use_channels_last(lm, wanted: bool | None) -> bool:
    import torch

    if lm.backend != "torch":
        return False
    if wanted is None:
        wanted = lm.device.type in ("cpu", "cuda") and any(isinstance(m, torch.nn.Conv2d) for m in lm.module.modules())
    if wanted:
        set_memory_format(lm, True)
    return bool(wanted)


def autocast(device, precision: str):
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def is_out_of_memory(e: BaseException) -> bool:
    """Whether ``e`` is a device out-of-memory error (CUDA, MPS)."""
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(e, oom):
        return True
    return isinstance(e, RuntimeError) and "out of memory" in str(e).lower()


def free_device_memory(device) -> None:
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
    except Exception as e:
        if not is_out_of_memory(e) or len(x) == 1:
            raise
    device = getattr(x, "device", None)
    if device is not None:
        free_device_memory(device)
    half = len(x) // 2
    a, ra = forward_with_backoff(cap, x[:half])
    b, rb = forward_with_backoff(cap, x[half:])
    outs = {k: torch.cat([torch.as_tensor(a[k]), torch.as_tensor(b[k])]) for k in a}
    result = None
    ta = first_tensor(ra) if ra is not None else None
    tb = first_tensor(rb) if rb is not None else None
    if ta is not None and tb is not None:
        result = torch.cat([ta, tb])
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
    b = start
    with cap, torch.inference_mode():
        while True:
            try:
                cap.run(lm.dummy_input(b))
                return b
            except Exception as e:
                if not is_out_of_memory(e):
                    raise
                free_device_memory(lm.device)
                if b // 2 < minimum:
                    raise VisrepsError(
                        f"even a batch of {b} image(s) does not fit in {lm.device} memory; use a smaller model, "
                        "precision='fp16'/'bf16', or device='cpu'"
                    ) from e
                b //= 2
