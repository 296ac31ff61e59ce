"""Execute the tutorials (docs/tutorials/*.ipynb) top to bottom and store their fresh outputs in place.

Each notebook runs in its own kernel (this interpreter's ``python3``), in a fresh temporary working
directory that holds ``examples/`` (a link to the repository's), offline (``VISREPS_OFFLINE=1``).
A cell that raises stops that notebook and is reported with its number and source; the notebook file
is then left as it was. The site (mkdocs-jupyter, ``execute: false``) shows the outputs stored here.

Usage::

    .venv/bin/python .ci/run_notebooks.py                        # every tutorial
    .venv/bin/python .ci/run_notebooks.py docs/tutorials/2_*.ipynb
    .venv/bin/python .ci/run_notebooks.py --check                # run, but leave the files unchanged
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CELL_TIMEOUT = 600


def scrub(nb, tmp: Path) -> None:
    """Outputs show paths relative to the notebook's folder, never the temporary one it ran in."""
    import re

    where = re.compile(re.escape(str(tmp)) + "/?|" + re.escape(str(tmp.resolve())) + "/?")

    def clean(x):
        if isinstance(x, str):
            return where.sub("", x)
        if isinstance(x, list):
            return [clean(v) for v in x]
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        return x

    for cell in nb.cells:
        for out in cell.get("outputs", []):
            for key in ("text", "data"):
                if key in out:
                    out[key] = clean(out[key])


def run(path: Path, *, write: bool) -> bool:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    tmp = Path(tempfile.mkdtemp(prefix="visreps-nb-"))
    (tmp / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    rel = os.path.relpath(path, ROOT)
    t = time.perf_counter()
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp)}},
        record_timing=False,
    )
    try:
        client.execute()
    except CellExecutionError as e:
        print(f"=== {rel}: FAILED after {time.perf_counter() - t:.1f} s\n{e}", flush=True)
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for cell in nb.cells:  # no run-dependent metadata in the stored file
        cell.get("metadata", {}).pop("execution", None)
    scrub(nb, tmp)
    if write:
        nbformat.write(nb, path)
    print(f"=== {rel}: ok in {time.perf_counter() - t:.1f} s", flush=True)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="*", type=Path)
    ap.add_argument("--check", action="store_true", help="execute without writing the outputs back")
    args = ap.parse_args(argv)
    os.environ.update(VISREPS_OFFLINE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    os.environ.pop("MPLBACKEND", None)  # the kernel picks its inline backend itself
    # the kernel must find `visreps` of this interpreter and run offline
    bindir = str(Path(sys.executable).parent)
    os.environ["PATH"] = f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"
    paths = [p.resolve() for p in args.notebooks] or sorted((ROOT / "docs" / "tutorials").glob("*.ipynb"))
    t = time.perf_counter()
    failed = [p for p in paths if not run(p, write=not args.check)]
    r = resource.getrusage(resource.RUSAGE_CHILDREN)  # the kernels' CPU time, which the load does not inflate
    took = f"{time.perf_counter() - t:.0f} s, {r.ru_utime + r.ru_stime:.0f} s CPU in the kernels"
    print(f"=== notebooks: {len(paths)} run, {len(failed)} failed, {took}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
