"""The pipeline forecast against what happened, on exports where a lead that goes cold just stops."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from funnelmodels.data.io import load_dataset
from funnelmodels.models.backtest import PipelineBacktest, backtest_pipeline, dataset_before

MOMENTS = (datetime(2024, 7, 1), datetime(2024, 10, 1), datetime(2025, 1, 1))


@pytest.fixture(scope="module")
def cold_leads(cold_leads_dir: Path) -> PipelineBacktest:
    """100,000 customers over four years; no loss is ever recorded (every lost lead goes quiet).

    Large enough for the value won from a moment's open pipeline to be known to about ±4%:
    about 600–1,000 of its deals are won afterwards.
    """
    return backtest_pipeline(load_dataset(cold_leads_dir), MOMENTS, seed=0)


@pytest.mark.slow
def test_expected_value_of_the_open_pipeline_is_within_ten_percent_of_what_was_won(
    cold_leads: PipelineBacktest,
) -> None:
    moments = cold_leads.moments
    assert moments.height == 3
    # Before: every silent lead kept a fresh lead's win probability, and the expected value came
    # out 10-12x the value won (measured on this data). Now each moment is within 10%.
    for row in moments.iter_rows(named=True):
        assert 0.9 <= row["expected_value"] / row["realised_value"] <= 1.1, row
        assert row["realised_wins"] > 500


@pytest.mark.slow
def test_win_probability_matches_the_realised_win_rate_at_every_age(cold_leads: PipelineBacktest) -> None:
    from statsmodels.stats.proportion import proportion_confint

    at = cold_leads.by_age.filter(pl.col("moment") == MOMENTS[-1])
    assert at["age"].to_list() == ["≤30 days", "31–90 days", "91–180 days", ">180 days"]
    for row in at.iter_rows(named=True):
        assert row["deals"] > 1000
        # Four bands at once, and the model's own error besides the sampling error: a 99% interval
        # (at 95% a difference in the last digit of the purchase sums moved two bands just outside).
        low, high = proportion_confint(row["wins"], row["deals"], alpha=0.01, method="wilson")
        assert low <= row["mean_win_probability"] <= high, row
    # The old leads dominate the open pipeline and almost never win.
    old = at.filter(pl.col("age") == ">180 days").row(0, named=True)
    young = at.filter(pl.col("age") == "≤30 days").row(0, named=True)
    assert old["deals"] > 3 * young["deals"] and old["mean_win_probability"] < young["mean_win_probability"] / 100


def test_dataset_before_keeps_only_the_past(synthetic_dir: Path) -> None:
    data = load_dataset(synthetic_dir)
    moment = datetime(2025, 6, 1)
    past = dataset_before(data, moment)
    for name, column in (
        ("customers", "created_at"),
        ("transactions", "ordered_at"),
        ("stage_events", "entered_at"),
        ("surveys", "responded_at"),
    ):
        assert past.tables[name][column].max() < moment
        assert past.tables[name].height == data.tables[name].filter(pl.col(column) < moment).height
