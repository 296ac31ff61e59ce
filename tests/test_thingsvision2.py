"""visreps.compat.thingsvision against THINGSvision 2.7.3 itself: the same scripts, the same numbers and files.

Each check runs one script twice, once with ``thingsvision`` and once with ``visreps.compat.thingsvision``,
on the same images and the same seeded random weights, and compares arrays (float32 tolerance), file
names and their order, and the files written. THINGSvision is installed in the test environment only
(``pip install --no-deps thingsvision==2.7.3 torchtyping 'typeguard<3'``; its own requirements pin
numpy<2 and torchvision 0.15, so it cannot be a dependency); where it is missing the comparisons are
skipped, except in CI (``CI=true``), where the README's set-up installs it
(tests/reference-packages.txt) and a missing one fails.
"""

from __future__ import annotations

import os
import types
import warnings

import numpy as np
import pytest
import torch

from visreps.errors import LayerNotFoundError, VisrepsError

ATOL = 1e-5
RTOL = 1e-4


@pytest.fixture(scope="module")
def tv():
    """THINGSvision 2.7.3 (torch and timm imported first: TensorFlow first makes triton's import crash)."""
    import timm  # noqa: F401
    import torch._dynamo  # imports triton, which crashes when TensorFlow came first
    import torchvision  # noqa: F401

    if not hasattr(np, "AxisError"):  # thingsvision 2.7.3 reads numpy.AxisError, gone in numpy 2 (test-only)
        np.AxisError = np.exceptions.AxisError  # type: ignore[attr-defined]
    try:
        import thingsvision
        import thingsvision.core.cka
        import thingsvision.core.rsa
        import thingsvision.utils.data
        import thingsvision.utils.storing
    except ImportError as e:
        if os.environ.get("CI") == "true":
            pytest.fail(
                f"THINGSvision 2.7.3 must be installed in CI (pip install --no-deps -r tests/reference-packages.txt): "
                f"{e}"
            )
        pytest.skip(f"THINGSvision 2.7.3 is not installed: {e}")
    assert thingsvision.__version__ == "2.7.3"
    return types.SimpleNamespace(
        get_extractor=thingsvision.get_extractor,
        get_extractor_from_model=thingsvision.get_extractor_from_model,
        ImageDataset=thingsvision.utils.data.ImageDataset,
        DataLoader=thingsvision.utils.data.DataLoader,
        save_features=thingsvision.utils.storing.save_features,
        compute_rdm=thingsvision.core.rsa.compute_rdm,
        correlate_rdms=thingsvision.core.rsa.correlate_rdms,
        get_cka=thingsvision.core.cka.get_cka,
        seed=lambda: torch.manual_seed(0),  # the shim's random initialisation is seeded with 0
    )


@pytest.fixture(scope="module")
def vr():
    from visreps.compat.thingsvision import get_extractor, get_extractor_from_model
    from visreps.compat.thingsvision.core.cka import get_cka
    from visreps.compat.thingsvision.core.rsa import compute_rdm, correlate_rdms
    from visreps.compat.thingsvision.utils.data import DataLoader, ImageDataset
    from visreps.compat.thingsvision.utils.storing import save_features

    return types.SimpleNamespace(
        get_extractor=get_extractor,
        get_extractor_from_model=get_extractor_from_model,
        ImageDataset=ImageDataset,
        DataLoader=DataLoader,
        save_features=save_features,
        compute_rdm=compute_rdm,
        correlate_rdms=correlate_rdms,
        get_cka=get_cka,
        seed=lambda: None,
    )


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Five small RGB images of different sizes (flat folder) and a folder with two class subfolders."""
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    flat = root / "flat"
    flat.mkdir()
    for i, name in enumerate(["b.png", "a.jpg", "c10.png", "c2.png", "d.JPEG"]):
        Image.fromarray(rng.integers(0, 256, (50 + 9 * i, 70 - 5 * i, 3), dtype=np.uint8)).save(flat / name)
    (flat / "notes.txt").write_text("not an image")
    classes = root / "classes"
    for cls, names in {"dog": ["x.png", "y.png"], "cat": ["b.png", "a.png", "c.png"]}.items():
        (classes / cls).mkdir(parents=True)
        for name in names:
            Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(classes / cls / name)
    return root


def _script(api, root, out, *, model_name, source, module_names, batch_size=8, model_parameters=None, **kw):
    """The issue's 2.x script, with ``api`` either THINGSvision or the shim."""
    api.seed()
    extractor = api.get_extractor(
        model_name=model_name, source=source, device="cpu", pretrained=False, model_parameters=model_parameters
    )
    dataset = api.ImageDataset(
        root=str(root),
        out_path=str(out),
        backend=extractor.get_backend(),
        transforms=extractor.get_transformations(),
    )
    batches = api.DataLoader(dataset=dataset, batch_size=batch_size, backend=extractor.get_backend())
    if len(module_names) == 1:
        return extractor.extract_features(batches=batches, module_name=module_names[0], **kw), extractor
    return extractor.extract_features(batches=batches, module_names=module_names, **kw), extractor


def _both(tv, vr, images, tmp_path, **kw):
    a, ea = _script(tv, images / "flat", tmp_path / "tv", **kw)
    b, eb = _script(vr, images / "flat", tmp_path / "vr", **kw)
    assert (tmp_path / "tv" / "file_names.txt").read_text() == (tmp_path / "vr" / "file_names.txt").read_text()
    return a, b, ea, eb


def _same(a, b):
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
        return
    assert type(a) is type(b)
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype == np.float32
    np.testing.assert_allclose(b, a, rtol=RTOL, atol=ATOL)


# --------------------------------------------------------------------------- extraction, same numbers


@pytest.mark.slow
def test_issue_script_alexnet(tv, vr, images, tmp_path):
    a, b, ea, eb = _both(
        tv,
        vr,
        images,
        tmp_path,
        model_name="alexnet",
        source="torchvision",
        module_names=["features.10"],
        flatten_acts=True,
        output_type="ndarray",
    )
    assert b.shape == (5, 256 * 13 * 13)
    _same(a, b)
    assert eb.get_module_names() == ea.get_module_names()
    assert eb.get_backend() == ea.get_backend() == "pt"
    # the file order: THINGSvision's sort of the image names (the .txt file is not an image)
    assert (tmp_path / "vr" / "file_names.txt").read_text().split() == ["a.jpg", "b.png", "c10.png", "c2.png", "d.JPEG"]
    # the saved files: the same bytes
    tv.save_features(a, out_path=str(tmp_path / "tv"), file_format="npy")
    vr.save_features(b, out_path=str(tmp_path / "vr"), file_format="npy")
    np.testing.assert_allclose(
        np.load(tmp_path / "vr" / "features.npy"), np.load(tmp_path / "tv" / "features.npy"), rtol=RTOL, atol=ATOL
    )


@pytest.mark.slow
def test_several_modules_resnet18_tensor_and_unflattened(tv, vr, images, tmp_path):
    a, b, *_ = _both(
        tv,
        vr,
        images,
        tmp_path,
        model_name="resnet18",
        source="torchvision",
        module_names=["layer3.1", "avgpool", "fc"],
        flatten_acts=False,
        output_type="tensor",
        batch_size=3,
    )
    assert isinstance(b, dict) and tuple(b["layer3.1"].shape) == (5, 256, 14, 14) and tuple(b["fc"].shape) == (5, 1000)
    assert all(isinstance(v, torch.Tensor) for v in b.values())
    _same({k: v.numpy() for k, v in a.items()}, {k: v.numpy() for k, v in b.items()})


@pytest.mark.slow
def test_vit_b_16(tv, vr, images, tmp_path):
    layer = "encoder.layers.encoder_layer_11"
    a, b, ea, eb = _both(
        tv,
        vr,
        images,
        tmp_path,
        model_name="vit_b_16",
        source="torchvision",
        module_names=[layer, f"{layer}.self_attention", "heads"],
        flatten_acts=True,
    )
    assert b[layer].shape == (5, 197 * 768) and b[f"{layer}.self_attention"].shape == (5, 197 * 768)
    _same(a, b)


@pytest.mark.slow
def test_timm_model_and_token_extraction(tv, vr, images, tmp_path):
    """timm's ``test_vit`` (6 blocks, 64 dims, 160 px: 100 patches and a class token), timm's own transforms."""
    model = dict(model_name="test_vit", source="timm")
    a, b, ea, eb = _both(
        tv, vr, images, tmp_path, **model, module_names=["blocks.5", "norm", "head"], flatten_acts=True
    )
    assert b["blocks.5"].shape == (5, 101 * 64) and b["head"].shape == (5, 1000)
    _same(a, b)
    assert eb.get_module_names() == ea.get_module_names()
    for mode, dim in [("cls_token", 64), ("avg_pool", 64), ("cls_token+avg_pool", 128)]:
        params = {"token_extraction": mode}
        a = _script(tv, images / "flat", tmp_path / "tv", **model, module_names=["blocks.5"], model_parameters=params)[
            0
        ]
        b = _script(vr, images / "flat", tmp_path / "vr", **model, module_names=["blocks.5"], model_parameters=params)[
            0
        ]
        assert b.shape == (5, dim), mode
        _same(a, b)


class _Tiny(torch.nn.Module):
    """A hand-set network: conv (2 maps) → ReLU → global average → linear (3 outputs)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 3, bias=False)
        self.relu = torch.nn.ReLU()
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(2, 3)
        with torch.no_grad():
            self.conv.weight.copy_(torch.linspace(-1, 1, 54).reshape(2, 3, 3, 3))
            self.fc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]))
            self.fc.bias.copy_(torch.tensor([0.0, 0.5, -0.5]))

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


def _custom(api, root, out, **kw):
    from torchvision import transforms as T

    preprocess = T.Compose([T.Resize(20), T.CenterCrop(16), T.ToTensor()])
    extractor = api.get_extractor_from_model(model=_Tiny(), device="cpu", backend="pt", preprocess=preprocess, **kw)
    dataset = api.ImageDataset(
        root=str(root), out_path=str(out), backend="pt", transforms=extractor.get_transformations()
    )
    batches = api.DataLoader(dataset=dataset, batch_size=2, backend="pt")
    return extractor.extract_features(batches=batches, module_names=["conv", "relu", "fc"], flatten_acts=True)


@pytest.mark.slow
def test_custom_module_from_model(tv, vr, images, tmp_path):
    a = _custom(tv, images / "flat", tmp_path / "tv")
    b = _custom(vr, images / "flat", tmp_path / "vr")
    assert b["conv"].shape == (5, 2 * 14 * 14) and b["fc"].shape == (5, 3)
    _same(a, b)
    # the hand-set numbers: fc = [m0, m1 + 0.5, m0 - m1 - 0.5] of the mean ReLU maps m
    m = b["relu"].reshape(5, 2, -1).mean(axis=2)
    np.testing.assert_allclose(b["fc"], np.stack([m[:, 0], m[:, 1] + 0.5, m[:, 0] - m[:, 1] - 0.5], 1), atol=1e-6)


@pytest.mark.slow
def test_custom_forward_and_flatten_functions(tv, vr, images, tmp_path):
    def forward_fn(self, batch):
        return self.model(batch * 2.0)

    def flatten_fn(self, act):
        return act.amax(dim=(2, 3))

    a = _custom(tv, images / "flat", tmp_path / "tv", forward_fn=forward_fn, flatten_fn=flatten_fn)
    b = _custom(vr, images / "flat", tmp_path / "vr", forward_fn=forward_fn, flatten_fn=flatten_fn)
    assert b["conv"].shape == (5, 2)
    _same(a, b)


@pytest.mark.slow
def test_user_torch_dataloader_of_image_label_pairs(tv, vr, images, tmp_path):
    """A plain torch DataLoader of (image, label) pairs, as 2.x accepts: the images count."""
    x = torch.randn(5, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.arange(5)), batch_size=2)
    a = tv.get_extractor_from_model(model=_Tiny(), device="cpu", backend="pt").extract_features(
        batches=loader, module_name="conv", flatten_acts=True
    )
    b = vr.get_extractor_from_model(model=_Tiny(), device="cpu", backend="pt").extract_features(
        batches=loader, module_name="conv", flatten_acts=True
    )
    _same(a, b)


# --------------------------------------------------------------------------- streaming to output_dir


def _files(folder):
    return {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_streaming_one_module_same_files(tv, vr, images, tmp_path):
    for name, api in (("tv", tv), ("vr", vr)):
        _script(
            api,
            images / "flat",
            tmp_path / name,
            model_name="alexnet",
            source="torchvision",
            module_names=["classifier.4"],
            flatten_acts=True,
            output_dir=str(tmp_path / name / "feats"),
            batch_size=2,
            step_size=2,
            file_name_suffix="_val",
        )
    a, b = _files(tmp_path / "tv" / "feats"), _files(tmp_path / "vr" / "feats")
    assert list(b) == ["classifier.4/features_val_0-4.npy", "classifier.4/features_val_4-5.npy"]
    assert list(a) == list(b)
    for name in a:
        np.testing.assert_allclose(np.load(b[name]), np.load(a[name]), rtol=RTOL, atol=ATOL)


@pytest.mark.slow
def test_streaming_several_modules_fixes_file_names(tv, vr, images, tmp_path):
    """2.7.3 names every module's files after the first with the end row twice; the shim names the rows."""
    for name, api in (("tv", tv), ("vr", vr)):
        _script(
            api,
            images / "flat",
            tmp_path / name,
            model_name="alexnet",
            source="torchvision",
            module_names=["features.12", "classifier.4"],
            flatten_acts=True,
            output_dir=str(tmp_path / name / "feats"),
            batch_size=2,
            step_size=1,
        )
    a, b = _files(tmp_path / "tv" / "feats"), _files(tmp_path / "vr" / "feats")
    assert "classifier.4/features_2-2.npy" in a  # the 2.7.3 bug
    assert list(b) == [f"{m}/features_{r}.npy" for m in ("classifier.4", "features.12") for r in ("0-2", "2-4", "4-5")]
    for name in b:
        if name in a and name.startswith("features.12"):
            np.testing.assert_allclose(np.load(b[name]), np.load(a[name]), rtol=RTOL, atol=ATOL)
    joined = np.concatenate([np.load(b[f"classifier.4/features_{r}.npy"]) for r in ("0-2", "2-4", "4-5")])
    full = _script(
        vr,
        images / "flat",
        tmp_path / "x",
        model_name="alexnet",
        source="torchvision",
        module_names=["classifier.4"],
        flatten_acts=True,
    )[0]
    np.testing.assert_allclose(joined, full, rtol=RTOL, atol=ATOL)  # across batch sizes: float tolerance


@pytest.mark.slow
def test_streaming_save_in_one_file_tensor(tv, vr, images, tmp_path):
    for name, api in (("tv", tv), ("vr", vr)):
        _script(
            api,
            images / "flat",
            tmp_path / name,
            model_name="alexnet",
            source="torchvision",
            module_names=["classifier.4"],
            flatten_acts=True,
            output_type="tensor",
            output_dir=str(tmp_path / name / "feats"),
            batch_size=2,
            step_size=2,
            save_in_one_file=True,
        )
    a, b = _files(tmp_path / "tv" / "feats"), _files(tmp_path / "vr" / "feats")
    assert list(a) == list(b) == ["classifier.4/features.pt"]
    ta, tb = torch.load(a["classifier.4/features.pt"]), torch.load(b["classifier.4/features.pt"])
    assert tuple(tb.shape) == (5, 4096)
    _same(ta.numpy(), tb.numpy())


# --------------------------------------------------------------------------- datasets and files


@pytest.mark.slow
def test_class_dataset_file_names(tv, vr, images, tmp_path):
    ds_a = tv.ImageDataset(root=str(images / "classes"), out_path=str(tmp_path / "tv"), backend="pt")
    ds_b = vr.ImageDataset(root=str(images / "classes"), out_path=str(tmp_path / "vr"), backend="pt")
    assert ds_b.samples == ds_a.samples
    assert (tmp_path / "vr" / "file_names.txt").read_text() == (tmp_path / "tv" / "file_names.txt").read_text()
    assert ds_b.classes == ds_a.classes == ["cat", "dog"] and ds_b.cls_to_idx == ds_a.cls_to_idx
    ds_a = tv.ImageDataset(
        root=str(images / "classes"), out_path=str(tmp_path / "tv"), backend="pt", class_names=["dog", "cat"]
    )
    ds_b = vr.ImageDataset(
        root=str(images / "classes"), out_path=str(tmp_path / "vr"), backend="pt", class_names=["dog", "cat"]
    )
    assert ds_b.samples == ds_a.samples and ds_b.samples[0].endswith(os.path.join("dog", "x.png"))


@pytest.mark.slow
def test_class_dataset_with_file_names_fixed(tv, vr, images, tmp_path):
    names = ["dog/y.png", "cat/c.png", "dog/x.png"]
    with pytest.raises(TypeError):  # the 2.7.3 bug
        tv.ImageDataset(root=str(images / "classes"), out_path=str(tmp_path / "tv"), backend="pt", file_names=names)
    ds = vr.ImageDataset(root=str(images / "classes"), out_path=str(tmp_path / "vr"), backend="pt", file_names=names)
    assert ds.relative_paths() == names
    assert ds.classes == ["dog", "cat"]


@pytest.mark.slow
def test_instance_dataset_file_names_order(tv, vr, images, tmp_path):
    names = ["d.JPEG", "a.jpg", "c2.png"]
    ds_a = tv.ImageDataset(root=str(images / "flat"), out_path=str(tmp_path / "tv"), backend="pt", file_names=names)
    ds_b = vr.ImageDataset(root=str(images / "flat"), out_path=str(tmp_path / "vr"), backend="pt", file_names=names)
    assert ds_b.samples == ds_a.samples
    assert (tmp_path / "vr" / "file_names.txt").read_text() == "d.JPEG\na.jpg\nc2.png\n"


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["npy", "hdf5", "txt", "pt"])
def test_save_features_same_files(tv, vr, tmp_path, fmt):
    import h5py

    x = np.random.default_rng(1).standard_normal((6, 4)).astype(np.float32)
    tv.save_features(x if fmt != "pt" else torch.from_numpy(x), out_path=str(tmp_path / "tv"), file_format=fmt)
    vr.save_features(x if fmt != "pt" else torch.from_numpy(x), out_path=str(tmp_path / "vr"), file_format=fmt)
    a, b = _files(tmp_path / "tv"), _files(tmp_path / "vr")
    assert list(a) == list(b) == [f"features.{fmt}"]
    pa, pb = a[f"features.{fmt}"], b[f"features.{fmt}"]
    if fmt in ("npy", "txt"):
        assert pa.read_bytes() == pb.read_bytes()
    elif fmt == "hdf5":
        with h5py.File(pa) as fa, h5py.File(pb) as fb:
            assert list(fa) == list(fb) == ["features"]
            np.testing.assert_array_equal(fa["features"][()], fb["features"][()])
    else:
        np.testing.assert_array_equal(torch.load(pa).numpy(), torch.load(pb).numpy())


@pytest.mark.parametrize("fmt", ["npy", "hdf5", "txt", "pt", "mat"])
def test_split_and_merge_round_trip(tmp_path, fmt):
    from visreps.compat.thingsvision.utils.storing import merge_features, split_features

    x = np.random.default_rng(2).standard_normal((23, 3)).astype(np.float32)
    split_features(str(tmp_path), x, fmt, n_splits=10)
    if fmt == "hdf5":
        import h5py

        with h5py.File(tmp_path / "features.hdf5") as f:
            assert len(f) == 10
    else:
        assert len(list(tmp_path.glob(f"features_*.{fmt}"))) == 10  # 2.7.3 wrote 9
    np.testing.assert_array_equal(merge_features(str(tmp_path), fmt), x)


def test_save_features_mat_and_txt_refusal(tmp_path):
    from scipy.io import loadmat

    from visreps.compat.thingsvision.utils.storing import save_features, split_features

    (tmp_path / "file_names.txt").write_text("a.jpg\nb.png\n")
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    save_features(x, str(tmp_path), "mat")
    m = loadmat(tmp_path / "features.mat")
    np.testing.assert_array_equal(m["features"], x)
    assert [str(np.asarray(s).ravel()[0]) for s in m["file_names"].ravel()] == ["a", "b"]
    with pytest.warns(UserWarning, match="txt holds 2-D arrays only"):  # as 2.7.3: nothing written
        save_features(np.zeros((2, 3, 4, 4), np.float32), str(tmp_path / "x"), "txt")
    assert not (tmp_path / "x" / "features.txt").exists()
    with pytest.raises(VisrepsError, match="cannot be saved as txt"):
        split_features(str(tmp_path), np.zeros((2, 3, 4, 4), np.float32), "txt", 2)


# --------------------------------------------------------------------------- RSA and CKA


@pytest.fixture(scope="module")
def feats():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((12, 30))
    return x, x @ rng.standard_normal((30, 20)) + 0.5 * rng.standard_normal((12, 20))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["correlation", "cosine", "euclidean", "gaussian"])
def test_compute_rdm(tv, vr, feats, method):
    x, _ = feats
    np.testing.assert_allclose(vr.compute_rdm(x, method), tv.compute_rdm(x, method), rtol=1e-10, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("correlation", ["pearson", "spearman"])
def test_correlate_rdms(tv, vr, feats, correlation):
    x, y = feats
    ra, rb = tv.compute_rdm(x, "correlation"), tv.compute_rdm(y, "correlation")
    assert vr.correlate_rdms(ra, rb, correlation) == pytest.approx(tv.correlate_rdms(ra, rb, correlation), abs=1e-12)


@pytest.mark.slow
def test_correlate_rdms_kendall_fixed(tv, vr, feats):
    from scipy.stats import kendalltau

    x, y = feats
    ra, rb = tv.compute_rdm(x, "euclidean"), tv.compute_rdm(y, "euclidean")
    with pytest.raises(AttributeError):  # 2.7.3 looks up scipy.stats.kendallr
        tv.correlate_rdms(ra, rb, "kendall")
    iu = np.triu_indices(12, 1)
    assert vr.correlate_rdms(ra, rb, "kendall") == pytest.approx(kendalltau(ra[iu], rb[iu])[0], abs=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize(("kernel", "sigma"), [("linear", 1.0), ("rbf", 1.0), ("rbf", None)])
@pytest.mark.parametrize("unbiased", [False, True])
def test_get_cka(tv, vr, feats, backend, kernel, sigma, unbiased):
    x, y = feats
    x, y = x / 4.0, y / 8.0  # distances near 1, so that the RBF kernel with sigma=1 is not the identity
    args = dict(backend=backend, m=12, kernel=kernel, unbiased=unbiased, sigma=sigma, device="cpu")
    a = tv.get_cka(**args).compare(
        torch.from_numpy(x) if backend == "torch" else x.copy(), torch.from_numpy(y) if backend == "torch" else y.copy()
    )
    b = vr.get_cka(**args).compare(
        torch.from_numpy(x) if backend == "torch" else x, torch.from_numpy(y) if backend == "torch" else y
    )
    assert float(b) == pytest.approx(float(a), rel=1e-7, abs=1e-9)
    assert 0.0 < float(b) < 1.0 or unbiased


# --------------------------------------------------------------------------- the shim on its own


def test_model_ids():
    from visreps.compat.thingsvision.core.extraction import model_id

    assert model_id("alexnet", "torchvision") == "torchvision:alexnet"
    assert model_id("vit_tiny_patch16_224", "timm") == "timm:vit_tiny_patch16_224"
    assert model_id("VGG16", "keras") == "keras:VGG16"
    assert model_id("dino-vit-small-p16", "ssl") == "ssl:dino-vits16"
    assert model_id("dinov2-vit-giant-p14", "ssl") == "ssl:dinov2-vitg14"
    assert model_id("mae-vit-huge-p14", "ssl") == "ssl:mae-vith14"
    assert model_id("simclr-rn50", "vissl") == "ssl:simclr-rn50"
    assert model_id("cornet-rt", "custom") == "cornet:rt"
    assert model_id("clip", "custom", {"variant": "ViT-B/32"}) == "clip:ViT-B-32"
    assert model_id("OpenCLIP", "custom", {"variant": "ViT-B-32", "dataset": "openai"}) == "openclip:ViT-B-32/openai"
    assert model_id("Alexnet_ecoset", "custom") == "ecoset:alexnet"
    assert model_id("DreamSim", "custom", {"variant": "dino_vitb16"}) == "dreamsim:dino_vitb16"
    with pytest.raises(VisrepsError, match="source 'hub' is not known"):
        model_id("alexnet", "hub")
    with pytest.raises(VisrepsError, match="no visreps counterpart"):
        model_id("SegmentAnything", "custom")


def test_errors_are_one_line(vr, images, tmp_path):
    e = vr.get_extractor_from_model(model=_Tiny(), device="cpu", backend="pt")
    x = torch.zeros(2, 3, 16, 16)
    with pytest.raises(LayerNotFoundError, match="'fcc' is not a module.*closest: fc"):
        e.extract_features(batches=[x], module_name="fcc")
    with pytest.raises(VisrepsError, match="not both"):
        e.extract_features(batches=[x], module_name="fc", module_names=["conv"])
    with pytest.raises(VisrepsError, match="output_type 'list'"):
        e.extract_features(batches=[x], module_name="fc", output_type="list")
    with pytest.raises(VisrepsError, match="model_path .* does not exist"):
        vr.get_extractor(
            model_name="alexnet",
            source="torchvision",
            device="cpu",
            pretrained=False,
            model_path=str(tmp_path / "missing.pt"),
        )
    with pytest.raises(VisrepsError, match="token_extraction"):
        vr.get_extractor(
            model_name="alexnet",
            source="torchvision",
            device="cpu",
            pretrained=False,
            model_parameters={"token_extraction": "mean"},
        )


def test_model_path_state_dict(vr, images, tmp_path):
    """``model_path``: a state_dict file, loaded safely; the same weights give the same numbers."""
    import torchvision

    torch.manual_seed(7)
    net = torchvision.models.alexnet(weights=None).eval()
    torch.save(net.state_dict(), tmp_path / "w.pt")
    e = vr.get_extractor(
        model_name="alexnet", source="torchvision", device="cpu", pretrained=False, model_path=str(tmp_path / "w.pt")
    )
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    got = e.extract_features(batches=[x], module_name="classifier.6")
    with torch.no_grad():
        np.testing.assert_allclose(got, net(x).numpy(), rtol=1e-5, atol=1e-5)


def test_warns_once_per_session(vr):
    from visreps.compat.thingsvision import _warn

    _warn.reset()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vr.get_extractor_from_model(model=_Tiny(), device="cpu", backend="pt")
        vr.compute_rdm(np.eye(3), "euclidean")
    msgs = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert len(msgs) == 1 and "visreps.extract" in msgs[0] and "get_extractor_from_model" in msgs[0]


@pytest.mark.slow
def test_keras_model_from_model_hand_set(vr):
    """A Keras image model of hand-set weights: a 1×1 convolution whose two maps are relu(r + g + b) and relu(r − b)."""
    keras = pytest.importorskip("keras")
    import visreps.compat.thingsvision.utils.data as data

    conv = keras.layers.Conv2D(2, 1, activation="relu", use_bias=False, name="mix")
    model = keras.Sequential([keras.Input((4, 4, 3)), conv, keras.layers.GlobalAveragePooling2D(name="gap")])
    conv.set_weights([np.array([[1.0, 1.0], [1.0, 0.0], [1.0, -1.0]], np.float32).reshape(1, 1, 3, 2)])
    extractor = vr.get_extractor_from_model(model, device="cpu", backend="tf")
    assert extractor.get_backend() == "tf" and {"mix", "gap"} <= set(extractor.get_module_names())
    x = np.random.default_rng(0).standard_normal((3, 4, 4, 3)).astype(np.float32)
    batches = data.DataLoader(dataset=list(x), batch_size=2, backend="tf")
    got = extractor.extract_features(batches=batches, module_names=["mix", "gap"], flatten_acts=False)
    mix = np.maximum(np.stack([x.sum(-1), x[..., 0] - x[..., 2]], -1), 0)
    np.testing.assert_allclose(got["mix"], mix, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["gap"], mix.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)


def test_assigning_model_extracts_from_it(vr):
    """2.x scripts swap ``extractor.model``; the shim then extracts from the new network."""
    e = vr.get_extractor_from_model(model=_Tiny(), device="cpu", backend="pt")
    other = _Tiny()
    with torch.no_grad():
        other.fc.bias.add_(1.0)
    e.model = other
    assert e.model is other and e.lm.module is other
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    got = e.extract_features(batches=[x], module_name="fc")
    with torch.no_grad():
        np.testing.assert_allclose(got, other(x).numpy(), rtol=1e-6, atol=1e-6)
