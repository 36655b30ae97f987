"""train and score as a scheduled job sees them: exit codes, messages, files."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from commands import Cli
from handmade import tiny_tables

from funnelmodels.data.io import load_dataset
from funnelmodels.data.synthetic import generate_dataset, write_dataset
from funnelmodels.errors import EXIT_DRIFT, EXIT_NOT_READY
from funnelmodels.models.conversion import StageConversionModel
from funnelmodels.models.design import UnseenCategoryWarning
from funnelmodels.models.predict import score_open_opportunities


def test_train_then_score(cli: Cli, synthetic_dir: Path, tmp_path: Path, trained_cli: tuple[Path, str]) -> None:
    models, printed = trained_cli
    assert "oracle" in printed and "Satisfaction: csat" in printed
    assert set(json.loads((models / "metrics.json").read_text())) == {"conversion", "satisfaction", "data", "training"}
    metrics = json.loads((models / "metrics.json").read_text())["conversion"]
    assert {r["engine"] for r in metrics["metrics"]} == {"lightgbm", "logit", "oracle"}
    assert set(metrics["gap_to_oracle_roc_auc"]) == {"lightgbm", "logit"}
    assert metrics["split"]["method"] == "out of time by as_of"
    assert (models / "conversion" / "lightgbm" / "booster_all.txt").is_file()
    card = json.loads((models / "conversion" / "model_card.json").read_text())
    assert card["gate"]["ready"] is True and card["gate"]["engine"] == "lightgbm"
    assert "Model card" in printed and "Ready to publish." in printed
    satisfied = json.loads((models / "satisfaction" / "model_card.json").read_text())
    assert satisfied["gate"]["ready"] is True and satisfied["gate"]["engine"] in ("ordinal", "lightgbm")
    assert {r["engine"] for r in satisfied["metrics"]} == {"ordinal", "lightgbm", "naive", "oracle"}
    out = tmp_path / "scores.csv"
    result = cli(
        "--quiet", "score", str(synthetic_dir), "--model", str(models), "--as-of", "2026-07-01", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    scores = pl.read_csv(out)
    assert scores.height > 0
    assert {"opportunity_id", "win_probability", "expected_value", "reasons_up"} <= set(scores.columns)
    assert scores["win_probability"].is_between(0, 1).all()
    # Reasons for the three deals worth most only (a large pipeline's default is the 10,000 worth most).
    few = tmp_path / "few.csv"
    result = cli(
        "score",
        str(synthetic_dir),
        "--model",
        str(models),
        "--as-of",
        "2026-07-01",
        "--out",
        str(few),
        "--reasons",
        "3",
    )
    assert result.returncode == 0, result.stderr
    assert f"reasons for the 3 deals worth most of {scores.height:,} open" in result.stderr
    explained = pl.read_csv(few)["reasons_up"].fill_null("").str.len_chars() > 0
    assert explained.head(3).any() and not explained.tail(scores.height - 3).any()


def test_the_gate_exits_not_ready_on_little_data_and_score_then_uses_the_logit(cli: Cli, tmp_path: Path) -> None:
    # 500 customers: about 420 training entries, below the card's minimum of 1,000.
    write_dataset(generate_dataset(500, seed=2), tmp_path / "data")
    models = tmp_path / "models"
    args = ("train", str(tmp_path / "data"), "--out", str(models), "--target", "conversion", "--forecast-periods", "0")
    result = cli("--quiet", *args, "--gate")
    assert result.returncode == EXIT_NOT_READY, result.stderr
    assert "Not ready:" in result.stdout and f"exit code {EXIT_NOT_READY}" in result.stdout
    card = json.loads((models / "conversion" / "model_card.json").read_text())
    assert card["gate"]["ready"] is False and card["gate"]["engine"] == "logit"
    assert card["gate"]["train_rows"] < card["gate"]["min_train_rows"]
    engines = {r["engine"] for r in card["metrics"]}
    assert {"lightgbm", "logit", "naive Bayes", "stage rate", "oracle"} == engines
    scored = cli(
        "score",
        str(tmp_path / "data"),
        "--model",
        str(models),
        "--as-of",
        "2026-07-01",
        "--out",
        str(tmp_path / "s.csv"),
    )
    assert scored.returncode == 0, scored.stderr
    assert "the model card says LightGBM is not ready: scoring with the logit" in scored.stderr


def test_check_drift_flags_a_planted_shift_and_not_the_pipeline_it_was_tested_on(
    cli: Cli, synthetic_dir: Path, tmp_path: Path, trained_cli: tuple[Path, str]
) -> None:
    models, _ = trained_cli
    reference = json.loads((models / "conversion" / "lightgbm" / "reference.json").read_text())
    then = reference["as_of"][:19]
    # The pipeline the model was tested on, scored again at the same moment: nothing has moved.
    same = cli(
        "score",
        str(synthetic_dir),
        "--model",
        str(models),
        "--as-of",
        then,
        "--out",
        str(tmp_path / "a.csv"),
        "--check-drift",
    )
    assert same.returncode == 0, same.stderr
    assert "No drift" in same.stdout and (tmp_path / "a_drift.csv").is_file()
    drift = pl.read_csv(tmp_path / "a_drift.csv")
    assert drift["psi"].max() < 1e-9 and not drift["alert"].any() and "score" in drift["feature"].to_list()
    # Every customer earns three times as much, and the north and the east are now the south.
    shifted = tmp_path / "shifted"
    shutil.copytree(synthetic_dir, shifted)
    customers = pl.read_parquet(shifted / "customers.parquet")
    turn = {"north": "south", "east": "south"}
    customers.with_columns(pl.col("income") * 3, pl.col("region").replace(turn)).write_parquet(
        shifted / "customers.parquet"
    )
    moved = cli(
        "score",
        str(shifted),
        "--model",
        str(models),
        "--as-of",
        then,
        "--out",
        str(tmp_path / "b.csv"),
        "--check-drift",
    )
    assert moved.returncode == EXIT_DRIFT, moved.stderr
    flagged = set(pl.read_csv(tmp_path / "b_drift.csv").filter(pl.col("alert"))["feature"])
    assert {"income", "region"} <= flagged and (tmp_path / "b.csv").is_file()
    assert "drift found (exit code 4)" in moved.stdout
    # A model folder written before drift checks: refused at once, naming the file, nothing written.
    older = tmp_path / "older"
    shutil.copytree(models, older)
    (older / "conversion" / "lightgbm" / "reference.json").unlink()
    out = tmp_path / "c.csv"
    refused = cli(
        "score", str(synthetic_dir), "--model", str(older), "--as-of", then, "--out", str(out), "--check-drift"
    )
    assert (
        refused.returncode == 1 and "reference.json is missing" in refused.stderr and "Traceback" not in refused.stderr
    )
    assert not out.exists()
    wrong = cli(
        "score",
        str(synthetic_dir),
        "--model",
        str(models),
        "--as-of",
        then,
        "--out",
        str(out),
        "--target",
        "satisfaction",
        "--check-drift",
    )
    assert wrong.returncode == 1 and "use it with --target conversion" in wrong.stderr


def test_failed_train_leaves_the_model_folder_untouched(cli: Cli, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "metrics.json").write_text("previous good model")  # what an earlier train wrote
    tables = tiny_tables()
    for name, frame in tables.items():
        frame.write_csv(tmp_path / f"{name}.csv")
    result = cli("train", str(tmp_path), "--out", str(models))
    assert result.returncode == 1
    assert "still within its 90-day horizon" in result.stderr and "Traceback" not in result.stderr
    assert [p.name for p in models.iterdir()] == ["metrics.json"]
    assert (models / "metrics.json").read_text() == "previous good model"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".models")], "no staging or lock left"


def test_score_refuses_bad_moments_and_foreign_models(
    cli: Cli, synthetic_dir: Path, tmp_path: Path, trained_cli: tuple[Path, str]
) -> None:
    models = trained_cli[0]
    result = cli(
        "score", str(synthetic_dir), "--model", str(models), "--as-of", "1999-01-01", "--out", str(tmp_path / "s.csv")
    )
    assert result.returncode == 1 and "before any stage event" in result.stderr
    result = cli(
        "score", str(synthetic_dir), "--model", str(models), "--as-of", "July", "--out", str(tmp_path / "s.csv")
    )
    assert result.returncode == 2 and "expected a date" in result.stderr
    # The same data without surveys: the model's satisfaction features are missing.
    other = tmp_path / "no_surveys"
    other.mkdir()
    for name in ("customers", "transactions", "stage_events"):
        (other / f"{name}.parquet").write_bytes((synthetic_dir / f"{name}.parquet").read_bytes())
    result = cli("score", str(other), "--model", str(models), "--as-of", "2026-07-01", "--out", str(tmp_path / "s.csv"))
    assert result.returncode == 1
    assert "does not match the model's feature schema" in result.stderr and "last_csat" in result.stderr
    assert not (tmp_path / "s.csv").exists()
    result = cli(
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
    cli: Cli, synthetic_dir: Path, tmp_path: Path, trained_cli: tuple[Path, str]
) -> None:
    models = trained_cli[0]
    report = json.loads((models / "metrics.json").read_text())
    assert {r["engine"] for r in report["satisfaction"]["metrics"]} == {"ordinal", "lightgbm", "naive", "oracle"}
    out = tmp_path / "risk.parquet"
    result = cli(
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
    result = cli("train", str(no_surveys), "--out", str(tmp_path / "m2"), "--target", "satisfaction")
    assert result.returncode == 1 and "no surveys table" in result.stderr
    assert not (tmp_path / "m2").exists()
    result = cli("--quiet", "train", str(no_surveys), "--out", str(tmp_path / "m3"), "--forecast-periods", "0")
    assert result.returncode == 0, result.stderr
    assert "satisfaction not trained: the dataset has no surveys table" in result.stdout
    assert set(json.loads((tmp_path / "m3" / "metrics.json").read_text())) == {"conversion", "data", "training"}


def test_the_model_folder_records_every_option_that_shaped_training(cli: Cli, tmp_path: Path) -> None:
    synthetic_dir = tmp_path / "data"
    write_dataset(generate_dataset(800, seed=6), synthetic_dir)
    out = tmp_path / "m"
    result = cli(
        "--quiet",
        "train",
        str(synthetic_dir),
        "--out",
        str(out),
        "--horizon-days",
        "60",
        "--seed",
        "3",
        "--target",
        "conversion",
        "--forecast-periods",
        "0",
    )
    assert result.returncode == 0, result.stderr
    training = json.loads((out / "metrics.json").read_text())["training"]
    assert training["horizon_days"] == 60 and training["seed"] == 3 and training["target"] == "conversion"
    # No backtest asked for: the close-time models are fitted, the forecast says it has no backtest.
    assert training["forecast_periods"] == 0
    assert "backtest" not in json.loads((out / "forecast.json").read_text())
    assert training["data_fingerprint_sha256"] == load_dataset(synthetic_dir).fingerprint()
    model = StageConversionModel.load(out / "conversion" / "lightgbm")
    assert model.spec.horizon_days == 60  # what score uses


def test_score_warns_when_the_export_spells_categories_differently(
    cli: Cli, synthetic_dir: Path, trained_cli: tuple[Path, str], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(synthetic_dir, data)
    customers = pl.read_parquet(data / "customers.parquet")
    # The new export capitalises regions: 'North' where training saw 'north'.
    customers.with_columns(pl.col("region").str.to_titlecase()).write_parquet(data / "customers.parquet")

    validated = cli("validate", str(data))
    assert validated.returncode == 0
    scored = cli(
        "score", str(data), "--model", str(trained_cli[0]), "--as-of", "2026-05-01", "--out", str(tmp_path / "s.csv")
    )
    assert scored.returncode == 0, scored.stderr
    warning = next(line for line in scored.stderr.splitlines() if line.startswith("warning: region:"))
    assert "% of the scored rows have categories the model never saw in training" in warning
    assert "'North' ~ 'north'" in warning and "Traceback" not in scored.stderr

    with pytest.warns(UnseenCategoryWarning, match=r"region: 100% of the scored rows"):
        score_open_opportunities(
            load_dataset(data),
            StageConversionModel.load(trained_cli[0] / "conversion" / "lightgbm"),
            datetime(2026, 5, 1),
        )


def test_validate_points_out_values_that_differ_only_in_case(cli: Cli, tmp_path: Path) -> None:
    tables = tiny_tables()
    tables["customers"] = tables["customers"].with_columns(pl.Series("region", ["north", "North ", "south"]))
    root = tmp_path / "data"
    root.mkdir()
    for name, frame in tables.items():
        frame.write_csv(root / f"{name}.csv")
    result = cli("validate", str(root))
    assert result.returncode == 0
    assert "customers.region: values that differ only in case or spaces: 'North ' (1) and 'north' (1)" in result.stdout


def test_forecast_writes_the_period_and_its_deals(
    cli: Cli, synthetic_dir: Path, tmp_path: Path, trained_cli: tuple[Path, str]
) -> None:
    models, _ = trained_cli
    targets = tmp_path / "targets.csv"
    # A month's target is not the quarter's: only the 2026-Q3 row counts.
    targets.write_text("kpi,period,target\nwon_value,2026-Q3,900000\nwon_value,2026-07,1\nnet_revenue,2026-Q3,5\n")
    out = tmp_path / "forecast.csv"
    args = ["forecast", str(synthetic_dir), "--model", str(models), "--period", "2026-Q3", "--by", "region"]
    result = cli(*args, "--targets", str(targets), "--out", str(out))
    assert result.returncode == 0, result.stderr
    table = pl.read_csv(out)
    total = table.filter(pl.col("segment") == "all").row(0, named=True)
    assert total["target"] == 900_000 and 0 <= total["p_target"] <= 1
    assert total["mean"] == pytest.approx(total["closed"] + total["open_mean"] + total["new_mean"], rel=1e-9)
    assert set(table["segment"]) >= {"all", "north", "south"}
    assert f"P(reaching the target 900,000) = {100 * total['p_target']:.0f}%" in result.stdout
    assert "Backtest: on the last 8 months" in result.stdout
    deals = pl.read_csv(tmp_path / "forecast_deals.csv")
    assert deals.height == total["open_deals"]
    assert {"p_won_by_end", "p_lost_by_end", "p_open_at_end", "expected_close", "slipped"} <= set(deals.columns)
    # Bad input: a period that is not one, an output over an input, a model folder without a forecast model.
    bad = cli(*args[:-4], "--period", "2026-Q5", "--out", str(out))
    assert bad.returncode == 1 and "is not a period" in bad.stderr and "Traceback" not in bad.stderr
    over = cli(*args, "--out", str(targets.with_suffix(".csv")), "--targets", str(targets))
    assert over.returncode != 0 and "input of this run" in over.stderr
    old = tmp_path / "old-models"
    shutil.copytree(models, old)
    shutil.rmtree(old / "close_time")
    none = cli(*args[:3], str(old), "--period", "2026-Q3", "--out", str(tmp_path / "f2.csv"))
    assert none.returncode != 0 and "has no close-time model" in none.stderr and "train it again" in none.stderr


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("kpi,when,target\nwon_value,2026-Q3,1\n", "needs columns kpi, period, target; it lacks period"),
        ("kpi,period,target\nwon_value,2026-Q3,lots\n", "the won_value target of 2026-Q3 is 'lots', not a number"),
        ("kpi,period,target\nwon_value,2026-Q9,5\n", "period '2026-Q9' is not a period"),
    ],
)
def test_forecast_names_what_is_wrong_in_the_targets_file(
    rows: str, message: str, cli: Cli, synthetic_dir: Path, tmp_path: Path, trained_cli: tuple[Path, str]
) -> None:
    targets = tmp_path / "targets.csv"
    targets.write_text(rows, encoding="utf-8")
    out = tmp_path / "f.csv"
    result = cli(
        "forecast", str(synthetic_dir), "--model", str(trained_cli[0]), "--period", "2026-Q3",
        "--targets", str(targets), "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 1 and message in result.stderr and str(targets) in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()
