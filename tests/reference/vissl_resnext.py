"""VISSL's ResNeXt trunk, reduced to the configuration of its RN50 model-zoo checkpoints (a faithful copy).

Source: facebookresearch/vissl, ``vissl/models/trunks/resnext.py`` (class ``ResNeXt``) and
``vissl/models/model_helpers.py`` (``Flatten``, ``get_trunk_forward_outputs``), commit
09270ed25a6c2cf71263d955b64cbe076d34ac45. Licence: MIT, Copyright (c) Facebook, Inc. and its affiliates.

Configuration kept: TRUNK.RESNETS DEPTH 50, WIDTH_MULTIPLIER 1, GROUPS 1, WIDTH_PER_GROUP 64,
NORM BatchNorm, LAYER4_STRIDE 2, INPUT_TYPE rgb (no channel change), no activation checkpointing:
the pretraining configs of the SimCLR, MoCo v2, Jigsaw, RotNet, SwAV and PIRL checkpoints
(configs/config/pretrain/*). The module tree (``_feature_blocks``) and the order of the forward pass
are VISSL's; only the config plumbing is left out. Used by tests/test_ssl_resnet.py only.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torchvision.models as models
from torchvision.models.resnet import Bottleneck


class Flatten(nn.Module):
    """vissl.models.model_helpers.Flatten."""

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = dim

    def forward(self, feat):
        return torch.flatten(feat, start_dim=self.dim)


class ResNeXt(nn.Module):
    """vissl.models.trunks.resnext.ResNeXt for depth 50, width 1, 1x64d, RGB, BatchNorm."""

    def __init__(self, zero_init_residual: bool = False):
        super().__init__()
        n1, n2, n3, n4 = (3, 4, 6, 3)
        block_constructor = Bottleneck
        width_multiplier = 1
        norm_layer = nn.BatchNorm2d
        model = models.resnet.ResNet(
            block=block_constructor,
            layers=[n1, n2, n3, n4],
            zero_init_residual=zero_init_residual,
            groups=1,
            width_per_group=64,
            norm_layer=norm_layer,
        )
        model.inplanes = 64 * width_multiplier
        dim_inner = 64 * width_multiplier
        model_conv1 = nn.Conv2d(3, model.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        model_bn1 = norm_layer(model.inplanes)
        model_relu1 = model.relu
        model_maxpool = model.maxpool
        model_avgpool = model.avgpool
        model_layer1 = model._make_layer(block_constructor, dim_inner, n1)
        model_layer2 = model._make_layer(block_constructor, dim_inner * 2, n2, stride=2)
        model_layer3 = model._make_layer(block_constructor, dim_inner * 4, n3, stride=2)
        model_layer4 = model._make_layer(block_constructor, dim_inner * 8, n4, stride=2)
        self._feature_blocks = nn.ModuleDict(
            [
                ("conv1", model_conv1),
                ("bn1", model_bn1),
                ("conv1_relu", model_relu1),
                ("maxpool", model_maxpool),
                ("layer1", model_layer1),
                ("layer2", model_layer2),
                ("layer3", model_layer3),
                ("layer4", model_layer4),
                ("avgpool", model_avgpool),
                ("flatten", Flatten(1)),
            ]
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """get_trunk_forward_outputs with the default output (the last block, ``flatten``), as a list."""
        feat = x
        for _, feature_block in self._feature_blocks.items():
            feat = feature_block(feat)
        return [feat]
