"""CLIP and OpenCLIP sources, image and text features: random init only, no network."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import write_images

pytest.importorskip("open_clip")

import torch

import visreps
from visreps.cache import set_cache_dir, set_offline
from visreps.errors import MissingExtraError, ModelNotFoundError, VisrepsError, WeightsError
from visreps.models import clip as clip_source
from visreps.models import load_model
from visreps.models import openclip as openclip_source
from visreps.text import extract_text

NAMES = ["a.png", "b.jpg", "c.png", "d.png"]
TEXTS = ["a photo of a dog", 'a "quoted" text, with a comma', "ünïcödé ☃"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip_images")
    write_images(root, NAMES, size=(96, 64))  # landscape: exercises resize-shorter-side + centre crop
    return root


@pytest.fixture(scope="module")
def vit():
    return load_model("clip:ViT-B-32", pretrained=False, device="cpu")


@pytest.fixture(scope="module")
def rn50():
    return load_model("clip:RN50", pretrained=False, device="cpu")


def _batch(lm, root):
    """The preprocessed images, computed outside visreps' data loader."""
    return torch.stack([lm.transform(Image.open(root / n).convert("RGB")) for n in NAMES])


# --------------------------------------------------------------------------- names


def test_names_and_errors():
    names = clip_source.list_names()
    assert {"RN50", "RN101", "RN50x4", "ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-L-14-336"} <= set(names)
    assert not any(n.endswith("-quickgelu") for n in names)
    assert "clip:RN50" in visreps.list_models(source="clip")
    clip_source.check_name("ViT-B/32")  # OpenAI's spelling
    clip_source.check_name("ViT-L/14@336px")
    with pytest.raises(ModelNotFoundError, match="clip:ViT-B-32"):
        clip_source.check_name("ViT-B-33")

    assert "ViT-B-32/laion2b_s34b_b79k" in openclip_source.list_names()
    assert "openclip:ViT-B-32/laion2b_s34b_b79k" in visreps.list_models("laion2b_s34b_b79k")
    assert openclip_source.split_name("ViT-B-32/LAION2B-s34b-b79k") == ("ViT-B-32", "laion2b_s34b_b79k")
    assert openclip_source.split_name("ViT-B-32") == ("ViT-B-32", None)
    with pytest.raises(ModelNotFoundError, match="openclip:ViT-B-32/laion2b_s34b_b79k"):
        openclip_source.check_name("ViT-B-32/laion2b_s34b")
    with pytest.raises(ModelNotFoundError, match="no architecture 'ViT-B-3'.*openclip:ViT-B-32"):
        openclip_source.check_name("ViT-B-3/openai")
    with pytest.raises(WeightsError, match=r"openclip:ViT-B-32/openai.*--random"):
        load_model("openclip:ViT-B-32")  # an architecture without a tag has no pretrained weights


def test_missing_open_clip_names_the_extra(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "open_clip", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'visreps\[clip\]'"):
        clip_source.import_open_clip()


# --------------------------------------------------------------------------- loading


def test_loaded_model_layers_weights_preprocessing(vit):
    from open_clip.transform import PreprocessCfg, image_transform_v2

    names = vit.layer_names()
    assert "visual.transformer.resblocks.3" in names and names[-1] == "embedding"
    assert vit.model_id == "clip:ViT-B-32"
    assert vit.weights == {"kind": "random", "seed": 0}
    assert vit.prefix_tokens == 1 and vit.seq_first == frozenset() and vit.text is not None
    # OpenAI's weights were trained with QuickGELU: the architecture is built with it
    assert type(vit.module.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
    p = vit.preprocessing
    assert (p.resize, p.crop, p.interpolation) == (224, 224, "bicubic")
    assert p.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert p.std == pytest.approx((0.26862954, 0.26130258, 0.27577711))
    # the same pixels as open_clip's own eval transform
    own = image_transform_v2(PreprocessCfg(**vit.text.clip_model.visual.preprocess_cfg), is_train=False)
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (70, 130, 3), dtype=np.uint8))
    assert torch.equal(vit.transform(img), own(img))


def test_squash_preprocessing_is_open_clips():
    from open_clip.transform import image_transform

    cfg = {
        "size": (256, 256),
        "mean": (0.5,) * 3,
        "std": (0.5,) * 3,
        "interpolation": "bilinear",
        "resize_mode": "squash",
    }
    prep = clip_source.preprocessing_from_open_clip(cfg, "openclip:test")
    assert prep.to_dict()["resize_mode"] == "squash" and prep.input_size() == (3, 256, 256)
    img = Image.fromarray(np.random.default_rng(2).integers(0, 256, (90, 160, 3), dtype=np.uint8))
    ref = image_transform(
        256, is_train=False, mean=cfg["mean"], std=cfg["std"], resize_mode="squash", interpolation="bilinear"
    )
    out = prep.build()(img)
    assert out.shape == (3, 256, 256) and torch.equal(out, ref(img))


def test_openclip_pair_loads_random():
    lm = load_model("openclip:ViT-B-32/laion2b_s34b_b79k", pretrained=False, seed=3, device="cpu")
    assert lm.model_id == "openclip:ViT-B-32/laion2b_s34b_b79k"
    assert lm.weights == {"kind": "random", "seed": 3}
    assert lm.text is not None and lm.text.clip_model.visual is lm.module.visual
    assert type(lm.module.visual.transformer.resblocks[0].mlp.gelu).__name__ == "GELU"  # a LAION tag: plain GELU
    assert (lm.preprocessing.resize, lm.preprocessing.crop) == (224, 224)


# --------------------------------------------------------------------------- image features


def test_vit_embedding_and_inner_layer(vit, images, tmp_path):
    inner = "visual.transformer.resblocks.5"
    # by id: the same seed gives the same weights as the fixture
    res = visreps.extract(
        "clip:ViT-B-32",
        images,
        layers=["embedding", inner],
        pool={inner: "cls"},
        pretrained=False,
        seed=0,
        device="cpu",
        out=tmp_path / "out",
        num_workers=0,
        progress=False,
    )
    assert res["embedding"].shape == (4, 512) and res[inner].shape == (4, 768)
    assert res.paths == NAMES
    x = _batch(vit, images)
    cm = vit.text.clip_model
    with torch.no_grad():
        emb = cm.encode_image(x)
        own = cm.visual.forward_intermediates(
            x, indices=[5], output_fmt="NLC", output_extra_tokens=True, intermediates_only=True
        )
    np.testing.assert_allclose(res["embedding"], emb.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(res[inner], own["image_intermediates_prefix"][0][:, 0].numpy(), rtol=1e-4, atol=1e-5)
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert meta["weights"] == {"kind": "random", "seed": 0}
    assert meta["preprocessing"]["interpolation"] == "bicubic"


def test_vit_resblock_is_batch_first(vit, images):
    inner = "visual.transformer.resblocks.5"
    res = visreps.extract(vit, images, layers=[inner], pool="none", num_workers=0, progress=False)
    assert res[inner].shape == (4, 50, 768)  # (images, 1 class + 7×7 patch tokens, width)
    x = _batch(vit, images)
    with torch.no_grad():
        own = vit.text.clip_model.visual.forward_intermediates(
            x, indices=[5], output_fmt="NLC", output_extra_tokens=True, intermediates_only=True
        )
    tokens = torch.cat([own["image_intermediates_prefix"][0], own["image_intermediates"][0]], dim=1)
    np.testing.assert_allclose(res[inner], tokens.numpy(), rtol=1e-4, atol=1e-4)
    patch = visreps.extract(vit, images, layers=[inner], pool="patch_mean", num_workers=0, progress=False)
    np.testing.assert_allclose(patch[inner], tokens[:, 1:].mean(1).numpy(), rtol=1e-4, atol=1e-5)


def test_rn50_embedding_and_inner_layer(rn50, images):
    res = visreps.extract(
        rn50,
        images,
        layers=["embedding", "visual.layer2"],
        pool={"visual.layer2": "avg"},
        num_workers=0,
        progress=False,
    )
    assert res["embedding"].shape == (4, 1024)  # RN50's CLIP embedding is 1024-d
    assert res["visual.layer2"].shape == (4, 512)
    x = _batch(rn50, images)
    cm = rn50.text.clip_model
    with torch.no_grad():
        emb = cm.encode_image(x)
        v = cm.visual  # open_clip's ModifiedResNet
        layer2 = v.layer2(v.layer1(v.stem(x))).mean(dim=(2, 3))
    np.testing.assert_allclose(res["embedding"], emb.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(res["visual.layer2"], layer2.numpy(), rtol=1e-4, atol=1e-5)


def test_seq_first_transformer_comes_out_batch_first(images):
    """A transformer run sequence-first (batch_first=False) is listed and transposed by the capture."""
    from open_clip.transformer import Transformer
    from torch import nn

    from visreps.models import Preprocessing
    from visreps.models.custom import from_module

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch = nn.Conv2d(3, 24, 8, 8)
            self.t = Transformer(24, 2, 2, batch_first=False)

        def forward(self, x):
            return self.t(self.patch(x).flatten(2).transpose(1, 2)).mean(1)

    torch.manual_seed(0)
    net = Tiny().eval()
    seq = clip_source.seq_first_modules(net)
    assert "t.resblocks.1" in seq and "t.resblocks.0.ln_1" in seq and "t" not in seq
    lm = from_module(net, preprocessing=Preprocessing(resize=32, crop=32), device="cpu")
    lm.seq_first = frozenset(seq)
    res = visreps.extract(lm, images, layers=["t.resblocks.1"], pool="none", num_workers=0, progress=False)
    assert res["t.resblocks.1"].shape == (4, 16, 24)  # (images, 4×4 tokens, width)
    with torch.no_grad():
        z = net.patch(_batch(lm, images)).flatten(2).transpose(1, 2).transpose(0, 1)  # (L, N, D)
        for blk in net.t.resblocks:
            z = blk(z)
    np.testing.assert_allclose(res["t.resblocks.1"], z.transpose(0, 1).numpy(), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- text features


def test_text_embedding_saved_with_manifest(vit, tmp_path):
    res = extract_text(vit, TEXTS, out=tmp_path / "text", progress=False)
    cm = vit.text.clip_model
    with torch.no_grad():
        ref = cm.encode_text(vit.text.tokenizer(TEXTS))
    assert res["text_embedding"].shape == (3, 512)
    np.testing.assert_allclose(res["text_embedding"], ref.numpy(), rtol=1e-5, atol=1e-6)
    folder = tmp_path / "text"
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.csv", "metadata.json", "text_embedding.npy"]
    back = visreps.load_features(folder)
    assert back.paths == TEXTS and back.labels == ["", "", ""]
    np.testing.assert_array_equal(back["text_embedding"], res["text_embedding"])
    meta = back.metadata
    assert meta["status"] == "complete" and meta["kind"] == "text" and meta["model"] == "clip:ViT-B-32"
    assert meta["texts"]["n"] == 3 and meta["texts"]["context_length"] == 77
    assert meta["layers"]["text_embedding"]["shape"] == [3, 512]


def test_text_inner_layer_at_end_of_text_token(vit):
    layer = "transformer.resblocks.4"
    res = extract_text(vit, TEXTS, layers=[layer, "text_embedding"], batch_size=2, progress=False)
    full = extract_text(vit, TEXTS, layers=layer, pool="none", progress=False)
    cm = vit.text.clip_model
    tok = vit.text.tokenizer(TEXTS)
    with torch.no_grad():  # the text transformer by hand, up to block 4
        x = cm.token_embedding(tok) + cm.positional_embedding
        for blk in cm.transformer.resblocks[:5]:
            x = blk(x, attn_mask=cm.attn_mask)
    eot = tok.argmax(dim=-1)  # OpenAI's tokenizer: the end-of-text id is the largest
    assert res[layer].shape == (3, 512) and full[layer].shape == (3, 77, 512)
    np.testing.assert_allclose(full[layer], x.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(res[layer], x[torch.arange(3), eot].numpy(), rtol=1e-4, atol=1e-5)
    assert res.metadata["layers"][layer]["pool"] == "eot" and res.metadata["layers"]["text_embedding"]["pool"] == "none"


def test_text_file_and_bad_input(vit, tmp_path):
    f = tmp_path / "texts.txt"
    f.write_text("a photo of a dog\n\n  a cat  \n\n", encoding="utf-8")
    res = extract_text(vit, f, progress=False)
    assert res.paths == ["a photo of a dog", "a cat"]
    assert res.metadata["texts"]["file"] == str(f.resolve())
    with pytest.raises(VisrepsError, match="missing.txt"):
        extract_text(vit, tmp_path / "missing.txt")
    (tmp_path / "blank.txt").write_text("\n  \n")
    with pytest.raises(VisrepsError, match="blank.txt.*no text"):
        extract_text(vit, tmp_path / "blank.txt")
    with pytest.raises(VisrepsError, match=r"texts\[1\] is int"):
        extract_text(vit, ["ok", 3])
    with pytest.raises(VisrepsError, match="closest: transformer.resblocks.1"):
        extract_text(vit, ["ok"], layers=["transformer.resblocks.1x"])
    with pytest.raises(VisrepsError, match="CLIP model with a text tower.*custom:Linear"):
        extract_text(load_model(torch.nn.Linear(2, 2), device="cpu"), ["ok"])


def test_text_cli(tmp_path):
    from click.testing import CliRunner

    from visreps.cli import main as group

    f = tmp_path / "texts.txt"
    f.write_text("a dog\na cat\n", encoding="utf-8")
    out = tmp_path / "out"
    r = CliRunner().invoke(group, ["text", "clip:ViT-B-32", str(f), "--out", str(out), "--random", "--quiet"])
    assert r.exit_code == 0, r.output
    assert np.load(out / "text_embedding.npy").shape == (2, 512)
    assert (out / "manifest.csv").read_text().splitlines() == ["index,path,label", "0,a dog,", "1,a cat,"]
    r = CliRunner().invoke(group, ["text", "clip:ViT-B-32", str(tmp_path / "nope.txt"), "--out", str(out), "--random"])
    assert r.exit_code == 2 and "nope.txt" in r.output and "Traceback" not in r.output


# --------------------------------------------------------------------------- weights


def test_offline_pretrained_names_the_file(tmp_path):
    set_cache_dir(tmp_path)
    set_offline(True)
    try:
        where = (
            tmp_path
            / "huggingface"
            / "open_clip"
            / "timm"
            / "vit_base_patch32_clip_224.openai"
            / "open_clip_pytorch_model.bin"
        )
        assert not visreps.models.available_offline("clip:ViT-B-32")
        with pytest.raises(WeightsError) as e:
            load_model("clip:ViT-B-32", device="cpu")
        msg = str(e.value)
        assert str(where) in msg and "https://huggingface.co/timm/vit_base_patch32_clip_224.openai/" in msg
        assert "offline" in msg and "--random" in msg
        with pytest.raises(WeightsError, match="laion/CLIP-ViT-B-32-laion2B-s34B-b79K"):
            load_model("openclip:ViT-B-32/laion2b_s34b_b79k", device="cpu")
        with pytest.raises(WeightsError, match="openclip:ViT-B-32/laion2b_s34b_b79k"):
            load_model("openclip:ViT-B-32", weights="laion2b_s34b_b79k", device="cpu")  # --weights TAG
        # a file placed there by hand is found; a broken one says how to recover
        where.parent.mkdir(parents=True)
        where.write_bytes(b"not a checkpoint")
        assert visreps.models.available_offline("clip:ViT-B-32")
        with pytest.raises(WeightsError, match="delete the file"):
            load_model("clip:ViT-B-32", device="cpu")
        # a file in the Hugging Face Hub cache layout (what a download leaves) is found as well
        hub = tmp_path / "huggingface" / "models--timm--vit_base_patch16_clip_224.openai"
        (hub / "refs").mkdir(parents=True)
        (hub / "refs" / "main").write_text("abc123")
        (hub / "snapshots" / "abc123").mkdir(parents=True)
        (hub / "snapshots" / "abc123" / "open_clip_model.safetensors").write_bytes(b"x")
        assert (
            clip_source.find_checkpoint("ViT-B-16", "openai")
            == hub / "snapshots" / "abc123" / "open_clip_model.safetensors"
        )
        assert visreps.models.available_offline("openclip:ViT-B-16-quickgelu/openai")
    finally:
        set_cache_dir(None)
        set_offline(None)
