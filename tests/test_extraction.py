import json

import numpy as np
import pytest
import torch

import visreps
from conftest import EXAMPLES, write_images
from visreps.data import find_images, load_image
from visreps.errors import LayerNotFoundError, VisrepsError
from visreps.storage.formats import FORMATS as FORMAT_REGISTRY


def hand_forward(module, root, prep, upto):
    """The reference: preprocess each image by hand and run the module up to ``upto`` (a Sequential index)."""
    tf = prep.build()
    xs = torch.stack([tf(load_image(i.absolute(root))) for i in find_images(root)])
    with torch.no_grad():
        return module[: upto + 1](xs).reshape(len(xs), -1).numpy()


def test_random_seeded_model_equals_hand_forward(tiny_net, image_dir, small_prep, tmp_path):
    res = visreps.extract(
        tiny_net, image_dir, layers=["0", "3", "7"], preprocessing=small_prep, out=tmp_path / "o", progress=False
    )
    for layer, upto in [("0", 0), ("3", 3), ("7", 7)]:
        np.testing.assert_allclose(
            res[layer], hand_forward(tiny_net, image_dir, small_prep, upto), rtol=1e-5, atol=1e-6
        )
    assert res["0"].shape == (6, 4 * 16 * 16)
    assert res.paths == [i.path for i in find_images(image_dir)]


def test_inplace_relu_does_not_corrupt_captured_conv(tiny_net, image_dir, small_prep):
    # layer 0 is a conv followed by an in-place ReLU; asking for 0 and 7 must keep negative conv values
    res = visreps.extract(tiny_net, image_dir, layers=["0", "7"], preprocessing=small_prep, progress=False)
    assert (res["0"] < 0).any()
    np.testing.assert_allclose(res["0"], hand_forward(tiny_net, image_dir, small_prep, 0), rtol=1e-5, atol=1e-6)


def test_several_layers_equal_one_by_one(image_dir, tmp_path):
    kw = dict(pretrained=False, seed=3, progress=False, preprocessing={"resize": 64, "crop": 64})
    both = visreps.extract("torchvision:alexnet", image_dir, layers=["features.2", "features.5"], **kw)
    a = visreps.extract("torchvision:alexnet", image_dir, layers=["features.2"], **kw)
    b = visreps.extract("torchvision:alexnet", image_dir, layers=["features.5"], **kw)
    np.testing.assert_array_equal(both["features.2"], a["features.2"])
    np.testing.assert_array_equal(both["features.5"], b["features.5"])


def test_seed_reproducible_and_recorded(image_dir):
    kw = dict(layers=["fc"], pretrained=False, progress=False, preprocessing={"resize": 32, "crop": 32})
    r1 = visreps.extract("torchvision:resnet18", image_dir, seed=1, **kw)
    r2 = visreps.extract("torchvision:resnet18", image_dir, seed=1, **kw)
    r3 = visreps.extract("torchvision:resnet18", image_dir, seed=2, **kw)
    np.testing.assert_array_equal(r1["fc"], r2["fc"])
    assert not np.allclose(r1["fc"], r3["fc"])
    assert r1.metadata["weights"] == {"kind": "random", "seed": 1}


def test_weights_file_model_equals_hand_forward(image_dir, tmp_path):
    torch.manual_seed(11)
    src = visreps.load_model("timm:resnet18", pretrained=False, seed=5).module
    sd = {f"module.{k}": v for k, v in src.state_dict().items()}  # DataParallel-style prefix
    torch.save(sd, tmp_path / "w.pth")
    lm = visreps.load_model("timm:resnet18", weights=tmp_path / "w.pth", preprocessing={"resize": 40, "crop": 32})
    assert lm.weights["kind"] == "file" and len(lm.weights["sha256"]) == 64
    res = visreps.extract(lm, image_dir, layers=["layer2", "global_pool"], progress=False)
    xs = torch.stack([lm.transform(load_image(i.absolute(image_dir))) for i in find_images(image_dir)])
    with torch.no_grad():
        feats = src.forward_features(xs)
        pooled = feats.mean(dim=(2, 3))
        l2 = src.layer2(src.layer1(src.maxpool(src.act1(src.bn1(src.conv1(xs))))))
    np.testing.assert_allclose(res["global_pool"], pooled.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(res["layer2"], l2.reshape(len(xs), -1).numpy(), rtol=1e-4, atol=1e-5)


def test_safetensors_weights(tiny_net, tmp_path):
    from safetensors.torch import save_file

    from visreps.models.custom import load_weights_file

    save_file({k: v.contiguous() for k, v in tiny_net.state_dict().items()}, str(tmp_path / "w.safetensors"))
    import copy

    other = copy.deepcopy(tiny_net)
    for p in other.parameters():
        torch.nn.init.zeros_(p)
    rec = load_weights_file(other, tmp_path / "w.safetensors")
    assert rec["kind"] == "file"
    for a, b in zip(other.state_dict().values(), tiny_net.state_dict().values()):
        assert torch.equal(a, b)


def test_mismatched_weights_list_keys(tmp_path):
    from visreps.errors import WeightsError

    torch.save({"conv1.weight": torch.zeros(3), "bogus.bias": torch.zeros(2)}, tmp_path / "bad.pt")
    with pytest.raises(WeightsError) as e:
        visreps.load_model("torchvision:resnet18", weights=tmp_path / "bad.pt")
    msg = str(e.value)
    assert "bad.pt" in msg and "missing keys: bn1.weight, bn1.bias" in msg
    assert "unexpected keys: bogus.bias" in msg
    assert "shape mismatches: conv1.weight (file (3,) vs model (64, 3, 7, 7))" in msg


def test_pickled_whole_model(tiny_net, image_dir, small_prep, tmp_path):
    torch.save(tiny_net, tmp_path / "whole.pt")
    res = visreps.extract(
        f"file:{tmp_path / 'whole.pt'}",
        image_dir,
        layers=["7"],
        preprocessing=small_prep,
        progress=False,
        allow_pickle=True,
    )
    np.testing.assert_allclose(res["7"], hand_forward(tiny_net, image_dir, small_prep, 7), rtol=1e-5, atol=1e-6)


def test_early_exit_modules_after_last_layer_never_run(tiny_net, image_dir, small_prep):
    calls = {i: 0 for i in range(len(tiny_net))}
    for i, m in enumerate(tiny_net):
        m.register_forward_hook(lambda mod, inp, out, i=i: calls.__setitem__(i, calls[i] + 1))
    visreps.extract(tiny_net, image_dir, layers=["3", "0"], preprocessing=small_prep, batch_size=2, progress=False)
    before = {i: c for i, c in calls.items()}
    # the one dry run (calls and shapes) runs the whole model once; the 3 batches stop after "3"
    assert [before[i] for i in range(4, 8)] == [1, 1, 1, 1], before
    assert before[3] == 4  # 3 batches of 2 + the dry run


def test_pool_modes(tiny_net, image_dir, small_prep):
    res = {
        m: visreps.extract(tiny_net, image_dir, layers=["3"], pool=m, preprocessing=small_prep, progress=False)["3"]
        for m in ("none", "flatten", "avg", "max")
    }
    assert res["none"].shape == (6, 6, 8, 8)
    np.testing.assert_allclose(res["flatten"], res["none"].reshape(6, -1))
    np.testing.assert_allclose(res["avg"], res["none"].mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res["max"], res["none"].max(axis=(2, 3)))
    per = visreps.extract(
        tiny_net, image_dir, layers=["3", "7"], pool={"3": "max"}, preprocessing=small_prep, progress=False
    )
    assert per["3"].shape == (6, 6) and per["7"].shape == (6, 5)
    with pytest.raises(VisrepsError, match="pool mode 'mean' for layer '3' is not valid"):
        visreps.extract(tiny_net, image_dir, layers=["3"], pool="mean", preprocessing=small_prep, progress=False)


class _Recurrent(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = torch.nn.Conv2d(3, 2, 3, padding=1)
        self.cell = torch.nn.Conv2d(2, 2, 3, padding=1)
        self.out = torch.nn.Identity()
        self.head = torch.nn.Linear(2, 3)
        self.tup = _TupleOut()

    def forward(self, x):
        h = self.inp(x)
        for _ in range(3):
            h = torch.relu(self.cell(h)) + h
            self.out(h)
        h, _aux = self.tup(h)
        return self.head(h.mean(dim=(2, 3)))


class _TupleOut(torch.nn.Module):
    def forward(self, x):
        return x * 2, "aux"


def test_recurrent_module_needs_a_choice(image_dir, small_prep):
    torch.manual_seed(0)
    net = _Recurrent().eval()
    with pytest.raises(VisrepsError, match=r"runs 3 times .* recurrent='all'"):
        visreps.extract(net, image_dir, layers=["out"], preprocessing=small_prep, progress=False)
    allr = visreps.extract(net, image_dir, layers=["out"], recurrent="all", preprocessing=small_prep, progress=False)
    assert allr.layers == ["out@t0", "out@t1", "out@t2"]
    assert not np.allclose(allr["out@t0"], allr["out@t1"]) and not np.allclose(allr["out@t1"], allr["out@t2"])
    last = visreps.extract(net, image_dir, layers=["out"], recurrent="last", preprocessing=small_prep, progress=False)
    np.testing.assert_array_equal(last["out"], allr["out@t2"])
    one = visreps.extract(net, image_dir, layers=["out@t1", "tup"], preprocessing=small_prep, progress=False)
    np.testing.assert_array_equal(one["out@t1"], allr["out@t1"])
    np.testing.assert_allclose(one["tup"], 2 * allr["out@t2"], rtol=1e-6)  # first tensor of a tuple output
    with pytest.raises(VisrepsError, match=r"@t0..@t2"):
        visreps.extract(net, image_dir, layers=["out@t5"], preprocessing=small_prep, progress=False)


def test_wrong_layer_lists_closest(tiny_net, image_dir):
    with pytest.raises(LayerNotFoundError, match=r"no layer 'features.22'.*closest: features.2"):
        visreps.extract("torchvision:alexnet", image_dir, layers=["features.22"], pretrained=False, progress=False)


def test_unused_module_is_an_error(image_dir, small_prep):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 2, 3)
            self.spare = torch.nn.Linear(2, 2)

        def forward(self, x):
            return self.conv(x)

    with pytest.raises(VisrepsError, match="'spare' never runs"):
        visreps.extract(Net(), image_dir, layers=["spare"], preprocessing=small_prep, progress=False)


def test_forward_failure_on_dry_run_is_explained(image_dir, small_prep):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Linear(5, 2))
    with pytest.raises(VisrepsError, match=r"forward pass failed on a blank batch of shape \(1, 3, 16, 16\)"):
        visreps.extract(net, image_dir, layers=["0"], preprocessing=small_prep, progress=False)


def test_skip_bad_images_keeps_manifest_exact(tiny_net, tmp_path, small_prep):
    root = tmp_path / "imgs"
    write_images(root, ["a.png", "c.png", "e.png"])
    (root / "b.jpg").write_bytes(b"")
    (root / "d.png").write_bytes(b"garbage")
    with pytest.raises(visreps.errors.ImageError, match=r"b.jpg.*--skip-bad-images"):
        visreps.extract(
            tiny_net, root, layers=["7"], preprocessing=small_prep, out=tmp_path / "o1", progress=False, num_workers=0
        )
    assert not (tmp_path / "o1" / "7.npy").exists()  # nothing under a final name
    for fmt in [n for n, f in FORMAT_REGISTRY.items() if f.stage is None]:  # the formats written as they go
        res = visreps.extract(
            tiny_net,
            root,
            layers=["7"],
            preprocessing=small_prep,
            out=tmp_path / f"o_{fmt}",
            format=fmt,
            skip_bad_images=True,
            progress=False,
            batch_size=2,
        )
        assert res.paths == ["a.png", "c.png", "e.png"]
        assert [s["path"] for s in res.metadata["images"]["skipped"]] == ["b.jpg", "d.png"]
        good = visreps.extract(
            tiny_net, root, layers=["7"], preprocessing=small_prep, order=["a.png", "c.png", "e.png"], progress=False
        )
        # other batches (batches of 2 less their bad images here, one batch of 3 in `good`): other kernels, so
        # equal to float32 rounding, with an absolute tolerance for values near 0
        ref = np.asarray(good["7"])
        np.testing.assert_allclose(res["7"], ref, rtol=1e-5, atol=1e-6 * float(np.abs(ref).max()))
        assert res["7"].shape == (3, 5)


def test_in_memory_result_equals_folder(tiny_net, image_dir, small_prep, tmp_path):
    mem = visreps.extract(tiny_net, image_dir, layers=["3"], preprocessing=small_prep, progress=False)
    disk = visreps.extract(
        tiny_net, image_dir, layers=["3"], preprocessing=small_prep, out=tmp_path / "o", progress=False, num_workers=2
    )
    np.testing.assert_array_equal(mem["3"], disk["3"])
    assert mem.paths == disk.paths
    assert isinstance(disk["3"], np.memmap)


def test_metadata_contract(tiny_net, image_dir, small_prep, tmp_path):
    visreps.extract(
        tiny_net, image_dir, layers=["3", "7"], preprocessing=small_prep, out=tmp_path / "o", progress=False
    )
    meta = json.loads((tmp_path / "o" / "metadata.json").read_text())
    assert meta["status"] == "complete"
    assert meta["layers"]["3"]["shape"] == [6, 384] and meta["layers"]["7"]["file"] == "7.npy"
    assert meta["preprocessing"] == {
        "resize": 20,
        "crop": 16,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "interpolation": "bilinear",
    }
    assert meta["weights"] == {"kind": "user"}
    assert {"torch", "numpy", "python", "visreps"} <= set(meta["versions"])
    assert not list((tmp_path / "o").glob("*.partial")) and not (tmp_path / "o" / "metadata.partial.json").exists()
    manifest = (tmp_path / "o" / "manifest.csv").read_text().splitlines()
    import hashlib

    digest = hashlib.blake2b((image_dir / "cls1/deep/d.bmp").read_bytes(), digest_size=16).hexdigest()
    assert manifest[0] == "index,path,label,blake2b" and manifest[4] == f"3,cls1/deep/d.bmp,cls1/deep,{digest}"


def test_overwrite_needs_consent(tiny_net, image_dir, small_prep, tmp_path):
    kw = dict(layers=["7"], preprocessing=small_prep, out=tmp_path / "o", progress=False)
    visreps.extract(tiny_net, image_dir, **kw)
    (tmp_path / "o" / "mine.txt").write_text("user file")
    with pytest.raises(visreps.errors.OutputExistsError, match="--overwrite"):
        visreps.extract(tiny_net, image_dir, **kw)
    visreps.extract(tiny_net, image_dir, overwrite=True, **kw)
    assert (tmp_path / "o" / "mine.txt").read_text() == "user file"


def test_interrupted_run_leaves_no_complete_looking_file(tiny_net, image_dir, small_prep, tmp_path):
    calls = {"n": 0}

    def boom(mod, inp, out):
        calls["n"] += 1
        if calls["n"] == 3:  # the dry run + 1 good batch, then fail
            raise KeyboardInterrupt

    tiny_net[3].register_forward_hook(boom)
    with pytest.raises(visreps.errors.ExtractionInterrupted):
        visreps.extract(
            tiny_net,
            image_dir,
            layers=["3"],
            preprocessing=small_prep,
            out=tmp_path / "o",
            batch_size=2,
            progress=False,
            num_workers=0,
        )
    out = tmp_path / "o"
    assert not (out / "3.npy").exists() and not (out / "metadata.json").exists() and not (out / "manifest.csv").exists()
    meta = json.loads((out / "metadata.partial.json").read_text())
    assert meta["status"] == "interrupted" and meta["images"]["n_done"] == 2
    with pytest.raises(VisrepsError, match="unfinished extraction"):
        visreps.load_features(out)


def test_bad_arguments(tiny_net, image_dir):
    with pytest.raises(VisrepsError, match="batch_size must be a positive integer"):
        visreps.extract(tiny_net, image_dir, layers=["0"], batch_size=0)
    with pytest.raises(VisrepsError, match="precision 'fp8'"):
        visreps.extract(tiny_net, image_dir, layers=["0"], precision="fp8")
    with pytest.raises(VisrepsError, match="file format 'xls'"):
        visreps.extract(tiny_net, image_dir, layers=["0"], format="xls")
    with pytest.raises(VisrepsError, match="device 'tpu'"):
        visreps.extract(tiny_net, image_dir, layers=["0"], device="tpu")
    with pytest.raises(VisrepsError, match="CUDA is not available"):
        visreps.extract(tiny_net, image_dir, layers=["0"], device="cuda:0")
    with pytest.raises(VisrepsError, match="no layers requested"):
        visreps.extract(tiny_net, image_dir, layers=[])


def test_bf16_autocast_runs_and_stores_float32(tiny_net, image_dir, small_prep):
    res = visreps.extract(tiny_net, image_dir, layers=["7"], precision="bf16", preprocessing=small_prep, progress=False)
    ref = visreps.extract(tiny_net, image_dir, layers=["7"], preprocessing=small_prep, progress=False)
    assert res["7"].dtype == np.float32
    np.testing.assert_allclose(res["7"], ref["7"], atol=0.05)


def test_channels_last_same_numbers(image_dir):
    kw = dict(layers=["layer1"], pretrained=False, progress=False, preprocessing={"resize": 32, "crop": 32})
    a = visreps.extract("torchvision:resnet18", image_dir, **kw)
    b = visreps.extract("torchvision:resnet18", image_dir, channels_last=True, **kw)
    np.testing.assert_allclose(a["layer1"], b["layer1"], rtol=1e-4, atol=1e-5)


def test_vit_token_pooling(image_dir):
    kw = dict(pretrained=False, progress=False)
    allt = visreps.extract("timm:vit_tiny_patch16_224", image_dir, layers=["blocks.1"], pool="none", **kw)["blocks.1"]
    cls = visreps.extract("timm:vit_tiny_patch16_224", image_dir, layers=["blocks.1"], pool="cls", **kw)["blocks.1"]
    pm = visreps.extract("timm:vit_tiny_patch16_224", image_dir, layers=["blocks.1"], pool="patch_mean", **kw)[
        "blocks.1"
    ]
    assert allt.shape == (6, 197, 192)
    np.testing.assert_array_equal(cls, allt[:, 0])
    np.testing.assert_allclose(pm, allt[:, 1:].mean(axis=1), rtol=1e-5, atol=1e-6)


def test_pretrained_quickstart_model_sees_a_cat(tmp_path):
    res = visreps.extract(
        "timm:tf_efficientnet_lite0", EXAMPLES, layers=["global_pool"], out=tmp_path / "q", top_k=5, progress=False
    )
    assert res.metadata["weights"]["kind"] == "pretrained"
    pred = res.predictions.set_index("path")
    # the original EfficientNet-Lite0 says tiger cat 0.372, Egyptian cat 0.369 (exactly checked in test_lite0.py)
    assert {pred.loc["chelsea_cat.jpg", "name_1"], pred.loc["chelsea_cat.jpg", "name_2"]} == {
        "tiger cat",
        "Egyptian cat",
    }
    assert pred.loc["coffee.jpg", "name_1"] == "espresso"
    assert list(pred.index) == res.paths  # predictions in manifest order
    assert (tmp_path / "q" / "predictions.csv").is_file() and (tmp_path / "q" / "predictions.json").is_file()
    assert res["global_pool"].shape == (6, 1280)
