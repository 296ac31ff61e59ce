"""`visreps compare --reference SUBJECTS --noise-ceiling --bootstrap ... --test ...` on hand-made output folders."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from test_analysis_compare import PATHS, feats, make_output_folder
from visreps.analysis import compute_rdm, load_reference_rdms, rdm_inference, rsa_inference
from visreps.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def setup(tmp_path):
    """Two folders (2 + 1 layers, 12 images) and 4 subjects' RDMs = layer "a/l1"'s RDM + noise, as a folder."""
    a = make_output_folder(tmp_path / "a", "net:a", {"l1": feats(0), "l2": feats(1)})
    b = make_output_folder(tmp_path / "b", "net:b", {"l1": feats(2)})
    truth = compute_rdm(feats(0))
    rng = np.random.default_rng(0)
    subj = tmp_path / "subjects"
    subj.mkdir()
    for s in range(4):
        noise = np.triu(rng.normal(scale=0.1, size=truth.shape), 1)
        np.save(subj / f"s{s}.npy", truth + noise + noise.T)
    return a, b, subj


def test_compare_inference_end_to_end(setup, tmp_path):
    a, b, subj = setup
    out = tmp_path / "res" / "cmp.csv"
    res = run(
        "compare", a, b, "--reference", subj, "--noise-ceiling", "--bootstrap", "subjects,images",
        "--test", "pairwise", "--n-bootstrap", "50", "--seed", "3", "--plot-format", "png,pdf", "-o", out,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out)
    pairwise = pd.read_csv(tmp_path / "res" / "cmp_pairwise.csv")
    samples = pd.read_csv(tmp_path / "res" / "cmp_bootstrap.csv")
    assert list(table["label"]) == ["net:a/l1", "net:a/l2", "net:b/l1"]  # one-letter names keep the source
    assert len(pairwise) == 3 and samples.shape == (50, 6)
    # the same numbers as the Python API, read back at full precision (CSV round trip is exact)
    api = rsa_inference(
        [a, b], subj, noise_ceiling=True, bootstrap="subjects,images", test="pairwise", n_bootstrap=50, seed=3
    )
    for col in ("r", "noise_ceiling_lower", "noise_ceiling_upper", "r_over_lower", "se", "ci_low", "p_zero"):
        np.testing.assert_array_equal(table[col].to_numpy(), api.table[col].to_numpy())
    np.testing.assert_array_equal(pairwise["p"].to_numpy(), api.pairwise["p"].to_numpy())
    # and those of rdm_inference on the RDMs directly
    stack, _ = load_reference_rdms(subj)
    direct = rdm_inference({"x": compute_rdm(feats(0))}, stack, noise_ceiling=True)
    assert table["r"].iloc[0] == pytest.approx(direct.table["r"].iloc[0], abs=1e-12)
    assert table["r"].iloc[0] > 0.8 > table["r"].iloc[1]  # the layer the subjects were made from fits best
    with Image.open(tmp_path / "res" / "cmp.png") as im:
        assert im.format == "PNG" and im.size[0] > 300
    assert (tmp_path / "res" / "cmp.pdf").read_bytes()[:4] == b"%PDF"


def test_compare_examples_rdms_and_curve(tmp_path):
    """The shipped example RDMs (5 subjects, the 6 example images) through the command, with a layer-depth curve."""
    names = (EXAMPLES / "rdms" / "order.txt").read_text().split()
    a = make_output_folder(tmp_path / "a", "net:a", {"l1": feats(0, n=6), "l2": feats(1, n=6)}, paths=names[::-1])
    out = tmp_path / "cmp.csv"
    rdms = EXAMPLES / "rdms"
    res = run(
        "compare", a, "--reference", rdms / "subjects", "--reference-order", rdms / "order.txt", "--noise-ceiling",
        "--bootstrap", "subjects", "--test", "permutation", "--n-bootstrap", "20", "--figure", "curve",
        "--correction", "bonferroni", "-o", out,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out)
    assert {"p_permutation", "p_permutation_corrected", "se"} <= set(table.columns)
    assert (table["p_permutation"] >= 1 / 720).all()  # 6! = 720 ≤ 1000 permutations: the exact test
    assert 0 < table["noise_ceiling_lower"].iloc[0] < table["noise_ceiling_upper"].iloc[0] <= 1
    assert (tmp_path / "cmp.png").is_file()
    mean = np.load(EXAMPLES / "rdms" / "brain_rdm.npy")
    np.testing.assert_allclose(mean, load_reference_rdms(EXAMPLES / "rdms" / "subjects")[0].mean(0))


def test_one_rdm_reference_keeps_the_old_output(setup, tmp_path):
    a, _, subj = setup
    out = tmp_path / "old.csv"
    assert run("compare", a, "--reference", subj / "s0.npy", "--bootstrap", "10", "-o", out).exit_code == 0
    assert list(pd.read_csv(out).columns) == [
        "reference",
        "model",
        "weights",
        "layer",
        "label",
        "r",
        "ci_low",
        "ci_high",
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--reference", "{subj}/s0.npy", "--noise-ceiling"], "one subject's RDM, but a noise ceiling needs"),
        (["--reference", "{subj}/s0.npy", "--bootstrap", "subjects"], "a bootstrap over subjects needs"),
        (["--reference", "{subj}", "--bootstrap", "voxels"], "bootstrap over 'voxels' is not known"),
        (["--reference", "{subj}", "--test", "pairwise"], "pairwise test needs a bootstrap"),
        (["--reference", "{small}", "--bootstrap", "images"], "has 4 conditions but the features have 12 images"),
        (["--reference", "{mixed}", "--noise-ceiling"], "different numbers of images (s0: 12, s1: 4)"),
        (["--reference", "{tmp}/nothing", "--noise-ceiling"], "does not exist"),
    ],
)
def test_bad_input_one_line_exit_2(setup, tmp_path, args, message):
    a, _, subj = setup
    small, mixed = tmp_path / "small", tmp_path / "mixed"
    for d in (small, mixed):
        d.mkdir()
        np.save(d / "s1.npy", compute_rdm(feats(5, n=4)))
    np.save(small / "s0.npy", compute_rdm(feats(6, n=4)))
    np.save(mixed / "s0.npy", compute_rdm(feats(6)))
    fill = {"subj": subj, "small": small, "mixed": mixed, "tmp": tmp_path}
    res = run("compare", a, *[x.format(**fill) for x in args], "-o", tmp_path / "x.csv")
    assert res.exit_code == 2
    assert message in res.output and len(res.output.strip().splitlines()) == 1, res.output


def test_too_few_images_for_an_image_bootstrap(tmp_path):
    a = make_output_folder(tmp_path / "a", "net:a", {"l1": feats(0, n=4)}, paths=PATHS[:4])
    stack = np.stack([compute_rdm(feats(s, n=4)) for s in range(3)])
    np.save(tmp_path / "ref.npy", stack)
    res = run("compare", a, "--reference", tmp_path / "ref.npy", "--bootstrap", "images", "-o", tmp_path / "x.csv")
    assert res.exit_code == 2 and "too few images to bootstrap over: 4" in res.output
    ok = run("compare", a, "--reference", tmp_path / "ref.npy", "--bootstrap", "subjects", "--n-bootstrap", "10",
             "-o", tmp_path / "x.csv")  # fmt: skip
    assert ok.exit_code == 0, ok.output


def test_inference_outputs_are_not_replaced_without_overwrite(setup, tmp_path):
    """Every file compare's inference writes (table, pairwise, bootstrap samples, each figure format) is checked
    before any work; a clash with any one of them is an error naming it; --overwrite replaces them."""
    a, b, subj = setup
    out = tmp_path / "cmp.csv"
    args = ["compare", a, b, "--reference", subj, "--bootstrap", "images", "--test", "pairwise", "--n-bootstrap", 20]
    args += ["--plot-format", "png,pdf", "-o", out]
    assert run(*args).exit_code == 0
    written = [out, tmp_path / "cmp_pairwise.csv", tmp_path / "cmp_bootstrap.csv", out.with_suffix(".png")]
    written.append(out.with_suffix(".pdf"))
    for path in written:
        assert path.is_file()
    keep = {p: p.read_bytes() for p in written}
    for path in written[1:]:
        for p in written:
            if p != path:
                p.unlink()  # only this one is still there
        r = run(*args)
        assert r.exit_code == 2 and str(path) in r.output and "--overwrite" in r.output, r.output
        assert path.read_bytes() == keep[path] and not out.exists()
        for p in written:
            if p != path:
                p.write_bytes(keep[p])
    assert run(*args, "--overwrite").exit_code == 0
