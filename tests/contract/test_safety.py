"""Safety: no unsafe deserialisation in the package, user strings escaped in report HTML."""

from __future__ import annotations

import dataclasses
import html
import re
from pathlib import Path

import polars as pl
import pytest
from browser import browser
from places import ROOT

from funnelmodels.cli import main
from funnelmodels.data.synthetic import SyntheticData, write_dataset
from funnelmodels.display import html_table, kpi_tiles
from funnelmodels.errors import FunnelModelsError
from funnelmodels.reports import notebooks_folder, run_report

PACKAGE = ROOT / "funnelmodels"
HOSTILE = ["<script>alert(1)</script>", '"; import os #', "<img src=x onerror=alert(1)>"]


def test_nothing_in_the_package_loads_pickles() -> None:
    pattern = re.compile(
        r"^\s*(import|from)\s+(pickle|cPickle|joblib|cloudpickle|dill|shelve)\b|allow_pickle\s*=\s*True", re.MULTILINE
    )
    offenders = [str(p) for p in PACKAGE.rglob("*.py") if pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_segment_names_are_escaped_in_tables_and_tiles() -> None:
    page = html_table(pl.DataFrame({"region": HOSTILE, "net_revenue": [1.0, 2.0, 3.0]}))
    assert "<script>" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;; import os #" in page
    changes = pl.DataFrame(
        {"kpi": ["orders"], "value": [5.0], "previous": [4.0], "change": [1.0], "change_pct": [0.25], "p_value": [None]}
    )
    tiles = kpi_tiles(changes, period_label=HOSTILE[0])
    assert "<script>alert" not in tiles and "&lt;script&gt;" in tiles


# --- hostile strings through a real report run -----------------------------------------------------

# If this ever runs as code in the page, it leaves a mark the browser's DOM dump shows.
PAYLOAD = "<script>document.documentElement.setAttribute('data-pwned','1');alert(1)</script>"
INJECTION = '"; import pathlib; pathlib.Path("pwned").touch() #'


@pytest.fixture(scope="module")
def hostile_data(tmp_path_factory: pytest.TempPathFactory, synthetic: SyntheticData) -> Path:
    """The small synthetic data with two regions renamed to hostile strings."""
    root = tmp_path_factory.mktemp("hostile")
    customers = synthetic.customers.with_columns(
        pl.col("region").replace({"north": PAYLOAD, "south": INJECTION}).alias("region")
    )
    write_dataset(dataclasses.replace(synthetic, customers=customers), root)
    return root


@pytest.mark.slow
def test_hostile_segment_names_are_shown_as_text_and_never_run(hostile_data: Path, tmp_path: Path) -> None:
    run = run_report("sales_performance", {"data_dir": str(hostile_data)}, reports_dir=tmp_path / "reports")
    page = run.html.read_text(encoding="utf-8")
    assert "<script>document.documentElement" not in page
    assert "&lt;script&gt;document.documentElement.setAttribute(" in page

    dom = browser(run.html.resolve().as_uri(), "--dump-dom", user_dir=tmp_path / "browser")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-pwned="1"' not in dom.stdout, "the payload ran in the browser"
    assert "<script>document.documentElement" in html.unescape(dom.stdout)  # shown, as text
    assert "alert" not in " ".join(line for line in dom.stderr.splitlines() if "CONSOLE" in line)


def test_parameters_cannot_inject_code_or_escape_reports(synthetic_dir: Path, tmp_path: Path) -> None:
    cwd = Path.cwd()
    reports = tmp_path / "reports"
    # papermill writes parameters as Python literals: the quote cannot close the string.
    with pytest.raises(FunnelModelsError, match="is not a customers column"):
        run_report("sales_performance", {"data_dir": str(synthetic_dir), "segment": INJECTION}, reports_dir=reports)
    assert not (notebooks_folder() / "pwned").exists() and not (cwd / "pwned").exists()
    for period in ("../../outside", "2026-01/../../x", INJECTION):
        code = main(["--quiet", "report", "sales_performance", "-p", "period", period, "--reports-dir", str(reports)])
        assert code == 1
    assert not (tmp_path / "outside").exists()
    assert not list(reports.glob("sales_performance/*/manifest.json"))
