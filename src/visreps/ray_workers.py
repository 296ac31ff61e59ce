"""What runs inside Ray (:mod:`visreps.distributed`'s remote side): decoding tasks and the model actors.

:func:`decode_batch` reads and preprocesses one block of images in a Ray task; :class:`Extractor` is an
actor holding the model and running the hooked forward pass. Errors travel back to the driver as data
(:func:`describe_failure`, re-raised there by :func:`raise_failure`). Ray itself is imported only inside
the functions that run on a worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import VisrepsError

if TYPE_CHECKING:
    from .models import LoadedModel

__all__ = ["Extractor", "decode_batch", "describe_failure", "fill_rows", "raise_failure"]


def decode_batch(
    batch: Mapping[str, np.ndarray], *, root: str, transform, input_shape: tuple, source: Any = None
) -> dict:
    """Ray task: read and preprocess the images of one block.

    Returns ``i`` (image positions), ``x`` (float32 inputs; zeros for unreadable images) and
    ``err`` (``""`` or the image's error message, as the single-process loader gives it).
    """
    from .data import DIGEST_SIZE, ImageDataset, ImageItem

    paths = [str(p) for p in batch["path"]]
    its = [ImageItem(p, "") for p in paths]
    dataset = ImageDataset(root, its, transform) if source is None else source.dataset(its, transform)
    xs: list = []
    errs: list[str] = []
    digests = np.zeros((len(paths), DIGEST_SIZE), np.uint8)
    for j in range(len(paths)):
        _, x, err, digest = dataset[j]
        xs.append(None if x is None else np.asarray(x, dtype=np.float32))
        errs.append(err)
        if digest:
            digests[j] = np.frombuffer(digest, np.uint8)
    shapes = {x.shape for x in xs if x is not None}
    shape = next(iter(shapes)) if len(shapes) == 1 else tuple(input_shape)
    if len(shapes) > 1:  # only without a crop: keep the images as a ragged column, the actor says what is wrong
        out_x = np.empty(len(xs), dtype=object)
        for j, x in enumerate(xs):
            out_x[j] = np.zeros(shape, np.float32) if x is None else x
    else:
        out_x = np.zeros((len(xs), *shape), np.float32)
        for j, x in enumerate(xs):
            if x is not None:
                out_x[j] = x
    return {
        "i": np.asarray(batch["i"], dtype=np.int64),
        "x": out_x,
        "err": np.asarray(errs, dtype=object),
        "hash": digests,
    }


def stack_inputs(x: np.ndarray) -> np.ndarray:
    if x.dtype != object:
        return x
    shapes = sorted({tuple(a.shape) for a in x})
    if len(shapes) > 1:
        raise VisrepsError(
            f"images give model inputs of different sizes ({', '.join(str(s) for s in shapes[:3])}); "
            "the preprocessing must end in a fixed size: set a crop (preprocessing={'crop': 224})"
        )
    return np.stack(list(x))


class Extractor:
    """Ray actor: holds the model (loaded once) and runs the hooked forward pass on batches.

    Errors travel back as data (the ``fail`` column: error type and message), because Ray Data
    hands the driver only a text traceback of an exception raised here.
    """

    def __init__(self, spec: dict):
        self.spec = spec
        self.failure = ""
        try:
            self._setup()
        except Exception as e:  # noqa: BLE001 - reported with the first batch
            self.failure = describe_failure(e, "loading the model")

    def _setup(self) -> None:
        import torch

        from .capture import make_capture, set_memory_format

        spec = self.spec
        if spec["threads"]:
            torch.set_num_threads(spec["threads"])
        self.lm = actor_model(spec)
        self.device = self.lm.device
        if spec["channels_last"]:
            set_memory_format(self.lm, True)
        self.cap = make_capture(self.lm, spec["specs"], stop_early=spec["top_k"] is None)
        self.cap.__enter__()  # the hooks stay on for the actor's lifetime

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict:
        failure = self.failure
        if not failure:
            try:
                return self._run(batch)
            except Exception as e:  # noqa: BLE001
                failure = describe_failure(e, "running the model")
        out = self._empty(batch)
        out["fail"] = np.full(len(out["i"]), failure, dtype=object)
        return out

    def _empty(self, batch: Mapping[str, np.ndarray]) -> dict:
        spec = self.spec
        n = len(batch["i"])
        out: dict[str, Any] = {
            "i": np.asarray(batch["i"]),
            "err": np.asarray(batch["err"]),
            "hash": np.asarray(batch["hash"]),
            "fail": np.full(n, "", dtype=object),
        }
        for key, col in spec["columns"].items():
            out[col] = np.zeros((n, *spec["shapes"][key]), np.float32)
        if spec["top_k"] is not None:
            out["topk_index"] = np.zeros((n, spec["top_k"]), np.int64)
            out["topk_prob"] = np.zeros((n, spec["top_k"]), np.float32)
        return out

    def _run(self, batch: Mapping[str, np.ndarray]) -> dict:
        import torch

        from .capture import autocast, forward_with_backoff, model_classes, top_classes

        spec = self.spec
        err = np.asarray(batch["err"])
        good = np.array([not e for e in err], dtype=bool)
        if not good.any():
            return self._empty(batch)
        x = batch["x"] if good.all() else batch["x"][good]
        x = stack_inputs(np.asarray(x))
        if not x.flags.writeable:
            x = x.copy()
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        with torch.inference_mode(), autocast(self.device, spec["precision"]):
            if self.lm.backend == "torch":
                xt = xt.to(self.device, non_blocking=True)
                if spec["channels_last"]:
                    xt = xt.contiguous(memory_format=torch.channels_last)
            outs, result = forward_with_backoff(self.cap, xt)
            topk = None
            if spec["top_k"] is not None:
                topk = top_classes(result, spec["top_k"], self.lm.model_id, n_classes=len(model_classes(self.lm)))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the hooks copy to the host without waiting
        out: dict[str, Any] = {
            "i": np.asarray(batch["i"]),
            "err": err,
            "hash": np.asarray(batch["hash"]),
            "fail": np.full(len(err), "", dtype=object),
        }
        red = spec.get("reducer")
        if red is not None:  # reduced here, so only reduced rows travel back to the driver
            outs = {**outs, **red.apply({k: outs[k] for k in red.appliers})}
        for key, col in spec["columns"].items():
            out[col] = fill_rows(np.asarray(outs[key]), good)
        if topk is not None:
            out["topk_index"] = fill_rows(np.asarray(topk[0]), good)
            out["topk_prob"] = fill_rows(np.asarray(topk[1]), good)
        return out


def describe_failure(e: BaseException, doing: str) -> str:
    """An error in an actor as ``Type<TAB>message`` (visreps errors keep their message as it is)."""
    import socket

    if isinstance(e, VisrepsError):
        return f"{type(e).__name__}\t{e}"
    lines = str(e).strip().splitlines()
    hint = ""
    if isinstance(e, ImportError) or "No module named" in str(e):
        hint = "; every machine of the Ray cluster needs the packages and modules the model comes from"
    return (
        f"VisrepsError\t{type(e).__name__} in a Ray actor on {socket.gethostname()} while {doing}: "
        f"{lines[0] if lines else ''}{hint}"
    )


def raise_failure(text: str):
    from . import errors

    name, _, msg = str(text).partition("\t")
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, VisrepsError)):
        cls = VisrepsError
    raise cls(msg)


def fill_rows(rows: np.ndarray, good: np.ndarray) -> np.ndarray:
    """``rows`` of the good images spread over a batch with zero rows for the bad ones."""
    if good.all():
        return rows
    full = np.zeros((len(good), *rows.shape[1:]), rows.dtype)
    full[good] = rows
    return full


def actor_model(spec: dict) -> LoadedModel:
    """The model in an actor: the driver's, from the object store, or loaded from its recipe."""
    import ray
    import torch

    from . import cache

    device = torch.device(spec["device"])
    ref = spec.get("model_ref")
    if ref is not None:
        lm: LoadedModel = ray.get(ref)
        if lm.backend == "torch":
            lm.module.to(device).eval()
            lm.device = device
        return lm
    from .models import load_model

    recipe = spec["recipe"]
    if "offline" in recipe["cache"]:
        cache.set_offline(recipe["cache"]["offline"])
    if "dir" in recipe["cache"]:
        cache.set_cache_dir(recipe["cache"]["dir"])
    return load_model(
        recipe["model"],
        pretrained=recipe["pretrained"],
        weights=recipe["weights"],
        seed=recipe["seed"],
        device=spec["device"],
        preprocessing=recipe["preprocessing"],
        allow_pickle=recipe.get("allow_pickle", False),
    )
