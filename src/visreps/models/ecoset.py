"""``ecoset:``: torchvision networks trained on Ecoset (565 classes) instead of ImageNet.

Ecoset (Mehrer, Spoerer, Jones, Kriegeskorte & Kietzmann, PNAS 2021) holds 1.5 M images of 565
basic-level categories chosen for being frequent in language and concrete. The networks here are
the PyTorch files that THINGSvision (ViCCo-Group/thingsvision, ``custom_models/*_ecoset.py``) loads
from OSF: each is a plain torchvision ``state_dict`` (no nesting, no ``module.`` prefix) of the
torchvision architecture built with ``num_classes=565``, loaded there strictly, so the key map is
the identity:

* ``ecoset:alexnet``: ``torchvision.models.alexnet``, https://osf.io/t6h3c/download
* ``ecoset:vgg16``: ``torchvision.models.vgg16``, https://osf.io/z5uf3/download
* ``ecoset:vgg16_bn``: ``torchvision.models.vgg16_bn``, https://osf.io/fe7s5/download
* ``ecoset:resnet50``: ``torchvision.models.resnet50``, https://osf.io/gd9kn/download
* ``ecoset:inception_v3``: ``torchvision.models.inception_v3``, https://osf.io/zn24d/download

The cache names are THINGSvision's own (``Alexnet_ecoset``, ``VGG16_ecoset``, ...), so a file
THINGSvision downloaded into ``~/.cache/torch/hub/checkpoints`` can be copied into
``<visreps cache>/torch/hub/checkpoints`` as it is. No sha256 is published for these files: the hash
of the file used is recorded in ``metadata.json`` (``sha256_pinned: false``).

Inception-v3 keeps its auxiliary classifier (``AuxLogits.*`` are in the file); it runs only in
training mode, so evaluation gives the main logits. ``transform_input`` is off, as in THINGSvision.

Preprocessing is THINGSvision's default for these files (the transform the Ecoset training used is
not published with them): shorter side to 256, centre crop 224, ImageNet mean and std.

Class names: the 565 Ecoset category names in the networks' output order are not published with
these files, so visreps does not guess them: the models carry ``class_names=()`` and ``--top-k`` is refused with a
message saying so. Features of every layer, ``classifier.6``/``fc`` logits included, are extracted
as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ._base import LoadedModel, Preprocessing
from ._card import ModelCard
from ._registry import get_source, register_source
from ._zoo import Checkpoint, ZooModel, register_zoo

N_CLASSES = 565

#: the networks' class names; empty: not known (top-k predictions are refused)
CLASS_NAMES: tuple[str, ...] = ()

#: THINGSvision's default transform, which it applies to these files
PREPROCESSING = Preprocessing(resize=256, crop=224)

PAPER = (
    "Mehrer, Spoerer, Jones, Kriegeskorte & Kietzmann, An ecologically motivated image dataset for deep "
    "learning yields better models of human vision, PNAS 118(8) e2011417118 (2021)"
)
LICENCE = "not stated with the OSF files; the Ecoset images are CC BY-NC-SA 2.0 (kietzmannlab/ecoset data set card)"


def _alexnet() -> Any:
    from torchvision.models import alexnet

    return alexnet(weights=None, num_classes=N_CLASSES)


def _vgg16() -> Any:
    from torchvision.models import vgg16

    return vgg16(weights=None, num_classes=N_CLASSES)


def _vgg16_bn() -> Any:
    from torchvision.models import vgg16_bn

    return vgg16_bn(weights=None, num_classes=N_CLASSES)


def _resnet50() -> Any:
    from torchvision.models import resnet50

    return resnet50(weights=None, num_classes=N_CLASSES)


def _inception_v3() -> Any:
    from torchvision.models import inception_v3

    return inception_v3(weights=None, num_classes=N_CLASSES, aux_logits=True, transform_input=False, init_weights=True)


def _entry(build: Callable[[], Any], architecture: str, osf: str, filename: str) -> ZooModel:
    return ZooModel(
        build=build,
        card=ModelCard(
            family="Ecoset",
            architecture=architecture,
            training_data=f"Ecoset ({N_CLASSES} classes)",
            objective="supervised classification",
            weights_licence=LICENCE,
            paper=PAPER,
        ),
        checkpoint=Checkpoint(url=f"https://osf.io/{osf}/download", filename=filename),
        preprocessing=PREPROCESSING,
    )


MODELS: dict[str, ZooModel] = {
    "alexnet": _entry(_alexnet, "AlexNet", "t6h3c", "Alexnet_ecoset"),
    "vgg16": _entry(_vgg16, "VGG-16", "z5uf3", "VGG16_ecoset"),
    "vgg16_bn": _entry(_vgg16_bn, "VGG-16-BN", "fe7s5", "VGG16bn_ecoset"),
    "resnet50": _entry(_resnet50, "ResNet-50", "gd9kn", "Resnet50_ecoset"),
    "inception_v3": _entry(_inception_v3, "Inception-v3", "zn24d", "Inception_ecoset"),
}


def register_with_classes(
    source: str, models: Mapping[str, ZooModel], class_names: tuple[str, ...] | None, *, module: str
) -> Callable[..., LoadedModel]:
    """:func:`~visreps.models._zoo.register_zoo`, with ``class_names`` set on every model it loads.

    ``class_names``: the names of the output classes (``()``: not known, so top-k is refused;
    ``None``: ImageNet-1k). The source is registered by ``register_zoo`` and then again, by the same
    module, with a ``load`` that sets the field; its names, card and offline check are ``register_zoo``'s.
    """
    zoo_load = register_zoo(source, models, module=module)
    src = get_source(source)

    def load(
        name: str, *, pretrained: bool = True, weights: Any = None, seed: int = 0, device: Any = None
    ) -> LoadedModel:
        lm = zoo_load(name, pretrained=pretrained, weights=weights, seed=seed, device=device)
        lm.class_names = class_names
        return lm

    load.__module__ = module
    load.__doc__ = zoo_load.__doc__
    register_source(
        source,
        list_names=src.list_names,
        available_offline=src.available_offline,
        check_name=src.check_name,
        card=src.card,
    )(load)
    return load


load = register_with_classes("ecoset", MODELS, CLASS_NAMES, module=__name__)
