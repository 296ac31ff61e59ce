"""Representational dissimilarity matrices (RDMs) and their comparison.

An RDM holds, for every pair of conditions (images, rows of a feature matrix), how dissimilar
their representations are. :func:`compute_rdm` returns the square, symmetric ``n × n`` float64
matrix with a zero diagonal; :func:`upper_triangle` gives its condensed form (the pairs ``i < j``
in row-major order, the same order as :func:`scipy.spatial.distance.pdist`), and
:func:`squareform` goes back.

All RDM methods are computed from one Gram matrix accumulated over blocks of features with
matrix products in float64 (BLAS ``dsyrk`` on the CPU, or torch on a CUDA GPU when available), so
wide layers never need to be in memory and a memory-mapped ``.npy`` is read once.

Each RDM method and each comparison is one function registered under its name in
:data:`visreps.options` (:func:`rdm_method`, :func:`comparison`), its formula in its docstring.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from ..errors import VisrepsError
from ..options import COMPARISONS
from ..options import RDM_METHODS as METHODS
from ._source import FeatureSource, stream_gram

_COMPARISON_ALIASES = {
    "tau_b": "kendall",
    "kendall_tau_b": "kendall",
    "tau-b": "kendall",
    "tau-a": "tau_a",
    "kendall_tau_a": "tau_a",
}

# a row whose variance is below this fraction of its energy (Σx²) counts as constant
_CONSTANT_RTOL = 1e-20


def _known(value: str, valid: Sequence[str], what: str, aliases: dict[str, str] | None = None) -> str:
    """``value`` lower-cased (and un-aliased) when it is one of ``valid``, else an error naming ``what``."""
    v = str(value).lower()
    v = (aliases or {}).get(v, v)
    if v not in valid:
        raise VisrepsError(f"{what} {value!r} is not known; use one of {', '.join(valid)}")
    return v


def check_method(method: str) -> str:
    """The RDM method ``method`` lower-cased; raises :class:`VisrepsError` for an unknown one."""
    return _known(method, METHODS, "RDM method")


def check_comparison(method: str) -> str:
    """The comparison ``method`` lower-cased, aliases resolved (``tau_b`` → ``kendall``); raises for an unknown one."""
    return _known(method, COMPARISONS, "comparison method", _COMPARISON_ALIASES)


# --------------------------------------------------------------------------- RDMs


def compute_rdm(
    features: Any,
    method: str = "correlation",
    *,
    sigma: float | None = None,
    block_size: int | None = None,
    device: Any = "auto",
    condensed: bool = False,
    name: str = "features",
) -> np.ndarray:
    """The representational dissimilarity matrix of the rows of ``features``.

    Rows are conditions (images); N-D feature arrays are flattened to ``(n, features)``. The methods, one
    function each in :data:`RDM_FUNCTIONS` whose docstring holds its formula (``x_i`` the i-th row):

    * ``correlation`` (:func:`correlation_rdm`): ``1 − r_ij``, ``r_ij`` the Pearson correlation of ``x_i``
      and ``x_j`` across features; in [0, 2]. Same as ``pdist(X, "correlation")``.
    * ``cosine`` (:func:`cosine_rdm`): ``1 − x_i·x_j / (‖x_i‖ ‖x_j‖)``; in [0, 2]. Same as ``pdist(X, "cosine")``.
    * ``euclidean`` (:func:`euclidean_rdm`): ``‖x_i − x_j‖`` (not squared, not divided by the number of
      features). ``sqeuclidean`` (:func:`sqeuclidean_rdm`): ``‖x_i − x_j‖²``. Same as ``pdist``.
    * ``gaussian`` (:func:`gaussian_rdm`): ``1 − exp(−‖x_i − x_j‖² / (2σ²))``, in [0, 1). Bandwidth rule:
      unless ``sigma`` is given, ``σ`` is the median of the pairwise Euclidean distances (``np.median(pdist(X))``).

    How it is computed: one pass over blocks of ``block_size`` features accumulates the Gram
    matrix ``G = X Xᵀ`` in float64 (for the Euclidean family of feature-centred ``X``, for
    ``correlation`` of row-shifted ``X``, which is exact algebra that avoids cancellation); the
    distances follow from ``G``: ``‖x_i − x_j‖² = G_ii + G_jj − 2 G_ij``, cosine and correlation
    similarities are ``G_ij / √(G_ii G_jj)`` of the raw and the row-centred data. Round-off makes
    tiny negative squared distances, which are set to 0; the diagonal is exactly 0, the matrix
    exactly symmetric. The result agrees with scipy's ``pdist`` to about 1e-12 relative.

    Memory: the ``n × n`` result plus two float64 blocks of ``n × block_size`` (one in use, one
    being read). A memory-mapped ``.npy`` is read from its file block by block and never held or mapped.

    Args:
        features: array-like ``(n_images, ...)``: ndarray, ``np.memmap`` (e.g. from
            :func:`visreps.load_features`), torch tensor, or the path of a ``.npy`` file.
        method: one of ``correlation`` (default), ``cosine``, ``euclidean``, ``sqeuclidean``,
            ``gaussian``.
        sigma: bandwidth of ``gaussian`` (> 0); ``None`` uses the median rule above.
        block_size: features (columns) per block; default keeps one float64 block ≈128 MB
            (``block_size = 128 MB / (8 · n)``). The result does not depend on it beyond round-off.
        device: ``"auto"`` (default: CUDA via torch when a GPU is available, else numpy/BLAS on the
            CPU), ``"cpu"``, ``"cuda"``/``"cuda:N"``, or a ``torch.device``. Always float64 (on
            consumer GPUs float64 is slow; ``device="cpu"`` may then be faster).
        condensed: return the condensed vector of the pairs ``i < j`` (``pdist`` order) instead.
        name: how error messages call the features (e.g. ``"layer 'fc' of 'out/'"``).

    Returns:
        ``(n, n)`` float64 symmetric matrix with zero diagonal (or its condensed ``n(n−1)/2`` vector).

    Raises:
        VisrepsError: an unknown method, fewer than 2 rows, NaN/inf in the features, constant rows
            (correlation) or all-zero rows (cosine), for which the distance is undefined.
    """
    method = check_method(method)
    src = FeatureSource(features, name=name)
    if src.n < 2:
        raise VisrepsError(f"an RDM needs at least 2 rows (images); features have shape {src.shape_in}")
    if sigma is not None and method != "gaussian":
        raise VisrepsError(f"sigma is the bandwidth of method='gaussian'; it has no meaning for method={method!r}")
    if sigma is not None:
        _check_sigma(sigma)
    rdm = RDM_FUNCTIONS[method](src, sigma=sigma, block_size=block_size, device=device)
    return upper_triangle(rdm, check=False) if condensed else rdm


# --------------------------------------------------------------------------- the RDM methods, one entry each

#: An RDM method: ``f(src, *, sigma, block_size, device)`` → the square ``n × n`` float64 RDM of the rows of
#: ``src`` (a :class:`~visreps.analysis._source.FeatureSource`; ``sigma`` is already checked, ``None`` unless the
#: method is ``gaussian``). Its docstring holds its formula.
RDMFunction = Callable[..., np.ndarray]
#: The RDM methods by name, in the order of :data:`visreps.options.RDM_METHODS` (a test ties the two).
RDM_FUNCTIONS: dict[str, RDMFunction] = {}
#: Comparisons of two condensed RDMs ``f(x, y) -> float``, in the order of :data:`visreps.options.COMPARISONS`.
COMPARISON_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {}

_F = TypeVar("_F", bound=Callable[..., Any])


def _register(registry: dict[str, Any], valid: Sequence[str], name: str) -> Callable[[_F], _F]:
    if name not in valid:  # a programming error: the option value comes first (visreps/options.py)
        raise ValueError(f"{name!r} is not in visreps.options ({', '.join(valid)}); add it there first")

    def add(func: _F) -> _F:
        registry[name] = func
        return func

    return add


def rdm_method(name: str) -> Callable[[_F], _F]:
    """Register an RDM method under ``name`` (which must be in :data:`visreps.options.RDM_METHODS`)."""
    return _register(RDM_FUNCTIONS, METHODS, name)


def comparison(name: str) -> Callable[[_F], _F]:
    """Register an RDM comparison under ``name`` (which must be in :data:`visreps.options.COMPARISONS`)."""
    return _register(COMPARISON_FUNCTIONS, COMPARISONS, name)


@rdm_method("correlation")
def correlation_rdm(src: FeatureSource, *, sigma: float | None, block_size: int | None, device: Any) -> np.ndarray:
    """``1 − r_ij``, ``r_ij`` the Pearson correlation of rows ``x_i`` and ``x_j`` across the ``p`` features:
    ``r = Σ(x_i − x̄_i)(x_j − x̄_j) / (‖x_i − x̄_i‖ ‖x_j − x̄_j‖)``; in [0, 2] (= ``pdist(X, "correlation")``).

    From the Gram matrix of the row-shifted features (exact algebra that avoids cancellation).
    """
    res = stream_gram(src, center="shift_rows", block_size=block_size, device=device)
    return _correlation_from_gram(res["G"], res["shift"], res["row_sums"], src.p)


@rdm_method("cosine")
def cosine_rdm(src: FeatureSource, *, sigma: float | None, block_size: int | None, device: Any) -> np.ndarray:
    """``1 − x_i·x_j / (‖x_i‖ ‖x_j‖)``; in [0, 2] (= ``pdist(X, "cosine")``). From the Gram matrix ``X Xᵀ``."""
    res = stream_gram(src, center="none", block_size=block_size, device=device)
    return _cosine_from_gram(res["G"])


def _sqdist(src: FeatureSource, block_size: int | None, device: Any) -> np.ndarray:
    """``‖x_i − x_j‖² = G_ii + G_jj − 2 G_ij`` from the Gram matrix of the feature-centred rows."""
    res = stream_gram(src, center="columns", block_size=block_size, device=device)
    return sqdist_from_gram(res["G"])


@rdm_method("euclidean")
def euclidean_rdm(src: FeatureSource, *, sigma: float | None, block_size: int | None, device: Any) -> np.ndarray:
    """``‖x_i − x_j‖``, the plain L2 distance (not squared, not divided by ``p``) (= ``pdist(X, "euclidean")``)."""
    rdm = _sqdist(src, block_size, device)
    np.sqrt(rdm, out=rdm)
    return rdm


@rdm_method("sqeuclidean")
def sqeuclidean_rdm(src: FeatureSource, *, sigma: float | None, block_size: int | None, device: Any) -> np.ndarray:
    """``‖x_i − x_j‖²`` (= ``pdist(X, "sqeuclidean")``)."""
    return _sqdist(src, block_size, device)


@rdm_method("gaussian")
def gaussian_rdm(src: FeatureSource, *, sigma: float | None, block_size: int | None, device: Any) -> np.ndarray:
    """``1 − exp(−‖x_i − x_j‖² / (2σ²))``, one minus a Gaussian (RBF) kernel of the Euclidean distances, in
    [0, 1); ``σ = sigma``, or the median of the ``n(n−1)/2`` pairwise Euclidean distances (``np.median(pdist(X))``).
    """
    return _gaussian_from_sqdist(_sqdist(src, block_size, device), sigma)


def _check_sigma(sigma) -> float:
    try:
        s = float(sigma)
    except (TypeError, ValueError):
        s = float("nan")
    if not np.isfinite(s) or s <= 0:
        raise VisrepsError(f"sigma must be a positive number (the Gaussian bandwidth), got {sigma!r}")
    return s


def _row_blocks(n: int, rb: int = 1024):
    for i0 in range(0, n, rb):
        yield i0, min(n, i0 + rb)


def sqdist_from_gram(G: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances from a Gram matrix, in place: ``G_ii + G_jj − 2 G_ij`` (≥ 0, zero diagonal)."""
    d = np.diag(G).copy()
    for i0, i1 in _row_blocks(G.shape[0]):
        blk = G[i0:i1]
        blk *= -2.0
        blk += d[i0:i1, None] + d[None, :]  # (d_i + d_j) − 2 G_ij: exactly symmetric
        np.maximum(blk, 0.0, out=blk)
    np.fill_diagonal(G, 0.0)
    return G


def _similarity_to_distance(G: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``1 − G_ij / (scale_i scale_j)`` in place, clipped to [0, 2], zero diagonal."""
    inv = 1.0 / scale
    for i0, i1 in _row_blocks(G.shape[0]):
        blk = G[i0:i1]
        blk *= inv[i0:i1, None] * inv[None, :]  # G_ij (s_i s_j)⁻¹: exactly symmetric
        np.subtract(1.0, blk, out=blk)
        np.clip(blk, 0.0, 2.0, out=blk)
    np.fill_diagonal(G, 0.0)
    return G


def _rows_text(idx) -> str:
    idx = [int(i) for i in idx]
    return ", ".join(map(str, idx[:8])) + (f" ... ({len(idx)} rows)" if len(idx) > 8 else "")


def _cosine_from_gram(G: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.diag(G))
    bad = np.flatnonzero(norms == 0)
    if len(bad):
        raise VisrepsError(
            f"rows {_rows_text(bad)} of the features are all zero: their cosine distance is undefined; "
            "drop those images or use method='euclidean'"
        )
    return _similarity_to_distance(G, norms)


def _correlation_from_gram(G: np.ndarray, shift: np.ndarray, row_sums: np.ndarray, p: int) -> np.ndarray:
    # G = Y Yᵀ with Y = X − shift; row-centred Yc Ycᵀ = G − (Y1)(Y1)ᵀ / p
    if p < 2:
        raise VisrepsError("correlation distance needs at least 2 features per image; use method='euclidean'")
    energy = np.diag(G) + 2.0 * shift * row_sums + p * shift**2  # Σ x² per row
    m = row_sums / p
    for i0, i1 in _row_blocks(G.shape[0]):
        G[i0:i1] -= p * (m[i0:i1, None] * m[None, :])
    var = np.diag(G).copy()
    bad = np.flatnonzero(var <= _CONSTANT_RTOL * energy)
    if len(bad):
        raise VisrepsError(
            f"rows {_rows_text(bad)} of the features are constant (zero variance across features): their "
            "correlation distance is undefined; drop those images or use method='euclidean'"
        )
    return _similarity_to_distance(G, np.sqrt(var))


def median_distance(sqdist: np.ndarray) -> float:
    """Median of the pairwise Euclidean distances ``i < j`` given the square matrix of squared distances."""
    v = upper_triangle(sqdist, check=False)
    np.sqrt(v, out=v)  # median of the distances (not the root of the median of squares: they differ for even counts)
    return float(np.median(v))


def _gaussian_from_sqdist(sq: np.ndarray, sigma: float | None) -> np.ndarray:
    if sigma is None:
        s = median_distance(sq)
        if s <= 0:
            raise VisrepsError(
                "the median pairwise distance is 0 (most images have identical features), so the default "
                "Gaussian bandwidth is undefined; pass sigma=<positive number>"
            )
    else:
        s = _check_sigma(sigma)
    f = -1.0 / (2.0 * s * s)
    for i0, i1 in _row_blocks(sq.shape[0]):
        blk = sq[i0:i1]
        blk *= f
        np.exp(blk, out=blk)
        np.subtract(1.0, blk, out=blk)
    np.fill_diagonal(sq, 0.0)
    return sq


# --------------------------------------------------------------------------- square ↔ condensed


def upper_triangle(rdm: Any, *, check: bool = True) -> np.ndarray:
    """The condensed form of a square RDM: entries ``i < j`` in row-major order (``pdist`` order).

    A 1-D input is taken to be condensed already and returned as float64.
    """
    a = np.asarray(rdm, dtype=np.float64)
    if a.ndim == 1:
        if check:
            n_from_condensed(len(a))
        return a
    if check:
        check_square(a)
    n = a.shape[0]
    out = np.empty(n * (n - 1) // 2, dtype=np.float64)
    k = 0
    for i in range(n - 1):
        m = n - 1 - i
        out[k : k + m] = a[i, i + 1 :]
        k += m
    return out


def squareform(v: Any) -> np.ndarray:
    """Square symmetric matrix (zero diagonal) from a condensed vector; a square input is returned as is."""
    a = np.asarray(v, dtype=np.float64)
    if a.ndim == 2:
        check_square(a)
        return a
    n = n_from_condensed(len(a))
    out = np.zeros((n, n), dtype=np.float64)
    k = 0
    for i in range(n - 1):
        m = n - 1 - i
        out[i, i + 1 :] = a[k : k + m]
        out[i + 1 :, i] = a[k : k + m]
        k += m
    return out


def n_from_condensed(m: int) -> int:
    n = int(round((1 + np.sqrt(1 + 8 * m)) / 2))
    if n * (n - 1) // 2 != m or m < 1:
        raise VisrepsError(
            f"a vector of length {m} is not a condensed RDM (its length must be n(n−1)/2 for some n ≥ 2); "
            "pass the square matrix instead"
        )
    return n


def check_square(a: np.ndarray, name: str = "RDM") -> None:
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise VisrepsError(
            f"{name} must be a square matrix or a condensed vector, got shape {tuple(a.shape)}; "
            "to get an RDM from features use compute_rdm(features)"
        )
    if a.shape[0] < 2:
        raise VisrepsError(f"{name} must have at least 2 conditions, got shape {tuple(a.shape)}")


def rank_transform(rdm: Any) -> np.ndarray:
    """Ranks of the dissimilarities ``i < j`` (ties averaged) scaled to (0, 1], as a square matrix with zero
    diagonal."""
    from scipy.stats import rankdata

    v = upper_triangle(rdm)
    r = rankdata(v) / len(v)
    return squareform(r)


# --------------------------------------------------------------------------- comparison


class RDMCorrelation(float):
    """The correlation of two RDMs: a float with the method, and the bootstrap interval if asked.

    Attributes:
        r: the correlation (also the float value itself).
        method: ``pearson``, ``spearman``, ``kendall`` (tau-b) or ``tau_a``.
        n_conditions: conditions (rows) of each RDM; ``n_pairs = n(n−1)/2`` entries were correlated.
        ci_low, ci_high: bootstrap percentile interval (``None`` without bootstrap).
        ci: its level (e.g. 0.95); ``samples``: the bootstrap correlations (``None`` without).
    """

    method: str
    n_conditions: int
    ci: float | None
    ci_low: float | None
    ci_high: float | None
    samples: np.ndarray | None

    def __new__(
        cls,
        r: float,
        *,
        method: str,
        n_conditions: int,
        ci: float | None = None,
        ci_low: float | None = None,
        ci_high: float | None = None,
        samples: np.ndarray | None = None,
    ):
        obj = super().__new__(cls, r)
        obj.method = method
        obj.n_conditions = int(n_conditions)
        obj.ci = ci
        obj.ci_low = ci_low
        obj.ci_high = ci_high
        obj.samples = samples
        return obj

    @property
    def r(self) -> float:
        return float(self)

    @property
    def n_pairs(self) -> int:
        return self.n_conditions * (self.n_conditions - 1) // 2

    def __reduce__(self):
        state = (float(self), self.method, self.n_conditions, self.ci, self.ci_low, self.ci_high, self.samples)
        return (_make_rdm_correlation, state)

    def __repr__(self) -> str:
        s = f"RDMCorrelation(r={float(self):.6g}, method={self.method!r}, n_conditions={self.n_conditions}"
        if self.ci_low is not None:
            level = "" if self.ci is None else round(100 * self.ci)  # ci is set with ci_low by correlate_rdms
            s += f", ci{level}=[{self.ci_low:.4g}, {self.ci_high:.4g}]"
        return s + ")"


def _make_rdm_correlation(r, method, n, ci, lo, hi, samples):
    return RDMCorrelation(r, method=method, n_conditions=n, ci=ci, ci_low=lo, ci_high=hi, samples=samples)


def _vector_pair(a, b) -> tuple[np.ndarray, np.ndarray, int]:
    va = upper_triangle(a)
    vb = upper_triangle(b)
    if len(va) != len(vb):
        raise VisrepsError(
            f"the RDMs have different numbers of conditions ({n_from_condensed(len(va))} and "
            f"{n_from_condensed(len(vb))}); both must describe the same images in the same order"
        )
    for name, v in (("first", va), ("second", vb)):
        if not np.isfinite(v).all():
            raise VisrepsError(
                f"the {name} RDM has {int((~np.isfinite(v)).sum())} NaN/inf entries above the diagonal; "
                "fill or drop those conditions before comparing"
            )
    return va, vb, n_from_condensed(len(va))


def _statistic(result: Any) -> float:
    """The ``statistic`` of a ``scipy.stats`` result, as a float.

    Those results are tuple bunches whose classes scipy builds at run time, so a type checker sees
    none of their fields: ``result`` is ``Any`` here and nowhere else.
    """
    return float(result.statistic)


@comparison("pearson")
def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's ``Σ(x − x̄)(y − ȳ) / (‖x − x̄‖ ‖y − ȳ‖)`` (= ``scipy.stats.pearsonr``)."""
    from scipy import stats

    return _statistic(stats.pearsonr(x, y))


@comparison("spearman")
def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho: Pearson's r of the ranks, ties given their average rank (= ``scipy.stats.spearmanr``)."""
    from scipy import stats

    return _statistic(stats.spearmanr(x, y))


@comparison("kendall")
def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b: ``(C − D) / √((m0 − t_x)(m0 − t_y))``, ``C``/``D`` the concordant/discordant pairs,
    ``m0 = m(m−1)/2``, ``t_x``/``t_y`` the pairs tied in ``x``/``y`` (= ``scipy.stats.kendalltau``)."""
    from scipy import stats

    return _statistic(stats.kendalltau(x, y, variant="b"))


def _tie_pairs(v: np.ndarray) -> int:
    _, counts = np.unique(v, return_counts=True)
    counts = counts.astype(np.int64)
    return int((counts * (counts - 1) // 2).sum())


@comparison("tau_a")
def kendall_tau_a(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-a: ``(concordant − discordant) / (m(m−1)/2)`` over all pairs of the ``m`` entries.

    Tied pairs (in ``x`` or ``y``) count as neither. Computed in O(m log m) from scipy's tau-b:
    ``concordant − discordant = tau_b · √((m0 − t_x)(m0 − t_y))`` with ``m0 = m(m−1)/2`` and
    ``t_x``, ``t_y`` the pairs tied in ``x`` and in ``y`` (rounded to the integer it is).
    """
    from scipy.stats import kendalltau

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    m = len(x)
    m0 = m * (m - 1) // 2
    tx, ty = _tie_pairs(x), _tie_pairs(y)
    if tx == m0 or ty == m0:
        return float("nan")
    tau_b = _statistic(kendalltau(x, y, variant="b"))
    s = round(float(tau_b) * np.sqrt(float(m0 - tx) * float(m0 - ty)))
    return s / m0


def _correlate_vectors(x: np.ndarray, y: np.ndarray, method: str) -> float:
    """The comparison ``method`` (a key of :data:`COMPARISON_FUNCTIONS`, already checked) of two condensed RDMs."""
    return COMPARISON_FUNCTIONS[method](x, y)


def correlate_rdms(
    a: Any, b: Any, method: str = "pearson", *, n_bootstrap: int = 0, ci: float = 0.95, seed: int | None = 0
) -> RDMCorrelation:
    """Correlate two RDMs over their upper triangles (pairs ``i < j``, diagonal excluded).

    Methods (``x``, ``y`` the two condensed vectors of ``m = n(n−1)/2`` dissimilarities), one function each
    in :data:`COMPARISON_FUNCTIONS` whose docstring holds its formula: ``pearson`` (:func:`pearson`,
    = ``scipy.stats.pearsonr``), ``spearman`` (:func:`spearman`, Pearson on the ranks, ties averaged),
    ``kendall`` (:func:`kendall_tau_b`, tau-b, = ``scipy.stats.kendalltau``), ``tau_a``
    (:func:`kendall_tau_a`, ``(C − D) / (m(m−1)/2)``, recommended for RDMs with tied entries such as
    categorical model RDMs; Nili et al. 2014).

    Only the upper triangle is read, so an asymmetric matrix (e.g. a confusion matrix) is compared
    on its entries above the diagonal.

    Bootstrap (``n_bootstrap > 0``): resample the ``n`` conditions with replacement, take both
    RDMs' entries for the pairs of resampled conditions that are distinct originals (a condition
    paired with its own copy has no dissimilarity), correlate, and report the percentile interval
    ``[(1 − ci)/2, (1 + ci)/2]``. ``seed`` makes it reproducible.

    Args:
        a, b: square RDMs (``n × n``) or condensed vectors, for the same conditions in the same order.
        method: ``pearson`` (default), ``spearman``, ``kendall`` (tau-b; ``tau_b`` also accepted) or ``tau_a``.
        n_bootstrap: bootstrap resamples for a confidence interval (0: none; 1 is refused).
        ci: interval level in (0, 1).
        seed: seed of the resampling.

    Returns:
        :class:`RDMCorrelation`, a float carrying ``method``, ``n_conditions`` and ``ci_low``/``ci_high``.
    """
    method = check_comparison(method)
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 0:
        raise VisrepsError(f"n_bootstrap must be an integer >= 0, got {n_bootstrap!r}")
    if n_bootstrap == 1:
        raise VisrepsError("n_bootstrap=1: one resample gives no interval; use 0 (none) or at least 2 (1000 is usual)")
    if n_bootstrap and not (isinstance(ci, (int, float)) and not isinstance(ci, bool) and 0 < ci < 1):
        raise VisrepsError(f"ci must be a level between 0 and 1 (e.g. 0.95), got {ci!r}")
    x, y, n = _vector_pair(a, b)
    for name, v in (("first", x), ("second", y)):
        if np.all(v == v[0]):
            raise VisrepsError(
                f"the {name} RDM is constant (all {len(v)} dissimilarities equal {v[0]:g}); a correlation with it "
                "is undefined"
            )
    r = _correlate_vectors(x, y, method)
    if not n_bootstrap:
        return RDMCorrelation(r, method=method, n_conditions=n)
    samples = bootstrap_conditions(x, y, n, method, n_bootstrap=int(n_bootstrap), seed=seed)
    ok = samples[np.isfinite(samples)]
    if len(ok) == 0:
        raise VisrepsError("every bootstrap resample gave an undefined correlation; use more conditions")
    lo, hi = np.percentile(ok, [100 * (1 - ci) / 2, 100 * (1 + ci) / 2])
    return RDMCorrelation(
        r, method=method, n_conditions=n, ci=float(ci), ci_low=float(lo), ci_high=float(hi), samples=samples
    )


def _condensed_index(n: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Index in the condensed vector of the pair (u, v), u < v."""
    return n * u - u * (u + 1) // 2 + (v - u - 1)


def bootstrap_conditions(
    x: np.ndarray, y: np.ndarray, n: int, method: str, *, n_bootstrap: int, seed: Any
) -> np.ndarray:
    """Correlations of ``n_bootstrap`` condition resamples (see :func:`correlate_rdms`); NaN where undefined."""
    rng = np.random.default_rng(seed)
    iu, ju = np.triu_indices(n, 1)
    out = np.empty(n_bootstrap)
    for k in range(n_bootstrap):
        s = rng.integers(0, n, size=n)
        si, sj = s[iu], s[ju]
        keep = si != sj
        u = np.minimum(si[keep], sj[keep])
        v = np.maximum(si[keep], sj[keep])
        idx = _condensed_index(n, u, v)
        xs, ys = x[idx], y[idx]
        if len(xs) < 3 or np.all(xs == xs[0]) or np.all(ys == ys[0]):
            out[k] = np.nan
            continue
        out[k] = _correlate_vectors(xs, ys, method)
    return out


def rdm_order(rdm: Any, *, method: str = "average") -> np.ndarray:
    """A leaf order of hierarchical clustering of the conditions (for plotting similar ones together).

    Uses :func:`scipy.cluster.hierarchy.linkage` on the RDM's condensed form (``method`` linkage)
    with ``optimal_ordering``.
    """
    from scipy.cluster.hierarchy import leaves_list, linkage

    v = upper_triangle(rdm)
    if n_from_condensed(len(v)) < 3:
        return np.arange(n_from_condensed(len(v)))
    return leaves_list(linkage(v, method=method, optimal_ordering=True))


def reorder(rdm: Any, order: Sequence[int] | np.ndarray) -> np.ndarray:
    """The RDM with rows and columns permuted to ``order`` (a permutation of ``range(n)``)."""
    a = squareform(rdm)
    o = np.asarray(order)
    n = a.shape[0]
    if (
        o.ndim != 1
        or len(o) != n
        or not np.issubdtype(o.dtype, np.integer)
        or not np.array_equal(np.sort(o), np.arange(n))
    ):
        raise VisrepsError(f"order must be a permutation of 0..{n - 1} (one index per condition)")
    return a[np.ix_(o, o)]
