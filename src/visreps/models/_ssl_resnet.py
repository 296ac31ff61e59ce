"""Self-supervised ResNet-50s: VISSL's SimCLR, MoCo v2, Jigsaw, RotNet, SwAV and PIRL; Barlow Twins; VICReg.

Every id is torchvision's ResNet-50 without its classifier (``fc = Identity``), so the layers are
torchvision's (``conv1`` ... ``layer1``-``layer4``, ``avgpool``), and the published file of the
original release loads into it:

* VISSL model zoo (``ssl:simclr-rn50``, ``mocov2-rn50``, ``jigsaw-rn50``, ``rotnet-rn50``,
  ``swav-rn50``, ``pirl-rn50``): a VISSL training checkpoint ``{"phase_idx", "iteration", "loss",
  "iteration_num", "train_phase_idx", "classy_state_dict": {"train", "base_model": {"model":
  {"trunk": ..., "heads": ...}}, "meters", "optimizer", ...}}``. The trunk is VISSL's ``ResNeXt``
  (vissl/models/trunks/resnext.py) with depth 50, one group of width 64 and RGB input: torchvision's
  ``ResNet`` with ``Bottleneck`` blocks, its modules held in a ``ModuleDict`` called
  ``_feature_blocks`` (conv1, bn1, conv1_relu, maxpool, layer1-4, avgpool, flatten), so its keys are
  torchvision's with the prefix ``_feature_blocks.``. The projection/pretext heads are stored apart
  (``...model.heads``) and are not part of the network visreps builds; the MoCo momentum encoder, the
  MoCo queue and the PIRL memory bank live in the top-level ``loss`` entry and are not read either.
  This is how VISSL's own linear benchmarks (``STATE_DICT_KEY_NAME=classy_state_dict``) and its
  ``extra_scripts/convert_vissl_to_torchvision.py`` read these files.
* Barlow Twins (``ssl:barlowtwins-rn50``): ``torch.save(backbone.state_dict())`` of
  ``torchvision.models.resnet50(zero_init_residual=True)`` with ``fc = Identity`` (facebookresearch/barlowtwins
  main.py), i.e. torchvision's keys without ``fc``.
* VICReg (``ssl:vicreg-rn50``): the backbone state dict of the repository's own ``resnet.py``, whose
  module tree and keys are torchvision's (no ``fc``); it zero-pads the image by 1 pixel
  (``ConstantPad2d(1, 0)``) before a 7x7/2 convolution with padding 2, which is the same computation
  as torchvision's convolution with zero padding 3: ``pad_2(pad_1(x)) = pad_3(x)``.

Preprocessing is what each release evaluated its linear classifier with: resize the shorter side to
256 (bilinear), centre crop 224, ImageNet mean/std. No published file has a published full sha256
(the 8-hex tags in VISSL's addresses are experiment ids), so none is pinned; the hash of the file used
is recorded in ``metadata.json``.
"""

from __future__ import annotations

from typing import Any

from ._base import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from ._card import ModelCard
from ._zoo import Checkpoint, KeyMap, ZooModel

__all__ = ["MODELS", "resnet50_trunk"]

VISSL_ZOO = "https://dl.fbaipublicfiles.com/vissl/model_zoo/"
FAMILY = "Self-supervised ResNet-50"
IMAGENET_NO_LABELS = "ImageNet-1k train (1.28 M images, labels unused)"
VISSL_LICENCE = "MIT (facebookresearch/vissl, whose model zoo states no other terms)"
VISSL_PAPER = "VISSL model zoo (Goyal et al. 2021, github.com/facebookresearch/vissl)"

#: a VISSL training checkpoint: the trunk's state dict, keys prefixed ``_feature_blocks.``
VISSL_KEYS = KeyMap(nested="classy_state_dict.base_model.model.trunk", prefixes=(("_feature_blocks.", ""),))
#: a plain state dict of torchvision's ResNet-50 without ``fc``
PLAIN_KEYS = KeyMap()

#: resize 256, centre crop 224, ImageNet mean/std: the evaluation transform of VISSL's benchmarks and
#: of the Barlow Twins and VICReg ``evaluate.py``
EVAL_224 = Preprocessing(resize=256, crop=224, mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bilinear")


def resnet50_trunk() -> Any:
    """torchvision's ResNet-50 with ``fc = Identity``: the network of every id of this family.

    Randomly initialised from the global torch RNG (torchvision's initialisation); nothing is downloaded.
    """
    import torch
    from torchvision.models import resnet50

    model: Any = resnet50(weights=None)
    model.fc = torch.nn.Identity()
    return model


def _resnet50(objective: str, licence: str, paper: str, checkpoint: Checkpoint, keys: KeyMap) -> ZooModel:
    """An id of this family: :func:`resnet50_trunk` with the weights of ``checkpoint`` (laid out as ``keys``)."""
    card = ModelCard(FAMILY, "ResNet-50", IMAGENET_NO_LABELS, objective, weights_licence=licence, paper=paper)
    return ZooModel(build=resnet50_trunk, card=card, checkpoint=checkpoint, keys=keys, preprocessing=EVAL_224)


def _vissl(folder: str, file: str, objective: str, paper: str) -> ZooModel:
    """An id whose weights are the VISSL model-zoo checkpoint ``<VISSL_ZOO>/<folder>/<file>``.

    The cache name joins folder and file (``model_final_checkpoint_phase799.torch`` alone is the name
    of several of these files).
    """
    checkpoint = Checkpoint(url=f"{VISSL_ZOO}{folder}/{file}", filename=f"vissl_{folder}_{file}")
    return _resnet50(objective, VISSL_LICENCE, f"{paper}; weights: {VISSL_PAPER}", checkpoint, VISSL_KEYS)


MODELS: dict[str, ZooModel] = {
    "simclr-rn50": _vissl(
        "simclr_rn50_800ep_simclr_8node_resnet_16_07_20.7e8feed1",
        "model_final_checkpoint_phase799.torch",
        "SimCLR contrastive (NT-Xent), 800 epochs, VISSL",
        "Chen, Kornblith, Norouzi & Hinton, A simple framework for contrastive learning of visual "
        "representations, ICML 2020",
    ),
    "mocov2-rn50": _vissl(
        "moco_v2_1node_lr.03_step_b32_zero_init",
        "model_final_checkpoint_phase199.torch",
        "MoCo v2 momentum contrast, 200 epochs, VISSL",
        "Chen, Fan, Girshick & He, Improved baselines with momentum contrastive learning, arXiv:2003.04297 (2020)",
    ),
    "jigsaw-rn50": _vissl(
        "jigsaw_rn50_in1k_ep105_perm2k_jigsaw_8gpu_resnet_17_07_20.db174a43",
        "model_final_checkpoint_phase104.torch",
        "Jigsaw puzzle pretext (100 permutations), 105 epochs, VISSL",
        "Noroozi & Favaro, Unsupervised learning of visual representations by solving jigsaw puzzles, ECCV 2016; "
        "Goyal, Mahajan, Gupta & Misra, Scaling and benchmarking self-supervised visual representation learning, "
        "ICCV 2019",
    ),
    "rotnet-rn50": _vissl(
        "rotnet_rn50_in1k_ep105_rotnet_8gpu_resnet_17_07_20.46bada9f",
        "model_final_checkpoint_phase125.torch",
        "RotNet rotation prediction pretext (4 rotations), 105 epochs, VISSL",
        "Gidaris, Singh & Komodakis, Unsupervised representation learning by predicting image rotations, ICLR 2018",
    ),
    "swav-rn50": _vissl(
        "swav_in1k_rn50_800ep_swav_8node_resnet_27_07_20.a0a6b676",
        "model_final_checkpoint_phase799.torch",
        "SwAV online clustering (multi-crop 2x224+6x96), 800 epochs, VISSL",
        "Caron, Misra, Mairal, Goyal, Bojanowski & Joulin, Unsupervised learning of visual features by "
        "contrasting cluster assignments, NeurIPS 2020",
    ),
    "pirl-rn50": _vissl(
        "pirl_jigsaw_4node_pirl_jigsaw_4node_resnet_22_07_20.34377f59",
        "model_final_checkpoint_phase799.torch",
        "PIRL pretext-invariant contrastive (jigsaw), 800 epochs, VISSL",
        "Misra & van der Maaten, Self-supervised learning of pretext-invariant representations, CVPR 2020",
    ),
    "barlowtwins-rn50": _resnet50(
        "Barlow Twins redundancy reduction, 1000 epochs",
        "MIT (facebookresearch/barlowtwins)",
        "Zbontar, Jing, Misra, LeCun & Deny, Barlow Twins: self-supervised learning via redundancy reduction, "
        "ICML 2021",
        Checkpoint(
            url="https://dl.fbaipublicfiles.com/barlowtwins/ljng/resnet50.pth", filename="barlowtwins_ljng_resnet50.pth"
        ),
        PLAIN_KEYS,
    ),
    "vicreg-rn50": _resnet50(
        "VICReg variance-invariance-covariance regularisation, 1000 epochs",
        "MIT (facebookresearch/vicreg)",
        "Bardes, Ponce & LeCun, VICReg: variance-invariance-covariance regularization for self-supervised learning, "
        "ICLR 2022",
        Checkpoint(url="https://dl.fbaipublicfiles.com/vicreg/resnet50.pth", filename="vicreg_resnet50.pth"),
        PLAIN_KEYS,
    ),
}
