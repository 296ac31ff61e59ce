"""The bench spec: reading it (TOML or a dict), its keys, their defaults, and the key-by-key checks.

Every problem is found before any image is read for extraction and reported in one error, one
clause per problem, each naming the key (``models[2].wieghts``) and the way out.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import VisrepsError, closest_hint
from ..options import COMPARISONS, CORRECTIONS, ENCODING_MODELS, OOO_SIMILARITIES, RDM_METHODS

TOP_KEYS = ("images", "images_key", "order", "work_dir", "models", "targets", "analysis", "device", "batch_size")
MODEL_KEYS = ("id", "weights", "seed", "label", "layers", "reduce", "pool")
TARGET_KEYS = ("name", "rdms", "responses", "triplets", "similarity", "time_rdms", "times", "key", "axes")
ANALYSIS_KEYS = ("rsa", "encoding", "selection", "bootstrap", "test", "correction", "ci")
SUB_KEYS = {
    "rsa": ("rdm", "compare"),
    "encoding": ("model", "folds", "alphas"),
    "selection": ("split", "seed", "cv"),
    "bootstrap": ("factors", "n", "seed"),
}
DEFAULTS: dict[str, dict[str, Any]] = {
    "rsa": {"rdm": "correlation", "compare": "spearman"},
    "encoding": {"model": "ridge", "folds": 5, "alphas": None},
    "selection": {"split": 0.5, "seed": 0, "cv": 1},
    "bootstrap": {"factors": None, "n": 1000, "seed": 0},  # factors None: subjects,images (images for one subject)
}
#: fewest images per part of the split (selection and test)
MIN_PART = 3
#: fewest triplets with all three images in one part (odd-one-out targets), for each part
MIN_TRIPLETS = 10
#: the key of a target's data → its kind (the ``kind`` column of ranking.csv)
TARGET_KINDS = {"rdms": "rsa", "responses": "encoding", "triplets": "odd-one-out", "time_rdms": "time-rsa"}


@dataclass
class ModelSpec:
    id: str
    weights: str = "pretrained"  # "pretrained", "random", or a file path (resolved)
    seed: int = 0
    label: str = ""
    layers: Any = None
    reduce: str | None = None
    pool: str | None = None
    where: str = ""

    def extract_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {} if self.pool is None else {"pool": self.pool}
        if self.weights == "random":
            opts.update(pretrained=False, seed=self.seed)
        elif self.weights != "pretrained":
            opts.update(weights=self.weights)
        if self.reduce is not None:  # passed through untouched to visreps.extract (the reductions issue)
            opts["reduce"] = self.reduce
        return opts

    @property
    def weights_kind(self) -> str:
        return self.weights if self.weights in ("pretrained", "random") else "file"

    @property
    def weights_text(self) -> str:
        if self.weights == "random":
            return f"random, seed {self.seed}"
        return self.weights if self.weights == "pretrained" else Path(self.weights).name


@dataclass
class TargetSpec:
    name: str
    kind: str  # "rsa", "encoding" or "odd-one-out"
    path: Path
    key: str | None = None
    axes: str | None = None
    where: str = ""
    similarity: str = "dot"  # odd-one-out targets: dot (as gLocal) or cosine
    times: list[float] | None = None  # time-rsa targets: one value per time point (default: the file's, else 0, 1...)


@dataclass
class Spec:
    """A checked spec: paths resolved against the spec's folder, defaults filled in."""

    raw: dict[str, Any]
    base: Path
    images: Path
    order: Path | None
    work_dir: Path | None
    models: list[ModelSpec]
    targets: list[TargetSpec]
    analysis: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    batch_size: int = 32
    source: Path | None = None
    images_key: str | None = None  # the array of an HDF5 image file (as extract's images_key)


def _toml():
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    try:
        import tomli  # pyright: ignore[reportMissingImports]
    except ImportError:  # pragma: no cover - tomli is a dependency on 3.10
        raise VisrepsError("reading a TOML spec on Python 3.10 needs tomli: pip install 'tomli>=2'") from None
    return tomli


def read_spec(spec: Any) -> tuple[dict[str, Any], Path, Path | None]:
    """The spec's content, the folder its relative paths are relative to, and its file (if any)."""
    if isinstance(spec, Mapping):
        return dict(spec), Path.cwd(), None
    if not isinstance(spec, (str, os.PathLike)):
        raise VisrepsError(f"spec must be a TOML file or a dict, got {type(spec).__name__}")
    p = Path(spec).expanduser()
    if not p.is_file():
        raise VisrepsError(f"spec file {str(p)!r} does not exist")
    tomllib = _toml()
    try:
        with open(p, "rb") as f:
            raw = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise VisrepsError(f"spec {str(p)!r} is not valid TOML: {e}") from None
    return raw, p.resolve().parent, p.resolve()


def _did_you_mean(value: Any, valid: tuple[str, ...], cutoff: float) -> str | None:
    """``"did you mean 'x'?"`` for the one entry of ``valid`` most like ``value``, else ``None``."""
    close = difflib.get_close_matches(str(value), valid, n=1, cutoff=cutoff)
    return f"did you mean {close[0]!r}?" if close else None


def _unknown(d: Mapping[str, Any], valid: tuple[str, ...], where: str, problems: list[str]) -> None:
    for k in d:
        if k not in valid:
            hint = _did_you_mean(k, valid, 0.5) or f"valid keys: {', '.join(valid)}"
            problems.append(f"{where}{k}: unknown key ({hint})")


def _table(kind: str, i: int, value: Any, keys: tuple[str, ...], first: str, problems: list[str]) -> Mapping | None:
    """The ``i``-th ``[[kind]]`` table with its unknown keys reported, or ``None`` (reported) when it is no table."""
    where = f"{kind}[{i}]"
    if not isinstance(value, Mapping):
        problems.append(f"{where}: must be a table ([[{kind}]] with {first} = ...), got {value!r}")
        return None
    _unknown(value, keys, f"{where}.", problems)
    return value


def _text(table: Mapping[str, Any], key: str, where: str, way_out: str, problems: list[str]) -> str | None:
    """The non-empty string ``table[key]``, or ``None`` with the problem ``<where>.<key>: missing; <way_out>``."""
    value = table.get(key)
    if not isinstance(value, str) or not value:
        problems.append(f"{where}.{key}: missing; {way_out}")
        return None
    return value


def _path(base: Path, value: Any) -> Path:
    return (base / Path(str(value)).expanduser()).resolve()


def _int(value: Any, key: str, problems: list[str], minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        problems.append(f"{key}: must be an integer >= {minimum}, got {value!r}")
        return minimum
    return int(value)


def _model(i: int, m: Any, base: Path, problems: list[str]) -> ModelSpec | None:
    where = f"models[{i}]"
    if _table("models", i, m, MODEL_KEYS, "id", problems) is None:
        return None
    mid = _text(m, "id", where, 'give the model id, e.g. id = "torchvision:alexnet"', problems)
    if mid is None:
        return None
    out = ModelSpec(id=mid, where=where, seed=_int(m.get("seed", 0), f"{where}.seed", problems))
    w = m.get("weights", "pretrained")
    if not isinstance(w, str) or not w:
        problems.append(f'{where}.weights: use "pretrained", "random" or the path of a weights file, got {w!r}')
    elif w in ("pretrained", "random"):
        out.weights = w
    else:
        wp = _path(base, w)
        if not wp.is_file():
            problems.append(f'{where}.weights: {w!r} is not "pretrained", "random" or an existing weights file ({wp})')
        out.weights = str(wp)
    if "seed" in m and out.weights != "random":
        problems.append(f'{where}.seed: a seed applies to weights = "random" only')
    layers = m.get("layers", "blocks")
    ok_layers = isinstance(layers, str) or (isinstance(layers, list) and all(isinstance(x, str) for x in layers))
    if not ok_layers or not layers:
        problems.append(f'{where}.layers: give "blocks", a list of layer names or glob patterns (see `visreps layers`)')
    out.layers = layers
    for k in ("label", "reduce", "pool"):
        if k in m and not isinstance(m[k], str):
            problems.append(f"{where}.{k}: must be a string, got {m[k]!r}")
    out.reduce = m.get("reduce")
    out.pool = m.get("pool")
    from ..labels import source_label

    kind = out.weights_kind
    out.label = m.get("label") or source_label(
        mid, kind=kind, seed=out.seed if kind == "random" else None, weights_name=out.weights
    )
    return out


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _target(i: int, t: Any, base: Path, problems: list[str]) -> TargetSpec | None:
    where = f"targets[{i}]"
    if _table("targets", i, t, TARGET_KEYS, "name", problems) is None:
        return None
    name = _text(t, "name", where, 'give the target a name, e.g. name = "IT"', problems) or f"target {i}"
    has = [k for k in TARGET_KINDS if k in t]
    if len(has) != 1:
        problems.append(
            f"{where}: give exactly one of rdms = (subjects × n × n), responses = (images × units), "
            "triplets = (odd-one-out choices) or time_rdms = ([subjects ×] time × n × n)"
        )
        return None
    p = _path(base, t[has[0]])
    if not p.exists():
        problems.append(f"{where}.{has[0]}: {str(p)!r} does not exist")
    similarity = t.get("similarity", "dot")
    if "similarity" in t and has[0] != "triplets":
        problems.append(f"{where}.similarity: only for triplets targets (the odd-one-out similarity)")
    elif similarity not in OOO_SIMILARITIES:
        problems.append(
            f"{where}.similarity: {similarity!r} is not one of {', '.join(OOO_SIMILARITIES)}"
            + closest_hint(str(similarity), OOO_SIMILARITIES)
        )
    times = t.get("times")
    if times is not None and (
        has[0] != "time_rdms" or not isinstance(times, list) or not times or not all(_number(x) for x in times)
    ):
        problems.append(f"{where}.times: a list of numbers, one per time point of time_rdms, got {times!r}")
        times = None
    return TargetSpec(
        times=times,
        name=name,
        kind=TARGET_KINDS[has[0]],
        path=p,
        key=t.get("key"),
        axes=t.get("axes"),
        where=f"{where}.{has[0]}",
        similarity=str(similarity),
    )


def _analysis(a: Any, problems: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {k: dict(v) for k, v in DEFAULTS.items()}
    out.update(test="pairwise", correction="fdr", ci=0.95)
    if not isinstance(a, Mapping):
        problems.append(f"analysis: must be a table, got {a!r}")
        return out
    _unknown(a, ANALYSIS_KEYS, "analysis.", problems)
    for k, sub in SUB_KEYS.items():
        if k not in a:
            continue
        if not isinstance(a[k], Mapping):
            problems.append(f"analysis.{k}: must be a table like {{ {sub[0]} = ... }}, got {a[k]!r}")
            continue
        _unknown(a[k], sub, f"analysis.{k}.", problems)
        out[k].update({kk: v for kk, v in a[k].items() if kk in sub})
    for k in ("test", "correction", "ci"):
        if k in a:
            out[k] = a[k]
    _check_analysis(out, problems)
    return out


def _check_analysis(a: dict[str, Any], problems: list[str]) -> None:
    checks = (
        ("rsa.rdm", a["rsa"]["rdm"], RDM_METHODS),
        ("rsa.compare", a["rsa"]["compare"], COMPARISONS),
        ("encoding.model", a["encoding"]["model"], tuple(m for m in ENCODING_MODELS if m != "banded")),
        ("correction", a["correction"], CORRECTIONS),
    )
    for key, value, valid in checks:
        if value not in valid:
            close = _did_you_mean(value, valid, 0.6)
            hint = f"{close} " if close else ""
            problems.append(f"analysis.{key}: {value!r} is not one of {', '.join(valid)} ({hint}choose one)")
    sel = a["selection"]
    split = sel["split"]
    if isinstance(split, bool) or not isinstance(split, (int, float)) or not 0 < split < 1:
        problems.append(f"analysis.selection.split: the share of images for selection, between 0 and 1, got {split!r}")
    cv = _int(sel["cv"], "analysis.selection.cv", problems, 1)
    if cv > 2:
        problems.append("analysis.selection.cv: 1 (one split) or 2 (swap the halves and average)")
    _int(sel["seed"], "analysis.selection.seed", problems)
    _int(a["encoding"]["folds"], "analysis.encoding.folds", problems, 2)
    _int(a["bootstrap"]["n"], "analysis.bootstrap.n", problems, 2)
    if a["test"] not in ("pairwise", "none", None, ""):
        problems.append(f'analysis.test: "pairwise" (tests between models, FDR) or "none", got {a["test"]!r}')
    ci = a["ci"]
    if isinstance(ci, bool) or not isinstance(ci, (int, float)) or not 0 < ci < 1:
        problems.append(f"analysis.ci: the interval level between 0 and 1 (e.g. 0.95), got {ci!r}")


def parse_spec(spec: Any) -> tuple[Spec, list[str]]:
    """The spec with defaults and resolved paths, and the list of problems found in its keys."""
    raw, base, source = read_spec(spec)
    problems: list[str] = []
    _unknown(raw, TOP_KEYS, "", problems)
    images = raw.get("images")
    if not isinstance(images, str) or not images:
        problems.append('images: missing; give the image folder, e.g. images = "stimuli/"')
        img_path = base
    else:
        img_path = _path(base, images)
        if not img_path.exists():
            problems.append(
                f"images: {str(img_path)!r} does not exist; give an image folder, an HDF5 or .npy image array, "
                "a .txt list of image paths or one image file"
            )
    order = _path(base, raw["order"]) if raw.get("order") else None
    if order is not None and not order.is_file():
        problems.append(f"order: {str(order)!r} does not exist")
    work = _path(base, raw["work_dir"]) if raw.get("work_dir") else None
    models_raw = raw.get("models")
    if not isinstance(models_raw, list) or not models_raw:
        problems.append("models: none given; add [[models]] tables with id = ... and layers = ...")
        models_raw = []
    targets_raw = raw.get("targets")
    if not isinstance(targets_raw, list) or not targets_raw:
        problems.append("targets: none given; add [[targets]] tables with name = ... and rdms = ... or responses = ...")
        targets_raw = []
    models = [m for i, x in enumerate(models_raw) if (m := _model(i, x, base, problems)) is not None]
    targets = [t for i, x in enumerate(targets_raw) if (t := _target(i, x, base, problems)) is not None]
    names = [t.name for t in targets]
    for n in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"targets: the name {n!r} is used twice; give every target its own name")
    from ..labels import unique_labels

    for m, lab in zip(models, unique_labels([m.label for m in models])):
        m.label = lab
    analysis = _analysis(raw.get("analysis", {}), problems)
    device = raw.get("device", "auto")
    batch = _int(raw.get("batch_size", 32), "batch_size", problems, 1)
    out = Spec(raw, base, img_path, order, work, models, targets, analysis, str(device), batch, source)
    key = raw.get("images_key")
    if key is not None and not isinstance(key, str):
        problems.append(f"images_key: the name of the image array in the HDF5 file, got {key!r}")
    out.images_key = key if isinstance(key, str) else None
    return out, problems


def model_options(s: Spec, m: ModelSpec, device: str | None = None) -> dict[str, Any]:
    """The options of ``visreps.extract`` for model ``m`` of spec ``s``; its cache request is made of the same."""
    opts = {**m.extract_options(), "order": s.order, "device": device or s.device, "batch_size": s.batch_size}
    opts["images_key"] = s.images_key
    return {k: v for k, v in opts.items() if v is not None}


def fail(problems: list[str], source: Path | None) -> None:
    """Raise one error listing every problem (one clause each, naming its key)."""
    if not problems:
        return
    where = f"spec {str(source)!r}" if source else "spec"
    n = len(problems)
    raise VisrepsError(f"{where}: {n} problem{'s' if n > 1 else ''}: " + "; ".join(problems))
