"""Time-resolved RSA: time courses against scipy, MNE's cluster test, bootstrap bands and peak latency."""

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform
from scipy.stats import pearsonr, spearmanr

from test_analysis_compare import PATHS, make_output_folder
from visreps.analysis.timeseries import load_time_rdms, time_resolved_rsa, timecourse
from visreps.errors import VisrepsError

N, T, S = 12, 30, 6


def planted(seed=0, n_sub=S, noise=1.0, window=(10, 20)):
    """Reference RDMs whose time points inside ``window`` follow the layer's RDM; noise elsewhere."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, 8))
    model = squareform(pdist(X, "correlation"))
    iu = np.triu_indices(N, 1)
    rdms = np.zeros((n_sub, T, N, N))
    for s in range(n_sub):
        for t in range(T):
            v = noise * rng.standard_normal(len(iu[0]))
            if window[0] <= t < window[1]:
                v = v + 3 * model[iu]
            m = np.zeros((N, N))
            m[iu] = v
            rdms[s, t] = m + m.T
    return X, rdms


@pytest.mark.parametrize("method, ref", [("spearman", spearmanr), ("pearson", pearsonr)])
def test_timecourse_equals_scipy(method, ref):
    X, rdms = planted(n_sub=2)
    model = squareform(pdist(X, "correlation"))
    r = timecourse(model, rdms, method)
    iu = np.triu_indices(N, 1)
    expect = [[ref(model[iu], rdms[s, t][iu])[0] for t in range(T)] for s in range(2)]
    np.testing.assert_allclose(r, expect, atol=1e-12)


def test_cluster_found_where_planted_and_equal_to_mne():
    mne_stats = pytest.importorskip("mne.stats")
    X, rdms = planted()
    times = np.linspace(-0.1, 0.48, T)
    res = time_resolved_rsa({"net": X}, rdms, times=times, n_bootstrap=200, n_permutations=200, seed=1)
    tc = res.timecourse
    sig = tc["significant"].to_numpy()
    assert sig[10:20].all() and not sig[:8].any() and not sig[22:].any()
    # the same test run directly with MNE on the per-subject correlations
    r = res.subjects["net"]
    _, clusters, pv, _ = mne_stats.permutation_cluster_1samp_test(
        r, n_permutations=200, tail=1, rng=1, out_type="mask", verbose=False
    )
    direct = np.zeros(T, dtype=bool)
    for c, p in zip(clusters, pv):
        if p < 0.05:
            direct[c] = True
    np.testing.assert_array_equal(sig, direct)
    np.testing.assert_allclose(res.clusters["p_value"], pv)
    row = res.clusters[res.clusters["significant"]].iloc[0]
    assert row["start"] == pytest.approx(times[10]) and row["stop"] == pytest.approx(times[19])
    # mean over subjects, bands around it
    np.testing.assert_allclose(tc["r"], r.mean(axis=0))
    assert (tc["ci_low"] <= tc["r"] + 1e-12).all() and (tc["ci_high"] >= tc["r"] - 1e-12).all()
    peak = res.peaks.iloc[0]
    assert peak["peak_time"] == times[int(np.argmax(r.mean(axis=0)))]
    assert times[10] <= peak["peak_ci_low"] <= peak["peak_time"] <= peak["peak_ci_high"] <= times[19]
    assert res.info["bootstrap"] == "subjects"


def test_subject_bootstrap_band_by_hand():
    X, rdms = planted(n_sub=4)
    res = time_resolved_rsa(X, rdms, n_bootstrap=50, n_permutations=10, seed=3)
    r = res.subjects[res.peaks["label"][0]]
    draws = np.random.default_rng(3).integers(0, 4, size=(50, 4))
    boot = np.stack([r[b].mean(axis=0) for b in draws])
    np.testing.assert_allclose(res.timecourse["ci_low"], np.quantile(boot, 0.025, axis=0))
    np.testing.assert_allclose(res.timecourse["ci_high"], np.quantile(boot, 0.975, axis=0))


def test_one_subject_image_bootstrap_no_clusters():
    X, rdms = planted(n_sub=1)
    res = time_resolved_rsa(X, rdms[0], n_bootstrap=30, seed=0)
    assert res.info["bootstrap"] == "images" and res.info["cluster_test"] == "none: one subject"
    assert res.clusters.empty and not res.timecourse["significant"].any()
    tc = res.timecourse
    assert np.isfinite(tc["ci_low"]).all() and (tc["ci_low"] < tc["ci_high"]).all()


def test_rows_matched_by_order_file(tmp_path):
    X, rdms = planted(n_sub=2)
    folder = make_output_folder(tmp_path / "net", "m", {"fc": X})
    perm = np.random.default_rng(0).permutation(N)
    (tmp_path / "order.txt").write_text("\n".join(PATHS[i] for i in perm))
    shuffled = rdms[:, :, perm][:, :, :, perm]
    np.save(tmp_path / "ref.npy", shuffled)
    a = time_resolved_rsa(folder, rdms, n_bootstrap=0, n_permutations=10)
    b = time_resolved_rsa(folder, tmp_path / "ref.npy", order=tmp_path / "order.txt", n_bootstrap=0, n_permutations=10)
    np.testing.assert_allclose(a.timecourse["r"], b.timecourse["r"], atol=1e-12)


def test_bad_stacks_named(tmp_path):
    with pytest.raises(VisrepsError, match=r"looks like \(n, n, \.\.\.\)"):
        load_time_rdms(np.zeros((N, N, T)))
    bad = np.zeros((T, N, N))
    bad[3, 1, 2] = np.nan
    with pytest.raises(VisrepsError, match="NaN or infinite"):
        load_time_rdms(bad)
    with pytest.raises(VisrepsError, match="30 time points but 2 times"):
        load_time_rdms(np.zeros((T, N, N)), times=[0, 1])
    np.savez(tmp_path / "r.npz", rdms=np.zeros((T, N, N)), times=np.arange(T) * 2.0)
    assert load_time_rdms(tmp_path / "r.npz").times[-1] == 2.0 * (T - 1)
    with pytest.raises(VisrepsError, match="method must be one of"):
        time_resolved_rsa(np.zeros((N, 3)), np.zeros((T, N, N)), method="kendall")


def test_cli_time_rsa(tmp_path):
    import pandas as pd
    from click.testing import CliRunner

    from visreps.cli import main

    X, rdms = planted()
    folder = make_output_folder(tmp_path / "net", "m", {"fc": X, "conv": X[:, ::-1] ** 2})
    np.savez(tmp_path / "meg.npz", rdms=rdms, times=np.arange(T) * 0.02 - 0.1)
    out = tmp_path / "t.csv"
    args = ["time-rsa", folder, tmp_path / "meg.npz", "--out", out, "--n-bootstrap", "50", "--n-permutations", "50"]
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    tc = pd.read_csv(out)
    assert len(tc) == 2 * T and set(tc.columns) >= {"layer", "time", "r", "ci_low", "ci_high", "significant"}
    fc = tc[tc["layer"] == "fc"]
    assert fc["significant"].to_numpy()[10:20].all()
    assert fc["time"].iloc[1] == pytest.approx(-0.08)
    peaks = pd.read_csv(tmp_path / "t_peaks.csv")
    assert set(peaks["layer"]) == {"fc", "conv"}
    assert (tmp_path / "t_clusters.csv").exists() and (tmp_path / "t.png").stat().st_size > 1000
    bad = np.moveaxis(rdms[0], 0, -1)  # (n, n, time)
    np.save(tmp_path / "bad.npy", bad)
    args = ["time-rsa", folder, tmp_path / "bad.npy", "--out", tmp_path / "b.csv"]
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 2 and "put time (and subjects) first" in r.output
