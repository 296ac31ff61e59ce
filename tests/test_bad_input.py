"""The bad-input corpus (issue 10): every bad case runs through the real CLI and is checked against one table.

``SPEC`` below is the specification: for each case, what every CLI call of it must do. The
inputs are generated at test time by :mod:`badinput.corpus` (nothing binary is committed). Every
call is checked for

* the exit code (2: refused with an error, 0: must succeed, 130: interrupted);
* no ``Traceback`` on stderr, and an error is exactly one line that names the bad thing and the
  way out (the ``words`` of the table);
* no file of the user's touched: every file of the case's folders (and of the shared image
  folder) that existed before the call is byte-identical afterwards, unless visreps wrote it
  itself, and new files appear only under the output folder;
* for a success, the rows of ``manifest.csv`` and of every array are the expected number.

Cases that need a real process (signals, a small file system, stderr encoding, code that a
checkpoint may run, a walk that may never end) run as subprocesses of the installed ``visreps``
script, in a thread pool started once per session, so they overlap each other and the rest; the
other cases run in this process through click's ``CliRunner`` (an uncaught exception there
counts as a traceback).

The cases of issue 19 cover the analysis commands (``compare --reference``, ``encode``, ``rsa``,
``cka``, ``align``) on folders that :func:`badinput.corpus.features_folder` writes with a tiny
seeded network; their ``about`` starts with "19.N", N being the finding of issue 19.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from badinput import corpus

pytestmark = pytest.mark.slow  # subprocesses / a heavy backend: not in the fast subset

SUBPROCESS = "subprocess"
IN_PROCESS = "in-process"
MODEL = "torchvision:alexnet"
N_GOOD = len(corpus.GOOD_NAMES)
N_CTRL_C = 48  # images of the Ctrl-C case, 12 batches of 4
N_INTERRUPTS = 3
TIMEOUT = 180  # seconds per CLI call before it counts as hanging
WORKERS = max(1, min(3, os.cpu_count() or 2))
SKIP = "--skip-bad-images"
SIZE = r"\d+(\.\d+)?\s*(bytes|[KMGT]i?B)"  # a size in a message: "6.2 MB", "6193152 bytes"
FINAL_NAMES = ("manifest.csv", "metadata.json")


@dataclass(frozen=True)
class Expect:
    """What one CLI call must do.

    Attributes:
        code: exit code: 2 refused with an error, 0 success, 130 interrupted.
        words: all in the one-line message of a failure: the bad thing and the way out
            (``{out}`` stands for the call's output folder).
        pattern: a regular expression the message must match (a count, a size).
        absent: never in the message.
        rows: for a success, the rows of ``manifest.csv``; every array must have as many.
    """

    code: int
    words: tuple[str, ...] = ()
    pattern: str | None = None
    absent: tuple[str, ...] = ()
    rows: int | None = None


@dataclass(frozen=True)
class Case:
    """One bad input: what it is, what each labelled CLI call must do, and how the calls are run.

    ``expect`` maps a call's label to the acceptable outcomes, told apart by exit code (a case
    that may either succeed or refuse cleanly lists both).
    """

    about: str
    expect: dict[str, tuple[Expect, ...]]
    via: str = IN_PROCESS


def _ok(rows: int = N_GOOD) -> tuple[Expect, ...]:
    return (Expect(0, rows=rows),)


def _error(*words: str, pattern: str | None = None, absent: tuple[str, ...] = ()) -> tuple[Expect, ...]:
    return (Expect(2, words=words, pattern=pattern, absent=absent),)


def _damaged(name: str) -> dict[str, tuple[Expect, ...]]:
    return {"prep": _ok(), "verify": _error(name), "rsa": _error(name)}


# The specification. The numbers are those of issue 10's list; "item N" is the bug it covers.
SPEC: dict[str, Case] = {
    "corrupt_image": Case(
        "1. random bytes named x.jpg among good images: stop, name x.jpg and --skip-bad-images",
        {"extract": _error("x.jpg", SKIP)},
        via=SUBPROCESS,
    ),
    "corrupt_image_skipped": Case(
        "2. the same with --skip-bad-images: the good images only; metadata.json lists x.jpg as skipped",
        {"extract": _ok()},
    ),
    "all_images_bad_skipped": Case(
        "3 (item 13). every image bad, with --skip-bad-images: stop, name the files and their count; "
        "metadata.partial.json (status failed) lists them all as skipped",
        {"extract": _error("bad1.jpg", pattern=r"\b3\b")},
    ),
    "zero_byte_image": Case(
        "4. a zero-byte image: stop, name it and --skip-bad-images", {"extract": _error("zero.png", SKIP)}
    ),
    "symlink_loop": Case(
        "5 (item 2). a link loop (ln -s .. loop) in a folder of 2 images: the 2 images, once each",
        {"extract": _ok(2)},
        via=SUBPROCESS,
    ),
    "non_utf8_file_name": Case(
        "6 (item 10). an image named b'caf\\xe9.png' (not UTF-8): extracted and round-tripped as 'caf\\udce9.png', "
        "or refused in one line naming it",
        {"extract": (Expect(0, rows=3), Expect(2, words=("caf",)))},
        via=SUBPROCESS,
    ),
    "latin1_order_file": Case(
        "7 (item 10). an order file in Latin-1 naming café.png: the right images, "
        "or refused in one line naming the order file and the line",
        {"extract": (Expect(0, rows=2), Expect(2, words=("order.txt", "line 1")))},
        via=SUBPROCESS,
    ),
    "order_names_missing_image": Case(
        "8. an order file naming a missing image: stop, name the file, the line and the image",
        {"extract": _error("order.txt", "line 2", "missing.png")},
    ),
    "user_file_named_like_layer": Case(
        "9 (item 5). --out holds the user's own features.0.npy: refuse, name it, leave it alone",
        {"extract": _error("features.0.npy", "--out")},
    ),
    "user_file_named_like_layer_overwrite": Case(
        "9 (item 5). the same with --overwrite: visreps did not write it, so it does not replace it",
        {"extract": _error("features.0.npy", "--out")},
    ),
    "overwrite_keeps_user_files": Case(
        "10 (item 6). --overwrite over an earlier run to which the user added predictions.csv and draft.partial: "
        "new results, the user's two files untouched",
        {"prep": _ok(3), "extract": _ok()},
    ),
    "out_unwritable": Case(
        "11 (item 9). --out where no folder can be made (/proc/x/out): stop, name the folder",
        {"extract": _error("/proc/x", "--out")},
    ),
    "weights_random_bytes": Case(
        "12 (item 11). --weights holding random bytes: one line naming the file, no torch internals",
        {"extract": _error("garbage.pth", absent=("weights_only",))},
    ),
    "weights_pickle_payload": Case(
        "13 (item 7). --weights with a pickle that would run code: refuse without running it, point to --allow-pickle",
        {"extract": _error("evil.pt", "--allow-pickle")},
        via=SUBPROCESS,
    ),
    "refused_run_leaves_nothing": Case(
        "14 (item 12). a refused run (--format txt --pool none on a conv layer) leaves nothing behind, "
        "so the corrected command needs no --overwrite",
        {"refused": _error("txt", "--pool"), "corrected": _ok()},
    ),
    "damaged_txt": Case("15 (item 4). a txt layer one line short: rsa and verify name it", _damaged("features.0.txt")),
    "damaged_npy": Case(
        "15 (item 4). an npy layer 100 bytes short: rsa and verify name it", _damaged("features.0.npy")
    ),
    "damaged_hdf5": Case("15 (item 4). features.h5 cut in half: rsa and verify name it", _damaged("features.h5")),
    "damaged_mat": Case("15 (item 4). a mat layer 100 bytes short: rsa and verify name it", _damaged("features.0.mat")),
    "damaged_metadata": Case(
        "15 (item 4). metadata.json cut in half: rsa and verify name it", _damaged("metadata.json")
    ),
    "verify_intact": Case("15 (item 4). verify accepts an intact folder", {"prep": _ok(), "verify": (Expect(0),)}),
    "disk_full_tmpfs": Case(
        "16 (item 8). a 2 MB file system for a 4.6 MB layer: stop, name the folder and the space needed; "
        "nothing under a final name",
        {"extract": _error("{out}", pattern=SIZE)},
        via=SUBPROCESS,
    ),
    "disk_full_enospc": Case(
        "16 (item 8). every write into --out fails with ENOSPC (in-process): stop, name the folder; "
        "nothing under a final name",
        {"extract": _error("{out}")},
    ),
    "ctrl_c_resume": Case(
        f"17 (item 0). Ctrl-C {N_INTERRUPTS} times at random moments, --resume each time: "
        "the same arrays as an uninterrupted run",
        {
            "reference": _ok(N_CTRL_C),
            "interrupted": (
                Expect(130, words=("--resume",), pattern=rf"\b\d+ of {N_CTRL_C}\b"),
                Expect(0, rows=N_CTRL_C),
            ),
            "resume": _ok(N_CTRL_C),
        },
        via=SUBPROCESS,
    ),
    # issue 19: the analysis commands (compare --reference, encode, rsa, cka, align)
    "encode_out_holds_responses": Case(
        "19.1. encode whose --out is the folder of its responses file, with and without --overwrite: "
        "refused naming the file, the responses untouched",
        {
            "plain": _error("targets.csv", "is an input of this run", "choose another --out"),
            "overwrite": _error("targets.csv", "is an input of this run", "choose another --out"),
        },
    ),
    "compare_out_png": Case(
        "19.2. compare --out fit.png (the default figure has the same name): refused, nothing written",
        {"compare": _error("fit.png", "never share a path")},
    ),
    "cka_out_is_layer_file": Case(
        "19.1. cka --out onto a layer file of its own input folder, with --overwrite: refused naming it, untouched",
        {"cka": _error("fc.npy", "input")},
    ),
    "compare_plot_xyz": Case(
        "19.19. compare --out t.csv --plot fig.xyz: refused naming the format before any file is written",
        {"compare": _error("fig.xyz", ".png")},
    ),
    "compare_similarity_reference": Case(
        "19.8. a similarity matrix (1 on the diagonal) as --reference: refused with the conversion 1 − S",
        {"compare": _error("sim.npy", "similarity matrix", "1 − S")},
    ),
    "compare_reference_unknown_names": Case(
        "19.7. a reference CSV naming images that are not in the manifest: refused naming them",
        {"compare": _error("stim0.jpg", "manifest")},
    ),
    "compare_reference_v73_shuffled": Case(
        "19.4. a MATLAB v7.3 reference with an 'images' cell array in another order: matched by name "
        "(r as scipy's on the rows in manifest order)",
        {"compare": (Expect(0),)},
    ),
    "encode_one_based_npz": Case(
        "19.5. an npz of responses with 1-based image numbers: refused with 'subtract 1'",
        {"encode": _error("one_based.npz", "subtract 1")},
    ),
    "compare_two_references": Case(
        "19.16. --reference given twice: refused, give it once",
        {"compare": _error("--reference", "given 2 times")},
    ),
    "compare_bootstrap_1": Case(
        "19.9. --bootstrap 1: refused, at least 2", {"compare": _error("--bootstrap", "at least 2")}
    ),
    "encode_latin1_groups": Case(
        "19.20. a --groups file in Latin-1: read as written, every group in one fold",
        {"encode": (Expect(0),)},
    ),
    "rsa_nan_layer": Case(
        "19.27. rsa of a finished folder whose fc.npy holds NaN: refused naming the layer file and NaN",
        {"rsa": _error("fc.npy", "NaN")},
    ),
    "cka_nan_layer": Case(
        "19.27. cka of a good folder with a folder whose fc.npy holds NaN: refused naming the layer file and NaN",
        {"cka": _error("fc.npy", "NaN")},
    ),
    "changed_manifest": Case(
        "19.13. two rows of manifest.csv swapped (the same size): rsa refuses naming manifest.csv and visreps verify",
        {"rsa": _error("manifest.csv", "has changed", "visreps verify")},
    ),
    "align_zero_std": Case(
        "19.12. align with a transform file whose std is 0: refused naming the file and the variable, nothing written",
        {"align": _error("zero.npz", "variable 'std'")},
    ),
}


# --------------------------------------------------------------------------- running the CLI


def _cli() -> list[str]:
    """The installed ``visreps`` script next to this Python, else ``python -m visreps.cli``."""
    script = Path(sys.executable).with_name("visreps")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "visreps.cli"]


ENV = {**os.environ, "VISREPS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
#: set to a file name to get every call's exit code and output appended there (to see what the CLI says)
LOG = os.environ.get("VISREPS_BADINPUT_LOG")
_LOG_LOCK = threading.Lock()


def _log(case: str, step: Step) -> None:
    if not LOG:
        return
    with _LOG_LOCK, open(LOG, "a", encoding="utf-8", errors="backslashreplace") as f:
        f.write(f"=== {case} / {step.label}: exit {step.code}\n$ visreps {' '.join(step.argv)}\n")
        f.write(f"--- stderr\n{step.stderr}\n--- stdout\n{step.stdout}\n")


def _decode(b: bytes) -> str:
    return b.decode("utf-8", errors="backslashreplace")


def _run_subprocess(argv: list[str]) -> tuple[int, str, str]:
    try:
        p = subprocess.run(_cli() + argv, check=False, capture_output=True, env=ENV, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        return -1, _decode(e.stdout or b""), f"(no answer: killed after {TIMEOUT} s)"
    return p.returncode, _decode(p.stdout), _decode(p.stderr)


def _run_in_process(argv: list[str]) -> tuple[int, str, str]:
    from click.testing import CliRunner

    from visreps.cli import main

    r = CliRunner().invoke(main, argv, catch_exceptions=True)
    stderr = r.stderr
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        stderr += "Traceback (uncaught in-process):\n" + "".join(traceback.format_exception(r.exception))
    return r.exit_code, r.stdout, stderr


def _next_image(progress: Path) -> int:
    """How far an interrupted run got (``progress.partial.json``), or -1."""
    try:
        return int(json.loads(progress.read_text())["next_image"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1


def _run_interrupted(argv: list[str], progress: Path, beyond: int, delay: float) -> tuple[int, str, str]:
    """Start the CLI, wait until it has written a batch past image ``beyond``, wait ``delay`` s more, send SIGINT."""
    proc = subprocess.Popen(_cli() + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    deadline = time.monotonic() + TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline and _next_image(progress) <= beyond:
        time.sleep(0.005)
    time.sleep(delay)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return -1, _decode(out), f"(no answer to SIGINT: killed after {TIMEOUT} s)"
    return proc.returncode, _decode(out), _decode(err)


# --------------------------------------------------------------------------- steps and their records


@dataclass
class Step:
    """One CLI call of a case and what it left behind."""

    label: str
    argv: list[str]
    code: int
    stdout: str
    stderr: str
    out: Path | None
    after: dict[str, str]
    file_problems: list[str]


@dataclass
class Ctx:
    """A case being played: its own folder, the shared images, the calls made so far and the problems found.

    Each call is checked against ``SPEC`` as soon as it returns, so that later calls (or damage done
    on purpose) cannot change what it left behind.
    """

    case: str
    root: Path
    shared: Path
    via: str
    steps: list[Step] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def roots(self) -> dict[str, Path]:
        return {"case": self.root, "shared": self.shared}

    def key(self, path: Path) -> str | None:
        """The snapshot key of ``path`` (``case/...`` or ``shared/...``), or None outside both folders."""
        for tag, root in self.roots().items():
            try:
                rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(root))
            except ValueError:
                continue
            return tag if str(rel) == "." else f"{tag}/{rel}"
        return None

    def run(
        self,
        label: str,
        argv: list[str],
        *,
        out: Path | None,
        owned: Iterable[Path] = (),
        call: Callable[[], tuple[int, str, str]] | None = None,
    ) -> Step:
        """Run one CLI call and record it, with the files it touched.

        ``owned``: files (or folders) that visreps wrote itself and may replace or remove.
        New files may appear under ``out`` only.
        """
        before = corpus.snapshot(self.roots())
        if call is None:
            code, stdout, stderr = (_run_subprocess if self.via == SUBPROCESS else _run_in_process)(argv)
        else:
            code, stdout, stderr = call()
        after = corpus.snapshot(self.roots())
        mine = [k for k in (self.key(p) for p in owned) if k]
        out_key = self.key(out) if out is not None else None
        problems = []
        for k, digest in before.items():
            if any(k == m or k.startswith(m + "/") for m in mine):
                continue
            if k not in after:
                problems.append(f"{k} was removed")
            elif after[k] != digest:
                problems.append(f"{k} was changed")
        for k in sorted(after.keys() - before.keys()):
            if out_key is None or not k.startswith(out_key + "/"):
                problems.append(f"{k} was created outside the output folder")
        step = Step(label, argv, code, stdout, stderr, out, after, problems)
        self.steps.append(step)
        _log(self.case, step)
        self.problems += check_step(step, SPEC[self.case].expect[label])  # now, before later calls change out
        return step

    def final_names_absent(self, step: Step, names: Iterable[str]) -> None:
        """After a failed or interrupted call, no file of ``names`` may exist under its final name in ``step.out``."""
        out_key = self.key(step.out)
        there = [n for n in names if f"{out_key}/{n}" in step.after]
        if there:
            self.problems.append(f"{step.label}: {', '.join(there)} under the final name after exit {step.code}")


SCENARIOS: dict[str, Callable[[Ctx], None]] = {}


def scenario(*names: str) -> Callable[[Callable[[Ctx], None]], Callable[[Ctx], None]]:
    """Register the function that builds and runs the cases ``names``."""

    def register(f: Callable[[Ctx], None]) -> Callable[[Ctx], None]:
        for n in names:
            SCENARIOS[n] = f
        return f

    return register


def _extract(
    images: Path, out: Path, *extra: str, layers: str = "features.0", pool: str | None = "avg", random_init: bool = True
) -> list[str]:
    """``visreps extract`` of a small random alexnet layer, quiet, decoding in this process."""
    argv = ["extract", MODEL, str(images), "--layers", layers, "--out", str(out), "-q", "--workers", "0"]
    if random_init:
        argv.append("--random")
    if pool is not None:
        argv += ["--pool", pool]
    return argv + list(extra)


def _paths(out: Path) -> list[str] | str:
    """The manifest paths of a finished folder, or why they cannot be read."""
    import visreps

    try:
        return list(visreps.load_features(out).paths)
    except Exception as e:  # noqa: BLE001 - reported, not raised
        return f"load_features fails: {type(e).__name__}: {e}"


def _read_json(path: Path) -> dict | str:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return f"cannot read {path.name}: {type(e).__name__}: {e}"


# --------------------------------------------------------------------------- the cases


@scenario("corrupt_image", "corrupt_image_skipped")
def _corrupt(ctx: Ctx) -> None:
    images = corpus.copy_images(ctx.shared, ctx.root / "images")
    corpus.corrupt_image(images, "x.jpg")
    out = ctx.root / "out"
    skip = ctx.case == "corrupt_image_skipped"
    step = ctx.run("extract", _extract(images, out, *([SKIP] if skip else [])), out=out)
    if skip and step.code == 0:
        paths = _paths(out)
        if paths != list(corpus.GOOD_NAMES):
            ctx.problems.append(f"manifest paths {paths}, expected the good images {list(corpus.GOOD_NAMES)}")
        meta = _read_json(out / "metadata.json")
        skipped = meta.get("images", {}).get("skipped") if isinstance(meta, dict) else meta
        if "x.jpg" not in json.dumps(skipped):
            ctx.problems.append(f"metadata.json images.skipped does not name x.jpg: {skipped}")


@scenario("all_images_bad_skipped")
def _all_bad(ctx: Ctx) -> None:
    images = ctx.root / "images"
    images.mkdir()
    corpus.corrupt_image(images, "bad1.jpg")
    corpus.zero_byte_image(images, "bad2.png")
    corpus.text_as_image(images, "bad3.jpg")
    out = ctx.root / "out"
    ctx.run("extract", _extract(images, out, SKIP), out=out)
    meta = _read_json(out / "metadata.partial.json")
    if not isinstance(meta, dict):
        ctx.problems.append(f"metadata.partial.json: {meta}")
        return
    if meta.get("status") != "failed":
        ctx.problems.append(f"metadata.partial.json status {meta.get('status')!r}, expected 'failed'")
    skipped = {s.get("path") if isinstance(s, dict) else s for s in meta.get("images", {}).get("skipped") or []}
    if skipped != {"bad1.jpg", "bad2.png", "bad3.jpg"}:
        ctx.problems.append(f"metadata.partial.json images.skipped {sorted(map(str, skipped))}, expected all 3 files")


@scenario("zero_byte_image")
def _zero_byte(ctx: Ctx) -> None:
    images = corpus.copy_images(ctx.shared, ctx.root / "images")
    corpus.zero_byte_image(images, "zero.png")
    out = ctx.root / "out"
    ctx.run("extract", _extract(images, out), out=out)


@scenario("symlink_loop")
def _symlink_loop(ctx: Ctx) -> None:
    images = ctx.root / "tree" / "images"  # the link points to tree/, which holds only images/
    corpus.good_images(images, ["a.png", "b.png"])
    corpus.symlink_loop(images)
    out = ctx.root / "out"
    step = ctx.run("extract", _extract(images, out), out=out)
    if step.code == 0 and _paths(out) != ["a.png", "b.png"]:
        ctx.problems.append(f"manifest paths {_paths(out)}, expected ['a.png', 'b.png']")


@scenario("non_utf8_file_name")
def _non_utf8(ctx: Ctx) -> None:
    images = ctx.root / "images"
    corpus.good_images(images, ["a.png", "b.png"])
    name = corpus.non_utf8_image(images)
    out = ctx.root / "out"
    step = ctx.run("extract", _extract(images, out), out=out)
    if step.code == 0:
        paths = _paths(out)
        if not isinstance(paths, list) or name not in paths:
            ctx.problems.append(f"load_features(out).paths does not round-trip {name!r}: {paths!r}")


@scenario("latin1_order_file")
def _latin1_order(ctx: Ctx) -> None:
    images = ctx.root / "images"
    corpus.good_images(images, ["café.png", "b.png"])
    order = corpus.order_file(ctx.root / "order.txt", ["café.png", "b.png"], encoding="latin-1")
    out = ctx.root / "out"
    step = ctx.run("extract", _extract(images, out, "--order", str(order)), out=out)
    if step.code == 0 and _paths(out) != ["café.png", "b.png"]:
        ctx.problems.append(f"manifest paths {_paths(out)!r}, expected ['café.png', 'b.png']")


@scenario("order_names_missing_image")
def _order_missing(ctx: Ctx) -> None:
    order = corpus.order_file(ctx.root / "order.txt", ["a.png", "missing.png"])
    out = ctx.root / "out"
    ctx.run("extract", _extract(ctx.shared, out, "--order", str(order)), out=out)


@scenario("user_file_named_like_layer", "user_file_named_like_layer_overwrite")
def _user_layer_file(ctx: Ctx) -> None:
    out = ctx.root / "out"
    out.mkdir()
    corpus.user_npy(out / "features.0.npy")
    extra = ["--overwrite"] if ctx.case.endswith("_overwrite") else []
    ctx.run("extract", _extract(ctx.shared, out, *extra), out=out)


@scenario("overwrite_keeps_user_files")
def _overwrite_user_files(ctx: Ctx) -> None:
    first = corpus.copy_images(ctx.shared, ctx.root / "first", corpus.GOOD_NAMES[:3])
    out = ctx.root / "out"
    ctx.run("prep", _extract(first, out), out=out)
    earlier = sorted(out.iterdir())
    (out / "predictions.csv").write_text("image,my_score\na.png,0.5\n", encoding="utf-8")
    (out / "draft.partial").write_text("my notes\n", encoding="utf-8")
    ctx.run("extract", _extract(ctx.shared, out, "--overwrite"), out=out, owned=earlier)


@scenario("out_unwritable")
def _out_unwritable(ctx: Ctx) -> None:
    out = Path("/proc/x/out")
    ctx.run("extract", _extract(ctx.shared, out), out=out)


@scenario("weights_random_bytes")
def _weights_random(ctx: Ctx) -> None:
    weights = corpus.random_weights(ctx.root / "garbage.pth")
    out = ctx.root / "out"
    ctx.run("extract", _extract(ctx.shared, out, "--weights", str(weights), random_init=False), out=out)


@scenario("weights_pickle_payload")
def _weights_pickle(ctx: Ctx) -> None:
    marker = ctx.root / "PWNED"
    weights = corpus.pickle_weights(ctx.root / "evil.pt", marker)
    out = ctx.root / "out"
    ctx.run("extract", _extract(ctx.shared, out, "--weights", str(weights), random_init=False), out=out)
    if marker.exists():
        ctx.problems.append("loading evil.pt ran code from its pickle (it created PWNED)")


@scenario("refused_run_leaves_nothing")
def _refused_then_corrected(ctx: Ctx) -> None:
    out = ctx.root / "out"
    step = ctx.run("refused", _extract(ctx.shared, out, "--format", "txt", pool="none"), out=out)
    left = sorted(k for k in step.after if k.startswith(f"{ctx.key(out)}/"))
    if left:
        ctx.problems.append(f"refused: the run left {', '.join(left)}")
    ctx.run("corrected", _extract(ctx.shared, out, "--format", "txt", pool="avg"), out=out)


DAMAGE: dict[str, tuple[str, str, Callable[[Path], Path]]] = {
    "damaged_txt": ("txt", "features.0.txt", corpus.drop_last_line),
    "damaged_npy": ("npy", "features.0.npy", lambda p: corpus.cut_tail(p, 100)),
    "damaged_hdf5": ("hdf5", "features.h5", corpus.cut_half),
    "damaged_mat": ("mat", "features.0.mat", lambda p: corpus.cut_tail(p, 100)),
    "damaged_metadata": ("npy", "metadata.json", corpus.cut_half),
}


@scenario(*DAMAGE, "verify_intact")
def _damaged_output(ctx: Ctx) -> None:
    fmt, name, damage = DAMAGE.get(ctx.case, ("npy", "", None))
    out = ctx.root / "out"
    prep = ctx.run("prep", _extract(ctx.shared, out, "--format", fmt), out=out)
    if prep.code != 0:
        return
    if damage is not None:
        damage(out / name)
    ctx.run("verify", ["verify", str(out)], out=out)
    if damage is not None:
        ctx.run("rsa", ["rsa", str(out), "--no-plot"], out=out)


@scenario("disk_full_tmpfs")
def _disk_full_tmpfs(ctx: Ctx) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = ctx.root / "small"
    mnt.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=2M", "tmpfs", str(mnt)]
    r = subprocess.run(mount, check=False, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a 2 MB tmpfs: {r.stderr.strip()}")
    try:
        out = mnt / "out"  # features.0 flattened: 6 × 64 × 55 × 55 float32 ≈ 4.6 MB
        step = ctx.run("extract", _extract(ctx.shared, out, pool=None), out=out)
        ctx.final_names_absent(step, ("features.0.npy", *FINAL_NAMES))
    finally:
        subprocess.run(["umount", str(mnt)], check=False, capture_output=True)


def _disk_full(real: Callable, folder: str) -> Callable:
    """``os.write``/``os.pwrite`` that fail with ENOSPC for files under ``folder`` (and only those)."""

    def write(fd: int, *args):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if target.startswith(folder + os.sep):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, *args)

    return write


@scenario("disk_full_enospc")
def _disk_full_enospc(ctx: Ctx) -> None:
    out = ctx.root / "out"
    with pytest.MonkeyPatch.context() as mp:
        for name in ("write", "pwrite"):
            mp.setattr(os, name, _disk_full(getattr(os, name), os.path.realpath(out)))
        step = ctx.run("extract", _extract(ctx.shared, out), out=out)
    ctx.final_names_absent(step, ("features.0.npy", *FINAL_NAMES))


@scenario("ctrl_c_resume")
def _ctrl_c(ctx: Ctx) -> None:
    images = ctx.root / "images"
    corpus.good_images(images, [f"img{i:02d}.png" for i in range(N_CTRL_C)], size=(64, 48))

    def argv(out: Path, *extra: str) -> list[str]:
        return _extract(images, out, "--batch-size", "4", *extra, layers="features.12,classifier.4", pool=None)

    ref = ctx.root / "reference"
    ctx.run("reference", argv(ref), out=ref)
    out = ctx.root / "out"
    progress = out / "progress.partial.json"
    rng = random.Random(10)
    done, finished = -1, False
    for k in range(N_INTERRUPTS):
        a = argv(out, *(["--resume"] if k else []))
        delay = rng.uniform(0.0, 0.25)
        step = ctx.run(
            "interrupted",
            a,
            out=out,
            owned=[out],
            call=lambda a=a, d=delay, b=done: _run_interrupted(a, progress, b, d),
        )
        if step.code == 0:  # it finished before the signal landed
            finished = True
            break
        ctx.final_names_absent(step, ("features.12.npy", "classifier.4.npy", *FINAL_NAMES))
        done = _next_image(progress)
    if not finished:
        ctx.run("resume", argv(out, "--resume"), out=out, owned=[out])
    import visreps

    try:
        a, b = visreps.load_features(ref), visreps.load_features(out)
        for layer in a:
            np.testing.assert_allclose(
                np.asarray(b[layer]),
                np.asarray(a[layer]),
                rtol=1e-6,
                atol=1e-7,
                err_msg=f"layer {layer}: resumed run differs from the uninterrupted one",
            )
        if b.paths != a.paths:
            ctx.problems.append("the resumed run's manifest differs from the uninterrupted one's")
    except Exception as e:  # noqa: BLE001 - reported with the other problems
        ctx.problems.append(f"comparing with the uninterrupted run: {type(e).__name__}: {str(e).strip()[:400]}")


# --------------------------------------------------------------------------- the analysis commands (issue 19)


def _folder_X(folder: Path, layer: str = "fc") -> np.ndarray:
    import visreps

    return np.asarray(visreps.load_features(folder)[layer], dtype=np.float64).reshape(N_GOOD, -1)


def _feats(ctx: Ctx, name: str = "feats", *, nan: bool = False) -> Path:
    return corpus.features_folder(ctx.shared, ctx.root / name, nan=nan)


def _compare(folder: Path, *extra: object) -> list[str]:
    return ["compare", f"{folder}::fc", *map(str, extra)]


def _reference(ctx: Ctx, folder: Path) -> tuple[Path, np.ndarray]:
    R = corpus.noisy_rdm(_folder_X(folder))
    np.save(ctx.root / "ref.npy", R)
    return ctx.root / "ref.npy", R


def _responses(folder: Path) -> np.ndarray:
    X = _folder_X(folder)
    rng = np.random.default_rng(1)
    return X[:, :3] @ rng.standard_normal((3, 3)) + 0.3 * rng.standard_normal((N_GOOD, 3))


def _encode(folder: Path, responses: Path, out: Path, *extra: str) -> list[str]:
    return ["encode", f"{folder}::fc", str(responses), "--folds", "3", "--out", str(out), "--no-plot", *extra]


@scenario("encode_out_holds_responses")
def _encode_out_holds_responses(ctx: Ctx) -> None:
    import pandas as pd

    folder = _feats(ctx)
    data = ctx.root / "data"
    data.mkdir()
    resp = data / "targets.csv"
    Y = _responses(folder)
    pd.DataFrame({"image": list(corpus.GOOD_NAMES), **{f"t{j}": Y[:, j] for j in range(3)}}).to_csv(resp, index=False)
    ctx.run("plain", _encode(folder, resp, data), out=data)
    ctx.run("overwrite", _encode(folder, resp, data, "--overwrite"), out=data)


@scenario("compare_out_png", "compare_plot_xyz", "compare_two_references", "compare_bootstrap_1")
def _compare_refused(ctx: Ctx) -> None:
    folder = _feats(ctx)
    ref, R = _reference(ctx, folder)
    res = ctx.root / "res"
    argv = {
        "compare_out_png": _compare(folder, "--reference", ref, "--out", res / "fit.png"),
        "compare_plot_xyz": _compare(folder, "--reference", ref, "--out", res / "t.csv", "--plot", res / "fig.xyz"),
        "compare_bootstrap_1": _compare(folder, "--reference", ref, "--bootstrap", "1", "--out", res / "t.csv"),
    }
    if ctx.case == "compare_two_references":
        np.save(ctx.root / "b.npy", corpus.noisy_rdm(_folder_X(folder), seed=4))
        argv[ctx.case] = _compare(folder, "-r", ref, "--reference", ctx.root / "b.npy", "--out", res / "t.csv")
    ctx.run("compare", argv[ctx.case], out=None)  # refused: no file anywhere, not even under res/


@scenario("cka_out_is_layer_file")
def _cka_out_is_input(ctx: Ctx) -> None:
    a, b = _feats(ctx, "a"), _feats(ctx, "b")
    ctx.run("cka", ["cka", str(a), str(b), "--out", str(a / "fc.npy"), "--overwrite"], out=None)


@scenario("compare_similarity_reference")
def _compare_similarity(ctx: Ctx) -> None:
    folder = _feats(ctx)
    np.save(ctx.root / "sim.npy", 1 - corpus.noisy_rdm(_folder_X(folder)))
    ctx.run("compare", _compare(folder, "--reference", ctx.root / "sim.npy", "--out", ctx.root / "t.csv"), out=None)


@scenario("compare_reference_unknown_names")
def _compare_unknown_names(ctx: Ctx) -> None:
    import pandas as pd

    folder = _feats(ctx)
    wrong = [f"stim{i}.jpg" for i in range(N_GOOD)]
    pd.DataFrame(corpus.noisy_rdm(_folder_X(folder)), index=wrong, columns=wrong).to_csv(ctx.root / "ref.csv")
    ctx.run("compare", _compare(folder, "--reference", ctx.root / "ref.csv", "--out", ctx.root / "t.csv"), out=None)


@scenario("compare_reference_v73_shuffled")
def _compare_v73(ctx: Ctx) -> None:
    import pandas as pd
    from scipy import stats
    from scipy.spatial.distance import pdist, squareform

    from test_trust_readers import write_mat73

    folder = _feats(ctx)
    X = _folder_X(folder)
    R = corpus.noisy_rdm(X)
    perm = [3, 0, 5, 1, 4, 2]
    names = [corpus.GOOD_NAMES[i] for i in perm]
    ref = write_mat73(ctx.root / "ref.mat", {"rdm": R[np.ix_(perm, perm)], "images": names})
    res = ctx.root / "res"
    step = ctx.run("compare", _compare(folder, "--reference", ref, "--out", res / "t.csv", "--no-plot"), out=res)
    if step.code != 0:
        return
    expect = stats.pearsonr(pdist(X, "correlation"), squareform(R, checks=False)).statistic
    by_position = stats.pearsonr(pdist(X, "correlation"), squareform(R[np.ix_(perm, perm)], checks=False)).statistic
    assert abs(by_position - expect) > 0.05, "the shuffle must change r, or this case proves nothing"
    got = float(pd.read_csv(res / "t.csv")["r"].iloc[0])
    if abs(got - expect) > 1e-6:
        ctx.problems.append(f"compare: r {got}, expected {expect} (scipy, rows matched by name)")


@scenario("encode_one_based_npz")
def _encode_one_based(ctx: Ctx) -> None:
    folder = _feats(ctx)
    perm = np.array([3, 0, 5, 1, 4, 2])
    np.savez(ctx.root / "one_based.npz", responses=_responses(folder)[perm], images=perm + 1)
    res = ctx.root / "res"
    ctx.run("encode", _encode(folder, ctx.root / "one_based.npz", res), out=None)


@scenario("encode_latin1_groups")
def _encode_latin1_groups(ctx: Ctx) -> None:
    import pandas as pd

    folder = _feats(ctx)
    np.save(ctx.root / "resp.npy", _responses(folder))
    groups = [f"gr\u00fcppe{i % 3}" for i in range(N_GOOD)]
    gfile = corpus.groups_file(ctx.root / "groups.txt", corpus.GOOD_NAMES, groups)
    res = ctx.root / "res"
    step = ctx.run("encode", _encode(folder, ctx.root / "resp.npy", res, "--groups", str(gfile)), out=res)
    if step.code != 0:
        return
    fold = pd.read_csv(res / "fold_of_image.csv")["fold"].to_numpy()
    split = [g for g in range(3) if len(set(fold[[i for i in range(N_GOOD) if i % 3 == g]])) != 1]
    if split or len(set(fold)) != 3:
        ctx.problems.append(f"encode: folds {fold.tolist()} do not keep the 3 Latin-1 groups whole")


@scenario("rsa_nan_layer", "cka_nan_layer")
def _nan_layer(ctx: Ctx) -> None:
    bad = _feats(ctx, "nan", nan=True)
    if ctx.case == "rsa_nan_layer":
        out = ctx.root / "rsa"
        step = ctx.run("rsa", ["rsa", str(bad), "--layers", "fc", "--out", str(out), "--no-plot"], out=out)
    else:
        good = _feats(ctx)
        step = ctx.run("cka", ["cka", str(good), str(bad)], out=None)
    if str(bad / "fc.npy") not in step.stderr:
        ctx.problems.append(f"{step.label}: message does not name {bad / 'fc.npy'}: {_short(step.stderr)}")


@scenario("changed_manifest")
def _changed_manifest(ctx: Ctx) -> None:
    folder = _feats(ctx)
    corpus.swap_manifest_rows(folder)
    out = ctx.root / "rsa"
    step = ctx.run("rsa", ["rsa", str(folder), "--out", str(out), "--no-plot"], out=out)
    if f"visreps verify {folder}" not in step.stderr:
        ctx.problems.append(f"rsa: message lacks 'visreps verify {folder}': {_short(step.stderr)}")


@scenario("align_zero_std")
def _align_zero_std(ctx: Ctx) -> None:
    from test_trust_models import _transform_file

    folder = _feats(ctx)
    tf = _transform_file(ctx.root / "zero.npz", std=np.asarray(0.0, dtype=np.float32))
    out = ctx.root / "aligned"
    argv = ["align", str(folder), "--model", "torchvision:resnet18", "--layers", "avgpool"]
    ctx.run("align", [*argv, "--transform-file", str(tf), "--out", str(out)], out=None)


# --------------------------------------------------------------------------- checks


def _short(text: str) -> str:
    """One line to quote: the exception of a traceback, else the text with its line breaks shown."""
    text = text.strip()
    if "Traceback" in text:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        return "Traceback … " + lines[-1].strip()[:400]
    return text.replace("\n", " ⏎ ")[:400]


def check_step(step: Step, outcomes: tuple[Expect, ...]) -> list[str]:
    """Problems of one call against its acceptable outcomes."""
    p: list[str] = []
    msg = step.stderr.rstrip("\n")
    e = next((x for x in outcomes if x.code == step.code), None)
    label = step.label
    if e is None:
        want = " or ".join(str(x.code) for x in outcomes)
        p.append(f"{label}: exit {step.code}, expected {want}; stderr: {_short(step.stderr) or '(empty)'}")
    if "Traceback" in step.stderr or "Traceback" in step.stdout:
        if e is not None:
            p.append(f"{label}: traceback: {_short(step.stderr + step.stdout)}")
    elif e is not None and e.code != 0:
        if not msg.strip() or "\n" in msg:
            p.append(f"{label}: message is {len(msg.splitlines())} lines, expected one: {_short(msg)}")
        words = [w.replace("{out}", str(step.out)) for w in e.words]
        missing = [w for w in words if w not in msg]
        if missing:
            p.append(f"{label}: message lacks {missing}: {_short(msg)}")
        if e.pattern and not re.search(e.pattern, msg):
            p.append(f"{label}: message does not match {e.pattern!r}: {_short(msg)}")
        there = [w for w in e.absent if w in msg]
        if there:
            p.append(f"{label}: message contains {there}: {_short(msg)}")
    elif e is not None and e.rows is not None:
        p += [f"{label}: {x}" for x in _row_problems(step.out, e.rows)]
    p += [f"{label}: {x}" for x in step.file_problems]
    return p


def _row_problems(out: Path, rows: int) -> list[str]:
    """The manifest must have ``rows`` rows, and every array as many."""
    import visreps

    try:
        feats = visreps.load_features(out)
    except Exception as e:  # noqa: BLE001
        return [f"cannot read the output: {type(e).__name__}: {str(e)[:300]}"]
    n = len(feats.manifest)
    p = [] if n == rows else [f"manifest has {n} rows, expected {rows}"]
    for layer in feats.layers:
        if feats[layer].shape[0] != n:
            p.append(f"layer {layer} has {feats[layer].shape[0]} rows, manifest {n}")
    return p


# --------------------------------------------------------------------------- the tests


def _play(case: str, root: Path, shared: Path) -> Ctx:
    ctx = Ctx(case, root, shared, SPEC[case].via)
    SCENARIOS[case](ctx)
    return ctx


_SHARED_DIGESTS: dict[str, str] = {}


@pytest.fixture(scope="session")
def shared_images(tmp_path_factory) -> Path:
    """The good images every case starts from (never to be changed by any run)."""
    folder = tmp_path_factory.mktemp("badinput_shared") / "images"
    corpus.good_images(folder)
    _SHARED_DIGESTS.update(corpus.snapshot({"shared": folder}))
    return folder


@pytest.fixture(scope="session")
def subprocess_cases(request, shared_images, tmp_path_factory) -> Iterator[dict[str, Future]]:
    """Start every selected subprocess case at once in a thread pool (longest first); tests wait for theirs."""
    selected = {
        item.callspec.params["case"]
        for item in request.session.items
        if item.path.name == Path(__file__).name and "case" in getattr(getattr(item, "callspec", None), "params", {})
    }
    wanted = sorted(
        (c for c in SPEC if SPEC[c].via == SUBPROCESS and c in selected), key=lambda c: c != "ctrl_c_resume"
    )
    pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="badinput")
    futures = {c: pool.submit(_play, c, tmp_path_factory.mktemp(c), shared_images) for c in wanted}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


def test_spec_and_scenarios_match() -> None:
    assert set(SPEC) == set(SCENARIOS)


@pytest.mark.parametrize("case", list(SPEC))
def test_bad_input(
    case: str, subprocess_cases: dict[str, Future], shared_images: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Play one case of SPEC (or collect its subprocess run) and check every call against the table."""
    spec = SPEC[case]
    if spec.via == SUBPROCESS:
        ctx = subprocess_cases[case].result()
    else:
        ctx = _play(case, tmp_path_factory.mktemp(case), shared_images)
    problems = ctx.problems
    assert not problems, f"{case}: {spec.about}\n  " + "\n  ".join(problems)


def test_shared_images_untouched(shared_images: Path, subprocess_cases: dict[str, Future]) -> None:
    """After every case has run, the shared image folder is exactly as it was made."""
    for f in subprocess_cases.values():
        f.exception()
    assert corpus.snapshot({"shared": shared_images}) == _SHARED_DIGESTS


def test_harness_sees_touched_files_tracebacks_and_vague_messages(tmp_path: Path) -> None:
    """The checks themselves: a call that touches files, crashes or says too little is caught (no CLI needed)."""
    root, shared = tmp_path / "case", tmp_path / "shared"
    root.mkdir()
    corpus.good_images(shared, ["a.png", "b.png"])
    (root / "mine.txt").write_text("mine", encoding="utf-8")
    ctx = Ctx("corrupt_image", root, shared, IN_PROCESS)

    def careless() -> tuple[int, str, str]:
        (root / "mine.txt").write_text("changed", encoding="utf-8")
        (shared / "a.png").unlink()
        (root / "stray.txt").write_text("", encoding="utf-8")
        (root / "out").mkdir()
        (root / "out" / "fine.npy").write_bytes(b"")
        return 1, "", 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: boom\n'

    ctx.run("extract", ["extract"], out=root / "out", call=careless)
    ctx.run("extract", ["extract"], out=root / "out", call=lambda: (2, "", "error: bad image\nsee above\n"))
    found = "\n".join(ctx.problems)
    for want in (
        "case/mine.txt was changed",
        "shared/a.png was removed",
        "case/stray.txt was created outside",
        "exit 1, expected 2",
        "ValueError: boom",
        "message is 2 lines",
        "message lacks ['x.jpg', '--skip-bad-images']",
    ):
        assert want in found, want
    assert "fine.npy" not in found
