"""The run record (``metadata.json``): one builder for image runs, text runs and merges; the same files as before.

``tests/data/run_records/*.json`` were written by visreps before the record had a type (an image run, a merge
of two shards, a text run); the runs below repeat them and must give the same keys, in the same order, with the
same values (times, versions, paths and machine-dependent options aside).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import visreps
from visreps.storage import record

RECORDS = Path(__file__).parent / "data" / "run_records"
VOLATILE = {"created", "seconds", "versions", "command"}
MACHINE = {"root", "num_workers", "device", "device_type", "sha256"}  # paths, worker count, device, float bits


def _shape(obj, key=None):
    """The record with the volatile values replaced by their type (keys and their order are kept)."""
    if isinstance(obj, dict):
        return {k: (type(v).__name__ if k in VOLATILE | MACHINE else _shape(v, k)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_shape(v) for v in obj]
    return obj


def _same(before: dict, after: dict) -> None:
    assert list(after) == list(before)  # the keys, in order
    assert json.dumps(_shape(after)) == json.dumps(_shape(before))


@pytest.mark.parametrize("name", ["image", "merge", "text"])
def test_to_json_and_from_json_round_trip_the_files_exactly(name):
    text = (RECORDS / f"{name}.json").read_text(encoding="utf-8")
    rec = record.from_json(text)
    assert record.to_json(rec) == text
    assert record.record_format(rec) == "npy" and record.is_text(rec) == (name == "text")
    layer = next(iter(record.record_layers(rec)))
    assert record.record_shape(rec, layer)[0] == rec["layers"][layer]["shape"][0]
    with pytest.raises(ValueError, match="no layers"):
        record.from_json('{"status": "complete"}')


def _run(tiny_net, image_dir, small_prep, out: Path, **more):
    kw = dict(layers=["3", "7"], preprocessing=small_prep, progress=False, batch_size=2, num_workers=0)
    return visreps.extract(tiny_net, image_dir, out=out, **kw, **more)


def test_image_run_and_merge_write_the_records_of_before(tiny_net, image_dir, small_prep, tmp_path):
    _run(tiny_net, image_dir, small_prep, tmp_path / "image")
    _same(json.loads((RECORDS / "image.json").read_text()), json.loads((tmp_path / "image/metadata.json").read_text()))
    for i in (1, 2):
        _run(tiny_net, image_dir, small_prep, tmp_path / f"s{i}", shard=f"{i}/2")
    visreps.merge_shards(tmp_path / "merge", [tmp_path / "s2", tmp_path / "s1"])
    merged = json.loads((tmp_path / "merge/metadata.json").read_text())
    _same(json.loads((RECORDS / "merge.json").read_text()), merged)
    shards = [json.loads((tmp_path / f"s{i}/metadata.json").read_text()) for i in (1, 2)]
    assert merged["created"] == min(s["created"] for s in shards)
    assert merged["images"]["n_extracted"] == 6 and merged["layers"]["3"]["shape"] == [6, 384]
    assert "shard" not in merged and merged["status"] == "complete"


@pytest.mark.slow
def test_text_run_writes_the_record_of_before(tmp_path):
    from visreps.models import load_model
    from visreps.text import extract_text

    vit = load_model("clip:ViT-B-32", pretrained=False, device="cpu")
    extract_text(vit, ["a photo of a dog", "ünïcödé ☃"], out=tmp_path / "text", progress=False)
    after = json.loads((tmp_path / "text/metadata.json").read_text())
    _same(json.loads((RECORDS / "text.json").read_text()), after)


def test_layer_record_names_the_file_of_the_format():
    assert record.layer_record("a/b", module="a", pool="avg", shape=[2, 3], fmt="txt")["file"] == "a_b.txt"
    rec = record.layer_record("fc", module="fc", pool="flatten", shape=[2, 5], fmt="zarr", call=0, calls=1)
    assert list(rec) == ["module", "call", "calls_per_pass", "pool", "shape", "dtype", "file"]
    assert rec["file"] == "features.zarr"
