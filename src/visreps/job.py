"""What an extraction is, before it runs: its options (checked once), the prepared job, a batch, an engine.

:class:`ExtractionOptions` declares every option of :func:`visreps.extract` once, with its default,
and checks them all when it is built (on the first line of ``extract``); :func:`visreps.extraction.prepare`,
:func:`~visreps.extraction.run`, the engines and :mod:`visreps.workcache` read the object and never check
again. :class:`Job` is what :func:`~visreps.extraction.prepare` decided; :class:`Batch` what an engine yields
to the batch loop; :class:`BatchSource` and :class:`Engine` say what the loop and ``extract`` need from an
engine.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .errors import VisrepsError
from .options import PRECISIONS, RECURRENT_MODES

if TYPE_CHECKING:
    from .capture import LayerSpec
    from .data import ImageItem
    from .image_sources import ArraySource, FolderSource, ListSource
    from .models import LoadedModel
    from .reduce import Reducer, ReduceSpec
    from .storage.record import RunRecord

__all__ = ["Batch", "BatchSource", "Engine", "ExtractionOptions", "Job", "parse_shard", "shard_bounds"]

#: field metadata: ``key=False`` marks an option that does not change the numbers (beyond float tolerance),
#: left out of the work cache's key (:mod:`visreps.workcache`)
_NOT_KEY = {"key": False}


def parse_shard(shard: Any) -> tuple[int, int] | None:
    """``"2/4"`` or ``(2, 4)`` → (2, 4): the 2nd of 4 contiguous slices (1-based)."""
    if shard is None:
        return None
    try:
        if isinstance(shard, str):
            i, n = (int(p) for p in shard.split("/"))
        else:
            i, n = (int(p) for p in shard)
    except (ValueError, TypeError):
        raise VisrepsError(f"shard {shard!r} is not valid; write I/N, e.g. 2/4 for the second of four slices") from None
    if not (n >= 1 and 1 <= i <= n):
        raise VisrepsError(f"shard {shard!r} is not valid: I must be between 1 and N (e.g. 1/4 ... 4/4)")
    return i, n


def shard_bounds(n_images: int, i: int, n: int) -> tuple[int, int]:
    """Start and stop of the i-th (1-based) of n contiguous, near-equal slices of n_images."""
    return (i - 1) * n_images // n, i * n_images // n


@dataclass(frozen=True)
class ExtractionOptions:
    """Every option of :func:`visreps.extract` (see there for what each means), checked once when built.

    Build it with keyword arguments (``ExtractionOptions(layers=["fc"], batch_size=8)``); a bad value
    raises :class:`~visreps.errors.VisrepsError` naming the parameter and its valid values. ``fmt``,
    ``shard_range`` and ``reduction`` are the parsed ``format``, ``shard`` and ``reduce``.
    """

    layers: Sequence[str] | str
    out: str | os.PathLike | None = field(default=None, metadata=_NOT_KEY)
    format: str = field(default="npy", metadata=_NOT_KEY)
    pool: str | Mapping[str, str] = "flatten"
    batch_size: int | str = field(default=32, metadata=_NOT_KEY)
    num_workers: int | None = field(default=None, metadata=_NOT_KEY)
    device: str | None = field(default="auto", metadata=_NOT_KEY)
    precision: str = "fp32"
    order: str | os.PathLike | Sequence[str] | None = field(default=None, metadata=_NOT_KEY)
    overwrite: bool = field(default=False, metadata=_NOT_KEY)
    resume: bool = field(default=False, metadata=_NOT_KEY)
    shard: str | tuple[int, int] | None = None
    skip_bad_images: bool = False
    recurrent: str | None = None
    progress: bool = field(default=True, metadata=_NOT_KEY)
    pretrained: bool = True
    weights: str | os.PathLike | None = None
    seed: int = 0
    preprocessing: Any = None
    channels_last: bool | None = None
    top_k: int | None = None
    command: str | None = field(default=None, metadata=_NOT_KEY)
    allow_pickle: bool = False
    engine: Any = field(default="local", metadata=_NOT_KEY)
    images_key: str | None = None
    reduce: str | None = None
    reduce_fit: str | os.PathLike | None = None
    fmt: str = field(init=False, repr=False, compare=False)
    shard_range: tuple[int, int] | None = field(init=False, repr=False, compare=False)
    reduction: ReduceSpec | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        """Check every option (the one place they are checked) and set the parsed fields."""
        from .storage import check_format

        if self.resume and self.out is None:
            raise VisrepsError("resume=True needs the output folder of the interrupted run (out=...)")
        if self.resume and self.overwrite:
            raise VisrepsError(
                "choose either resume (continue the interrupted run) or overwrite (start again), not both"
            )
        _check_numbers(self.batch_size, self.num_workers, self.top_k)
        if self.precision not in PRECISIONS:
            raise VisrepsError(f"precision {self.precision!r} is not valid; use one of {', '.join(PRECISIONS)}")
        if self.recurrent is not None and self.recurrent not in RECURRENT_MODES:
            raise VisrepsError(f"recurrent={self.recurrent!r} is not valid; use 'all' (every time step) or 'last'")
        if not isinstance(self.pool, (str, Mapping)):
            raise VisrepsError(f"pool must be a pool mode or a {{layer: mode}} mapping, got {self.pool!r}")
        _check_engine(self.engine)
        object.__setattr__(self, "fmt", check_format(self.format))
        object.__setattr__(self, "shard_range", parse_shard(self.shard))
        object.__setattr__(self, "reduction", _check_reduce(self.reduce, self.reduce_fit))

    def adapted(self, **changes: Any) -> ExtractionOptions:
        """A copy with ``changes`` made by an engine (already valid values: not checked again)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise TypeError(f"ExtractionOptions has no option {', '.join(sorted(unknown))}")
        new = copy.copy(self)
        for name, value in changes.items():
            object.__setattr__(new, name, value)
        return new

    @classmethod
    def not_in_key(cls) -> tuple[str, ...]:
        """The options that do not change the numbers (left out of the work cache's key)."""
        return tuple(f.name for f in fields(cls) if f.init and f.metadata.get("key") is False)

    def run_arguments(self) -> dict[str, Any]:
        """The keyword arguments of :func:`visreps.extraction.run`."""
        return {"out": self.out, "overwrite": self.overwrite, "resume": self.resume, "progress": self.progress}


def _check_numbers(batch_size: Any, num_workers: Any, top_k: Any) -> None:
    if batch_size != "auto" and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1):
        raise VisrepsError(f"batch_size must be a positive integer or 'auto', got {batch_size!r}")
    if num_workers is not None and (not isinstance(num_workers, int) or num_workers < 0):
        raise VisrepsError(f"num_workers must be an integer >= 0, got {num_workers!r}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1 or top_k > 1000):
        raise VisrepsError(f"top_k must be an integer between 1 and 1000, got {top_k!r}")


def _check_engine(engine: Any) -> None:
    if engine is None or (isinstance(engine, str) and engine == "local") or isinstance(engine, Engine):
        return
    raise VisrepsError(
        f"engine={engine!r} is not valid: an engine has name, start, attach, batches and close "
        "(visreps.extraction.Engine); use 'local', 'ray' or visreps.distributed.RayEngine(...)"
    )


def _check_reduce(reduce: Any, reduce_fit: Any) -> ReduceSpec | None:
    """The parsed reduction, after checking ``reduce_fit`` (before any work)."""
    from .reduce import parse_reduce

    rspec = parse_reduce(reduce)
    if reduce_fit is not None:
        if rspec is None or rspec.method != "pca":
            raise VisrepsError("reduce_fit (--reduce-fit) is the fit set of a PCA; use it with --reduce pca:K")
        path = Path(reduce_fit).expanduser()
        if not path.exists():
            raise VisrepsError(
                f"--reduce-fit {str(reduce_fit)!r} does not exist; give a folder of images to fit the PCA on "
                "(or the pca_fit.npz of an earlier run), or leave it out to fit on the first images of the run"
            )
        if rspec.fit_images is not None:
            raise VisrepsError(f"reduce {str(rspec)!r} names a number of fit images; with --reduce-fit write pca:K")
    return rspec


@dataclass
class Job:
    """Everything one extraction needs, decided before the first batch (see :func:`visreps.extraction.prepare`)."""

    lm: LoadedModel
    items: list[ImageItem]
    root: Path
    specs: list[LayerSpec]
    keys: list[str]
    shapes: dict[str, tuple[int, ...]]
    metadata: RunRecord  # the run record (metadata.json), built by storage.record.new_record
    fmt: str
    batch_size: int
    workers: int
    precision: str
    channels_last: bool
    top_k: int | None
    skip_bad_images: bool
    start: int = 0  # first image index of this job in ``items`` (shards)
    stop: int = 0
    kind: str = "images"  # or "texts" (visreps.text): no content hashes, no image metadata
    source: FolderSource | ListSource | ArraySource | None = None  # what the dataset reads through
    unit: str = "img"  # of the progress bar
    reducer: Reducer | None = None  # applied to every batch before it is written
    raw_shapes: dict[str, tuple[int, ...]] | None = None  # per-image shapes before the reduction
    options: ExtractionOptions | None = None  # as the caller gave them (None for text jobs)


@dataclass
class Batch:
    """One batch as an engine yields it to :func:`visreps.extraction.run`, in the order of the images.

    Attributes:
        idx: positions (in the engine's ``items``) of the images whose rows ``outs`` holds, in order.
        bad: ``(position, error message)`` of the images that could not be read.
        outs: ``{key: array or tensor (len(idx), ...)}``; ``None`` when every image was bad.
        topk: ``(indices, probabilities)`` of the top-k classes, or ``None``.
        event: a CUDA event to wait for before reading ``outs`` (``None`` off CUDA).
        digests: the content hashes of the good images (:func:`visreps.data.content_hash`), as
            bytes or a ``(len(idx), 16)`` uint8 array.
    """

    idx: list
    bad: list
    outs: Any = None
    topk: Any = None
    event: Any = None
    digests: Any = ()
    reduced: bool = False  # ``outs`` already reduced by the engine (the Ray actors)


@runtime_checkable
class BatchSource(Protocol):
    """What :func:`visreps.extraction.run` (and its batch loop) needs from an engine: the batches of ``items``."""

    def batches(self, job: Job, items: Sequence[ImageItem]) -> Iterator[Batch]: ...


@runtime_checkable
class Engine(BatchSource, Protocol):
    """What :func:`visreps.extract` needs from an engine: adapt the options (``start``), adapt the prepared
    job (``attach``), yield its batches (``batches``, see :class:`Batch`) and release what it holds
    (``close``). :class:`visreps.extraction.LocalEngine` and :class:`visreps.distributed.RayEngine` are two.
    """

    name: str

    def start(self, options: ExtractionOptions) -> ExtractionOptions: ...

    def attach(self, job: Job, options: ExtractionOptions, model: Any) -> None: ...

    def close(self) -> None: ...
