"""``ecoset:`` and ``salobjsub:``: torchvision networks with 565 outputs, from THINGSvision's OSF files.

THINGSvision (``custom_models/*_ecoset.py``, ``alexnet_salobjsub.py``) builds
``torchvision.models.<arch>(weights=None, num_classes=565)`` and loads the OSF file strictly with
``load_state_dict``: the original files are plain torchvision state_dicts. The tests write such files,
from that same construction with random weights, at the cache path, load them through visreps offline,
and compare the logits and a middle layer with the source network. The VGGs (138 M parameters, a
550 MB file) are checked by their key names and shapes on the meta device.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torchvision.models as tvm

import visreps
from visreps import cache
from visreps.capture import LayerSpec, check_topk, model_classes, predictions_table
from visreps.errors import VisrepsError, WeightsError
from visreps.models import load_model, model_card
from visreps.models._base import file_sha256
from visreps.models.ecoset import MODELS
from visreps.models.salobjsub import MODELS as SOS_MODELS


def thingsvision_network(arch: str) -> torch.nn.Module:
    """The network THINGSvision loads each file into (Inception's slow truncated-normal init skipped:
    the weights are random either way)."""
    if arch == "inception_v3":
        return tvm.inception_v3(weights=None, num_classes=565, init_weights=False)
    return getattr(tvm, arch)(weights=None, num_classes=565)


@pytest.fixture
def offline_cache(tmp_path):
    cache.set_cache_dir(tmp_path / "cache")
    cache.set_offline(True)
    yield tmp_path / "cache"
    cache.set_cache_dir(None)
    cache.set_offline(None)


def write_original(net: torch.nn.Module, path) -> None:
    """The OSF file: ``torch.save(model.state_dict())`` of the 565-class torchvision network."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)


def logits_and_middle(module: torch.nn.Module, name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The output and the output of layer ``name``, from one forward pass."""
    out = {}
    handle = module.get_submodule(name).register_forward_hook(lambda m, i, o: out.setdefault("x", o))
    with torch.no_grad():
        logits = module(x)
    handle.remove()
    return logits, out["x"]


@pytest.mark.parametrize(
    ("model_id", "arch", "layer", "side"),
    [
        ("ecoset:alexnet", "alexnet", "features.8", 64),
        ("ecoset:resnet50", "resnet50", "layer2", 64),
        ("ecoset:inception_v3", "inception_v3", "Mixed_5d", 80),
        ("salobjsub:alexnet", "alexnet", "features.10", 64),
    ],
)
def test_the_original_file_loads_and_gives_the_source_networks_outputs(offline_cache, model_id, arch, layer, side):
    torch.manual_seed(7)
    source = thingsvision_network(arch).eval()
    table = SOS_MODELS if model_id.startswith("salobjsub") else MODELS
    ckpt = table[model_id.split(":")[1]].checkpoint
    assert ckpt is not None and ckpt.path.parent == offline_cache / "torch" / "hub" / "checkpoints"
    write_original(source, ckpt.path)
    lm = load_model(model_id, device="cpu")
    x = torch.randn(1, 3, side, side)
    (got, got_mid), (want, want_mid) = logits_and_middle(lm.module, layer, x), logits_and_middle(source, layer, x)
    assert got.shape == (1, 565)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_mid, want_mid, rtol=1e-5, atol=1e-5)
    assert got.abs().max() > 1e-3 and got_mid.abs().max() > 1e-3  # not trivially equal
    assert lm.weights == {
        "kind": "pretrained",
        "name": model_id,
        "url": ckpt.url,
        "file": str(ckpt.path),
        "sha256": file_sha256(ckpt.path),
        "sha256_pinned": False,
    }
    assert lm.class_names == () and lm.preprocessing.crop == 224 and lm.preprocessing.resize == 256


@pytest.mark.parametrize("name", ["vgg16", "vgg16_bn", "alexnet", "resnet50", "inception_v3"])
def test_every_architecture_has_the_original_files_keys_and_shapes(name):
    """visreps' build against THINGSvision's construction, key by key (meta device: no memory, no time)."""
    with torch.device("meta"):
        ours = MODELS[name].build().state_dict()
        theirs = thingsvision_network(name).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}
    assert MODELS[name].keys.to_model("classifier.6.weight") == "classifier.6.weight"  # identity map
    assert tuple(ours[[k for k in ours if k.endswith("weight")][-1]].shape)[0] == 565


def test_a_dataparallel_copy_is_refused_with_keys_in_the_files_terms(tmp_path):
    sd = {f"module.{k}": v for k, v in thingsvision_network("resnet50").state_dict().items()}
    torch.save(sd, tmp_path / "dp.pth")
    with pytest.raises(WeightsError) as e:
        load_model("ecoset:resnet50", weights=str(tmp_path / "dp.pth"))
    msg = str(e.value)
    assert "keys missing from the file: conv1.weight" in msg
    assert "unexpected keys in the file: module.conv1.weight" in msg


def test_an_imagenet_classifier_is_refused_by_its_shape(tmp_path):
    torch.save(tvm.resnet50(weights=None).state_dict(), tmp_path / "imagenet.pth")
    with pytest.raises(WeightsError, match=r"fc\.weight \(file \(1000, 2048\) vs model \(565, 2048\)\)"):
        load_model("ecoset:resnet50", weights=str(tmp_path / "imagenet.pth"))


def test_offline_cache_miss_names_file_address_and_cache_path(offline_cache):
    with pytest.raises(WeightsError) as e:
        load_model("ecoset:vgg16_bn")
    msg = str(e.value)
    path = offline_cache / "torch" / "hub" / "checkpoints" / "VGG16bn_ecoset"
    assert "ecoset:vgg16_bn" in msg and "https://osf.io/fe7s5/download" in msg and str(path) in msg


def test_a_pinned_sha256_that_differs_names_the_file_and_both_hashes(offline_cache, monkeypatch):
    entry = MODELS["resnet50"]
    assert entry.checkpoint is not None
    write_original(thingsvision_network("resnet50"), entry.checkpoint.path)
    pinned = "ab" * 32
    monkeypatch.setitem(MODELS, "resnet50", replace(entry, checkpoint=replace(entry.checkpoint, sha256=pinned)))
    with pytest.raises(WeightsError) as e:
        load_model("ecoset:resnet50")
    msg = str(e.value)
    assert str(entry.checkpoint.path) in msg and pinned in msg and file_sha256(entry.checkpoint.path) in msg


def test_random_init_is_seeded():
    a = load_model("ecoset:resnet50", pretrained=False, seed=3, device="cpu")
    b = load_model("ecoset:resnet50", pretrained=False, seed=3, device="cpu")
    c = load_model("ecoset:resnet50", pretrained=False, seed=4, device="cpu")
    assert a.weights == {"kind": "random", "seed": 3} and a.class_names == ()
    torch.testing.assert_close(a.module.fc.weight, b.module.fc.weight, rtol=0, atol=0)
    assert not torch.equal(a.module.fc.weight, c.module.fc.weight)


def test_cards():
    card = model_card("ecoset:inception_v3")
    assert (card.family, card.architecture, card.training_data) == ("Ecoset", "Inception-v3", "Ecoset (565 classes)")
    assert card.url == "https://osf.io/zn24d/download" and card.sha256 is None
    assert "Mehrer" in card.paper and "PNAS" in card.paper and "CC BY-NC-SA 2.0" in card.weights_licence
    assert [model_card(f"ecoset:{n}").url for n in ("alexnet", "vgg16", "resnet50")] == [
        "https://osf.io/t6h3c/download",
        "https://osf.io/z5uf3/download",
        "https://osf.io/gd9kn/download",
    ]
    sos = model_card("salobjsub:alexnet")
    assert (
        sos.url == "https://osf.io/download/sd3xj/" and "Subitizing" in sos.paper and "SalObjSub" in sos.training_data
    )
    assert visreps.models.list_models(source="ecoset") == [f"ecoset:{n}" for n in MODELS]


# --------------------------------------------------------------------------- top-k and class names


def test_topk_on_a_model_whose_classes_are_unknown_is_a_clear_error(image_dir, tmp_path):
    lm = load_model("ecoset:resnet50", pretrained=False, device="cpu")
    with pytest.raises(VisrepsError, match=r"names of the model's classes.*ecoset:resnet50 are not known"):
        visreps.extract(lm, image_dir, layers=["avgpool"], out=tmp_path / "out", top_k=5, progress=False)
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_a_model_that_names_its_classes_is_labelled_with_its_names():
    from visreps.models import LoadedModel, Preprocessing

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 565)).eval()
    names = tuple(f"category {i}" for i in range(565))
    prep = Preprocessing(resize=8, crop=8)
    lm = LoadedModel(module=net, preprocessing=prep, model_id="mine", weights={"kind": "user"}, class_names=names)
    specs = [LayerSpec("0", "flatten", None, ("0",), 1)]
    check_topk(lm, specs, 5)  # 565 scores for 565 names: accepted
    with pytest.raises(VisrepsError, match="top_k=566 is more than the 565 classes"):
        check_topk(lm, specs, 566)
    lm.class_names = names[:10]
    with pytest.raises(VisrepsError, match=r"needs? a model that ends in 10 class scores; mine outputs \(565,\)"):
        check_topk(lm, specs, 5)
    lm.class_names = names
    table = predictions_table(np.array([[3, 564]]), np.array([[0.6, 0.1]], np.float32), ["a.png"], model_classes(lm))
    assert list(table.loc[0, ["name_1", "name_2"]]) == ["category 3", "category 564"]


def test_imagenet_models_keep_imagenet_names(tiny_net):
    from visreps.capture import imagenet_classes
    from visreps.models import LoadedModel, Preprocessing

    lm = LoadedModel(module=tiny_net, preprocessing=Preprocessing(), model_id="custom", weights={"kind": "user"})
    assert lm.class_names is None and model_classes(lm) == imagenet_classes()
    table = predictions_table(np.array([[1]]), np.array([[0.5]], np.float32), ["x.png"])
    assert table.loc[0, "name_1"] == imagenet_classes()[1]
