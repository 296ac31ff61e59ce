"""Noise ceilings: split-half reliability (Spearman–Brown) and the RDM bounds of Nili et al. (2014)."""

import warnings

import numpy as np
import pytest
from scipy import stats

from visreps.analysis import load_reference_rdms, rdm_noise_ceiling
from visreps.analysis.ceilings import pool_rdms, split_half_reliability
from visreps.analysis.rsa import squareform, upper_triangle
from visreps.errors import VisrepsError


def _split_half_loop(x, n_splits, seed):
    """The definition, one target and one split at a time (scipy's Pearson r)."""
    from scipy.stats import pearsonr

    rng = np.random.default_rng(seed)
    r_reps, _, n_t = x.shape
    rs = np.empty((n_splits, n_t))
    for s in range(n_splits):
        perm = rng.permutation(r_reps)
        a, b = x[perm[: r_reps // 2]].mean(0), x[perm[r_reps // 2 :]].mean(0)
        rs[s] = [pearsonr(a[:, t], b[:, t])[0] for t in range(n_t)]
    r = rs.mean(0)
    return 2 * r / (1 + r)


@pytest.mark.parametrize("reps", [2, 3, 4, 5])
def test_split_half_matches_definition(reps):
    rng = np.random.default_rng(reps)
    x = rng.normal(size=(1, 30, 7)) + rng.normal(size=(reps, 30, 7)) * np.linspace(0.3, 3, 7)
    got = split_half_reliability(x, n_splits=20, seed=3)
    np.testing.assert_allclose(got, _split_half_loop(x, 20, 3), rtol=1e-12, atol=1e-12)
    assert got.shape == (7,) and got.dtype == np.float64
    np.testing.assert_array_equal(got, split_half_reliability(x, n_splits=20, seed=3))  # seeded


def test_split_half_recovers_known_reliability():
    # signal variance 1, noise sd σ, 4 repetitions: reliability of the 4-repetition mean is 1 / (1 + σ²/4)
    rng = np.random.default_rng(0)
    sd = np.array([0.5, 1.0, 2.0, 4.0])
    x = rng.normal(size=(1, 4000, 4)) + rng.normal(size=(4, 4000, 4)) * sd
    np.testing.assert_allclose(split_half_reliability(x, n_splits=50), 1 / (1 + sd**2 / 4), atol=0.03)


def test_split_half_constant_target_is_nan_with_warning():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 10, 3))
    x[:, :, 1] = 5.0
    with pytest.warns(UserWarning, match="1 of 3 targets"):
        got = split_half_reliability(x, n_splits=5)
    assert np.isnan(got[1]) and np.isfinite(got[[0, 2]]).all()


@pytest.mark.parametrize(
    "x, match",
    [
        (np.zeros((4, 10)), "repetitions, images, targets"),
        (np.ones((1, 10, 2)), "at least 2 repetitions"),
        (np.ones((3, 2, 2)), "at least 3 images"),
        (np.full((3, 5, 2), np.nan), "NaN/inf"),
    ],
)
def test_split_half_bad_input(x, match):
    with pytest.raises(VisrepsError, match=match):
        split_half_reliability(x)
    with pytest.raises(VisrepsError, match="n_splits"):
        split_half_reliability(np.ones((2, 4, 1)), n_splits=0)


# --------------------------------------------------------------------------- RDM noise ceiling


def subject_rdms(n=8, subjects=5, sd=0.5, seed=0):
    rng = np.random.default_rng(seed)
    m = n * (n - 1) // 2
    v = rng.random(m) + rng.normal(size=(subjects, m)) * sd
    v[0, :3] = v[0, 3]  # ties
    return v


@pytest.mark.parametrize(
    "method, theirs", [("pearson", "corr"), ("spearman", "spearman"), ("kendall", "kendall"), ("tau_a", "tau-a")]
)
def test_noise_ceiling_matches_rsatoolbox(method, theirs):
    from rsatoolbox.inference import boot_noise_ceiling
    from rsatoolbox.rdm import RDMs

    v = subject_rdms()
    nc = rdm_noise_ceiling(v, method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rsatoolbox warns that tau ceilings use mean ranks
        lower, upper = boot_noise_ceiling(RDMs(v), method=theirs)
    assert nc.lower == pytest.approx(lower, abs=1e-12) and nc.upper == pytest.approx(upper, abs=1e-12)
    assert nc.lower < nc.upper and nc.per_subject.shape == (5, 2)
    square = np.stack([squareform(x) for x in v])
    assert tuple(rdm_noise_ceiling(square, method)) == pytest.approx(tuple(nc), abs=1e-15)


def test_noise_ceiling_by_hand_and_identical_subjects():
    v = subject_rdms(subjects=3, seed=1)
    z = (v - v.mean(1, keepdims=True)) / v.std(1, keepdims=True)
    upper = np.mean([np.corrcoef(z.mean(0), v[s])[0, 1] for s in range(3)])
    lower = np.mean([np.corrcoef(np.delete(z, s, 0).mean(0), v[s])[0, 1] for s in range(3)])
    nc = rdm_noise_ceiling(v)
    assert (nc.lower, nc.upper) == pytest.approx((lower, upper), abs=1e-12)
    np.testing.assert_allclose(pool_rdms(v, "spearman"), stats.rankdata(v, axis=1).mean(0))
    same = np.repeat(v[:1], 4, axis=0)  # noiseless subjects: both bounds are 1
    assert tuple(rdm_noise_ceiling(same, "spearman")) == pytest.approx((1.0, 1.0))


def test_noise_ceiling_bad_input():
    v = subject_rdms()
    with pytest.raises(VisrepsError, match="has 1 subject RDM"):
        rdm_noise_ceiling(v[:1])
    with pytest.raises(VisrepsError, match="subject 2 has NaN"):
        rdm_noise_ceiling(np.where(np.arange(5)[:, None] == 2, np.nan, v))
    with pytest.raises(VisrepsError, match="stack of RDMs"):
        rdm_noise_ceiling(np.zeros((2, 3, 4, 5)))


def test_load_reference_rdms_formats(tmp_path):
    import h5py
    from scipy.io import savemat

    v = subject_rdms(n=6, subjects=3)
    stack = np.stack([squareform(x) for x in v])
    np.save(tmp_path / "stack.npy", stack)
    savemat(tmp_path / "stack.mat", {"rdms": np.moveaxis(stack, 0, -1)})  # MATLAB: n × n × subjects
    with h5py.File(tmp_path / "stack.h5", "w") as f:
        f["rdms"] = stack
        f["other"] = np.arange(3.0)
    folder = tmp_path / "subjects"
    folder.mkdir()
    np.save(folder / "s1.npy", stack[0])
    np.savetxt(folder / "s2.csv", stack[1], delimiter=",")
    np.save(folder / "s3.npy", v[2])  # condensed
    (folder / "notes.md").write_text("ignored")
    for ref, key, names in [
        (tmp_path / "stack.npy", None, ["stack[0]", "stack[1]", "stack[2]"]),
        (tmp_path / "stack.mat", None, ["stack[0]", "stack[1]", "stack[2]"]),
        (tmp_path / "stack.h5", "rdms", ["stack[0]", "stack[1]", "stack[2]"]),
        (folder, None, ["s1", "s2", "s3"]),
        (stack, None, ["subject 0", "subject 1", "subject 2"]),
    ]:
        got, got_names = load_reference_rdms(ref, key=key)
        np.testing.assert_allclose(got, stack, rtol=1e-15, atol=1e-15)
        assert got_names == names
    one, names = load_reference_rdms(folder / "s1.npy")
    assert one.shape == (1, 6, 6) and names == ["s1"]
    with pytest.raises(VisrepsError, match="several arrays"):
        load_reference_rdms(tmp_path / "stack.h5")
    np.save(folder / "s4.npy", squareform(upper_triangle(stack[0])[:10]))  # 5 conditions
    with pytest.raises(VisrepsError, match=r"different numbers of images \(s1: 6, s2: 6, s3: 6, s4: 5\)"):
        load_reference_rdms(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VisrepsError, match="holds no RDM files"):
        load_reference_rdms(tmp_path / "empty")
