"""The report command: bad parameters refused, earlier reports kept."""

from __future__ import annotations

from pathlib import Path

from commands import Cli


def test_report_command_refuses_bad_parameters_and_keeps_earlier_reports(
    cli: Cli, synthetic_dir: Path, tmp_path: Path
) -> None:
    reports = tmp_path / "reports"
    result = cli(
        "--quiet", "report", "sales_performance", "-p", "data_dir", str(synthetic_dir), "--reports-dir", str(reports)
    )
    assert result.returncode == 0, result.stderr
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
