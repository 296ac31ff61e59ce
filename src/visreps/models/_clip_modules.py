"""The ``torch.nn.Module`` faces of an open_clip model: one for images, one for text.

Kept apart from :mod:`visreps.models.clip` because defining a module class imports torch, and
the source module itself must stay cheap to import.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ImageTower(nn.Module):
    """``forward(images)`` is the CLIP image embedding (``encode_image``, not normalised).

    Modules: ``visual`` (the CLIP visual tower: ``visual.transformer.resblocks.3``,
    ``visual.layer4``, ``visual.attnpool``, ...) and ``embedding`` (an identity on the result of
    ``encode_image``, so the embedding can be requested as a layer).

    Args:
        clip_model: an open_clip ``CLIP``/``CustomTextCLIP`` model; its text tower is not a
            submodule here (it stays reachable through ``clip_model``).
    """

    def __init__(self, clip_model: nn.Module):
        super().__init__()
        self.visual = clip_model.visual
        self.embedding = nn.Identity()
        self._owner = (clip_model,)  # a tuple, so it is not registered as a submodule

    @property
    def clip_model(self) -> Any:
        return self._owner[0]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embedding(self.clip_model.encode_image(images))


class TextTower(nn.Module):
    """``forward(tokens)`` is the CLIP text embedding (``encode_text``, not normalised).

    Modules: every child of the CLIP model except ``visual`` under its own name
    (``transformer.resblocks.N``, ``token_embedding``, ``ln_final`` for OpenAI-style models;
    ``text.transformer.resblocks.N`` for models with a separate text tower), and
    ``text_embedding`` (an identity on the result of ``encode_text``).

    Args:
        clip_model: an open_clip ``CLIP``/``CustomTextCLIP`` model.
    """

    def __init__(self, clip_model: nn.Module):
        super().__init__()
        for name, child in clip_model.named_children():
            if name != "visual":
                self.add_module(name, child)
        self.text_embedding = nn.Identity()
        self._owner = (clip_model,)

    @property
    def clip_model(self) -> Any:
        return self._owner[0]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.text_embedding(self.clip_model.encode_text(tokens))
