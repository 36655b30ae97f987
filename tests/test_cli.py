"""The command line as a scheduled job sees it: exit codes, messages, files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from handmade import tiny_tables

CLI = [sys.executable, "-m", "funnelmodels.cli"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=300, check=False)


@pytest.mark.parametrize(
    "command", [[], ["generate"], ["validate"], ["funnel"], ["train"], ["score"], ["report"], ["demo"]]
)
def test_help_of_every_command(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.returncode == 0
    assert "usage: funnelmodels" in result.stdout


def test_generate_then_validate(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    result = run("--quiet", "generate", "--customers", "300", "--seed", "5", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "true per-stage ROC AUC" in result.stdout
    assert (out / "ground_truth" / "conversion.parquet").is_file()
    result = run("--quiet", "validate", str(out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["tables"]["customers"]["rows"] == 300
    assert summary["tables"]["transactions"]["rows"] == pl.read_parquet(out / "transactions.parquet").height
    assert set(summary["stages"]) == {"lead", "qualified", "relationship", "proposal", "won", "lost"}


def test_validate_bad_data_exits_1_without_traceback(tmp_path: Path) -> None:
    tables = tiny_tables()
    tables["surveys"] = tables["surveys"].with_columns(pl.Series("csat", [9, 2]))
    for name, frame in tables.items():
        frame.write_csv(tmp_path / f"{name}.csv")
    result = run("validate", str(tmp_path))
    assert result.returncode == 1
    assert "surveys.csat: must be a whole number from 1 to 5" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_validate_missing_folder_exits_1(tmp_path: Path) -> None:
    result = run("validate", str(tmp_path / "nope"))
    assert result.returncode == 1
    assert "does not exist" in result.stderr


def test_bad_arguments_exit_2() -> None:
    result = run("generate", "--customers", "0", "--out", "x")
    assert result.returncode == 2
    assert "must be 1 or more" in result.stderr


def test_failed_generate_keeps_the_previous_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from funnelmodels import cli
    from funnelmodels.data import synthetic

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


def test_funnel_command_text_and_json(synthetic_dir: Path) -> None:
    result = run("--quiet", "funnel", str(synthetic_dir))
    assert result.returncode == 0, result.stderr
    assert "lead → won" in result.stdout
    assert "qualified" in result.stdout
    assert "observed" in result.stdout and "cumulative by day d" in result.stdout
    result = run("--quiet", "funnel", str(synthetic_dir), "--by", "region", "--horizon-days", "60", "--json")
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


def test_validate_warns_when_no_opportunity_is_ever_lost(tmp_path: Path) -> None:
    from funnelmodels.data.synthetic import generate_dataset, write_dataset

    write_dataset(generate_dataset(300, seed=2, unrecorded_losses=1.0), tmp_path / "cold")
    result = run("--quiet", "validate", str(tmp_path / "cold"))
    assert result.returncode == 0, result.stderr
    assert "warning: stage_events.stage: no opportunity was ever 'lost'" in result.stdout
    assert "stale_after_days" in result.stdout
    (tmp_path / "cold" / "funnel.toml").write_text("[funnel]\nstale_after_days = 180\n")
    result = run("--quiet", "funnel", str(tmp_path / "cold"))
    assert "stale rule: no event for 180 days counts as lost" in result.stdout
    assert "warning" not in run("--quiet", "validate", str(tmp_path / "cold")).stdout


def test_funnel_bad_input_is_refused_clearly(synthetic_dir: Path, tmp_path: Path) -> None:
    result = run("funnel", str(synthetic_dir), "--by", "regoin")
    assert result.returncode == 1
    assert "--by 'regoin' is not a column of this dataset (did you mean 'region'?); available:" in result.stderr
    assert "region" in result.stderr and "customer_type" in result.stderr
    result = run("funnel", str(synthetic_dir), "--horizon-days", "0")
    assert result.returncode == 2
    assert "must be 1 or more" in result.stderr
    (tmp_path / "customers.csv").write_text("customer_id,created_at\n1,2025-01-01\n")
    result = run("funnel", str(tmp_path))
    assert result.returncode == 1
    assert "needs the stage_events table" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="session")
def trained_cli(synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`funnelmodels train` run once (both targets): the model folder and what it printed."""
    models = tmp_path_factory.mktemp("cli") / "models"
    result = run("--quiet", "train", str(synthetic_dir), "--out", str(models))
    assert result.returncode == 0, result.stderr
    return models, result.stdout


def test_train_then_score(synthetic_dir: Path, tmp_path: Path, trained_cli: tuple[Path, str]) -> None:
    models, printed = trained_cli
    assert "oracle" in printed and "Satisfaction: csat" in printed
    assert set(json.loads((models / "metrics.json").read_text())) == {"conversion", "satisfaction", "data"}
    metrics = json.loads((models / "metrics.json").read_text())["conversion"]
    assert {r["engine"] for r in metrics["metrics"]} == {"lightgbm", "logit", "oracle"}
    assert set(metrics["gap_to_oracle_roc_auc"]) == {"lightgbm", "logit"}
    assert metrics["split"]["method"] == "out of time by as_of"
    assert (models / "conversion" / "lightgbm" / "booster_all.txt").is_file()
    out = tmp_path / "scores.csv"
    result = run(
        "--quiet", "score", str(synthetic_dir), "--model", str(models), "--as-of", "2026-07-01", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    scores = pl.read_csv(out)
    assert scores.height > 0
    assert {"opportunity_id", "win_probability", "expected_value", "reasons_up"} <= set(scores.columns)
    assert scores["win_probability"].is_between(0, 1).all()


def test_failed_train_leaves_the_model_folder_untouched(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "keep.txt").write_text("previous good model")
    tables = tiny_tables()
    for name, frame in tables.items():
        frame.write_csv(tmp_path / f"{name}.csv")
    result = run("train", str(tmp_path), "--out", str(models))
    assert result.returncode == 1
    assert "still within its 90-day horizon" in result.stderr and "Traceback" not in result.stderr
    assert [p.name for p in models.iterdir()] == ["keep.txt"]
    assert not (tmp_path / ".models.partial").exists()


def test_score_refuses_bad_moments_and_foreign_models(
    synthetic_dir: Path, tmp_path: Path, trained_cli: tuple[Path, str]
) -> None:
    models = trained_cli[0]
    result = run(
        "score", str(synthetic_dir), "--model", str(models), "--as-of", "1999-01-01", "--out", str(tmp_path / "s.csv")
    )
    assert result.returncode == 1 and "before any stage event" in result.stderr
    result = run(
        "score", str(synthetic_dir), "--model", str(models), "--as-of", "July", "--out", str(tmp_path / "s.csv")
    )
    assert result.returncode == 2 and "expected a date" in result.stderr
    # The same data without surveys: the model's satisfaction features are missing.
    other = tmp_path / "no_surveys"
    other.mkdir()
    for name in ("customers", "transactions", "stage_events"):
        (other / f"{name}.parquet").write_bytes((synthetic_dir / f"{name}.parquet").read_bytes())
    result = run("score", str(other), "--model", str(models), "--as-of", "2026-07-01", "--out", str(tmp_path / "s.csv"))
    assert result.returncode == 1
    assert "does not match the model's feature schema" in result.stderr and "last_csat" in result.stderr
    assert not (tmp_path / "s.csv").exists()
    result = run(
        "score",
        str(synthetic_dir),
        "--model",
        str(tmp_path / "nowhere"),
        "--as-of",
        "2026-07-01",
        "--out",
        str(tmp_path / "s.csv"),
    )
    assert result.returncode == 1 and "model.json is missing" in result.stderr


def test_satisfaction_train_score_and_missing_surveys(
    synthetic_dir: Path, tmp_path: Path, trained_cli: tuple[Path, str]
) -> None:
    models = trained_cli[0]
    report = json.loads((models / "metrics.json").read_text())
    assert {r["engine"] for r in report["satisfaction"]["metrics"]} == {"ordinal", "lightgbm", "naive", "oracle"}
    out = tmp_path / "risk.parquet"
    result = run(
        "--quiet",
        "score",
        str(synthetic_dir),
        "--model",
        str(models),
        "--target",
        "satisfaction",
        "--as-of",
        "2026-07-01",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    risk = pl.read_parquet(out)
    # Customers within the range of answers the model learnt from first, each group by risk.
    assert risk["in_range"].is_sorted(descending=True) and risk.height > 100
    for group in risk.partition_by("in_range"):
        assert group["p_low"].is_sorted(descending=True)
    assert (risk.filter(~pl.col("in_range"))["note"].str.starts_with("out of range: last order")).all()
    no_surveys = tmp_path / "no_surveys"
    no_surveys.mkdir()
    for name in ("customers", "transactions", "stage_events"):
        (no_surveys / f"{name}.parquet").write_bytes((synthetic_dir / f"{name}.parquet").read_bytes())
    result = run("train", str(no_surveys), "--out", str(tmp_path / "m2"), "--target", "satisfaction")
    assert result.returncode == 1 and "no surveys table" in result.stderr
    assert not (tmp_path / "m2").exists()
    result = run("--quiet", "train", str(no_surveys), "--out", str(tmp_path / "m3"))
    assert result.returncode == 0, result.stderr
    assert "satisfaction not trained: the dataset has no surveys table" in result.stdout
    assert set(json.loads((tmp_path / "m3" / "metrics.json").read_text())) == {"conversion", "data"}


def test_report_command_refuses_bad_parameters_and_keeps_earlier_reports(synthetic_dir: Path, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    result = run(
        "--quiet", "report", "sales_performance", "-p", "data_dir", str(synthetic_dir), "--reports-dir", str(reports)
    )
    assert result.returncode == 0, result.stderr
    page = reports / "sales_performance" / "latest" / "report.html"
    before = page.read_bytes()
    result = run(
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
    result = run(
        "report", "sales_performance", "-p", "data_dir", str(tmp_path / "missing"), "--reports-dir", str(reports)
    )
    assert result.returncode == 1 and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert page.read_bytes() == before
    result = run("report", "--reports-dir", str(reports))
    assert result.returncode == 1 and "name one report, or use --all" in result.stderr
