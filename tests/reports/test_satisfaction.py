"""The customer-satisfaction report: what it names as the drivers."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from funnelmodels.data.synthetic import generate_dataset, write_dataset
from funnelmodels.reports import run_report


@pytest.mark.slow
def test_satisfaction_report_names_late_delivery_as_the_top_driver(tmp_path: Path) -> None:

    write_dataset(generate_dataset(4_000, seed=1, late_deliveries=True), tmp_path / "data")
    run = run_report("customer_satisfaction", {"data_dir": str(tmp_path / "data")}, reports_dir=tmp_path / "r")
    tables = run.folder / "tables"

    assert pl.read_csv(tables / "drivers.csv")["feature"][0] == "days_late"  # LightGBM
    assert pl.read_csv(tables / "coefficients.csv")["term"][0] == "days_late"  # the ordinal model
    assert "days_late" in run.html.read_text(encoding="utf-8")
