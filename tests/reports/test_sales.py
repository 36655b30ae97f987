"""The sales-performance report: the period it reports on and what it says about it."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from pathlib import Path

import polars as pl

from funnelmodels.data.io import load_dataset
from funnelmodels.reports import sales_performance


def test_the_latest_complete_period_by_default_and_a_note_when_asked_for_a_partial_one(
    synthetic_dir: Path,
) -> None:

    data = load_dataset(synthetic_dir)
    cut = datetime(2026, 6, 15)
    columns = {
        "customers": "created_at",
        "transactions": "ordered_at",
        "stage_events": "entered_at",
        "surveys": "responded_at",
    }
    half = dataclasses.replace(data, tables={n: f.filter(pl.col(columns[n]) < cut) for n, f in data.tables.items()})
    # The data ends on June 14: May is the latest complete month, compared with April.
    report = sales_performance(half)
    assert report.period == date(2026, 5, 1)
    assert not any("not complete" in n for n in report.notes)
    asked = sales_performance(half, period="2026-06")
    assert asked.period == date(2026, 6, 1)
    assert any("The month starting 2026-06-01 is not complete: the data ends on 2026-06-14" in n for n in asked.notes)
