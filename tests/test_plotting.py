"""RDM plots and comparison heatmaps are real image files, drawn without a display."""

import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.spatial.distance import pdist, squareform

from visreps.errors import VisrepsError
from visreps.plotting import figure_caption, plot_comparison, plot_rdm, plot_reference_comparison


def rdm(n=10, seed=0):
    return squareform(pdist(np.random.default_rng(seed).standard_normal((n, 5))))


@pytest.mark.parametrize("suffix", ["png", "jpg", "pdf", "svg"])
def test_plot_rdm_formats_open(tmp_path, suffix):
    out = tmp_path / f"rdm.{suffix}"
    fig = plot_rdm(rdm(), out, dpi=50, figsize=(4, 3))
    assert out.is_file() and out.stat().st_size > 500
    if suffix in ("png", "jpg"):
        with Image.open(out) as im:
            im.load()
            assert im.format == {"png": "PNG", "jpg": "JPEG"}[suffix]
            assert im.size == (200, 150)  # figsize × dpi
            assert len(np.unique(np.asarray(im.convert("L")))) > 10  # not blank
    elif suffix == "pdf":
        assert out.read_bytes().startswith(b"%PDF")
    else:
        assert ET.parse(out).getroot().tag.endswith("svg")
    assert len(fig.axes) == 2  # the matrix and its colour bar


def test_plot_rdm_options(tmp_path):
    D = rdm(8)
    labels = [f"img{i}" for i in range(8)]
    fig = plot_rdm(D, tmp_path / "r.png", rank=True, order="cluster", labels=labels, cmap="magma", title="t", dpi=40)
    ax, cax = fig.axes
    assert cax.get_ylabel() == "dissimilarity rank (0–1)"
    shown = np.asarray(ax.images[0].get_array())
    assert shown.max() == pytest.approx(1.0) and np.all(np.diag(shown) == 0)
    assert sorted(t.get_text() for t in ax.get_xticklabels()) == sorted(labels)
    fig = plot_rdm(squareform(D), order=list(range(8))[::-1], colorbar=False)  # condensed input, no file
    assert len(fig.axes) == 1 and np.asarray(fig.axes[0].images[0].get_array())[0, 1] == D[7, 6]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(out="x.gif"),
            r"format 'gif' is not supported; end the file name with one of .png, .pdf, .svg, .eps, .tiff, .jpg",
        ),
        (dict(out="x"), r"format '\(none\)' is not supported"),
        (dict(cmap="viridiss"), "colormap 'viridiss' is not known; did you mean viridis"),
        (dict(order="alphabetical"), "order must be 'cluster', 'category' or a permutation"),
        (dict(labels=["a"]), "labels has 1 names but the RDM has 10 conditions"),
        (dict(out="x.png", dpi=0), "dpi must be a positive number"),
    ],
)
def test_plot_rdm_errors(tmp_path, kwargs, message):
    if "out" in kwargs:
        kwargs["out"] = tmp_path / kwargs["out"]
    with pytest.raises(VisrepsError, match=message):
        plot_rdm(rdm(), **kwargs)
    with pytest.raises(VisrepsError, match="square matrix or a condensed vector"):
        plot_rdm(np.ones((3, 4)))


def test_comparison_heatmap_is_readable(tmp_path):
    labels = ["torchvision:alexnet/features.5", "timm:resnet18/layer4", "vgg16/classifier.4"]
    vals = np.array([[1, 0.5, 0.2], [0.5, 1, 0.7], [0.2, 0.7, 1.0]])
    df = pd.DataFrame(vals, index=labels, columns=labels)
    df.attrs.update({"method": "spearman", "rdm_method": "correlation"})
    fig = plot_comparison(df, tmp_path / "c.png", title="models", dpi=60)
    ax, cax = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == labels
    assert [t.get_text() for t in ax.get_yticklabels()] == labels
    assert cax.get_ylabel() == "spearman correlation of RDMs (correlation)"
    assert {t.get_text() for t in ax.texts} == {"1.00", "0.50", "0.20", "0.70"}  # values written in the cells
    with Image.open(tmp_path / "c.png") as im:
        assert im.size[0] > 200 and im.size[1] > 200
    # non-square tables (e.g. CKA of two models' layers) work too
    plot_comparison(pd.DataFrame(np.eye(2, 3), index=["a", "b"], columns=["x", "y", "z"]), tmp_path / "rect.svg")
    with pytest.raises(VisrepsError, match="numbers only"):
        plot_comparison(pd.DataFrame({"a": ["x", "y"]}))


def test_reference_bars(tmp_path):
    df = pd.DataFrame(
        {
            "reference": ["brain"] * 2 + ["behaviour"] * 2,
            "label": ["m/a", "m/b"] * 2,
            "r": [0.3, 0.5, 0.1, -0.2],
            "ci_low": [0.2, 0.4, 0.0, -0.3],
            "ci_high": [0.4, 0.6, 0.2, -0.1],
        }
    )
    df.attrs.update({"method": "pearson", "ci": 0.95})
    fig = plot_comparison(df, tmp_path / "bars.png")  # dispatches to plot_reference_comparison
    # vertical bars as in every bar figure (horizontal before), one panel per reference; the interval in the caption
    ax, ax2 = fig.axes
    assert [ax.get_title(), ax2.get_title()] == ["brain", "behaviour"]
    assert ax.get_ylabel() == "pearson correlation\nwith the reference RDM"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["m/a", "m/b"]
    assert [p.get_height() for p in ax.patches] == [0.3, 0.5] and [p.get_height() for p in ax2.patches] == [0.1, -0.2]
    assert "Whiskers: 95% confidence interval" in figure_caption(fig)
    with pytest.raises(VisrepsError, match="columns 'label' and 'r'"):
        plot_reference_comparison(pd.DataFrame({"x": [1]}))


def test_no_pyplot_and_headless(tmp_path):
    code = (
        "import os, sys; os.environ.pop('DISPLAY', None); import numpy as np; from visreps.plotting import plot_rdm; "
        f"plot_rdm(np.array([[0, 1.], [1, 0]]), {str(tmp_path / 'h.png')!r}); print('matplotlib.pyplot' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert (tmp_path / "h.png").is_file()
