"""Text features of CLIP/OpenCLIP models: the text embedding and inner text-transformer layers.

An output folder of :func:`extract_text` has the layout of an image extraction (``<layer>.npy``,
``manifest.csv``, ``metadata.json``) and reads back with :func:`visreps.load_features`; the
manifest's ``path`` column holds the texts (row ``i`` of every array is text ``i``) and ``label``
is empty.

Layers:

* ``text_embedding`` (default): ``encode_text`` of the model, not normalised → (n, embed_dim).
* inner modules of the text tower, e.g. ``transformer.resblocks.5`` (OpenAI-style models) or
  ``text.transformer.resblocks.5`` (models with a separate text tower); list them with
  ``visreps.models.clip.text_model(lm).layer_names()``. They output one vector per token
  position, (n, context_length, width), padding included. ``pool`` decides what is kept:
  ``eot`` (default) the token the model reads its text embedding from (for OpenAI's CLIP the
  end-of-text token) → (n, width); ``flatten`` all positions → (n, context_length × width);
  ``none`` → (n, context_length, width).

Texts longer than the context length (77 tokens for CLIP) are truncated by the tokenizer.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from .data import ImageItem
from .errors import VisrepsError
from .extraction import Batch, Job, run
from .options import TEXT_POOL_MODES
from .storage import versions as _versions
from .storage.record import RunRecord

DEFAULT_TEXT_LAYER = "text_embedding"


def read_texts(texts: Sequence[str] | str | os.PathLike) -> tuple[list[str], Path | None]:
    """The texts to encode and the file they came from.

    Args:
        texts: a list of strings, or the path of a UTF-8 text file with one text per line
            (surrounding whitespace stripped, blank lines skipped).

    Returns:
        ``(texts, file)``; ``file`` is ``None`` for a list.

    Raises:
        VisrepsError: a missing or empty file, an empty list, or an item that is not a string.
    """
    if isinstance(texts, (str, os.PathLike)):
        path = Path(texts).expanduser()
        if not path.is_file():
            raise VisrepsError(
                f"text file {str(texts)!r} does not exist; give a UTF-8 file with one text per line "
                "(or, in Python, a list of strings)"
            )
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise VisrepsError(f"text file {str(texts)!r} is not UTF-8 text ({e}); save it as UTF-8") from e
        items = [line.strip() for line in lines if line.strip()]
        if not items:
            raise VisrepsError(f"text file {str(texts)!r} holds no text (only blank lines); write one text per line")
        return items, path.resolve()
    items = list(texts)
    if not items:
        raise VisrepsError("no texts given; pass a non-empty list of strings or a text file")
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise VisrepsError(f"texts[{i}] is {type(t).__name__} {t!r}, not a string")
    return items, None


def _pool_tokens(t, tokens, mode: str, text_pool, layer: str):
    """Apply a text pooling mode to a batch ``t`` (B, L, D) of per-token outputs; (B, D) passes through."""
    if t.dim() != 3 or mode == "none":
        return t
    if mode == "flatten":
        return t.reshape(t.shape[0], -1)
    if text_pool is None:
        raise VisrepsError(
            f"layer {layer!r} outputs every token and this model's text embedding is not read from one "
            "token, so pool='eot' is undefined; use pool='flatten' or 'none'"
        )
    from open_clip.transformer import text_global_pool

    pool_type, eos_id = text_pool
    return text_global_pool(t, tokens.to(t.device), pool_type, eos_token_id=eos_id)


def extract_text(
    model,
    texts: Sequence[str] | str | os.PathLike,
    *,
    layers: Sequence[str] | str | None = None,
    out: str | os.PathLike | None = None,
    format: str = "npy",
    pool: str = "eot",
    batch_size: int = 64,
    overwrite: bool = False,
    pretrained: bool = True,
    weights: str | os.PathLike | None = None,
    seed: int = 0,
    device: str | None = "auto",
    progress: bool = True,
    command: str | None = None,
):
    """Encode texts with the text tower of a CLIP/OpenCLIP model.

    Args:
        model: a model id (``"clip:ViT-B-32"``, ``"openclip:ViT-B-32/laion2b_s34b_b79k"``) or a
            :class:`~visreps.models.LoadedModel` of one (then ``pretrained/weights/seed`` are ignored).
        texts: a list of strings, or a text file with one text per line (blank lines skipped).
        layers: ``text_embedding`` (default) and/or text-tower modules such as
            ``transformer.resblocks.5`` (a list or a comma-separated string).
        out: output folder; ``None`` keeps the arrays in memory.
        format: one of :data:`visreps.options.FORMATS` (``npy``, ``hdf5``, ``mat``, ``pt``, ``txt``, ``zarr``).
        pool: for per-token layers: ``eot`` (the token the text embedding is read from),
            ``flatten`` (every position) or ``none`` (keep (context_length, width)).
        batch_size: texts per forward pass.
        overwrite: replace the results in an existing output folder.
        pretrained: load the model's pretrained weights (``False``: seeded random initialisation).
        weights: a weights file to load instead.
        seed: seed of a random initialisation.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        progress: show a progress bar.
        command: the command line recorded in the metadata (the CLI sets it).

    Returns:
        :class:`~visreps.storage.Features`: ``result["text_embedding"]`` has one row per text;
        ``result.paths`` are the texts.

    Raises:
        VisrepsError: bad texts, layers or options; the model has no text tower.
    """
    from .capture import plan_layers
    from .models import load_model
    from .models.clip import text_model
    from .storage import check_format

    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise VisrepsError(f"batch_size must be a positive integer, got {batch_size!r}")
    if pool not in TEXT_POOL_MODES:
        raise VisrepsError(f"text pool mode {pool!r} is not valid; use one of {', '.join(TEXT_POOL_MODES)}")
    fmt = check_format(format)
    items, source_file = read_texts(texts)
    lm = load_model(
        model, pretrained=pretrained, weights=None if weights is None else os.fspath(weights), seed=seed, device=device
    )
    tm = text_model(lm)
    specs = plan_layers(tm, layers if layers is not None else [DEFAULT_TEXT_LAYER], pool="none")
    eng = _TextEngine(tm, specs, pool, batch_size)
    shapes, context_length = eng.dry_run()
    metadata = _text_metadata(lm, items, source_file, context_length, eng.keys, eng.module_of, shapes, eng.per_token,
                              fmt=fmt, pool=pool, batch_size=batch_size, command=command)  # fmt: skip
    job = Job(lm=tm, items=[ImageItem(t, "") for t in items], root=Path("."), specs=specs, keys=eng.keys,
              shapes=shapes, metadata=metadata, fmt=fmt, batch_size=batch_size, workers=0, precision="fp32",
              channels_last=False, top_k=None, skip_bad_images=False, start=0, stop=len(items), kind="texts",
              unit="text")  # fmt: skip
    return run(job, out=out, overwrite=overwrite, progress=progress, engine=eng)


class _TextEngine:
    """The engine of :func:`visreps.extraction.run` for texts: tokenises batches and runs the hooked text tower."""

    def __init__(self, tm, specs: list, pool: str, batch_size: int) -> None:
        from .capture import make_capture

        self.tm, self.pool, self.batch_size = tm, pool, batch_size
        self.keys = [k for s in specs for k in s.keys]
        self.module_of = {k: s.module for s in specs for k in s.keys}
        self.cap = make_capture(tm, specs)
        self.per_token: set[str] = set()  # layers with one output per token position

    def forward(self, tokens) -> dict[str, np.ndarray]:
        outs = self.cap.run(tokens)
        tokens = tokens.cpu()
        self.per_token.update(k for k in self.keys if outs[k].dim() == 3)
        return {
            k: np.asarray(_pool_tokens(outs[k], tokens, self.pool, self.tm.text_pool, self.module_of[k]))
            for k in self.keys
        }

    def dry_run(self) -> tuple[dict[str, tuple], int]:
        """Per-text output shapes of every layer, and the context length, from one blank text."""
        import torch

        dummy = self.tm.dummy_input()
        with self.cap, torch.inference_mode():
            shapes = {k: tuple(v.shape[1:]) for k, v in self.forward(dummy).items()}
        return shapes, int(dummy.shape[-1])

    def batches(self, job: Job, todo: Sequence[ImageItem]) -> Iterator[Batch]:
        import torch

        with self.cap, torch.inference_mode():
            for start in range(0, len(todo), self.batch_size):
                chunk = [it.path for it in todo[start : start + self.batch_size]]
                yield Batch(list(range(start, start + len(chunk))), [], self.forward(self.tm.tokenize(chunk)))


def _text_metadata(
    lm,
    items: list[str],
    source_file: Path | None,
    context_length: int,
    keys: list[str],
    module_of: dict[str, str],
    shapes: dict[str, tuple],
    per_token: set[str],
    *,
    fmt: str,
    pool: str,
    batch_size: int,
    command: str | None,
) -> RunRecord:
    """The metadata record of a text extraction (see the module docstring)."""
    from .models.clip import import_open_clip
    from .storage.record import layer_record, new_record

    n = len(items)
    versions = _versions()
    versions["open_clip_torch"] = import_open_clip().__version__
    texts = {
        "file": str(source_file) if source_file else None,
        "n": n,
        "texts_sha256": hashlib.sha256("\n".join(items).encode("utf-8")).hexdigest(),
        "context_length": context_length,
    }
    layers = {
        k: layer_record(k, module=module_of[k], pool=pool if k in per_token else "none", shape=[n, *shapes[k]], fmt=fmt)
        for k in keys
    }
    options = {"batch_size": batch_size, "device": str(lm.device), "pool": pool}
    return new_record(
        "text", lm, layers=layers, fmt=fmt, options=options, command=command, source=texts, versions_=versions
    )
