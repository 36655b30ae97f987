"""Fixtures of the report tests: every shipped report rendered once on the small synthetic dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

from funnelmodels.reports import REPORTS, ReportRun, run_report


@pytest.fixture(scope="session")
def rendered(synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ReportRun]:
    """Every report run once with its defaults on the small synthetic dataset."""
    out = tmp_path_factory.mktemp("reports")
    return {name: run_report(name, {"data_dir": str(synthetic_dir)}, reports_dir=out) for name in REPORTS}
