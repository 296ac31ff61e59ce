"""``ssl:`` DINO, DINOv2 and MAE: published file layouts loaded through visreps agree with the original model code.

Each test writes a checkpoint in the original release's format from the original architecture code
(``tests/reference/``, random weights) into a temporary cache, loads it offline with
:func:`visreps.models.load_model` and compares outputs with the original code at float32 tolerance.
The large ids (ViT-B/L/H/g) are checked on the meta device: the key names and shapes of the original
architecture, through the id's key map, are exactly those of the architecture visreps builds.
"""

from __future__ import annotations

import pickle
from dataclasses import replace
from functools import partial

import pytest
import torch
import torchvision

from conftest import write_images
from reference import dino_vit, dinov2_vit, mae_vit
from visreps import cache
from visreps.errors import ModelNotFoundError, WeightsError
from visreps.models import list_models, load_model, model_card
from visreps.models import ssl as ssl_source
from visreps.models._base import IMAGENET_MEAN, IMAGENET_STD, file_sha256
from visreps.models._ssl_vit import MODELS
from visreps.models._zoo import Checkpoint

TOL = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture
def offline_cache(tmp_path):
    cache.set_cache_dir(tmp_path / "cache")
    cache.set_offline(True)
    yield tmp_path / "cache"
    cache.set_cache_dir(None)
    cache.set_offline(None)


def _save(obj, name: str) -> None:
    path = MODELS[name].checkpoint.path
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)


def _run(module, x) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One forward pass: the module's output and the output of every ``module.blocks[i]`` (forward hooks)."""
    outs: list[torch.Tensor] = []
    hooks = [b.register_forward_hook(lambda _m, _i, o: outs.append(o)) for b in module.blocks]
    try:
        with torch.no_grad():
            y = module(x)
    finally:
        for h in hooks:
            h.remove()
    return y, outs


def _assert_same_run(ours, theirs) -> None:
    """Same output, same block outputs, same final normed tokens (the norm of the last block's output)."""
    (y, blocks), (y_ref, blocks_ref) = ours, theirs
    torch.testing.assert_close(y, y_ref, **TOL)
    assert len(blocks) == len(blocks_ref)
    for a, b in zip(blocks, blocks_ref):
        torch.testing.assert_close(a, b, **TOL)


def _randomise(module, *, std: float = 0.3) -> None:
    """Parameters the original inits as constants (layer scale, register and class tokens) get random values."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("gamma") or name in ("register_tokens", "cls_token"):
                p.normal_(0.5 if name.endswith("gamma") else 0.0, std)


# --------------------------------------------------------------------------- DINO


def test_dino_vits16_file_loads_and_matches_the_original_code(offline_cache):
    torch.manual_seed(0)
    ref = dino_vit.vit_small(patch_size=16, num_classes=0).eval()
    _save(ref.state_dict(), "dino-vits16")  # hubconf: a plain state_dict, loaded strictly
    lm = load_model("ssl:dino-vits16")
    x = torch.randn(1, 3, 224, 224)
    ours, theirs = _run(lm.module, x), _run(ref, x)
    _assert_same_run(ours, theirs)  # output: the CLS token after the final norm, as DINO's forward
    with torch.no_grad():
        torch.testing.assert_close(lm.module.norm(ours[1][-1]), ref.norm(theirs[1][-1]), **TOL)
    for shape in [(1, 3, 64, 64), (1, 3, 64, 48)]:  # 4x4 and 4x3 grids: position embeddings resized as DINO does
        x = torch.randn(*shape)
        _assert_same_run(_run(lm.module, x), _run(ref, x))
    path = MODELS["dino-vits16"].checkpoint.path
    assert lm.weights == {
        "kind": "pretrained",
        "name": "ssl:dino-vits16",
        "url": "https://dl.fbaipublicfiles.com/dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth",
        "file": str(path),
        "sha256": file_sha256(path),
        "sha256_pinned": False,
    }
    p = lm.preprocessing
    assert (p.resize, p.crop, p.interpolation, p.mean, p.std) == (256, 224, "bicubic", IMAGENET_MEAN, IMAGENET_STD)
    assert lm.token_prefix == 1


def test_dino_rn50_file_loads_into_torchvision_resnet50_without_fc(offline_cache):
    torch.manual_seed(2)
    ref = torchvision.models.resnet50()
    ref.fc = torch.nn.Identity()  # as DINO's hubconf and main_dino (the file has no classifier)
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    ref.eval()
    _save(ref.state_dict(), "dino-rn50")
    lm = load_model("ssl:dino-rn50")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(lm.module(x), ref(x), **TOL)
        assert lm.module(x).shape == (1, 2048)
    assert model_card("ssl:dino-rn50").architecture.startswith("ResNet-50")


# --------------------------------------------------------------------------- DINOv2


@pytest.mark.parametrize("registers", [False, True], ids=["plain", "reg4"])
def test_dinov2_vits14_file_loads_and_matches_the_original_code(offline_cache, tmp_path, registers):
    name = "dinov2-vits14" + ("-reg" if registers else "")
    torch.manual_seed(3)
    ref = dinov2_vit.hub_model("vit_small", registers=registers).eval()
    _randomise(ref)
    _save(ref.state_dict(), name)  # hub: plain state_dict with mask_token (and register_tokens), strict
    lm = load_model(f"ssl:{name}")
    prefix = 5 if registers else 1
    assert lm.token_prefix == prefix and lm.preprocessing.crop == 224
    for shape in [(1, 3, 224, 224), (1, 3, 70, 56)]:  # 16x16 (what visreps feeds) and 5x4 grids from 37x37
        x = torch.randn(*shape)
        ours, theirs = _run(lm.module, x), _run(ref, x)
        _assert_same_run(ours, theirs)
        with torch.no_grad():
            tokens, ref_tokens = lm.module.norm(ours[1][-1]), ref.norm(theirs[1][-1])
        torch.testing.assert_close(tokens, ref_tokens, **TOL)
        assert tokens.shape[1] == prefix + (shape[2] // 14) * (shape[3] // 14)
    if registers:
        _check_extraction(lm, ref, tmp_path)
    else:  # the check is sharp: timm's resizing (to a size, antialiased) is not DINOv2's at 224 px
        theirs_pos = lm.module.original_pos_embed(16, 16)
        lm.module.interpolate_offset, lm.module.interpolate_antialias = 0.0, True
        assert (lm.module.original_pos_embed(16, 16) - theirs_pos).abs().max() > 1e-3


def _check_extraction(lm, ref, tmp_path) -> None:
    """visreps' extraction of a block (patch_mean: after the 1 + 4 prefix tokens) and the CLS token of ``norm``."""
    from PIL import Image

    from visreps import extract

    image_dir = tmp_path / "images"
    write_images(image_dir, ["a.png", "b.jpg"], size=(300, 260))
    res = extract(
        lm,
        image_dir,
        layers=["blocks.11", "norm"],
        pool={"blocks.11": "patch_mean", "norm": "cls"},
        num_workers=0,
        progress=False,
        device="cpu",
    )
    x = torch.stack([lm.transform(Image.open(image_dir / p).convert("RGB")) for p in res.manifest["path"]])
    assert x.shape[1:] == (3, 224, 224)
    with torch.no_grad():
        theirs = ref.forward_features(x)
    patch_mean = theirs["x_prenorm"][:, 5:].mean(dim=1)
    torch.testing.assert_close(torch.as_tensor(res["blocks.11"]), patch_mean, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(torch.as_tensor(res["norm"]), theirs["x_norm_clstoken"], rtol=1e-4, atol=1e-4)


def test_dinov2_giant_swiglu_keys_map_onto_timms_packed_mlp(offline_cache, monkeypatch):
    """ViT-g's SwiGLU (mlp.w12/mlp.w3) at a tiny width through the real builder and key map, numerically."""
    from visreps.models import _ssl_vit

    monkeypatch.setitem(_ssl_vit._SIZES, "g", (96, 2, 2))
    monkeypatch.setitem(dinov2_vit._SIZES, "vit_giant2", dict(embed_dim=96, depth=2, num_heads=2))
    torch.manual_seed(5)
    ref = dinov2_vit.hub_model("vit_giant2").eval()
    _randomise(ref)
    sd = ref.state_dict()
    assert "blocks.0.mlp.w12.weight" in sd and sd["blocks.0.mlp.w12.weight"].shape == (2 * 256, 96)
    _save(sd, "dinov2-vitg14")
    lm = load_model("ssl:dinov2-vitg14")
    x = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(lm.module.forward_features(x)[:, 1:], ref.forward_features(x)["x_norm_patchtokens"])
    del sd["blocks.1.mlp.w3.bias"]
    _save(sd, "dinov2-vitg14")
    with pytest.raises(WeightsError, match=r"keys missing from the file: blocks\.1\.mlp\.w3\.bias"):
        load_model("ssl:dinov2-vitg14")


# --------------------------------------------------------------------------- MAE


def test_mae_encoder_matches_the_original_code(offline_cache, monkeypatch):
    """The code path of ssl:mae-vitb16 (its builder kind, key map, preprocessing) at ViT-S width, to stay fast."""
    from visreps.models._ssl_vit import _mae_vit

    small = replace(MODELS["mae-vitb16"], build=_mae_vit("vit_small_patch16_224"))
    monkeypatch.setitem(ssl_source.MODELS, "mae-vits16-test", small)
    torch.manual_seed(7)
    mae = mae_vit.mae_vit("small").eval()
    small.checkpoint.path.parent.mkdir(parents=True, exist_ok=True)
    encoder = mae_vit.save_pretrain_file(mae, small.checkpoint.path)  # {"model": encoder state_dict}
    lm = load_model("ssl:mae-vits16-test")
    assert lm.token_prefix == 1 and lm.preprocessing == MODELS["mae-vitb16"].preprocessing

    x = torch.randn(1, 3, 224, 224)
    tokens: list[torch.Tensor] = []
    hook = lm.module.norm.register_forward_hook(lambda _m, _i, o: tokens.append(o))
    with torch.no_grad():
        cls = lm.module(x)
        latent, _, ids_restore = mae.forward_encoder(x, mask_ratio=0.0)  # the pre-training encoder, nothing masked
    hook.remove()
    patches = torch.gather(latent[:, 1:], 1, ids_restore.unsqueeze(-1).expand(-1, -1, latent.shape[-1]))
    torch.testing.assert_close(tokens[0][:, 0], latent[:, 0], **TOL)
    torch.testing.assert_close(tokens[0][:, 1:], patches, **TOL)
    torch.testing.assert_close(cls, latent[:, 0], **TOL)

    with torch.device("meta"):  # no init cost: every tensor used comes from the file
        probe = mae_vit.VisionTransformer(  # models_vit.vit_base_patch16's arguments at ViT-S width, as main_linprobe
            patch_size=16,
            embed_dim=384,
            depth=12,
            num_heads=6,
            mlp_ratio=4,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_classes=10,
        )
    assert probe.load_state_dict(encoder, strict=False, assign=True).missing_keys == ["head.weight", "head.bias"]
    with torch.no_grad():
        torch.testing.assert_close(cls, probe.eval().forward_features(x), **TOL)  # the linear-probe feature

    torch.save(encoder, small.checkpoint.path)  # a bare state_dict is not the published layout
    with pytest.raises(WeightsError, match=r"has no 'model' on the path 'model' \(found: cls_token, pos_embed"):
        load_model("ssl:mae-vits16-test")


# --------------------------------------------------------------------------- every id's key map


def _original(name: str):
    if name.startswith("dino-vit"):
        make = dino_vit.vit_small if name[8] == "s" else dino_vit.vit_base
        return make(patch_size=int(name[9:]), num_classes=0).state_dict()  # img_size 224: 28x28 grid for /8
    if name.startswith("dinov2"):
        arch = {"s": "vit_small", "b": "vit_base", "l": "vit_large", "g": "vit_giant2"}[name[10]]
        return dinov2_vit.hub_model(arch, registers=name.endswith("-reg")).state_dict()
    sd = mae_vit.mae_vit({"b": "base", "l": "large", "h": "huge"}[name[7]]).state_dict()
    return {"model": {k: v for k, v in sd.items() if not k.startswith("decoder_") and k != "mask_token"}}


@pytest.mark.parametrize(
    "name",
    [
        "dino-vits8",
        "dino-vitb16",
        "dino-vitb8",
        "dinov2-vitb14",
        "dinov2-vitb14-reg",
        "dinov2-vitl14",
        "dinov2-vitl14-reg",
        "dinov2-vitg14",
        "dinov2-vitg14-reg",
        "mae-vitb16",
        "mae-vitl16",
        "mae-vith14",
    ],
)
def test_the_original_layout_of_every_large_id_fits_its_architecture(name):
    entry = MODELS[name]
    with torch.device("meta"):
        original = _original(name)
        ours = entry.build().state_dict()
    mapped, _ = entry.keys.convert(original, name)
    assert sorted(mapped) == sorted(ours)
    assert {k: tuple(v.shape) for k, v in mapped.items()} == {k: tuple(v.shape) for k, v in ours.items()}


# --------------------------------------------------------------------------- bad input, cards, seeds


def test_offline_without_the_file_names_file_address_and_cache_path(offline_cache):
    with pytest.raises(WeightsError) as e:
        load_model("ssl:dinov2-vits14-reg")
    msg = str(e.value)
    url = "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_reg4_pretrain.pth"
    assert (
        url in msg and str(offline_cache / "torch" / "hub" / "checkpoints" / "dinov2_vits14_reg4_pretrain.pth") in msg
    )


def test_a_dinov2_file_given_to_a_dino_id_is_named_in_the_files_terms(offline_cache, tmp_path):
    with torch.device("meta"):
        layout = dinov2_vit.hub_model("vit_small").state_dict()
    torch.save({k: torch.zeros(v.shape) for k, v in layout.items()}, tmp_path / "dinov2_vits14_pretrain.pth")
    with pytest.raises(WeightsError) as e:
        load_model("ssl:dino-vits16", weights=str(tmp_path / "dinov2_vits14_pretrain.pth"))
    msg = str(e.value)
    assert "unexpected keys in the file: mask_token, blocks.0.ls1.gamma" in msg
    assert "pos_embed (file (1, 1370, 384) vs model (1, 197, 384))" in msg


def test_a_pinned_sha256_that_differs_names_the_file_and_both_hashes(offline_cache, monkeypatch):
    entry = MODELS["dino-vits8"]
    pinned = "f" * 64
    monkeypatch.setitem(
        ssl_source.MODELS, "dino-vits8", replace(entry, checkpoint=replace(entry.checkpoint, sha256=pinned))
    )
    _save({"not": torch.zeros(1)}, "dino-vits8")
    path = entry.checkpoint.path
    with pytest.raises(WeightsError) as e:
        load_model("ssl:dino-vits8")
    assert str(path) in str(e.value) and pinned in str(e.value) and file_sha256(path) in str(e.value)


def test_an_unknown_id_lists_the_closest():
    with pytest.raises(ModelNotFoundError, match=r"closest: .*ssl:dinov2-vits14"):
        load_model("ssl:dinov2-vits15")


def test_catalogue_cards():
    ids = {f"ssl:{n}" for n in MODELS}
    assert len(ids) == 16 and ids <= set(list_models("ssl:*"))
    card = model_card("ssl:dinov2-vitg14-reg")
    assert card.family == "DINOv2 with registers"
    assert card.architecture == "ViT-g/14 + 4 registers = timm:vit_giant_patch14_reg4_dinov2.lvd142m"
    assert card.weights_licence.startswith("Apache-2.0") and "Darcet" in card.paper and "Oquab" in card.paper
    assert card.url == "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitg14/dinov2_vitg14_reg4_pretrain.pth"
    assert card.sha256 is None
    assert model_card("ssl:dinov2-vits14").family == "DINOv2"
    mae = model_card("ssl:mae-vith14")
    assert mae.weights_licence.startswith("CC-BY-NC-4.0") and mae.paper.startswith("He et al.")
    assert mae.url == "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_huge.pth"
    dino = model_card("ssl:dino-vitb8")
    assert dino.url == "https://dl.fbaipublicfiles.com/dino/dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth"
    assert dino.paper.startswith("Caron et al.") and "ImageNet-1k" in dino.training_data
    for n, entry in MODELS.items():
        assert entry.checkpoint is not None and entry.checkpoint.sha256 is None, n  # no published sha256 to pin
        assert isinstance(entry.checkpoint, Checkpoint) and entry.preprocessing.interpolation == "bicubic"


def test_random_weights_are_seeded_and_pickle(offline_cache):
    a = load_model("ssl:dinov2-vits14-reg", pretrained=False, seed=1)
    b = load_model("ssl:dinov2-vits14-reg", pretrained=False, seed=1)
    assert a.weights == {"kind": "random", "seed": 1}
    for (k, va), vb in zip(a.module.state_dict().items(), b.module.state_dict().values()):
        assert torch.equal(va, vb), k
    assert a.module.register_tokens.abs().max() > 0  # initialised as DINOv2 does (normal, std 1e-6), not zeros
    copy = pickle.loads(pickle.dumps(a.module))  # the class is found by name (visreps.models._ssl_vit.OriginalViT)
    x = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(copy(x), a.module(x), rtol=0, atol=0)
