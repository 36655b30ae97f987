"""Fixtures of the report tests: every shipped report rendered once on the small synthetic dataset."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from funnelmodels.reports import REPORTS, ReportRun, run_report


@pytest.fixture(scope="session")
def rendered(
    synthetic_dir: Path, teams_data: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, ReportRun]:
    """Every report run once with its defaults on the small synthetic dataset (team performance: with teams)."""
    out = tmp_path_factory.mktemp("reports")
    data_dirs = {name: synthetic_dir for name in REPORTS} | {"team_performance": teams_data(0)[1].config.root}
    return {name: run_report(name, {"data_dir": str(data_dirs[name])}, reports_dir=out) for name in REPORTS}
