"""`visreps rsa`, `visreps compare` and `visreps cka` on hand-made output folders."""

import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image
from scipy.spatial.distance import pdist, squareform

from test_analysis_compare import PATHS, feats, make_output_folder
from visreps.analysis import cka, compare_features, compare_to_reference, compute_rdm
from visreps.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def folders(tmp_path):
    a = make_output_folder(
        tmp_path / "alexnet", "torchvision:alexnet", {"features.5": feats(0, shape=(3, 4, 5)), "classifier.4": feats(1)}
    )
    b = make_output_folder(tmp_path / "resnet18", "timm:resnet18", {"layer4": feats(2, p=90), "fc": feats(3, p=10)})
    c = make_output_folder(tmp_path / "vgg16", "torchvision:vgg16", {"classifier.4": feats(4, p=50)})
    return a, b, c


def opens_as_png(path):
    with Image.open(path) as im:
        im.load()
        return im.format == "PNG" and im.size[0] > 100


def commands_listed(help_text):
    """The command names of a group's help (the first word of each line under "Commands:")."""
    lines = help_text.split("Commands:", 1)[1].splitlines()
    return [ln.split()[0] for ln in lines if ln.startswith("  ") and ln.split()]


@pytest.mark.parametrize(
    "cmd, options",
    [
        (
            "rsa",
            ["--layers", "--method", "--sigma", "--format", "--plot-format", "--no-plot", "--cluster", "--block-size"],
        ),
        (
            "compare",
            [
                "--reference",
                "--reference-key",
                "--reference-order",
                "--rdm-method",
                "--method",
                "--bootstrap",
                "--images",
                "--work-dir",
                "--random",
                "--plot",
                "--no-plot",
                "--block-size",
                "--device",
            ],
        ),
        ("cka", ["--layers-a", "--layers-b", "--kernel", "--unbiased", "--sigma", "--out", "--plot", "--cmap"]),
    ],
)
def test_analysis_commands_are_registered_with_their_options(cmd, options):
    """Each command is in the group's command list, and its own help lists its own options."""
    assert cmd in commands_listed(run("--help").output)
    assert main.get_command(None, cmd) is not None
    r = run(cmd, "--help")
    assert r.exit_code == 0, r.output
    assert re.match(rf"Usage: \S+ {cmd} \[OPTIONS\]", r.output), r.output
    listed = {word.rstrip(",") for ln in r.output.splitlines() if ln.lstrip().startswith("-") for word in ln.split()}
    missing = [o for o in options if o not in listed]
    assert not missing, (missing, r.output)


def test_rsa_writes_rdm_and_plot(folders):
    a = folders[0]
    r = run("rsa", a, "--method", "euclidean", "--cluster", "--dpi", "50")
    assert r.exit_code == 0, r.output
    for layer in ("features.5", "classifier.4"):
        rdm = np.load(a / "rsa" / f"rdm_{layer}_euclidean.npy")
        X = np.load(a / f"{layer}.npy").reshape(12, -1).astype(np.float64)
        np.testing.assert_allclose(rdm, squareform(pdist(X)), rtol=1e-10, atol=1e-10)
        assert opens_as_png(a / "rsa" / f"rdm_{layer}_euclidean.png")
    assert "features.5: 12×12 RDM" in r.output


def test_rsa_csv_format_and_layer_choice(folders, tmp_path):
    r = run(
        "rsa",
        folders[1],
        "--layers",
        "fc",
        "--format",
        "csv",
        "--out",
        tmp_path / "o",
        "--no-plot",
        "--method",
        "gaussian",
        "--sigma",
        "2",
    )
    assert r.exit_code == 0, r.output
    got = np.loadtxt(tmp_path / "o" / "rdm_fc_gaussian.csv", delimiter=",")
    np.testing.assert_allclose(got, compute_rdm(np.load(folders[1] / "fc.npy"), "gaussian", sigma=2.0), rtol=1e-15)
    assert not list((tmp_path / "o").glob("*.png"))


def test_compare_three_folders_writes_table_and_heatmap(folders, tmp_path):
    out = tmp_path / "cmp" / "table.csv"
    r = run("compare", *folders, "--method", "spearman", "--out", out)
    assert r.exit_code == 0, r.output
    table = pd.read_csv(out, index_col=0)
    expect = compare_features(list(folders), method="spearman")
    assert list(table.index) == list(expect.index) == list(table.columns)
    assert "alexnet/features.5" in table.index and "resnet18/layer4" in table.columns
    np.testing.assert_allclose(table.to_numpy(), expect.to_numpy(), atol=1e-5)
    assert opens_as_png(out.with_suffix(".png"))
    assert f"figure → {out.with_suffix('.png')}" in r.output


def test_compare_per_source_layers_and_reference(folders, tmp_path):
    R = squareform(pdist(np.random.default_rng(9).standard_normal((12, 4))))
    np.savetxt(tmp_path / "brain.txt", R)
    out = tmp_path / "fit.csv"
    r = run(
        "compare",
        f"{folders[0]}::classifier.4",
        folders[2],
        "--reference",
        tmp_path / "brain.txt",
        "--bootstrap",
        "10",
        "--out",
        out,
        "--plot",
        tmp_path / "fit.svg",
    )
    assert r.exit_code == 0, r.output
    table = pd.read_csv(out)
    assert list(table.columns) == ["reference", "model", "weights", "layer", "label", "r", "ci_low", "ci_high"]
    assert list(table["label"]) == ["alexnet/classifier.4", "vgg16/classifier.4"]
    expect = compare_to_reference(
        [folders[0], folders[2]], R, layers={str(folders[0]): ["classifier.4"]}, n_bootstrap=10
    )
    np.testing.assert_allclose(table["r"], expect["r"], atol=1e-5)
    assert (tmp_path / "fit.svg").read_text().lstrip().startswith("<?xml")


def test_cka_command(folders, tmp_path):
    r = run("cka", f"{folders[0]}::classifier.4", f"{folders[1]}::layer4", "--unbiased")
    assert r.exit_code == 0, r.output
    expect = cka(np.load(folders[0] / "classifier.4.npy"), np.load(folders[1] / "layer4.npy"), unbiased=True)
    assert f"{expect:.6f}" in r.output
    r = run(
        "cka", folders[0], folders[1], "--kernel", "rbf", "--out", tmp_path / "cka.csv", "--plot", tmp_path / "cka.png"
    )
    assert r.exit_code == 0, r.output
    t = pd.read_csv(tmp_path / "cka.csv", index_col=0)
    assert list(t.index) == ["features.5", "classifier.4"] and list(t.columns) == ["layer4", "fc"]
    assert t.loc["classifier.4", "fc"] == pytest.approx(
        cka(np.load(folders[0] / "classifier.4.npy"), np.load(folders[1] / "fc.npy"), kernel="rbf"), abs=1e-6
    )
    assert opens_as_png(tmp_path / "cka.png")
    r = run("cka", folders[0])  # among one folder's layers
    assert r.exit_code == 0 and "1.0" in r.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["rsa", "NOFOLDER"], "'NOFOLDER' is not a visreps output folder"),
        (["rsa", "{a}", "--layers", "classifier.44"], "no layer 'classifier.44'"),
        (["compare", "{a}", "--bootstrap", "5"], "--bootstrap needs --reference"),
        (["compare", "{a}::classifier.4"], "only one layer to compare"),
        (["compare", "{a}", "--reference", "{tmp}/missing.npy"], "does not exist"),
        (["rsa", "{a}", "--sigma", "1"], "--sigma is the bandwidth of --method gaussian"),
        (["cka", "{a}", "{other}"], "extracted from different images"),
    ],
)
def test_errors_are_one_line_exit_2(folders, tmp_path, args, message):
    other = make_output_folder(tmp_path / "other", "x", {"l": feats(5)}, paths=[p.replace("img", "pic") for p in PATHS])
    args = [s.format(a=folders[0], tmp=tmp_path, other=other) for s in args]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert "Traceback" not in r.output


def _refused(args):
    """A second run into the same files: exit 2, one line naming a file and --overwrite."""
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    assert "already exist" in r.output and "--overwrite" in r.output
    return r.output


def test_analysis_commands_never_replace_results_without_overwrite(folders, tmp_path):
    """rsa, compare and cka refuse, before any work, to write over files an earlier run left; --overwrite replaces."""
    a, b, _ = folders
    rsa_out = tmp_path / "rsa"
    assert run("rsa", a, "-o", rsa_out).exit_code == 0
    rdm = rsa_out / "rdm_classifier.4_correlation.npy"
    before = rdm.read_bytes()
    np.save(rdm, np.zeros(3))  # a changed file must stay as it is
    changed = rdm.read_bytes()
    msg = _refused(["rsa", a, "-o", rsa_out])
    assert str(rsa_out / "rdm_classifier.4_correlation.npy") in msg and "choose another --out," in msg
    assert rdm.read_bytes() == changed
    # other layers or another method plan other names: no conflict
    assert run("rsa", a, "-o", rsa_out, "--method", "cosine").exit_code == 0
    assert run("rsa", a, "-o", rsa_out, "--overwrite").exit_code == 0
    assert rdm.read_bytes() == before

    table = tmp_path / "cmp" / "table.csv"
    assert run("compare", a, b, "-o", table).exit_code == 0
    for path in (table, table.with_suffix(".png")):
        stamp = path.stat().st_mtime_ns
        msg = _refused(["compare", a, b, "-o", table])
        assert str(table) in msg and str(table.with_suffix(".png")) in msg and "choose another --out/--plot" in msg
        assert path.stat().st_mtime_ns == stamp
    assert run("compare", a, b, "-o", table, "--no-plot", "--plot-format", "pdf").exit_code == 2  # the table alone
    only_fig = tmp_path / "cmp" / "fig.png"
    assert run("compare", a, b, "-o", tmp_path / "cmp" / "t2.csv", "--plot", only_fig).exit_code == 0
    assert str(only_fig) in _refused(["compare", a, b, "-o", tmp_path / "cmp" / "t3.csv", "--plot", only_fig])
    assert run("compare", a, b, "-o", table, "--overwrite").exit_code == 0

    cka_csv, cka_png = tmp_path / "cka.csv", tmp_path / "cka.png"
    assert run("cka", a, b, "--out", cka_csv, "--plot", cka_png).exit_code == 0
    assert str(cka_png) in _refused(["cka", a, b, "--plot", cka_png])
    assert str(cka_csv) in _refused(["cka", a, b, "--out", cka_csv])
    assert run("cka", a, b, "--out", cka_csv, "--plot", cka_png, "--overwrite").exit_code == 0
    assert run("cka", a, b).exit_code == 0  # printing only: nothing to refuse
