"""Models fitted on a stratified sample (large data in reports) against the same models fitted on every row."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from shared import once_per_run

from funnelmodels.data.io import Dataset, load_dataset
from funnelmodels.data.synthetic import generate_dataset, write_dataset
from funnelmodels.evaluation import binary_metrics
from funnelmodels.models.train import train_conversion, train_satisfaction


@pytest.fixture(scope="module")
def larger(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    root = once_per_run(
        tmp_path_factory, "sampling-8000", lambda out: write_dataset(generate_dataset(8_000, seed=6), out)
    )
    return load_dataset(root)


def _auc_half_width(auc: float, positives: int, negatives: int) -> float:
    """Half the 95% interval of a ROC AUC (Hanley and McNeil, 1982)."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)) / (
        positives * negatives
    )
    return 1.96 * math.sqrt(variance)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_conversion_model_fitted_on_a_sample_ranks_the_test_period_within_the_interval_of_the_full_fit(
    larger: Dataset, seed: int
) -> None:
    full = train_conversion(larger, engines=("lightgbm",), seed=seed)
    rows = full.history.height + full.test.height  # entry rows; the sample counts snapshots too
    part = train_conversion(larger, engines=("lightgbm",), seed=seed, max_rows=rows // 2)
    assert part.sample.startswith("fitted and tested on a stratified sample of ")
    assert not full.sample
    share = float(part.sample.split("sample of ")[1].split("%")[0]) / 100
    assert part.test.height == pytest.approx(full.test.height * share, rel=0.05)
    # Every stage keeps its conversion rate in the sample (stratified by stage and outcome).
    rates = [
        t.group_by("stage").agg(pl.col("converted").mean()).sort("stage")["converted"].to_numpy()
        for t in (full.history, part.history)
    ]
    assert np.allclose(rates[0], rates[1], atol=0.005)
    # Both models on the same, full test period: the sampled one within the full one's 95% interval.
    test = full.test
    y = test["converted"].cast(pl.Int8).to_numpy()
    aucs = [binary_metrics(y, t.models["lightgbm"].predict_proba(test))["roc_auc"] for t in (full, part)]
    assert abs(aucs[0] - aucs[1]) <= _auc_half_width(aucs[0], int(y.sum()), int((1 - y).sum())), aucs


def test_a_satisfaction_model_fitted_on_a_half_scores_the_test_period_as_the_full_fit(larger: Dataset) -> None:
    full = train_satisfaction(larger, engines=("lightgbm",), seed=0)
    responses = full.train.height + full.test.height
    part = train_satisfaction(larger, engines=("lightgbm",), seed=0, max_rows=responses // 2)
    assert "survey responses" in part.sample and not full.sample
    test = full.test
    mae = [
        float(np.abs(t.models["lightgbm"].predict_proba(test) @ np.arange(1, 6) - test["csat"].to_numpy()).mean())
        for t in (full, part)
    ]
    # The mean absolute error of the expected score: 2 standard errors of the full fit's.
    errors = np.abs(full.models["lightgbm"].predict_proba(test) @ np.arange(1, 6) - test["csat"].to_numpy())
    assert abs(mae[0] - mae[1]) <= 2 * errors.std() / math.sqrt(errors.size), mae


def test_a_limit_above_the_rows_leaves_the_training_alone(larger: Dataset) -> None:
    full = train_satisfaction(larger, engines=("ordinal",), seed=0, max_rows=10**9)
    assert full.sample == ""
