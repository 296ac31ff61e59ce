"""Compare many representations at once: pairwise RDM correlations and fits to a reference RDM.

Feature sets come from arrays, extraction output folders (read with :func:`visreps.load_features`,
memory-mapped) and :class:`visreps.storage.Features` objects; nothing here loads a model or
extracts (model ids: :mod:`visreps.workflows` extracts them first, then calls these functions).
Their rows are matched to the rows of the first set that names its images (see :func:`match_rows`):
folders holding the same images in a different order, or under other file names, are aligned;
folders with different images are an error.

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
import warnings
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np

from ..errors import VisrepsError
from ..options import SESSIONS
from ._files import FileArray, check_file, read_array
from .rsa import (
    RDMCorrelation,
    check_comparison,
    check_method,
    compute_rdm,
    correlate_rdms,
    n_from_condensed,
    squareform,
    upper_triangle,
)

if TYPE_CHECKING:
    import pandas as pd

REFERENCE_SUFFIXES = (".npy", ".npz", ".mat", ".csv", ".tsv", ".txt", ".dat")
#: formats of reference RDMs and per-subject stacks: :data:`REFERENCE_SUFFIXES` plus HDF5 (also rsatoolbox's
#: ``RDMs.save(path, file_type="hdf5")``)
STACK_SUFFIXES = (*REFERENCE_SUFFIXES, ".h5", ".hdf5")

_REF_LAYOUT = (
    "a reference RDM file holds one row of numbers per condition; cells that are not numbers may only be a header "
    "row and a first column of condition names"
)

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


# --------------------------------------------------------------------------- reference RDMs


def load_reference_rdm(path: str | os.PathLike, *, key: str | None = None) -> np.ndarray:
    """Read a reference RDM (brain or behaviour) from a file, as a square float64 matrix.

    Formats: ``.npy`` (square matrix or condensed vector), ``.npz``, ``.mat`` (MATLAB v5 or v7.3)
    and ``.h5``/``.hdf5`` (the one 2-D numeric variable, or the one named ``key``; a struct's field
    as ``struct.field``; rsatoolbox's ``RDMs.save(..., file_type="hdf5")`` holding one RDM),
    ``.csv`` (comma separated; a header row and/or a first column of condition names),
    ``.tsv``, ``.txt``/``.dat`` (whitespace, comma or tab separated numbers). A condensed vector
    (length ``n(n−1)/2``, the ``pdist`` order) is expanded to the square form. The reading rules
    (encodings, names) are those of ``docs/files.md``; the condition names a file holds are matched
    to the features' manifest by :func:`compare_to_reference` (this function returns the numbers).

    The entries must be *dissimilarities* (bigger = more different): a matrix whose diagonal holds
    the largest entry of every row (a similarity matrix ``S``, e.g. correlations or similarity
    judgements) is refused; pass ``1 − S``. Only the upper triangle is used in comparisons; an
    asymmetric matrix (e.g. a confusion matrix) gives a warning.

    Raises:
        VisrepsError: missing file, unknown format, no or several candidate variables (lists them),
            non-numeric cells, a shape that is not square or condensed, NaN/inf entries, a similarity matrix.
    """
    return _read_reference(path, key)[0]


def _read_reference(path: str | os.PathLike, key: str | None) -> tuple[np.ndarray, list[Any] | None]:
    """One reference RDM (square, checked) and the condition names its file holds."""
    p = check_file(path, STACK_SUFFIXES, "reference RDM")
    got = _reference_file(p, key, stack=False)
    if got.values.ndim == 3 and len(got.values) == 1:  # rsatoolbox's file of one RDM
        got.values = got.values[0]
    return as_rdm(got.values, name=f"reference RDM {p.name!r}"), got.names


def _rdm_shaped(a: np.ndarray, stack: bool) -> bool:
    """Whether a variable can be an RDM (or, with ``stack``, RDMs of subjects [× sessions])."""
    if a.ndim in (1, 2):
        return True
    return stack and a.ndim in (3, 4) and (a.shape[-1] == a.shape[-2] or (a.ndim == 3 and a.shape[0] == a.shape[1]))


def _reference_file(p: Path, key: str | None, *, stack: bool) -> FileArray:
    """The numbers of a reference file and its condition names (a table's header / first column, an ``images``
    variable, rsatoolbox's pattern descriptors)."""
    if p.suffix.lower() in (".h5", ".hdf5") and _is_rsatoolbox(p):
        return _read_rsatoolbox(p)
    got = read_array(
        p,
        key,
        keep=lambda _, a: _rdm_shaped(a, stack),
        what="array" if stack else "matrix",
        option="--reference-key",
        shapes=stack,
        layout=_REF_LAYOUT,
    )
    if got.columns is not None:  # a table's header names the conditions too
        if got.names is not None and got.names != got.columns:
            raise VisrepsError(
                f"reference {p.name!r}: its header and its first column name the conditions differently (e.g. "
                f"{got.columns[:2]} vs {got.names[:2]}); give the same names in the same order, or only one of them"
            )
        got.names = got.columns
    return got


def _is_rsatoolbox(p: Path) -> bool:
    import h5py

    try:
        with h5py.File(p, "r") as f:
            return "rsatoolbox_version" in f.attrs and "dissimilarities" in f
    except OSError as e:
        raise VisrepsError(f"cannot read {str(p)!r} as an HDF5 file: {e}") from None


def _read_rsatoolbox(p: Path) -> FileArray:
    """rsatoolbox's ``RDMs.save(path, file_type="hdf5")``: condensed ``dissimilarities`` (RDMs × pairs) as a
    ``(RDMs, n, n)`` stack; a pattern descriptor named ``images``/``stimuli``/``conds``... names the conditions."""
    import h5py

    from ._files import NAME_VARIABLES, as_names, as_numbers

    with h5py.File(p, "r") as f:
        d = np.asarray(f["dissimilarities"], dtype=np.float64)
        pattern: Any = f.get("pattern_descriptors")
        desc = {k: v[()] for k, v in pattern.items() if isinstance(v, h5py.Dataset)} if pattern is not None else {}
    d = d[None] if d.ndim == 1 else d
    stack = np.stack([squareform(v) for v in d])
    names = None
    for k, v in desc.items():
        if k.lower() in (*NAME_VARIABLES, "conds", "conditions", "condition"):
            names = as_names(v) or as_numbers(v)
            break
    return FileArray(stack, names=names, source=p, key="dissimilarities")


def as_rdm(arr: Any, *, name: str = "RDM") -> np.ndarray:
    """Validate a square or condensed RDM and return it square (float64).

    Refused: a shape that is neither, NaN/inf entries, a similarity matrix (its diagonal holds the largest
    entry of every row). Warned: an asymmetric matrix, a diagonal that is not zero (only pairs ``i < j``
    are used).
    """
    try:
        a: np.ndarray = np.asarray(arr, dtype=np.float64)  # any shape: it is checked below
    except (TypeError, ValueError) as e:
        raise VisrepsError(f"{name} is not numeric ({e})") from None
    a = np.squeeze(a) if a.ndim > 2 else a
    if a.ndim == 2 and 1 in a.shape and a.shape[0] != a.shape[1]:
        a = a.ravel()
    if a.ndim == 1:
        try:
            n_from_condensed(len(a))
        except VisrepsError:
            raise VisrepsError(
                f"{name} is a vector of length {len(a)}, which is not n(n−1)/2 for any n; give the square matrix"
            ) from None
        a = squareform(a)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 2:
        hint = ""
        if a.ndim == 3:
            hint = "; a stack of subjects' RDMs goes to visreps.rsa_inference (CLI: compare --reference STACK)"
        raise VisrepsError(
            f"{name} must be a square n × n matrix (or its condensed vector), got shape {tuple(a.shape)}{hint}"
        )
    bad = ~np.isfinite(a)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise VisrepsError(
            f"{name} has {int(bad.sum())} NaN/inf entries (first at row {i}, column {j}); fill or drop those conditions"
        )
    scale = max(1.0, float(np.abs(a).max()))
    _check_diagonal(a, name, scale)
    if not np.allclose(a, a.T, rtol=1e-6, atol=1e-9 * scale):
        warnings.warn(f"{name} is not symmetric; only its upper triangle (i < j) is used", stacklevel=3)
    return a


def _check_diagonal(a: np.ndarray, name: str, scale: float) -> None:
    """A dissimilarity matrix has zeros on its diagonal; a similarity matrix its largest entries (refused)."""
    d = np.diag(a)
    if np.allclose(d, 0.0, atol=1e-9 * scale):
        return
    off = np.where(np.eye(len(a), dtype=bool), -np.inf, a)
    if (d > 0).all() and (d[:, None] >= off).all() and (d[None, :] >= off).all():
        shown = f"{d[0]:g}" if np.allclose(d, d[0]) else f"{d.min():g} … {d.max():g}"
        raise VisrepsError(
            f"{name} has {shown} on its diagonal, the largest entry of every row, where a dissimilarity matrix has 0: "
            "it is a similarity matrix (e.g. correlations or similarity judgements). Pass dissimilarities: 1 − S for "
            "similarities of at most 1 (numpy: np.save('rdm.npy', 1 - S)), or max(S) − S"
        )
    warnings.warn(
        f"{name} has non-zero entries on its diagonal; they are ignored (only pairs i < j are used)", stacklevel=4
    )


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
    layers: Sequence[str] | Mapping[str, Sequence[str]] | str | None = None,
) -> list[FeatureSet]:
    """Turn the ways of naming feature sets into a list of :class:`FeatureSet`, rows aligned.

    ``sources`` is one of, or a list of (or a dict label → one of):

    * an array ``(n_images, ...)`` (labelled by its dict key, else ``features 1``, ...);
    * an extraction output folder (all its layers, or ``layers``), or a ``.npy`` file;
    * a :class:`visreps.storage.Features` (``load_features``/``extract`` result);
    * a :class:`FeatureSet` or a list of them, taken as they are (``layers`` does not apply).

    Model ids are not extracted here: :func:`visreps.workflows.collect_features` (and
    ``visreps.compare_features``) extract them first.

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
    _align(sets)
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


def _align(sets: list[FeatureSet]) -> None:
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


# --------------------------------------------------------------------------- comparing


def _rdm_of(s: FeatureSet, rdm_method: str, **kw) -> np.ndarray:
    try:
        rdm = compute_rdm(s.features, rdm_method, **kw)
    except VisrepsError as e:
        raise VisrepsError(f"{s.where}: {e}") from None
    if s.order is not None:
        rdm = rdm[np.ix_(s.order, s.order)]
    return rdm


def compare_rdms(rdms: Mapping[str, Any], *, method: str = "pearson") -> pd.DataFrame:
    """Pairwise correlations of several RDMs (upper triangles) as a square DataFrame label × label.

    ``pearson`` and ``spearman`` are computed for all pairs at once (Pearson correlation of the
    condensed vectors, of their average ranks for Spearman: the same numbers as ``scipy.stats``);
    ``kendall`` and ``tau_a`` pair by pair with :func:`correlate_rdms`. The diagonal is 1.
    """
    import pandas as pd

    method = check_comparison(method)
    labels = [str(k) for k in rdms]
    if len(labels) < 1:
        raise VisrepsError("compare_rdms needs at least one RDM")
    vecs = [upper_triangle(v) for v in rdms.values()]
    m = len(vecs[0])
    for lab, v in zip(labels, vecs):
        if len(v) != m:
            raise VisrepsError(
                f"RDM {lab!r} has {n_from_condensed(len(v))} conditions but {labels[0]!r} has {n_from_condensed(m)}; "
                "compare RDMs of the same images"
            )
        if not np.isfinite(v).all():
            raise VisrepsError(f"RDM {lab!r} has NaN/inf entries")
        if np.all(v == v[0]):
            raise VisrepsError(f"RDM {lab!r} is constant; its correlation with anything is undefined")
    k = len(vecs)
    R = np.eye(k)
    if method in ("pearson", "spearman"):
        from scipy.stats import rankdata

        Z = np.empty((k, m))
        for i, v in enumerate(vecs):
            z = rankdata(v) if method == "spearman" else v.copy()
            z -= z.mean()
            z /= np.linalg.norm(z)
            Z[i] = z
        C = Z @ Z.T
        iu = np.triu_indices(k, 1)
        R[iu] = np.clip(C[iu], -1.0, 1.0)
        R.T[iu] = R[iu]
    else:
        for i in range(k):
            for j in range(i + 1, k):
                R[i, j] = R[j, i] = float(correlate_rdms(vecs[i], vecs[j], method))
    df = pd.DataFrame(R, index=pd.Index(labels, name="features"), columns=labels)
    df.attrs.update({"method": method, "n_conditions": n_from_condensed(m)})
    return df


@overload
def compare_features(
    sources: Any,
    *,
    layers: Sequence[str] | Mapping[str, Sequence[str]] | str | None = ...,
    rdm_method: str = ...,
    method: str = ...,
    sigma: float | None = ...,
    block_size: int | None = ...,
    device: Any = ...,
    return_rdms: Literal[False] = ...,
) -> pd.DataFrame: ...
@overload
def compare_features(
    sources: Any,
    *,
    layers: Sequence[str] | Mapping[str, Sequence[str]] | str | None = ...,
    rdm_method: str = ...,
    method: str = ...,
    sigma: float | None = ...,
    block_size: int | None = ...,
    device: Any = ...,
    return_rdms: Literal[True],
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]: ...
@overload
def compare_features(
    sources: Any,
    *,
    layers: Sequence[str] | Mapping[str, Sequence[str]] | str | None = ...,
    rdm_method: str = ...,
    method: str = ...,
    sigma: float | None = ...,
    block_size: int | None = ...,
    device: Any = ...,
    return_rdms: bool = ...,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[str, np.ndarray]]: ...
def compare_features(
    sources: Any,
    *,
    layers: Sequence[str] | Mapping[str, Sequence[str]] | str | None = None,
    rdm_method: str = "correlation",
    method: str = "pearson",
    sigma: float | None = None,
    block_size: int | None = None,
    device: Any = "auto",
    return_rdms: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """RDM of every feature set, correlated pairwise: a square DataFrame with model/layer labels.

    This works on features that exist: for model ids extracted on the fly (``images=``,
    ``work_dir=``) use :func:`visreps.compare_features` (:func:`visreps.workflows.compare_features`).

    Args:
        sources: arrays, output folders, ``Features``, :class:`FeatureSet`, a list of them, or a dict
            label → one of them; see :func:`collect_features`.
        layers: layers to use from every folder (default: all of a folder's layers).
        rdm_method: how each RDM is computed (see :func:`compute_rdm`; default ``correlation``).
        method: how RDMs are compared (see :func:`correlate_rdms`; default ``pearson``).
        sigma, block_size, device: passed to :func:`compute_rdm`.
        return_rdms: also return the dict label → RDM (rows in the common image order).

    Returns:
        DataFrame ``labels × labels`` of correlations (labels ``"<model>/<layer>"``; folder names
        replace model ids when one model appears twice). ``df.attrs`` holds ``rdm_method``,
        ``method``, ``n_conditions`` and ``sets`` (model, layer, folder of each label).
    """
    rdm_method = check_method(rdm_method)
    method = check_comparison(method)
    sets = collect_features(sources, layers=layers)
    rdms = {s.label: _rdm_of(s, rdm_method, sigma=sigma, block_size=block_size, device=device) for s in sets}
    df = compare_rdms(rdms, method=method)
    df.attrs["rdm_method"] = rdm_method
    df.attrs["sets"] = [
        {
            "label": s.label,
            "model": s.model,
            "weights": s.weights,
            "layer": s.layer,
            "folder": str(s.folder) if s.folder else None,
        }
        for s in sets
    ]
    return (df, rdms) if return_rdms else df


def _reorder_to(
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


def load_references(reference: Any, *, key: str | None = None) -> dict[str, np.ndarray]:
    """The reference RDMs of :func:`compare_to_reference`, validated: name → square float64 matrix.

    ``reference`` is a square RDM / condensed vector (named ``reference``), a file (see
    :func:`load_reference_rdm`; named by its stem) or a dict name → either.
    """
    return {name: rdm for name, (rdm, _) in _references(reference, key).items()}


def _references(reference: Any, key: str | None) -> dict[str, tuple[np.ndarray, list[Any] | None]]:
    """:func:`load_references` with the condition names each file holds."""
    if isinstance(reference, Mapping):
        refs = {str(k): v for k, v in reference.items()}
    else:
        refs = {Path(reference).stem if isinstance(reference, (str, os.PathLike)) else "reference": reference}
    loaded = {}
    for name, r in refs.items():
        if isinstance(r, (str, os.PathLike)):
            loaded[name] = _read_reference(r, key)
        else:
            loaded[name] = (as_rdm(r, name=f"reference RDM {name!r}"), None)
    return loaded


def compare_to_reference(
    sources: Any,
    reference: Any,
    *,
    layers: Sequence[str] | Mapping[str, Sequence[str]] | str | None = None,
    rdm_method: str = "correlation",
    method: str = "pearson",
    n_bootstrap: int = 0,
    ci: float = 0.95,
    seed: int | None = 0,
    reference_key: str | None = None,
    reference_order: Sequence[str] | str | os.PathLike | None = None,
    sigma: float | None = None,
    block_size: int | None = None,
    device: Any = "auto",
) -> pd.DataFrame:
    """Correlate every feature set's RDM with a reference RDM (brain or behaviour): a tidy DataFrame.

    For model ids extracted on the fly use :func:`visreps.compare_to_reference`
    (:func:`visreps.workflows.compare_to_reference`).

    Args:
        sources: as in :func:`compare_features`.
        reference: a square RDM / condensed vector, a file (see :func:`load_reference_rdm`), or a
            dict name → either, to compare against several references.
        reference_order: the images of the reference's rows, in order (a list of manifest paths,
            or a text file with one per line; bare file names work when unique). Default: the
            reference's rows are the images in manifest order.
        n_bootstrap, ci, seed: bootstrap over conditions for a confidence interval (see
            :func:`correlate_rdms`).
        Other arguments as in :func:`compare_features`.

    Returns:
        DataFrame with one row per (reference, feature set): ``reference``, ``model``, ``weights``, ``layer``,
        ``label``, ``r`` and, with bootstrap, ``ci_low``, ``ci_high``; ``attrs`` holds the methods.
    """
    import pandas as pd

    rdm_method = check_method(rdm_method)
    method = check_comparison(method)
    loaded = _references(reference, reference_key)
    sets = collect_features(sources, layers=layers)
    n_feat = len(sets[0].paths) if sets[0].paths is not None else sets[0].n
    idx: dict[str, np.ndarray | None] = {}
    for name, (r, names) in loaded.items():
        if r.shape[0] != n_feat:
            raise VisrepsError(
                f"reference RDM {name!r} has {r.shape[0]} conditions but the features have {n_feat} images; "
                "the reference must describe the same images (see reference_order)"
            )
        idx[name] = _reorder_to(sets, reference_order, n_feat, names, f"reference {name!r}")
    rows = []
    for s in sets:
        features_rdm = _rdm_of(s, rdm_method, sigma=sigma, block_size=block_size, device=device)
        for name, (ref, _) in loaded.items():
            order = idx[name]
            rdm = features_rdm if order is None else features_rdm[np.ix_(order, order)]
            res: RDMCorrelation = correlate_rdms(rdm, ref, method, n_bootstrap=n_bootstrap, ci=ci, seed=seed)
            row: dict[str, Any] = {"reference": name, "model": s.model, "weights": s.weights, "layer": s.layer}
            row["label"] = s.label
            row["r"] = float(res)
            if n_bootstrap:
                row["ci_low"], row["ci_high"] = res.ci_low, res.ci_high
            rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs.update({"rdm_method": rdm_method, "method": method, "n_conditions": n_feat})
    if n_bootstrap:
        df.attrs.update({"n_bootstrap": int(n_bootstrap), "ci": float(ci), "seed": seed})
    return df


# --------------------------------------------------------------------------- per-subject references and inference


def load_reference_rdms(
    reference: Any, *, key: str | None = None, sessions: str = "mean"
) -> tuple[np.ndarray, list[str]]:
    """Reference RDMs of one or several subjects, as a ``(subjects, n, n)`` float64 stack and subject names.

    ``reference`` is:

    * a file holding a stack: ``.npy`` / ``.npz`` / ``.h5``/``.hdf5`` shaped ``(subjects, n, n)``; ``.mat``
      shaped ``(n, n, subjects)`` as MATLAB stores it (``(subjects, n, n)`` is recognised too when
      ``subjects != n``); in ``.npz``/``.h5``/``.mat`` the one numeric array, or the one named ``key``.
      An ``(n, n, subjects)`` array in a ``.npy``/``.npz``/``.h5`` file is refused with the way out
      (``np.moveaxis(a, -1, 0)``): only MATLAB files are read subjects-last;
    * a MATLAB struct array of RDMs, ``RDMs(subject, session).RDM`` as in the 92-image data's
      ``92_brainRDMs.mat`` (v5 or v7.3): the field is found (the one square numeric field) or named by
      ``key`` (``"RDM"`` or ``"RDMs.RDM"``); a second struct axis is sessions, averaged per subject
      (``sessions="mean"``, the subject names say so) or kept as subjects of their own (``"keep"``);
    * rsatoolbox's saved RDMs (``rdms.save(path, file_type="hdf5")``): one subject per RDM;
    * a file holding one RDM (any format of :func:`load_reference_rdm`): one subject;
    * a folder of per-subject files (every file with a suffix of ``STACK_SUFFIXES``, in name order;
      each one RDM, or a stack whose subjects are added in order);
    * an array ``(subjects, n, n)``, one RDM, or a list of RDMs.

    Every subject's RDM is checked as :func:`load_reference_rdm` checks one (square, finite, not a
    similarity matrix; a condensed vector is expanded). Subjects are named by file stem (``<stem>[i]``
    inside a stack file).

    Raises:
        VisrepsError: a missing path, an empty folder, subjects with different numbers of conditions
            (naming them), and everything :func:`load_reference_rdm` rejects.
    """
    stack, names, _ = _load_reference_stack(reference, key, sessions)
    return stack, names


def _load_reference_stack(
    reference: Any, key: str | None, sessions: str = "mean"
) -> tuple[np.ndarray, list[str], list[Any] | None]:
    """:func:`load_reference_rdms` and the condition names the file(s) hold (``None``: none)."""
    if sessions not in SESSIONS:
        raise VisrepsError(f"sessions={sessions!r} is not known; use 'mean' (average per subject) or 'keep'")
    if isinstance(reference, (str, os.PathLike)):
        p = Path(reference).expanduser()
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in STACK_SUFFIXES)
            if not files:
                raise VisrepsError(
                    f"reference folder {str(p)!r} holds no RDM files ({', '.join(STACK_SUFFIXES)}); put one file per "
                    "subject there"
                )
            parts = [_load_reference_stack(f, key, sessions) for f in files]
            rdms = [r for stack, _, _ in parts for r in stack]
            names = [nm for _, nms, _ in parts for nm in nms]
            return (*_stack(rdms, names, f"reference folder {str(p)!r}"), _same_conditions(files, parts))
        if not p.exists():
            raise VisrepsError(f"reference RDM file or folder {str(p)!r} does not exist")
        p = check_file(p, STACK_SUFFIXES, "reference")
        got = _reference_file(p, key, stack=True)
        rdms, names = _subjects_of(got, p, sessions)
        return (*_stack(rdms, names, f"reference {p.name!r}"), got.names)
    if isinstance(reference, Mapping):
        return (*_stack(list(reference.values()), [str(k) for k in reference], "reference"), None)
    arr = np.asarray(reference, dtype=np.float64)
    if arr.ndim == 3:
        return (*_stack(list(arr), [f"subject {i}" for i in range(len(arr))], "reference"), None)
    if isinstance(reference, (list, tuple)) and arr.ndim == 2 and len(reference) > 1 and arr.shape[0] != arr.shape[1]:
        return (*_stack(list(arr), [f"subject {i}" for i in range(len(arr))], "reference"), None)
    return (*_stack([arr], ["reference"], "reference"), None)


def _subjects_of(got: FileArray, p: Path, sessions: str) -> tuple[list[Any], list[str]]:
    """The subjects' RDMs of one reference file, and their names."""
    arr = np.asarray(got.values)
    what = f"reference {p.name!r}" + (f" ({got.key})" if got.key else "")
    if got.struct_axes == 2:  # RDMs(subject, session).RDM
        n_sub, n_ses = arr.shape[:2]
        if sessions == "mean":
            names = [f"{p.stem}[{i}] (mean of {n_ses} sessions)" for i in range(n_sub)]
            return list(arr.astype(np.float64).mean(axis=1)), names
        return list(arr.reshape(n_sub * n_ses, *arr.shape[2:])), [
            f"{p.stem}[{i}, session {j}]" for i in range(n_sub) for j in range(n_ses)
        ]
    if arr.ndim == 4:
        raise VisrepsError(
            f"{what} has 4 axes {tuple(arr.shape)}; give (subjects, n, n), or a MATLAB struct array RDMs(subject, "
            "session) whose field holds each n × n RDM"
        )
    if arr.ndim == 3:
        if got.matlab and got.struct_axes == 0 and arr.shape[0] == arr.shape[1]:
            arr = np.moveaxis(arr, -1, 0)  # MATLAB's n × n × subjects
        elif arr.shape[0] == arr.shape[1] != arr.shape[2]:
            raise VisrepsError(
                f"{what} has shape {tuple(arr.shape)}: n × n × subjects, MATLAB's order; visreps reads stacks as "
                "(subjects, n, n) from .npy/.npz/.h5 files: save np.moveaxis(a, -1, 0) (or store it in a .mat file)"
            )
        return list(arr), [f"{p.stem}[{i}]" for i in range(arr.shape[0])]
    if got.struct_axes == 1 and arr.ndim == 2 and arr.shape[0] != arr.shape[1]:  # condensed RDMs of subjects
        return list(arr), [f"{p.stem}[{i}]" for i in range(arr.shape[0])]
    return [arr], [p.stem]


def _same_conditions(files: list[Path], parts: list[tuple[Any, Any, list[Any] | None]]) -> list[Any] | None:
    """The condition names of a folder of reference files: those its files name, which must agree."""
    named = [(f, c) for f, (_, _, c) in zip(files, parts) if c is not None]
    if not named:
        return None
    f0, c0 = named[0]
    for f, c in named[1:]:
        if [str(x) for x in c] != [str(x) for x in c0]:
            raise VisrepsError(
                f"reference files {f0.name!r} and {f.name!r} name their conditions differently; every subject's RDM "
                "must describe the same images in the same order"
            )
    if len(named) != len(files):
        unnamed = [f.name for f, (_, _, c) in zip(files, parts) if c is None]
        raise VisrepsError(
            f"reference folder: {f0.name!r} names its conditions but {unnamed[:3]} do not; name them in every file "
            "(or in none, and give --reference-order)"
        )
    return c0


def _stack(rdms: list[Any], names: list[str], where: str) -> tuple[np.ndarray, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sq = [as_rdm(r, name=f"{where}, subject {nm!r}") for r, nm in zip(rdms, names)]
    if caught:
        warnings.warn(str(caught[0].message), stacklevel=3)
    sizes = {len(r) for r in sq}
    if len(sizes) > 1:
        desc = ", ".join(f"{nm}: {len(r)}" for nm, r in zip(names[:6], sq[:6]))
        raise VisrepsError(
            f"{where}: the subjects' RDMs describe different numbers of images ({desc}); every subject must have an "
            "RDM of the same images in the same order"
        )
    return np.stack(sq), names


def rsa_inference(
    sources: Any,
    reference: Any,
    *,
    layers: Sequence[str] | Mapping[str, Sequence[str]] | str | None = None,
    rdm_method: str = "correlation",
    method: str = "pearson",
    noise_ceiling: bool = False,
    bootstrap: Any = None,
    n_bootstrap: int = 1000,
    test: Any = None,
    test_type: str = "t",
    n_permutations: int = 1000,
    correction: str = "fdr",
    alpha: float = 0.05,
    ci: float = 0.95,
    seed: int | None = 0,
    reference_key: str | None = None,
    reference_order: Sequence[str] | str | os.PathLike | None = None,
    reference_sessions: str = "mean",
    sigma: float | None = None,
    block_size: int | None = None,
    device: Any = "auto",
) -> Any:
    """Every feature set's RDM against per-subject reference RDMs, with noise ceiling, bootstrap and tests.

    The feature sets are collected and aligned as in :func:`compare_to_reference` (same strict rules:
    the reference's conditions are the images in manifest order, or those of ``reference_order``);
    the subjects' RDMs come from :func:`load_reference_rdms`. The numbers are those of
    :func:`visreps.analysis.inference.rdm_inference` (formulas there): a model's ``r`` is its mean
    comparison with the subjects' RDMs.

    For model ids extracted on the fly use :func:`visreps.rsa_inference` (:func:`visreps.workflows.rsa_inference`).

    Args:
        sources: as in :func:`compare_features`.
        reference: see :func:`load_reference_rdms`.
        reference_sessions: a struct array's sessions: ``"mean"`` per subject or ``"keep"`` (see
            :func:`load_reference_rdms`).
        noise_ceiling, bootstrap, n_bootstrap, test, test_type, n_permutations, correction, alpha, ci, seed:
            see :func:`visreps.analysis.inference.rdm_inference`.
        Other arguments as in :func:`compare_to_reference`.

    Returns:
        :class:`visreps.analysis.inference.RSAInference`; its ``table`` has the columns ``reference``,
        ``model``, ``layer``, ``label`` first, and ``attrs`` with the methods and ``subjects``.
    """
    from .inference import check_bootstrap, check_tests, rdm_inference

    rdm_method = check_method(rdm_method)
    method = check_comparison(method)
    check_bootstrap(bootstrap)
    check_tests(test)
    stack, names, conditions = _load_reference_stack(reference, reference_key, reference_sessions)
    ref_name = Path(reference).stem if isinstance(reference, (str, os.PathLike)) else "reference"
    sets = collect_features(sources, layers=layers)
    n_feat = len(sets[0].paths) if sets[0].paths is not None else sets[0].n
    if stack.shape[1] != n_feat:
        raise VisrepsError(
            f"reference {ref_name!r} has {stack.shape[1]} conditions but the features have {n_feat} images; "
            "the reference must describe the same images (see reference_order)"
        )
    idx = _reorder_to(sets, reference_order, n_feat, conditions, f"reference {ref_name!r}")
    rdms = {}
    for s in sets:
        rdm = _rdm_of(s, rdm_method, sigma=sigma, block_size=block_size, device=device)
        rdms[s.label] = rdm if idx is None else rdm[np.ix_(idx, idx)]
    res = rdm_inference(
        rdms,
        stack,
        method=method,
        noise_ceiling=noise_ceiling,
        bootstrap=bootstrap,
        n_bootstrap=n_bootstrap,
        test=test,
        test_type=test_type,
        n_permutations=n_permutations,
        correction=correction,
        alpha=alpha,
        ci=ci,
        seed=seed,
    )
    t = res.table
    t.insert(0, "layer", [s.layer for s in sets])
    t.insert(0, "weights", [s.weights for s in sets])
    t.insert(0, "model", [s.model for s in sets])
    t.insert(0, "reference", ref_name)
    t.attrs.update({"rdm_method": rdm_method, "subjects": names})
    return res
