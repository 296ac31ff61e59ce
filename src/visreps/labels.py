"""Display labels of feature sources (a simple version; engineer D's module replaces it at merge).

``source_label("torchvision:alexnet", kind="random", seed=1)`` is ``"alexnet (random, seed 1)"``.
"""

from __future__ import annotations

from pathlib import PurePath

__all__ = ["source_label", "unique_labels"]


def source_label(
    model_id: str, *, kind: str = "pretrained", seed: int | None = None, weights_name: str | None = None
) -> str:
    """The display label of a model with its weights: ``"alexnet (random, seed 1)"``, ``"resnet50 (pretrained)"``."""
    name = str(model_id).split(":", 1)[1] if ":" in str(model_id) else str(model_id)
    kind = str(kind or "").lower()
    if kind == "random":
        w = "random" if seed is None else f"random, seed {seed}"
    elif kind == "file":
        w = PurePath(str(weights_name)).name if weights_name else "weights file"
    else:
        w = kind
    return f"{name} ({w})" if w else name


def unique_labels(labels: list[str]) -> list[str]:
    """``labels`` with repeats numbered (``a``, ``a [2]``, ...), so no two sources share a label."""
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        seen[lab] = seen.get(lab, 0) + 1
        out.append(lab if seen[lab] == 1 else f"{lab} [{seen[lab]}]")
    return out
