"""Run every fenced ```bash and ```python block of README.md and docs/**/*.md, in order, as a reader would.

Each Markdown file gets a fresh temporary working directory holding ``examples/`` (a link to the
repository's), and one Python process that runs the file's blocks top to bottom: ``python`` blocks
share one namespace (a later block may use a name an earlier one defined), ``bash`` blocks run with
``bash -euo pipefail`` and the virtual environment's ``bin`` first on ``PATH`` (so ``visreps`` and
``python`` are this checkout's; with ``pipefail``, so write no ``visreps ... | head``: a command cut off by
``head`` fails). Nothing is allowed to touch the network (``VISREPS_OFFLINE=1``,
``HF_HUB_OFFLINE=1``).

A block is not run when the last non-blank line before it is an HTML comment
``<!-- no-run: REASON -->`` (the reason is required: the page says it next to the block), or the
README's ``<!-- quickstart ... -->`` marker (``.ci/run`` runs that block itself, in a new venv).
Blocks in other languages (output listings, ``text``, ``yaml`` ...) are never run.

Relative links of README.md must name files that exist (on GitHub they are the way into the site;
``mkdocs build --strict`` checks the site's own links). The first failure stops that file and is
reported as ``FILE:LINE`` (the Markdown line of the failing command or Python statement), with the
block's output. Exit status: 0 when every block of every file ran, 1 otherwise.

Usage::

    .venv/bin/python .ci/run_docs_code.py                 # README.md and docs/**/*.md
    .venv/bin/python .ci/run_docs_code.py docs/rsa.md     # some files
    .venv/bin/python .ci/run_docs_code.py --list          # the blocks and whether they run
    .venv/bin/python .ci/run_docs_code.py --examples DIR  # another examples/ folder
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_LANGS = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python", "py": "python"}
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\s]*)")
NO_RUN = re.compile(r"^<!--\s*no-run\s*:\s*(?P<reason>.*?)\s*-->\s*$")
BLOCK_TIMEOUT = 600


@dataclass
class Block:
    file: str
    line: int  # 1-based Markdown line of the first line of code
    lang: str  # "bash", "python", or the fence's own info string for blocks that are not run
    code: str
    skip: str  # "" when the block runs, else why not


def parse_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, with their first code line and whether they run."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rel = os.path.relpath(path, ROOT)
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = len(m["indent"]), m["fence"], m["info"].strip("{}.").lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not re.match(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", lines[j]):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j].lstrip())
            j += 1
        before = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        lang = RUN_LANGS.get(info, "")
        skip = "" if lang else f"not run ({info or 'no language'})"
        if lang and before.startswith("<!-- quickstart"):
            skip = "the quickstart block: .ci/run runs it in a new venv"
        elif lang and (nr := NO_RUN.match(before)):
            if not nr["reason"]:
                raise SystemExit(f"{rel}:{i}: '<!-- no-run: -->' needs a reason")
            skip = f"no-run: {nr['reason']}"
        blocks.append(Block(rel, i + 2, lang or info, "\n".join(body), skip))
        i = j + 1
    return blocks


# ---------------------------------------------------------------- the worker: runs one file's blocks


def _run_bash(block: Block) -> bool:
    # padded with blank lines so that $LINENO is the Markdown line
    script = "\n" * (block.line - 1) + block.code + "\n"
    trap = f"trap 'echo \"{block.file}:$LINENO: command failed (exit $?)\" >&2' ERR\n"
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", trap + script[1:]], timeout=BLOCK_TIMEOUT)
    return r.returncode == 0


def _run_python(block: Block, namespace: dict) -> bool:
    # padded so that a traceback names the Markdown file and line
    code = compile("\n" * (block.line - 1) + block.code + "\n", block.file, "exec")
    try:
        exec(code, namespace)
    except BaseException:  # noqa: BLE001  (report any failure, with the Markdown line)
        tb = traceback.extract_tb(sys.exc_info()[2])
        where = next((f"{f.filename}:{f.lineno}" for f in reversed(tb) if f.filename == block.file), block.file)
        traceback.print_exc()
        print(f"{where}: python statement failed", file=sys.stderr)
        return False
    return True


def worker(blocks_json: str) -> int:
    blocks = [Block(**b) for b in json.loads(Path(blocks_json).read_text())]
    import matplotlib

    matplotlib.use("Agg")
    namespace: dict = {"__name__": "__main__"}
    for b in blocks:
        if b.skip:
            continue
        print(f"::: {b.file}:{b.line} {b.lang}", flush=True)
        t = time.perf_counter()
        sys.stdout.flush()
        ok = _run_bash(b) if b.lang == "bash" else _run_python(b, namespace)
        sys.stdout.flush()
        sys.stderr.flush()
        if not ok:
            print(f"::: FAILED {b.file}:{b.line}", flush=True)
            return 1
        print(f"::: ok {b.file}:{b.line} ({time.perf_counter() - t:.1f} s)", flush=True)
    return 0


# ---------------------------------------------------------------- the `visreps` command, started warm
#
# Most of a `visreps` command's time on the example images is Python importing torch, torchvision and timm
# (about 3 s of CPU each time). The server imports them once and forks a child per command; the child runs
# the installed CLI (`visreps.cli.main`) with the command's arguments, working directory, environment and
# standard input, output and error (passed over a Unix socket), and its exit code is the command's. A
# `visreps` script first on the bash blocks' PATH is the client. `--cold` runs the real executable instead.

CLIENT = """import json, os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["VISREPS_DOCS_SERVER"])
msg = json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
socket.send_fds(s, [msg], [0, 1, 2])
s.shutdown(socket.SHUT_WR)
code = b"".join(iter(lambda: s.recv(64), b""))
sys.exit(int(code) if code else 1)
"""
PRELOAD = ["torch", "torchvision", "timm", "numpy", "pandas", "scipy.stats", "PIL.Image", "matplotlib.pyplot"]
PRELOAD += ["visreps.cli", "visreps.models", "visreps.extraction", "visreps.analysis", "visreps.workflows"]


def _serve_one(conn, listener) -> None:
    import socket
    import threading

    msg, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
    msg += b"".join(iter(lambda: conn.recv(1 << 16), b""))
    request = json.loads(msg)
    pid = os.fork()
    if pid == 0:  # the command
        code = 1
        try:
            listener.close()
            conn.close()
            for i, fd in enumerate(fds):
                os.dup2(fd, i)
                os.close(fd)
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            sys.argv = ["visreps", *request["argv"]]
            from visreps.cli import main

            main(args=request["argv"], prog_name="visreps")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)
        except BaseException:  # noqa: BLE001  (as Python would: a traceback and exit code 1)
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    for fd in fds:
        os.close(fd)

    def reply() -> None:
        _, status = os.waitpid(pid, 0)
        conn.sendall(str(os.waitstatus_to_exitcode(status)).encode())
        conn.close()

    threading.Thread(target=reply, daemon=True).start()


def serve(path: str) -> int:
    """Import the heavy modules once, then run each `visreps` command in a fork of this process."""
    import importlib
    import socket

    os.environ["MPLBACKEND"] = "Agg"
    for name in PRELOAD:
        importlib.import_module(name)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(16)
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        _serve_one(conn, listener)


def start_server(tmp: Path):
    """The server process and the directory holding its `visreps` client (to put first on PATH)."""
    sock = tmp / "visreps.sock"
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve", str(sock)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "VISREPS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit("the visreps command server did not start")
    bindir = tmp / "bin"
    bindir.mkdir()
    client = bindir / "visreps"
    client.write_text(f"#!{sys.executable}\n{CLIENT}")
    client.chmod(0o755)
    return proc, sock, bindir


# ---------------------------------------------------------------- the driver


def run_file(path: Path, examples: Path, keep: bool, server=None) -> tuple[bool, float, str]:
    """Run one file's blocks in a worker process: (passed, CPU seconds, the report to print)."""
    blocks = parse_blocks(path)
    runnable = [b for b in blocks if not b.skip]
    rel = os.path.relpath(path, ROOT)
    if not runnable:
        return True, 0.0, f"=== {rel}: no blocks to run ({len(blocks)} blocks)\n"
    tmp = Path(tempfile.mkdtemp(prefix="visreps-docs-"))
    (tmp / "examples").symlink_to(examples.resolve(), target_is_directory=True)
    spec = tmp / ".blocks.json"
    spec.write_text(json.dumps([asdict(b) for b in blocks]))
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if server is not None:  # `visreps` is the warm client
        sock, bindir = server
        env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}"
        env["VISREPS_DOCS_SERVER"] = str(sock)
    env.update(VISREPS_OFFLINE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", MPLBACKEND="Agg")
    env.update(PYTHONUNBUFFERED="1", TQDM_DISABLE="1")
    env.pop("VIRTUAL_ENV", None)
    t = time.perf_counter()
    report = [f"=== {rel}: {len(runnable)} of {len(blocks)} blocks, in {tmp}\n"]
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--worker", str(spec)],
        cwd=tmp,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("::: ok") or line.startswith("::: FAILED"):
            report.append(f"    {line[4:].rstrip()}\n")
        if line.startswith("::: ") and not line.startswith(("::: ok", "::: FAILED")):
            log = []  # a block starts: keep only the current block's output
        log.append(line)
    _, status, usage = os.wait4(proc.pid, 0)  # this worker's own CPU time, with the processes it waited for
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    ok = proc.returncode == 0
    took = f"{time.perf_counter() - t:.1f} s, {cpu:.1f} s CPU in the worker"
    report.append(f"=== {rel}: {'ok' if ok else 'FAILED'} in {took}\n")
    if not ok:
        report.append("".join(log[-80:]))
    if ok and not keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return ok, cpu, "".join(report)


def missing_links(path: Path) -> list[str]:
    """Relative links of a Markdown file (``[text](target)``) whose target file does not exist."""
    text = path.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if not re.match(r"^[a-z]+:", t)]
    return [
        f"{os.path.relpath(path, ROOT)}: link to {t!r}, which does not exist"
        for t in local
        if not (path.parent / t).exists()
    ]


def default_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", type=Path, help="Markdown files (default: README.md and docs/**/*.md)")
    ap.add_argument("--examples", type=Path, default=ROOT / "examples", help="the examples/ folder to link")
    ap.add_argument("--list", action="store_true", help="list the blocks and whether they run; run nothing")
    ap.add_argument("-j", "--jobs", type=int, default=2, help="files run at the same time (default 2)")
    ap.add_argument("--keep", action="store_true", help="keep the working directories of files that passed")
    ap.add_argument("--cold", action="store_true", help="run the real `visreps` executable for every command")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args.worker)
    if args.serve:
        return serve(args.serve)
    files = [f.resolve() for f in args.files] or default_files()
    if args.list:
        for f in files:
            for b in parse_blocks(f):
                print(f"{b.file}:{b.line}  {b.lang or '-':8} {b.skip or 'RUN'}")
        return 0
    broken = missing_links(ROOT / "README.md")  # the site checks its own links (mkdocs build --strict)
    for line in broken:
        print(line)
    t = time.perf_counter()
    failed, cpu = [ROOT / "README.md"] if broken else [], 0.0
    server_dir = Path(tempfile.mkdtemp(prefix="visreps-docs-server-"))
    proc, sock, bindir = (None, None, None) if args.cold else start_server(server_dir)
    server = None if proc is None else (sock, bindir)
    try:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:  # each file runs in its own process
            runs = pool.map(lambda f: run_file(f, args.examples, args.keep, server), files)
            for f, (ok, seconds, report) in zip(files, runs):
                print(report, end="", flush=True)
                cpu += seconds
                if not ok:
                    failed.append(f)
    finally:
        if proc is not None:
            proc.terminate()
            _, _, usage = os.wait4(proc.pid, 0)  # the commands' CPU time (the server waited for each)
            cpu += usage.ru_utime + usage.ru_stime
        shutil.rmtree(server_dir, ignore_errors=True)
    n = sum(1 for f in files for b in parse_blocks(f) if not b.skip)
    took = f"{time.perf_counter() - t:.0f} s, {cpu:.0f} s CPU in all (workers and visreps commands)"
    print(f"=== docs code: {n} blocks in {len(files)} files, {took}, {len(failed)} files failed")
    for f in failed:
        print(f"    FAILED: {os.path.relpath(f, ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
