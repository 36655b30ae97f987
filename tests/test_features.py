"""Point-in-time features: hand-made answers, the leakage guard, and agreement with the generator."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from handmade import tiny_tables

from funnelmodels.data.io import Dataset, load_dataset
from funnelmodels.features import activity_features, build_features, build_transition_features, feature_columns
from funnelmodels.funnel import build_transitions

Writer = Callable[..., Path]


def _rows(*moments: str) -> pl.LazyFrame:
    return pl.DataFrame(
        {"customer_id": [1] * len(moments), "as_of": [datetime.fromisoformat(m) for m in moments]}
    ).lazy()


def test_purchase_history_is_strictly_before_as_of(tiny: Dataset) -> None:
    # Customer 1 bought 120.00 on 2025-01-10 09:00:00 and was refunded on 2025-03-01.
    f = build_features(tiny, _rows("2025-01-10 09:00:00", "2025-01-10 09:00:01", "2025-03-02", "2025-06-01")).collect()
    assert f["frequency"].to_list() == [0, 1, 1, 1]
    assert f["monetary_total"].to_list() == [0.0, 120.0, 120.0, 120.0]
    assert f["recency_days"][0] is None
    assert f["recency_days"][1] == pytest.approx(1 / 86_400)
    assert f["refund_count"].to_list() == [0, 0, 1, 1]
    assert f["refund_amount"].to_list() == [0.0, 0.0, 120.0, 120.0]
    assert f["spend_90d"].to_list() == [0.0, 120.0, 120.0, 0.0]  # the 90 days before 06-01 start 03-03
    assert f["spend_365d"].to_list() == [0.0, 120.0, 120.0, 120.0]
    assert f["distinct_categories"].to_list() == [0, 1, 1, 1]


def test_demographics_satisfaction_and_opportunity_history(tiny: Dataset) -> None:
    f = build_features(tiny, _rows("2025-01-15", "2025-01-15 00:00:01", "2025-02-02")).collect()
    assert f["age"].to_list() == [34.0] * 3
    assert f["region"].to_list() == ["north"] * 3
    assert f["tenure_days"].to_list() == pytest.approx([14.0, 14 + 1 / 86_400, 32.0])
    assert f["last_csat"].to_list() == [None, 4, 4]  # survey at 2025-01-15 00:00:00
    assert f["last_nps"].to_list() == [None, 9, 9]
    assert f["survey_count"].to_list() == [0, 1, 1]
    assert f["prior_wins"].to_list() == [0, 0, 1]  # opportunity 100 won on 2025-02-01
    assert f["prior_opportunities"].to_list() == [1, 1, 1]  # opportunity 100 started 2025-01-02


def test_rows_keep_their_order_and_extra_columns(tiny: Dataset) -> None:
    rows = _rows("2025-06-01", "2025-01-01", "2025-03-02").with_columns(pl.Series("tag", ["a", "b", "c"]))
    f = build_features(tiny, rows).collect()
    assert f["tag"].to_list() == ["a", "b", "c"]
    assert f["frequency"].to_list() == [1, 0, 1]


def _planted(tables: dict[str, pl.DataFrame], when: datetime) -> dict[str, pl.DataFrame]:
    stamp = when.isoformat(sep=" ")
    tables = dict(tables)
    tables["transactions"] = pl.concat(
        [
            tables["transactions"],
            pl.DataFrame(
                {
                    "order_id": [99],
                    "customer_id": [1],
                    "ordered_at": [stamp],
                    "amount": [5000.0],
                    "category": ["hardware"],
                }
            ),
        ]
    )
    tables["surveys"] = pl.concat(
        [tables["surveys"], pl.DataFrame({"customer_id": [1], "responded_at": [stamp], "csat": [1], "nps": [0]})],
        how="diagonal_relaxed",
    )
    return tables


def test_leakage_guard_one_second_after_is_excluded(write_tables: Writer) -> None:
    as_of = datetime(2025, 4, 1, 12, 0, 0)
    base = build_features(load_dataset(write_tables(tiny_tables(), "base")), _rows(as_of.isoformat())).collect()
    after = load_dataset(write_tables(_planted(tiny_tables(), as_of + timedelta(seconds=1)), "after"))
    at = load_dataset(write_tables(_planted(tiny_tables(), as_of), "at"))
    before = load_dataset(write_tables(_planted(tiny_tables(), as_of - timedelta(seconds=1)), "before"))
    assert build_features(after, _rows(as_of.isoformat())).collect().equals(base)
    assert build_features(at, _rows(as_of.isoformat())).collect().equals(base)
    seen = build_features(before, _rows(as_of.isoformat())).collect()
    assert seen["frequency"][0] == base["frequency"][0] + 1
    assert seen["last_csat"][0] == 1 and base["last_csat"][0] == 4


def _cut(dataset: Dataset, moment: datetime, root: Path) -> Dataset:
    times = {
        "customers": "created_at",
        "transactions": "ordered_at",
        "stage_events": "entered_at",
        "surveys": "responded_at",
    }
    root.mkdir()
    for name, frame in dataset.tables.items():
        frame.filter(pl.col(times[name]) < moment).write_parquet(root / f"{name}.parquet")
    return load_dataset(root)


def test_features_never_change_when_later_data_is_appended(synthetic_dir: Path, tmp_path: Path) -> None:
    full = load_dataset(synthetic_dir)
    cutoff = datetime(2025, 9, 1)
    early = _cut(full, cutoff, tmp_path / "early")

    def features(ds: Dataset) -> pl.DataFrame:
        transitions = build_transitions(ds.lazy("stage_events"), ds.spec, end=cutoff)
        rows = build_transition_features(ds, transitions).filter(pl.col("entered_at") < cutoff)
        cols = ["opportunity_id", "entry", *feature_columns(rows)]
        return rows.select(cols).collect().sort("opportunity_id", "stage", "entry")

    got_early, got_full = features(early), features(full)
    assert got_early.height > 1000
    assert got_early.equals(got_full)


def test_features_reproduce_the_generators_true_probabilities(synthetic_dir: Path) -> None:
    """The generator computed its probabilities from point-in-time features; ours must match them."""
    ds = load_dataset(synthetic_dir)
    coef = json.loads((synthetic_dir / "ground_truth" / "coefficients.json").read_text())
    truth = pl.read_parquet(synthetic_dir / "ground_truth" / "conversion.parquet")
    f = build_transition_features(ds, build_transitions(ds.lazy("stage_events"), ds.spec)).collect()
    f = f.join(truth, on=["opportunity_id", "stage", "entered_at"])
    assert f.height == truth.height
    base_income, base_deal = coef["base_income"], coef["base_deal"]
    age = (f["age"].fill_null(45.0).to_numpy() - 45) / 10
    log_income = np.log(f["income"].fill_null(base_income).to_numpy() / base_income)
    knowledge = f["product_knowledge"].fill_null(2.5).to_numpy()
    recency = f["recency_days"].to_numpy().astype(float)
    stage = f["stage"].to_numpy()
    x = {
        "log_income_ratio": log_income,
        "age_per_10y": age,
        "age_per_10y_squared": age**2,
        "recent_buyer_exp_recency_60d": np.where(np.isnan(recency), 0.0, np.exp(-np.nan_to_num(recency) / 60)),
        "log1p_prior_orders": np.log1p(f["frequency"].to_numpy()),
        "last_csat_minus_3": np.nan_to_num(f["last_csat"].to_numpy().astype(float) - 3),
        "log_deal_ratio": np.log(np.maximum(f["deal_amount"].to_numpy(), 10) / base_deal),
        "product_knowledge_ge_4_at_qualified": (knowledge >= 4) * (stage == "qualified"),
        "log_income_ratio_at_proposal": log_income * (stage == "proposal"),
    }
    for prefix, column in (("source", "source"), ("region", "region")):
        values = f[column].to_numpy()
        for name in [k.split("_", 1)[1] for k in coef["conversion"]["effects"] if k.startswith(prefix + "_")]:
            x[f"{prefix}_{name}"] = (values == name).astype(float)
    effects = coef["conversion"]["effects"]
    score = sum(effects[k] * x[k] for k in effects)
    intercept = np.array([coef["conversion"]["intercept"][s] for s in stage])
    expected = 1 / (1 + np.exp(-(intercept + score)))
    assert f["true_probability"].to_numpy() == pytest.approx(expected, rel=1e-9)


def _activities(*extra: tuple[str, str]) -> pl.LazyFrame:
    """Opportunity 100's activities: a call in its lead stage, a meeting in its qualified stage, and ``extra``."""
    rows = [("2025-01-05 00:00:00", "call"), ("2025-01-12 00:00:00", "meeting"), *extra]
    return pl.LazyFrame(
        {
            "opportunity_id": [100] * len(rows),
            "at": [datetime.fromisoformat(at) for at, _ in rows],
            "type": [kind for _, kind in rows],
        }
    )


def test_activity_features_by_hand_and_nothing_at_or_after_as_of() -> None:
    as_of = datetime(2025, 1, 20, 12)
    row = pl.LazyFrame(
        {
            "opportunity_id": [100],
            "as_of": [as_of],
            "entered_at": [datetime(2025, 1, 9)],  # the qualified stage
            "opportunity_start": [datetime(2025, 1, 2)],
        }
    )
    base = activity_features(row, _activities()).collect().row(0, named=True)
    # By hand: one call (lead stage), one meeting (this stage); the meeting is 8.5 days old, the call 15.5.
    assert (base["call_count"], base["meeting_count"], base["call_in_stage"], base["meeting_in_stage"]) == (1, 1, 0, 1)
    assert (base["touches_14d"], base["touches_30d"]) == (1, 2)
    assert base["days_since_last_touch"] == pytest.approx(8.5)
    assert base["first_response_days"] == pytest.approx(3.0)
    assert base["touches_per_week_in_stage"] == pytest.approx(1 / (11.5 / 7))
    for moment in (as_of, as_of + timedelta(seconds=1)):
        later = activity_features(row, _activities((moment.isoformat(sep=" "), "demo"))).collect()
        assert later.row(0, named=True) == base
    seen = activity_features(row, _activities(((as_of - timedelta(seconds=1)).isoformat(sep=" "), "demo"))).collect()
    seen_row = seen.row(0, named=True)
    assert (seen_row["demo_count"], seen_row["demo_in_stage"], seen_row["touches_14d"]) == (1, 1, 2)
    assert seen_row["days_since_last_touch"] == pytest.approx(1 / 86_400)
