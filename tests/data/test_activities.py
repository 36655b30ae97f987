"""The owners and activities tables: read, mapped to the documented types, validated like the others."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from handmade import tiny_tables

from funnelmodels.data.io import load_dataset
from funnelmodels.data.validate import dataset_summary
from funnelmodels.errors import DataValidationError


def _activities(**overrides: list[object]) -> pl.DataFrame:
    rows = {
        "activity_id": [1, 2, 3, 4, 5, 6],
        "opportunity_id": [100, 100, 100, 101, 101, 101],
        "at": ["2025-01-05 10:00", "2025-01-06", "2025-01-07", "2025-02-01", "2025-02-02", "2025-02-03"],
        "type": ["Phone call", "E-mail", "Site visit", "Product Demo", "Quote sent", "LinkedIn InMail"],
        "duration_minutes": [12.0, None, 60.0, 45.0, None, None],
    }
    rows.update(overrides)
    return pl.DataFrame(rows)


def test_export_words_are_mapped_to_the_documented_types(write_tables: Callable[..., Path]) -> None:
    tables = tiny_tables() | {
        "activities": _activities(
            type=["Phone call", "E-mail", "Site visit", "Product Demo", "Quote sent", "Carrier pigeon"]
        )
    }
    data = load_dataset(write_tables(tables))
    types = data.tables["activities"].sort("activity_id")["type"].to_list()
    assert types == ["call", "email", "meeting", "demo", "proposal_sent", "other"]
    assert data.tables["activities"].sort("activity_id")["type_in_file"][0] == "Phone call"
    assert any("'Carrier pigeon' (1)" in note and "counted as other" in note for note in data.notes)


def test_bad_activities_are_all_reported_at_once(write_tables: Callable[..., Path]) -> None:
    tables = tiny_tables() | {
        "activities": _activities(
            opportunity_id=[100, 100, 100, 101, 101, 999], duration_minutes=[12.0, -5.0, 60.0, 45.0, None, 9_000.0]
        )
    }
    with pytest.raises(DataValidationError) as caught:
        load_dataset(write_tables(tables))
    text = str(caught.value)
    assert "activities" in text and "opportunity_id" in text and "not in the stage_events table" in text
    assert "duration_minutes" in text and "must be 0 or more" in text and "more than 24 hours" in text


def test_an_activity_of_another_customers_opportunity_is_refused(write_tables: Callable[..., Path]) -> None:
    events = tiny_tables()["stage_events"]
    owner_of_1 = events.filter(pl.col("opportunity_id") == 100)["customer_id"][0]
    other = next(c for c in tiny_tables()["customers"]["customer_id"] if c != owner_of_1)
    tables = tiny_tables() | {"activities": _activities(customer_id=[other, owner_of_1, owner_of_1, None, None, None])}
    with pytest.raises(DataValidationError, match="the opportunity belongs to another customer"):
        load_dataset(write_tables(tables))


def test_randomised_is_read_as_yes_or_no_and_a_word_is_refused(write_tables: Callable[..., Path]) -> None:
    ok = tiny_tables() | {"activities": _activities(randomised=["yes", "No", "TRUE", "0", "", "1"])}
    data = load_dataset(write_tables(ok))
    assert data.tables["activities"].sort("activity_id")["randomised"].to_list() == [
        True,
        False,
        True,
        False,
        None,
        True,
    ]
    bad = tiny_tables() | {"activities": _activities(randomised=["yes", "maybe", "no", "no", "no", "no"])}
    with pytest.raises(DataValidationError, match=r"randomised.*true or false"):
        load_dataset(write_tables(bad))


def test_activities_without_stage_events_are_refused(write_tables: Callable[..., Path]) -> None:
    tables = {"customers": tiny_tables()["customers"], "activities": _activities()}
    with pytest.raises(DataValidationError, match="stage_events table is missing, but activities refer"):
        load_dataset(write_tables(tables))


def test_owners_table_is_read_and_a_repeated_owner_refused(write_tables: Callable[..., Path]) -> None:
    owners = pl.DataFrame(
        {"owner": ["Ann", "Bo"], "team": ["east", "west"], "started_at": ["2024-01-01", "2024-06-01"]}
    )
    data = load_dataset(write_tables(tiny_tables() | {"owners": owners}))
    assert data.tables["owners"]["started_at"].dtype == pl.Datetime("us")
    assert data.tables["owners"]["started_at"][0] == datetime(2024, 1, 1)
    twice = pl.concat([owners, owners.head(1)])
    with pytest.raises(DataValidationError, match=r"owners.*duplicate"):
        load_dataset(write_tables(tiny_tables() | {"owners": twice}, "twice"))


def test_owners_the_owners_table_does_not_list_are_named(write_tables: Callable[..., Path]) -> None:
    events = tiny_tables()["stage_events"].with_columns(pl.Series("owner", ["Ann", "Ann", "Ann", "Bob", "Bob"]))
    owners = pl.DataFrame({"owner": ["Ann"], "team": ["east"]})
    data = load_dataset(write_tables(tiny_tables() | {"stage_events": events, "owners": owners}))
    said = [w for w in dataset_summary(data.tables, data.spec)["warnings"] if w.startswith("stage_events.owner")]
    assert said == [
        "stage_events.owner: 1 owner not in the owners table ('Bob'): their team, manager and region are unknown "
        "unless the stage events give them. Add them to the owners table, or check the spelling."
    ]


def test_an_empty_activity_type_is_reported_not_counted_as_other(write_tables: Callable[..., Path]) -> None:
    tables = tiny_tables() | {"activities": _activities(type=["call", None, "email", "demo", "meeting", "call"])}
    with pytest.raises(DataValidationError, match=r"activities\.type: must not be empty"):
        load_dataset(write_tables(tables))
