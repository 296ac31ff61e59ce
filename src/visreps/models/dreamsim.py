"""``dreamsim:``: DreamSim, vision transformers fine-tuned with LoRA on human perceptual similarity judgements.

Fu, Tamir, Sundaram, Chai, Zhang, Dekel, Isola (2023), *DreamSim: Learning new dimensions of human visual
similarity using synthetic data*, NeurIPS. Code and weights: github.com/ssundaram21/dreamsim (MIT), package
``dreamsim`` 0.2.1 (``dreamsim/model.py``, ``dreamsim/config.py``, ``dreamsim/feature_extraction/``).

Ids (``dreamsim/config.py``'s ``dreamsim_type``):

* ``dreamsim:ensemble`` — DINO ViT-B/16 (its CLS token) + CLIP ViT-B/16 and OpenCLIP ViT-B/16 (their image
  embeddings), concatenated: 768 + 512 + 512 = 1792 values (the package's default, best on NIGHTS; all three
  backbones are B/16 in the package's config, not B/32);
* ``dreamsim:dino_vitb16``, ``dreamsim:clip_vitb32``, ``dreamsim:open_clip_vitb32``,
  ``dreamsim:synclr_vitb16`` — the single-backbone models.

(``dinov2_vitb14`` and the ``*_patch`` models, whose embedding is one vector per token, are not built.)

**The embedding** (``PerceptualModel.embed``), which is the output of the layer ``embedding``: the image in
[0, 1] (resized to 224 × 224, bicubic, no crop) is normalised per backbone (ImageNet mean/std for DINO and
SynCLR, OpenAI's CLIP mean/std for CLIP and OpenCLIP); a DINO/SynCLR backbone gives the CLS token of the
output of its last block (``blocks.11``, before the final LayerNorm); a CLIP/OpenCLIP backbone gives
``LN_post(CLS) · proj`` (its image embedding; layer ``<backbone>_proj``). The features are concatenated
(layer ``concat``) and, as ``dreamsim(normalize_embeds=True)`` does by default, centred and scaled per image:
``e = (f − mean(f)) / ‖f − mean(f)‖₂`` (mean over the feature dimension). The perceptual distance of two
images is ``1 − cos(e₁, e₂)``.

**Layers**: the wrapper's module names, e.g. ``dino.blocks.11``, ``clip.blocks.5``, ``clip.norm``,
``clip_proj``, ``open_clip_proj``, ``concat``, ``embedding``. Each backbone is a timm ``VisionTransformer``
holding the original's weights (DINO's layout; CLIP's ``ln_pre``, stored as ``pos_drop`` by DreamSim, is
timm's ``norm_pre``; CLIP uses QuickGELU; CLIP/OpenCLIP LayerNorms have eps 1e-5, DINO/SynCLR 1e-6).

**Weights** (``dreamsim/model.py``'s ``download_weights``): the release zip of each id
(``dreamsim_<id>_checkpoint.zip``, v0.2.0-checkpoints; downloaded once into ``<cache>/torch/hub/checkpoints``)
holds the backbones converted to DINO's layout by the authors (``clip_vitb16_pretrain.pth.tar``:
``{"state_dict": {..., "proj": (768, 512)}}``; ``synclr_vit_b_16.pth``: ``{"model": {"module.visual.…"}}``)
and the PEFT adapter ``<tag>lora/adapter_config.json`` + ``adapter_model.safetensors`` (or ``.bin``), keys
``base_model.model.extractor_list.<i>.model.blocks.<j>.attn.qkv.lora_{A,B}.weight``. DINO's backbone is not
in the zip: DreamSim loads it with ``torch.hub.load("facebookresearch/dino:main", "dino_vitb16")``, i.e. the
file ``dino_vitbase16_pretrain.pth`` from dl.fbaipublicfiles.com (the zip's ``dino_vitb16_pretrain.pth``, the
full DINO training checkpoint, only gives its projection head, which the embedding does not use). Members of
the zip are extracted once into ``<cache>/dreamsim/<zip name>-<first 16 hex digits of its sha256>/``
(so two zips of one name never share members).

**LoRA** is merged into the weights at load time, as PEFT's ``merge_and_unload`` does: for each adapted
layer ``W ← W + s · B · A`` with ``A`` (r × in) = ``lora_A.weight``, ``B`` (out × r) = ``lora_B.weight`` and
``s = lora_alpha / r`` (``lora_alpha / √r`` if the adapter config says ``use_rslora``); LoRA dropout plays
no part at evaluation. ``weights=PATH`` takes the release zip or a folder of its extracted files (the
``cache_dir`` of the ``dreamsim`` package; DINO's backbone is then looked for there too, in ``checkpoints/``).
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import WeightsError
from ._base import LoadedModel, Preprocessing
from ._card import ModelCard
from ._registry import no_model_error, register_source
from ._zoo import Checkpoint, KeyMap, fetch_checkpoint, load_mapped, verify_sha256

__all__ = ["BACKBONES", "VARIANTS", "build", "load", "merge_lora"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
RELEASE = "https://github.com/ssundaram21/dreamsim/releases/download"
DINO_B16 = Checkpoint("https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth")


@dataclass(frozen=True)
class Backbone:
    """A ViT-B of DreamSim (``model_type`` in its code).

    Attributes:
        patch: patch size. kind: ``dino``/``synclr`` (feature: CLS of the last block) or ``clip``/``open_clip``
        (feature: the image embedding). member: its file in the release zip (``None``: DINO's hub file).
        keys: that file's layout → timm's keys. mean, std: its input normalisation. eps: LayerNorm eps.
        quick_gelu: CLIP's activation.
    """

    patch: int
    kind: str
    member: str | None
    keys: KeyMap
    mean: tuple[float, ...]
    std: tuple[float, ...]
    eps: float
    quick_gelu: bool = False

    @property
    def embedding(self) -> bool:
        return self.kind in ("clip", "open_clip")


def _clip_keys() -> KeyMap:
    return KeyMap(nested="state_dict", drop=("proj",), prefixes=(("pos_drop.", "norm_pre."),))


BACKBONES: dict[str, Backbone] = {
    "dino_vitb16": Backbone(16, "dino", None, KeyMap(), IMAGENET_MEAN, IMAGENET_STD, 1e-6),
    "clip_vitb16": Backbone(
        16, "clip", "clip_vitb16_pretrain.pth.tar", _clip_keys(), OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, 1e-5, True
    ),
    "clip_vitb32": Backbone(
        32, "clip", "clip_vitb32_pretrain.pth.tar", _clip_keys(), OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, 1e-5, True
    ),
    "open_clip_vitb16": Backbone(
        16, "open_clip", "open_clip_vitb16_pretrain.pth.tar", _clip_keys(), OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, 1e-5
    ),
    "open_clip_vitb32": Backbone(
        32, "open_clip", "open_clip_vitb32_pretrain.pth.tar", _clip_keys(), OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, 1e-5
    ),
    "synclr_vitb16": Backbone(
        16,
        "synclr",
        "synclr_vit_b_16.pth",
        KeyMap(nested="model", prefixes=(("module.visual.", ""),)),
        IMAGENET_MEAN,
        IMAGENET_STD,
        1e-6,
    ),
}

_DATA = {
    "dino": "DINO: ImageNet-1k (no labels)",
    "clip": "CLIP: WIT-400M (OpenAI)",
    "open_clip": "OpenCLIP: LAION-400M",
    "synclr": "SynCLR: synthetic images and captions",
}


@dataclass(frozen=True)
class Variant:
    """A DreamSim id: its backbones (in the order of ``extractor_list``), the release zip and the adapter folder."""

    backbones: tuple[str, ...]
    zip_url: str
    lora_dir: str
    architecture: str

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self.zip_url)


VARIANTS: dict[str, Variant] = {
    "ensemble": Variant(
        ("dino_vitb16", "clip_vitb16", "open_clip_vitb16"),
        f"{RELEASE}/v0.2.0-checkpoints/dreamsim_ensemble_checkpoint.zip",
        "ensemble_lora",
        "DINO ViT-B/16 + CLIP ViT-B/16 + OpenCLIP ViT-B/16 (LoRA), concatenated",
    ),
    "dino_vitb16": Variant(
        ("dino_vitb16",),
        f"{RELEASE}/v0.2.0-checkpoints/dreamsim_dino_vitb16_checkpoint.zip",
        "dino_vitb16_single_lora",
        "DINO ViT-B/16 (LoRA)",
    ),
    "clip_vitb32": Variant(
        ("clip_vitb32",),
        f"{RELEASE}/v0.2.0-checkpoints/dreamsim_clip_vitb32_checkpoint.zip",
        "clip_vitb32_single_lora",
        "CLIP ViT-B/32 (LoRA)",
    ),
    "open_clip_vitb32": Variant(
        ("open_clip_vitb32",),
        f"{RELEASE}/v0.2.0-checkpoints/dreamsim_open_clip_vitb32_checkpoint.zip",
        "open_clip_vitb32_single_lora",
        "OpenCLIP ViT-B/32 (LoRA)",
    ),
    "synclr_vitb16": Variant(
        ("synclr_vitb16",),
        f"{RELEASE}/v0.2.1-checkpoints/dreamsim_synclr_vitb16_checkpoint.zip",
        "synclr_vitb16_single_lora",
        "SynCLR ViT-B/16 (LoRA)",
    ),
}


def _name(backbone: str) -> str:
    """The wrapper's attribute of a backbone: ``dino``, ``clip``, ``open_clip``, ``synclr``."""
    return BACKBONES[backbone].kind


# --------------------------------------------------------------------------- the network


def _vit(backbone: Backbone) -> Any:
    import torch
    from timm.layers import QuickGELU
    from timm.models.vision_transformer import VisionTransformer

    clip_like = backbone.embedding
    vit = VisionTransformer(
        img_size=224,
        patch_size=backbone.patch,
        embed_dim=768,
        depth=12,
        num_heads=12,
        mlp_ratio=4.0,
        qkv_bias=True,
        num_classes=0,
        pre_norm=clip_like,
        norm_layer=partial(torch.nn.LayerNorm, eps=backbone.eps),
        act_layer=QuickGELU if backbone.quick_gelu else None,
    )
    if clip_like:  # timm drops the patch bias of pre-norm (CLIP) models; DreamSim's converted files keep it
        vit.patch_embed.proj = torch.nn.Conv2d(3, 768, backbone.patch, backbone.patch, bias=True)
    return vit


def _modules() -> tuple[type, type]:
    """The wrapper classes (defined on first use: torch is imported only when a model is built)."""
    global _CLASSES
    if _CLASSES is not None:
        return _CLASSES
    import torch
    from torch import nn

    class Embedding(nn.Module):
        """DreamSim's ``normalize_embedding``: ``e = (f − mean(f)) / ‖f − mean(f)‖₂`` per image (row)."""

        def __init__(self, normalize: bool = True) -> None:
            super().__init__()
            self.normalize = normalize

        def forward(self, f: torch.Tensor) -> torch.Tensor:
            if not self.normalize:
                return f
            f = f - f.mean(dim=1, keepdim=True)
            return f / f.norm(dim=1, keepdim=True)

    class DreamSim(nn.Module):
        """DreamSim's ``PerceptualModel.embed`` over a [0, 1] image batch (see the module docstring)."""

        def __init__(self, backbones: tuple[str, ...], normalize: bool = True) -> None:
            super().__init__()
            self.backbones = backbones
            for b in backbones:
                spec = BACKBONES[b]
                self.add_module(_name(b), _vit(spec))
                if spec.embedding:
                    self.add_module(f"{_name(b)}_proj", nn.Linear(768, 512, bias=False))
            self.concat = nn.Identity()
            self.embedding = Embedding(normalize)

        def features(self, x: torch.Tensor, backbone: str) -> torch.Tensor:
            name = _name(backbone)
            vit = getattr(self, name)
            spec = BACKBONES[backbone]
            mean = torch.tensor(spec.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor(spec.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            x = (x - mean) / std
            x = vit.norm_pre(vit._pos_embed(vit.patch_embed(x)))
            x = vit.blocks(x)
            if not spec.embedding:
                return x[:, 0]  # CLS of the last block's output, before the final LayerNorm
            return getattr(self, f"{name}_proj")(vit.norm(x)[:, 0])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            f = torch.cat([self.features(x, b) for b in self.backbones], dim=1)
            return self.embedding(self.concat(f))

    _CLASSES = (DreamSim, Embedding)
    return _CLASSES


_CLASSES: tuple[type, type] | None = None


def build(name: str, *, normalize: bool = True) -> Any:
    """The network of ``dreamsim:name``, randomly initialised from the global torch RNG."""
    return _modules()[0](VARIANTS[name].backbones, normalize=normalize)


@dataclass(frozen=True)
class SquareResize(Preprocessing):
    """DreamSim's preprocessing: resize to ``resize × resize`` (aspect ratio not kept, bicubic), to [0, 1]."""

    def build(self) -> Callable[[Any], Any]:
        from torchvision import transforms as T

        assert self.resize is not None
        size = (self.resize, self.resize)
        steps = [T.Resize(size, interpolation=T.InterpolationMode.BICUBIC, antialias=True), T.ToTensor()]
        return T.Compose([*steps, T.Normalize(self.mean, self.std)])

    def input_size(self) -> tuple[int, int, int]:
        assert self.resize is not None
        return (3, self.resize, self.resize)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "resize_to_square": True}


#: per-backbone normalisation happens inside the network (see the module docstring)
PREPROCESSING = SquareResize(resize=224, crop=None, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), interpolation="bicubic")


# --------------------------------------------------------------------------- weights


class _Release:
    """The files of one id: members of the release zip (or of a folder of its extracted files)."""

    def __init__(self, model_id: str, variant: Variant, weights: str | os.PathLike | None) -> None:
        self.model_id = model_id
        self.record: dict[str, Any]
        if weights is None:
            self.zip: Path | None = fetch_checkpoint(variant.checkpoint, model_id)
            self.folder: Path | None = None
            self.record = {"kind": "pretrained", "name": model_id, "url": variant.zip_url, "file": str(self.zip)}
        else:
            path = Path(weights).expanduser()
            if not path.exists():
                raise WeightsError(
                    f"weights {str(path)!r} do not exist; give DreamSim's release zip ({variant.zip_url}) or a folder "
                    "of its extracted files"
                )
            self.zip, self.folder = (None, path) if path.is_dir() else (path, None)
            self.record = {"kind": "file", "file": str(path.resolve())}
        self.sha256: str | None = None
        if self.zip is not None:
            self.sha256 = verify_sha256(self.zip, None)
            self.record.update(sha256=self.sha256, sha256_pinned=False)

    def member(self, name: str, *, optional: bool = False) -> Path | None:
        """The path of the release's file ``name`` (extracted from the zip into the cache once)."""
        if self.folder is not None:
            p = self.folder / name
            if p.is_file():
                return p
            if optional:
                return None
            raise WeightsError(f"{str(self.folder)!r} has no {name}; is it the folder of DreamSim's extracted weights?")
        assert self.zip is not None and self.sha256 is not None
        return _extract(self.zip, name, self.sha256, optional=optional)

    def dino_backbone(self) -> tuple[Path, dict[str, Any]]:
        """DINO ViT-B/16's weights (torch hub's file; in a folder of the dreamsim package: its checkpoints/)."""
        if self.folder is not None:
            for p in (self.folder / "checkpoints" / DINO_B16.name, self.folder / DINO_B16.name):
                if p.is_file():
                    return p, {"file": str(p.resolve()), "sha256": verify_sha256(p, None)}
        path = fetch_checkpoint(DINO_B16, f"{self.model_id} (its DINO ViT-B/16 backbone)")
        return path, {"url": DINO_B16.url, "file": str(path), "sha256": verify_sha256(path, None)}


def _extract(zip_path: Path, name: str, sha256: str, *, optional: bool = False) -> Path | None:
    """Member ``name`` of the zip, extracted once into ``<cache>/dreamsim/<zip name>-<sha256[:16]>/``.

    The folder is keyed by the zip's content (its sha256), so two zips of the same name with different
    adapters never share extracted files: the members used are those of the zip whose sha256 is recorded.
    """
    from ..cache import cache_dir

    try:
        with zipfile.ZipFile(zip_path) as zf:
            infos = [i for i in zf.infolist() if i.filename == name or i.filename.endswith("/" + name)]
            if not infos:
                if optional:
                    return None
                have = ", ".join(i.filename for i in zf.infolist()[:12])
                raise WeightsError(f"{str(zip_path)!r} has no {name} (it holds: {have}); is it DreamSim's release zip?")
            info = infos[0]
            out = cache_dir() / "dreamsim" / f"{zip_path.name.removesuffix('.zip')}-{sha256[:16]}" / name
            if out.is_file() and out.stat().st_size == info.file_size:
                return out
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(f".{out.name}.{os.getpid()}.part")
            try:
                with zf.open(info) as src, open(tmp, "wb") as dst:
                    while block := src.read(1 << 22):
                        dst.write(block)
                os.replace(tmp, out)
            finally:
                tmp.unlink(missing_ok=True)
            return out
    except (zipfile.BadZipFile, EOFError) as e:
        raise WeightsError(f"{str(zip_path)!r} is not a readable zip ({e}); delete it and download it again") from None


def read_adapter_config(path: Path, where: str) -> dict[str, Any]:
    """The PEFT ``adapter_config.json`` at ``path`` as a dict; ``where`` names it in the one-line error."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        reason = " ".join(str(e).split())[:120]
        raise WeightsError(
            f"adapter config {where} is not valid JSON ({reason}); is the zip DreamSim's release? Download it again"
        ) from None
    if not isinstance(config, dict):
        raise WeightsError(f"adapter config {where} is not a JSON object; is the zip DreamSim's release?")
    return config


_LORA_KEY = r"base_model\.model\.extractor_list\.(\d+)\.model\.(.+)\.lora_([AB])\.weight"


def lora_scale(config: dict[str, Any], where: str) -> tuple[int, float, float]:
    """``(r, lora_alpha, s)`` of a PEFT LoRA config, ``s = lora_alpha / r`` (``/ √r`` with ``use_rslora``).

    Raises:
        WeightsError: a LoRA kind that plain ``W + s·B·A`` does not describe (DoRA, per-module ranks, trained biases).
    """
    try:
        r, alpha = int(config["r"]), float(config["lora_alpha"])
    except (KeyError, TypeError, ValueError):
        raise WeightsError(f"{where} has no valid r and lora_alpha; is it a PEFT LoRA adapter_config.json?") from None
    bad = [
        k
        for k, ok in (
            ("use_dora", not config.get("use_dora")),
            ("fan_in_fan_out", not config.get("fan_in_fan_out")),
            ("rank_pattern", not config.get("rank_pattern")),
            ("alpha_pattern", not config.get("alpha_pattern")),
            ("bias", config.get("bias", "none") == "none"),
        )
        if not ok
    ]
    if bad or r < 1:
        raise WeightsError(f"{where}: settings {bad or ['r']} are not those of DreamSim's LoRA adapters")
    return r, alpha, alpha / (math.sqrt(r) if config.get("use_rslora") else r)


def merge_lora(module: Any, adapter: dict[str, Any], scale: float, backbones: tuple[str, ...], where: str) -> int:
    """Merge PEFT LoRA weights into ``module`` (a :func:`build` network): ``W ← W + scale · B · A``.

    ``adapter`` holds DreamSim's keys ``base_model.model.extractor_list.<i>.model.<module>.lora_{A,B}.weight``,
    ``<i>`` the backbone's position in ``backbones``. Returns the number of layers merged.

    Raises:
        WeightsError: keys outside that layout, unpaired A/B, or shapes that do not fit (named as in the file).
    """
    import re

    import torch

    pairs: dict[tuple[int, str], dict[str, Any]] = {}
    bad = []
    for key, value in adapter.items():
        m = re.fullmatch(_LORA_KEY, key)
        if m is None or int(m.group(1)) >= len(backbones):
            bad.append(key)
            continue
        pairs.setdefault((int(m.group(1)), m.group(2)), {})[m.group(3)] = value
    unpaired = [f"extractor_list.{i}.model.{n}" for (i, n), ab in pairs.items() if set(ab) != {"A", "B"}]
    if bad or unpaired:
        what = f"unexpected keys {', '.join(bad[:4])}" if bad else f"lora_A without lora_B at {', '.join(unpaired)}"
        raise WeightsError(f"{where} does not fit {len(backbones)} backbone(s) of DreamSim: {what}")
    with torch.no_grad():
        for (i, name), ab in sorted(pairs.items()):
            key = f"base_model.model.extractor_list.{i}.model.{name}"
            try:
                layer = getattr(module, _name(backbones[i])).get_submodule(name)
            except AttributeError:
                raise WeightsError(f"{where}: {key} names no layer of {backbones[i]}") from None
            A, B = ab["A"], ab["B"]
            W = layer.weight
            if A.ndim != 2 or B.ndim != 2 or B.shape[1] != A.shape[0] or (B.shape[0], A.shape[1]) != tuple(W.shape):
                raise WeightsError(
                    f"{where}: {key}.lora_B {tuple(B.shape)} · lora_A {tuple(A.shape)} does not fit the layer's weight "
                    f"{tuple(W.shape)}"
                )
            W += (B.to(W.dtype) @ A.to(W.dtype)) * scale
    return len(pairs)


def _resolve(model_id: str, variant: Variant, weights: str | os.PathLike | None) -> dict[str, Any]:
    """Every file of the id, found (or downloaded) before anything is built: an offline error comes first."""
    rel = _Release(model_id, variant, weights)
    paths: dict[str, Any] = {}
    files: dict[str, Any] = {}
    for b in variant.backbones:
        member = BACKBONES[b].member
        if member is None:
            paths[b], files[b] = rel.dino_backbone()
        else:
            paths[b], files[b] = rel.member(member), {"member": member}
    paths["config"] = rel.member(f"{variant.lora_dir}/adapter_config.json")
    paths["adapter"] = rel.member(f"{variant.lora_dir}/adapter_model.safetensors", optional=True) or rel.member(
        f"{variant.lora_dir}/adapter_model.bin"
    )
    # read now: a damaged adapter config fails before anything is built
    config = paths["config"]
    assert config is not None  # not optional: member() raised if it is missing
    where = f"{str(config)!r} (from {rel.record['file']})"
    lora = lora_scale(read_adapter_config(config, where), where)
    return {"paths": paths, "record": {**rel.record, "backbones": files}, "lora": lora}


def _load_weights(module: Any, model_id: str, variant: Variant, found: dict[str, Any]) -> dict[str, Any]:
    """Fill ``module`` with the release's weights (:func:`_resolve`) and merge its LoRA; returns the weights record."""
    from .custom import open_checkpoint, pickle_allowed

    paths, record = found["paths"], found["record"]
    unpickled_any = False
    for b in variant.backbones:
        spec, path = BACKBONES[b], paths[b]
        obj, unpickled = open_checkpoint(path, allow_pickle=pickle_allowed())
        unpickled_any = unpickled_any or unpickled
        load_mapped(getattr(module, _name(b)), obj, spec.keys, path, f"{model_id} ({b})")
        if spec.embedding:
            proj = spec.keys.unwrap(obj, path).get("proj")
            if proj is None or tuple(proj.shape) != (768, 512):
                have = None if proj is None else tuple(proj.shape)
                raise WeightsError(
                    f"checkpoint {str(path)!r} needs 'proj' (768, 512) beside its state_dict, has {have}"
                )
            getattr(module, f"{_name(b)}_proj").weight.data.copy_(proj.T)
    r, alpha, scale = found["lora"]
    adapter, _ = open_checkpoint(paths["adapter"])
    merged = merge_lora(module, dict(adapter), scale, variant.backbones, str(paths["adapter"]))
    record["lora"] = {"r": r, "lora_alpha": alpha, "scale": scale, "layers_merged": merged}
    record["adapter_sha256"] = verify_sha256(paths["adapter"], None)  # the adapter file actually merged
    if unpickled_any:
        record["allow_pickle"] = True
    return record


# --------------------------------------------------------------------------- the source


def list_names() -> list[str]:
    return list(VARIANTS)


def check_name(name: str) -> str:
    if name not in VARIANTS:
        raise no_model_error(
            "dreamsim", name, VARIANTS, tail=f"; available: {', '.join(f'dreamsim:{n}' for n in VARIANTS)}"
        )
    return name


def available_offline(name: str) -> bool:
    if name not in VARIANTS:
        return False
    v = VARIANTS[name]
    need_dino = any(BACKBONES[b].member is None for b in v.backbones)
    return v.checkpoint.path.is_file() and (not need_dino or DINO_B16.path.is_file())


def card(name: str) -> ModelCard:
    v = VARIANTS[check_name(name)]
    return ModelCard(
        family="DreamSim (human perceptual similarity)",
        architecture=v.architecture,
        training_data="NIGHTS (~20k synthetic image triplets, human 2AFC judgements); backbones: "
        + "; ".join(_DATA[BACKBONES[b].kind] for b in v.backbones),
        objective="hinge loss on human two-alternative similarity judgements, LoRA fine-tuning of the backbones",
        weights_licence="MIT (ssundaram21/dreamsim)",
        paper="Fu et al., DreamSim: Learning new dimensions of human visual similarity using synthetic data, "
        "NeurIPS 2023",
        url=v.zip_url,
    )


@register_source("dreamsim")
def load(
    name: str, *, pretrained: bool = True, weights: str | os.PathLike | None = None, seed: int = 0, device: Any = None
) -> LoadedModel:
    """``dreamsim:name`` (see the module docstring): the release's weights with LoRA merged, a local copy
    (``weights``: the zip or a folder of its files), or a seeded random initialisation (``pretrained=False``)."""
    import torch

    check_name(name)
    variant = VARIANTS[name]
    model_id = f"dreamsim:{name}"
    found = _resolve(model_id, variant, weights) if (weights is not None or pretrained) else None
    if found is not None:  # every parameter comes from the files (strictly): no random initialisation to pay for
        with torch.device("meta"):
            module = build(name)
        module = module.to_empty(device="cpu")
        record = _load_weights(module, model_id, variant, found)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = build(name)
        record = {"kind": "random", "seed": seed}
    return LoadedModel.on_device(
        module,
        device,
        preprocessing=PREPROCESSING,
        model_id=model_id,
        weights=record,
        prefix_tokens=1,
    )
