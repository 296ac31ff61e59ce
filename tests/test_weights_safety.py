"""Loading a weights file never runs code from it unless the user opts in (``--allow-pickle``).

Every file here is made in ``tmp_path``; nothing needs the network.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import visreps
from conftest import write_images
from visreps.cli import main
from visreps.errors import WeightsError
from visreps.models.custom import read_checkpoint


class _TouchOnUnpickle:
    """Unpickling this creates the file ``marker``: the stand-in for code a crafted checkpoint runs."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _crafted(tmp_path: Path, name: str = "crafted.pth") -> tuple[Path, Path]:
    """A state_dict-looking .pth whose unpickling would create a marker file; returns (file, marker)."""
    marker = tmp_path / f"{name}.marker"
    path = tmp_path / name
    torch.save({"features.0.weight": torch.zeros(1), "payload": _TouchOnUnpickle(marker)}, path)
    return path, marker


def _tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
    ).eval()


@pytest.fixture
def images(tmp_path) -> Path:
    root = tmp_path / "imgs"
    write_images(root, ["a.jpg", "b.jpg"], size=(64, 64))
    return root


def _cli(*args: str):
    return CliRunner().invoke(main, list(args))


def _alexnet_weights_args(images: Path, weights: Path, tmp_path: Path) -> list[str]:
    """`visreps extract` of a random alexnet's first layer with a weights file: the command every CLI case runs."""
    return ["extract", "torchvision:alexnet", str(images), "--random", "--layers", "features.0",
            "--weights", str(weights), "--out", str(tmp_path / "out"), "-q"]  # fmt: skip


def _one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


# --------------------------------------------------------------------------- the crafted file is a real exploit


def test_the_crafted_file_would_run_code_if_unpickled(tmp_path):
    """Control: full unpickling does create the marker, so its absence below means something."""
    path, marker = _crafted(tmp_path, "control.pth")
    torch.load(str(path), map_location="cpu", weights_only=False)
    assert marker.exists()


# --------------------------------------------------------------------------- item 7: no fallback to unpickling


def test_cli_crafted_weights_refused_without_running_code(tmp_path, images):
    path, marker = _crafted(tmp_path)
    r = _cli(*_alexnet_weights_args(images, path, tmp_path))
    line = _one_error_line(r)
    assert str(path) in line and "--allow-pickle" in line and "arbitrary code" in line
    assert "weights_only" not in line
    assert not marker.exists()
    assert not (tmp_path / "out" / "features.0.npy").exists()


@pytest.mark.slow
def test_cli_subprocess_crafted_weights(tmp_path, images):
    """The installed command, in a fresh process: exit 2, one line on stderr, no marker."""
    path, marker = _crafted(tmp_path)
    exe = Path(sys.executable).with_name("visreps")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "visreps.cli"]
    p = subprocess.run(
        [*cmd, *_alexnet_weights_args(images, path, tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and str(path) in lines[0] and "--allow-pickle" in lines[0], p.stderr
    assert "Traceback" not in p.stderr and not marker.exists()


def test_python_crafted_weights_raise_weights_error(tmp_path):
    path, marker = _crafted(tmp_path)
    with pytest.raises(WeightsError) as e:
        visreps.load_model("torchvision:alexnet", pretrained=False, weights=path, device="cpu")
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "allow_pickle=True" in msg and "weights_only" not in msg
    assert not marker.exists()
    with pytest.raises(WeightsError):
        read_checkpoint(path)
    with pytest.raises(WeightsError):  # a user's own module with weights=... takes the same road
        visreps.load_model(torch.nn.Linear(2, 2), weights=path, device="cpu")
    assert not marker.exists()


def test_opt_in_is_what_unpickles(tmp_path):
    """With allow_pickle=True the file is unpickled (the user trusts it), never without."""
    path, marker = _crafted(tmp_path)
    obj = read_checkpoint(path, allow_pickle=True)
    assert marker.exists() and torch.equal(obj["features.0.weight"], torch.zeros(1))


def test_allow_pickle_must_be_a_bool():
    with pytest.raises(visreps.errors.VisrepsError, match="allow_pickle"):
        visreps.load_model("torchvision:alexnet", pretrained=False, allow_pickle="yes")


# --------------------------------------------------------------------------- item 11: not a weights file


def test_cli_random_bytes_one_line_without_torch_advice(tmp_path, images):
    path = tmp_path / "noise.pth"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    r = _cli(*_alexnet_weights_args(images, path, tmp_path))
    line = _one_error_line(r)
    assert "weights_only" not in r.output
    assert str(path) in line and "not a weights file" in line
    for fmt in (".pt/.pth/.bin", "safetensors", ".weights.h5", ".keras"):
        assert fmt in line, line


@pytest.mark.parametrize("content", [b"", b"hello\n", b"PK\x03\x04broken zip"])
def test_other_unreadable_files(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(WeightsError) as e:
        read_checkpoint(path)
    msg = str(e.value)
    assert "not a weights file visreps can read" in msg and "\n" not in msg and "weights_only" not in msg


def test_truncated_state_dict_says_damaged(tmp_path):
    path = tmp_path / "sd.pth"
    torch.save(_tiny().state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated or damaged"):
        read_checkpoint(path)


def test_checkpoint_with_python_objects_names_the_opt_in(tmp_path):
    """A checkpoint with e.g. numpy arrays is not random bytes: the message says what it holds."""
    net = _tiny()
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": net.state_dict(), "extra": np.arange(3)}, path)
    with pytest.raises(WeightsError) as e:
        visreps.load_model(_tiny(), weights=path, device="cpu")
    msg = str(e.value)
    assert "Python objects besides tensors" in msg and "--allow-pickle" in msg and "weights_only" not in msg
    lm = visreps.load_model(_tiny(), weights=path, device="cpu", allow_pickle=True)
    assert lm.weights["allow_pickle"] is True
    assert torch.equal(lm.module[0].weight, net[0].weight)


# --------------------------------------------------------------------------- file: ids (whole pickled models)


@pytest.fixture
def whole(tmp_path) -> tuple[Path, torch.nn.Module]:
    net = _tiny()
    path = tmp_path / "whole.pt"
    torch.save(net, path)
    return path, net


def test_file_id_needs_opt_in(whole, images, tmp_path):
    path, _ = whole
    with pytest.raises(WeightsError) as e:
        visreps.load_model(f"file:{path}", device="cpu")
    msg = str(e.value)
    assert "whole pickled model" in msg and "--allow-pickle" in msg and "allow_pickle=True" in msg
    with pytest.raises(WeightsError, match="allow-pickle"):
        visreps.extract(f"file:{path}", images, layers=["0"], progress=False, num_workers=0)
    line = _one_error_line(_cli("extract", f"file:{path}", str(images), "--layers", "0", "--out", str(tmp_path / "o")))
    assert "--allow-pickle" in line and str(path) in line
    assert "--allow-pickle" in _one_error_line(_cli("layers", f"file:{path}"))


def test_file_id_with_opt_in_loads_and_extracts(whole, images, tmp_path):
    path, net = whole
    lm = visreps.load_model(f"file:{path}", device="cpu", allow_pickle=True)
    assert torch.equal(lm.module[0].weight, net[0].weight)
    assert lm.weights["allow_pickle"] is True and lm.weights["kind"] == "file"
    res = visreps.extract(f"file:{path}", images, layers=["0"], progress=False, num_workers=0, allow_pickle=True)
    assert res["0"].shape[0] == 2
    out = tmp_path / "cli-out"
    r = _cli("extract", f"file:{path}", str(images), "--layers", "3", "--out", str(out), "-q", "--allow-pickle")
    assert r.exit_code == 0, r.output
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["weights"]["allow_pickle"] is True and meta["weights"]["file"] == str(path.resolve())
    assert np.load(out / "3.npy").shape == (2, 4)
    r = _cli("layers", f"file:{path}", "--allow-pickle")
    assert r.exit_code == 0 and "Conv2d" in r.output, r.output


def test_file_id_holding_a_state_dict_says_so(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(_tiny().state_dict(), path)
    with pytest.raises(WeightsError, match="holds a state_dict, not a whole model"):
        visreps.load_model(f"file:{path}", device="cpu")


# --------------------------------------------------------------------------- plain weights keep working


def test_state_dict_pth_loads_without_flag(tmp_path, images):
    net = _tiny()
    with torch.no_grad():
        net[0].weight.add_(1.5)  # not what a seeded init gives
    path = tmp_path / "w.pth"
    torch.save({"state_dict": net.state_dict(), "epoch": 3}, path)
    lm = visreps.load_model(_tiny(), weights=path, device="cpu")
    assert torch.equal(lm.module[0].weight, net[0].weight) and torch.equal(lm.module[0].bias, net[0].bias)
    assert "allow_pickle" not in lm.weights
    # a model id with --weights, through the CLI: alexnet's first conv from a state_dict file
    alex = visreps.load_model("torchvision:alexnet", pretrained=False, seed=3, device="cpu").module
    with torch.no_grad():
        alex.features[0].bias.fill_(0.25)
    apath = tmp_path / "alexnet.pth"
    torch.save(alex.state_dict(), apath)
    lm = visreps.load_model("torchvision:alexnet", pretrained=False, weights=apath, device="cpu")
    assert torch.equal(lm.module.features[0].bias, torch.full((64,), 0.25))
    r = _cli(*_alexnet_weights_args(images, apath, tmp_path))
    assert r.exit_code == 0, r.output


def test_safetensors_loads_without_flag(tmp_path):
    from safetensors.torch import save_file

    net = _tiny()
    with torch.no_grad():
        net[0].bias.copy_(torch.tensor([1.0, -2.0, 3.0, -4.0]))
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    lm = visreps.load_model(_tiny(), weights=path, device="cpu")
    assert torch.equal(lm.module[0].bias, torch.tensor([1.0, -2.0, 3.0, -4.0]))
    assert torch.equal(lm.module[0].weight, net[0].weight)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 5)
    with pytest.raises(WeightsError) as e:
        read_checkpoint(bad)
    assert "\n" not in str(e.value)


def test_opt_in_does_not_unpickle_a_plain_state_dict(tmp_path):
    """A file the safe loader reads is read safely even with allow_pickle=True (recorded as such)."""
    net = _tiny()
    path = tmp_path / "w.pth"
    torch.save(net.state_dict(), path)
    lm = visreps.load_model(_tiny(), weights=path, device="cpu", allow_pickle=True)
    assert "allow_pickle" not in lm.weights and torch.equal(lm.module[0].weight, net[0].weight)
