"""Rates of the funnel pinned on hand-made opportunities and on the generator's truth."""

from __future__ import annotations

from datetime import datetime

import polars as pl
import pytest
from handmade import FUNNEL_END, FUNNEL_SPEC, funnel_events

from funnelmodels.config import FunnelSpec
from funnelmodels.data.io import load_dataset
from funnelmodels.funnel import build_transitions, data_end
from funnelmodels.rates import (
    cohort_table,
    conversion_table,
    cumulative_conversion_table,
    end_to_end_rate,
    historical_win_probability,
    time_to_close,
    time_to_convert_table,
)


def test_conversion_table_with_wilson_intervals(transitions: pl.LazyFrame) -> None:
    table = conversion_table(transitions, FUNNEL_SPEC)
    assert table["stage"].to_list() == ["lead", "qualified", "relationship", "proposal"]
    lead = table.row(0, named=True)
    assert (lead["entered"], lead["observed"], lead["converted"], lead["dropped"], lead["censored"]) == (8, 6, 4, 2, 2)
    assert lead["rate"] == pytest.approx(4 / 6)
    # Wilson 95%, by hand: centre (p + z²/2n)/(1 + z²/n) = 0.6016, half-width 0.3016.
    assert lead["rate_low"] == pytest.approx(0.3000, abs=1e-4)
    assert lead["rate_high"] == pytest.approx(0.9032, abs=1e-4)
    assert table["rate"].to_list()[1:] == [1.0, 0.0, 1.0]


def test_end_to_end_is_the_product_of_stage_rates() -> None:
    table = pl.DataFrame(
        {
            "stage": ["lead", "qualified", "relationship", "proposal"],
            "observed": [100, 50, 40, 20],
            "converted": [50, 40, 20, 10],
            "rate": [0.5, 0.8, 0.5, 0.5],
        }
    )
    out = end_to_end_rate(table, FunnelSpec())
    assert out["rate"] == pytest.approx(0.1)
    # Delta method on log: var = 0.5/50 + 0.2/40 + 0.5/20 + 0.5/10 = 0.09; exp(log 0.1 ± 1.96·0.3).
    assert out["rate_low"] == pytest.approx(0.1 * 2.718281828 ** (-1.959964 * 0.3), rel=1e-4)
    assert out["rate_high"] == pytest.approx(0.1 * 2.718281828 ** (1.959964 * 0.3), rel=1e-4)


def test_segments_and_a_test_of_difference() -> None:
    events = pl.DataFrame(
        {
            "opportunity_id": list(range(40)),
            "customer_id": list(range(40)),
            "stage": ["lead"] * 40,
            "entered_at": [datetime(2025, 1, 1)] * 40,
            "region": ["north"] * 20 + ["south"] * 20,
        }
    )
    # north converts 15 of 20, south 5 of 20.
    nxt = events.filter((pl.col("opportunity_id") < 15) | pl.col("opportunity_id").is_between(20, 24))
    nxt = nxt.with_columns(pl.lit("qualified").alias("stage"), pl.lit(datetime(2025, 1, 5)).alias("entered_at"))
    both = pl.concat([events, nxt]).lazy()
    transitions = build_transitions(both.drop("region"), FUNNEL_SPEC, end=FUNNEL_END).join(
        events.lazy().select("opportunity_id", "region"), on="opportunity_id"
    )
    table = conversion_table(transitions, FUNNEL_SPEC, by="region").filter(pl.col("stage") == "lead")
    assert table["region"].to_list() == ["north", "south"]
    assert table["rate"].to_list() == [0.75, 0.25]
    # Pearson chi-square on [[15, 5], [5, 15]]: statistic 10.0, p = 0.00157.
    assert table["p_value"][0] == pytest.approx(0.001565, abs=1e-5)


def test_time_to_convert_by_kaplan_meier(transitions: pl.LazyFrame) -> None:
    table = time_to_convert_table(transitions, FUNNEL_SPEC, quantiles=(0.25, 0.5))
    lead = table.filter(pl.col("stage") == "lead")
    # Lead rows: converted after 10, 9, 4, 10 days; censored: lost after 10, 5 and 3, open after 10.
    # KM: S(4) = 6/7, S(9) = 6/7·4/5 = 0.686, S(10) = 0.686·2/4 = 0.343 → Q1 = 9, median = 10.
    assert lead["n"][0] == 8 and lead["events"][0] == 4
    assert lead["days"].to_list() == [9.0, 10.0]
    # A plain mean of the finished ones would say 8.25 days; KM does not ignore the censored.
    # Relationship: converted after 39 days; lost after 19 and open after 97 are censored.
    # S(39) = 1/2 exactly, so Q1 = 39 and the median (S strictly below 1/2) is not reached.
    relationship = table.filter(pl.col("stage") == "relationship")
    assert relationship["days"].to_list() == [39.0, None]


def test_cohorts_by_month_of_entry(transitions: pl.LazyFrame) -> None:
    table = cohort_table(transitions, FUNNEL_SPEC)
    assert table["cohort"].dt.month().to_list() == [1, 2, 3, 5, 6]
    assert table["opportunities"].to_list() == [2, 1, 1, 1, 2]
    assert table["won"].to_list() == [1, 0, 0, 0, 0]
    assert table["lost"].to_list() == [1, 1, 0, 1, 1]
    assert table["open"].to_list() == [0, 0, 1, 0, 1]
    assert table["reached_qualified"].to_list() == [1, 0, 1, 0, 0]
    assert table["win_rate"].to_list() == [0.5, 0.0, None, 0.0, 0.0]


def test_rates_agree_with_the_generators_truth(synthetic_dir) -> None:  # type: ignore[no-untyped-def]

    ds = load_dataset(synthetic_dir)
    truth = pl.read_parquet(synthetic_dir / "ground_truth" / "conversion.parquet")
    transitions = build_transitions(ds.lazy("stage_events"), ds.spec).collect()
    observed = transitions.filter(~pl.col("censored")).join(truth, on=["opportunity_id", "stage", "entered_at"])
    expected = observed.group_by("stage").agg(pl.col("true_probability").mean().alias("expected"))
    table = conversion_table(transitions.lazy(), ds.spec).join(expected, on="stage")
    assert table.height == 4
    for row in table.iter_rows(named=True):
        assert row["rate_low"] <= row["expected"] <= row["rate_high"], row


def test_time_to_close_by_kaplan_meier() -> None:

    # Opportunity 1 won after 69 days (01-01 → 03-11); 2 lost after 10; 3 lost after 28; 4 open 121 days;
    # 5 open 10 days; 6 lost after 5; 7 lost after 3. One event among 7: S(69) = 1 − 1/2 (two still at risk:
    # opportunities 1 and 4), so the median is not reached (S never below 1/2) and the count is right.
    close = time_to_close(funnel_events(), FUNNEL_SPEC, end=FUNNEL_END)
    assert (close["opportunities"], close["won"]) == (7, 1)
    assert close["median_days"] is None
    won_early = pl.concat(
        [
            funnel_events().collect(),
            pl.DataFrame(
                {"opportunity_id": [4], "customer_id": [4], "stage": ["won"], "entered_at": [datetime(2025, 3, 31)]}
            ),
        ]
    )
    # Now 4 is won after 30 days too: at risk at 30 days are 1 and 4 → S(30) = 1/2; at 69: 0 → median 69.
    again = time_to_close(won_early.lazy(), FUNNEL_SPEC, end=FUNNEL_END)
    assert again["median_days"] == 69.0
    # The won deals themselves took 30 and 69 days: median 49.5, 90th percentile (nearest) 69.
    assert (again["won_median_days"], again["won_p90_days"]) == (49.5, 69.0)
    assert close["won_median_days"] == close["won_p90_days"] == 69.0


def test_cumulative_conversion_covers_the_generators_all_time_conversion(synthetic) -> None:  # type: ignore[no-untyped-def]
    """The generator converts within the horizon or never: a stage's all-time conversion is the mean
    true probability of every row that entered it, the recent (censored) ones included."""

    events = synthetic.stage_events.lazy()
    end = data_end(events)
    table = cumulative_conversion_table(build_transitions(events, synthetic.spec, end=end), synthetic.spec, end=end)
    truth = synthetic.ground_truth["conversion"].group_by("stage").agg(pl.col("true_probability").mean())
    long_run = table.filter(pl.col("day") == 365).join(truth, on="stage")
    assert long_run.height == 4
    for row in long_run.iter_rows(named=True):
        assert row["converted_low"] <= row["true_probability"] <= row["converted_high"], row
    # Converted and lost never add to more than everyone, at any day.
    assert (table["converted"] + table["lost"] <= 1 + 1e-12).all()
    assert (
        table.filter(pl.col("stage") == "end to end")["entered"][0]
        == synthetic.stage_events["opportunity_id"].n_unique()
    )


def test_historical_win_probability_knows_how_long_a_deal_has_waited() -> None:

    spec = FunnelSpec(stages=("lead", "won"), horizon_days=30)
    rows = [
        (1, 1, "lead", "2025-01-01"), (1, 1, "won", "2025-01-06"),  # won after 5 days
        (2, 2, "lead", "2025-01-01"), (2, 2, "won", "2025-01-21"),  # won after 20
        (3, 3, "lead", "2025-01-01"), (3, 3, "lost", "2025-01-11"),  # lost after 10
        (4, 4, "lead", "2025-01-01"), (4, 4, "lost", "2025-02-10"),  # lost after 40
        (5, 5, "lead", "2025-03-01"),  # open, waited 15 days on Mar 16
        (6, 6, "lead", "2025-02-19"),  # open, waited 25 days
    ]  # fmt: skip
    events = (
        pl.DataFrame(rows, schema=["opportunity_id", "customer_id", "stage", "entered_at"], orient="row")
        .with_columns(pl.col("entered_at").str.to_datetime("%Y-%m-%d"))
        .lazy()
    )
    as_of = datetime(2025, 3, 16)
    history = build_transitions(events, spec, end=as_of)
    opened = history.filter(pl.col("opportunity_id").is_in([5, 6])).sort("opportunity_id").collect()
    win = historical_win_probability(history, opened, spec, end=as_of, as_of=as_of)
    # Curves (5 and 6 censored at 15 and 25): C(5) = 1/6; L(10) = 5/6·1/5 = 1/6; C(20) = 1/6 + 2/3·1/3 = 7/18;
    # L(40) = 1/6 + 4/9 = 11/18. Ever converted: 7/18.
    # Waited 15: (7/18 − 1/6) / (1 − 1/6 − 1/6) = 1/3 — of the deals that waited 15 days, one in three won.
    # Waited 25: (7/18 − 7/18) / (8/18) = 0 — no deal that waited 25 days ever won.
    assert win == pytest.approx([1 / 3, 0.0])
