"""Odd-one-out behaviour: how often a layer picks the odd one out of three images as people did.

The THINGS triplet task (Hebart et al. 2020) shows three images; the participant picks the one
least like the other two. A layer's choice is the image left out of its most similar pair:

* ``similarity="dot"`` (default, as gLocal, Muttenthaler et al. 2023): ``s_ij = x_i · x_j``;
* ``similarity="cosine"``: ``s_ij = x_i · x_j / (‖x_i‖ ‖x_j‖)`` (0 where a row is all zeros).

With ``s01, s02, s12`` the similarities of the three pairs, the model's odd one out is item 2, 1
or 0 when ``s01``, ``s02`` or ``s12`` is the largest. A tie for the largest is no choice
(``-1``) and counts as a disagreement (gLocal also counts three equal similarities as wrong; where
only two pairs tie it takes the first pair, which favours the item listed last — visreps does not).

Reported per layer: ``accuracy`` (fraction of triplets where the layer's choice is the human's),
a percentile bootstrap interval over triplets (``ci_low``, ``ci_high``), and, when the file has
repeated triplets (the same three images shown more than once), the noise ceiling: over the
triplets shown at least twice, the fraction of responses that agree with the most frequent
choice of their triplet (the best any fixed choice rule can reach on them; Hebart et al. 2020).

Bootstrap: resampling ``m`` triplets with replacement from ``m`` with ``k`` agreements gives
``Binomial(m, k/m)`` agreements, so the ``n_bootstrap`` resampled accuracies are drawn as
``Binomial(m, accuracy) / m`` (``numpy.random.default_rng(seed)``), the same distribution as
drawing the triplet indices, at no cost per triplet.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import VisrepsError
from ..options import OOO_SIMILARITIES as SIMILARITIES
from ._params import LayerSelection, check_bootstrap

if TYPE_CHECKING:
    import pandas as pd


#: the column of a triplet table that names the human's odd one out
CHOICE_COLUMN = "choice"
TRIPLET_SUFFIXES = (".csv", ".tsv", ".txt", ".npy")
#: at most this many distinct images: one Gram matrix over them; more: per-triplet products
_GRAM_LIMIT = 8192
_IMAGE_SUFFIXES = frozenset((".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"))
_BLOCK_BYTES = 64 * 2**20


@dataclass
class Triplets:
    """Triplets as read from a file, before matching to a manifest.

    Attributes:
        items: ``(m, 3)`` image names (``str``) or manifest row indices (``int``), as the file gives them.
        odd: ``(m,)`` position (0, 1, 2) of the human's odd one out within its row.
        source: the file read (``None`` for arrays).
        choice_from: ``"choice column"`` or ``"last of three"``.
    """

    items: np.ndarray
    odd: np.ndarray
    source: Path | None = None
    choice_from: str = "last of three"

    @property
    def n(self) -> int:
        return int(self.items.shape[0])


@dataclass
class OddOneOutResult:
    """What :func:`odd_one_out` returns.

    Attributes:
        table: one row per layer: ``label``, ``model``, ``layer``, ``similarity``, ``n_triplets``,
            ``accuracy``, ``ci_low``, ``ci_high``, ``n_undecided`` (ties: no choice), and with repeated
            triplets ``ceiling``, ``n_repeated`` (triplets shown at least twice), ``accuracy_repeated``
            (the layer's accuracy on their responses).
        choices: label → the model's odd one out per triplet (position 0–2, ``-1`` undecided).
        odd: the human's odd one out per triplet (position 0–2).
        images: ``(m, 3)`` the triplets' images (manifest paths, or row indices for arrays).
        info: similarity, n_bootstrap, ci, seed, source, choice_from.
    """

    table: pd.DataFrame
    choices: dict[str, np.ndarray] = field(default_factory=dict)
    odd: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)
    images: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=object), repr=False)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def per_triplet(self) -> pd.DataFrame:
        """One row per (layer, triplet): ``label``, ``layer``, ``triplet`` (row of the file), ``image_1``..
        ``image_3``, ``human``, ``model`` (the images chosen; empty when undecided), ``agree`` (1/0).
        Built on demand (it has layers × triplets rows)."""
        import pandas as pd

        layers = dict(zip(self.table["label"], self.table["layer"]))
        parts = [_per_triplet(lab, layers[lab], self.images, self.odd, m) for lab, m in self.choices.items()]
        return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------- reading triplet files


def _is_int_text(v: str) -> bool:
    s = v.strip()
    return s.lstrip("-").isdigit()


def read_triplet_table(path: Path) -> tuple[list[list[str]], list[str] | None]:
    """A CSV/TSV with a header: three image columns and an optional ``choice`` column (cells as text)."""
    import csv

    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        rows = [r for r in csv.reader(f, delimiter=sep) if r and any(c.strip() for c in r)]
    if not rows:
        raise VisrepsError(f"triplet file {str(path)!r} is empty")
    header = [h.strip() for h in rows[0]]
    if all(_is_int_text(h) for h in header) or len(header) not in (3, 4):
        raise VisrepsError(
            f"triplet file {str(path)!r}: the first line must be a header naming three image columns and "
            f"optionally '{CHOICE_COLUMN}' (got {header[:5]}); e.g. image1,image2,image3,{CHOICE_COLUMN}"
        )
    named = [h for h in header if h != CHOICE_COLUMN]
    if all(Path(h).suffix.lower() in _IMAGE_SUFFIXES for h in named):
        raise VisrepsError(
            f"triplet file {str(path)!r}: the first line {header} looks like a triplet, not a header; add a header "
            f"line naming the columns, e.g. image1,image2,image3 (and {CHOICE_COLUMN}), or use a .txt file"
        )
    if len(header) == 4 and CHOICE_COLUMN not in header:
        raise VisrepsError(
            f"triplet file {str(path)!r} has 4 columns {header} but none is named '{CHOICE_COLUMN}'; "
            f"name the column of the human's odd one out '{CHOICE_COLUMN}', or give three image columns"
        )
    body = rows[1:]
    bad = [i + 2 for i, r in enumerate(body) if len(r) != len(header)]
    if bad:
        raise VisrepsError(
            f"triplet file {str(path)!r}: line(s) {bad[:5]} do not have {len(header)} cells like the header"
        )
    cols = [i for i, h in enumerate(header) if h != CHOICE_COLUMN]
    items = [[r[i].strip() for i in cols] for r in body]
    choice = [r[header.index(CHOICE_COLUMN)].strip() for r in body] if CHOICE_COLUMN in header else None
    return items, choice


def read_triplet_text(path: Path) -> list[list[str]]:
    """A text file: one triplet per line, three names or indices separated by spaces, tabs or commas."""
    out = []
    for k, line in enumerate(path.read_text(encoding="utf-8", errors="surrogateescape").splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        cells = [c for c in s.replace(",", " ").split() if c]
        if len(cells) != 3:
            raise VisrepsError(
                f"triplet file {str(path)!r}, line {k}: {len(cells)} fields; give three image names or indices per "
                "line, the odd one out last (or a CSV with a header and a 'choice' column)"
            )
        out.append(cells)
    if not out:
        raise VisrepsError(f"triplet file {str(path)!r} holds no triplets")
    return out


def read_triplet_array(path: Path) -> np.ndarray:
    """A ``.npy`` integer array ``(m, 3)`` of manifest indices, the odd one out last."""
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise VisrepsError(f"cannot read triplet file {str(path)!r} as a numeric .npy array: {e}") from None
    if a.ndim != 2 or a.shape[1] != 3 or a.shape[0] == 0:
        raise VisrepsError(f"triplet file {str(path)!r} must be an (m, 3) array of manifest indices, got {a.shape}")
    if a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
        a = a.astype(np.int64)
    if a.dtype.kind not in "iu":
        raise VisrepsError(
            f"triplet file {str(path)!r} holds {a.dtype} values; give integer manifest indices (0-based)"
        )
    return a.astype(np.int64)


def _as_items(cells: Any, where: str) -> np.ndarray:
    """Text cells as integers when every one is an integer, else as names."""
    arr = np.asarray(cells, dtype=object)
    if all(_is_int_text(str(c)) for c in arr.ravel()):
        return arr.astype(np.int64)
    if any(str(c).strip() == "" for c in arr.ravel()):
        raise VisrepsError(f"{where}: some cells are empty; every triplet needs three images")
    return arr.astype(str)


def _odd_from_choice(items: np.ndarray, choice: Sequence[str], where: str) -> np.ndarray:
    odd = np.full(len(items), -1, dtype=np.int64)
    for t, (row, c) in enumerate(zip(items, choice)):
        hits = [k for k in range(3) if str(row[k]) == str(c).strip()]
        if len(hits) == 1:
            odd[t] = hits[0]
        else:
            raise VisrepsError(
                f"{where}, triplet {t + 1} ({', '.join(map(str, row))}): the '{CHOICE_COLUMN}' {c!r} is not one of its "
                "three images; it must name the odd one out exactly as the image columns do"
            )
    return odd


def load_triplets(triplets: Any) -> Triplets:
    """Read triplets from a file (``.csv``/``.tsv`` with a header, ``.txt``, ``.npy``), a table or an array.

    * CSV/TSV: a header row; three image columns (any names) and optionally a ``choice`` column naming
      the human's odd one out (one of the three, as written in the image columns). Without ``choice``,
      the odd one out is the **last** of the three (the THINGS/gLocal convention).
    * TXT: one triplet per line, three names or indices, the odd one out last.
    * NPY: an integer ``(m, 3)`` array of manifest indices, the odd one out last.
    * An ``(m, 3)`` array or list (odd one out last), or a DataFrame with a header as a CSV.

    Cells that are all integers are 0-based manifest row indices; otherwise they are image names
    (manifest paths, or file names when those are unique in the manifest).
    """
    import pandas as pd

    if isinstance(triplets, Triplets):
        return triplets
    if isinstance(triplets, (str, os.PathLike)):
        p = Path(triplets).expanduser()
        if not p.is_file():
            raise VisrepsError(f"triplet file {str(p)!r} does not exist")
        suffix = p.suffix.lower()
        where = f"triplet file {str(p)!r}"
        if suffix in (".csv", ".tsv"):
            cells, choice = read_triplet_table(p)
            items = _as_items(cells, where)
            if choice is not None:
                return Triplets(items, _odd_from_choice(items, choice, where), p, "choice column")
            return Triplets(items, np.full(len(items), 2), p)
        if suffix == ".txt":
            items = _as_items(read_triplet_text(p), where)
            return Triplets(items, np.full(len(items), 2), p)
        if suffix == ".npy":
            items = read_triplet_array(p)
            return Triplets(items, np.full(len(items), 2), p)
        raise VisrepsError(
            f"{where}: format {suffix or '(none)'!r} is not supported; use {', '.join(TRIPLET_SUFFIXES)}"
        )
    if isinstance(triplets, pd.DataFrame):
        cols = [c for c in triplets.columns if c != CHOICE_COLUMN]
        if len(cols) != 3:
            raise VisrepsError(f"the triplet table needs three image columns (and optionally 'choice'), got {cols}")
        items = _as_items(triplets[cols].astype(str).to_numpy(), "the triplet table")
        if CHOICE_COLUMN in triplets.columns:
            choice = triplets[CHOICE_COLUMN].astype(str).tolist()
            return Triplets(items, _odd_from_choice(items, choice, "the triplet table"), None, "choice column")
        return Triplets(items, np.full(len(items), 2))
    arr = np.asarray(triplets)
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.shape[0] == 0:
        raise VisrepsError(f"triplets must be an (m, 3) array of indices or names, got shape {arr.shape}")
    items = arr.astype(np.int64) if arr.dtype.kind in "iu" else _as_items(arr.astype(str), "the triplets")
    return Triplets(items, np.full(len(items), 2))


# --------------------------------------------------------------------------- matching to the manifest


def resolve_items(items: np.ndarray, paths: Sequence[str] | None, n_rows: int, where: str) -> np.ndarray:
    """Feature rows of the triplets' images: indices checked against ``n_rows``, names matched strictly.

    A name must be a manifest path, or a file name that only one manifest path ends with; unknown
    and ambiguous names are errors that list examples.
    """
    if items.dtype.kind in "iu":
        bad = np.unique(items[(items < 0) | (items >= n_rows)])
        if bad.size:
            raise VisrepsError(
                f"{where} give manifest indices {bad[:5].tolist()} outside 0..{n_rows - 1} (0-based rows of the "
                f"manifest, {n_rows} images)"
            )
        return items.astype(np.intp)
    if paths is None:
        raise VisrepsError(f"{where} name images, but the features have no manifest; give an output folder")
    pos = {p: i for i, p in enumerate(paths)}
    base: dict[str, list[int]] = {}
    for i, p in enumerate(paths):
        base.setdefault(Path(p).name, []).append(i)
    names, inverse = np.unique(items.ravel(), return_inverse=True)
    rows = np.empty(len(names), dtype=np.intp)
    unknown, ambiguous = [], []
    for k, name in enumerate(names.tolist()):
        i = pos.get(name)
        if i is None:
            cands = base.get(Path(name).name, [])
            if len(cands) == 1:
                i = cands[0]
            else:
                (ambiguous if cands else unknown).append(name)
                continue
        rows[k] = i
    if unknown:
        raise VisrepsError(
            f"{where} name {len(unknown)} image(s) that are not in the manifest, e.g. {unknown[:3]}; names must be "
            f"manifest paths (e.g. {list(paths[:2])}) or unique file names"
        )
    if ambiguous:
        raise VisrepsError(f"{where}: the file name(s) {ambiguous[:3]} match several manifest paths; give full paths")
    return rows[inverse].reshape(items.shape)


def match_triplets(trip: Triplets, paths: Sequence[str] | None, n_rows: int, where: str) -> np.ndarray:
    """``(m, 3)`` feature rows of the triplets (:func:`resolve_items`), each triplet of three different images.

    Raises:
        VisrepsError: as :func:`resolve_items`, or a triplet that shows one image twice (the first one named).
    """
    rows = resolve_items(trip.items, paths, n_rows, where)
    same = (rows[:, 0] == rows[:, 1]) | (rows[:, 0] == rows[:, 2]) | (rows[:, 1] == rows[:, 2])
    if same.any():
        t = int(np.flatnonzero(same)[0])
        raise VisrepsError(
            f"{where}: {int(same.sum())} triplet(s) show one image twice, e.g. triplet {t + 1} "
            f"({', '.join(map(str, trip.items[t]))}); every triplet needs three different images"
        )
    return rows


# --------------------------------------------------------------------------- the model's choices


def _check_similarity(similarity: str) -> str:
    if similarity not in SIMILARITIES:
        raise VisrepsError(f"similarity must be one of {', '.join(SIMILARITIES)}, got {similarity!r}")
    return similarity


def choices_from_similarities(s01: np.ndarray, s02: np.ndarray, s12: np.ndarray) -> np.ndarray:
    """The odd one out (position 0–2) left by the most similar pair; ``-1`` where the largest is tied."""
    S = np.stack([s12, s02, s01], axis=1)  # column k: the pair that leaves item k out
    best = S.max(axis=1, keepdims=True)
    top = S == best
    out = np.argmax(S, axis=1).astype(np.int64)
    out[top.sum(axis=1) != 1] = -1
    return out


def triplet_similarities(features: Any, rows: np.ndarray, similarity: str = "dot", *, name: str = "features"):
    """``(s01, s02, s12)``: the similarity of each pair of every triplet (``rows``: ``(m, 3)`` feature rows).

    The distinct images' Gram matrix is accumulated over column blocks (float64) when there are at
    most 8192 of them, else each triplet's products are summed block by block; the layer is never
    read whole.
    """
    from ._source import FeatureSource

    src = FeatureSource(features, name=name)
    used, inv = np.unique(rows.ravel(), return_inverse=True)
    local = inv.reshape(rows.shape)
    u = len(used)
    w = int(max(1, min(src.p, _BLOCK_BYTES // (8 * u))))
    gram = np.zeros((u, u)) if u <= _GRAM_LIMIT else None
    sq = np.zeros(u)
    pair = np.zeros((3, len(rows)))
    a, b, c = local[:, 0], local[:, 1], local[:, 2]
    for c0 in range(0, src.p, w):
        B = np.asarray(src.arr[used, c0 : min(c0 + w, src.p)], dtype=np.float64)
        if not np.isfinite(B).all():
            bad = used[~np.isfinite(B).all(axis=1)]
            raise VisrepsError(
                f"{name} contains NaN or infinite values (rows {bad[:5].tolist()}); check the extraction"
            )
        sq += np.einsum("ij,ij->i", B, B)
        if gram is not None:
            gram += B @ B.T
        else:
            pair[0] += np.einsum("ij,ij->i", B[a], B[b])
            pair[1] += np.einsum("ij,ij->i", B[a], B[c])
            pair[2] += np.einsum("ij,ij->i", B[b], B[c])
    if gram is not None:
        pair = np.stack([gram[a, b], gram[a, c], gram[b, c]])
    if similarity == "cosine":
        norm = np.sqrt(sq)
        with np.errstate(invalid="ignore", divide="ignore"):
            for k, (i, j) in enumerate(((a, b), (a, c), (b, c))):
                den = norm[i] * norm[j]
                pair[k] = np.where(den > 0, pair[k] / np.where(den > 0, den, 1.0), 0.0)
    return pair[0], pair[1], pair[2]


def noise_ceiling(rows: np.ndarray, odd: np.ndarray) -> tuple[float, int, np.ndarray]:
    """Ceiling from repeated triplets: ``Σ_g max_count_g / Σ_g n_g`` over triplets ``g`` shown at least twice.

    Triplets are the same when they hold the same three images in any order; a response is the
    image chosen. Returns ``(ceiling, number of repeated triplets, mask of their responses)``;
    ``(nan, 0, all False)`` without repeats.
    """
    key = np.sort(rows, axis=1)
    chosen = rows[np.arange(len(rows)), odd]
    _, group, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    group = group.ravel()
    repeated = counts[group] >= 2
    if not repeated.any():
        return float("nan"), 0, repeated
    pairs, pair_counts = np.unique(np.stack([group[repeated], chosen[repeated]], axis=1), axis=0, return_counts=True)
    best = np.zeros(len(counts), dtype=np.int64)
    np.maximum.at(best, pairs[:, 0], pair_counts)
    return float(best.sum() / repeated.sum()), int((counts >= 2).sum()), repeated


def bootstrap_accuracy(
    accuracy: float, m: int, *, n_bootstrap: int, ci: float, rng: np.random.Generator
) -> tuple[float, float]:
    """Percentile interval of the accuracy over triplet resamples (``Binomial(m, accuracy) / m`` draws)."""
    draws = rng.binomial(m, accuracy, size=n_bootstrap) / m
    lo, hi = np.quantile(draws, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return float(lo), float(hi)


# --------------------------------------------------------------------------- the entry point


def odd_one_out(
    features: Any,
    triplets: Any,
    *,
    layers: LayerSelection = None,
    similarity: str = "dot",
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> OddOneOutResult:
    """Odd-one-out accuracy of every layer on human triplet choices (see the module documentation).

    Args:
        features: output folders, ``Features``, arrays, or a list/dict of them (as
            :func:`visreps.analysis.collect_features`); arrays have no manifest, so their triplets
            must be row indices.
        triplets: a triplet file or table (:func:`load_triplets`), or an ``(m, 3)`` array (odd one out last).
        layers: layers of every folder (default: all), or a dict folder/model → layers.
        similarity: ``dot`` (default, as gLocal) or ``cosine``.
        n_bootstrap: bootstrap resamples of the triplets for the interval (0: none).
        ci: level of the percentile interval.
        seed: seed of the bootstrap.

    Raises:
        VisrepsError: unreadable triplets, names not in the manifest, indices out of range, a
            ``choice`` that is not one of its triplet's images, triplets repeating an image, NaN features.
    """
    import pandas as pd

    from .compare import collect_features

    similarity = _check_similarity(similarity)
    check_bootstrap(n_bootstrap, ci)
    trip = load_triplets(triplets)
    sets = collect_features(features, layers=layers)
    where = f"triplet file {trip.source.name!r}" if trip.source else "the triplets"
    ref = next((s for s in sets if s.paths is not None), sets[0])
    rows = match_triplets(trip, ref.paths, ref.n, where)
    ceiling, n_rep, repeated = noise_ceiling(rows, trip.odd)
    rng = np.random.default_rng(seed)
    table_rows, choices = [], {}
    for s in sets:
        srows = rows if s.order is None or s is ref else s.order[rows]
        model = choices_from_similarities(*triplet_similarities(s.features, srows, similarity, name=s.label))
        agree = model == trip.odd
        choices[s.label] = model
        acc = float(agree.mean())
        lo, hi = (
            bootstrap_accuracy(acc, len(agree), n_bootstrap=n_bootstrap, ci=ci, rng=rng)
            if n_bootstrap
            else (float("nan"), float("nan"))
        )
        row: dict[str, Any] = {"label": s.label, "model": s.model, "layer": s.layer, "similarity": similarity}
        row.update(n_triplets=trip.n, accuracy=acc, ci_low=lo, ci_high=hi, n_undecided=int((model < 0).sum()))
        if n_rep:
            row.update(ceiling=ceiling, n_repeated=n_rep, accuracy_repeated=float(agree[repeated].mean()))
        table_rows.append(row)
    info = {"similarity": similarity, "n_bootstrap": int(n_bootstrap), "ci": float(ci), "seed": seed}
    info.update(source=str(trip.source) if trip.source else None, choice_from=trip.choice_from)
    table = pd.DataFrame(table_rows)
    table.attrs.update(info)
    return OddOneOutResult(table, choices, trip.odd, _image_names(rows, ref.paths), info)


def _image_names(rows: np.ndarray, paths: Sequence[str] | None) -> np.ndarray:
    if paths is None:
        return rows.astype(str)
    return np.asarray(paths, dtype=object)[rows]


def _per_triplet(label: str, layer: str, names: np.ndarray, odd: np.ndarray, model: np.ndarray):
    import pandas as pd

    idx = np.arange(len(odd))
    chosen = np.where(model >= 0, names[idx, np.maximum(model, 0)], "")
    return pd.DataFrame(
        {
            "label": label,
            "layer": layer,
            "triplet": idx,
            "image_1": names[:, 0],
            "image_2": names[:, 1],
            "image_3": names[:, 2],
            "human": names[idx, odd],
            "model": chosen,
            "agree": (model == odd).astype(np.int64),
        }
    )
