"""The valid values of every option with a fixed set of choices, in one place.

This module sits at the bottom of the package (it imports nothing), so the library and the command line read the
same tuples: a ``click.Choice`` of the CLI is one of these, and ``tests/test_options.py`` ties every choice list of
every command to a tuple here. Adding a value (a format, an RDM method, a comparison) means adding it here and
writing the code that handles it; nothing else restates the list.
"""

from __future__ import annotations

# extraction ---------------------------------------------------------------------------------------------------------
#: Output formats of an extraction folder (one module each under :mod:`visreps.storage.formats`).
FORMATS = ("npy", "hdf5", "mat", "pt", "txt", "zarr")
#: How a layer's activation becomes one row per image (:mod:`visreps.pooling`).
POOL_MODES = ("flatten", "none", "avg", "max", "cls", "patch_mean")
#: How a text encoder's token activations become one row per text (:mod:`visreps.text`).
TEXT_POOL_MODES = ("eot", "flatten", "none")
#: Which time steps of a recurrent layer are kept (:mod:`visreps.capture`).
RECURRENT_MODES = ("all", "last")
#: Numeric precision of the forward pass.
PRECISIONS = ("fp32", "fp16", "bf16")
#: Where the batches run: this process, or Ray workers (:mod:`visreps.distributed`).
ENGINES = ("local", "ray")
#: Engines of ``visreps bench``: the same two (local: one model after the other; ray: each model a Ray task).
BENCH_ENGINES = ENGINES
#: Reductions while extracting (:mod:`visreps.reduce`): ``srp:K``, ``srp:auto``, ``pca:K[:M]``.
REDUCE_METHODS = ("srp", "pca")

# representational similarity ---------------------------------------------------------------------------------------
#: RDM distances (:func:`visreps.analysis.rsa.compute_rdm`).
RDM_METHODS = ("correlation", "cosine", "euclidean", "sqeuclidean", "gaussian")
#: RDM distances of the time-resolved RSA's model RDMs (no kernel width to choose there).
TIME_RDM_METHODS = ("correlation", "cosine", "euclidean", "sqeuclidean")
#: How two RDMs are compared (:func:`visreps.analysis.rsa.correlate_rdms`).
COMPARISONS = ("pearson", "spearman", "kendall", "tau_a")
#: Correlations of a time course or an frrsa score.
CORRELATIONS = ("pearson", "spearman")
#: File formats of a saved RDM (``visreps rsa --rdm-format``).
RDM_FILE_FORMATS = ("npy", "csv", "txt", "mat")
#: What a struct array's sessions become: averaged per subject, or kept as subjects.
SESSIONS = ("mean", "keep")
#: Kernels of CKA.
CKA_KERNELS = ("linear", "rbf")

# inference ----------------------------------------------------------------------------------------------------------
#: Tests of a model against the noise ceiling and of model pairs.
TEST_TYPES = ("t", "bootstrap")
#: Multiple-comparison corrections.
CORRECTIONS = ("fdr", "bonferroni", "none")
#: What a bootstrap resamples.
BOOTSTRAP_FACTORS = ("subjects", "images")
#: Tails of the cluster test (as the CLI spells them; MNE's ``tail``).
TAILS = ("1", "0", "-1")

# encoding and behaviour ---------------------------------------------------------------------------------------------
#: Encoding models (:func:`visreps.analysis.encoding.encode`).
ENCODING_MODELS = ("ridge", "pls", "banded")
#: How ridge chooses its penalty inside each training fold.
INNER_CV = ("loo", "kfold")
#: Ridge solvers.
SOLVERS = ("auto", "kernel", "primal")
#: What happens to a NaN in a response file.
NAN_POLICIES = ("error", "drop")
#: Feature scaling of variance partitioning.
PARTITION_SCALES = ("equal", "none")
#: Similarities of the odd-one-out task.
OOO_SIMILARITIES = ("dot", "cosine")
#: Dissimilarity measures of feature-reweighted RSA.
FRRSA_MEASURES = ("sqeuclidean", "dot")

# figures ------------------------------------------------------------------------------------------------------------
#: Figure formats (matplotlib's writers).
FIGURE_FORMATS = ("png", "pdf", "svg", "eps", "tiff", "jpg")
#: Journal column widths.
FIGURE_WIDTHS = ("single", "double")
#: Kinds of comparison figure.
PLOT_KINDS = ("bars", "curve")
#: The layer axis of a curve: each model's own layer names, or relative depth.
DEPTHS = ("layers", "relative")
#: What the whiskers or bands of a comparison figure show: the confidence interval, or ± one standard error.
PLOT_ERRORS = ("ci", "se")
