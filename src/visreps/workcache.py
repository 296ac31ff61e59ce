"""The extraction cache of ``compare --work-dir`` and ``visreps bench``: one folder per request, never lost.

A request is everything that changes the numbers of an extraction: the model id, its weights
(``pretrained``, ``random`` with its seed, or a weights file with its SHA-256), the preprocessing
and pooling options, the layers asked for, the reduction, the precision, and the images (their
paths in order with the BLAKE2b content hash of every file). The request's SHA-256 is its key; the
entry is the visreps output folder ``WORK_DIR/<model>-<key[:16]>`` beside ``<model>-<key[:16]>.key.json``
(the request in full). Rules:

* Entries are never replaced or deleted: a different request gets a different folder. A request
  is also served by an entry of the same request with *more* layers (an explicit list).
* An entry is used only after :func:`visreps.verify` (every file's size and SHA-256) and a check
  that its manifest lists the request's images with the same content hashes.
* An extraction runs into ``<name>.partial`` and is renamed to ``<name>`` when complete; an
  interrupted one is resumed from there by the next request; a failed one deletes nothing.

``batch_size``, ``num_workers``, ``device`` and ``progress`` are not part of the key (they change
numbers only within float tolerance).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DamagedOutputError, VisrepsError
from .job import ExtractionOptions

__all__ = ["CacheEntry", "cache_request", "cached_extract", "find_entry", "image_hashes"]

#: extraction options that do not change the numbers (beyond float tolerance): left out of the key (declared
#: with the options themselves, in :class:`visreps.job.ExtractionOptions`)
_NOT_IN_KEY = ExtractionOptions.not_in_key()
KEY_VERSION = 1


@dataclass
class CacheEntry:
    """A cache folder: its path, its key, the request, and whether this call extracted it."""

    folder: Path
    key: str
    request: dict[str, Any]
    extracted: bool

    def load(self, layers: Sequence[str] | None = None):
        from .storage import load_features

        return load_features(self.folder, layers)


def safe_name(s: str) -> str:
    """``s`` with every character that is not a letter, digit or ``._@-`` replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9._@-]", "_", s)


def image_hashes(images: str | os.PathLike, order: Any = None, images_key: str | None = None) -> list[tuple[str, str]]:
    """``(relative path, BLAKE2b hex)`` of every image of the folder, in extraction order.

    For an image array, a list or one image file (:mod:`visreps.image_sources`): the manifest's row
    names and content hashes.
    """
    from .data import content_hash, find_images
    from .image_sources import FolderSource, open_source

    source = open_source(images, images_key=images_key)
    if not isinstance(source, FolderSource):
        return [(item.path, source.read(item)[1].hex()) for item in source.items(order)]
    root = Path(images).expanduser()
    out = []
    for item in find_images(root, order=order):
        try:
            data = (root / item.path).read_bytes()
        except OSError as e:
            raise VisrepsError(f"cannot read image {str(root / item.path)!r}: {e.strerror or e}") from None
        out.append((item.path, content_hash(data).hex()))
    return out


def _weights_of(options: Mapping[str, Any]) -> dict[str, Any]:
    weights = options.get("weights")
    if weights is not None:
        from .models._base import file_sha256

        p = Path(weights).expanduser()
        if not p.is_file():
            raise VisrepsError(f"weights file {str(p)!r} does not exist")
        return {"kind": "file", "sha256": file_sha256(p)}
    if options.get("pretrained", True):
        return {"kind": "pretrained"}
    return {"kind": "random", "seed": int(options.get("seed", 0))}


def cache_request(
    model_id: str,
    layers: Sequence[str] | str,
    images: list[tuple[str, str]],
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The request (everything that changes the numbers), as stored in ``<entry>.key.json``."""
    opts = dict(options or {})
    rest = {k: repr(v) for k, v in sorted(opts.items()) if k not in _NOT_IN_KEY + ("weights", "pretrained", "seed")}
    return {
        "key_version": KEY_VERSION,
        "model": model_id,
        "weights": _weights_of(opts),
        "layers": layers if isinstance(layers, str) else list(layers),
        "options": rest,
        "images": [list(x) for x in images],
    }


def request_key(request: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode("utf-8", "surrogateescape")).hexdigest()


def _entry_name(request: Mapping[str, Any], key: str) -> str:
    return f"{safe_name(str(request['model']))}-{key[:16]}"


def _usable(folder: Path, request: Mapping[str, Any], layers: Sequence[str] | None) -> bool:
    """Whether ``folder`` is a complete, intact extraction of the request's images (with ``layers``)."""
    from .storage import load_features, verify

    try:
        try:
            verify(folder)
        except DamagedOutputError:
            return False
        except VisrepsError as e:
            if "recorded no checksums" not in str(e):
                return False  # unfinished or not a visreps folder
        feats = load_features(folder, layers)
    except VisrepsError:
        return False
    man = feats.manifest
    paths = [p for p, _ in request["images"]]
    if list(man["path"]) != paths:
        return False
    if "blake2b" in man and list(man["blake2b"]) != [h for _, h in request["images"]]:
        return False
    return True


def _read_key(path: Path) -> dict | None:
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return rec if isinstance(rec, dict) and isinstance(rec.get("request"), dict) else None


def find_entry(work_dir: str | os.PathLike, request: Mapping[str, Any]) -> CacheEntry | None:
    """The verified entry serving ``request``: its own, or one of the same request with more layers."""
    work = Path(work_dir).expanduser()
    key = request_key(request)
    own = work / _entry_name(request, key)
    if own.is_dir() and _usable(own, request, None if isinstance(request["layers"], str) else request["layers"]):
        return CacheEntry(own, key, dict(request), False)
    if isinstance(request["layers"], str) or not work.is_dir():
        return None
    wanted = set(request["layers"])
    prefix = safe_name(str(request["model"])) + "-"
    for kf in sorted(work.glob(f"{glob_escape(prefix)}*.key.json")):
        rec = _read_key(kf)
        if rec is None:
            continue
        other = rec["request"]
        same = {k: v for k, v in other.items() if k != "layers"} == {k: v for k, v in request.items() if k != "layers"}
        if not same or isinstance(other.get("layers"), str) or not wanted <= set(other.get("layers") or []):
            continue
        folder = kf.with_name(kf.name[: -len(".key.json")])
        if folder.is_dir() and _usable(folder, request, list(request["layers"])):
            return CacheEntry(folder, request_key(other), dict(other), False)
    return None


def glob_escape(s: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", s)


def cached_extract(
    model_id: str,
    images: str | os.PathLike,
    *,
    layers: Sequence[str] | str,
    work_dir: str | os.PathLike,
    options: Mapping[str, Any] | None = None,
    image_list: list[tuple[str, str]] | None = None,
    model: Any = None,
) -> CacheEntry:
    """The cache entry of this extraction request: found and verified, or extracted now.

    Args:
        model_id: the model id (``"torchvision:alexnet"``).
        images: the image folder.
        layers: as :func:`visreps.extract` takes them (a list, or a string such as ``"blocks"``).
        work_dir: the cache folder (created when missing).
        options: keyword arguments for :func:`visreps.extract` (``pretrained``, ``seed``, ``weights``,
            ``pool``, ``order``, ``batch_size``, ``device``...).
        image_list: :func:`image_hashes` of ``images``, when the caller has them already.
        model: the :class:`~visreps.models.LoadedModel` of ``model_id`` with the weights ``options``
            name, when the caller has loaded it already (it is extracted instead of loading it again).

    Raises:
        VisrepsError: any error of the extraction; the cache is left as it was (an interrupted
            extraction stays in its ``.partial`` folder and is resumed by the next call).
    """
    opts = dict(options or {})
    imgs = image_list if image_list is not None else image_hashes(images, opts.get("order"), opts.get("images_key"))
    request = cache_request(model_id, layers, imgs, opts)
    hit = find_entry(work_dir, request)
    if hit is not None:
        return hit
    from .extraction import extract

    key = request_key(request)
    work = Path(work_dir).expanduser()
    work.mkdir(parents=True, exist_ok=True)
    final = work / _entry_name(request, key)
    if final.exists():
        raise VisrepsError(
            f"cache folder {str(final)!r} exists but is not an intact extraction of this request (`visreps verify` "
            "says why); move it away to extract again"
        )
    partial = work / (final.name + ".partial")
    opts.setdefault("progress", False)
    layer_arg = layers if isinstance(layers, str) else list(layers)
    what = model_id if model is None else model
    resumed = False
    if partial.is_dir():
        try:
            extract(what, images, layers=layer_arg, out=partial, resume=True, **opts)
            resumed = True
        except VisrepsError:
            resumed = False
    if not resumed:
        extract(what, images, layers=layer_arg, out=partial, overwrite=partial.exists(), **opts)
    _write_json(partial.with_name(final.name + ".key.json"), {"key": key, "request": request})
    os.replace(partial, final)  # a directory rename: the entry appears complete or not at all
    return CacheEntry(final, key, request, True)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)
