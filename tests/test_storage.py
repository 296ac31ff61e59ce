import json

import h5py
import numpy as np
import pytest
import scipy.io
import torch

import visreps
from visreps.errors import VisrepsError
from visreps.storage import NpyWriter, OutputWriter, load_features
from visreps.storage.formats import FORMATS


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_round_trip_every_format(tiny_net, image_dir, small_prep, tmp_path, fmt):
    # the same batches (4 + 2 images) in both runs, so the numbers are bit for bit the same and every comparison
    # below checks the file format alone (a batch of 6 may round the last bits differently)
    kw = {"layers": ["3", "7"], "preprocessing": small_prep, "progress": False, "batch_size": 4}
    ref = visreps.extract(tiny_net, image_dir, **kw)
    res = visreps.extract(tiny_net, image_dir, out=tmp_path / fmt, format=fmt, **kw)
    back = load_features(tmp_path / fmt)
    for layer in ("3", "7"):
        np.testing.assert_array_equal(np.asarray(back[layer]), ref[layer])
        np.testing.assert_array_equal(np.asarray(res[layer]), ref[layer])
    assert back.paths == ref.paths
    files = {p.name for p in (tmp_path / fmt).iterdir()}
    expected = {
        "hdf5": {"features.h5"},
        "npy": {"3.npy", "7.npy"},
        "mat": {"3.mat", "7.mat"},
        "pt": {"3.pt", "7.pt"},
        "txt": {"3.txt", "7.txt"},
        "zarr": {"features.zarr"},
    }[fmt]
    assert files == expected | {"manifest.csv", "metadata.json"}
    # readable by the standard tools, not only by visreps
    f = tmp_path / fmt
    if fmt == "npy":
        np.testing.assert_array_equal(np.load(f / "7.npy"), ref["7"])
    elif fmt == "hdf5":
        with h5py.File(f / "features.h5") as h:
            np.testing.assert_array_equal(h["7"][()], ref["7"])
    elif fmt == "mat":
        np.testing.assert_array_equal(scipy.io.loadmat(f / "7.mat")["features"], ref["7"])
    elif fmt == "pt":
        np.testing.assert_array_equal(torch.load(f / "7.pt").numpy(), ref["7"])
    elif fmt == "zarr":
        import zarr

        np.testing.assert_array_equal(zarr.open_group(str(f / "features.zarr"), mode="r")["7"][...], ref["7"])
    else:
        np.testing.assert_array_equal(np.loadtxt(f / "7.txt", dtype=np.float32), ref["7"])


def test_keep_shape_in_npy_hdf5_and_txt_refuses(tiny_net, image_dir, small_prep, tmp_path):
    for fmt in (f for f in FORMATS if FORMATS[f].rows_fit((6, 8, 8))):  # every format but txt
        res = visreps.extract(
            tiny_net,
            image_dir,
            layers=["3"],
            pool="none",
            preprocessing=small_prep,
            out=tmp_path / fmt,
            format=fmt,
            progress=False,
        )
        assert np.asarray(res["3"]).shape == (6, 6, 8, 8)
    with pytest.raises(VisrepsError, match="txt holds 2-D arrays only.*flatten"):
        visreps.extract(
            tiny_net,
            image_dir,
            layers=["3"],
            pool="none",
            preprocessing=small_prep,
            out=tmp_path / "t",
            format="txt",
            progress=False,
        )


def test_npy_writer_preallocates_and_shrinks(tmp_path):
    w = NpyWriter(tmp_path / "x.npy", (3, 2), n_rows=5)
    data = np.arange(5 * 6, dtype=np.float32).reshape(5, 3, 2)
    w.write(2, data[2:4])
    w.write(0, data[0:2])
    partial = w.finish(4)
    arr = np.load(partial)
    np.testing.assert_array_equal(arr, data[:4])
    assert arr.shape == (4, 3, 2)
    assert partial.name == "x.npy.partial"


def test_npy_header_survives_row_count_shrinking_across_digits(tmp_path):
    w = NpyWriter(tmp_path / "y.npy", (1,), n_rows=100000)
    w.write(0, np.ones((7, 1), np.float32))
    np.testing.assert_array_equal(np.load(w.finish(7)), np.ones((7, 1), np.float32))


def test_load_features_errors(tmp_path, tiny_net, image_dir, small_prep):
    with pytest.raises(VisrepsError, match="not a visreps output folder"):
        load_features(tmp_path)
    visreps.extract(tiny_net, image_dir, layers=["3"], preprocessing=small_prep, out=tmp_path / "o", progress=False)
    with pytest.raises(visreps.errors.LayerNotFoundError, match="has no layer '4'; available: 3"):
        load_features(tmp_path / "o", layers=["4"])
    meta = json.loads((tmp_path / "o" / "metadata.json").read_text())
    assert meta["layers"]["3"]["shape"] == [6, 384]
    sub = load_features(tmp_path / "o", "3", mmap=False)
    assert not isinstance(sub["3"], np.memmap) and sub.labels[2] == "cls1"


def test_output_folder_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(visreps.errors.OutputExistsError, match="is a file"):
        OutputWriter(tmp_path / "f", "npy")


def test_predictions_are_a_field_restored_by_load_and_merge(image_dir, small_prep, tmp_path):
    """`visreps extract ... --top-k 5 --out D`, then `load_features(D).predictions` is the table (and after merge)."""
    from click.testing import CliRunner
    from torch import nn

    import visreps.cli

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 1000)).eval()
    mem = visreps.extract(net, image_dir, layers=["3"], preprocessing=small_prep, top_k=5, progress=False)
    assert list(mem.predictions.columns[:5]) == ["index", "path", "class_1", "name_1", "prob_1"]
    model_file = tmp_path / "net.pt"
    torch.save(net, model_file)
    out = tmp_path / "D"
    r = CliRunner().invoke(visreps.cli.main, ["extract", f"file:{model_file}", str(image_dir), "--layers", "3",
                                              "--top-k", "5", "--out", str(out), "--allow-pickle", "-q",
                                              "--batch-size", "4"])  # fmt: skip
    assert r.exit_code == 0, r.output
    table = visreps.load_features(out).predictions
    import pandas as pd

    assert table.equals(pd.read_csv(out / "predictions.csv", keep_default_na=False).astype(table.dtypes))
    assert list(table["path"]) == visreps.load_features(out).paths and table.shape == (6, 2 + 3 * 5)
    shards = []
    for i in (1, 2):
        shards.append(tmp_path / f"s{i}")
        visreps.extract(net, image_dir, layers=["3"], preprocessing=small_prep, top_k=5, progress=False,
                        out=shards[-1], shard=f"{i}/2", batch_size=4)  # fmt: skip
    merged = visreps.merge_shards(tmp_path / "merged", shards)
    assert merged.predictions is not None and list(merged.predictions["path"]) == merged.paths
    np.testing.assert_allclose(merged.predictions["prob_1"].to_numpy(), mem.predictions["prob_1"].to_numpy(),
                               rtol=1e-5)  # fmt: skip
