"""The 2021 THINGSvision API (visreps.vision, visreps.model_class): the seed README's and the paper's
code examples run with the import changed and pretrained=False, and give the modern API's arrays.

The examples are copied from the README / paper; only ``pretrained=True`` → ``False`` (offline) and
the import lines differ. Images are a few tiny random files; the prompt of ``show_model`` is
answered through stdin.
"""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import cdist, pdist, squareform
from scipy.stats import pearsonr, spearmanr

import visreps
import visreps.vision as vision
from conftest import write_images
from visreps.errors import LayerNotFoundError, VisrepsError
from visreps.model_class import Model

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

NAMES = ["b_img.png", "a_img.jpg", "c_img.png", "d_img.png", "e_img.png"]
SORTED = sorted(NAMES)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working directory holding ./images/ (the README's root), made the current directory."""
    write_images(tmp_path / "images", NAMES, size=(64, 48))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def answer(monkeypatch, text: str) -> None:
    """Answer the interactive prompt of show_model / Model.show through stdin."""
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "name, backend, expected",
    [
        ("alexnet", "pt", "torchvision:alexnet"),
        ("vgg16_bn", "pt", "torchvision:vgg16_bn"),
        ("resnet50", "pt", "torchvision:resnet50"),
        ("cornet-s", "pt", "cornet:s"),
        ("cornet-z", "pt", "cornet:z"),
        ("cornet-r", "pt", "cornet:r"),
        ("cornet-rt", "pt", "cornet:rt"),
        ("cornet_s", "pt", "cornet:s"),
        ("clip-ViT", "pt", "clip:ViT-B-32"),
        ("clip-RN", "pt", "clip:RN50"),
        ("VGG16", "tf", "keras:VGG16"),
        ("timm:resnet18", "pt", "timm:resnet18"),
    ],
)
def test_model_names(name, backend, expected):
    assert vision.model_id(name, backend) == expected


def test_bad_backend_and_name():
    with pytest.raises(VisrepsError, match="backend"):
        vision.model_id("alexnet", "jax")
    with pytest.raises(VisrepsError, match="alexnetz"):
        vision.load_model("alexnetz", pretrained=False)


# --------------------------------------------------------------------------- README: AlexNet


README_ALEXNET = """
import torch
import visreps.vision as vision

model_name = 'alexnet'

device = 'cuda' if torch.cuda.is_available() else 'cpu'
model, transforms = vision.load_model(model_name, pretrained=False, model_path=None, device=device)
module_name = vision.show_model(model, model_name)

dl = vision.load_dl(root='./images/', out_path=f'./{model_name}/{module_name}/features', batch_size=64, transforms=transforms)
features, targets, probas = vision.extract_features(model, dl, module_name, batch_size=64, flatten_acts=True, device=device, return_probabilities=True)

vision.save_features(features, f'./{model_name}/{module_name}/features', 'npy')
"""


@pytest.mark.slow
def test_readme_alexnet_as_a_script_with_piped_stdin(workdir):
    """The README's AlexNet example as a script, the module name piped in (a wrong one first)."""
    (workdir / "script.py").write_text(README_ALEXNET)
    proc = subprocess.run(
        [sys.executable, "script.py"],
        input="features.99\nfeatures.10\n",
        capture_output=True,
        text=True,
        cwd=workdir,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "AlexNet(" in proc.stdout and "(10): Conv2d(256, 256" in proc.stdout  # the architecture
    assert "'features.99' is not a module of alexnet" in proc.stdout  # asked again
    assert "DeprecationWarning" in proc.stderr and "visreps.load_model" in proc.stderr
    out = workdir / "alexnet" / "features.10" / "features"
    assert (out / "file_names.txt").read_text().splitlines() == SORTED
    features = np.load(out / "features.npy")
    assert features.shape == (5, 256 * 13 * 13) and features.dtype == np.float32
    # another process, the modern API, the same seeded random weights: the same numbers (bit for bit: both runs
    # put all 5 images in one batch, as batch size 64 and the default 32 both exceed 5)
    modern = visreps.extract("torchvision:alexnet", "images", layers=["features.10"], pretrained=False, progress=False)
    assert modern.paths == SORTED
    np.testing.assert_array_equal(features, modern["features.10"])


def test_readme_alexnet_and_class_predictions(workdir, monkeypatch):
    answer(monkeypatch, '"features.10"\n')  # quotes as in the README's hint are accepted
    ns: dict = {}
    exec(README_ALEXNET, ns)
    model, module_name, features, targets, probas = (
        ns[k] for k in ("model", "module_name", "features", "targets", "probas")
    )
    assert module_name == "features.10"
    out = Path("alexnet/features.10/features")
    assert (out / "features.npy").is_file()
    np.testing.assert_array_equal(np.load(out / "features.npy"), features)
    np.testing.assert_array_equal(targets, np.arange(5))  # flat folder: every image is its own item
    assert targets.dtype == np.int64

    # requirement 2: the modern API gives the same arrays for the same model, layer and images (bit for bit: one
    # batch of all 5 images in both runs, the loader's batch size 64 and the default 32 both exceeding 5)
    lm = model.lm
    modern = visreps.extract(lm, "images", layers=["features.10", "classifier.6"], progress=False)
    np.testing.assert_array_equal(features, modern["features.10"])
    import torch

    expected = torch.softmax(torch.from_numpy(np.asarray(modern["classifier.6"])), dim=1).numpy()
    assert probas.shape == (5, 1000) and probas.dtype == np.float32
    np.testing.assert_allclose(probas, expected, rtol=1e-6, atol=1e-9)

    # README "ImageNet class predictions", with the original's class file ...
    classes = visreps.extraction.imagenet_classes()
    data = Path("data")
    data.mkdir()
    lines = [f"{{{i}: '{c}, something else'," if i == 0 else f" {i}: '{c}'," for i, c in enumerate(classes)]
    lines[-1] = lines[-1].rstrip(",") + "}"
    (data / "imagenet1000_classes.txt").write_text("\n".join(lines) + "\n")
    batch_size = 64
    device = "cpu"
    dl = ns["dl"]
    out_path = f"./alexnet/{module_name}/features"
    features, targets, probas = vision.extract_features(
        model, dl, module_name, batch_size, flatten_acts=False, device=device, return_probabilities=True
    )
    class_probas = vision.get_class_probabilities(
        probas=probas, out_path=out_path, cls_file="./data/imagenet1000_classes.txt", top_k=5, save_as_json=True
    )
    assert features.shape == (5, 256, 13, 13)  # flatten_acts=False keeps the shape
    saved = json.loads((out / "class_probabilities.json").read_text())
    assert saved == class_probas and list(saved) == SORTED
    for name, row in zip(SORTED, probas):
        top = np.argsort(-row, kind="stable")[:5]
        assert list(class_probas[name].values()) == [float(row[c]) for c in top]
        assert list(class_probas[name]) == ["_".join(classes[c].lower().split()) for c in top]
    # ... and without one: visreps knows the ImageNet classes
    assert vision.get_class_probabilities(probas, out_path, top_k=5, save_as_json=False) == class_probas


def test_show_model_refuses_until_valid_and_stops_at_eof(workdir, monkeypatch, capsys):
    model, _ = vision.load_model("alexnet", pretrained=False)
    answer(monkeypatch, "\nfeatures.1O\n  classifier.4  \n")
    assert vision.show_model(model, "alexnet") == "classifier.4"
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("'features.1O' is not a module of alexnet; closest:"))
    assert "features.10" in line
    answer(monkeypatch, "nonsense\n")
    with pytest.raises(VisrepsError, match="stdin ended"):
        vision.show_model(model, "alexnet")
    answer(monkeypatch, "maxpool_ensemble\n")
    assert vision.show_model(model, "alexnet") == "maxpool_ensemble"


def test_model_prints_and_behaves_as_the_network():
    model, transforms = vision.load_model("alexnet", pretrained=False)
    assert str(model).startswith("AlexNet(") and "(classifier): Sequential(" in repr(model)
    assert type(model.features).__name__ == "Sequential"
    assert "features.10" in dict(model.named_modules())
    assert transforms is model.lm.transform and transforms is model.get_transformations()


# --------------------------------------------------------------------------- README: CLIP and CORnet


def test_readme_clip(workdir):
    ns: dict = {}
    exec(
        textwrap.dedent("""
        import torch
        import visreps.vision as vision

        model_name = 'clip-ViT'
        module_name = 'visual'

        device = 'cuda' if torch.cuda.is_available() else 'cpu'

        model, transforms = vision.load_model(model_name, pretrained=False, model_path=None, device=device)
        dl = vision.load_dl(root='./images/', out_path=f'./{model_name}/{module_name}/features', batch_size=64, transforms=transforms)
        features, targets = vision.extract_features(model, dl, module_name, batch_size=64, flatten_acts=False, device=device, clip=True, return_probabilities=False)
        raw = features.copy()

        features = vision.center_features(features)

        vision.save_features(features, f'./{model_name}/{module_name}/features', 'npy')
        vision.save_targets(targets, f'./{model_name}/{module_name}/targets', 'npy')
    """),
        ns,
    )
    out = Path("clip-ViT/visual")
    features = np.load(out / "features" / "features.npy")
    assert features.shape == (5, 512)
    np.testing.assert_array_equal(np.load(out / "targets" / "targets.npy"), np.arange(5))
    assert (out / "features" / "file_names.txt").read_text().splitlines() == SORTED
    np.testing.assert_allclose(features.mean(axis=0), 0, atol=1e-5)
    # 'visual' is the image embedding: the modern API's 'embedding' layer, same numbers (one batch of 5 in both)
    model = ns["model"]
    modern = visreps.extract(model.lm, "images", layers=["embedding", "visual"], progress=False)
    np.testing.assert_array_equal(ns["raw"], modern["embedding"])
    np.testing.assert_array_equal(modern["visual"], modern["embedding"])
    # CLIP specifics: no ImageNet probabilities; the printed architecture lists the visual tower
    with pytest.raises(VisrepsError, match="not available for CLIP"):
        vision.extract_features(model, ns["dl"], "visual", 64, True, "cpu", clip=True, return_probabilities=True)
    assert "visual.transformer.resblocks.11" in str(model) and "visual " in str(model)


def test_readme_cornet(workdir, monkeypatch):
    answer(monkeypatch, "decoder.flatten\n")
    ns: dict = {}
    exec(
        textwrap.dedent("""
        import torch
        import visreps.vision as vision

        model_name = 'cornet-s'
        device = 'cuda' if torch.cuda.is_available() else 'cpu'

        model, transforms = vision.load_model(model_name, pretrained=False, model_path=None, device=device)
        module_name = vision.show_model(model, model_name)

        dl = vision.load_dl(root='./images/', out_path=f'./{model_name}/{module_name}/features', batch_size=64, transforms=transforms)
        features, targets = vision.extract_features(model, dl, module_name, batch_size=64, flatten_acts=False, device=device, return_probabilities=False)
        raw = features.copy()

        features = vision.center_features(features)
        features = vision.normalize_features(features)

        vision.save_features(features, f'./{model_name}/{module_name}/features', 'npy')
    """),
        ns,
    )
    assert ns["module_name"] == "decoder.flatten"
    assert str(ns["model"]).startswith("Sequential(") and "(V4): CORblock_S(" in str(ns["model"])
    saved = np.load("cornet-s/decoder.flatten/features/features.npy")
    assert saved.shape == (5, 512)
    np.testing.assert_allclose(np.linalg.norm(saved, axis=1), 1, rtol=1e-5)
    # the same transforms as visreps.analysis (equality with the modern extraction of CORnet-S:
    # test_recurrent_module_gives_the_last_time_step, at a smaller input size)
    from visreps.analysis import center_features, normalize_features

    np.testing.assert_array_equal(saved, normalize_features(center_features(ns["raw"])))


def test_recurrent_module_gives_the_last_time_step(workdir):
    model, _ = vision.load_model("cornet-s", pretrained=False)
    dl = vision.load_dl("images", "out", 5, model.get_transformations(resize_dim=64, crop_dim=64))
    features, _ = vision.extract_features(model, dl, "V4.output", 5, True, "cpu")
    flat, _ = vision.extract_features(model, dl, "decoder.flatten", 5, False, "cpu")
    lm = visreps.load_model("cornet:s", pretrained=False, preprocessing={"resize": 64, "crop": 64})
    modern = visreps.extract(lm, "images", layers=["V4.output@t3", "decoder.flatten"], batch_size=5, progress=False)
    np.testing.assert_array_equal(features, modern["V4.output@t3"])
    np.testing.assert_array_equal(flat, modern["decoder.flatten"])


# --------------------------------------------------------------------------- README: model comparison


def test_readme_compare_models(workdir):
    root, out_path, batch_size = "./images/", "./comparison", 4
    model_names = ["alexnet", "cornet-z"]
    module_names = ["classifier.4", "decoder.avgpool"]
    clip_list = [n.startswith("clip") for n in model_names]

    correlations = vision.compare_models(
        root=root,
        out_path=out_path,
        model_names=model_names,
        module_names=module_names,
        pretrained=False,
        batch_size=batch_size,
        flatten_acts=True,
        clip=clip_list,
        save_features=True,
        dissimilarity="correlation",
        correlation="pearson",
    )
    assert list(correlations.index) == model_names and list(correlations.columns) == model_names
    assert correlations.index.name == "model_names"
    np.testing.assert_allclose(np.diag(correlations.to_numpy()), 1)
    with open(Path(out_path) / "features.p", "rb") as f:
        saved = pickle.load(f)
    assert set(saved) == set(model_names) and saved["alexnet"]["classifier.4"].shape == (5, 4096)
    # the same number from the modern API
    from visreps.analysis import compute_rdm, correlate_rdms

    # (same batch size: convolutions of a different batch size may differ in the last bits)
    a = visreps.extract(
        "torchvision:alexnet", root, layers=["classifier.4"], pretrained=False, batch_size=4, progress=False
    )
    z = visreps.extract("cornet:z", root, layers=["decoder.avgpool"], pretrained=False, batch_size=4, progress=False)
    np.testing.assert_array_equal(saved["cornet-z"]["decoder.avgpool"], z["decoder.avgpool"])
    r = correlate_rdms(compute_rdm(a["classifier.4"]), compute_rdm(z["decoder.avgpool"]))
    assert correlations.loc["alexnet", "cornet-z"] == pytest.approx(float(r), abs=1e-12)
    assert correlations.loc["cornet-z", "alexnet"] == correlations.loc["alexnet", "cornet-z"]


# --------------------------------------------------------------------------- README note 6 + paper 2.4.2: split and merge


def _arrays():
    rng = np.random.default_rng(3)
    return {
        "float32_2d": rng.standard_normal((23, 7)).astype(np.float32),
        "float64_2d": rng.standard_normal((11, 5)) * 1e-7,
        "float32_4d": rng.standard_normal((9, 3, 4, 5)).astype(np.float32),
        "int64_1d": rng.integers(-5, 5, size=13),
    }


@pytest.mark.parametrize("fmt", vision.FILE_FORMATS)
@pytest.mark.parametrize("kind", list(_arrays()))
def test_split_merge_round_trips_exactly(tmp_path, fmt, kind):
    X = _arrays()[kind]
    vision.split_features(tmp_path, X, fmt, n_splits=4)
    if fmt == "hdf5":
        import h5py

        with h5py.File(tmp_path / "features.h5") as h5:
            assert sorted(h5) == ["features_01", "features_02", "features_03", "features_04"]
    else:
        assert sorted(p.name for p in tmp_path.iterdir()) == [f"features_0{i}.{fmt}" for i in range(1, 5)]
    back = vision.merge_features(tmp_path, fmt)
    if fmt == "mat" and X.ndim == 1:  # MATLAB has no 1-D arrays: a column
        assert back.shape == (len(X), 1)
        back = back.ravel()
    assert back.dtype == X.dtype and back.shape == X.shape
    assert back.tobytes() == X.tobytes()
    if fmt == "mat" and X.ndim == 1:
        return
    # the older names (README note 6): activations_01 ..., merge_activations(PATH) finds the format
    old = tmp_path / "old"
    vision.split_activations(old, X, fmt)
    back = vision.merge_activations(old)
    assert back.dtype == X.dtype and back.tobytes() == X.tobytes()
    # a single file, read back by the same function
    single = tmp_path / "single"
    vision.save_features(X, single, fmt)
    back = vision.merge_features(single, fmt)
    assert back.dtype == X.dtype and back.tobytes() == X.tobytes()


def test_split_numbering_and_more_splits_than_rows(tmp_path):
    X = np.arange(250, dtype=np.float32).reshape(125, 2)
    vision.split_features(tmp_path / "a", X, "npy", n_splits=120)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert len(names) == 120 and names[0] == "features_001.npy" and names[-1] == "features_120.npy"
    np.testing.assert_array_equal(vision.merge_features(tmp_path / "a", ".npy"), X)
    vision.split_features(tmp_path / "b", X[:3], "txt", n_splits=10)
    assert len(list((tmp_path / "b").iterdir())) == 3
    np.testing.assert_array_equal(vision.merge_features(tmp_path / "b", "txt"), X[:3])
    with pytest.raises(VisrepsError, match="no feature splits"):
        vision.merge_features(tmp_path / "b", "mat")


def test_txt_slices_of_a_4d_array(tmp_path):
    X = np.random.default_rng(0).standard_normal((3, 2, 4, 5)).astype(np.float32)
    vision.save_features(X, tmp_path, "txt")
    text = (tmp_path / "features.txt").read_text()
    assert text.startswith("# Array shape: (3, 2, 4, 5)\n# dtype: float32\n")
    assert text.count("# New slice") == 6
    back = vision.slices2tensor(tmp_path, "features.txt")
    assert back.dtype == X.dtype and back.tobytes() == X.tobytes()
    vision.tensor2slices(tmp_path, "other.txt", X.astype(np.float64))
    assert vision.slices2tensor(tmp_path, "other.txt").tobytes() == X.astype(np.float64).tobytes()


def test_save_splits_on_memory_error_and_merge(tmp_path, monkeypatch):
    X = np.random.default_rng(1).standard_normal((20, 6)).astype(np.float32)
    real = np.save

    def fail_on_big(f, arr, *a, **k):
        if len(arr) == len(X):
            raise MemoryError
        return real(f, arr, *a, **k)

    monkeypatch.setattr(np, "save", fail_on_big)
    vision.save_features(X, tmp_path, "npy", n_splits=5)
    monkeypatch.undo()
    assert not (tmp_path / "features.npy").exists()
    assert len(list(tmp_path.glob("features_*.npy"))) == 5
    np.testing.assert_array_equal(vision.merge_features(tmp_path, "npy"), X)


def test_mat_files_hold_features_and_file_names(tmp_path):
    from scipy.io import loadmat

    X = np.arange(12, dtype=np.float32).reshape(4, 3)
    (tmp_path / "file_names.txt").write_text("cat/a.jpg\ncat/b.jpg\ndog/c.jpg\ndog/d.jpg\n")
    vision.save_features(X, tmp_path, "mat")
    m = loadmat(tmp_path / "features.mat")
    np.testing.assert_array_equal(m["features"], X)
    assert [str(np.squeeze(s)) for s in m["file_names"].ravel()] == ["cat/a.jpg", "cat/b.jpg", "dog/c.jpg", "dog/d.jpg"]
    vision.split_features(tmp_path, X, "mat", n_splits=2)
    np.testing.assert_array_equal(vision.merge_features(tmp_path, "mat"), X)


@pytest.mark.parametrize("fmt", vision.FILE_FORMATS)
def test_save_targets(tmp_path, fmt):
    t = np.array([0, 0, 1, 2], dtype=np.int64)
    vision.save_targets(t, tmp_path, fmt)
    path = tmp_path / f"targets{ {'npy': '.npy', 'hdf5': '.h5', 'mat': '.mat', 'txt': '.txt'}[fmt] }"
    assert path.is_file()
    if fmt == "npy":
        np.testing.assert_array_equal(np.load(path), t)
    elif fmt == "hdf5":
        import h5py

        with h5py.File(path) as h5:
            np.testing.assert_array_equal(h5["targets"][()], t)


def test_unknown_format(tmp_path):
    with pytest.raises(VisrepsError, match="file format 'csv'"):
        vision.save_features(np.zeros((2, 2)), tmp_path, "csv")


# --------------------------------------------------------------------------- the paper (section 2)


def test_paper_method_section(workdir, monkeypatch):
    """Section 2 of the paper: variables, Model, show, load_dl (also with file_names), extraction,
    saving (also split), merging, RSA and the RDM plot."""
    import torch

    # 2.1 Variables
    root = "./images/"
    model_name = "alexnet"
    pretrained = False
    batch_size = 64
    backend = "pt"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out_path = f"./{model_name}/features.10/features"
    file_format = "npy"

    # 2.2.1 Loading models
    model = Model(model_name, pretrained=pretrained, model_path=None, device=device, backend=backend)
    # 2.2.2 Selecting modules
    answer(monkeypatch, "features.10\n")
    module_name = model.show()
    assert module_name == "features.10"

    # 2.3 Dataset and data loader (sorted order, then the order of a list of file names)
    dl = vision.load_dl(
        root=root, out_path=out_path, batch_size=batch_size, transforms=model.get_transformations(), backend=backend
    )
    assert (Path(out_path) / "file_names.txt").read_text().splitlines() == SORTED
    file_names = ["e_img.png", "a_img.jpg", "d_img.png", "b_img.png", "c_img.png"]
    dl = vision.load_dl(
        root=root,
        out_path=out_path,
        batch_size=batch_size,
        transforms=model.get_transformations(),
        backend=backend,
        file_names=file_names,
    )
    assert (Path(out_path) / "file_names.txt").read_text().splitlines() == file_names

    # 2.4.1 Extracting features
    features, targets = model.extract_features(
        data_loader=dl, module_name=module_name, batch_size=batch_size, flatten_acts=True, device=device
    )
    assert features.shape == (5, 43264)
    modern = visreps.extract(model.lm, root, layers=["features.10"], order=file_names, progress=False)
    np.testing.assert_array_equal(features, modern["features.10"])  # one batch of all 5 images in both runs

    # 2.4.2 Saving features, splitting them into k files, merging the splits
    vision.save_features(features, out_path, file_format)
    np.testing.assert_array_equal(np.load(Path(out_path) / "features.npy"), features)
    vision.split_features(out_path, features, file_format, n_splits=5)
    np.testing.assert_array_equal(vision.merge_features(out_path, file_format), features)

    # 2.5 RSA
    rdm_dnn = vision.compute_rdm(features, method="correlation")
    np.testing.assert_allclose(rdm_dnn, squareform(pdist(features.astype(np.float64), "correlation")), atol=1e-10)
    rng = np.random.default_rng(0)
    rdm_human = squareform(rng.random(10))
    r = vision.correlate_rdms(rdm_dnn, rdm_human, correlation="pearson")
    iu = np.triu_indices(5, 1)
    assert r == pytest.approx(pearsonr(rdm_dnn[iu], rdm_human[iu])[0], abs=1e-12)
    rho = vision.correlate_rdms(rdm_dnn, rdm_human, correlation="spearman")
    assert rho == pytest.approx(spearmanr(rdm_dnn[iu], rdm_human[iu])[0], abs=1e-12)
    vision.plot_rdm(out_path, features, method="correlation", format=".png", colormap="cividis", show_plot=False)
    assert (Path(out_path) / "rdm.png").stat().st_size > 0
    vision.plot_rdm(out_path, features, format=".jpg")
    assert (Path(out_path) / "rdm.jpg").is_file()


def test_paper_closing_example(workdir):
    """The paper's closing code listing (its save_features call passes out_path by keyword and the
    format positionally, a SyntaxError in Python; the format is passed by keyword here)."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"

    model = Model(
        model_name="alexnet",
        pretrained=False,
        device=device,
        backend="pt",
    )

    dl = vision.load_dl(
        root="./images/",
        out_path="./alexnet/features.10/features/",
        batch_size=64,
        transforms=model.get_transformations(),
        backend="pt",
    )

    features, targets = model.extract_features(
        data_loader=dl,
        module_name="features.10",
        batch_size=64,
        flatten_acts=True,
        device=device,
    )

    vision.save_features(features, out_path="./alexnet/features.10/features/", file_format="npy")
    assert np.load("alexnet/features.10/features/features.npy").shape == (5, 43264)
    assert Path("alexnet/features.10/features/file_names.txt").is_file()


# --------------------------------------------------------------------------- equality and options


def test_custom_transform_sizes_and_unflattened_maps(workdir):
    model = Model("alexnet", pretrained=False, device="cpu")
    t = model.get_transformations(resize_dim=72, crop_dim=64)
    dl = vision.load_dl("images", "out", 2, t)
    features, targets = model.extract_features(dl, "features.2", 2, flatten_acts=False)
    modern = visreps.extract(
        visreps.load_model("torchvision:alexnet", pretrained=False, preprocessing={"resize": 72, "crop": 64}),
        "images",
        layers=["features.2"],
        pool="none",
        batch_size=2,
        progress=False,
    )
    assert features.shape == (5, 64, 7, 7)
    np.testing.assert_array_equal(features, modern["features.2"])
    assert model.lm.preprocessing.crop == 224  # the model itself is unchanged
    assert len(dl) == 3 and [tuple(y.shape) for _, y in dl] == [(2, 1), (2, 1), (1, 1)]  # the last batch is kept


@pytest.mark.parametrize("which, kind", [("conv_ensemble", "conv"), ("maxpool_ensemble", "maxpool")])
def test_feature_map_ensembles(workdir, which, kind):
    from visreps.analysis import feature_map_layers

    model = Model("alexnet", pretrained=False, device="cpu")
    dl = vision.load_dl("images", "out", 8, model.get_transformations(resize_dim=72, crop_dim=64))
    features, _ = model.extract_features(dl, which, 8, flatten_acts=True)
    layers = feature_map_layers(model.lm, kinds=(kind,))
    assert layers == (
        ["features.0", "features.3", "features.6", "features.8", "features.10"]
        if kind == "conv"
        else ["features.2", "features.5", "features.12"]
    )
    lm = visreps.load_model("torchvision:alexnet", pretrained=False, preprocessing={"resize": 72, "crop": 64})
    modern = visreps.extract(lm, "images", layers=layers, pool="max", progress=False)  # one batch of 5, as dl's
    parts = [np.asarray(modern[k]) for k in layers]
    parts[-2] = parts[-2] * np.float32(3)
    parts[-1] = parts[-1] * np.float32(5)
    np.testing.assert_array_equal(features, np.concatenate(parts, axis=1))


def test_class_folders_with_file_names_and_own_module(tmp_path, tiny_net):
    """Class subfolders plus an explicit file list (the original crashed): exactly these images, in
    this order, targets = class index; a user's nn.Module and transform work too."""
    from visreps.models import Preprocessing

    root = tmp_path / "things"
    write_images(root, ["dog/d1.png", "cat/c2.png", "cat/c1.png", "ant/a1.png", "dog/d2.png"], size=(30, 24))
    order = ["dog/d2.png", "cat/c1.png", "dog/d1.png", "ant/a1.png"]
    transform = Preprocessing(resize=20, crop=16).build()
    dl = vision.load_dl(root, tmp_path / "out", 3, transform, file_names=order)
    assert (tmp_path / "out" / "file_names.txt").read_text().splitlines() == order
    assert dl.classes == ["ant", "cat", "dog"]
    features, targets = vision.extract_features(tiny_net, dl, "3", 3, flatten_acts=False, device="cpu")
    np.testing.assert_array_equal(targets, [2, 1, 2, 0])
    lm = visreps.load_model(tiny_net, preprocessing={"resize": 20, "crop": 16})
    kw = {"layers": ["3"], "pool": "none", "order": order, "progress": False}
    # the loader's batches of 3 (3 + 1 images) against one batch of 4 (the default batch size): other kernels,
    # so the same numbers to float32 rounding only
    modern = np.asarray(visreps.extract(lm, root, **kw)["3"])
    np.testing.assert_allclose(features, modern, rtol=1e-5, atol=1e-6 * float(np.abs(modern).max()))
    # with the loader's batch size the batches are the same, and so are the bits
    np.testing.assert_array_equal(features, visreps.extract(lm, root, batch_size=3, **kw)["3"])
    assert features.shape == (4, 6, 8, 8)
    # without a list: every image, sorted; targets from the sorted class folders
    dl = vision.load_dl(root, tmp_path / "out", 3, transform)
    assert dl.file_names == ["ant/a1.png", "cat/c1.png", "cat/c2.png", "dog/d1.png", "dog/d2.png"]
    np.testing.assert_array_equal(dl.targets, [0, 1, 1, 2, 2])
    X, y = next(iter(dl))
    assert tuple(X.shape) == (3, 3, 16, 16) and y.ravel().tolist() == [0, 1, 1]
    # file names that include the root (as the original wrote them) are accepted
    dl = vision.load_dl(root, tmp_path / "out", 3, transform, file_names=[str(root / "cat" / "c1.png")])
    assert dl.file_names == ["cat/c1.png"]


def test_errors_name_the_way_out(workdir):
    model, transforms = vision.load_model("alexnet", pretrained=False)
    dl = vision.load_dl("images", "out", 4, transforms)
    with pytest.raises(LayerNotFoundError, match="closest: features.10"):
        vision.extract_features(model, dl, "features.100", 4, True, "cpu")
    with pytest.raises(VisrepsError, match="clip=True is for CLIP"):
        vision.extract_features(model, dl, "features.10", 4, True, "cpu", clip=True)
    with pytest.raises(VisrepsError, match="load_dl"):
        vision.extract_features(model, [1, 2], "features.10", 4, True, "cpu")
    with pytest.raises(VisrepsError, match="lists 5 images"):
        vision.get_class_probabilities(np.ones((3, 1000)) / 1000, "out", top_k=1, save_as_json=False)
    with pytest.raises(VisrepsError, match="file_names.txt"):
        vision.get_class_probabilities(np.ones((5, 1000)), "nowhere", top_k=1, save_as_json=False)


# --------------------------------------------------------------------------- analysis


def test_rdm_methods_and_the_gaussian_rdm():
    F = np.random.default_rng(0).standard_normal((7, 12))
    for method in ("correlation", "cosine", "euclidean"):
        np.testing.assert_allclose(vision.compute_rdm(F, method), squareform(pdist(F, method)), atol=1e-10)
    # the original's gaussian branch was never reached; here it is 1 - exp(-D / mean(D))
    D = cdist(F, F, "sqeuclidean")
    expected = 1 - np.exp(-D / D.mean())
    np.testing.assert_allclose(vision.compute_rdm(F, "gaussian"), expected, atol=1e-12)
    with pytest.raises(VisrepsError, match="method 'manhattan'"):
        vision.compute_rdm(F, "manhattan")


def test_center_normalize_compress():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10, 6)).astype(np.float32) + 3
    X[4] = 0
    Y = vision.center_features(X)
    assert Y is X  # in place, as in the original
    np.testing.assert_allclose(X.mean(axis=0), 0, atol=1e-6)
    Z = np.zeros((3, 4))
    Z[1] = [3, 4, 0, 0]
    N = vision.normalize_features(Z)
    assert N is Z and np.isfinite(N).all()
    np.testing.assert_allclose(N[1], [0.6, 0.8, 0, 0])
    np.testing.assert_array_equal(N[0], 0)  # the original gave NaN
    maps = rng.standard_normal((4, 2, 3, 3))
    assert vision.center_features(maps).shape == (4, 2, 3, 3)
    P = vision.compress_features(rng.standard_normal((30, 8)), rnd_seed=0, retained_var=0.9)
    assert P.shape[0] == 30 and 1 <= P.shape[1] <= 8
    with pytest.raises(VisrepsError, match="rnd_seed"):
        vision.compress_features(np.ones((3, 3)), rnd_seed=None)


def test_deprecation_warnings_point_to_the_modern_api(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vision.compute_rdm(np.eye(3), "euclidean")
        vision.save_features(np.eye(3), tmp_path, "npy")
        Model("alexnet", pretrained=False, device="cpu")
    messages = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert any("visreps.analysis.compute_rdm" in m for m in messages)
    assert any("visreps.extract(" in m for m in messages)
    assert any("model_class.Model" in m and "visreps.load_model" in m for m in messages)
    assert all("Coming from THINGSvision" in m for m in messages)
    assert all(w.filename == __file__ for w in caught if issubclass(w.category, DeprecationWarning))


# --------------------------------------------------------------------------- TensorFlow / Keras backend


def test_keras_backend(workdir):
    pytest.importorskip("tensorflow")
    model = Model("MobileNetV3Small", pretrained=False, device="cpu", backend="tf")
    dl = vision.load_dl("images", "out", 4, model.get_transformations(), backend="tf")
    layer = model.lm.layer_names()[-3]
    features, targets = model.extract_features(dl, layer, 4, flatten_acts=True)
    modern = visreps.extract(model.lm, "images", layers=[layer], progress=False, batch_size=4)  # same batches
    np.testing.assert_array_equal(features, modern[layer])
    np.testing.assert_array_equal(targets, np.arange(5))


def test_class_files_of_every_spelling(tmp_path):
    """imagenet1000_classes.txt, a synset file and one name per line give the original's names."""
    (tmp_path / "classes.txt").write_text(
        "{0: 'tench, Tinca tinca',\n 1: 'great white shark, white shark',\n 2: 'goldfish'}\n"
    )
    (tmp_path / "synsets.txt").write_text(
        "n01440764 tench, Tinca tinca\nn01484850 great white shark, white shark\nn01443537 goldfish\n"
    )
    (tmp_path / "plain.txt").write_text("Tench\ngreat white shark\n\ngoldfish\n")
    for f in ("classes.txt", "synsets.txt", "plain.txt"):
        assert vision._read_class_file(tmp_path / f) == ["tench", "great_white_shark", "goldfish"]
    (tmp_path / "file_names.txt").write_text("x.png\ny.png\n")
    P = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]], dtype=np.float32)
    got = vision.get_class_probabilities(P, tmp_path, tmp_path / "synsets.txt", top_k=2, save_as_json=False)
    assert got == {
        "x.png": {"great_white_shark": float(P[0, 1]), "goldfish": float(P[0, 2])},
        "y.png": {"tench": float(P[1, 0]), "goldfish": float(P[1, 2])},
    }
