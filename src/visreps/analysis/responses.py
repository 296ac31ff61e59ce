"""Brain or behavioural responses to images: reading them and tying their rows to feature rows.

A response set is a matrix *images × targets* (voxels, neurons, behavioural dimensions), with
optional leading axes for *subjects* and/or *repetitions*. :func:`load_responses` reads it from
``.npy``, ``.npz``, ``.mat`` (also v7.3/HDF5), ``.h5``/``.hdf5``, ``.csv``/``.tsv``/``.txt`` and
returns a :class:`Responses`: the numbers, the axis names, the image of every row when the file
names it, the target names.

Rows are tied to the images of a features folder by :func:`match_images`, with the strict rules
of ``compare --reference``: the response rows must name exactly the images of the features'
manifest (by manifest path, or by file name when that is unique), each once; wrong counts,
unknown names and duplicates are errors that name examples. Responses whose file names no image
take the manifest's order, and must then have exactly one row per image.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import VisrepsError
from ..options import NAN_POLICIES
from ._files import NAME_VARIABLES, check_file, numbers_to_rows, read_array, read_lines

if TYPE_CHECKING:
    from .compare import FeatureSet

#: the axes a response array may have, in the order :class:`Responses` keeps them
AXES = ("subjects", "repetitions", "images", "targets")
_AXIS_ALIASES = {
    "subject": "subjects",
    "participants": "subjects",
    "participant": "subjects",
    "repetition": "repetitions",
    "reps": "repetitions",
    "rep": "repetitions",
    "trials": "repetitions",
    "trial": "repetitions",
    "image": "images",
    "stimuli": "images",
    "stimulus": "images",
    "conditions": "images",
    "target": "targets",
    "voxels": "targets",
    "neurons": "targets",
    "units": "targets",
    "channels": "targets",
}
RESPONSE_SUFFIXES = (".npy", ".npz", ".mat", ".h5", ".hdf5", ".csv", ".tsv", ".txt")
__all__ = ["AXES", "NAME_VARIABLES", "Responses", "as_responses", "load_responses", "match_images", "read_order"]
_TABLE_LAYOUT = "a responses table has one row per image: an optional column of image names, then one number per target"


@dataclass
class Responses:
    """Responses to images, with the names of their axes.

    Attributes:
        data: float64 array whose axes are ``axes`` (always in the order of :data:`AXES`:
            ``subjects``, ``repetitions``, ``images``, ``targets``; the first two when present).
        axes: the axis names of ``data``.
        images: the image of every row (``images`` axis), as the file wrote it: names, or whole
            numbers that are 0-based manifest rows; ``None`` when the file names no images (rows
            then follow the features' manifest order).
        targets: a name per target (a table's header, else ``"0"``, ``"1"``, ...).
        source: the file read (``None`` for arrays).
        dropped: labels of targets dropped for NaN values (see :meth:`flat` and ``nan="drop"``).
    """

    data: np.ndarray
    axes: tuple[str, ...]
    images: list[Any] | None = None
    targets: list[str] = field(default_factory=list)
    source: Path | None = None
    dropped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.targets:
            self.targets = [str(i) for i in range(self.n_targets)]

    @property
    def n_images(self) -> int:
        return int(self.data.shape[self.axes.index("images")])

    @property
    def n_targets(self) -> int:
        return int(self.data.shape[self.axes.index("targets")])

    @property
    def n_subjects(self) -> int:
        return int(self.data.shape[0]) if "subjects" in self.axes else 1

    @property
    def n_repetitions(self) -> int:
        return int(self.data.shape[self.axes.index("repetitions")]) if "repetitions" in self.axes else 1

    def full(self) -> np.ndarray:
        """``data`` as a 4-D array ``(subjects, repetitions, images, targets)`` (missing axes of size 1)."""
        d = self.data
        if "repetitions" not in self.axes:
            d = d[..., None, :, :] if "subjects" in self.axes else d[None]
        if "subjects" not in self.axes:
            d = d[None]
        return d

    def take_images(self, idx: Sequence[int] | np.ndarray) -> Responses:
        """The responses with their image rows taken in the order ``idx``."""
        idx = np.asarray(idx, dtype=np.intp)
        ax = self.axes.index("images")
        imgs = None if self.images is None else [self.images[i] for i in idx]
        return replace(self, data=np.take(self.data, idx, axis=ax), images=imgs)

    def flat(self) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
        """Targets of every subject side by side.

        Returns:
            ``(Y, reps, labels)``: ``Y`` ``(images, subjects·targets)``, the mean over repetitions;
            ``reps`` ``(repetitions, images, subjects·targets)`` when there are repetitions, else
            ``None``; ``labels`` the target names, ``"<subject>/<target>"`` with subjects
            (subjects named ``s0``, ``s1``, ...).
        """
        d = self.full()  # (S, R, N, T)
        s, r, n, t = d.shape
        labels = list(self.targets) if s == 1 else [f"s{i}/{name}" for i in range(s) for name in self.targets]
        if s == 1 and r == 1:
            return self.data.reshape(n, t), None, labels  # a view: no copy of a large response matrix
        reps = np.ascontiguousarray(d.transpose(1, 2, 0, 3).reshape(r, n, s * t))
        Y = reps.mean(axis=0) if r > 1 else reps[0]
        return Y, (reps if r > 1 else None), labels

    def __repr__(self) -> str:
        shape = ", ".join(f"{a}={n}" for a, n in zip(self.axes, self.data.shape))
        named = "named" if self.images is not None else "unnamed"
        where = f" from {str(self.source)!r}" if self.source else ""
        return f"Responses({shape}; {named} rows{where})"


# --------------------------------------------------------------------------- axes


def parse_axes(axes: str | Sequence[str] | None, ndim: int, where: str = "responses") -> tuple[str, ...]:
    """Axis names of an array with ``ndim`` dimensions: ``axes`` (a comma list or a sequence), or the default.

    Defaults: 1-D is ``images`` (one target), 2-D ``images,targets``; arrays with more
    dimensions must declare theirs (e.g. ``"subjects,repetitions,images,targets"``).
    """
    if axes is None:
        if ndim == 1:
            return ("images",)
        if ndim == 2:
            return ("images", "targets")
        raise VisrepsError(
            f"{where} have {ndim} dimensions; say what they are with axes=... (CLI: --axes), e.g. "
            "'repetitions,images,targets' or 'subjects,repetitions,images,targets'"
        )
    names = [a.strip().lower() for a in axes.split(",")] if isinstance(axes, str) else [str(a).lower() for a in axes]
    names = [_AXIS_ALIASES.get(a, a) for a in names if a]
    bad = [a for a in names if a not in AXES]
    if bad:
        raise VisrepsError(f"unknown axis name(s) {bad} in axes={axes!r}; use names from {', '.join(AXES)}")
    if len(set(names)) != len(names):
        raise VisrepsError(f"axes={axes!r} names an axis twice")
    if "images" not in names:
        raise VisrepsError(f"axes={axes!r} must include 'images'")
    if len(names) != ndim:
        raise VisrepsError(f"axes={axes!r} names {len(names)} axes but {where} have {ndim} (shape mismatch)")
    return tuple(names)


def as_responses(
    obj: Any,
    *,
    axes: str | Sequence[str] | None = None,
    images: Sequence[str] | str | os.PathLike | None = None,
    targets: Sequence[str] | None = None,
    source: Path | None = None,
    where: str = "responses",
) -> Responses:
    """A :class:`Responses` from an array-like (or a :class:`Responses`, returned as is unless ``images`` is given).

    Args:
        obj: numbers shaped as ``axes`` says (default ``images`` or ``images,targets``).
        axes: the axis names, e.g. ``"repetitions,images,targets"``.
        images: the image of every row: a list, or a text file with one image path per line.
        targets: a name per target.
    """
    if isinstance(obj, Responses):
        if images is None:
            return obj
        res = replace(obj)
        _set_images(res, obj.images, images, where)  # names it already has must agree
        return res
    row_names: list[Any] | None = None
    if _is_pandas(obj):
        obj, row_names, frame_targets = _from_frame(obj, where)
        targets = frame_targets if targets is None else targets
    try:
        a = np.asarray(obj, dtype=np.float64)  # no copy of float64 input: responses are never written to
    except (TypeError, ValueError) as e:
        raise VisrepsError(f"{where} are not numeric ({e})") from None
    if a.ndim == 0 or a.size == 0:
        raise VisrepsError(f"{where} are empty or a single number (shape {a.shape})")
    names = parse_axes(axes, a.ndim, where)
    if "targets" not in names:
        a, names = a[..., None], (*names, "targets")
    perm = [names.index(x) for x in AXES if x in names]
    a = np.ascontiguousarray(a.transpose(perm))
    ordered = tuple(AXES[i] for i in range(len(AXES)) if AXES[i] in names)
    res = Responses(data=a, axes=ordered, targets=list(targets) if targets is not None else [], source=source)
    if targets is not None and len(res.targets) != res.n_targets:
        raise VisrepsError(f"{where}: {len(res.targets)} target names for {res.n_targets} targets")
    _set_images(res, row_names, images, where)
    return res


def _is_pandas(obj: Any) -> bool:
    return type(obj).__module__.startswith("pandas") and hasattr(obj, "index") and hasattr(obj, "to_numpy")


def _from_frame(df: Any, where: str) -> tuple[np.ndarray, list[Any] | None, list[str] | None]:
    """A DataFrame's (or Series') numbers, the images its index or image column names, and its column names.

    An index that is not the default ``0 … n−1`` names the rows (text: image names; integers: 0-based image
    numbers); else a column named ``image``, ``path``, ``stimulus``, ... does (and is not a target).
    """
    import pandas as pd

    frame = df.to_frame() if isinstance(df, pd.Series) else df
    names: list[Any] | None = None
    idx = frame.index
    if not (isinstance(idx, pd.RangeIndex) and idx.start == 0 and idx.step == 1):
        values = list(idx)
        names = [int(x) for x in values] if pd.api.types.is_integer_dtype(idx.dtype) else [str(x) for x in values]
    else:
        col = next((c for c in frame.columns if str(c).lower() in NAME_VARIABLES), None)
        if col is not None:
            names = [str(x) for x in frame[col]]
            frame = frame.drop(columns=[col])
    bad = [str(c) for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c].dtype)]
    if bad:
        raise VisrepsError(
            f"{where}: the column(s) {bad[:3]} are not numbers; a responses DataFrame has one row per image (named by "
            "its index or an 'image' column) and one numeric column per target"
        )
    return frame.to_numpy(dtype=np.float64), names, [str(c) for c in frame.columns]


def read_order(images: Sequence[str] | str | os.PathLike, n: int | None = None, where: str = "responses") -> list[str]:
    """Image names from a list or an order file (one path per line; blank lines and ``#`` comments skipped)."""
    if isinstance(images, (str, os.PathLike)):
        p = Path(images).expanduser()
        if not p.is_file():
            raise VisrepsError(f"order file {str(p)!r} does not exist (one image path per line)")
        names = read_lines(p, "order file")
        what = f"order file {str(p)!r}"
    else:
        names = [str(x) for x in images]
        what = "the image list"
    if n is not None and len(names) != n:
        raise VisrepsError(f"{what} lists {len(names)} images but {where} have {n} rows (images); give one per row")
    return names


# --------------------------------------------------------------------------- reading files


def load_responses(
    path: str | os.PathLike,
    *,
    key: str | None = None,
    axes: str | Sequence[str] | None = None,
    images: Sequence[str] | str | os.PathLike | None = None,
) -> Responses:
    """Read responses (images × targets, optionally with leading subjects/repetitions axes) from a file.

    Formats:

    * ``.npy``: the array.
    * ``.npz``, ``.mat`` (v5, and v7.3 decoded as MATLAB wrote it: cell arrays, ``char``, structs),
      ``.h5``/``.hdf5`` (nested datasets named ``group/name``): the one numeric array of at least 1
      dimension, or the variable/dataset ``key``. A variable named ``images`` (or ``paths``,
      ``stimuli``, ``filenames``, ...) with one entry per row names the images: text, or whole
      numbers that are 0-based manifest rows (see ``docs/files.md``).
    * ``.csv``, ``.tsv``, ``.txt`` (whitespace or comma separated): one row per image. A column of
      image names (a non-numeric first column, or a column headed ``image``, ``path``,
      ``stimulus``, ``filename``, ...) names the rows; every other column is a target, named by
      the header row when there is one. Empty cells are NaN. Tables are 2-D (images × targets).

    Args:
        path: the file.
        key: the variable/dataset of an npz/mat/hdf5 file holding the responses.
        axes: names of the array's axes in order, e.g. ``"subjects,repetitions,images,targets"``
            (aliases: trials/reps, stimuli, voxels/neurons/units); default ``images,targets``.
        images: the image of every row (a list or an order file, one image path per line), for
            files that name no images; for a file that does, it must list the same names in the
            same order (else an error: names are never replaced).

    Returns:
        :class:`Responses`. NaN values are kept; :func:`visreps.analysis.encode` drops or
        rejects them (``nan=``).

    Raises:
        VisrepsError: a missing file, an unknown format, no or several candidate arrays (named),
            non-numeric cells, axes that do not fit the array's shape.
    """
    p = check_file(path, RESPONSE_SUFFIXES, "responses")
    where = f"responses in {p.name!r}"
    if p.suffix.lower() in (".csv", ".tsv", ".txt") and axes is not None:
        if len(parse_axes(axes, len(str(axes).split(",")))) > 2:
            raise VisrepsError(f"{where}: a table holds images × targets only; store more axes in .npy/.npz/.mat/.h5")
    got = read_array(p, key, layout=_TABLE_LAYOUT)
    res = as_responses(got.values, axes=axes, targets=got.columns, source=p, where=where)
    _set_images(res, got.names, images, where)
    return res


def _set_images(res: Responses, names: list[Any] | None, images: Any, where: str) -> None:
    """The rows' images: those the file names, or those of ``images``; both must agree (never one dropped)."""
    if names is not None and len(names) != res.n_images:
        raise VisrepsError(f"{where}: {len(names)} image names for {res.n_images} rows")
    if images is None:
        res.images = names
        return
    given = read_order(images, res.n_images, where)
    if names is not None and [str(x) for x in names] != given:
        i = next(i for i, (a, b) in enumerate(zip(names, given)) if str(a) != b)
        raise VisrepsError(
            f"{where} name their images, and the order given (images=..., CLI: --order) disagrees (row {i}: "
            f"{names[i]!r} in the file, {given[i]!r} in the order); leave out the order: the file's names are used"
        )
    res.images = given


# --------------------------------------------------------------------------- matching rows


def match_images(
    names: Sequence[str] | None,
    paths: Sequence[str] | None,
    *,
    n_rows: int,
    n_features: int,
    where: str = "responses",
    features: str = "the features",
) -> np.ndarray:
    """The feature row of every response row.

    Rules (those of ``compare --reference``): with image names, each must name exactly one
    manifest path, either equal to it or, when the manifest's file names are unique, equal to its
    file name (``a/b/cat.jpg`` matches ``cat.jpg``); every image of the manifest must be named
    once. Whole numbers (``int``) are 0-based manifest rows (feature rows without a manifest); numbers
    ``1 … n`` are refused (subtract 1), and so are numbers when the image files are named by other
    numbers. Without names, the responses must have one row per feature row, in manifest order.

    Args:
        names: the responses' image names (``None``: manifest order).
        paths: the manifest paths of the feature rows (``None`` for arrays without a manifest).
        n_rows: number of response rows (images).
        n_features: number of feature rows.

    Returns:
        integer array ``idx``: response row ``j`` is feature row ``idx[j]``.

    Raises:
        VisrepsError: a different number of images, names not in the manifest, names listed
            twice, images of the manifest that no row names; each with examples.
    """
    if names is None:
        if n_rows != n_features:
            raise VisrepsError(
                f"{where} have {n_rows} rows (images) but {features} have {n_features}; give the image of every row "
                "with an order file (images=..., CLI: --order) or name them in the file"
            )
        return np.arange(n_features)
    names = list(names)
    if names and all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in names):
        rows = numbers_to_rows([int(x) for x in names], None if paths is None else list(paths), n_features, where)
        if paths is None:
            return _check_numbers(rows, n_features, where, features)
        names = [paths[i] for i in rows]
    if paths is None:
        raise VisrepsError(
            f"{where} name their images, but {features} have no manifest (arrays); pass output folders, or "
            "responses in the order of the feature rows"
        )
    paths = list(paths)
    dup = sorted({x for x in names if names.count(x) > 1}) if len(set(names)) != len(names) else []
    if dup:
        raise VisrepsError(f"{where} list {len(dup)} image(s) more than once, e.g. {dup[:3]}; give each image once")
    idx = _rows_by_name(names, paths, where, features)
    _check_all_once(names, idx, paths, where, features)
    return idx


def _rows_by_name(names: list[str], paths: list[str], where: str, features: str) -> np.ndarray:
    """The manifest row of every name: its manifest path, else its file name when exactly one path has it."""
    pos = {p: i for i, p in enumerate(paths)}
    base: dict[str, list[int]] = {}
    for i, p in enumerate(paths):
        base.setdefault(Path(p).name, []).append(i)
    idx = np.full(len(names), -1, dtype=np.intp)
    unknown, ambiguous = [], []
    for j, name in enumerate(names):
        i = pos.get(name)
        if i is None:
            cands = base.get(Path(name).name, [])
            if len(cands) != 1:
                (ambiguous if cands else unknown).append(name)
                continue
            i = cands[0]
        idx[j] = i
    if unknown:
        raise VisrepsError(
            f"{where} name {len(unknown)} image(s) that are not in {features}' manifest, e.g. {unknown[:3]}; "
            f"names must be manifest paths (e.g. {paths[:2]}) or unique file names"
        )
    if ambiguous:
        raise VisrepsError(
            f"{where}: the file name(s) {ambiguous[:3]} match several manifest paths; give full manifest paths"
        )
    return idx


def _check_all_once(names: list[str], idx: np.ndarray, paths: list[str], where: str, features: str) -> None:
    """Every manifest image named by exactly one response row."""
    if len(set(idx.tolist())) != len(idx):
        first: dict[int, str] = {}
        twice = []
        for name, i in zip(names, idx.tolist()):
            if i in first:
                twice.append((first[i], name))
            first.setdefault(i, name)
        raise VisrepsError(f"{where} name one image twice (e.g. {twice[:2]}); give each image once")
    if len(names) != len(paths):
        missing = [paths[i] for i in sorted(set(range(len(paths))) - set(idx.tolist()))]
        raise VisrepsError(
            f"{where} have {len(names)} images but {features} have {len(paths)}; e.g. no response for {missing[:3]}. "
            "Responses and features must hold the same images (extract the features from exactly those images)"
        )


def responses_from(responses: Any, *, key: str | None = None, axes: Any = None, order: Any = None) -> Responses:
    """A file's responses (:func:`load_responses`) or an array's/table's (:func:`as_responses`), as the analyses
    that take ``responses, key=, axes=, order=`` read them."""
    if isinstance(responses, (str, os.PathLike)):
        return load_responses(responses, key=key, axes=axes, images=order)
    return as_responses(responses, axes=axes, images=order)


def match_sets(sets: Sequence[FeatureSet], resp: Responses) -> tuple[list[np.ndarray], list[str] | None]:
    """Feature rows of every response row, for every feature set (:func:`match_images` against the first set with
    a manifest); and the manifest path of every response row (``None`` without a manifest)."""
    ref = next((s for s in sets if s.paths is not None), None)
    paths = ref.paths if ref is not None else None
    n = len(paths) if paths is not None else sets[0].n
    where = f"responses in {resp.source.name!r}" if resp.source else "responses"
    idx = match_images(resp.images, paths, n_rows=resp.n_images, n_features=n, where=where)
    rows = [idx if s.order is None else s.order[idx] for s in sets]
    return rows, None if paths is None else [paths[i] for i in idx]


def _check_numbers(rows: list[int], n: int, where: str, features: str) -> np.ndarray:
    """Image numbers of features without a manifest: each row once, all of them."""
    if len(set(rows)) != len(rows):
        twice = sorted({x for x in rows if rows.count(x) > 1})
        raise VisrepsError(f"{where} give the image number(s) {twice[:3]} more than once; give each image once")
    if len(rows) != n:
        raise VisrepsError(f"{where} have {len(rows)} images but {features} have {n}; give every image once")
    return np.asarray(rows, dtype=np.intp)


# --------------------------------------------------------------------------- NaN and constant targets


def clean_targets(
    Y: np.ndarray, reps: np.ndarray | None, labels: list[str], *, nan: str = "error", images: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray | None, list[str], list[str], np.ndarray]:
    """Apply the NaN policy to flattened targets.

    Args:
        Y: ``(images, targets)``; reps: ``(repetitions, images, targets)`` or ``None``.
        nan: ``"error"`` (default): NaN/inf anywhere is an error naming how many values, in how
            many targets and the first (target, image). ``"drop"``: targets with any NaN/inf are
            dropped, with a warning naming how many; their labels are returned.

    Returns:
        ``(Y, reps, labels, dropped_labels, kept_index)``.
    """
    if nan not in NAN_POLICIES:
        raise VisrepsError(f"nan={nan!r} is not known; use 'error' or 'drop'")
    return apply_nan_policy(Y, reps, labels, nan=nan, images=images, stacklevel=4)


def apply_nan_policy(
    Y: np.ndarray,
    reps: np.ndarray | None,
    labels: list[str],
    *,
    nan: str,
    images: list[str] | None = None,
    stacklevel: int = 3,
) -> tuple[np.ndarray, np.ndarray | None, list[str], list[str], np.ndarray]:
    """:func:`clean_targets` with ``nan`` already checked (an option object's); ``stacklevel`` of its warning."""
    src = reps if reps is not None else Y[None]
    bad_vals = ~np.isfinite(src)
    bad_t = bad_vals.any(axis=(0, 1))
    if not bad_t.any():
        return Y, reps, labels, [], np.arange(len(labels))
    n_bad = int(bad_vals.sum())
    _, i0, t0 = np.argwhere(bad_vals)[0]
    img = images[i0] if images is not None else f"row {i0}"
    if nan == "error":
        raise VisrepsError(
            f"responses have {n_bad} NaN/inf value(s) in {int(bad_t.sum())} of {len(labels)} targets (first: target "
            f"{labels[t0]!r}, image {img!r}); drop those targets with nan='drop' (CLI: --nan drop) or fill them"
        )
    keep = np.flatnonzero(~bad_t)
    dropped = [labels[t] for t in np.flatnonzero(bad_t)]
    if len(keep) == 0:
        raise VisrepsError(f"every one of the {len(labels)} targets has NaN/inf values; nothing is left to fit")
    warnings.warn(
        f"dropped {len(dropped)} of {len(labels)} targets with NaN/inf values (e.g. {dropped[:3]})",
        stacklevel=stacklevel,
    )
    return (
        Y[:, keep],
        None if reps is None else reps[:, :, keep],
        [labels[t] for t in keep],
        dropped,
        keep,
    )
