"""Class predictions (``--top-k``): the ImageNet-1k class names, a model's own class names, the top-k of its
output and the predictions table (one row per image: index, path, then ``class_k``, ``name_k``, ``prob_k``).

:mod:`visreps.capture` re-exports these names (their old home).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import VisrepsError
from ..pooling import first_tensor


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names, in class-index order (from torchvision's weight metadata)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def model_classes(lm) -> list[str]:
    """The names of ``lm``'s output classes: ``lm.class_names``, ImageNet-1k's when it is ``None``.

    Raises:
        VisrepsError: the model's classes are not known (``class_names == ()``).
    """
    names = getattr(lm, "class_names", None)
    if names is None:
        return imagenet_classes()
    if not names:
        raise VisrepsError(
            f"top-k class predictions need the names of the model's classes, and those of {lm.model_id} are not "
            "known (they are not ImageNet-1k's); leave out top-k (--top-k) and extract the classifier layer instead"
        )
    return list(names)


def top_classes(result, k: int, model_id: str, n_classes: int = 1000):
    """Indices and softmax probabilities of the ``k`` most probable of ``n_classes`` classes, most probable first."""
    import torch

    t = first_tensor(result)
    if t is None or t.dim() != 2 or t.shape[1] != n_classes:
        shape = None if t is None else tuple(t.shape[1:])
        what = "an ImageNet-1k classifier (1000 outputs)" if n_classes == 1000 else f"{n_classes} class scores"
        raise VisrepsError(f"top-k class predictions need a model that ends in {what}; {model_id} outputs {shape}")
    p = torch.softmax(t.float(), dim=1)
    v, i = torch.topk(p, k, dim=1)
    nb = i.device.type == "cuda"
    return i.to("cpu", non_blocking=nb), v.to("cpu", non_blocking=nb)


def predictions_table(indices: np.ndarray, probs: np.ndarray, paths: Sequence[str], names: Sequence[str] | None = None):
    """One row per image: index, path, then class_k, name_k, prob_k for k = 1..K (most probable first).

    ``names``: the class names (default: ImageNet-1k's; see :func:`model_classes`).
    """
    import pandas as pd

    names = list(names) if names is not None else imagenet_classes()
    cols: dict[str, Any] = {"index": np.arange(len(paths)), "path": list(paths)}
    for r in range(indices.shape[1]):
        cols[f"class_{r + 1}"] = indices[:, r]
        cols[f"name_{r + 1}"] = [names[c] for c in indices[:, r]]
        cols[f"prob_{r + 1}"] = probs[:, r]
    return pd.DataFrame(cols)
