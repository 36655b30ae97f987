"""generate and validate as a scheduled job sees them: exit codes, messages, files."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from commands import Cli
from handmade import tiny_tables

from funnelmodels import cli
from funnelmodels.data import synthetic
from funnelmodels.data.synthetic import generate_dataset, write_dataset


def test_generate_then_validate(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "gen"
    result = cli("--quiet", "generate", "--customers", "300", "--seed", "5", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "true per-stage ROC AUC" in result.stdout
    assert (out / "ground_truth" / "conversion.parquet").is_file()
    result = cli("--quiet", "validate", str(out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["tables"]["customers"]["rows"] == 300
    assert summary["tables"]["transactions"]["rows"] == pl.read_parquet(out / "transactions.parquet").height
    assert set(summary["stages"]) == {"lead", "qualified", "relationship", "proposal", "won", "lost"}


def test_generate_with_teams_writes_owners_activities_and_their_truth(tmp_path: Path) -> None:
    out = tmp_path / "teams"
    assert cli.main(["--quiet", "generate", "--customers", "400", "--seed", "5", "--teams", "--out", str(out)]) == 0
    for name in ("owners", "activities", "ground_truth/owners", "ground_truth/activity_effects"):
        assert (out / f"{name}.parquet").is_file(), name
    events = pl.read_parquet(out / "stage_events.parquet")
    owners = pl.read_parquet(out / "owners.parquet")
    assert events["owner"].null_count() == 0 and set(events["owner"]) <= set(owners["owner"])
    activities = pl.read_parquet(out / "activities.parquet")
    assert set(activities["opportunity_id"]) <= set(events["opportunity_id"])
    assert set(activities["type"]) <= {"call", "email", "meeting", "demo", "proposal_sent", "other"}


def test_validate_bad_data_exits_1_without_traceback(cli: Cli, tmp_path: Path) -> None:
    tables = tiny_tables()
    tables["surveys"] = tables["surveys"].with_columns(pl.Series("csat", [9, 2]))
    for name, frame in tables.items():
        frame.write_csv(tmp_path / f"{name}.csv")
    result = cli("validate", str(tmp_path))
    assert result.returncode == 1
    assert "surveys.csat: must be a whole number from 1 to 5" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_validate_missing_folder_exits_1(cli: Cli, tmp_path: Path) -> None:
    result = cli("validate", str(tmp_path / "nope"))
    assert result.returncode == 1
    assert "does not exist" in result.stderr


def test_failed_generate_keeps_the_previous_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:

    out = tmp_path / "gen"
    assert cli.main(["--quiet", "generate", "--customers", "50", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    real_write = synthetic.write_table
    calls = []

    def disk_full_on_third_file(frame: pl.DataFrame, path: Path) -> None:
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device", str(path))
        real_write(frame, path)

    monkeypatch.setattr(synthetic, "write_table", disk_full_on_third_file)
    assert cli.main(["--quiet", "generate", "--customers", "60", "--out", str(out)]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen"], "no half-written folder left behind"


def test_validate_warns_when_no_opportunity_is_ever_lost(cli: Cli, tmp_path: Path) -> None:

    write_dataset(generate_dataset(300, seed=2, unrecorded_losses=1.0), tmp_path / "cold")
    result = cli("--quiet", "validate", str(tmp_path / "cold"))
    assert result.returncode == 0, result.stderr
    assert "warning: stage_events.stage: no opportunity was ever 'lost'" in result.stdout
    assert "stale_after_days" in result.stdout
    (tmp_path / "cold" / "funnel.toml").write_text("[funnel]\nstale_after_days = 180\n")
    result = cli("--quiet", "funnel", str(tmp_path / "cold"))
    assert "stale rule: no event for 180 days counts as lost" in result.stdout
    assert "warning" not in cli("--quiet", "validate", str(tmp_path / "cold")).stdout
