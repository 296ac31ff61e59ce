"""``harmonization:``: Keras networks trained to agree with where humans look (Fel et al., NeurIPS 2022).

Fel, Felipe, Linsley & Serre re-trained ImageNet networks with the *harmonization* loss, which adds to
the classification loss a term aligning the network's gradient saliency maps, across a Gaussian
pyramid, with the ClickMe maps of the image features people find important. The trained models are
published by serre-lab/harmonization (MIT licence; no separate licence for the weights) at
``https://storage.googleapis.com/serrelab/prj_harmonization/models/<file>``.

Two of them are whole ``keras.applications`` models saved by tf.keras in HDF5 (the Harmonization
package reads them with ``tf.keras.models.load_model``); visreps reads the same files with Keras 3
(``keras.saving.load_model(path, compile=False)``, which reads legacy HDF5 files), so the
architecture, layer names and final activation are the file's own:

* ``harmonization:VGG16``: ``keras.applications.VGG16``, ``vgg16_harmonized.h5``
* ``harmonization:ResNet50V2``: ``keras.applications.ResNet50V2``, ``resnet50v2_harmonized.h5``

(``load_ResNet50`` in the Harmonization package and THINGSvision's ``ResNet50`` variant are this
ResNet50V2.) The other published models are files of weights for architectures from Keras 2 packages
that visreps does not build with Keras 3 (``vit_keras``, ``keras_cv_attention_models``, qubvel's
``efficientnet``); asking for them is an error saying so (see :data:`NOT_AVAILABLE`).

* **Files** live in ``<visreps cache>/keras/models`` (also found in ``$KERAS_HOME/models`` and
  ``~/.keras/models`` under the published name); downloaded once unless offline, where a missing file is
  an error naming it, its address and the cache path. No sha256 is published: the hash of the file
  used is recorded (``sha256_pinned: false``). ``weights=FILE`` reads a local copy of the original file.
* **Preprocessing** is the Harmonization package's ``preprocess_input``: RGB pixels ``x`` in 0..255,
  ``(x / 255 - mean) / std`` per channel with the ImageNet ``mean = (0.485, 0.456, 0.406)`` and
  ``std = (0.229, 0.224, 0.225)`` (:func:`preprocess_input`), applied to each batch by the Keras
  adapter after the resize (shorter side to 224) and centre crop (224).
* **Random weights** (``pretrained=False``): the ``keras.applications`` class with ``weights=None``
  (224×224 input, 1000 classes, softmax classifier: the harmonization loss is Keras's
  ``CategoricalCrossentropy`` on probabilities), seeded; layer names are those of ``keras.applications``.
* **Classes**: the 1000 ImageNet-1k classes, so ``--top-k`` works as for ``keras:`` models.

TensorFlow is imported only when a model is loaded, after torch (see :mod:`visreps.models.keras`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelNotFoundError, WeightsError, closest_hint
from ._base import LoadedModel, file_sha256
from ._card import ModelCard
from ._keras_session import fresh_names, import_keras, seeded
from ._registry import register_source
from .keras import _weights_download, _wrap, check_device, weights_dirs

BASE_URL = "https://storage.googleapis.com/serrelab/prj_harmonization/models/"

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

PAPER = (
    "Fel, Felipe, Linsley & Serre, Harmonizing the object recognition strategies of deep neural networks "
    "with humans, NeurIPS 2022"
)


@dataclass(frozen=True)
class Harmonized:
    """A published harmonized model: its file (a whole Keras model in HDF5) and architecture.

    Attributes:
        file: the published file name (its address is ``BASE_URL + file``).
        application: the ``keras.applications`` class of its architecture (for random weights).
        architecture: as the catalogue shows it.
        sha256: the file's published sha256 (``None``: none is published).
    """

    file: str
    application: str
    architecture: str
    sha256: str | None = None

    @property
    def url(self) -> str:
        return BASE_URL + self.file


MODELS: dict[str, Harmonized] = {
    "VGG16": Harmonized("vgg16_harmonized.h5", "VGG16", "VGG-16"),
    "ResNet50V2": Harmonized("resnet50v2_harmonized.h5", "ResNet50V2", "ResNet-50 v2"),
}

#: published harmonized models visreps cannot build, and why
NOT_AVAILABLE: dict[str, str] = {
    "ViT_B16": "vit-b16_harmonized.h5 holds weights for the ViT-B/16 of the Keras 2 package vit_keras",
    "EfficientNetB0": "efficientnetB0_harmonized.h5 needs the custom layers of the Keras 2 package efficientnet",
    "tiny_ConvNeXT": "convnext_tiny_harmonized.h5 holds weights for ConvNeXtTiny of keras_cv_attention_models",
    "tiny_MaxViT": "maxvit_tiny_harmonized.h5 holds weights for MaxViT_Tiny of keras_cv_attention_models",
    "LeViT_small": "levit_small_harmonized.h5 holds weights for LeViT128 of keras_cv_attention_models",
}

SIDE = 224


def preprocess_input(x: np.ndarray) -> np.ndarray:
    """The Harmonization models' input: ``(x / 255 - mean) / std`` per RGB channel (ImageNet mean and std).

    Args:
        x: float array (B, H, W, 3) of RGB pixels in 0..255.

    Returns:
        float32 array of the same shape.
    """
    a = np.asarray(x, dtype=np.float32)
    return (a / np.float32(255.0) - IMAGENET_MEAN) / IMAGENET_STD


PREPROCESS_NAME = "visreps.models.harmonization.preprocess_input: (x / 255 - ImageNet mean) / ImageNet std"


def list_names() -> list[str]:
    return list(MODELS)


def check_name(name: str) -> None:
    if name in MODELS:
        return
    ids = ", ".join(f"harmonization:{n}" for n in MODELS)
    if name in NOT_AVAILABLE:
        raise ModelNotFoundError(
            f"harmonization:{name} is not available in visreps: {NOT_AVAILABLE[name]}, "
            f"which visreps does not build with Keras 3; available: {ids}"
        )
    same = [f"harmonization:{n}" for n in MODELS if n.lower().startswith(name.lower()[:5])]
    hint = closest_hint(name, MODELS, prefix="harmonization:") or (f"; closest: {', '.join(same)}" if same else "")
    raise ModelNotFoundError(f"harmonization has no model {name!r}{hint or f'; available: {ids}'}")


def _find_cached(fname: str) -> Path | None:
    for d in weights_dirs():
        if (d / fname).is_file():
            return d / fname
    return None


def available_offline(name: str) -> bool:
    return name in MODELS and _find_cached(MODELS[name].file) is not None


def card(name: str) -> ModelCard:
    check_name(name)
    entry = MODELS[name]
    return ModelCard(
        family="Harmonization",
        architecture=entry.architecture,
        training_data="ImageNet-1k with ClickMe human feature-importance maps",
        objective="supervised classification + harmonization loss (saliency aligned with ClickMe maps)",
        weights_licence="MIT (serre-lab/harmonization; no separate licence for the weights)",
        paper=PAPER,
        url=entry.url,
        sha256=entry.sha256,
    )


def _fetch(entry: Harmonized, model_id: str) -> Path:
    """The cached file of ``entry``, downloaded into ``<cache>/keras/models`` first if missing (unless offline)."""
    from keras.src.utils import file_utils  # the function keras.py routes through the visreps cache

    used: dict = {}
    with _weights_download(model_id, used):
        path = file_utils.get_file(entry.file, entry.url, cache_subdir="models")
    return Path(path)


def _read_model(keras: Any, path: Path, model_id: str) -> Any:
    """The whole Keras model saved in ``path``."""
    if not path.is_file():
        raise WeightsError(f"model file {str(path)!r} does not exist; give the path to the original .h5 file")
    if not path.name.lower().endswith((".h5", ".hdf5", ".keras")):
        raise WeightsError(
            f"{str(path)!r} is not a Keras model file: {model_id} reads the original whole-model .h5 file"
        )
    try:
        with fresh_names():
            return keras.saving.load_model(str(path), compile=False)
    except Exception as e:
        raise WeightsError(
            f"cannot read {str(path)!r} as the Keras model {model_id} (the original is a whole model saved by "
            f"tf.keras in HDF5, not a weights-only file): {type(e).__name__}: {e}"
        ) from e


def _random(keras: Any, entry: Harmonized, seed: int) -> Any:
    import keras.applications as applications  # the submodule is not an attribute until imported

    with fresh_names(), seeded(keras, seed):
        return getattr(applications, entry.application)(weights=None, input_shape=(SIDE, SIDE, 3))


@register_source("harmonization", optional=True)
def load(
    name: str,
    *,
    pretrained: bool = True,
    weights: str | os.PathLike[str] | None = None,
    seed: int = 0,
    device: Any = None,
) -> LoadedModel:
    """The harmonized model ``name``: the published file, a local copy of it (``weights``), or seeded random weights."""
    from ._zoo import verify_sha256

    check_name(name)
    check_device(device)
    keras = import_keras()
    entry = MODELS[name]
    model_id = f"harmonization:{name}"
    record: dict[str, Any]
    if weights is not None:
        path = Path(weights).expanduser()
        model = _read_model(keras, path, model_id)
        record = {"kind": "file", "file": str(path.resolve()), "sha256": file_sha256(path)}
    elif pretrained:
        path = _fetch(entry, model_id)
        sha = verify_sha256(path, entry.sha256, entry.url)
        model = _read_model(keras, path, model_id)
        record = {
            "kind": "pretrained",
            "name": model_id,
            "url": entry.url,
            "file": str(path),
            "sha256": sha,
            "sha256_pinned": bool(entry.sha256),
        }
    else:
        model = _random(keras, entry, seed)
        record = {"kind": "random", "seed": seed}
    h, w = (tuple(model.input_shape[1:3]) + (None, None))[:2]
    side = int(h) if h and h == w else SIDE
    return _wrap(
        model,
        model_id=model_id,
        weights=record,
        side=side,
        preprocess=preprocess_input,
        preprocess_name=PREPROCESS_NAME,
    )
