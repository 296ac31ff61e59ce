"""``mat``: one MATLAB ``<layer>.mat`` per layer (variable ``features``), staged as ``.npy``, converted at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .npy import StagedFormat


class MatFormat(StagedFormat):
    name: ClassVar[str] = "mat"
    suffix: ClassVar[str] = ".mat"

    @staticmethod
    def convert(out: Path, arr: np.ndarray) -> None:
        from scipy.io import savemat

        savemat(out, {"features": np.asarray(arr)}, do_compression=False)

    def read(self, path, layer, handle, *, mmap, expected, dtype) -> Any:
        from scipy.io import loadmat

        return loadmat(path)["features"]


FORMAT = MatFormat()
