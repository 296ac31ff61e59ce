"""Analysis outputs as transactions: every file of a run planned before work, written under a partial name,
renamed together at the end and recorded as the run's own.

The analysis commands (``rsa``, ``compare``, ``cka``, ``encode``) and
:meth:`visreps.analysis.encoding.EncodingResult.save` write their tables and figures through an
:class:`OutputPlan`:

1. **Plan** (:meth:`OutputPlan.add`, :meth:`OutputPlan.add_inputs`, :meth:`OutputPlan.check`), before
   any work: the files are distinct (after resolving symlinks, and hard links of existing files), none
   is an input of the run (even with ``--overwrite``), none is the record's own name, each existing
   one is a regular file, and each folder exists or can be created and is writable. A file that exists
   already is an error naming it unless ``overwrite``.
2. **Write** (:meth:`OutputPlan.write`, or :meth:`OutputPlan.partial` for writers that take a path):
   each file goes to ``.<stem>.partial-<pid><suffix>`` beside its final name (the suffix is kept, so
   writers that infer the format from it, or append it, as ``numpy.save``, still work). An error
   while writing (a full disk, EIO) becomes a :class:`VisrepsError` naming the final file.
3. **Commit** (:meth:`OutputPlan.commit`, or leaving the ``with`` block): with Ctrl-C held back, the
   earlier runs this one replaces lose their other files, the record is written, and every partial
   file is renamed to its final name. An exception or Ctrl-C before that removes the partial files
   (and the folders the run created, when empty): nothing under a final name is ever half-written.
   A run killed outright (``kill -9``, a power cut) cannot clean up: the next run that commits the same
   names removes the partial files of those names whose process is gone (:attr:`OutputPlan.swept`).

The record is one JSON file per output folder, :data:`RECORD` (``.visreps-outputs.json``): a list of
runs, each with the command, the time and its files in that folder (name, size, mtime). A run
*replaces* an earlier one when it writes one of that run's files. With ``overwrite``, the files of a
replaced run that the new run does not write again (a banded run's ``band_weights.csv``, a figure
not asked for this time) are removed, unless they changed since that run wrote them (then they are
kept and listed in :attr:`OutputPlan.kept`); files no run recorded are never removed. Without
``overwrite`` nothing is removed: the new run takes over only the names it writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import VisrepsError

__all__ = ["RECORD", "OutputPlan", "partial_name", "recorded_files"]

#: the record of the runs that wrote into an output folder (one per folder)
RECORD = ".visreps-outputs.json"
_KIND = "visreps analysis outputs"


def partial_name(path: str | os.PathLike) -> Path:
    """The temporary name ``path`` is written under: ``.<stem>.partial-<pid><suffix>`` in the same folder."""
    p = Path(path)
    return p.with_name(f".{p.stem}.partial-{os.getpid()}{p.suffix}")


def _pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (``True`` when that cannot be told, e.g. on Windows)."""
    if os.name == "nt" or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but not ours to signal
        return True
    return True


def _key(path: Path) -> str:
    """A path with symlinks resolved (the file it names, whether or not it exists)."""
    return os.path.realpath(path)


def _folder(path: Path) -> Path:
    """The folder of ``path`` with symlinks resolved (one record per folder, however it is named)."""
    return Path(os.path.realpath(path.parent))


def _ident(path: Path) -> tuple[int, int] | None:
    """``(device, inode)`` of an existing file (hard links share it), else ``None``."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _read_record(folder: Path) -> list[dict[str, Any]]:
    """The runs recorded in ``folder``'s :data:`RECORD` (``[]`` when there is none).

    Raises:
        VisrepsError: a file of that name that is not a visreps record.
    """
    path = folder / RECORD
    if not path.exists():
        return []

    def ours(info: Any) -> bool:
        runs = info.get("runs") if isinstance(info, dict) and info.get("kind") == _KIND else None
        return isinstance(runs, list) and all(isinstance(r, dict) and isinstance(r.get("files"), dict) for r in runs)

    return read_record_json(path, ours, VisrepsError)["runs"]


def read_record_json(path: Path, ours: Callable[[Any], bool], error: type[VisrepsError]) -> Any:
    """The JSON of a record visreps wrote (an analysis run record, an extraction's ``metadata.json``).

    Raises:
        error: the file cannot be read as JSON, or ``ours(info)`` says visreps did not write it (visreps replaces
            only files it can prove it wrote).
    """
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise error(
            f"{str(path)!r} is not a readable visreps record ({e.__class__.__name__}); visreps does not replace "
            "files it cannot prove it wrote: move or delete it yourself, or choose another --out"
        ) from None
    if not ours(info):
        raise error(f"{str(path)!r} was not written by visreps; move it away or choose another --out")
    return info


def recorded_files(folder: str | os.PathLike) -> list[str]:
    """Names of the files in ``folder`` that earlier analysis runs recorded as their own (see the module docs)."""
    return sorted({n for run in _read_record(Path(folder)) for n in run["files"] if _plain(n)})


def _plain(name: object) -> bool:
    """A plain file name inside the folder (a record naming ``../x`` or ``/etc/x`` is ignored)."""
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl-C (and SIGTERM) held back until the block is done (main thread of a POSIX process only)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class OutputPlan:
    """Every file one run writes, checked before the work and written as one transaction (see the module docs).

    Use::

        plan = OutputPlan(overwrite=overwrite, options="--out/--plot")
        plan.add(table, figure)
        plan.add_inputs(responses_file)
        plan.check()                      # before any work: raises VisrepsError
        ...                               # the work
        with plan:                        # an error or Ctrl-C in the block removes the partial files
            plan.write(table, lambda p: df.to_csv(p))
            plot(..., out=plan.partial(figure))
        # here every file is under its final name and recorded

    Args:
        overwrite: replace existing files (never inputs), and remove the other files of the earlier
            runs this one replaces.
        options: the options that name the files, for messages (``"--out"``, ``"--out/--plot"``).
        command: recorded with the run (default: the command line).
    """

    def __init__(self, *, overwrite: bool = False, options: str = "--out", command: str | None = None):
        self.overwrite = overwrite
        self.options = options
        self.command = command
        self.files: list[Path] = []
        self.inputs: list[tuple[Path, str]] = []
        self.trees: list[tuple[Path, str]] = []
        self.removed: list[Path] = []
        self.kept: list[Path] = []
        self.swept: list[Path] = []  # partial files of killed runs removed at commit
        self._partials: dict[Path, Path] = {}
        self._created: list[Path] = []
        self._records: dict[Path, list[dict[str, Any]]] = {}
        self._stale: list[tuple[Path, dict[str, Any]]] = []
        self._held: set[Path] = set()
        self._checked = False
        self._done = False

    # ------------------------------------------------------------------ planning

    def add(self, *paths: str | os.PathLike) -> OutputPlan:
        """Declare files this run writes."""
        self.files += [Path(p).expanduser() for p in paths]
        self._checked = False
        return self

    def add_inputs(self, *paths: str | os.PathLike | None, what: str = "input", tree: bool = False) -> OutputPlan:
        """Declare files this run reads (``None`` is skipped); ``tree``: every existing file under these folders."""
        for p in paths:
            if p is not None and str(p) != "":
                (self.trees if tree else self.inputs).append((Path(p).expanduser(), what))
        self._checked = False
        return self

    def check(self) -> OutputPlan:
        """Validate the plan before any work (see the module docs); returns the plan.

        Raises:
            VisrepsError: two outputs share a path, an output is an input or not a regular file, a
                folder cannot be written, or an output exists and ``overwrite`` is not given.
        """
        self._distinct()
        self._not_inputs()
        for folder in dict.fromkeys(p.parent for p in self.files):
            self._writable(folder)
        held = [p for p in self.files if os.path.lexists(p)]
        for p in held:
            if p.is_dir() or (p.exists() and not p.is_file()):
                kind = "a folder" if p.is_dir() else "not a regular file"
                raise VisrepsError(f"{str(p)!r} is {kind}; name a file to write with {self.options}")
        if held and not self.overwrite:
            what = "exists" if len(held) == 1 else "exist"
            raise VisrepsError(
                f"{', '.join(map(str, dict.fromkeys(held)))} already {what}; choose another {self.options}, or add "
                f"--overwrite to replace {'it' if len(held) == 1 else 'them'}"
            )
        self._plan_replaced()
        self._held = set(held)
        self._checked = True
        return self

    def _distinct(self) -> None:
        seen: dict[Any, Path] = {}
        for p in self.files:
            if p.name == RECORD:
                raise VisrepsError(
                    f"{str(p)!r}: {RECORD} is the name of visreps' record; choose another {self.options}"
                )
            keys = [k for k in (_key(p), _ident(p)) if k is not None]
            for k in keys:
                if k in seen:
                    other = seen[k]
                    same = "twice" if other == p else f"and {str(other)!r}, the same file,"
                    raise VisrepsError(
                        f"this run would write {str(p)!r} {same} as two of its outputs: two outputs of one run "
                        f"never share a path; give them different names ({self.options})"
                    )
            for k in keys:
                seen[k] = p

    def _input_keys(self) -> dict[Any, tuple[Path, str]]:
        """Resolved path and ``(device, inode)`` of every input file → the input as given and what it is."""
        keys: dict[Any, tuple[Path, str]] = {}
        for p, what in self.inputs:
            keys[_key(p)] = (p, what)
            ident = _ident(p)
            if ident is not None:
                keys[ident] = (p, what)
        return keys

    def _not_inputs(self) -> None:
        keys = self._input_keys()
        trees = [(_key(t), t, what) for t, what in self.trees]
        for p in self.files:
            hit = keys.get(_key(p)) or keys.get(_ident(p) or ())
            if hit is None and os.path.lexists(p):
                rp = _key(p)
                tree = next(((t, what) for k, t, what in trees if rp.startswith(k.rstrip(os.sep) + os.sep)), None)
                hit = None if tree is None else (p, f"a file of the {tree[1]} {str(tree[0])!r}")
            if hit is not None:
                src, what = hit
                if os.path.abspath(src) != os.path.abspath(p):
                    what = (
                        f"{what}: {str(src)!r} is the same file"
                        if what != "input"
                        else f"the same file as {str(src)!r}"
                    )
                raise VisrepsError(
                    f"{str(p)!r} is an input of this run{'' if what == 'input' else f' ({what})'}; visreps never "
                    f"writes over its inputs, with or without --overwrite: choose another {self.options}"
                )

    def _writable(self, folder: Path) -> None:
        probe = folder
        while not probe.exists():
            if os.path.lexists(probe):  # a dangling symlink
                break
            probe = probe.parent
        if not probe.is_dir():
            raise VisrepsError(
                f"{str(probe)!r} is not a folder, so {str(folder)!r} cannot be created; choose another {self.options}"
            )
        if not os.access(probe, os.W_OK | os.X_OK):
            raise VisrepsError(f"cannot write into {str(probe)!r} (permission denied); choose another {self.options}")

    def _plan_replaced(self) -> None:
        """The earlier runs this one replaces, and (with ``overwrite``) their files it does not write again."""
        self._records, self._stale = {}, []
        inputs = self._input_keys()
        by_folder: dict[Path, set[str]] = {}
        for p in self.files:
            by_folder.setdefault(_folder(p), set()).add(p.name)
        for folder, names in by_folder.items():
            runs = _read_record(folder) if folder.is_dir() else []
            kept_runs = []
            for run in runs:
                files = {n: v for n, v in run["files"].items() if _plain(n)}
                if not names & set(files):
                    kept_runs.append(run)
                    continue
                rest = {n: v for n, v in files.items() if n not in names}
                if self.overwrite:  # replaced as a whole: its other files go, except the inputs of this run
                    gone = {n for n in rest if _key(folder / n) not in inputs and _ident(folder / n) not in inputs}
                    self._stale += [(folder / n, rest[n]) for n in sorted(gone)]
                    rest = {n: v for n, v in rest.items() if n not in gone}
                if rest:  # the earlier run keeps its other names (nothing removed without --overwrite)
                    kept_runs.append({**run, "files": rest})
            self._records[folder] = kept_runs

    # ------------------------------------------------------------------ writing

    def partial(self, path: str | os.PathLike) -> Path:
        """The partial name to write the planned ``path`` to (its folder is created)."""
        final = Path(path).expanduser()
        if final not in self.files:
            raise ValueError(f"{final} is not in the plan")  # a programming error, not a user's
        if not self._checked:
            self.check()
        tmp = self._partials.get(final)
        if tmp is None:
            self._mkdir(final.parent)
            tmp = self._partials[final] = partial_name(final)
        return tmp

    def _mkdir(self, folder: Path) -> None:
        missing = []
        probe = folder
        while not probe.exists():
            missing.append(probe)
            probe = probe.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise VisrepsError(
                f"cannot create the folder {str(folder)!r}: {e.strerror or e}; choose another {self.options}"
            ) from None
        self._created += missing

    def write(self, path: str | os.PathLike, writer: Callable[[Path], Any]) -> None:
        """Run ``writer(partial_path)`` for the planned ``path``; an OSError becomes an error naming ``path``."""
        final = Path(path).expanduser()
        tmp = self.partial(final)
        try:
            writer(tmp)
        except OSError as e:
            raise self.write_error(final, e) from None

    def write_error(self, path: Path, e: OSError) -> VisrepsError:
        """A one-line error naming the final file (an OSError often names none, or the partial one)."""
        return VisrepsError(
            f"cannot write {str(path)!r}: {e.strerror or e}; check the free space and permissions, or choose "
            f"another {self.options}"
        )

    def __enter__(self) -> OutputPlan:
        if not self._checked:
            self.check()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def abort(self) -> None:
        """Remove the partial files (and the folders this run created, when empty)."""
        for tmp in self._partials.values():
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._partials = {}
        for folder in reversed(self._created):
            with contextlib.suppress(OSError):
                folder.rmdir()
        self._created = []

    def commit(self) -> list[Path]:
        """Remove what the replaced runs leave, record this run, rename every partial file; returns the files.

        Raises:
            VisrepsError: a planned file was never written, or a rename or the record failed (the
                partial files are removed).
        """
        missing = [p for p in self.files if p not in self._partials or not os.path.lexists(self._partials[p])]
        if missing:
            self.abort()
            raise VisrepsError(f"internal error: {str(missing[0])!r} was planned but not written")
        appeared = [p for p in self.files if p not in self._held and os.path.lexists(p)]
        if appeared and not self.overwrite:
            self.abort()
            raise VisrepsError(
                f"{str(appeared[0])!r} appeared while this run worked (another run writing there?); nothing was "
                f"replaced: choose another {self.options}, or add --overwrite"
            )
        with _signals_held():
            try:
                self._remove_stale()
                self._write_records()  # first: a file renamed below is already recorded as this run's
                for final, tmp in list(self._partials.items()):
                    os.replace(tmp, final)
                    del self._partials[final]
            except OSError as e:
                self.abort()
                raise self.write_error(Path(e.filename or self.files[0]), e) from None
        self._done = True
        self._sweep_orphans()
        return list(self.files)

    def _sweep_orphans(self) -> None:
        """Remove partial files of this run's names that a killed run left (``kill -9``, a power cut).

        Only ``.<stem>.partial-<pid><suffix>`` of a file this run just wrote (or of the folder's record), and only
        when no process ``<pid>`` runs on this machine: another run's files are never touched.
        """
        import re

        names = {(p.parent, p.stem, p.suffix) for p in self.files}
        names |= {(folder, Path(RECORD).stem, Path(RECORD).suffix) for folder in self._records}
        for folder, stem, suffix in names:
            pattern = re.compile(rf"\.{re.escape(stem)}\.partial-(\d+){re.escape(suffix)}")
            with contextlib.suppress(OSError):
                for entry in os.scandir(folder):
                    m = pattern.fullmatch(entry.name)
                    if m is None or int(m[1]) == os.getpid() or _pid_alive(int(m[1])):
                        continue
                    if entry.is_file(follow_symlinks=False):
                        with contextlib.suppress(OSError):
                            os.unlink(entry.path)
                            self.swept.append(Path(entry.path))

    def _remove_stale(self) -> None:
        for path, seen in self._stale:
            try:
                st = path.lstat()
            except OSError:
                continue
            if seen.get("size") != st.st_size or seen.get("mtime_ns") != st.st_mtime_ns or not path.is_file():
                self.kept.append(path)  # changed since the earlier run wrote it: no longer only visreps'
                continue
            path.unlink()
            self.removed.append(path)

    def _write_records(self) -> None:
        run_id = uuid.uuid4().hex
        command = self.command
        if command is None:
            import sys

            command = " ".join(["visreps", *sys.argv[1:]]) if sys.argv and "visreps" in sys.argv[0] else "python"
        for folder, runs in self._records.items():
            files = {}
            for p in self.files:
                if _folder(p) == folder:
                    st = self._partials[p].stat()  # a rename keeps size and mtime
                    files[p.name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
            run = {"id": run_id, "command": command, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": files}
            text = json.dumps({"kind": _KIND, "version": 1, "runs": [*runs, run]}, indent=1) + "\n"
            tmp = partial_name(folder / RECORD)
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, folder / RECORD)

    def summary(self) -> str:
        """What replacing earlier runs did, for the terminal (empty when nothing was removed, kept or swept)."""
        out = []
        if self.removed:
            out.append("removed the earlier run's " + ", ".join(str(p) for p in self.removed))
        if self.kept:
            out.append("kept " + ", ".join(str(p) for p in self.kept) + " (changed since the earlier run wrote it)")
        if self.swept:
            out.append(
                f"removed {len(self.swept)} partial file(s) a killed run left: " + ", ".join(p.name for p in self.swept)
            )
        return "; ".join(out)
