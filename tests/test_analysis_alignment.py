"""Rows of two output folders are matched by image content (manifest.csv's blake2b column), not by file name.

The folders are built by hand, truthful to the folder contract (``<layer>.npy`` with the shape and
dtype that ``metadata.json`` records, ``manifest.csv`` with the BLAKE2b hash of each image file's
bytes): the images exist on disk, and their hashes are computed here with hashlib, independently
of visreps.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats
from scipy.spatial.distance import pdist

import visreps
from conftest import write_images
from visreps.analysis import (
    cka,
    cka_table,
    compare_features,
    compare_to_reference,
    match_rows,
)
from visreps.cli import main
from visreps.errors import VisrepsError

PATHS = [f"cls{i % 2}/img{i:02d}.png" for i in range(12)]
N = len(PATHS)


def blake2b_of(path: Path) -> str:
    return hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()


def images(root: Path, names=PATHS, seed: int = 0) -> list[str]:
    """Random PNG files under ``root``; returns their content hashes, in the order of ``names``."""
    write_images(root, list(names), size=(8, 6), seed=seed)
    return [blake2b_of(root / n) for n in names]


def make_folder(folder: Path, layers: dict, paths, hashes=None, model: str = "m") -> Path:
    """An output folder as `visreps extract` writes it: arrays, manifest (with hashes if given), metadata."""
    folder = Path(folder)
    folder.mkdir(parents=True)
    meta = {
        "status": "complete",
        "model": model,
        "backend": "torch",
        "weights": {"kind": "random", "seed": 0},
        "images": {"n_found": len(paths), "n_extracted": len(paths), "skipped": []},
        "layers_requested": list(layers),
        "layers": {},
        "format": "npy",
    }
    for name, arr in layers.items():
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        assert arr.shape[0] == len(paths)
        np.save(folder / f"{name}.npy", arr)
        meta["layers"][name] = {
            "module": name,
            "call": 0,
            "calls_per_pass": 1,
            "pool": "flatten",
            "shape": list(arr.shape),
            "dtype": "float32",
            "file": f"{name}.npy",
        }
    labels = [str(Path(p).parent).replace(".", "") for p in paths]
    table = {"index": range(len(paths)), "path": list(paths), "label": labels}
    if hashes is not None:
        table["blake2b"] = list(hashes)
    pd.DataFrame(table).to_csv(folder / "manifest.csv", index=False)
    (folder / "metadata.json").write_text(json.dumps(meta, indent=2))
    return folder


def feats(seed: int, n: int = N, p: int = 30) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, p)).astype(np.float32)


def related(X: np.ndarray, seed: int) -> np.ndarray:
    """Another 'model' of the same images: a random linear map of X plus noise (CKA well above chance)."""
    rng = np.random.default_rng(seed)
    return (X @ rng.standard_normal((X.shape[1], 20)) + 0.5 * rng.standard_normal((len(X), 20))).astype(np.float32)


def as64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(len(x), -1)


def rsa_r(X, Y) -> float:
    """The default comparison of compare_features: Pearson r of the correlation-distance RDMs."""
    return float(stats.pearsonr(pdist(as64(X), "correlation"), pdist(as64(Y), "correlation")).statistic)


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(r) -> str:
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert "Traceback" not in r.output
    return lines[0]


# --------------------------------------------------------------------------- same names, other content


@pytest.fixture
def same_names_other_images(tmp_path):
    """Two image folders whose 12 files have the same names but other pictures, and a folder extracted from each."""
    ha = images(tmp_path / "set1", seed=0)
    hb = images(tmp_path / "set2", seed=1)
    X = feats(0)
    a = make_folder(tmp_path / "a", {"l": X}, PATHS, ha)
    b = make_folder(tmp_path / "b", {"l": related(X, 1)}, PATHS, hb)
    return a, b


def test_same_names_other_content_is_an_error_in_python(same_names_other_images):
    a, b = same_names_other_images
    pattern = r"extracted from different images with the same file names: 12 path\(s\).*'cls0/img00.png'"
    with pytest.raises(VisrepsError, match=pattern) as e:
        compare_features([a, b])
    assert str(e.value).count(".png") == 3  # up to 3 examples
    with pytest.raises(VisrepsError, match=pattern):
        compare_to_reference([a, b], np.ones((N, N)) - np.eye(N))
    with pytest.raises(VisrepsError, match=pattern):
        cka_table(a, b)


@pytest.mark.parametrize("command", ["cka", "compare"])
def test_same_names_other_content_is_an_error_on_the_command_line(same_names_other_images, tmp_path, command):
    a, b = same_names_other_images
    extra = ["--out", tmp_path / "t.csv", "--no-plot"] if command == "compare" else []
    line = one_line_error(cli(command, a, b, *extra))
    assert "different images with the same file names" in line and "'cls0/img00.png'" in line and "12 path(s)" in line
    assert not (tmp_path / "t.csv").exists()


def test_only_the_changed_images_are_named(tmp_path):
    """Two of twelve files replaced by other pictures under the same names: those two are the ones reported."""
    ha = images(tmp_path / "set1", seed=0)
    shutil.copytree(tmp_path / "set1", tmp_path / "set2")
    write_images(tmp_path / "set2", ["cls1/img03.png", "cls0/img08.png"], size=(8, 6), seed=7)
    hb = [blake2b_of(tmp_path / "set2" / p) for p in PATHS]
    assert sum(x != y for x, y in zip(ha, hb)) == 2
    a = make_folder(tmp_path / "a", {"l": feats(0)}, PATHS, ha)
    b = make_folder(tmp_path / "b", {"l": feats(1)}, PATHS, hb)
    pattern = r"2 path\(s\) hold different image content .*\['cls0/img08.png', 'cls1/img03.png'\]"
    with pytest.raises(VisrepsError, match=pattern):
        compare_features([a, b])


# --------------------------------------------------------------------------- same content, other names and order


@pytest.fixture
def renamed(tmp_path):
    """Folder a: the images under PATHS. Folder b: the same files copied under other names, rows in another order."""
    ha = images(tmp_path / "set1", seed=0)
    perm = np.random.default_rng(5).permutation(N)  # row k of b is image perm[k] of a
    new_names = [f"copies/picture_{k:02d}.png" for k in range(N)]  # sorted like b's rows, unlike a's
    for k, i in enumerate(perm):
        (tmp_path / "set2" / "copies").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / "set1" / PATHS[i], tmp_path / "set2" / new_names[k])
    hb = [blake2b_of(tmp_path / "set2" / n) for n in new_names]
    assert hb == [ha[i] for i in perm]
    X = feats(0)
    Y = related(X, 1)  # Y[i]: image i of a
    a = make_folder(tmp_path / "a", {"l": X, "m": feats(3, p=9)}, PATHS, ha, model="ma")
    b = make_folder(tmp_path / "b", {"l": Y[perm]}, new_names, hb, model="mb")
    return a, b, X, Y, perm


def test_same_content_under_other_names_is_matched(renamed):
    a, b, X, Y, perm = renamed
    df = compare_features([a, b])
    assert list(df.index) == ["ma (random, seed 0)/l", "ma (random, seed 0)/m", "mb (random, seed 0)/l"]
    assert df.loc["ma (random, seed 0)/l", "mb (random, seed 0)/l"] == pytest.approx(
        rsa_r(X, Y), abs=1e-10
    )  # aligned by hand: Y[i] is image i
    assert (
        rsa_r(X, Y[perm]) < df.loc["ma (random, seed 0)/l", "mb (random, seed 0)/l"] - 0.2
    )  # what matching rows by position would give
    assert df.attrs["n_conditions"] == N
    # b as the first folder: a's rows are put in b's order, the same number
    df_ba = compare_features([b, a])
    assert df_ba.loc["mb (random, seed 0)/l", "ma (random, seed 0)/l"] == pytest.approx(rsa_r(X, Y), abs=1e-10)


def test_cka_of_renamed_images_equals_cka_of_rows_aligned_by_hand(renamed):
    a, b, X, Y, perm = renamed
    expect = cka(X, Y, unbiased=True)
    assert abs(expect - cka(X, Y[perm], unbiased=True)) > 0.1  # aligning matters
    t = cka_table(a, b, layers_a="l", unbiased=True)
    assert t.shape == (1, 1) and t.iloc[0, 0] == pytest.approx(expect, abs=1e-10)
    assert t.attrs["a"] == "a" and t.attrs["b"] == "b" and t.attrs["n_images"] == N
    t2 = cka_table(b, a, kernel="rbf")
    assert list(t2.index) == ["l"] and list(t2.columns) == ["l", "m"]
    assert t2.loc["l", "l"] == pytest.approx(cka(Y, X, kernel="rbf"), abs=1e-10)
    r = cli("cka", f"{a}::l", b, "--unbiased")
    assert r.exit_code == 0, r.output
    assert f"{expect:.6f}" in r.output
    r = cli("compare", a, b, "--out", Path(a).parent / "t.csv", "--no-plot")
    assert r.exit_code == 0, r.output
    table = pd.read_csv(Path(a).parent / "t.csv", index_col=0)
    assert table.loc["ma (random, seed 0)/l", "mb (random, seed 0)/l"] == pytest.approx(rsa_r(X, Y), abs=1e-5)


def test_renamed_images_against_a_reference_rdm(renamed):
    """compare_to_reference: the reference's rows are the first folder's images, whatever the second calls them."""
    a, b, X, Y, _ = renamed
    R = pdist(as64(X), "euclidean")
    df = compare_to_reference([a, b], R, layers=["l"], rdm_method="correlation", method="spearman").set_index("label")
    expect = stats.spearmanr(pdist(as64(Y), "correlation"), R).statistic
    assert df.loc["mb (random, seed 0)/l", "r"] == pytest.approx(expect, abs=1e-10)


def test_different_images_by_content_name_their_paths(tmp_path):
    """An image only one folder holds (other names everywhere, so no name clash): the paths of those images."""
    ha = images(tmp_path / "set1", seed=0)
    hb = list(ha)
    hb[4] = blake2b_of(tmp_path / "set1" / PATHS[4]).replace(hb[4][0], "f" if hb[4][0] != "f" else "e", 1)
    other = [p.replace("img", "pic") for p in PATHS]
    a = make_folder(tmp_path / "a", {"l": feats(0)}, PATHS, ha)
    b = make_folder(tmp_path / "b", {"l": feats(1)}, other, hb)
    # the first folder's rows are the common order; "the first" of the message is the folder aligned to it
    pattern = (
        r"'m \(random, seed 0\) \[a\]/l' and 'm \(random, seed 0\) \[b\]/l' were extracted from different images "
        r"\(compared by content: 12 vs 12 images; "
        r"e.g. only in the first: \['cls0/img04.png'\], only in the second: \['cls0/pic04.png'\]\)"
    )
    with pytest.raises(VisrepsError, match=pattern):
        compare_features([b, a])
    line = one_line_error(cli("cka", b, a))
    assert "'a/l' and 'b/l'" in line and "'cls0/pic04.png'" in line and "'cls0/img04.png'" in line
    # fewer images on one side
    c = make_folder(tmp_path / "c", {"l": feats(2, n=10)}, PATHS[:10], ha[:10])
    with pytest.raises(
        VisrepsError,
        match=r"12 vs 10 images; e.g. only in the first: \['cls0/img10.png', "
        r"'cls1/img11.png'\], only in the second: \[\]",
    ):
        compare_features([c, a])


# --------------------------------------------------------------------------- duplicates inside one folder


def test_one_image_under_two_names_is_paired_by_path_then_by_order():
    h = ["aa" * 16, "bb" * 16, "aa" * 16, "cc" * 16]  # rows 0 and 2 of the reference are one image
    ref_paths = ["x/one.png", "x/two.png", "x/one_again.png", "x/three.png"]
    # the same names, another order: each copy goes with its own name
    order = match_rows(
        ["x/three.png", "x/one_again.png", "x/two.png", "x/one.png"],
        ref_paths,
        ["cc" * 16, "aa" * 16, "bb" * 16, "aa" * 16],
        h,
    )
    assert order.tolist() == [3, 2, 1, 0]
    # other names: the copies are paired in their order of occurrence
    order = match_rows(
        ["y/c.png", "y/a2.png", "y/b.png", "y/a1.png"], ref_paths, ["cc" * 16, "aa" * 16, "bb" * 16, "aa" * 16], h
    )
    assert order.tolist() == [1, 2, 3, 0]
    # rows already in the reference's order: nothing to do
    assert match_rows(ref_paths, ref_paths, h, h) is None
    assert match_rows(["z/1", "z/2", "z/3", "z/4"], ref_paths, h, h) is None  # same content, same order, other names
    # the image twice on one side, once on the other: not the same images
    pattern = r"only in the first: \['y/c.png'\], only in the second: \['x/one_again.png'\]"
    with pytest.raises(VisrepsError, match=pattern):
        match_rows(
            ["y/a.png", "y/b.png", "y/c.png", "y/d.png"], ref_paths, ["aa" * 16, "bb" * 16, "dd" * 16, "cc" * 16], h
        )


def test_duplicate_images_in_folders(tmp_path):
    """A folder that holds one picture under two names, compared with a renamed copy of it: matched, same numbers."""
    ha = images(tmp_path / "set1", seed=0)
    shutil.copyfile(tmp_path / "set1" / PATHS[0], tmp_path / "set1" / PATHS[5])  # img05 is now img00 again
    ha[5] = ha[0]
    X = feats(0)
    X[5] = X[0]  # the same picture gives the same features
    Y = related(X, 1)
    perm = np.random.default_rng(2).permutation(N)
    a = make_folder(tmp_path / "a", {"l": X}, PATHS, ha)
    b = make_folder(tmp_path / "b", {"l": Y[perm]}, [f"b{k:02d}.png" for k in range(N)], [ha[i] for i in perm])
    assert compare_features([a, b]).iloc[0, 1] == pytest.approx(rsa_r(X, Y), abs=1e-10)
    assert cka_table(a, b).iloc[0, 0] == pytest.approx(cka(X, Y), abs=1e-10)


# --------------------------------------------------------------------------- folders without hashes


def test_folders_without_hashes_are_matched_by_path(tmp_path):
    ha = images(tmp_path / "set1", seed=0)
    hb = images(tmp_path / "set2", seed=1)  # other pictures under the same names
    X = feats(0)
    Y = related(X, 1)
    perm = np.random.default_rng(3).permutation(N)
    old = make_folder(tmp_path / "old", {"l": X}, PATHS)  # written before hashes were recorded
    assert "blake2b" not in pd.read_csv(old / "manifest.csv").columns
    new = make_folder(tmp_path / "new", {"l": Y[perm]}, [PATHS[i] for i in perm], [hb[i] for i in perm])
    # one side without hashes: content is unknown, rows are matched by path as before (no error possible)
    assert compare_features([old, new]).iloc[0, 1] == pytest.approx(rsa_r(X, Y), abs=1e-10)
    assert compare_features([new, old]).iloc[0, 1] == pytest.approx(rsa_r(X, Y), abs=1e-10)
    assert cka_table(old, new).iloc[0, 0] == pytest.approx(cka(X, Y), abs=1e-10)
    both_old = make_folder(tmp_path / "old2", {"l": Y[perm]}, [PATHS[i] for i in perm])
    assert compare_features([old, both_old]).iloc[0, 1] == pytest.approx(rsa_r(X, Y), abs=1e-10)
    # different paths are still an error
    renamed_old = make_folder(tmp_path / "old3", {"l": Y}, [p.replace("img", "pic") for p in PATHS])
    with pytest.raises(VisrepsError, match=r"extracted from different images \(12 vs 12; e.g. only in the first"):
        compare_features([renamed_old, new])
    # an empty hash makes a folder's content unknown: by path
    partial = make_folder(tmp_path / "partial", {"l": Y}, PATHS, hb[:-1] + [""])
    assert compare_features([old, partial]).iloc[0, 1] == pytest.approx(rsa_r(X, Y), abs=1e-10)
    assert ha != hb


def test_malformed_hash_is_an_error(tmp_path):
    h = images(tmp_path / "set1", seed=0)
    a = make_folder(tmp_path / "a", {"l": feats(0)}, PATHS, h)
    b = make_folder(tmp_path / "b", {"l": feats(1)}, PATHS, h[:3] + ["not-a-hash"] + h[4:])
    with pytest.raises(VisrepsError, match=r"manifest.csv of '\S+/b': the blake2b value of row 3 \('not-a-hash'\)"):
        compare_features([a, b])


def test_features_objects_keep_their_hashes(renamed):
    a, b, X, Y, _ = renamed
    fa, fb = visreps.load_features(a), visreps.load_features(b)
    assert compare_features([fa, fb], layers=["l"]).iloc[0, 1] == pytest.approx(rsa_r(X, Y), abs=1e-10)
    assert cka_table(fa, fb, layers_a=["l"]).iloc[0, 0] == pytest.approx(cka(X, Y), abs=1e-10)


# --------------------------------------------------------------------------- extraction reused from a work_dir


def test_work_dir_extraction_is_not_reused_for_replaced_images(tmp_path, monkeypatch):
    """compare_features(model ids, images=..., work_dir=...) reuses an earlier extraction only for the same files."""
    root = tmp_path / "images"
    images(root, seed=0)
    calls = []

    def fake_extract(model, imgs, *, layers, out=None, overwrite=False, **kw):
        from visreps.data import find_images

        calls.append(model)
        paths = [i.path for i in find_images(imgs)]
        pixels = np.stack([np.asarray(visreps.data.load_image(Path(imgs) / p), np.float32).ravel() for p in paths])
        shutil.rmtree(out, ignore_errors=True)
        make_folder(
            out,
            {layer: pixels[:, : 10 + len(layer)] for layer in layers},
            paths,
            [blake2b_of(Path(imgs) / p) for p in paths],
            model=model,
        )
        return visreps.load_features(out)

    import visreps.extraction
    from visreps.workflows import compare_features as extract_and_compare

    monkeypatch.setattr(visreps.extraction, "extract", fake_extract)
    kw = {"layers": ["l1", "l22"], "images": root, "work_dir": tmp_path / "work"}
    extract_and_compare(["fake:a"], **kw)
    extract_and_compare(["fake:a"], **kw)
    assert calls == ["fake:a"]  # reused
    write_images(root, [PATHS[3]], size=(8, 6), seed=9)  # one picture replaced under its old name
    extract_and_compare(["fake:a"], **kw)
    assert calls == ["fake:a", "fake:a"]  # extracted again
    extract_and_compare(["fake:a"], **kw)
    assert calls == ["fake:a", "fake:a"]
