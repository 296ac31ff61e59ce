"""Feature sets to compare, and the matching of their rows to images.

Feature sets come from arrays, extraction output folders (read with :func:`visreps.load_features`,
memory-mapped), :class:`visreps.storage.Features` objects, and sources still to be extracted (objects
with a ``feature_sets(label, layers)`` method, :class:`ToBeExtracted`: :class:`visreps.workflows.ToExtract`
for model ids; nothing here loads a model or extracts). Their rows are matched to the rows of the first set
that names its images (see :func:`match_rows`): folders holding the same images in a different order, or
under other file names, are put in one order; folders with different images are an error.

How rows are matched:

* When both manifests record the content hash of every image (the ``blake2b`` column of
  ``manifest.csv``), rows are matched **by content**: the same image file bytes are the same
  image, whatever their names. A hash may occur more than once in a folder (one image under two
  names); such copies are paired with the copies of the other folder by path where the paths
  agree, the remaining copies in their order of occurrence (they hold the same bytes, so which
  copy goes with which does not change any result). Paths are only used in messages. The two
  folders must hold the same images, each the same number of times; otherwise it is an error
  that names example paths: the paths whose content differs between the two folders if there are
  any (different images under the same file names), else the images only one folder holds.
* When either manifest lacks the hashes (folders written before they were recorded, arrays of
  :class:`visreps.storage.Features` made by hand), rows are matched **by image path**, as before.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import VisrepsError

Layers = Sequence[str] | Mapping[str, Sequence[str]] | str | None

#: the manifest column holding each image's content hash: hex BLAKE2b, 16-byte digest, of the file's bytes
HASH_COLUMN = "blake2b"
HASH_DIGEST_SIZE = 16
_HEX = frozenset("0123456789abcdef")
_SOURCE_IDS = itertools.count(1)  # FeatureSet.source: one number per source object


@dataclass
class FeatureSet:
    """One feature matrix to compare: where it came from and which image each row is."""

    label: str
    model: str
    layer: str
    features: Any
    paths: list[str] | None = None
    folder: Path | None = None
    order: np.ndarray | None = field(default=None, repr=False)  # rows → common order
    hashes: list[str] | None = field(default=None, repr=False)  # content hash per row (None: unknown)
    weights: str = ""  # the weights, as in the tables' ``weights`` column ("pretrained", "random, seed 1")
    name: str = ""  # the source's display label (model and weights, or the user's name); "" → from model
    source: Any = field(default=None, repr=False, compare=False)  # what the set came from (one per source)

    @property
    def n(self) -> int:
        return int(np.shape(self.features)[0])

    @property
    def where(self) -> str:
        """How messages name it: its label, and the layer and folder it was read from."""
        if self.folder is None:
            return self.label or self.model
        return f"{self.label or self.model} (layer {self.layer!r} of {str(self.folder)!r})"


@runtime_checkable
class ToBeExtracted(Protocol):
    """A source whose features do not exist yet (e.g. :class:`visreps.workflows.ToExtract`, a model id with its
    images): :func:`collect_features` asks it for the feature sets of the requested layers when it needs them,
    after every option and the reference are checked."""

    def feature_sets(self, label: str | None, layers: Any) -> list[FeatureSet]: ...


# --------------------------------------------------------------------------- collecting feature sets


def _is_features_obj(x: Any) -> bool:
    return hasattr(x, "features") and isinstance(x.features, Mapping) and hasattr(x, "manifest")


def _looks_array(x: Any) -> bool:
    if isinstance(x, np.ndarray):
        return True
    return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, (str, bytes))


def layers_for(layers: Any, key: str | None, model: str | None = None, label: str | None = None) -> list[str] | None:
    """The layers requested for the folder/model ``key`` (``None``: all of them).

    ``layers`` is ``None`` (all), one name, a list applied to every source, or a dict whose keys
    name a source by folder path, model id or label (``key``, ``model``, ``label``).
    """
    if layers is None or isinstance(layers, str):
        return [layers] if isinstance(layers, str) else None
    if isinstance(layers, Mapping):
        for k, v in layers.items():
            same_path = False
            if key is not None:
                try:
                    same_path = Path(str(k)).expanduser().resolve() == Path(key).expanduser().resolve()
                except (OSError, ValueError, TypeError):
                    pass
            if k == key or k == model or (label is not None and k == label) or same_path:
                return None if v is None else [v] if isinstance(v, str) else list(v)
        return None
    return list(layers)


def manifest_hashes(manifest: Any, where: str = "the manifest") -> list[str] | None:
    """The content hash of every row of a manifest, or ``None`` when they are not all known.

    Args:
        manifest: a ``pandas.DataFrame`` read from ``manifest.csv`` (or ``None``).
        where: how error messages name the manifest (e.g. its folder).

    Returns:
        Lower-case hex digests, one per row; ``None`` when the manifest has no ``blake2b`` column
        or a row has an empty value (then rows can only be matched by path).

    Raises:
        VisrepsError: a value that is not a hex digest of the expected length.
    """
    if manifest is None or HASH_COLUMN not in getattr(manifest, "columns", ()):
        return None
    out = []
    for i, v in enumerate(manifest[HASH_COLUMN].tolist()):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return None
        h = str(v).strip().lower()
        if not h:
            return None
        if len(h) != 2 * HASH_DIGEST_SIZE or not set(h) <= _HEX:
            raise VisrepsError(
                f"{where}: the {HASH_COLUMN} value of row {i} ({str(v)!r}) is not a {2 * HASH_DIGEST_SIZE}-digit hex "
                "content hash; the manifest is damaged: extract again"
            )
        out.append(h)
    return out


def file_hash(path: str | os.PathLike) -> str:
    """The content hash recorded in ``manifest.csv`` for an image file: hex BLAKE2b (16-byte digest) of its bytes."""
    h = hashlib.blake2b(digest_size=HASH_DIGEST_SIZE)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def feature_sets_of(obj: Any, label: str | None, layers: Any) -> list[FeatureSet]:
    """One :class:`FeatureSet` per requested layer of a :class:`visreps.storage.Features` (``layers`` as in
    :func:`layers_for`), labelled ``label`` or by the model the features came from."""
    from ..labels import label_from_metadata, weights_from_metadata

    folder, source = getattr(obj, "folder", None), next(_SOURCE_IDS)
    model = label or getattr(obj, "model", "") or (Path(folder).name if folder else "features")
    meta = getattr(obj, "metadata", None) or {}
    weights = weights_from_metadata(meta) if meta else ""
    # a name given by the user labels the source; without one (or the model id itself) the metadata does
    name = label if label and label != meta.get("model") else (label_from_metadata(meta) if meta else model)
    wanted = layers_for(layers, str(folder) if folder else model, getattr(obj, "model", None), label)
    names = list(obj.features) if wanted is None else wanted
    manifest = getattr(obj, "manifest", None)
    paths = list(manifest["path"]) if manifest is not None and "path" in manifest else None
    where = f"manifest.csv of {str(folder)!r}" if folder else f"the manifest of {model!r}"
    hashes = manifest_hashes(manifest, where) if paths is not None else None
    out = []
    for layer in names:
        arr = obj[layer] if hasattr(obj, "__getitem__") else obj.features[layer]
        out.append(
            FeatureSet(
                label="",
                model=model,
                layer=layer,
                features=arr,
                paths=paths,
                hashes=hashes,
                folder=Path(folder) if folder else None,
                weights=weights,
                name=name,
                source=source,
            )
        )
    return out


def _load_folder(folder: Path, label: str | None, layers) -> list[FeatureSet]:
    from ..storage import load_features

    wanted = layers_for(layers, str(folder), label)
    res = load_features(folder, wanted, mmap=True)
    sets = feature_sets_of(res, label, None)
    for s in sets:
        s.folder = folder
    return sets


def source_items(sources: Any) -> list[tuple[str | None, Any]]:
    """The (label, source) pairs named by ``sources``: one source, a list of them, or a dict label → source."""
    if (
        isinstance(sources, (str, os.PathLike, FeatureSet))
        or _is_features_obj(sources)
        or isinstance(sources, ToBeExtracted)
        or _looks_array(sources)
        or _is_feature_sets(sources)
    ):
        return [(None, sources)]
    if isinstance(sources, Mapping):  # a key that is the source itself (a path as given) names nothing
        return [
            (None if isinstance(v, (str, os.PathLike)) and str(k) == str(v) else str(k), v) for k, v in sources.items()
        ]
    return [(None, s) for s in sources]


def _is_feature_sets(x: Any) -> bool:
    return isinstance(x, (list, tuple)) and bool(x) and all(isinstance(s, FeatureSet) for s in x)


def collect_features(
    sources: Any,
    *,
    layers: Layers = None,
) -> list[FeatureSet]:
    """Turn the ways of naming feature sets into a list of :class:`FeatureSet`, rows aligned.

    ``sources`` is one of, or a list of (or a dict label → one of):

    * an array ``(n_images, ...)`` (labelled by its dict key, else ``features 1``, ...);
    * an extraction output folder (all its layers, or ``layers``), or a ``.npy`` file;
    * a :class:`visreps.storage.Features` (``load_features``/``extract`` result);
    * a :class:`FeatureSet` or a list of them, taken as they are (``layers`` does not apply).

    * a source still to be extracted (:class:`ToBeExtracted`, e.g. :class:`visreps.workflows.ToExtract`):
      its ``feature_sets(label, layers)`` is called here. Model ids as strings are not extracted here:
      :func:`visreps.collect_features` (and ``visreps.compare_features``) turn them into such sources.

    ``layers``: a list applied to every folder, or a dict folder, model id or label → list.
    Rows are aligned to the first set that has a manifest (see :func:`match_rows`): by image
    content when both manifests record content hashes, else by image path.

    Raises:
        VisrepsError: the sets hold different images (also: the same file names with different
            content), or differ in their number of rows.
    """
    items = source_items(sources)
    if not items:
        raise VisrepsError("nothing to compare: give at least one array, output folder or model id")
    sets: list[FeatureSet] = []
    for i, (label, src) in enumerate(items):
        if isinstance(src, FeatureSet) or _is_feature_sets(src):  # copies: labels and row order are set anew
            sets += [replace(s, order=None) for s in ([src] if isinstance(src, FeatureSet) else src)]
        elif _is_features_obj(src):
            sets += feature_sets_of(src, label, layers)
        elif isinstance(src, ToBeExtracted):
            sets += src.feature_sets(label, layers)
        elif isinstance(src, (str, os.PathLike)):
            p = Path(src).expanduser()
            if p.is_dir():
                sets += _load_folder(p, label, layers)
            elif p.suffix.lower() == ".npy" and p.is_file():
                arr = np.load(p, mmap_mode="r")
                sets.append(FeatureSet(label="", model=label or p.stem, layer="", features=arr, name=label or p.stem))
            else:
                raise VisrepsError(
                    f"{str(src)!r} is not an output folder; give folders written by `visreps extract`, arrays, "
                    "or model ids together with images=<image folder> (visreps.compare_features)"
                )
        elif _looks_array(src) or isinstance(src, (list, tuple)):
            name = label or f"features {i + 1}"
            sets.append(FeatureSet(label="", model=name, layer="", features=src, name=name))
        else:
            raise VisrepsError(
                f"cannot compare an object of type {type(src).__name__}; give arrays, output folders or model ids"
            )
    _label(sets)
    _match_rows(sets)
    return sets


def _label(sets: list[FeatureSet]) -> None:
    """Each set's ``label``: its source's display label (:mod:`visreps.labels`), unique across sources, + ``/layer``.

    Two sources that would print the same (e.g. two folders of one model with the same weights) are told
    apart by their folder names, else numbered; no two sources ever share a label (nor a plotted series).
    """
    from ..labels import short_name, unique_labels

    keys = [  # one key per source: the sets of one folder or one object share it
        (s.name or short_name(s.model), str(s.folder) if s.folder is not None else s.source or id(s)) for s in sets
    ]
    sources = list(dict.fromkeys(keys))
    hints = [next((s.folder.name for s, k in zip(sets, keys) if k == src and s.folder), None) for src in sources]
    names = dict(zip(sources, unique_labels([k[0] for k in sources], hints)))
    labels = [f"{names[k]}/{s.layer}" if s.layer else names[k] for s, k in zip(sets, keys)]
    for s, k, lab in zip(sets, keys, unique_labels(labels)):
        s.name, s.label = names[k], lab


def _match_rows(sets: list[FeatureSet]) -> None:
    """Set ``order`` of every set so that its rows follow the first set with image paths."""
    ref = next((s for s in sets if s.paths is not None), None)
    ref_paths = ref.paths if ref is not None else None  # None exactly when ref is: ref was chosen for its paths
    n_ref = len(ref_paths) if ref_paths is not None else sets[0].n
    for s in sets:
        if s.paths is None or ref is None or ref_paths is None:
            if s.n != n_ref:
                raise VisrepsError(
                    f"{s.label!r} has {s.n} rows but {(ref or sets[0]).label!r} has {n_ref}; "
                    "every feature set must have one row per image, for the same images"
                )
            continue
        if s is ref:
            continue
        s.order = match_rows(s.paths, ref_paths, s.hashes, ref.hashes, names=(s.label, ref.label))


def match_rows(
    paths: Sequence[str],
    ref_paths: Sequence[str],
    hashes: Sequence[str] | None = None,
    ref_hashes: Sequence[str] | None = None,
    *,
    names: tuple[str, str] = ("the first", "the second"),
) -> np.ndarray | None:
    """Which row of one feature set shows the image of each row of a reference set.

    With content hashes on both sides the rows are matched by content, else by path (the rules
    are in the module documentation).

    Args:
        paths, hashes: the image path and (optional) content hash of each row of the set to align.
        ref_paths, ref_hashes: the same for the reference set, whose row order is kept.
        names: how error messages call the two sets.

    Returns:
        ``order`` with ``rows[order]`` in the reference's row order, or ``None`` when the rows
        already are in that order.

    Raises:
        VisrepsError: the two sets do not hold the same images; names up to 3 example paths.
    """
    paths, ref_paths = list(paths), list(ref_paths)
    if hashes is not None and ref_hashes is not None:
        hashes, ref_hashes = list(hashes), list(ref_hashes)
        if hashes == ref_hashes and paths == ref_paths:
            return None
        return _match_by_content(paths, ref_paths, hashes, ref_hashes, names)
    if paths == ref_paths:
        return None
    if sorted(paths) != sorted(ref_paths):
        only_a = sorted(set(paths) - set(ref_paths))[:3]
        only_b = sorted(set(ref_paths) - set(paths))[:3]
        raise VisrepsError(
            f"{names[0]!r} and {names[1]!r} were extracted from different images ({len(paths)} vs {len(ref_paths)}; "
            f"e.g. only in the first: {only_a}, only in the second: {only_b}); extract both from the same image folder"
        )
    pos = {p: i for i, p in enumerate(paths)}
    return np.array([pos[p] for p in ref_paths])


def _match_by_content(
    paths: list[str], ref_paths: list[str], hashes: list[str], ref_hashes: list[str], names: tuple[str, str]
) -> np.ndarray | None:
    """Pair rows by content hash: same hash and path first, then the remaining copies in order."""
    order = np.full(len(ref_paths), -1, dtype=np.intp)
    used = np.zeros(len(paths), dtype=bool)
    by_key = {(h, p): i for i, (h, p) in enumerate(zip(hashes, paths))}
    for j, key in enumerate(zip(ref_hashes, ref_paths)):
        i = by_key.get(key)
        if i is not None and not used[i]:
            order[j] = i
            used[i] = True
    free: dict[str, deque[int]] = defaultdict(deque)
    for i in np.flatnonzero(~used):
        free[hashes[i]].append(int(i))
    for j in np.flatnonzero(order < 0):
        q = free.get(ref_hashes[j])
        if q:
            i = q.popleft()
            order[j] = i
            used[i] = True
    if (order < 0).any() or not used.all():
        raise _content_mismatch(paths, ref_paths, hashes, ref_hashes, used, order, names)
    return None if np.array_equal(order, np.arange(len(order))) else order


def _content_mismatch(paths, ref_paths, hashes, ref_hashes, used, order, names) -> VisrepsError:
    first, second = names
    own = dict(zip(paths, hashes))
    changed = sorted(p for p, h in zip(ref_paths, ref_hashes) if p in own and own[p] != h)
    if changed:
        return VisrepsError(
            f"{first!r} and {second!r} were extracted from different images with the same file names: "
            f"{len(changed)} path(s) hold different image content in the two (e.g. {changed[:3]}); extract both "
            "from the same image folder, or again if images were replaced or re-saved in between"
        )
    only_a = sorted(paths[i] for i in np.flatnonzero(~used))[:3]
    only_b = sorted(ref_paths[j] for j in np.flatnonzero(order < 0))[:3]
    return VisrepsError(
        f"{first!r} and {second!r} were extracted from different images (compared by content: {len(paths)} vs "
        f"{len(ref_paths)} images; e.g. only in the first: {only_a}, only in the second: {only_b}); extract both "
        "from the same image folder"
    )


def reorder_to_reference(
    sets: list[FeatureSet], reference_order, n: int, names: Sequence[Any] | None = None, where: str = "the reference"
) -> np.ndarray | None:
    """Indices that put the (aligned) feature rows into the order of the reference's conditions.

    The conditions are named by ``reference_order`` (a list, or a text file with one image per line) or by the
    reference file itself (``names``); when both name them they must agree. Names are matched to the manifest
    as responses are (:func:`visreps.analysis.responses.match_images`): every image once, or an error naming
    examples.
    """
    from .responses import match_images, read_order

    order: list[Any] | None = None if names is None else list(names)
    if reference_order is not None:
        if isinstance(reference_order, (str, os.PathLike)):
            given = read_order(reference_order, None, where)
        else:
            given = [str(x) for x in reference_order]
        if len(given) != n:
            raise VisrepsError(f"reference_order lists {len(given)} images but the reference RDM has {n} conditions")
        if order is not None and [str(x) for x in order] != given:
            i = next(i for i, (a, b) in enumerate(zip(order, given)) if str(a) != b)
            raise VisrepsError(
                f"{where} names its conditions, and reference_order (CLI: --reference-order) disagrees (row {i}: "
                f"{order[i]!r} in the reference, {given[i]!r} in the order); leave out the order: the file's names "
                "are used"
            )
        order = given
    if order is None:
        return None
    ref_paths = next((s.paths for s in sets if s.paths is not None), None)
    numbers = all(isinstance(x, (int, np.integer)) for x in order)
    if ref_paths is None and not numbers:
        raise VisrepsError(
            f"{where}: its conditions are named by images, but the features are arrays without image paths; pass "
            "output folders (their manifests name the images)"
        )
    idx = match_images(order, ref_paths, n_rows=len(order), n_features=n, where=where, features="the features")
    return None if np.array_equal(idx, np.arange(n)) else idx
