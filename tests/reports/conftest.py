"""Fixtures of the report tests: every shipped report rendered once on the small synthetic dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from shared import once_per_run

from funnelmodels.data.synthetic import generate_dataset, write_dataset
from funnelmodels.reports import REPORTS, ReportRun, run_report


@pytest.fixture(scope="session")
def rendered(synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ReportRun]:
    """Every report run once per test run with its defaults on the small synthetic dataset (team performance: on
    one with teams; the sales report with a targets file); the test workers read the same runs."""

    def render(out: Path) -> None:
        teams = out / "teams-data"
        write_dataset(generate_dataset(1_500, seed=7, teams=True), teams)
        data_dirs = {name: synthetic_dir for name in REPORTS} | {"team_performance": teams}
        # The sales report forecasts July 2026 against a target for the value it will win.
        targets = out / "targets.csv"
        targets.write_text("kpi,period,target\nwon_value,2026-07,240000\n", encoding="utf-8")
        extra = {"sales_performance": {"targets_file": str(targets)}}
        for name in REPORTS:
            parameters = {"data_dir": str(data_dirs[name])} | extra.get(name, {})
            run_report(name, parameters, reports_dir=out / "reports")

    out = once_per_run(tmp_path_factory, "rendered", render)
    runs = {}
    for name in REPORTS:
        folder = out / "reports" / name / "latest"
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        runs[name] = ReportRun(name, "latest", folder, folder / "report.html", manifest)
    return runs
