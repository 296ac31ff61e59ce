"""CORnet-Z/-R/-RT/-S: the original module tree, shapes, checkpoint keys, time steps, weights.

No test touches the network: pretrained loading is tested with checkpoints saved from random
models in the original's format (``{"state_dict": {"module.<name>": tensor}}``) placed in a
temporary cache.
"""

from __future__ import annotations

import itertools
import re
from collections import OrderedDict
from pathlib import Path
from urllib.error import URLError

import pytest
import torch

from visreps.cache import set_cache_dir, set_offline
from visreps.errors import ModelNotFoundError, VisrepsError, WeightsError
from visreps.models import cornet
from visreps.models._base import Preprocessing

# print(model) of the original CORnet-S (dicarlolab/CORnet, printed with torch 1.7), as given in
# the seed's README.
ORIGINAL_S_TREE = """\
Sequential(
  (V1): Sequential(
    (conv1): Conv2d(3, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False)
    (norm1): BatchNorm2d(64, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (nonlin1): ReLU(inplace=True)
    (pool): MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False)
    (conv2): Conv2d(64, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)
    (norm2): BatchNorm2d(64, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (nonlin2): ReLU(inplace=True)
    (output): Identity()
  )
  (V2): CORblock_S(
    (conv_input): Conv2d(64, 128, kernel_size=(1, 1), stride=(1, 1), bias=False)
    (skip): Conv2d(128, 128, kernel_size=(1, 1), stride=(2, 2), bias=False)
    (norm_skip): BatchNorm2d(128, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (conv1): Conv2d(128, 512, kernel_size=(1, 1), stride=(1, 1), bias=False)
    (nonlin1): ReLU(inplace=True)
    (conv2): Conv2d(512, 512, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), bias=False)
    (nonlin2): ReLU(inplace=True)
    (conv3): Conv2d(512, 128, kernel_size=(1, 1), stride=(1, 1), bias=False)
    (nonlin3): ReLU(inplace=True)
    (output): Identity()
    (norm1_0): BatchNorm2d(512, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (norm2_0): BatchNorm2d(512, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (norm3_0): BatchNorm2d(128, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (norm1_1): BatchNorm2d(512, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (norm2_1): BatchNorm2d(512, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (norm3_1): BatchNorm2d(128, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
  )
  (V4): CORblock_S(
    (conv_input): Conv2d(128, 256, kernel_size=(1, 1), stride=(1, 1), bias=False)
    (skip): Conv2d(256, 256, kernel_size=(1, 1), stride=(2, 2), bias=False)
    (norm_skip): BatchNorm2d(256, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (conv1): Conv2d(256, 1024, kernel_size=(1, 1), stride=(1, 1), bias=False)
    (nonlin1): ReLU(inplace=True)
    (conv2): Conv2d(1024, 1024, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), bias=False)
    (nonlin2): ReLU(inplace=True)
    (conv3): Conv2d(1024, 256, kernel_size=(1, 1), stride=(1, 1), bias=False)
    (nonlin3): ReLU(inplace=True)
    (output): Identity()
    (norm1_0): BatchNorm2d(1024, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (norm2_0): BatchNorm2d(1024, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (norm3_0): BatchNorm2d(256, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (norm1_1): BatchNorm2d(1024, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (norm2_1): BatchNorm2d(1024, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (norm3_1): BatchNorm2d(256, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (norm1_2): BatchNorm2d(1024, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (norm2_2): BatchNorm2d(1024, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (norm3_2): BatchNorm2d(256, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (norm1_3): BatchNorm2d(1024, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (norm2_3): BatchNorm2d(1024, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (norm3_3): BatchNorm2d(256, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
  )
  (IT): CORblock_S(
    (conv_input): Conv2d(256, 512, kernel_size=(1, 1), stride=(1, 1), bias=False)
    (skip): Conv2d(512, 512, kernel_size=(1, 1), stride=(2, 2), bias=False)
    (norm_skip): BatchNorm2d(512, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (conv1): Conv2d(512, 2048, kernel_size=(1, 1), stride=(1, 1), bias=False)
    (nonlin1): ReLU(inplace=True)
    (conv2): Conv2d(2048, 2048, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), bias=False)
    (nonlin2): ReLU(inplace=True)
    (conv3): Conv2d(2048, 512, kernel_size=(1, 1), stride=(1, 1), bias=False)
    (nonlin3): ReLU(inplace=True)
    (output): Identity()
    (norm1_0): BatchNorm2d(2048, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (norm2_0): BatchNorm2d(2048, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (norm3_0): BatchNorm2d(512, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (norm1_1): BatchNorm2d(2048, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (norm2_1): BatchNorm2d(2048, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (norm3_1): BatchNorm2d(512, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
  )
  (decoder): Sequential(
    (avgpool): AdaptiveAvgPool2d(output_size=1)
    (flatten): Flatten()
    (linear): Linear(in_features=512, out_features=1000, bias=True)
    (output): Identity()
  )
)"""

# state_dict keys and shapes of the original releases (as saved from nn.DataParallel)
ORIGINAL_Z_KEYS = [
    ("module.V1.conv.weight", (64, 3, 7, 7)),
    ("module.V1.conv.bias", (64,)),
    ("module.V2.conv.weight", (128, 64, 3, 3)),
    ("module.V2.conv.bias", (128,)),
    ("module.V4.conv.weight", (256, 128, 3, 3)),
    ("module.V4.conv.bias", (256,)),
    ("module.IT.conv.weight", (512, 256, 3, 3)),
    ("module.IT.conv.bias", (512,)),
    ("module.decoder.linear.weight", (1000, 512)),
    ("module.decoder.linear.bias", (1000,)),
]

# CORnet-R and CORnet-RT have the same keys
ORIGINAL_R_KEYS = [
    ("module.V1.conv_input.weight", (64, 3, 7, 7)),
    ("module.V1.conv_input.bias", (64,)),
    ("module.V1.norm_input.weight", (64,)),
    ("module.V1.norm_input.bias", (64,)),
    ("module.V1.conv1.weight", (64, 64, 3, 3)),
    ("module.V1.norm1.weight", (64,)),
    ("module.V1.norm1.bias", (64,)),
    ("module.V2.conv_input.weight", (128, 64, 3, 3)),
    ("module.V2.conv_input.bias", (128,)),
    ("module.V2.norm_input.weight", (128,)),
    ("module.V2.norm_input.bias", (128,)),
    ("module.V2.conv1.weight", (128, 128, 3, 3)),
    ("module.V2.norm1.weight", (128,)),
    ("module.V2.norm1.bias", (128,)),
    ("module.V4.conv_input.weight", (256, 128, 3, 3)),
    ("module.V4.conv_input.bias", (256,)),
    ("module.V4.norm_input.weight", (256,)),
    ("module.V4.norm_input.bias", (256,)),
    ("module.V4.conv1.weight", (256, 256, 3, 3)),
    ("module.V4.norm1.weight", (256,)),
    ("module.V4.norm1.bias", (256,)),
    ("module.IT.conv_input.weight", (512, 256, 3, 3)),
    ("module.IT.conv_input.bias", (512,)),
    ("module.IT.norm_input.weight", (512,)),
    ("module.IT.norm_input.bias", (512,)),
    ("module.IT.conv1.weight", (512, 512, 3, 3)),
    ("module.IT.norm1.weight", (512,)),
    ("module.IT.norm1.bias", (512,)),
    ("module.decoder.linear.weight", (1000, 512)),
    ("module.decoder.linear.bias", (1000,)),
]

# CORnet-S: 164 entries (53,460,136 numbers without the BatchNorm counters); a representative subset
ORIGINAL_S_COUNT = 164
ORIGINAL_S_NUMEL = 53_460_136
ORIGINAL_S_SOME_KEYS = [
    ("module.V1.conv1.weight", (64, 3, 7, 7)),
    ("module.V1.norm1.weight", (64,)),
    ("module.V1.norm1.bias", (64,)),
    ("module.V1.norm1.running_mean", (64,)),
    ("module.V1.norm1.running_var", (64,)),
    ("module.V1.norm1.num_batches_tracked", ()),
    ("module.V1.conv2.weight", (64, 64, 3, 3)),
    ("module.V2.conv_input.weight", (128, 64, 1, 1)),
    ("module.V2.skip.weight", (128, 128, 1, 1)),
    ("module.V2.norm_skip.running_var", (128,)),
    ("module.V2.norm1_1.weight", (512,)),
    ("module.V4.conv2.weight", (1024, 1024, 3, 3)),
    ("module.V4.norm1_3.running_mean", (1024,)),
    ("module.V4.norm3_3.weight", (256,)),
    ("module.V4.norm3_3.bias", (256,)),
    ("module.V4.norm3_3.running_mean", (256,)),
    ("module.V4.norm3_3.running_var", (256,)),
    ("module.V4.norm3_3.num_batches_tracked", ()),
    ("module.IT.conv3.weight", (512, 2048, 1, 1)),
    ("module.IT.norm2_1.weight", (2048,)),
    ("module.decoder.linear.weight", (1000, 512)),
    ("module.decoder.linear.bias", (1000,)),
]

S_URL = "https://s3.amazonaws.com/cornet-models/cornet_s-1d3f7974.pth"


# --------------------------------------------------------------------------- helpers


def _build(name: str, seed: int, **kw) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cornet.build(name, **kw).eval()


def _original_checkpoint(model: torch.nn.Module) -> dict:
    """A checkpoint as the original training script saved it (DataParallel keys)."""
    sd = OrderedDict((f"module.{k}", v.clone()) for k, v in model.state_dict().items())
    return {"flags": {"model": "S", "lr": 0.1}, "epoch": 43, "state_dict": sd}


def _record_calls(model: torch.nn.Module, names: list[str]):
    calls: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    mods = dict(model.named_modules())
    handles = [mods[n].register_forward_hook(lambda m, i, o, n=n: calls[n].append(o.detach().clone())) for n in names]
    return calls, handles


def _run(model: torch.nn.Module, x: torch.Tensor, names: list[str]) -> dict[str, list[torch.Tensor]]:
    calls, handles = _record_calls(model, names)
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return calls


def _image(side: int = 224, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(seed))


def _all_different(tensors: list[torch.Tensor]) -> bool:
    return all(not torch.equal(a, b) for a, b in itertools.combinations(tensors, 2))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a busy 2-core machine, 2 threads run these small passes ~4x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def s_model() -> torch.nn.Module:
    return _build("s", seed=0)


@pytest.fixture(scope="module")
def s_checkpoint(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """A cache root holding a CORnet-S checkpoint (from a seed-123 model) under the published name."""
    root = tmp_path_factory.mktemp("cornet_cache")
    path = root / "torch" / "hub" / "checkpoints" / "cornet_s-1d3f7974.pth"
    path.parent.mkdir(parents=True)
    source = _build("s", seed=123)
    torch.save(_original_checkpoint(source), path)
    return path, source


@pytest.fixture
def cache_overrides():
    yield
    set_cache_dir(None)
    set_offline(None)


# --------------------------------------------------------------------------- 1. module tree


def _normalise(tree: str) -> str:
    # PyTorch >= 2.x also prints BatchNorm's bias flag; the seed was printed with torch 1.7
    return re.sub(r"(BatchNorm2d\([^)]*affine=True), bias=True", r"\1", tree)


def _tree_lines(tree: str) -> dict[str, str]:
    """dotted module name → its printed line (type and hyperparameters) from a print(model) tree."""
    out, stack = {}, []
    for line in tree.splitlines()[1:]:
        m = re.match(r"^( +)\((\w+)\): (.*)$", line)
        if not m:
            continue
        depth = len(m.group(1)) // 2 - 1
        stack[depth:] = [m.group(2)]
        out[".".join(stack)] = m.group(3)
    return out


def test_cornet_s_prints_the_original_tree(s_model):
    assert _normalise(repr(s_model)) == ORIGINAL_S_TREE


def test_cornet_s_module_names_types_and_hyperparameters(s_model):
    expected = _tree_lines(ORIGINAL_S_TREE)
    ours = {n: _normalise(repr(m)).splitlines()[0] for n, m in s_model.named_modules() if n}
    assert list(ours) == list(expected)  # same names in the same order
    for name, line in expected.items():
        assert ours[name] == line, name
    assert {"V2.norm1_1", "V4.norm3_3", "IT.norm2_1", "decoder.output"} <= set(ours)
    assert "V2.norm1_2" not in ours and "V4.norm1_4" not in ours


# --------------------------------------------------------------------------- 2. output shapes


def test_cornet_s_output_shapes_per_area(s_model):
    names = ["V1.output", "V2.output", "V4.output", "IT.output", "decoder.output"]
    calls = _run(s_model, _image(224), names)
    shapes = {n: tuple(calls[n][-1].shape[1:]) for n in names}
    assert shapes == {
        "V1.output": (64, 56, 56),
        "V2.output": (128, 28, 28),
        "V4.output": (256, 14, 14),
        "IT.output": (512, 7, 7),
        "decoder.output": (1000,),
    }


@pytest.mark.parametrize("name,last", [("z", "decoder.output"), ("r", "decoder.linear"), ("rt", "decoder.linear")])
def test_z_r_rt_output_shapes_per_area(name, last):
    model = _build(name, seed=0)
    names = ["V1.output", "V2.output", "V4.output", "IT.output", last]
    calls = _run(model, _image(224), names)
    shapes = {n: tuple(calls[n][-1].shape[1:]) for n in names}
    assert shapes == {
        "V1.output": (64, 56, 56),
        "V2.output": (128, 28, 28),
        "V4.output": (256, 14, 14),
        "IT.output": (512, 7, 7),
        last: (1000,),
    }


def test_r_rt_decoder_has_no_output_module_like_the_original():
    for name in ("r", "rt"):
        names = [n for n, _ in cornet.build(name).named_modules()]
        assert "decoder.linear" in names and "decoder.output" not in names


def test_r_rt_accept_other_input_sizes():
    # the original hard-coded the zero inputs for 224 px; here they follow the image size
    for name in ("r", "rt"):
        calls = _run(_build(name, seed=0), _image(96), ["IT.output"])
        assert tuple(calls["IT.output"][-1].shape) == (1, 512, 3, 3)


# --------------------------------------------------------------------------- 3. original keys


def _fake_checkpoint(keys: list[tuple[str, tuple]], seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    sd = OrderedDict((k, torch.randn(shape, generator=g)) for k, shape in keys)
    return {"epoch": 25, "state_dict": sd}


@pytest.mark.parametrize("name,keys", [("z", ORIGINAL_Z_KEYS), ("r", ORIGINAL_R_KEYS), ("rt", ORIGINAL_R_KEYS)])
def test_original_keys_load_strictly(tmp_path, name, keys):
    own = cornet.build(name).state_dict()
    assert [(f"module.{k}", tuple(v.shape)) for k, v in own.items()] == keys
    ckpt = _fake_checkpoint(keys)
    path = tmp_path / f"cornet_{name}.pth"
    torch.save(ckpt, path)
    lm = cornet.load(name, weights=path, device="cpu")
    loaded = lm.module.state_dict()
    for k, v in ckpt["state_dict"].items():
        assert torch.equal(loaded[k[len("module.") :]], v), k
    assert lm.weights["kind"] == "file" and lm.weights["file"] == str(path.resolve())
    assert len(lm.weights["sha256"]) == 64


def test_cornet_s_original_keys(s_model):
    own = OrderedDict((f"module.{k}", tuple(v.shape)) for k, v in s_model.state_dict().items())
    assert len(own) == ORIGINAL_S_COUNT
    numel = sum(v.numel() for k, v in s_model.state_dict().items() if not k.endswith("num_batches_tracked"))
    assert numel == ORIGINAL_S_NUMEL
    for key, shape in ORIGINAL_S_SOME_KEYS:
        assert own[key] == shape, key


def test_cornet_s_checkpoint_file_loads_strictly(s_checkpoint):
    path, source = s_checkpoint
    lm = cornet.load("s", weights=path, device="cpu")
    ours, theirs = lm.module.state_dict(), source.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert lm.weights["kind"] == "file"


def test_mismatching_file_names_the_keys(tmp_path):
    keys = [(k.replace("V4.conv.", "V4.conv_x."), s) for k, s in ORIGINAL_Z_KEYS if k != "module.IT.conv.bias"]
    path = tmp_path / "bad.pth"
    torch.save(_fake_checkpoint(keys), path)
    with pytest.raises(WeightsError) as e:
        cornet.load("z", weights=path, device="cpu")
    msg = str(e.value)
    assert "missing keys" in msg and "IT.conv.bias" in msg and "V4.conv.weight" in msg
    assert "unexpected keys" in msg and "V4.conv_x.weight" in msg
    assert str(path) in msg


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(WeightsError, match="nope.pth"):
        cornet.load("z", weights=tmp_path / "nope.pth", device="cpu")


def test_wrong_variant_checkpoint_is_rejected(tmp_path):
    path = tmp_path / "z_as_r.pth"
    torch.save(_fake_checkpoint(ORIGINAL_Z_KEYS), path)
    with pytest.raises(WeightsError, match="missing keys.*V1.conv_input.weight"):
        cornet.load("r", weights=path, device="cpu")


def test_checkpoint_without_batchnorm_counters_loads(s_model):
    # files from PyTorch < 0.4.1 have no num_batches_tracked; PyTorch itself fills them in
    from visreps.models.custom import load_state_dict_strict

    sd = {k: v for k, v in s_model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert len(sd) == ORIGINAL_S_COUNT - 29  # 29 BatchNorms
    with pytest.raises(WeightsError, match="num_batches_tracked"):
        load_state_dict_strict(s_model, sd)
    load_state_dict_strict(s_model, cornet._fill_num_batches_tracked(s_model, sd))
    # a really missing tensor is still reported
    del sd["V4.norm3_3.running_mean"]
    with pytest.raises(WeightsError, match="V4.norm3_3.running_mean"):
        load_state_dict_strict(s_model, cornet._fill_num_batches_tracked(s_model, sd))


# --------------------------------------------------------------------------- 4. time steps


def test_cornet_s_output_runs_once_per_time_step(s_model):
    names = ["V1.output", "V2.output", "V4.output", "IT.output", "decoder.output", "V4.conv2", "V4.norm1_3"]
    calls = _run(s_model, _image(64), names)
    assert {n: len(c) for n, c in calls.items()} == {
        "V1.output": 1,
        "V2.output": 2,
        "V4.output": 4,
        "IT.output": 2,
        "decoder.output": 1,
        "V4.conv2": 4,
        "V4.norm1_3": 1,
    }
    for area in ("V2", "V4", "IT"):
        assert _all_different(calls[f"{area}.output"]), area
    # every step after the first keeps the size (conv2 at stride 1)
    assert len({tuple(t.shape) for t in calls["V4.output"]}) == 1


def test_cornet_s_conv2_stride_survives_an_interrupted_pass(s_model):
    class Stop(Exception):
        pass

    def stop(*_):
        raise Stop

    expected = _run(s_model, _image(64), ["decoder.output"])["decoder.output"][0]
    handle = s_model.V4.conv2.register_forward_hook(lambda m, i, o: stop() if m.stride == (1, 1) else None)
    try:
        with pytest.raises(Stop), torch.inference_mode():
            s_model(_image(64))
    finally:
        handle.remove()
    assert s_model.V4.conv2.stride == (2, 2)
    again = _run(s_model, _image(64), ["decoder.output"])["decoder.output"][0]
    assert torch.equal(expected, again)


@pytest.mark.parametrize("name", ["r", "rt"])
def test_r_rt_output_runs_once_per_time_step(name):
    model = _build(name, seed=0)
    calls = _run(model, _image(64), [f"{a}.output" for a in cornet.AREAS] + ["V2.conv_input", "decoder.linear"])
    for area in cornet.AREAS:
        assert len(calls[f"{area}.output"]) == 5
        assert _all_different(calls[f"{area}.output"]), area
    assert len(calls["V2.conv_input"]) == 4  # at t = 0 V2 has no input yet
    assert len(calls["decoder.linear"]) == 1
    short = _run(_build(name, seed=0, times=3), _image(64), ["V4.output"])
    assert len(short["V4.output"]) == 3


@pytest.mark.parametrize("name,first_step", [("r", 1), ("rt", 3)])
def test_r_rt_unrolling(name, first_step):
    """IT sees the image from t = 1 in CORnet-R (same-step input), from t = 3 in CORnet-RT."""
    model = _build(name, seed=0)
    a = _run(model, _image(64, seed=1), ["IT.output"])["IT.output"]
    b = _run(model, _image(64, seed=2), ["IT.output"])["IT.output"]
    depends = [not torch.equal(x, y) for x, y in zip(a, b)]
    assert depends == [t >= first_step for t in range(5)]


# --------------------------------------------------------------------------- 5. cache and offline


def test_offline_without_cache_names_file_and_url(tmp_path, cache_overrides):
    set_cache_dir(tmp_path)
    set_offline(True)
    assert not cornet.available_offline("s")
    with pytest.raises(WeightsError) as e:
        cornet.load("s", pretrained=True, device="cpu")
    path = tmp_path / "torch" / "hub" / "checkpoints" / "cornet_s-1d3f7974.pth"
    assert str(path) in str(e.value) and S_URL in str(e.value)


def test_offline_loads_the_cached_checkpoint(s_checkpoint, cache_overrides, monkeypatch):
    path, source = s_checkpoint
    set_cache_dir(path.parents[3])
    set_offline(True)

    def no_network(*a, **k):
        raise AssertionError("network used")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    assert cornet.available_offline("s") and cornet.checkpoint_path("S") == path
    lm = cornet.load("s", pretrained=True, device="cpu")
    ours, theirs = lm.module.state_dict(), source.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert lm.weights["kind"] == "pretrained" and lm.weights["url"] == S_URL
    assert lm.weights["file"] == str(path) and len(lm.weights["sha256"]) == 64
    assert lm.model_id == "cornet:s" and lm.preprocessing == Preprocessing()
    assert not lm.module.training


def test_failed_download_names_file_and_url(tmp_path, cache_overrides, monkeypatch):
    set_cache_dir(tmp_path)
    set_offline(False)

    def fail(url, dst, *a, **k):
        Path(dst).write_bytes(b"partial")
        raise URLError("no route to host")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)
    with pytest.raises(WeightsError) as e:
        cornet.load("z", pretrained=True, device="cpu")
    assert "cornet_z-5c427c9c.pth" in str(e.value) and "cornet-models/cornet_z-5c427c9c.pth" in str(e.value)
    assert list((tmp_path / "torch" / "hub" / "checkpoints").iterdir()) == []  # no partial file left


def test_download_goes_through_the_cache(tmp_path, cache_overrides, monkeypatch):
    set_cache_dir(tmp_path)
    set_offline(False)
    source = _build("z", seed=5)
    seen = []

    def fake_download(url, dst, *a, **k):
        seen.append(url)
        torch.save(_original_checkpoint(source), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    lm = cornet.load("z", device="cpu")
    assert seen == ["https://s3.amazonaws.com/cornet-models/cornet_z-5c427c9c.pth"]
    assert cornet.available_offline("z")
    assert torch.equal(lm.module.V1.conv.weight, source.V1.conv.weight)
    cornet.load("z", device="cpu")  # second time from the cache
    again = cornet.load("z", pretrained=False, weights="DEFAULT", device="cpu")  # the tag of the checkpoint
    assert len(seen) == 1 and again.weights["kind"] == "pretrained"


# --------------------------------------------------------------------------- 6. seeds


@pytest.mark.parametrize("name", ["z", "rt"])
def test_seeded_random_init(name):
    state = torch.random.get_rng_state()
    a = cornet.load(name, pretrained=False, seed=0, device="cpu")
    b = cornet.load(name, pretrained=False, seed=0, device="cpu")
    c = cornet.load(name, pretrained=False, seed=1, device="cpu")
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is untouched
    sa, sb, sc = (m.module.state_dict() for m in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    assert a.weights == {"kind": "random", "seed": 0} and c.weights == {"kind": "random", "seed": 1}


def test_seeded_random_init_s(s_model, s_checkpoint):
    lm = cornet.load("s", pretrained=False, seed=0, device="cpu")
    ours = lm.module.state_dict()
    assert all(torch.equal(v, ours[k]) for k, v in s_model.state_dict().items())
    other = s_checkpoint[1].state_dict()  # seed 123
    assert not torch.equal(ours["V4.conv2.weight"], other["V4.conv2.weight"])


# --------------------------------------------------------------------------- names and registry


def test_names():
    assert cornet.list_names() == ["r", "rt", "s", "z"]
    for given, canonical in [
        ("s", "s"),
        ("S", "s"),
        ("cornet_s", "s"),
        ("cornet-s", "s"),
        ("CORnet-S", "s"),
        ("RT", "rt"),
        ("cornet-rt", "rt"),
        ("Z", "z"),
    ]:
        assert cornet.check_name(given) == canonical
    with pytest.raises(ModelNotFoundError) as e:
        cornet.check_name("x")
    assert "'x'" in str(e.value) and "cornet:s" in str(e.value) and "cornet:rt" in str(e.value)
    assert not cornet.available_offline("nope")


def test_times_argument():
    assert cornet.build("r").times == 5 and cornet.build("rt", times=2).times == 2
    with pytest.raises(VisrepsError, match="only cornet:r and cornet:rt"):
        cornet.build("s", times=3)
    with pytest.raises(VisrepsError, match="times=0"):
        cornet.build("r", times=0)


def test_registry_loads_cornet():
    from visreps.models import list_models, load_model

    assert {"cornet:r", "cornet:rt", "cornet:s", "cornet:z"} <= set(list_models(source="cornet"))
    lm = load_model("cornet:Z", pretrained=False, device="cpu")
    assert lm.model_id == "cornet:z" and "V4.output" in lm.layer_names()


# --------------------------------------------------------------------------- the original, if installed


def test_same_numbers_as_the_original_package():
    """Runs only where dicarlolab's ``cornet`` package is importable (pip install git+...CORnet)."""
    original = pytest.importorskip("cornet")
    if not hasattr(original, "CORnet_RT"):
        pytest.skip("the importable 'cornet' is not dicarlolab's package")
    x = _image(64)
    for letter in ("Z", "R", "RT", "S"):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(7)
            theirs = getattr(original, f"CORnet_{letter}")().eval()
        ours = _build(letter.lower(), seed=7)
        assert repr(ours) == repr(theirs)
        # same construction order: the same seed gives the same random parameters
        assert all(torch.equal(v, ours.state_dict()[k]) for k, v in theirs.state_dict().items())
        with torch.inference_mode():
            if letter in ("R", "RT"):  # the original only runs 224-pixel images
                x224 = _image(224)
                assert torch.allclose(theirs(x224), ours(x224))
            else:
                assert torch.allclose(theirs(x), ours(x))
