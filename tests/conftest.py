"""Shared fixtures: tests make their own images and tiny networks; nothing needs the network."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

if importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "images"


def write_images(root: Path, names: list[str], size=(40, 30), seed: int = 0) -> list[Path]:
    """Random RGB images saved under ``root`` (format from the extension)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(arr).save(p)
        paths.append(p)
    return paths


@pytest.fixture
def image_dir(tmp_path) -> Path:
    root = tmp_path / "images"
    write_images(root, ["b.png", "a.jpg", "cls1/c.png", "cls1/deep/d.bmp", "cls2/e.JPG", "cls2/f.tif"])
    return root


@pytest.fixture
def tiny_net():
    """A small CNN with hand-set (seeded) weights: conv → relu → pool → conv → relu → avgpool → flatten → fc."""
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 5),
    )
    return net.eval()


@pytest.fixture
def small_prep():
    from visreps.models import Preprocessing

    return Preprocessing(resize=20, crop=16)
