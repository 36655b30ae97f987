"""Stage-conversion models: quality against the oracle, determinism, persistence, explanations, errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from funnelmodels.errors import ModelError
from funnelmodels.models.boosting import importance_rows
from funnelmodels.models.conversion import StageConversionModel
from funnelmodels.models.train import ConversionTraining


def test_loading_a_model_on_another_feature_schema_is_refused(trained: ConversionTraining) -> None:
    model = trained.models["lightgbm"]
    with pytest.raises(ModelError, match=r"missing feature columns \['last_csat'"):
        model.predict_proba(trained.test.drop("last_csat", "mean_csat"))
    with pytest.raises(ModelError, match=r"columns \['income'\] are not numeric"):
        model.predict_proba(trained.test.with_columns(pl.col("income").cast(pl.String)))


def test_logit_reports_odds_ratios_with_intervals(trained: ConversionTraining) -> None:
    table = trained.models["logit"].odds_ratios()
    assert set(table["stage"]) == {"lead", "qualified", "relationship", "proposal"}
    assert (table["or_low"] <= table["odds_ratio"]).all() and (table["odds_ratio"] <= table["or_high"]).all()
    # The generator's referral effect (+0.6 log-odds) shows as an odds ratio above 1 at the lead stage.
    referral = table.filter((pl.col("stage") == "lead") & (pl.col("term") == "source = referral"))
    assert referral["odds_ratio"][0] > 1
    with pytest.raises(ModelError, match="logit engine"):
        trained.models["lightgbm"].odds_ratios()


def test_logit_falls_back_on_a_stage_with_too_few_outcomes(trained: ConversionTraining) -> None:
    train = trained.test.filter(pl.col("stage") != "proposal")
    few = trained.test.filter(pl.col("stage") == "proposal").head(12)
    model = StageConversionModel.fit(pl.concat([train, few]), engine="logit")
    assert any("stage 'proposal'" in note and "too few to fit" in note for note in model.metadata["notes"])
    p = model.predict_proba(few)
    assert np.allclose(p, few["converted"].mean())


def test_explanations_in_words(trained: ConversionTraining) -> None:
    model = trained.models["lightgbm"]
    rows = trained.test.head(50)
    explained = model.explain(rows)
    assert explained.height == 50
    assert np.allclose(explained["probability"].to_numpy(), model.predict_proba(rows))
    sample = [r for rs in explained["reasons_up"].to_list() for r in rs] + [
        r for rs in explained["reasons_down"].to_list() for r in rs
    ]
    assert sample and all(re.search(r" [+−]\d+\.\d pts$", r) for r in sample)
    assert all(len(rs) <= 3 for rs in explained["reasons_up"].to_list())
    assert all("+" in r for rs in explained["reasons_up"] for r in rs)
    assert all("−" in r for rs in explained["reasons_down"] for r in rs)
    # The points of every feature add up to the probability less the model's base probability.
    for engine in ("lightgbm", "logit"):
        points, base = trained.models[engine].probability_points(rows)
        p = trained.models[engine].predict_proba(rows)
        assert np.allclose(points.sum(axis=1), p - base, atol=1e-12), engine
        # ... and each part has the sign of its log-odds contribution.
        contributions = trained.models[engine].contributions(rows)
        assert (np.sign(points) * np.sign(contributions) >= 0).all(), engine
    assert np.allclose(explained["base_probability"], explained["base_probability"][0]), "one base for LightGBM"
    importance = model.importance(rows)
    assert importance["mean_abs_contribution"].is_sorted(descending=True)
    assert importance["gain"].sum() > 0
    # LightGBM contributions add up to the raw score (before calibration).
    raw = model._raw_lightgbm(model.prepare(rows))
    bias = raw - model.contributions(rows).sum(axis=1)
    assert np.allclose(bias, bias[0])


def test_unknown_engine_and_too_little_data(trained: ConversionTraining) -> None:
    with pytest.raises(ModelError, match="engine must be one of lightgbm, logit"):
        StageConversionModel.fit(trained.test, engine="forest")  # type: ignore[arg-type]
    with pytest.raises(ModelError, match="only 10 observed transition rows"):
        StageConversionModel.fit(trained.test.head(10))


def test_one_booster_per_stage_option(trained: ConversionTraining, tmp_path: Path) -> None:
    train = pl.concat([trained.test, trained.test])  # enough rows per stage for this check
    model = StageConversionModel.fit(train, validation=trained.test, params={"per_stage": True, "num_boost_round": 30})
    assert set(model.state["models"]) == {"lead", "qualified", "relationship", "proposal"}
    p = model.predict_proba(trained.test)
    assert p.shape == (trained.test.height,) and ((p > 0) & (p < 1)).all()
    again = StageConversionModel.load(model.save(tmp_path / "per_stage"))
    assert np.array_equal(again.predict_proba(trained.test), p)


def test_importance_on_a_sample_ranks_like_the_whole(trained: ConversionTraining) -> None:

    rows = trained.test
    assert importance_rows(rows, None) is rows and importance_rows(rows, rows.height) is rows
    sample = importance_rows(rows, 200)
    assert sample.height == 200 and sample.equals(importance_rows(rows, 200))  # seeded
    assert sample["entered_at"].is_sorted()  # the rows keep their order
    model = trained.models["lightgbm"]
    whole = model.importance(rows, max_rows=None)
    part = model.importance(rows, max_rows=rows.height // 2)
    assert whole["feature"].head(3).to_list() == part["feature"].head(3).to_list()


# --- the logit on real categories and real columns ---------------------------------------------


# --- honest out-of-time training and time-aware scoring ---------------------------------------
