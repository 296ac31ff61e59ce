"""``ssl:``: networks trained without labels, with their published checkpoints.

The ResNet-50 families (VISSL's SimCLR, MoCo v2, Jigsaw, RotNet, SwAV, PIRL; Barlow Twins; VICReg) are
in :mod:`._ssl_resnet`, the vision transformers (DINO, DINOv2, MAE) in :mod:`._ssl_vit`; each entry is a
:class:`~visreps.models._zoo.ZooModel` (architecture, checkpoint address and sha256, key map from the
checkpoint's own layout, preprocessing, catalogue card).
"""

from __future__ import annotations

from ._ssl_resnet import MODELS as RESNET_MODELS
from ._ssl_vit import MODELS as VIT_MODELS
from ._zoo import register_zoo

MODELS = {**RESNET_MODELS, **VIT_MODELS}

load = register_zoo("ssl", MODELS, module=__name__)
