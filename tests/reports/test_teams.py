"""The team-performance report's measures: tables per owner and team, the action list, what it says without owners."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from funnelmodels.data.io import Dataset, load_dataset
from funnelmodels.data.synthetic import SyntheticData, generate_dataset, write_dataset
from funnelmodels.errors import ConfigError
from funnelmodels.reports.teams import team_performance


def test_without_owners_the_report_says_what_to_add(tiny: Any) -> None:
    report = team_performance(tiny)
    assert report.performance is None
    assert report.summary() == [report.missing["owners"]]
    assert "owner column" in report.missing["owners"] and "sales_agent" in report.missing["owners"]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[SyntheticData, Dataset]:
    """2,000 customers with teams: enough for the tables and the action list (the statistics have their own)."""
    data = generate_dataset(2_000, seed=0, teams=True)
    root = tmp_path_factory.mktemp("teams-small")
    write_dataset(data, root)
    return data, load_dataset(root)


@pytest.fixture(scope="module")
def report(small: tuple[SyntheticData, Dataset]) -> Any:
    return team_performance(small[1], period="2026-Q2", period_length="quarter")


def test_period_tables_count_the_deals_closed_in_the_period(report: Any, small: tuple[SyntheticData, Dataset]) -> None:
    data, _ = small
    events = data.stage_events
    closed = events.filter(
        pl.col("stage").is_in(["won", "lost"])
        & pl.col("entered_at").is_between(pl.datetime(2026, 4, 1), pl.datetime(2026, 7, 1), closed="left")
    )
    by_owner = dict(closed.filter(pl.col("stage") == "won").group_by("owner").len().iter_rows())
    table = dict(report.period_table.select("owner", "won").iter_rows())
    assert {k: v for k, v in table.items() if v} == by_owner
    revenue = closed.filter(pl.col("stage") == "won")["amount"].sum()
    assert report.team_table["revenue"].sum() == pytest.approx(revenue)


def test_action_list_ranks_each_owners_open_deals_and_says_why(report: Any) -> None:
    actions = report.actions
    assert actions.height > 0
    for _, deals in actions.group_by("owner", maintain_order=True):
        values = deals["expected_value"].drop_nulls().to_list()
        assert values == sorted(values, reverse=True)
    said = actions.filter(pl.col("next_step") != "")
    assert said.height > 0
    assert said["next_step"].str.contains(r"are associated with [+-]\d+ points at this stage").all()
    # A suggestion is only made from an association clear of zero at the deal's stage (a positive one, or a
    # meeting after three calls without one).
    clear = report.effects.filter((pl.col("adjusted_low") > 0) | (pl.col("adjusted_high") < 0))
    for stage, effect in said.select("stage", "next_step_effect").iter_rows():
        assert clear.filter((pl.col("stage") == stage) & ((pl.col("adjusted") - effect).abs() < 1e-9)).height


def test_summary_says_fair_and_raw_and_labels_associations(report: Any) -> None:
    text = " ".join(report.summary())
    assert "expected wins" in text and "raw win rate" in text
    assert "an association, not a controlled experiment" in text
    assert 3 <= len(report.summary()) <= 5


def test_one_team_and_an_unknown_team(report: Any, small: tuple[SyntheticData, Dataset]) -> None:
    only = report.only("smb")
    assert set(only.performance.reps["team"]) == {"smb"} and set(only.actions["team"]) == {"smb"}
    everyone = report.performance.reps.filter(pl.col("team") == "smb")
    assert only.performance.reps.equals(everyone)  # judged against everyone's leads, as before
    with pytest.raises(ConfigError, match="team 'nope' is not in the data; its teams are: enterprise, inside"):
        team_performance(small[1], team="nope")
