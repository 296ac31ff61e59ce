"""Reading response files (every format, axes, image names), matching rows to a manifest, NaN policy."""

import warnings

import h5py
import numpy as np
import pytest
from scipy.io import savemat

from visreps.analysis import Responses, load_responses, match_images
from visreps.analysis.responses import as_responses, clean_targets
from visreps.errors import VisrepsError

NAMES = ["a.png", "b.png", "c.png", "d.png"]


def data(shape=(4, 3), seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def test_npy_npz_mat_h5_round_trip(tmp_path):
    Y = data()
    np.save(tmp_path / "r.npy", Y)
    np.savez(tmp_path / "r.npz", responses=Y, images=np.array(NAMES))
    savemat(tmp_path / "r.mat", {"resp": Y, "images": np.array(NAMES, dtype=object)})
    with h5py.File(tmp_path / "r.h5", "w") as f:
        f["grp/resp"] = Y
        f["other"] = Y + 1
    r = load_responses(tmp_path / "r.npy")
    assert r.axes == ("images", "targets") and r.images is None and r.targets == ["0", "1", "2"]
    np.testing.assert_array_equal(r.data, Y)
    r = load_responses(tmp_path / "r.npz")
    assert r.images == NAMES
    np.testing.assert_array_equal(r.data, Y)
    r = load_responses(tmp_path / "r.mat")
    assert r.images == NAMES
    np.testing.assert_array_equal(r.data, Y)
    r = load_responses(tmp_path / "r.h5", key="grp/resp")
    np.testing.assert_array_equal(r.data, Y)
    with pytest.raises(VisrepsError, match=r"several arrays \(grp/resp \(4, 3\), other \(4, 3\)\).*key"):
        load_responses(tmp_path / "r.h5")
    with pytest.raises(VisrepsError, match="has no variable 'nope'; it has: grp/resp, other"):
        load_responses(tmp_path / "r.h5", key="nope")


def test_csv_with_image_column_and_header_tsv_and_headerless(tmp_path):
    Y = data()
    lines = ["stimulus,v1,v2,v3"] + [f"{n}," + ",".join(f"{v:.17g}" for v in row) for n, row in zip(NAMES, Y)]
    (tmp_path / "r.csv").write_text("\n".join(lines) + "\n")
    r = load_responses(tmp_path / "r.csv")
    assert r.images == NAMES and r.targets == ["v1", "v2", "v3"]
    np.testing.assert_array_equal(r.data, Y)
    (tmp_path / "r.tsv").write_text("\n".join(ln.replace(",", "\t") for ln in lines) + "\n")
    np.testing.assert_array_equal(load_responses(tmp_path / "r.tsv").data, Y)
    (tmp_path / "plain.csv").write_text("\n".join(",".join(f"{v:.17g}" for v in row) for row in Y) + "\n")
    r = load_responses(tmp_path / "plain.csv")
    assert r.images is None
    np.testing.assert_array_equal(r.data, Y)
    (tmp_path / "gap.csv").write_text("image,x,y\na.png,1,\nb.png,2,3\nc.png,4,5\n")
    r = load_responses(tmp_path / "gap.csv")
    assert np.isnan(r.data[0, 1]) and r.data[2, 1] == 5
    (tmp_path / "bad.csv").write_text("image,x\na.png,1\nb.png,oops\n")
    with pytest.raises(VisrepsError, match=r"line 3, column 2 holds 'oops', not a number"):
        load_responses(tmp_path / "bad.csv")


def test_axes_are_declared_and_put_in_canonical_order(tmp_path):
    X = data((2, 3, 4, 5))  # subjects, repetitions, images, targets
    np.save(tmp_path / "r.npy", X.transpose(2, 3, 1, 0))  # images, targets, repetitions, subjects
    r = load_responses(tmp_path / "r.npy", axes="images,voxels,trials,subjects")
    assert r.axes == ("subjects", "repetitions", "images", "targets")
    np.testing.assert_array_equal(r.data, X)
    assert (r.n_subjects, r.n_repetitions, r.n_images, r.n_targets) == (2, 3, 4, 5)
    Y, reps, labels = r.flat()
    assert Y.shape == (4, 10) and reps is not None and reps.shape == (3, 4, 10)
    assert labels[:2] == ["s0/0", "s0/1"] and labels[5] == "s1/0"
    np.testing.assert_allclose(Y[:, 5:], X[1].mean(axis=0))
    with pytest.raises(VisrepsError, match="4 dimensions; say what they are with axes"):
        load_responses(tmp_path / "r.npy")
    with pytest.raises(VisrepsError, match="names 3 axes but responses in 'r.npy' have 4"):
        load_responses(tmp_path / "r.npy", axes="repetitions,images,targets")
    with pytest.raises(VisrepsError, match=r"unknown axis name\(s\) \['time'\]"):
        load_responses(tmp_path / "r.npy", axes="time,images,targets,subjects")
    one = as_responses(np.arange(4.0))
    assert one.axes == ("images", "targets") and one.data.shape == (4, 1)


def test_order_file_overrides_names(tmp_path):
    np.save(tmp_path / "r.npy", data())
    (tmp_path / "order.txt").write_text("# images\nd.png\nc.png\n\nb.png\na.png\n")
    r = load_responses(tmp_path / "r.npy", images=tmp_path / "order.txt")
    assert r.images == ["d.png", "c.png", "b.png", "a.png"]
    (tmp_path / "short.txt").write_text("a.png\nb.png\n")
    with pytest.raises(VisrepsError, match="lists 2 images but responses in 'r.npy' have 4 rows"):
        load_responses(tmp_path / "r.npy", images=tmp_path / "short.txt")


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(VisrepsError, match="does not exist"):
        load_responses(tmp_path / "nope.npy")
    (tmp_path / "r.xlsx").write_text("x")
    with pytest.raises(VisrepsError, match="format '.xlsx' is not supported"):
        load_responses(tmp_path / "r.xlsx")


MANIFEST = ["cls0/a.png", "cls0/b.png", "cls1/c.png", "cls1/d.png"]


def test_match_by_path_and_by_unique_file_name():
    idx = match_images(["cls1/d.png", "a.png", "cls1/c.png", "b.png"], MANIFEST, n_rows=4, n_features=4)
    np.testing.assert_array_equal(idx, [3, 0, 2, 1])
    np.testing.assert_array_equal(match_images(None, MANIFEST, n_rows=4, n_features=4), np.arange(4))


@pytest.mark.parametrize(
    "names, message",
    [
        (["a.png", "b.png", "c.png", "zebra.png"], r"name 1 image\(s\) that are not in .* e\.g\. \['zebra.png'\]"),
        (["a.png", "a.png", "c.png", "d.png"], r"list 1 image\(s\) more than once, e\.g\. \['a.png'\]"),
        (["a.png", "cls0/a.png", "c.png", "d.png"], r"name one image twice \(e\.g\. \[\('a.png', 'cls0/a.png'\)\]"),
        (
            ["a.png", "b.png", "c.png"],
            r"have 3 images but the features have 4; e\.g\. no response for \['cls1/d.png'\]",
        ),
    ],
)
def test_strict_matching_errors_name_examples(names, message):
    with pytest.raises(VisrepsError, match=message):
        match_images(names, MANIFEST, n_rows=len(names), n_features=4)


def test_unnamed_rows_must_match_count_and_ambiguous_names_fail():
    with pytest.raises(VisrepsError, match="have 3 rows .* but the features have 4; .*order file"):
        match_images(None, MANIFEST, n_rows=3, n_features=4)
    with pytest.raises(VisrepsError, match=r"the file name\(s\) \['a.png'\] match several manifest paths"):
        match_images(["a.png", "x/a.png"], ["x/a.png", "y/a.png"], n_rows=2, n_features=2)


def test_nan_error_names_count_and_place_drop_warns_and_lists():
    Y = data((4, 5))
    Y[2, 1] = np.nan
    Y[0, 3] = np.inf
    Y[1, 3] = np.nan
    labels = [f"v{i}" for i in range(5)]
    with pytest.raises(
        VisrepsError, match=r"3 NaN/inf value\(s\) in 2 of 5 targets \(first: target 'v3', image 'a.png'\)"
    ):
        clean_targets(Y, None, labels, images=NAMES)
    with pytest.warns(UserWarning, match=r"dropped 2 of 5 targets with NaN/inf values \(e\.g\. \['v1', 'v3'\]\)"):
        Y2, reps, kept, dropped, keep = clean_targets(Y, None, labels, nan="drop")
    assert dropped == ["v1", "v3"] and kept == ["v0", "v2", "v4"] and reps is None
    np.testing.assert_array_equal(Y2, Y[:, [0, 2, 4]])
    with pytest.raises(VisrepsError, match="nan='keep' is not known"):
        clean_targets(Y, None, labels, nan="keep")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert clean_targets(Y[:, [0]], None, ["v0"])[3] == []


def test_responses_repr_and_take_images():
    r = Responses(data=data(), axes=("images", "targets"), images=list(NAMES))
    t = r.take_images([3, 0, 1, 2])
    assert t.images == ["d.png", "a.png", "b.png", "c.png"]
    np.testing.assert_array_equal(t.data[0], r.data[3])
    assert "images=4, targets=3; named rows" in repr(r)


def test_hdf5_string_dataset_names_rows(tmp_path):
    Y = data()
    with h5py.File(tmp_path / "r.hdf5", "w") as f:
        f["resp"] = Y
        f.create_dataset("stimuli", data=NAMES, dtype=h5py.string_dtype())
    r = load_responses(tmp_path / "r.hdf5")
    assert r.images == NAMES
    np.testing.assert_array_equal(r.data, Y)
