"""Encoding models: cross-validated regression from network layers to brain or behavioural responses.

:func:`encode` predicts every target (voxel, neuron, behavioural dimension) of a response set from
each layer of one or more feature folders, on held-out images, and reports per target and per
layer how well it does (Pearson r and R²), raw and as a fraction of the data's noise ceiling.

The method, for one layer ``X`` (images × features) and targets ``Y`` (images × targets):

* **Outer cross-validation.** The images are split into ``K`` folds (shuffled with ``seed``; with
  ``groups``, whole groups go to one fold, so a category is never both trained and tested on).
  Each fold is predicted from a model fitted on the other folds.
* **Ridge with an intercept.** On the training images, ``X`` and ``Y`` are centred with the
  training means ``μ_X``, ``μ_Y``; ``β(α) = (XcᵀXc + αI)⁻¹ XcᵀYc``; a test image's prediction is
  ``ŷ = (x − μ_X) β + μ_Y``. The intercept is not penalised.
* **One spectrum for all alphas.** With ``Kc = Xc Xcᵀ = U Λ Uᵀ`` (the eigenvectors orthogonal to
  the constant vector), ``Z = Uᵀ Yc`` and ``T = Kc(test, train) U``, the test predictions are
  ``Ŷ = T diag(1/(λ + α)) Z + μ_Y`` for every ``α`` at the cost of one product.
  *Kernel form* (features ≥ training images): the Gram matrix ``K = X Xᵀ`` is accumulated over
  column blocks read from the (memory-mapped) layer, never loaded whole, once per layer; each
  fold centres it with the training means: for ``i`` any image and ``j`` a training image,
  ``Kc_ij = K_ij − m_i − m_j + m̄`` with ``m_i = (1/n_tr) Σ_{k∈train} K_ik`` and
  ``m̄ = (1/n_tr) Σ_{j∈train} m_j``, which is exactly ``(x_i − μ_X)·(x_j − μ_X)``; then ``Kc(train,
  train)`` is eigendecomposed. *Primal form* (features < training images): the layer is read into
  memory and the training ``Xc = U S Vᵀ`` is decomposed (``Λ = S²``, ``T = (X_test − μ_X) V S``).
* **Alpha per target by nested CV on the training images.** ``inner="loo"`` (default): efficient
  leave-one-out, the criterion of scikit-learn's ``RidgeCV`` (``gcv`` mode, ``alpha_per_target``):
  with the hat matrix of ridge plus unpenalised intercept, the LOO residual of image ``i`` is
  ``e_i = c_i / d_i``, ``c = G⁻¹ Yc``, ``d = diag(G⁻¹)``, ``G⁻¹ = U diag(1/(λ+α)) Uᵀ +
  (P⊥ − U Uᵀ)/α`` (``P⊥`` the projector orthogonal to the constant; the second term vanishes when
  ``U`` spans it); ``α_t = argmin_α mean_i e_i,t²`` (the first of equal minima).
  ``inner="kfold"``: ``inner_folds`` contiguous folds of the training images (scikit-learn's
  unshuffled ``KFold``, as himalaya's ``KernelRidgeCV(cv=k)``), each refitted with its own
  centring; ``α_t = argmin_α mean_folds MSE − 1e-10 · log α`` (himalaya's criterion and tie-break).
* **Scores** on each held-out fold, per target: Pearson ``r = Σ(ŷ−ŷ̄)(y−ȳ) / (‖ŷ−ŷ̄‖‖y−ȳ‖)``
  and ``R² = 1 − Σ(y−ŷ)² / Σ(y−ȳ)²`` (``ȳ`` the test fold's mean, as ``sklearn.metrics.r2_score``);
  a target's score is the mean over folds (``r_pooled``, ``r2_pooled``: the same of all out-of-fold
  predictions at once).
* **Ceiling.** ``ρ_t`` is the reliability of the target's mean response (split-half,
  Spearman–Brown corrected: :func:`visreps.analysis.ceilings.split_half_reliability`). The largest
  correlation a noiseless model can reach with noisy data is ``√ρ`` (correction for attenuation,
  Spearman 1904), so ``r_ceiled = r / √ρ`` and ``r2_ceiled = R² / ρ``; both are NaN where ``ρ ≤ 0``.
  (Brain-Score divides ``r`` by ``ρ`` itself, which over-corrects when ``ρ < 1``.)

``method="pls"`` fits scikit-learn's ``PLSRegression(n_components, scale=False)`` (Brain-Score's
neural-predictivity regression) to all targets jointly. It is fitted to each fold's kernel-PCA
scores (training ``U √Λ``, test ``T / √Λ``), the coordinates of the centred images in the span of
the training images: PLS without scaling depends on the features only through that span and is
unchanged by a rotation of them, so this is PLS on the raw features, whatever their number.
``method="banded"`` fits banded ridge over all the chosen layers at once (one band each) with
himalaya's ``MultipleKernelRidgeCV`` on the per-layer Gram matrices (random search of band
weights, ``inner_folds`` inner folds), and reports each band's weight per target.

Where the pieces live: this module holds the options (:class:`EncodingModel`, checked once), the entry points
(:func:`encode`, :func:`run_encoding`) and :class:`EncodingResult`; the designs, penalty search and fold solvers are
in :mod:`visreps.analysis._ridge`, the folds in :mod:`visreps.analysis._folds`, the result tables in
:mod:`visreps.analysis._encoding_tables` (their public names are importable from here, as before).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import VisrepsError
from ..options import ENCODING_MODELS as METHODS
from ..options import INNER_CV as INNER
from ..options import NAN_POLICIES, SOLVERS
from ._encoding_tables import GRID_END_SHARE, tables, warn_grid_ends
from ._folds import check_folds, groups_of, make_folds
from ._params import LayerSelection, check_choice, check_count
from ._ridge import (
    KernelDesign,
    PrimalDesign,
    banded_fold,
    fold_scores,
    kfold_select,
    layer_design,
    loo_select,
    pls_fold,
    ridge_fold,
)
from ._source import resolve_device
from .responses import apply_nan_policy, match_sets, responses_from

if TYPE_CHECKING:
    import pandas as pd

    from .compare import FeatureSet

__all__ = [
    "DEFAULT_ALPHAS",
    "GRID_END_SHARE",
    "INNER",
    "METHODS",
    "SOLVERS",
    "EncodingModel",
    "EncodingResult",
    "KernelDesign",
    "PrimalDesign",
    "banded_fold",
    "encode",
    "fold_scores",
    "kfold_select",
    "layer_design",
    "loo_select",
    "make_folds",
    "pls_fold",
    "ridge_fold",
    "run_encoding",
]

#: default ridge penalties: 10⁻² … 10⁸, one per decade
DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-2, 8, 11))


@dataclass(frozen=True)
class EncodingModel:
    """The options of an encoding model, checked once when it is made (the keyword arguments of :func:`encode`).

    :func:`encode` builds one on its first line and ``visreps encode`` builds one from its options before any file
    is read; every inner function takes the object and checks nothing again. A bad value is a
    :class:`~visreps.errors.VisrepsError` naming the parameter and its valid values. Options that only one method
    reads (``inner_folds`` of inner K-fold and banded ridge, ``n_components`` of PLS, ``n_iter`` of banded ridge)
    are checked when that method uses them.

    Attributes:
        method: one of :data:`visreps.options.ENCODING_MODELS` (lower-cased).
        alphas: the ridge penalties, positive finite numbers (a tuple of floats).
        folds: the number of outer folds (2 or more) or a fold label per image (a tuple).
        inner: how ridge chooses its penalty, one of :data:`visreps.options.INNER_CV`.
        inner_folds: inner folds of ``inner="kfold"`` and of banded ridge (2 or more).
        seed: seed of the folds, banded ridge's random search and the split-half ceiling.
        n_components: PLS components (1 or more). n_iter: banded ridge's random-search draws (1 or more).
        solver: one of :data:`visreps.options.SOLVERS`. nan: one of :data:`visreps.options.NAN_POLICIES`.
        ceiling_splits: random half splits of the split-half ceiling (1 or more).
        block_size: features per streamed block of the Gram matrix (``None``: ≈32 MB of float64).
        device: where the Gram matrices are accumulated; given as :func:`encode`'s ``device``, kept resolved
            (``"cpu"`` or a ``torch.device``).
    """

    method: str = "ridge"
    alphas: Any = DEFAULT_ALPHAS
    folds: Any = 5
    inner: str = "loo"
    inner_folds: int = 5
    seed: Any = 0
    n_components: int = 25
    n_iter: int = 20
    solver: str = "auto"
    nan: str = "error"
    ceiling_splits: int = 100
    block_size: int | None = None
    device: Any = "auto"

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        put("method", check_choice(self.method, METHODS, "method"))
        put("inner", check_choice(self.inner, INNER, "inner"))
        put("solver", check_choice(self.solver, SOLVERS, "solver"))
        put("nan", check_choice(self.nan, NAN_POLICIES, "nan"))
        put("alphas", tuple(_check_alphas(self.alphas).tolist()))
        put("folds", _check_fold_option(self.folds))
        uses_inner_folds = self.method == "banded" or self.inner == "kfold"
        put("inner_folds", check_count(self.inner_folds, "inner_folds", 2 if uses_inner_folds else None))
        put("n_components", check_count(self.n_components, "n_components", 1 if self.method == "pls" else None))
        put("n_iter", check_count(self.n_iter, "n_iter", 1 if self.method == "banded" else None))
        put("ceiling_splits", check_count(self.ceiling_splits, "ceiling_splits", 1))
        if self.block_size is not None:
            put("block_size", check_count(self.block_size, "block_size", 1))
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer))):
            raise VisrepsError(f"seed must be an integer, got {self.seed!r}")
        put("device", resolve_device(self.device) or "cpu")  # a bad device is an error before any work

    @property
    def alpha_array(self) -> np.ndarray:
        """The penalties as a float64 array."""
        return np.asarray(self.alphas, dtype=np.float64)

    @property
    def inner_split(self) -> int | None:
        """The inner folds every training set must hold (banded ridge, ``inner="kfold"``), else ``None``."""
        return self.inner_folds if self.method == "banded" or self.inner == "kfold" else None


def _check_alphas(alphas: Any) -> np.ndarray:
    try:
        a = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    except (TypeError, ValueError):
        raise VisrepsError(f"alphas must be positive numbers, got {alphas!r}") from None
    if a.ndim != 1 or a.size == 0 or not np.isfinite(a).all() or (a <= 0).any():
        raise VisrepsError(f"alphas must be positive finite numbers (e.g. numpy.logspace(-2, 8, 11)), got {alphas!r}")
    return a


def _check_fold_option(folds: Any) -> int | tuple[Any, ...]:
    """A number of folds (2 or more), or one fold label per image (kept as a tuple; checked against the images by
    :func:`make_folds`)."""
    if isinstance(folds, (int, np.integer)) and not isinstance(folds, bool):
        if int(folds) < 2:
            raise VisrepsError(f"folds must be at least 2, got {int(folds)}")
        return int(folds)
    lab = np.asarray(folds)
    if lab.ndim != 1:
        raise VisrepsError(f"folds: give a number of folds or one fold label per image, got shape {lab.shape}")
    return tuple(lab.tolist())


@dataclass
class EncodingResult:
    """What :func:`encode` returns.

    Attributes:
        targets: one row per (layer, target): ``label``, ``model``, ``layer``, ``target``, ``r``,
            ``r2`` (means over folds), ``r_sd``/``r2_sd`` (their SD over folds), ``r_pooled``/``r2_pooled``
            (the same scores of all out-of-fold predictions at once, steadier with few images), ``alpha`` (ridge:
            the median over folds of the chosen alpha), with a ceiling ``ceiling`` (``ρ``),
            ``r_ceiled``, ``r2_ceiled``; banded: ``weight:<band>`` per band.
        folds: one row per (layer, target, fold): ``r``, ``r2``, ``n_test``, ``alpha``.
        layers: one row per layer: ``n_targets`` (with a score), mean, median and SEM over targets
            (``SD / √n``) of ``r``, ``r2`` (and the ceiled scores), ``r_fold_sd`` (SD over folds of the
            fold's mean r over targets), ``ceiling_r`` and ``ceiling_r_sem`` (mean and SEM of ``√ρ``).
        fold_of: the fold of every image (response row order).
        images: the image of every response row (manifest paths), or ``None``.
        target_labels: the targets fitted (after dropping NaN targets).
        dropped: targets dropped for NaN values (``nan="drop"``).
        constant: targets constant across images (scores NaN).
        ceiling: ``ρ`` per target (``None`` without a ceiling).
        band_weights: banded only: one row per (target, band) with the band's weight (mean over folds).
        predictions: with ``return_predictions=True``: label → out-of-fold predictions (images × targets).
        info: method, alphas, folds, inner, seed, n_images, n_targets, solver per layer.
    """

    targets: pd.DataFrame
    folds: pd.DataFrame
    layers: pd.DataFrame
    fold_of: np.ndarray
    images: list[str] | None
    target_labels: list[str]
    dropped: list[str] = field(default_factory=list)
    constant: list[str] = field(default_factory=list)
    ceiling: np.ndarray | None = None
    band_weights: pd.DataFrame | None = None
    predictions: dict[str, np.ndarray] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def table_writers(self) -> dict[str, Callable[[Any], None]]:
        """The tables :meth:`save` writes: file name → a function writing that table to a path (full precision).

        ``layers.csv``, ``targets.csv``, ``folds.csv``, ``fold_of_image.csv`` (``image, fold``) and, banded
        only, ``band_weights.csv``."""
        import pandas as pd

        full = "%.17g"
        images = self.images if self.images is not None else list(range(len(self.fold_of)))
        out: dict[str, Callable[[Any], None]] = {
            "layers.csv": lambda p: self.layers.to_csv(p, index=False, float_format=full),
            "targets.csv": lambda p: self.targets.to_csv(p, index=False, float_format=full),
            "folds.csv": lambda p: self.folds.to_csv(p, index=False, float_format=full),
            "fold_of_image.csv": lambda p: pd.DataFrame({"image": images, "fold": self.fold_of}).to_csv(p, index=False),
        }
        bands = self.band_weights
        if bands is not None:
            out["band_weights.csv"] = lambda p: bands.to_csv(p, index=False, float_format=full)
        return out

    def save(
        self, folder: str | os.PathLike, *, overwrite: bool = False, inputs: Sequence[str | os.PathLike] = ()
    ) -> list[Any]:
        """Write the tables (:meth:`table_writers`) into ``folder`` as one transaction (:mod:`visreps.outputs`).

        Every file is checked before the first is written: none may be the responses file of the run
        or one of ``inputs``; existing ones are an error unless ``overwrite``, which also removes the
        other files of the earlier run it replaces (e.g. a banded run's ``band_weights.csv``). The
        tables are written under partial names and renamed together at the end. Returns their paths.

        Raises:
            VisrepsError: a clash as above, or a file that cannot be written (named).
        """
        from pathlib import Path

        from ..outputs import OutputPlan

        writers = self.table_writers()
        plan = OutputPlan(overwrite=overwrite, options="folder", command="visreps.analysis.encode(...).save")
        plan.add(*(Path(folder) / name for name in writers))
        plan.add_inputs(self.info.get("responses"), what="the responses file").add_inputs(*inputs)
        with plan.check():
            for name, write in writers.items():
                plan.write(Path(folder) / name, write)
        return plan.files

    def __repr__(self) -> str:
        return (
            f"EncodingResult({self.info.get('method')}, {len(self.layers)} layer(s), {len(self.target_labels)} "
            f"targets, {self.info.get('n_images')} images, {self.info.get('n_folds')} folds)"
        )


def _ceiling_of(
    ceiling: Any, reps: np.ndarray | None, n_flat: int, keep: np.ndarray, ceiling_splits: int, seed: int
) -> np.ndarray | None:
    """``ρ`` per kept target: an array (for all targets or for the kept ones), or split-half from repetitions."""
    if ceiling is None or ceiling is False:
        return None
    if ceiling is True or (isinstance(ceiling, str) and ceiling in ("split-half", "split_half", "auto")):
        if reps is None:
            raise VisrepsError(
                "a split-half noise ceiling needs responses with a repetitions axis (e.g. axes="
                "'repetitions,images,targets', CLI: --axes); or pass the ceiling per target as an array"
            )
        from .ceilings import split_half_reliability

        return split_half_reliability(reps, n_splits=ceiling_splits, seed=seed)
    c = np.asarray(ceiling, dtype=np.float64).ravel()
    if len(c) == n_flat:
        return c[keep]
    if len(c) == len(keep):
        return c
    raise VisrepsError(f"ceiling has {len(c)} values but there are {n_flat} targets ({len(keep)} after dropping NaN)")


# --------------------------------------------------------------------------- the entry point


def encode(
    features: Any,
    responses: Any,
    *,
    layers: LayerSelection = None,
    method: str = "ridge",
    alphas: Any = DEFAULT_ALPHAS,
    folds: int | Sequence[int] | np.ndarray = 5,
    groups: Any = None,
    inner: str = "loo",
    inner_folds: int = 5,
    seed: int = 0,
    n_components: int = 25,
    n_iter: int = 20,
    ceiling: Any = None,
    ceiling_splits: int = 100,
    nan: str = "error",
    order: Sequence[str] | str | os.PathLike | None = None,
    key: str | None = None,
    axes: str | Sequence[str] | None = None,
    solver: str = "auto",
    block_size: int | None = None,
    device: Any = "auto",
    return_predictions: bool = False,
) -> EncodingResult:
    """Cross-validated encoding models from each layer to every response target (see the module documentation).

    Args:
        features: output folders (memory-mapped), ``Features``, arrays, or a list/dict of them
            (as :func:`visreps.analysis.collect_features`); the rows of several folders are aligned.
        responses: a file (:func:`visreps.analysis.load_responses`), a :class:`Responses`, or an
            array shaped as ``axes`` says (default images × targets).
        layers: layers of every folder (default: all), or a dict folder/model → layers.
        method: ``ridge`` (default), ``pls`` or ``banded`` (all chosen layers as bands of one model).
        alphas: ridge penalties to choose from (default ``logspace(-2, 8, 11)``).
        folds: number of outer folds (default 5), or a fold label per image.
        groups: a label per response row (e.g. category): folds keep groups whole.
        inner: ``loo`` (efficient leave-one-out, default) or ``kfold`` (``inner_folds`` folds).
        seed: seed of the folds (and of banded ridge's random search and the split-half ceiling).
        n_components: PLS components (Brain-Score: 25), clipped to the training set's rank.
        n_iter: banded ridge: band-weight candidates of the random search.
        ceiling: ``True`` (split-half reliability of the repetitions) or ``ρ`` per target; adds the
            ceiled scores ``r/√ρ`` and ``R²/ρ``.
        ceiling_splits: random half splits of the split-half reliability.
        nan: ``"error"`` (default) or ``"drop"``: targets with NaN are dropped (listed in ``dropped``, warned).
        order, key, axes: passed to :func:`visreps.analysis.load_responses` (``order`` is the
            images of the response rows: a list or a file with one image path per line).
        solver: ``auto`` (kernel form when features ≥ images, else primal), ``kernel`` or ``primal``.
        block_size: features per block when streaming the Gram matrix (default: float64 blocks of ≈32 MB,
            ``32 MB / (8 · images)`` features; two are in memory at a time).
        device: where the Gram matrix of each layer (the ``images² × features`` products, most of the
            work) is accumulated: ``"auto"`` (default: CUDA via torch when a GPU is available, else
            numpy/BLAS), ``"cpu"``, ``"cuda"``/``"cuda:N"`` or a ``torch.device``; always float64. The
            fold solves (``images × images``) run on the CPU.
        return_predictions: keep the out-of-fold predictions of every layer.

    Returns:
        :class:`EncodingResult` with tables per target, per fold and per layer.

    Raises:
        VisrepsError: unreadable responses, image sets that do not match, NaN with ``nan="error"``,
            fewer images than folds, a ceiling without repetitions, bad options.
    """
    model = EncodingModel(
        method=method, alphas=alphas, folds=folds, inner=inner, inner_folds=inner_folds, seed=seed,
        n_components=n_components, n_iter=n_iter, solver=solver, nan=nan, ceiling_splits=ceiling_splits,
        block_size=block_size, device=device,
    )  # fmt: skip
    data = dict(layers=layers, groups=groups, ceiling=ceiling, order=order, key=key, axes=axes)
    return run_encoding(features, responses, model, return_predictions=return_predictions, **data)


def run_encoding(
    features: Any,
    responses: Any,
    model: EncodingModel,
    *,
    layers: LayerSelection = None,
    groups: Any = None,
    ceiling: Any = None,
    order: Sequence[str] | str | os.PathLike | None = None,
    key: str | None = None,
    axes: str | Sequence[str] | None = None,
    return_predictions: bool = False,
) -> EncodingResult:
    """:func:`encode` with its options as one checked :class:`EncodingModel` (what ``visreps encode`` calls).

    The other arguments are the data's, as :func:`encode` takes them; nothing in ``model`` is checked again.
    """
    from .compare import collect_features

    resp = responses_from(responses, key=key, axes=axes, order=order)
    sets = collect_features(features, layers=layers)
    rows_of, images = match_sets(sets, resp)
    Y, reps, labels = resp.flat()
    n_flat = len(labels)
    Y, reps, labels, dropped, keep = apply_nan_policy(Y, reps, labels, nan=model.nan, images=resp.images, stacklevel=4)
    rho = _ceiling_of(ceiling, reps, n_flat, keep, model.ceiling_splits, model.seed)
    fold_of = make_folds(Y.shape[0], model.folds, groups=groups_of(groups, resp.n_images), seed=model.seed)
    check_folds(fold_of, model.inner_split, stacklevel=4)
    constant = _constant_targets(Y, labels)
    fits = _fit_all(model, sets, rows_of, Y, fold_of, constant)
    out = tables(fits, Y, labels, fold_of, rho, model.alpha_array)
    result = EncodingResult(
        targets=out["targets"],
        folds=out["folds"],
        layers=out["layers"],
        fold_of=fold_of,
        images=images,
        target_labels=list(labels),
        dropped=dropped,
        constant=[labels[t] for t in np.flatnonzero(constant)],
        ceiling=rho,
        band_weights=out["band_weights"],
        predictions={f["label"]: f["pred"] for f in fits} if return_predictions else None,
        info=_run_info(model, fold_of, Y.shape[0], len(labels), fits, resp),
    )
    if model.method == "ridge":
        warn_grid_ends(result.targets, model.alpha_array, stacklevel=4)
    return result


def _run_info(
    model: EncodingModel, fold_of: np.ndarray, n_images: int, n_targets: int, fits: list[dict[str, Any]], resp
) -> dict[str, Any]:
    """``EncodingResult.info``: the options and sizes of the run."""
    dev = model.device
    return {
        "inner": model.inner,
        "inner_folds": model.inner_folds,
        "seed": model.seed,
        "solver": model.solver,
        "method": model.method,
        "alphas": list(model.alphas),
        "n_folds": int(fold_of.max()) + 1,
        "n_images": int(n_images),
        "n_targets": n_targets,
        "solvers": {f["label"]: f["solver"] for f in fits},
        "responses": str(resp.source) if resp.source else None,
        "n_components": model.n_components if model.method == "pls" else None,
        "device": dev if isinstance(dev, str) else str(dev),
    }


def _constant_targets(Y: np.ndarray, labels: list[str]) -> np.ndarray:
    const = np.ptp(Y, axis=0) == 0
    if const.any():
        names = [labels[t] for t in np.flatnonzero(const)]
        warnings.warn(
            f"{len(names)} of {len(labels)} targets are constant across images (e.g. {names[:3]}): scores NaN",
            stacklevel=4,
        )
    return const


def _fit_all(
    model: EncodingModel,
    sets: list[FeatureSet],
    rows_of: list[np.ndarray],
    Y: np.ndarray,
    fold_of: np.ndarray,
    constant: np.ndarray,
) -> list[dict[str, Any]]:
    """Out-of-fold predictions and per-fold choices of every layer (or of the one banded model)."""
    live = np.flatnonzero(~constant)
    Yl = Y[:, live] if len(live) < Y.shape[1] else Y
    n_folds = int(fold_of.max()) + 1
    if model.method == "banded":
        if len(sets) < 2:
            raise VisrepsError("method='banded' needs at least 2 layers (the bands); give more layers or folders")
        designs = [_design(s, rows, model, "kernel") for s, rows in zip(sets, rows_of)]
        return [_banded(sets, designs, Yl, live, Y.shape[1], fold_of, model)]
    fits = []
    for s, rows in zip(sets, rows_of):
        d = _design(s, rows, model, model.solver)
        pred, chosen = _cross_validate(lambda tr, te, d=d: _one_fold(model, d, tr, te, Yl), fold_of, Yl.shape)
        fit = {"label": s.label, "model": s.model, "weights": s.weights, "layer": s.layer, "solver": d.kind}
        fit.update(_full(pred, chosen, live, Y.shape[1], n_folds))
        fits.append(fit)
        del d  # the next layer's Gram matrix replaces this one
    return fits


def _design(s: FeatureSet, rows: np.ndarray, model: EncodingModel, solver: str) -> KernelDesign | PrimalDesign:
    return layer_design(s.features, rows, solver=solver, block_size=model.block_size, name=s.where, device=model.device)


def _one_fold(model: EncodingModel, d, tr, te, Y) -> tuple[np.ndarray, np.ndarray | None]:
    if model.method == "ridge":
        return ridge_fold(d, tr, te, Y, model.alpha_array, model.inner, model.inner_folds)
    return pls_fold(d, tr, te, Y, model.n_components), None


def _cross_validate(
    fit: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, Any]], fold_of: np.ndarray, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray | None]:
    n_folds = int(fold_of.max()) + 1
    pred = np.empty(shape)
    chosen = None
    for f in range(n_folds):
        te = np.flatnonzero(fold_of == f)
        tr = np.flatnonzero(fold_of != f)
        p, c = fit(tr, te)
        pred[te] = p
        if c is not None:
            if chosen is None:
                chosen = np.empty((n_folds, shape[1]), dtype=np.intp)
            chosen[f] = c
    return pred, chosen


def _full(pred: np.ndarray, chosen: np.ndarray | None, live: np.ndarray, n_t: int, n_folds: int) -> dict[str, Any]:
    """Predictions and choices spread back to all targets (constant targets: NaN / -1)."""
    if len(live) == n_t:
        return {"pred": pred, "alpha_idx": chosen}
    full = np.full((pred.shape[0], n_t), np.nan)
    full[:, live] = pred
    ch = None
    if chosen is not None:
        ch = np.full((n_folds, n_t), -1, dtype=np.intp)
        ch[:, live] = chosen
    return {"pred": full, "alpha_idx": ch}


def _banded(
    sets: list[FeatureSet],
    designs: list[Any],
    Y: np.ndarray,
    live: np.ndarray,
    n_t: int,
    fold_of: np.ndarray,
    model: EncodingModel,
) -> dict[str, Any]:
    bands = [s.label for s in sets]
    n_folds = int(fold_of.max()) + 1
    pred = np.empty(Y.shape)
    weights = np.full((n_folds, len(bands), n_t), np.nan)
    alpha_eff = np.full((n_folds, n_t), np.nan)
    for f in range(n_folds):
        te = np.flatnonzero(fold_of == f)
        tr = np.flatnonzero(fold_of != f)
        p, w, a = banded_fold(designs, tr, te, Y, model.alpha_array, model.inner_folds, model.n_iter, model.seed)
        pred[te] = p
        weights[f][:, live] = w
        alpha_eff[f, live] = a
    out: dict[str, Any] = {"label": "banded(" + " + ".join(bands) + ")", "model": "banded", "layer": " + ".join(bands)}
    out.update(_full(pred, None, live, n_t, n_folds))
    out.update(solver="kernel", alpha_values=alpha_eff, band_weights=weights, bands=bands)
    return out
