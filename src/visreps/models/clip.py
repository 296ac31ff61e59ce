"""OpenAI's CLIP models (``clip:RN50``, ``clip:ViT-B-32``, ...) built by open_clip, and the code
that :mod:`visreps.models.openclip` shares.

Names are the open_clip architectures that have OpenAI's weights (``open_clip.list_pretrained()``
pairs with the tag ``openai``): RN50, RN101, RN50x4, RN50x16, RN50x64, ViT-B-32, ViT-B-16,
ViT-L-14, ViT-L-14-336. OpenAI's own spelling is accepted too (``clip:ViT-B/32``,
``clip:ViT-L/14@336px``).

The loaded module (:class:`~visreps.models._clip_modules.ImageTower`) returns the image embedding
(``encode_image``, not normalised); its layers are the visual tower under ``visual.`` (e.g.
``visual.transformer.resblocks.3``, ``visual.ln_post``, ``visual.layer4``, ``visual.attnpool``)
and ``embedding``. Text features come from :func:`visreps.text.extract_text` through
:func:`text_model`.

Weights: the checkpoint open_clip names for the (architecture, tag) pair, fetched from the Hugging
Face Hub into ``<visreps cache>/huggingface`` (or placed by hand at
``<visreps cache>/huggingface/open_clip/<hub repo>/<file>``). OpenAI's models were trained with
QuickGELU activations; the tag says so and the architecture is built with them (open_clip itself
would only warn), also for random initialisation.

Preprocessing is the model's own (open_clip's ``preprocess_cfg``): for OpenAI's models resize the
shorter side to 224 (336 for ViT-L-14-336) with bicubic interpolation, centre crop, normalise with
OpenAI's mean and std.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import MissingExtraError, ModelNotFoundError, VisrepsError, WeightsError, closest_hint
from ._base import LoadedModel, Preprocessing, TextTower, file_sha256
from ._card import ModelCard
from ._registry import register_source

#: the catalogue card of every clip model (the architecture is the model's name)
CARD = ModelCard(family="CLIP (OpenAI)", architecture="", objective="contrastive image-text",
                 training_data="WIT-400M (OpenAI, not public)",
                 weights_licence="MIT (openai/CLIP)",
                 paper="Radford et al., Learning transferable visual models from natural language supervision, "
                 "ICML 2021")  # fmt: skip


OPENAI_TAG = "openai"
INSTALL_HINT = "pip install 'visreps[clip]'"
#: pooling modes of open_clip's text towers that pick one token (``text_global_pool``)
TOKEN_POOL_TYPES = ("argmax", "eos", "first", "last")


def import_open_clip() -> Any:
    """``open_clip``, or a :class:`~visreps.errors.MissingExtraError` saying how to install it."""
    try:
        import open_clip
    except ImportError as e:
        raise MissingExtraError(f"CLIP and OpenCLIP models need the package open_clip_torch: {INSTALL_HINT}") from e
    return open_clip


# --------------------------------------------------------------------------- names


@lru_cache(maxsize=1)
def list_names() -> list[str]:
    """The architectures with OpenAI's weights (without open_clip's ``-quickgelu`` duplicates)."""
    oc = import_open_clip()
    return sorted({a for a, t in oc.list_pretrained() if t == OPENAI_TAG and not a.endswith("-quickgelu")})


def _arch(name: str) -> str:
    """open_clip's name of an OpenAI model (``ViT-B/32`` → ``ViT-B-32``, ``ViT-L/14@336px`` → ``ViT-L-14-336``)."""
    return name.strip().replace("@336px", "-336").replace("/", "-")


def check_name(name: str) -> None:
    """Raise :class:`~visreps.errors.ModelNotFoundError` unless ``name`` is one of :func:`list_names`."""
    names = list_names()
    if _arch(name) not in names:
        raise ModelNotFoundError(
            f"clip has no model {name!r}{closest_hint(_arch(name), names, prefix='clip:')}"
            f". OpenAI's CLIP models: {', '.join(names)}; other CLIP weights are openclip:ARCH/TAG "
            "(see `visreps models openclip:`)"
        )


def available_offline(name: str) -> bool:
    """Whether OpenAI's checkpoint of ``name`` is already in the cache."""
    return _arch(name) in list_names() and find_checkpoint(_arch(name), OPENAI_TAG) is not None


@register_source("clip", optional=True)
def load(
    name: str, *, pretrained: bool = True, weights: str | None = None, seed: int = 0, device: Any = None
) -> LoadedModel:
    """Load ``clip:<name>``: OpenAI's weights, a seeded random initialisation, or a weights file.

    Args:
        name: an architecture of :func:`list_names` (or OpenAI's spelling, ``ViT-B/32``).
        pretrained: load OpenAI's weights (``False``: random initialisation with ``seed``).
        weights: a state_dict file of the whole open_clip model to load instead.
        seed: seed of the random initialisation.
        device: ``auto``, ``cpu``, ``cuda``, ...

    Returns:
        A :class:`~visreps.models.LoadedModel` (see the module docstring for its layers).
    """
    check_name(name)
    return build(
        f"clip:{_arch(name)}", _arch(name), OPENAI_TAG, pretrained=pretrained, weights=weights, seed=seed, device=device
    )


# --------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class CheckpointSource:
    """Where open_clip gets the checkpoint of an (architecture, tag) pair.

    Attributes:
        url: the address to download it from (a Hugging Face Hub file, or a plain URL).
        hub_repo: the Hub repository (``None`` for a plain URL).
        filenames: the file names accepted, preferred first (safetensors before pickles).
        manual_path: where a file downloaded by hand goes (under the name of the download; a
            file under another name of ``filenames`` in the same folder is found too).
    """

    url: str
    hub_repo: str | None
    filenames: tuple[str, ...]
    manual_path: Path


def checkpoint_source(arch: str, tag: str) -> CheckpointSource:
    """The checkpoint of ``arch`` with pretrained ``tag``, as open_clip's pretrained config names it."""
    from ..cache import hf_cache_dir

    oc = import_open_clip()
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    cfg = oc.get_pretrained_cfg(arch, tag)
    hub = cfg.get("hf_hub") or ""
    if hub:
        repo, fname = os.path.split(hub)
        fname = fname or HF_WEIGHTS_NAME
        # open_clip tries a safetensors twin of the file first
        names = [HF_SAFE_WEIGHTS_NAME] if fname == HF_WEIGHTS_NAME else []
        if fname.endswith((".bin", ".pth")) and fname != HF_WEIGHTS_NAME:
            names.append(fname[:-4] + ".safetensors")
        names.append(fname)
        return CheckpointSource(
            url=f"https://huggingface.co/{repo}/resolve/main/{fname}",
            hub_repo=repo,
            filenames=tuple(names),
            manual_path=hf_cache_dir() / "open_clip" / repo / fname,
        )
    url = cfg.get("url") or ""
    if not url:
        raise WeightsError(f"open_clip has no download for {arch} with weights {tag!r}; use random weights (--random)")
    # open_clip stores plain downloads flat in its cache directory
    fname = os.path.basename(url)
    return CheckpointSource(url=url, hub_repo=None, filenames=(fname,), manual_path=hf_cache_dir() / fname)


def find_checkpoint(arch: str, tag: str) -> Path | None:
    """The checkpoint file of (``arch``, ``tag``) if it is on this machine: placed by hand or in the Hub cache."""
    from ..cache import hf_cache_dir

    src = checkpoint_source(arch, tag)
    for fname in src.filenames:
        path = src.manual_path.with_name(fname)
        if path.is_file():
            return path
    if src.hub_repo is None:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - open_clip depends on huggingface_hub
        return None
    for fname in src.filenames:
        hit = try_to_load_from_cache(src.hub_repo, fname, cache_dir=str(hf_cache_dir()))
        if isinstance(hit, str):
            return Path(hit)
    return None


def fetch_checkpoint(arch: str, tag: str, model_id: str) -> Path:
    """The checkpoint file of (``arch``, ``tag``): from the cache, else downloaded into it.

    Raises:
        WeightsError: offline and not cached, or the download failed; the message names the file
            to download and where to put it.
    """
    from ..cache import hf_cache_dir, missing_weights_error, offline

    found = find_checkpoint(arch, tag)
    if found is not None:
        return found
    src = checkpoint_source(arch, tag)
    if offline():
        raise missing_weights_error(model_id, src.manual_path, src.url)
    oc = import_open_clip()
    try:
        path = oc.pretrained.download_pretrained(oc.get_pretrained_cfg(arch, tag), cache_dir=str(hf_cache_dir()))
    except Exception as e:
        raise missing_weights_error(f"{model_id} ({e.__class__.__name__})", src.manual_path, src.url) from e
    if not path or not Path(path).is_file():
        raise missing_weights_error(model_id, src.manual_path, src.url)
    return Path(path)


# --------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class OpenClipPreprocessing(Preprocessing):
    """open_clip's resize modes that :class:`~visreps.models.Preprocessing` lacks.

    ``squash``: resize both sides to ``resize`` (the aspect ratio is not kept), no crop.
    ``longest``: resize the longer side to ``resize``, then pad to a ``crop`` square with
    ``fill_color``. The transform is open_clip's own (``open_clip.transform.image_transform``).
    """

    resize_mode: str = "squash"
    fill_color: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["resize_mode"] = self.resize_mode
        if self.resize_mode == "longest":
            d["fill_color"] = self.fill_color
        return d

    def input_size(self) -> tuple[int, int, int]:
        side = self.resize or self.crop or 224
        return (3, side, side)

    def build(self) -> Callable[[Any], Any]:
        from open_clip.transform import image_transform

        transform: Any = image_transform(
            self.input_size()[-1],
            is_train=False,
            mean=self.mean,
            std=self.std,
            resize_mode=self.resize_mode,
            interpolation=self.interpolation,
            fill_color=self.fill_color,
        )
        return transform


def preprocessing_from_open_clip(cfg: dict[str, Any], model_id: str = "") -> Preprocessing:
    """Translate open_clip's ``preprocess_cfg`` (``model.visual.preprocess_cfg``) into a Preprocessing.

    ``shortest`` (OpenAI's and most models) is resize-shorter-side → centre crop, a plain
    :class:`~visreps.models.Preprocessing`; ``squash`` and ``longest`` give an
    :class:`OpenClipPreprocessing`.
    """
    size = cfg.get("size", 224)
    if isinstance(size, (tuple, list)):
        if len(set(size)) != 1:
            raise VisrepsError(f"{model_id} takes non-square {tuple(size)} images, which visreps does not support yet")
        size = size[0]
    size = int(size)
    interp = cfg.get("interpolation") or "bicubic"
    interp = "bilinear" if interp == "bilinear" else "bicubic"  # open_clip evaluates 'random' as bicubic
    mean = tuple(float(m) for m in cfg["mean"])
    std = tuple(float(s) for s in cfg["std"])
    mode = cfg.get("resize_mode") or "shortest"
    if mode == "shortest":
        return Preprocessing(resize=size, crop=size, mean=mean, std=std, interpolation=interp)
    if mode == "squash":
        return OpenClipPreprocessing(resize=size, crop=None, mean=mean, std=std, interpolation=interp, resize_mode=mode)
    fill = int(cfg.get("fill_color") or 0)
    return OpenClipPreprocessing(
        resize=size, crop=size, mean=mean, std=std, interpolation=interp, resize_mode=mode, fill_color=fill
    )


# --------------------------------------------------------------------------- building


class LazyTokenizer:
    """open_clip's tokenizer of an architecture, built on first use.

    Calling it is calling the tokenizer: ``tokenizer(["a dog", "a cat"])`` → a LongTensor
    (n, context_length). Some tokenizers (Hugging Face ones) need files from the Hub, so they are
    only fetched when text is encoded.
    """

    def __init__(self, arch: str) -> None:
        self.arch = arch
        self._tokenizer: Any = None

    def get(self) -> Any:
        """open_clip's tokenizer (built, and its files fetched, on the first call)."""
        if self._tokenizer is None:
            from ..cache import hf_cache_dir

            oc = import_open_clip()
            try:
                self._tokenizer = oc.get_tokenizer(self.arch, cache_dir=str(hf_cache_dir()))
            except Exception as e:
                raise WeightsError(
                    f"the tokenizer of {self.arch} could not be loaded ({e.__class__.__name__}: {e}); "
                    "it may need files from the Hugging Face Hub: run once with network access"
                ) from e
        return self._tokenizer

    @property
    def context_length(self) -> int:
        return int(self.get().context_length)

    def __call__(self, texts: Sequence[str]) -> Any:
        return self.get()(list(texts))


def seq_first_modules(module: Any) -> set[str]:
    """Names of the modules of ``module`` whose outputs are sequence-first (tokens, batch, dim).

    open_clip's ``Transformer`` with ``batch_first=False`` runs its residual blocks on (L, N, D)
    tensors (it transposes on the way in and out, so its own output is batch-first); every module
    under its ``resblocks`` then outputs sequence-first. In open_clip 3.x every tower is built
    batch-first, so this is usually empty.
    """
    found: set[str] = set()
    for name, mod in module.named_modules():
        if getattr(mod, "batch_first", True) is False and hasattr(mod, "resblocks"):
            prefix = f"{name}.resblocks." if name else "resblocks."
            found |= {n for n, _ in module.named_modules() if n.startswith(prefix)}
    return found


def _prefix_tokens(visual: Any) -> int | None:
    """Class/register tokens before the patch tokens of a transformer visual tower (None: no tokens)."""
    trunk = getattr(visual, "trunk", None)  # a timm tower
    if trunk is not None and hasattr(trunk, "num_prefix_tokens"):
        return int(trunk.num_prefix_tokens)
    if getattr(visual, "class_embedding", None) is not None:
        return 1
    return None


@contextlib.contextmanager
def _quiet_logging():
    """Silence open_clip's root-logger warnings ("initialized randomly") while it builds a model."""
    import logging

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _create_pretrained(oc: Any, arch: str, tag: str | None, model_id: str, options: dict) -> tuple[Any, dict]:
    """The open_clip model of ``arch`` with the checkpoint of ``tag`` (fetched into the cache), and its record."""
    if tag is None:
        raise WeightsError(f"{model_id} has no pretrained weights without a tag; use random weights (--random)")
    path = fetch_checkpoint(arch, tag, model_id)
    try:
        model = oc.create_model(arch, pretrained=str(path), **options)
    except Exception as e:
        raise WeightsError(
            f"cannot load the checkpoint {str(path)!r} into {model_id}: {e.__class__.__name__}: {e}; "
            "delete the file to download it again"
        ) from e
    record = {
        "kind": "pretrained",
        "name": tag,
        "arch": arch,
        "url": checkpoint_source(arch, tag).url,
        "file": str(path),
        "sha256": file_sha256(path),
        "quick_gelu": options["force_quick_gelu"],
    }
    return model, record


def _create_random(oc: Any, arch: str, model_id: str, options: dict, seed: int) -> tuple[Any, dict]:
    """The open_clip model of ``arch`` initialised under ``torch.manual_seed(seed)``, and its record."""
    import torch

    try:
        with torch.random.fork_rng(devices=[]), _quiet_logging():
            torch.manual_seed(seed)
            model = oc.create_model(arch, pretrained=None, **options)
    except Exception as e:
        raise VisrepsError(
            f"open_clip could not build {model_id}: {e.__class__.__name__}: {e} (architectures with a "
            "Hugging Face text tower need its config from the Hub: run once with network access)"
        ) from e
    return model, {"kind": "random", "seed": seed}


def build(
    model_id: str, arch: str, tag: str | None, *, pretrained: bool, weights: str | None, seed: int, device: Any = None
) -> LoadedModel:
    """Build open_clip's ``arch`` with the weights of ``tag`` (or random/file weights) as a LoadedModel.

    Args:
        model_id: the id recorded and used in messages (``clip:ViT-B-32``).
        arch: an architecture of ``open_clip.list_models()``.
        tag: a pretrained tag of ``arch``; it also decides QuickGELU and the preprocessing. ``None``:
            open_clip's defaults (random or file weights only).
        pretrained: load the tag's checkpoint; ``False``: seeded random initialisation.
        weights: a state_dict file of the whole open_clip model (overrides ``pretrained``).
        seed: seed of the random initialisation.
        device: where the model runs.

    Returns:
        The LoadedModel: ``module`` is an :class:`~visreps.models._clip_modules.ImageTower`;
        ``text`` is a :class:`~visreps.models._base.TextTower` with the open_clip model, a
        :class:`LazyTokenizer` and the text pooling; ``seq_first`` and, for transformer towers,
        ``prefix_tokens`` are set.
    """
    oc = import_open_clip()

    from ..cache import hf_cache_dir
    from ..device import resolve_device
    from ._clip_modules import ImageTower
    from .custom import load_weights_file

    dev = resolve_device(device)
    cfg = oc.get_pretrained_cfg(arch, tag) if tag else {}
    quick_gelu = bool(cfg.get("quick_gelu", False))
    options: dict[str, Any] = dict(
        force_quick_gelu=quick_gelu,
        # the tag's preprocessing; the image size comes from the architecture
        force_preprocess_cfg={
            k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode", "fill_color") if k in cfg
        },
        pretrained_image=False,
        pretrained_text=False,
        cache_dir=str(hf_cache_dir()),
    )
    if pretrained and weights is None:
        model, record = _create_pretrained(oc, arch, tag, model_id, options)
    else:
        model, record = _create_random(oc, arch, model_id, options, seed)
        if weights is not None:
            record = load_weights_file(model, weights)
    model: Any = model.to(dev).eval()
    wrapper = ImageTower(model).to(dev).eval()
    return LoadedModel(
        module=wrapper,
        preprocessing=preprocessing_from_open_clip(model.visual.preprocess_cfg, model_id),
        model_id=model_id,
        weights=record,
        device=dev,
        prefix_tokens=_prefix_tokens(model.visual),
        seq_first=frozenset(seq_first_modules(wrapper)),
        text=TextTower(clip_model=model, tokenizer=LazyTokenizer(arch), text_pool=_text_pool(model)),
    )


# --------------------------------------------------------------------------- text


@dataclass
class TextModel(LoadedModel):
    """The text tower of a CLIP model, shaped like a LoadedModel so extraction's hooks apply.

    ``module`` is a :class:`~visreps.models._clip_modules.TextTower` taking token ids;
    :meth:`dummy_input` is one empty text. ``text`` is the CLIP model's
    :class:`~visreps.models._base.TextTower` (tokenizer, text pooling).
    """

    @property
    def tower(self) -> TextTower:
        """``text``, which a TextModel always has."""
        if self.text is None:  # pragma: no cover - text_model always sets it
            raise VisrepsError(f"{self.model_id} has no text tower")
        return self.text

    @property
    def text_pool(self) -> tuple[str, int | None] | None:
        """``(pool_type, eos_id)`` of the model's own text pooling when it picks one token (``None`` otherwise)."""
        return self.tower.text_pool

    def tokenize(self, texts: Sequence[str]) -> Any:
        """Token ids (n, context_length) of ``texts`` on the model's device."""
        return self.tower.tokenizer(texts).to(self.device)

    def dummy_input(self, n: int = 1) -> Any:
        """``n`` empty texts as token ids."""
        return self.tokenize([""] * n)


def _text_pool(clip_model: Any) -> tuple[str, int | None] | None:
    """``(pool_type, eos_id)`` of the token the model's text embedding is read from, if it picks one."""
    if hasattr(clip_model, "text_pool_type"):  # OpenAI-style CLIP: the text tower is inlined
        pool, eos = clip_model.text_pool_type, getattr(clip_model, "text_eos_id", None)
    else:
        text = getattr(clip_model, "text", None)
        pool, eos = getattr(text, "pool_type", None), getattr(text, "eos_id", None)
    return (pool, eos) if pool in TOKEN_POOL_TYPES else None


def text_model(lm: LoadedModel) -> TextModel:
    """The text side of a CLIP/OpenCLIP LoadedModel (same weights, same device).

    Raises:
        VisrepsError: ``lm`` is not a CLIP model (it has no text tower).
    """
    from ._clip_modules import TextTower as TextTowerModule

    text = lm.text
    if text is None or not hasattr(text.clip_model, "encode_text"):
        raise VisrepsError(
            f"text features need a CLIP model with a text tower (clip:ViT-B-32, openclip:ARCH/TAG); "
            f"{lm.model_id} has none"
        )
    tower = TextTowerModule(text.clip_model).to(lm.device).eval()
    return TextModel(
        module=tower,
        preprocessing=lm.preprocessing,
        model_id=lm.model_id,
        weights=lm.weights,
        device=lm.device,
        seq_first=frozenset(seq_first_modules(tower)),
        text=text,
    )
