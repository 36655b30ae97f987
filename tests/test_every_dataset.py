"""Every report renders on every valid dataset: a missing table or column replaces a section by a sentence.

Each case is a dataset that passes ``validate`` but lacks something a section needs; ``report --all``
must exit 0 and each report must say, in words, what is missing and how to add it.
"""

from __future__ import annotations

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
    }


CASES = {
    "no-deal-amount": (lambda t: t | {"stage_events": t["stage_events"].drop("amount")}, ""),
    "no-transactions": (lambda t: {k: v for k, v in t.items() if k != "transactions"}, ""),
    "no-surveys": (lambda t: {k: v for k, v in t.items() if k != "surveys"}, ""),
    "no-stage-events": (lambda t: {k: v for k, v in t.items() if k != "stage_events"}, ""),
    "no-lost-events": (lambda t: t | {"stage_events": t["stage_events"].filter(pl.col("stage") != "lost")}, ""),
    "one-stage": (_one_stage, '[funnel]\nstages = ["contact", "won"]\n'),
    "one-month": (_one_month, ""),
    "no-region": (lambda t: t | {"customers": t["customers"].drop("region")}, ""),
}

# What each report must say instead of the section it cannot show.
SAYS = {
    "no-deal-amount": {"sales_performance": "no deal value (stage_events.amount)"},
    "no-transactions": {
        "sales_performance": "No transactions table",
        "customer_satisfaction": "needs the transactions table",
    },
    "no-surveys": {"customer_satisfaction": "No surveys table"},
    "no-stage-events": {"sales_performance": "No stage_events table", "stage_conversion": "No stage_events table"},
    "no-lost-events": {},
    "one-stage": {},
    "one-month": {"stage_conversion": "still within", "customer_satisfaction": "Only one period"},
    "no-region": {"sales_performance": "no region column", "customer_satisfaction": "no region column"},
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_every_report_renders_on_a_valid_dataset(case: str, base: dict[str, pl.DataFrame], tmp_path: Path) -> None:
    change, toml = CASES[case]
    root = _write(tmp_path / case, change(base), toml)
    load_dataset(root)  # the dataset is valid

    code = main(["--quiet", "report", "--all", "-p", "data_dir", str(root), "--reports-dir", str(tmp_path / "r")])

    assert code == 0, case
    for report, sentence in SAYS[case].items():
        folder = next((tmp_path / "r" / report).iterdir())
        page = (folder / "report.html").read_text(encoding="utf-8")
        assert sentence in page, (case, report, sentence)
