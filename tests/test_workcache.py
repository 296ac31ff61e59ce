"""The extraction cache of ``compare --work-dir`` and ``bench`` (issue 19, finding 3): entries never lost."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import visreps
from conftest import EXAMPLES
from visreps import workflows
from visreps.errors import VisrepsError
from visreps.workcache import cache_request, cached_extract, image_hashes, request_key

LAYERS = ["features.2", "classifier.5"]


def _entries(work: Path) -> dict[str, dict]:
    """Entry folder name → its checksums, for every complete entry in ``work``."""
    out = {}
    for kf in sorted(work.glob("*.key.json")):
        folder = kf.with_name(kf.name[: -len(".key.json")])
        meta = json.loads((folder / "metadata.json").read_text())
        out[folder.name] = meta["checksums"]
    return out


@pytest.fixture
def two_folders(tmp_path) -> tuple[Path, Path]:
    a = tmp_path / "imgs_a"
    shutil.copytree(EXAMPLES, a)
    b = tmp_path / "imgs_b"
    shutil.copytree(EXAMPLES, b)
    (b / "rocket.jpg").unlink()  # another image set
    return a, b


@pytest.mark.slow
def test_requests_that_change_the_numbers_never_replace_each_other(tmp_path, two_folders):
    """Pretrained vs random, seed, another image folder, other layers: one entry each; the earlier ones intact."""
    imgs, other = two_folders
    work = tmp_path / "work"

    def run(images, **opts):
        return workflows.compare_features(
            ["timm:tf_efficientnet_lite0"],
            layers=["global_pool"],
            images=images,
            work_dir=work,
            extract_options={"pool": "avg", "device": "cpu", **opts},
        )

    first = run(imgs, pretrained=False, seed=0)
    before = _entries(work)
    assert len(before) == 1
    run(imgs)  # pretrained
    run(imgs, pretrained=False, seed=1)
    run(other, pretrained=False, seed=0)
    after = _entries(work)
    assert len(after) == 4
    for name, sums in before.items():
        assert after[name] == sums  # never replaced
    for name in after:
        visreps.verify(work / name)
    kinds = sorted(
        json.dumps(json.loads((work / n / "metadata.json").read_text())["weights"], sort_keys=True) for n in after
    )
    assert sum('"pretrained"' in k for k in kinds) == 1
    # each request is served by its own entry: the same numbers again, nothing extracted
    again = run(imgs, pretrained=False, seed=0)
    assert np.array_equal(first.to_numpy(), again.to_numpy())
    assert _entries(work) == after


def test_an_entry_with_more_layers_serves_fewer_and_a_failed_attempt_deletes_nothing(tmp_path, monkeypatch):
    work = tmp_path / "work"
    opts = {"pretrained": False, "seed": 3, "pool": "avg", "device": "cpu"}
    full = cached_extract("torchvision:alexnet", EXAMPLES, layers=LAYERS, work_dir=work, options=opts)
    assert full.extracted
    sub = cached_extract("torchvision:alexnet", EXAMPLES, layers=["classifier.5"], work_dir=work, options=opts)
    assert not sub.extracted and sub.folder == full.folder  # no second extraction for a subset
    before = _entries(work)

    import visreps.extraction

    def failing(model, images, *, layers, out=None, **kw):
        Path(out).mkdir(parents=True, exist_ok=True)
        raise VisrepsError("the model's forward pass failed (simulated)")

    monkeypatch.setattr(visreps.extraction, "extract", failing)
    with pytest.raises(VisrepsError, match="simulated"):
        cached_extract("torchvision:alexnet", EXAMPLES, layers=LAYERS, work_dir=work, options={**opts, "seed": 4})
    assert _entries(work) == before  # the failure deleted and replaced nothing
    visreps.verify(full.folder)
    monkeypatch.undo()
    done = cached_extract("torchvision:alexnet", EXAMPLES, layers=LAYERS, work_dir=work, options={**opts, "seed": 4})
    assert done.extracted and not Path(str(done.folder) + ".partial").exists()
    assert len(_entries(work)) == 2


def test_the_key_holds_what_changes_the_numbers(tmp_path):
    imgs = image_hashes(EXAMPLES)
    assert [p for p, _ in imgs] == [i.path for i in visreps.find_images(EXAMPLES)]
    base = cache_request("torchvision:alexnet", LAYERS, imgs, {"pretrained": False, "seed": 1, "batch_size": 8})
    same = cache_request("torchvision:alexnet", LAYERS, imgs, {"pretrained": False, "seed": 1, "device": "cpu"})
    assert request_key(base) == request_key(same)  # batch size and device: not in the key
    w = tmp_path / "w.safetensors"
    w.write_bytes(b"0" * 10)
    changed = [
        cache_request("torchvision:alexnet", LAYERS, imgs, {"pretrained": False, "seed": 2}),
        cache_request("torchvision:alexnet", LAYERS, imgs, {}),
        cache_request("torchvision:alexnet", LAYERS, imgs, {"weights": w}),
        cache_request("torchvision:alexnet", LAYERS[:1], imgs, {"pretrained": False, "seed": 1}),
        cache_request("torchvision:alexnet", LAYERS, imgs, {"pretrained": False, "seed": 1, "pool": "avg"}),
        cache_request("torchvision:alexnet", LAYERS, imgs, {"pretrained": False, "seed": 1, "reduce": "srp:64"}),
        cache_request("torchvision:alexnet", LAYERS, imgs[:-1], {"pretrained": False, "seed": 1}),
        cache_request(
            "torchvision:alexnet", LAYERS, [(p, "0" * 32) for p, _ in imgs], {"pretrained": False, "seed": 1}
        ),
    ]
    keys = {request_key(r) for r in changed} | {request_key(base)}
    assert len(keys) == len(changed) + 1
    assert changed[2]["weights"]["sha256"] == __import__("hashlib").sha256(b"0" * 10).hexdigest()
