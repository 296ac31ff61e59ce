"""Extraction options as one object, checked once; the engine protocol; the old import paths."""

import dataclasses

import numpy as np
import pytest

import visreps
import visreps.extraction as extraction
from visreps.errors import VisrepsError
from visreps.job import Batch, BatchSource, Engine, ExtractionOptions, Job
from visreps.options import POOL_MODES, PRECISIONS


def _count_validations(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = ExtractionOptions._validate

    def counting(self):
        calls.append(1)
        real(self)

    monkeypatch.setattr(ExtractionOptions, "_validate", counting)
    return calls


def test_options_are_validated_once_per_extract(monkeypatch, tiny_net, image_dir, small_prep, tmp_path):
    calls = _count_validations(monkeypatch)
    res = visreps.extract(
        tiny_net, image_dir, layers=["0", "7"], preprocessing=small_prep, out=tmp_path / "o", progress=False
    )
    assert len(calls) == 1
    assert res["0"].shape == (6, 4 * 16 * 16) and res["7"].shape[0] == 6
    calls.clear()  # a reduced run and a shard: still one check (the engine's start adapts without re-checking)
    res = visreps.extract(
        tiny_net, image_dir, layers=["7"], preprocessing=small_prep, reduce="srp:3", shard="1/2", progress=False
    )
    assert len(calls) == 1
    assert res["7"].shape == (3, 3)


def test_prepare_takes_the_object_or_keywords(monkeypatch, tiny_net, image_dir, small_prep):
    opts = ExtractionOptions(layers=["3"], preprocessing=small_prep, batch_size=4, pool="avg")
    calls = _count_validations(monkeypatch)
    job = extraction.prepare(tiny_net, image_dir, opts)
    assert calls == []  # the object was checked when it was built
    assert isinstance(job, Job) and job.options is opts
    assert (job.batch_size, job.keys, job.shapes) == (4, ["3"], {"3": (6,)})
    assert job.metadata["options"]["batch_size"] == 4
    job2 = extraction.prepare(tiny_net, image_dir, layers=["3"], preprocessing=small_prep, batch_size=4, pool="avg")
    assert len(calls) == 1 and job2.shapes == job.shapes
    with pytest.raises(TypeError, match="options or keyword arguments"):
        extraction.prepare(tiny_net, image_dir, opts, batch_size=2)


def test_defaults_are_those_of_extract():
    import inspect

    params = inspect.signature(visreps.extract).parameters
    fields = {f.name: f for f in dataclasses.fields(ExtractionOptions) if f.init}
    assert set(fields) == set(params) - {"model", "images"}
    for name, f in fields.items():
        default = params[name].default
        assert (f.default is dataclasses.MISSING) == (default is inspect.Parameter.empty), name
        if default is not inspect.Parameter.empty:
            assert f.default == default, name


def test_parsed_fields():
    o = ExtractionOptions(layers="fc", format="h5", shard="2/4", reduce="pca:5")
    assert (o.fmt, o.shard_range, str(o.reduction)) == ("hdf5", (2, 4), "pca:5")
    assert ExtractionOptions(layers="fc").reduction is None and ExtractionOptions(layers="fc").shard_range is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.batch_size = 3  # type: ignore[misc]
    moved = o.adapted(device="cpu", num_workers=0)
    assert (moved.device, moved.num_workers, moved.fmt, o.device) == ("cpu", 0, "hdf5", "auto")
    with pytest.raises(TypeError, match="no option devise"):
        o.adapted(devise="cpu")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be a positive integer or 'auto', got 0"),
        ({"batch_size": True}, "batch_size must be a positive integer"),
        ({"num_workers": -1}, "num_workers must be an integer >= 0, got -1"),
        ({"precision": "fp8"}, f"precision 'fp8' is not valid; use one of {', '.join(PRECISIONS)}"),
        ({"top_k": 1001}, "top_k must be an integer between 1 and 1000, got 1001"),
        ({"recurrent": "first"}, "recurrent='first' is not valid; use 'all'"),
        ({"pool": 3}, "pool must be a pool mode or a {layer: mode} mapping, got 3"),
        ({"format": "xls"}, "file format 'xls' is not supported"),
        ({"shard": "5/4"}, "shard '5/4' is not valid: I must be between 1 and N"),
        ({"shard": "half"}, "shard 'half' is not valid; write I/N"),
        ({"reduce": "svd:4"}, "unknown reduction 'svd:4'"),
        ({"reduce": "srp:4", "reduce_fit": "x"}, "reduce_fit (--reduce-fit) is the fit set of a PCA"),
        ({"resume": True}, "resume=True needs the output folder"),
        ({"resume": True, "overwrite": True, "out": "o"}, "choose either resume"),
        ({"engine": "spark"}, "engine='spark' is not valid"),
    ],
)
def test_bad_values_name_the_parameter(kwargs, message):
    with pytest.raises(VisrepsError) as info:
        ExtractionOptions(layers=["fc"], **kwargs)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_pool_values_are_checked_per_layer(tiny_net, image_dir, small_prep):
    """The pool mode's values are checked where the layers are known, naming the layer (once)."""
    assert "avg" in POOL_MODES
    with pytest.raises(VisrepsError, match="pool mode 'mean' for layer '3' is not valid"):
        visreps.extract(tiny_net, image_dir, layers=["3"], pool={"3": "mean"}, preprocessing=small_prep)


def test_not_an_engine_is_refused_in_one_line(tiny_net, image_dir):
    class Half:  # batches, but no start/attach/close
        name = "half"

        def batches(self, job, items):
            return iter(())

    for bad in (Half(), object(), 3):
        with pytest.raises(VisrepsError) as info:
            visreps.extract(tiny_net, image_dir, layers=["0"], engine=bad)
        msg = str(info.value)
        assert msg.startswith("engine=") and "is not valid" in msg and "\n" not in msg
    assert isinstance(Half(), BatchSource) and not isinstance(Half(), Engine)
    assert isinstance(extraction.LocalEngine(), Engine)


def test_run_refuses_what_gives_no_batches(tiny_net, image_dir, small_prep):
    job = extraction.prepare(tiny_net, image_dir, layers=["7"], preprocessing=small_prep)
    with pytest.raises(VisrepsError, match=r"^engine=3 is not valid"):
        extraction.run(job, engine=3, progress=False)


def test_a_custom_engine_is_driven(tiny_net, image_dir, small_prep):
    """Any object implementing the Engine protocol runs; the loop writes what it yields."""

    class Counting(extraction.LocalEngine):
        name = "counting"
        seen: list[int] = []

        def attach(self, job, options, model):
            job.metadata["options"]["engine"] = self.name

        def batches(self, job, items):
            for batch in super().batches(job, items):
                self.seen.append(len(batch.idx))
                yield batch

    eng = Counting()
    res = visreps.extract(tiny_net, image_dir, layers=["7"], preprocessing=small_prep, batch_size=4, engine=eng,
                          progress=False)  # fmt: skip
    local = visreps.extract(tiny_net, image_dir, layers=["7"], preprocessing=small_prep, batch_size=4, progress=False)
    assert eng.seen == [4, 2] and res.metadata["options"]["engine"] == "counting"
    np.testing.assert_array_equal(res["7"], local["7"])


def test_old_import_paths_still_work():
    from visreps.distributed import _decode_batch
    from visreps.extraction import Batch as B
    from visreps.extraction import Job as J
    from visreps.extraction import LocalEngine, drive, local_batches, parse_shard, shard_bounds

    assert (B, J) == (Batch, Job)
    assert callable(_decode_batch) and callable(drive) and callable(local_batches) and LocalEngine.name == "local"
    assert parse_shard("2/4") == (2, 4) and shard_bounds(10, 2, 4) == (2, 5)


def test_workcache_key_leaves_out_what_the_options_mark():
    from visreps.workcache import _NOT_IN_KEY

    assert set(_NOT_IN_KEY) >= {"batch_size", "num_workers", "device", "progress", "command", "engine", "order"}
    assert not {"pool", "precision", "reduce", "layers", "recurrent", "top_k"} & set(_NOT_IN_KEY)
