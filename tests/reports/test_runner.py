"""Report runs end to end: papermill, nbconvert HTML, manifest, atomic outputs, a real browser."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import nbformat
import pytest
from browser import browser
from places import ROOT

from funnelmodels.data.io import load_dataset
from funnelmodels.errors import ConfigError, ReportError
from funnelmodels.reports import ReportRun, run_report

ARTIFACTS = ROOT / "test-artifacts"


def test_every_report_writes_html_notebook_manifest_and_tables(
    rendered: dict[str, ReportRun], synthetic_dir: Path
) -> None:
    expected_tables = {
        "sales_performance": {"kpis", "changes", "year_over_year", "segments", "funnel", "cumulative", "pipeline"},
        "stage_conversion": {"metrics", "importance", "odds_ratios", "waiting", "cumulative"},
        "customer_satisfaction": {"trend", "metrics", "coefficients", "drivers", "at_risk"},
    }
    fingerprint = load_dataset(synthetic_dir).fingerprint()
    for name, run in rendered.items():
        files = {p.name for p in run.folder.iterdir()}
        assert {"report.html", "report.ipynb", "manifest.json", "tables"} <= files, name
        assert {p.stem for p in (run.folder / "tables").iterdir()} == expected_tables[name]
        manifest = json.loads((run.folder / "manifest.json").read_text())
        assert manifest["parameters"]["data_dir"] == str(synthetic_dir.resolve())
        assert manifest["data_fingerprint_sha256"] == fingerprint
        assert {"polars", "lightgbm", "statsmodels", "papermill"} <= set(manifest["packages"])
        assert manifest["duration_seconds"] > 0 and "git_commit" in manifest
        assert not list(run.folder.parent.glob(".*partial*"))
        # What the run holds, checkable: status, the data it read, every file with its digest.
        assert manifest["status"] == "succeeded"
        tables = load_dataset(synthetic_dir).tables
        assert {t: v["rows"] for t, v in manifest["data"]["tables"].items()} == {t: f.height for t, f in tables.items()}
        listed = {f["path"]: f for f in manifest["files"]}
        on_disk = {
            p.relative_to(run.folder).as_posix()
            for p in run.folder.rglob("*")
            if p.is_file() and p.name not in ("manifest.json", ".funnelmodels-output.json")
        }
        assert set(listed) == on_disk and "report.html" in listed
        html = (run.folder / "report.html").read_bytes()
        assert listed["report.html"]["sha256"] == hashlib.sha256(html).hexdigest()
        assert listed["report.html"]["bytes"] == len(html)
    period = json.loads((rendered["sales_performance"].folder / "manifest.json").read_text())
    assert (period["period"], period["period_length"]) == ("2026-06-01", "month")  # the resolved period


def test_html_is_self_contained_and_hides_code(rendered: dict[str, ReportRun]) -> None:
    for run in rendered.values():
        page = run.html.read_text()
        assert not re.search(r"""(src|href)=["']https?://""", page), "no resource from another host"
        assert not re.search(r"""import[^;]*from\s*["']https?://""", page)
        assert "data:image/png;base64" in page, "charts are embedded"
        assert "import funnelmodels as fm" not in page, "stakeholder view hides code"
    assert 'class="fm-tile"' in rendered["sales_performance"].html.read_text()


def test_same_inputs_give_identical_tables(rendered: dict[str, ReportRun], synthetic_dir: Path, tmp_path: Path) -> None:
    for name in ("sales_performance", "stage_conversion"):
        again = run_report(name, {"data_dir": str(synthetic_dir)}, reports_dir=tmp_path)
        for table in (rendered[name].folder / "tables").iterdir():
            assert (again.folder / "tables" / table.name).read_bytes() == table.read_bytes(), (name, table.name)


def _notebook_dir(tmp_path: Path, source: str) -> Path:
    folder = tmp_path / "notebooks"
    folder.mkdir(parents=True, exist_ok=True)
    book = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('data_dir: str = ""  # unused\noutput_dir: str = ""  # set by the runner')
    params.metadata["tags"] = ["parameters"]
    book.cells = [params, nbformat.v4.new_code_cell("print('working')"), nbformat.v4.new_code_cell(source)]
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(book, folder / "flaky.ipynb")
    return folder


@pytest.mark.parametrize(
    ("source", "message"),
    [
        # Cell 4: papermill adds the injected-parameters cell before ours.
        ("raise ValueError('boom')", r"failed in cell 4: ValueError: boom"),
        ("import os; os._exit(1)", "did not finish"),
    ],
)
def test_a_failed_run_keeps_the_previous_report(tmp_path: Path, source: str, message: str) -> None:
    good = _notebook_dir(tmp_path / "good", "print('fine')")
    reports = tmp_path / "reports"
    first = run_report("flaky", reports_dir=reports, notebooks_dir=good)
    before = {p.name: p.read_bytes() for p in first.folder.iterdir() if p.is_file()}
    bad = _notebook_dir(tmp_path / "bad", source)
    with pytest.raises(ReportError, match=message) as info:
        run_report("flaky", reports_dir=reports, notebooks_dir=bad)
    assert {p.name: p.read_bytes() for p in first.folder.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in (reports / "flaky").iterdir()) == ["failed", "latest"]
    assert info.value.notebook and Path(info.value.notebook).is_file()


def test_bad_names_and_parameters_are_refused(synthetic_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no report 'nope'"):
        run_report("nope", reports_dir=tmp_path)
    with pytest.raises(ConfigError, match="not allowed"):
        run_report("../sales_performance", reports_dir=tmp_path)
    with pytest.raises(ConfigError, match="not allowed"):
        run_report("sales_performance", {"period": "../../etc"}, reports_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"has no parameter \['perod'\]"):
        run_report("sales_performance", {"perod": "2026-01"}, reports_dir=tmp_path)
    with pytest.raises(ReportError, match="period '2031-01' has no data"):
        run_report("sales_performance", {"data_dir": str(synthetic_dir), "period": "2031-01"}, reports_dir=tmp_path)
    assert not (tmp_path / "sales_performance" / "2031-01").exists()


@pytest.mark.slow
def test_reports_render_in_a_realbrowser(rendered: dict[str, ReportRun], tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    for name, run in rendered.items():
        url = run.html.resolve().as_uri()
        dom = browser(url, "--dump-dom", user_dir=tmp_path / f"{name}-dom")
        assert dom.returncode == 0, dom.stderr[-2000:]
        assert "<img" in dom.stdout, "charts render"
        console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
        assert not console, console
        shot = ARTIFACTS / f"{name}.png"
        result = browser(url, f"--screenshot={shot}", "--window-size=1280,2400", user_dir=tmp_path / f"{name}-shot")
        assert result.returncode == 0 and shot.stat().st_size > 20_000
    assert (
        "fm-tile"
        in browser(
            rendered["sales_performance"].html.resolve().as_uri(), "--dump-dom", user_dir=tmp_path / "tiles"
        ).stdout
    )


# --- the notebooks themselves ----------------------------------------------------------------------
