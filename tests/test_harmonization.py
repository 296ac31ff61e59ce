"""``harmonization:``: the harmonized Keras models (Fel et al. 2022), read from the published whole-model files.

The published VGG16 and ResNet50V2 are whole ``keras.applications`` models saved by tf.keras in HDF5
(the Harmonization package reads them with ``tf.keras.models.load_model``). The test file is such a
model, ``keras.applications.ResNet50V2(weights=None)`` (32×32 input to keep it quick), written by
``model.save("….h5")`` (Keras 3's writer of the legacy HDF5 format; tf-keras 2 is not installed here).
visreps' outputs are compared with the Keras model's own ``predict`` on the Harmonization
preprocessing computed as the package does (NumPy float64). Skipped without the ``keras`` extra.
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
import torch  # noqa: F401  torch (and triton) before TensorFlow

try:
    import triton  # noqa: F401
except ImportError:
    pass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras", minversion="3.0")

import visreps  # noqa: E402
from visreps import cache  # noqa: E402
from visreps.capture import imagenet_classes, model_classes  # noqa: E402
from visreps.errors import ModelNotFoundError, WeightsError  # noqa: E402
from visreps.models import harmonization as hz  # noqa: E402
from visreps.models import list_models, load_model, model_card  # noqa: E402
from visreps.models._base import file_sha256  # noqa: E402

pytestmark = pytest.mark.slow  # a heavy backend: not in the fast subset

SIDE = 32
MIDDLE = "conv3_block1_out"


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """A file in the published format: a whole keras.applications.ResNet50V2 (random weights) in HDF5."""
    keras.utils.set_random_seed(5)
    model = keras.applications.ResNet50V2(weights=None, input_shape=(SIDE, SIDE, 3))
    path = tmp_path_factory.mktemp("published") / "resnet50v2_harmonized.h5"
    model.save(path)
    return model, path


@pytest.fixture
def cache_state(tmp_path, monkeypatch):
    """A private cache, HOME and no KERAS_HOME, offline; restored afterwards."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KERAS_HOME", raising=False)
    cache.set_cache_dir(tmp_path / "cache")
    cache.set_offline(True)
    yield tmp_path / "cache"
    cache.set_cache_dir(None)
    cache.set_offline(None)


def place(path, cache_dir):
    target = cache_dir / "keras" / "models" / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(path, target)
    return target


def harmonization_preprocess(x: np.ndarray) -> np.ndarray:
    """harmonization.models.preprocess_input, as the package writes it (NumPy float64)."""
    return (x / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])


def test_the_published_file_gives_the_keras_models_own_outputs(original, cache_state, image_dir):
    from visreps.data import load_image

    model, path = original
    cached = place(path, cache_state)
    lm = load_model("harmonization:ResNet50V2")
    assert lm.backend == "keras" and lm.preprocessing.crop == SIDE and lm.class_names is None
    assert lm.weights == {
        "kind": "pretrained",
        "name": "harmonization:ResNet50V2",
        "url": "https://storage.googleapis.com/serrelab/prj_harmonization/models/resnet50v2_harmonized.h5",
        "file": str(cached),
        "sha256": file_sha256(path),
        "sha256_pinned": False,
    }
    f = visreps.extract(lm, image_dir, layers=[MIDDLE, "predictions"], pool="none", num_workers=0, progress=False)
    pixels = np.stack([lm.transform(load_image(image_dir / p)).numpy() for p in f.manifest["path"]])
    assert pixels.shape == (6, SIDE, SIDE, 3) and pixels.max() > 1.5  # 0..255, channels last
    reference = keras.Model(model.inputs, [model.get_layer(MIDDLE).output, model.output])
    mid, out = reference.predict(harmonization_preprocess(pixels.astype(np.float64)), verbose=0)
    np.testing.assert_allclose(f[MIDDLE], mid, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(f["predictions"], out, rtol=1e-4, atol=1e-7)
    assert np.abs(mid).max() > 1e-2
    assert model_classes(lm) == imagenet_classes()  # top-k works as for keras: models
    assert f.metadata["preprocessing"]["keras_preprocess_input"] == hz.PREPROCESS_NAME


def test_preprocess_input_is_the_packages_formula():
    x = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype(np.float32)
    got = hz.preprocess_input(x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, harmonization_preprocess(x.astype(np.float64)), rtol=1e-6, atol=1e-6)


def test_a_local_copy_and_files_that_are_not_the_model(original, tmp_path):
    import h5py

    _, path = original
    lm = load_model("harmonization:ResNet50V2", weights=str(path))
    assert lm.weights == {"kind": "file", "file": str(path.resolve()), "sha256": file_sha256(path)}
    weights_only = tmp_path / "w.h5"
    with h5py.File(weights_only, "w") as h:
        h.create_dataset("conv1_conv/kernel", data=np.zeros((1,), np.float32))
    with pytest.raises(WeightsError, match=r"cannot read '.*w\.h5' as the Keras model harmonization:VGG16"):
        load_model("harmonization:VGG16", weights=str(weights_only))
    with pytest.raises(WeightsError, match=r"'.*w\.pt' is not a Keras model file"):
        (tmp_path / "w.pt").write_bytes(b"x")
        load_model("harmonization:VGG16", weights=str(tmp_path / "w.pt"))
    with pytest.raises(WeightsError, match="does not exist"):
        load_model("harmonization:VGG16", weights=str(tmp_path / "missing.h5"))


def test_offline_cache_miss_names_file_address_and_cache_path(cache_state):
    with pytest.raises(WeightsError) as e:
        load_model("harmonization:VGG16")
    msg = str(e.value)
    assert "harmonization:VGG16" in msg and str(cache_state / "keras" / "models" / "vgg16_harmonized.h5") in msg
    assert "https://storage.googleapis.com/serrelab/prj_harmonization/models/vgg16_harmonized.h5" in msg


def test_a_pinned_sha256_that_differs_names_the_file_and_both_hashes(original, cache_state, monkeypatch):
    _, path = original
    cached = place(path, cache_state)
    pinned = "cd" * 32
    monkeypatch.setitem(hz.MODELS, "ResNet50V2", replace(hz.MODELS["ResNet50V2"], sha256=pinned))
    with pytest.raises(WeightsError) as e:
        load_model("harmonization:ResNet50V2")
    msg = str(e.value)
    assert str(cached) in msg and pinned in msg and file_sha256(path) in msg


def test_random_weights_are_seeded_keras_applications(monkeypatch):
    monkeypatch.setattr(hz, "SIDE", SIDE)  # the real VGG16 class, a small input to keep it quick
    a, b = (load_model("harmonization:VGG16", pretrained=False, seed=3) for _ in range(2))
    c = load_model("harmonization:VGG16", pretrained=False, seed=4)
    assert a.weights == {"kind": "random", "seed": 3} and a.layer_names()[-3:] == ["fc1", "fc2", "predictions"]
    first = [m.module.get_layer("block1_conv1").get_weights()[0] for m in (a, b, c)]
    np.testing.assert_array_equal(first[0], first[1])
    assert not np.array_equal(first[0], first[2])
    assert a.module.output_shape == (None, 1000)


def test_cards_and_the_models_visreps_does_not_build():
    assert list_models(source="harmonization") == ["harmonization:VGG16", "harmonization:ResNet50V2"]
    card = model_card("harmonization:VGG16")
    assert (card.family, card.url, card.sha256) == (
        "Harmonization",
        "https://storage.googleapis.com/serrelab/prj_harmonization/models/vgg16_harmonized.h5",
        None,
    )
    assert "Fel" in card.paper and "NeurIPS 2022" in card.paper and card.weights_licence.startswith("MIT")
    with pytest.raises(ModelNotFoundError, match=r"harmonization:ViT_B16 is not available.*vit_keras"):
        load_model("harmonization:ViT_B16")
    with pytest.raises(ModelNotFoundError, match=r"closest: harmonization:ResNet50V2"):
        model_card("harmonization:ResNet50")
