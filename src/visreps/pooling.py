"""Pooling of layer outputs: the one place that turns a batch of outputs (B, ...) into rows.

Depends on nothing in visreps but its errors, so every backend (torch hooks, the Keras adapter)
pools the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import VisrepsError
from .options import POOL_MODES as POOL_MODES


def first_tensor(out):
    import torch

    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        for o in out:
            t = first_tensor(o)
            if t is not None:
                return t
    if isinstance(out, Mapping):
        for o in out.values():
            t = first_tensor(o)
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
            if prefix_tokens == 0:  # SigLIP, Swin, a timm ViT without class token: token 0 is a patch
                raise VisrepsError(
                    f"--pool cls takes the class token, but layer {layer!r} has no class token (0 prefix tokens: "
                    "every token is a patch); use --pool patch_mean (the mean of all tokens), flatten or none"
                )
            return t[:, 0]
        if t.shape[1] <= prefix_tokens:
            raise VisrepsError(
                f"layer {layer!r} has {t.shape[1]} tokens, no patch tokens after {prefix_tokens} prefix token(s)"
            )
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
