"""``pt``: one PyTorch ``<layer>.pt`` per layer (a tensor), staged as ``.npy`` and converted at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .npy import StagedFormat


class PtFormat(StagedFormat):
    name: ClassVar[str] = "pt"
    suffix: ClassVar[str] = ".pt"

    @staticmethod
    def convert(out: Path, arr: np.ndarray) -> None:
        import torch

        with open(out, "wb") as f:
            torch.save(torch.from_numpy(np.array(arr)), f)

    def read(self, path, layer, handle, *, mmap, expected, dtype) -> Any:
        import torch

        return torch.load(path, map_location="cpu", weights_only=True).numpy()


FORMAT = PtFormat()
