"""Performance estimated from calibrated probabilities before the outcomes arrive."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from funnelmodels.performance import estimated_auc, estimated_performance


def test_the_estimated_auc_is_the_expected_pairs_over_the_expected_pairs_possible() -> None:
    # Five rows (two with the same score), every outcome enumerated with its probability.
    p = np.array([0.1, 0.4, 0.4, 0.7, 0.9])
    ordered = expected = 0.0
    for outcome in itertools.product([0, 1], repeat=p.size):
        y = np.array(outcome)
        chance = float(np.prod(np.where(y == 1, p, 1 - p)))
        pairs = sum(
            1.0 if p[i] > p[j] else 0.5 if p[i] == p[j] else 0.0
            for i in range(p.size)
            for j in range(p.size)
            if i != j and y[i] == 1 and y[j] == 0
        )
        ordered += chance * pairs
        expected += chance * y.sum() * (p.size - y.sum())
    assert estimated_auc(p) == pytest.approx(ordered / expected, abs=1e-12)


def test_the_interval_holds_the_realised_auc_and_rate_about_95_percent_of_the_time() -> None:
    covered_auc = covered_rate = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        p = rng.beta(2, 3, 2_000)
        y = (rng.random(p.size) < p).astype(int)
        found = estimated_performance(p, resamples=100, seed=seed)
        covered_auc += found["estimated_auc_low"] <= roc_auc_score(y, p) <= found["estimated_auc_high"]
        covered_rate += found["estimated_rate_low"] <= y.mean() <= found["estimated_rate_high"]
        assert abs(found["estimated_auc"] - roc_auc_score(y, p)) < 0.04
    # Nominal 95 of 100 (a binomial 99% range: 89-99).
    assert covered_auc >= 89 and covered_rate >= 89


def test_miscalibrated_scores_give_a_different_estimate() -> None:
    # Squared probabilities rank the same but are too low: the estimate moves, as it should.
    p = np.random.default_rng(3).beta(2, 3, 5_000)
    assert estimated_auc(p**2) != pytest.approx(estimated_auc(p), abs=0.01)


def test_one_row_or_certain_outcomes_give_no_estimate() -> None:
    assert np.isnan(estimated_auc(np.array([0.3])))
    assert np.isnan(estimated_auc(np.ones(10)))
    one = estimated_performance(np.array([0.5]))
    assert np.isnan(one["estimated_auc_low"]) and one["estimated_rate"] == 0.5  # no interval from one row
