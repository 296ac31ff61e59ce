"""Every pretrained pair of open_clip: ``openclip:<arch>/<tag>`` (``openclip:ViT-B-32/laion2b_s34b_b79k``).

Names are ``arch/tag`` for each ``(arch, tag)`` of ``open_clip.list_pretrained()``; ``arch`` alone
(any of ``open_clip.list_models()``) builds the architecture with random (or file) weights only.
Tags are matched as open_clip matches them (case-insensitive, ``-`` = ``_``).

Loading, layers, preprocessing and text are those of :mod:`visreps.models.clip`: the tag decides the
preprocessing and QuickGELU (``openclip:ViT-B-32/openai`` is ``clip:ViT-B-32``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import ModelNotFoundError, WeightsError, closest_hint
from ._base import LoadedModel
from ._card import ModelCard
from ._registry import register_source
from .clip import build, find_checkpoint, import_open_clip

#: the catalogue card of every openclip model (the architecture is the model's name)
CARD = ModelCard(family="OpenCLIP", architecture="", objective="contrastive image-text",
                 training_data="per pretrained tag (LAION-400M/2B, DataComp, ...)",
                 weights_licence="per pretrained tag (mostly MIT)",
                 paper="Cherti et al., Reproducible scaling laws for contrastive language-image learning, "
                 "CVPR 2023")  # fmt: skip


@lru_cache(maxsize=1)
def list_names() -> list[str]:
    """``arch/tag`` for every pretrained pair of open_clip."""
    oc = import_open_clip()
    return sorted(f"{arch}/{tag}" for arch, tag in oc.list_pretrained())


def split_name(name: str) -> tuple[str, str | None]:
    """``"ViT-B-32/LAION2B-s34b-b79k"`` → ``("ViT-B-32", "laion2b_s34b_b79k")``;
    ``"ViT-B-32"`` → ``("ViT-B-32", None)``.

    Raises:
        ModelNotFoundError: unknown architecture or tag; the message lists the closest choices.
    """
    oc = import_open_clip()
    arch, _, tag = name.strip().partition("/")
    archs = oc.list_models()
    if arch not in archs:
        hint = closest_hint(arch, archs, prefix="openclip:")
        raise ModelNotFoundError(f"open_clip has no architecture {arch!r}{hint} (see `visreps models openclip:`)")
    if not tag:
        return arch, None
    tags = oc.list_pretrained_tags_by_model(arch)
    if tag in tags:
        return arch, tag
    clean = tag.lower().replace("-", "_")
    if clean in tags:
        return arch, clean
    if not tags:
        raise ModelNotFoundError(
            f"open_clip has no pretrained weights for {arch}; use openclip:{arch} with random weights (--random)"
        )
    listed = ", ".join(f"openclip:{arch}/{t}" for t in tags)
    hint = closest_hint(tag, tags, prefix=f"openclip:{arch}/") or f"; choose one of: {listed}"
    raise ModelNotFoundError(f"open_clip has no weights {tag!r} for {arch}{hint}")


def check_name(name: str) -> None:
    """Raise :class:`~visreps.errors.ModelNotFoundError` unless ``name`` is ``arch/tag`` or a bare ``arch``."""
    split_name(name)


def available_offline(name: str) -> bool:
    """Whether the checkpoint of ``arch/tag`` is already in the cache (a bare arch has none)."""
    try:
        arch, tag = split_name(name)
    except ModelNotFoundError:
        return False
    return tag is not None and find_checkpoint(arch, tag) is not None


@register_source("openclip", optional=True)
def load(
    name: str, *, pretrained: bool = True, weights: str | None = None, seed: int = 0, device: Any = None
) -> LoadedModel:
    """Load ``openclip:<arch>/<tag>`` (pretrained, random or a file) or ``openclip:<arch>`` (random or a file).

    Args:
        name: ``arch/tag`` or ``arch``.
        pretrained: load the tag's checkpoint; ``False``: seeded random initialisation.
        weights: a state_dict file of the whole open_clip model to load instead; with a bare
            ``arch``, a pretrained tag is accepted too (``openclip:ViT-B-32 --weights laion2b_s34b_b79k``).
        seed: seed of the random initialisation.
        device: ``auto``, ``cpu``, ``cuda``, ...

    Raises:
        WeightsError: pretrained weights asked for a bare architecture; the message lists its tags.
    """
    arch, tag = split_name(name)
    if tag is None and weights is not None and not Path(str(weights)).expanduser().exists():
        try:  # --weights TAG: a pretrained tag of the architecture, like torchvision's named weights
            arch, tag = split_name(f"{arch}/{weights}")
            weights, pretrained = None, True
        except ModelNotFoundError:
            pass  # not a tag: load_weights_file reports the missing file
    if tag is None and pretrained and weights is None:
        tags = import_open_clip().list_pretrained_tags_by_model(arch)
        how = (
            f"name the weights, e.g. openclip:{arch}/{tags[0]} (tags: {', '.join(tags)}), or use"
            if tags
            else "open_clip has none for it; use"
        )
        raise WeightsError(
            f"openclip:{arch} names an architecture, not weights: {how} random weights (--random, pretrained=False)"
        )
    model_id = f"openclip:{arch}" + (f"/{tag}" if tag else "")
    return build(model_id, arch, tag, pretrained=pretrained, weights=weights, seed=seed, device=device)
