"""``thingsvision.core.extraction`` (2.x): :func:`get_extractor`, :func:`get_extractor_from_model`, :class:`Extractor`.

Every extractor is a :class:`~visreps.models.LoadedModel` (from :func:`visreps.load_model`) with
THINGSvision 2.7.3's methods around it; ``extract_features`` runs visreps' extraction engine
(:func:`visreps.extraction.prepare` and :func:`~visreps.extraction.run` for the images of an
:class:`~visreps.compat.thingsvision.utils.data.ImageDataset`, the engine's forward hooks and
pooling (:mod:`visreps.capture`) batch by batch for any other iterable of input tensors).
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ....errors import LayerNotFoundError, VisrepsError, closest_hint
from ..._files import atomic
from .._warn import warn_once
from ._model_ids import SOURCES, model_id

if TYPE_CHECKING:
    from ....models import LoadedModel

__all__ = [
    "Extractor",
    "SOURCES",
    "TOKEN_EXTRACTIONS",
    "center_features",
    "get_extractor",
    "get_extractor_from_model",
    "model_id",
    "normalize_features",
]

TOKEN_EXTRACTIONS = ("cls_token", "avg_pool", "cls_token+avg_pool")
OUTPUT_TYPES = ("ndarray", "tensor")


def _device(device: Any) -> str:
    """THINGSvision's device check: CUDA asked for but missing falls back to the CPU with a warning."""
    import torch

    device = str(device or "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            warnings.warn("\nCUDA is not available on your system. Switching to device='cpu'.\n", stacklevel=3)
            return "cpu"
        m = re.search(r"cuda:(\d+)", device)
        if m and int(m.group(1)) >= torch.cuda.device_count():
            warnings.warn(f"\nGPU index {m.group(1)} is out of range. Switching to device='cuda:0'.\n", stacklevel=3)
            return "cuda:0"
    print(f"\nUsing device: {device}\n")
    return device


def _model_path(model_path: Any) -> str | None:
    if model_path is None:
        return None
    path = os.fspath(model_path)
    if re.match(r"^[a-z]+://", path):
        raise VisrepsError(
            f"model_path {path!r} is an address; visreps loads local files only: download it, then pass its path"
        )
    if not os.path.isfile(os.path.expanduser(path)):
        raise VisrepsError(f"model_path {path!r} does not exist; give the path of a state_dict file")
    return path


def _mark(transform: Any, preprocessing: Any = None) -> Any:
    """Tag a transform built here, so the dataset and the engine know it (and its preprocessing)."""
    try:
        transform.visreps_transform = True
        if preprocessing is not None:
            transform.visreps_preprocessing = preprocessing
    except AttributeError:  # pragma: no cover - a transform without a __dict__
        pass
    return transform


class Extractor:
    """A THINGSvision 2.x extractor over a visreps :class:`~visreps.models.LoadedModel` (``self.lm``).

    Made by :func:`get_extractor` or :func:`get_extractor_from_model`. Attributes as in 2.7.3:
    ``model`` (the ``torch.nn.Module`` or ``keras.Model``), ``model_name``, ``device``,
    ``pretrained``, ``model_parameters``, ``preprocess``; ``token_extraction`` when given.
    """

    def __init__(
        self,
        lm: LoadedModel,
        *,
        model_name: str,
        source: str,
        device: str,
        pretrained: bool,
        model_parameters: dict[str, Any] | None = None,
        preprocess: Callable | None = None,
        forward_fn: Callable | None = None,
        flatten_fn: Callable | None = None,
    ) -> None:
        self.lm = lm
        self.model_name = model_name
        self.source = source
        self.device = device
        self.pretrained = pretrained
        self.model_parameters = dict(model_parameters or {})
        self.preprocess = preprocess
        self.forward_fn = forward_fn
        self.flatten_fn = flatten_fn
        self.token_extraction: str | None = None
        if "token_extraction" in self.model_parameters:
            te = self.model_parameters["token_extraction"]
            if te not in TOKEN_EXTRACTIONS:
                raise VisrepsError(
                    f"model_parameters['token_extraction'] = {te!r} is not valid; "
                    f"use one of {', '.join(TOKEN_EXTRACTIONS)}"
                )
            self.token_extraction = te
        elif self.model_parameters.get("extract_cls_token"):
            warnings.warn(
                "model_parameters['extract_cls_token'] is deprecated (THINGSvision 2.6.2); "
                "use token_extraction='cls_token'",
                DeprecationWarning,
                stacklevel=3,
            )
            self.token_extraction = "cls_token"

    # ------------------------------------------------------------------ model

    @property
    def model(self) -> Any:
        """The network (``lm.module``); assigning another ``torch.nn.Module`` or ``keras.Model`` extracts from it."""
        return self.lm.module

    @model.setter
    def model(self, value: Any) -> None:
        from ....models import load_model

        if value is self.lm.module:
            return
        is_torch = callable(getattr(value, "parameters", None))
        self.lm = load_model(value, device=self.device if is_torch else "cpu")

    def get_backend(self) -> str:
        """``pt`` (PyTorch) or ``tf`` (Keras); visreps: ``lm.backend`` (``torch`` / ``keras``)."""
        return "pt" if self.lm.backend == "torch" else "tf"

    def get_module_names(self) -> list[str]:
        """Every module name (``named_modules`` without the root; Keras: layer names); visreps: ``lm.layer_names()``."""
        return list(self.lm.layer_names())

    def show_model(self) -> Any:
        """The model, as 2.7.3 returns it (Keras: printed ``summary()``); visreps: ``lm.print_layers()``
        (``visreps layers MODEL``) prints every layer with its type and output shape."""
        if self.lm.backend != "torch":
            self.model.summary()
            return None
        return self.model

    def show(self) -> Any:
        """Deprecated in 2.x: :meth:`show_model`."""
        warnings.warn("The .show() method is deprecated; use .show_model()", UserWarning, stacklevel=2)
        return self.show_model()

    def get_output_types(self) -> list[str]:
        return list(OUTPUT_TYPES)

    def get_transformations(self, resize_dim: int = 256, crop_dim: int = 224, apply_center_crop: bool = True) -> Any:
        """The image transform, chosen as 2.7.3 chooses it; visreps: ``lm.transform`` or
        ``load_model(..., preprocessing={"resize": ..., "crop": ...})``.

        A model's own transform (``preprocess`` of :func:`get_extractor_from_model`, CLIP's ...) is
        returned as it is. Pretrained torchvision models, timm, Keras, ``ssl`` and ``custom``
        models use the model's own preprocessing (the arguments are ignored, with a warning as in
        2.7.3). A randomly initialised torchvision model or a user's module: resize the shorter
        side to ``resize_dim`` (bilinear, antialiased), centre crop ``crop_dim`` (if
        ``apply_center_crop``), ImageNet mean and std.
        """
        from ....models import Preprocessing

        if self.preprocess is not None:
            return self.preprocess
        generic = self.source == "custom_model" or (self.source == "torchvision" and not self.pretrained)
        if not generic:
            if (resize_dim, crop_dim, apply_center_crop) != (256, 224, True):
                warnings.warn(
                    "\nInput arguments are ignored because transforms are inferred from the model.\n",
                    UserWarning,
                    stacklevel=2,
                )
            if self.source == "timm" and not self.pretrained:  # timm's own config, as 2.7.3 (visreps: ImageNet's)
                from timm.data.config import resolve_data_config

                prep = Preprocessing.from_timm_config(resolve_data_config({}, model=self.model))
                return _mark(self.lm.driver.build_transform(prep), prep)
            return _mark(self.lm.transform, self.lm.preprocessing)
        prep = Preprocessing(resize=resize_dim, crop=crop_dim if apply_center_crop else None)
        return _mark(self.lm.driver.build_transform(prep), prep)

    # ------------------------------------------------------------------ extraction

    def extract_features(
        self,
        batches: Iterable[Any],
        module_name: str | None = None,
        module_names: list[str] | None = None,
        flatten_acts: bool = False,
        output_type: str = "ndarray",
        output_dir: str | None = None,
        step_size: int | None = None,
        file_name_suffix: str = "",
        save_in_one_file: bool = False,
    ) -> Any:
        """Features of one module (an array) or several (a dict), or files in ``output_dir``; as 2.7.3.

        Maps to ``visreps.extract(model, images, layers=[...], pool="flatten"|"none", out=folder)``.
        Given the :class:`~visreps.compat.thingsvision.utils.data.DataLoader` of an ``ImageDataset``,
        visreps' engine extracts the dataset's images in its order with its transform and batch
        size; any other iterable of input batches (a ``torch.utils.data.DataLoader`` of your own;
        ``(images, labels)`` pairs count by their images) runs through the engine's forward hooks
        and pooling batch by batch.

        Args:
            batches: the mini-batches.
            module_name / module_names: one module (returns an array) or several (returns
                ``{module: array}``); exactly one of the two.
            flatten_acts: ``(N, C·H·W)`` instead of the module's own shape (visreps ``pool="flatten"``;
                ``False`` is ``pool="none"``). With ``token_extraction`` (``model_parameters``) a
                token sequence ``(N, T, D)`` gives ``cls_token`` (token 0, ``pool="cls"``),
                ``avg_pool`` (the mean of the patch tokens, ``pool="patch_mean"``) or both concatenated.
            output_type: ``ndarray`` (float32) or ``tensor``.
            output_dir: write every ``step_size`` batches to
                ``<output_dir>/<module>/features<suffix>_<first>-<end>.npy`` (``.pt`` for tensors)
                and return ``None``; memory holds at most ``step_size`` batches.
            step_size: batches per file (default ``8000 // (3 · batch size) + 1``, as 2.7.3).
            file_name_suffix: inserted after ``features`` in the file names.
            save_in_one_file: join each module's files into ``<output_dir>/<module>/features<suffix>.npy``.

        Fixed: with several modules and ``output_dir``, 2.7.3 named every module's files after the
        first with the end row twice (``features_32-32.npy``); here each file names its own rows.
        """
        warn_once("visreps.compat.thingsvision Extractor.extract_features")
        layers = self._check_request(module_name, module_names, output_type)
        pool = self._pool(flatten_acts)
        step = None
        if output_dir:
            if not step_size:  # 2.7.3's default: every image's features take 3 MB, 8 GB are free
                batch_size, batches = _batch_size(batches)
                step_size = 8000 // (batch_size * 3) + 1
            step = int(step_size)
            if step < 1:
                raise VisrepsError(f"step_size must be a positive number of batches, got {step_size!r}")
        chunks = self._chunks(batches, layers, pool, step)
        if not output_dir:
            arrays = _join([c for _, c in chunks], layers)
            out = {m: self._finish(arrays[m], flatten_acts, output_type) for m in layers}
            for m in layers:
                print(f"...Features for module '{m}' have shape: {tuple(out[m].shape)}")
            return out[layers[0]] if module_name else out
        self._stream(chunks, layers, flatten_acts, output_type, Path(output_dir), file_name_suffix, save_in_one_file)
        return None

    def _check_request(self, module_name: Any, module_names: Any, output_type: str) -> list[str]:
        if not bool(module_name) ^ bool(module_names):
            raise VisrepsError("give either module_name='...' or module_names=[...], not both and not neither")
        layers = [module_name] if module_name else list(module_names)
        valid = self.get_module_names()
        for m in layers:
            if m not in valid:
                hint = closest_hint(str(m), valid)
                raise LayerNotFoundError(
                    f"{m!r} is not a module of {self.lm.model_id}{hint} (extractor.get_module_names() lists them)"
                )
        if len(set(layers)) != len(layers):
            raise VisrepsError(f"module_names lists a module twice: {layers}")
        if output_type not in OUTPUT_TYPES:
            raise VisrepsError(f"output_type {output_type!r} is not valid; use 'ndarray' or 'tensor'")
        return layers

    def _pool(self, flatten_acts: bool) -> str:
        if self.token_extraction == "cls_token":
            return "cls"
        if self.token_extraction == "avg_pool":
            return "patch_mean"
        if self.token_extraction is None and flatten_acts and self.flatten_fn is None:
            return "flatten"
        return "none"

    def _finish(self, arr: np.ndarray, flatten_acts: bool, output_type: str) -> Any:
        """The array as 2.7.3 returns it: the token pair joined, a custom flatten, ndarray or tensor."""
        import torch

        t = torch.from_numpy(np.ascontiguousarray(arr))
        if self.token_extraction == "cls_token+avg_pool" and t.dim() > 2:
            t = torch.cat((t[:, 0, :], t[:, 1:, :].mean(dim=1)), dim=1)
        elif self.token_extraction is None and flatten_acts and self.flatten_fn is not None and t.dim() > 2:
            t = self.flatten_fn(self, t)
        if output_type == "tensor":
            return t
        return t.numpy()

    def _chunks(
        self, batches: Iterable[Any], layers: list[str], pool: str, step: int | None
    ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """``(images, {module: rows})`` for every ``step`` batches (all at once without ``step``)."""
        from ..utils.data import DataLoader, ImageDataset

        if isinstance(batches, DataLoader) and isinstance(batches.dataset, ImageDataset) and self.forward_fn is None:
            return self._engine_chunks(batches, layers, pool, step)
        return self._hook_chunks(batches, layers, pool, step)

    def _engine_chunks(self, loader: Any, layers: list[str], pool: str, step: int | None) -> Iterator[tuple[int, dict]]:
        from ..._core import run_in_memory

        dataset = loader.dataset
        lm = self._with_transform(dataset.transforms, dataset.samples[0])
        paths = dataset.relative_paths()
        per = len(paths) if step is None else step * loader.batch_size
        for start in range(0, len(paths), per):
            order = paths[start : start + per]
            res = run_in_memory(
                lm, dataset.root, order, layers, pool=pool, batch_size=loader.batch_size, progress=False
            )
            arrays = {m: np.asarray(res[m]) for m in layers}
            yield len(arrays[layers[0]]), arrays

    def _with_transform(self, transform: Any, first_image: str) -> LoadedModel:
        """The model running with the dataset's transform (a shallow copy when it is not the model's own)."""
        from ....data import load_image
        from ....models import Preprocessing

        lm = self.lm
        if transform is None:
            raise VisrepsError("the ImageDataset has no transforms; pass transforms=extractor.get_transformations()")
        if transform is lm.transform:
            return lm
        prep = getattr(transform, "visreps_preprocessing", None)
        if prep is None:  # a transform of the script's own: the input size from the first image
            shape = tuple(int(s) for s in getattr(transform(load_image(first_image)), "shape", ()))
            base = lm.preprocessing

            @dataclasses.dataclass(frozen=True)
            class _Probed(Preprocessing):
                def input_size(self, _shape: tuple[int, ...] = shape) -> tuple[int, ...]:
                    return _shape

            prep = _Probed(resize=None, crop=shape[-1] if shape else None, mean=base.mean, std=base.std)
        return dataclasses.replace(lm, preprocessing=prep, _transform=transform)

    def _hook_chunks(self, batches: Iterable[Any], layers: list[str], pool: str, step: int | None) -> Iterator:
        import torch

        from ....capture import LayerSpec, make_capture

        lm = self.lm
        fn = self.forward_fn
        forward = None if fn is None else (lambda x: fn(self, x))
        specs = [LayerSpec(m, pool) for m in layers]
        cap = None
        rows: dict[str, list] = {m: [] for m in layers}
        n = done = 0
        try:
            for done, batch in enumerate(batches, 1):
                x = batch[0] if isinstance(batch, (tuple, list)) and len(batch) == 2 else batch
                x = torch.as_tensor(x).to(lm.device) if lm.backend == "torch" else np.asarray(x)
                with torch.inference_mode():
                    if cap is None:
                        _plan_on(lm, specs, x, forward)
                        cap = make_capture(lm, specs)
                        cap.__enter__()
                    outs = _run(cap, x, forward)
                for m in layers:
                    rows[m].append(np.asarray(outs[m]))
                n += len(x)
                if step is not None and done % step == 0:
                    yield n, {m: np.concatenate(rows[m]) for m in layers}
                    rows, n = {m: [] for m in layers}, 0
        finally:
            if cap is not None:
                cap.__exit__(None, None, None)
        if done == 0:
            raise VisrepsError("batches yielded no mini-batch: the dataset is empty")
        if n:
            yield n, {m: np.concatenate(rows[m]) for m in layers}

    def _stream(
        self,
        chunks: Iterator[tuple[int, dict]],
        layers: list[str],
        flatten_acts: bool,
        output_type: str,
        out: Path,
        suffix: str,
        one_file: bool,
    ) -> None:
        import torch

        ext = "pt" if output_type == "tensor" and self.get_backend() == "pt" else "npy"
        written: dict[str, list[Path]] = {m: [] for m in layers}
        first = 0
        for n, arrays in chunks:
            for m in layers:
                folder = out / m
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"features{suffix}_{first}-{first + n}.{ext}"
                _save(self._finish(arrays[m], flatten_acts, output_type), path, ext)
                written[m].append(path)
            first += n
        if one_file:
            for m in layers:
                parts = [torch.load(p) if ext == "pt" else np.load(p) for p in written[m]]
                joined = torch.cat(parts) if ext == "pt" else np.concatenate(parts)
                _save(joined, out / m / f"features{suffix}.{ext}", ext)
                for p in written[m]:
                    p.unlink()
                print(f"...Features for module '{m}' were saved to {out / m / f'features{suffix}'}.")
        print(f"...Features were saved to {out}.")


def _plan_on(lm: LoadedModel, specs: list, x: Any, forward: Any) -> None:
    """How often each module runs per pass, from a dry run on the first real batch (``specs`` filled in)."""
    from ....capture import make_capture

    cap = make_capture(lm, specs, stop_early=False, dry_run=True)
    with cap:
        _run(cap, x, forward)
    for spec in specs:
        calls = cap.counts.get(spec.module, 0)
        if calls == 0:
            raise VisrepsError(f"module {spec.module!r} never runs in the model's forward pass; choose another module")
        spec.calls = calls
        spec.keys = (spec.module,)


def _run(cap: Any, x: Any, forward: Any) -> dict[str, Any]:
    """One forward pass through a capture (torch hooks, or a Keras adapter's); ``forward`` replaces the module's."""
    from ....capture import Capture

    if forward is None:
        return cap.run(x)
    return cast(Capture, cap).run(x, forward)  # forward_fn: PyTorch models only (get_extractor_from_model)


def _batch_size(batches: Any) -> tuple[int, Any]:
    """The size of the first batch, and the batches with that one still in them."""
    import itertools

    size = getattr(batches, "batch_size", None)
    if isinstance(size, int) and size > 0:
        return size, batches
    it = iter(batches)
    first = next(it)
    images = first[0] if isinstance(first, (tuple, list)) and len(first) == 2 else first
    return len(images), (batches if it is not batches else itertools.chain([first], it))


def _join(chunks: list[dict[str, np.ndarray]], layers: list[str]) -> dict[str, np.ndarray]:
    if len(chunks) == 1:
        return chunks[0]
    return {m: np.concatenate([c[m] for c in chunks]) for m in layers}


def _save(arr: Any, path: Path, ext: str) -> None:
    """One array under its final name once complete (written as ``<name>.partial`` first)."""
    with atomic(path) as tmp:
        if ext == "pt":
            import torch

            torch.save(arr, tmp)
        else:
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(arr))


def _load(mid: str, *, pretrained: bool, device: str, weights: str | None, preprocessing: Any = None) -> LoadedModel:
    from ....models import load_model

    return load_model(mid, pretrained=pretrained, weights=weights, seed=0, device=device, preprocessing=preprocessing)


def get_extractor(
    model_name: str,
    pretrained: bool,
    device: str,
    source: str,
    model_path: str | None = None,
    model_parameters: dict[str, Any] | None = None,
) -> Extractor:
    """THINGSvision 2.x's ``get_extractor``; maps to ``visreps.load_model(model_id(model_name, source, ...))``.

    ``pretrained=True`` loads the source's weights (torchvision: ``model_parameters['weights']``,
    default ``DEFAULT``; they must be in visreps' cache, see ``visreps download``);
    ``pretrained=False`` is a random initialisation seeded with 0 (2.7.3 did not seed it; the
    same as calling ``torch.manual_seed(0)`` before building the network). ``model_path``: a local
    state_dict file loaded into the architecture (safely, ``weights_only``); 2.7.3 also took an
    address, visreps takes files only. ``model_parameters['token_extraction']`` (``cls_token``,
    ``avg_pool``, ``cls_token+avg_pool``) applies to token sequences in ``extract_features``.
    """
    warn_once("visreps.compat.thingsvision.get_extractor")
    params = dict(model_parameters or {})
    if source == "vissl":
        warnings.warn(
            'The source "vissl" is deprecated. Use the source "ssl" instead.', DeprecationWarning, stacklevel=2
        )
    mid = model_id(model_name, source, params)
    dev = _device(device)
    path = _model_path(model_path)
    weights = path
    if path is None and pretrained and source == "torchvision":
        weights = str(params.get("weights", "DEFAULT"))
        weights = None if weights == "DEFAULT" else weights
    lm = _load(mid, pretrained=bool(pretrained), device=dev, weights=weights)
    return Extractor(
        lm, model_name=model_name, source=source, device=dev, pretrained=bool(pretrained), model_parameters=params
    )


def get_extractor_from_model(
    model: Any,
    device: str,
    backend: str,
    preprocess: Any = None,
    forward_fn: Callable | None = None,
    flatten_fn: Callable | None = None,
) -> Extractor:
    """THINGSvision 2.x's ``get_extractor_from_model``; maps to ``visreps.load_model(module)``.

    ``backend``: ``pt`` for a ``torch.nn.Module``, ``tf`` for a ``keras.Model``. ``forward_fn(extractor,
    batch)`` replaces the model's forward pass and ``flatten_fn(extractor, act)`` the flattening,
    as the methods 2.7.3 assigned them to.
    """
    warn_once("visreps.compat.thingsvision.get_extractor_from_model")
    from ....models import load_model

    if backend not in ("pt", "tf"):
        raise VisrepsError(f"backend {backend!r} is not valid; use 'pt' (PyTorch) or 'tf' (TensorFlow/Keras)")
    dev = _device(device)
    lm = load_model(model, device=dev if backend == "pt" else "cpu")
    if (backend == "pt") != (lm.backend == "torch"):
        raise VisrepsError(
            f"backend={backend!r} does not fit a {type(model).__name__}; "
            f"use backend='{'pt' if lm.backend == 'torch' else 'tf'}'"
        )
    hooks = {"preprocess": preprocess, "forward_fn": forward_fn, "flatten_fn": flatten_fn}  # 2.7.3's attributes
    return Extractor(lm, model_name="custom", source="custom_model", device=dev, pretrained=True, **hooks)


def center_features(X: Any) -> Any:
    """Subtract the column means in place and return ``X`` (2.x); maps to ``visreps.analysis.center_features``."""
    warn_once("visreps.compat.thingsvision.center_features")
    X -= X.mean(axis=0)
    return X


def normalize_features(X: Any) -> Any:
    """Divide every row by its L2 norm in place and return ``X`` (2.x); maps to
    ``visreps.analysis.normalize_features``. Fixed: an all-zero row stays zero (2.7.3 gave NaN)."""
    warn_once("visreps.compat.thingsvision.normalize_features")
    norms = np.linalg.norm(X, axis=1)[:, np.newaxis]
    X /= np.where(norms == 0, 1, norms)
    return X
