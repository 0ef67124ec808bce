"""Paired differences between ranked rows (genbench/tables/paired.py) against simulated ground truth."""

import math

import numpy as np
import pytest

from genbench.evaluation.records import Result
from genbench.runs.scores import load_scores, save_scores
from genbench.tables.paired import SeedScore, difference

N = 500
EXAMPLES = {"variant": "toy", "checksum": "c", "split": "test", "n": N, "dequantization": None}


def row(scores_by_seed, keep_scores=True, examples=EXAMPLES, shared_se=0.0):
    """A row's seeds as the ranking sees them: value and s.e. from the scores, the scores themselves if kept."""
    return [SeedScore(seed, float(s.mean()), float(s.std(ddof=1) / math.sqrt(len(s))),
                      s if keep_scores else None, shared_se, examples) for seed, s in scores_by_seed.items()]


def shared_noise_case(rng, gap=0.3, seeds=(0,), seed_sd=0.0):
    """Two models whose per-example NLLs share each example's difficulty (sd 10) and differ by ``gap`` plus a little
    noise of their own (sd 0.5), plus a per-seed training effect on B (sd ``seed_sd``)."""
    hard = rng.normal(80, 10, N)
    a = {s: hard + rng.normal(0, 0.5, N) for s in seeds}
    b = {s: hard + gap + rng.normal(0, seed_sd) + rng.normal(0, 0.5, N) for s in seeds}
    return a, b


def test_shared_noise_pairs_to_a_much_smaller_standard_error_that_matches_the_spread_of_the_difference():
    rng = np.random.default_rng(0)
    estimates, ses, unpaired = [], [], []
    for _ in range(300):
        a, b = shared_noise_case(rng)
        d = difference(row(a), row(b), lower_is_better=True)
        assert d.paired and d.n_examples == N and d.n_seeds == 1
        estimates.append(d.value)
        ses.append(d.std_error)
        unpaired.append(difference(row(a, keep_scores=False), row(b, keep_scores=False), True).std_error)
    # ground truth: the difference is 0.3 and its spread over replications is sqrt(2 * 0.25 / N) = 0.0316
    assert np.mean(estimates) == pytest.approx(0.3, abs=0.01)
    assert np.mean(ses) == pytest.approx(np.std(estimates), rel=0.15)
    assert np.mean(ses) == pytest.approx(math.sqrt(0.5 / N), rel=0.05)
    assert np.mean(unpaired) > 15 * np.mean(ses)  # sqrt(2 * 100.25 / N) = 0.63: twenty times larger
    a, b = shared_noise_case(rng)
    assert not difference(row(a), row(b), True).tie  # 0.3 ± 0.03: resolved
    assert difference(row(a, keep_scores=False), row(b, keep_scores=False), True).tie  # 0.3 ± 0.63: not


def test_independent_models_pair_to_about_the_unpaired_standard_error():
    rng = np.random.default_rng(1)
    a = {0: rng.normal(80, 10, N)}
    b = {0: rng.normal(80.3, 10, N)}
    paired = difference(row(a), row(b), True)
    unpaired = difference(row(a, keep_scores=False), row(b, keep_scores=False), True)
    assert paired.paired and not unpaired.paired and "not saved" in unpaired.how
    assert paired.std_error == pytest.approx(unpaired.std_error, rel=0.1)
    assert paired.tie and unpaired.tie


def test_several_seeds_add_the_training_spread_and_stay_calibrated():
    rng = np.random.default_rng(2)
    estimates, ses = [], []
    for _ in range(300):
        a, b = shared_noise_case(rng, seeds=(0, 1, 2), seed_sd=0.2)
        d = difference(row(a), row(b), True)
        assert d.n_seeds == 3 and "3 seeds" in d.how
        estimates.append(d.value)
        ses.append(d.std_error)
    # truth: var = 0.2² / 3 (seeds) + 0.5 / (3 N) (examples) → s.e. 0.117; the test-set term alone would be 0.018
    assert np.std(estimates) == pytest.approx(math.sqrt(0.04 / 3 + 0.5 / (3 * N)), rel=0.15)
    assert np.mean(ses) == pytest.approx(np.std(estimates), rel=0.2)


def test_direction_seeds_examples_and_shared_terms():
    rng = np.random.default_rng(3)
    a, b = shared_noise_case(rng, gap=-1.0)  # B's NLL lower: for a higher-is-better metric A is ahead by 1
    assert difference(row(a), row(b), lower_is_better=False).value == pytest.approx(1.0, abs=0.1)
    assert difference(row(a), row(b), lower_is_better=True).value == pytest.approx(-1.0, abs=0.1)
    other = {**EXAMPLES, "checksum": "another test split"}
    assert "different examples" in difference(row(a), row(b, examples=other), True).how
    noisy = {**EXAMPLES, "dequantization": "uniform, 1 draw, seed 0"}  # x + u scores the same examples x
    assert difference(row(a), row(b, examples=noisy), True).paired
    assert difference(row(a), row({7: b[0]}), True) is None  # no seed in common: no comparison
    plain = difference(row(a), row(b), True).std_error
    with_log_z = difference(row(a, shared_se=0.5), row(b, shared_se=0.5), True).std_error
    assert with_log_z == pytest.approx(math.sqrt(plain ** 2 + 0.5), rel=1e-9)  # AIS's log Z is not paired away


def test_scores_round_trip_beside_a_record(tmp_path, monkeypatch):
    monkeypatch.setenv("GENBENCH_HOME", str(tmp_path))
    values = np.random.default_rng(4).normal(80, 10, 300)
    results = [Result("nll", values.mean(), "nats", "exact", n=300, split="test", scores=values),
               Result("active_units", 3, "units", "estimate")]
    entry = save_scores(tmp_path / "runs" / "r--s0.json", results, {"variant": "toy", "checksum": "abc"})
    assert entry["metrics"] == ["nll"] and entry["examples"]["checksum"] == "abc" and entry["examples"]["n"] == 300
    assert (tmp_path / "runs" / "r--s0.scores.npz").is_file() and not entry["file"].startswith("/")
    record = {"scores": entry}
    np.testing.assert_allclose(load_scores(record, "nll"), values, rtol=1e-6)  # float32 on disk
    assert load_scores(record, "bits_per_dim") is None and load_scores({}, "nll") is None
    assert "scores" not in results[0].to_dict()
