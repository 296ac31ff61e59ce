"""``pt``: one PyTorch ``<layer>.pt`` per layer (a tensor), staged as ``.npy`` and converted at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ._base import Format
from .npy import StagedWriter


def _save(out: Path, arr: np.ndarray) -> None:
    import torch

    with open(out, "wb") as f:
        torch.save(torch.from_numpy(np.array(arr)), f)


class PtFormat(Format):
    name: ClassVar[str] = "pt"
    suffix: ClassVar[str] = ".pt"
    stage: ClassVar[str | None] = ".stage.npy"

    def extra_bytes(self, layer_bytes: list[int]) -> int:
        return max(layer_bytes, default=0)  # the staging copy of the layer being converted

    def open_layer(self, path, row_shape, n_rows, *, resume, size=0, dtype=np.float32) -> Any:
        return StagedWriter(path, row_shape, n_rows, dtype, convert=_save, resume=resume)

    def read(self, path, layer, handle, *, mmap, expected, dtype) -> Any:
        import torch

        return torch.load(path, map_location="cpu", weights_only=True).numpy()


FORMAT = PtFormat()
