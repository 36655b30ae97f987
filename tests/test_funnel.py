"""Funnel definitions pinned on hand-made opportunities whose answers are worked out below."""

from __future__ import annotations

from datetime import datetime

import polars as pl
import pytest
from handmade import FUNNEL_END, FUNNEL_SPEC, funnel_events

from funnelmodels.config import FunnelSpec
from funnelmodels.errors import ConfigError
from funnelmodels.funnel import add_snapshots, build_transitions, stale_losses


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


def test_bad_horizon_is_refused() -> None:

    with pytest.raises(ConfigError, match="horizon_days must be a positive"):
        build_transitions(funnel_events(), FUNNEL_SPEC, horizon_days=0, end=FUNNEL_END)


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

    inferred = stale_losses(_quiet_events(), STALE, end=FUNNEL_END).collect().sort("opportunity_id")
    assert inferred["opportunity_id"].to_list() == [10, 11]
    assert inferred["stage"].to_list() == ["lost", "lost"]
    assert inferred["entered_at"].to_list() == [datetime(2025, 3, 2), datetime(2025, 5, 31)]
    # Without the rule nothing is inferred.
    assert stale_losses(_quiet_events(), FUNNEL_SPEC, end=FUNNEL_END).collect().height == 0


def test_stale_rule_feeds_rates_and_open_opportunities() -> None:
    t = build_transitions(_quiet_events(), STALE, end=FUNNEL_END).collect().sort("opportunity_id", "entered_at")
    got = {
        (r["opportunity_id"], r["stage"]): (r["lost_at"], r["converted"], r["censored"])
        for r in t.iter_rows(named=True)
    }
    assert got[(10, "lead")] == (datetime(2025, 3, 2), False, False)
    assert got[(11, "lead")] == (datetime(2025, 5, 31), False, False)  # qualified came after 90 > 30 days
    assert got[(11, "qualified")] == (datetime(2025, 5, 31), False, False)
    assert got[(12, "lead")] == (None, False, True)  # open, 29 of 30 days seen
    # Without the rule opportunity 10 stays open for ever: its lead row has no loss.
    plain = build_transitions(_quiet_events(), FUNNEL_SPEC, end=FUNNEL_END).collect()
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

    rows = add_snapshots(transitions, FUNNEL_SPEC, end=FUNNEL_END, days=(7, 14)).collect()
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
        assert r["censored"] == ((FUNNEL_END - r["as_of"]).days < 30)
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
    assert add_snapshots(transitions, FUNNEL_SPEC, end=FUNNEL_END, days=(7, 14)).collect().equals(rows)


# --- cumulative conversion (Aalen–Johansen) ----------------------------------------------------


# A plain share of the finished entries would say 2/4 converted; the censored count as far as watched.
