"""The catalogue card of a model id: family, architecture, training data, objective, weights licence, paper.

``visreps models`` groups ids by :attr:`ModelCard.family`. A source gives cards by registering a
``card(name)`` function (see :func:`~visreps.models.register_source`); for sources without one
:func:`default_card` describes the id from :data:`SOURCE_CARDS`.
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


#: what is known of every model of a source that gives no card of its own (the architecture is the name)
SOURCE_CARDS: dict[str, ModelCard] = {
    "torchvision": ModelCard(
        family="torchvision",
        architecture="",
        training_data="ImageNet-1k (the DEFAULT weights of torchvision)",
        objective="supervised classification",
        weights_licence="BSD-3-Clause (torchvision); see each weights enum for data terms",
        paper="TorchVision maintainers, torchvision (2016); and the paper of each architecture",
    ),
    "timm": ModelCard(
        family="timm",
        architecture="",
        training_data="per model: see its pretrained tag on the Hugging Face hub",
        objective="per model (mostly supervised classification)",
        weights_licence="per model: see its Hugging Face model card",
        paper="Wightman, PyTorch Image Models (2019); and the paper of each architecture",
    ),
    "cornet": ModelCard(
        family="CORnet",
        architecture="",
        training_data="ImageNet-1k",
        objective="supervised classification",
        weights_licence="GPL-3.0 (dicarlolab/CORnet release)",
        paper="Kubilius et al., Brain-like object recognition with high-performing shallow recurrent ANNs, "
        "NeurIPS 2019",
    ),
    "clip": ModelCard(
        family="CLIP (OpenAI)",
        architecture="",
        training_data="WIT-400M (OpenAI, not public)",
        objective="contrastive image-text",
        weights_licence="MIT (openai/CLIP)",
        paper="Radford et al., Learning transferable visual models from natural language supervision, ICML 2021",
    ),
    "openclip": ModelCard(
        family="OpenCLIP",
        architecture="",
        training_data="per pretrained tag (LAION-400M/2B, DataComp, ...)",
        objective="contrastive image-text",
        weights_licence="per pretrained tag (mostly MIT)",
        paper="Cherti et al., Reproducible scaling laws for contrastive language-image learning, CVPR 2023",
    ),
    "keras": ModelCard(
        family="Keras applications",
        architecture="",
        training_data="ImageNet-1k",
        objective="supervised classification",
        weights_licence="Apache-2.0 (keras-team) unless the application says otherwise",
        paper="Chollet et al., Keras (2015); and the paper of each architecture",
    ),
}


def default_card(source: str, name: str) -> ModelCard:
    """The card of ``source:name`` for a source without cards of its own."""
    base = SOURCE_CARDS.get(source)
    if base is None:
        return ModelCard(family=source, architecture=name, training_data="unknown", objective="unknown")
    return replace(base, architecture=base.architecture or name)
