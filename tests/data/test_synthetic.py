"""The generator: reproducible, realistic, and its ground truth consistent with its data."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from funnelmodels.data.synthetic import (
    CSAT_CUTS,
    SyntheticData,
    generate_dataset,
    oracle_auc,
    write_dataset,
)


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    for run in ("a", "b"):
        write_dataset(generate_dataset(400, seed=11), tmp_path / run)
    first, second = _hashes(tmp_path / "a"), _hashes(tmp_path / "b")
    assert len(first) == 7  # four tables, two truth tables, coefficients.json
    assert first == second
    write_dataset(generate_dataset(400, seed=12), tmp_path / "c")
    assert _hashes(tmp_path / "c")["transactions.parquet"] != first["transactions.parquet"]


def test_same_seed_gives_identical_csv_files(tmp_path: Path) -> None:
    for run in ("a", "b"):
        write_dataset(generate_dataset(200, seed=3), tmp_path / run, fmt="csv")
    assert _hashes(tmp_path / "a") == _hashes(tmp_path / "b")


def test_funnel_is_realistic_not_easy(synthetic: SyntheticData) -> None:
    events = synthetic.stage_events
    leads = events.filter(pl.col("stage") == "lead", pl.col("entered_at") < pl.datetime(2025, 6, 1))
    won = events.filter(pl.col("stage") == "won").select("opportunity_id")
    end_to_end = leads.join(won, on="opportunity_id", how="semi").height / leads.height
    assert 0.05 <= end_to_end <= 0.15
    for stage, auc in oracle_auc(synthetic.ground_truth["conversion"]).items():
        assert 0.65 <= auc <= 0.85, (stage, auc)


def test_true_probabilities_match_observed_conversion(synthetic: SyntheticData) -> None:
    truth = synthetic.ground_truth["conversion"].filter(~pl.col("censored"))
    per_stage = truth.group_by("stage").agg(
        pl.col("true_probability").mean().alias("expected"),
        pl.col("converted").mean().alias("observed"),
        pl.len().alias("n"),
    )
    for row in per_stage.iter_rows(named=True):
        se = np.sqrt(row["expected"] * (1 - row["expected"]) / row["n"])
        assert abs(row["observed"] - row["expected"]) < 3.5 * se, row


def test_truth_covers_every_transition_and_survey(synthetic: SyntheticData) -> None:
    entered = synthetic.stage_events.filter(pl.col("stage").is_in(["lead", "qualified", "relationship", "proposal"]))
    truth = synthetic.ground_truth["conversion"]
    assert truth.height == entered.height
    assert truth.join(entered, on=["opportunity_id", "stage", "entered_at"], how="anti").height == 0
    sat = synthetic.ground_truth["satisfaction"]
    assert sat.height == synthetic.surveys.height
    levels = sat.select(pl.sum_horizontal(f"p_csat_{k}" for k in range(1, 6))).to_series()
    assert levels.to_numpy() == pytest.approx(1.0)


def test_satisfaction_follows_the_true_cuts(synthetic: SyntheticData) -> None:
    # Expected share of csat 4-5 from the truth equals the observed share (law of large numbers).
    joined = synthetic.surveys.join(synthetic.ground_truth["satisfaction"], on=["customer_id", "responded_at"]).filter(
        pl.col("csat").is_not_null()
    )
    expected = joined.select(pl.col("p_csat_4") + pl.col("p_csat_5")).to_series().mean()
    observed = (joined["csat"] >= 4).mean()
    assert abs(observed - expected) < 0.03
    assert len(CSAT_CUTS) == 4


def test_data_has_the_awkward_parts_of_real_data(synthetic: SyntheticData) -> None:
    customers, transactions = synthetic.customers, synthetic.transactions
    assert customers["age"].null_count() > 0 and customers["income"].null_count() > 0
    assert (transactions["amount"] < 0).sum() > 0, "refunds"
    truth = synthetic.ground_truth["conversion"]
    assert truth["censored"].sum() > 0, "open opportunities at the end"
    closed = synthetic.stage_events.filter(pl.col("stage").is_in(["won", "lost"]))["opportunity_id"]
    leads = synthetic.stage_events.filter(pl.col("stage") == "lead")
    assert leads.height > closed.n_unique(), "some opportunities are still open"
    per_customer = leads.group_by("customer_id").len()
    assert per_customer["len"].max() > 1, "returning customers open new opportunities"
    months = transactions.filter(pl.col("amount") > 0).group_by(pl.col("ordered_at").dt.month()).len()
    by_month = dict(zip(months["ordered_at"].to_list(), months["len"].to_list(), strict=True))
    assert by_month[12] > by_month[8], "Q4 peak"


def test_coefficients_are_written(tmp_path: Path) -> None:
    write_dataset(generate_dataset(100, seed=1), tmp_path)
    coef = json.loads((tmp_path / "ground_truth" / "coefficients.json").read_text())
    assert coef["satisfaction"]["beta"]["prior_refunds"] < 0
    assert set(coef["conversion"]["intercept"]) == {"lead", "qualified", "relationship", "proposal"}


def test_bad_size_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        generate_dataset(0)


def test_unrecorded_losses_leave_leads_quietly_open() -> None:
    data = generate_dataset(1_500, seed=4, unrecorded_losses=1.0)
    events, outcomes = data.stage_events, data.ground_truth["opportunities"]
    assert events.filter(pl.col("stage") == "lost").height == 0  # no loss is ever recorded
    lost = outcomes.filter(pl.col("outcome") == "lost")
    assert lost.height > 500 and not lost["loss_recorded"].any()
    # A truly lost opportunity has no event at or after the moment it was lost.
    after = events.join(lost.select("opportunity_id", "closed_at"), on="opportunity_id").filter(
        pl.col("entered_at") >= pl.col("closed_at")
    )
    assert after.height == 0
    # Won ones are recorded as won, at the time the truth says.
    won = outcomes.filter(pl.col("outcome") == "won").join(events.filter(pl.col("stage") == "won"), on="opportunity_id")
    assert won.height == outcomes.filter(pl.col("outcome") == "won").height
    assert (won["closed_at"] == won["entered_at"]).all()
    # Half recorded: about half of the losses show up as 'lost' events.
    half = generate_dataset(1_500, seed=4, unrecorded_losses=0.5)
    truth = half.ground_truth["opportunities"].filter(pl.col("outcome") == "lost")
    recorded = half.stage_events.filter(pl.col("stage") == "lost").height
    assert recorded == truth["loss_recorded"].sum() and 0.4 < recorded / truth.height < 0.6


def test_the_default_data_has_no_outcome_truth_and_records_every_loss(synthetic: SyntheticData) -> None:
    assert set(synthetic.ground_truth) == {"conversion", "satisfaction"}
    with pytest.raises(ValueError, match="unrecorded_losses must be a share from 0 to 1"):
        generate_dataset(10, unrecorded_losses=1.5)
