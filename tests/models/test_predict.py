"""Scores of the present: win probability of open deals, customers at risk, and their reasons."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from funnelmodels.data.io import load_dataset
from funnelmodels.data.synthetic import generate_dataset, true_low_satisfaction, true_satisfaction, write_dataset
from funnelmodels.errors import ModelError
from funnelmodels.features import extra_features
from funnelmodels.models.predict import at_risk_customers, score_open_opportunities
from funnelmodels.models.train import ConversionTraining, SatisfactionTraining, train_conversion, train_satisfaction


def test_win_probability_is_the_product_of_remaining_stages(synthetic_dir: Path, trained: ConversionTraining) -> None:
    ds = load_dataset(synthetic_dir)
    model = trained.models["lightgbm"]
    scored = score_open_opportunities(ds, model, datetime(2026, 7, 1))
    assert scored.height > 20
    proposal = scored.filter(pl.col("stage") == "proposal")
    assert np.allclose(proposal["win_probability"], proposal["p_next_stage"])
    earlier = scored.filter(pl.col("stage") != "proposal")
    assert (earlier["win_probability"] < earlier["p_next_stage"]).all()
    assert np.allclose(scored["expected_value"], scored["amount"] * scored["win_probability"])
    assert scored["expected_value"].is_sorted(descending=True, nulls_last=True)


def test_reasons_go_to_the_deals_worth_most_and_are_those_of_a_full_explanation(
    synthetic_dir: Path, trained: ConversionTraining
) -> None:
    ds = load_dataset(synthetic_dir)
    model = trained.models["lightgbm"]
    every = score_open_opportunities(ds, model, datetime(2026, 7, 1), reasons=True)
    some = score_open_opportunities(ds, model, datetime(2026, 7, 1), reasons=5)
    none = score_open_opportunities(ds, model, datetime(2026, 7, 1), reasons=False)
    assert every.height == some.height == none.height > 20
    assert every.drop("reasons_up", "reasons_down").equals(some.drop("reasons_up", "reasons_down"))
    said = some["reasons_up"].list.len() + some["reasons_down"].list.len()
    # The rows come worth most first: the first five have their reasons (the same as with every deal
    # explained), the rest none.
    assert (said.head(5) > 0).all() and (said.tail(some.height - 5) == 0).all()
    assert some.head(5)["reasons_up"].to_list() == every.head(5)["reasons_up"].to_list()
    assert some.head(5)["reasons_down"].to_list() == every.head(5)["reasons_down"].to_list()
    assert (none["reasons_up"].list.len() + none["reasons_down"].list.len() == 0).all()


def test_scoring_before_the_data_starts_is_refused(synthetic_dir: Path, trained: ConversionTraining) -> None:
    with pytest.raises(ModelError, match="before any stage event"):
        score_open_opportunities(load_dataset(synthetic_dir), trained.models["lightgbm"], datetime(2000, 1, 1))


def test_a_lead_that_has_waited_long_is_not_scored_like_a_fresh_one(tmp_path: Path) -> None:
    """Cold leads (losses never recorded): the longer a lead has waited, the lower its win probability."""
    write_dataset(generate_dataset(4_000, seed=5, unrecorded_losses=1.0), tmp_path)
    data = load_dataset(tmp_path)
    model = train_conversion(data, seed=0, engines=("lightgbm",)).models["lightgbm"]
    scored = score_open_opportunities(data, model, datetime(2026, 1, 1))
    leads = scored.filter(pl.col("stage") == "lead")
    fresh = leads.filter(pl.col("days_in_stage_so_far") <= 14)["win_probability"].mean()
    stale = leads.filter(pl.col("days_in_stage_so_far") > 180)["win_probability"].mean()
    assert leads.filter(pl.col("days_in_stage_so_far") > 180).height > 100  # cold leads pile up
    assert stale < fresh / 10, (fresh, stale)


def test_at_risk_list_with_reasons(synthetic_dir: Path, satisfaction: SatisfactionTraining) -> None:
    risk = at_risk_customers(load_dataset(synthetic_dir), satisfaction.models["ordinal"], datetime(2026, 7, 1), top=10)
    assert risk.height == 10
    assert risk["p_low"].is_sorted(descending=True)
    # Reasons in points of the chance of a low score: what raises it, what lowers it.
    assert all(re.search(r" \+\d+\.\d pts$", r) for rs in risk["risk_up"].to_list() for r in rs)
    assert all(re.search(r" −\d+\.\d pts$", r) for rs in risk["risk_down"].to_list() for r in rs)
    assert sum(len(rs) for rs in risk["risk_up"].to_list()) > 10
    # Reasons are computed only for the rows returned: the same as the head of the full list.
    everyone = at_risk_customers(
        load_dataset(synthetic_dir), satisfaction.models["ordinal"], datetime(2026, 7, 1), top=None
    )
    head = everyone.head(10)
    assert everyone.height > 100
    assert head.select("customer_id", "risk_up", "risk_down").equals(
        risk.select(head.select("customer_id", "risk_up", "risk_down").columns)
    )
    assert np.allclose(
        head["p_low"].to_numpy(), risk["p_low"].to_numpy(), rtol=1e-12
    )  # matrix products may round differently


@pytest.mark.slow
def test_at_risk_list_finds_the_truly_unhappy_better_than_the_last_answer(tmp_path: Path) -> None:
    """Surveys answered 1–4 weeks after an order; the list is judged against the generator's truth."""

    data = generate_dataset(8_000, seed=1, survey_lag_days=(7, 28))
    write_dataset(data, tmp_path)
    dataset = load_dataset(tmp_path)
    model = train_satisfaction(dataset, engines=("ordinal",), seed=0).models["ordinal"]
    as_of = datetime(2026, 7, 1)

    listed = at_risk_customers(dataset, model, as_of, top=None)

    lag = model.metadata["response_lag"]
    assert 20 < lag["p95"] < 30  # answers come 7–28 days after an order
    inside = listed.filter(pl.col("in_range"))
    assert 1_000 < inside.height < listed.height  # the rest bought too long ago to be ranked
    assert (listed.filter(~pl.col("in_range"))["note"].str.contains("out of range")).all()
    last = (
        data.transactions.filter((pl.col("amount") > 0) & (pl.col("ordered_at") < as_of))
        .sort("ordered_at", "order_id")
        .group_by("customer_id")
        .agg(pl.col("order_id").last())
    )
    judged = inside.join(last, on="customer_id")
    truth = true_low_satisfaction(
        true_satisfaction(data, judged["customer_id"].to_numpy(), as_of, judged["order_id"].to_numpy())
    )
    judged = judged.with_columns(pl.Series("truth", truth))
    k = judged.height // 10
    truly = set(judged.sort("truth", descending=True).head(k)["customer_id"])
    ours = set(judged.sort("p_low", descending=True).head(k)["customer_id"])
    naive = set(judged.sort(pl.col("last_csat").fill_null(99), "customer_id").head(k)["customer_id"])
    # Precision of the top 10%: the model ~0.9, "lowest last CSAT first" ~0.3 (seeds 1 and 2).
    assert len(ours & truly) / k > len(naive & truly) / k + 0.3
    # Nobody who just answered 5 is at the top with a near-certain risk.
    top = inside.head(20)
    assert top.filter((pl.col("last_csat") == 5) & (pl.col("p_low") > 0.9)).height == 0


def test_risk_points_add_up_to_the_chance_of_a_low_score_less_the_base(satisfaction: SatisfactionTraining) -> None:
    rows = satisfaction.test.head(200)
    for engine, model in satisfaction.models.items():
        points, base = model.risk_points(rows)
        p_low = model.low_share(model.predict_proba(rows))
        assert np.allclose(points.sum(axis=1), p_low - base, atol=1e-12), engine
    # The ordinal model: what raises satisfaction lowers the risk, feature by feature.
    ordinal = satisfaction.models["ordinal"]
    points, _ = ordinal.risk_points(rows)
    assert (np.sign(points) * np.sign(ordinal.contributions(rows)) <= 0).all()


def test_reasons_never_run_against_the_customers_own_answer(satisfaction: SatisfactionTraining) -> None:
    rows = satisfaction.test.filter(pl.col("last_csat").is_not_null()).head(300)
    for engine, model in satisfaction.models.items():
        explained = model.explain(rows)
        for last, ups, downs in zip(rows["last_csat"], explained["reasons_up"], explained["reasons_down"], strict=True):
            assert not (last <= 2 and any(r.startswith("last CSAT") for r in ups)), (engine, last, ups)
            assert not (last >= 4 and any(r.startswith("last CSAT") for r in downs)), (engine, last, downs)


def test_lists_carry_names_owners_last_purchase_last_answer_and_value(
    synthetic_dir: Path, trained: ConversionTraining, satisfaction: SatisfactionTraining
) -> None:
    """A list a seller can work: who the customer is, who owns the deal, what they bought and said."""
    data = load_dataset(synthetic_dir)
    customers = data.tables["customers"].with_columns(
        ("Customer " + pl.col("customer_id").cast(pl.String)).alias("name")
    )
    events = data.tables["stage_events"].with_columns(
        ("rep " + (pl.col("opportunity_id") % 7).cast(pl.String)).alias("owner")
    )
    named = dataclasses.replace(data, tables=dict(data.tables) | {"customers": customers, "stage_events": events})
    as_of = datetime(2026, 7, 1)

    scored = score_open_opportunities(named, trained.models["lightgbm"], as_of)
    assert scored.columns[:4] == ["opportunity_id", "customer_id", "name", "owner"]
    assert (scored["name"] == "Customer " + scored["customer_id"].cast(pl.String)).all()
    assert (scored["owner"] == "rep " + (scored["opportunity_id"] % 7).cast(pl.String)).all()
    assert "name" not in extra_features(named), "a name identifies a customer; it is not a feature"

    risk = at_risk_customers(named, satisfaction.models["ordinal"], as_of, top=15)
    assert risk.columns[:3] == ["customer_id", "name", "owner"]
    # Worked out from the tables directly: last purchase, last answer and the year's spend.
    tx = data.tables["transactions"].filter((pl.col("ordered_at") < as_of) & (pl.col("amount") > 0))
    surveys = data.tables["surveys"].filter(pl.col("responded_at") < as_of).sort("responded_at")
    for row in risk.iter_rows(named=True):
        mine = tx.filter(pl.col("customer_id") == row["customer_id"])
        assert row["last_order"] == mine["ordered_at"].max().date()
        # Value at stake: what the customer bought in the year before as_of (purchases, not refunds).
        year = mine.filter(pl.col("ordered_at") >= datetime(2025, 7, 1))
        assert year.height > 0 and row["value_at_stake"] == pytest.approx(year["amount"].sum())
        said = surveys.filter(pl.col("customer_id") == row["customer_id"]).tail(1)
        if said.height:
            last = said.row(0, named=True)
            scores = [f"{c.upper()} {last[c]:.0f}" for c in ("csat", "nps") if last.get(c) is not None]
            day = last["responded_at"]
            assert row["last_answer"] == f"{', '.join(scores)} on {day.day} {day:%b %Y}"
        else:
            assert row["last_answer"] is None
    # Without those columns the lists are as before: nothing is made up.
    assert "name" not in at_risk_customers(data, satisfaction.models["ordinal"], as_of, top=3).columns
