"""The checkpoint-family machinery (visreps.models._zoo) and the catalogue, on a tiny hand-set family."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from visreps import cache
from visreps.cli import main
from visreps.errors import ModelNotFoundError, WeightsError
from visreps.models import catalogue, load_model, model_card
from visreps.models._base import file_sha256
from visreps.models._card import ModelCard
from visreps.models._registry import _REGISTRY
from visreps.models._zoo import Checkpoint, KeyMap, ZooModel, register_zoo


class Trunk(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.pool(torch.relu(self.bn(self.conv(x)))).flatten(1)


CARD = ModelCard(family="Tiny (test)", architecture="Trunk", training_data="none", objective="none", paper="nobody")
KEYS = KeyMap(nested="classy_state_dict.base_model.model.trunk", drop=("heads.",), prefixes=(("_feature_blocks.", ""),))


def _original_file(trunk: nn.Module, path, **extra) -> dict:
    """The trunk saved as a VISSL-style file: nested, prefixed, with a head and training state beside it."""
    sd = {f"_feature_blocks.{k}": v for k, v in trunk.state_dict().items() if not k.endswith("num_batches_tracked")}
    sd["heads.0.weight"] = torch.ones(2, 4)
    obj = {"classy_state_dict": {"base_model": {"model": {"trunk": sd}}}, "phase_idx": 3, **extra}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return sd


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    cache.set_cache_dir(tmp_path / "cache")
    cache.set_offline(True)
    ckpt = Checkpoint(url="https://example.org/tiny/trunk_v1.torch")
    table = {"trunk": ZooModel(build=Trunk, card=CARD, checkpoint=ckpt, keys=KEYS)}
    register_zoo("tinyzoo", table, module=__name__)
    yield table
    _REGISTRY.pop("tinyzoo", None)
    cache.set_cache_dir(None)
    cache.set_offline(None)


def test_original_layout_loads_and_gives_the_same_outputs(tiny):
    torch.manual_seed(1)
    source = Trunk().eval()
    ckpt = tiny["trunk"].checkpoint
    _original_file(source, ckpt.path)
    lm = load_model("tinyzoo:trunk")
    x = torch.randn(2, 3, 9, 9)
    torch.testing.assert_close(lm.module(x), source(x))
    assert lm.weights == {
        "kind": "pretrained",
        "name": "tinyzoo:trunk",
        "url": ckpt.url,
        "file": str(ckpt.path),
        "sha256": file_sha256(ckpt.path),
        "sha256_pinned": False,
    }


def test_a_local_copy_of_the_original_file_loads_through_the_same_key_map(tiny, tmp_path):
    source = Trunk().eval()
    _original_file(source, tmp_path / "mine.torch")
    lm = load_model("tinyzoo:trunk", weights=str(tmp_path / "mine.torch"))
    x = torch.randn(1, 3, 9, 9)
    torch.testing.assert_close(lm.module(x), source(x))
    assert lm.weights["kind"] == "file" and lm.weights["sha256"] == file_sha256(tmp_path / "mine.torch")


def test_keys_that_do_not_fit_are_named_in_the_files_own_layout(tiny):
    sd = _original_file(Trunk(), tiny["trunk"].checkpoint.path)
    del sd["_feature_blocks.conv.weight"]
    sd["_feature_blocks.extra.bias"] = torch.zeros(1)
    sd["_feature_blocks.bn.weight"] = torch.zeros(5)
    torch.save({"classy_state_dict": {"base_model": {"model": {"trunk": sd}}}}, tiny["trunk"].checkpoint.path)
    with pytest.raises(WeightsError) as e:
        load_model("tinyzoo:trunk")
    msg = str(e.value)
    assert "keys missing from the file: _feature_blocks.conv.weight" in msg
    assert "unexpected keys in the file: _feature_blocks.extra.bias" in msg
    assert "_feature_blocks.bn.weight (file (5,) vs model (4,))" in msg


def test_a_file_without_the_nesting_says_what_it_holds(tiny):
    path = tiny["trunk"].checkpoint.path
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": Trunk().state_dict()}, path)
    with pytest.raises(WeightsError, match=r"has no 'classy_state_dict' on the path .*found: state_dict"):
        load_model("tinyzoo:trunk")


def test_a_pinned_sha256_that_differs_names_the_file_and_both_hashes(tiny):
    path = tiny["trunk"].checkpoint.path
    _original_file(Trunk(), path)
    pinned = "0" * 64
    tiny["trunk"] = ZooModel(
        build=Trunk, card=CARD, checkpoint=Checkpoint(url="https://example.org/tiny/trunk_v1.torch", sha256=pinned)
    )
    with pytest.raises(WeightsError) as e:
        load_model("tinyzoo:trunk")
    assert str(path) in str(e.value) and pinned in str(e.value) and file_sha256(path) in str(e.value)


def test_a_pinned_sha256_that_matches_is_recorded_as_pinned(tiny):
    path = tiny["trunk"].checkpoint.path
    _original_file(Trunk(), path)
    sha = file_sha256(path)
    tiny["trunk"] = ZooModel(
        build=Trunk, card=CARD, checkpoint=Checkpoint(url=tiny["trunk"].checkpoint.url, sha256=sha), keys=KEYS
    )
    lm = load_model("tinyzoo:trunk")
    assert lm.weights["sha256"] == sha and lm.weights["sha256_pinned"] is True
    assert model_card("tinyzoo:trunk").sha256 == sha


def test_offline_cache_miss_names_file_address_and_cache_path(tiny):
    with pytest.raises(WeightsError) as e:
        load_model("tinyzoo:trunk")
    msg = str(e.value)
    assert "tinyzoo:trunk" in msg and "https://example.org/tiny/trunk_v1.torch" in msg
    assert str(tiny["trunk"].checkpoint.path) in msg and "--random" in msg


def test_random_init_is_seeded_and_recorded(tiny):
    a, b = load_model("tinyzoo:trunk", pretrained=False, seed=3), load_model("tinyzoo:trunk", pretrained=False, seed=3)
    c = load_model("tinyzoo:trunk", pretrained=False, seed=4)
    assert a.weights == {"kind": "random", "seed": 3}
    torch.testing.assert_close(a.module.conv.weight, b.module.conv.weight, rtol=0, atol=0)
    assert not torch.equal(a.module.conv.weight, c.module.conv.weight)


def test_unknown_name_lists_the_closest(tiny):
    with pytest.raises(ModelNotFoundError, match=r"tinyzoo has no model 'trunc'; closest: tinyzoo:trunk"):
        load_model("tinyzoo:trunc")


def test_catalogue_rows_and_cli_json(tiny):
    rows = catalogue("tinyzoo:*")
    assert rows == [
        {
            "id": "tinyzoo:trunk",
            "family": "Tiny (test)",
            "architecture": "Trunk",
            "training_data": "none",
            "objective": "none",
            "weights_licence": "unknown",
            "paper": "nobody",
            "url": "https://example.org/tiny/trunk_v1.torch",
            "sha256": None,
            "offline": False,
        }
    ]
    _original_file(Trunk(), tiny["trunk"].checkpoint.path)
    r = CliRunner().invoke(main, ["models", "tinyzoo:*", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)[0]["offline"] is True
    r = CliRunner().invoke(main, ["models", "tinyzoo:*"])
    assert r.output.splitlines() == [
        "Tiny (test) (1 model)",
        "    trained on: none",
        "    objective: none",
        "    weights licence: unknown",
        "    cite: nobody",
        "  tinyzoo:trunk  [offline]  (Trunk)",
    ]


def test_every_registered_model_has_a_card_with_the_catalogue_keys():
    rows = catalogue("cornet")
    assert [r["id"] for r in rows] == ["cornet:r", "cornet:rt", "cornet:s", "cornet:z"]
    assert {r["family"] for r in rows} == {"CORnet"} and all("Kubilius" in r["paper"] for r in rows)
    assert model_card("timm:tf_efficientnet_lite0").training_data == "ImageNet-1k"
