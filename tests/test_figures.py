"""Figures a journal accepts and a reader cannot misread (issue 21).

Seven sources built as synthetic output folders (pretrained + two seeded-random AlexNets, a pretrained and a
random ResNet-18, a VGG-16 from a weights file, CORnet-S) against two references (4 subjects each, "hIT" and
"mIT"): labels name the weights, each model is drawn on its own layers, no two sources share a series,
nothing is clipped, every format is written, RDM grids share one colour scale.
"""

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.text import Text
from PIL import Image
from scipy.spatial.distance import pdist, squareform

from visreps import plotting
from visreps.analysis.compare import compare_features, compare_to_reference, rsa_inference
from visreps.cli import main
from visreps.errors import VisrepsError
from visreps.labels import label_from_metadata, parse_label_option, short_name, source_label, unique_labels
from visreps.plotting import (
    FIGURE_FORMATS,
    figure_caption,
    plot_comparison,
    plot_encoding,
    plot_model_comparison,
    plot_rdm,
    plot_rdms,
    plot_reference_comparison,
)

N = 16
PATHS = [f"{'animals' if i < 8 else 'objects'}/img{i:02d}.png" for i in range(N)]
ALEX = ["features.2", "features.5", "features.12", "classifier.4"]
RES = ["layer1", "layer2", "layer3", "layer4", "fc"]
SOURCES = [  # folder, model id, weights record, layers, noise
    ("alex_pre", "torchvision:alexnet", {"kind": "pretrained"}, ALEX, 0.5),
    ("alex_r1", "torchvision:alexnet", {"kind": "random", "seed": 1}, ALEX, 3.0),
    ("alex_r2", "torchvision:alexnet", {"kind": "random", "seed": 2}, ALEX, 3.0),
    ("res_pre", "timm:resnet18", {"kind": "pretrained"}, RES, 0.7),
    ("res_r1", "timm:resnet18", {"kind": "random", "seed": 1}, RES, 3.0),
    ("vgg", "torchvision:vgg16", {"kind": "file", "file": "/w/vgg16_finetuned.safetensors"}, ["f30", "c4"], 1.0),
    ("cornet", "cornet:s", {"kind": "pretrained"}, ["V1", "V2", "V4", "IT"], 1.0),
]
LABELS = [
    "alexnet (pretrained)",
    "alexnet (random, seed 1)",
    "alexnet (random, seed 2)",
    "resnet18 (pretrained)",
    "resnet18 (random, seed 1)",
    "vgg16 (vgg16_finetuned.safetensors)",
    "cornet:s (pretrained)",
]
LONG = {lab: f"{lab} — a deliberately long display name for this model's weights" for lab in LABELS}


def write_folder(root: Path, name, model, weights, layers, noise, latent, rng) -> Path:
    f = root / name
    f.mkdir(parents=True)
    meta = {"model": model, "weights": weights, "status": "complete", "format": "npy", "layers": {}}
    for k, layer in enumerate(layers):
        X = latent @ rng.standard_normal((6, 20)) * (1 + k) / len(layers) + noise * rng.standard_normal((N, 20))
        np.save(f / f"{layer}.npy", X.astype(np.float32))
        meta["layers"][layer] = {"shape": [N, 20], "dtype": "float32", "file": f"{layer}.npy"}
    manifest = pd.DataFrame({"index": range(N), "path": PATHS, "label": [p.split("/")[0] for p in PATHS]})
    manifest.to_csv(f / "manifest.csv", index=False)
    (f / "metadata.json").write_text(json.dumps(meta))
    return f


@pytest.fixture(scope="module")
def seven(tmp_path_factory):
    """The seven folders, the two per-subject references and rsa_inference against each."""
    root = tmp_path_factory.mktemp("seven")
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((N, 6))
    folders = [write_folder(root, *s, latent, rng) for s in SOURCES]
    refs = {}
    for k, name in enumerate(("hIT", "mIT")):
        r = np.random.default_rng(k + 1)
        stack = np.stack([squareform(pdist(latent + 0.8 * r.standard_normal((N, 6)), "correlation")) for _ in range(4)])
        refs[name] = root / f"{name}.npy"
        np.save(refs[name], stack)
    kw = dict(noise_ceiling=True, bootstrap="subjects", n_bootstrap=20, test="pairwise")
    results = {name: rsa_inference(folders, path, **kw) for name, path in refs.items()}
    return root, folders, refs, results


def all_inside(fig: Figure) -> list[str]:
    """Every drawn text whose bounding box leaves the figure (empty when nothing is clipped)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    W, H = fig.bbox.width, fig.bbox.height
    texts: list[Text] = []
    tick_labels = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks():
                for lab in (tick.label1, tick.label2):
                    tick_labels.add(id(lab))
                    if lab.get_visible() and lab.get_text().strip() and lo - 1e-9 <= tick.get_loc() <= hi + 1e-9:
                        texts.append(lab)
    texts += [t for t in fig.findobj(Text) if id(t) not in tick_labels and t.get_visible() and t.get_text().strip()]
    out = []
    for t in texts:
        bb = t.get_window_extent(renderer)
        if bb.x0 < -1 or bb.y0 < -1 or bb.x1 > W + 1 or bb.y1 > H + 1:
            out.append(f"{t.get_text()!r} at {bb.bounds} outside {W}×{H}")
    return out


# --------------------------------------------------------------------------- labels


def test_source_label_contract():
    assert source_label("torchvision:alexnet", kind="random", seed=1) == "alexnet (random, seed 1)"
    assert source_label("timm:tf_efficientnet_lite0") == "tf_efficientnet_lite0 (pretrained)"
    assert source_label("timm:resnet50", kind="file", weights_name="/a/b/weights.safetensors") == (
        "resnet50 (weights.safetensors)"
    )
    assert source_label("keras:ResNet50", kind="user") == "ResNet50 (user weights)"
    assert source_label("alexnet", kind="") == "alexnet"  # weights unknown: the name alone
    assert short_name("cornet:s") == "cornet:s"  # a one-letter name keeps its source
    meta = {"model": "torchvision:alexnet", "weights": {"kind": "random", "seed": 3}}
    assert label_from_metadata(meta) == "alexnet (random, seed 3)"
    assert label_from_metadata({"model": "timm:resnet18"}) == "resnet18"


def test_unique_labels_and_label_option():
    assert unique_labels(["a", "b", "a"]) == ["a #1", "b", "a #2"]
    assert unique_labels(["a", "a"], hints=["run1", "run2"]) == ["a [run1]", "a [run2]"]
    assert unique_labels(["a", "a", "a #1"]) == ["a #2", "a #3", "a #1"]  # never collides with a given label
    assert parse_label_option(["x=AlexNet, untrained", "y = B"]) == {"x": "AlexNet, untrained", "y": "B"}
    with pytest.raises(VisrepsError, match=r"--label 'x': write SOURCE=NAME"):
        parse_label_option(["x"])


def test_seven_sources_tables_name_the_weights(seven):
    _, folders, _, results = seven
    t = results["hIT"].table
    assert list(t.columns[:5]) == ["reference", "model", "weights", "layer", "label"]
    sources = plotting._sources(t)
    assert list(dict.fromkeys(sources)) == LABELS
    assert [t["weights"][sources.index(lab)] for lab in LABELS] == [
        "pretrained",
        "random, seed 1",
        "random, seed 2",
        "pretrained",
        "random, seed 1",
        "vgg16_finetuned.safetensors",
        "pretrained",
    ]
    assert t["label"].is_unique and t.loc[4, "label"] == "alexnet (random, seed 1)/features.2"
    # the plain comparison and the single-reference table carry the same columns
    df = compare_to_reference(folders[:2], np.load(seven[2]["hIT"])[0], layers=["features.2"])
    assert list(df.columns) == ["reference", "model", "weights", "layer", "label", "r"]
    assert list(df["label"]) == ["alexnet (pretrained)/features.2", "alexnet (random, seed 1)/features.2"]
    # two folders of one model with the same weights: told apart by their folder names
    copy = folders[0].parent / "alex_copy"
    if not copy.exists():
        shutil.copytree(folders[0], copy)
    pair = compare_features([folders[0], copy], layers=["features.2"])
    assert list(pair.index) == [
        "alexnet (pretrained) [alex_pre]/features.2",
        "alexnet (pretrained) [alex_copy]/features.2",
    ]


# --------------------------------------------------------------------------- the 7-source figures


def test_curves_each_model_on_its_own_layers_no_shared_series(seven):
    """Issue 19 finding 15: one series per source, never two sources on one line; each panel its own layer names."""
    _, _, _, results = seven
    fig = plot_model_comparison(results, kind="curve")
    panels = [ax for ax in fig.axes]
    assert len(panels) == 2 * 7  # two targets × seven sources
    layers = [s[3] for s in SOURCES]
    for k, ax in enumerate(panels):
        src = k % 7
        lines = [ln for ln in ax.get_lines() if str(ln.get_gid()).startswith("series:")]
        assert [ln.get_gid() for ln in lines] == [f"series:{LABELS[src]}"]  # exactly one series in the panel
        assert len(lines[0].get_xdata()) == len(layers[src])
        assert [t.get_text() for t in ax.get_xticklabels()] == layers[src]
        if k < 7:
            assert re.sub(r"\s", "", ax.get_title()) == re.sub(r"\s", "", LABELS[src])  # wrapped to the panel
        # the line's values are this source's rows of this target's table, in depth order
        t = list(results.values())[k // 7].table
        rows = t[[s == LABELS[src] for s in plotting._sources(t)]]
        assert np.allclose(lines[0].get_ydata(), rows["r"].to_numpy())
    # one axis: every source its own line, on a relative depth from 0 to 1
    fig = plot_model_comparison(results["hIT"], kind="curve", depth="relative")
    (ax,) = fig.axes
    lines = [ln for ln in ax.get_lines() if str(ln.get_gid()).startswith("series:")]
    assert [ln.get_gid() for ln in lines] == [f"series:{lab}" for lab in LABELS]
    assert [len(ln.get_xdata()) for ln in lines] == [len(x) for x in layers]
    assert all(ln.get_xdata()[0] == 0 and ln.get_xdata()[-1] == 1 for ln in lines)
    styles = {(to_rgb(ln.get_color()), str(ln.get_linestyle())) for ln in lines}
    assert len(styles) == 7  # no two sources look alike
    assert "alexnet (pretrained): features.2, features.5, features.12, classifier.4." in figure_caption(fig)


def test_bars_colour_per_source_random_hatched_two_targets_own_ceilings(seven):
    _, _, _, results = seven
    fig = plot_model_comparison(results, title="RSA")
    ax_h, ax_m = fig.axes[:2]
    assert [ax_h.get_title(), ax_m.get_title()] == ["hIT", "mIT"]
    t = results["hIT"].table
    src = plotting._sources(t)
    bars = ax_h.patches[-len(t) :]
    colour = {}
    for s, bar in zip(src, bars):
        colour.setdefault(s, set()).add((tuple(np.round(bar.get_facecolor()[:3], 4)), bar.get_hatch()))
    assert all(len(v) == 1 for v in colour.values())  # one style per source
    assert len({next(iter(v)) for v in colour.values()}) == 7  # seven different styles
    hatched = {s for s, v in colour.items() if next(iter(v))[1]}
    assert hatched == {"alexnet (random, seed 1)", "alexnet (random, seed 2)", "resnet18 (random, seed 1)"}
    # each target's own noise-ceiling band
    for ax, res in ((ax_h, results["hIT"]), (ax_m, results["mIT"])):
        band = ax.patches[0]
        y0, y1 = band.get_y(), band.get_y() + band.get_height()
        assert (y0, y1) == pytest.approx((res.noise_ceiling.lower, res.noise_ceiling.upper))
    legend = fig.legends[0]
    shown = [re.sub(r"\s", "", x.get_text()) for x in legend.get_texts()]
    assert shown == [re.sub(r"\s", "", x) for x in LABELS + ["noise ceiling"]]
    assert fig._suptitle.get_text() == "RSA"  # the title is the analysis; the details are in the caption
    cap = figure_caption(fig)
    assert "16 images, 4 subjects" in cap and "bootstrap over subjects (20 samples)" in cap and "fdr correction" in cap


def test_labels_and_colors_override(seven):
    _, _, _, results = seven
    names = {"alexnet (pretrained)": "AlexNet", "timm:resnet18": "ResNet"}  # by label or by model id
    with pytest.raises(VisrepsError, match="labels gives two sources the same name"):
        plot_model_comparison(results["hIT"], labels=names)  # the two ResNets would both be "ResNet"
    fig = plot_model_comparison(results["hIT"], labels={"alexnet (pretrained)": "AlexNet"}, colors="Set2")
    assert fig.legends[0].get_texts()[0].get_text() == "AlexNet"
    with pytest.raises(VisrepsError, match="not a source of this figure"):
        plot_model_comparison(results["hIT"], labels={"vgg19": "x"})
    red = {lab: "red" for lab in LABELS}
    fig = plot_model_comparison(results["hIT"], colors=red)
    assert to_rgb(fig.axes[0].patches[1].get_edgecolor()) == (1.0, 0.0, 0.0)


def test_ax_composes_into_a_users_figure(seven):
    _, _, _, results = seven
    fig = Figure(figsize=(10, 4), layout="constrained")
    a, b = fig.subplots(1, 2)
    assert plot_model_comparison(results["hIT"], ax=a) is fig
    assert plot_model_comparison(results["mIT"], ax=b, kind="curve", depth="relative") is fig
    assert len(fig.axes) == 2 and len(a.patches) > 28
    with pytest.raises(VisrepsError, match="ax= takes one panel"):
        plot_model_comparison(results, ax=a)
    plot_rdm(np.ones((4, 4)) - np.eye(4), ax=a, colorbar=False)
    assert len(a.images) == 1


# --------------------------------------------------------------------------- nothing clipped


def _encoding_table():
    labels = [f"{lab}/{layer}" for lab in LABELS[:3] for layer in ALEX[:2]]
    return pd.DataFrame(
        {
            "label": labels,
            "model": ["torchvision:alexnet"] * 6,
            "weights": ["pretrained"] * 2 + ["random, seed 1"] * 2 + ["random, seed 2"] * 2,
            "layer": ALEX[:2] * 3,
            "r_mean": np.linspace(0.1, 0.6, 6),
            "r_sem": np.full(6, 0.02),
            "ceiling_r": np.full(6, 0.7),
            "ceiling_r_sem": np.full(6, 0.03),
        }
    )


KINDS = ["bars", "curve", "relative", "reference", "heatmap", "encoding", "rdm", "rdms"]


def draw(kind: str, seven, width):
    _, folders, refs, results = seven
    long_title = "Representational similarity of seven networks with human and monkey IT, four subjects each"
    if kind in ("bars", "curve", "relative"):
        k = "bars" if kind == "bars" else "curve"
        return plot_model_comparison(
            results, kind=k, depth="relative" if kind == "relative" else "layers", labels=LONG, title=long_title,
            width=width,
        )  # fmt: skip
    if kind == "reference":
        df = compare_to_reference(folders[:3], {"hIT": np.load(refs["hIT"])[0]}, layers=["features.5"])
        return plot_reference_comparison(df, labels={k: LONG[k] for k in LABELS[:3]}, title=long_title, width=width)
    if kind == "heatmap":
        df = compare_features(folders[:3], layers=["features.5"])
        names = {i: f"{i} with a long name appended to it" for i in df.index}
        return plot_comparison(df, labels=names, title=long_title, width=width)
    if kind == "encoding":
        return plot_encoding(_encoding_table(), labels={k: LONG[k] for k in LABELS[:3]}, title=long_title, width=width)
    D = squareform(pdist(np.random.default_rng(0).standard_normal((N, 4))))
    cats = [f"category {p.split('/')[0]} with a long name" for p in PATHS]
    if kind == "rdm":
        return plot_rdm(D, categories=cats, title=long_title + " " + LONG[LABELS[1]], width=width)
    return plot_rdms({lab: D * (k + 1) for k, lab in enumerate(LABELS)}, labels=LONG, categories=cats, width=width,
                     title=long_title)  # fmt: skip


@pytest.mark.parametrize("width", ["single", "double"])
@pytest.mark.parametrize("kind", KINDS)
def test_nothing_clipped_with_long_labels(seven, kind, width):
    fig = draw(kind, seven, width)
    assert all_inside(fig) == []
    assert fig.get_figwidth() == pytest.approx(plotting.WIDTHS[width])


@pytest.mark.parametrize("width", ["single", "double"])
def test_seven_curves_wrap_into_rows_at_a_journal_width(seven, width):
    """Small multiples that do not fit side by side wrap: two (single) or four (double) panels a row, each target
    a block headed by its name, every source in exactly one panel of its block with its own layer names."""
    _, _, _, results = seven
    fig = draw("curve", seven, width)
    assert all_inside(fig) == []
    assert fig.get_figwidth() == pytest.approx(plotting.WIDTHS[width])
    cols = {"single": 2, "double": 4}[width]
    per = -(-7 // cols)  # rows of panels per target
    layers = [s[3] for s in SOURCES]
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    assert [sub._suptitle.get_text() for sub in fig.subfigs] == ["hIT", "mIT"]
    for sub, res in zip(fig.subfigs, results.values()):
        axes = sub.axes
        assert len(axes) == per * cols
        assert [a.get_visible() for a in axes] == [True] * 7 + [False] * (per * cols - 7)  # unused slots hidden
        shown = axes[:7]
        seen = []
        for k, ax in enumerate(shown):
            lines = [ln for ln in ax.get_lines() if str(ln.get_gid()).startswith("series:")]
            assert len(lines) == 1
            src = LABELS.index(lines[0].get_gid()[len("series:") :])
            seen.append(src)
            assert [t.get_text() for t in ax.get_xticklabels()] == layers[src]
            assert re.sub(r"\s", "", ax.get_title()) == re.sub(r"\s", "", LONG[LABELS[src]])  # every panel named
            t = res.table
            rows = t[[s == LABELS[src] for s in plotting._sources(t)]]
            assert np.allclose(lines[0].get_ydata(), rows["r"].to_numpy())
            assert ax.get_window_extent().width / fig.dpi > 1.0  # not squeezed: about 1.6 in a panel with labels
            assert ax.get_window_extent().height / fig.dpi >= 1.05
            # the y label and tick labels on the first column of each row only; one y scale within the target
            assert bool(ax.get_ylabel()) == (k % cols == 0)
            assert any(lab.get_visible() and lab.get_text() for lab in ax.get_yticklabels()) == (k % cols == 0)
            assert ax.get_ylim() == shown[0].get_ylim()
        assert seen == list(range(7))  # each source in exactly one panel, in the table's order
        # panels fill the rows left to right, top to bottom
        x0 = [round(a.get_position().x0, 3) for a in shown]
        y0 = [round(a.get_position().y0, 3) for a in shown]
        assert len(set(x0)) == cols and len(set(y0)) == per
        assert y0 == sorted(y0, reverse=True) and x0[:cols] == sorted(x0[:cols])
    # the head of each block sits above its panels
    head_h, head_m = (sub._suptitle.get_window_extent() for sub in fig.subfigs)
    assert head_h.y0 > max(a.get_window_extent().y1 for a in fig.subfigs[0].axes if a.get_visible())
    assert head_m.y0 > max(a.get_window_extent().y1 for a in fig.subfigs[1].axes if a.get_visible())


def test_the_clip_check_finds_clipped_text():
    fig = Figure(figsize=(2, 2))
    ax = fig.add_subplot()
    ax.set_title("a title far too long to fit in a figure two inches wide, so it runs off both edges")
    assert all_inside(fig)


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize("fmt", ["png", "pdf", "svg", "eps", "tiff", "jpg"])
def test_every_format_with_dpi(seven, tmp_path, fmt):
    _, _, _, results = seven
    out = tmp_path / f"fig.{fmt}"
    fig = plot_model_comparison(results["hIT"], out, kind="curve", depth="relative", width="single", dpi=120,
                                caption=True)  # fmt: skip
    head = out.read_bytes()[:40]
    if fmt in ("png", "tiff", "jpg"):
        with Image.open(out) as im:
            im.load()
            assert im.format == {"png": "PNG", "tiff": "TIFF", "jpg": "JPEG"}[fmt]
            w, h = fig.get_size_inches()
            assert abs(im.size[0] - w * 120) <= 1 and abs(im.size[1] - h * 120) <= 1
            assert im.info.get("dpi", (120, 120))[0] == pytest.approx(120, abs=0.5)
    elif fmt == "pdf":
        assert head.startswith(b"%PDF")
    elif fmt == "eps":
        assert head.startswith(b"%!PS-Adobe") and b"EPSF" in head
    else:
        assert ET.parse(out).getroot().tag.endswith("svg")
    assert (tmp_path / "fig.txt").read_text().strip() == figure_caption(fig)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"fig.{fmt}", "fig.txt"])  # no partial left


def test_formats_are_one_constant_and_default_dpi_is_300(tmp_path):
    from visreps import options

    assert FIGURE_FORMATS == ("png", "pdf", "svg", "eps", "tiff", "jpg")
    assert options.FIGURE_FORMATS is FIGURE_FORMATS  # one constant: the CLI's choices are tied to it in test_options
    assert plotting.DEFAULT_DPI == 300
    fig = plot_rdm(np.ones((3, 3)) - np.eye(3), tmp_path / "r.tif", figsize=(4, 3))
    with Image.open(tmp_path / "r.tif") as im:
        assert im.format == "TIFF" and im.size == (1200, 900)
    assert fig is not None
    with pytest.raises(VisrepsError, match=r"format 'xyz' is not supported; end the file name with one of .png"):
        plotting.figure_format("x.xyz")
    with pytest.raises(VisrepsError, match="width must be 'single', 'double'"):
        plot_rdm(np.ones((3, 3)) - np.eye(3), width="triple")


# --------------------------------------------------------------------------- RDM grids


def test_plot_rdms_shared_scale_and_categories(seven):
    rng = np.random.default_rng(1)
    perm = rng.permutation(N)
    cats = [p.split("/")[0] for p in np.asarray(PATHS)[perm]]  # interleaved categories
    A = squareform(pdist(rng.standard_normal((N, 3))))
    B = 3 * squareform(pdist(rng.standard_normal((N, 3))))
    fig = plot_rdms({"alexnet (pretrained)": A, "alexnet (random, seed 1)": B}, categories=cats, order="category")
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 2
    clims = {ax.images[0].get_clim() for ax in panels}
    off = ~np.eye(N, dtype=bool)
    assert clims == {(A[off].min(), B[off].max())}  # one colour scale for all
    first = np.asarray(panels[0].images[0].get_array())
    order = sorted(range(N), key=lambda i: (cats[i] != cats[0], i))
    assert np.array_equal(first, A[np.ix_(order, order)])  # grouped by category, stable within
    assert [t.get_text() for t in panels[0].get_xticklabels()] == [cats[0], sorted(set(cats), key=cats.index)[1]]
    assert [ax.get_title() for ax in panels] == ["alexnet (pretrained)", "alexnet (random, seed 1)"]
    ranks = plot_rdms([A, B], rank=True)
    assert {ax.images[0].get_clim()[1] for ax in ranks.axes if ax.images} == {1.0}
    with pytest.raises(VisrepsError, match="RDM 'b' has 5 conditions but 'a' has 16"):
        plot_rdms({"a": A, "b": np.ones((5, 5))})
    with pytest.raises(VisrepsError, match="order='category' needs categories="):
        plot_rdms([A], order="category")


# --------------------------------------------------------------------------- the command line


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_bad_plot_format_fails_before_any_file(seven, tmp_path):
    _, folders, refs, _ = seven
    out = tmp_path / "o"
    r = run("compare", folders[0], folders[1], "--reference", refs["hIT"], "-o", out / "t.csv", "--plot", out / "x.xyz")
    assert r.exit_code == 2
    assert "format 'xyz' is not a figure format" in r.output and "Traceback" not in r.output
    assert not out.exists()
    r = run("compare", folders[0], "--plot-format", "png,gif", "-o", out / "t.csv")
    assert r.exit_code == 2 and "gif: use png, pdf, svg, eps, tiff, jpg" in r.output and not out.exists()
    r = run("rsa", folders[0], "--plot-format", "bmp", "-o", out)
    assert r.exit_code == 2 and not out.exists()
    r = run("compare", folders[0], folders[1], "--label", "nope=X", "-o", out / "t.csv")
    assert r.exit_code == 2 and "--label names 'nope', not one of the SOURCES" in r.output and not out.exists()


def test_cli_labels_dpi_width_depth_formats_captions(seven, tmp_path):
    _, folders, refs, results = seven
    out = tmp_path / "res" / "cmp.csv"
    r = run(
        "compare", folders[0], folders[1], folders[3], "--reference", refs["hIT"], "--noise-ceiling",
        "--label", f"{folders[1]}=AlexNet untrained", "--figure", "curve", "--depth", "relative",
        "--plot-format", "tiff,eps", "--dpi", "72", "--width", "single", "-o", out,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    table = pd.read_csv(out)
    assert list(dict.fromkeys(plotting._sources(table))) == ["alexnet (pretrained)", "AlexNet untrained", LABELS[3]]
    assert list(table["weights"][[0, 4, 8]]) == ["pretrained", "random, seed 1", "pretrained"]
    # full precision: the CSV holds the library's float64 exactly
    lib = rsa_inference([folders[0]], refs["hIT"], noise_ceiling=True).table
    assert table["r"].iloc[:4].tolist() == lib["r"].tolist()
    header = next(line for line in r.output.splitlines() if " r " in f" {line} ")
    assert re.search(r"\bweights\b", header) and re.search(r"\blabel\b", header)
    assert "AlexNet untrained/features.2" in r.output  # two folders of one model print as two different rows
    with Image.open(out.with_suffix(".tiff")) as im:
        assert im.size[0] == round(plotting.WIDTHS["single"] * 72)
    assert out.with_suffix(".eps").read_bytes().startswith(b"%!PS-Adobe")
    cap = out.with_suffix(".txt").read_text()
    assert "4 subjects" in cap and "Reference: hIT.npy." in cap
    # rerun: the caption counts as an earlier result, as the figures do
    r = run("compare", folders[0], "--reference", refs["hIT"], "--noise-ceiling", "-o", out, "--plot-format", "png")
    assert r.exit_code == 2 and "already exist" in r.output
