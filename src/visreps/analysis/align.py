"""Post-hoc alignment of features with human similarity judgements: the gLocal transforms.

Muttenthaler et al. (2023), *Improving neural network representations using human similarity
judgments*, NeurIPS, learned one affine map per model and layer from the THINGS odd-one-out
judgements ("gLocal"). The maps are published in the repository LukasMut/gLocal (MIT licence) as
``transforms/<model>/<module>/transform.npz``, each holding ``weights`` (d × d), an optional ``bias``
(d,), and ``mean`` and ``std``: two scalars, the global mean and standard deviation of the model's
features over the THINGS images. THINGSvision's ``align()`` (``thingsvision/utils/alignment/
transforms.py``) applies them as

    Y = ((X − mean) / std) · W + b        (b = 0 when the file has no bias)

with ``X`` the (n × d) features, one row per image. :func:`align` applies the same formula to an array
or to every layer of a visreps output folder that has a transform, and writes a new output folder.

The files are read from ``<visreps cache>/glocal/<model>/<module>/transform.npz``, downloaded there once
from the repository at a fixed commit and checked against their sha256. Offline
(``VISREPS_OFFLINE=1``) a missing file is an error naming it, its address and the cache path.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LayerNotFoundError, VisrepsError, WeightsError, closest_hint

__all__ = ["GLOCAL_COMMIT", "GLOCAL_TRANSFORMS", "GLocalTransform", "align", "apply_glocal", "load_transform"]

#: the commit of LukasMut/gLocal whose files the table's sha256 values were computed from
GLOCAL_COMMIT = "635fdaa5b36e810f626125104fb9eb11ea89a75d"
_RAW = f"https://raw.githubusercontent.com/LukasMut/gLocal/{GLOCAL_COMMIT}/transforms"
TRANSFORMS = ("gLocal",)


@dataclass(frozen=True)
class GLocalTransform:
    """One published gLocal transform.

    Attributes:
        model: the model's name in gLocal/THINGSvision (``clip_RN50``, ``resnet18``, ``dino-vit-base-p16``).
        module: the module whose features it transforms, in THINGSvision's terms (``visual``, ``avgpool``).
        ids: visreps model ids with the same weights.
        layer: the visreps layer (of those ids) giving those features; ``pool`` how it is pooled to one vector.
        dim: the feature dimension d.
        sha256: of the file at :data:`GLOCAL_COMMIT` (``None``: not known, recorded after download).
    """

    model: str
    module: str
    ids: tuple[str, ...]
    layer: str
    dim: int
    sha256: str | None
    pool: str = "flatten"

    @property
    def url(self) -> str:
        return f"{_RAW}/{self.model}/{self.module}/transform.npz"

    @property
    def path(self) -> Path:
        from ..cache import cache_dir

        return cache_dir() / "glocal" / self.model.replace("/", "_") / self.module / "transform.npz"


GLOCAL_TRANSFORMS: tuple[GLocalTransform, ...] = (
    GLocalTransform(
        "clip_RN50",
        "visual",
        ("clip:RN50",),
        "embedding",
        1024,
        "81fc831f60c43ded3508f36803e48d105560fb4992bbbe7b1db1745c83af1c4b",
    ),
    GLocalTransform(
        "clip_ViT-L/14",
        "visual",
        ("clip:ViT-L-14", "clip:ViT-L/14"),
        "embedding",
        768,
        "4d9f969b1cac5334e87c93a6743a50e0f7d38cb41d7e8fb701584bc29d2fe25a",
    ),
    GLocalTransform(
        "OpenCLIP_ViT-L-14_laion400m_e32",
        "visual",
        ("openclip:ViT-L-14/laion400m_e32",),
        "embedding",
        768,
        "1c34c877528ea375836a2f1a8b8559070a3eadf5a5f8064bb970c1526751a915",
    ),
    GLocalTransform(
        "OpenCLIP_ViT-L-14_laion2b_s32b_b82k",
        "visual",
        ("openclip:ViT-L-14/laion2b_s32b_b82k",),
        "embedding",
        768,
        "38ac3e412c0b42fcdc1e545383ca6c1363472809b2611d0e4f4bf8d5878f7365",
    ),
    GLocalTransform(
        "dino-vit-base-p16",
        "norm",
        ("ssl:dino-vitb16",),
        "norm",
        768,
        "2bcb2d77346fbaec29326edc54bc03060145ecbb1fb5d80c3c7733241a71dd69",
        "cls",
    ),
    GLocalTransform(
        "dino-vit-base-p8",
        "norm",
        ("ssl:dino-vitb8",),
        "norm",
        768,
        "583ff8178d769e687f7444be935e444e831bf501c8c5343debe69b57cef660cc",
        "cls",
    ),
    GLocalTransform(
        "dinov2-vit-base-p14",
        "norm",
        ("ssl:dinov2-vitb14",),
        "norm",
        768,
        "2bcb2d77346fbaec29326edc54bc03060145ecbb1fb5d80c3c7733241a71dd69",
        "cls",
    ),
    GLocalTransform(
        "dinov2-vit-large-p14",
        "norm",
        ("ssl:dinov2-vitl14",),
        "norm",
        1024,
        "b3da393252d7d8407a745762b06863333793e002970d2a143f121f75e626d694",
        "cls",
    ),
    GLocalTransform(
        "resnet18",
        "avgpool",
        ("torchvision:resnet18",),
        "avgpool",
        512,
        "7a2bb20c8662eff5b3c0e27e5614b56be782479ec99d26d1ffd01a01777d7d3c",
    ),
    GLocalTransform("resnet50", "avgpool", ("torchvision:resnet50",), "avgpool", 2048, None),
    GLocalTransform("vgg16", "classifier.3", ("torchvision:vgg16",), "classifier.3", 4096, None),
    GLocalTransform("alexnet", "classifier.4", ("torchvision:alexnet",), "classifier.4", 4096, None),
)


def _names(t: GLocalTransform) -> tuple[str, ...]:
    return (t.model, *t.ids)


def available_transforms() -> list[str]:
    """``model (ids) / layer`` of every published transform, for messages and ``--help``."""
    out = []
    for t in GLOCAL_TRANSFORMS:
        ids = f" = {', '.join(t.ids)}" if t.ids else ""
        out.append(f"{t.model}{ids} / layer {t.layer}")
    return out


def find_transform(model: str, layer: str | None = None, *, transform: str = "gLocal") -> list[GLocalTransform]:
    """The transforms of ``model`` (a gLocal name or a visreps id), of ``layer`` if given.

    Raises:
        VisrepsError: unknown transform kind, or no transform for the model/layer (lists the available ones).
    """
    if transform not in TRANSFORMS:
        raise VisrepsError(f"transform {transform!r} is not known; available: {', '.join(TRANSFORMS)}")
    found = [t for t in GLOCAL_TRANSFORMS if model in _names(t)]
    if not found:
        every = [n for t in GLOCAL_TRANSFORMS for n in _names(t)]
        hint = closest_hint(model, every, lead=" (closest: ")
        raise VisrepsError(
            f"no gLocal transform is published for the model {model!r}"
            + (f"{hint})" if hint else "")
            + f"; available: {'; '.join(available_transforms())}. Give the model with model=... (--model)"
        )
    if layer is not None:
        match = [t for t in found if layer in (t.layer, t.module)]
        if not match:
            raise LayerNotFoundError(
                f"no gLocal transform for layer {layer!r} of {model}; it has one for layer "
                f"{', '.join(t.layer for t in found)} only"
            )
        return match
    return found


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_transform(t: GLocalTransform) -> tuple[Path, str]:
    """The cached file of ``t`` (downloaded first unless offline) and its sha256, checked when pinned.

    Raises:
        WeightsError: offline and not cached, download failed (naming the file, its address and the
            cache path), or the file's sha256 is not the published one (naming both).
    """
    from ..cache import offline

    path = t.path
    what = f"gLocal transform of {t.model} / {t.module}"
    if not path.is_file():
        reason = "offline mode is on" if offline() else "the download failed"
        msg = f"the {what} is not in the cache ({reason}): download {t.url} and place it at {path}"
        if offline():
            raise WeightsError(msg)
        import urllib.request
        from http.client import HTTPException
        from urllib.error import URLError

        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with urllib.request.urlopen(t.url, timeout=60) as r, open(tmp, "wb") as f:
                while block := r.read(1 << 20):
                    f.write(block)
            os.replace(tmp, path)
        except (OSError, URLError, HTTPException) as e:
            raise WeightsError(msg) from e
        finally:
            tmp.unlink(missing_ok=True)
    sha = _sha256(path)
    if t.sha256 and sha != t.sha256:
        raise WeightsError(
            f"{path} is not the published {what} ({t.url}): its sha256 is {sha}, expected {t.sha256}; "
            "delete it and download it again"
        )
    return path, sha


def load_transform(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``weights``, ``bias`` (zeros if absent), ``mean`` and ``std`` of a transform.npz, checked.

    Raises:
        WeightsError: not a readable npz, or missing/ill-shaped arrays.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k], dtype=np.float64) for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise WeightsError(
            f"{path} is not a readable gLocal transform.npz ({e}); delete it and download it again"
        ) from None
    missing = [k for k in ("weights", "mean", "std") if k not in arrays]
    W = arrays.get("weights")
    if missing or W is None or W.ndim != 2:
        raise WeightsError(
            f"{path} is not a gLocal transform: it needs weights (d × d'), mean and std; "
            f"it has {', '.join(f'{k} {v.shape}' for k, v in arrays.items())}"
        )
    b = arrays.get("bias", np.zeros(W.shape[1]))
    if b.shape != (W.shape[1],):
        raise WeightsError(f"{path}: bias has shape {b.shape}, weights {W.shape}; expected bias ({W.shape[1]},)")
    tf = {"weights": W, "bias": b, "mean": arrays["mean"], "std": arrays["std"]}
    for name, v in tf.items():  # finite or refused: a NaN here would make every feature NaN
        if not np.isfinite(v).all():
            bad = int((~np.isfinite(v)).sum())
            raise WeightsError(
                f"{path}: variable {name!r} holds {bad} NaN/inf value(s); the transform is damaged: delete it and "
                "download it again (or give the published file with --transform-file)"
            )
    if (tf["std"] <= 0).any():
        raise WeightsError(
            f"{path}: variable 'std' is {tf['std'].tolist() if tf['std'].size < 5 else 'not positive'}; "
            "(X - mean) / std needs std > 0: the transform is damaged: delete it and download it again"
        )
    return tf


def apply_glocal(X: Any, tf: Mapping[str, np.ndarray], *, what: str = "features") -> np.ndarray:
    """``((X − mean) / std) · W + b`` in float64 (THINGSvision's ``gLocal.apply_transform``).

    Raises:
        VisrepsError: ``X`` is not (n × d) with d the transform's input dimension.
    """
    X = np.asarray(X)
    W = tf["weights"]
    if X.ndim != 2 or X.shape[1] != W.shape[0]:
        raise VisrepsError(
            f"{what} have shape {X.shape}, but the transform takes (images × {W.shape[0]}) features; "
            "extract the layer the transform was fitted on, pooled to one vector per image (see the table in "
            "visreps.analysis.align)"
        )
    Z = (X.astype(np.float64) - tf["mean"]) / tf["std"]
    return Z @ W + tf["bias"]


def _resolve_file(t: GLocalTransform, transform_file: str | os.PathLike | None) -> tuple[Path, str, bool]:
    if transform_file is not None:
        p = Path(transform_file).expanduser()
        if not p.is_file():
            raise VisrepsError(f"transform file {str(p)!r} does not exist")
        return p, _sha256(p), False
    path, sha = fetch_transform(t)
    return path, sha, bool(t.sha256)


def align(
    folder_or_array: Any,
    *,
    transform: str = "gLocal",
    model: str | None = None,
    layer: str | Sequence[str] | None = None,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    transform_file: str | os.PathLike | None = None,
    force: bool = False,
) -> Any:
    """Apply the published gLocal transform of a model's layer: ``Y = ((X − mean) / std) · W + b``.

    Args:
        folder_or_array: an (n × d) array, or a visreps output folder (its ``metadata.json`` names the model).
        transform: the kind of transform (only ``gLocal``).
        model: the model: a visreps id (``clip:RN50``, ``torchvision:resnet18``) or gLocal's name
            (``dino-vit-base-p16``); default for a folder: the model its metadata records.
        layer: for an array, the layer the features come from (default: the model's only transformed
            layer); for a folder, its layer(s) to transform (default: every layer with a transform).
        out: the new output folder (default: ``<folder>_gLocal`` next to the input folder).
        overwrite: replace earlier results of visreps in ``out``.
        transform_file: a local copy of the published transform.npz (instead of the cache).
        force: apply the transform to a folder whose metadata records random weights (the transforms were
            fitted on the pretrained weights, so that is refused by default); recorded in the metadata.

    Returns:
        The transformed (n × d') float64 array, or for a folder its :class:`~visreps.storage.Features`
        (float32 arrays, the manifest of the input folder; ``metadata.json`` records the transform's
        address and sha256 under ``"transform"``).

    Raises:
        VisrepsError: no transform for the model or layer (the message lists those that exist), or
            features of the wrong shape. WeightsError: the file is not cached while offline (naming the
            file, its address and the cache path), or its sha256 is not the published one.
    """
    if isinstance(folder_or_array, (str, os.PathLike)):
        return _align_folder(
            Path(folder_or_array).expanduser(),
            transform=transform,
            model=model,
            layers=[layer] if isinstance(layer, str) else layer,
            out=out,
            overwrite=overwrite,
            transform_file=transform_file,
            force=force,
        )
    if model is None:
        raise VisrepsError("align(array) needs model=... (a visreps id such as 'clip:RN50' or a gLocal model name)")
    if layer is not None and not isinstance(layer, str):
        raise VisrepsError("align(array) takes one layer=... (a string)")
    found = find_transform(model, layer, transform=transform)
    path, _, _ = _resolve_file(found[0], transform_file)
    return apply_glocal(folder_or_array, load_transform(path), what=f"features of {model}")


def _check_weights(folder: Path, meta: dict[str, Any], force: Any) -> dict[str, Any]:
    """The folder's weights record; random weights are refused unless ``force`` (the transforms were fitted on
    the pretrained weights' features)."""
    if not isinstance(force, bool):
        raise VisrepsError(f"force must be True or False, got {force!r}")
    recorded = meta.get("weights")
    weights: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
    if weights.get("kind") == "random" and not force:
        raise VisrepsError(
            f"{str(folder)!r} holds features of randomly initialised weights (seed {weights.get('seed')}), but the "
            "gLocal transforms were fitted on the pretrained weights' features; extract with the pretrained "
            "weights, or apply it anyway with force=True (--force)"
        )
    return weights


def _plan_layer(
    folder: Path,
    src: Any,
    lay: str,
    found: list[GLocalTransform],
    model: str,
    transform: str,
    named: bool,
    transform_file: str | os.PathLike | None,
    weights: dict[str, Any],
) -> tuple[GLocalTransform, dict[str, np.ndarray], dict[str, Any]]:
    """The transform of one layer of ``folder``, read and checked, and its record for the metadata."""
    if lay not in src.features:
        raise LayerNotFoundError(f"{str(folder)!r} has no layer {lay!r}; available: {', '.join(src.layers)}")
    t = found[0] if len(found) == 1 and named else find_transform(model, lay, transform=transform)[0]
    path, sha, pinned = _resolve_file(t, transform_file)
    tf = load_transform(path)
    shape = tuple(src.features[lay].shape)
    if len(shape) != 2 or shape[1] != tf["weights"].shape[0]:
        raise VisrepsError(
            f"layer {lay!r} of {str(folder)!r} has per-image shape {shape[1:]}, but the gLocal transform of "
            f"{t.model} / {t.module} takes vectors of {tf['weights'].shape[0]} ({t.layer}, pooled with "
            f"--pool {t.pool}); extract the layer with that pooling"
        )
    record = {
        "kind": transform,
        "model": t.model,
        "module": t.module,
        "layer": lay,
        "url": t.url,
        "file": str(path),
        "sha256": sha,
        "sha256_pinned": pinned,
        "formula": "Y = ((X - mean) / std) @ weights + bias",
        "source": str(folder.resolve()),
    }
    if weights.get("kind") == "random":
        record["forced_onto_random_weights"] = True
    return t, tf, record


def _refuse_reduced(folder: Path, meta: Mapping[str, Any], layers: Sequence[str]) -> None:
    """A gLocal transform is learned on a layer's raw features: refuse layers reduced while extracting."""
    for lay in layers:
        rec = (meta.get("reduce") or {}).get(lay) or {}
        if rec.get("method") in ("srp", "pca"):
            raise VisrepsError(
                f"layer {lay!r} of {str(folder)!r} was reduced while extracting ({rec['method']} to "
                f"{rec.get('n_components')} of {rec.get('input_width')} dimensions), and the gLocal transform takes "
                "the layer's raw features; extract the layer again without --reduce"
            )


def _align_folder(
    folder: Path,
    *,
    transform: str,
    model: str | None,
    layers: Sequence[str] | None,
    out: str | os.PathLike | None,
    overwrite: bool,
    transform_file: str | os.PathLike | None,
    force: bool = False,
) -> Any:
    import json

    from ..storage import NonFiniteError, OutputWriter, load_features

    src = load_features(folder)
    meta_in = src.metadata
    model = model or meta_in.get("model")
    if not model:
        raise VisrepsError(f"{str(folder)!r} records no model; give it with model=... (--model)")
    weights = _check_weights(folder, meta_in, force)
    found = find_transform(model, transform=transform)
    wanted = list(layers) if layers is not None else [t.layer for t in found if t.layer in src.features]
    if not wanted:
        raise LayerNotFoundError(
            f"{str(folder)!r} has no layer with a gLocal transform of {model}: the transform is for layer "
            f"{', '.join(t.layer for t in found)}; the folder has {', '.join(src.layers)}. Extract that layer, "
            "or name the folder's layer to transform with layer=... (--layer)"
        )
    _refuse_reduced(folder, meta_in, wanted)
    plan = {
        lay: _plan_layer(folder, src, lay, found, model, transform, layers is not None, transform_file, weights)
        for lay in wanted
    }
    dest = Path(out).expanduser() if out is not None else folder.with_name(f"{folder.name}_{transform}")
    if dest.resolve() == folder.resolve():
        raise VisrepsError(f"out must differ from the input folder {str(folder)!r}")
    n = len(src.manifest)
    meta = json.loads(json.dumps(meta_in))
    for key in ("checksums", "files", "extra_files"):
        meta.pop(key, None)
    meta["status"] = "running"
    meta["layers"] = {}
    for lay, (_, tf, _) in plan.items():
        rec = dict(meta_in["layers"][lay])
        rec.pop("file", None)
        rec.update(shape=[n, int(tf["weights"].shape[1])], dtype="float32")
        meta["layers"][lay] = rec
    meta["layers_requested"] = list(plan)
    meta["transform"] = {lay: rec for lay, (_, _, rec) in plan.items()}
    fmt = meta_in.get("format", "npy")
    writer = OutputWriter(dest, fmt, overwrite=overwrite)
    shapes = {lay: (int(tf["weights"].shape[1]),) for lay, (_, tf, _) in plan.items()}
    writer.begin(meta, shapes, n)
    try:
        for lay, (_, tf, _) in plan.items():
            X = src.features[lay]
            for s in range(0, n, 4096):
                Y = apply_glocal(np.asarray(X[s : s + 4096]), tf, what=f"layer {lay!r}")
                try:
                    writer.write(s, {lay: Y.astype(np.float32)})
                except NonFiniteError as e:
                    raise e.naming(src.manifest["path"][e.row]) from None
        man = src.manifest
        with_hash = "blake2b" in man
        rows = [
            (p, lab, h) if with_hash else (p, lab)
            for p, lab, h in zip(man["path"], man["label"], man["blake2b"] if with_hash else [""] * n)
        ]
        for lay, rec in meta["layers"].items():
            rec["file"] = writer.files[lay]
        writer.finish(n, rows, meta)
    except BaseException as e:
        meta["status"] = "failed"
        meta["error"] = f"{type(e).__name__}: {e}"
        writer.abort(meta)
        raise
    return load_features(dest)
