"""The funnel command and its summary: what an analyst reads at the terminal."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import polars as pl
from commands import Cli
from handmade import funnel_events

from funnelmodels.cli.funnel import funnel_summary
from funnelmodels.config import load_config
from funnelmodels.data.io import Dataset


def test_funnel_summary_says_when_every_row_is_still_within_its_horizon(tmp_path) -> None:  # type: ignore[no-untyped-def]

    events = funnel_events().collect()
    customers = pl.DataFrame({"customer_id": list(range(1, 8)), "created_at": [datetime(2025, 1, 1)] * 7})
    config = load_config(tmp_path)
    dataset = Dataset(config=config, tables={"customers": customers, "stage_events": events})
    summary = funnel_summary(dataset, horizon_days=400)  # a horizon longer than the data
    lead = summary["segments"][0]["stages"][0]
    assert (lead["entered"], lead["observed"], lead["rate"]) == (8, 0, None)
    assert "every one of the 8 entries is still within its 400-day horizon" in lead["note"]
    curves = {(r["stage"], r["day"]): r for r in summary["segments"][0]["cumulative"]}
    assert curves[("lead", 30.0)]["converted"] > 0  # the cumulative view still answers


def test_an_empty_segment_value_is_missing_not_a_value_called_unknown(tmp_path) -> None:  # type: ignore[no-untyped-def]

    events = funnel_events().collect()
    customers = pl.DataFrame(
        {
            "customer_id": list(range(1, 8)),
            "created_at": [datetime(2025, 1, 1)] * 7,
            "plan": ["gold", "unknown", None, "gold", "unknown", None, "gold"],
        }
    )
    dataset = Dataset(config=load_config(tmp_path), tables={"customers": customers, "stage_events": events})
    summary = funnel_summary(dataset, by="plan")
    # Opportunities 3 and 6 have no plan; 2 and 5 a plan the CRM calls "unknown": two different segments.
    assert sorted(b["segment"] for b in summary["segments"]) == ["(missing)", "gold", "unknown"]


def test_funnel_command_text_and_json(cli: Cli, synthetic_dir: Path) -> None:
    result = cli("--quiet", "funnel", str(synthetic_dir))
    assert result.returncode == 0, result.stderr
    assert "lead → won" in result.stdout
    assert "qualified" in result.stdout
    assert "observed" in result.stdout and "cumulative by day d" in result.stdout
    result = cli("--quiet", "funnel", str(synthetic_dir), "--by", "region", "--horizon-days", "60", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["horizon_days"] == 60
    assert sorted(b["segment"] for b in summary["segments"]) == ["central", "east", "north", "south", "west"]
    lead = summary["segments"][0]["stages"][0]
    assert lead["stage"] == "lead" and lead["rate_low"] <= lead["rate"] <= lead["rate_high"]
    assert set(summary["tests"]) == {"lead", "qualified", "relationship", "proposal"}
    curves = summary["segments"][0]["cumulative"]
    assert {r["stage"] for r in curves} == {"lead", "qualified", "relationship", "proposal", "end to end"}
    assert all(r["converted"] + r["lost"] <= 1 + 1e-9 for r in curves)


def test_funnel_bad_input_is_refused_clearly(cli: Cli, synthetic_dir: Path, tmp_path: Path) -> None:
    result = cli("funnel", str(synthetic_dir), "--by", "regoin")
    assert result.returncode == 1
    assert "--by 'regoin' is not a column of this dataset (did you mean 'region'?); available:" in result.stderr
    assert "region" in result.stderr and "customer_type" in result.stderr
    result = cli("funnel", str(synthetic_dir), "--horizon-days", "0")
    assert result.returncode == 2
    assert "must be 1 or more" in result.stderr
    (tmp_path / "customers.csv").write_text("customer_id,created_at\n1,2025-01-01\n")
    result = cli("funnel", str(tmp_path))
    assert result.returncode == 1
    assert "needs the stage_events table" in result.stderr
    assert "Traceback" not in result.stderr
