"""Evaluation measures on hand-made predictions whose answers are worked out in the comments."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

from funnelmodels.errors import ModelError
from funnelmodels.evaluation import (
    binary_metrics,
    expected_calibration_error,
    lift_table,
    out_of_fold_level_rate,
    out_of_time_split,
    reliability_table,
    single_feature_auc,
    suspected_leaks,
)


def test_expected_calibration_error_by_hand() -> None:
    # Bin [0.1, 0.2): p = 0.1, 0.1 with outcomes 0, 1 → gap |0.1 - 0.5| = 0.4 on 2 rows.
    # Bin [0.9, 1.0]: p = 0.9, 0.9 with outcomes 1, 1 → gap 0.1 on 2 rows. ECE = (0.8 + 0.2) / 4.
    y = np.array([0, 1, 1, 1])
    p = np.array([0.1, 0.1, 0.9, 0.9])
    assert expected_calibration_error(y, p) == pytest.approx(0.25)
    table = reliability_table(y, p)
    assert table["n"].to_list() == [2, 2]
    assert table["observed_rate"].to_list() == [0.5, 1.0]
    assert table["bin_low"].to_list() == pytest.approx([0.1, 0.9])


def test_binary_metrics_on_a_perfect_ranking() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.2, 0.3, 0.7, 0.8])
    m = binary_metrics(y, p)
    assert m["roc_auc"] == 1.0 and m["pr_auc"] == 1.0
    assert m["brier"] == pytest.approx((0.04 + 0.09 + 0.09 + 0.04) / 4)
    assert m["log_loss"] == pytest.approx(-(np.log(0.8) + np.log(0.7) + np.log(0.7) + np.log(0.8)) / 4)
    assert m["base_rate"] == 0.5
    assert np.isnan(binary_metrics(np.array([1, 1]), np.array([0.5, 0.6]))["roc_auc"])


def test_lift_and_cumulative_gains_by_decile() -> None:
    # 20 rows, 4 positives at the 4 highest scores: decile 1 (2 rows) rate 1.0, lift 1/0.2 = 5.
    p = np.linspace(1, 0, 20)
    y = np.array([1, 1, 1, 1] + [0] * 16)
    table = lift_table(y, p)
    assert table["n"].to_list() == [2] * 10
    assert table["positives"].to_list()[:3] == [2, 2, 0]
    assert table["lift"][0] == pytest.approx(5.0)
    assert table["cumulative_gain"].to_list()[:3] == [0.5, 1.0, 1.0]


def test_out_of_time_split_trains_on_the_past() -> None:
    start = datetime(2025, 1, 1)
    times = pl.Series([start + timedelta(days=i) for i in range(100)])
    split = out_of_time_split(times, test_share=0.2, validation_share=0.25)
    # Test from the lower 80% quantile of days 0..99: day floor(0.8·99) = 79 → 21 rows; validation
    # from the lower 75% quantile of days 0..78: day floor(0.75·78) = 58 → 21 rows; train 58 rows.
    assert (int(split.train.sum()), int(split.validation.sum()), int(split.test.sum())) == (58, 21, 21)
    assert times.filter(split.train).max() < times.filter(split.validation).min()
    assert times.filter(split.validation).max() < times.filter(split.test).min()
    with pytest.raises(ModelError, match="needs history"):
        out_of_time_split(pl.Series([start] * 10))


def test_single_feature_auc_by_hand_with_and_without_strata() -> None:

    values = np.array([1.0, 2.0, 3.0, 1.0, 2.0, np.nan])
    y = np.array([0, 0, 1, 1, 0, 1])
    # Positives {3, 1} against negatives {1, 2, 2} (the NaN row is left out): 3 beats all three,
    # 1 ties one (½) and loses two → 3.5 of 6 pairs.
    assert single_feature_auc(values, y) == pytest.approx(3.5 / 6)
    # Stratum a (rows 0-2): 3 beats 1 and 2 → 2/2; stratum b (rows 3-4): 1 loses to 2 → 0/1.
    # Weighted by pairs: (1·2 + 0·1) / 3 = 2/3.
    strata = np.array(["a", "a", "a", "b", "b", "b"])
    assert single_feature_auc(values, y, strata) == pytest.approx(2 / 3)
    # Direction-free: a feature that ranks the other way scores the same.
    assert single_feature_auc(-values, y, strata) == pytest.approx(2 / 3)


def test_a_category_filled_only_for_converters_is_flagged_as_leakage() -> None:

    rng = np.random.default_rng(0)
    n = 2_000
    converted = rng.random(n) < 0.3
    frame = pl.DataFrame(
        {
            "converted": converted,
            # Filled in after the deal is won (e.g. the contract type): empty for everyone else.
            "contract": pl.Series([rng.choice(["annual", "monthly"]) if c else None for c in converted]),
            # An honest category: a little signal, nowhere near a perfect ranking.
            "region": pl.Series(np.where(rng.random(n) < 0.5 + 0.1 * converted, "north", "south")),
            # An id-like text column: every value once, so out of fold it says nothing.
            "reference": [f"ref-{i}" for i in range(n)],
        }
    )
    leaks = suspected_leaks(frame, ["contract", "region", "reference"], "converted")
    assert list(leaks) == ["contract"] and leaks["contract"] > 0.99


def test_out_of_fold_level_rate_by_hand() -> None:
    # Two folds by construction is not possible through the seed, so check the defining property:
    # each row's score is its level's rate among the rows of *other* folds.
    values = pl.Series(["a", "a", "a", "b", "b", None, None, None])
    y = np.array([1, 1, 0, 0, 0, 1, 1, 1], dtype=float)
    rate = out_of_fold_level_rate(values, y, folds=2, seed=3)
    fold = np.random.default_rng(3).integers(0, 2, values.len())
    levels = values.fill_null("missing").to_list()
    for i in range(values.len()):
        others = [j for j in range(values.len()) if fold[j] != fold[i] and levels[j] == levels[i]]
        expected = np.mean(y[others]) if others else y.mean()
        assert rate[i] == pytest.approx(expected), i
