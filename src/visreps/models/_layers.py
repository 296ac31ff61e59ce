"""Layer listing: every named module of a torch model with its type and output shape for one image."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..pooling import first_tensor


@dataclass
class LayerInfo:
    name: str
    type: str
    shape: tuple[int | None, ...] | None  # output shape for one image; None if the module did not run
    calls: int = 0
    depth: int = 0
    detail: str = ""  # the module's own description (``extra_repr``), e.g. "64, 128, kernel_size=(1, 1)"


def describe_module(module: Any, x: Any) -> list[LayerInfo]:
    """Every named module of a torch ``module`` with its type, output shape for one input, and calls
    per pass, from one forward pass of the blank batch ``x``."""
    import torch

    infos: dict[str, LayerInfo] = {}
    handles = []

    def make(name: str) -> Callable[..., None]:
        def hook(mod: Any, inputs: Any, out: Any) -> None:
            info = infos[name]
            info.calls += 1
            t = first_tensor(out)
            if t is not None and info.shape is None:
                info.shape = tuple(t.shape[1:])

        return hook

    for name, mod in module.named_modules():
        if not name:
            continue
        infos[name] = LayerInfo(
            name=name, type=type(mod).__name__, shape=None, depth=name.count("."), detail=mod.extra_repr()
        )
        handles.append(mod.register_forward_hook(make(name)))
    try:
        with torch.inference_mode():
            module(x)
    finally:
        for h in handles:
            h.remove()
    return list(infos.values())


def format_layer_tree(infos: Sequence[LayerInfo]) -> str:
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
