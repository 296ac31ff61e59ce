"""The encoding-model option object: checked once per call (library and CLI), bad values named, nothing re-checked."""

import dataclasses

import numpy as np
import pytest
from click.testing import CliRunner

from test_analysis_compare import PATHS, make_output_folder
from visreps import options
from visreps.analysis import encode, variance_partitioning
from visreps.analysis import responses as responses_module
from visreps.analysis.encoding import DEFAULT_ALPHAS, EncodingModel, run_encoding
from visreps.cli import main
from visreps.errors import VisrepsError


def problem(n=30, p=12, t=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    Y = X @ rng.standard_normal((p, t)) + 0.5 * rng.standard_normal((n, t))
    return X, Y


@pytest.fixture
def count_checks(monkeypatch):
    """Counts EncodingModel's checks, and fails if the public clean_targets (which checks ``nan`` again) is called."""
    calls = []
    check = EncodingModel.__post_init__

    def counted(self):
        calls.append(self)
        check(self)

    def refused(*args, **kwargs):
        raise AssertionError("clean_targets re-checks nan: inner layers must take the checked option object")

    monkeypatch.setattr(EncodingModel, "__post_init__", counted)
    monkeypatch.setattr(responses_module, "clean_targets", refused)
    return calls


@pytest.mark.parametrize("method", ["ridge", "pls", "banded"])
def test_encode_checks_its_options_once(count_checks, method):
    X, Y = problem()
    features = {"a": X, "b": X[:, :5]} if method == "banded" else X
    res = encode(features, Y, method=method, folds=3, alphas=[0.1, 1.0, 10.0], n_iter=2, inner_folds=3)
    assert len(count_checks) == 1
    assert count_checks[0].method == method and res.info["method"] == method
    assert res.info["n_folds"] == 3 and res.info["alphas"] == [0.1, 1.0, 10.0]


def test_variance_partitioning_checks_its_options_once(count_checks):
    X, Y = problem()
    res = variance_partitioning({"a": X[:, :6], "b": X[:, 6:]}, Y, folds=3, alphas=[1.0, 10.0])
    assert len(count_checks) == 1
    assert res.info["alphas"] == [1.0, 10.0] and res.info["n_folds"] == 3


def test_cli_encode_builds_the_model_once(count_checks, tmp_path):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((len(PATHS), 15))
    folder = make_output_folder(tmp_path / "m", "torchvision:alexnet", {"fc": X})
    np.save(tmp_path / "resp.npy", X @ rng.standard_normal((15, 2)))
    out = tmp_path / "enc"
    args = ["encode", str(folder), str(tmp_path / "resp.npy"), "--folds", "3", "--no-plot", "-o", str(out)]
    r = CliRunner().invoke(main, [*args, "--alphas", "1,10", "--method", "ridge", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert len(count_checks) == 1
    model = count_checks[0]
    assert model.alphas == (1.0, 10.0) and model.folds == 3 and model.device == "cpu" and model.nan == "error"
    assert (out / "targets.csv").is_file()


def test_run_encoding_equals_encode():
    X, Y = problem()
    model = EncodingModel(folds=4, alphas=(0.5, 5.0), seed=2, device="cpu")
    a = run_encoding(X, Y, model, return_predictions=True)
    b = encode(X, Y, folds=4, alphas=(0.5, 5.0), seed=2, device="cpu", return_predictions=True)
    np.testing.assert_array_equal(a.targets.r.to_numpy(), b.targets.r.to_numpy())
    np.testing.assert_array_equal(a.fold_of, b.fold_of)
    assert a.info == b.info


def test_model_is_frozen_normalised_and_defaults_to_encode_defaults():
    m = EncodingModel(method="RIDGE", alphas=np.array([1, 2]), folds=np.array([0, 1, 0, 1]), device="cpu")
    assert m.method == "ridge" and m.alphas == (1.0, 2.0) and m.folds == (0, 1, 0, 1)
    np.testing.assert_array_equal(m.alpha_array, [1.0, 2.0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.method = "pls"  # type: ignore[misc]
    assert hash(m) == hash(EncodingModel(method="ridge", alphas=(1.0, 2.0), folds=(0, 1, 0, 1), device="cpu"))
    d = EncodingModel(device="cpu")
    assert d.alphas == DEFAULT_ALPHAS and d.folds == 5 and d.inner == "loo" and d.solver == "auto"
    assert d.inner_split is None and EncodingModel(inner="kfold", inner_folds=3, device="cpu").inner_split == 3
    # an option only one method reads is checked only when that method uses it
    assert EncodingModel(inner_folds=1, n_components=0, n_iter=0, device="cpu").inner_folds == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "lasso"}, "method='lasso' is not known; use one of " + ", ".join(options.ENCODING_MODELS)),
        ({"inner": "gcv"}, "inner='gcv' is not known; use one of " + ", ".join(options.INNER_CV)),
        ({"solver": "qr"}, "solver='qr' is not known; use one of " + ", ".join(options.SOLVERS)),
        ({"nan": "keep"}, "nan='keep' is not known; use one of " + ", ".join(options.NAN_POLICIES)),
        ({"alphas": [1, 0]}, "alphas must be positive finite numbers"),
        ({"alphas": "many"}, "alphas must be positive numbers"),
        ({"folds": 1}, "folds must be at least 2, got 1"),
        ({"folds": [[0, 1], [1, 0]]}, r"folds: give a number of folds or one fold label per image, got shape \(2, 2\)"),
        ({"inner": "kfold", "inner_folds": 1}, "inner_folds must be at least 2, got 1"),
        ({"method": "banded", "inner_folds": 1}, "inner_folds must be at least 2, got 1"),
        ({"method": "pls", "n_components": 0}, "n_components must be at least 1, got 0"),
        ({"method": "banded", "n_iter": 0}, "n_iter must be at least 1, got 0"),
        ({"ceiling_splits": 0}, "ceiling_splits must be at least 1, got 0"),
        ({"block_size": 2.5}, "block_size must be a whole number, got 2.5"),
        ({"n_components": "x"}, "n_components must be a whole number, got 'x'"),
        ({"seed": "one"}, "seed must be an integer, got 'one'"),
        ({"device": "gpu0"}, "device 'gpu0' is not valid"),
    ],
)
def test_bad_values_name_the_parameter_before_any_file_is_read(kwargs, message, tmp_path):
    with pytest.raises(VisrepsError, match=message):
        EncodingModel(**kwargs)
    missing = tmp_path / "no such responses.npy"  # the option's error comes first: nothing is read before the check
    with pytest.raises(VisrepsError, match=message):
        encode(np.zeros((4, 2)), missing, **kwargs)


def test_old_import_paths_of_the_split_module_still_work():
    from visreps.analysis import _encoding_tables, _folds, _ridge, encoding

    for name in ("KernelDesign", "PrimalDesign", "layer_design", "loo_select", "kfold_select", "ridge_fold"):
        assert getattr(encoding, name) is getattr(_ridge, name)
    for name in ("pls_fold", "banded_fold", "fold_scores"):
        assert getattr(encoding, name) is getattr(_ridge, name)
    assert encoding.make_folds is _folds.make_folds and encoding.GRID_END_SHARE == _encoding_tables.GRID_END_SHARE
    assert encoding.METHODS is options.ENCODING_MODELS and set(encoding.__all__) <= set(dir(encoding))
