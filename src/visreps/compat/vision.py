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

import json
import os
import pickle
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import VisrepsError
from . import README_SECTION as README_SECTION
from . import _files, deprecated
from ._core import ENSEMBLE_WEIGHTS as ENSEMBLE_WEIGHTS
from ._core import ENSEMBLES as ENSEMBLES
from ._core import ImageLoader, extract_features, show_model
from ._core import model_id as model_id
from ._files import FILE_FORMATS, FILE_NAMES
from .model_class import Model

if TYPE_CHECKING:
    import pandas as pd

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

# --------------------------------------------------------------------------- models


@deprecated(new="visreps.load_model('torchvision:alexnet', pretrained=...)")
def load_model(
    model_name: str, pretrained: bool, model_path: str | None = None, device: str = "cpu"
) -> tuple[Model, Callable]:
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
    model = Model(model_name, pretrained, device, model_path=model_path)
    return model, model.lm.transform


# --------------------------------------------------------------------------- data


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


@deprecated(new="visreps.extract(model, root, layers=..., order=file_names)")
def load_dl(
    root: str | os.PathLike,
    out_path: str | os.PathLike,
    batch_size: int,
    transforms: Callable | None = None,
    file_names: Sequence[str] | str | os.PathLike | None = None,
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
    from ..data import find_images

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
        from ..models import Preprocessing

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
    _files.write_text(out / FILE_NAMES, "".join(f"{it.path}\n" for it in items))
    return ImageLoader(rootp, out, int(batch_size), transforms, items, targets, classes, backend)


# --------------------------------------------------------------------------- feature transforms


def _in_place(X: Any, result: np.ndarray) -> np.ndarray:
    """Write ``result`` into ``X`` when ``X`` is a writeable float array (the original's behaviour)."""
    if isinstance(X, np.ndarray) and X.flags.writeable and np.issubdtype(X.dtype, np.floating):
        X[...] = result.reshape(X.shape)
        return X
    shape = getattr(X, "shape", None)
    return result.reshape(shape) if shape is not None else result


@deprecated(new="visreps.analysis.center_features(X)")
def center_features(X: np.ndarray) -> np.ndarray:
    """Subtract each feature's mean over images: ``X − mean(X, axis=0)``.

    Deprecated: use :func:`visreps.analysis.center_features` (returns a new array).

    As in the original, a writeable float array is changed in place and returned; other inputs
    give a new array. N-D arrays keep their shape.
    """
    from ..analysis import center_features as center

    X_ = np.asarray(X)
    return _in_place(X, center(X_.reshape(len(X_), -1)))


@deprecated(new="visreps.analysis.normalize_features(X)")
def normalize_features(X: np.ndarray) -> np.ndarray:
    """Divide each image's feature vector by its L2 norm: ``x / ‖x‖₂``.

    Deprecated: use :func:`visreps.analysis.normalize_features` (returns a new array).

    As in the original, a writeable float array is changed in place and returned. All-zero rows
    stay zero (the original divided by zero and gave NaN). N-D arrays keep their shape (the norm is
    over all of an image's features).
    """
    from ..analysis import normalize_features as normalize

    X_ = np.asarray(X)
    return _in_place(X, normalize(X_.reshape(len(X_), -1)))


@deprecated(new="visreps.analysis.compress_features(X, retained_var=..., seed=...)")
def compress_features(X: np.ndarray, rnd_seed: int, retained_var: float = 0.9) -> np.ndarray:
    """PCA scores of ``X`` keeping the fewest components that explain ``retained_var`` of the variance.

    Deprecated: use ``visreps.analysis.compress_features(X, retained_var=0.9, seed=rnd_seed)``.

    Exact PCA (the original's ``svd_solver='full'``); component signs are made deterministic
    (largest loading positive), so a component may have the opposite sign to scikit-learn's.
    Returns ``(n, k)`` float64.
    """
    if isinstance(rnd_seed, bool) or not isinstance(rnd_seed, (int, np.integer)):
        raise VisrepsError(f"rnd_seed must be an integer (to reproduce results), got {rnd_seed!r}")
    from ..analysis import compress_features as compress

    return compress(X, retained_var=retained_var, seed=int(rnd_seed))


# --------------------------------------------------------------------------- saving, splitting, merging


@deprecated(new="visreps.extract(..., out=FOLDER, format=...)")
def save_features(features: np.ndarray, out_path: str | os.PathLike, file_format: str, n_splits: int = 10) -> None:
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
    fmt = _files.check_format(file_format)
    arr = np.asarray(features)
    folder = Path(out_path).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"features{_files.SUFFIX[fmt]}"
    try:
        _files.write_array(path, arr, fmt, "features", _files.file_names(folder, len(arr)) if fmt == "mat" else None)
    except MemoryError:
        path.unlink(missing_ok=True)
        print(f"...features do not fit into one file; saving them as {n_splits} splits instead", file=sys.stderr)
        _files.split(folder, arr, fmt, n_splits, "features")


@deprecated(new="the manifest.csv of visreps.extract(..., out=FOLDER)")
def save_targets(targets: np.ndarray, out_path: str | os.PathLike, file_format: str) -> None:
    """Save the targets to ``out_path/targets.<ext>`` (``npy``; ``hdf5``: dataset ``targets`` in
    ``targets.h5``; ``mat``: variable ``targets``; ``txt``: header and one value per line).

    Deprecated: ``visreps.extract(..., out=FOLDER)`` writes ``manifest.csv`` (path and label per row).
    """
    fmt = _files.check_format(file_format)
    folder = Path(out_path).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    _files.write_array(folder / f"targets{_files.SUFFIX[fmt]}", np.asarray(targets), fmt, "targets")


def _split(PATH: str | os.PathLike, features: np.ndarray, file_format: str, n_splits: int, prefix: str) -> None:
    folder = Path(PATH).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    _files.split(folder, np.asarray(features), _files.check_format(file_format), n_splits, prefix)


@deprecated(new="visreps.extract(..., out=FOLDER) (streamed to disk)")
def split_features(PATH: str | os.PathLike, features: np.ndarray, file_format: str, n_splits: int = 10) -> None:
    """Save ``features`` as ``n_splits`` consecutive row blocks: ``PATH/features_01.<ext>`` ... ``features_NN``.

    Deprecated: visreps streams every array to disk batch by batch (``visreps.extract(..., out=...)``),
    so nothing has to fit into memory at once.

    The blocks are as equal as possible; numbering has at least two digits (more for 100+ splits).
    ``hdf5`` writes one ``PATH/features.h5`` with datasets ``features_01`` ...; ``mat`` files hold
    the variable ``features`` (and ``file_names`` of their rows when ``PATH/file_names.txt``
    matches). Fewer splits than asked are written when there are fewer rows. The original wrote
    ``n_splits − 1`` blocks; :func:`merge_features` reads the result back exactly.
    """
    _split(PATH, features, file_format, n_splits, "features")


@deprecated(new="visreps.extract(..., out=FOLDER) (streamed to disk)")
def split_activations(PATH: str | os.PathLike, features: np.ndarray, file_format: str, n_splits: int = 10) -> None:
    """The older name of :func:`split_features`: writes ``PATH/activations_01.<ext>`` ... (``hdf5``:
    datasets ``activations_01`` ... in ``PATH/activations.h5``). Read back with :func:`merge_activations`.

    Deprecated: see :func:`split_features`.
    """
    _split(PATH, features, file_format, n_splits, "activations")


@deprecated(new="visreps.load_features(FOLDER)")
def merge_features(PATH: str | os.PathLike, file_format: str) -> np.ndarray:
    """Read the splits of :func:`split_features` back into one array (exactly, dtype included).

    Deprecated: use :func:`visreps.load_features` on an extraction output folder.

    Reads ``PATH/features_NN.<ext>`` in numeric order (``hdf5``: the ``features_NN`` datasets of
    ``PATH/features.h5``); ``activations_NN`` splits are read when there are no ``features_NN``
    ones, and the single ``features.<ext>`` when there are no splits. Unlike the original, ``.mat``
    splits are read back too.
    """
    return _files.merge(Path(PATH).expanduser(), _files.check_format(file_format), ("features", "activations"))


@deprecated(new="visreps.load_features(FOLDER)")
def merge_activations(PATH: str | os.PathLike, file_format: str | None = None) -> np.ndarray:
    """The older name of :func:`merge_features`: ``activations = merge_activations(PATH)``.

    Reads ``PATH/activations_NN.<ext>`` (then ``features_NN``) in numeric order, in whichever format
    they were saved (the original read ``.txt`` splits only); ``file_format`` picks one when
    several are present.

    Deprecated: use :func:`visreps.load_features` on an extraction output folder.
    """
    fmt = _files.check_format(file_format) if file_format else None
    return _files.merge(Path(PATH).expanduser(), fmt, ("activations", "features"))


@deprecated(new="visreps.extract(..., format='npy')")
def tensor2slices(PATH: str | os.PathLike, file_name: str, features: np.ndarray) -> None:
    """Write an N-D array to ``PATH/file_name`` as text slices (see :func:`save_features`, ``txt``).

    Deprecated: use ``format="npy"`` or ``"hdf5"`` for arrays with more than two dimensions.
    """
    folder = Path(PATH).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    _files.write_txt(folder / file_name, np.asarray(features))


@deprecated(new="visreps.load_features(FOLDER)")
def slices2tensor(PATH: str | os.PathLike, file: str) -> np.ndarray:
    """Read a text file of slices (``save_features(..., 'txt')`` of an N-D array) back into its shape.

    Deprecated: use ``format="npy"`` or ``"hdf5"`` for arrays with more than two dimensions.
    """
    return _files.read_txt(Path(PATH).expanduser() / file)


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


@deprecated(new="visreps.extract(..., top_k=5, out=FOLDER) → predictions.csv")
def get_class_probabilities(
    probas: np.ndarray,
    out_path: str | os.PathLike,
    cls_file: str | os.PathLike | None = None,
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
        from ..extraction import imagenet_classes

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
        _files.write_text(folder / "class_probabilities.json", json.dumps(result, indent=1))
    return result


# --------------------------------------------------------------------------- RSA


@deprecated(new="visreps.analysis.compute_rdm(F, method)")
def compute_rdm(F: np.ndarray, method: str) -> np.ndarray:
    """The ``n × n`` representational dissimilarity matrix of the rows of ``F``.

    Deprecated: use ``visreps.analysis.compute_rdm(F, method)``.

    Methods (``x_i`` row ``i``): ``correlation``: ``1 − Pearson r(x_i, x_j)``; ``cosine``:
    ``1 − cos(x_i, x_j)``; ``euclidean``: ``‖x_i − x_j‖₂``; ``gaussian``:
    ``1 − exp(−‖x_i − x_j‖² / m)`` with ``m`` the mean of all ``n²`` squared distances (the
    bandwidth the original's kernel used; the original never computed this method because of a
    bug). The diagonal is exactly 0.
    """
    from ..analysis import compute_rdm as rdm

    if str(method).lower() == "gaussian":
        sq = rdm(F, "sqeuclidean")
        mean = float(sq.mean())
        if mean <= 0:
            raise VisrepsError(
                "all rows of F are identical, so the Gaussian RDM's bandwidth (mean squared distance) is 0"
            )
        return rdm(F, "gaussian", sigma=float(np.sqrt(mean / 2.0)))
    if str(method).lower() not in ("correlation", "cosine", "euclidean"):
        raise VisrepsError(f"method {method!r} is not valid; use one of correlation, cosine, euclidean, gaussian")
    return rdm(F, str(method).lower())


@deprecated(new="visreps.analysis.correlate_rdms(rdm_1, rdm_2, method='pearson')")
def correlate_rdms(rdm_1: np.ndarray, rdm_2: np.ndarray, correlation: str = "pearson") -> float:
    """Correlate the upper triangles (diagonal excluded) of two RDMs: ``pearson`` or ``spearman``.

    Deprecated: use ``visreps.analysis.correlate_rdms(rdm_1, rdm_2, method=...)``, which also
    offers Kendall's tau and bootstrap intervals.
    """
    from ..analysis import correlate_rdms as correlate

    return float(correlate(rdm_1, rdm_2, method=correlation))


@deprecated(new="visreps.plotting.plot_rdm(rdm, 'rdm.png', rank=True)")
def plot_rdm(
    out_path: str | os.PathLike,
    F: np.ndarray,
    method: str = "correlation",
    format: str = ".png",
    colormap: str = "cividis",
    show_plot: bool = False,
) -> None:
    """Compute the RDM of ``F`` (:func:`compute_rdm`) and save it as ``out_path/rdm<format>``.

    Deprecated: use ``visreps.plotting.plot_rdm(visreps.analysis.compute_rdm(F), "rdm.png", rank=True)``.

    The image shows the ranks of the dissimilarities (as the original did), at 200 dpi; ``format``
    is ``.png`` (lossless) or ``.jpg``. ``show_plot`` also displays it (inline in Jupyter).
    """
    from ..plotting import plot_rdm as plot

    fmt = str(format).lower()
    fmt = fmt if fmt.startswith(".") else f".{fmt}"
    folder = Path(out_path).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"rdm{fmt}"
    fig = plot(compute_rdm(F, method), path, rank=True, cmap=colormap, dpi=200, title=f"RDM ({method})")
    if show_plot:
        _show(fig, path)


def _show(fig: Any, path: Path) -> None:
    try:
        from IPython import get_ipython  # pyright: ignore[reportMissingImports]  (optional: Jupyter)
        from IPython.display import display  # pyright: ignore[reportMissingImports]

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


@deprecated(new="visreps.compare_features(...)")
def compare_models(
    root: str | os.PathLike,
    out_path: str | os.PathLike,
    model_names: Sequence[str],
    module_names: Sequence[str],
    pretrained: bool,
    batch_size: int,
    flatten_acts: bool,
    clip: Sequence[bool] | bool,
    save_features: bool = True,
    dissimilarity: str = "correlation",
    correlation: str = "pearson",
) -> pd.DataFrame:
    """Correlate the RDMs of several models' modules on the images in ``root``.

    Deprecated: use ``visreps.compare_features({...}, images=root, layers=...)`` or
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
    from ..analysis import compare_rdms

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
        model, transforms = load_model(name, pretrained, device="auto")
        dl = load_dl(root, out_path, batch_size, transforms)
        features, _ = extract_features(model, dl, module, batch_size, flatten_acts, clip=is_clip)
        model_features.setdefault(name, {})[module] = features
        rdms[label] = compute_rdm(features, dissimilarity)
    if save_features:
        with _files.atomic(Path(out_path).expanduser() / "features.p") as tmp, open(tmp, "wb") as f:
            pickle.dump(model_features, f)
    df = compare_rdms(rdms, method=correlation)
    df.index.name = "model_names"
    return df
