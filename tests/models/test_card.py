"""The model card: baselines by hand, the readiness gate, and the card of a real training."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from funnelmodels.errors import ModelError
from funnelmodels.models.card import (
    MIN_TRAIN_POSITIVES,
    MIN_TRAIN_ROWS,
    NAIVE_BAYES,
    STAGE_RATE,
    conversion_card,
    naive_bayes,
    readiness,
    satisfaction_card,
    stage_rate,
)
from funnelmodels.models.train import ConversionTraining, SatisfactionTraining


def _history() -> pl.DataFrame:
    # Stage a: 3 entries, 2 converted; stage b: 1 entry, not converted. Sources x, x, y, (none).
    return pl.DataFrame(
        {"stage": ["a", "a", "a", "b"], "source": ["x", "x", "y", None], "converted": [True, True, False, False]}
    )


def test_the_stage_rate_is_each_stages_history_and_the_overall_rate_for_a_new_stage() -> None:
    rows = pl.DataFrame({"stage": ["b", "a", "c"]})
    assert stage_rate(_history(), rows) == pytest.approx([0.0, 2 / 3, 0.5])


def test_naive_bayes_on_stage_and_source_matches_the_hand_computation() -> None:
    # Two positives, two negatives. Laplace: prior odds (2+1)/(2+1) = 1.
    # Stage a among 2 levels + 1: P(a|+) = (2+1)/(2+3) = 3/5, P(a|−) = (1+1)/(2+3) = 2/5.
    # Source x among 3 levels + 1: P(x|+) = (2+1)/(2+4) = 1/2, P(x|−) = (0+1)/(2+4) = 1/6.
    # Odds = 1 × (3/5)/(2/5) × (1/2)/(1/6) = 4.5 → P = 4.5 / 5.5.
    rows = pl.DataFrame({"stage": ["a"], "source": ["x"]})
    assert naive_bayes(_history(), rows) == pytest.approx([4.5 / 5.5])
    # Without a source column the source is left out: odds 1.5 → 0.6.
    assert naive_bayes(_history().drop("source"), rows) == pytest.approx([0.6])


def test_the_gate_refuses_little_data_and_a_model_no_better_than_the_stage_rate() -> None:
    rng = np.random.default_rng(0)
    rate = np.where(rng.random(4_000) < 0.5, 0.2, 0.6)
    y = (rng.random(rate.size) < rate).astype(int)
    informative = np.clip(rate + (y - rate) * 0.5 + rng.normal(0, 0.1, rate.size), 0.01, 0.99)
    ready = readiness(MIN_TRAIN_ROWS, MIN_TRAIN_POSITIVES, y, {"lightgbm": informative, STAGE_RATE: rate})
    assert ready.ready and ready.engine == "lightgbm" and ready.auc_gain[1] > 0
    assert ready.sentence().startswith("Ready to publish.")
    # Too few rows: not ready whatever the gain, and the logit is recommended.
    few = readiness(MIN_TRAIN_ROWS - 1, MIN_TRAIN_POSITIVES, y, {"lightgbm": informative, STAGE_RATE: rate})
    assert not few.ready and few.engine == "logit" and "below the" in few.sentence()
    # The stage rate plus noise: its gain's interval does not clear 0.
    noise = np.clip(rate + rng.normal(0, 0.02, rate.size), 0.01, 0.99)
    flat = readiness(10 * MIN_TRAIN_ROWS, 10 * MIN_TRAIN_POSITIVES, y, {"lightgbm": noise, STAGE_RATE: rate})
    assert not flat.ready and flat.auc_gain[1] <= 0 and "does not beat" in flat.sentence()
    assert flat.to_json()["auc_gain_over_stage_rate"]["point"] == pytest.approx(flat.auc_gain[0])


def test_the_card_of_a_training_shows_every_engine_and_baseline_with_intervals(trained: ConversionTraining) -> None:
    card = conversion_card(trained, resamples=50)
    head = card.headline()
    assert set(head["engine"]) == {"lightgbm", "logit", NAIVE_BAYES, STAGE_RATE, "oracle"}
    assert ((head["roc_auc_low"] <= head["roc_auc"]) & (head["roc_auc"] <= head["roc_auc_high"])).all()
    # On the generator, the models rank better than the baselines, and LightGBM clears the stage rate.
    auc = dict(zip(head["engine"], head["roc_auc"], strict=True))
    assert auc["lightgbm"] > auc[NAIVE_BAYES] > auc[STAGE_RATE]
    rows = card.rows.row(0, named=True)
    assert rows["stage"] == "all" and rows["train_rows"] == trained.history.height
    assert rows["test_rows"] == trained.test.height
    assert rows["test_positives"] == int(trained.test["converted"].sum())
    assert card.gate.train_rows == trained.history.height
    parts = card.calibration.filter(pl.col("group") == "all")
    assert ((parts["brier"] - (parts["mcb"] - parts["dsc"] + parts["unc"])).abs() < 1e-12).all()
    data = card.to_json()
    assert data["gate"]["ready"] == card.gate.ready and data["window"]["test_from"]
    # Drift between the training and the test entries: every feature of the model and its score.
    model = trained.models["lightgbm"]
    assert set(card.drift["feature"]) == {*model.encoder.numeric, *model.encoder.categorical, "score"}
    assert card.drift_sentence().startswith(("No drift", "Drift"))
    # Performance per month: the decided months with both figures, the open ones with the estimate alone.
    months = card.performance.filter(pl.col("month").is_not_null())
    decided = card.performance.filter(pl.col("month").is_null()).row(0, named=True)
    assert decided["entries"] == trained.test.height and decided["pending"] == 0
    assert decided["estimated_auc_low"] <= decided["estimated_auc"] <= decided["estimated_auc_high"]
    assert months["pending"].sum() == trained.pending.height > 0
    still_open = months.filter(pl.col("pending") > 0)
    assert still_open["realised_auc"].is_nan().all() and still_open["estimated_auc"].is_not_nan().all()
    assert "still open, the estimate is" in card.performance_sentence()


def test_the_satisfaction_card_agrees_with_the_training_metrics_and_beats_the_naive_answer(
    satisfaction: SatisfactionTraining,
) -> None:
    card = satisfaction_card(satisfaction, resamples=50)
    by_engine = {r["engine"]: r for r in card.metrics.iter_rows(named=True)}
    for row in satisfaction.metrics.iter_rows(named=True):
        found = by_engine[row["engine"]]
        for metric in ("rps", "mae", "within_one", "log_loss"):
            assert found[metric] == pytest.approx(row[metric], abs=1e-12), (row["engine"], metric)
            assert found[f"{metric}_low"] <= found[metric] <= found[f"{metric}_high"]
    # The share answering low is the test period's (CSAT 1-2), and the generator's models know who.
    low = (satisfaction.test["csat"] <= 2).mean()
    assert by_engine["ordinal"]["low_share"] == pytest.approx(low)
    assert by_engine["ordinal"]["low_roc_auc"] > 0.6 and by_engine["naive"]["low_roc_auc"] == pytest.approx(0.5)
    assert card.best in ("ordinal", "lightgbm") and card.ready and card.rps_gain[1] > 0
    assert card.to_json()["gate"]["engine"] == card.best
    assert card.sentence().startswith("Ready to publish: ")


def test_a_large_test_period_is_carded_on_a_stratified_sample(
    trained: ConversionTraining, monkeypatch: pytest.MonkeyPatch
) -> None:
    from funnelmodels.models import card as module

    monkeypatch.setattr(module, "CARD_ROWS", 300)
    # With a comparison without the sensitive columns too: both are scored on the same sampled rows.
    card = conversion_card(trained, resamples=30, without=trained)
    overall = card.metrics.filter(pl.col("group") == "all")
    assert (overall["n"] <= 300 + 10).all()  # each stage and outcome rounded up
    assert card.rows.row(0, named=True)["test_rows"] == trained.test.height  # the counts stay whole
    assert f"of the {trained.test.height:,} test entries" in card.card_sample
    # The same training as its own comparison: no change in ROC AUC, the same ratios.
    assert card.without["auc_change"].abs().max() < 1e-12
    side = card.without_fairness
    assert ((side["selection_ratio"] - side["selection_ratio_without"]).abs() < 1e-12).all()


def test_a_comparison_without_the_sensitive_columns_must_be_on_the_same_rows(
    trained: ConversionTraining,
) -> None:
    other = replace(trained, test=trained.test.head(trained.test.height - 1))
    with pytest.raises(ModelError, match="tested on other rows"):
        conversion_card(trained, resamples=20, without=other)


def test_the_card_is_the_same_on_a_second_run(trained: ConversionTraining) -> None:
    # Seeded resamples: the same training and seed give the same card, to the byte of its JSON.
    first, second = conversion_card(trained, seed=3).to_json(), conversion_card(trained, seed=3).to_json()
    assert json.dumps(first, sort_keys=True, default=str) == json.dumps(second, sort_keys=True, default=str)
    assert first["gate"] == second["gate"] and first["gate"]["engine"] in ("lightgbm", "logit")
