"""The customer-satisfaction report: what it names as the drivers."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest

from funnelmodels.data.synthetic import generate_dataset, write_dataset
from funnelmodels.reports import SatisfactionOverview, run_report, satisfaction_summary


@pytest.mark.slow
def test_satisfaction_report_names_late_delivery_as_the_top_driver(tmp_path: Path) -> None:

    write_dataset(generate_dataset(4_000, seed=1, late_deliveries=True), tmp_path / "data")
    run = run_report("customer_satisfaction", {"data_dir": str(tmp_path / "data")}, reports_dir=tmp_path / "r")
    tables = run.folder / "tables"

    assert pl.read_csv(tables / "drivers.csv")["feature"][0] == "days_late"  # LightGBM
    assert pl.read_csv(tables / "coefficients.csv")["term"][0] == "days_late"  # the ordinal model
    # The report names it in words, first, in its summary.
    assert (
        "What moves satisfaction most (per standard deviation, or against the reference group): days late lowers it"
        in run.html.read_text(encoding="utf-8")
    )


def test_the_summary_gives_level_change_three_drivers_and_the_risk_list() -> None:
    overview = SatisfactionOverview(
        trend=pl.DataFrame(
            {
                "period": [date(2026, 6, 1)],
                "csat_n": [560],
                "csat_mean": [3.404],
                "csat_low": [3.31],
                "csat_high": [3.5],
                "nps": [-26.5],
                "nps_low": [-33.4],
                "nps_high": [-19.6],
            }
        ),
        change={"csat_mean": {"before": 3.37, "after": 3.404, "change": 0.034, "p_value": 0.62}},
        change_text="",
        segments=None,
        as_of=datetime(2026, 7, 1),
    )
    coefficients = pl.DataFrame(
        {
            "term": ["refund_count", "last_nps missing", "region = south", "age", "log(1+frequency)"],
            "coef": [-1.4, -2.0, -0.2, 0.1, 0.15],
            "p_value": [0.001, 0.001, 0.01, 0.2, 0.03],
        }
    )
    at_risk = pl.DataFrame({"p_low": [0.92, 0.5]})
    assert satisfaction_summary(overview, coefficients, at_risk, scale_name="CSAT 1–5") == [
        "In June 2026, CSAT 1–5 averaged **3.40 (3.31–3.50)** over 560 answers and NPS was "
        "**−26.5 (−33.4 to −19.6)** (95% intervals).",
        "Against the period before: CSAT 1–5 3.37 → 3.40 (within chance, p = 0.62).",
        # The strongest significant effects; a missing-value indicator and p = 0.2 are not drivers.
        "What moves satisfaction most (per standard deviation, or against the reference group): number of refunds "
        "lowers it; region: south lowers it; earlier orders (log) raises it.",
        "The 2 customers most likely to give a low score if asked now are listed below, with reasons; the "
        "highest chance is 92%.",
    ]
