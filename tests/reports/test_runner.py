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
        "sales_performance": {
            "kpis",
            "changes",
            "year_over_year",
            "segments",
            "funnel",
            "cumulative",
            "pipeline",
            "top_deals",
            "forecast",
            "forecast_deals",
        },
        "stage_conversion": {
            "metrics",
            "importance",
            "odds_ratios",
            "waiting",
            "cumulative",
            "model_card",
            "calibration",
        },
        "customer_satisfaction": {
            "trend",
            "metrics",
            "coefficients",
            "drivers",
            "at_risk",
            "model_card",
            "calibration",
        },
        "team_performance": {
            "actions",
            "period",
            "funnel_by_team",
            "activity_mix",
            "activity_effects",
            "owners",
            "teams",
        },
    }
    for name, run in rendered.items():
        data_dir = Path(json.loads((run.folder / "manifest.json").read_text())["parameters"]["data_dir"])
        fingerprint = load_dataset(data_dir).fingerprint()
        files = {p.name for p in run.folder.iterdir()}
        assert {"report.html", "report.ipynb", "manifest.json", "tables"} <= files, name
        assert {p.stem for p in (run.folder / "tables").iterdir()} == expected_tables[name]
        manifest = json.loads((run.folder / "manifest.json").read_text())
        assert data_dir == (synthetic_dir.resolve() if name != "team_performance" else data_dir)
        assert manifest["data_fingerprint_sha256"] == fingerprint
        assert {"polars", "lightgbm", "statsmodels", "papermill"} <= set(manifest["packages"])
        assert manifest["duration_seconds"] > 0 and "git_commit" in manifest
        assert not list(run.folder.parent.glob(".*partial*"))
        # What the run holds, checkable: status, the data it read, every file with its digest.
        assert manifest["status"] == "succeeded"
        tables = load_dataset(data_dir).tables
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
        assert page.count("<svg") >= 2 and 'src="data:image/png' not in page, "charts are inline SVG"
        assert re.search(r'<svg [^>]*aria-label="[^"]+"[^>]*role="img"', page), "charts have alternative text"
        assert "import funnelmodels as fm" not in page, "stakeholder view hides code"
        assert page.count("funnelmodels: sortable and filterable tables") == 1, "one copy of the script"
        cells = re.findall(r"<td[^>]*>([^<]*)</td>", page)
        assert not [c for c in cells if re.fullmatch(r"[\d,]{4,}\.\d%", c)], "a count shown as a share"
        assert not [c for c in cells if re.fullmatch(r"\d+(\.\d+)?e[+-]\d+", c)], "no scientific notation"
        assert page.index('class="fm-header"') < page.index('class="fm-summary"') < page.index("<h2")
    assert 'class="fm-tile"' in rendered["sales_performance"].html.read_text()


def test_same_inputs_give_identical_tables(rendered: dict[str, ReportRun], synthetic_dir: Path, tmp_path: Path) -> None:
    # The sales report: KPI sums, the forecast's distribution. The models' determinism is held by
    # tests/models (training twice; the model card twice).
    for name in ("sales_performance",):
        given = rendered[name].manifest["parameters"]
        same = {key: given[key] for key in ("targets_file",) if given.get(key)}
        again = run_report(name, {"data_dir": str(synthetic_dir)} | same, reports_dir=tmp_path)
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
    assert sorted(p.name for p in (reports / "flaky").iterdir()) == ["failed", "index.html", "latest"]
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


PRINTABLE_WIDTH = 703
"""CSS pixels across an A4 page inside 12 mm margins (186 mm at 96 px per inch); Letter is wider."""

_MEASURE = """<script>
document.querySelectorAll('details').forEach(function(d){d.open=true;});
var width=document.documentElement.clientWidth, wide=[];
document.querySelectorAll('table, svg, img, .fm-tiles').forEach(function(e){
  var r=e.getBoundingClientRect(); if(r.width>0 && r.right>width+1){wide.push(e.tagName+' '+Math.round(r.right));}});
var tiles=document.querySelectorAll('.fm-tile').length, sortable=document.querySelectorAll('th[data-sort]').length;
document.body.setAttribute('data-check', JSON.stringify({width:width, wide:wide, tiles:tiles, sortable:sortable,
  filters:document.querySelectorAll('input.fm-filter').length, title:document.title}));
</script>"""


def _printed(page: str) -> str:
    """The page as the printer lays it out: print rules applied on screen, every section open, then measured."""
    page = page.replace("@media print", "@media all")
    at = page.rfind("</body>")
    return page[:at] + _MEASURE + page[at:]


@pytest.mark.slow
def test_reports_read_and_print_in_a_real_browser(rendered: dict[str, ReportRun], tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    expected_titles = {
        "sales_performance": "Sales performance · June 2026",
        "stage_conversion": "Stage conversion · Data up to 30 June 2026",
        "customer_satisfaction": "Customer satisfaction · Data up to 30 June 2026",
        "team_performance": "Team performance · June 2026",
    }
    for name, run in rendered.items():
        # Laid out at the width of a printed page: no table, chart or row of tiles is wider.
        check = tmp_path / f"{name}-print.html"
        check.write_text(_printed(run.html.read_text(encoding="utf-8")), encoding="utf-8")
        dom = browser(
            check.as_uri(), f"--window-size={PRINTABLE_WIDTH},1000", "--dump-dom", user_dir=tmp_path / f"{name}-dom"
        )
        assert dom.returncode == 0, dom.stderr[-2000:]
        console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
        assert not console, console
        found = re.search(r'data-check="([^"]*)"', dom.stdout)
        assert found, "the page's scripts ran"
        facts = json.loads(found.group(1).replace("&quot;", '"'))
        assert facts["width"] <= PRINTABLE_WIDTH and not facts["wide"], (name, facts)
        assert facts["title"] == expected_titles[name]
        assert facts["sortable"] > 0 and facts["filters"] > 0, "tables sort, long ones filter"
        assert '<div class="fm-summary"' in dom.stdout and "<svg" in dom.stdout
        # Printed for real: a PDF of several pages.
        pdf = ARTIFACTS / f"{name}.pdf"
        printed = browser(
            run.html.resolve().as_uri(), f"--print-to-pdf={pdf}", "--no-pdf-header-footer", user_dir=tmp_path / name
        )
        assert printed.returncode == 0 and pdf.read_bytes().startswith(b"%PDF")
        assert len(re.findall(rb"/Type\s*/Page\b", pdf.read_bytes())) >= 2
        shot = ARTIFACTS / f"{name}.png"
        result = browser(
            run.html.resolve().as_uri(),
            f"--screenshot={shot}",
            "--window-size=1280,2400",
            user_dir=tmp_path / f"{name}-shot",
        )
        assert result.returncode == 0 and shot.stat().st_size > 20_000
    # The sales report's forecast: the fan chart against the target, the chance of reaching it, the backtest.
    sales = rendered["sales_performance"].html.read_text(encoding="utf-8")
    assert "Won value forecast for July 2026, by week" in sales and "target $240.0k" in sales
    assert re.search(r"Forecast for July 2026: <b>\$[\d.]+k</b> won, 80% between", sales)
    assert re.search(r"a \d+% chance of reaching the \$240.0k target", sales)
    assert "Chance of reaching the target" in sales and "The forecast has not been backtested here" in sales
    # The stage-conversion report's model card: the verdict, intervals, the calibration panels.
    conversion = rendered["stage_conversion"].html.read_text(encoding="utf-8")
    assert re.search(r"<strong>(Ready|Not ready) to publish\.</strong>", conversion)
    assert "Calibration on the test period: curve and the band of a calibrated model" in conversion
    assert "Naive Bayes on stage and source" in conversion and "Miscalibration beyond noise" in conversion
    satisfied = rendered["customer_satisfaction"].html.read_text(encoding="utf-8")
    assert re.search(r"<strong>(Ready|Not ready) to publish\.</strong>", satisfied)
    assert "ROC AUC of P(low)" in satisfied and "the band a calibrated model stays in" in satisfied
    # The sales report's tiles: every KPI of the period, two for the pipeline.
    assert sales.count('class="fm-tile"') == 9 + 2


def test_html_size_budget_and_no_row_level_data(rendered: dict[str, ReportRun]) -> None:
    for name, run in rendered.items():
        size = run.html.stat().st_size
        assert size <= 2_000_000, f"{name}: {size:,} bytes is over the 2 MB budget at the demo size"
    # No row-level data: the at-risk list and example tables are capped, and no table holds
    # more rows than html_table shows (60) — the CSV tables hold the rest.
    for run in rendered.values():
        for body in re.findall(r"<tbody>(.*?)</tbody>", run.html.read_text(encoding="utf-8"), re.DOTALL):
            assert body.count("<tr>") <= 60


# --- the notebooks themselves ----------------------------------------------------------------------


def test_each_run_is_kept_under_its_period_and_listed_in_the_index(rendered: dict[str, ReportRun]) -> None:
    sales = rendered["sales_performance"].folder.parent
    # The default run resolves June 2026: kept as 2026-06 beside latest, the same report.
    kept = sales / "2026-06"
    assert (kept / "report.html").read_bytes() == (sales / "latest" / "report.html").read_bytes()
    assert json.loads((kept / "manifest.json").read_text())["kept_as"] == "2026-06"
    # Reports without a period are kept by the data's last day.
    assert (rendered["stage_conversion"].folder.parent / "data-to-2026-06-30" / "report.html").is_file()
    index = (sales / "index.html").read_text(encoding="utf-8")
    assert '<a href="latest/report.html">latest</a>' in index and '<a href="2026-06/report.html">2026-06</a>' in index
    assert "Sales performance · June 2026" in index and "succeeded" in index


def test_a_label_keeps_its_own_copy_and_a_failure_is_listed(tmp_path: Path) -> None:
    folder = _notebook_dir(
        tmp_path,
        "import funnelmodels as fm\nfm.reports.record(output_dir, period='2026-04-01', period_length='quarter')",
    )
    reports = tmp_path / "reports"
    run_report("flaky", reports_dir=reports, notebooks_dir=folder, label="board")
    assert (reports / "flaky" / "2026-Q2_board" / "report.html").is_file()
    with pytest.raises(ConfigError, match=r"label '\.\./x' is not allowed"):
        run_report("flaky", reports_dir=reports, notebooks_dir=folder, label="../x")
    bad = _notebook_dir(tmp_path / "bad", "raise ValueError('boom')")
    with pytest.raises(ReportError):
        run_report("flaky", reports_dir=reports, notebooks_dir=bad)
    index = (reports / "flaky" / "index.html").read_text(encoding="utf-8")
    assert "2026-Q2_board" in index and "failed/latest" in index and "ValueError: boom" in index
    # A folder the runner did not write is never replaced: the run is published, not kept there.
    theirs = reports / "flaky" / "2026-Q2"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    (reports / "flaky" / "odd").mkdir()
    (reports / "flaky" / "odd" / "manifest.json").write_text("{not json")
    with pytest.warns(UserWarning, match=r"published in .*latest but not kept as 2026-Q2: refusing"):
        run_report("flaky", reports_dir=reports, notebooks_dir=folder)
    assert [p.name for p in theirs.iterdir()] == ["notes.txt"]
    assert "2026-Q2_board" in (reports / "flaky" / "index.html").read_text(encoding="utf-8"), (
        "a bad manifest is skipped"
    )
