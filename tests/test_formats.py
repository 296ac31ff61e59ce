"""Every output format, through the same tests: the registry (``visreps.storage.formats.FORMATS``) is the list.

A format added as one module under ``src/visreps/storage/formats/`` (and one name in ``visreps.options.FORMATS``)
runs all of these: round trip, resume after Ctrl-C (bit for bit), ``verify``, damaged-file detection by
``load_features`` and ``visreps verify``, ``merge_shards``, and ``visreps extract --format``. zarr is the proof.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import visreps
import visreps.cli
from visreps import options, storage
from visreps.errors import DamagedOutputError, ExtractionInterrupted, VisrepsError
from visreps.storage import load_features, verify
from visreps.storage.formats import FORMATS, Format, get_format

ALL = list(FORMATS)


def _kw(small_prep, fmt, **more):
    return dict(layers=["3", "7"], preprocessing=small_prep, progress=False, batch_size=2, num_workers=0,
                format=fmt, **more)  # fmt: skip


def _victim(out: Path, fmt: str) -> Path:
    """The file of layer 3 (for a directory store: its largest file)."""
    path = out / get_format(fmt).layer_file("3")
    if path.is_dir():
        return max((p for p in path.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    return path


# --------------------------------------------------------------------------- the registry


def test_registry_is_the_options_list():
    assert tuple(FORMATS) == options.FORMATS
    assert "zarr" in FORMATS
    for name, f in FORMATS.items():
        assert isinstance(f, Format) and f.name == name and f.suffix.startswith(".")
    assert get_format("H5") is FORMATS["hdf5"] and get_format("hdf") is FORMATS["hdf5"]
    assert visreps.storage.check_format("HDF5") == "hdf5"
    with pytest.raises(VisrepsError, match="use one of npy, hdf5, mat, pt, txt, zarr"):
        get_format("parquet")


def test_names_come_from_the_formats():
    assert storage.layer_filename("features.0/x", "npy") == "features.0_x.npy"
    assert storage.layer_filename("fc", "hdf5") == "features.h5"
    assert storage.layer_filename("fc", "zarr") == "features.zarr"
    assert storage.SUFFIX == {"npy": ".npy", "mat": ".mat", "pt": ".pt", "txt": ".txt"}
    assert FORMATS["mat"].planned_names("3.mat") == {"3.mat", "3.mat.partial", "3.mat.stage.npy.partial"}
    assert FORMATS["zarr"].planned_names("features.zarr") == {"features.zarr", "features.zarr.partial"}
    assert FORMATS["mat"].extra_bytes([10, 30]) == 30 and FORMATS["npy"].extra_bytes([10, 30]) == 0
    assert not FORMATS["txt"].rows_fit((2, 3)) and FORMATS["txt"].rows_fit((6,)) and FORMATS["zarr"].rows_fit((2, 3))


# --------------------------------------------------------------------------- every format


@pytest.mark.parametrize("fmt", ALL)
def test_round_trip_verify_and_files(tiny_net, image_dir, small_prep, tmp_path, fmt):
    ref = visreps.extract(tiny_net, image_dir, **_kw(small_prep, "npy"))
    out = tmp_path / fmt
    res = visreps.extract(tiny_net, image_dir, out=out, **_kw(small_prep, fmt))
    back = load_features(out)
    for layer in ("3", "7"):
        np.testing.assert_array_equal(np.asarray(back[layer]), ref[layer])
        np.testing.assert_array_equal(np.asarray(res[layer]), ref[layer])
    assert back.paths == ref.paths and len(back["3"]) == 6
    f = get_format(fmt)
    expected = {f.layer_file("3"), f.layer_file("7")}
    assert {p.name for p in out.iterdir()} == expected | {"manifest.csv", "metadata.json"}
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["format"] == fmt and meta["layers"]["3"]["file"] == f.layer_file("3")
    assert sorted(verify(out)) == sorted(meta["checksums"]) == sorted(expected | {"manifest.csv"})


@pytest.mark.parametrize("fmt", ALL)
def test_damaged_file_is_named_by_load_and_verify(tiny_net, image_dir, small_prep, tmp_path, fmt):
    out = tmp_path / fmt
    visreps.extract(tiny_net, image_dir, out=out, **_kw(small_prep, fmt))
    victim = _victim(out, fmt)
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - max(1, len(data) // 3)])
    name = get_format(fmt).layer_file("3")
    with pytest.raises(DamagedOutputError, match=name.replace(".", r"\.")):
        load_features(out)
    with pytest.raises(DamagedOutputError, match=name.replace(".", r"\.")):
        verify(out)
    r = CliRunner().invoke(visreps.cli.main, ["verify", str(out)])
    assert r.exit_code == 2 and name in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("fmt", ALL)
def test_resume_after_ctrl_c_is_bit_identical(tiny_net, image_dir, small_prep, tmp_path, fmt):
    kw = _kw(small_prep, fmt)
    full = visreps.extract(tiny_net, image_dir, out=tmp_path / "full", **kw)
    calls = {"n": 0}

    def stop(mod, inp, out):
        calls["n"] += 1
        if calls["n"] == 4:  # a dry run, then the third batch (of 2 images): two batches are written
            raise KeyboardInterrupt

    h = tiny_net[7].register_forward_hook(stop)
    with pytest.raises(ExtractionInterrupted):
        visreps.extract(tiny_net, image_dir, out=tmp_path / "cut", **kw)
    h.remove()
    assert json.loads((tmp_path / "cut" / "progress.partial.json").read_text())["next_image"] == 4
    assert not (tmp_path / "cut" / "metadata.json").exists()
    res = visreps.extract(tiny_net, image_dir, out=tmp_path / "cut", resume=True, **kw)
    for k in ("3", "7"):
        np.testing.assert_array_equal(np.asarray(res[k]), np.asarray(full[k]))
    verify(tmp_path / "cut")


@pytest.mark.parametrize("fmt", ALL)
def test_merge_shards(tiny_net, image_dir, small_prep, tmp_path, fmt):
    kw = {**_kw(small_prep, fmt), "batch_size": 3}  # the same batches in the shards and the single run: bit for bit
    single = visreps.extract(tiny_net, image_dir, **kw)
    shards = [tmp_path / f"s{i}" for i in (1, 2)]
    for i, d in enumerate(shards, 1):
        visreps.extract(tiny_net, image_dir, out=d, shard=f"{i}/2", **kw)
    merged = visreps.merge_shards(tmp_path / "m", shards[::-1])
    assert merged.paths == single.paths and merged.metadata["format"] == fmt
    for k in ("3", "7"):
        np.testing.assert_array_equal(np.asarray(merged[k]), single[k])
    verify(tmp_path / "m")


@pytest.mark.parametrize("fmt", ALL)
def test_overwrite_replaces_the_earlier_runs_files(tiny_net, image_dir, small_prep, tmp_path, fmt):
    out = tmp_path / "o"
    visreps.extract(tiny_net, image_dir, out=out, **_kw(small_prep, fmt))
    with pytest.raises(visreps.errors.OutputExistsError, match="--overwrite"):
        visreps.extract(tiny_net, image_dir, out=out, **_kw(small_prep, fmt))
    (out / "mine").mkdir()  # a user's folder: never removed
    res = visreps.extract(tiny_net, image_dir, out=out, overwrite=True, **{**_kw(small_prep, fmt), "layers": ["7"]})
    assert res.layers == ["7"] and (out / "mine").is_dir()
    verify(out)


def test_extract_format_zarr_on_the_command_line(tiny_net, image_dir, tmp_path):
    import torch

    model_file = tmp_path / "net.pt"
    torch.save(tiny_net, model_file)
    out = tmp_path / "D"
    args = ["extract", f"file:{model_file}", str(image_dir), "--layers", "3,7", "--format", "zarr", "--out", str(out),
            "--allow-pickle", "-q", "--batch-size", "4"]  # fmt: skip
    r = CliRunner().invoke(visreps.cli.main, args)
    assert r.exit_code == 0, r.output
    assert (out / "features.zarr" / "zarr.json").is_file()
    r = CliRunner().invoke(visreps.cli.main, ["verify", str(out)])
    assert r.exit_code == 0, r.output
    assert load_features(out)["7"].shape == (6, 5)


# --------------------------------------------------------------------------- zarr reads lazily


def test_zarr_layers_are_read_only_when_indexed(tiny_net, image_dir, small_prep, tmp_path, monkeypatch):
    import zarr

    from visreps.storage.formats.zarr import ZarrLayer

    out = tmp_path / "z"
    ref = np.asarray(visreps.extract(tiny_net, image_dir, out=out, **_kw(small_prep, "zarr"))["3"])
    reads = []
    real = zarr.Array.__getitem__

    def counting(self, key):
        reads.append(key)
        return real(self, key)

    monkeypatch.setattr(zarr.Array, "__getitem__", counting)
    feats = load_features(out)
    layer = feats["3"]
    assert isinstance(layer, ZarrLayer) and isinstance(layer.array, zarr.Array)
    assert reads == []  # opening the folder, checking shapes and rows: nothing read
    assert layer.shape == (6, 384) and len(layer) == 6 and layer.dtype == np.float32
    assert reads == []
    np.testing.assert_array_equal(layer[2:4], ref[2:4])
    assert len(reads) == 1
    np.testing.assert_array_equal(np.asarray(layer), ref)
    eager = load_features(out, mmap=False)["3"]
    assert type(eager) is np.ndarray


# --------------------------------------------------------------------------- sinks


def test_both_sinks_are_sinks_and_finish_with_features(tmp_path):
    from visreps.storage import Features, MemorySink, OutputWriter, Sink, SinkPlan

    rows = np.arange(12, dtype=np.float32).reshape(3, 4)
    plan = SinkPlan.of({"fc": [4]}, 3)
    got = []
    for sink in (MemorySink(), OutputWriter(tmp_path / "o", "zarr")):
        assert isinstance(sink, Sink)
        layer = {"shape": [3, 4], "dtype": "float32", "file": "features.zarr"}
        meta = {"status": "running", "model": "m", "layers": {"fc": layer}, "format": "zarr"}
        sink.start(meta, plan)
        sink.write(0, {"fc": rows[:2]})
        sink.write(2, {"fc": rows[2:]})
        feats = sink.finish(3, [("a.png", ""), ("b.png", ""), ("c.png", "")], meta)
        assert isinstance(feats, Features) and feats.paths == ["a.png", "b.png", "c.png"]
        got.append(np.asarray(feats["fc"]))
    np.testing.assert_array_equal(got[0], rows)
    np.testing.assert_array_equal(got[1], rows)
    assert json.loads((tmp_path / "o" / "metadata.json").read_text())["status"] == "complete"
