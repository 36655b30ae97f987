"""Safety: no unsafe deserialisation in the package, user strings escaped in report HTML."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from funnelmodels.plots import html_table, kpi_tiles

PACKAGE = Path(__file__).resolve().parents[1] / "funnelmodels"
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
