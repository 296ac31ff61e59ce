"""Centered kernel alignment (CKA) between two representations of the same images.

For feature matrices ``X`` (n × p) and ``Y`` (n × q) whose rows are the same ``n`` images::

    CKA(K, L) = HSIC(K, L) / √(HSIC(K, K) · HSIC(L, L))

with ``K``, ``L`` kernel (Gram) matrices of the rows (Kornblith et al., 2019):

* ``linear``: ``K = Xc Xcᵀ``, ``Xc`` = ``X`` with every feature centred over the images.
* ``rbf``: ``K_ij = exp(−‖x_i − x_j‖² / (2σ²))``; unless given, ``σ`` is the median of the
  ``n(n−1)/2`` pairwise Euclidean distances of that matrix (the same rule as the ``gaussian`` RDM).

HSIC estimators, ``H = I − 11ᵀ/n``:

* biased (default): ``HSIC₀(K, L) = tr(K H L H) / (n − 1)²`` (Gretton et al., 2005).
* unbiased (``unbiased=True``, "debiased CKA"): with ``K̃``, ``L̃`` = ``K``, ``L`` with zeroed
  diagonals, ``HSIC₁ = [tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n−1)(n−2)) − 2/(n−2) · 1ᵀK̃L̃1] / (n(n−3))``
  (Song et al., 2012); needs ``n ≥ 4``.

CKA of a matrix with itself is 1; linear and RBF (median bandwidth) CKA are invariant to
orthogonal transforms and isotropic scaling of either matrix.

:func:`cka` takes two matrices whose rows are already the same images in the same order;
:func:`cka_table` takes output folders (or ``Features``) and matches their rows first, by image
content when the manifests record content hashes, else by image path (see
:mod:`visreps.analysis.compare`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import VisrepsError
from ..options import CKA_KERNELS as KERNELS
from ._params import check_choice
from ._source import FeatureSource, stream_gram
from .rsa import median_distance, sqdist_from_gram

if TYPE_CHECKING:
    import pandas as pd


# use the feature-space formula for linear CKA when both layers are this narrow (p, q) and n > p + q
_FEATURE_SPACE_MAX_BYTES = 512 * 2**20


def _check_kernel(kernel: str) -> str:
    return check_choice(kernel, KERNELS, "kernel", sep=" ")


def gram_matrix(
    features: Any,
    *,
    kernel: str = "linear",
    sigma: float | None = None,
    block_size: int | None = None,
    device: Any = "auto",
) -> np.ndarray:
    """Kernel matrix of the rows of ``features`` (n × n float64), as used by :func:`cka`.

    ``linear``: ``Xc Xcᵀ`` (features centred over rows). ``rbf``: ``exp(−‖x_i − x_j‖² / (2σ²))``
    with ``σ`` the median pairwise distance unless given. Features are streamed in column blocks
    (see :func:`visreps.analysis.compute_rdm`), so memory-mapped layers are never loaded whole.
    """
    kernel = _check_kernel(kernel)
    src = features if isinstance(features, FeatureSource) else FeatureSource(features)
    G = stream_gram(src, center="columns", block_size=block_size, device=device)["G"]
    if kernel == "linear":
        return G
    sq = sqdist_from_gram(G)
    if sigma is None:
        s = median_distance(sq)
        if s <= 0:
            raise VisrepsError(
                f"{src.name}: the median pairwise distance is 0, so the default RBF bandwidth is undefined; pass sigma"
            )
    else:
        s = _sigma(sigma)
    sq *= -1.0 / (2.0 * s * s)
    np.exp(sq, out=sq)
    return sq


def _sigma(sigma) -> float:
    try:
        s = float(sigma)
    except (TypeError, ValueError):
        s = float("nan")
    if not np.isfinite(s) or s <= 0:
        raise VisrepsError(
            f"sigma must be a positive number (the RBF bandwidth) or None for the median rule, got {sigma!r}"
        )
    return s


def _center_gram_inplace(K: np.ndarray) -> np.ndarray:
    """``H K H`` in place."""
    row = K.mean(axis=1)
    grand = row.mean()
    K -= row[:, None]
    K -= row[None, :]
    K += grand
    return K


def _dot(A: np.ndarray, B: np.ndarray) -> float:
    """``Σ A_ij B_ij`` without a temporary."""
    return float(np.vdot(np.ascontiguousarray(A).ravel(), np.ascontiguousarray(B).ravel()))


def _unbiased_terms(K: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Zero the diagonal of ``K`` in place; return it with ``1ᵀK̃1`` and ``K̃1``."""
    np.fill_diagonal(K, 0.0)
    r = K.sum(axis=1)
    return K, float(r.sum()), r


def _hsic1(Kt, sK, rK, Lt, sL, rL, n: int) -> float:
    return (_dot(Kt, Lt) + sK * sL / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * float(rK @ rL)) / (n * (n - 3))


def hsic(K: Any, L: Any, *, unbiased: bool = False) -> float:
    """Hilbert-Schmidt independence criterion of two ``n × n`` kernel matrices (formulas in the module doc).

    The inputs are not modified.
    """
    K = _check_gram(K, "K")
    L = _check_gram(L, "L")
    n = _same_n(K, L)
    if unbiased:
        _need_n(n, 4, "the unbiased HSIC")
        Kt, sK, rK = _unbiased_terms(K.copy())
        Lt, sL, rL = _unbiased_terms(L.copy())
        return _hsic1(Kt, sK, rK, Lt, sL, rL, n)
    _need_n(n, 2, "HSIC")
    return _dot(_center_gram_inplace(K.copy()), _center_gram_inplace(L.copy())) / (n - 1) ** 2


def cka_from_grams(K: Any, L: Any, *, unbiased: bool = False) -> float:
    """CKA of two kernel matrices: ``HSIC(K, L) / √(HSIC(K, K) HSIC(L, L))``. Inputs are not modified."""
    K = _check_gram(K, "K").copy()
    L = _check_gram(L, "L").copy()
    return _cka_inplace(K, L, unbiased=unbiased)


def _cka_inplace(K: np.ndarray, L: np.ndarray, *, unbiased: bool) -> float:
    n = _same_n(K, L)
    if unbiased:
        _need_n(n, 4, "unbiased CKA")
        Kt, sK, rK = _unbiased_terms(K)
        Lt, sL, rL = _unbiased_terms(L)
        kl = _hsic1(Kt, sK, rK, Lt, sL, rL, n)
        kk = _hsic1(Kt, sK, rK, Kt, sK, rK, n)
        ll = _hsic1(Lt, sL, rL, Lt, sL, rL, n)
    else:
        _need_n(n, 2, "CKA")
        _center_gram_inplace(K)
        _center_gram_inplace(L)
        kl, kk, ll = _dot(K, L), _dot(K, K), _dot(L, L)
    return _ratio(kl, kk, ll)


def _ratio(kl: float, kk: float, ll: float) -> float:
    for name, v in (("first", kk), ("second", ll)):
        if not v > 0:
            raise VisrepsError(
                f"the {name} representation has no variance across images (HSIC with itself is {v:.3g}); "
                "CKA is undefined: check that the images differ and the layer is not constant"
            )
    return float(kl / np.sqrt(kk * ll))


def _check_gram(K, name) -> np.ndarray:
    K = np.asarray(K, dtype=np.float64)
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise VisrepsError(
            f"{name} must be a square kernel matrix, got shape {tuple(K.shape)}; for features use cka(X, Y)"
        )
    return K


def _same_n(K, L) -> int:
    if K.shape[0] != L.shape[0]:
        raise VisrepsError(
            f"the two representations have different numbers of images ({K.shape[0]} and {L.shape[0]}); "
            "CKA needs the same images in the same order"
        )
    return K.shape[0]


def _need_n(n: int, k: int, what: str) -> None:
    if n < k:
        raise VisrepsError(f"{what} needs at least {k} images, got {n}")


def cka(
    X: Any,
    Y: Any,
    *,
    kernel: str = "linear",
    unbiased: bool = False,
    sigma: float | tuple[float, float] | None = None,
    block_size: int | None = None,
    device: Any = "auto",
    names: tuple[str, str] = ("X", "Y"),
) -> float:
    """Centered kernel alignment between two feature matrices with the same rows (images).

    See the module documentation for the formulas. Linear CKA of narrow layers with many images
    (``n > p + q``) uses the equivalent feature-space form ``‖Xcᵀ Yc‖²_F / (‖Xcᵀ Xc‖_F ‖Ycᵀ Yc‖_F)``
    (and its debiased counterpart), streaming rows; otherwise both Gram matrices are accumulated
    over column blocks in float64, so wide, memory-mapped layers are never loaded whole (memory:
    two ``n × n`` float64 matrices plus one block).

    Args:
        X, Y: array-likes ``(n, ...)`` (flattened per row), ``np.memmap``, tensors, or ``.npy`` paths.
        kernel: ``linear`` (default) or ``rbf``.
        unbiased: the unbiased HSIC estimator (debiased CKA) instead of the biased one.
        sigma: RBF bandwidth, one number for both or a pair ``(σ_X, σ_Y)``; ``None`` = median rule.
        block_size: features per block when streaming (default ≈128 MB per block).
        device: ``"auto"`` (default: CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, or a ``torch.device``.
        names: how error messages call ``X`` and ``Y`` (e.g. their layers and folders).

    Returns:
        The CKA value (1 for identical representations; the unbiased estimate can be slightly
        negative for unrelated ones).
    """
    kernel = _check_kernel(kernel)
    if not isinstance(unbiased, (bool, np.bool_)):
        raise VisrepsError(f"unbiased must be True or False, got {unbiased!r}")
    sx = FeatureSource(X, name=names[0])
    sy = FeatureSource(Y, name=names[1])
    if sx.n != sy.n:
        raise VisrepsError(f"X has {sx.n} rows and Y has {sy.n}; CKA needs the same images (rows) in the same order")
    if kernel == "rbf" and sigma is not None:
        sig = tuple(sigma) if isinstance(sigma, (tuple, list)) else (sigma, sigma)
        if len(sig) != 2:
            raise VisrepsError(f"sigma must be a number or a pair (sigma_X, sigma_Y), got {sigma!r}")
    elif sigma is not None:
        raise VisrepsError("sigma is the bandwidth of kernel='rbf'; it has no meaning for the linear kernel")
    else:
        sig = (None, None)
    if kernel == "linear" and _use_feature_space(sx, sy):
        return _linear_cka_features(sx, sy, unbiased=bool(unbiased), block_size=block_size)
    K = gram_matrix(sx, kernel=kernel, sigma=sig[0], block_size=block_size, device=device)
    L = gram_matrix(sy, kernel=kernel, sigma=sig[1], block_size=block_size, device=device)
    return _cka_inplace(K, L, unbiased=bool(unbiased))


def _use_feature_space(sx: FeatureSource, sy: FeatureSource) -> bool:
    p, q, n = sx.p, sy.p, sx.n
    return n > p + q and 8 * (p * q + p * p + q * q) <= _FEATURE_SPACE_MAX_BYTES


def _linear_cka_features(sx: FeatureSource, sy: FeatureSource, *, unbiased: bool, block_size: int | None) -> float:
    """Linear CKA from ``Xcᵀ Yc``, ``Xcᵀ Xc``, ``Ycᵀ Yc`` accumulated over row blocks (two passes).

    Biased: ``‖XcᵀYc‖²_F / (‖XcᵀXc‖_F ‖YcᵀYc‖_F)`` = ``tr(KL)`` etc. with ``K = Xc Xcᵀ``.
    Unbiased: with ``a_i = ‖xc_i‖²``, ``b_i = ‖yc_i‖²`` (the Gram diagonals) and centred data
    (``1ᵀK = 0``), Song's terms become ``tr(K̃L̃) = ‖XcᵀYc‖² − a·b``, ``1ᵀK̃1 = −Σa``,
    ``1ᵀK̃L̃1 = a·b``, so ``n(n−3) HSIC₁ = ‖XcᵀYc‖² − n/(n−2) a·b + Σa Σb / ((n−1)(n−2))``.
    """
    n = sx.n
    rows = max(1, min(sx.row_block(block_size), sy.row_block(block_size)))
    mx = np.zeros(sx.p)
    my = np.zeros(sy.p)
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        mx += sx.rows(r0, r1).sum(axis=0)
        my += sy.rows(r0, r1).sum(axis=0)
    mx /= n
    my /= n
    xy = np.zeros((sx.p, sy.p))
    xx = np.zeros((sx.p, sx.p))
    yy = np.zeros((sy.p, sy.p))
    a = np.empty(n)
    b = np.empty(n)
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        xb = sx.rows(r0, r1) - mx
        yb = sy.rows(r0, r1) - my
        xy += xb.T @ yb
        xx += xb.T @ xb
        yy += yb.T @ yb
        a[r0:r1] = np.einsum("ij,ij->i", xb, xb)
        b[r0:r1] = np.einsum("ij,ij->i", yb, yb)
    kl, kk, ll = _dot(xy, xy), _dot(xx, xx), _dot(yy, yy)
    if not unbiased:
        _need_n(n, 2, "CKA")
        return _ratio(kl, kk, ll)
    _need_n(n, 4, "unbiased CKA")

    def h(t, u, v):
        return t - n / (n - 2) * float(u @ v) + u.sum() * v.sum() / ((n - 1) * (n - 2))

    return _ratio(h(kl, a, b), h(kk, a, a), h(ll, b, b))


def cka_table(
    a: Any,
    b: Any = None,
    *,
    layers_a: Sequence[str] | str | None = None,
    layers_b: Sequence[str] | str | None = None,
    kernel: str = "linear",
    unbiased: bool = False,
    sigma: float | tuple[float, float] | None = None,
    block_size: int | None = None,
    device: Any = "auto",
) -> pd.DataFrame:
    """CKA between every layer of output folder ``a`` and every layer of ``b``: the Python form of ``visreps cka``.

    The rows of ``b`` are matched to those of ``a`` first: by image content when both manifests
    record content hashes (so the same images under other names or in another order are
    aligned), else by image path. Folders extracted from different images, also from different
    images under the same file names, are an error.

    Args:
        a: an output folder of ``visreps extract`` or a :class:`visreps.storage.Features`.
        b: the same for the second representation; ``None`` = among ``a``'s own layers.
        layers_a, layers_b: layers to use (default: all; ``layers_b`` defaults to ``layers_a``
            when ``b`` is ``None``).
        kernel, unbiased, sigma, block_size, device: as in :func:`cka`.

    Returns:
        DataFrame with ``a``'s layers as rows and ``b``'s as columns; ``attrs`` holds ``method``
        (e.g. ``"unbiased linear CKA"``), ``a``, ``b`` (the folder names) and ``n_images``.

    Raises:
        VisrepsError: the folders hold different images, a layer is missing, or as :func:`cka`.
    """
    import pandas as pd

    from .compare import collect_features

    kernel = _check_kernel(kernel)
    la = [layers_a] if isinstance(layers_a, str) else (list(layers_a) if layers_a is not None else None)
    lb = [layers_b] if isinstance(layers_b, str) else (list(layers_b) if layers_b is not None else None)
    if b is None:
        b, lb = a, (lb or la)
    name_a, name_b = _source_name(a), _source_name(b)
    # the folder names label the two sides in messages; "A" and "B" when they are the same
    ka, kb = (name_a, name_b) if name_a != name_b and name_a and name_b else ("A", "B")
    wanted = {k: v for k, v in ((ka, la), (kb, lb)) if v is not None}  # a side left out: all its layers
    sets = collect_features({ka: a, kb: b}, layers=wanted or None)
    set_a = [s for s in sets if s.model == ka]
    set_b = [s for s in sets if s.model == kb]

    def rows(s):
        return s.features if s.order is None else np.asarray(s.features)[s.order]

    table = np.empty((len(set_a), len(set_b)))
    for i, sa in enumerate(set_a):
        for j, sb in enumerate(set_b):
            table[i, j] = cka(
                rows(sa),
                rows(sb),
                kernel=kernel,
                unbiased=unbiased,
                sigma=sigma,
                block_size=block_size,
                device=device,
                names=(sa.where, sb.where),
            )
    df = pd.DataFrame(table, index=pd.Index([s.layer for s in set_a], name=name_a), columns=[s.layer for s in set_b])
    df.attrs.update(
        {
            "method": f"{'unbiased ' if unbiased else ''}{kernel} CKA",
            "a": name_a,
            "b": name_b,
            "n_images": set_a[0].n if set_a else 0,
        }
    )
    return df


def _source_name(src: Any) -> str:
    if isinstance(src, (str, os.PathLike)):
        return Path(src).name
    folder = getattr(src, "folder", None)
    return Path(folder).name if folder else (getattr(src, "model", "") or "features")
