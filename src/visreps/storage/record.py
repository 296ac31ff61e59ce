"""The run record: the ``metadata.json`` of an output folder as a typed object, built in one place.

:class:`RunRecord` is a ``TypedDict``, not a frozen dataclass, on purpose: the record is the JSON file's
contract (its keys and values are what users and older folders hold), it is filled in while a run goes on
(status, rows written, errors) and read by string keys in several modules; a ``TypedDict`` keeps every such
read and write working unchanged while pyright checks the keys, and :func:`to_json` / :func:`from_json`
round-trip a file byte for byte (keys in their order, unknown keys of other versions kept).

One builder, :func:`new_record`, lays out the record of image runs (:func:`visreps.extraction.extract`) and
text runs (:func:`visreps.text.extract_text`); :func:`merged_record` makes the record of
:func:`~visreps.storage.merge_shards` from its shards'. :func:`layer_record` is one layer's entry.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any, Literal, TypedDict, cast

from .folder import _jsonable, versions
from .formats import get_format


class _LayerKeys(TypedDict):
    module: str
    pool: str
    shape: list[int]
    dtype: str
    file: str


class LayerRecord(_LayerKeys, total=False):
    """One layer of ``metadata.json``: where it comes from, how it was pooled, its array and its file."""

    call: int
    calls_per_pass: int
    reduce: dict[str, Any]


class _RunKeys(TypedDict):
    status: str  # running, interrupted, failed, complete
    created: str
    model: str
    weights: Any
    layers: dict[str, LayerRecord]
    format: str
    options: dict[str, Any]
    versions: dict[str, str]
    command: str | None


class RunRecord(_RunKeys, total=False):
    """``metadata.json`` (the keys of image runs, text runs and merged shards; see :func:`new_record`)."""

    backend: str
    preprocessing: dict[str, Any]
    images: dict[str, Any]
    kind: str  # "text" for text runs
    texts: dict[str, Any]
    layers_requested: list[str]
    options_identity: dict[str, Any]
    images_identity: dict[str, Any]
    shard: dict[str, int]
    reduce: dict[str, Any]
    files: list[str]
    extra_files: list[str]
    seconds: float
    reduce_fit_seconds: float  # the PCA fit's time (kept out of "reduce": runs compare that)
    checksums: dict[str, dict[str, Any]]
    error: str


#: metadata fields that must be equal for a run to be resumed or its shards merged
RUN_IDENTITY = (
    "model",
    "weights",
    "preprocessing",
    "format",
    "layers_requested",
    "options_identity",
    "images_identity",
    "reduce",  # per layer: method, K, seed (and the PCA fit's hash)
)


def now() -> str:
    """The creation time of a record: UTC, to the second, ISO 8601."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def layer_record(
    layer: str, *, module: str, pool: str, shape: list[int], fmt: str, call: int | None = None, calls: int | None = None
) -> LayerRecord:
    """One layer's entry; ``call``/``calls`` (the hooked call and the calls per pass) are recorded for images."""
    rec: dict[str, Any] = {"module": module}
    if call is not None:
        rec["call"] = call
        rec["calls_per_pass"] = calls
    rec.update(pool=pool, shape=list(shape), dtype="float32", file=get_format(fmt).layer_file(layer))
    return cast(LayerRecord, rec)


def new_record(
    kind: Literal["images", "text"],
    lm: Any,
    *,
    layers: dict[str, LayerRecord],
    fmt: str,
    options: dict[str, Any],
    command: str | None,
    source: dict[str, Any],
    versions_: dict[str, str] | None = None,
    layers_requested: list[str] | None = None,
    options_identity: dict[str, Any] | None = None,
) -> RunRecord:
    """The record of a run about to start (status ``running``), in the key order of ``metadata.json``.

    Args:
        kind: ``images`` (an image extraction) or ``text`` (a text extraction).
        lm: the loaded model (its id, backend, weights and preprocessing are recorded).
        source: the ``images`` entry of an image run, the ``texts`` entry of a text run.
        versions_: package versions (default: :func:`versions`).
        layers_requested, options_identity: image runs: the layers asked for and the options that must not
            change between the parts of one run (resume, shards).
    """
    rec: dict[str, Any] = {"status": "running", "created": now(), "model": lm.model_id}
    if kind == "images":
        rec["backend"] = lm.backend
    rec["weights"] = lm.weights
    if kind == "images":
        rec["preprocessing"] = {**lm.preprocessing.to_dict(), **lm.preprocessing_extra}
        rec["images"] = source
        rec["layers_requested"] = layers_requested
    else:
        rec["kind"] = "text"
        rec["texts"] = source
    rec.update(layers=layers, format=fmt, options=dict(options))
    if kind == "images":
        # what must not change between the parts of one run (resume, shards): same numbers, same rows
        rec["options_identity"] = options_identity
        rec["images_identity"] = {"image_list_sha256": source["image_list_sha256"], "n_found": source["n_found"]}
    rec.update(versions=versions() if versions_ is None else versions_, command=command)
    return cast(RunRecord, rec)


def merged_record(ref: RunRecord, shards: list[RunRecord], total: int) -> RunRecord:
    """The record of the merge of finished shard folders: ``ref`` (the first folder given), with the earliest
    creation time of ``shards`` (in shard order), their summed seconds, all their rows and skipped images, and no
    shard, files or checksums."""
    meta = cast(RunRecord, json.loads(json.dumps(ref)))
    for key in ("shard", "checksums", "files"):
        meta.pop(key, None)
    meta["status"] = "running"
    meta["created"] = min(m["created"] for m in shards)
    meta["seconds"] = round(sum(m.get("seconds", 0) for m in shards), 3)
    images = meta.get("images") or {}
    images["n_extracted"] = total
    images["skipped"] = [s for m in shards for s in (m.get("images") or {}).get("skipped", [])]
    for rec in meta["layers"].values():
        rec["shape"][0] = total
    return meta


def to_json(record: RunRecord | dict) -> str:
    """The text of ``metadata.json`` (two-space indent, keys in their order, numpy numbers and paths made plain)."""
    return json.dumps(_jsonable(record), indent=2)


def from_json(text: str) -> RunRecord:
    """A record from the text of ``metadata.json`` (every key kept, known or not).

    Raises:
        ValueError: not JSON, or not an object with ``layers``.
    """
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("layers"), dict):
        raise ValueError("not a visreps metadata record (no layers)")
    return cast(RunRecord, data)


# typed accessors for readers that would otherwise index by string --------------------------------------------------


def record_format(record: RunRecord | dict) -> str:
    """The output format (``npy`` for records of visreps 0.1, which had none)."""
    return record.get("format", "npy")


def record_layers(record: RunRecord | dict) -> dict[str, LayerRecord]:
    """Layer name → its entry, in extraction order."""
    return record["layers"]


def record_shape(record: RunRecord | dict, layer: str) -> tuple[int, ...]:
    """The shape of ``layer``'s array (rows first)."""
    return tuple(int(x) for x in record["layers"][layer].get("shape") or ())


def is_text(record: RunRecord | dict) -> bool:
    """Whether the record is of a text extraction (the manifest's paths are texts)."""
    return record.get("kind") == "text"
