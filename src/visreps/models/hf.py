"""Vision models of the Hugging Face ``transformers`` library: ``hf:ORG/NAME[@REVISION]`` and ``hf:FOLDER``.

Ids:

* ``hf:ORG/NAME`` (e.g. ``hf:facebook/dinov2-small``): a repository of the Hugging Face Hub,
  downloaded into ``<visreps cache>/huggingface`` (:func:`visreps.cache.hf_cache_dir`);
  ``hf:ORG/NAME@REVISION`` pins a branch, tag or commit. The weights record of the metadata keeps
  the requested revision and the commit it resolved to. With visreps offline
  (``VISREPS_OFFLINE=1``, ``--offline``) only the cache is read, and a missing file is a
  :class:`~visreps.errors.WeightsError` naming the repository, the revision and the cache folder.
* ``hf:FOLDER``: a folder written by ``save_pretrained`` (``config.json``, the weights, and
  optionally ``preprocessor_config.json``). An existing folder wins over a Hub id of the same spelling.

Pretrained means loaded: weights the checkpoint lacks are accepted only under :data:`OPTIONAL_PREFIXES`
(the pooler a classifier checkpoint does not save; listed as ``newly_initialized``); anything else missing
is a :class:`~visreps.errors.WeightsError`, as are weights of other sizes, a damaged or pickled weights file
(never unpickled) and a config that is not an image model (BERT: "is a text model"), each in one line.

The Hub cannot be enumerated, so ``hf`` lists no names; any syntactically valid id is accepted.

The module is ``transformers.AutoModel`` of the config (``ViTModel``, ``Dinov2Model``,
``ConvNextModel``, ...). A dual image-text model (CLIP, SigLIP, any config with a ``vision_config``)
gives its vision tower, the ``AutoModel`` of ``config.vision_config`` (``CLIPVisionModel``,
``SiglipVisionModel``); its weights are read from the dual checkpoint. Layers are the module names of
``named_modules()`` in the installed transformers version (transformers 5: ``embeddings``,
``layers.11`` of a ViT, ``encoder.layer.11`` of a DINOv2, ``encoder.stages.2`` of a ConvNeXt,
``layernorm``, ``pooler``); ``visreps layers hf:...`` lists them.

Token pooling knows the tokens before the patch tokens (:func:`count_prefix_tokens`): ViT, BEiT,
CLIP 1 (class token), DeiT 2 (class and distillation token), DINOv2 1 + ``num_register_tokens``,
SigLIP and Swin 0 (``cls`` is then an error, ``patch_mean`` averages all tokens); convolutional
networks (ConvNeXt, ResNet) output maps, not tokens.

Preprocessing is the model's own image processor (``AutoImageProcessor``), expressed as an
:class:`HFPreprocessing`: resize (shortest edge, or both sides to a square), centre crop, rescale,
normalise, computed exactly as transformers' torchvision image processors compute them (uint8
antialiased resize, crop offset ``int((H - h) / 2)``, fused ``(x - mean/r) / (std/r)``). At load time
the translation is checked against the processor on three probe images; a processor it cannot express
(a non-square size, padding, a custom ``_preprocess``, a PIL-backend processor) is run itself, image
by image (``resize_mode="processor"``, recorded in the metadata).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ModelNotFoundError, VisrepsError, WeightsError
from ._base import LoadedModel, file_sha256
from ._hf_hub import (
    INSTALL_HINT,
    WEIGHT_FILES,
    HFName,
    _cached_file,
    _commit,
    _hub_kwargs,
    _missing,
    _quiet,
    import_transformers,
    parse_name,
)
from ._hf_preprocessing import (
    PIXEL_TOLERANCE,
    HFPreprocessing,
    HFTransform,
    ProcessorTransform,
    default_preprocessing,
    preprocessing_of,
    probe_images,
    translate_processor,
)
from ._registry import register_source

__all__ = [
    "INSTALL_HINT",
    "OPTIONAL_PREFIXES",
    "PIXEL_TOLERANCE",
    "PREFIX_TOKENS",
    "WEIGHT_FILES",
    "HFName",
    "HFPreprocessing",
    "HFTransform",
    "ProcessorTransform",
    "architecture",
    "available_offline",
    "check_name",
    "count_prefix_tokens",
    "default_preprocessing",
    "import_transformers",
    "list_names",
    "load",
    "parse_name",
    "preprocessing_of",
    "probe_images",
    "translate_processor",
]


def list_names() -> list[str]:
    """Nothing: the Hub cannot be enumerated (any valid ``hf:ORG/NAME`` or ``hf:FOLDER`` loads)."""
    return []


def check_name(name: str) -> None:
    """Raise :class:`~visreps.errors.ModelNotFoundError` unless ``name`` is a valid Hub id or an existing folder."""
    parse_name(name)


def available_offline(name: str) -> bool:
    """Whether ``hf:name`` loads without the network: the folder exists, or config and weights are in the cache."""
    try:
        hf = parse_name(name)
    except ModelNotFoundError:
        return False
    if hf.folder is not None:
        return True
    assert hf.repo is not None
    return _cached_file(hf.repo, "config.json", hf.revision) is not None and any(
        _cached_file(hf.repo, f, hf.revision) is not None for f in WEIGHT_FILES
    )


# --------------------------------------------------------------------------- the module


#: prefix tokens (class, distillation, register) per ``model_type``; ``None`` marks convolutional networks
PREFIX_TOKENS: dict[str, Callable[[Any], int | None]] = {
    "vit": lambda c: 1,
    "deit": lambda c: 2,
    "beit": lambda c: 1,
    "data2vec-vision": lambda c: 1,
    "dinov2": lambda c: 1,
    "dinov2_with_registers": lambda c: 1 + int(getattr(c, "num_register_tokens", 0)),
    "clip_vision_model": lambda c: 1,
    "siglip_vision_model": lambda c: 0,
    "siglip2_vision_model": lambda c: 0,
    "swin": lambda c: 0,
    "swinv2": lambda c: 0,
    "convnext": lambda c: None,
    "convnextv2": lambda c: None,
    "resnet": lambda c: None,
}


def count_prefix_tokens(module: Any, config: Any) -> int:
    """Tokens before the patch tokens in the outputs of ``module``: :data:`PREFIX_TOKENS` by
    ``config.model_type``, else counted from the embeddings' ``cls_token``/``class_embedding``,
    ``distillation_token`` and ``register_tokens``. Convolutional networks: 0 (their maps are not tokens)."""
    rule = PREFIX_TOKENS.get(getattr(config, "model_type", ""))
    if rule is not None:
        return rule(config) or 0
    emb = getattr(module, "embeddings", None)
    n = sum(getattr(emb, a, None) is not None for a in ("cls_token", "class_embedding", "distillation_token"))
    reg = getattr(emb, "register_tokens", None)
    return n + (int(reg.shape[1]) if reg is not None and getattr(reg, "dim", lambda: 0)() == 3 else 0)


def architecture(config: Any, where: str = "the config") -> tuple[Any, Any]:
    """``(model class, its config)``: the ``AutoModel`` class of ``config``, or of its ``vision_config``
    for a dual image-text model (CLIP, SigLIP: the vision tower)."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    cfg = getattr(config, "vision_config", None) or config
    _check_vision(cfg, where)
    try:
        return MODEL_MAPPING[type(cfg)], cfg
    except KeyError:
        raise VisrepsError(
            f"transformers has no AutoModel for model_type {getattr(cfg, 'model_type', '?')!r}; "
            "hf: loads vision backbones (ViT, DeiT, DINOv2, Swin, ConvNeXt, BEiT, CLIP/SigLIP vision towers, ...)"
        ) from None


def _check_vision(cfg: Any, where: str) -> None:
    """Refuse the config of a text model (BERT, GPT-2: a vocabulary, no image size or input channels)."""
    from transformers.models.auto import modeling_auto

    kind = getattr(cfg, "model_type", None) or "?"
    image_types = getattr(modeling_auto, "MODEL_FOR_IMAGE_MAPPING_NAMES", {})
    if kind in image_types or any(getattr(cfg, a, None) is not None for a in ("image_size", "num_channels")):
        return
    text_types = [
        getattr(modeling_auto, n, {})
        for n in ("MODEL_FOR_MASKED_LM_MAPPING_NAMES", "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES")
    ]
    if not (getattr(cfg, "vocab_size", None) or any(kind in t for t in text_types)):
        return  # not known as a text model: an image model transformers does not list as one is let through
    raise VisrepsError(
        f"{where} (model_type {kind!r}) is a text model: it has no image size or input channels; hf: loads vision "
        "backbones (ViT, DeiT, DINOv2, Swin, ConvNeXt, BEiT, CLIP/SigLIP vision towers, ...); for CLIP text "
        "features use `visreps text`"
    )


def _load_config(hf: HFName) -> Any:
    transformers = import_transformers()
    try:
        with _quiet():
            return transformers.AutoConfig.from_pretrained(hf.source, **_hub_kwargs(hf))
    except (OSError, ValueError) as e:
        if hf.folder is not None:
            raise WeightsError(f"cannot read the config of {hf.describe()}: {' '.join(str(e).split())[:300]}") from e
        raise _missing(hf, e) from e


def _load_processor(hf: HFName, config: Any) -> tuple[HFPreprocessing, dict[str, Any]]:
    """The preprocessing of the model's image processor (defaults when it has none)."""
    transformers = import_transformers()
    try:
        with _quiet():
            processor = transformers.AutoImageProcessor.from_pretrained(hf.source, **_hub_kwargs(hf))
    except (OSError, ValueError, KeyError) as e:
        note = f"no image processor ({type(e).__name__}): ImageNet preprocessing at the model's image size"
        return default_preprocessing(config), {"hf_preprocessing_note": note}
    return preprocessing_of(processor)


def _weights_record(hf: HFName, info: dict[str, Any], seed: int) -> dict[str, Any]:
    """The metadata ``weights`` entry of pretrained weights (Hub: revision and commit; folder: file hashes)."""
    record: dict[str, Any] = {"kind": "pretrained"}
    if hf.folder is not None:
        record["folder"] = str(hf.folder)
        record["files"] = {f: file_sha256(hf.folder / f) for f in WEIGHT_FILES if (hf.folder / f).is_file()}
    else:
        record.update(repo=hf.repo, revision=hf.revision or "main", commit=_commit(hf))
    missing = sorted(info.get("missing_keys") or [])
    if missing:  # e.g. the pooler of a ViTModel read from a classifier checkpoint
        record["newly_initialized"] = missing
        record["seed"] = seed
    return record


def _build(hf: HFName, config: Any, *, pretrained: bool, weights: str | None, seed: int) -> tuple[Any, dict]:
    """The module and its weights record."""
    import torch

    from .custom import load_weights_file

    cls, cfg = architecture(config, f"the config of {hf.describe()}")
    with torch.random.fork_rng(devices=[]), _quiet():
        torch.manual_seed(seed)
        if pretrained and weights is None:
            module, info = _from_pretrained(cls, hf)
            _check_loaded(hf, info)
            return module, _weights_record(hf, info, seed)
        module = cls._from_config(cfg) if hasattr(cls, "_from_config") else cls(cfg)
    origin: dict[str, Any] = {"config": hf.describe()}
    if hf.repo is not None:
        origin["commit"] = _commit(hf)
    if weights is not None:
        try:
            return module, {**load_weights_file(module, weights), **origin}
        except WeightsError as e:
            if Path(weights).name not in WEIGHT_FILES:
                raise
            folder = Path(weights).expanduser().resolve().parent
            raise WeightsError(
                f"{e}; {Path(weights).name} is a file written by save_pretrained, in transformers' own key layout: "
                f"load its folder as hf:{folder} (without --weights)"
            ) from None
    return module, {"kind": "random", "seed": seed, **origin}


#: parameters a checkpoint may lack (initialised from the seed and listed as ``newly_initialized``): the
#: pooler of a backbone read from a classifier checkpoint (``ViTForImageClassification`` saves none)
OPTIONAL_PREFIXES = ("pooler.",)


def _weights_file(hf: HFName) -> str:
    """How messages name the weights of ``hf``: the folder's weights file, or the Hub id."""
    if hf.folder is not None:
        found = [f for f in WEIGHT_FILES if (hf.folder / f).is_file()]
        return repr(str(hf.folder / found[0])) if found else hf.describe()
    return hf.describe()


def _from_pretrained(cls: Any, hf: HFName) -> tuple[Any, dict[str, Any]]:
    """``cls.from_pretrained`` with every failure as one line naming the file (transformers raises OSError,
    RuntimeError for other sizes, safetensors' SafetensorError for a damaged file, UnpicklingError, ...)."""
    import pickle

    try:
        return cls.from_pretrained(hf.source, output_loading_info=True, **_hub_kwargs(hf))
    except pickle.UnpicklingError:
        raise WeightsError(
            f"{_weights_file(hf)} is a pickle holding Python objects besides tensors: unpickling it can run "
            "arbitrary code, so hf: does not load it; if you trust the file, load the model in Python and save it "
            "again with save_pretrained (safetensors)"
        ) from None
    except OSError as e:
        if hf.folder is None:
            raise _missing(hf, e) from e
        raise WeightsError(
            f"{hf.describe()} has no weights transformers can read ({' '.join(str(e).split())[:200]}); "
            f"save the model there with save_pretrained, or use random weights (--random)"
        ) from e
    except Exception as e:  # noqa: BLE001 - RuntimeError (sizes), SafetensorError, EOFError, network errors, ...
        if isinstance(e, RuntimeError) and ("mismatched" in str(e) or "size mismatch" in str(e)):
            raise WeightsError(
                f"the weights {_weights_file(hf)} have other sizes than the config.json of {hf.describe()} "
                "describes (e.g. another hidden_size); give the config.json the weights were saved with"
            ) from None
        if hf.folder is None:
            raise _missing(hf, e) from None
        reason = " ".join(str(e).split())[:160]
        raise WeightsError(
            f"cannot read the weights {_weights_file(hf)} ({type(e).__name__}: {reason}); the file is damaged or "
            "truncated: save the model again with save_pretrained"
        ) from None


def _check_loaded(hf: HFName, info: dict[str, Any]) -> None:
    """Pretrained means loaded: refuse weights the checkpoint lacks beyond :data:`OPTIONAL_PREFIXES`."""
    missing = sorted(k for k in info.get("missing_keys") or [] if not k.startswith(OPTIONAL_PREFIXES))
    if not missing:
        return
    from .custom import show_keys

    show = show_keys(missing, 6)
    raise WeightsError(
        f"the weights {_weights_file(hf)} lack {len(missing)} parameter(s) of the architecture its config.json "
        f"describes ({show}): they would be random, not pretrained; check that the weights belong to this config, "
        "or use random weights on purpose (--random)"
    )


@register_source("hf", optional=True)
def load(
    name: str, *, pretrained: bool = True, weights: str | None = None, seed: int = 0, device: Any = None
) -> LoadedModel:
    """Load ``hf:ORG/NAME[@REVISION]`` or ``hf:FOLDER``: pretrained, a weights file, or random.

    Args:
        name: a Hub id (with an optional ``@revision``) or a folder written by ``save_pretrained``.
        pretrained: load the saved weights; ``False``: ``AutoModel`` of the config, initialised
            under ``torch.manual_seed(seed)`` (the same seed gives the same numbers).
        weights: a state_dict file (.safetensors, .pt/.bin) of the module (for a dual model, of its
            vision tower), loaded strictly into the architecture of the config.
        seed: the seed of a random initialisation (also of weights a checkpoint lacks).
        device: ``auto``, ``cpu``, ``cuda``, ...

    Raises:
        MissingExtraError: transformers is not installed.
        WeightsError: files that are not in the cache offline or cannot be downloaded (naming the
            repository, revision and cache folder), weights missing beyond the pooler, of other
            sizes, damaged or pickled, or a weights file that does not fit.
        VisrepsError: a config that is not an image model (e.g. a text model).
    """
    transformers = import_transformers()
    hf = parse_name(name)
    config = _load_config(hf)
    module, record = _build(hf, config, pretrained=pretrained, weights=weights, seed=seed)
    prep, extra = _load_processor(hf, config)
    cfg = getattr(config, "vision_config", None) or config
    prefix = count_prefix_tokens(module, cfg)
    record["architecture"] = {
        "class": type(module).__name__,
        "model_type": getattr(cfg, "model_type", None),
        "prefix_tokens": prefix,
        "transformers": transformers.__version__,
    }
    return LoadedModel.on_device(
        module,
        device,
        preprocessing=prep,
        model_id=f"hf:{str(name).strip()}",
        weights=record,
        prefix_tokens=prefix,
        preprocessing_extra=extra,
    )
