"""The catalogue card of a model id: family, architecture, training data, objective, weights licence, paper.

``visreps models`` groups ids by :attr:`ModelCard.family`. A source module holds its own cards, read by
:func:`~visreps.models.register_source` (or given to it as ``card``): a ``card(name)`` function, or a module-level
``CARD``, one :class:`ModelCard` for all its models (the architecture left empty is the model's name, see
:func:`source_card`). This module holds only the card type and those helpers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class ModelCard:
    """What the catalogue (``visreps models``) says about a model id.

    Attributes:
        family: the group it is listed under (``Self-supervised (VISSL)``, ``DINO``, ``Ecoset``, ...).
        architecture: e.g. ``ResNet-50``, ``ViT-S/16``.
        training_data: e.g. ``ImageNet-1k (no labels)``, ``Ecoset (565 classes)``.
        objective: e.g. ``SimCLR contrastive``, ``supervised classification``.
        weights_licence: the licence of the published weights (``unknown`` when none is stated).
        paper: what to cite (authors, year, venue).
        url: where the weights come from (``None``: chosen by the library, e.g. a hub name).
        sha256: the file's pinned sha256 (``None``: not pinned; the hash of the file used is recorded all the same).
    """

    family: str
    architecture: str
    training_data: str
    objective: str
    weights_licence: str = "unknown"
    paper: str = ""
    url: str | None = None
    sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def source_card(base: ModelCard, name: str) -> ModelCard:
    """``base`` (a source's card for all its models) for the model ``name``: the architecture is the name unless
    ``base`` gives one."""
    return replace(base, architecture=base.architecture or name)


def unknown_card(source: str, name: str) -> ModelCard:
    """The card of ``source:name`` for a source that gives no card at all."""
    return ModelCard(family=source, architecture=name, training_data="unknown", objective="unknown")


def default_card(source: str, name: str) -> ModelCard:
    """The card of ``source:name`` from the card its source registered (the card of an unknown one without)."""
    from ._registry import get_source

    try:
        return get_source(source).describe(name)
    except LookupError:  # ModelNotFoundError: not a source
        return unknown_card(source, name)
