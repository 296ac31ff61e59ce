"""Display labels of feature sources: the one place that says how a model and its weights are named.

A label names the model by its short name (the id without its ``source:`` prefix) and, in
parentheses, its weights, so that a table row, a legend entry or a figure title always tells a
pretrained network from the same architecture with random weights::

    >>> source_label("torchvision:alexnet", kind="random", seed=1)
    'alexnet (random, seed 1)'
    >>> source_label("timm:tf_efficientnet_lite0")
    'tf_efficientnet_lite0 (pretrained)'
    >>> source_label("timm:resnet50", kind="file", weights_name="/data/weights.safetensors")
    'resnet50 (weights.safetensors)'

Tables carry the label in a ``label`` column and the weights part alone in a ``weights``
column (:func:`weights_text`). This module imports nothing heavy and nothing of visreps but
:mod:`visreps.errors`, so every layer may use it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any

from .errors import VisrepsError

__all__ = [
    "label_from_metadata",
    "parse_label_option",
    "short_name",
    "source_label",
    "unique_labels",
    "weights_from_metadata",
    "weights_text",
]


def short_name(model_id: str) -> str:
    """The model id without its ``source:`` prefix (``torchvision:alexnet`` → ``alexnet``).

    A name of one or two characters says nothing alone (``cornet:s``, ``cornet:z``): the id is kept.
    """
    model_id = str(model_id)
    name = model_id.split(":", 1)[1] if ":" in model_id else model_id
    return name if len(name) > 2 else model_id


def weights_text(kind: str = "pretrained", *, seed: int | None = None, weights_name: str | None = None) -> str:
    """The weights part of a label: ``pretrained``, ``random, seed 1``, ``weights.safetensors``, ``user weights``.

    ``kind`` is the ``kind`` of the weights record in ``metadata.json`` (``pretrained``, ``random``,
    ``file``, ``user``); ``weights_name`` the file (only its name is shown) or a named weight.
    """
    kind = str(kind or "").strip().lower()
    if kind == "random":
        return "random" if seed is None else f"random, seed {seed}"
    if kind == "file":
        return PurePath(str(weights_name)).name if weights_name else "weights file"
    if kind == "user":
        return "user weights"
    if kind == "pretrained":
        return "pretrained"
    if not kind:
        return ""
    return kind


def source_label(
    model_id: str, *, kind: str = "pretrained", seed: int | None = None, weights_name: str | None = None
) -> str:
    """The display label of a model with its weights: ``"alexnet (random, seed 1)"``, ``"resnet50 (pretrained)"``.

    Args:
        model_id: ``source:name`` (or a bare name); the label shows the name only.
        kind: ``pretrained``, ``random``, ``file`` or ``user`` (as in ``metadata.json``); an empty
            kind (weights unknown, e.g. a bare array) gives the short name alone.
        seed: the seed of a random initialisation.
        weights_name: the weights file (its name is shown) for ``kind="file"``.
    """
    name = short_name(model_id)
    w = weights_text(kind, seed=seed, weights_name=weights_name)
    return f"{name} ({w})" if w else name


def _weights_record(metadata: Mapping[str, Any]) -> tuple[str, int | None, str | None]:
    w = metadata.get("weights")
    if isinstance(w, Mapping):
        seed = w.get("seed")
        return str(w.get("kind") or ""), (int(seed) if isinstance(seed, (int, float)) else None), w.get("file")
    if isinstance(w, str) and w:  # an older or hand-written metadata: the weights as one string
        return ("pretrained", None, None) if w == "pretrained" else ("file", None, w)
    return "", None, None


def weights_from_metadata(metadata: Mapping[str, Any]) -> str:
    """The ``weights`` column of an output folder's ``metadata.json``: ``pretrained``, ``random, seed 1``, ..."""
    kind, seed, name = _weights_record(metadata)
    return weights_text(kind, seed=seed, weights_name=name)


def label_from_metadata(metadata: Mapping[str, Any]) -> str:
    """The display label of an output folder from its ``metadata.json`` (``model`` and ``weights``)."""
    model = str(metadata.get("model") or "features")
    kind, seed, name = _weights_record(metadata)
    return source_label(model, kind=kind, seed=seed, weights_name=name)


def unique_labels(labels: Sequence[str], hints: Sequence[str | None] | None = None) -> list[str]:
    """The labels made unique: a label that several sources share gets a distinguishing suffix.

    With ``hints`` (e.g. the folder names), a shared label becomes ``"label [hint]"`` when the
    hints tell the sources apart; what is still shared is numbered in order, ``"label #1"``,
    ``"label #2"``, so no two sources ever print the same.
    """
    labels = [str(x) for x in labels]
    if hints is not None:
        if len(hints) != len(labels):
            raise VisrepsError(f"unique_labels: {len(hints)} hints for {len(labels)} labels")
        out = list(labels)
        for lab in {x for x in labels if labels.count(x) > 1}:
            idx = [i for i, x in enumerate(labels) if x == lab]
            hs = [hints[i] for i in idx]
            if all(hs) and len(set(hs)) == len(hs):
                for i, h in zip(idx, hs):
                    out[i] = f"{lab} [{h}]"
        labels = out
    counts = {x: labels.count(x) for x in labels}
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        if counts[lab] == 1:
            out.append(lab)
            continue
        k = seen.get(lab, 0) + 1
        seen[lab] = k
        cand = f"{lab} #{k}"
        while cand in counts:  # never collide with a label that was already there
            k += 1
            cand = f"{lab} #{k}"
        seen[lab] = k
        out.append(cand)
    return out


def parse_label_option(values: Sequence[str], option: str = "--label") -> dict[str, str]:
    """``--label SOURCE=NAME`` (repeatable) as a dict source → name; a value without ``=`` is an error."""
    out: dict[str, str] = {}
    for v in values:
        src, sep, name = str(v).partition("=")
        if not sep or not src.strip() or not name.strip():
            raise VisrepsError(f"{option} {v!r}: write SOURCE=NAME (the source as given on the command line)")
        if src.strip() in out:
            raise VisrepsError(f"{option}: {src.strip()!r} is named twice")
        out[src.strip()] = name.strip()
    return out
