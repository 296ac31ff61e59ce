"""One reader of users' files: responses, reference RDMs, order files and group files.

Every format gives its numbers *and* the names of the rows it holds; callers match those names to
a manifest (:func:`visreps.analysis.responses.match_images`) or refuse, never drop them. The rules,
the same for every kind of file (documented for users in ``docs/files.md``):

* **Text** (``.csv`` ``.tsv`` ``.txt`` ``.dat``, order and group files) is read as UTF-8 (a byte
  order mark is skipped); a file that is not valid UTF-8 is read as Latin-1, which maps every byte
  to one character, so names are never mangled into each other (a name that then matches no image
  is refused by the matching, naming it). Blank lines and lines starting with ``#`` are skipped.
* **Tables**: an optional header row, an optional column of row names (a column headed ``image``,
  ``path``, ``stimulus``, ``filename``..., or a first column that is not numbers), every other cell
  a number; blank cells are NaN.
* **Variables** (``.npz``, ``.mat`` v5 and v7.3, ``.h5``/``.hdf5``): nested HDF5 datasets are named
  by their path (``group/name``); MATLAB v7.3 files are decoded as MATLAB wrote them: arrays
  transposed back to MATLAB's order, ``char`` arrays as text, cell arrays through their object
  references, the internal ``#refs#`` group skipped. Struct arrays (v5 and v7.3) give one variable
  per field, ``struct.field``, whose leading axes are the struct array's (size-1 axes dropped).
* **Row names**: a variable named ``images`` (or ``image``, ``paths``, ``stimuli``, ``filenames``...)
  holds a name per row, or integer image numbers: **0-based manifest rows** (``0 … n−1``, as numpy
  counts); numbers that run ``1 … n`` are refused with the way out (subtract 1), and so are numbers
  when the image files themselves are named by numbers that disagree with their rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VisrepsError

#: variables of npz/mat/hdf5 files (and table columns) that name the image of each row
NAME_VARIABLES = ("images", "image", "paths", "path", "stimuli", "stimulus", "filenames", "filename", "file")
TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".dat")
VARIABLE_SUFFIXES = (".npz", ".mat", ".h5", ".hdf5")
_SEPARATORS = {".csv": ",", ".tsv": "\t"}  # .txt/.dat: whitespace, comma or semicolon
_MATLAB_INTERNAL = ("#refs#", "#subsystem#")


# --------------------------------------------------------------------------- text


def decode_text(data: bytes) -> str:
    """UTF-8 (a byte order mark skipped), else Latin-1 (every byte one character: nothing is lost)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def read_text(path: str | Any, what: str = "file") -> str:
    """The text of ``path`` (see :func:`decode_text`); a missing file is an error naming it as ``what``."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise VisrepsError(f"{what} {str(p)!r} does not exist")
    return decode_text(p.read_bytes())


def read_lines(path: str | Any, what: str = "file") -> list[str]:
    """The non-blank lines of a text file, stripped, without ``#`` comment lines."""
    lines = (ln.strip() for ln in read_text(path, what).splitlines())
    return [ln for ln in lines if ln and not ln.startswith("#")]


# --------------------------------------------------------------------------- what a file holds


@dataclass
class FileArray:
    """The numbers of a file and the names it gives its rows (and columns).

    Attributes:
        values: the array (float64 for tables; as stored otherwise).
        names: a name per row (``str``), 0-based image numbers (``int``), or ``None``.
        columns: a name per column (a table's header), or ``None``.
        source: the file.
        key: the variable read (npz/mat/hdf5), or ``None``.
        matlab: read from a ``.mat`` file (MATLAB's axis order).
        struct_axes: leading axes of ``values`` that are a MATLAB struct array's (0 for other arrays).
    """

    values: np.ndarray
    names: list[Any] | None = None
    columns: list[str] | None = None
    source: Path | None = None
    key: str | None = None
    matlab: bool = False
    struct_axes: int = 0
    variables: dict[str, Any] = field(default_factory=dict, repr=False)


def check_file(path: str | Any, suffixes: tuple[str, ...], what: str) -> Path:
    """``path`` as a Path: an existing file with one of ``suffixes``, else an error naming it."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise VisrepsError(f"{what} file {str(p)!r} does not exist")
    suffix = p.suffix.lower()
    if suffix not in suffixes:
        raise VisrepsError(
            f"{what} {str(p)!r}: format {suffix or '(none)'!r} is not supported; use one of {', '.join(suffixes)}"
        )
    return p


def read_array(
    path: Path,
    key: str | None = None,
    *,
    keep: Callable[[str, np.ndarray], bool] = lambda name, a: True,
    what: str = "array",
    option: str = "--key",
    shapes: bool = True,
    layout: str = "",
) -> FileArray:
    """The numbers of ``path`` (any supported format) and the row names it holds.

    ``keep``, ``what``, ``option``, ``shapes``: how the variable of an npz/mat/hdf5 file is chosen
    (see :func:`pick_variable`); ``layout``: what a table should look like, for error messages.
    """
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return read_table(path, layout=layout)
    if suffix == ".npy":
        try:
            return FileArray(np.load(path, allow_pickle=False), source=path)
        except (ValueError, OSError, EOFError) as e:
            raise VisrepsError(f"cannot read {str(path)!r} as a numeric .npy array: {e}") from None
    variables, struct_axes = read_variables(path)
    key, sub = resolve_key(variables, key, path)

    def keep_values(name: str, a: np.ndarray) -> bool:
        return name.rsplit("/", 1)[-1].lower() not in NAME_VARIABLES and keep(name, a)

    arr, chosen = pick_variable(sub, key, path, keep=keep_values, what=what, option=option, shapes=shapes)
    names = names_in(variables, path, None)  # the caller checks their number against its rows axis
    return FileArray(
        arr,
        names=names,
        source=path,
        key=chosen,
        matlab=suffix == ".mat",
        struct_axes=struct_axes.get(chosen, 0),
        variables=variables,
    )


# --------------------------------------------------------------------------- tables


def _is_number(x: Any) -> bool:
    if x is None or (isinstance(x, float) and np.isnan(x)) or str(x).strip() == "":
        return True  # a blank cell (NaN)
    try:
        float(x)
        return True
    except (TypeError, ValueError):
        return False


def read_table(path: Path, *, layout: str = "") -> FileArray:
    """A table of numbers with an optional header row and an optional column of row names.

    Header: the first row holds text after its first cell, or text in its first cell above a
    column of numbers. Names: the column headed by a name of :data:`NAME_VARIABLES`, else a first
    column that is not all numbers. Every other cell must be a number (blank: NaN).
    """
    import pandas as pd

    sep = _SEPARATORS.get(path.suffix.lower(), r"[\s,;]+")
    df = None
    for encoding in ("utf-8-sig", "latin-1"):  # see decode_text; pandas reads the file in chunks
        try:
            df = pd.read_csv(
                path, sep=sep, header=None, engine="python", dtype=str, skip_blank_lines=True, comment="#",
                encoding=encoding,
            )  # fmt: skip
            break
        except UnicodeDecodeError:
            continue
        except Exception as e:  # noqa: BLE001 - whatever pandas says, name the file
            raise VisrepsError(f"cannot read {str(path)!r} as a table: {e}") from None
    assert df is not None  # Latin-1 decodes every byte
    df = df.dropna(axis=1, how="all")
    if df.empty:
        raise VisrepsError(f"{str(path)!r} is empty")
    header: list[str] | None = None
    first = [str(x).strip() if isinstance(x, str) else "" for x in df.iloc[0].tolist()]
    body = df.iloc[1:]
    text_after_first = any(not _is_number(c) for c in first[1:])
    if len(df) > 1 and (text_after_first or (not _is_number(first[0]) and all(map(_is_number, body.iloc[:, 0])))):
        header, df = first, body
    elif len(df) == 1 and df.shape[1] == 1 and not _is_number(first[0]):
        raise VisrepsError(f"{str(path)!r} holds no numbers (only {first[0]!r})")
    name_col: int | None = None
    for j in range(df.shape[1]):
        if (header is not None and header[j].lower() in NAME_VARIABLES) or (
            j == 0 and not all(map(_is_number, df.iloc[:, 0]))
        ):
            name_col = j
            break
    cols = [j for j in range(df.shape[1]) if j != name_col]
    if not cols:
        raise VisrepsError(f"{str(path)!r} has a column of names but no numbers; {layout}".rstrip("; "))
    for j in cols:
        cells = df.iloc[:, j].tolist()
        bad = next((i for i, x in enumerate(cells) if not _is_number(x)), None)
        if bad is not None:
            line = bad + (2 if header is not None else 1)
            raise VisrepsError(
                f"{str(path)!r}: line {line}, column {j + 1} holds {cells[bad]!r}, not a number; {layout}".rstrip("; ")
            )
    values = df.iloc[:, cols].apply(lambda s: pd.to_numeric(s.str.strip().replace("", None), errors="coerce"))
    names: list[Any] | None = [str(x).strip() for x in df.iloc[:, name_col]] if name_col is not None else None
    if names and all(x.isdigit() for x in names):  # a column headed `image` of whole numbers: image numbers
        names = [int(x) for x in names]
    columns = [header[j] or str(k) for k, j in enumerate(cols)] if header is not None else None
    return FileArray(values.to_numpy(np.float64), names=names, columns=columns, source=path)


# --------------------------------------------------------------------------- npz, mat, hdf5


def read_variables(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """The variables of an npz/mat/hdf5 file, and how many leading axes of each are a struct array's."""
    suffix = path.suffix.lower()
    struct_axes: dict[str, int] = {}
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}, struct_axes
        if suffix == ".mat":
            from scipy.io import loadmat

            try:
                data = loadmat(path)
            except NotImplementedError:  # MATLAB v7.3 is HDF5
                return _read_h5(path, matlab=True, struct_axes=struct_axes), struct_axes
            out: dict[str, Any] = {}
            for k, v in data.items():
                if k.startswith("__"):
                    continue
                if isinstance(v, np.ndarray) and v.dtype.names:
                    _flatten_struct(k, {f: v[f] for f in v.dtype.names}, out, struct_axes)
                else:
                    out[k] = v
            return out, struct_axes
        return _read_h5(path, matlab=False, struct_axes=struct_axes), struct_axes
    except VisrepsError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever the reader says, name the file
        raise VisrepsError(f"cannot read {str(path)!r} as a {suffix} file: {e}") from None


def _flatten_struct(name: str, fields: Mapping[str, np.ndarray], out: dict[str, Any], struct_axes: dict[str, int]):
    """One variable ``name.field`` per field of a struct array (field values: object arrays of the struct's shape).

    Numeric fields whose elements share one shape become one array ``struct shape + element shape`` (size-1
    struct axes dropped); text fields become arrays of strings; other fields are left out.
    """
    for f, cells in fields.items():
        cells = np.asarray(cells, dtype=object) if not isinstance(cells, np.ndarray) else cells
        shape = tuple(s for s in cells.shape if s != 1)
        elems = [np.asarray(c) for c in cells.ravel()]
        if not elems:
            continue
        if all(e.dtype.kind in "biuf" for e in elems) and len({e.shape for e in elems}) == 1:
            out[f"{name}.{f}"] = np.stack(elems).reshape(shape + elems[0].shape)
            struct_axes[f"{name}.{f}"] = len(shape)
        else:
            texts = as_names(np.array(elems + [None], dtype=object)[:-1])
            if texts is not None:
                out[f"{name}.{f}"] = np.array(texts).reshape(shape) if shape else np.array(texts)


def _attr(obj: Any, name: str) -> str | None:
    v = obj.attrs.get(name)
    if v is None:
        return None
    return v.decode() if isinstance(v, bytes) else str(v)


def _h5_value(f: Any, ds: Any, matlab: bool) -> Any:
    """A dataset's value; MATLAB v7.3: transposed back, ``char`` as text, cell arrays dereferenced."""
    import h5py

    cls = _attr(ds, "MATLAB_class") if matlab else None
    if matlab and ds.attrs.get("MATLAB_empty"):
        return np.zeros((0,))
    v = ds[()]
    if not isinstance(v, np.ndarray):
        return v
    if h5py.check_dtype(ref=v.dtype) is not None:
        out = np.empty(v.shape, dtype=object)
        for idx in np.ndindex(v.shape):
            out[idx] = _h5_value(f, f[v[idx]], matlab) if v[idx] else None
        return out.T if matlab else out
    if cls == "char":
        rows = np.asarray(v, dtype=np.uint16).T.reshape(-1, v.shape[0]) if v.ndim else np.zeros((0, 0))
        return np.array(["".join(map(chr, r)) for r in rows])
    return v.T if matlab else v


def _read_h5(path: Path, *, matlab: bool, struct_axes: dict[str, int]) -> dict[str, Any]:
    import h5py

    out: dict[str, Any] = {}
    with h5py.File(path, "r") as f:

        def visit(group: Any, prefix: str) -> None:
            for name, obj in group.items():
                if name in _MATLAB_INTERNAL:
                    continue
                key = f"{prefix}{name}"
                if isinstance(obj, h5py.Dataset):
                    out[key] = _h5_value(f, obj, matlab)
                elif matlab and _attr(obj, "MATLAB_class") == "struct":
                    _struct_from_h5(f, obj, key, out, struct_axes)
                else:
                    visit(obj, f"{key}/")

        visit(f, "")
    return out


def _struct_from_h5(f: Any, group: Any, name: str, out: dict[str, Any], struct_axes: dict[str, int]) -> None:
    """A MATLAB v7.3 struct: a scalar struct holds its fields' values, a struct array references per element."""
    import h5py

    fields: dict[str, np.ndarray] = {}
    for fname, ds in group.items():
        if not isinstance(ds, h5py.Dataset):
            continue
        v = _h5_value(f, ds, True)
        if isinstance(v, np.ndarray) and v.dtype == object and h5py.check_dtype(ref=ds.dtype) is not None:
            fields[fname] = v  # a struct array: one element per cell
        else:
            cell = np.empty((1,), dtype=object)
            cell[0] = v
            fields[fname] = cell
    _flatten_struct(name, fields, out, struct_axes)


def resolve_key(variables: dict[str, Any], key: str | None, path: Path) -> tuple[str | None, dict[str, Any]]:
    """``key`` as a variable name, and the variables to pick from.

    A key names a variable; a struct field (``RDM`` for ``RDMs.RDM`` when only one struct has it); or a
    struct (``RDMs``: its fields are the candidates).
    """
    if key is None or key in variables:
        return key, variables
    fields = [k for k in variables if "." in k and k.split(".", 1)[1] == key]
    if len(fields) == 1:
        return fields[0], variables
    members = {k: v for k, v in variables.items() if k.startswith(f"{key}.")}
    if members:
        return None, members
    raise VisrepsError(f"{str(path)!r} has no variable {key!r}; it has: {', '.join(variables) or '(none)'}")


def pick_variable(
    variables: Mapping[str, Any],
    key: str | None,
    path: Path,
    *,
    keep: Callable[[str, np.ndarray], bool] = lambda name, a: True,
    what: str = "array",
    option: str = "--key",
    shapes: bool = True,
) -> tuple[np.ndarray, str]:
    """The variable ``key`` of a file (npz, mat, hdf5), else its only numeric array (more than one value) that
    ``keep(name, array)`` accepts, and its name. A missing ``key``, no candidate or several are errors naming the
    file, its variables (candidates with their shapes unless ``shapes=False``) and the option that chooses one."""
    if key is not None:
        if key not in variables:
            raise VisrepsError(f"{str(path)!r} has no variable {key!r}; it has: {', '.join(variables) or '(none)'}")
        return np.asarray(variables[key]), key
    cands = {}
    for k, v in variables.items():
        try:
            a = np.asarray(v)
        except Exception:  # noqa: BLE001 - a value numpy cannot hold is no candidate
            continue
        if a.dtype.kind in "biuf" and a.size > 1 and keep(k, a):
            cands[k] = a
    if len(cands) == 1:
        k, a = next(iter(cands.items()))
        return a, k
    if not cands:
        raise VisrepsError(f"{str(path)!r} holds no numeric {what} (variables: {', '.join(variables) or '(none)'})")
    plural = "matrices" if what == "matrix" else f"{what}s"
    listed = ", ".join(f"{k} {tuple(v.shape)}" if shapes else k for k, v in cands.items())
    raise VisrepsError(f"{str(path)!r} holds several {plural} ({listed}); choose one with key=... (CLI: {option})")


# --------------------------------------------------------------------------- row names


def as_names(v: Any) -> list[str] | None:
    """A list of strings from a string/bytes array or a MATLAB cell array of strings, else ``None``."""
    a = np.asarray(v)
    if a.dtype.kind in "US":
        return [decode_text(x) if isinstance(x, bytes) else str(x) for x in a.ravel()]
    if a.dtype == object:
        out = []
        for x in a.ravel():
            if isinstance(x, (str, bytes)):
                out.append(decode_text(x) if isinstance(x, bytes) else x)
                continue
            x = np.asarray(x).ravel()
            if x.dtype.kind not in "US" or x.size != 1:
                return None
            s = x[0]
            out.append(decode_text(s) if isinstance(s, bytes) else str(s))
        return out
    return None


def as_numbers(v: Any) -> list[int] | None:
    """Integer image numbers from an integer array (or floats that are whole numbers), else ``None``."""
    a = np.asarray(v)
    if a.dtype.kind in "iu":
        return [int(x) for x in a.ravel()]
    if a.dtype.kind == "f" and a.size and np.isfinite(a).all() and np.array_equal(a, np.round(a)):
        return [int(x) for x in a.ravel()]
    return None


def names_in(variables: Mapping[str, Any], path: Path, n_rows: int | None) -> list[Any] | None:
    """The row names a file holds in a variable of :data:`NAME_VARIABLES`: strings or 0-based image numbers.

    A name variable that holds neither is an error (never silently ignored).
    """
    for k, v in variables.items():
        if k.rsplit("/", 1)[-1].lower() not in NAME_VARIABLES:
            continue
        names: list[Any] | None = as_names(v)
        names = [n.strip() for n in names] if names is not None else as_numbers(v)
        if names is None:
            raise VisrepsError(
                f"{str(path)!r}: the variable {k!r} should name the image of every row, but holds neither text nor "
                f"whole image numbers (dtype {np.asarray(v).dtype}); store the image names as strings"
            )
        if n_rows is not None and len(names) != n_rows:
            raise VisrepsError(f"{str(path)!r}: the variable {k!r} names {len(names)} images for {n_rows} rows")
        return names
    return None


def numbers_to_rows(numbers: list[int], paths: list[str] | None, n: int, where: str) -> list[int]:
    """0-based image numbers checked against ``n`` feature rows (and the manifest's numeric file names)."""
    lo, hi = min(numbers), max(numbers)
    if lo < 0 or hi >= n:
        hint = (
            "; they look 1-based (MATLAB numbering): subtract 1"
            if lo >= 1 and hi == n
            else ", the rows of the features' manifest (as numpy counts)"
        )
        raise VisrepsError(
            f"{where} give image numbers {lo} … {hi}, but image numbers are 0-based rows 0 … {n - 1}{hint}; or name "
            "the images (manifest paths or file names) as text"
        )
    if paths is not None:
        stems = [Path(p).stem for p in paths]
        if all(s.isdigit() for s in stems):
            by_stem = {int(s): i for i, s in enumerate(stems)}
            if any(by_stem.get(x, -1) != x for x in numbers):
                raise VisrepsError(
                    f"{where} give image numbers, and the images are named by numbers too, differently (e.g. row "
                    f"{numbers[0]} is {paths[numbers[0]]!r}); it is not clear which is meant: name the images "
                    "(manifest paths or file names) as text"
                )
    return numbers


# --------------------------------------------------------------------------- group files


def read_groups(path: str | Any, names: list[Any] | None, n: int) -> list[str]:
    """A group label per response row from a groups file.

    The file holds one group per line in response-row order, or ``image,group`` lines (comma or tab;
    an ``image,group`` header is skipped) matched to ``names``, the rows' images, by path or file name.
    """
    what = f"groups file {str(path)!r}"
    lines = read_lines(path, "groups file")
    split = [[c.strip() for c in ln.replace("\t", ",").split(",")] for ln in lines]
    if split and all(len(c) == 2 for c in split):
        if split[0][0].lower() in (*NAME_VARIABLES, "group") and len(split) == n + 1:
            split = split[1:]
        table = {c[0]: c[1] for c in split}
        by_name = {Path(k).name: v for k, v in table.items()}
        if names is None:
            raise VisrepsError(f"{what} names images, but the responses' rows have no image names")
        keys = [str(m) for m in names]
        missing = [m for m in keys if m not in table and Path(m).name not in by_name]
        if missing:
            raise VisrepsError(f"{what} gives no group for {len(missing)} image(s), e.g. {missing[:3]}")
        return [table[m] if m in table else by_name[Path(m).name] for m in keys]
    if any(len(c) != 1 for c in split):
        raise VisrepsError(f"{what}: give one group per line, or 'image,group' on every line")
    if len(lines) != n:
        raise VisrepsError(f"{what} has {len(lines)} lines but the responses have {n} images")
    return lines
