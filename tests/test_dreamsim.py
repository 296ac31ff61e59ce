"""``dreamsim:`` against the ``dreamsim`` package (0.2.1, ssundaram21/dreamsim, MIT) and PEFT, its reference.

Release zips are fabricated in the published layout (``dreamsim/model.py``'s ``download_weights``): the
backbone converted to DINO's layout by the authors (``clip_vitb32_pretrain.pth.tar`` holding
``{"state_dict": {..., "pos_drop.weight", "proj"}}``) and the PEFT adapter folder ``<tag>lora/`` written by
PEFT's own ``save_pretrained`` from the package's ``PerceptualModel`` (``adapter_config.json`` +
``adapter_model.safetensors``), with random weights. The reference is the package's ``dreamsim()`` itself,
fed the zip through its own download-and-unzip code; DINO's hub backbone is the DINO repository's
``vit_base`` (the package's copy of it), as ``torch.hub.load("facebookresearch/dino:main", ...)`` builds it.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import visreps
from visreps.cache import set_cache_dir, set_offline
from visreps.errors import ModelNotFoundError, WeightsError
from visreps.models import dreamsim as vds
from visreps.models import load_model, model_card

try:  # the reference: the dreamsim package and PEFT (pip install dreamsim==0.2.1; it keeps torch/open_clip as they are)
    import dreamsim.feature_extraction.vision_transformer as ds_vit
    import dreamsim.model as ds_model
    import peft
except ImportError:  # pragma: no cover - the tests below that need it are skipped
    ds_vit = ds_model = peft = None

needs_ref = pytest.mark.skipif(ds_model is None, reason="the reference needs the dreamsim package (and peft)")


@pytest.fixture
def cache(tmp_path):
    set_cache_dir(tmp_path / "cache")
    set_offline(True)
    yield tmp_path / "cache"
    set_cache_dir(None)
    set_offline(None)


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Random values everywhere (the package's init leaves pos_embed/cls_token at zero and LN at 1/0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if p.ndim == 1 and ("norm" in name or "pos_drop" in name):
                p.copy_(1.0 + 0.1 * noise if name.endswith("weight") else 0.1 * noise)
            else:
                p.copy_(noise * 0.02)


def _clip_like_file(patch: int, seed: int, path: Path) -> None:
    """A CLIP/OpenCLIP backbone as DreamSim's release stores it (``load_clip_as_dino``'s input)."""
    vit = ds_vit.vit_base(patch_size=patch)
    vit.pos_drop = torch.nn.LayerNorm(768)
    _randomise(vit, seed)
    sd = vit.state_dict()
    sd["proj"] = torch.randn(768, 512, generator=torch.Generator().manual_seed(seed + 1)) * 0.05
    torch.save({"state_dict": sd}, path)


def _dino_files(folder: Path, seed: int) -> Path:
    """DINO's hub file (the teacher backbone's state_dict) and the zip's full training checkpoint (the head)."""
    vit = ds_vit.vit_base(patch_size=16, num_classes=0)
    _randomise(vit, seed)
    hub = folder.parent / "dino_vitbase16_pretrain.pth"  # outside the zip: torch hub downloads it
    torch.save(vit.state_dict(), hub)
    head = ds_vit.DINOHead(768, 2048)
    student = {f"module.head.{k}": v for k, v in head.state_dict().items()}
    student["module.head.last_layer.weight"] = head.last_layer.weight_v.detach().clone()
    torch.save({"student": student, "epoch": 400}, folder / "dino_vitb16_pretrain.pth")
    return hub


def _hub_load(hub_file: Path):
    def load(repo, model_type, *args, **kwargs):  # torch.hub.load("facebookresearch/dino:main", "dino_vitb16")
        assert repo == "facebookresearch/dino:main" and model_type == "dino_vitb16"
        vit = ds_vit.vit_base(patch_size=16, num_classes=0)
        vit.load_state_dict(torch.load(hub_file, weights_only=True), strict=True)
        return vit

    return load


def _release(tmp_path: Path, name: str, seed: int, *, safetensors: bool = True) -> tuple[Path, Path | None]:
    """The release zip of ``dreamsim:name`` (and DINO's hub file when it needs one), fabricated as published."""
    src = tmp_path / f"src_{name}"
    src.mkdir()
    cfg = ds_model.dreamsim_args["model_config"][name]
    hub = None
    members = []
    for i, mt in enumerate(cfg["model_type"].split(",")):
        if mt == "dino_vitb16":
            hub = _dino_files(src, seed + 10 * i)
            members.append("dino_vitb16_pretrain.pth")
        else:
            _clip_like_file(int(mt[-2:]), seed + 10 * i, src / f"{mt}_pretrain.pth.tar")
            members.append(f"{mt}_pretrain.pth.tar")
    old = torch.hub.load
    torch.hub.load = _hub_load(hub) if hub else old
    try:
        pm = ds_model.PerceptualModel(**cfg, device="cpu", load_dir=str(src), normalize_embeds=True)
    finally:
        torch.hub.load = old
    lora = peft.LoraConfig(r=16, lora_alpha=8 if name == "ensemble" else 32, lora_dropout=0.2, bias="none")
    lora.target_modules = ["qkv"]
    pm = peft.get_peft_model(pm, lora)
    g = torch.Generator().manual_seed(seed + 99)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    tag = "ensemble_" if name == "ensemble" else f"{name}_single_"
    pm.save_pretrained(str(src / f"{tag}lora"), safe_serialization=safetensors)
    zpath = tmp_path / f"dreamsim_{name}_checkpoint.zip"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_STORED) as zf:
        for m in members:
            zf.write(src / m, m)
        for f in sorted((src / f"{tag}lora").iterdir()):
            zf.write(f, f"{tag}lora/{f.name}")
    shutil.rmtree(src)
    return zpath, hub


def _reference(zpath: Path, hub: Path | None, name: str, tmp_path: Path, monkeypatch):
    """The package's dreamsim(): downloads (here: copies) the zip, unzips it, loads the adapter with PEFT."""
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda url, dst, **kw: os.link(zpath, dst))
    if hub is not None:
        monkeypatch.setattr(torch.hub, "load", _hub_load(hub))
    model, preprocess = ds_model.dreamsim(
        pretrained=True, device="cpu", cache_dir=str(tmp_path / "ref"), dreamsim_type=name
    )
    return model, preprocess


def _place(zpath: Path, hub: Path | None, name: str) -> None:
    dest = vds.VARIANTS[name].checkpoint.path
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(zpath, dest)
    if hub is not None:
        os.link(hub, vds.DINO_B16.path)  # a hard link, not a copy: the ensemble test would hold 3 GB of files


def _images(root: Path) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, size in enumerate([(48, 32), (30, 40)]):  # not square: DreamSim resizes to 224 × 224 regardless
        p = root / f"im{i}.png"
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


@needs_ref
def test_clip_vitb32_matches_package(cache, tmp_path, monkeypatch):
    zpath, hub = _release(tmp_path, "clip_vitb32", seed=1)
    ref, preprocess = _reference(zpath, hub, "clip_vitb32", tmp_path, monkeypatch)
    _place(zpath, hub, "clip_vitb32")
    lm = load_model("dreamsim:clip_vitb32")
    assert lm.weights["lora"] == {"r": 16, "lora_alpha": 32.0, "scale": 2.0, "layers_merged": 12}
    assert lm.weights["url"].endswith("v0.2.0-checkpoints/dreamsim_clip_vitb32_checkpoint.zip")
    assert len(lm.weights["sha256"]) == 64 and lm.weights["sha256_pinned"] is False
    # end to end: images → visreps' preprocessing → layer "embedding", against preprocess() → embed()
    from PIL import Image

    paths = _images(tmp_path / "img")
    feats = visreps.extract(lm, tmp_path / "img", layers=["embedding", "clip_proj", "clip.blocks.3"], progress=False)
    with torch.no_grad():
        x = torch.cat([preprocess(Image.open(p)) for p in sorted(paths)])
        want = ref.embed(x)
        want_proj = ref.extractor_list[0](ref._preprocess(x, "clip_vitb32"), is_proj=True)
    got, got_proj = torch.from_numpy(np.asarray(feats["embedding"])), torch.from_numpy(np.asarray(feats["clip_proj"]))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_proj, want_proj, rtol=1e-5, atol=1e-5)
    assert feats["embedding"].shape == (2, 512) and feats["clip.blocks.3"].shape == (2, 50 * 768)
    np.testing.assert_allclose(np.linalg.norm(feats["embedding"], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(feats["embedding"]).mean(axis=1), 0.0, atol=1e-6)


@pytest.mark.slow
@needs_ref
def test_ensemble_matches_package(cache, tmp_path, monkeypatch):
    """All three backbones (DINO's hub file included), LoRA in all of them, the concatenation and normalisation."""
    zpath, hub = _release(tmp_path, "ensemble", seed=5, safetensors=False)
    ref, _ = _reference(zpath, hub, "ensemble", tmp_path, monkeypatch)
    _place(zpath, hub, "ensemble")
    lm = load_model("dreamsim:ensemble")
    assert lm.weights["lora"]["layers_merged"] == 36 and lm.weights["lora"]["scale"] == 0.5
    assert lm.weights["backbones"]["dino_vitb16"]["url"] == vds.DINO_B16.url
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = ref.embed(x)
        got = lm.module(x)
    assert got.shape == (2, 1792)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # weights=FOLDER: the package's own cache folder (the extracted zip; DINO's hub file in checkpoints/)
    (tmp_path / "ref" / "checkpoints").mkdir(exist_ok=True)
    os.link(hub, tmp_path / "ref" / "checkpoints" / "dino_vitbase16_pretrain.pth")
    set_offline(True)
    lm2 = load_model("dreamsim:ensemble", weights=tmp_path / "ref")
    assert lm2.weights["kind"] == "file" and "ref" in lm2.weights["backbones"]["dino_vitb16"]["file"]
    with torch.no_grad():
        torch.testing.assert_close(lm2.module(x), want, rtol=1e-5, atol=1e-5)


def test_ensemble_composition_on_meta():
    with torch.device("meta"):
        net = vds.build("ensemble")
    names = {n for n, _ in net.named_modules()}
    assert {"dino.blocks.11", "clip.blocks.11.attn.qkv", "open_clip.norm_pre", "clip_proj", "open_clip_proj"} <= names
    assert {"concat", "embedding"} <= names and "dino_proj" not in names
    sd = net.state_dict()
    assert sd["clip_proj.weight"].shape == (512, 768) and sd["dino.blocks.0.attn.qkv.weight"].shape == (2304, 768)
    assert sd["clip.patch_embed.proj.weight"].shape == (768, 3, 16, 16)
    assert type(net.clip.blocks[0].mlp.act).__name__ == "QuickGELU"
    assert type(net.open_clip.blocks[0].mlp.act).__name__ == "GELU"
    assert net.dino.norm.eps == 1e-6 and net.clip.norm.eps == 1e-5 and net.open_clip.norm_pre.eps == 1e-5
    # the DINO-layout keys of DreamSim's converted CLIP file map onto the architecture (pos_drop = ln_pre)
    keys = vds.BACKBONES["clip_vitb16"].keys
    orig = ["pos_drop.weight", "patch_embed.proj.bias", "blocks.3.attn.qkv.weight", "norm.bias", "proj"]
    mapped = [keys.to_model(k) for k in orig]
    assert mapped == ["norm_pre.weight", "patch_embed.proj.bias", "blocks.3.attn.qkv.weight", "norm.bias", None]
    own = {k.split(".", 1)[1] for k in sd if k.startswith("clip.")}
    assert {m for m in mapped if m} <= own
    # SynCLR's file: {"model": {"module.visual.<DINO layout>"}}
    assert (
        vds.BACKBONES["synclr_vitb16"].keys.to_model("module.visual.blocks.0.norm1.weight") == "blocks.0.norm1.weight"
    )


def test_lora_merge_formula():
    """W + (lora_alpha / r) · B · A, as PEFT's merge (checked on one qkv layer, by hand)."""
    with torch.device("meta"):
        net = vds._modules()[0](("clip_vitb32",))
    net = net.to_empty(device="cpu")
    torch.manual_seed(0)
    with torch.no_grad():
        net.clip.blocks[2].attn.qkv.weight.normal_()
    W0 = net.clip.blocks[2].attn.qkv.weight.detach().clone()
    A, B = torch.randn(4, 768), torch.randn(2304, 4)
    key = "base_model.model.extractor_list.0.model.blocks.2.attn.qkv"
    cfg = {"r": 4, "lora_alpha": 2, "bias": "none", "target_modules": ["qkv"]}
    r, alpha, s = vds.lora_scale(cfg, "cfg")
    assert (r, alpha, s) == (4, 2.0, 0.5)
    assert vds.lora_scale({**cfg, "use_rslora": True}, "cfg")[2] == 1.0
    n = vds.merge_lora(net, {f"{key}.lora_A.weight": A, f"{key}.lora_B.weight": B}, s, ("clip_vitb32",), "f")
    assert n == 1
    torch.testing.assert_close(net.clip.blocks[2].attn.qkv.weight, W0 + 0.5 * B @ A)
    with pytest.raises(WeightsError, match="use_dora"):
        vds.lora_scale({**cfg, "use_dora": True}, "cfg")
    with pytest.raises(WeightsError, match=r"unexpected keys base_model\.model\.extractor_list\.1\."):
        vds.merge_lora(net, {key.replace("list.0", "list.1") + ".lora_A.weight": A}, s, ("clip_vitb32",), "f")
    with pytest.raises(WeightsError, match="lora_A without lora_B"):
        vds.merge_lora(net, {f"{key}.lora_A.weight": A}, s, ("clip_vitb32",), "f")
    with pytest.raises(WeightsError, match=r"lora_B \(2304, 4\) · lora_A \(4, 10\) does not fit"):
        vds.merge_lora(net, {f"{key}.lora_A.weight": A[:, :10], f"{key}.lora_B.weight": B}, s, ("clip_vitb32",), "f")


def test_offline_errors_name_file_address_and_cache(cache):
    with pytest.raises(WeightsError) as e:
        load_model("dreamsim:clip_vitb32")
    ckpt = vds.VARIANTS["clip_vitb32"].checkpoint
    assert "offline" in str(e.value) and ckpt.url in str(e.value) and str(ckpt.path) in str(e.value)
    # the zip is there but DINO's hub backbone is not
    ckpt = vds.VARIANTS["dino_vitb16"].checkpoint
    ckpt.path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(ckpt.path, "w") as zf:
        zf.writestr("dino_vitb16_single_lora/adapter_config.json", json.dumps({"r": 16, "lora_alpha": 32}))
    with pytest.raises(WeightsError) as e:
        load_model("dreamsim:dino_vitb16")
    assert vds.DINO_B16.url in str(e.value) and str(vds.DINO_B16.path) in str(e.value)


@needs_ref
def test_wrong_checkpoint_names_original_keys(cache, tmp_path):
    sd = ds_vit.vit_base(patch_size=32).state_dict()  # DINO layout without CLIP's ln_pre (pos_drop) and proj
    zpath = tmp_path / "bad.zip"
    buf = tmp_path / "clip_vitb32_pretrain.pth.tar"
    torch.save({"state_dict": sd}, buf)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, tmp_path / "adapter_model.safetensors")
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(buf, "clip_vitb32_pretrain.pth.tar")
        zf.writestr("clip_vitb32_single_lora/adapter_config.json", json.dumps({"r": 16, "lora_alpha": 32}))
        zf.write(tmp_path / "adapter_model.safetensors", "clip_vitb32_single_lora/adapter_model.safetensors")
    with pytest.raises(WeightsError, match=r"keys missing from the file: pos_drop\.weight, pos_drop\.bias"):
        load_model("dreamsim:clip_vitb32", weights=zpath)
    with pytest.raises(WeightsError, match=r"has no synclr_vit_b_16\.pth \(it holds: clip_vitb32_pretrain"):
        load_model("dreamsim:synclr_vitb16", weights=zpath)


def test_ids_card_and_random_init():
    assert visreps.list_models("dreamsim:*") == [f"dreamsim:{n}" for n in vds.VARIANTS]
    c = model_card("dreamsim:ensemble")
    assert "DINO ViT-B/16 + CLIP ViT-B/16 + OpenCLIP ViT-B/16" in c.architecture and "NeurIPS 2023" in c.paper
    assert c.url and c.url.endswith("dreamsim_ensemble_checkpoint.zip") and c.weights_licence.startswith("MIT")
    with pytest.raises(ModelNotFoundError, match="closest: dreamsim:clip_vitb32"):
        load_model("dreamsim:clip_vitb23")
    a = load_model("dreamsim:open_clip_vitb32", pretrained=False, seed=3)
    b = load_model("dreamsim:open_clip_vitb32", pretrained=False, seed=3)
    assert a.weights == {"kind": "random", "seed": 3}
    for (k, v), (_, w) in zip(a.module.state_dict().items(), b.module.state_dict().items()):
        assert torch.equal(v, w), k
    assert a.preprocessing.to_dict()["resize_to_square"] is True and a.preprocessing.input_size() == (3, 224, 224)
