"""Report runs end to end: papermill, nbconvert HTML, manifest, atomic outputs, a real browser."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from browser import browser

from funnelmodels.data.io import load_dataset
from funnelmodels.errors import ConfigError, ReportError
from funnelmodels.reports import REPORTS, ReportRun, notebooks_folder, run_report

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def rendered(synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ReportRun]:
    out = tmp_path_factory.mktemp("reports")
    return {name: run_report(name, {"data_dir": str(synthetic_dir)}, reports_dir=out) for name in REPORTS}


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
        assert not list(run.folder.parent.glob(".*partial"))


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

NOTEBOOKS = sorted(notebooks_folder().glob("*.ipynb"))
PARAMETER_LINE = re.compile(r"^[a-z_][a-z0-9_]*: (str|int|float|bool) = [^#=]+  # [^=]+$")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_contract(path: Path) -> None:
    book = nbformat.read(path, as_version=4)
    tagged = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged parameters"
    for line in tagged[0].source.splitlines():
        assert PARAMETER_LINE.match(line), f"parameter line {line!r} is not `name: type = value  # help`"
    for cell in book.cells:
        if cell.cell_type == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, "outputs stripped"
            tree = ast.parse(cell.source)
            assert not [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)], "no def/class"
    assert {p.stem for p in NOTEBOOKS} == set(REPORTS)


@pytest.mark.slow
def test_nbval_runs_every_notebook_on_small_data(synthetic_dir: Path, tmp_path: Path) -> None:
    import papermill as pm

    for path in NOTEBOOKS:
        pm.execute_notebook(
            str(path), str(tmp_path / path.name), parameters={"data_dir": str(synthetic_dir)}, prepare_only=True
        )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-lax",
            "-p",
            "no:cacheprovider",
            "-q",
            "--rootdir",
            str(tmp_path),
            *[str(tmp_path / p.name) for p in NOTEBOOKS],
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert re.search(r"\d+ passed", result.stdout)


@pytest.mark.slow
def test_satisfaction_report_names_late_delivery_as_the_top_driver(tmp_path: Path) -> None:
    from funnelmodels.data.synthetic import generate_dataset, write_dataset

    write_dataset(generate_dataset(4_000, seed=1, late_deliveries=True), tmp_path / "data")
    run = run_report("customer_satisfaction", {"data_dir": str(tmp_path / "data")}, reports_dir=tmp_path / "r")
    tables = run.folder / "tables"
    import polars as pl

    assert pl.read_csv(tables / "drivers.csv")["feature"][0] == "days_late"  # LightGBM
    assert pl.read_csv(tables / "coefficients.csv")["term"][0] == "days_late"  # the ordinal model
    assert "days_late" in run.html.read_text(encoding="utf-8")


def test_the_latest_complete_period_by_default_and_a_note_when_asked_for_a_partial_one(
    synthetic_dir: Path,
) -> None:
    import dataclasses
    from datetime import date, datetime

    import polars as pl

    from funnelmodels.reports import sales_performance

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
    assert any("The month starting 2026-06-01 is not complete: the data ends on 2026-06-14" in n for n in asked.notes)
