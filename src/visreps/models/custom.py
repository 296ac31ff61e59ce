"""The user's own modules and checkpoints: state_dicts (.pt/.pth/.bin), safetensors, pickled models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import WeightsError
from ._base import LoadedModel, Preprocessing, file_sha256

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module", "weights")


WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".tar", ".h5", ".keras")


def looks_like_file(weights) -> bool:
    """Whether ``weights`` names a file (it exists, has a path separator or a weights suffix) rather than a tag."""
    s = str(weights)
    return Path(s).expanduser().exists() or "/" in s or "\\" in s or s.lower().endswith(WEIGHT_SUFFIXES)


def read_checkpoint(path: str | Path) -> Any:
    """Read a checkpoint file: a safetensors file, a state_dict, or a whole pickled model."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file {str(path)!r} does not exist; give the path to a .pt/.pth/.safetensors file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as e:  # noqa: BLE001 - any parse failure is the same user error
            raise WeightsError(f"cannot read safetensors file {str(path)!r}: {e}") from e
    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as first:  # noqa: BLE001
        try:
            # a whole pickled nn.Module needs full unpickling: only do this for files you trust
            return torch.load(str(path), map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001
            raise WeightsError(f"cannot read weights file {str(path)!r}: {first}") from e


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
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def load_state_dict_strict(module, state_dict: dict, path: str | Path = "<checkpoint>") -> None:
    """Load with strict key and shape checking; a mismatch lists the offending keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong = [
        f"{k} (file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)})"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or wrong:
        def show(keys):
            return ", ".join(keys[:8]) + (f" ... ({len(keys)} in all)" if len(keys) > 8 else "")

        parts = []
        if missing:
            parts.append(f"missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {show(unexpected)}")
        if wrong:
            parts.append(f"shape mismatches: {show(wrong)}")
        raise WeightsError(
            f"weights file {str(path)!r} does not fit the architecture {type(module).__name__}: "
            + "; ".join(parts)
            + ". Check that the file belongs to this model id."
        )
    module.load_state_dict(state_dict, strict=True)


def load_weights_file(module, path: str | Path) -> dict:
    """Load a weights file into ``module``; returns the metadata record of the weights."""
    obj = read_checkpoint(path)
    sd = extract_state_dict(obj, path)
    load_state_dict_strict(module, sd, path)
    return {"kind": "file", "file": str(Path(path).expanduser().resolve()), "sha256": file_sha256(path)}


def from_module(module, *, preprocessing: Preprocessing | None = None, device=None, name: str | None = None) -> LoadedModel:
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


def load_pickled_model(path: str | Path, *, device=None) -> LoadedModel:
    """A whole model saved with ``torch.save(model, path)`` (only load files you trust)."""
    import torch

    obj = read_checkpoint(path)
    if not isinstance(obj, torch.nn.Module):
        raise WeightsError(
            f"{str(path)!r} holds a state_dict, not a whole model; load it with a model id and "
            f"weights=..., e.g. `visreps extract timm:resnet18 IMAGES --weights {path}`"
        )
    lm = from_module(obj, device=device, name=Path(path).stem)
    lm.model_id = f"file:{Path(path).expanduser().resolve()}"
    lm.weights = {"kind": "file", "file": str(Path(path).expanduser().resolve()), "sha256": file_sha256(path)}
    return lm
