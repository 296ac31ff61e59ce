"""``visreps.bench``: validate the whole spec, extract what the cache lacks, select, score, write."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VisrepsError, closest_hint
from ..options import BENCH_ENGINES
from . import _score
from ._outputs import OUTPUT_FILES
from ._spec import MIN_PART, MIN_TRIPLETS, ModelSpec, Spec, TargetSpec, fail, model_options, parse_spec


@dataclass
class BenchResult:
    """What :func:`bench` returns: the tables it wrote and where.

    Attributes:
        ranking: one row per target × model (see ``ranking.csv``).
        pairwise: the pairwise tests between models per target (and fold).
        layers: every target × model × layer: selection score(s) and the score on all images (the layer profile).
        split: ``path, label, part`` of every image.
        out: the output folder.
        extracted: labels of the models extracted by this run (the others came from the cache).
        cache: one record per model: its cache folder, key and whether it was extracted now.
    """

    ranking: Any
    pairwise: Any
    layers: Any
    split: Any
    out: Path
    extracted: list[str] = field(default_factory=list)
    cache: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Target:
    spec: TargetSpec
    data: Any  # (subjects, n, n) stack, or Responses in image order
    n_subjects: int = 1


def _say(progress: bool) -> Callable[[str], None]:
    def say(msg: str) -> None:
        if progress:
            print(msg, file=sys.stderr, flush=True)

    return say


# --------------------------------------------------------------------------- validation


def _images(spec: Spec, problems: list[str]) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """The images' manifest paths, labels (class folders; none for arrays and lists) and content hashes."""
    from ..image_sources import open_source
    from ..workcache import image_hashes

    if not spec.images.exists():
        return [], [], []
    try:
        items = open_source(spec.images, images_key=spec.images_key).items(spec.order)
        hashes = image_hashes(spec.images, spec.order, spec.images_key)
    except VisrepsError as e:
        problems.append(f"images: {e}")
        return [], [], []
    return [i.path for i in items], [i.label for i in items], hashes


def _load_target(t: TargetSpec, paths: list[str], problems: list[str]) -> _Target | None:
    import warnings

    from ..analysis import load_reference_rdms, load_responses
    from ..analysis.timeseries import load_time_rdms

    n = len(paths)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if t.kind == "odd-one-out":
                return _load_triplets(t, paths)
            if t.kind == "time-rsa":
                tr = load_time_rdms(t.path, times=t.times, key=t.key)
                if tr.rdms.shape[-1] != n:
                    k = tr.rdms.shape[-1]
                    problems.append(f"{t.where}: {k} × {k} RDMs for {n} images; the rows must be the images, in order")
                    return None
                return _Target(t, tr, tr.n_subjects)
            if t.kind == "rsa":
                stack, _ = load_reference_rdms(t.path, key=t.key)
                if stack.shape[1] != n:
                    problems.append(
                        f"{t.where}: {stack.shape[1]} × {stack.shape[1]} RDMs for {n} images; the RDMs' rows must be "
                        "the images, in image order"
                    )
                    return None
                return _Target(t, stack, len(stack))
            try:
                resp = load_responses(t.path, key=t.key, axes=t.axes)
            except VisrepsError as e:  # 3-D without axes: repetitions × images × units, as the spec says
                if t.axes is not None or "dimensions; say what they are" not in str(e):
                    raise
                resp = load_responses(t.path, key=t.key, axes="repetitions,images,targets")
            resp = _score.restrict_responses(resp, paths, where=f"{t.where} ({t.path.name})")
            return _Target(t, resp)
    except VisrepsError as e:
        problems.append(f"{t.where}: {e}")
        return None


def _load_triplets(t: TargetSpec, paths: list[str]) -> _Target:
    """Triplets matched to the images by name (or 0-based image index): ``data`` = (rows (m, 3), odd (m,))."""
    from ..analysis.behaviour import load_triplets, match_triplets

    trip = load_triplets(t.path)
    return _Target(t, (match_triplets(trip, paths, len(paths), f"the triplets of {t.path.name!r}"), trip.odd))


def _check_kinds(spec: Spec, targets: list[_Target], sel: np.ndarray, problems: list[str]) -> None:
    """Odd-one-out targets: each part of the split holds enough triplets with all three images in it; time-resolved
    targets: the comparison is a correlation (a time course is correlations)."""
    from ..options import CORRELATIONS

    folds = _score.folds_of(sel, int(spec.analysis["selection"]["cv"]))
    compare = spec.analysis["rsa"]["compare"]
    for t in targets:
        if t.spec.kind == "time-rsa" and compare not in CORRELATIONS:
            problems.append(
                f"analysis.rsa.compare: {compare!r} for the time-resolved target {t.spec.name!r}; its time courses are "
                f"correlations: use one of {', '.join(CORRELATIONS)}"
            )
        if t.spec.kind != "odd-one-out":
            continue
        si, ti = folds[0]
        in_sel, in_test = _score.triplets_within(t.data[0], si), _score.triplets_within(t.data[0], ti)
        if min(int(in_sel.sum()), int(in_test.sum())) < MIN_TRIPLETS:
            problems.append(
                f"{t.spec.where}: {int(in_sel.sum())} triplet(s) have all three images among the selection images and "
                f"{int(in_test.sum())} among the test images (of {len(in_sel)}); at least {MIN_TRIPLETS} each are "
                "needed: give more triplets, or more images to the smaller part (selection.split)"
            )


def _check_split(spec: Spec, labels: list[str], problems: list[str]) -> np.ndarray | None:
    sel_opts = spec.analysis["selection"]
    if not labels or problems and any(p.startswith("analysis.selection") for p in problems):
        return None
    sel = _score.make_split(labels, float(sel_opts["split"]), int(sel_opts["seed"]))
    n_sel, n_test = int(sel.sum()), int((~sel).sum())
    if min(n_sel, n_test) < MIN_PART:
        problems.append(
            f"analysis.selection.split: {n_sel} selection and {n_test} test images (of {len(sel)}); each part needs at "
            f"least {MIN_PART}: change split or use more images"
        )
        return None
    folds = int(spec.analysis["encoding"]["folds"])
    smallest = min(n_sel, n_test)
    if any(t.kind == "encoding" for t in spec.targets) and smallest < 2 * folds:
        problems.append(
            f"analysis.encoding.folds: {folds} folds within a part of {smallest} images leave too few per fold; use "
            f"at most {max(2, smallest // 2)} folds or more images"
        )
    return sel


def _factors(spec: Spec, targets: list[_Target], problems: list[str]) -> dict[str, str | None]:
    from ..analysis.inference import check_bootstrap

    out: dict[str, str | None] = {}
    given = spec.analysis["bootstrap"]["factors"]
    for t in targets:
        if t.spec.kind != "rsa":
            continue
        if given is None:
            out[t.spec.name] = "subjects,images" if t.n_subjects >= 2 else "images"
            continue
        try:
            fac = check_bootstrap(given)
        except VisrepsError as e:
            problems.append(f"analysis.bootstrap.factors: {e}")
            continue
        if "subjects" in fac and t.n_subjects < 2:
            problems.append(
                f"analysis.bootstrap.factors: target {t.spec.name!r} has one subject's RDM; bootstrap over "
                '"images", or give RDMs of 2+ subjects'
            )
        out[t.spec.name] = ",".join(fac) or None
    return out


#: a model whose layers take more than this per image (float32, after its reduction) is told to add ``reduce``
WIDE_BYTES_PER_IMAGE = 1 << 20


def _plan_models(s: Spec, hashes: list, work: Path, problems: list[str], say) -> tuple[list, list[bool]]:
    """Every model's cache request and whether it must be extracted; the disk its extractions need, said and checked
    against the free space of ``work_dir`` (the way out named: ``reduce``), before any work."""
    import shutil

    from ..storage.folder import human_bytes
    from ..workcache import cache_request

    requests, missing, sizes = [], [], []
    for m in s.models:
        try:
            req = cache_request(m.id, m.layers, hashes, model_options(s, m))  # as the extraction will ask
        except VisrepsError as e:
            problems.append(f"{m.where}.weights: {e}")
            req = None
        requests.append(req)
        todo, per_image = _check_model(m, req if hashes else None, work, s, problems)
        missing.append(todo)
        if per_image:
            sizes.append((m, per_image))
            total = (
                f"{human_bytes(per_image)} per image, {human_bytes(per_image * len(hashes))} for {len(hashes)} images"
            )
            wide = per_image > WIDE_BYTES_PER_IMAGE and m.reduce is None
            say(f"plan: {m.label}: {total}" + (' (add reduce = "srp:4096" to keep every layer small)' if wide else ""))
    need = sum(b for _, b in sizes) * len(hashes)
    place = next((p for p in (work, *work.parents) if p.exists()), None)
    free = shutil.disk_usage(place).free if place is not None else None
    if free is not None and need > free:
        widest = max(sizes, key=lambda x: x[1])[0]
        problems.append(
            f"work_dir: the extractions need {human_bytes(need)} and {str(place)!r} has {human_bytes(free)} free; "
            f'add reduce = "srp:4096" to the widest model ({widest.where}: {widest.label}), ask fewer layers, '
            "or free space"
        )
    return requests, missing


def _check_model(
    m: ModelSpec, request: dict | None, work: Path, spec: Spec, problems: list[str]
) -> tuple[bool, int | None]:
    """Whether the model must be extracted (its cache entry is missing), and then the bytes per image of its layers
    (float32, after its reduction; ``None`` when unknown). It is loaded to check id and layers, by a dry run.

    The loaded model is let go again (many models are never held at once); the extraction loads it anew.
    """
    from .. import capture
    from ..models import load_model
    from ..workcache import find_entry

    rspec = _check_reduce(m, problems)
    if request is not None and find_entry(work, request) is not None:
        return False, None
    opts = m.extract_options()
    try:
        lm = load_model(
            m.id,
            pretrained=opts.get("pretrained", True),
            weights=opts.get("weights"),
            seed=opts.get("seed", 0),
            device="cpu",
        )
    except VisrepsError as e:
        problems.append(f"{m.where}.id: {m.id!r} cannot be loaded: {e}")
        return True, None
    try:
        specs = capture.plan_layers(lm, m.layers, pool=m.pool or "flatten")
        widths = [int(np.prod(shape)) for shape in capture.dry_shapes(lm, specs).values()]
    except VisrepsError as e:
        problems.append(f"{m.where}.layers: {e}")
        return True, None
    if rspec is not None and rspec.k is not None:
        widths = [min(w, rspec.k) for w in widths]
    return True, 4 * sum(widths)


def _check_reduce(m: ModelSpec, problems: list[str]):
    """``models[i].reduce`` parsed by the reductions' own parser (``None``: none, or not valid: then a problem)."""
    from ..reduce import parse_reduce

    try:
        return parse_reduce(m.reduce)
    except VisrepsError as e:
        problems.append(f"{m.where}.reduce: {e}")
        return None


def _check_out(out: Path, spec: Spec, problems: list[str]) -> Any:
    """The checked output plan of ``out`` (``None`` when ``out`` has a problem, added to ``problems``)."""
    from ._outputs import owned_outputs, plan_outputs

    before = len(problems)

    if out == spec.images or spec.images in out.parents:
        problems.append(f"--out: {str(out)!r} lies in the image folder; choose a folder outside {str(spec.images)!r}")
    planned = {out / n for n in OUTPUT_FILES}
    for t in spec.targets:
        if t.path in planned:
            problems.append(f"{t.where}: {str(t.path)!r} is an input and cannot be an output; choose another --out")
    if spec.source is not None and spec.source in planned:
        problems.append(f"--out: the spec {str(spec.source)!r} would be overwritten; choose another --out")
    if out.exists() and not out.is_dir():
        problems.append(f"--out: {str(out)!r} is a file, not a folder")
        return None
    ours = owned_outputs(out)
    for p in sorted(planned):
        if (p.exists() or p.is_symlink()) and p.name not in ours:
            problems.append(
                f"--out: {str(p)!r} exists and was not written by visreps bench; choose another --out or move it away"
            )
    if len(problems) > before:
        return None
    try:
        return plan_outputs(out, spec)
    except VisrepsError as e:
        problems.append(f"--out: {e}")
        return None


# --------------------------------------------------------------------------- the run


def _check_engine(engine: str) -> None:
    """A bench engine, and for ``ray`` the extra installed: said before anything is read."""
    if engine not in BENCH_ENGINES:
        hint = closest_hint(engine, BENCH_ENGINES)
        raise VisrepsError(f"engine {engine!r} is not a bench engine; use one of {', '.join(BENCH_ENGINES)}{hint}")
    if engine == "ray":
        from ..distributed import import_ray

        import_ray()


def bench(
    spec: Any,
    *,
    out: str | os.PathLike,
    engine: str = "local",
    progress: bool = True,
) -> BenchResult:
    """Many models × all their layers × several brain or behaviour targets, ranked with honest layer selection.

    Args:
        spec: a TOML spec file (relative paths are relative to its folder) or the same content as
            a dict (paths relative to the working directory); see ``docs/bench.md`` for its keys.
        out: the output folder: ``ranking.csv``, ``pairwise.csv``, ``layers.csv``, ``split.csv``,
            ``ranking.png``/``.pdf``, ``report.md`` and ``bench.json`` (the record of the run). A rerun
            into the same folder replaces the files the earlier bench recorded as its own, nothing else.
        engine: ``"local"`` (the models one after the other in this process) or ``"ray"`` (each missing model's
            extraction a Ray task with its own GPU, or a share of the CPUs; the ``ray`` extra; see
            :mod:`visreps.bench._ray`). Both write the same cache folders and the same outputs.
        progress: say what is done on stderr.

    Returns:
        :class:`BenchResult`.

    Raises:
        VisrepsError: every problem of the spec at once (one clause each, naming its key), before
            any extraction; errors of the extraction or the analysis.
    """
    say = _say(progress)
    _check_engine(engine)
    s, problems = parse_spec(spec)
    outp = Path(out).expanduser().resolve()
    work = s.work_dir or outp / "cache"
    paths, labels, hashes = _images(s, problems)
    targets = [t for ts in s.targets if (t := _load_target(ts, paths, problems)) is not None] if paths else []
    sel = _check_split(s, labels, problems) if paths else None
    if sel is not None:
        _check_kinds(s, targets, sel, problems)
    factors = _factors(s, targets, problems)
    plan = _check_out(outp, s, problems)
    requests, missing = _plan_models(s, hashes, work, problems, say)
    fail(problems, s.source)
    assert sel is not None
    fingerprint = _fingerprint(s, requests, hashes, sel)
    from ._outputs import reuse_outputs, write_outputs

    if not any(missing):  # every extraction is in the cache: perhaps nothing changed at all
        done = reuse_outputs(outp, fingerprint)
        if done is not None:
            say(f"{outp} holds the results of this spec already (same spec, images, targets and cache entries)")
            ranking, pairwise, layer_rows, split, cache = done
            return BenchResult(ranking, pairwise, layer_rows, split, outp, [], cache)
    ray_keys: set[str] = set()
    if engine == "ray":
        from ._ray import extract_on_ray

        ray_keys = extract_on_ray(s, work, hashes, requests, missing, say)
    entries = _extract_all(s, work, hashes, missing, say, ray_keys)
    say("scoring")
    ranking, pairwise, layer_rows = _score_all(s, targets, entries, sel, factors, say)
    split = _split_table(paths, labels, sel)
    cache = [
        {"label": m.label, "model": m.id, "folder": str(e.folder), "key": e.key, "extracted": e.extracted,
         "checksums": {k: v.get("sha256") for k, v in (e.load().metadata.get("checksums") or {}).items()}}
        for m, e in zip(s.models, entries)
    ]  # fmt: skip
    write_outputs(plan, s, ranking, pairwise, layer_rows, split, cache, fingerprint)
    say(f"wrote {outp}")
    return BenchResult(ranking, pairwise, layer_rows, split, outp, [c["label"] for c in cache if c["extracted"]], cache)


def _file_digest(path: Path) -> str:
    from ..models._base import file_sha256

    if path.is_dir():
        return ",".join(f"{f.name}:{file_sha256(f)}" for f in sorted(path.iterdir()) if f.is_file())
    return file_sha256(path)


def _fingerprint(s: Spec, requests: list, hashes, sel: np.ndarray) -> str:
    """What decides every number of the outputs: spec, analysis options, cache keys, targets' and images' content."""
    import hashlib
    import json

    from ..storage import versions
    from ..workcache import request_key

    rec = {
        "spec": s.raw,
        "analysis": s.analysis,
        "labels": [m.label for m in s.models],
        "requests": [request_key(r) for r in requests],
        "targets": [(t.name, t.kind, t.key, t.axes, _file_digest(t.path)) for t in s.targets],
        "images": hashes,
        "split": sel.tolist(),
        "versions": versions(),
    }
    return hashlib.sha256(json.dumps(rec, sort_keys=True, default=str).encode()).hexdigest()


def _extract_all(s: Spec, work: Path, hashes, missing: list[bool], say, ray_keys: set[str]) -> list:
    """Every model's cache entry: read from the cache (verified), or extracted now, one model after the other.

    ``ray_keys``: the cache keys that Ray tasks extracted in this run (read here, and marked as extracted)."""
    from ..workcache import cached_extract

    entries = []
    for m, todo in zip(s.models, missing):
        if not ray_keys:
            say(f"{m.label}: {'extracting' if todo else 'from the cache'}")
        opts = model_options(s, m)
        entry = cached_extract(m.id, s.images, layers=m.layers, work_dir=work, options=opts, image_list=hashes)
        entry.extracted = entry.extracted or entry.key in ray_keys
        entries.append(entry)
    return entries


def _split_table(paths: list[str], labels: list[str], sel: np.ndarray):
    import pandas as pd

    return pd.DataFrame({"path": paths, "label": labels, "part": np.where(sel, "selection", "test")})


def _model_rdms(feats: Any, rdm_method: str) -> dict[str, np.ndarray | None]:
    from ..analysis import compute_rdm

    out: dict[str, np.ndarray | None] = {}
    for layer in feats.layers:
        try:
            out[layer] = compute_rdm(feats[layer], rdm_method)
        except VisrepsError:
            out[layer] = None  # e.g. constant rows: no correlation distance; the layer cannot be committed
    return out


def _score_all(s: Spec, targets: list[_Target], entries: list, sel: np.ndarray, factors: dict, say):
    import pandas as pd

    folds = _score.folds_of(sel, int(s.analysis["selection"]["cv"]))
    feats = [e.load() for e in entries]
    rdm_cache: dict[int, dict[str, np.ndarray | None]] = {}
    rank_rows, pair_frames, layer_frames = [], [], []
    for t in targets:
        say(f"target {t.spec.name}")
        if t.spec.kind in ("rsa", "time-rsa"):
            for i, f in enumerate(feats):
                if i not in rdm_cache:
                    rdm_cache[i] = _model_rdms(f, s.analysis["rsa"]["rdm"])
        rows, pairs, layers = _score_target(s, t, feats, rdm_cache, folds, factors.get(t.spec.name))
        rank_rows += rows
        pair_frames += pairs
        layer_frames.append(layers)
    ranking = pd.DataFrame(rank_rows)
    ranking["rank"] = (
        ranking.groupby("target")["score"].rank(ascending=False, method="min", na_option="bottom").astype(int)
    )
    ranking = ranking.sort_values(["target", "rank"], kind="stable").reset_index(drop=True)
    pair_cols = [
        "target",
        "fold",
        "a",
        "b",
        "r_a",
        "r_b",
        "difference",
        "se_difference",
        "p",
        "p_corrected",
        "significant",
    ]
    pairwise = pd.concat(pair_frames, ignore_index=True) if pair_frames else pd.DataFrame(columns=pair_cols)
    return ranking, pairwise, pd.concat(layer_frames, ignore_index=True)


def _scorers(s: Spec, t: _Target, feats: list, rdm_cache: dict) -> tuple[Callable, Callable]:
    """``layer_scores(i, images)`` (every layer of model ``i`` on those images; ``None``: all) and
    ``test(chosen, images, factors)`` (held-out rows and pairwise table of label → (model index, layer))."""
    a = s.analysis
    if t.spec.kind == "rsa":
        return (
            lambda i, idx: _score.rsa_layer_scores(rdm_cache[i], t.data, idx, a["rsa"]["compare"]),
            lambda chosen, ti, factors: _score.rsa_test(
                {lab: rdm_cache[i][layer] for lab, (i, layer) in chosen.items()}, t.data, ti, a, factors
            ),
        )
    if t.spec.kind == "time-rsa":
        D, times = t.data.rdms, t.data.times

        def time_test(chosen, ti, _):  # the selection images: the others (both folds split all images in two)
            parts = (np.setdiff1d(np.arange(D.shape[-1]), ti), ti)
            return _score.time_test(
                {lab: rdm_cache[i][layer] for lab, (i, layer) in chosen.items()}, D, times, parts, a
            )

        return (lambda i, idx: _score.time_layer_scores(rdm_cache[i], D, idx, a["rsa"]["compare"])), time_test
    if t.spec.kind == "encoding":
        return (
            lambda i, idx: _score.encoding_layer_scores(feats[i], feats[i].layers, t.data, idx, a),
            lambda chosen, ti, _: _score.encoding_test(
                {lab: feats[i][layer] for lab, (i, layer) in chosen.items()}, t.data, ti, a
            ),
        )
    rows, odd = t.data
    agree: dict[tuple[int, str], np.ndarray] = {}  # each layer's choices computed once for all triplets

    def agreement(i: int, layer: str) -> np.ndarray:
        if (i, layer) not in agree:
            name = f"{s.models[i].label} {layer}"
            agree[i, layer] = _score.triplet_agreement(feats[i][layer], rows, odd, t.spec.similarity, name)
        return agree[i, layer]

    def test(chosen, ti, _):
        chosen_agree = {lab: agreement(i, layer) for lab, (i, layer) in chosen.items()}
        mask = _score.triplets_within(rows, ti)
        out, pw = _score.ooo_test(chosen_agree, rows, odd, mask, a)
        return {lab: {**r, "n_test": int(mask.sum())} for lab, r in out.items()}, pw

    def layer_scores(i, idx):
        mask = _score.triplets_within(rows, idx)
        return {layer: float(agreement(i, layer)[mask].mean()) for layer in feats[i].layers}

    return layer_scores, test


def _score_target(s: Spec, t: _Target, feats: list, rdm_cache: dict, folds, factors):
    """Rows of ranking.csv, pairwise frames and the layers frame of one target."""
    import pandas as pd

    layer_scores, test = _scorers(s, t, feats, rdm_cache)
    sel_scores: list[list[dict[str, float]]] = [[] for _ in folds]
    all_scores: list[dict[str, float]] = []
    committed: list[list[str]] = [[] for _ in folds]
    tests: list[dict[str, dict[str, float]]] = []
    pairs = []
    for i, m in enumerate(s.models):
        where = f"target {t.spec.name!r}, model {m.label!r}"
        for k, (si, _) in enumerate(folds):
            sc = layer_scores(i, si)
            sel_scores[k].append(sc)
            committed[k].append(_score._best(sc, where))
        all_scores.append(layer_scores(i, None))
    for k, (_, ti) in enumerate(folds):
        rows, pw = test({m.label: (i, committed[k][i]) for i, m in enumerate(s.models)}, ti, factors)
        tests.append(rows)
        if pw is not None and len(pw):
            pw = pw.copy()
            pw.insert(0, "fold", k)
            pw.insert(0, "target", t.spec.name)
            pairs.append(pw)
    rank_rows = []
    for i, m in enumerate(s.models):
        vals = {c: float(np.mean([tests[k][m.label][c] for k in range(len(folds))])) for c in tests[0][m.label]}
        layer = "|".join(dict.fromkeys(committed[k][i] for k in range(len(folds))))
        with np.errstate(divide="ignore", invalid="ignore"):
            norm = vals["score"] / vals["ceiling_upper"] if np.isfinite(vals["ceiling_upper"]) else np.nan
        rank_rows.append(
            {"target": t.spec.name, "kind": t.spec.kind, "model": m.id, "label": m.label, "weights": m.weights_text,
             "layer": layer, "score": vals["score"], "ceiling_lower": vals["ceiling_lower"],
             "ceiling_upper": vals["ceiling_upper"], "normalised": norm, "ci_low": vals["ci_low"],
             "ci_high": vals["ci_high"], "n_test": int(vals.get("n_test", np.mean([len(ti) for _, ti in folds]))),
             "n_folds": len(folds)}
        )  # fmt: skip
        if "time" in vals:  # time-resolved targets: the committed latency (cv = 2: the mean of the halves')
            rank_rows[-1]["time"] = vals["time"]
    layer_rows = []
    for i, m in enumerate(s.models):
        names = list(feats[i].layers)
        for d, layer in enumerate(names):
            row = {"target": t.spec.name, "model": m.id, "label": m.label, "weights": m.weights_text, "layer": layer,
                   "depth": d / max(1, len(names) - 1), "selection_score": sel_scores[0][i][layer],
                   "committed": committed[0][i] == layer}  # fmt: skip
            if len(folds) > 1:
                row["selection_score_swapped"] = sel_scores[1][i][layer]
                row["committed_swapped"] = committed[1][i] == layer
            row["score_all_images"] = all_scores[i][layer]
            row["for_ranking"] = False
            layer_rows.append(row)
    return rank_rows, pairs, pd.DataFrame(layer_rows)
