"""Every report renders on every valid dataset: a missing table or column replaces a section by a sentence.

Each case is a dataset that passes ``validate`` but lacks something a section needs; ``report --all``
must exit 0 and each report must say, in words, what is missing and how to add it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from funnelmodels.cli import main
from funnelmodels.data.io import load_dataset
from funnelmodels.data.synthetic import generate_dataset


@pytest.fixture(scope="module")
def base() -> dict[str, pl.DataFrame]:
    return generate_dataset(600, seed=21).tables()


def _write(root: Path, tables: dict[str, pl.DataFrame], toml: str = "") -> Path:
    root.mkdir(parents=True)
    for name, frame in tables.items():
        frame.write_parquet(root / f"{name}.parquet")
    if toml:
        (root / "funnel.toml").write_text(toml)
    return root


def _one_stage(tables: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    events = tables["stage_events"]
    lead = events.filter(pl.col("stage") == "lead")
    end = events.filter(pl.col("stage").is_in(["won", "lost"]))
    return tables | {"stage_events": pl.concat([lead, end]).with_columns(pl.col("stage").replace("lead", "contact"))}


def _one_month(tables: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    june = {"transactions": "ordered_at", "stage_events": "entered_at", "surveys": "responded_at"}
    return tables | {
        name: tables[name].filter(pl.col(column).is_between(datetime(2026, 6, 1), datetime(2026, 6, 30, 23, 59)))
        for name, column in june.items()
        if name in tables
    }


def _without(*names: str) -> Callable[[dict[str, pl.DataFrame]], dict[str, pl.DataFrame]]:
    return lambda t: {k: v for k, v in t.items() if k not in names}


def _sparse(t: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """No deal value, no region, and no opportunity ever recorded as lost."""
    events = t["stage_events"].drop("amount").filter(pl.col("stage") != "lost")
    return t | {"stage_events": events, "customers": t["customers"].drop("region")}


# Cases that do not interfere share a dataset (each report run costs seconds): (change, funnel.toml, parameters).
CASES = {
    "no-deal-amount, no-region, no-lost-events, one-month": (lambda t: _one_month(_sparse(t)), "", []),
    "no-transactions, one-stage": (
        lambda t: _one_stage(_without("transactions")(t)),
        '[funnel]\nstages = ["contact", "won"]\n',
        [],
    ),
    "no-surveys, no-stage-events, no segment": (_without("surveys", "stage_events"), "", ["-p", "segment", ""]),
}

# What each report must say instead of the section it cannot show.
SAYS = {
    "no-deal-amount, no-region, no-lost-events, one-month": {
        "sales_performance": [
            "no deal value (stage_events.amount)",
            "no region column",
            "there is no value to forecast",
        ],
        "stage_conversion": ["still within"],
        "customer_satisfaction": ["no region column"],
    },
    "no-transactions, one-stage": {
        "sales_performance": ["No transactions table"],
        "customer_satisfaction": ["needs the transactions table"],
    },
    "no-surveys, no-stage-events, no segment": {
        "sales_performance": ["No stage_events table", "no segment was chosen"],
        "stage_conversion": ["No stage_events table"],
        "customer_satisfaction": ["No surveys table"],
    },
}


def _silent_sections(page: str) -> list[str]:
    """The report's section headings followed by no output at all before the next heading."""
    body = page.split("How this report was made")[0]
    sections = re.split(r"<h2\b", body)[1:]
    return [
        re.sub(r"<[^>]+>|¶", "", part.split("</h2>")[0].split(">", 1)[1])
        for part in sections
        if "jp-OutputArea-output" not in part
    ]


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_every_report_renders_on_a_valid_dataset(case: str, base: dict[str, pl.DataFrame], tmp_path: Path) -> None:
    change, toml, parameters = CASES[case]
    root = _write(tmp_path / "data", change(base), toml)
    load_dataset(root)  # the dataset is valid

    command = ["--quiet", "report", "--all", "-p", "data_dir", str(root), *parameters]
    code = main([*command, "--reports-dir", str(tmp_path / "r")])

    assert code == 0, case
    for report, sentences in SAYS[case].items():
        folder = next((tmp_path / "r" / report).iterdir())
        page = (folder / "report.html").read_text(encoding="utf-8")
        for sentence in sentences:
            assert sentence in page, (case, report, sentence)
    for report in ("sales_performance", "stage_conversion", "customer_satisfaction"):
        page = (next((tmp_path / "r" / report).iterdir()) / "report.html").read_text(encoding="utf-8")
        # A section the data cannot fill says why; a heading over nothing leaves the reader guessing.
        assert _silent_sections(page) == [], (case, report)
