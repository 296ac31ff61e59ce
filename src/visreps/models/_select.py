"""Layer selection by pattern: glob patterns over layer names and the word ``blocks``.

``--layers`` (Python ``layers=``) takes, besides plain names, comma-separated

* glob patterns over the names ``visreps layers MODEL`` prints: ``*`` matches any run of characters
  within one dotted part of a name, ``?`` one character of it, ``[...]`` one of a set, and ``**``
  any run of characters across dots. ``'layer?.*'`` is every block of a ResNet (``layer1.0`` ...
  ``layer4.2``) but not their sub-modules (``layer1.0.conv1``); ``'layer4.**'`` is everything below
  ``layer4``. Matches come in model order; a pattern that matches nothing is an error.
* ``blocks``: the model's main stages or blocks, as :data:`BLOCK_RULES` defines them per family
  (the first rule that finds names in the model applies). The word wins over a module that happens
  to be named ``blocks`` (timm's ViTs): its output is that of the last block anyway.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..errors import LayerNotFoundError, VisrepsError, closest_hint

BLOCKS = "blocks"
_GLOB = re.compile(r"[*?\[]")

#: ``(family, member regex, names added after the members when the model has them)``, in the order tried
BLOCK_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("ResNet family (torchvision, timm): every residual block layerN.M, then the global pool",
     r"layer\d+\.\d+", ("avgpool", "global_pool")),
    ("torchvision ViT: every transformer block", r"encoder\.layers\.encoder_layer_\d+", ()),
    ("timm ViT/DeiT/EfficientNet/MobileNet...: every entry of blocks (transformer blocks, or stages)",
     r"blocks\.\d+", ()),
    ("timm ConvNeXt/RegNet/...: every stage", r"stages\.\d+", ()),
    ("CORnet: the output of each area", r"(V1|V2|V4|IT)\.output", ()),
    ("Hugging Face ViT-like encoders: every layer of the encoder", r"(.+\.)?encoder\.layers?\.\d+", ()),
    ("open_clip / CLIP visual towers: every residual attention block", r"(.+\.)?resblocks\.\d+", ()),
)  # fmt: skip


def glob_regex(pattern: str) -> re.Pattern[str]:
    """The regular expression of a layer glob: ``*``/``?`` stay within one dotted part, ``**`` crosses dots."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append(r"[^.]*")
        elif c == "?":
            out.append(r"[^.]")
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                raise VisrepsError(f"layer pattern {pattern!r} opens '[' without closing it")
            body = pattern[i + 1 : j]
            out.append("[" + ("^" + re.escape(body[1:]) if body.startswith("!") else re.escape(body)) + "]")
            i = j + 1
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def is_pattern(spec: str) -> bool:
    """Whether a ``--layers`` entry is a glob pattern or the word ``blocks`` rather than a layer name."""
    return spec == BLOCKS or bool(_GLOB.search(spec.partition("@t")[0]))


def _features_blocks(module: Any, names: Sequence[str]) -> list[str]:
    """torchvision's ``features``/``classifier`` CNNs: each stage of ``features`` when its entries are
    containers (EfficientNet, MobileNet, ConvNeXt), else each max-pool of ``features`` and each ReLU of
    ``classifier`` (AlexNet, VGG); then ``avgpool`` for the stage form."""
    if module is None or "features" not in names:
        return []
    mods = dict(module.named_modules())
    entries = [n for n in names if re.fullmatch(r"features\.\d+", n)]
    if not entries:
        return []
    if any(len(list(mods[n].children())) > 0 for n in entries):
        return entries + (["avgpool"] if "avgpool" in mods else [])
    pools = [n for n in entries if "Pool" in type(mods[n]).__name__]
    relus = [n for n in names if re.fullmatch(r"classifier\.\d+", n) and type(mods[n]).__name__ == "ReLU"]
    return pools + relus


def block_layers(names: Sequence[str], module: Any = None, model_id: str = "the model") -> tuple[list[str], str]:
    """The names ``blocks`` stands for in a model, and the family rule that gave them."""
    for family, member, tail in BLOCK_RULES:
        rx = re.compile(member + r"\Z")
        found = [n for n in names if rx.match(n)]
        if found:
            if family.startswith(("Hugging", "open_clip")):  # the largest group of siblings only
                groups: dict[str, list[str]] = {}
                for n in found:
                    groups.setdefault(n.rpartition(".")[0], []).append(n)
                found = max(groups.values(), key=len)
            return found + [t for t in tail if t in names][:1], family
    found = _features_blocks(module, names)
    if found:
        return found, "torchvision features/classifier CNNs: each stage or pooling stage, and the hidden FC layers"
    raise VisrepsError(
        f"'blocks' is not defined for {model_id} (none of the known block layouts: ResNet layerN.M, "
        "ViT encoder layers, timm blocks.N / stages.N, CORnet areas); name the layers or use a glob "
        "pattern such as 'layer?.*' (see `visreps layers MODEL`)"
    )


def expand_layers(
    names: Sequence[str], layers: Sequence[str] | str, module: Any = None, model_id: str = "the model"
) -> list[str]:
    """``layers`` with every pattern and ``blocks`` replaced by the layer names it stands for, in model order.

    Plain names pass through unchanged (the caller checks them, and refuses one given twice); a name
    that a pattern matches again is kept once. A pattern that matches nothing is a :class:`LayerNotFoundError`.
    """
    if isinstance(layers, str):
        layers = [s.strip() for s in layers.split(",") if s.strip()]
    out: list[str] = []
    for spec in layers:
        if not is_pattern(spec):
            out.append(spec)
            continue
        if spec == BLOCKS:
            found = block_layers(names, module, model_id)[0]
        else:
            base, at, step = spec.partition("@t")
            rx = glob_regex(base)
            found = [n + at + step for n in names if rx.match(n)]
            if not found:
                hint = closest_hint(base.replace("*", "").replace("?", ""), names, lead="; names look like: ")
                raise LayerNotFoundError(
                    f"layer pattern {spec!r} matches no layer of {model_id}{hint}"
                    " ('*' stays within one dotted part, '**' crosses dots; list them with `visreps layers MODEL`)"
                )
        out.extend(n for n in found if n not in out)
    return out
