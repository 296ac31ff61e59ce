"""Issue 20: one `compare` call checks its options once and reads its reference once; one compare API; the
reference and response readers agree (nested HDF5, blank CSV cells)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from click.testing import CliRunner

import visreps
from test_analysis_compare import feats, make_output_folder
from visreps import workflows
from visreps.analysis import bootstrap, compute_rdm, inference, references
from visreps.analysis.compare import InferenceOptions, ReferenceStack, rsa_inference
from visreps.cli import main
from visreps.errors import VisrepsError


@pytest.fixture
def setup(tmp_path):
    """Two folders (12 images) and a (4, 12, 12) stack of subjects' RDMs = folder a's RDM + noise."""
    a = make_output_folder(tmp_path / "a", "net:a", {"l1": feats(0), "l2": feats(1)})
    b = make_output_folder(tmp_path / "b", "net:b", {"l1": feats(2)})
    truth = compute_rdm(feats(0))
    rng = np.random.default_rng(0)
    stack = []
    for _ in range(4):
        noise = np.triu(rng.normal(scale=0.1, size=truth.shape), 1)
        stack.append(truth + noise + noise.T)
    np.save(tmp_path / "subjects.npy", np.stack(stack))
    np.save(tmp_path / "one.npy", stack[0])
    return a, b, tmp_path / "subjects.npy", tmp_path / "one.npy"


@pytest.fixture
def counts(monkeypatch):
    """How often each check runs and the reference files are read (the one reader, `_files.read_array`)."""
    seen: dict[str, int] = {}

    def counting(module, name):
        fn = getattr(module, name)

        def wrapper(*args, **kwargs):
            seen[name] = seen.get(name, 0) + 1
            return fn(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    for module in (inference, bootstrap):
        counting(module, "check_bootstrap")
    counting(inference, "check_tests")
    counting(inference, "check_correction")
    counting(references, "read_array")
    return seen


ONCE = {"check_bootstrap": 1, "check_tests": 1, "check_correction": 1, "read_array": 1}


def test_rsa_inference_checks_once_and_reads_the_reference_once(setup, counts):
    a, b, stack, _ = setup
    res = rsa_inference(
        [a, b], stack, noise_ceiling=True, bootstrap="subjects,images", test="pairwise", n_bootstrap=20, seed=1
    )
    assert counts == ONCE
    assert res.table.attrs["bootstrap"] == "subjects,images" and len(res.pairwise) == 3
    counts.clear()
    visreps.rsa_inference([a, b], stack, bootstrap="images", n_bootstrap=20)  # the top-level entry: the same
    assert counts == ONCE


def test_visreps_compare_checks_once_and_reads_the_reference_once(setup, counts, tmp_path):
    a, b, stack, one = setup
    args = ["compare", str(a), str(b), "--reference", str(stack), "--noise-ceiling", "--bootstrap", "subjects,images"]
    args += ["--test", "pairwise", "--n-bootstrap", "20", "--no-plot", "-o", str(tmp_path / "t.csv")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert counts == ONCE
    assert (tmp_path / "t_pairwise.csv").is_file() and (tmp_path / "t_bootstrap.csv").is_file()
    counts.clear()  # one subject's RDM: the plain comparison, the file read once too (it was read twice)
    res = CliRunner().invoke(
        main, ["compare", str(a), "--reference", str(one), "--no-plot", "-o", str(tmp_path / "u.csv")]
    )
    assert res.exit_code == 0, res.output
    assert counts.get("read_array") == 1


def test_inference_options_check_themselves_once():
    opts = InferenceOptions(bootstrap="both", test="pairwise,zero", correction="BH", method="Pearson")
    assert (opts.bootstrap, opts.test, opts.correction, opts.method) == (
        ("subjects", "images"),
        ("pairwise", "zero"),
        "fdr",
        "pearson",
    )
    with pytest.raises(VisrepsError, match="pairwise test needs a bootstrap"):
        InferenceOptions(test="pairwise")
    with pytest.raises(VisrepsError, match=r"n_bootstrap must be an integer >= 2, got 1"):
        InferenceOptions(bootstrap="images", n_bootstrap=1)
    with pytest.raises(VisrepsError, match="test_type 'z' is not known; use one of t, bootstrap"):
        InferenceOptions(test_type="z")
    picked = InferenceOptions.pick({"seed": 7, "images": "ignored", "ci": 0.9})
    assert (picked.seed, picked.ci) == (7, 0.9)


def test_a_reference_stack_is_loaded_once_and_passed_down(setup, counts):
    a, _, stack, _ = setup
    ref = ReferenceStack.load(stack)
    assert (ref.n_subjects, ref.n_conditions, ref.name, ref.subjects[0]) == (4, 12, "subjects", "subjects[0]")
    assert ReferenceStack.load(ref) is ref
    first = rsa_inference([a], ref, noise_ceiling=True)
    assert counts["read_array"] == 1  # only ReferenceStack.load read the file
    again = rsa_inference([a], stack, noise_ceiling=True)
    np.testing.assert_array_equal(first.table["r"], again.table["r"])


def test_one_compare_api_model_ids_are_sources_to_extract(setup, monkeypatch, tmp_path):
    """visreps.compare_* are the analysis functions with images/work_dir/extract_options; a model id becomes a
    ToExtract source, extracted only once the reference and the options are checked."""
    import visreps.extraction

    a, _, stack, _ = setup
    sig = inspect.signature(visreps.compare_features)
    assert {"layers", "rdm_method", "return_rdms", "images", "work_dir", "extract_options"} <= set(sig.parameters)
    todo = workflows.model_sources({"mine": str(a), "net": "fake:x"}, images=tmp_path, extract_options={"pool": "avg"})
    assert todo["mine"] == str(a) and todo["net"] == workflows.ToExtract("fake:x", tmp_path, None, {"pool": "avg"})
    assert workflows.model_sources(["fake:x"]) == ["fake:x"]  # without images nothing is extracted

    def no_extract(*args, **kwargs):
        raise AssertionError("extracted before the checks")

    monkeypatch.setattr(visreps.extraction, "extract", no_extract)
    with pytest.raises(VisrepsError, match="does not exist"):
        visreps.rsa_inference(["fake:x"], tmp_path / "missing.npy", images=tmp_path, layers=["l1"])
    with pytest.raises(VisrepsError, match="bootstrap over 'nope' is not known"):
        visreps.rsa_inference(["fake:x"], stack, images=tmp_path, layers=["l1"], bootstrap="nope")
    with pytest.raises(VisrepsError, match="needs RDMs of at least 2 subjects"):
        visreps.rsa_inference(["fake:x"], setup[3], images=tmp_path, layers=["l1"], noise_ceiling=True)


# --------------------------------------------------------------------------- one reader for references and responses


def test_references_and_responses_read_nested_hdf5_the_same_way(tmp_path):
    h5py = pytest.importorskip("h5py")
    R = compute_rdm(feats(3, n=6))
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("brain/it/rdm", data=R)
    as_reference = visreps.load_reference_rdm(path, key="brain/it/rdm")
    as_responses = visreps.load_responses(path, key="brain/it/rdm")
    np.testing.assert_array_equal(as_reference, R)
    np.testing.assert_array_equal(as_responses.data, as_reference)
    np.testing.assert_array_equal(visreps.load_reference_rdm(path), R)  # the one 2-D dataset, found nested


def test_references_and_responses_read_blank_csv_cells_the_same_way(tmp_path):
    R = compute_rdm(feats(4, n=5))
    rows = [[f"{v:.17g}" for v in row] for row in R]
    rows[1][3] = ""  # empty
    rows[3][1] = "   "  # whitespace only
    path = tmp_path / "rdm.csv"
    path.write_text("\n".join(",".join(r) for r in rows) + "\n")
    data = visreps.load_responses(path).data
    assert np.argwhere(np.isnan(data)).tolist() == [[1, 3], [3, 1]]
    np.testing.assert_array_equal(np.nan_to_num(data), np.where(np.isnan(data), 0, R))
    with pytest.raises(VisrepsError, match=r"has 2 NaN/inf entries \(first at row 1, column 3\)"):
        visreps.load_reference_rdm(path)
