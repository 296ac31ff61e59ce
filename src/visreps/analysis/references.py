"""Reference RDMs (brain or behaviour): read once, checked, and held as a :class:`ReferenceStack`.

One RDM (:func:`load_reference_rdm`), named references (:func:`load_references`) and per-subject stacks
(:func:`load_reference_rdms`: stack files, MATLAB struct arrays ``RDMs(subject, session).RDM``, rsatoolbox's
saved RDMs, folders of per-subject files). Every file goes through the one reader of users' files,
:mod:`visreps.analysis._files` (rules in ``docs/files.md``); every RDM through :func:`as_rdm`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VisrepsError
from ..options import SESSIONS
from ._files import FileArray, check_file, read_array
from .rsa import n_from_condensed, squareform

REFERENCE_SUFFIXES = (".npy", ".npz", ".mat", ".csv", ".tsv", ".txt", ".dat")
#: formats of reference RDMs and per-subject stacks: :data:`REFERENCE_SUFFIXES` plus HDF5 (also rsatoolbox's
#: ``RDMs.save(path, file_type="hdf5")``)
STACK_SUFFIXES = (*REFERENCE_SUFFIXES, ".h5", ".hdf5")

_REF_LAYOUT = (
    "a reference RDM file holds one row of numbers per condition; cells that are not numbers may only be a header "
    "row and a first column of condition names"
)

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


def load_references(reference: Any, *, key: str | None = None) -> dict[str, np.ndarray]:
    """The reference RDMs of :func:`compare_to_reference`, validated: name → square float64 matrix.

    ``reference`` is a square RDM / condensed vector (named ``reference``), a file (see
    :func:`load_reference_rdm`; named by its stem) or a dict name → either.
    """
    return {name: rdm for name, (rdm, _) in _references(reference, key).items()}


def _references(reference: Any, key: str | None) -> dict[str, tuple[np.ndarray, list[Any] | None]]:
    """:func:`load_references` with the condition names each file holds."""
    if isinstance(reference, ReferenceStack):
        one = reference.one_rdm()
        if one is not None:
            return {reference.name: one}
        if reference.source is not None:
            reference = reference.source
        else:
            reference = reference.rdms[0] if reference.n_subjects == 1 else reference.rdms
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


# --------------------------------------------------------------------------- per-subject references


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
    got = ReferenceStack.load(reference, key=key, sessions=sessions)
    return got.rdms, list(got.subjects)


@dataclass(frozen=True, eq=False)
class ReferenceStack:
    """Per-subject reference RDMs, read and checked once (:meth:`load`) and passed down instead of a path.

    Attributes:
        rdms: ``(subjects, n, n)`` float64, every subject's RDM checked by :func:`as_rdm`.
        subjects: the subjects' names (see :func:`load_reference_rdms`).
        conditions: the condition names the file(s) hold, in row order (``None``: none).
        name: how tables and messages name the reference: the file's stem, else ``"reference"``.
        source: the file or folder it was read from (``None``: arrays).
    """

    rdms: np.ndarray
    subjects: tuple[str, ...]
    conditions: tuple[Any, ...] | None = None
    name: str = "reference"
    source: Path | None = None

    @classmethod
    def load(cls, reference: Any, *, key: str | None = None, sessions: str = "mean") -> ReferenceStack:
        """Read ``reference`` (anything :func:`load_reference_rdms` takes; a ``ReferenceStack`` is returned as is)."""
        if isinstance(reference, ReferenceStack):
            return reference
        stack, names, conditions = _load_reference_stack(reference, key, sessions)
        is_path = isinstance(reference, (str, os.PathLike))
        return cls(
            rdms=stack,
            subjects=tuple(names),
            conditions=None if conditions is None else tuple(conditions),
            name=Path(reference).stem if is_path else "reference",
            source=Path(reference) if is_path else None,
        )

    @property
    def n_subjects(self) -> int:
        return int(self.rdms.shape[0])

    @property
    def n_conditions(self) -> int:
        return int(self.rdms.shape[1])

    def one_rdm(self) -> tuple[np.ndarray, list[Any] | None] | None:
        """The RDM of a file holding one RDM, checked again as :func:`load_reference_rdm` checks it (same warnings);
        ``None`` when this stack is not one plain file's RDM (then the file is read as one RDM)."""
        if self.source is None or self.source.is_dir() or self.subjects != (self.source.stem,):
            return None
        rdm = as_rdm(self.rdms[0], name=f"reference RDM {self.source.name!r}")
        return rdm, None if self.conditions is None else list(self.conditions)


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
