"""``salobjsub:alexnet``: the AlexNet of THINGSvision's ``AlexNet_SalObjSub`` (salient object subitizing).

THINGSvision describes it as an AlexNet pretrained on ImageNet and fine-tuned on SalObjSub, the
salient object subitizing data set (Zhang et al., CVPR 2015: about 14 K everyday images labelled with
the number of salient objects, 0, 1, 2, 3 or 4+). It was contributed to THINGSvision by Alireza Karami
(commit 0f3e1f3, December 2022, ``custom_models/alexnet_salobjsub.py``), which loads
https://osf.io/download/sd3xj/ strictly into ``torchvision.models.alexnet(weights=None,
num_classes=565)``: a plain torchvision ``state_dict`` whose classifier has 565 outputs. visreps
builds exactly that. The 565 outputs (Ecoset's class count, not SalObjSub's five) are what the only
public loader of the file says; what they mean is not documented, so ``class_names=()`` and top-k
predictions are refused. Should the file turn out to hold another classifier width, loading fails
with the shape of ``classifier.6.weight`` in the file and in the model, never silently.

The id is ``salobjsub:alexnet``: as with ``ecoset:``, the source names the data the network was
trained on, and the training is not Ecoset's, so it is a source of its own rather than an
``ecoset:`` name. The cache name is THINGSvision's (``AlexNet_SalObjSub``); no sha256 is published.
Preprocessing is THINGSvision's default for it (resize 256, centre crop 224, ImageNet mean and std).
"""

from __future__ import annotations

from typing import Any

from ._card import ModelCard
from ._zoo import Checkpoint, ZooModel
from .ecoset import PREPROCESSING, register_with_classes

N_OUTPUTS = 565


def _alexnet() -> Any:
    from torchvision.models import alexnet

    return alexnet(weights=None, num_classes=N_OUTPUTS)


MODELS: dict[str, ZooModel] = {
    "alexnet": ZooModel(
        build=_alexnet,
        card=ModelCard(
            family="Salient object subitizing",
            architecture="AlexNet",
            training_data="ImageNet-1k, then fine-tuned on SalObjSub (salient object subitizing)",
            objective="supervised classification, then object-count classification (subitizing)",
            weights_licence="not stated (OSF file contributed to THINGSvision)",
            paper=(
                "Zhang, Ma, Sameki, Sclaroff, Betke, Lin, Shen, Price & Mech, Salient Object Subitizing, CVPR 2015 "
                "(task and data set); weights contributed to THINGSvision by A. Karami (2022)"
            ),
        ),
        checkpoint=Checkpoint(url="https://osf.io/download/sd3xj/", filename="AlexNet_SalObjSub"),
        preprocessing=PREPROCESSING,
    ),
}

load = register_with_classes("salobjsub", MODELS, (), module=__name__)
