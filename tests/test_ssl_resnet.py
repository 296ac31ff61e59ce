"""ssl: self-supervised ResNet-50s (VISSL SimCLR/MoCo v2/Jigsaw/RotNet/SwAV/PIRL, Barlow Twins, VICReg).

No test touches the network. Each published file is fabricated in its release's own format from the
original architecture code with random weights, written into a temporary cache, loaded offline through
visreps, and visreps' layers (``layer1``-``layer4``, ``avgpool``) are compared with the original network's:

* VISSL: the trunk is VISSL's ``ResNeXt`` (tests/reference/vissl_resnext.py, a faithful copy: with depth 50,
  1x64d, RGB it is torchvision's ``ResNet``/``Bottleneck`` held in a ``ModuleDict`` ``_feature_blocks``);
  the file is VISSL's training checkpoint (``classy_state_dict`` → ``base_model`` → ``model`` →
  ``trunk``/``heads``, plus ``phase_idx``, ``iteration``, ``loss``, optimizer ...), written in torch's
  legacy (pre-1.6, non-zip) format as in July 2020. Large training buffers that play no part in
  loading (MoCo queue, PIRL memory bank, SGD momentum buffers) are shortened; everything else has
  the shapes of the pretraining configs.
* Barlow Twins: ``torchvision.models.resnet50(zero_init_residual=True)`` with ``fc = Identity`` (its
  main.py), saved as ``backbone.state_dict()``.
* VICReg: the repository's own ``resnet.py`` (tests/reference/vicreg_resnet.py), saved as
  ``backbone.state_dict()``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import shutil
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

import visreps.models.ssl as ssl_source
from visreps.cache import set_cache_dir, set_offline
from visreps.capture import make_capture, plan_layers
from visreps.errors import ModelNotFoundError, WeightsError
from visreps.models import available_offline, list_models, load_model, model_card
from visreps.models._ssl_resnet import MODELS
from visreps.models._zoo import Checkpoint

REFERENCE = Path(__file__).resolve().parent / "reference"
LAYERS = ["layer1", "layer2", "layer3", "layer4", "avgpool"]
VISSL_IDS = ["simclr-rn50", "mocov2-rn50", "jigsaw-rn50", "rotnet-rn50", "swav-rn50", "pirl-rn50"]
IDS = [*VISSL_IDS, "barlowtwins-rn50", "vicreg-rn50"]


def _reference(name: str):
    spec = importlib.util.spec_from_file_location(f"_ssl_reference_{name}", REFERENCE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _randomise_norms(net: nn.Module) -> nn.Module:
    """Random BatchNorm affine parameters and running statistics, so that no BN is an identity in eval mode."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(5004)
    return net.eval()


def _outputs(net: nn.Module, names: dict[str, str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Outputs of ``net``'s modules (visreps layer name → the original's module name), flattened per image."""
    mods = dict(net.named_modules())
    got: dict[str, torch.Tensor] = {}
    handles = [
        mods[orig].register_forward_hook(lambda m, i, o, key=key: got.__setitem__(key, o.detach().flatten(1).clone()))
        for key, orig in names.items()
    ]
    with torch.no_grad():
        final = net(x)
    for h in handles:
        h.remove()
    got["final"] = (final[0] if isinstance(final, list) else final).detach().clone()
    return got


@pytest.fixture(scope="module")
def originals():
    """One randomly initialised original network per release, its state dict and its layer outputs on ``x``."""
    import torchvision

    torch.manual_seed(20200716)
    x = torch.randn(2, 3, 64, 64)
    vissl = _randomise_norms(_reference("vissl_resnext").ResNeXt())
    barlow = torchvision.models.resnet50(zero_init_residual=True)
    barlow.fc = nn.Identity()
    barlow = _randomise_norms(barlow)
    vicreg = _randomise_norms(_reference("vicreg_resnet").resnet50(zero_init_residual=True)[0])
    plain = {k: k for k in LAYERS}
    return {
        "x": x,
        "vissl": (vissl.state_dict(), _outputs(vissl, {k: f"_feature_blocks.{k}" for k in LAYERS}, x)),
        "barlow": (barlow.state_dict(), _outputs(barlow, plain, x)),
        "vicreg": (vicreg.state_dict(), _outputs(vicreg, plain, x)),
    }


@pytest.fixture
def cache(tmp_path):
    """An empty offline cache for the test."""
    set_cache_dir(tmp_path / "cache")
    set_offline(True)
    yield tmp_path / "cache"
    set_cache_dir(None)
    set_offline(None)


# --- the original files -------------------------------------------------------------------------------------


def _rand(*shape: int) -> torch.Tensor:
    return torch.randn(*shape) * 0.01


def _bn1d(prefix: str, n: int) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}.weight": torch.ones(n),
        f"{prefix}.bias": torch.zeros(n),
        f"{prefix}.running_mean": _rand(n),
        f"{prefix}.running_var": torch.ones(n),
        f"{prefix}.num_batches_tracked": torch.tensor(5004),
    }


def _linear(prefix: str, n_in: int, n_out: int) -> dict[str, torch.Tensor]:
    return {f"{prefix}.weight": _rand(n_out, n_in), f"{prefix}.bias": _rand(n_out)}


def vissl_heads(name: str) -> OrderedDict:
    """``base_model.heads.state_dict()`` of each pretraining config (configs/config/pretrain/*/...yaml)."""
    heads: dict[str, torch.Tensor] = {}
    if name in ("simclr-rn50", "mocov2-rn50"):  # ["mlp", [2048, 2048], relu], ["mlp", [2048, 128]]
        heads |= _linear("0.clf.0", 2048, 2048) | _linear("1.clf.0", 2048, 128)
    elif name == "jigsaw-rn50":  # ["mlp", [2048, 1000], bn, relu], ["siamese_concat_view", 9], ["mlp", [9000, 100]]
        heads |= _linear("0.clf.0", 2048, 1000) | _bn1d("0.clf.1", 1000) | _linear("2.clf.0", 9000, 100)
    elif name == "rotnet-rn50":  # ["mlp", [2048, 4]]
        heads |= _linear("0.clf.0", 2048, 4)
    elif name == "swav-rn50":  # ["swav_head", dims [2048, 2048, 128], bn, 3000 prototypes]
        heads |= _linear("0.projection_head.0", 2048, 2048) | _bn1d("0.projection_head.1", 2048)
        heads |= _linear("0.projection_head.3", 2048, 128) | {"0.prototypes0.weight": _rand(3000, 128)}
    elif name == "pirl-rn50":  # head 0 on patches: mlp, siamese_concat_view, mlp; head 1 on images: mlp
        heads |= _linear("0.0.clf.0", 2048, 128) | _linear("0.2.clf.0", 1152, 128) | _linear("1.0.clf.0", 2048, 128)
    return OrderedDict(heads)


def vissl_loss(name: str, trunk: OrderedDict, heads: OrderedDict) -> OrderedDict:
    """The top-level ``loss`` entry (``task.loss.state_dict()``), buffers shortened."""
    if name == "mocov2-rn50":  # queue (128 x 65536 in the original), pointer, and the momentum encoder
        loss = {"queue": _rand(128, 64), "queue_ptr": torch.zeros(1, dtype=torch.long)}
        loss |= {f"moco_encoder.trunk.{k}": (v + 1 if v.is_floating_point() else v) for k, v in trunk.items()}
        loss |= {f"moco_encoder.heads.{k}": v for k, v in heads.items()}
        return OrderedDict(loss)
    if name == "pirl-rn50":  # memory bank (1281167 x 128 in the original)
        return OrderedDict(
            {"nce_average.params": torch.tensor([32000, 0.07, -1, 0.5]), "nce_average.memory": _rand(64, 128)}
        )
    if name == "swav-rn50":
        return OrderedDict({"swav_criterion.num_iteration": torch.tensor([1000800])})
    return OrderedDict()


def vissl_checkpoint(name: str, trunk_sd: dict, phase: int) -> dict:
    """A VISSL training checkpoint (vissl/hooks/log_hooks.py, ClassyVision ``task.get_classy_state()``)."""
    trunk = OrderedDict(trunk_sd)
    heads = vissl_heads(name)
    n = 5004 * (phase + 1)
    param_groups = [{"lr": 0.0, "momentum": 0.9, "weight_decay": 1e-4, "nesterov": False, "params": list(range(3))}]
    return {
        "phase_idx": phase,
        "iteration": n,
        "loss": vissl_loss(name, trunk, heads),
        "iteration_num": n,
        "train_phase_idx": phase,
        "classy_state_dict": {
            "train": True,
            "base_model": {"model": {"trunk": trunk, "heads": heads}},
            "meters": [],
            "optimizer": {
                "optim": {"state": {i: {"momentum_buffer": _rand(4)} for i in range(3)}, "param_groups": param_groups},
                "parameters": {"lr": 0.0},
            },
            "phase_idx": phase,
            "train_phase_idx": phase,
            "num_updates": n * 4096,
            "losses": [6.25, 6.24],
            "hooks": {},
            "loss": {},
        },
    }


def original_file(name: str, originals: dict) -> tuple[object, str, dict]:
    """(object to save, which original network, legacy format?) for ``ssl:<name>``."""
    if name in VISSL_IDS:
        phase = int(MODELS[name].checkpoint.url.rsplit("phase", 1)[1].split(".")[0])
        return vissl_checkpoint(name, originals["vissl"][0], phase), "vissl", {"_use_new_zipfile_serialization": False}
    if name == "barlowtwins-rn50":
        return OrderedDict(originals["barlow"][0]), "barlow", {}
    return OrderedDict(originals["vicreg"][0]), "vicreg", {}


def place(name: str, originals: dict) -> tuple[Path, str]:
    """Write the fabricated original file of ``ssl:<name>`` where the cache keeps it."""
    obj, which, kwargs = original_file(name, originals)
    path = MODELS[name].checkpoint.path
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path, **kwargs)
    return path, which


def visreps_outputs(lm, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """visreps' capture of ``LAYERS`` on ``x`` (its dry run on a blank image of the size of ``x``, for speed)."""
    side = x.shape[-1]
    lm.with_preprocessing(dataclasses.replace(lm.preprocessing, resize=side, crop=side))  # (changes ``lm``)
    specs = plan_layers(lm, LAYERS)
    with make_capture(lm, specs, stop_early=False) as cap, torch.inference_mode():
        return {k: torch.as_tensor(v) for k, v in cap.run(x).items()}


# --- tests ----------------------------------------------------------------------------------------------------


def test_ids_are_listed():
    assert set(IDS) <= set(MODELS)
    assert {f"ssl:{n}" for n in IDS} <= set(list_models(source="ssl"))


@pytest.mark.parametrize("name", IDS)
def test_original_checkpoint_loads_and_matches_the_original_network(name, originals, cache):
    path, which = place(name, originals)
    assert available_offline(f"ssl:{name}")
    lm = load_model(f"ssl:{name}", device="cpu")
    assert set(LAYERS) <= set(lm.layer_names())
    p = lm.preprocessing
    assert (p.resize, p.crop, p.interpolation) == (256, 224, "bilinear")
    assert p.mean == (0.485, 0.456, 0.406) and p.std == (0.229, 0.224, 0.225)
    got = visreps_outputs(lm, originals["x"])
    want = originals[which][1]  # (MoCo: the query encoder; the momentum encoder in ``loss`` has other weights)
    for layer in LAYERS:
        torch.testing.assert_close(got[layer], want[layer], rtol=1e-5, atol=1e-5, msg=f"{name} {layer}")
    torch.testing.assert_close(got["avgpool"], want["final"], rtol=1e-5, atol=1e-5)
    assert got["layer4"].shape == (2, 2048 * 2 * 2) and got["avgpool"].shape == (2, 2048)
    w = lm.weights
    assert w["kind"] == "pretrained" and w["url"] == MODELS[name].checkpoint.url and w["file"] == str(path)
    assert w["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() and w["sha256_pinned"] is False


def test_weights_file_goes_through_the_same_key_map(originals, cache, tmp_path):
    path, _ = place("swav-rn50", originals)
    local = tmp_path / "my_copy.torch"
    shutil.move(path, local)
    assert not available_offline("ssl:swav-rn50")
    lm = load_model("ssl:swav-rn50", weights=str(local), device="cpu")
    assert lm.weights["kind"] == "file" and lm.weights["sha256"] == hashlib.sha256(local.read_bytes()).hexdigest()
    got = visreps_outputs(lm, originals["x"])
    torch.testing.assert_close(got["layer3"], originals["vissl"][1]["layer3"], rtol=1e-5, atol=1e-5)


def test_offline_error_names_file_address_and_cache(cache):
    ckpt = MODELS["pirl-rn50"].checkpoint
    with pytest.raises(WeightsError) as e:
        load_model("ssl:pirl-rn50", device="cpu")
    msg = str(e.value)
    assert ckpt.url in msg and str(ckpt.path) in msg and str(cache) in msg and "offline" in msg
    assert "\n" not in msg


def test_wrong_keys_are_named_as_the_vissl_file_names_them(originals, cache):
    obj, _, kwargs = original_file("rotnet-rn50", originals)
    trunk = obj["classy_state_dict"]["base_model"]["model"]["trunk"]
    trunk["_feature_blocks.layer4.2.bn3.running_var_old"] = trunk.pop("_feature_blocks.layer4.2.bn3.running_var")
    path = MODELS["rotnet-rn50"].checkpoint.path
    path.parent.mkdir(parents=True)
    torch.save(obj, path, **kwargs)
    with pytest.raises(WeightsError) as e:
        load_model("ssl:rotnet-rn50", device="cpu")
    msg = str(e.value)
    assert "missing from the file: _feature_blocks.layer4.2.bn3.running_var" in msg
    assert "unexpected keys in the file: _feature_blocks.layer4.2.bn3.running_var_old" in msg


def test_supervised_torchvision_weights_are_refused_as_barlow_twins(originals, cache, tmp_path):
    """A full torchvision ResNet-50 state dict (with ``fc``) is not the Barlow Twins file: ``fc.*`` are named."""
    sd = OrderedDict(originals["barlow"][0]) | {"fc.weight": _rand(1000, 2048), "fc.bias": _rand(1000)}
    local = tmp_path / "resnet50-supervised.pth"
    torch.save(sd, local)
    with pytest.raises(WeightsError, match=r"unexpected keys in the file: fc\.weight, fc\.bias"):
        load_model("ssl:barlowtwins-rn50", weights=str(local), device="cpu")


def test_converted_torchvision_file_is_not_a_vissl_checkpoint(originals, cache, tmp_path):
    """The output of VISSL's convert_vissl_to_torchvision.py has no ``classy_state_dict``: the error says so."""
    local = tmp_path / "converted_vissl_simclr.torch"
    torch.save(OrderedDict((k, v) for k, v in originals["barlow"][0].items() if k.startswith("layer1.")), local)
    with pytest.raises(WeightsError, match=r"has no 'classy_state_dict' on the path 'classy_state_dict\.base_model"):
        load_model("ssl:simclr-rn50", weights=str(local), device="cpu")


def test_wrong_pinned_sha256_names_the_file_and_both_hashes(originals, cache, monkeypatch):
    path, _ = place("vicreg-rn50", originals)
    wrong = "0" * 64
    entry = MODELS["vicreg-rn50"]
    pinned = dataclasses.replace(entry, checkpoint=dataclasses.replace(entry.checkpoint, sha256=wrong))
    monkeypatch.setitem(ssl_source.MODELS, "vicreg-rn50", pinned)
    with pytest.raises(WeightsError) as e:
        load_model("ssl:vicreg-rn50", device="cpu")
    msg = str(e.value)
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    assert str(path) in msg and wrong in msg and actual in msg


def test_catalogue_cards():
    for name in IDS:
        card = model_card(f"ssl:{name}")
        entry = MODELS[name]
        assert isinstance(entry.checkpoint, Checkpoint)
        assert card.family == "Self-supervised ResNet-50" and card.architecture == "ResNet-50"
        assert card.url == entry.checkpoint.url and card.url.startswith("https://dl.fbaipublicfiles.com/")
        assert card.sha256 is None  # no full sha256 is published for any of these files
        assert card.weights_licence.startswith("MIT") and card.paper and "ImageNet-1k" in card.training_data
    assert "SimCLR" in model_card("ssl:simclr-rn50").objective
    assert "Caron" in model_card("ssl:swav-rn50").paper and "VISSL" in model_card("ssl:swav-rn50").paper
    assert "Zbontar" in model_card("ssl:barlowtwins-rn50").paper
    names = {MODELS[n].checkpoint.name for n in IDS}
    assert len(names) == len(IDS)  # three VISSL files are all called model_final_checkpoint_phase799.torch


def test_unknown_id_lists_the_closest():
    with pytest.raises(ModelNotFoundError, match="ssl:simclr-rn50"):
        load_model("ssl:simclr-resnet50")


def test_random_init_is_reproducible_by_seed(cache):
    a = load_model("ssl:jigsaw-rn50", pretrained=False, seed=3, device="cpu")
    b = load_model("ssl:jigsaw-rn50", pretrained=False, seed=3, device="cpu")
    c = load_model("ssl:jigsaw-rn50", pretrained=False, seed=4, device="cpu")
    assert a.weights == {"kind": "random", "seed": 3}
    sa, sb = a.module.state_dict(), b.module.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["layer1.0.conv1.weight"], c.module.state_dict()["layer1.0.conv1.weight"])
    assert isinstance(a.module.fc, nn.Identity)
