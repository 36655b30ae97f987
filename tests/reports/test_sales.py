"""The sales-performance report: the period it reports on and what it says about it."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from funnelmodels.data.io import load_dataset
from funnelmodels.kpis import SALES_KPIS
from funnelmodels.models.predict import score_from_history
from funnelmodels.reports import SalesReport, sales_performance


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
    assert any("June 2026 is not complete: the data ends on 14 June 2026" in n for n in asked.notes)


def _report(**overrides: object) -> SalesReport:
    changes = pl.DataFrame(
        {
            "kpi": list(SALES_KPIS),
            "value": [110_000.0, 500.0, 220.0, 40.0, 260.0, 300.0, 30.0, 70.0, 0.30],
            "previous": [100_000.0, 480.0, 208.3, 50.0, 240.0, 290.0, 20.0, 80.0, 0.20],
            "change": [10_000.0, 20.0, 11.7, -10.0, 20.0, 10.0, 10.0, -10.0, 0.10],
            "change_pct": [0.10, 0.0417, 0.056, -0.2, 0.083, 0.0345, 0.5, -0.125, 0.5],
            "p_value": [None, 0.53, None, 0.32, 0.39, 0.68, 0.10, 0.44, 0.02],
        }
    )
    yoy = changes.with_columns(pl.lit(-0.05).alias("change_pct"), pl.lit(-5_000.0).alias("change"))
    fields: dict[str, object] = {
        "period": date(2026, 6, 1),
        "period_length": "month",
        "kpis": None,
        "changes": changes,
        "year_over_year": yoy,
        "segments": None,
        "funnel": None,
        "cumulative": None,
        "time_to_close": None,
        "pipeline": pl.DataFrame(
            {
                "stage": ["lead", "proposal"],
                "open_deals": [80, 20],
                "pipeline_amount": [400_000.0, 100_000.0],
                "expected_value": [40_000.0, 50_000.0],
            }
        ),
        "attainment": pl.DataFrame(
            {"kpi": ["net_revenue"], "value": [110_000.0], "target": [100_000.0], "attainment": [1.1]}
        ),
        "notes": [],
        "segment_changes": pl.DataFrame(
            {
                "region": ["north", "south"],
                "kpi": ["net_revenue", "net_revenue"],
                "change": [-2_000.0, 12_000.0],
                "change_pct": [-0.04, 0.24],
            }
        ),
        "next_target": 120_000.0,
        "segment": "region",
    }
    return SalesReport(**(fields | overrides))  # type: ignore[arg-type]


def test_the_summary_says_level_changes_target_pipeline_and_the_biggest_mover() -> None:
    said = _report().summary()
    assert said == [
        "Net revenue in June 2026: **$110.0k**, up 10.0% on May 2026 and down 5.0% on June 2025.",
        "300 customers bought (40 new accounts, 260 returning); average sale $220.00.",
        # 30/(30+70) = 30%; +10 points with p = 0.02: significant, and a higher win rate is good.
        "Win rate **30.0%** (30 won, 70 lost), +10.0 pts on May 2026 — a significant improvement.",
        "Targets reached: net revenue 110% of $100.0k.",
        # Expected 40k + 50k = 90k against next month's 120k target: 75%.
        "Open pipeline at the period's end: 100 deals worth $500.0k, expected to bring **$90.0k** "
        "(value × win probability), 75% of next period's revenue target.",
    ]
    # Five sentences at most: the biggest mover is the sixth and is left out; without targets it shows.
    alone = _report(attainment=None).summary()
    assert alone[-1] == "Biggest mover: region **south**, net revenue +$12.0k (+24%) on May 2026."
    # A win-rate change within chance says so, and no verdict of better or worse.
    calm = _report(changes=_report().changes.with_columns(pl.lit(0.56).alias("p_value")))  # type: ignore[union-attr]
    assert "+10.0 pts on May 2026 — within chance (p = 0.56)." in calm.summary()[2]


def test_the_deals_to_work_are_the_open_deals_worth_most(synthetic_dir: Path) -> None:
    data = load_dataset(synthetic_dir)
    report = sales_performance(data, period="2026-05")
    deals = report.top_deals
    assert deals is not None and deals.height == 15
    assert deals["expected_value"].is_sorted(descending=True)
    assert np.allclose(deals["expected_value"], deals["amount"] * deals["win_probability"])
    # The same deals as ranking every open deal at the period's end (1 June) by hand.
    everyone = score_from_history(data, datetime(2026, 6, 1)).sort("expected_value", descending=True)
    assert deals["expected_value"][0] == pytest.approx(everyone["expected_value"][0])
    assert set(deals["opportunity_id"]) <= set(everyone["opportunity_id"])
    assert deals["expected_value"].sum() <= report.pipeline["expected_value"].sum()  # type: ignore[index]
    # Days in the stage are counted to the period's end.
    first = everyone.filter(pl.col("opportunity_id") == deals["opportunity_id"][0]).row(0, named=True)
    assert deals["days_in_stage_so_far"][0] == (datetime(2026, 6, 1) - first["entered_at"]).days


def test_with_a_trained_model_the_forecast_is_widened_by_its_backtest(
    synthetic_dir: Path, trained_cli: tuple[Path, str]
) -> None:
    models, _ = trained_cli
    data = load_dataset(synthetic_dir)
    report = sales_performance(data, model_dir=str(models))
    assert report.forecast is not None and report.next_label == "July 2026"
    assert report.forecast_backtest.startswith("Backtest: on the last 8 months the 80% range held")
    alone = sales_performance(data)
    assert alone.forecast is not None
    # The same open deals; the trained model's interval carries the common swing its backtest measured.
    assert report.forecast.total["open_deals"] == alone.forecast.total["open_deals"]
    assert report.forecast.total["spread"] > 0 and alone.forecast.total["spread"] == 0
    views = report.forecast_views()
    assert {"segments", "deals", "slipped", "calibration", "aalen_johansen"} <= set(views)
    assert views["deals"].height <= 15
    bullet = next(line for line in report.summary() if line.startswith("Open pipeline"))
    assert "Forecast for July 2026: **$" in bullet and "80% between" in bullet
