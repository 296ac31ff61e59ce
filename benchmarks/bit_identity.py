"""Prove that a code change leaves every output file of the ``visreps`` command line unchanged.

Runs one fixed set of CLI commands twice with the same interpreter: once with the source tree of a
baseline revision and once with the working tree (or a second revision, ``--current``), then compares
every file the two runs wrote, pair by pair::

    python benchmarks/bit_identity.py                       # 3e39a55 vs the working tree
    python benchmarks/bit_identity.py --baseline HEAD~1 --keep /tmp/bitid
    python benchmarks/bit_identity.py --baseline 3e39a55 --current 3e39a55   # self-test of the harness

The code is selected with ``PYTHONPATH=<tree>/src``; each side runs in its own folder with the same
relative layout (``out/``, ``inputs/``, ``logs/``), so paths recorded in the outputs differ only by that
folder, which is normalised away. Both sides read the same images (``examples/images`` of this
repository) with ``--workers 0 --device cpu`` and fixed batch sizes.

Files are IDENTICAL when their bytes are equal, or equal after masking what is volatile by design
(the creation time in a ``.mat`` header; in ``metadata.json`` the keys in ``VOLATILE_METADATA`` and the
run folder). Otherwise the file is read as what it is (arrays, HDF5 datasets, ``.mat`` variables,
``.pt`` tensors, image pixels, CSV/JSON) to name the first difference. Exit code 0 when every command
succeeded on both sides and every file is identical, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BASELINE = "3e39a55"
IMAGES = REPO / "examples" / "images"

#: metadata.json keys (dotted paths) that legitimately change from run to run.
VOLATILE_METADATA = ("created", "seconds", "command", "versions", "options.num_workers")

TEXTS = "a photo of a cat\na cup of coffee\nan astronaut in a white suit\n\na rocket on the launch pad\n"
ORDER = "rocket.jpg\ncoffee.jpg\nastronaut.jpg\nchelsea_cat.jpg\n"

#: Commands whose stdout is part of their result (tables printed to the terminal).
STDOUT_COMPARED = ("rsa", "compare", "cka")


@dataclass(frozen=True)
class Command:
    """One CLI invocation: a short name for the tables and the arguments after ``visreps``."""

    name: str
    args: tuple[str, ...]


def commands(images: Path) -> list[Command]:
    """The command set: every extract format and pooling family, sharding + merge, text, and the analyses.

    Later commands read the folders of earlier ones, so the order matters. All arguments except the
    image folder (the same absolute path for both sides) are relative to the side's run folder.
    """
    img = str(images)
    run = ("--workers", "0", "--device", "cpu", "-q")
    alexnet = ("extract", "torchvision:alexnet", img, "--random", "--seed", "1")
    vit = ("extract", "timm:vit_tiny_patch16_224", img, "--random", "--seed", "3")
    cmds = [
        (
            "extract-npy-avg",
            (
                *alexnet,
                "--layers",
                "features.2,classifier.4",
                "--pool",
                "avg",
                "--format",
                "npy",
                "--out",
                "out/alexnet_npy",
                *run,
            ),
        ),
        (
            "extract-hdf5-none-b4",
            (
                *alexnet,
                "--layers",
                "features.5,classifier.1",
                "--pool",
                "none",
                "--batch-size",
                "4",
                "--format",
                "hdf5",
                "--out",
                "out/alexnet_hdf5",
                *run,
            ),
        ),
        (
            "extract-mat-topk",
            (
                "extract",
                "timm:tf_efficientnet_lite0",
                img,
                "--offline",
                "--layers",
                "blocks.3,global_pool",
                "--pool",
                "max",
                "--top-k",
                "3",
                "--format",
                "mat",
                "--out",
                "out/lite0_mat",
                *run,
            ),
        ),
        (
            "extract-pt-recurrent",
            (
                "extract",
                "cornet:r",
                img,
                "--random",
                "--seed",
                "1",
                "--layers",
                "V4.output",
                "--recurrent",
                "all",
                "--pool",
                "avg",
                "--format",
                "pt",
                "--out",
                "out/cornet_r_pt",
                *run,
            ),
        ),
        (
            "extract-txt-cls-b4",
            (
                *vit,
                "--layers",
                "blocks.5,blocks.11",
                "--pool",
                "cls",
                "--batch-size",
                "4",
                "--format",
                "txt",
                "--out",
                "out/vit_txt",
                *run,
            ),
        ),
        (
            "extract-order-max",
            (
                "extract",
                "cornet:z",
                img,
                "--random",
                "--seed",
                "2",
                "--layers",
                "V1.output,IT.output",
                "--pool",
                "max",
                "--order",
                "inputs/order.txt",
                "--recurrent",
                "last",
                "--top-k",
                "2",
                "--out",
                "out/cornet_z_order",
                *run,
            ),
        ),
        (
            "extract-shard-1of2",
            (
                *alexnet,
                "--layers",
                "features.2,classifier.4",
                "--batch-size",
                "2",
                "--shard",
                "1/2",
                "--out",
                "out/shard1",
                *run,
            ),
        ),
        (
            "extract-shard-2of2",
            (
                *alexnet,
                "--layers",
                "features.2,classifier.4",
                "--batch-size",
                "2",
                "--shard",
                "2/2",
                "--out",
                "out/shard2",
                *run,
            ),
        ),
        ("merge", ("merge", "out/merged", "out/shard1", "out/shard2")),
        (
            "text",
            (
                "text",
                "clip:ViT-B-32",
                "inputs/texts.txt",
                "--random",
                "--seed",
                "1",
                "--layers",
                "text_embedding,transformer.resblocks.5",
                "--batch-size",
                "2",
                "--format",
                "hdf5",
                "--device",
                "cpu",
                "--out",
                "out/clip_text",
                "-q",
            ),
        ),
        ("rsa", ("rsa", "out/alexnet_npy", "--out", "out/rsa_alexnet", "--dpi", "50", "--device", "cpu")),
        (
            "rsa-csv-rank",
            (
                "rsa",
                "out/lite0_mat",
                "--method",
                "euclidean",
                "--format",
                "csv",
                "--rank",
                "--cluster",
                "--dpi",
                "50",
                "--out",
                "out/rsa_lite0",
                "--device",
                "cpu",
            ),
        ),
        (
            "compare",
            (
                "compare",
                "out/alexnet_npy",
                "out/lite0_mat",
                "out/vit_txt",
                "--dpi",
                "50",
                "--out",
                "out/compare.csv",
                "--device",
                "cpu",
            ),
        ),
        (
            "compare-reference",
            (
                "compare",
                "out/alexnet_hdf5",
                "out/vit_txt",
                "--reference",
                "out/rsa_alexnet/rdm_features.2_correlation.npy",
                "--method",
                "spearman",
                "--bootstrap",
                "50",
                "--seed",
                "4",
                "--out",
                "out/compare_reference.csv",
                "--no-plot",
                "--device",
                "cpu",
            ),
        ),
        (
            "cka",
            (
                "cka",
                "out/alexnet_npy",
                "out/lite0_mat",
                "--out",
                "out/cka.csv",
                "--plot",
                "out/cka.png",
                "--dpi",
                "50",
                "--device",
                "cpu",
            ),
        ),
        (
            "cka-rbf-unbiased",
            (
                "cka",
                "out/merged",
                "out/vit_txt",
                "--kernel",
                "rbf",
                "--unbiased",
                "--out",
                "out/cka_rbf.csv",
                "--device",
                "cpu",
            ),
        ),
    ]
    return [Command(name, tuple(args)) for name, args in cmds]


# --------------------------------------------------------------------------------------------------
# Source trees and runs


def git(*args: str, capture: bool = True) -> bytes:
    """Run a read-only git command in this repository and return its stdout."""
    res = subprocess.run(["git", "-C", str(REPO), *args], capture_output=capture, check=False)
    if res.returncode != 0:
        raise SystemExit(f"error: git {' '.join(args)} failed: {res.stderr.decode(errors='replace').strip()}")
    return res.stdout


def export_revision(rev: str, dest: Path) -> str:
    """Write ``src/`` of revision ``rev`` into ``dest`` (``git archive``); return the full commit id."""
    commit = git("rev-parse", "--verify", f"{rev}^{{commit}}").decode().strip()
    archive = git("archive", "--format=tar", commit, "src")
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=_BytesReader(archive), mode="r|") as tar:
        tar.extractall(dest, filter="data")
    return commit


class _BytesReader:
    """A minimal file object over bytes for :func:`tarfile.open` in stream mode."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self._data) if n < 0 else min(len(self._data), self._pos + n)
        chunk = bytes(self._data[self._pos : end])
        self._pos = end
        return chunk


def snapshot_working_tree(dest: Path) -> str:
    """Copy the working tree's ``src/`` into ``dest`` (a consistent snapshot while others edit); describe it."""
    shutil.copytree(REPO / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    head = git("rev-parse", "--short", "HEAD").decode().strip()
    changed = [ln for ln in git("status", "--porcelain", "--", "src").decode().splitlines() if ln.strip()]
    return f"working tree (HEAD {head}, {len(changed)} changed path(s) under src/)"


_DRIVER = r"""
import json, os, sys, time, traceback
spec = json.load(open(sys.argv[1]))
import visreps
tree = os.path.realpath(spec["tree"])
if not os.path.realpath(visreps.__file__).startswith(tree + os.sep):
    sys.exit("visreps imported from %s, not from %s" % (visreps.__file__, tree))
from visreps.cli import main
results = []
for cmd in spec["commands"]:
    out = open(cmd["stdout"], "wb"); err = open(cmd["stderr"], "wb")
    sys.stdout.flush(); sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    os.dup2(out.fileno(), 1); os.dup2(err.fileno(), 2)
    t0 = time.perf_counter(); rc = 0
    try:
        sys.argv = ["-c", *cmd["args"]]
        main()
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc(); rc = 1
    finally:
        sys.stdout.flush(); sys.stderr.flush()
        os.dup2(saved[0], 1); os.dup2(saved[1], 2); os.close(saved[0]); os.close(saved[1])
        out.close(); err.close()
    results.append({"name": cmd["name"], "rc": rc, "seconds": time.perf_counter() - t0})
json.dump(results, open(spec["results"], "w"))
"""

_CLI = "from visreps.cli import main; main()"


@dataclass
class Side:
    """One of the two runs: its source tree, its run folder and the results of its commands."""

    label: str
    tree: Path
    run_dir: Path
    description: str = ""
    results: dict[str, tuple[int, float]] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """Environment of the side's processes: its ``src`` first on the path, offline, deterministic."""
        env = dict(os.environ)
        env.update(
            PYTHONPATH=str(self.tree / "src"),
            VISREPS_OFFLINE="1",
            CUDA_VISIBLE_DEVICES="",
            PYTHONHASHSEED="0",
            MPLBACKEND="Agg",
            SOURCE_DATE_EPOCH="0",
            TQDM_DISABLE="1",
        )
        return env

    def prepare(self) -> None:
        """Create the run folder with its inputs (identical for both sides)."""
        for sub in ("out", "inputs", "logs"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        (self.run_dir / "inputs" / "texts.txt").write_text(TEXTS)
        (self.run_dir / "inputs" / "order.txt").write_text(ORDER)

    def log(self, i: int, cmd: Command, stream: str) -> Path:
        """Path of the captured stdout/stderr of the ``i``-th command."""
        return self.run_dir / "logs" / f"{i:02d}_{cmd.name}.{stream}"

    def start(self, cmds: list[Command]) -> subprocess.Popen[bytes]:
        """Start all commands in one interpreter (fast: torch is imported once); see :meth:`finish`."""
        spec = {
            "tree": str(self.tree / "src"),
            "results": str(self.run_dir / "logs" / "results.json"),
            "commands": [
                {
                    "name": c.name,
                    "args": list(c.args),
                    "stdout": str(self.log(i, c, "stdout")),
                    "stderr": str(self.log(i, c, "stderr")),
                }
                for i, c in enumerate(cmds)
            ],
        }
        spec_file = self.run_dir / "logs" / "spec.json"
        spec_file.write_text(json.dumps(spec, indent=1))
        return subprocess.Popen(
            [sys.executable, "-c", _DRIVER, str(spec_file)],
            cwd=self.run_dir,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def finish(self, proc: subprocess.Popen[bytes]) -> None:
        """Wait for :meth:`start`'s process and read the results of its commands."""
        output, _ = proc.communicate()
        results_file = self.run_dir / "logs" / "results.json"
        if proc.returncode != 0 or not results_file.exists():
            raise SystemExit(
                f"error: the {self.label} run failed (exit {proc.returncode}):\n"
                f"{output.decode(errors='replace')[-3000:]}"
            )
        for r in json.loads(results_file.read_text()):
            self.results[r["name"]] = (r["rc"], r["seconds"])

    def run_isolated(self, cmds: list[Command]) -> None:
        """Run every command in its own ``python -c "from visreps.cli import main; main()" ARGS`` process."""
        probe = subprocess.run(
            [sys.executable, "-c", "import visreps; print(visreps.__file__)"],
            cwd=self.run_dir,
            env=self.env(),
            capture_output=True,
            text=True,
            check=False,
        )
        where = os.path.realpath(probe.stdout.strip())
        if not where.startswith(os.path.realpath(self.tree / "src") + os.sep):
            raise SystemExit(f"error: the {self.label} run imports visreps from {where!r}: {probe.stderr[-2000:]}")
        for i, cmd in enumerate(cmds):
            t0 = time.perf_counter()
            with open(self.log(i, cmd, "stdout"), "wb") as out, open(self.log(i, cmd, "stderr"), "wb") as err:
                rc = subprocess.run(
                    [sys.executable, "-c", _CLI, *cmd.args],
                    cwd=self.run_dir,
                    env=self.env(),
                    stdout=out,
                    stderr=err,
                    check=False,
                ).returncode
            self.results[cmd.name] = (rc, time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------------
# Comparison


@dataclass
class Verdict:
    """Result of comparing one file: ``how`` it was compared, equal or not, and the first difference."""

    path: str
    how: str
    identical: bool
    detail: str = ""
    masked: bool = False  # bytes equal only after masking volatile fields (checksums then masked too)


def _short(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def first_array_difference(a: np.ndarray, b: np.ndarray) -> str | None:
    """None if ``a`` and ``b`` are equal bit for bit, else a description of their first difference."""
    if a.dtype != b.dtype:
        return f"dtype {a.dtype} vs {b.dtype}"
    if a.shape != b.shape:
        return f"shape {a.shape} vs {b.shape}"
    if a.dtype.hasobject:
        same = [x == y for x, y in zip(a.ravel().tolist(), b.ravel().tolist())]
        if all(same):
            return None
        k = same.index(False)
        return f"element {np.unravel_index(k, a.shape)}: {_short(a.ravel()[k])} vs {_short(b.ravel()[k])}"
    ab = np.ascontiguousarray(a).view(np.uint8).reshape(a.size, -1) if a.size else a
    bb = np.ascontiguousarray(b).view(np.uint8).reshape(b.size, -1) if b.size else b
    if a.size == 0 or np.array_equal(ab, bb):
        return None
    rows = np.flatnonzero((ab != bb).any(axis=1))
    k = int(rows[0])
    idx = tuple(int(i) for i in np.unravel_index(k, a.shape))
    extra = ""
    if np.issubdtype(a.dtype, np.number):
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        extra = f"; {rows.size} of {a.size} elements differ, max |diff| {np.nanmax(diff):.3g}"
    return f"element {idx}: {str(a.ravel()[k])} vs {str(b.ravel()[k])}{extra}"


def value_differences(a: Any, b: Any, where: str = "") -> Iterator[str]:
    """The differences of two nested JSON-like / array / tensor values, each with its path (``.key[i]``)."""
    here = where or "<root>"
    if hasattr(a, "numpy") and hasattr(b, "numpy"):  # torch tensors
        a, b = a.detach().cpu().numpy(), b.detach().cpu().numpy()
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            yield f"{here}: {type(a).__name__} vs {type(b).__name__}"
        elif (d := first_array_difference(a, b)) is not None:
            yield f"{here}: {d}"
    elif isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                yield f"{where}.{key}: {'only in the baseline' if key in a else 'only in the current run'}"
            else:
                yield from value_differences(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b) and all(isinstance(x, str) for x in [*a, *b]):
            removed, added = [x for x in a if x not in b], [x for x in b if x not in a]
            yield f"{here}: " + "; ".join(
                filter(
                    None,
                    [
                        removed and f"only in the baseline {_short(removed)}",
                        added and f"only in the current run {_short(added)}",
                    ],
                )
            )
            return
        for i, (x, y) in enumerate(zip(a, b)):
            yield from value_differences(x, y, f"{where}[{i}]")
        if len(a) != len(b):
            yield f"{here}: length {len(a)} vs {len(b)}"
    elif type(a) is not type(b) or a != b:
        if not (isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b)):
            yield f"{here}: {_short(a)} vs {_short(b)}"


def first_value_difference(a: Any, b: Any, where: str = "", show: int = 1) -> str | None:
    """None if two values are equal, else their first ``show`` differences (and how many there are)."""
    diffs = list(value_differences(a, b, where))
    if not diffs:
        return None
    more = f" (+{len(diffs) - show} more)" if len(diffs) > show else ""
    return " | ".join(diffs[:show]) + more


def first_line_difference(a: bytes, b: bytes) -> str:
    """The first line (1-based) and field (split at commas and blanks) where two texts differ, both versions."""
    la, lb = a.splitlines(), b.splitlines()
    for i, (x, y) in enumerate(zip(la, lb), 1):
        if x != y:
            fx, fy = re.split(rb"[,\s]", x), re.split(rb"[,\s]", y)
            k = next((j for j, (p, q) in enumerate(zip(fx, fy)) if p != q), min(len(fx), len(fy)))
            if k < min(len(fx), len(fy)):
                return (
                    f"line {i} field {k + 1}: {_short(fx[k].decode(errors='replace'))} vs "
                    f"{_short(fy[k].decode(errors='replace'))}"
                )
            return f"line {i}: {len(fx)} vs {len(fy)} fields"
    if len(la) != len(lb):
        return f"{len(la)} vs {len(lb)} lines"
    return f"{len(a)} vs {len(b)} bytes (line endings or final newline)"


_MAT_TIME = re.compile(rb"Created on: [^\x00]{10,40}?\d{4}")


def compare_mat(a: Path, b: Path, ba: bytes, bb: bytes) -> Verdict:
    """Bytes with the header's creation time masked; else the variables."""
    if (
        _MAT_TIME.sub(b"Created on: <time>", ba[:128]) + ba[128:]
        == _MAT_TIME.sub(b"Created on: <time>", bb[:128]) + bb[128:]
    ):
        return Verdict(str(a), "bytes, header time masked", True, masked=True)
    from scipy.io import loadmat

    va = {k: v for k, v in loadmat(a).items() if k != "__header__"}
    vb = {k: v for k, v in loadmat(b).items() if k != "__header__"}
    d = first_value_difference(va, vb)
    return Verdict(str(a), "mat variables", False, d or "same variables, different bytes")


def _h5_tree(path: Path) -> dict[str, Any]:
    import h5py

    tree: dict[str, Any] = {}
    with h5py.File(path, "r") as h5:

        def visit(name: str, obj: Any) -> None:
            entry: dict[str, Any] = {"attrs": {k: obj.attrs[k] for k in sorted(obj.attrs)}}
            if isinstance(obj, h5py.Dataset):
                entry.update(data=obj[()], chunks=obj.chunks, compression=obj.compression)
            tree[name] = entry

        visit("/", h5)
        h5.visititems(visit)
    return tree


def compare_h5(a: Path, b: Path, ba: bytes, bb: bytes) -> Verdict:
    """Datasets, attributes and layout of two HDF5 files."""
    d = first_value_difference(_h5_tree(a), _h5_tree(b))
    if d:
        return Verdict(str(a), "hdf5 datasets+attrs", False, d)
    return Verdict(str(a), "hdf5 datasets+attrs", False, "same datasets and attributes, different bytes")


def compare_npy(a: Path, b: Path, ba: bytes, bb: bytes) -> Verdict:
    """Header and data of two ``.npy`` files."""
    d = first_value_difference(np.load(a, allow_pickle=False), np.load(b, allow_pickle=False))
    return Verdict(str(a), "npy array", False, d or "same array, different header bytes")


def compare_pt(a: Path, b: Path, ba: bytes, bb: bytes) -> Verdict:
    """Tensors of two ``torch.save`` files (loaded with ``weights_only=True``)."""
    import torch

    d = first_value_difference(torch.load(a, weights_only=True), torch.load(b, weights_only=True))
    return Verdict(str(a), "pt tensors", False, d or "same tensors, different bytes")


def compare_image(a: Path, b: Path, ba: bytes, bb: bytes) -> Verdict:
    """Pixels of two raster figures."""
    from PIL import Image

    with Image.open(a) as ia, Image.open(b) as ib:
        d = first_array_difference(np.asarray(ia.convert("RGBA")), np.asarray(ib.convert("RGBA")))
    return Verdict(str(a), "image pixels", False, d or "same pixels, different bytes (PNG metadata)")


def compare_text(a: Path, b: Path, ba: bytes, bb: bytes) -> Verdict:
    """Lines of two text files (CSV tables, txt arrays, manifests, logs)."""
    return Verdict(str(a), "text lines", False, first_line_difference(ba, bb))


def compare_json(a: Path, b: Path, ba: bytes, bb: bytes) -> Verdict:
    """Values of two JSON files (predictions.json)."""
    try:
        d = first_value_difference(json.loads(ba), json.loads(bb))
    except ValueError as e:
        d = f"not JSON: {e}"
    return Verdict(str(a), "json values", False, d or "same values, different formatting")


def _drop(doc: dict[str, Any], dotted: str) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        doc = doc.get(p) if isinstance(doc, dict) else None  # type: ignore[assignment]
        if doc is None:
            return
    if isinstance(doc, dict):
        doc.pop(last, None)


def _normalise_paths(value: Any, roots: list[str]) -> Any:
    if isinstance(value, str):
        for root in roots:
            value = value.replace(root, "<RUN>")
        return value
    if isinstance(value, dict):
        return {k: _normalise_paths(v, roots) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise_paths(v, roots) for v in value]
    return value


def normalise_metadata(raw: bytes, run_dir: Path, masked_files: set[str]) -> Any:
    """metadata.json without volatile keys, with the run folder as ``<RUN>`` and masked files' hashes removed.

    ``masked_files`` are the files of this folder (names relative to it) whose bytes are equal only after
    masking a volatile field (a .mat header time): their recorded sha256 necessarily differs.
    """
    doc = json.loads(raw)
    for key in VOLATILE_METADATA:
        _drop(doc, key)
    for name in masked_files:
        entry = doc.get("checksums", {}).get(name)
        if isinstance(entry, dict) and "sha256" in entry:
            entry["sha256"] = "<masked>"
    roots = sorted({str(run_dir), os.path.realpath(run_dir)}, key=len, reverse=True)
    return _normalise_paths(doc, roots)


COMPARERS: dict[str, Callable[[Path, Path, bytes, bytes], Verdict]] = {
    ".npy": compare_npy,
    ".h5": compare_h5,
    ".hdf5": compare_h5,
    ".mat": compare_mat,
    ".pt": compare_pt,
    ".png": compare_image,
    ".jpg": compare_image,
    ".csv": compare_text,
    ".txt": compare_text,
    ".json": compare_json,
    ".svg": compare_text,
    ".stdout": compare_text,
}


def compare_file(rel: str, a: Path, b: Path, base_dir: Path, cur_dir: Path, masked: set[str]) -> Verdict:
    """Compare the file ``rel`` of the two runs (``a`` baseline, ``b`` current)."""
    ba, bb = a.read_bytes(), b.read_bytes()
    if Path(rel).name == "metadata.json":
        folder = str(Path(rel).parent)
        in_folder = {Path(m).name for m in masked if str(Path(m).parent) == folder}
        try:
            na = normalise_metadata(ba, base_dir, in_folder)
            nb = normalise_metadata(bb, cur_dir, in_folder)
        except ValueError as e:
            return Verdict(rel, "metadata, normalised", False, f"not JSON: {e}")
        d = first_value_difference(na, nb, show=3)
        return Verdict(rel, "metadata, normalised", d is None, d or "", masked=False)
    if ba == bb:
        return Verdict(rel, "bytes", True)
    comparer = COMPARERS.get(Path(rel).suffix.lower())
    if comparer is None:
        return Verdict(
            rel,
            "bytes",
            False,
            f"{len(ba)} vs {len(bb)} bytes, first difference at byte "
            f"{next((i for i, (x, y) in enumerate(zip(ba, bb)) if x != y), min(len(ba), len(bb)))}",
        )
    try:
        verdict = comparer(a, b, ba, bb)
    except Exception as e:  # noqa: BLE001 - an unreadable file is a difference, not a crash of the harness
        verdict = Verdict(rel, "read", False, f"cannot read: {type(e).__name__}: {e}")
    verdict.path = rel
    return verdict


def files_of(run_dir: Path, cmds: list[Command]) -> set[str]:
    """Every output file of a run (relative paths), plus the stdout of the analysis commands."""
    found = {str(p.relative_to(run_dir)) for p in (run_dir / "out").rglob("*") if p.is_file()}
    for i, cmd in enumerate(cmds):
        if cmd.args[0] in STDOUT_COMPARED:
            found.add(f"logs/{i:02d}_{cmd.name}.stdout")
    return found


def compare_runs(base: Side, cur: Side, cmds: list[Command]) -> list[Verdict]:
    """Compare every file of both runs; metadata.json files last (they need the masking of the others)."""
    fa, fb = files_of(base.run_dir, cmds), files_of(cur.run_dir, cmds)
    order = sorted(fa | fb, key=lambda r: (Path(r).name == "metadata.json", r))
    verdicts: list[Verdict] = []
    masked: set[str] = set()
    for rel in order:
        a, b = base.run_dir / rel, cur.run_dir / rel
        if not (a.exists() and b.exists()):
            where = "baseline" if a.exists() else "current"
            verdicts.append(Verdict(rel, "presence", False, f"only in the {where} run"))
            continue
        v = compare_file(rel, a, b, base.run_dir, cur.run_dir, masked)
        if v.masked and v.identical:
            masked.add(rel)
        verdicts.append(v)
    return verdicts


# --------------------------------------------------------------------------------------------------
# Report


def table(rows: list[list[str]], header: list[str]) -> Iterator[str]:
    """Lines of a plain fixed-width table (the last column is not padded)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    for r in [header, ["-" * w for w in widths] + ["-" * len(header[-1])], *rows]:
        yield "  ".join(str(c).ljust(w) for c, w in zip(r, widths)) + "  " + str(r[-1])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--baseline",
        default=DEFAULT_BASELINE,
        metavar="REV",
        help=f"git revision whose src/ is the reference (default: {DEFAULT_BASELINE})",
    )
    p.add_argument(
        "--current",
        default=None,
        metavar="REV",
        help="compare with this revision instead of the working tree (e.g. the baseline itself)",
    )
    p.add_argument(
        "--keep",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep the trees and both runs in DIR (must not exist or be empty); default: a temporary folder",
    )
    p.add_argument(
        "--isolated",
        action="store_true",
        help="one process per command, exactly `python -c 'from visreps.cli import main; main()' ARGS` "
        "(slower: torch is imported for every command); default: one process per side",
    )
    p.add_argument("--sequential", action="store_true", help="run the two sides one after the other, not at once")
    p.add_argument(
        "--only",
        default=None,
        metavar="NAMES",
        help="comma-separated command names to run (for debugging; later commands may need earlier ones)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run both sides, compare, print the tables; 0 if everything is identical, 1 otherwise."""
    args = parse_args(argv)
    t_start = time.perf_counter()
    cmds = commands(IMAGES)
    if args.only:
        wanted = set(args.only.split(","))
        cmds = [c for c in cmds if c.name in wanted]
    if args.keep is not None:
        if args.keep.exists() and any(args.keep.iterdir()):
            raise SystemExit(f"error: --keep {args.keep} is not empty")
        args.keep.mkdir(parents=True, exist_ok=True)
        work = args.keep.resolve()
    else:
        work = Path(tempfile.mkdtemp(prefix="visreps-bitid-"))
    try:
        base = Side("baseline", work / "trees" / "baseline", work / "runs" / "baseline")
        base.description = f"{args.baseline} = {export_revision(args.baseline, base.tree)[:12]}"
        cur = Side("current", work / "trees" / "current", work / "runs" / "current")
        if args.current is not None:
            cur.description = f"{args.current} = {export_revision(args.current, cur.tree)[:12]}"
        else:
            cur.description = snapshot_working_tree(cur.tree)
        print(
            f"baseline: {base.description}\ncurrent:  {cur.description}\n"
            f"python:   {sys.executable}\nimages:   {IMAGES}\nwork dir: {work}\n"
            f"mode:     {'one process per command' if args.isolated else 'one process per side'}, "
            f"{'sequential' if args.sequential else 'both sides at once'}; {len(cmds)} commands\n",
            flush=True,
        )
        for side in (base, cur):
            side.prepare()
        if args.isolated and args.sequential:
            base.run_isolated(cmds)
            cur.run_isolated(cmds)
        elif args.isolated:
            import threading

            threads = [threading.Thread(target=s.run_isolated, args=(cmds,)) for s in (base, cur)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        elif args.sequential:
            base.finish(base.start(cmds))
            cur.finish(cur.start(cmds))
        else:
            procs = [(s, s.start(cmds)) for s in (base, cur)]
            for s, proc in procs:
                s.finish(proc)
        t_runs = time.perf_counter() - t_start

        failed = False
        rows = []
        for i, cmd in enumerate(cmds):
            ra, rb = base.results.get(cmd.name, (None, 0.0)), cur.results.get(cmd.name, (None, 0.0))
            ok = ra[0] == 0 and rb[0] == 0
            failed |= not ok
            note = (
                ""
                if ok
                else "FAILED: "
                + "; ".join(
                    f"{s.label} exit {r[0]}: {_last_line(s.log(i, cmd, 'stderr'))}"
                    for s, r in ((base, ra), (cur, rb))
                    if r[0] != 0
                )
            )
            rows.append(
                [
                    f"{i:02d}",
                    cmd.name,
                    f"{ra[0]} / {ra[1]:.1f}s",
                    f"{rb[0]} / {rb[1]:.1f}s",
                    note or "visreps " + " ".join(_short_arg(a) for a in cmd.args),
                ]
            )
        print("Commands (exit code / seconds):")
        print("\n".join(table(rows, ["#", "command", "baseline", "current", "arguments"])) + "\n")

        verdicts = compare_runs(base, cur, cmds)
        rows = [[v.path, v.how, "IDENTICAL" if v.identical else "DIFFERENT", v.detail] for v in verdicts]
        print("Files:")
        print("\n".join(table(rows, ["file", "compared as", "result", "first difference"])) + "\n")
        n_diff = sum(not v.identical for v in verdicts)
        n_ok = sum(1 for c in cmds if base.results.get(c.name, (1,))[0] == 0 == cur.results.get(c.name, (1,))[0])
        print(
            f"Summary: {len(verdicts)} files compared, {len(verdicts) - n_diff} IDENTICAL, {n_diff} DIFFERENT; "
            f"{n_ok}/{len(cmds)} commands succeeded on both sides; "
            f"ignored metadata keys: {', '.join(VOLATILE_METADATA)}; "
            f"runs {t_runs:.0f}s, total {time.perf_counter() - t_start:.0f}s"
        )
        identical = not failed and n_diff == 0 and bool(verdicts)
        print("RESULT: " + ("outputs are bit-identical" if identical else "outputs DIFFER (or a command failed)"))
        if not identical and args.keep is None:
            print("(rerun with --keep DIR to inspect both runs, their logs and the source trees)")
        return 0 if identical else 1
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def _last_line(path: Path) -> str:
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()] if path.exists() else []
    return _short(lines[-1], 100)[1:-1] if lines else "(no output)"


def _short_arg(arg: str) -> str:
    return "IMAGES" if arg == str(IMAGES) else arg


if __name__ == "__main__":
    sys.exit(main())
