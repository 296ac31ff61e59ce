"""Finite or refused: NaN and inf are found in blocks of rows and reported with the layer, the row and the image."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import VisrepsError


def first_nonfinite(arr: Any, *, chunk_bytes: int = 64 * 2**20) -> tuple[int, float] | None:
    """``(row, value)`` of the first row of ``arr`` (rows first) holding NaN or ±inf, or ``None``.

    Read in blocks of rows (``chunk_bytes`` each), so a memory-mapped or HDF5 layer is never held whole.
    """
    if len(arr) == 0 or np.dtype(arr.dtype).kind not in "fc":
        return None
    row_bytes = max(1, int(np.prod(arr.shape[1:], dtype=np.int64)) * np.dtype(arr.dtype).itemsize)
    step = max(1, chunk_bytes // row_bytes)
    for r0 in range(0, len(arr), step):
        block = np.asarray(arr[r0 : r0 + step])
        with np.errstate(over="ignore", invalid="ignore"):
            total = block.sum()
        if np.isfinite(total):  # one fast pass: NaN and inf propagate; an overflow only costs the exact pass
            continue
        bad = ~np.isfinite(block.reshape(len(block), -1))
        if bad.any():
            r, c = np.argwhere(bad)[0]
            return r0 + int(r), float(block.reshape(len(block), -1)[r, c])
    return None


class NonFiniteError(VisrepsError):
    """A layer gave NaN or inf: the layer, the output row, the value, the image (when known) and the output."""

    def __init__(self, layer: str, row: int, value: float, where: str, image: str | None = None) -> None:
        self.layer, self.row, self.value, self.where, self.image = layer, row, value, where, image
        what = f"image {image!r} (row {row})" if image is not None else f"row {row}"
        super().__init__(
            f"layer {layer!r} gives a non-finite value ({value}) for {what}; features must be finite, so {where} "
            "is left unfinished. Check the weights (a file of NaNs?) and the inputs, or extract with --precision fp32 "
            "(float16 overflows to inf)"
        )

    def naming(self, image: str) -> NonFiniteError:
        """The same error, naming the image of its row."""
        return NonFiniteError(self.layer, self.row, self.value, self.where, image)


def check_finite(
    batch: Mapping[str, Any], start: int, *, names: Sequence[str] | None = None, where: str = "the output"
) -> None:
    """Refuse a batch of layer arrays (rows ``start, start+1, ...``) holding NaN or inf.

    Raises:
        NonFiniteError: naming the layer, the value, the first such row (and its image, ``names[i]``) and ``where``.
    """
    for layer, rows in batch.items():
        hit = first_nonfinite(rows)
        if hit is None:
            continue
        i, value = hit
        raise NonFiniteError(layer, start + i, value, where, names[i] if names is not None and i < len(names) else None)
