"""The statsmodels engines' design: rare levels pooled, copies and combinations of columns, separation."""

from __future__ import annotations

import numpy as np
import polars as pl

from funnelmodels.models.conversion import StageConversionModel
from funnelmodels.models.satisfaction import SatisfactionModel


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
