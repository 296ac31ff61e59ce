"""The Keras source: applications, a user's Keras model, parity with PyTorch, weights, offline errors.

Skipped without the extra (``pip install 'visreps[keras]'``). torch (and triton) are imported
before TensorFlow: triton imported after TensorFlow crashes the process.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict

import numpy as np
import pytest
import torch

try:
    import triton  # noqa: F401
except ImportError:
    pass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras", minversion="3.0")

import visreps  # noqa: E402
from visreps.errors import ModelNotFoundError, VisrepsError, WeightsError  # noqa: E402
from visreps.models import Preprocessing  # noqa: E402
from visreps.models import keras as kx  # noqa: E402
from visreps.pooling import pool_output  # noqa: E402

pytestmark = pytest.mark.slow  # subprocesses / a heavy backend: not in the fast subset

APP = "MobileNetV3Small"  # the smallest application (2.5 M parameters)


@pytest.fixture
def cache_state(tmp_path, monkeypatch):
    """A private weights cache, HOME and no KERAS_HOME; offline mode restored afterwards."""
    from visreps.cache import set_cache_dir, set_offline

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KERAS_HOME", raising=False)
    set_cache_dir(tmp_path / "cache")
    yield tmp_path / "cache"
    set_cache_dir(None)
    set_offline(None)


def tiny_pair(final_softmax: bool = False):
    """A tiny Keras CNN and the same network in PyTorch, with the same (random) weights."""
    from torch import nn

    rng = np.random.default_rng(3)
    inp = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(inp)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.Conv2D(6, 3, name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(5, name="fc", activation="softmax" if final_softmax else None)(x)
    km = keras.Model(inp, out, name="tiny")
    tm = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 4, 3, padding=1),
            relu1=nn.ReLU(),
            conv2=nn.Conv2d(4, 6, 3),
            gap=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=nn.Linear(6, 5),
        )
    ).eval()
    with torch.no_grad():
        for name in ("conv1", "conv2", "fc"):
            layer = km.get_layer(name)
            k, b = layer.get_weights()
            k = rng.normal(0, 0.3, k.shape).astype(np.float32)
            b = rng.normal(0, 0.1, b.shape).astype(np.float32)
            layer.set_weights([k, b])
            mod = getattr(tm, name)
            # Keras conv kernels are HWIO, torch OIHW; a Dense kernel is (in, out), Linear (out, in)
            mod.weight.copy_(torch.from_numpy(k.transpose(3, 2, 0, 1) if k.ndim == 4 else k.T))
            mod.bias.copy_(torch.from_numpy(b))
    return km, tm


TORCH_UNIT = Preprocessing(resize=16, crop=16, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def nchw_flat_to_nhwc_flat(a: np.ndarray, c: int, h: int, w: int) -> np.ndarray:
    return a.reshape(len(a), c, h, w).transpose(0, 2, 3, 1).reshape(len(a), -1)


# --------------------------------------------------------------------------- parity with PyTorch


def test_tiny_keras_model_matches_torch(image_dir):
    km, tm = tiny_pair()
    lm = kx.from_keras_model(km, preprocess="unit")  # x / 255: the same numbers as ToTensor
    assert lm.backend == "keras" and lm.preprocessing.crop == 16
    opts = dict(num_workers=0, progress=False)
    fk = visreps.extract(
        lm,
        image_dir,
        layers=["relu1", "conv2", "fc"],
        pool={"relu1": "flatten", "conv2": "avg", "fc": "flatten"},
        **opts,
    )
    ft = visreps.extract(
        tm,
        image_dir,
        layers=["relu1", "conv2", "fc"],
        pool={"relu1": "flatten", "conv2": "avg", "fc": "flatten"},
        preprocessing=TORCH_UNIT,
        device="cpu",
        **opts,
    )
    assert list(fk.manifest["path"]) == list(ft.manifest["path"])
    # flatten keeps Keras's native (H, W, C) order; torch flattens (C, H, W)
    np.testing.assert_allclose(fk["relu1"], nchw_flat_to_nhwc_flat(ft["relu1"], 4, 16, 16), atol=1e-5)
    np.testing.assert_allclose(fk["conv2"], ft["conv2"], atol=1e-5)  # global average over H, W
    np.testing.assert_allclose(fk["fc"], ft["fc"], atol=1e-5)
    assert np.abs(fk["fc"]).max() > 0.05  # not trivially equal
    assert fk.metadata["layers"]["relu1"]["shape"] == [6, 16 * 16 * 4]


def test_keras_inputs_are_pixels_0_255_in_hwc(image_dir):
    from visreps.data import load_image

    km, _ = tiny_pair()
    lm = kx.from_keras_model(km)  # no preprocess: the model sees raw pixels
    fk = visreps.extract(lm, image_dir, layers=["image"], pool="none", num_workers=0, progress=False)
    assert fk["image"].shape == (6, 16, 16, 3)
    assert fk["image"].max() > 1.5 and fk["image"].min() >= 0
    assert np.array_equal(fk["image"], np.round(fk["image"]))  # whole pixel values
    # the same resize and crop as the PyTorch pipeline, channels last
    img = load_image(image_dir / fk.manifest["path"][0])
    torch_chw = TORCH_UNIT.build()(img).numpy()
    np.testing.assert_allclose(fk["image"][0] / 255.0, torch_chw.transpose(1, 2, 0), atol=1e-6)
    # an application's preprocess_input runs on the batch before the model
    lm_caffe = kx.from_keras_model(km, preprocess="resnet50")
    assert lm_caffe.preprocessing_extra["keras_preprocess_input"] == "keras.applications.resnet50.preprocess_input"
    fc = visreps.extract(lm_caffe, image_dir, layers=["image"], pool="none", num_workers=0, progress=False)
    expected = keras.applications.resnet50.preprocess_input(fk["image"].copy())  # BGR, ImageNet means
    np.testing.assert_allclose(fc["image"], expected, atol=1e-4)
    ft = visreps.extract(
        kx.from_keras_model(km, preprocess="tf"),
        image_dir,
        layers=["image"],
        pool="none",
        num_workers=0,
        progress=False,
    )
    np.testing.assert_allclose(ft["image"], fk["image"] / 127.5 - 1, atol=1e-5)


def test_pool_modes_match_torch_on_transposed_arrays():
    rng = np.random.default_rng(0)
    t = torch.from_numpy(rng.normal(size=(2, 5, 4, 3)).astype(np.float32))  # (B, C, H, W)
    k = t.permute(0, 2, 3, 1).numpy()  # (B, H, W, C)
    for mode in ("avg", "max"):
        np.testing.assert_allclose(kx.pool_array(k, mode), pool_output(t, mode).numpy(), atol=1e-6)
    np.testing.assert_array_equal(
        kx.pool_array(k, "flatten"), nchw_flat_to_nhwc_flat(pool_output(t, "flatten").numpy(), 5, 4, 3)
    )
    seq = rng.normal(size=(2, 7, 6)).astype(np.float32)
    for mode in ("cls", "patch_mean", "flatten", "none"):
        np.testing.assert_allclose(
            kx.pool_array(seq, mode), pool_output(torch.from_numpy(seq), mode).numpy(), atol=1e-6
        )
    with pytest.raises(VisrepsError, match="ambiguous"):
        kx.pool_array(seq, "avg", "tokens")
    with pytest.raises(VisrepsError, match="token sequences"):
        kx.pool_array(k, "cls", "maps")


# --------------------------------------------------------------------------- one pass, built once


def test_multi_output_model_is_built_once_per_extraction(image_dir, monkeypatch):
    km, _ = tiny_pair()
    lm = kx.from_keras_model(km, preprocess="unit")
    built = []
    real = kx._functional_model
    monkeypatch.setattr(kx, "_functional_model", lambda *a, **k: built.append(k.get("name")) or real(*a, **k))
    res = visreps.extract(lm, image_dir, layers=["relu1", "fc"], batch_size=2, num_workers=0, progress=False)
    assert len(built) == 1  # 6 images in 3 batches, dry runs included
    assert res["relu1"].shape == (6, 1024) and res["fc"].shape == (6, 5)


def test_describe_layers_and_errors(image_dir):
    km, _ = tiny_pair()
    lm = kx.from_keras_model(km)
    assert lm.layer_names() == ["image", "conv1", "relu1", "conv2", "gap", "fc"]
    infos = {i.name: i for i in lm.layers()}
    assert infos["conv2"].type == "Conv2D" and infos["conv2"].shape == (14, 14, 6) and infos["conv2"].calls == 1
    assert infos["fc"].shape == (5,)
    with pytest.raises(VisrepsError, match="closest: conv1"):
        visreps.extract(lm, image_dir, layers=["conv_1"], num_workers=0, progress=False)
    with pytest.raises(VisrepsError, match="takes 16×16 images"):
        visreps.extract(
            lm, image_dir, layers=["fc"], preprocessing={"resize": 20, "crop": 20}, num_workers=0, progress=False
        )
    with pytest.raises(VisrepsError, match="leave mean at 0"):
        visreps.extract(
            kx.from_keras_model(km),
            image_dir,
            layers=["fc"],
            preprocessing={"mean": (0.5, 0.5, 0.5)},
            num_workers=0,
            progress=False,
        )
    with pytest.raises(VisrepsError, match="device"):
        kx.load(APP, pretrained=False, device="cuda")
    with pytest.raises(VisrepsError, match="preprocess="):
        kx.from_keras_model(km, preprocess="bogus")


def test_top_k_uses_probabilities_of_a_softmax_model(image_dir):
    inp = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D(name="gap")(inp)
    out = keras.layers.Dense(1000, activation="softmax", name="predictions")(x)
    lm = kx.from_keras_model(keras.Model(inp, out), preprocess="unit")
    res = visreps.extract(lm, image_dir, layers=["predictions"], top_k=3, num_workers=0, progress=False)
    probs = res["predictions"]
    top = np.argsort(-probs, axis=1)[:, :3]
    np.testing.assert_array_equal(res.predictions[["class_1", "class_2", "class_3"]].to_numpy(), top)
    np.testing.assert_allclose(res.predictions["prob_1"].to_numpy(), probs.max(axis=1), rtol=1e-5)


# --------------------------------------------------------------------------- applications


def test_list_and_check_names():
    names = kx.list_names()
    assert "ResNet50" in names and APP in names and "ConvNeXtTiny" in names
    installed = sorted(
        n for n in dir(keras.applications) if n[:1].isupper() and callable(getattr(keras.applications, n))
    )
    assert names == installed
    assert all(n in kx.APPLICATIONS for n in names), "APPLICATIONS lacks new Keras applications"
    assert "keras:ResNet50" in visreps.list_models("keras:resnet5")
    with pytest.raises(ModelNotFoundError, match="keras:ResNet50"):
        visreps.load_model("keras:resnet50", pretrained=False)


def test_application_two_layers_one_pass_into_folder(image_dir, tmp_path, monkeypatch):
    built = []
    real = kx._functional_model
    monkeypatch.setattr(kx, "_functional_model", lambda *a, **k: built.append(1) or real(*a, **k))
    out = tmp_path / "out"
    res = visreps.extract(
        f"keras:{APP}",
        image_dir,
        layers=["conv", "expanded_conv_project_bn"],
        out=out,
        pretrained=False,
        pool={"conv": "avg", "expanded_conv_project_bn": "flatten"},
        batch_size=4,
        num_workers=0,
        progress=False,
    )
    assert len(built) == 1
    assert sorted(p.name for p in out.iterdir()) == [
        "conv.npy",
        "expanded_conv_project_bn.npy",
        "manifest.csv",
        "metadata.json",
    ]
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["status"] == "complete"
    assert meta["model"] == f"keras:{APP}" and meta["weights"] == {"kind": "random", "seed": 0}
    assert meta["preprocessing"]["resize"] == 224 and meta["preprocessing"]["crop"] == 224
    lm = visreps.load_model(f"keras:{APP}", pretrained=False)
    assert lm.preprocessing_extra["keras_preprocess_input"] == "keras.applications.mobilenet_v3.preprocess_input"
    assert meta["layers"]["conv"]["shape"] == [6, 16]
    assert meta["layers"]["expanded_conv_project_bn"]["shape"] == [6, 56 * 56 * 16]
    back = visreps.load_features(out)
    np.testing.assert_array_equal(back["conv"], res["conv"])
    assert back["expanded_conv_project_bn"].shape == (6, 56 * 56 * 16)
    assert list(back.manifest["path"]) == list(res.manifest["path"])
    assert np.abs(back["conv"]).max() > 0


def test_seeds_and_weights_file_round_trip(image_dir, tmp_path):
    layers = ["conv", "expanded_conv_depthwise"]
    opts = dict(layers=layers, pool="avg", num_workers=0, progress=False)
    a = kx.load(APP, pretrained=False, seed=0)
    path = tmp_path / "w.weights.h5"
    a.module.save_weights(str(path))
    b = kx.load(APP, pretrained=False, seed=1, weights=str(path))
    assert b.weights["kind"] == "file" and b.weights["file"] == str(path.resolve()) and len(b.weights["sha256"]) == 64
    c = kx.load(APP, pretrained=False, seed=1)
    d = kx.load(APP, pretrained=False, seed=0)
    assert a.layer_names() == d.layer_names() == c.layer_names()  # names do not depend on earlier builds
    fa, fb, fc, fd = (visreps.extract(m, image_dir, **opts) for m in (a, b, c, d))
    for k in layers:
        np.testing.assert_array_equal(fa[k], fb[k])  # the file's weights, not seed 1's
        np.testing.assert_array_equal(fa[k], fd[k])  # same seed, same numbers
        assert not np.allclose(fa[k], fc[k])
    (tmp_path / "w.pt").write_bytes(b"x")
    with pytest.raises(WeightsError, match="Keras weights file"):
        kx.load(APP, pretrained=False, weights=str(tmp_path / "w.pt"))
    km, _ = tiny_pair()
    small = tmp_path / "tiny.weights.h5"
    km.save_weights(str(small))
    with pytest.raises(WeightsError, match="does not fit keras:MobileNetV3Small"):
        kx.load(APP, pretrained=False, weights=str(small))


def test_offline_pretrained_without_weights_names_file_and_place(cache_state):
    from visreps.cache import set_offline

    set_offline(True)
    fname = kx.weights_file(APP)
    assert fname == "weights_mobilenet_v3_small_224_1.0_float.h5"
    assert not kx.available_offline(APP)
    with pytest.raises(WeightsError) as e:
        visreps.load_model(f"keras:{APP}")
    msg = str(e.value)
    assert fname in msg and str(cache_state / "keras" / "models" / fname) in msg and "offline" in msg
    assert "https://" in msg
    # a file of that name in ~/.keras/models counts as available, but a wrong file is refused
    home_models = cache_state.parent / "home" / ".keras" / "models"
    home_models.mkdir(parents=True)
    (home_models / fname).write_bytes(b"not weights")
    assert kx.available_offline(APP)
    assert visreps.models.available_offline(f"keras:{APP}")
    with pytest.raises(WeightsError, match="hash does not match"):
        visreps.load_model(f"keras:{APP}")


def test_whole_keras_model_file_and_user_weights(image_dir, tmp_path):
    km, _ = tiny_pair()
    path = tmp_path / "tiny.keras"
    km.save(str(path))
    opts = dict(layers=["conv2"], pool="avg", num_workers=0, progress=False)
    ref = visreps.extract(kx.from_keras_model(km, preprocess="unit"), image_dir, **opts)
    lm = kx.load_model_file(path)
    assert lm.model_id == f"file:{path.resolve()}" and lm.weights["kind"] == "file"
    lm.adapter.preprocess = kx._unit
    np.testing.assert_array_equal(visreps.extract(lm, image_dir, **opts)["conv2"], ref["conv2"])
    w = tmp_path / "tiny.weights.h5"
    km.save_weights(str(w))
    other, _ = tiny_pair()
    for layer in other.layers:  # scramble, then load the file back
        layer.set_weights([np.zeros_like(v) for v in layer.get_weights()])
    lm2 = kx.from_keras_model(other, preprocess="unit", weights=w)
    assert lm2.weights["kind"] == "file"
    np.testing.assert_array_equal(visreps.extract(lm2, image_dir, **opts)["conv2"], ref["conv2"])
    assert kx.is_keras_model(km) and not kx.is_keras_model(torch.nn.Linear(2, 2))


def test_pretrained_download_lands_in_visreps_cache_and_is_reused(cache_state, monkeypatch):
    import h5py
    from keras.src.legacy.saving import legacy_h5_format
    from keras.src.utils import file_utils

    ref = kx.load(APP, pretrained=False, seed=5)  # stands in for the ImageNet weights
    fname = kx.weights_file(APP)
    downloads = []

    def fake_download(fname, origin, **kw):  # Keras's get_file, without the network
        target = os.path.join(kw["cache_dir"], kw["cache_subdir"], fname)
        downloads.append((target, origin))
        with h5py.File(target, "w") as f:  # the legacy .h5 format of Keras's application weights
            legacy_h5_format.save_weights_to_hdf5_group(f, ref.module)
        return target

    monkeypatch.setattr(file_utils, "get_file", fake_download)
    lm = visreps.load_model(f"keras:{APP}")
    target = cache_state / "keras" / "models" / fname
    assert downloads == [
        (str(target), f"https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/{fname}")
    ]
    assert lm.weights["kind"] == "pretrained" and lm.weights["name"] == "imagenet" and lm.weights["file"] == fname
    assert len(lm.weights["sha256"]) == 64 and kx.available_offline(APP)
    for a, b in zip(lm.module.get_weights(), ref.module.get_weights()):
        np.testing.assert_array_equal(a, b)
    # next time the cached file is used (our stand-in lacks the real hash: accept it here)
    monkeypatch.setattr(file_utils, "validate_file", lambda *a, **k: True)
    from visreps.cache import set_offline

    set_offline(True)
    again = visreps.load_model(f"keras:{APP}")
    assert len(downloads) == 1 and again.weights["sha256"] == lm.weights["sha256"]


def test_load_model_and_extract_take_keras_objects_and_files(image_dir, tmp_path):
    km, _ = tiny_pair()
    lm = visreps.load_model(km)  # a keras.Model, like a torch.nn.Module
    assert lm.backend == "keras" and lm.model_id == "custom:tiny" and lm.weights == {"kind": "user"}
    res = visreps.extract(km, image_dir, layers=["gap"], out=tmp_path / "o", num_workers=0, progress=False)
    meta = res.metadata
    assert meta["backend"] == "keras" and meta["preprocessing"]["layout"] == "NHWC"
    assert "keras" in meta["versions"] and ("tensorflow" in meta["versions"] or "tensorflow-cpu" in meta["versions"])
    path = tmp_path / "tiny.keras"
    km.save(str(path))
    again = visreps.extract(f"file:{path}", image_dir, layers=["gap"], num_workers=0, progress=False)
    np.testing.assert_array_equal(again["gap"], res["gap"])
    assert visreps.from_keras_model is kx.from_keras_model
    with pytest.raises(VisrepsError, match="fp32"):
        visreps.extract(km, image_dir, layers=["gap"], precision="bf16", num_workers=0, progress=False)
    with pytest.raises(VisrepsError, match="device"):
        visreps.load_model(km, device="cuda")
