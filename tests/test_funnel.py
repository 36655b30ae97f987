"""Funnel definitions pinned on hand-made opportunities whose answers are worked out below."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl
import pytest

from funnelmodels.config import FunnelSpec
from funnelmodels.funnel import build_transitions
from funnelmodels.rates import cohort_table, conversion_table, end_to_end_rate, time_to_convert_table

SPEC = FunnelSpec(horizon_days=30)
END = datetime(2025, 6, 30)


def _events() -> pl.LazyFrame:
    rows = [
        # 1: straight through; relationship → proposal takes 39 days (> 30: not converted).
        (1, 1, "lead", "2025-01-01"),
        (1, 1, "qualified", "2025-01-11"),
        (1, 1, "relationship", "2025-01-21"),
        (1, 1, "proposal", "2025-03-01"),
        (1, 1, "won", "2025-03-11"),
        # 2: lost at the lead stage after 10 days.
        (2, 2, "lead", "2025-01-05"),
        (2, 2, "lost", "2025-01-15"),
        # 3: skips qualified (lead converts), then lost.
        (3, 3, "lead", "2025-02-01"),
        (3, 3, "relationship", "2025-02-10"),
        (3, 3, "lost", "2025-03-01"),
        # 4: re-enters lead and qualified, still open at the end (its horizon is over).
        (4, 4, "lead", "2025-03-01"),
        (4, 4, "qualified", "2025-03-05"),
        (4, 4, "lead", "2025-03-10"),
        (4, 4, "qualified", "2025-03-20"),
        (4, 4, "relationship", "2025-03-25"),
        # 5: open, entered 10 days before the end: censored.
        (5, 5, "lead", "2025-06-20"),
        # 6: lost after 5 days, its horizon over: observed.
        (6, 6, "lead", "2025-05-10"),
        (6, 6, "lost", "2025-05-15"),
        # 7: lost after 3 days, but its 30 days are not over: censored like any other recent row.
        (7, 7, "lead", "2025-06-15"),
        (7, 7, "lost", "2025-06-18"),
    ]
    return (
        pl.DataFrame(rows, schema=["opportunity_id", "customer_id", "stage", "entered_at"], orient="row")
        .with_columns(pl.col("entered_at").str.to_datetime("%Y-%m-%d"))
        .lazy()
    )


@pytest.fixture
def transitions() -> pl.LazyFrame:
    return build_transitions(_events(), SPEC, end=END)


def test_one_row_per_entry_into_a_non_terminal_stage(transitions: pl.LazyFrame) -> None:
    t = transitions.collect()
    assert t.height == 15
    assert set(t["stage"]) == {"lead", "qualified", "relationship", "proposal"}
    opp4 = t.filter(pl.col("opportunity_id") == 4).sort("entered_at")
    assert opp4["stage"].to_list() == ["lead", "qualified", "lead", "qualified", "relationship"]
    assert opp4["entry"].to_list() == [1, 1, 2, 2, 1]
    assert opp4["next_stage"].to_list() == ["qualified", "lead", "qualified", "relationship", None]


def test_converted_and_censored_by_the_definitions(transitions: pl.LazyFrame) -> None:
    t = transitions.collect().sort("opportunity_id", "entered_at")
    got = {
        (r["opportunity_id"], r["stage"], r["entry"]): (r["converted"], r["censored"]) for r in t.iter_rows(named=True)
    }
    assert got == {
        (1, "lead", 1): (True, False),
        (1, "qualified", 1): (True, False),
        (1, "relationship", 1): (False, False),  # proposal came after 39 days
        (1, "proposal", 1): (True, False),
        (2, "lead", 1): (False, False),  # lost
        (3, "lead", 1): (True, False),  # skipping a stage is converting
        (3, "relationship", 1): (False, False),
        (4, "lead", 1): (True, False),
        (4, "qualified", 1): (True, False),  # back to lead, but relationship within 20 days
        (4, "lead", 2): (True, False),
        (4, "qualified", 2): (True, False),
        (4, "relationship", 1): (False, False),  # open, but its 30 days are over
        (5, "lead", 1): (False, True),  # open, 10 days of 30 seen
        (6, "lead", 1): (False, False),  # lost, horizon over: observed
        (7, "lead", 1): (False, True),  # lost, but the horizon is not over: censored
    }
    assert t.filter(pl.col("opportunity_id") == 1)["days_in_stage"].to_list() == [10.0, 10.0, 39.0, 10.0]
    assert t.filter(pl.col("opportunity_id") == 5)["days_in_stage"].to_list() == [10.0]


def test_conversion_table_with_wilson_intervals(transitions: pl.LazyFrame) -> None:
    table = conversion_table(transitions, SPEC)
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
    transitions = build_transitions(both.drop("region"), SPEC, end=END).join(
        events.lazy().select("opportunity_id", "region"), on="opportunity_id"
    )
    table = conversion_table(transitions, SPEC, by="region").filter(pl.col("stage") == "lead")
    assert table["region"].to_list() == ["north", "south"]
    assert table["rate"].to_list() == [0.75, 0.25]
    # Pearson chi-square on [[15, 5], [5, 15]]: statistic 10.0, p = 0.00157.
    assert table["p_value"][0] == pytest.approx(0.001565, abs=1e-5)


def test_time_to_convert_by_kaplan_meier(transitions: pl.LazyFrame) -> None:
    table = time_to_convert_table(transitions, SPEC, quantiles=(0.25, 0.5))
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
    table = cohort_table(transitions, SPEC)
    assert table["cohort"].dt.month().to_list() == [1, 2, 3, 5, 6]
    assert table["opportunities"].to_list() == [2, 1, 1, 1, 2]
    assert table["won"].to_list() == [1, 0, 0, 0, 0]
    assert table["lost"].to_list() == [1, 1, 0, 1, 1]
    assert table["open"].to_list() == [0, 0, 1, 0, 1]
    assert table["reached_qualified"].to_list() == [1, 0, 1, 0, 0]
    assert table["win_rate"].to_list() == [0.5, 0.0, None, 0.0, 0.0]


def test_bad_horizon_is_refused() -> None:
    from funnelmodels.errors import ConfigError

    with pytest.raises(ConfigError, match="horizon_days must be a positive"):
        build_transitions(_events(), SPEC, horizon_days=0, end=END)


def test_rates_agree_with_the_generators_truth(synthetic_dir) -> None:  # type: ignore[no-untyped-def]
    from funnelmodels.data.io import load_dataset

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
    from funnelmodels.rates import time_to_close

    # Opportunity 1 won after 69 days (01-01 → 03-11); 2 lost after 10; 3 lost after 28; 4 open 121 days;
    # 5 open 10 days; 6 lost after 5; 7 lost after 3. One event among 7: S(69) = 1 − 1/2 (two still at risk:
    # opportunities 1 and 4), so the median is not reached (S never below 1/2) and the count is right.
    close = time_to_close(_events(), SPEC, end=END)
    assert (close["opportunities"], close["won"]) == (7, 1)
    assert close["median_days"] is None
    won_early = pl.concat(
        [
            _events().collect(),
            pl.DataFrame(
                {"opportunity_id": [4], "customer_id": [4], "stage": ["won"], "entered_at": [datetime(2025, 3, 31)]}
            ),
        ]
    )
    # Now 4 is won after 30 days too: at risk at 30 days are 1 and 4 → S(30) = 1/2; at 69: 0 → median 69.
    assert time_to_close(won_early.lazy(), SPEC, end=END)["median_days"] == 69.0


# --- exports without lost events: the stale rule ------------------------------------------------

STALE = FunnelSpec(horizon_days=30, stale_after_days=60)


def _quiet_events() -> pl.LazyFrame:
    rows = [
        (10, 10, "lead", "2025-01-01"),  # silent from Jan 1: lost 60 days later, on Mar 2
        (11, 11, "lead", "2025-01-01"),  # a 90-day gap, then activity: not lost in the gap …
        (11, 11, "qualified", "2025-04-01"),  # … but silent after Apr 1: lost on May 31
        (12, 12, "lead", "2025-06-01"),  # silent for 29 days at the end: still open
        (13, 13, "lead", "2025-01-01"),  # won: untouched
        (13, 13, "won", "2025-01-20"),
    ]
    return (
        pl.DataFrame(rows, schema=["opportunity_id", "customer_id", "stage", "entered_at"], orient="row")
        .with_columns(pl.col("entered_at").str.to_datetime("%Y-%m-%d"))
        .lazy()
    )


def test_stale_rule_turns_trailing_silence_into_a_loss() -> None:
    from funnelmodels.funnel import stale_losses

    inferred = stale_losses(_quiet_events(), STALE, end=END).collect().sort("opportunity_id")
    assert inferred["opportunity_id"].to_list() == [10, 11]
    assert inferred["stage"].to_list() == ["lost", "lost"]
    assert inferred["entered_at"].to_list() == [datetime(2025, 3, 2), datetime(2025, 5, 31)]
    # Without the rule nothing is inferred.
    assert stale_losses(_quiet_events(), SPEC, end=END).collect().height == 0


def test_stale_rule_feeds_rates_and_open_opportunities() -> None:
    t = build_transitions(_quiet_events(), STALE, end=END).collect().sort("opportunity_id", "entered_at")
    got = {
        (r["opportunity_id"], r["stage"]): (r["lost_at"], r["converted"], r["censored"])
        for r in t.iter_rows(named=True)
    }
    assert got[(10, "lead")] == (datetime(2025, 3, 2), False, False)
    assert got[(11, "lead")] == (datetime(2025, 5, 31), False, False)  # qualified came after 90 > 30 days
    assert got[(11, "qualified")] == (datetime(2025, 5, 31), False, False)
    assert got[(12, "lead")] == (None, False, True)  # open, 29 of 30 days seen
    # Without the rule opportunity 10 stays open for ever: its lead row has no loss.
    plain = build_transitions(_quiet_events(), SPEC, end=END).collect()
    assert plain.filter(pl.col("opportunity_id") == 10)["lost_at"].to_list() == [None]


def test_stale_rule_is_applied_at_the_scoring_moment() -> None:
    """At a past moment, only what was silent *then* is stale (no peeking at later activity)."""
    mid_april = datetime(2025, 4, 15)
    before = _quiet_events().filter(pl.col("entered_at") < mid_april)
    t = build_transitions(before, STALE, end=mid_april).collect()
    last = t.sort("entered_at").group_by("opportunity_id", maintain_order=True).last()
    still_open = last.filter(pl.col("exited_at").is_null() & pl.col("lost_at").is_null())
    # 10 went stale on Mar 2; 11 moved to qualified on Apr 1 (14 days of silence): open.
    assert sorted(still_open["opportunity_id"].to_list()) == [11]
    mid_march = datetime(2025, 3, 15)
    t = build_transitions(_quiet_events().filter(pl.col("entered_at") < mid_march), STALE, end=mid_march).collect()
    # On Mar 15 opportunity 11 had been silent 73 days: by the rule it was lost then.
    assert t.filter(pl.col("opportunity_id") == 11)["lost_at"].to_list() == [datetime(2025, 3, 2)]


# --- snapshots of open rows --------------------------------------------------------------------


def test_snapshots_see_open_rows_again_with_labels_as_of_then(transitions: pl.LazyFrame) -> None:
    from funnelmodels.funnel import add_snapshots

    rows = add_snapshots(transitions, SPEC, end=END, days=(7, 14)).collect()
    entries = rows.filter(pl.col("days_in_stage_so_far") == 0)
    assert entries.height == 15 and (entries["as_of"] == entries["entered_at"]).all()
    snaps = rows.filter(pl.col("days_in_stage_so_far") > 0)
    assert snaps.height > 0
    day = 86_400_000_000
    for r in snaps.iter_rows(named=True):
        waited = (r["as_of"] - r["entered_at"]).total_seconds() / 86_400
        assert waited == pytest.approx(r["days_in_stage_so_far"]) and 0 < waited <= 14
        # Still in the stage at the snapshot: nothing has happened yet.
        for column in ("exited_at", "lost_at", "converted_at"):
            assert r[column] is None or r[column] > r["as_of"], (r, column)
        # Converted: a later stage within 30 days of the snapshot; censored: those 30 days not over.
        soon = r["converted_at"] is not None and (r["converted_at"] - r["as_of"]).total_seconds() * 1e6 <= 30 * day
        assert r["converted"] == soon
        assert r["censored"] == ((END - r["as_of"]).days < 30)
    # At most one snapshot per interval (0, 7] and (7, 14] of each entry.
    per_entry = snaps.group_by("opportunity_id", "stage", "entry").agg(
        (pl.col("days_in_stage_so_far") <= 7).sum().alias("early"),
        (pl.col("days_in_stage_so_far") > 7).sum().alias("late"),
    )
    assert per_entry["early"].max() == 1 and per_entry["late"].max() <= 1
    # Opportunity 4's relationship entry (Mar 25, open to the end) is seen twice, not converted, not censored.
    four = snaps.filter((pl.col("opportunity_id") == 4) & (pl.col("stage") == "relationship"))
    assert four.height == 2 and not four["converted"].any() and not four["censored"].any()
    # Opportunity 3's lead (Feb 1) converted after 9 days: its first-week snapshot is a conversion.
    three = snaps.filter(
        (pl.col("opportunity_id") == 3) & (pl.col("stage") == "lead") & (pl.col("days_in_stage_so_far") <= 7)
    )
    assert three["converted"].to_list() == [True]
    # The same snapshots on every run.
    assert add_snapshots(transitions, SPEC, end=END, days=(7, 14)).collect().equals(rows)


# --- cumulative conversion (Aalen–Johansen) ----------------------------------------------------


def test_cumulative_incidence_by_hand() -> None:
    from funnelmodels.stats import cumulative_incidence

    # Six entries: converted at 2 and 5, lost at 3 and 8, censored at 3 and 10.
    # t=2: 6 at risk → C = 1/6, S = 5/6.  t=3: 5 at risk, one lost → L = 5/6·1/5 = 1/6, S = 2/3.
    # t=5: 3 at risk → C = 1/6 + 2/3·1/3 = 7/18, S = 4/9.  t=8: 2 at risk → L = 1/6 + 4/9·1/2 = 7/18.
    times = [2, 3, 3, 5, 8, 10]
    causes = [1, 2, 0, 1, 2, 0]
    out = cumulative_incidence(times, causes, [1, 4, 10])
    assert out["converted"] == pytest.approx([0, 1 / 6, 7 / 18])
    assert out["lost"] == pytest.approx([0, 1 / 6, 7 / 18])
    assert out["at_risk"].tolist() == [6, 3, 1]
    assert np.isnan(out["converted_low"][0])  # nothing has happened yet: no interval
    assert out["converted_low"][2] < 7 / 18 < out["converted_high"][2]
    # A plain share of the finished entries would say 2/4 converted; the censored count as far as watched.


def test_cumulative_incidence_intervals_cover_the_truth() -> None:
    """Competing exponential risks with known curves: the 95% intervals cover about 95% of the time."""
    from funnelmodels.stats import cumulative_incidence

    rng = np.random.default_rng(0)
    rate_won, rate_lost, day = 0.02, 0.01, 60.0
    total = rate_won + rate_lost
    truth = (1 - np.exp(-total * day)) * np.array([rate_won, rate_lost]) / total
    covered = np.zeros(2)
    runs = 300
    for _ in range(runs):
        event = rng.exponential(1 / total, 300)
        cause = np.where(rng.random(300) < rate_won / total, 1, 2)
        censor = rng.uniform(0, 150, 300)
        times = np.round(np.minimum(event, censor))  # whole days: ties, as in real data
        out = cumulative_incidence(times, np.where(event <= censor, cause, 0), [day])
        covered += [
            out["converted_low"][0] <= truth[0] <= out["converted_high"][0],
            out["lost_low"][0] <= truth[1] <= out["lost_high"][0],
        ]
    assert ((covered / runs) > 0.92).all() and ((covered / runs) < 0.98).all(), covered / runs


def test_cumulative_conversion_covers_the_generators_all_time_conversion(synthetic) -> None:  # type: ignore[no-untyped-def]
    """The generator converts within the horizon or never: a stage's all-time conversion is the mean
    true probability of every row that entered it, the recent (censored) ones included."""
    from funnelmodels.funnel import data_end
    from funnelmodels.rates import cumulative_conversion_table

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
    from funnelmodels.rates import historical_win_probability

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


def test_funnel_summary_says_when_every_row_is_still_within_its_horizon(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from funnelmodels.cli.funnel import funnel_summary
    from funnelmodels.config import load_config
    from funnelmodels.data.io import Dataset

    events = _events().collect()
    customers = pl.DataFrame({"customer_id": list(range(1, 8)), "created_at": [datetime(2025, 1, 1)] * 7})
    config = load_config(tmp_path)
    dataset = Dataset(config=config, tables={"customers": customers, "stage_events": events})
    summary = funnel_summary(dataset, horizon_days=400)  # a horizon longer than the data
    lead = summary["segments"][0]["stages"][0]
    assert (lead["entered"], lead["observed"], lead["rate"]) == (8, 0, None)
    assert "every one of the 8 entries is still within its 400-day horizon" in lead["note"]
    curves = {(r["stage"], r["day"]): r for r in summary["segments"][0]["cumulative"]}
    assert curves[("lead", 30.0)]["converted"] > 0  # the cumulative view still answers


def test_an_empty_segment_value_is_missing_not_a_value_called_unknown(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from funnelmodels.cli.funnel import funnel_summary
    from funnelmodels.config import load_config
    from funnelmodels.data.io import Dataset

    events = _events().collect()
    customers = pl.DataFrame(
        {
            "customer_id": list(range(1, 8)),
            "created_at": [datetime(2025, 1, 1)] * 7,
            "plan": ["gold", "unknown", None, "gold", "unknown", None, "gold"],
        }
    )
    dataset = Dataset(config=load_config(tmp_path), tables={"customers": customers, "stage_events": events})
    summary = funnel_summary(dataset, by="plan")
    # Opportunities 3 and 6 have no plan; 2 and 5 a plan the CRM calls "unknown": two different segments.
    assert sorted(b["segment"] for b in summary["segments"]) == ["(missing)", "gold", "unknown"]
