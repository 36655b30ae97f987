"""Stage-conversion models: quality against the oracle, determinism, persistence, explanations, errors."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from funnelmodels.data.io import load_dataset
from funnelmodels.data.synthetic import generate_dataset, write_dataset
from funnelmodels.errors import ModelError
from funnelmodels.models.conversion import StageConversionModel
from funnelmodels.models.predict import score_open_opportunities
from funnelmodels.models.train import ConversionTraining, train_conversion


@pytest.fixture(scope="session")
def trained(synthetic_dir: Path) -> ConversionTraining:
    return train_conversion(load_dataset(synthetic_dir), seed=0)


def test_metrics_cover_engines_stages_and_oracle(trained: ConversionTraining) -> None:
    m = trained.metrics
    assert set(m["engine"]) == {"lightgbm", "logit", "oracle"}
    assert m.filter(pl.col("engine") == "lightgbm")["stage"].to_list() == [
        "all",
        "lead",
        "qualified",
        "relationship",
        "proposal",
    ]
    assert m["n"].min() > 0
    assert trained.test["censored"].sum() == 0
    assert trained.split.test_start > trained.split.validation_start


def test_training_twice_gives_identical_predictions_and_files(synthetic_dir: Path, tmp_path: Path) -> None:
    ds = load_dataset(synthetic_dir)
    first = train_conversion(ds, seed=0, engines=("lightgbm",))
    second = train_conversion(ds, seed=0, engines=("lightgbm",))
    a = first.models["lightgbm"].predict_proba(first.test)
    b = second.models["lightgbm"].predict_proba(second.test)
    assert np.array_equal(a, b)
    first.models["lightgbm"].save(tmp_path / "a")
    second.models["lightgbm"].save(tmp_path / "b")
    for name in ("model.json", "booster_all.txt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_saved_models_score_identically_in_a_fresh_process(trained: ConversionTraining, tmp_path: Path) -> None:
    rows = trained.test.head(200)
    rows.write_parquet(tmp_path / "rows.parquet")
    for engine, model in trained.models.items():
        model.save(tmp_path / engine)
        expected = model.predict_proba(rows)
        script = (
            "import sys, numpy as np, polars as pl\n"
            "from funnelmodels.models.conversion import StageConversionModel\n"
            "m = StageConversionModel.load(sys.argv[1])\n"
            "np.save(sys.argv[3], m.predict_proba(pl.read_parquet(sys.argv[2])))\n"
        )
        out = tmp_path / f"{engine}.npy"
        subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / engine), str(tmp_path / "rows.parquet"), str(out)],
            check=True,
            timeout=300,
        )
        assert np.array_equal(np.load(out), expected), engine


def test_no_pickle_in_a_saved_model(trained: ConversionTraining, tmp_path: Path) -> None:
    for engine, model in trained.models.items():
        folder = model.save(tmp_path / engine)
        for path in folder.iterdir():
            data = path.read_bytes()
            assert not data.startswith(b"\x80"), f"{path} looks like a pickle"
            assert b"pickle" not in data.lower() and b"joblib" not in data.lower()
            data.decode("utf-8")  # every file is text


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
    assert all(r.endswith(("raises odds", "lowers odds")) for r in sample)
    assert all(len(rs) <= 3 for rs in explained["reasons_up"].to_list())
    importance = model.importance(rows)
    assert importance["mean_abs_contribution"].is_sorted(descending=True)
    assert importance["gain"].sum() > 0
    # LightGBM contributions add up to the raw score (before calibration).
    raw = model._raw_lightgbm(rows)
    bias = raw - model.contributions(rows).sum(axis=1)
    assert np.allclose(bias, bias[0])


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


def test_scoring_before_the_data_starts_is_refused(synthetic_dir: Path, trained: ConversionTraining) -> None:
    with pytest.raises(ModelError, match="before any stage event"):
        score_open_opportunities(load_dataset(synthetic_dir), trained.models["lightgbm"], datetime(2000, 1, 1))


def test_unknown_engine_and_too_little_data(trained: ConversionTraining) -> None:
    with pytest.raises(ModelError, match="engine must be one of lightgbm, logit"):
        StageConversionModel.fit(trained.test, engine="forest")  # type: ignore[arg-type]
    with pytest.raises(ModelError, match="only 10 observed transition rows"):
        StageConversionModel.fit(trained.test.head(10))


def test_model_files_are_stable_text(trained: ConversionTraining, tmp_path: Path) -> None:
    folder = trained.models["logit"].save(tmp_path / "logit")
    digest = hashlib.sha256((folder / "model.json").read_bytes()).hexdigest()
    again = StageConversionModel.load(folder).save(tmp_path / "again")
    assert hashlib.sha256((again / "model.json").read_bytes()).hexdigest() == digest


def test_loading_the_wrong_kind_of_model_is_refused(trained: ConversionTraining, tmp_path: Path) -> None:
    import json as _json

    folder = trained.models["logit"].save(tmp_path / "logit")
    data = _json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(_json.dumps(data | {"kind": "satisfaction"}))
    with pytest.raises(ModelError, match="holds a 'satisfaction' model, not a stage-conversion model"):
        StageConversionModel.load(folder)
    data["metadata"]["format_version"] = 99
    (folder / "model.json").write_text(_json.dumps(data))
    with pytest.raises(ModelError, match="model format 99"):
        StageConversionModel.load(folder)


def test_one_booster_per_stage_option(trained: ConversionTraining, tmp_path: Path) -> None:
    train = pl.concat([trained.test, trained.test])  # enough rows per stage for this check
    model = StageConversionModel.fit(train, validation=trained.test, params={"per_stage": True, "num_boost_round": 30})
    assert set(model.state["models"]) == {"lead", "qualified", "relationship", "proposal"}
    p = model.predict_proba(trained.test)
    assert p.shape == (trained.test.height,) and ((p > 0) & (p < 1)).all()
    again = StageConversionModel.load(model.save(tmp_path / "per_stage"))
    assert np.array_equal(again.predict_proba(trained.test), p)


def test_importance_on_a_sample_ranks_like_the_whole(trained: ConversionTraining) -> None:
    from funnelmodels.models.boosting import importance_rows

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


def _stage_rows(n: int, seed: int, **columns: object) -> pl.DataFrame:
    """Observed lead-stage rows with a numeric signal ``x`` and the given extra columns."""
    x = np.random.default_rng([seed, 1]).normal(0, 1, n)  # a stream of its own, independent of the caller's
    frame = pl.DataFrame({"stage": ["lead"] * n, "censored": [False] * n, "x": x})
    return frame.with_columns(**{k: pl.Series(k, v) for k, v in columns.items()})  # type: ignore[arg-type]


def _assert_every_odds_ratio_is_finite(model: StageConversionModel) -> pl.DataFrame:
    table = model.odds_ratios()
    assert table.height > 0
    for column in ("odds_ratio", "or_low", "or_high", "p_value"):
        values = table[column].drop_nulls().to_numpy()
        assert np.isfinite(values).all(), column
    assert table.filter(pl.col("odds_ratio").is_null() & (pl.col("note") == "")).height == 0
    return table


def test_logit_pools_a_500_level_category_into_other() -> None:
    rng = np.random.default_rng(1)
    n = 20_000
    # 500 accounts, a few big and a long tail (Zipf), each with its own small effect.
    weights = 1 / np.arange(1, 501) ** 1.1
    account = rng.choice(500, n, p=weights / weights.sum())
    effect = rng.normal(0, 0.3, 500)[account]
    frame = _stage_rows(n, 1, account=[f"acct-{a:03d}" for a in account])
    y = rng.random(n) < 1 / (1 + np.exp(-(0.8 * frame["x"].to_numpy() + effect)))
    frame = frame.with_columns(pl.Series("converted", y))

    model = StageConversionModel.fit(frame, engine="logit", features=["x", "account"])

    table = _assert_every_odds_ratio_is_finite(model)
    levels = table.filter(pl.col("term").str.starts_with("account = "))
    assert 1 <= levels.height <= 31  # at most 30 own levels, plus 'other'
    assert "account = other" in levels["term"].to_list()
    assert levels["coef"].abs().max() < 3  # no −21 from a level that never converted
    plan = model.state["stages"]["lead"]["plan"]["categorical"][0]
    counts = frame.group_by("account").agg(pl.len(), pl.col("converted").sum().alias("k"))
    # Every level with its own term has ≥ 30 rows and ≥ 5 conversions and non-conversions.
    own = counts.filter(pl.col("account").is_in(plan["levels"]))
    assert (own["len"] >= 30).all() and (own["k"] >= 5).all() and ((own["len"] - own["k"]) >= 5).all()
    note = " ".join(model.metadata["notes"])
    assert f"{plan['pooled_levels']:,} level(s) of 'account'" in note and "pooled as 'other'" in note
    # The strong numeric signal is still read right: about exp(0.8) per SD.
    x = table.filter(pl.col("term") == "x").row(0, named=True)
    assert 1.9 < x["odds_ratio"] < 2.6


def test_logit_with_perfectly_collinear_purchase_columns() -> None:
    """One order per customer: total = mean = largest. The plain likelihood cannot tell them apart."""
    rng = np.random.default_rng(2)
    n = 4_000
    spend = np.round(np.exp(rng.normal(4, 0.6, n)), 2)
    frame = _stage_rows(n, 2, monetary_total=spend, monetary_mean=spend, monetary_max=spend, frequency=[1] * n)
    logit = 0.7 * frame["x"].to_numpy() + 0.5 * (np.log1p(spend) - 4)
    frame = frame.with_columns(pl.Series("converted", rng.random(n) < 1 / (1 + np.exp(-logit))))

    model = StageConversionModel.fit(
        frame, engine="logit", features=["x", "monetary_total", "monetary_mean", "monetary_max", "frequency"]
    )

    table = _assert_every_odds_ratio_is_finite(model)
    fitted = model.state["stages"]["lead"]
    assert not fitted["penalised"]  # copies are left out; the rest is a plain fit
    assert fitted["plan"]["copies"] == {
        "log(1+monetary_mean)": "log(1+monetary_total)",
        "log(1+monetary_max)": "log(1+monetary_total)",
    }
    notes = " ".join(model.metadata["notes"])
    assert "'log(1+monetary_mean)' = 'log(1+monetary_total)'" in notes and "Each copy was left out" in notes
    assert "Check mle_retvals" not in notes and "nan" not in notes.lower()
    # The spend effect shows once: +0.5 per log unit, 0.5 × SD of log spend (0.6) = 0.3 per SD.
    spend_terms = table.filter(pl.col("term").str.contains("monetary"))
    assert spend_terms["term"].to_list() == ["log(1+monetary_total)"]
    assert 0.2 < spend_terms["coef"][0] < 0.4
    p = model.predict_proba(frame)
    assert np.isfinite(p).all()


def test_logit_with_a_separating_feature() -> None:
    rng = np.random.default_rng(3)
    n = 3_000
    frame = _stage_rows(n, 3)
    base = rng.random(n) < 1 / (1 + np.exp(-frame["x"].to_numpy()))
    flag = rng.random(n) < 0.1
    # Every flagged row converts: the flag separates the outcomes.
    frame = frame.with_columns(pl.Series("flag", flag.astype(float)), pl.Series("converted", base | flag))

    model = StageConversionModel.fit(frame, engine="logit", features=["x", "flag"])

    table = _assert_every_odds_ratio_is_finite(model)
    assert table["or_high"].max() < 1e6
    flag_row = table.filter(pl.col("term") == "flag").row(0, named=True)
    assert flag_row["odds_ratio"] > 3 and "penalised fit" in flag_row["note"]
    notes = " ".join(model.metadata["notes"])
    assert "separates converted from not converted" in notes and "mild penalty" in notes


def test_ordinal_model_says_what_it_left_out_when_columns_are_collinear() -> None:
    from funnelmodels.models.satisfaction import SatisfactionModel

    rng = np.random.default_rng(4)
    n = 3_000
    spend = np.round(np.exp(rng.normal(4, 0.6, n)), 2)
    latent = 0.6 * rng.normal(0, 1, n) + 0.4 * (np.log1p(spend) - 4) + rng.logistic(0, 1, n)
    frame = pl.DataFrame(
        {
            "x": rng.normal(0, 1, n),
            "monetary_total": spend,
            "monetary_mean": spend,
            "monetary_max": spend,
            "csat": 1 + np.searchsorted([-2.6, -1.4, -0.1, 1.7], latent),
        }
    )
    model = SatisfactionModel.fit(
        frame, engine="ordinal", features=["x", "monetary_total", "monetary_mean", "monetary_max"]
    )
    table = model.coefficients()
    assert table.height == 2  # x and one copy of spend
    assert table.select(pl.col("ci_low", "ci_high").is_not_null().all()).row(0) == (True, True)
    assert np.isfinite(table["ci_low"].to_numpy()).all() and np.isfinite(table["ci_high"].to_numpy()).all()
    notes = " ".join(model.metadata["notes"])
    assert "'log(1+monetary_mean)' = 'log(1+monetary_total)'" in notes and "Each copy was left out" in notes


# --- honest out-of-time training and time-aware scoring ---------------------------------------


def test_lightgbm_is_refitted_on_train_and_validation(trained: ConversionTraining) -> None:
    model = trained.models["lightgbm"]
    split = trained.split
    observed_before_test = int((split.train | split.validation).sum())
    assert model.state["refit_rows"] == observed_before_test
    assert model.metadata["train_rows"] + model.metadata["validation_rows"] == observed_before_test
    # Without the refit the booster never sees the validation slice, and predicts differently.
    kept = StageConversionModel.fit(
        trained.history, validation=trained.test, params={"refit": False}, seed=0, spec=model.spec
    )
    refit = StageConversionModel.fit(trained.history, validation=trained.test, seed=0, spec=model.spec)
    assert "refit_rows" not in kept.state and refit.state["refit_rows"] == trained.history.height + trained.test.height
    assert not np.allclose(kept.predict_proba(trained.test), refit.predict_proba(trained.test))


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


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 3, 5])
def test_lightgbm_is_within_a_point_of_the_oracle_on_several_seeds(tmp_path: Path, seed: int) -> None:
    write_dataset(generate_dataset(20_000, seed=seed), tmp_path)
    result = train_conversion(load_dataset(tmp_path), seed=0)
    overall = {r["engine"]: r for r in result.metrics.filter(pl.col("stage") == "all").iter_rows(named=True)}
    assert overall["oracle"]["roc_auc"] - overall["lightgbm"]["roc_auc"] <= 0.01
    assert overall["lightgbm"]["roc_auc"] > overall["logit"]["roc_auc"]
    # ECE on ~4,300 rows is mostly noise: the true probabilities themselves score 0.012–0.023 on
    # seeds 1–8. LightGBM stays within a point of the truth's own ECE.
    assert overall["lightgbm"]["ece"] <= overall["oracle"]["ece"] + 0.01
    assert overall["lightgbm"]["n"] > 4000
