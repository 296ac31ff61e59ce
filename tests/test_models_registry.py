"""A model source is one module: register_source reads its functions and card; the shared helpers of models/."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from visreps.errors import ModelNotFoundError, VisrepsError, WeightsError
from visreps.models import LoadedModel, ModelCard, _registry, list_models, load_model, model_card, register_source


@pytest.fixture
def registry(monkeypatch):
    """The registry as it is, restored after the test (a toy source registers into a copy)."""
    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))
    return _registry


def _toy_module(monkeypatch, name: str, source: str, code: str) -> types.ModuleType:
    """Execute ``code`` as the module ``name`` (in ``sys.modules`` while it runs, as an import does)."""
    module = types.ModuleType(name)
    monkeypatch.setitem(sys.modules, name, module)
    exec(compile(code, f"<{name}>", "exec"), module.__dict__)
    return module


TOY = """
import torch
from visreps.models import ModelCard, register_source
from visreps.models.custom import from_module

CARD = ModelCard(family="Toys", architecture="", training_data="none", objective="none", paper="Toy (2026)")


def list_names():
    return ["small", "large"]


def available_offline(name):
    return name == "small"


@register_source("{source}")
def load(name, *, pretrained=True, weights=None, seed=0, device=None):
    return from_module(torch.nn.Linear(2, 2), device="cpu", name=name)
"""


def test_a_source_is_its_module(registry, monkeypatch):
    """``@register_source("toy")`` takes list_names, available_offline and CARD from the module above it."""
    _toy_module(monkeypatch, "toy_source_module", "toy", TOY.replace("{source}", "toy"))
    src = registry.get_source("toy")
    assert src.module == "toy_source_module" and src.check_name is None and not src.optional
    assert list_models(source="toy") == ["toy:small", "toy:large"]
    assert src.available_offline is not None and src.available_offline("small") and not src.available_offline("large")
    card = model_card("toy:large")  # the module's CARD, its empty architecture the name
    assert card == ModelCard(
        family="Toys", architecture="large", training_data="none", objective="none", paper="Toy (2026)"
    )
    assert load_model("toy:small").model_id == "custom:small"
    with pytest.raises(ModelNotFoundError, match=r"^toy has no model 'smal'; closest: toy:small"):
        load_model("toy:smal")


def test_a_card_function_wins_and_explicit_arguments_are_all(registry, monkeypatch):
    code = TOY.replace("{source}", "toy2") + '\n\ndef card(name):\n    return ModelCard("F", name.upper(), "d", "o")\n'
    _toy_module(monkeypatch, "toy_source_card", "toy2", code)
    # a card defined below load is not read: only what stands above the decorator
    assert model_card("toy2:small").family == "Toys"

    @register_source("toy3", list_names=lambda: ["a"])  # explicit: nothing read from the module
    def load(name, *, pretrained=True, weights=None, seed=0, device=None):  # pragma: no cover - never loaded
        raise AssertionError

    src = registry.get_source("toy3")
    assert src.available_offline is None and src.card is None
    assert model_card("toy3:a") == ModelCard(
        family="toy3", architecture="a", training_data="unknown", objective="unknown"
    )


def test_a_source_without_list_names_is_refused(registry, monkeypatch):
    code = "from visreps.models import register_source\n\n@register_source('toy4')\ndef load(name, **kw):\n    pass\n"
    with pytest.raises(VisrepsError, match=r"model source 'toy4' \(toy_no_names\) has no list_names function"):
        _toy_module(monkeypatch, "toy_no_names", "toy4", code)


def test_source_cards_live_in_their_modules():
    """The six source-wide cards: each in its source's module, as ``visreps models`` shows them."""
    import importlib

    for source, family in [
        ("torchvision", "torchvision"),
        ("timm", "timm"),
        ("cornet", "CORnet"),
        ("clip", "CLIP (OpenAI)"),
        ("openclip", "OpenCLIP"),
        ("keras", "Keras applications"),
    ]:
        module = importlib.import_module(_registry.SOURCE_MODULES[source])
        assert module.CARD.family == family and module.CARD.architecture == ""
    assert model_card("torchvision:alexnet").architecture == "alexnet"
    assert model_card("cornet:s").weights_licence == "GPL-3.0 (dicarlolab/CORnet release)"
    assert model_card("timm:tf_efficientnet_lite0").architecture.startswith("EfficientNet-Lite0")
    assert model_card("timm:efficientnet_lite0").architecture == "efficientnet_lite0"


def test_old_import_paths_still_work():
    from visreps.capture import imagenet_classes, model_classes, predictions_table, top_classes
    from visreps.models import _imagenet, cornet, hf, keras

    assert (imagenet_classes, model_classes, predictions_table, top_classes) == (
        _imagenet.imagenet_classes,
        _imagenet.model_classes,
        _imagenet.predictions_table,
        _imagenet.top_classes,
    )
    assert {"KerasAdapter", "KerasCapture", "pool_array", "INSTALL_HINT", "_import_keras", "_functional_model"} <= set(
        dir(keras)
    )
    assert {"HFName", "HFPreprocessing", "parse_name", "preprocessing_of", "translate_processor"} <= set(dir(hf))
    assert {"CORblock_S", "CORnet_R", "AREAS", "S_TIMES", "DEFAULT_TIMES", "Flatten"} <= set(dir(cornet))


def test_on_device_moves_and_evaluates():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5)).train()
    lm = LoadedModel.on_device(net, "cpu", preprocessing=None, model_id="x:y", weights={"kind": "user"})
    assert lm.device == torch.device("cpu") and not lm.module.training and lm.module is net
    with pytest.raises(VisrepsError, match="device 'gpu7' is not valid"):
        LoadedModel.on_device(net, "gpu7", preprocessing=None, model_id="x:y", weights={})


def test_strict_loading_names_every_kind_of_mismatch(tmp_path):
    from visreps.models.custom import load_state_dict_strict, mismatch_report, show_keys

    assert show_keys(list("abcdefghij"), 3) == "a, b, c ... (10 in all)" and show_keys(["a"]) == "a"
    assert mismatch_report([], ["u"], []) == "unexpected keys: u"
    assert mismatch_report(["m"], [], ["w (x)"], labels=("L1", "L2", "L3")) == "L1: m; L3: w (x)"
    net = torch.nn.Linear(3, 2)
    sd = {"weight": torch.zeros(2, 4), "extra": torch.zeros(1)}
    with pytest.raises(WeightsError) as e:
        load_state_dict_strict(net, sd, tmp_path / "w.pt")
    assert str(e.value) == (
        f"weights file {str(tmp_path / 'w.pt')!r} does not fit the architecture Linear: missing keys: bias; "
        "unexpected keys: extra; shape mismatches: weight (file (2, 4) vs model (2, 3)). "
        "Check that the file belongs to this model id."
    )
