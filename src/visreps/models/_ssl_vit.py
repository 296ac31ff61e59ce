"""DINO, DINOv2 and MAE: the published backbones of Meta's self-supervised vision transformers (``ssl:`` ids).

Every entry loads the file its authors publish (``dl.fbaipublicfiles.com``) in its own layout:

* DINO (Caron et al. 2021, facebookresearch/dino): ``dino_*_pretrain.pth``, the teacher backbone as a plain
  state_dict (ViT-S/16, ViT-S/8, ViT-B/16, ViT-B/8; ResNet-50 without ``fc``).
* DINOv2 (Oquab et al. 2023; registers: Darcet et al. 2023, facebookresearch/dinov2):
  ``dinov2_vit*14[_reg4]_pretrain.pth``, a plain state_dict with a 37 x 37 position embedding (518 px
  training size), layer scale, ``mask_token`` (unused at inference, left out) and, with registers,
  ``register_tokens``; ViT-g/14 has a SwiGLU MLP (``mlp.w12``/``mlp.w3``).
* MAE (He et al. 2022, facebookresearch/mae): ``mae_pretrain_vit_*.pth``, ``{"model": state_dict}`` of the
  encoder alone (its final ``norm`` included; decoder keys, present in the ``*_full``/visualisation files, are
  left out).

The networks are timm's ``VisionTransformer`` blocks. DINO and DINOv2 run in :class:`OriginalViT` (see
:func:`original_vit_class`), which keeps the original class-token position embedding and adds position
embeddings as the original code does, interpolating them to the input's patch grid with the original
formula; MAE is timm's ``vit_*_224`` as the MAE code uses it (fixed 224 px input). The same networks are
reachable as timm ids with timm's own conversion of these files (``timm:vit_small_patch16_224.dino``,
``timm:vit_small_patch14_dinov2.lvd142m``, ``timm:vit_base_patch16_224.mae``, ...; Hugging Face hub
downloads), which differ in preprocessing (timm: crop ratio 0.9, DINOv2 at 518 px) and, for DINOv2 without
registers, in how the position embedding is resized for inputs other than 518 px.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache
from typing import Any

from ._base import Preprocessing
from ._card import ModelCard
from ._ssl_resnet import resnet50_trunk
from ._zoo import Checkpoint, KeyMap, ZooModel

__all__ = ["MODELS", "original_vit_class"]

DINO_URL = "https://dl.fbaipublicfiles.com/dino"
DINOV2_URL = "https://dl.fbaipublicfiles.com/dinov2"
MAE_URL = "https://dl.fbaipublicfiles.com/mae/pretrain"

#: the evaluation transform of all three codebases (DINO eval_linear.py, DINOv2
#: make_classification_eval_transform, MAE main_linprobe.py): bicubic resize to 256, centre crop 224
EVAL_224 = Preprocessing(resize=256, crop=224, interpolation="bicubic")

#: (embed_dim, depth, num_heads) of the ViT sizes
_SIZES = {"s": (384, 12, 6), "b": (768, 12, 12), "l": (1024, 24, 16), "h": (1280, 32, 16), "g": (1536, 40, 24)}


@lru_cache(maxsize=1)
def original_vit_class() -> type:
    """timm's ``VisionTransformer`` with the token layout and position embedding of the DINO/DINOv2 code.

    The class is built on first use (timm and torch are imported then); it is also reachable as
    ``visreps.models._ssl_vit.OriginalViT``, so modules pickle by reference.

    Tokens: ``x = concat(cls, patches) + P``, then, with registers, ``concat(x_cls, registers, x_patches)``
    (registers get no position embedding). ``P`` is the stored position embedding (class entry + an
    ``M x M`` grid) when the input has the training grid; otherwise the grid is resampled bicubically to the
    input's ``h x w`` patch grid as the original code does: with ``offset > 0`` (DINO, DINOv2 without
    registers) by ``F.interpolate(scale_factor=((h + offset) / M, (w + offset) / M), antialias=False)``,
    with ``offset == 0`` (DINOv2 with registers) by ``F.interpolate(size=(h, w), antialias=True)``.
    Inputs must be multiples of the patch size (timm checks).
    """
    import torch
    import torch.nn.functional as F
    from timm.models.vision_transformer import VisionTransformer
    from torch import nn

    class OriginalViT(VisionTransformer):
        """See :func:`original_vit_class`.

        Args:
            register_tokens: number of register tokens (DINOv2 ``*_reg4``: 4; parameter ``register_tokens``).
            interpolate_offset: the position-embedding resampling offset (DINO, DINOv2: 0.1; registers: 0).
            interpolate_antialias: antialias the resampling (DINOv2 with registers: True).
            **kwargs: timm ``VisionTransformer`` arguments (sizes, ``init_values``, ``mlp_layer`` ...).
        """

        def __init__(
            self,
            *,
            register_tokens: int = 0,
            interpolate_offset: float = 0.1,
            interpolate_antialias: bool = False,
            **kwargs: Any,
        ) -> None:
            super().__init__(num_classes=0, dynamic_img_size=True, **kwargs)
            self.interpolate_offset = float(interpolate_offset)
            self.interpolate_antialias = bool(interpolate_antialias)
            self.register_tokens = None
            if register_tokens:
                self.register_tokens = nn.Parameter(torch.zeros(1, register_tokens, self.embed_dim))
                nn.init.normal_(self.register_tokens, std=1e-6)  # as DinoVisionTransformer.init_weights
            self.num_reg_tokens = int(register_tokens)
            self.num_prefix_tokens = 1 + int(register_tokens)

        def original_pos_embed(self, h: int, w: int) -> torch.Tensor:
            """The position embedding (1, 1 + h*w, D) for an ``h x w`` patch grid (formula in the class doc)."""
            assert self.pos_embed is not None
            n = self.pos_embed.shape[1] - 1
            if h * w == n and h == w:
                return self.pos_embed
            m = int(math.sqrt(n))
            pos = self.pos_embed.float()
            grid = pos[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2)
            if self.interpolate_offset:
                size: dict[str, Any] = {
                    "scale_factor": ((h + self.interpolate_offset) / m, (w + self.interpolate_offset) / m)
                }
            else:
                size = {"size": (h, w)}
            grid = F.interpolate(grid, mode="bicubic", antialias=self.interpolate_antialias, **size)
            grid = grid.permute(0, 2, 3, 1).reshape(1, h * w, -1)
            return torch.cat((pos[:, :1], grid), dim=1).to(self.pos_embed.dtype)

        def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
            assert self.cls_token is not None
            b, h, w, c = x.shape  # timm's patch embedding gives (B, H, W, C) with dynamic_img_size
            x = torch.cat((self.cls_token.expand(b, -1, -1), x.reshape(b, h * w, c)), dim=1)
            x = x + self.original_pos_embed(h, w).to(x.dtype)
            if self.register_tokens is not None:
                x = torch.cat((x[:, :1], self.register_tokens.expand(b, -1, -1), x[:, 1:]), dim=1)
            return self.pos_drop(x)

    OriginalViT.__module__ = __name__
    OriginalViT.__qualname__ = "OriginalViT"
    return OriginalViT


def __getattr__(name: str) -> Any:  # the lazily built class, for pickle
    if name == "OriginalViT":
        return original_vit_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _dino_vit(size: str, patch: int) -> Callable[[], Any]:
    """DINO's ``vit_small``/``vit_base``: qkv bias, LayerNorm eps 1e-6, no layer scale, 224 px grid."""

    def build() -> Any:
        dim, depth, heads = _SIZES[size]
        return original_vit_class()(
            img_size=224, patch_size=patch, embed_dim=dim, depth=depth, num_heads=heads, interpolate_offset=0.1
        )

    return build


def _dinov2_vit(size: str, registers: bool) -> Callable[[], Any]:
    """DINOv2's ``vit_small``...``vit_giant2`` at 518 px (37 x 37 grid), layer scale; ViT-g: SwiGLU MLP."""

    def build() -> Any:
        from timm.layers.mlp import SwiGLUPacked
        from torch import nn

        dim, depth, heads = _SIZES[size]
        extra: dict[str, Any] = {}
        if size == "g":
            # SwiGLUFFNFused: hidden h = (int(4 * dim * 2 / 3) + 7) // 8 * 8 (4096 for ViT-g), w12 packs 2h outputs;
            # timm's Block sizes its MLP as int(dim * mlp_ratio), so mlp_ratio = (2h + 0.5) / dim gives 2h exactly
            hidden = (int(4 * dim * 2 / 3) + 7) // 8 * 8
            extra = {"mlp_ratio": (2 * hidden + 0.5) / dim, "mlp_layer": SwiGLUPacked, "act_layer": nn.SiLU}
        return original_vit_class()(
            img_size=518,
            patch_size=14,
            embed_dim=dim,
            depth=depth,
            num_heads=heads,
            init_values=1e-5,
            register_tokens=4 if registers else 0,
            interpolate_offset=0.0 if registers else 0.1,
            interpolate_antialias=registers,
            **extra,
        )

    return build


def _mae_vit(arch: str) -> Callable[[], Any]:
    """timm's ``arch`` as MAE's ``models_vit`` builds on it (token pooling, final ``norm``, no head)."""

    def build() -> Any:
        import timm

        return timm.create_model(arch, pretrained=False, num_classes=0)

    return build


def _swiglu_to_timm(key: str) -> str:
    """DINOv2 ViT-g's SwiGLU (``mlp.w12``, ``mlp.w3``) → timm's packed GLU MLP (``mlp.fc1``, ``mlp.fc2``)."""
    return key.replace(".mlp.w12.", ".mlp.fc1.").replace(".mlp.w3.", ".mlp.fc2.")


def _swiglu_to_original(key: str) -> str:
    return key.replace(".mlp.fc1.", ".mlp.w12.").replace(".mlp.fc2.", ".mlp.w3.")


DINO_KEYS = KeyMap()
DINOV2_KEYS = KeyMap(drop=("mask_token",))
DINOV2_G_KEYS = KeyMap(drop=("mask_token",), rename=_swiglu_to_timm, unrename=_swiglu_to_original)
MAE_KEYS = KeyMap(nested="model", drop=("mask_token", "decoder_"))

DINO_PAPER = "Caron et al., Emerging properties in self-supervised vision transformers, ICCV 2021"
DINOV2_PAPER = "Oquab et al., DINOv2: Learning robust visual features without supervision, TMLR 2024"
REG_PAPER = "Darcet et al., Vision transformers need registers, ICLR 2024"
MAE_PAPER = "He et al., Masked autoencoders are scalable vision learners, CVPR 2022"


#: the card of every DINO id (the architecture is each id's)
DINO_CARD = ModelCard(family="DINO", architecture="", training_data="ImageNet-1k (no labels)",
                      objective="DINO self-distillation (teacher backbone)",
                      weights_licence="Apache-2.0 (facebookresearch/dino)", paper=DINO_PAPER)  # fmt: skip


def _dino(build: Callable[[], Any], architecture: str, file: str, prefix_tokens: int | None = None) -> ZooModel:
    """A DINO id: its network, architecture (for the card) and checkpoint ``<DINO_URL>/<file>``."""
    card = replace(DINO_CARD, architecture=architecture)
    return ZooModel(build, card, Checkpoint(f"{DINO_URL}/{file}"), DINO_KEYS, EVAL_224, prefix_tokens=prefix_tokens)


def _dino_entries() -> dict[str, ZooModel]:
    out: dict[str, ZooModel] = {}
    for name, size, patch, tag, timm_id in [
        ("dino-vits16", "s", 16, "deitsmall16", "vit_small_patch16_224.dino"),
        ("dino-vits8", "s", 8, "deitsmall8", "vit_small_patch8_224.dino"),
        ("dino-vitb16", "b", 16, "vitbase16", "vit_base_patch16_224.dino"),
        ("dino-vitb8", "b", 8, "vitbase8", "vit_base_patch8_224.dino"),
    ]:
        arch = f"ViT-{size.upper()}/{patch} = timm:{timm_id}"
        out[name] = _dino(_dino_vit(size, patch), arch, f"dino_{tag}_pretrain/dino_{tag}_pretrain.pth", prefix_tokens=1)
    # as DINO's hubconf: torchvision's resnet50 with fc = Identity (the file has no fc)
    rn50 = "dino_resnet50_pretrain/dino_resnet50_pretrain.pth"
    out["dino-rn50"] = _dino(resnet50_trunk, "ResNet-50 (torchvision, fc removed)", rn50)
    return out


def _dinov2_entries() -> dict[str, ZooModel]:
    out: dict[str, ZooModel] = {}
    names = {"s": "small", "b": "base", "l": "large", "g": "giant"}
    for size in "sblg":
        for registers in (False, True):
            reg = "_reg4" if registers else ""
            timm_id = f"vit_{names[size]}_patch14{reg}_dinov2.lvd142m"
            arch = f"ViT-{size if size == 'g' else size.upper()}/14" + (" + 4 registers" if registers else "")
            out[f"dinov2-vit{size}14" + ("-reg" if registers else "")] = ZooModel(
                build=_dinov2_vit(size, registers),
                card=ModelCard(
                    family="DINOv2 with registers" if registers else "DINOv2",
                    architecture=f"{arch} = timm:{timm_id}",
                    training_data="LVD-142M (curated web images, no labels)",
                    objective="DINOv2 self-distillation (DINO + iBOT + KoLeo); ViT-S/B/L distilled from ViT-g/14",
                    weights_licence="Apache-2.0 (facebookresearch/dinov2)",
                    paper=DINOV2_PAPER + (f"; {REG_PAPER}" if registers else ""),
                ),
                checkpoint=Checkpoint(f"{DINOV2_URL}/dinov2_vit{size}14/dinov2_vit{size}14{reg}_pretrain.pth"),
                keys=DINOV2_G_KEYS if size == "g" else DINOV2_KEYS,
                preprocessing=EVAL_224,
                prefix_tokens=5 if registers else 1,
            )
    return out


def _mae_entries() -> dict[str, ZooModel]:
    out: dict[str, ZooModel] = {}
    for name, arch, label, file in [
        ("mae-vitb16", "vit_base_patch16_224", "ViT-B/16", "base"),
        ("mae-vitl16", "vit_large_patch16_224", "ViT-L/16", "large"),
        ("mae-vith14", "vit_huge_patch14_224", "ViT-H/14", "huge"),
    ]:
        out[name] = ZooModel(
            build=_mae_vit(arch),
            card=ModelCard(
                family="MAE",
                architecture=f"{label} encoder = timm:{arch}.mae",
                training_data="ImageNet-1k (no labels)",
                objective="masked autoencoding (75% of patches masked, normalised-pixel loss)",
                weights_licence="CC-BY-NC-4.0 (facebookresearch/mae; non-commercial)",
                paper=MAE_PAPER,
            ),
            checkpoint=Checkpoint(f"{MAE_URL}/mae_pretrain_vit_{file}.pth"),
            keys=MAE_KEYS,
            preprocessing=EVAL_224,
            prefix_tokens=1,
        )
    return out


MODELS: dict[str, ZooModel] = {**_dino_entries(), **_dinov2_entries(), **_mae_entries()}
