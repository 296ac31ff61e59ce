"""The Keras backend of the extraction engine: :class:`KerasAdapter` (``lm.adapter``) and :class:`KerasCapture`.

Images become float32 (S, S, 3) tensors with pixels 0..255 (:class:`_KerasTransform`); the application's
``preprocess_input`` runs on each NumPy batch inside the capture; one multi-output ``keras.Model`` per set of
requested layers is built once and run with ``predict_on_batch``; pooling is :func:`pool_array` on
channels-last arrays (see :mod:`visreps.models.keras`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import VisrepsError
from ._base import LoadedModel, Preprocessing
from ._keras_session import import_keras
from ._layers import LayerInfo


def pool_array(a: np.ndarray, mode: str, layer: str = "", prefix_tokens: int = 1) -> np.ndarray:
    """:func:`visreps.pooling.pool_output` for channels-last NumPy arrays (B, ...).

    ``flatten`` keeps Keras's native (H, W, C) order; ``avg``/``max`` pool the spatial axes of
    (B, H, W, C) → (B, C); ``cls``/``patch_mean`` as for torch token sequences.
    """
    import torch

    from ..pooling import POOL_MODES, pool_output

    if mode not in POOL_MODES:
        raise VisrepsError(f"pool mode {mode!r} is not valid; use {', '.join(POOL_MODES)}")
    return pool_output(
        torch.from_numpy(np.ascontiguousarray(a)), mode, layer, prefix_tokens, channels_last=True
    ).numpy()


def _functional_model(keras, inputs, outputs, name: str):
    """One multi-output Keras model (a seam for tests to count builds)."""
    return keras.Model(inputs=inputs, outputs=outputs, name=name)


def _first_output(out: Any) -> Any:
    if isinstance(out, (list, tuple)):
        return _first_output(out[0]) if out else None
    if isinstance(out, dict):
        return _first_output(next(iter(out.values()))) if out else None
    return out


class _KerasTransform:
    """PIL RGB image → float32 tensor (S, S, 3) with pixels 0..255 (picklable for loader workers)."""

    def __init__(self, prep: Preprocessing):
        _check_prep(prep)
        self.prep = prep
        self._steps = None

    def _build(self):
        from torchvision import transforms as T

        modes = {
            "bilinear": T.InterpolationMode.BILINEAR,
            "bicubic": T.InterpolationMode.BICUBIC,
            "nearest": T.InterpolationMode.NEAREST,
        }
        steps: list = []
        if self.prep.resize:
            steps.append(T.Resize(self.prep.resize, interpolation=modes[self.prep.interpolation], antialias=True))
        if self.prep.crop:
            steps.append(T.CenterCrop(self.prep.crop))
        return T.Compose(steps)

    def __getstate__(self):
        return {"prep": self.prep, "_steps": None}

    def __call__(self, img):
        import torch

        if self._steps is None:
            self._steps = self._build()
        return torch.from_numpy(np.array(self._steps(img), dtype=np.float32))


def _check_prep(prep: Preprocessing) -> None:
    if prep.interpolation not in ("bilinear", "bicubic", "nearest"):
        raise VisrepsError(f"interpolation {prep.interpolation!r} is not supported; use bilinear, bicubic or nearest")
    if any(float(m) != 0.0 for m in prep.mean) or any(float(s) != 1.0 for s in prep.std):
        raise VisrepsError(
            "Keras models take pixels 0..255 into their own preprocess_input; leave mean at 0 and std at 1 "
            f"(got mean={list(prep.mean)}, std={list(prep.std)}), or give from_keras_model(..., preprocess=...)"
        )


class KerasAdapter:
    """How the extraction engine drives a Keras model: the :class:`~visreps.models.Backend` in ``lm.adapter``.

    Attributes:
        model: the ``keras.Model``.
        preprocess: batch function applied before the model (NumPy NHWC, pixels 0..255), or ``None``.
        builds: how many multi-output models were built (one per set of requested layers).
    """

    kind = "keras"

    def __init__(
        self,
        model: Any,
        *,
        preprocess: Callable[[np.ndarray], np.ndarray] | None = None,
        preprocess_name: str | None = None,
    ) -> None:
        self.model = model
        self.preprocess = preprocess
        self.preprocess_name = preprocess_name
        self.builds = 0
        self._models: dict[tuple, Any] = {}
        self._lm: Callable[[], LoadedModel | None] = lambda: None
        self._final_softmax = _ends_in_softmax(model)

    def bind(self, lm: LoadedModel) -> None:
        self._lm = weakref.ref(lm)

    # -- what the engine asks

    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.model.layers]

    def _prep(self) -> Preprocessing:
        lm = self._lm()
        return (
            lm.preprocessing if lm is not None else Preprocessing(resize=224, crop=224, mean=(0.0,) * 3, std=(1.0,) * 3)
        )

    def input_side(self) -> int:
        prep = self._prep()
        _check_prep(prep)
        side = prep.crop or prep.resize
        if not side:
            raise VisrepsError("Keras models need a fixed square input: set preprocessing crop (and resize)")
        h, w = tuple(self.model.input_shape[1:3])
        if h is not None and (h != side or w != side):
            lm = self._lm()
            raise VisrepsError(
                f"{lm.model_id if lm else 'the model'} takes {h}×{w} images; preprocessing gives {side}×{side} "
                f"(set crop={h})"
            )
        return int(side)

    def dummy_input(self, n: int = 1) -> Any:
        import torch

        s = self.input_side()
        return torch.zeros((n, s, s, 3), dtype=torch.float32)

    def build_transform(self, preprocessing: Preprocessing) -> Callable:
        return _KerasTransform(preprocessing)

    def capture(
        self, specs: Sequence, *, expected: dict[str, int] | None = None, stop_early: bool = True
    ) -> KerasCapture:
        return KerasCapture(self, list(specs), expected=expected, stop_early=stop_early)

    def describe_layers(self) -> list[LayerInfo]:
        shapes = {}
        unknown = []
        for layer in self.model.layers:
            shp = self.static_shape(layer.name)
            shapes[layer.name] = shp
            if shp is None or any(d is None for d in shp):
                unknown.append(layer.name)
        if unknown:  # flexible input sizes: one run of the model on a blank image
            names = self.layer_names()
            outs = self.run_layers(names, self.dummy_input(1), include_final=False)
            shapes = {n: tuple(int(d) for d in o.shape[1:]) for n, o in zip(names, outs)}
        return [
            LayerInfo(name=layer.name, type=type(layer).__name__, shape=shapes[layer.name], calls=1, depth=0)
            for layer in self.model.layers
        ]

    # -- the multi-output model

    def _layer_output(self, name: str):
        try:
            layer = self.model.get_layer(name)
        except ValueError as e:
            raise VisrepsError(f"model has no layer {name!r}") from e
        try:
            out = layer.output
        except (AttributeError, ValueError, RuntimeError) as e:
            raise VisrepsError(
                f"layer {name!r} is called more than once in the model (a shared layer) or never; "
                "visreps takes Keras layers called once per pass"
            ) from e
        return _first_output(out)

    def static_shape(self, name: str) -> tuple | None:
        try:
            out = self._layer_output(name)
        except VisrepsError:
            return None
        return tuple(None if d is None else int(d) for d in out.shape[1:])

    def multi_output_model(self, modules: Sequence[str], include_final: bool) -> Any:
        """The cached ``keras.Model(inputs, [outputs of modules] (+ final output))``."""
        key = (tuple(modules), bool(include_final))
        if key not in self._models:
            from . import keras as facade  # its _functional_model: a seam tests replace

            keras = import_keras()
            outs = [self._layer_output(m) for m in modules]
            if include_final:
                outs.append(_first_output(self.model.outputs))
            inputs = self.model.inputs
            inputs = inputs[0] if len(inputs) == 1 else inputs  # a bare tensor: batches are plain arrays
            self._models[key] = facade._functional_model(keras, inputs, outs, name=f"visreps_{self.model.name}")
            self.builds += 1
        return self._models[key]

    def run_layers(self, modules: Sequence[str], x: Any, include_final: bool) -> list[np.ndarray]:
        """Outputs of ``modules`` (+ the final output) for a batch ``x`` (pixels 0..255, NHWC)."""
        model = self.multi_output_model(modules, include_final)
        a = x.detach().cpu().numpy() if hasattr(x, "detach") else x
        a = np.array(a, dtype=np.float32, copy=True)  # preprocess_input may work in place
        if self.preprocess is not None:
            a = self.preprocess(a)
        outs = model.predict_on_batch(a)
        if not isinstance(outs, (list, tuple)):
            outs = [outs]
        return [np.asarray(o) for o in outs]

    def final_as_logits(self, out: np.ndarray) -> Any:
        """The model's final output as a torch tensor whose softmax gives its probabilities."""
        import torch

        a = np.asarray(out, dtype=np.float32)
        if self._final_softmax:
            a = np.log(np.maximum(a, np.float32(1e-38)))
        return torch.from_numpy(np.ascontiguousarray(a))


def _ends_in_softmax(model) -> bool:
    """Whether the model's last layer applies a softmax (Keras applications end in one)."""
    layer = model.layers[-1] if model.layers else None
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", "") == "softmax" or type(layer).__name__ == "Softmax"


def _host(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32, copy=False) if np.issubdtype(a.dtype, np.floating) else a


class KerasCapture:
    """The :class:`visreps.capture.Capture` interface on a Keras model: one multi-output pass.

    ``expected`` (calls per module) comes from the engine; while it is ``None`` (the first dry run, which
    only counts calls) the model is not run when every requested layer has a static shape: each
    Keras layer runs once per pass, and pooling is checked on a blank array of that shape.
    """

    def __init__(
        self,
        adapter: KerasAdapter,
        specs: list,
        *,
        expected: dict[str, int] | None = None,
        stop_early: bool = True,
        prefix_tokens: int = 1,
    ):
        self.adapter = adapter
        self.specs = specs
        self.stop_early = stop_early
        self.prefix_tokens = prefix_tokens
        self.modules = list(dict.fromkeys(s.module for s in specs))
        self.expected = expected
        self.counts: dict[str, int] = {}
        self.outputs: dict[str, Any] = {}
        self.result = None

    def __enter__(self) -> KerasCapture:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def run(self, x: Any) -> dict[str, np.ndarray]:
        self.counts, self.outputs, self.result = {}, {}, None
        if self.expected is None:
            found = {m: self.adapter.static_shape(m) for m in self.modules}
            shapes = {m: s for m, s in found.items() if s is not None and None not in s}
            if len(shapes) == len(found):
                for spec in self.specs:
                    pool_array(
                        np.zeros((1, *shapes[spec.module]), dtype=np.float32),
                        spec.pool,
                        spec.module,
                        self.prefix_tokens,
                    )
                self.counts = {m: 1 for m in self.modules}
                return self.outputs
        include_final = not self.stop_early
        outs = self.adapter.run_layers(self.modules, x, include_final)
        by_name = dict(zip(self.modules, outs))
        for spec in self.specs:
            p = _host(pool_array(by_name[spec.module], spec.pool, spec.module, self.prefix_tokens))
            for key in spec.keys or (spec.module,):
                self.outputs[key] = p
        self.counts = {m: 1 for m in self.modules}
        if include_final:
            self.result = self.adapter.final_as_logits(outs[-1])
        return self.outputs
