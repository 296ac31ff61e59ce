"""Keras 3 applications (``keras:ResNet50``, ``keras:MobileNetV3Small``...) and your own Keras models.

Every class of ``keras.applications`` is a model id ``keras:<Class>``: pretrained (``imagenet``
weights, downloaded once into ``<visreps cache>/keras/models``), random (seeded), or a local weights
file (``.weights.h5``, ``.h5`` or ``.keras``). A user's own ``keras.Model`` is wrapped with
:func:`from_keras_model`.

TensorFlow is imported only when a Keras model is loaded, never by ``import visreps`` or by listing
models; without the extra, loading raises :class:`~visreps.errors.MissingExtraError` saying
``pip install 'visreps[keras]'``. torch is imported first (with ``triton`` when installed): triton
imported after TensorFlow crashes the process.

How a Keras model plugs into the extraction engine (see :class:`KerasAdapter`):

* **Layer names** are Keras's own (``model.layers``, top level; e.g. ``conv1_relu``,
  ``expanded_conv_project_bn``, ``predictions``), as ``model.summary()`` shows them. Layer names
  that Keras generates (``activation_3``) are made as in a fresh Python session, whatever else was
  built before, so the same id always gives the same names.
* **Images** are resized (shorter side to the application's input size, bilinear, antialiased)
  and centre-cropped to a square: ``Preprocessing(resize=S, crop=S, mean=0, std=1)``, the same
  as ``keras.utils.load_img(path, target_size=(S, S), keep_aspect_ratio=True)`` up to
  interpolation; for square images it is a plain resize to S×S. Pixels stay float32 in 0..255,
  channels last (H, W, 3); the application's own ``keras.applications.<module>.preprocess_input``
  is applied to each batch (NumPy) inside the capture, so the model sees exactly what a Keras user
  feeds it. The function's path is in ``lm.preprocessing_extra["keras_preprocess_input"]``.
* **Several layers, one pass**: one multi-output ``keras.Model(inputs, [layer outputs])`` is built
  per set of requested layers (once, cached on the adapter, not per batch) and run with
  ``predict_on_batch``; Keras prunes the graph to what the requested layers need, so layers after
  the last requested one never run.
* **Pooling** follows :func:`visreps.pooling.pool_output` on Keras's channels-last outputs:
  ``avg``/``max`` average/max over the spatial axes of (B, H, W, C) (or (B, T, H, W, C)) → (B, C);
  ``flatten`` keeps Keras's native order, i.e. (H, W, C) row-major, which is *not* the (C, H, W)
  order of a PyTorch model's flatten: ``keras_flat == torch_out.permute(0, 2, 3, 1).reshape(B, -1)``.
  ``cls``/``patch_mean`` act on token sequences (B, N, D) as for PyTorch.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelNotFoundError, VisrepsError, WeightsError, closest_hint
from ._base import LoadedModel, Preprocessing, file_sha256
from ._card import ModelCard
from ._keras_backend import KerasAdapter, KerasCapture, pool_array
from ._keras_backend import _functional_model as _functional_model  # a seam tests replace: KerasAdapter calls it here
from ._keras_session import INSTALL_HINT, fresh_names, import_keras, quiet_stderr, seeded
from ._registry import register_source

#: the catalogue card of every keras model (the architecture is the model's name)
CARD = ModelCard(family="Keras applications", architecture="", objective="supervised classification",
                 training_data="ImageNet-1k",
                 weights_licence="Apache-2.0 (keras-team) unless the application says otherwise",
                 paper="Chollet et al., Keras (2015); and the paper of each architecture")  # fmt: skip


__all__ = [
    "APPLICATIONS",
    "INSTALL_HINT",
    "WEIGHTS_SUFFIXES",
    "KerasAdapter",
    "KerasCapture",
    "available_offline",
    "check_device",
    "check_name",
    "from_keras_model",
    "is_keras_model",
    "list_names",
    "load",
    "load_model_file",
    "load_weights_file",
    "pool_array",
    "weights_dirs",
    "weights_file",
]

# the names these had before the session and the backend became modules of their own
_import_keras, _quiet_stderr, _fresh_names, _seeded = import_keras, quiet_stderr, fresh_names, seeded

#: class → (module of keras.applications holding its preprocess_input, input side of the
#: ImageNet weights, ImageNet weights file with the classifier), generated from Keras 3.15; the
#: names actually offered come from the installed Keras (see :func:`list_names`).
APPLICATIONS: dict[str, tuple[str, int, str]] = {
    "ConvNeXtBase": ("convnext", 224, "convnext_base.h5"),
    "ConvNeXtLarge": ("convnext", 224, "convnext_large.h5"),
    "ConvNeXtSmall": ("convnext", 224, "convnext_small.h5"),
    "ConvNeXtTiny": ("convnext", 224, "convnext_tiny.h5"),
    "ConvNeXtXLarge": ("convnext", 224, "convnext_xlarge.h5"),
    "DenseNet121": ("densenet", 224, "densenet121_weights_tf_dim_ordering_tf_kernels.h5"),
    "DenseNet169": ("densenet", 224, "densenet169_weights_tf_dim_ordering_tf_kernels.h5"),
    "DenseNet201": ("densenet", 224, "densenet201_weights_tf_dim_ordering_tf_kernels.h5"),
    "EfficientNetB0": ("efficientnet", 224, "efficientnetb0.h5"),
    "EfficientNetB1": ("efficientnet", 240, "efficientnetb1.h5"),
    "EfficientNetB2": ("efficientnet", 260, "efficientnetb2.h5"),
    "EfficientNetB3": ("efficientnet", 300, "efficientnetb3.h5"),
    "EfficientNetB4": ("efficientnet", 380, "efficientnetb4.h5"),
    "EfficientNetB5": ("efficientnet", 456, "efficientnetb5.h5"),
    "EfficientNetB6": ("efficientnet", 528, "efficientnetb6.h5"),
    "EfficientNetB7": ("efficientnet", 600, "efficientnetb7.h5"),
    "EfficientNetV2B0": ("efficientnet_v2", 224, "efficientnetv2-b0.h5"),
    "EfficientNetV2B1": ("efficientnet_v2", 240, "efficientnetv2-b1.h5"),
    "EfficientNetV2B2": ("efficientnet_v2", 260, "efficientnetv2-b2.h5"),
    "EfficientNetV2B3": ("efficientnet_v2", 300, "efficientnetv2-b3.h5"),
    "EfficientNetV2L": ("efficientnet_v2", 480, "efficientnetv2-l.h5"),
    "EfficientNetV2M": ("efficientnet_v2", 480, "efficientnetv2-m.h5"),
    "EfficientNetV2S": ("efficientnet_v2", 384, "efficientnetv2-s.h5"),
    "InceptionResNetV2": ("inception_resnet_v2", 299, "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels.h5"),
    "InceptionV3": ("inception_v3", 299, "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"),
    "MobileNet": ("mobilenet", 224, "mobilenet_1_0_224_tf.h5"),
    "MobileNetV2": ("mobilenet_v2", 224, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"),
    "MobileNetV3Large": ("mobilenet_v3", 224, "weights_mobilenet_v3_large_224_1.0_float.h5"),
    "MobileNetV3Small": ("mobilenet_v3", 224, "weights_mobilenet_v3_small_224_1.0_float.h5"),
    "NASNetLarge": ("nasnet", 331, "nasnet_large.h5"),
    "NASNetMobile": ("nasnet", 224, "nasnet_mobile.h5"),
    "ResNet50": ("resnet", 224, "resnet50_weights_tf_dim_ordering_tf_kernels.h5"),
    "ResNet101": ("resnet", 224, "resnet101_weights_tf_dim_ordering_tf_kernels.h5"),
    "ResNet152": ("resnet", 224, "resnet152_weights_tf_dim_ordering_tf_kernels.h5"),
    "ResNet50V2": ("resnet_v2", 224, "resnet50v2_weights_tf_dim_ordering_tf_kernels.h5"),
    "ResNet101V2": ("resnet_v2", 224, "resnet101v2_weights_tf_dim_ordering_tf_kernels.h5"),
    "ResNet152V2": ("resnet_v2", 224, "resnet152v2_weights_tf_dim_ordering_tf_kernels.h5"),
    "VGG16": ("vgg16", 224, "vgg16_weights_tf_dim_ordering_tf_kernels.h5"),
    "VGG19": ("vgg19", 224, "vgg19_weights_tf_dim_ordering_tf_kernels.h5"),
    "Xception": ("xception", 299, "xception_weights_tf_dim_ordering_tf_kernels.h5"),
}


def _keras_applications_init() -> Path | None:
    """The ``__init__.py`` of the installed ``keras.applications``, found without importing Keras."""
    try:
        spec = importlib.util.find_spec("keras")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        for rel in ("applications/__init__.py", "api/applications/__init__.py"):
            p = Path(root) / rel
            if p.is_file():
                return p
    return None


@lru_cache(maxsize=1)
def _installed_applications() -> dict[str, str]:
    """class name → module of the installed Keras's applications (read from its source, no import)."""
    init = _keras_applications_init()
    if init is None:
        return {}
    text = init.read_text(encoding="utf-8", errors="replace")
    found = re.findall(r"from\s+keras\.src\.applications\.(\w+)\s+import\s+\(?\s*(\w+)\s+as\s+(\w+)", text)
    return {public: module for module, _, public in found if public[:1].isupper()}


def list_names() -> list[str]:
    """The application classes of the installed Keras (the built-in table when Keras is absent)."""
    installed = _installed_applications()
    return sorted(installed or APPLICATIONS)


def check_name(name: str) -> None:
    names = list_names()
    if name in names:
        return
    hint = closest_hint(name, names, prefix="keras:")
    if not hint:
        same = [n for n in names if n.lower() == name.lower()]
        hint = f"; closest: {', '.join(f'keras:{n}' for n in same)}" if same else ""
    raise ModelNotFoundError(f"keras has no application {name!r}{hint} (see `visreps models keras:`)")


def _app_module(name: str) -> str:
    mod = _installed_applications().get(name)
    if mod is None and name in APPLICATIONS:
        mod = APPLICATIONS[name][0]
    if mod is None:
        raise ModelNotFoundError(f"keras has no application {name!r}")
    return mod


# --------------------------------------------------------------------------- weights


def weights_dirs() -> list[Path]:
    """Where pretrained Keras weights are looked for, first hit wins: the visreps cache
    (``<cache>/keras/models``, where downloads go), ``$KERAS_HOME/models``, ``~/.keras/models``."""
    from ..cache import cache_dir

    dirs = [cache_dir() / "keras" / "models"]
    if os.environ.get("KERAS_HOME"):
        dirs.append(Path(os.environ["KERAS_HOME"]).expanduser() / "models")
    dirs.append(Path(os.path.expanduser("~")) / ".keras" / "models")
    out: list[Path] = []
    for d in dirs:
        if d not in out:
            out.append(d)
    return out


def weights_file(name: str) -> str | None:
    """File name of the ImageNet weights (with classifier) of application ``name``."""
    entry = APPLICATIONS.get(name)
    return entry[2] if entry else None


def _find_cached(fname: str) -> Path | None:
    for d in weights_dirs():
        p = d / fname
        if p.is_file():
            return p
    return None


def available_offline(name: str) -> bool:
    fname = weights_file(name)
    return bool(fname and _find_cached(fname))


@contextlib.contextmanager
def _weights_download(model_id: str, used: dict):
    """Route Keras's weight downloads (``keras.utils.get_file``) through the visreps cache.

    A file already in one of :func:`weights_dirs` (with the expected hash) is used as is; else
    it is downloaded to ``<visreps cache>/keras/models`` unless offline mode is on, in which case
    the :class:`WeightsError` names the file, its URL and where to put it.
    """
    from ..cache import cache_dir, missing_weights_error, offline

    try:
        from keras.src.utils import file_utils
    except ImportError:  # pragma: no cover - Keras internals moved: Keras's own cache and download
        yield
        return
    real = file_utils.get_file

    def get_file(fname=None, origin=None, *args, **kwargs):
        if args or not fname or kwargs.get("extract") or kwargs.get("untar"):
            return real(fname, origin, *args, **kwargs)
        file_hash = kwargs.get("file_hash") or kwargs.get("md5_hash")
        hit = _find_cached(fname)
        if hit is not None:
            ok = file_hash is None or file_utils.validate_file(
                str(hit), file_hash, algorithm=kwargs.get("hash_algorithm", "auto")
            )
            if ok:
                used.update(file=str(hit), origin=origin)
                return str(hit)
            if offline():
                raise WeightsError(
                    f"{hit} is not the expected weights file of {model_id} (its hash does not match {file_hash}); "
                    f"delete it and download {origin} again"
                )
        target = cache_dir() / "keras" / "models" / fname
        if offline():
            raise missing_weights_error(model_id, target, origin)
        kwargs["cache_dir"] = str(cache_dir() / "keras")
        kwargs["cache_subdir"] = "models"
        try:  # Keras falls back to /tmp/.keras when the folder is not there yet
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WeightsError(
                f"cannot create the weights cache {target.parent}: {e}; set VISREPS_CACHE to a writable folder"
            ) from e
        try:
            path = real(fname, origin, **kwargs)
        except Exception as e:
            err = missing_weights_error(model_id, target, origin)
            raise WeightsError(f"{err} ({type(e).__name__}: {e})") from e
        used.update(file=str(path), origin=origin)
        return path

    file_utils.get_file = get_file
    try:
        yield
    finally:
        file_utils.get_file = real


WEIGHTS_SUFFIXES = (".weights.h5", ".h5", ".hdf5", ".keras")


def load_weights_file(model: Any, path: str | os.PathLike[str], what: str = "the model") -> dict[str, Any]:
    """Load a Keras weights file (``.weights.h5``, legacy ``.h5``, or a ``.keras`` archive) into ``model``.

    Returns the metadata record ``{"kind": "file", "file": ..., "sha256": ...}``.
    """
    import warnings

    p = Path(path).expanduser()
    if p.is_dir():
        from .custom import directory_message

        raise WeightsError(directory_message(p, "a Keras weights file (.weights.h5, .h5 or .keras)"))
    if not p.is_file():
        raise WeightsError(
            f"weights file {str(p)!r} does not exist; give the path to a .weights.h5, .h5 or .keras file"
        )
    if not p.name.lower().endswith(WEIGHTS_SUFFIXES):
        raise WeightsError(
            f"{str(p)!r} is not a Keras weights file: Keras models take .weights.h5, .h5 or .keras files "
            f"(save them with model.save_weights('w.weights.h5'))"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(str(p))
        except Exception as e:
            raise WeightsError(f"weights file {str(p)!r} does not fit {what}: {e}") from e
    skipped = [
        str(w.message)
        for w in caught
        if re.search(r"could not be loaded|skipp|mismatch", str(w.message), re.I)
        and "optimizer" not in str(w.message).lower()
    ]  # a trained model's optimizer state does not matter
    if skipped:
        raise WeightsError(f"weights file {str(p)!r} does not fit {what}: {skipped[0]}")
    return {"kind": "file", "file": str(p.resolve()), "sha256": file_sha256(p)}


# --------------------------------------------------------------------------- loading


def check_device(device: Any) -> None:
    """Keras models take ``None``, ``"auto"`` or ``"cpu"``; TensorFlow places them itself."""
    if device is None or str(device) in ("auto", "cpu"):
        return
    raise VisrepsError(
        f"device {str(device)!r}: Keras models run where TensorFlow places them (the CPU with tensorflow-cpu); "
        "use --device auto or cpu"
    )


def _cpu():
    import torch

    return torch.device("cpu")


def _preprocess_function(module: str) -> tuple[Callable, str]:
    path = f"keras.applications.{module}"
    fn = importlib.import_module(path).preprocess_input
    return fn, f"{path}.preprocess_input"


@register_source("keras", optional=True)
def load(
    name: str, *, pretrained: bool = True, weights: str | None = None, seed: int = 0, device: Any = None
) -> LoadedModel:
    """Build ``keras.applications.<name>`` with ImageNet weights, random (seeded) weights, or a file."""
    check_name(name)
    check_device(device)
    keras = import_keras()
    import keras.applications as applications  # the submodule is not an attribute until imported

    ctor = getattr(applications, name)
    model_id = f"keras:{name}"
    side = APPLICATIONS[name][1] if name in APPLICATIONS else None
    # the input size of the ImageNet weights, also for random and file weights: the same static
    # shapes and layers whatever the weights (MobileNetV3 would otherwise take any size)
    kwargs = {"input_shape": (side, side, 3)} if side else {}
    if weights is not None and str(weights) == "imagenet":  # the named weight of every application
        weights, pretrained = None, True
    if weights is None and pretrained:
        used: dict = {}
        with _weights_download(model_id, used), fresh_names(), seeded(keras, seed):
            model = ctor(weights="imagenet", **kwargs)
        record: dict[str, Any] = {"kind": "pretrained", "name": "imagenet"}
        if used.get("file"):
            record.update(file=Path(used["file"]).name, sha256=file_sha256(used["file"]), origin=used.get("origin"))
    else:
        with fresh_names(), seeded(keras, seed):
            model = ctor(weights=None, **kwargs)
        if weights is not None:
            record = load_weights_file(model, weights, model_id)
        else:
            record = {"kind": "random", "seed": seed}
    if side is None:
        shape = tuple(model.input_shape[1:3])
        side = shape[0] if shape[0] and shape[0] == shape[1] else 224
    preprocess, preprocess_name = _preprocess_function(_app_module(name))
    return _wrap(
        model, model_id=model_id, weights=record, side=side, preprocess=preprocess, preprocess_name=preprocess_name
    )


def _wrap(model, *, model_id: str, weights: dict, side: int, preprocess, preprocess_name: str | None) -> LoadedModel:
    adapter = KerasAdapter(model, preprocess=preprocess, preprocess_name=preprocess_name)
    lm = LoadedModel(
        module=model,
        preprocessing=Preprocessing(resize=side, crop=side, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
        model_id=model_id,
        weights=weights,
        device=_cpu(),
        backend=adapter.kind,
        adapter=adapter,
        # merged into metadata.json's "preprocessing" by the engine
        preprocessing_extra={
            "keras_preprocess_input": preprocess_name,
            "layout": "NHWC",
            "pixel_range": "0-255 before keras_preprocess_input",
        },
    )
    adapter.bind(lm)
    return lm


_PREPROCESS_MODES = ("none", "unit", "caffe", "tf", "torch")


def _user_preprocess(preprocess) -> tuple[Callable | None, str | None]:
    if preprocess is None or preprocess == "none":
        return None, None
    if callable(preprocess):
        mod = getattr(preprocess, "__module__", None) or ""
        qual = getattr(preprocess, "__qualname__", None) or type(preprocess).__name__
        return preprocess, f"{mod}.{qual}".lstrip(".")
    if preprocess == "unit":
        return _unit, "x / 255 (pixels in 0..1)"
    if preprocess in ("caffe", "tf", "torch"):
        from keras.applications import imagenet_utils

        def fn(x, _mode=preprocess):
            return imagenet_utils.preprocess_input(x, mode=_mode)

        return fn, f"keras.applications.imagenet_utils.preprocess_input(mode={preprocess!r})"
    if isinstance(preprocess, str) and re.fullmatch(r"[a-z0-9_]+", preprocess) and preprocess != "imagenet_utils":
        try:
            return _preprocess_function(preprocess)
        except (ImportError, AttributeError):
            pass
    raise VisrepsError(
        f"preprocess={preprocess!r} is not valid; give a function (NumPy batch NHWC 0..255 → model input), "
        f"one of {', '.join(_PREPROCESS_MODES)}, or a keras.applications module name such as 'resnet50'"
    )


def _unit(x):
    return x / np.float32(255.0)


def from_keras_model(
    model: Any,
    *,
    input_size: int | None = None,
    preprocess: Callable[[np.ndarray], np.ndarray] | str | None = None,
    weights: str | os.PathLike[str] | None = None,
    name: str | None = None,
) -> LoadedModel:
    """Wrap your own ``keras.Model`` (functional or built Sequential) for extraction.

    Args:
        model: a Keras 3 model whose input is images (H, W, 3), channels last.
        input_size: side S of the square input (images are resized, shorter side to S, and
            centre-cropped to S×S); default: the model's own input size, else 224.
        preprocess: applied to each batch (float32 NumPy array (B, S, S, 3) with pixels 0..255)
            before the model: ``None`` (raw pixels), a function, ``"unit"`` (x / 255), a Keras
            mode ``"caffe"``/``"tf"``/``"torch"`` of ``imagenet_utils.preprocess_input``, or an
            application module name (``"resnet50"``, ``"mobilenet_v2"``) for its ``preprocess_input``.
        weights: a Keras weights file to load into the model first.
        name: the label of the model in the metadata (default: the model's name).

    Returns:
        A :class:`~visreps.models.LoadedModel` with ``backend="keras"``.
    """
    keras = import_keras()
    if not isinstance(model, keras.Model):
        what = type(model).__module__.split(".")[0]
        hint = (
            " (tf.keras / Keras 2 models are not supported: rebuild or load it with Keras 3)"
            if what in ("tf_keras", "tensorflow")
            else ""
        )
        raise VisrepsError(f"from_keras_model takes a Keras 3 keras.Model, got {type(model).__name__}{hint}")
    if input_size is not None and (not isinstance(input_size, int) or isinstance(input_size, bool) or input_size < 1):
        raise VisrepsError(f"input_size must be a positive integer (the side of the square input), got {input_size!r}")
    if not _has_inputs(model):
        if input_size is None:
            raise VisrepsError(
                "this Keras model has no defined input; start it with keras.Input(shape=(H, W, 3)) or pass input_size=S"
            )
        model.build((None, input_size, input_size, 3))
        if not _has_inputs(model):
            raise VisrepsError(
                "this Keras model has no symbolic inputs even after building; "
                "define it with keras.Input(shape=(H, W, 3))"
            )
    shape = tuple(model.input_shape[1:]) if not isinstance(model.input_shape, list) else None
    if shape is None or len(shape) != 3:
        raise VisrepsError(
            f"visreps takes Keras models with one image input (H, W, C); this one takes {model.input_shape}"
        )
    h, w, c = shape
    if c not in (None, 3):
        raise VisrepsError(f"the model takes {c}-channel input; visreps feeds RGB images (3 channels)")
    if h is not None and w is not None and h != w:
        raise VisrepsError(
            f"the model takes non-square {h}×{w} inputs; visreps feeds square images (resize + centre crop)"
        )
    if input_size is not None and h is not None and input_size != h:
        raise VisrepsError(f"input_size={input_size} does not fit the model, which takes {h}×{w} images")
    side = input_size or h or 224
    fn, fn_name = _user_preprocess(preprocess)
    record: dict[str, Any] = {"kind": "user"}
    if weights is not None:
        record = load_weights_file(model, weights, f"the Keras model {model.name!r}")
    return _wrap(
        model,
        model_id=f"custom:{name or model.name}",
        weights=record,
        side=side,
        preprocess=fn,
        preprocess_name=fn_name,
    )


def load_model_file(path: str | os.PathLike[str], *, device: Any = None) -> LoadedModel:
    """A whole Keras model saved with ``model.save("m.keras")`` (wiring: ``visreps.load_model("file:m.keras")``)."""
    check_device(device)
    keras = import_keras()
    p = Path(path).expanduser()
    if p.is_dir():
        from .custom import directory_message

        raise WeightsError(directory_message(p, "a .keras model file", "file:"))
    if not p.is_file():
        raise WeightsError(f"model file {str(p)!r} does not exist")
    try:
        model = keras.saving.load_model(str(p), compile=False)
    except Exception as e:
        raise WeightsError(f"cannot read Keras model file {str(p)!r}: {e}") from e
    lm = from_keras_model(model, name=p.stem)
    lm.model_id = f"file:{p.resolve()}"
    lm.weights = {"kind": "file", "file": str(p.resolve()), "sha256": file_sha256(p)}
    return lm


def is_keras_model(obj: Any) -> bool:
    """True for a Keras model object, decided without importing Keras or TensorFlow."""
    return any(
        (getattr(c, "__module__", "") or "").split(".")[0] in ("keras", "tf_keras", "tensorflow")
        and c.__name__ in ("Model", "Functional", "Sequential")
        for c in type(obj).__mro__
    )


def _has_inputs(model) -> bool:
    try:
        return bool(model.inputs)
    except (AttributeError, ValueError):
        return False
