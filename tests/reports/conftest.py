"""Fixtures of the report tests: every shipped report rendered once on the small synthetic dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

from funnelmodels.data.synthetic import generate_dataset, write_dataset
from funnelmodels.reports import REPORTS, ReportRun, run_report


@pytest.fixture(scope="session")
def rendered(synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ReportRun]:
    """Every report run once with its defaults on the small synthetic dataset (team performance: one with teams)."""
    out = tmp_path_factory.mktemp("reports")
    teams = tmp_path_factory.mktemp("teams_small")
    write_dataset(generate_dataset(1_500, seed=7, teams=True), teams)
    data_dirs = {name: synthetic_dir for name in REPORTS} | {"team_performance": teams}
    return {name: run_report(name, {"data_dir": str(data_dirs[name])}, reports_dir=out) for name in REPORTS}
