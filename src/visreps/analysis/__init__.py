"""Relating representations: RDMs and their comparison (RSA), CKA, and feature transforms.

Everything here works from arrays or memory-mapped output folders and streams wide layers in
blocks, so layers with hundreds of thousands of features are never loaded whole. Nothing here
loads a model or extracts: :mod:`visreps.workflows` (``visreps.compare_features`` ...) extracts
model ids first and then calls these functions.
"""

from __future__ import annotations

from .align import align
from .behaviour import OddOneOutResult, Triplets, load_triplets, odd_one_out
from .ceilings import NoiseCeiling, rdm_noise_ceiling, split_half_reliability
from .cka import KERNELS, cka, cka_from_grams, cka_table, gram_matrix, hsic
from .compare import (
    FeatureSet,
    RDMOptions,
    ReferenceStack,
    collect_features,
    compare_features,
    compare_rdms,
    compare_to_reference,
    load_reference_rdm,
    load_reference_rdms,
    load_references,
    match_rows,
    rsa_inference,
)
from .encoding import EncodingResult, encode, make_folds
from .frrsa import FRRSAResult, feature_reweighted_rsa, weighted_rsa
from .inference import InferenceOptions, RSAInference, correct_pvalues, permutation_test, rdm_inference
from .partition import PartitionResult, variance_partitioning
from .responses import Responses, load_responses, match_images
from .rsa import (
    COMPARISONS,
    METHODS,
    RDMCorrelation,
    compute_rdm,
    correlate_rdms,
    kendall_tau_a,
    rank_transform,
    rdm_order,
    reorder,
    squareform,
    upper_triangle,
)
from .timeseries import TimeRDMs, TimeRSAResult, load_time_rdms, time_resolved_rsa
from .transforms import (
    PCA,
    IncrementalPCA,
    center_features,
    compress_features,
    ensemble_features,
    feature_map_layers,
    normalize_features,
)

__all__ = [
    "COMPARISONS",
    "KERNELS",
    "METHODS",
    "PCA",
    "FeatureSet",
    "IncrementalPCA",
    "RDMOptions",
    "ReferenceStack",
    "RDMCorrelation",
    "align",
    "center_features",
    "cka",
    "cka_from_grams",
    "cka_table",
    "collect_features",
    "compare_features",
    "compare_rdms",
    "compare_to_reference",
    "compress_features",
    "compute_rdm",
    "correlate_rdms",
    "ensemble_features",
    "feature_map_layers",
    "gram_matrix",
    "hsic",
    "kendall_tau_a",
    "load_reference_rdm",
    "load_references",
    "match_rows",
    "normalize_features",
    "rank_transform",
    "rdm_order",
    "reorder",
    "squareform",
    "upper_triangle",
    # encoding models
    "EncodingResult",
    "Responses",
    "encode",
    "load_responses",
    "make_folds",
    "match_images",
    # noise ceilings and inference
    "InferenceOptions",
    "NoiseCeiling",
    "RSAInference",
    "correct_pvalues",
    "load_reference_rdms",
    "permutation_test",
    "rdm_inference",
    "rdm_noise_ceiling",
    "rsa_inference",
    "split_half_reliability",
    # behaviour and time
    "FRRSAResult",
    "OddOneOutResult",
    "PartitionResult",
    "TimeRDMs",
    "TimeRSAResult",
    "Triplets",
    "feature_reweighted_rsa",
    "load_time_rdms",
    "load_triplets",
    "odd_one_out",
    "time_resolved_rsa",
    "variance_partitioning",
    "weighted_rsa",
]
