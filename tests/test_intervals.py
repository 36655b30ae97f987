"""Metrics with bootstrap intervals: equal to scikit-learn's, weights as repeated rows, honest coverage."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from funnelmodels.intervals import BinaryScores, difference_interval, metric_intervals, metrics_with_intervals


def _sample(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    p = np.round(rng.beta(1, 3, n), 2)  # rounded: many ties
    return (rng.random(n) < p).astype(int), p


@pytest.mark.parametrize("seed", [0, 1])
def test_metrics_equal_scikit_learn_and_weights_equal_repeated_rows(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y, p = _sample(rng, 5_000)
    got = BinaryScores.of(y, p).metrics()
    assert got["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert got["pr_auc"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert got["brier"] == pytest.approx(brier_score_loss(y, p), abs=1e-12)
    assert got["log_loss"] == pytest.approx(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7)), abs=1e-12)
    counts = rng.poisson(1.0, y.size)
    rows = np.repeat(np.arange(y.size), counts)
    weighted = BinaryScores.of(y, p).metrics(counts.astype(float))
    assert weighted["roc_auc"] == pytest.approx(roc_auc_score(y[rows], p[rows]), abs=1e-12)
    assert weighted["pr_auc"] == pytest.approx(average_precision_score(y[rows], p[rows]), abs=1e-12)


def test_the_auc_interval_covers_the_population_value_about_95_percent_of_the_time() -> None:
    # The population ROC AUC of p for outcomes drawn from p, from two million rows.
    rng = np.random.default_rng(7)
    y, p = _sample(rng, 2_000_000)
    truth = BinaryScores.of(y, p).metrics()["roc_auc"]
    covered = 0
    for seed in range(200):
        y, p = _sample(np.random.default_rng(1_000 + seed), 600)
        found = metric_intervals(y, p, resamples=200, seed=seed)
        covered += found["roc_auc_low"] <= truth <= found["roc_auc_high"]
    # 95% of 200: a binomial 99% range is 181–197.
    assert 181 <= covered <= 197


def test_the_paired_difference_is_narrower_than_the_two_intervals_and_holds_the_sign() -> None:
    rng = np.random.default_rng(3)
    y, p = _sample(rng, 4_000)
    noisy = np.clip(p + rng.normal(0, 0.15, p.size), 0.001, 0.999)  # the same signal, blurred
    point, low, high = difference_interval(y, p, noisy)
    assert 0 < low <= point <= high
    a, b = metric_intervals(y, p), metric_intervals(y, noisy)
    assert high - low < (a["roc_auc_high"] - a["roc_auc_low"]) + (b["roc_auc_high"] - b["roc_auc_low"])
    assert point == pytest.approx(roc_auc_score(y, p) - roc_auc_score(y, noisy), abs=1e-12)


def test_one_class_only_gives_no_auc_and_says_so_with_nan() -> None:
    found = metric_intervals(np.zeros(50), np.linspace(0.1, 0.5, 50))
    assert np.isnan(found["roc_auc"]) and np.isnan(found["roc_auc_low"])
    assert found["brier"] == pytest.approx(float(np.mean(np.linspace(0.1, 0.5, 50) ** 2)))
    table = metrics_with_intervals(
        np.array([0, 1, 0, 1]), {"a": np.array([0.1, 0.9, 0.2, 0.8])}, np.array(list("xxyy"))
    )
    assert table.select("group", "n", "positives").rows() == [("all", 4, 2), ("x", 2, 1), ("y", 2, 1)]
    assert table["roc_auc"].to_list() == [1.0, 1.0, 1.0]
