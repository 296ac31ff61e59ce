"""Reductions applied to every batch while extracting (``--reduce``, Python ``reduce=``).

Spellings of ``reduce``:

* ``srp:K`` — sparse random projection to K dimensions. The matrix of each layer is scikit-learn's
  ``SparseRandomProjection(n_components=K, random_state=S)`` fitted for the layer's width (default
  density ``1/sqrt(width)``), so anyone can rebuild it from ``metadata.json`` with scikit-learn; S is
  derived from the run's ``seed`` and the layer name (:func:`layer_seed`) and recorded.
* ``srp:auto`` (or ``srp:auto:EPS``) — K from the Johnson–Lindenstrauss bound
  (``sklearn.random_projection.johnson_lindenstrauss_min_dim``) for the number of images of the run
  and ``eps`` (default 0.1), recorded.
* ``pca:K`` (or ``pca:K:M``) — principal components fitted on a fit set: the images of
  ``reduce_fit`` (a folder) or the first M images of the run (default ``max(K, 1000)``), or a fit
  saved by an earlier run (``reduce_fit="…/pca_fit.npz"``). The fit is streamed with scikit-learn's
  ``IncrementalPCA`` (chunks of at least K rows, so it holds at most two chunks of each layer, never
  the whole fit set): a randomized solver needs every row in memory at once, which is what overflows
  memory (and LAPACK) for the wide early layers of a CNN.

A layer no wider than K is kept as it is (method ``none`` in the record, said in the plan).
Every layer's record lands in ``metadata.json`` under ``"reduce"``:
``{"<layer>": {"method": "srp" | "pca" | "none", "n_components": K, "random_state": S, ...}}``.

The SRP product itself is visreps' own: a numba kernel (``pip install visreps[reduce]``) that reads
the activations once, in feature order, and accumulates into a ``K × batch`` block per thread (which
stays in cache); without numba, torch's sparse CSR product. Both equal scikit-learn's ``transform``
within float32 rounding (tested).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import VisrepsError
from .options import REDUCE_METHODS as METHODS

PCA_FIT_FILE = "pca_fit.npz"
DEFAULT_EPS = 0.1
DEFAULT_PCA_FIT_IMAGES = 1000
_HOW = (
    "write srp:K (sparse random projection to K dimensions), srp:auto (K from the Johnson-Lindenstrauss bound), "
    "or pca:K (K principal components), e.g. --reduce srp:4096"
)


@dataclass(frozen=True)
class ReduceSpec:
    """A parsed ``reduce`` option."""

    method: str  # "srp" or "pca"
    k: int | None  # None: srp:auto
    eps: float | None = None  # srp:auto
    fit_images: int | None = None  # pca:K:M

    def __str__(self) -> str:
        if self.method == "srp" and self.k is None:
            return f"srp:auto:{self.eps}"
        return f"{self.method}:{self.k}" + (f":{self.fit_images}" if self.fit_images else "")


def parse_reduce(spec: Any) -> ReduceSpec | None:
    """``"srp:4096"``, ``"srp:auto"``, ``"srp:auto:0.2"``, ``"pca:100"``, ``"pca:100:2000"`` or ``None``."""
    if spec is None or spec == "none":
        return None
    if isinstance(spec, ReduceSpec):
        return spec
    if not isinstance(spec, str):
        raise VisrepsError(f"reduce={spec!r} is not valid; {_HOW}")
    parts = spec.strip().split(":")
    method = parts[0].lower()
    if method not in METHODS or len(parts) < 2:
        raise VisrepsError(f"unknown reduction {spec!r}; {_HOW}")
    try:
        if method == "srp" and parts[1] == "auto":
            if len(parts) > 3:
                raise ValueError
            eps = float(parts[2]) if len(parts) == 3 else DEFAULT_EPS
            if not 0 < eps < 1:
                raise VisrepsError(f"reduce {spec!r}: eps must be between 0 and 1 (e.g. srp:auto:0.1)")
            return ReduceSpec("srp", None, eps=eps)
        if len(parts) > (3 if method == "pca" else 2):
            raise ValueError
        k = int(parts[1])
        m = int(parts[2]) if len(parts) == 3 else None
    except ValueError:
        raise VisrepsError(f"reduction {spec!r} is not valid; {_HOW} (pca:K:M fits on the first M images)") from None
    if k < 1 or (m is not None and m < 1):
        raise VisrepsError(f"reduction {spec!r}: the number of components must be a positive integer")
    if m is not None and m < k:
        raise VisrepsError(
            f"reduction {spec!r}: a fit set of {m} images cannot give {k} components; fit on at least {k} images"
        )
    return ReduceSpec(method, k, fit_images=m)


def layer_seed(seed: int, layer: str) -> int:
    """The ``random_state`` of a layer's projection: the first 31 bits of sha256("<seed>:<layer>")."""
    return int.from_bytes(hashlib.sha256(f"{int(seed)}:{layer}".encode()).digest()[:4], "big") & 0x7FFFFFFF


def jl_components(n_images: int, eps: float) -> int:
    """K of ``srp:auto``: scikit-learn's Johnson–Lindenstrauss bound for ``n_images`` points and ``eps``."""
    from sklearn.random_projection import johnson_lindenstrauss_min_dim

    return int(johnson_lindenstrauss_min_dim(max(int(n_images), 2), eps=eps))


def _sklearn():
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise VisrepsError(
            "reductions (reduce=/--reduce) build their matrices with scikit-learn; "
            "install it with `pip install visreps[reduce]`"
        ) from None


def srp_matrix(width: int, k: int, random_state: int):
    """scikit-learn's sparse projection matrix ``(k, width)`` (scipy CSR, float32) for this seed."""
    _sklearn()
    import scipy.sparse as sp
    from sklearn.random_projection import SparseRandomProjection

    srp = SparseRandomProjection(n_components=int(k), random_state=random_state)  # type: ignore[arg-type]
    srp.fit(sp.csr_matrix((1, width), dtype=np.float32))
    return srp.components_


# --------------------------------------------------------------------------- applying SRP


def _numba_kernel():
    """The compiled SRP kernel, or ``None`` without numba."""
    global _KERNEL
    if _KERNEL is not None:
        return _KERNEL or None
    try:
        import numba
    except ImportError:
        _KERNEL = False
        return None

    @numba.njit(parallel=True, cache=True, nogil=True)
    def kernel(x, indptr, indices, data, k, n_parts):  # pragma: no cover - compiled
        # x: (B, W) float32, C-order; (indptr, indices, data): the transposed matrix (W × K) as CSR.
        # Each part reads its slice of features once and accumulates into its own K × B block.
        b, w = x.shape
        acc = np.zeros((n_parts, k, b), np.float32)
        for t in numba.prange(n_parts):
            j0 = t * w // n_parts
            j1 = (t + 1) * w // n_parts
            col = np.empty(b, np.float32)
            a = acc[t]
            for j in range(j0, j1):
                s = indptr[j]
                e = indptr[j + 1]
                if s == e:
                    continue
                for r in range(b):
                    col[r] = x[r, j]
                for p in range(s, e):
                    kk = indices[p]
                    v = data[p]
                    for r in range(b):
                        a[kk, r] += v * col[r]
        out = np.empty((b, k), np.float32)
        for kk in numba.prange(k):
            for r in range(b):
                total = np.float32(0.0)
                for t in range(n_parts):
                    total += acc[t, kk, r]
                out[r, kk] = total
        return out

    _KERNEL = kernel
    return kernel


_KERNEL: Any = None


def srp_backend() -> str:
    """``"numba"`` when numba is installed, else ``"torch"``: how visreps applies the projection."""
    return "numba" if _numba_kernel() is not None else "torch"


@dataclass
class SrpApply:
    """One layer's projection, ready to apply to batches: ``apply(x (B, width)) -> (B, K)`` float32."""

    matrix: Any  # scipy CSR (K, width)
    backend: str = "auto"
    _t: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.backend == "auto":
            self.backend = srp_backend()
        if self.backend == "numba":
            ct = self.matrix.T.tocsr().astype(np.float32)
            ct.sort_indices()
            self._t = (ct.indptr.astype(np.int64), ct.indices.astype(np.int32), ct.data)
        elif self.backend == "torch":
            import warnings

            import torch

            m = self.matrix.tocsr().astype(np.float32)
            with warnings.catch_warnings():  # "beta state" and "invariant checks disabled": scipy built it valid
                warnings.simplefilter("ignore", UserWarning)
                self._t = torch.sparse_csr_tensor(
                    torch.from_numpy(m.indptr.astype(np.int64)),
                    torch.from_numpy(m.indices.astype(np.int64)),
                    torch.from_numpy(m.data),
                    size=m.shape,
                    check_invariants=False,
                )
        elif self.backend != "sklearn":
            raise VisrepsError(f"SRP backend {self.backend!r} is not valid; use numba, torch or sklearn")

    def __getstate__(self) -> dict:  # sent to Ray actors: the matrix travels, its prepared form is rebuilt
        return {"matrix": self.matrix, "backend": self.backend}

    def __setstate__(self, state: dict) -> None:
        self.matrix, self.backend, self._t = state["matrix"], state["backend"], None
        self.__post_init__()

    def permuted(self, perm: np.ndarray) -> SrpApply:
        """The same projection for inputs whose features come in the order ``perm`` (column m = feature perm[m])."""
        return SrpApply(self.matrix.tocsc()[:, perm].tocsr(), self.backend)

    @property
    def nnz(self) -> int:
        return int(self.matrix.nnz)

    def apply(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(np.asarray(x, dtype=np.float32).reshape(len(x), -1))
        if self.backend == "numba":
            import numba

            kernel: Any = _numba_kernel()
            indptr, indices, data = self._t
            parts = max(1, numba.get_num_threads())
            out = [
                kernel(x[s : s + 64], indptr, indices, data, self.matrix.shape[0], parts) for s in range(0, len(x), 64)
            ]
            return out[0] if len(out) == 1 else np.concatenate(out)
        if self.backend == "torch":
            import torch

            with torch.inference_mode():
                return (self._t @ torch.from_numpy(x).T).T.contiguous().numpy()
        return np.asarray(x @ self.matrix.T.astype(np.float32), dtype=np.float32)


# --------------------------------------------------------------------------- PCA


class StreamingPca:
    """IncrementalPCA of one layer fed batch by batch: chunks of ``chunk`` rows (≥ K), at most two held."""

    def __init__(self, k: int, chunk: int):
        _sklearn()
        from sklearn.decomposition import IncrementalPCA

        self.k, self.chunk = k, max(int(chunk), k)
        self.ipca = IncrementalPCA(n_components=k)
        self.rows: list[np.ndarray] = []
        self.n_rows = 0
        self.n_chunks = 0

    def add(self, x: np.ndarray) -> None:
        self.rows.append(np.asarray(x, dtype=np.float32).reshape(len(x), -1))
        self.n_rows += len(x)
        while self.n_rows >= 2 * self.chunk:  # the remainder keeps at least one chunk (≥ K rows) for the end
            buf = np.concatenate(self.rows)
            self.ipca.partial_fit(buf[: self.chunk])
            self.n_chunks += 1
            rest = buf[self.chunk :]
            self.rows, self.n_rows = [rest], len(rest)

    def finish(self) -> dict[str, np.ndarray]:
        if self.n_rows:
            self.ipca.partial_fit(np.concatenate(self.rows))
            self.n_chunks += 1
        self.rows, self.n_rows = [], 0
        p: Any = self.ipca
        return {
            "components": p.components_.astype(np.float32),
            "mean": p.mean_.astype(np.float32),
            "explained_variance": p.explained_variance_.astype(np.float64),
            "explained_variance_ratio": p.explained_variance_ratio_.astype(np.float64),
        }


def fit_sha256(fit: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in ("components", "mean"):
        h.update(np.ascontiguousarray(fit[key], dtype=np.float32).tobytes())
    return h.hexdigest()


@dataclass
class PcaApply:
    """One layer's fitted PCA: ``apply(x) = (x - mean) @ components.T`` (float32)."""

    fit: dict

    def permuted(self, perm: np.ndarray) -> PcaApply:
        """The same PCA for inputs whose features come in the order ``perm``."""
        return PcaApply({**self.fit, "components": np.ascontiguousarray(self.fit["components"][:, perm]),
                         "mean": self.fit["mean"][perm]})  # fmt: skip

    def apply(self, x: np.ndarray) -> np.ndarray:
        import torch

        x = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
        with torch.inference_mode():
            xt = torch.from_numpy(np.ascontiguousarray(x)) - torch.from_numpy(self.fit["mean"])
            return (xt @ torch.from_numpy(self.fit["components"]).T).numpy()


def save_pca_fit(path: Path, fits: Mapping[str, dict], info: dict) -> None:
    """Write the fits of every PCA layer to ``path`` (npz: ``<layer>/components``, ``/mean``,
    ``/explained_variance``, ``/explained_variance_ratio``, and ``__info__``, a JSON string)."""
    arrays: dict[str, Any] = {f"{layer}/{k}": v for layer, fit in fits.items() for k, v in fit.items()}
    arrays["__info__"] = np.array(json.dumps(info))
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def load_pca_fit(path: Path) -> tuple[dict[str, dict], dict]:
    """The fits and info of a file :func:`save_pca_fit` wrote."""
    try:
        with np.load(path, allow_pickle=False) as z:
            info = json.loads(str(z["__info__"]))
            fits: dict[str, dict] = {}
            for key in z.files:
                if key == "__info__":
                    continue
                layer, _, name = key.rpartition("/")
                fits.setdefault(layer, {})[name] = z[key]
    except (OSError, ValueError, KeyError) as e:
        raise VisrepsError(
            f"reduce_fit {str(path)!r} is not a PCA fit saved by visreps ({PCA_FIT_FILE}): {e}; "
            "give a folder of images or the pca_fit.npz of an earlier run"
        ) from None
    return fits, info


def hook_reducer(applier: Any):
    """A function for a forward hook: reduce a layer's CPU output tensor where it lies, without copying it.

    The rows are flattened in the tensor's logical order (as ``pool='flatten'`` gives them). A
    channels-last map is read in its memory order instead, with the matrix's (or components')
    columns permuted to match once per shape, so neither a copy nor a transpose of the activations is
    made; the result equals the logical order's within float32 rounding.
    """
    cache: dict[tuple, Any] = {}

    def reduce(t: Any) -> np.ndarray:
        import torch

        b = t.shape[0]
        a = applier
        if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
            c, h, w = t.shape[1:]
            a = cache.get((c, h, w))
            if a is None:
                perm = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).ravel()
                a = cache[(c, h, w)] = applier.permuted(perm)
            t = t.permute(0, 2, 3, 1)
        x = t.reshape(b, -1)
        if x.dtype != torch.float32:
            x = x.float()
        return a.apply(x.numpy())

    return reduce


# --------------------------------------------------------------------------- the plan of a run


@dataclass
class Reducer:
    """The reductions of one run: per output key, an object with ``apply`` (or none: kept raw)."""

    spec: ReduceSpec
    records: dict[str, dict]  # the metadata record per key
    appliers: dict[str, Any]  # key -> SrpApply / PcaApply (absent: kept raw)
    pca_fits: dict[str, dict] = field(default_factory=dict)
    pca_info: dict = field(default_factory=dict)

    def apply(self, outs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return {k: (self.appliers[k].apply(v) if k in self.appliers else np.asarray(v)) for k, v in outs.items()}

    def out_shapes(self, shapes: Mapping[str, tuple]) -> dict[str, tuple]:
        return {k: ((self.records[k]["n_components"],) if k in self.appliers else tuple(s)) for k, s in shapes.items()}

    def matrix_bytes(self) -> int:
        total = 0
        for a in self.appliers.values():
            if isinstance(a, SrpApply):
                total += a.nnz * 8 + (a.matrix.shape[1] + 1) * 8
            else:
                total += a.fit["components"].nbytes
        return total


def _width(shape: Sequence[int]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def check_shapes(shapes: Mapping[str, tuple], pools: Mapping[str, str]) -> None:
    """Refuse layers whose per-image output is not a vector (``pool='none'`` keeps maps)."""
    for key, shape in shapes.items():
        if len(shape) != 1:
            raise VisrepsError(
                f"a reduction projects each image's output as one vector, but layer {key!r} keeps the shape "
                f"{tuple(shape)} (pool {pools.get(key, 'none')!r}); use pool 'flatten' (the default), 'avg' or 'max'"
            )


def srp_plan(spec: ReduceSpec, shapes: Mapping[str, tuple], *, seed: int, n_images: int, backend: str = "auto"):
    """The SRP :class:`Reducer` of a run: each wider-than-K layer's scikit-learn matrix, others kept raw."""
    _sklearn()
    k = spec.k if spec.k is not None else jl_components(n_images, spec.eps or DEFAULT_EPS)
    records: dict[str, dict] = {}
    appliers: dict[str, Any] = {}
    for key, shape in shapes.items():
        width = _width(shape)
        if width <= k:
            records[key] = {
                "method": "none",
                "n_components": width,
                "random_state": None,
                "input_width": width,
                "reason": f"width {width} <= {k}: kept as it is",
            }
            continue
        rs = layer_seed(seed, key)
        m = srp_matrix(width, k, rs)
        records[key] = {
            "method": "srp",
            "n_components": k,
            "random_state": rs,
            "input_width": width,
            "density": "auto",
            "nnz": int(m.nnz),
            "sklearn": "SparseRandomProjection(n_components, random_state=random_state).fit(X of input_width columns)",
        }
        if spec.k is None:
            records[key].update(eps=spec.eps, jl_n_images=int(n_images))
        appliers[key] = SrpApply(m, backend)
    return Reducer(spec, records, appliers)


def pca_records(spec: ReduceSpec, shapes: Mapping[str, tuple], fits: Mapping[str, dict], info: dict):
    """The PCA :class:`Reducer` from fitted (or loaded) fits; layers no wider than K kept raw."""
    records: dict[str, dict] = {}
    appliers: dict[str, Any] = {}
    for key, shape in shapes.items():
        width = _width(shape)
        fit = fits.get(key)
        if fit is None:
            records[key] = {
                "method": "none",
                "n_components": width,
                "random_state": None,
                "input_width": width,
                "reason": f"width {width} <= {spec.k}: kept as it is",
            }
            continue
        records[key] = {
            "method": "pca",
            "n_components": int(fit["components"].shape[0]),
            "random_state": None,
            "input_width": width,
            "solver": "IncrementalPCA",
            "explained_variance_ratio": float(np.sum(fit["explained_variance_ratio"])),
            "fit": info,
            "fit_sha256": fit_sha256(fit),
        }
        appliers[key] = PcaApply(fit)
    return Reducer(spec, records, appliers, dict(fits), info)


def check_loaded_fit(fits: Mapping[str, dict], info: dict, spec: ReduceSpec, shapes, model_id: str, path) -> None:
    """A saved fit must be of this model and cover every layer wider than K with K components."""
    if info.get("model") != model_id:
        raise VisrepsError(
            f"the PCA fit {str(path)!r} was made for {info.get('model')!r}, not {model_id!r}; "
            "fit again (--reduce-fit IMAGE_FOLDER)"
        )
    for key, shape in shapes.items():
        width = _width(shape)
        if width <= (spec.k or 0):
            continue
        fit = fits.get(key)
        if fit is None or fit["components"].shape != (spec.k, width):
            have = None if fit is None else tuple(fit["components"].shape)
            raise VisrepsError(
                f"the PCA fit {str(path)!r} has no {spec.k}-component fit of layer {key!r} (width {width}; "
                f"found {have}); fit again with --reduce-fit IMAGE_FOLDER and the same layers and pca:K"
            )
