"""Issue 19, part B: analysis outputs as transactions (findings 1, 2, 17, 18, 19, 26, 31).

Every file a run of ``rsa``, ``compare``, ``cka`` or ``encode`` writes is planned before the work
(distinct paths, none an input, writable), written under a partial name, renamed together at the
end and recorded in ``.visreps-outputs.json``; ``--overwrite`` removes the replaced run's other files
and nothing else (:mod:`visreps.outputs`).
"""

import errno
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from test_analysis_compare import PATHS, feats, make_output_folder
from visreps.analysis import encode
from visreps.cli import main
from visreps.errors import VisrepsError
from visreps.outputs import RECORD, OutputPlan, partial_name, recorded_files

TABLES = ["layers.csv", "targets.csv", "folds.csv", "fold_of_image.csv"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(r, *parts):
    """Exit 2, one line, no traceback, naming every part."""
    assert r.exit_code == 2, r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output, r.output
    for part in parts:
        assert str(part) in r.output, (part, r.output)


def files_in(folder):
    """Every name in ``folder`` (hidden ones included), sorted."""
    return sorted(p.name for p in Path(folder).iterdir()) if Path(folder).exists() else []


@pytest.fixture
def setup(tmp_path):
    """Two output folders of 12 images and a responses table (image names in the first column)."""
    rng = np.random.default_rng(0)
    a = make_output_folder(tmp_path / "a", "net:a", {"l1": feats(0), "l2": feats(1, p=30)})
    b = make_output_folder(tmp_path / "b", "net:b", {"m1": feats(2)})
    X = np.load(a / "l1.npy").astype(np.float64)
    Y = X[:, :3] @ rng.standard_normal((3, 4)) + 0.1 * rng.standard_normal((12, 4))
    data = tmp_path / "data"
    data.mkdir()
    resp = data / "targets.csv"
    pd.DataFrame({"image": PATHS, **{f"t{j}": Y[:, j] for j in range(4)}}).to_csv(resp, index=False)
    return a, b, resp


def encode_args(a, resp, out, *more):
    return ["encode", f"{a}::l1,l2", resp, "--folds", 3, "--alphas", "0.1,1,10,100", "-o", out, *more]


# --------------------------------------------------------------------------- finding 1: inputs are never outputs


def test_encode_never_writes_over_its_responses_file(setup):
    """`encode F D/targets.csv --out D --overwrite` used to replace the user's responses with its own table."""
    a, _, resp = setup
    before = resp.read_bytes()
    for extra in ([], ["--overwrite"]):
        r = run(*encode_args(a, resp, resp.parent, *extra))
        one_line_error(r, resp, "is an input of this run (the responses file)", "choose another --out")
        assert resp.read_bytes() == before and files_in(resp.parent) == ["targets.csv"]


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_an_input_reached_through_a_link_is_still_an_input(setup, tmp_path, link):
    a, _, resp = setup
    out = tmp_path / "out"
    out.mkdir()
    (os.symlink if link == "symlink" else os.link)(resp, out / "targets.csv")
    before = resp.read_bytes()
    one_line_error(run(*encode_args(a, resp, out, "--overwrite")), out / "targets.csv", "is an input of this run")
    assert resp.read_bytes() == before
    # the same through the Python API: EncodingResult.save knows the responses file of its run
    res = encode(f"{a}", resp, layers=["l1"], folds=3, alphas=[0.1, 1, 10, 100])
    with pytest.raises(VisrepsError, match="is an input of this run"):
        res.save(out, overwrite=True)
    assert resp.read_bytes() == before


def test_compare_and_cka_never_write_over_their_folders_or_reference(setup, tmp_path):
    a, b, _ = setup
    manifest = a / "manifest.csv"
    before = manifest.read_bytes()
    one_line_error(run("compare", a, b, "--out", manifest, "--no-plot", "--overwrite"), manifest, "input")
    one_line_error(run("cka", a, b, "--out", a / "l1.npy", "--overwrite"), a / "l1.npy", "input")
    ref = tmp_path / "ref.npy"
    np.save(ref, squareform_rdm(12))
    one_line_error(run("compare", a, "--reference", ref, "--plot", ref.with_suffix(".png"), "--out", ref,
                       "--overwrite"), ref, "input")  # fmt: skip
    assert manifest.read_bytes() == before and np.load(ref).shape == (12, 12)


def test_files_of_an_image_or_reference_folder_are_inputs(setup, tmp_path):
    """Every existing file under --images or a --reference folder counts as an input (checked before extracting)."""
    a, _, _ = setup
    images = tmp_path / "images"
    images.mkdir()
    (images / "cat.png").write_bytes(b"an image")
    r = run(
        "compare", "torchvision:alexnet", "--images", images, "--out", images / "cat.png", "--no-plot", "--overwrite"
    )
    one_line_error(r, images / "cat.png", f"a file of the input folder '{images}'")
    refs = tmp_path / "refs"
    refs.mkdir()
    np.save(refs / "s1.npy", squareform_rdm(12))
    r = run("compare", a, "--reference", refs, "--out", refs / "s1.npy", "--no-plot", "--overwrite")
    one_line_error(r, refs / "s1.npy", "is an input of this run")
    assert (images / "cat.png").read_bytes() == b"an image" and np.load(refs / "s1.npy").shape == (12, 12)


def squareform_rdm(n, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, 5))
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    return d


# --------------------------------------------------------------------------- finding 2: distinct paths


def test_two_outputs_of_one_run_never_share_a_path(setup, tmp_path):
    """`compare F --out fit.png` used to write the table, then the figure over it."""
    a, b, _ = setup
    fit = tmp_path / "fit.png"
    one_line_error(run("compare", a, b, "--out", fit), fit, "two outputs of one run never share a path")
    assert not fit.exists()
    t = tmp_path / "t.png"
    one_line_error(run("compare", a, b, "--out", t, "--plot", t), "never share a path")
    one_line_error(run("cka", a, b, "--out", t, "--plot", t), "never share a path")
    # the same file under two names (a symlink to the figure's folder)
    (tmp_path / "alias").symlink_to(tmp_path)
    one_line_error(run("cka", a, b, "--out", tmp_path / "c.png", "--plot", tmp_path / "alias" / "c.png"),
                   "the same file")  # fmt: skip
    assert files_in(tmp_path) == ["a", "alias", "b", "data"]


# --------------------------------------------------------------------------- finding 19: arguments before files


def test_every_argument_is_checked_before_the_first_file(setup, tmp_path):
    """`compare --out t.csv --plot fig.xyz` used to write the table, then reject the figure's format."""
    a, b, resp = setup
    t = tmp_path / "t.csv"
    one_line_error(run("compare", a, b, "--out", t, "--plot", tmp_path / "fig.xyz"), "fig.xyz", ".png")
    one_line_error(run("cka", a, b, "--out", t, "--plot", tmp_path / "fig"), "fig", "no format")
    assert not t.exists()
    r = run("rsa", a, "-o", tmp_path / "rsa", "--plot-format", "xyz")
    assert r.exit_code == 2 and "xyz" in r.output and "Traceback" not in r.output
    r = run(*encode_args(a, resp, tmp_path / "enc", "--plot-format", "xyz"))
    assert r.exit_code == 2 and "xyz" in r.output
    r = run(*encode_args(a, resp, tmp_path / "enc", "--alphas", "1,-2"))
    assert r.exit_code == 2 and "--alphas" in r.output
    assert files_in(tmp_path) == ["a", "b", "data"]


def test_figure_formats_come_from_one_constant(setup, tmp_path, monkeypatch):
    """The CLI's figure formats are visreps.plotting.FIGURE_FORMATS (a format added there is accepted everywhere)."""
    import visreps.plotting

    a, b, _ = setup
    assert run("rsa", a, "-o", tmp_path / "r1", "--plot-format", "jpeg", "--layers", "l2").exit_code == 0
    assert (tmp_path / "r1" / "rdm_l2_correlation.jpg").is_file()  # jpeg is read as jpg
    monkeypatch.setattr(visreps.plotting, "FIGURE_FORMATS", ("png",))
    r = run("rsa", a, "-o", tmp_path / "r2", "--plot-format", "pdf")
    assert r.exit_code == 2 and "use png" in r.output
    one_line_error(run("cka", a, b, "--plot", tmp_path / "c.pdf"), "c.pdf", "end the name with one of .png")
    r = run("compare", a, b, "-o", tmp_path / "c.csv", "--plot-format", "svg")
    assert r.exit_code == 2 and "use png" in r.output


# --------------------------------------------------------------------------- finding 26: /dev/full and OSErrors


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_dev_full_is_named(setup):
    a, b, resp = setup
    one_line_error(run("compare", a, b, "--out", "/dev/full", "--no-plot"), "/dev/full", "not a regular file")
    one_line_error(run("cka", a, b, "--out", "/dev/full", "--overwrite"), "/dev/full", "not a regular file")
    one_line_error(run(*encode_args(a, resp, "/dev/full")), "/dev/full", "is not a folder")
    assert os.path.exists("/dev/full") and not Path("/dev/full").is_file()


def half_then(error, match="targets"):
    """A DataFrame.to_csv that, for a file whose name holds ``match``, writes half the rows and raises ``error``."""
    original = pd.DataFrame.to_csv

    def to_csv(self, path=None, *args, **kwargs):
        if path is not None and match in Path(path).name:
            original(self.iloc[: len(self) // 2], path, *args, **kwargs)
            raise error
        return original(self, path, *args, **kwargs)

    return to_csv


@pytest.mark.parametrize(
    "error, code, says",
    [
        (OSError(errno.ENOSPC, "No space left on device"), 2, "No space left on device"),  # no filename
        (OSError(errno.EIO, "Input/output error"), 2, "Input/output error"),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
)
def test_a_failed_or_interrupted_write_leaves_no_table(setup, tmp_path, monkeypatch, error, code, says):
    """A full disk, EIO or Ctrl-C in the middle of targets.csv: no file under a final name, no partial file;
    the error names the final file (finding 17, 26)."""
    a, _, resp = setup
    out = tmp_path / "out"
    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then(error))
    r = run(*encode_args(a, resp, out))
    assert r.exit_code == code and says in r.output and "Traceback" not in r.output, r.output
    if code == 2:
        last = r.output.strip().splitlines()[-1]  # after the summary: one error line naming the final file
        assert last.startswith("error: cannot write") and str(out / "targets.csv") in last and says in last
    assert not out.exists()  # the folder it created is gone too
    # an earlier run's tables survive a failed --overwrite run untouched
    monkeypatch.undo()
    assert run(*encode_args(a, resp, out)).exit_code == 0
    before = {n: (out / n).read_bytes() for n in files_in(out)}
    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then(error))
    r = run(*encode_args(a, resp, out, "--overwrite", "--folds", 4))
    assert r.exit_code == code, r.output
    assert {n: (out / n).read_bytes() for n in files_in(out)} == before


def test_a_writer_that_raises_leaves_nothing_python_api(tmp_path):
    """OutputPlan: a writer raising after half its rows leaves no final-name file and no partial file."""
    plan = OutputPlan().add(tmp_path / "a.csv", tmp_path / "b.csv").check()

    def half(path):
        path.write_text("row1\n")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(VisrepsError, match=r"cannot write '.*b\.csv': No space left on device"):
        with plan:
            plan.write(tmp_path / "a.csv", lambda p: p.write_text("complete\n"))
            plan.write(tmp_path / "b.csv", half)
    assert files_in(tmp_path) == []


def test_commit_records_the_run_and_leaves_no_partial(tmp_path):
    out = tmp_path / "new" / "deep"
    plan = OutputPlan(command="test").add(out / "x.csv", out / "y.npy").check()
    assert not out.exists()  # planning writes nothing
    with plan:
        plan.write(out / "x.csv", lambda p: p.write_text("a,b\n"))
        np.save(plan.partial(out / "y.npy"), np.arange(3))  # np.save keeps the name: the suffix is kept
        assert plan.partial(out / "y.npy") == partial_name(out / "y.npy") and not (out / "x.csv").exists()
    assert files_in(out) == [RECORD, "x.csv", "y.npy"]
    rec = json.loads((out / RECORD).read_text())
    assert rec["kind"] == "visreps analysis outputs" and [r["command"] for r in rec["runs"]] == ["test"]
    assert rec["runs"][0]["files"]["y.npy"]["size"] == (out / "y.npy").stat().st_size
    assert recorded_files(out) == ["x.csv", "y.npy"]
    (out / RECORD).write_text("{not json")
    with pytest.raises(VisrepsError, match="not a readable visreps record"):
        OutputPlan(overwrite=True).add(out / "x.csv").check()


def run_encode_signalled(a, resp, out, signal_name: str) -> subprocess.CompletedProcess:
    """``visreps encode`` in a child process that sends itself ``signal_name`` once half of targets.csv is written."""
    script = textwrap.dedent(
        f"""
        import os, signal, sys, time
        from pathlib import Path
        import pandas as pd
        original = pd.DataFrame.to_csv
        def to_csv(self, path=None, *args, **kwargs):
            if path is not None and "targets" in Path(path).name:
                original(self.iloc[: len(self) // 2], path, *args, **kwargs)
                os.kill(os.getpid(), signal.{signal_name})
                time.sleep(5)
            return original(self, path, *args, **kwargs)
        pd.DataFrame.to_csv = to_csv
        from visreps.cli import main
        sys.argv = ["visreps"] + {[str(x) for x in encode_args(a, resp, out)]!r}
        main()
        """
    )
    here = Path(__file__).resolve().parent
    paths = [str(here.parent / "src"), str(here), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.slow
def test_ctrl_c_while_writing_tables_leaves_no_table(setup, tmp_path):
    """A real SIGINT while encode writes targets.csv (half its rows written): exit 130, no table, no partial."""
    a, _, resp = setup
    out = tmp_path / "out"
    r = run_encode_signalled(a, resp, out, "SIGINT")
    assert r.returncode == 130, r.stderr
    assert "interrupted" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_partial_files_of_killed_runs_are_swept_at_commit(tmp_path):
    """Partial names of this run's files whose process is gone are removed; live or foreign ones stay."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    out = tmp_path / "out"
    out.mkdir()
    orphans = [f".x.partial-{gone.pid}.csv", partial_name(out / RECORD).name.replace(str(os.getpid()), str(gone.pid))]
    kept = [
        f".x.partial-{os.getppid()}.csv",  # a live process (pytest's parent) may still be writing it
        f".z.partial-{gone.pid}.csv",  # not a file of this run
        f".x.partial-{gone.pid}.csv.bak",  # not the partial name of x.csv
        "x.partial-1.csv",  # not hidden: a user's file
    ]
    for name in orphans + kept:
        (out / name).write_text("half")
    plan = OutputPlan(command="test").add(out / "x.csv").check()
    with plan:
        plan.write(out / "x.csv", lambda p: p.write_text("a\n"))
    assert sorted(p.name for p in plan.swept) == sorted(orphans)
    assert files_in(out) == sorted([RECORD, "x.csv", *kept])
    assert "removed 2 partial file(s) a killed run left" in plan.summary()


@pytest.mark.slow
def test_kill_9_while_writing_tables_is_cleaned_by_the_next_run(setup, tmp_path):
    """A real SIGKILL while encode writes targets.csv leaves partial files; the next run removes them."""
    a, _, resp = setup
    out = tmp_path / "out"
    r = run_encode_signalled(a, resp, out, "SIGKILL")
    assert r.returncode == -9, r.stderr
    left = [n for n in files_in(out) if ".partial-" in n]
    assert any(n.startswith(".targets.partial-") for n in left) and not set(TABLES) & set(files_in(out))
    r = run(*encode_args(a, resp, out))
    assert r.exit_code == 0, r.output
    assert f"removed {len(left)} partial file(s) a killed run left" in r.output
    assert not [n for n in files_in(out) if ".partial-" in n] and set(TABLES) <= set(files_in(out))


# --------------------------------------------------------------------------- finding 18: --overwrite and stale files


def test_overwrite_removes_the_replaced_runs_stale_files_and_nothing_else(setup, tmp_path):
    """A banded run, then a ridge run with --overwrite (and --no-plot): the old band_weights.csv and
    encoding.png go; the user's own file stays; without --overwrite nothing is removed."""
    a, _, resp = setup
    out = tmp_path / "out"
    assert run(*encode_args(a, resp, out, "--method", "banded", "--n-iter", 3)).exit_code == 0
    assert files_in(out) == sorted([RECORD, "band_weights.csv", "encoding.png", "encoding.txt", *TABLES])
    (out / "notes.txt").write_text("mine")
    r = run(*encode_args(a, resp, out, "--no-plot"))  # the tables exist: refused, nothing removed
    one_line_error(r, out / "layers.csv", "--overwrite")
    r = run(*encode_args(a, resp, out, "--no-plot", "--overwrite"))
    assert r.exit_code == 0, r.output
    assert files_in(out) == sorted([RECORD, "notes.txt", *TABLES])
    assert "removed the earlier run's" in r.output and "band_weights.csv" in r.output
    assert recorded_files(out) == sorted(TABLES)
    assert "banded" not in pd.read_csv(out / "layers.csv").label.iloc[0]
    assert (out / "notes.txt").read_text() == "mine"


def test_overwrite_keeps_a_stale_file_changed_since_and_other_runs(setup, tmp_path):
    a, b, _ = setup
    out = tmp_path / "rsa"
    assert run("rsa", a, "-o", out).exit_code == 0  # correlation: l1, l2 (npy + png)
    assert run("rsa", a, "-o", out, "--method", "cosine", "--no-plot").exit_code == 0  # another run, other names
    (out / "rdm_l2_correlation.png").write_bytes(b"edited by hand")
    r = run("rsa", a, "-o", out, "--layers", "l1", "--overwrite", "--no-plot")
    assert r.exit_code == 0, r.output
    names = files_in(out)
    assert "rdm_l1_correlation.png" not in names and "rdm_l2_correlation.npy" not in names  # the replaced run's
    assert (out / "rdm_l2_correlation.png").read_bytes() == b"edited by hand" and "kept" in r.output
    assert {"rdm_l1_cosine.npy", "rdm_l2_cosine.npy"} <= set(names)  # the cosine run is not replaced
    runs = json.loads((out / RECORD).read_text())["runs"]
    assert [sorted(x["files"]) for x in runs] == [
        ["rdm_l1_cosine.npy", "rdm_l2_cosine.npy"],
        ["rdm_l1_correlation.npy"],
    ]


def test_save_python_api_is_a_transaction(setup, tmp_path):
    a, _, resp = setup
    out = tmp_path / "api"
    banded = encode(f"{a}", resp, method="banded", n_iter=3, folds=3, alphas=[0.1, 1, 10, 100])
    paths = banded.save(out)
    assert [p.name for p in paths] == [*TABLES, "band_weights.csv"]
    got = pd.read_csv(out / "targets.csv")
    got["weights"] = got["weights"].fillna("").astype(banded.targets["weights"].dtype)  # "" (unknown) reads as NaN
    pd.testing.assert_frame_equal(got, banded.targets, check_exact=True)
    ridge = encode(f"{a}", resp, folds=3, alphas=[0.1, 1, 10, 100])
    with pytest.raises(VisrepsError, match="already exist.*--overwrite"):
        ridge.save(out)
    ridge.save(out, overwrite=True)
    assert files_in(out) == sorted([RECORD, *TABLES])


# --------------------------------------------------------------------------- finding 31: the alpha grid and r


def grid_warnings(X, Y, alphas):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = encode(X, Y, folds=3, alphas=alphas)
    return res, [str(w.message) for w in caught if "end of the alpha grid" in str(w.message)]


def test_alpha_at_the_grid_ends_is_warned_once_with_the_count():
    """Finding 31: one warning with the counts at each end and the way to widen the grid; none for a fitting grid."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 20))
    Y = X @ rng.standard_normal((20, 5)) + 0.5 * rng.standard_normal((60, 5))
    res, grid = grid_warnings(X, Y, [1e4, 1e5, 1e6])  # far too strong for this signal
    assert (res.targets.alpha == 1e4).all() and len(grid) == 1
    assert "for 5 of 5 (layer, target) fits (5 at the smallest, 10000; 0 at the largest, 1e+06" in grid[0]
    assert "widen it with --alphas (alphas=), e.g. --alphas 10,100,1000,10000,100000,1e+06" in grid[0]
    res, grid = grid_warnings(X, Y, [1e-8, 1e-7, 1e-6])  # far too weak
    assert (res.targets.alpha == 1e-6).all() and "(0 at the smallest, 1e-08; 5 at the largest, 1e-06" in grid[0]
    res, grid = grid_warnings(X, Y, np.logspace(-3, 3, 7))
    assert grid == [] and (res.targets.alpha == 0.1).all()
    res, grid = grid_warnings(X, Y[:, :1] + np.zeros((60, 30)), [1e4, 1e5])  # one alpha per target, one warning
    assert len(grid) == 1 and "30 of 30" in grid[0]


def test_encode_summary_explains_r_mean_and_r_pooled_mean(setup, tmp_path):
    a, _, resp = setup
    r = CliRunner().invoke(main, [str(x) for x in encode_args(a, resp, tmp_path / "o", "--alphas", "1e4,1e5")])
    assert r.exit_code == 0, r.output
    assert "r_pooled_mean" in r.output and "r_mean" in r.output
    assert "r_pooled_mean: each target's r over all out-of-fold predictions at once" in r.output
    assert r.output.count("end of the alpha grid") == 1 and "warning:" in r.output


def test_a_file_appearing_during_the_work_is_not_replaced(tmp_path):
    plan = OutputPlan().add(tmp_path / "t.csv").check()
    with pytest.raises(VisrepsError, match="appeared while this run worked"):
        with plan:
            plan.write(tmp_path / "t.csv", lambda p: p.write_text("ours"))
            (tmp_path / "t.csv").write_text("another run's")
    assert files_in(tmp_path) == ["t.csv"] and (tmp_path / "t.csv").read_text() == "another run's"


def test_more_inner_folds_than_training_images_is_one_line(setup, tmp_path):
    a, _, resp = setup
    r = run(*encode_args(a, resp, tmp_path / "o", "--method", "banded", "--folds", 4, "--inner-folds", 10))
    one_line_error(r, "inner_folds=10 (--inner-folds) is more than the 9 training images", "lower --inner-folds")
    assert not (tmp_path / "o").exists()


def test_a_replaced_runs_file_that_is_an_input_now_is_kept(tmp_path):
    """--overwrite removes the replaced run's other files, but never one this run reads."""
    with OutputPlan().add(tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv") as plan:
        for name in ("a.csv", "b.csv", "c.csv"):
            plan.write(tmp_path / name, lambda p: p.write_text("1\n"))
    again = OutputPlan(overwrite=True).add(tmp_path / "a.csv").add_inputs(tmp_path / "sub" / ".." / "b.csv")
    with again:
        again.write(tmp_path / "a.csv", lambda p: p.write_text("2\n"))
    assert files_in(tmp_path) == [RECORD, "a.csv", "b.csv"] and again.removed == [tmp_path / "c.csv"]
    assert recorded_files(tmp_path) == ["a.csv", "b.csv"]  # b.csv stays the earlier run's own
