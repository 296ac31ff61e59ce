"""The user's own modules and checkpoints: state_dicts (.pt/.pth/.bin), safetensors, pickled models.

Weights files load with ``torch.load(weights_only=True)`` or safetensors, which read tensors and
plain containers only. Unpickling arbitrary Python objects (a whole pickled model, a checkpoint with
custom classes) can run code from the file: it needs the explicit opt-in ``allow_pickle=True``
(``--allow-pickle``) and never happens as a fallback.
"""

from __future__ import annotations

import contextlib
import re
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from ..errors import WeightsError
from ._base import LoadedModel, Preprocessing, file_sha256

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module", "weights")


WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".tar", ".h5", ".keras")

#: what ``--weights`` accepts, for messages
ACCEPTED_FORMATS = (
    "a PyTorch state_dict (.pt/.pth/.bin), a safetensors file, or for Keras models .weights.h5/.h5/.keras"
)

#: how to opt in to unpickling, for messages
PICKLE_OPT_IN = "--allow-pickle (Python: allow_pickle=True)"

#: the ``allow_pickle`` of the :func:`~visreps.models.load_model` call in progress (read by the sources)
_ALLOW_PICKLE: ContextVar[bool] = ContextVar("visreps_allow_pickle", default=False)

# torch's safe unpickler rejects these: the file holds Python objects besides tensors
_NEEDS_PICKLE = re.compile(r"GLOBAL|Unsupported class|allowlisted|Can only (build|create)|TorchScript")


def looks_like_file(weights: str | Path) -> bool:
    """Whether ``weights`` names a file (it exists, has a path separator or a weights suffix) rather than a tag."""
    s = str(weights)
    return Path(s).expanduser().exists() or "/" in s or "\\" in s or s.lower().endswith(WEIGHT_SUFFIXES)


@contextlib.contextmanager
def pickle_scope(allow_pickle: bool) -> Iterator[None]:
    """Within the block, :func:`load_weights_file` calls without ``allow_pickle`` use this value.

    :func:`~visreps.models.load_model` sets it around the source's ``load``, so that a ``--weights``
    file read by any source honours the caller's opt-in.
    """
    token = _ALLOW_PICKLE.set(bool(allow_pickle))
    try:
        yield
    finally:
        _ALLOW_PICKLE.reset(token)


def pickle_allowed() -> bool:
    """The opt-in of the :func:`~visreps.models.load_model` call in progress (``False`` outside one)."""
    return _ALLOW_PICKLE.get()


def directory_message(path: Path, wanted: str, prefix: str = "") -> str:
    """The error for a folder given where a file is wanted: ``hf:`` for a ``save_pretrained`` folder, else the
    files it holds that fit (``prefix``: how the suggestion is spelled, e.g. ``file:``)."""
    if (path / "config.json").is_file():
        return (
            f"{prefix + str(path)!r} is a directory written by save_pretrained (it holds config.json), not {wanted}: "
            f"load it as hf:{path}"
        )
    try:
        inside = sorted(p.name for p in path.iterdir() if p.is_file() and p.name.lower().endswith(WEIGHT_SUFFIXES))
    except OSError:
        inside = []
    msg = f"{prefix + str(path)!r} is a directory, not {wanted}; give the file itself"
    if inside:
        more = " ..." if len(inside) > 5 else ""
        msg += f" (it holds {', '.join(inside[:5])}{more}), e.g. {prefix}{path / inside[0]}"
    return msg


def _unreadable(path: Path, error: BaseException) -> WeightsError:
    """The one-line error for a file that is no weights file at all (never quotes torch's advice)."""
    msg = f"{str(path)!r} is not a weights file visreps can read; it reads {ACCEPTED_FORMATS}"
    if isinstance(error, EOFError) or "zip archive" in str(error) or "central directory" in str(error):
        msg += " (this file looks truncated or damaged)"
    return WeightsError(msg)


def _needs_pickle(path: Path, error: BaseException, what: str | None) -> WeightsError:
    """The one-line error for a file only full unpickling can read, naming the opt-in."""
    if what is None and "TorchScript" in str(error):
        what = "a TorchScript archive, not a state_dict"
    elif what is None:
        found = re.search(r"GLOBAL (\S+)", str(error))
        what = (
            "a pickle holding Python objects besides tensors (a whole pickled model, or a checkpoint with custom "
            "classes" + (f"; it refers to {found.group(1)}" if found else "") + ")"
        )
    return WeightsError(
        f"{str(path)!r} is {what}: unpickling it can run arbitrary code from the file, so visreps "
        f"loads it only with {PICKLE_OPT_IN}, and only for files you trust"
    )


def _is_pickle_error(path: Path, error: BaseException) -> bool:
    """Whether torch's safe loader refused ``path`` for holding Python objects besides tensors."""
    import pickle

    if _NEEDS_PICKLE.search(str(error)):
        return True
    # a torch.save archive whose pickle uses opcodes the safe unpickler lacks (e.g. pickle_protocol=4)
    return isinstance(error, pickle.UnpicklingError) and zipfile.is_zipfile(path)


def open_checkpoint(path: str | Path, *, allow_pickle: bool = False, what: str | None = None) -> tuple[Any, bool]:
    """Read a checkpoint file; also say whether full unpickling was needed.

    Args:
        path: a safetensors file, or a file written by ``torch.save``.
        allow_pickle: if torch's safe loader (``weights_only=True``) refuses the file because it
            holds Python objects besides tensors, unpickle it fully (``weights_only=False``), which
            runs whatever code the file names: only for files you trust. Without it that is an error.
        what: how the error for such a file describes it (default: what torch found in it).

    Returns:
        ``(object, unpickled)``: what the file holds, and whether it took full unpickling.

    Raises:
        WeightsError: missing or unreadable file, or one that needs ``allow_pickle`` (one line each).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise WeightsError(directory_message(path, "a weights file"))
    if not path.is_file():
        raise WeightsError(f"weights file {str(path)!r} does not exist; give the path to a .pt/.pth/.safetensors file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu"), False
        except Exception as e:  # noqa: BLE001 - any parse failure is the same user error
            reason = " ".join(str(e).split())[:200]
            raise WeightsError(f"cannot read safetensors file {str(path)!r}: {reason}") from None
    import torch

    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says what matters
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(str(path), map_location="cpu", weights_only=True), False
    except Exception as e:  # noqa: BLE001 - torch fails in many ways on foreign files
        safe_error = e
    if not allow_pickle:
        if _is_pickle_error(path, safe_error):
            raise _needs_pickle(path, safe_error, what) from None
        raise _unreadable(path, safe_error) from None
    try:  # the caller opted in: the file is trusted
        return torch.load(str(path), map_location="cpu", weights_only=False), True
    except Exception as e:  # noqa: BLE001
        raise _unreadable(path, e) from None


def read_checkpoint(path: str | Path, *, allow_pickle: bool = False) -> Any:
    """Read a checkpoint file: a safetensors file or a ``torch.save`` file of tensors.

    Args:
        path: the file.
        allow_pickle: also read files that need full unpickling (a whole pickled model, custom
            classes), which can run arbitrary code: only for files you trust. Never a fallback:
            without it such a file is a :class:`~visreps.errors.WeightsError` naming the opt-in.

    Returns:
        What the file holds (a dict of tensors, or with ``allow_pickle`` any object).
    """
    return open_checkpoint(path, allow_pickle=allow_pickle)[0]


def extract_state_dict(obj: Any, path: str | Path = "<checkpoint>") -> dict:
    """The tensor dict inside a checkpoint, unwrapped from common containers and ``module.`` prefixes."""
    import torch

    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    for _ in range(3):
        if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            key = next((k for k in _WRAPPER_KEYS if k in obj and isinstance(obj[k], (dict, torch.nn.Module))), None)
            if key is None:
                break
            obj = obj[key]
            if isinstance(obj, torch.nn.Module):
                obj = obj.state_dict()
    if not isinstance(obj, dict) or not obj:
        raise WeightsError(f"{str(path)!r} holds no state_dict (found {type(obj).__name__})")
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    for prefix in ("module.", "_orig_mod.", "model."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def show_keys(keys: list[str], most: int = 8) -> str:
    """``"a, b, c ... (N in all)"``: the first ``most`` of ``keys``."""
    return ", ".join(keys[:most]) + (f" ... ({len(keys)} in all)" if len(keys) > most else "")


def shape_mismatches(own: dict[str, Any], state_dict: dict[str, Any], name: Callable[[str], str] = str) -> list[str]:
    """``"key (file (3, 4) vs model (4, 4))"`` for every tensor of ``own`` whose shape differs in ``state_dict``
    (``name``: how the file calls a key)."""
    return [
        f"{name(k)} (file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)})"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]


def mismatch_report(
    missing: list[str],
    unexpected: list[str],
    wrong: list[str],
    *,
    labels: tuple[str, str, str] = ("missing keys", "unexpected keys", "shape mismatches"),
    most: int = 8,
) -> str:
    """``"missing keys: a, b; shape mismatches: c (...)"``: each kind of mismatch there is, with its first keys."""
    return "; ".join(f"{lab}: {show_keys(k, most)}" for lab, k in zip(labels, (missing, unexpected, wrong)) if k)


def load_state_dict_strict(module: Any, state_dict: dict[str, Any], path: str | Path = "<checkpoint>") -> None:
    """Load with strict key and shape checking; a mismatch lists the offending keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong = shape_mismatches(own, state_dict)
    if missing or unexpected or wrong:
        raise WeightsError(
            f"weights file {str(path)!r} does not fit the architecture {type(module).__name__}: "
            + mismatch_report(missing, unexpected, wrong)
            + ". Check that the file belongs to this model id."
        )
    module.load_state_dict(state_dict, strict=True)


def load_weights_file(module: Any, path: str | Path, *, allow_pickle: bool | None = None) -> dict[str, Any]:
    """Load a weights file into ``module``; returns the metadata record of the weights.

    Args:
        module: the architecture.
        path: a state_dict file (.pt/.pth/.bin, a checkpoint dict holding one) or safetensors.
        allow_pickle: allow full unpickling (see :func:`read_checkpoint`); ``None``: as the
            :func:`~visreps.models.load_model` call in progress was told (default ``False``).
    """
    allow = pickle_allowed() if allow_pickle is None else bool(allow_pickle)
    obj, unpickled = open_checkpoint(path, allow_pickle=allow)
    sd = extract_state_dict(obj, path)
    load_state_dict_strict(module, sd, path)
    record: dict[str, Any] = {
        "kind": "file",
        "file": str(Path(path).expanduser().resolve()),
        "sha256": file_sha256(path),
    }
    if unpickled:
        record["allow_pickle"] = True  # read with full unpickling, as the user allowed
    return record


def from_module(
    module: Any, *, preprocessing: Preprocessing | None = None, device: Any = None, name: str | None = None
) -> LoadedModel:
    """Wrap a user's ``torch.nn.Module`` (already holding its weights)."""
    from ..device import resolve_device

    dev = resolve_device(device)
    module = module.to(dev).eval()
    return LoadedModel(
        module=module,
        preprocessing=preprocessing or Preprocessing(),
        model_id=f"custom:{name or type(module).__name__}",
        weights={"kind": "user"},
        device=dev,
    )


def load_pickled_model(path: str | Path, *, device: Any = None, allow_pickle: bool = False) -> LoadedModel:
    """A whole model saved with ``torch.save(model, path)``.

    Args:
        path: the file.
        device: where the model runs.
        allow_pickle: required: unpickling a whole model can run arbitrary code from the file, so
            only do it for files you trust.

    Raises:
        WeightsError: without ``allow_pickle`` (the message names the opt-in), or the file holds a
            state_dict rather than a whole model.
    """
    import torch

    if Path(path).expanduser().is_dir():
        raise WeightsError(directory_message(Path(path).expanduser(), "a whole pickled model file", "file:"))
    obj, _ = open_checkpoint(path, allow_pickle=allow_pickle, what="a whole pickled model")
    if not isinstance(obj, torch.nn.Module):
        raise WeightsError(
            f"{str(path)!r} holds a state_dict, not a whole model; load it with a model id and "
            f"weights=..., e.g. `visreps extract timm:resnet18 IMAGES --weights {path}`"
        )
    lm = from_module(obj, device=device, name=Path(path).stem)
    lm.model_id = f"file:{Path(path).expanduser().resolve()}"
    lm.weights = {
        "kind": "file",
        "file": str(Path(path).expanduser().resolve()),
        "sha256": file_sha256(path),
        "allow_pickle": True,
    }
    return lm
