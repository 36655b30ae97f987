"""The report command: bad parameters refused, earlier reports kept."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
from commands import Cli

from funnelmodels.reports.registry import REPORTS


def test_report_command_refuses_bad_parameters_and_keeps_earlier_reports(
    cli: Cli, synthetic_dir: Path, tmp_path: Path
) -> None:
    reports = tmp_path / "reports"
    result = cli("report", "sales_performance", "-p", "data_dir", str(synthetic_dir), "--reports-dir", str(reports))
    assert result.returncode == 0, result.stderr
    # Only our own lines on stderr, each stamped with the time: the kernel's noise goes to its log.
    assert "IPKernelApp" not in result.stderr and "without encryption" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[ *\d+\.\ds\] ", line) for line in lines), lines
    page = reports / "sales_performance" / "latest" / "report.html"
    before = page.read_bytes()
    result = cli(
        "report",
        "sales_performance",
        "-p",
        "period",
        "2031-01",
        "-p",
        "data_dir",
        str(synthetic_dir),
        "--reports-dir",
        str(reports),
    )
    assert result.returncode == 1 and "period '2031-01' has no data" in result.stderr
    result = cli(
        "report", "sales_performance", "-p", "data_dir", str(tmp_path / "missing"), "--reports-dir", str(reports)
    )
    assert result.returncode == 1 and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert page.read_bytes() == before
    result = cli("report", "--reports-dir", str(reports))
    assert result.returncode == 1 and "name one report, or use --all" in result.stderr


def _notebook(folder: Path, name: str, source: str) -> None:
    book = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('data_dir: str = ""\noutput_dir: str = ""')
    params.metadata["tags"] = ["parameters"]
    book.cells = [params, nbformat.v4.new_code_cell(source)]
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(book, folder / f"{name}.ipynb")


def test_report_all_runs_every_report_when_one_fails(cli: Cli, tmp_path: Path) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    names = list(REPORTS)
    for name in names:
        _notebook(notebooks, name, "raise ValueError('no luck')" if name == names[0] else "print('fine')")
    reports = tmp_path / "reports"

    result = cli("--quiet", "report", "--all", "--notebooks-dir", str(notebooks), "--reports-dir", str(reports))

    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"1 of {len(names)} reports failed:\n  {names[0]}: report {names[0]} failed in cell" in result.stderr
    assert "ValueError: no luck" in result.stderr
    # The others ran and are listed on stdout, each with its page.
    for name in names[1:]:
        assert f"{name}: {reports / name / 'latest' / 'report.html'}" in result.stdout
        assert (reports / name / "latest" / "report.html").is_file()
    assert not (reports / names[0] / "latest").exists()
    failed = json.loads((reports / names[0] / "failed" / "latest" / "manifest.json").read_text())
    assert failed["status"] == "failed" and "ValueError: no luck" in failed["error"]
    assert (reports / names[0] / "failed" / "latest" / "kernel.log").is_file()


def test_quiet_and_json_logs_after_the_command(cli: Cli, synthetic_dir: Path, tmp_path: Path) -> None:
    # --quiet and --log-format after the command too; errors are still said, as JSON lines.
    quiet = cli("validate", str(synthetic_dir), "--quiet", "--log-format", "json")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    refused = cli("report", "nothing", "--log-format", "json", "--reports-dir", str(tmp_path / "reports"))
    record = json.loads(refused.stderr.strip().splitlines()[-1])
    assert record["level"] == "error" and "no report 'nothing'" in record["message"] and "time" in record
