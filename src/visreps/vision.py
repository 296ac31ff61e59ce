"""The 2021 THINGSvision functional API, kept working on visreps's own machinery.

A script written for the THINGSvision README or paper (2021) runs on visreps when its imports
are changed to::

    import visreps.vision as vision
    from visreps.model_class import Model

and writes the files it expects (``file_names.txt``, ``features.npy``, ``targets.npy``,
``rdm.png``, ``class_probabilities.json`` ...). Every function here is a thin layer: models come
from :func:`visreps.load_model`, activations from visreps's extraction engine
(:func:`visreps.extraction.prepare` / :func:`~visreps.extraction.run`, the code behind
:func:`visreps.extract`), RDMs, correlations, centring and PCA from :mod:`visreps.analysis`,
figures from :mod:`visreps.plotting`. The arrays are therefore the ones the modern API gives for
the same model, layer and images (bit for bit).

Every public function emits a :class:`DeprecationWarning` naming the modern call (shown when
called from a script's ``__main__``); the mapping is in the README section "Coming from
THINGSvision".

Where the original had bugs, visreps does the right thing, and the function's docstring says so:

* ``compute_rdm(F, 'gaussian')`` computes the Gaussian RDM (the original never reached it);
* ``merge_features`` / ``merge_activations`` read back every split that ``split_features`` /
  ``split_activations`` write, in every format (the original could not load its own ``.mat``
  splits, and ``merge_activations`` read ``.txt`` splits only);
* ``load_dl`` with class subfolders *and* ``file_names`` extracts exactly the listed images in the
  listed order (the original crashed or re-sorted by class);
* the last partial mini-batch is extracted (the original loader could drop it);
* ``normalize_features`` leaves all-zero rows at zero instead of dividing by zero.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .errors import ImageError, LayerNotFoundError, VisrepsError, closest

__all__ = [
    "FILE_FORMATS",
    "ImageLoader",
    "center_features",
    "compare_models",
    "compress_features",
    "compute_rdm",
    "correlate_rdms",
    "extract_features",
    "get_class_probabilities",
    "load_dl",
    "load_model",
    "merge_activations",
    "merge_features",
    "normalize_features",
    "plot_rdm",
    "save_features",
    "save_targets",
    "show_model",
    "slices2tensor",
    "split_activations",
    "split_features",
    "tensor2slices",
]

#: file formats of :func:`save_features` / :func:`save_targets` / :func:`split_features`
FILE_FORMATS = ("npy", "hdf5", "mat", "txt")
_SUFFIX = {"npy": ".npy", "hdf5": ".h5", "mat": ".mat", "txt": ".txt"}
#: the feature-map ensembles of the README's note 4
ENSEMBLES = ("conv_ensemble", "maxpool_ensemble")
#: weights of the second-to-last and last layer of an ensemble (as in THINGSvision 2021)
ENSEMBLE_WEIGHTS = (3.0, 5.0)
FILE_NAMES = "file_names.txt"
README_SECTION = "README section 'Coming from THINGSvision'"


# --------------------------------------------------------------------------- helpers


def _deprecated(old: str, new: str) -> None:
    warnings.warn(
        f"visreps.vision.{old} is the THINGSvision 2021 compatibility API; use {new} ({README_SECTION})",
        DeprecationWarning,
        stacklevel=3,
    )


def model_id(model_name: str, backend: str = "pt") -> str:
    """The visreps model id of a THINGSvision model name.

    ``alexnet``, ``vgg16_bn``, ``resnet50`` ... → ``torchvision:<name>``; ``cornet-s`` (also
    ``cornet_s``, ``-z``, ``-r``, ``-rt``) → ``cornet:s``; ``clip-ViT`` → ``clip:ViT-B-32``;
    ``clip-RN`` → ``clip:RN50`` (``clip-<arch>`` → ``clip:<arch>`` for other CLIP architectures);
    any name with ``backend='tf'`` → ``keras:<name>`` (``VGG16``, ``ResNet50`` ...). A name that
    already is a visreps id (``timm:resnet18``) is returned unchanged.
    """
    if not isinstance(model_name, str) or not model_name.strip():
        raise VisrepsError(f"model_name must be a name such as 'alexnet', 'cornet-s' or 'clip-ViT', got {model_name!r}")
    name = model_name.strip()
    if backend not in ("pt", "tf"):
        raise VisrepsError(f"backend {backend!r} is not valid; use 'pt' (PyTorch) or 'tf' (TensorFlow/Keras)")
    if ":" in name:
        return name
    if backend == "tf":
        return f"keras:{name}"
    if re.match(r"^clip", name, flags=re.IGNORECASE):
        rest = re.sub(r"^clip[-_]?", "", name, flags=re.IGNORECASE)
        if rest.lower() in ("", "vit"):
            return "clip:ViT-B-32" if rest else "clip:RN50"
        if rest.lower() in ("rn", "resnet"):
            return "clip:RN50"
        return f"clip:{rest}"
    m = re.fullmatch(r"cornet[-_ ]?(z|r|rt|s)", name, flags=re.IGNORECASE)
    if m:
        return f"cornet:{m.group(1).lower()}"
    return f"torchvision:{name}"


def _loaded(model, device=None):
    """The :class:`~visreps.models.LoadedModel` behind what a script passes as ``model``."""
    from .model_class import Model
    from .models import LoadedModel, load_model as _visreps_load

    if isinstance(model, Model):
        return model.lm
    if isinstance(model, LoadedModel):
        return model
    if device is None:  # keep a user's module where it is
        params = getattr(model, "parameters", None)
        first = next(iter(params()), None) if callable(params) else None
        device = first.device if first is not None else "cpu"
    try:
        return _visreps_load(model, device=device)
    except VisrepsError as e:
        raise VisrepsError(
            f"model must be what vision.load_model or Model(...) returns (or a torch.nn.Module), got "
            f"{type(model).__name__}: {e}"
        ) from e


def _is_clip(lm) -> bool:
    return "clip_model" in lm.extra


def _check_fmt(file_format: str) -> str:
    f = str(file_format).lower().lstrip(".")
    f = {"h5": "hdf5", "hdf": "hdf5"}.get(f, f)
    if f not in FILE_FORMATS:
        raise VisrepsError(f"file format {file_format!r} is not supported; use one of {', '.join(FILE_FORMATS)}")
    return f


def _atomic(path: Path):
    """A temporary name next to ``path``; rename it with :func:`os.replace` when complete."""
    return path.with_name(path.name + ".partial")


def _txt_fmt(arr: np.ndarray) -> str:
    """A printf format that gives the exact value back: 9 significant digits for float32, 17 for float64."""
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
        return "%d"
    if arr.dtype == np.float16:
        return "%.5g"
    if arr.dtype == np.float32:
        return "%.9g"
    return "%.17g"


# --------------------------------------------------------------------------- models


def load_model(model_name: str, pretrained: bool, model_path: str | None = None, device: str = "cpu"):
    """Load a model by its THINGSvision name: ``(model, transforms)``.

    Deprecated: use ``visreps.load_model("torchvision:alexnet", pretrained=..., weights=...)``.

    Args:
        model_name: a torchvision name (``alexnet``, ``vgg16_bn``, ``resnet50`` ...), ``cornet-s``,
            ``cornet-z``, ``cornet-r``, ``cornet-rt``, ``clip-ViT`` (ViT-B/32) or ``clip-RN``
            (RN50); see :func:`model_id`.
        pretrained: ImageNet (CLIP: OpenAI) weights; ``False``: random initialisation, seeded with
            0 so that the same script gives the same numbers (the original did not seed).
        model_path: a weights file (state_dict) to load instead of the downloadable weights.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Returns:
        ``(model, transforms)``: ``model`` is a :class:`visreps.model_class.Model`, which prints
        as the network's architecture and passes attribute access (``model.features``,
        ``model.named_modules()``) to the ``torch.nn.Module``; ``transforms`` is the
        torchvision transform of the model's preprocessing.
    """
    _deprecated("load_model", "visreps.load_model('torchvision:alexnet', pretrained=...)")
    return _load_model(model_name, pretrained, model_path, device)


def _load_model(model_name, pretrained, model_path=None, device="cpu", backend="pt"):
    from .model_class import Model

    m = Model._create(model_name, pretrained, device, model_path=model_path, backend=backend)
    return m, m.lm.transform


def _architecture(lm, model_name: str = "") -> str:
    if lm.backend == "keras":
        lines: list[str] = []
        lm.module.summary(print_fn=lambda s, *a, **k: lines.append(s))
        return "\n".join(lines)
    if _is_clip(lm) or str(model_name).lower().startswith("clip"):
        names = [n for n in lm.layer_names() if n.startswith("visual.")]
        return "\n".join(names + ["visual    (the image embedding: what encode_image returns)"])
    return str(lm.module)


def show_model(model, model_name: str) -> str:
    """Print the architecture and ask on stdin which module to extract; returns its name.

    Deprecated: use ``visreps.load_model(...).print_layers()`` (or ``visreps layers MODEL``) and
    pass the name to ``visreps.extract(..., layers=[name])``.

    An answer that is not a module of the model (nor ``conv_ensemble``/``maxpool_ensemble``) is
    refused with the closest valid names, and the question is asked again. Works with piped
    stdin (``echo features.10 | python script.py``); quotes around the answer are ignored.

    Raises:
        VisrepsError: stdin ended before a valid module name was given.
    """
    _deprecated("show_model", "visreps.load_model(...).print_layers() and extract(..., layers=[...])")
    return _show_model(model, model_name)


def _show_model(model, model_name: str) -> str:
    lm = _loaded(model)
    print(_architecture(lm, model_name))
    names = list(lm.layer_names())
    valid = set(names) | ({"visual"} if _is_clip(lm) else set())
    if lm.backend == "torch":
        valid |= set(ENSEMBLES)
    print("\nEnter part of the model for which you would like to extract features:\n", flush=True)
    while True:
        try:
            answer = input()
        except EOFError:
            raise VisrepsError(
                f"no module name given for {model_name} (stdin ended); type one of the names printed above, "
                "or pass module_name directly"
            ) from None
        answer = answer.strip().strip("'\"").strip()
        if answer in valid:
            print()
            return answer
        hint = closest(answer, sorted(valid)) if answer else []
        print(
            f"{answer!r} is not a module of {model_name}"
            + (f"; closest: {', '.join(hint)}" if hint else "")
            + ". Enter one of the names printed above:",
            flush=True,
        )


# --------------------------------------------------------------------------- data


class ImageLoader:
    """What :func:`load_dl` returns: the images, their order, targets and transform.

    Iterating gives ``(X, y)`` mini-batches as the original PyTorch loader did (``X``: the
    transformed images stacked; ``y``: targets of shape ``(B, 1)``), every image included (the
    last batch may be smaller). :func:`extract_features` does not iterate it: it hands
    ``root``, ``file_names`` and ``transform`` to visreps's extraction engine.

    Attributes:
        root: the image folder.
        out_path: where ``file_names.txt`` was written.
        batch_size: images per mini-batch.
        transform: the image transform (``transforms`` of :func:`load_dl`).
        file_names: image paths relative to ``root`` (POSIX), in extraction order.
        targets: ``int64`` array, one per image (see :func:`load_dl`).
        classes: class folder names, index = target (empty for a flat folder).
        backend: ``pt`` or ``tf``.
    """

    def __init__(self, root, out_path, batch_size, transform, items, targets, classes, backend):
        self.root = Path(root).expanduser()
        self.out_path = Path(out_path).expanduser()
        self.batch_size = batch_size
        self.transform = transform
        self.items = list(items)
        self.targets = targets
        self.classes = list(classes)
        self.backend = backend

    @property
    def file_names(self) -> list[str]:
        return [it.path for it in self.items]

    @property
    def idx_to_cls(self) -> dict[int, str]:
        return dict(enumerate(self.classes))

    @property
    def cls_to_idx(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}

    @property
    def dataset(self):
        from .data import ImageDataset

        return ImageDataset(self.root, self.items, self.transform)

    def __len__(self) -> int:
        return -(-len(self.items) // self.batch_size)

    def __iter__(self) -> Iterator:
        import torch

        from .data import BAD_IMAGE_HINT, make_loader

        loader = make_loader(self.dataset, batch_size=self.batch_size, num_workers=0)
        for idx, x, bad, _digests in loader:
            if bad:
                raise ImageError(f"{bad[0][1]}; {BAD_IMAGE_HINT}")
            y = torch.as_tensor(self.targets[idx]).reshape(-1, 1)
            yield x, y

    def __repr__(self) -> str:
        return f"ImageLoader({len(self.items)} images from {str(self.root)!r}, batch_size={self.batch_size})"


def _resolve_file_names(root: Path, file_names: Sequence[str]) -> list[str]:
    """Relative paths from a file_names list (also accepting paths that include the root)."""
    out = []
    root_abs = root.resolve()
    for name in file_names:
        s = str(name).strip()
        if s and (Path(s).is_absolute() or not (root / s).is_file()) and Path(s).is_file():
            try:
                s = Path(s).resolve().relative_to(root_abs).as_posix()
            except ValueError:
                pass
        out.append(s)
    return out


def load_dl(
    root: str,
    out_path: str,
    batch_size: int,
    transforms=None,
    file_names: Sequence[str] | None = None,
    backend: str = "pt",
) -> ImageLoader:
    """Find the images under ``root``, fix their order, and write ``out_path/file_names.txt``.

    Deprecated: use ``visreps.extract(model, root, layers=..., order=file_names)``; the order is in
    the output folder's ``manifest.csv``.

    Order: sorted by path relative to ``root`` (the same on every operating system), or exactly
    ``file_names`` (``['cls/img_01.jpg', ...]`` or ``['img_01.jpg', ...]``) in the given order. The
    original crashed on class subfolders combined with ``file_names`` and re-sorted them by class;
    here the listed images are extracted in the listed order.

    ``file_names.txt`` holds one relative path (POSIX ``/``) per line, row ``i`` naming row ``i``
    of the features; it can be passed back as ``file_names``. (The original wrote the path
    including ``root`` for class subfolders.)

    Targets: with class subfolders, the index of each image's folder in the sorted list of the
    folders of the extracted images (``0`` for the first class ...); for a flat folder, where each
    image is its own item, the image's row index ``0 .. N-1`` (as the original did).

    Args:
        root: the image folder (flat, or class subfolders).
        out_path: folder for ``file_names.txt`` (created if missing); use the same ``out_path`` for
            :func:`get_class_probabilities`.
        batch_size: images per mini-batch.
        transforms: the transform from :func:`load_model` / ``Model.get_transformations()``
            (default: resize 256, centre crop 224, ImageNet normalisation).
        file_names: an explicit list of images (relative to ``root``) and their order.
        backend: ``pt`` or ``tf`` (kept for the paper's scripts; the transform decides the layout).

    Returns:
        an :class:`ImageLoader`.
    """
    _deprecated("load_dl", "visreps.extract(model, root, layers=..., order=file_names)")
    return _load_dl(root, out_path, batch_size, transforms, file_names, backend)


def _load_dl(root, out_path, batch_size, transforms=None, file_names=None, backend="pt") -> ImageLoader:
    from .data import find_images

    if backend not in ("pt", "tf"):
        raise VisrepsError(f"backend {backend!r} is not valid; use 'pt' (PyTorch) or 'tf' (TensorFlow/Keras)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise VisrepsError(f"batch_size must be a positive integer, got {batch_size!r}")
    rootp = Path(root).expanduser()
    if file_names is not None:
        if isinstance(file_names, (str, os.PathLike)):
            file_names = Path(file_names).read_text(encoding="utf-8-sig").splitlines()
        items = find_images(rootp, order=_resolve_file_names(rootp, list(file_names)))
    else:
        items = find_images(rootp)
    if transforms is None:
        from .models import Preprocessing

        transforms = Preprocessing().build()
    labels = [it.label for it in items]
    if any(labels):
        classes = sorted(set(labels))
        index = {c: i for i, c in enumerate(classes)}
        targets = np.array([index[lab] for lab in labels], dtype=np.int64)
    else:
        classes = []
        targets = np.arange(len(items), dtype=np.int64)
    out = Path(out_path).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    tmp = _atomic(out / FILE_NAMES)
    tmp.write_text("".join(f"{it.path}\n" for it in items), encoding="utf-8")
    os.replace(tmp, out / FILE_NAMES)
    return ImageLoader(rootp, out, int(batch_size), transforms, items, targets, classes, backend)


# --------------------------------------------------------------------------- extraction


def _model_for(lm, loader: ImageLoader):
    """``lm`` running with the loader's transform (a shallow copy when it differs from the model's own)."""
    from .data import load_image
    from .models import Preprocessing

    t = loader.transform
    if t is None or t is lm.transform:
        return lm
    prep = getattr(t, "visreps_preprocessing", None)
    if prep is None:  # a transform built by the script: take the input size from the first image
        x = t(load_image(loader.items[0].absolute(loader.root)))
        shape = tuple(int(s) for s in getattr(x, "shape", ()))
        base = lm.preprocessing

        @dataclasses.dataclass(frozen=True)
        class _Probed(Preprocessing):
            def input_size(self, _shape=shape):
                return _shape

        prep = _Probed(resize=None, crop=shape[-1] if shape else None, mean=base.mean, std=base.std,
                       interpolation=base.interpolation)
    return dataclasses.replace(lm, preprocessing=prep, _transform=t)


def _move(lm, device) -> None:
    if device is None or lm.backend != "torch":
        return
    from .device import resolve_device

    dev = resolve_device(device)
    if dev != lm.device:
        lm.module.to(dev)
        lm.device = dev


def _probabilities(predictions, n_classes: int = 1000) -> np.ndarray:
    """Full softmax rows back from the engine's top-1000 table (exact: the same float32 values)."""
    k = sum(1 for c in predictions.columns if str(c).startswith("class_"))
    idx = predictions[[f"class_{r}" for r in range(1, k + 1)]].to_numpy()
    p = predictions[[f"prob_{r}" for r in range(1, k + 1)]].to_numpy(dtype=np.float32)
    out = np.zeros((len(predictions), n_classes), dtype=np.float32)
    out[np.arange(len(predictions))[:, None], idx] = p
    return out


def _engine(lm, loader: ImageLoader, layers: list[str], pool: str, top_k: int | None):
    from .extraction import prepare, run

    job = prepare(
        lm, loader.root, layers=layers, pool=pool, batch_size=loader.batch_size, order=loader.file_names,
        recurrent="last", top_k=top_k,
    )
    return run(job, out=None, progress=True)


def extract_features(
    model,
    data_loader: ImageLoader,
    module_name: str,
    batch_size: int,
    flatten_acts: bool,
    device=None,
    clip: bool = False,
    return_probabilities: bool = False,
):
    """Activations of one module for every image of ``data_loader``: ``(features, targets[, probabilities])``.

    Deprecated: use ``visreps.extract(model, root, layers=[module_name], pool="flatten"|"none")``.

    Runs visreps's extraction engine (the code of :func:`visreps.extract`), so the arrays equal
    the modern API's for the same model, layer, images and transform.

    Args:
        model: from :func:`load_model` or ``Model(...)`` (or a ``torch.nn.Module``).
        data_loader: from :func:`load_dl`; its order and transform are used.
        module_name: a module name (``features.10``, ``decoder.flatten``, ``visual``); for CLIP,
            ``visual`` is the image embedding (visreps's ``embedding``). A module that runs several
            times per forward pass (CORnet's recurrent areas) gives its last time step, as in the
            original. ``conv_ensemble`` / ``maxpool_ensemble``: every ``Conv2d`` / ``MaxPool2d``
            module, each globally max-pooled per feature map (``(N, channels)``), the second-to-last
            layer multiplied by 3 and the last by 5 (the original's weights), concatenated in
            network order; :func:`visreps.analysis.ensemble_features` is the modern, scale-free
            alternative.
        batch_size: ignored; the loader's batch size is used (as in the original).
        flatten_acts: ``True``: one vector per image (``(N, C·H·W)``); ``False``: the module's
            output shape is kept (``(N, C, H, W)``).
        device: move the model to this device first (default: where it is).
        clip: ``True`` for CLIP models (kept for old scripts; visreps knows a CLIP model anyway).
        return_probabilities: also return the softmax of the model's final 1000 ImageNet logits,
            ``(N, 1000)`` float32 (not for CLIP models).

    Returns:
        ``features`` (float32), ``targets`` (int64, see :func:`load_dl`) and, with
        ``return_probabilities``, ``probabilities``.
    """
    _deprecated("extract_features", "visreps.extract(model, images, layers=[module_name], pool='flatten')")
    return _extract_features(model, data_loader, module_name, flatten_acts, device, clip, return_probabilities)


def _extract_features(model, data_loader, module_name, flatten_acts, device=None, clip=False, return_probabilities=False):
    if not isinstance(data_loader, ImageLoader):
        raise VisrepsError(
            f"data_loader must come from vision.load_dl(...) (it carries the image order), got {type(data_loader).__name__}"
        )
    lm = _loaded(model, device)
    _move(lm, device)
    is_clip = _is_clip(lm)
    if clip and not is_clip:
        raise VisrepsError(f"clip=True is for CLIP models (clip-ViT, clip-RN), but the model is {lm.model_id}; pass clip=False")
    if return_probabilities and is_clip:
        raise VisrepsError(
            "class probabilities are not available for CLIP models (they have no ImageNet classifier); "
            "pass return_probabilities=False"
        )
    run_lm = _model_for(lm, data_loader)
    top_k = 1000 if return_probabilities else None
    if module_name in ENSEMBLES:
        features, res = _ensemble(run_lm, data_loader, module_name, top_k)
    else:
        layer = "embedding" if (is_clip and module_name == "visual") else module_name
        names = lm.layer_names()
        if layer not in names:
            hint = closest(layer, names + list(ENSEMBLES))
            raise LayerNotFoundError(
                f"{lm.model_id} has no module {module_name!r}"
                + (f"; closest: {', '.join(hint)}" if hint else "")
                + " (vision.show_model prints them all)"
            )
        res = _engine(run_lm, data_loader, [layer], "flatten" if flatten_acts else "none", top_k)
        features = np.asarray(res[layer])
    targets = np.asarray(data_loader.targets)
    if len(features) != len(targets):  # pragma: no cover - the engine stops on unreadable images
        raise VisrepsError(f"{len(features)} feature rows for {len(targets)} images")
    if return_probabilities:
        return features, targets, _probabilities(res.predictions)
    return features, targets


def _ensemble(lm, loader, module_name, top_k):
    from .analysis import ensemble_features, feature_map_layers

    if lm.backend != "torch":
        raise VisrepsError(f"{module_name} is available for PyTorch models only, not {lm.model_id}")
    kind = "conv" if module_name == "conv_ensemble" else "maxpool"
    layers = feature_map_layers(lm.module, kinds=(kind,))
    if not layers:
        raise VisrepsError(f"{lm.model_id} has no {kind} modules for a {module_name}")
    res = _engine(lm, loader, layers, "max", top_k)
    alpha, beta = ENSEMBLE_WEIGHTS
    weighted = {k: np.asarray(res[k]) for k in layers}
    if len(layers) >= 2:
        weighted[layers[-2]] = weighted[layers[-2]] * np.float32(alpha)
    weighted[layers[-1]] = weighted[layers[-1]] * np.float32(beta)
    return ensemble_features(weighted, layers, scale="none"), res


# --------------------------------------------------------------------------- feature transforms


def _in_place(X, result: np.ndarray):
    """Write ``result`` into ``X`` when ``X`` is a writeable float array (the original's behaviour)."""
    if isinstance(X, np.ndarray) and X.flags.writeable and np.issubdtype(X.dtype, np.floating):
        X[...] = result.reshape(X.shape)
        return X
    shape = getattr(X, "shape", None)
    return result.reshape(shape) if shape is not None else result


def center_features(X: np.ndarray) -> np.ndarray:
    """Subtract each feature's mean over images: ``X − mean(X, axis=0)``.

    Deprecated: use :func:`visreps.analysis.center_features` (returns a new array).

    As in the original, a writeable float array is changed in place and returned; other inputs
    give a new array. N-D arrays keep their shape.
    """
    _deprecated("center_features", "visreps.analysis.center_features(X)")
    from .analysis import center_features as _center

    X_ = np.asarray(X)
    return _in_place(X, _center(X_.reshape(len(X_), -1)))


def normalize_features(X: np.ndarray) -> np.ndarray:
    """Divide each image's feature vector by its L2 norm: ``x / ‖x‖₂``.

    Deprecated: use :func:`visreps.analysis.normalize_features` (returns a new array).

    As in the original, a writeable float array is changed in place and returned. All-zero rows
    stay zero (the original divided by zero and gave NaN). N-D arrays keep their shape (the norm is
    over all of an image's features).
    """
    _deprecated("normalize_features", "visreps.analysis.normalize_features(X)")
    from .analysis import normalize_features as _normalize

    X_ = np.asarray(X)
    return _in_place(X, _normalize(X_.reshape(len(X_), -1)))


def compress_features(X: np.ndarray, rnd_seed: int, retained_var: float = 0.9) -> np.ndarray:
    """PCA scores of ``X`` keeping the fewest components that explain ``retained_var`` of the variance.

    Deprecated: use ``visreps.analysis.compress_features(X, retained_var=0.9, seed=rnd_seed)``.

    Exact PCA (the original's ``svd_solver='full'``); component signs are made deterministic
    (largest loading positive), so a component may have the opposite sign to scikit-learn's.
    Returns ``(n, k)`` float64.
    """
    _deprecated("compress_features", "visreps.analysis.compress_features(X, retained_var=..., seed=...)")
    if isinstance(rnd_seed, bool) or not isinstance(rnd_seed, (int, np.integer)):
        raise VisrepsError(f"rnd_seed must be an integer (to reproduce results), got {rnd_seed!r}")
    from .analysis import compress_features as _compress

    return _compress(X, retained_var=retained_var, seed=int(rnd_seed))


# --------------------------------------------------------------------------- saving, splitting, merging


def _write_txt(path: Path, arr: np.ndarray) -> None:
    """A header ``# Array shape: (...)`` and ``# dtype: ...``, then rows; arrays with more than two
    dimensions as 2-D slices over the last two axes, each followed by ``# New slice``."""
    arr = np.asarray(arr)
    fmt = _txt_fmt(arr)
    tmp = _atomic(path)
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f"# Array shape: {tuple(arr.shape)}\n# dtype: {arr.dtype.name}\n")
        if arr.ndim <= 2:
            np.savetxt(f, arr.reshape(len(arr), -1) if arr.ndim == 2 else arr, fmt=fmt)
        else:
            for s in arr.reshape(-1, arr.shape[-2], arr.shape[-1]):
                np.savetxt(f, s, fmt=fmt)
                f.write("# New slice\n")
    os.replace(tmp, path)


def _read_txt(path: Path) -> np.ndarray:
    shape, dtype = None, None
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.startswith("#"):
                break
            m = re.match(r"#\s*Array shape:\s*\(([\d,\s]*)\)", line)
            if m:
                shape = tuple(int(s) for s in m.group(1).replace(",", " ").split())
            m = re.match(r"#\s*dtype:\s*(\S+)", line)
            if m:
                dtype = np.dtype(m.group(1))
    if shape is not None and int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype=dtype or np.float64)
    data = np.loadtxt(path, dtype=dtype or np.float64, ndmin=2, comments="#")
    return data.reshape(shape) if shape is not None else data


def _file_names(folder: Path, n: int) -> list[str] | None:
    p = folder / FILE_NAMES
    if not p.is_file():
        return None
    names = p.read_text(encoding="utf-8").splitlines()
    return names if len(names) == n else None


def _write_array(path: Path, arr: np.ndarray, fmt: str, name: str, file_names: list[str] | None = None) -> None:
    tmp = _atomic(path)
    try:
        if fmt == "npy":
            with open(tmp, "wb") as f:
                np.save(f, arr)
        elif fmt == "hdf5":
            import h5py

            with h5py.File(tmp, "w") as h5:
                h5.create_dataset(name, data=arr)
        elif fmt == "mat":
            from scipy.io import savemat

            variables: dict[str, Any] = {name: arr}
            if file_names is not None:
                variables["file_names"] = np.array(file_names, dtype=object)
            with open(tmp, "wb") as f:
                savemat(f, variables, do_compression=False, oned_as="column")
        else:
            _write_txt(tmp, arr)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def save_features(features: np.ndarray, out_path: str, file_format: str, n_splits: int = 10) -> None:
    """Save a feature array to ``out_path/features.<ext>``.

    Deprecated: ``visreps.extract(..., out=FOLDER, format=...)`` writes the arrays while it runs.

    Files (``out_path`` is created if missing):

    * ``npy``: ``features.npy``;
    * ``hdf5``: ``features.h5``, dataset ``features``;
    * ``mat``: ``features.mat``, variable ``features`` (the array, rows = images; MATLAB has no 1-D
      arrays, so a vector becomes an N×1 column) and, when
      ``out_path/file_names.txt`` has one name per row, ``file_names`` (a cell array). The original
      stored one variable per image name, which MATLAB cannot name for most file names and its own
      merge could not read;
    * ``txt``: ``features.txt``, a ``# Array shape: (...)`` and ``# dtype: ...`` header, then one
      row per image with enough digits to give the exact values back. Arrays with more than two
      dimensions (e.g. ``flatten_acts=False``) are written as 2-D slices over the last two axes,
      each followed by ``# New slice``; read it with :func:`slices2tensor`.

    If writing one file raises ``MemoryError``, the array is written as ``n_splits`` row blocks
    instead (see :func:`split_features`; read back with :func:`merge_features`).
    """
    _deprecated("save_features", "visreps.extract(..., out=FOLDER, format=...)")
    _save_features(features, out_path, file_format, n_splits)


def _save_features(features, out_path, file_format, n_splits=10) -> None:
    fmt = _check_fmt(file_format)
    arr = np.asarray(features)
    folder = Path(out_path).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"features{_SUFFIX[fmt]}"
    try:
        _write_array(path, arr, fmt, "features", _file_names(folder, len(arr)) if fmt == "mat" else None)
    except MemoryError:
        path.unlink(missing_ok=True)
        print(f"...features do not fit into one file; saving them as {n_splits} splits instead", file=sys.stderr)
        _split(folder, arr, fmt, n_splits, "features")


def save_targets(targets: np.ndarray, out_path: str, file_format: str) -> None:
    """Save the targets to ``out_path/targets.<ext>`` (``npy``; ``hdf5``: dataset ``targets`` in
    ``targets.h5``; ``mat``: variable ``targets``; ``txt``: header and one value per line).

    Deprecated: ``visreps.extract(..., out=FOLDER)`` writes ``manifest.csv`` (path and label per row).
    """
    _deprecated("save_targets", "the manifest.csv of visreps.extract(..., out=FOLDER)")
    fmt = _check_fmt(file_format)
    folder = Path(out_path).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    _write_array(folder / f"targets{_SUFFIX[fmt]}", np.asarray(targets), fmt, "targets")


def _check_splits(n_splits) -> int:
    if isinstance(n_splits, bool) or not isinstance(n_splits, (int, np.integer)) or n_splits < 1:
        raise VisrepsError(f"n_splits must be a positive integer, got {n_splits!r}")
    return int(n_splits)


def _split(folder: Path, arr: np.ndarray, fmt: str, n_splits: int, prefix: str) -> list[str]:
    n_splits = min(_check_splits(n_splits), max(1, len(arr)))
    bounds = [len(arr) * i // n_splits for i in range(n_splits + 1)]
    width = max(2, len(str(n_splits)))
    names = _file_names(folder, len(arr)) if fmt == "mat" else None
    written = []
    if fmt == "hdf5":
        import h5py

        path = folder / f"{prefix}.h5"
        tmp = _atomic(path)
        with h5py.File(tmp, "w") as h5:
            for i in range(n_splits):
                key = f"{prefix}_{i + 1:0{width}d}"
                h5.create_dataset(key, data=arr[bounds[i] : bounds[i + 1]])
                written.append(key)
        os.replace(tmp, path)
        return written
    for i in range(n_splits):
        fname = f"{prefix}_{i + 1:0{width}d}{_SUFFIX[fmt]}"
        part_names = names[bounds[i] : bounds[i + 1]] if names is not None else None
        _write_array(folder / fname, arr[bounds[i] : bounds[i + 1]], fmt, "features", part_names)
        written.append(fname)
    return written


def split_features(PATH: str, features: np.ndarray, file_format: str, n_splits: int = 10) -> None:  # noqa: N803
    """Save ``features`` as ``n_splits`` consecutive row blocks: ``PATH/features_01.<ext>`` ... ``features_NN``.

    Deprecated: visreps streams every array to disk batch by batch (``visreps.extract(..., out=...)``),
    so nothing has to fit into memory at once.

    The blocks are as equal as possible; numbering has at least two digits (more for 100+ splits).
    ``hdf5`` writes one ``PATH/features.h5`` with datasets ``features_01`` ...; ``mat`` files hold
    the variable ``features`` (and ``file_names`` of their rows when ``PATH/file_names.txt``
    matches). Fewer splits than asked are written when there are fewer rows. The original wrote
    ``n_splits − 1`` blocks; :func:`merge_features` reads the result back exactly.
    """
    _deprecated("split_features", "visreps.extract(..., out=FOLDER) (streamed to disk)")
    folder = Path(PATH).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    _split(folder, np.asarray(features), _check_fmt(file_format), n_splits, "features")


def split_activations(PATH: str, features: np.ndarray, file_format: str, n_splits: int = 10) -> None:  # noqa: N803
    """The older name of :func:`split_features`: writes ``PATH/activations_01.<ext>`` ... (``hdf5``:
    datasets ``activations_01`` ... in ``PATH/activations.h5``). Read back with :func:`merge_activations`.

    Deprecated: see :func:`split_features`.
    """
    _deprecated("split_activations", "visreps.extract(..., out=FOLDER) (streamed to disk)")
    folder = Path(PATH).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    _split(folder, np.asarray(features), _check_fmt(file_format), n_splits, "activations")


def _read_array(path: Path, fmt: str, name: str = "features") -> np.ndarray:
    if fmt == "npy":
        return np.load(path)
    if fmt == "mat":
        from scipy.io import loadmat

        variables = loadmat(path)
        if name not in variables:
            raise VisrepsError(f"{str(path)!r} has no variable {name!r} (it holds {sorted(k for k in variables if not k.startswith('__'))})")
        return variables[name]
    return _read_txt(path)


def _merge(folder: Path, fmt: str | None, prefixes: Sequence[str]) -> np.ndarray:
    if not folder.is_dir():
        raise VisrepsError(f"{str(folder)!r} is not a folder; give the folder the splits were saved to")
    formats = [fmt] if fmt else list(FILE_FORMATS)
    for prefix in prefixes:
        for f in formats:
            if f == "hdf5":
                path = folder / f"{prefix}.h5"
                if not path.is_file():
                    continue
                import h5py

                with h5py.File(path, "r") as h5:
                    keys = [k for k in h5.keys() if re.fullmatch(rf"{prefix}_(\d+)", k)]
                    if keys:
                        keys.sort(key=lambda k: int(k.rsplit("_", 1)[1]))
                        return np.concatenate([h5[k][()] for k in keys], axis=0)
                    if prefix in h5:
                        return h5[prefix][()]
                continue
            pattern = re.compile(rf"{prefix}_(\d+){re.escape(_SUFFIX[f])}")
            parts = sorted(
                (int(m.group(1)), p) for p in folder.iterdir() if (m := pattern.fullmatch(p.name)) and p.is_file()
            )
            if parts:
                return np.concatenate([_read_array(p, f) for _, p in parts], axis=0)
    for prefix in prefixes:  # no splits: the single file
        for f in formats:
            path = folder / f"{prefix}{_SUFFIX[f]}"
            if f != "hdf5" and path.is_file():
                return _read_array(path, f)
    what = f"{prefixes[0]}_01{_SUFFIX[fmt]}" if fmt else f"{prefixes[0]}_01.<npy|h5|mat|txt>"
    raise VisrepsError(f"no feature splits ({what} ...) in {str(folder)!r}; give the folder passed to split_features/save_features")


def merge_features(PATH: str, file_format: str) -> np.ndarray:  # noqa: N803
    """Read the splits of :func:`split_features` back into one array (exactly, dtype included).

    Deprecated: use :func:`visreps.load_features` on an extraction output folder.

    Reads ``PATH/features_NN.<ext>`` in numeric order (``hdf5``: the ``features_NN`` datasets of
    ``PATH/features.h5``); ``activations_NN`` splits are read when there are no ``features_NN``
    ones, and the single ``features.<ext>`` when there are no splits. Unlike the original, ``.mat``
    splits are read back too.
    """
    _deprecated("merge_features", "visreps.load_features(FOLDER)")
    return _merge(Path(PATH).expanduser(), _check_fmt(file_format), ("features", "activations"))


def merge_activations(PATH: str, file_format: str | None = None) -> np.ndarray:  # noqa: N803
    """The older name of :func:`merge_features`: ``activations = merge_activations(PATH)``.

    Reads ``PATH/activations_NN.<ext>`` (then ``features_NN``) in numeric order, in whichever format
    they were saved (the original read ``.txt`` splits only); ``file_format`` picks one when
    several are present.

    Deprecated: use :func:`visreps.load_features` on an extraction output folder.
    """
    _deprecated("merge_activations", "visreps.load_features(FOLDER)")
    return _merge(Path(PATH).expanduser(), _check_fmt(file_format) if file_format else None, ("activations", "features"))


def tensor2slices(PATH: str, file_name: str, features: np.ndarray) -> None:  # noqa: N803
    """Write an N-D array to ``PATH/file_name`` as text slices (see :func:`save_features`, ``txt``).

    Deprecated: use ``format="npy"`` or ``"hdf5"`` for arrays with more than two dimensions.
    """
    _deprecated("tensor2slices", "visreps.extract(..., format='npy')")
    folder = Path(PATH).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    _write_txt(folder / file_name, np.asarray(features))


def slices2tensor(PATH: str, file: str) -> np.ndarray:  # noqa: N803
    """Read a text file of slices (``save_features(..., 'txt')`` of an N-D array) back into its shape.

    Deprecated: use ``format="npy"`` or ``"hdf5"`` for arrays with more than two dimensions.
    """
    _deprecated("slices2tensor", "visreps.load_features(FOLDER)")
    return _read_txt(Path(PATH).expanduser() / file)


# --------------------------------------------------------------------------- ImageNet classes


def _read_class_file(path: str | os.PathLike) -> list[str]:
    """Class names, in index order, from a ``imagenet1000_classes.txt`` (``{0: 'tench, Tinca tinca',``)
    or synset file (``n01440764 tench, Tinca tinca``) or one name per line."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise VisrepsError(f"class file {str(path)!r} does not exist; omit cls_file to use visreps's ImageNet classes")
    names = []
    for line in p.read_text(encoding="utf-8").splitlines():
        s = line.strip().lstrip("{").rstrip("}").strip()
        if not s:
            continue
        s = re.sub(r"^\d+\s*:\s*", "", s)
        s = re.sub(r"^n\d{8}\s+", "", s)
        s = s.strip().rstrip(",").strip().strip("'\"")
        names.append(_class_name(s.split(",")[0]))
    return names


def _class_name(name: str) -> str:
    """The original's spelling: the first synonym, lower case, words joined by ``_``."""
    return "_".join(name.strip().lower().split())


def get_class_probabilities(
    probas: np.ndarray,
    out_path: str,
    cls_file: str | None = None,
    top_k: int = 5,
    save_as_json: bool = False,
) -> dict[str, dict[str, float]]:
    """The ``top_k`` most probable ImageNet classes of every image, keyed by file name.

    Deprecated: use ``visreps.extract(..., top_k=5, out=FOLDER)`` (``predictions.csv``/``.json``).

    Args:
        probas: ``(N, 1000)`` from ``extract_features(..., return_probabilities=True)``.
        out_path: the ``out_path`` of :func:`load_dl`: its ``file_names.txt`` gives the row order.
        cls_file: a class file (``imagenet1000_classes.txt`` or a synset file); omitted: visreps's
            ImageNet-1k names (:func:`visreps.extraction.imagenet_classes`). Names are written as
            the original did: first synonym, lower case, ``_`` between words (``great_white_shark``).
        top_k: how many classes per image.
        save_as_json: also write ``out_path/class_probabilities.json``.

    Returns:
        ``{file_name: {class: probability, ...}}``, most probable class first.
    """
    _deprecated("get_class_probabilities", "visreps.extract(..., top_k=5, out=FOLDER) → predictions.csv")
    folder = Path(out_path).expanduser()
    fpath = folder / FILE_NAMES
    if not fpath.is_file():
        raise VisrepsError(f"{str(fpath)!r} does not exist; give the out_path that was passed to vision.load_dl")
    file_names = fpath.read_text(encoding="utf-8").splitlines()
    P = np.asarray(probas)
    if P.ndim != 2 or len(P) != len(file_names):
        raise VisrepsError(
            f"probas has shape {P.shape} but {str(fpath)!r} lists {len(file_names)} images; "
            "use the out_path of the vision.load_dl call that made these probabilities"
        )
    if cls_file is None:
        from .extraction import imagenet_classes

        classes = [_class_name(c) for c in imagenet_classes()]
    else:
        classes = _read_class_file(cls_file)
    if len(classes) != P.shape[1]:
        raise VisrepsError(f"the class file names {len(classes)} classes but probas has {P.shape[1]} columns")
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or not 1 <= top_k <= P.shape[1]:
        raise VisrepsError(f"top_k must be an integer from 1 to {P.shape[1]}, got {top_k!r}")
    result = {}
    for name, p in zip(file_names, P):
        order = np.argsort(-p, kind="stable")[:top_k]
        result[name] = {classes[c]: float(p[c]) for c in order}
    if save_as_json:
        path = folder / "class_probabilities.json"
        tmp = _atomic(path)
        tmp.write_text(json.dumps(result, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    return result


# --------------------------------------------------------------------------- RSA


def _compute_rdm(F, method: str) -> np.ndarray:
    from .analysis import compute_rdm as _rdm

    if str(method).lower() == "gaussian":
        sq = _rdm(F, "sqeuclidean")
        mean = float(sq.mean())
        if mean <= 0:
            raise VisrepsError("all rows of F are identical, so the Gaussian RDM's bandwidth (mean squared distance) is 0")
        return _rdm(F, "gaussian", sigma=float(np.sqrt(mean / 2.0)))
    if str(method).lower() not in ("correlation", "cosine", "euclidean"):
        raise VisrepsError(f"method {method!r} is not valid; use one of correlation, cosine, euclidean, gaussian")
    return _rdm(F, str(method).lower())


def compute_rdm(F: np.ndarray, method: str) -> np.ndarray:
    """The ``n × n`` representational dissimilarity matrix of the rows of ``F``.

    Deprecated: use ``visreps.analysis.compute_rdm(F, method)``.

    Methods (``x_i`` row ``i``): ``correlation``: ``1 − Pearson r(x_i, x_j)``; ``cosine``:
    ``1 − cos(x_i, x_j)``; ``euclidean``: ``‖x_i − x_j‖₂``; ``gaussian``:
    ``1 − exp(−‖x_i − x_j‖² / m)`` with ``m`` the mean of all ``n²`` squared distances (the
    bandwidth the original's kernel used; the original never computed this method because of a
    bug). The diagonal is exactly 0.
    """
    _deprecated("compute_rdm", "visreps.analysis.compute_rdm(F, method)")
    return _compute_rdm(F, method)


def correlate_rdms(rdm_1: np.ndarray, rdm_2: np.ndarray, correlation: str = "pearson") -> float:
    """Correlate the upper triangles (diagonal excluded) of two RDMs: ``pearson`` or ``spearman``.

    Deprecated: use ``visreps.analysis.correlate_rdms(rdm_1, rdm_2, method=...)``, which also
    offers Kendall's tau and bootstrap intervals.
    """
    _deprecated("correlate_rdms", "visreps.analysis.correlate_rdms(rdm_1, rdm_2, method='pearson')")
    from .analysis import correlate_rdms as _corr

    return float(_corr(rdm_1, rdm_2, method=correlation))


def plot_rdm(
    out_path: str,
    F: np.ndarray,
    method: str = "correlation",
    format: str = ".png",  # noqa: A002
    colormap: str = "cividis",
    show_plot: bool = False,
) -> None:
    """Compute the RDM of ``F`` (:func:`compute_rdm`) and save it as ``out_path/rdm<format>``.

    Deprecated: use ``visreps.plotting.plot_rdm(visreps.analysis.compute_rdm(F), "rdm.png", rank=True)``.

    The image shows the ranks of the dissimilarities (as the original did), at 200 dpi; ``format``
    is ``.png`` (lossless) or ``.jpg``. ``show_plot`` also displays it (inline in Jupyter).
    """
    _deprecated("plot_rdm", "visreps.plotting.plot_rdm(rdm, 'rdm.png', rank=True)")
    from .plotting import plot_rdm as _plot

    fmt = str(format).lower()
    fmt = fmt if fmt.startswith(".") else f".{fmt}"
    folder = Path(out_path).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"rdm{fmt}"
    fig = _plot(_compute_rdm(F, method), path, rank=True, cmap=colormap, dpi=200, title=f"RDM ({method})")
    if show_plot:
        _show(fig, path)


def _show(fig, path: Path) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is not None:
            display(fig)
            return
    except ImportError:
        pass
    import matplotlib.pyplot as plt

    plt.figure()
    plt.imshow(plt.imread(path))
    plt.axis("off")
    plt.show()


# --------------------------------------------------------------------------- model comparison


def compare_models(
    root: str,
    out_path: str,
    model_names: Sequence[str],
    module_names: Sequence[str],
    pretrained: bool,
    batch_size: int,
    flatten_acts: bool,
    clip: Sequence[bool] | bool,
    save_features: bool = True,
    dissimilarity: str = "correlation",
    correlation: str = "pearson",
):
    """Correlate the RDMs of several models' modules on the images in ``root``.

    Deprecated: use ``visreps.analysis.compare_features({...}, images=root, layers=...)`` or
    ``visreps compare`` on extraction output folders.

    Every model is loaded (:func:`load_model`), its module extracted (:func:`extract_features`,
    ``out_path/file_names.txt`` gives the image order), its RDM computed with ``dissimilarity``
    (:func:`compute_rdm`), and every pair of RDMs correlated with ``correlation``
    (:func:`visreps.analysis.compare_rdms`, the same numbers as :func:`correlate_rdms`).

    Args:
        clip: one flag per model (or one for all): ``True`` for CLIP models.
        save_features: also write ``out_path/features.p``, a pickle of
            ``{model_name: {module_name: features}}`` (as the original).

    Returns:
        ``pandas.DataFrame`` (models × models, index named ``model_names``, diagonal 1). When a model
        name appears twice, its rows are labelled ``model/module``.
    """
    _deprecated("compare_models", "visreps.analysis.compare_features(...)")
    from .analysis import compare_rdms

    names, modules = list(model_names), list(module_names)
    if len(names) != len(modules):
        raise VisrepsError(f"{len(names)} model_names but {len(modules)} module_names; give one module per model")
    if len(names) < 2:
        raise VisrepsError("compare_models needs at least two models")
    flags = [bool(clip)] * len(names) if isinstance(clip, (bool, np.bool_)) else [bool(c) for c in clip]
    if len(flags) != len(names):
        raise VisrepsError(f"clip has {len(flags)} flags for {len(names)} models; give one per model")
    labels = names if len(set(names)) == len(names) else [f"{n}/{m}" for n, m in zip(names, modules)]
    if len(set(labels)) != len(labels):
        raise VisrepsError("a model and module pair is listed twice; list each once")
    model_features: dict[str, dict[str, np.ndarray]] = {}
    rdms = {}
    for name, module, is_clip, label in zip(names, modules, flags, labels):
        model, transforms = _load_model(name, pretrained, device="auto")
        dl = _load_dl(root, out_path, batch_size, transforms)
        features, _ = _extract_features(model, dl, module, flatten_acts, clip=is_clip)
        model_features.setdefault(name, {})[module] = features
        rdms[label] = _compute_rdm(features, dissimilarity)
    if save_features:
        path = Path(out_path).expanduser() / "features.p"
        tmp = _atomic(path)
        with open(tmp, "wb") as f:
            pickle.dump(model_features, f)
        os.replace(tmp, path)
    df = compare_rdms(rdms, method=correlation)
    df.index.name = "model_names"
    return df
