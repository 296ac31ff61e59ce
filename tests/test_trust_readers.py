"""Issue 19, part A: one reader of users' files (analysis/_files.py).

Each test is a finding of issue 19 (4, 5, 6, 7, 8, 9, 16, 20, 28, 29) or of issue 24's "reading the
field's files", through the Python API and the CLI: rows are matched to the manifest by the names the
file holds (or refused naming them), never taken by position when names exist.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats
from scipy.io import savemat
from scipy.spatial.distance import pdist, squareform

from visreps.analysis import compare_to_reference, correlate_rdms, encode, load_reference_rdms, load_responses
from visreps.analysis.compare import load_reference_rdm
from visreps.cli import main
from visreps.errors import VisrepsError

N = 40
PATHS = [f"cls{i % 2}/im{i:02d}.png" for i in range(N)]
NAMES = [Path(p).name for p in PATHS]
PERM = np.random.default_rng(5).permutation(N)


def make_folder(folder: Path, paths=PATHS, layer="avgpool", seed=0) -> tuple[Path, np.ndarray]:
    """An extraction output folder per the contract (layer .npy, manifest.csv, metadata.json)."""
    X = np.random.default_rng(seed).standard_normal((len(paths), 24)).astype(np.float32)
    folder.mkdir(parents=True)
    np.save(folder / f"{layer}.npy", X)
    meta = {"model": "toy:net", "status": "complete", "format": "npy"}
    meta["layers"] = {layer: {"shape": list(X.shape), "dtype": "float32", "file": f"{layer}.npy"}}
    (folder / "metadata.json").write_text(json.dumps(meta))
    pd.DataFrame({"index": range(len(paths)), "path": paths, "label": ""}).to_csv(folder / "manifest.csv", index=False)
    return folder, X.astype(np.float64)


@pytest.fixture
def folder(tmp_path):
    return make_folder(tmp_path / "feats")


def responses_of(X: np.ndarray, seed=1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return X[:, :3] @ rng.standard_normal((3, 3)) + 0.3 * rng.standard_normal((len(X), 3))


def reference_of(X: np.ndarray, seed=2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return squareform(pdist(X + 0.7 * rng.standard_normal(X.shape), "correlation"))


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(res, *words):
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.output
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def r_of(res) -> float:
    return float(res.layers["r_mean"].iloc[0])


# --------------------------------------------------------------------------- MATLAB v7.3, as MATLAB writes it


def write_mat73(path: Path, variables: dict) -> Path:
    """A MATLAB v7.3 file: HDF5 with a 512-byte userblock holding MATLAB's header, arrays stored transposed
    with ``MATLAB_class``, text as uint16 ``char``, cell arrays as object references into ``#refs#``, struct
    arrays as groups of fields referencing one element each."""
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        count = iter(range(10**6))

        def put(value) -> h5py.Dataset:
            name = f"r{next(count)}"
            _dataset(refs, name, value)
            return refs[name]

        for name, value in variables.items():
            if isinstance(value, dict):  # a struct array: field -> object array of the struct's shape
                g = f.create_group(name)
                g.attrs["MATLAB_class"] = np.bytes_("struct")
                for field, cells in value.items():
                    cells = np.asarray(cells, dtype=object) if not isinstance(cells, np.ndarray) else cells
                    r = np.empty(cells.shape[::-1], dtype=h5py.ref_dtype)
                    for idx in np.ndindex(cells.shape):
                        r[idx[::-1]] = put(cells[idx]).ref
                    g.create_dataset(field, data=r)
            elif isinstance(value, list):  # a 1 × n cell array
                r = np.empty((len(value), 1), dtype=h5py.ref_dtype)
                for i, v in enumerate(value):
                    r[i, 0] = put(v).ref
                ds = f.create_dataset(name, data=r)
                ds.attrs["MATLAB_class"] = np.bytes_("cell")
            else:
                _dataset(f, name, value)
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Dec  7 12:00:00 2026 HDF5 schema 1.00 ."
    with open(path, "r+b") as fh:
        fh.write((header.ljust(116, b" ") + b"\0" * 8 + b"\x00\x02IM").ljust(512, b"\0"))
    return path


def _dataset(group, name: str, value) -> None:
    if isinstance(value, str):
        ds = group.create_dataset(name, data=np.array([[ord(c)] for c in value], dtype=np.uint16))
        ds.attrs["MATLAB_class"] = np.bytes_("char")
        ds.attrs["MATLAB_int_decode"] = np.int32(2)
    else:
        a = np.asarray(value, dtype=np.float64)
        a = a.reshape(1, -1) if a.ndim == 1 else a
        ds = group.create_dataset(name, data=a.T)
        ds.attrs["MATLAB_class"] = np.bytes_("double")


# --------------------------------------------------------------------------- finding 4: v7.3 cell array of names


def test_v73_mat_with_images_cell_array_in_another_order_is_matched_by_name(folder, tmp_path):
    path, X = folder
    Y = responses_of(X)
    write_mat73(tmp_path / "inorder.mat", {"resp": Y, "images": NAMES})
    write_mat73(tmp_path / "shuffled.mat", {"resp": Y[PERM], "images": [NAMES[i] for i in PERM]})
    r = load_responses(tmp_path / "shuffled.mat")
    assert r.images == [NAMES[i] for i in PERM]
    np.testing.assert_array_equal(r.data, Y[PERM])
    kw = dict(folds=4, seed=0)
    assert r_of(encode(path, tmp_path / "inorder.mat", **kw)) == r_of(encode(path, Y, **kw))
    # folds are drawn over the response rows, so the shuffled file is scored as the same rows with an order file
    expect = r_of(encode(path, Y[PERM], order=[NAMES[i] for i in PERM], **kw))
    assert expect > 0.6
    assert r_of(encode(path, tmp_path / "shuffled.mat", **kw)) == expect
    # positional reading (the old behaviour) scores the shuffled rows near zero
    assert abs(r_of(encode(path, Y[PERM], **kw))) < 0.3
    res = cli(
        "encode", f"{path}::avgpool", tmp_path / "shuffled.mat", "--folds", 4, "--out", tmp_path / "o", "--no-plot"
    )
    assert res.exit_code == 0, res.output
    assert pd.read_csv(tmp_path / "o" / "layers.csv")["r_mean"].iloc[0] == pytest.approx(expect, abs=1e-12)


def test_v73_candidates_never_list_internal_refs(tmp_path):
    write_mat73(tmp_path / "two.mat", {"a": np.ones((4, 3)), "b": np.zeros((4, 3)), "images": NAMES[:4]})
    with pytest.raises(VisrepsError, match=r"several arrays \(a \(4, 3\), b \(4, 3\)\)") as e:
        load_responses(tmp_path / "two.mat")
    assert "#refs#" not in str(e.value)
    r = load_responses(tmp_path / "two.mat", key="b")
    assert r.images == NAMES[:4] and r.data.shape == (4, 3)


def test_v73_char_matrix_h5_nested_names_and_latin1_tables(tmp_path):
    names = ["a.png", "bb.png", "c.png"]
    path = write_mat73(tmp_path / "char.mat", {"resp": np.arange(6.0).reshape(3, 2)})
    with h5py.File(path, "r+") as f:  # a 3 × 6 MATLAB char matrix, rows padded with blanks
        codes = np.array([[ord(c) for c in n.ljust(6)] for n in names], dtype=np.uint16)
        ds = f.create_dataset("images", data=codes.T)
        ds.attrs["MATLAB_class"] = np.bytes_("char")
    r = load_responses(path)
    assert r.images == names
    np.testing.assert_array_equal(r.data, np.arange(6.0).reshape(3, 2))
    with h5py.File(tmp_path / "nested.h5", "w") as f:
        f["session1/resp"] = np.ones((3, 2))
        f["session1/images"] = np.array(names, dtype="S")
    assert load_responses(tmp_path / "nested.h5").images == names
    (tmp_path / "latin1.csv").write_bytes("image,x\ncaf\u00e9.png,1\nb.png,2\n".encode("latin-1"))
    assert load_responses(tmp_path / "latin1.csv").images == ["caf\u00e9.png", "b.png"]


# --------------------------------------------------------------------------- finding 5: integer image numbers


def test_npz_with_integer_image_numbers_is_matched_as_0_based_rows(folder, tmp_path):
    path, X = folder
    Y = responses_of(X)
    np.savez(tmp_path / "numbers.npz", responses=Y[PERM], images=PERM)
    r = load_responses(tmp_path / "numbers.npz")
    assert r.images == PERM.tolist()
    expect = r_of(encode(path, Y[PERM], order=[PATHS[i] for i in PERM], folds=4))
    assert r_of(encode(path, tmp_path / "numbers.npz", folds=4)) == expect
    res = cli("encode", path, tmp_path / "numbers.npz", "--folds", 4, "--out", tmp_path / "o", "--no-plot")
    assert res.exit_code == 0, res.output
    fold_of = pd.read_csv(tmp_path / "o" / "fold_of_image.csv")
    assert list(fold_of["image"]) == [PATHS[i] for i in PERM]  # written as manifest paths
    # a table's `image` column of whole numbers: the same rule
    pd.DataFrame({"image": PERM, "v": Y[PERM, 0]}).to_csv(tmp_path / "numbers.csv", index=False)
    assert load_responses(tmp_path / "numbers.csv").images == PERM.tolist()
    # 1-based numbers (MATLAB's) are refused with the way out
    np.savez(tmp_path / "one_based.npz", responses=Y[PERM], images=PERM + 1)
    with pytest.raises(VisrepsError, match=r"image numbers 1 … 40.*0-based rows 0 … 39.*subtract 1"):
        encode(path, tmp_path / "one_based.npz", folds=4)
    res = cli("encode", path, tmp_path / "one_based.npz", "--out", tmp_path / "o2", "--no-plot")
    one_line_error(res, "one_based.npz", "subtract 1")


def test_integer_image_numbers_are_refused_when_file_names_are_other_numbers(tmp_path):
    paths = [f"{i + 1}.png" for i in range(N)]  # files named 1 … 16: number 3 could be row 3 or '3.png'
    path, X = make_folder(tmp_path / "numbered", paths=paths)
    np.savez(tmp_path / "r.npz", responses=responses_of(X), images=np.arange(N))
    with pytest.raises(VisrepsError, match="named by numbers too.*name the images"):
        encode(path, tmp_path / "r.npz", folds=4)
    # names as text are matched as always
    np.savez(tmp_path / "named.npz", responses=responses_of(X), images=np.array(paths))
    assert r_of(encode(path, tmp_path / "named.npz", folds=4)) == pytest.approx(
        r_of(encode(path, responses_of(X), folds=4))
    )


def test_an_images_variable_that_names_nothing_is_an_error_not_ignored(tmp_path):
    np.savez(tmp_path / "r.npz", responses=np.ones((4, 2)), images=np.array([0.5, 1, 2, 3]))
    with pytest.raises(VisrepsError, match="'images' should name the image of every row.*neither text nor whole"):
        load_responses(tmp_path / "r.npz")


# --------------------------------------------------------------------------- finding 6: DataFrame index


def test_dataframe_indexed_by_image_names_is_matched(folder):
    path, X = folder
    Y = responses_of(X)
    df = pd.DataFrame(Y[PERM], index=[NAMES[i] for i in PERM], columns=["v1", "v2", "v3"])
    expect = encode(path, Y[PERM], order=[PATHS[i] for i in PERM], folds=4)
    got = encode(path, df, folds=4)
    assert r_of(got) == pytest.approx(r_of(expect), abs=1e-12)
    assert list(got.targets["target"].unique()) == ["v1", "v2", "v3"]
    assert got.images == [PATHS[i] for i in PERM]
    # an 'image' column names the rows too; integer indexes are 0-based image numbers
    with_col = df.reset_index(names="image")
    assert r_of(encode(path, with_col, folds=4)) == pytest.approx(r_of(expect), abs=1e-12)
    by_number = pd.DataFrame(Y[PERM], index=PERM)
    assert r_of(encode(path, by_number, folds=4)) == pytest.approx(r_of(expect), abs=1e-12)
    with pytest.raises(VisrepsError, match=r"column\(s\) \['note'\] are not numbers"):
        encode(path, df.assign(note="x"), folds=4)


# --------------------------------------------------------------------------- finding 7: reference names


def test_reference_csv_with_names_in_another_order_is_matched(folder, tmp_path):
    path, X = folder
    R = reference_of(X)
    shuffled = [NAMES[i] for i in PERM]
    pd.DataFrame(R, index=NAMES, columns=NAMES).to_csv(tmp_path / "inorder.csv", float_format="%.17g")
    pd.DataFrame(R[np.ix_(PERM, PERM)], index=shuffled, columns=shuffled).to_csv(
        tmp_path / "shuffled.csv", float_format="%.17g"
    )
    expect = stats.pearsonr(pdist(X, "correlation"), squareform(R, checks=False)).statistic
    for name in ("inorder.csv", "shuffled.csv"):
        df = compare_to_reference(path, tmp_path / name)
        assert df["r"].iloc[0] == pytest.approx(expect, abs=1e-10), name
        res = cli(
            "compare",
            f"{path}::avgpool",
            "--reference",
            tmp_path / name,
            "--out",
            tmp_path / f"{name}.out.csv",
            "--no-plot",
        )
        assert res.exit_code == 0, res.output
        assert pd.read_csv(tmp_path / f"{name}.out.csv")["r"].iloc[0] == pytest.approx(expect, abs=1e-6)
    # header only (no first column) and an npz 'images' variable name conditions too
    pd.DataFrame(R[np.ix_(PERM, PERM)], columns=shuffled).to_csv(
        tmp_path / "header.csv", index=False, float_format="%.17g"
    )
    np.savez(tmp_path / "ref.npz", rdm=R[np.ix_(PERM, PERM)], images=np.array(shuffled))
    for name in ("header.csv", "ref.npz"):
        assert compare_to_reference(path, tmp_path / name)["r"].iloc[0] == pytest.approx(expect, abs=1e-10), name


def test_reference_names_that_disagree_with_the_manifest_are_refused(folder, tmp_path):
    path, X = folder
    R = reference_of(X)
    wrong = [f"stim{i}.jpg" for i in range(N)]
    pd.DataFrame(R, index=wrong, columns=wrong).to_csv(tmp_path / "ref.csv")
    with pytest.raises(
        VisrepsError,
        match=r"reference 'ref' name 40 image\(s\) that are not in the features' manifest, e\.g\. \['stim0.jpg'",
    ):
        compare_to_reference(path, tmp_path / "ref.csv")
    res = cli("compare", path, "--reference", tmp_path / "ref.csv", "--out", tmp_path / "t.csv", "--no-plot")
    one_line_error(res, "stim0.jpg", "manifest")
    assert not (tmp_path / "t.csv").exists()
    # header and first column naming the conditions differently
    pd.DataFrame(R, index=NAMES, columns=NAMES[::-1]).to_csv(tmp_path / "mixed.csv")
    with pytest.raises(VisrepsError, match="header and its first column name the conditions differently"):
        compare_to_reference(path, tmp_path / "mixed.csv")
    # a reference order that contradicts the file's own names
    pd.DataFrame(R, index=NAMES, columns=NAMES).to_csv(tmp_path / "named.csv")
    (tmp_path / "order.txt").write_text("\n".join(NAMES[::-1]))
    with pytest.raises(VisrepsError, match="reference_order .* disagrees"):
        compare_to_reference(path, tmp_path / "named.csv", reference_order=tmp_path / "order.txt")


# --------------------------------------------------------------------------- finding 8: similarity matrices


def test_similarity_matrix_is_refused_with_the_conversion(folder, tmp_path):
    path, X = folder
    S = 1 - reference_of(X)  # ones on the diagonal
    np.save(tmp_path / "sim.npy", S)
    with pytest.raises(VisrepsError, match=r"has 1 on its diagonal.*similarity matrix.*1 − S"):
        load_reference_rdm(tmp_path / "sim.npy")
    with pytest.raises(VisrepsError, match="similarity matrix"):
        compare_to_reference(path, S)
    res = cli("compare", path, "--reference", tmp_path / "sim.npy", "--out", tmp_path / "t.csv", "--no-plot")
    one_line_error(res, "sim.npy", "1 − S")
    np.save(tmp_path / "dis.npy", 1 - S)  # the conversion the message names gives the right sign
    assert compare_to_reference(path, tmp_path / "dis.npy")["r"].iloc[0] > 0.5


# --------------------------------------------------------------------------- finding 9: --bootstrap 1


def test_one_bootstrap_resample_is_refused(folder, tmp_path):
    path, X = folder
    np.save(tmp_path / "ref.npy", reference_of(X))
    res = cli("compare", path, "--reference", tmp_path / "ref.npy", "--bootstrap", "1", "--out", tmp_path / "t.csv")
    one_line_error(res, "--bootstrap", "at least 2")
    assert not (tmp_path / "t.csv").exists()
    with pytest.raises(VisrepsError, match="n_bootstrap=1"):
        compare_to_reference(path, tmp_path / "ref.npy", n_bootstrap=1)
    with pytest.raises(VisrepsError, match="n_bootstrap=1"):
        correlate_rdms(reference_of(X), reference_of(X, seed=3), n_bootstrap=1)
    df = compare_to_reference(path, tmp_path / "ref.npy", n_bootstrap=200, seed=0)
    assert df["ci_low"].iloc[0] <= df["r"].iloc[0] <= df["ci_high"].iloc[0]


# --------------------------------------------------------------------------- finding 16: two --reference


def test_two_reference_options_are_refused(folder, tmp_path):
    path, X = folder
    np.save(tmp_path / "a.npy", reference_of(X))
    np.save(tmp_path / "b.npy", reference_of(X, seed=4))
    res = cli(
        "compare",
        path,
        "--reference",
        tmp_path / "a.npy",
        "--reference",
        tmp_path / "b.npy",
        "--out",
        tmp_path / "t.csv",
    )
    one_line_error(res, "--reference", "given 2 times", "give it once")
    assert not (tmp_path / "t.csv").exists()
    res = cli("compare", path, "-r", tmp_path / "a.npy", "--reference-order", "x.txt", "--reference-order", "y.txt")
    one_line_error(res, "--reference-order", "given 2 times")


# --------------------------------------------------------------------------- finding 20: Latin-1 files


def test_latin1_groups_and_reference_order_files(tmp_path):
    paths = [f"caf\u00e9{i:02d}.png" for i in range(N)]
    path, X = make_folder(tmp_path / "feats", paths=paths)
    Y = responses_of(X)
    np.save(tmp_path / "resp.npy", Y)
    groups = [f"gr\u00fcppe{i % 4}" for i in range(N)]
    (tmp_path / "groups.txt").write_bytes(
        ("image,group\n" + "".join(f"{p},{g}\n" for p, g in zip(paths, groups))).encode("latin-1")
    )
    res = cli("encode", path, tmp_path / "resp.npy", "--groups", tmp_path / "groups.txt", "--folds", 4,
              "--out", tmp_path / "o", "--no-plot")  # fmt: skip
    assert res.exit_code == 0, res.output
    fold = pd.read_csv(tmp_path / "o" / "fold_of_image.csv")["fold"].to_numpy()
    for g in range(4):  # folds keep each group whole: the Latin-1 names were read as written
        assert len(set(fold[[i for i in range(N) if i % 4 == g]])) == 1
    R = reference_of(X)
    np.save(tmp_path / "ref.npy", R[np.ix_(PERM, PERM)])
    (tmp_path / "order.txt").write_bytes("\n".join(paths[i] for i in PERM).encode("latin-1"))
    res = cli("compare", path, "--reference", tmp_path / "ref.npy", "--reference-order", tmp_path / "order.txt",
              "--out", tmp_path / "t.csv", "--no-plot")  # fmt: skip
    assert res.exit_code == 0, res.output
    expect = stats.pearsonr(pdist(X, "correlation"), squareform(R, checks=False)).statistic
    assert pd.read_csv(tmp_path / "t.csv")["r"].iloc[0] == pytest.approx(expect, abs=1e-6)
    # an order file naming a missing image: one line naming it
    (tmp_path / "bad.txt").write_bytes("\n".join(["nope.png", *paths[1:]]).encode("latin-1"))
    res = cli("compare", path, "--reference", tmp_path / "ref.npy", "--reference-order", tmp_path / "bad.txt",
              "--out", tmp_path / "t2.csv", "--no-plot")  # fmt: skip
    one_line_error(res, "nope.png")


# --------------------------------------------------------------------------- finding 28: warnings, sha message


def test_asymmetric_reference_gives_one_warning_line(folder, tmp_path):
    path, X = folder
    R = reference_of(X)
    R[0, 1] += 0.5
    np.save(tmp_path / "asym.npy", R)
    res = cli("compare", path, "--reference", tmp_path / "asym.npy", "--out", tmp_path / "t.csv", "--no-plot")
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines == ["warning: reference RDM 'asym.npy' is not symmetric; only its upper triangle (i < j) is used"]
    assert "UserWarning" not in res.output


def test_sha_message_of_a_glocal_transform(tmp_path, monkeypatch):
    from dataclasses import replace

    from visreps.analysis.align import GLOCAL_TRANSFORMS, fetch_transform
    from visreps.errors import VisrepsError as Err

    monkeypatch.setenv("VISREPS_CACHE", str(tmp_path))
    t = replace(GLOCAL_TRANSFORMS[0], sha256="0" * 64)
    t.path.parent.mkdir(parents=True)
    t.path.write_bytes(b"not the file")
    with pytest.raises(Err) as e:
        fetch_transform(t)
    assert f"is not the published gLocal transform of {t.model} / {t.module} (" in str(e.value)
    assert "published the" not in str(e.value)


# --------------------------------------------------------------------------- finding 29 / issue 24: the field's files


def brain_rdms(X: np.ndarray, subjects=4, sessions=2) -> np.ndarray:
    return np.stack([[reference_of(X, seed=10 * s + k) for k in range(sessions)] for s in range(subjects)])


def struct_array(rdms: np.ndarray) -> np.ndarray:
    """RDMs(subject, session) with fields RDM, name and color, as in 92_brainRDMs.mat."""
    s, k = rdms.shape[:2]
    out = np.empty((s, k), dtype=[("RDM", object), ("name", object), ("color", object)])
    for i in range(s):
        for j in range(k):
            out[i, j] = (rdms[i, j], f"subject{i + 1} session{j + 1}", np.array([[0.1, 0.2, 0.3]]))
    return out


def test_struct_array_of_rdms_loads_as_subjects_with_sessions_averaged(tmp_path):
    """The layout of the 92-image data's 92_brainRDMs.mat: RDMs(subject, session).RDM, 4 × 2, 92 × 92."""
    n = 92
    path, X = make_folder(tmp_path / "feats92", paths=[f"im{i:02d}.png" for i in range(n)])
    rdms = brain_rdms(X)
    savemat(tmp_path / "92_brainRDMs.mat", {"RDMs": struct_array(rdms)})
    stack, names = load_reference_rdms(tmp_path / "92_brainRDMs.mat")
    assert stack.shape == (4, n, n)
    np.testing.assert_allclose(stack, rdms.mean(axis=1), rtol=0, atol=1e-15)
    assert names[0] == "92_brainRDMs[0] (mean of 2 sessions)"
    for key in ("RDM", "RDMs.RDM", "RDMs"):
        np.testing.assert_array_equal(load_reference_rdms(tmp_path / "92_brainRDMs.mat", key=key)[0], stack)
    kept, names = load_reference_rdms(tmp_path / "92_brainRDMs.mat", sessions="keep")
    np.testing.assert_array_equal(kept, rdms.reshape(8, n, n))
    assert names[:2] == ["92_brainRDMs[0, session 0]", "92_brainRDMs[0, session 1]"]
    # the same struct array in a v7.3 file
    cells = np.empty((4, 2), dtype=object)
    for idx in np.ndindex(4, 2):
        cells[idx] = rdms[idx]
    write_mat73(tmp_path / "v73.mat", {"RDMs": {"RDM": cells}})
    np.testing.assert_allclose(load_reference_rdms(tmp_path / "v73.mat")[0], stack, rtol=0, atol=1e-15)
    # one command
    res = cli(
        "compare",
        f"{path}::avgpool",
        "--reference",
        tmp_path / "92_brainRDMs.mat",
        "--out",
        tmp_path / "t.csv",
        "--no-plot",
    )
    assert res.exit_code == 0, res.output
    assert "reference 92_brainRDMs.mat: 4 subjects, mean of 2 sessions each" in res.stdout
    table = pd.read_csv(tmp_path / "t.csv")
    model = pdist(X, "correlation")
    expect = np.mean([stats.pearsonr(model, squareform(r, checks=False)).statistic for r in stack])
    assert table["r"].iloc[0] == pytest.approx(expect, abs=1e-10)


def test_transposed_stack_is_refused_with_the_way_out(folder, tmp_path):
    path, X = folder
    stack = brain_rdms(X, sessions=1)[:, 0]
    np.save(tmp_path / "stack.npy", np.moveaxis(stack, 0, -1))  # (n, n, subjects)
    with pytest.raises(VisrepsError, match=r"shape \(40, 40, 4\): n × n × subjects.*np.moveaxis\(a, -1, 0\)"):
        load_reference_rdms(tmp_path / "stack.npy")
    res = cli("compare", path, "--reference", tmp_path / "stack.npy", "--out", tmp_path / "t.csv", "--no-plot")
    one_line_error(res, "stack.npy", "moveaxis")
    savemat(tmp_path / "stack.mat", {"rdms": np.moveaxis(stack, 0, -1)})  # MATLAB's own order is read as is
    np.testing.assert_array_equal(load_reference_rdms(tmp_path / "stack.mat")[0], stack)


def test_rsatoolbox_saved_rdms_are_references(folder, tmp_path):
    import rsatoolbox

    path, X = folder
    stack = brain_rdms(X, sessions=1)[:, 0]
    shuffled = [NAMES[i] for i in PERM]
    rdms = rsatoolbox.rdm.RDMs(
        np.stack([squareform(r[np.ix_(PERM, PERM)], checks=False) for r in stack]),
        pattern_descriptors={"images": shuffled},
    )
    rdms.save(str(tmp_path / "rdms.hdf5"), file_type="hdf5")
    got, names = load_reference_rdms(tmp_path / "rdms.hdf5")
    np.testing.assert_allclose(got, np.stack([r[np.ix_(PERM, PERM)] for r in stack]), rtol=0, atol=1e-15)
    assert names == [f"rdms[{i}]" for i in range(4)]
    # its pattern descriptor names the conditions: matched to the manifest
    res = cli("compare", path, "--reference", tmp_path / "rdms.hdf5", "--out", tmp_path / "t.csv", "--no-plot")
    assert res.exit_code == 0, res.output
    model = pdist(X, "correlation")
    expect = np.mean([stats.pearsonr(model, squareform(r, checks=False)).statistic for r in stack])
    assert pd.read_csv(tmp_path / "t.csv")["r"].iloc[0] == pytest.approx(expect, abs=1e-10)
    one = rsatoolbox.rdm.RDMs(squareform(stack[0], checks=False)[None])
    one.save(str(tmp_path / "one.h5"), file_type="hdf5")
    np.testing.assert_allclose(load_reference_rdm(tmp_path / "one.h5"), stack[0], rtol=0, atol=1e-15)
