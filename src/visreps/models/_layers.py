"""Layer listing: every named module of a torch model with its type and output shape for one image."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..pooling import first_tensor


@dataclass
class LayerInfo:
    name: str
    type: str
    shape: tuple | None  # output shape for one image; None if the module did not run
    calls: int = 0
    depth: int = 0
    detail: str = ""  # the module's own description (``extra_repr``), e.g. "64, 128, kernel_size=(1, 1)"


def describe_layers(lm) -> list:
    """Every named module with its type, output shape for one image, and calls per pass."""
    import torch

    adapter = lm.extra.get("adapter")
    if adapter is not None:
        return adapter.describe_layers()
    infos: dict[str, Any] = {}
    handles = []

    def make(name):
        def hook(mod, inputs, out):
            info = infos[name]
            info.calls += 1
            t = first_tensor(out)
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
