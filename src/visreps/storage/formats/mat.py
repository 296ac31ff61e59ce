"""``mat``: one MATLAB ``<layer>.mat`` per layer (variable ``features``), staged as ``.npy`` and converted at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ._base import Format
from .npy import StagedWriter


def _save(out: Path, arr: np.ndarray) -> None:
    from scipy.io import savemat

    savemat(out, {"features": np.asarray(arr)}, do_compression=False)


class MatFormat(Format):
    name: ClassVar[str] = "mat"
    suffix: ClassVar[str] = ".mat"
    stage: ClassVar[str | None] = ".stage.npy"

    def extra_bytes(self, layer_bytes: list[int]) -> int:
        return max(layer_bytes, default=0)  # the staging copy of the layer being converted

    def open_layer(self, path, row_shape, n_rows, *, resume, size=0, dtype=np.float32) -> Any:
        return StagedWriter(path, row_shape, n_rows, dtype, convert=_save, resume=resume)

    def read(self, path, layer, handle, *, mmap, expected, dtype) -> Any:
        from scipy.io import loadmat

        return loadmat(path)["features"]


FORMAT = MatFormat()
