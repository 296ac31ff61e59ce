"""``thingsvision.core.cka`` (2.x): :func:`get_cka` and the object whose ``compare(X, Y)`` gives CKA.

A thin wrapper over :func:`visreps.analysis.cka` with THINGSvision 2.7.3's signature and defaults.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from ....errors import VisrepsError
from .._warn import warn_once

__all__ = ["CKA", "get_cka"]

BACKENDS = ("numpy", "torch")


@dataclasses.dataclass(eq=False)
class CKA:
    """What :func:`get_cka` returns: ``compare(X, Y)`` is the CKA of two feature matrices (rows = images).

    Maps to ``visreps.analysis.cka(X, Y, kernel=..., unbiased=..., sigma=...)``:
    ``HSIC(K, L) / √(HSIC(K, K) · HSIC(L, L))`` with ``K``, ``L`` the centred kernel matrices of
    the rows; ``linear``: ``K = X Xᵀ``; ``rbf``: ``K_ij = exp(−‖x_i − x_j‖² / (2σ²))`` with
    ``σ = sigma`` (2.7.3's default is 1.0), or for ``sigma=None`` the square root of the median
    non-zero squared distance, per matrix (``torch``: the lower middle value, as ``torch.median``);
    ``unbiased``: the unbiased HSIC estimator.
    """

    backend: str
    m: int
    kernel: str
    unbiased: bool
    sigma: float | None
    device: Any

    def _sigma(self, X: np.ndarray) -> float:
        if self.sigma is not None:
            return float(self.sigma)
        from ....analysis import compute_rdm

        sq = compute_rdm(X, "sqeuclidean", device="cpu")
        nonzero = sq[sq != 0]
        if not nonzero.size:
            raise VisrepsError("all rows are identical, so the RBF bandwidth (median distance) is 0; pass sigma")
        if self.backend == "torch":  # torch.median, as 2.7.3's torch backend: the lower of the two middle values
            return math.sqrt(float(np.sort(nonzero)[(nonzero.size - 1) // 2]))
        return math.sqrt(float(np.median(nonzero)))

    def compare(self, X: Any, Y: Any) -> Any:
        """CKA of ``X`` and ``Y`` (a float; a 0-d float64 tensor for ``backend='torch'``)."""
        from ....analysis import cka

        X = _numpy(X)
        Y = _numpy(Y)
        sig = (self._sigma(X), self._sigma(Y)) if self.kernel == "rbf" else None
        value = cka(X, Y, kernel=self.kernel, unbiased=self.unbiased, sigma=sig, device="cpu")
        if self.backend == "torch":
            import torch

            return torch.tensor(value, dtype=torch.float64)
        return np.float64(value)


def _numpy(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def get_cka(
    backend: str,
    m: int,
    kernel: str = "linear",
    unbiased: bool = False,
    sigma: float | None = 1.0,
    device: str | None = None,
    verbose: bool = False,
) -> CKA:
    """THINGSvision 2.x's ``get_cka``: an object whose ``compare(X, Y)`` gives CKA (see :class:`CKA`).

    Maps to :func:`visreps.analysis.cka`. ``backend``: ``numpy`` or ``torch`` (the result's type;
    visreps computes in float64 either way, on the CPU). ``m``: the number of images (kept for
    2.x scripts). ``device`` is required for ``torch``, as in 2.7.3.
    """
    warn_once("visreps.compat.thingsvision.core.cka.get_cka")
    if backend not in BACKENDS:
        raise VisrepsError(f"backend {backend!r} is not valid; use 'numpy' or 'torch'")
    if kernel not in ("linear", "rbf"):
        raise VisrepsError(f"kernel {kernel!r} is not valid; use 'linear' or 'rbf'")
    if backend == "torch" and not isinstance(device, str):
        raise VisrepsError("get_cka(backend='torch') needs device='cpu' or 'cuda', as in THINGSvision 2.x")
    return CKA(backend, m, kernel, bool(unbiased), sigma, device)
