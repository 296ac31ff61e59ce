"""The ``hf:`` source: tiny transformers models saved with save_pretrained, compared with transformers itself.

Every model is built from a tiny config (hidden size 32, 2 layers, 32×32 images), saved with its
image processor into ``tmp_path`` and loaded as ``hf:<folder>`` (or from a hand-made Hub cache).
Layer outputs are compared with the model's own ``output_hidden_states=True`` outputs on the
processor's own ``pixel_values``; nothing touches the network.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import write_images

pytest.importorskip("transformers")

import torch
import transformers as tr
from PIL import Image

import visreps
from visreps.cache import set_cache_dir, set_offline
from visreps.capture import make_capture, plan_layers
from visreps.errors import MissingExtraError, ModelNotFoundError, VisrepsError, WeightsError
from visreps.models import available_offline, hf, load_model

SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
IMAGE = {"image_size": 32, "patch_size": 8}
NAMES = ["a.png", "b.jpg", "c.png", "d.png"]
ATOL = 1e-5


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hf_images")
    write_images(root, NAMES[:2], size=(61, 43))  # landscape and portrait, odd sizes: resize and crop rounding
    write_images(root, NAMES[2:], size=(37, 52), seed=1)
    return root


def pil_images(root: Path) -> list[Image.Image]:
    return [Image.open(root / n).convert("RGB") for n in sorted(NAMES)]


def save(folder: Path, model, processor) -> Path:
    """``model`` (seeded by its caller) and ``processor`` saved with save_pretrained into ``folder``."""
    model.save_pretrained(folder)
    if processor is not None:
        processor.save_pretrained(folder)
    return folder


def reference(folder: Path, root: Path, model=None):
    """The model's own outputs with ``output_hidden_states=True`` on the processor's own pixel_values."""
    proc = tr.AutoImageProcessor.from_pretrained(folder)
    x = proc(images=pil_images(root), return_tensors="pt")["pixel_values"]
    if model is None:
        model = tr.AutoModel.from_pretrained(folder)
    with torch.inference_mode():
        return model.eval()(x, output_hidden_states=True)


def extract(model_id_or_lm, root: Path, layers, pool="none", **kw):
    return visreps.extract(model_id_or_lm, root, layers=layers, pool=pool, progress=False, num_workers=0, **kw)


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = tr.ViTModel(tr.ViTConfig(**SMALL, **IMAGE))
    return save(tmp_path_factory.mktemp("vit"), model, tr.ViTImageProcessor(size={"height": 32, "width": 32}))


# --------------------------------------------------------------------------- preprocessing


PROCESSORS = {
    "vit squash bilinear": lambda: tr.ViTImageProcessor(size={"height": 40, "width": 40}),
    "bit shortest+crop bicubic": lambda: tr.BitImageProcessor(
        size={"shortest_edge": 48}, crop_size={"height": 40, "width": 40}
    ),
    "convnext crop_pct": lambda: tr.ConvNextImageProcessor(size={"shortest_edge": 40}),
    "convnext >=384 squash": lambda: tr.ConvNextImageProcessor(size={"shortest_edge": 384}),
    "siglip squash bicubic": lambda: tr.SiglipImageProcessor(size={"height": 32, "width": 32}),
    "clip odd crop": lambda: tr.CLIPImageProcessor(size={"shortest_edge": 37}, crop_size={"height": 33, "width": 33}),
    "deit squash+crop": lambda: tr.DeiTImageProcessor(
        size={"height": 45, "width": 45}, crop_size={"height": 32, "width": 32}
    ),
    "nearest": lambda: tr.ViTImageProcessor(size={"height": 24, "width": 24}, resample=0),
    "crop larger than image (padding)": lambda: tr.CLIPImageProcessor(
        size={"shortest_edge": 20}, crop_size={"height": 24, "width": 24}
    ),
}
#: not expressible as resize/crop/normalise: the processor itself runs
BY_PROCESSOR = {
    "non-square size": lambda: tr.ViTImageProcessor(size={"height": 24, "width": 40}),
    "PIL backend": lambda: tr.ViTImageProcessorPil(size={"height": 32, "width": 32}),
}


@pytest.mark.parametrize("case", [*PROCESSORS, *BY_PROCESSOR])
def test_pixels_equal_the_processors_pixel_values(case, images):
    processor = {**PROCESSORS, **BY_PROCESSOR}[case]()
    prep, extra = hf.preprocessing_of(processor)
    assert (prep.resize_mode == "processor") == (case in BY_PROCESSOR)
    assert extra["hf_image_processor"] == type(processor).__name__
    transform = prep.build()
    pics = pil_images(images) + [Image.fromarray(np.full((300, 200, 3), 200, np.uint8))]
    for im in pics:
        ref = processor(images=im, return_tensors="pt")["pixel_values"][0]
        mine = transform(im)
        assert mine.dtype == torch.float32 and mine.shape == ref.shape == prep.input_size()
        torch.testing.assert_close(mine, ref, atol=ATOL, rtol=0)


def test_translation_values():
    """ConvNeXt below 384: shortest edge int(S / crop_pct), crop S; ViT: squash; recorded in the metadata dict."""
    prep = hf.translate_processor(tr.ConvNextImageProcessor(size={"shortest_edge": 224}))
    assert isinstance(prep, hf.HFPreprocessing)
    assert (prep.resize, prep.crop, prep.resize_mode, prep.interpolation) == (256, 224, "shortest", "bicubic")
    prep = hf.translate_processor(tr.ViTImageProcessor())
    assert isinstance(prep, hf.HFPreprocessing)
    d = prep.to_dict()
    assert d["resize"] == 224 and d["crop"] is None and d["resize_mode"] == "squash" and d["mean"] == [0.5] * 3
    assert "does not" in str(hf.translate_processor(tr.ViTImageProcessor(do_normalize=False)))


# --------------------------------------------------------------------------- layers against transformers


def _vit():
    return tr.ViTModel(tr.ViTConfig(**SMALL, **IMAGE)), tr.ViTImageProcessor(size={"height": 32, "width": 32})


def _deit():
    proc = tr.DeiTImageProcessor(size={"height": 36, "width": 36}, crop_size={"height": 32, "width": 32})
    return tr.DeiTModel(tr.DeiTConfig(**SMALL, **IMAGE)), proc


def _dinov2():
    proc = tr.BitImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32})
    return tr.Dinov2Model(tr.Dinov2Config(**SMALL, **IMAGE)), proc


def _dinov2_registers():
    cfg = tr.Dinov2WithRegistersConfig(**SMALL, **IMAGE, num_register_tokens=4)
    proc = tr.BitImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32})
    return tr.Dinov2WithRegistersModel(cfg), proc


def _swin():
    cfg = tr.SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=4)
    return tr.SwinModel(cfg), tr.ViTImageProcessor(size={"height": 32, "width": 32}, resample=3)


def _convnext():
    cfg = tr.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, image_size=32)
    return tr.ConvNextModel(cfg), tr.ConvNextImageProcessor(size={"shortest_edge": 32})


# name: (builder, prefix tokens, [(visreps layer, index into hidden_states or an output name)])
ARCHS = {
    "vit": (_vit, 1, [("embeddings", 0), ("layers.0", 1), ("layers.1", 2), ("pooler", "pooler_output")]),
    "deit": (_deit, 2, [("layers.0", 1), ("layernorm", "last_hidden_state")]),
    "dinov2": (_dinov2, 1, [("encoder.layer.0", 1), ("encoder.layer.1", 2), ("layernorm", "last_hidden_state")]),
    "dinov2_registers": (_dinov2_registers, 5, [("encoder.layer.1", 2), ("layernorm", "last_hidden_state")]),
    "swin": (_swin, 0, [("encoder.layers.0", 1), ("encoder.layers.1", 2), ("pooler", "pooler_output")]),
    "convnext": (_convnext, 0, [("encoder.stages.0", 1), ("encoder.stages.1", 2), ("layernorm", "pooler_output")]),
}


def _ref(out, key):
    t = out.hidden_states[key] if isinstance(key, int) else out[key]
    return t.reshape(t.shape[0], -1) if key == "pooler_output" else t


@pytest.mark.parametrize("arch", list(ARCHS))
def test_layers_equal_transformers_hidden_states(arch, images, tmp_path):
    build, prefix, pairs = ARCHS[arch]
    torch.manual_seed(0)
    model, proc = build()
    folder = save(tmp_path / arch, model, proc)
    lm = load_model(f"hf:{folder}", device="cpu")
    assert lm.prefix_tokens == prefix and lm.weights["architecture"]["prefix_tokens"] == prefix
    assert lm.weights["kind"] == "pretrained" and set(lm.weights["files"]) == {"model.safetensors"}
    assert lm.preprocessing.resize_mode != "processor"
    out = reference(folder, images, model)
    layers = [layer for layer, _ in pairs]
    res = extract(lm, images, layers)
    assert list(res.manifest["path"]) == sorted(NAMES)
    for layer, key in pairs:
        got = res[layer].reshape(len(NAMES), -1) if key == "pooler_output" else res[layer]  # Swin: (B, C, 1)
        np.testing.assert_allclose(got, _ref(out, key).numpy(), atol=ATOL, rtol=1e-5, err_msg=layer)
    tokens = [layer for layer, key in pairs if isinstance(key, int) and out.hidden_states[key].dim() == 3]
    if not tokens:  # ConvNeXt: maps (B, C, H, W); avg pooling is their spatial mean
        np.testing.assert_allclose(
            extract(lm, images, ["encoder.stages.1"], pool="avg")["encoder.stages.1"],
            out.hidden_states[2].mean(dim=(2, 3)).numpy(),
            atol=ATOL,
        )
        return
    layer = tokens[-1]
    h = out.hidden_states[dict(pairs)[layer]]
    patch = extract(lm, images, [layer], pool="patch_mean")[layer]
    np.testing.assert_allclose(patch, h[:, prefix:].mean(dim=1).numpy(), atol=ATOL)
    if prefix:
        np.testing.assert_allclose(extract(lm, images, [layer], pool="cls")[layer], h[:, 0].numpy(), atol=ATOL)
    else:  # no class token: cls is an error naming patch_mean
        with pytest.raises(VisrepsError, match="no class token.*patch_mean"):
            extract(lm, images, [layer], pool="cls")


@pytest.mark.parametrize("dual", ["siglip", "clip"])
def test_dual_model_gives_its_vision_tower(dual, images, tmp_path):
    """A saved CLIP/SigLIP image-text model loads as its vision tower, with the tower's weights."""
    text = {**SMALL, "vocab_size": 99, "max_position_embeddings": 16}
    vision = {**SMALL, **IMAGE}
    torch.manual_seed(0)
    if dual == "siglip":
        model = tr.SiglipModel(tr.SiglipConfig(text_config=text, vision_config=vision))
        proc, tower, prefix = tr.SiglipImageProcessor(size={"height": 32, "width": 32}), "SiglipVisionModel", 0
    else:
        model = tr.CLIPModel(tr.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
        proc = tr.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
        tower, prefix = "CLIPVisionModel", 1
    folder = save(tmp_path / dual, model, proc)
    lm = load_model(f"hf:{folder}", device="cpu")
    assert type(lm.module).__name__ == tower and lm.prefix_tokens == prefix
    x = proc(images=pil_images(images), return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        out = model.eval().vision_model(x, output_hidden_states=True)
    res = extract(lm, images, ["encoder.layers.0", "encoder.layers.1"], pool="patch_mean")
    for i in (0, 1):
        want = out.hidden_states[i + 1][:, prefix:].mean(dim=1).numpy()
        np.testing.assert_allclose(res[f"encoder.layers.{i}"], want, atol=ATOL)


# --------------------------------------------------------------------------- early exit, random init, files


def test_early_exit_stops_after_the_requested_layer(vit_folder):
    lm = load_model(f"hf:{vit_folder}", device="cpu")
    specs = plan_layers(lm, ["layers.0"], pool="cls")
    later = []
    handle = lm.module.layers[1].register_forward_hook(lambda *a: later.append(1))
    try:
        cap = make_capture(lm, specs)
        with cap, torch.inference_mode():
            out = cap.run(lm.dummy_input(2))
    finally:
        handle.remove()
    assert out["layers.0"].shape == (2, 32) and later == [] and cap.result is None


def test_random_init_is_seeded(vit_folder):
    a = load_model(f"hf:{vit_folder}", pretrained=False, seed=3, device="cpu")
    b = load_model(f"hf:{vit_folder}", pretrained=False, seed=3, device="cpu")
    c = load_model(f"hf:{vit_folder}", pretrained=False, seed=4, device="cpu")
    trained = load_model(f"hf:{vit_folder}", device="cpu")
    assert a.weights["kind"] == "random" and a.weights["seed"] == 3 and str(vit_folder) in a.weights["config"]
    sa, sb, sc, st = (m.module.state_dict() for m in (a, b, c, trained))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    w = "layers.0.attention.q_proj.weight"
    assert not torch.equal(sa[w], sc[w]) and not torch.equal(sa[w], st[w])


def test_weights_file_loads_into_the_architecture(vit_folder, images, tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(7)
    other = tr.ViTModel(tr.ViTConfig(**SMALL, **IMAGE)).eval()
    path = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(path))
    lm = load_model(f"hf:{vit_folder}", weights=str(path), device="cpu")
    assert lm.weights["kind"] == "file" and lm.weights["file"] == str(path.resolve())
    out = reference(vit_folder, images, other)
    np.testing.assert_allclose(extract(lm, images, ["layers.1"])["layers.1"], out.hidden_states[2].numpy(), atol=ATOL)
    bad = tmp_path / "bad.safetensors"
    save_file({"x": torch.zeros(2)}, str(bad))
    with pytest.raises(WeightsError, match="does not fit"):
        load_model(f"hf:{vit_folder}", weights=str(bad), device="cpu")


def test_no_image_processor_falls_back_to_imagenet(tmp_path, images):
    torch.manual_seed(0)
    folder = save(tmp_path / "noproc", tr.ViTModel(tr.ViTConfig(**SMALL, **IMAGE)), None)
    lm = load_model(f"hf:{folder}", device="cpu")
    assert (lm.preprocessing.resize, lm.preprocessing.crop) == (36, 32)
    assert "no image processor" in lm.preprocessing_extra["hf_preprocessing_note"]
    assert extract(lm, images, ["layers.0"], pool="cls")["layers.0"].shape == (4, 32)


# --------------------------------------------------------------------------- Hub ids from the cache


COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path, vit_folder):
    """A Hugging Face cache holding ``org/tiny-vit`` at revision main = COMMIT, visreps offline."""
    repo = tmp_path / "cache" / "huggingface" / "models--org--tiny-vit"
    snap = repo / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    for f in vit_folder.iterdir():
        shutil.copy(f, snap / f.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    set_cache_dir(tmp_path / "cache")
    set_offline(True)
    try:
        yield tmp_path / "cache" / "huggingface"
    finally:
        set_cache_dir(None)
        set_offline(None)


def test_hub_id_from_the_cache_records_revision_and_commit(hub_cache, images, vit_folder):
    assert available_offline("hf:org/tiny-vit") and available_offline(f"hf:org/tiny-vit@{COMMIT}")
    assert not available_offline("hf:org/other") and not available_offline("hf:org/tiny-vit@v2")
    lm = load_model("hf:org/tiny-vit", device="cpu")
    assert lm.model_id == "hf:org/tiny-vit"
    assert {k: lm.weights[k] for k in ("kind", "repo", "revision", "commit")} == {
        "kind": "pretrained",
        "repo": "org/tiny-vit",
        "revision": "main",
        "commit": COMMIT,
    }
    pinned = load_model(f"hf:org/tiny-vit@{COMMIT}", device="cpu")
    assert pinned.weights["revision"] == COMMIT and pinned.weights["commit"] == COMMIT
    res = extract(pinned, images, ["layers.1"])
    assert res.metadata["weights"]["commit"] == COMMIT
    np.testing.assert_allclose(res["layers.1"], reference(vit_folder, images).hidden_states[2].numpy(), atol=ATOL)


def test_offline_cache_miss_names_repo_revision_and_cache(hub_cache):
    with pytest.raises(WeightsError) as e:
        load_model("hf:org/other@v1.0")
    msg = str(e.value)
    assert "org/other" in msg and "v1.0" in msg and str(hub_cache) in msg and "offline" in msg
    with pytest.raises(WeightsError, match="org/tiny-vit at revision v2"):
        load_model("hf:org/tiny-vit@v2", pretrained=False)


# --------------------------------------------------------------------------- CLI and bad input


def test_cli_extraction(vit_folder, images, tmp_path):
    from visreps.cli import main

    out = tmp_path / "out"
    args = ["extract", f"hf:{vit_folder}", str(images), "--layers", "layers.1", "--pool", "cls"]
    r = CliRunner().invoke(main, [*args, "--out", str(out), "--workers", "0", "-q"])
    assert r.exit_code == 0, r.output
    feats = visreps.load_features(out)
    want = reference(vit_folder, images).hidden_states[2][:, 0].numpy()
    np.testing.assert_allclose(feats["layers.1"], want, atol=ATOL)
    assert feats.metadata["model"] == f"hf:{vit_folder}"
    assert feats.metadata["preprocessing"]["processor"] == "ViTImageProcessor"
    r = CliRunner().invoke(main, ["extract", "hf:./no/such/folder", str(images), "--layers", "x", "--out", str(out)])
    assert r.exit_code == 2 and "does not exist" in r.output and len(r.output.strip().splitlines()) == 1


def test_missing_transformers_names_the_extra(monkeypatch, vit_folder):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(MissingExtraError, match=r'pip install "visreps\[hf\]"'):
        load_model(f"hf:{vit_folder}")
    assert visreps.list_models(source="hf") == []


@pytest.mark.parametrize("name", ["", "bad id!", "org/name@", "org/na me", "-org/x", "org/x@rev?"])
def test_malformed_ids(name):
    with pytest.raises(ModelNotFoundError, match="not a valid Hugging Face id|needs a Hub id"):
        load_model(f"hf:{name}")


def test_folder_errors(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_model(f"hf:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="has no config.json"):
        load_model(f"hf:{tmp_path / 'empty'}")
    assert hf.parse_name("facebook/dinov2-small@refs/pr/3") == hf.HFName(
        repo="facebook/dinov2-small", revision="refs/pr/3"
    )


def test_preprocessing_override_keeps_the_hf_pipeline(vit_folder, images):
    lm = load_model(f"hf:{vit_folder}", preprocessing={"resize": 40, "crop": 32}, device="cpu")
    assert isinstance(lm.preprocessing, hf.HFPreprocessing) and lm.preprocessing.resize_mode == "squash"
    im = pil_images(images)[0]
    proc = tr.ViTImageProcessor(size={"height": 40, "width": 40}, do_center_crop=True, crop_size=32)
    torch.testing.assert_close(lm.transform(im), proc(images=im, return_tensors="pt")["pixel_values"][0])
