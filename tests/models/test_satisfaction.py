"""Satisfaction models: truth recovery, evaluation against baselines, persistence, bad input."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from funnelmodels.config import load_config
from funnelmodels.data.io import Dataset, load_dataset
from funnelmodels.data.synthetic import generate_dataset, write_dataset
from funnelmodels.errors import DataValidationError, ModelError
from funnelmodels.features import build_features
from funnelmodels.models.satisfaction import SatisfactionModel, _ordered_logit, ordinal_metrics
from funnelmodels.models.train import SatisfactionTraining, train_satisfaction


@pytest.mark.slow
def test_ordinal_model_recovers_the_true_coefficients(tmp_path: Path) -> None:
    write_dataset(generate_dataset(12_000, seed=5), tmp_path)
    beta = json.loads((tmp_path / "ground_truth" / "coefficients.json").read_text())["satisfaction"]["beta"]
    result = train_satisfaction(load_dataset(tmp_path), engines=("ordinal",), seed=0)
    coef = {r["term"]: r for r in result.models["ordinal"].coefficients().iter_rows(named=True)}
    # The truth per unit of the model's terms: age per year, log income, refunds, log(1 + prior orders), regions.
    truth = {
        "age": beta["age_per_10y"] / 10,
        "log(1+income)": beta["log_income_ratio"],
        "product_knowledge": beta["product_knowledge"],
        "refund_count": beta["prior_refunds"],
        "log(1+frequency)": beta["log1p_prior_orders"],
        "region = south": beta["region_south"],
        "region = east": beta["region_east"],
        "region = central": beta["region_central"],
    }
    for term, value in truth.items():
        row = coef[term]
        assert row["per_unit_low"] <= value <= row["per_unit_high"], (term, value, row)


def test_ordinal_metrics_by_hand() -> None:
    # Two responses (1 and 5); the model puts all mass on 3 for both.
    proba = np.array([[0, 0, 1.0, 0, 0], [0, 0, 1.0, 0, 0]])
    m = ordinal_metrics(np.array([1, 5]), proba, (1, 2, 3, 4, 5), 4)
    assert m["mae"] == 2.0
    assert m["within_one"] == 0.0
    # RPS of y=1: CDFs (0,0,1,1) vs (1,1,1,1) → 2/4; of y=5: (0,0,1,1) vs (0,0,0,0) → 2/4.
    assert m["rps"] == pytest.approx(0.5)


def test_predict_is_the_expected_score(satisfaction: SatisfactionTraining) -> None:
    model = satisfaction.models["ordinal"]
    rows = satisfaction.test.head(20)
    proba = model.predict_proba(rows)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert np.allclose(model.predict(rows), proba @ np.arange(1, 6))


def test_key_drivers_from_both_engines(satisfaction: SatisfactionTraining) -> None:
    coef = {r["term"]: r for r in satisfaction.models["ordinal"].coefficients().iter_rows(named=True)}
    # The generator's strongest main effects come out with the right sign and clearly non-zero.
    assert coef["refund_count"]["ci_high"] < 0
    assert coef["product_knowledge"]["ci_low"] > 0
    drivers = satisfaction.models["lightgbm"].importance(satisfaction.test)
    top = drivers.head(3)["feature"].to_list()
    assert "refund_count" in top or "refund_amount" in top
    refunds = drivers.filter(pl.col("feature") == "refund_count")["direction"][0]
    assert refunds == "−"


def test_nps_target_gives_promoter_and_detractor_probabilities(synthetic_dir: Path) -> None:
    result = train_satisfaction(load_dataset(synthetic_dir), target="nps", engines=("ordinal",))
    model = result.models["ordinal"]
    proba = model.predict_proba(result.test.head(10))
    assert proba.shape == (10, 11)
    explained = model.explain(result.test.head(10))
    assert np.allclose(explained["p_low"].to_numpy(), proba[:, :7].sum(axis=1))


def test_bad_input_is_named(satisfaction: SatisfactionTraining) -> None:
    rows = satisfaction.train
    with pytest.raises(ModelError, match="only 50 survey responses"):
        SatisfactionModel.fit(rows.head(50))
    with pytest.raises(ModelError, match="every csat score is 4"):
        SatisfactionModel.fit(rows.head(300).with_columns(pl.lit(4).alias("csat")))
    with pytest.raises(ModelError, match="no nps column"):
        SatisfactionModel.fit(rows.drop("nps"), target="nps")


def test_the_exact_gradient_ordered_logit_equals_statsmodels() -> None:
    from statsmodels.miscmodels.ordinal_model import OrderedModel
    from statsmodels.tools.numdiff import approx_fprime

    rng = np.random.default_rng(3)
    X = rng.normal(size=(2_000, 4))
    y = np.digitize(X @ np.array([0.8, -0.5, 0.0, 0.3]) + rng.logistic(size=2_000), [-2.0, -0.5, 0.5, 2.0])
    fast = _ordered_logit(OrderedModel)(y, X, distr="logit")
    params = rng.normal(size=8) * 0.2
    assert np.allclose(fast.score(params), approx_fprime(params, fast.loglike, centered=True), rtol=1e-5, atol=1e-4)
    a = fast.fit(method="bfgs", disp=False, maxiter=2000)
    b = OrderedModel(y, X, distr="logit").fit(method="bfgs", disp=False, maxiter=2000)
    assert np.allclose(a.params, b.params, atol=1e-6) and np.allclose(a.bse, b.bse, rtol=1e-4)


# --- surveys about an order, the at-risk list, scales ------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_late_delivery_is_the_top_driver_for_both_engines(tmp_path: Path, seed: int) -> None:
    write_dataset(generate_dataset(4_000, seed=seed, late_deliveries=True), tmp_path)
    data = load_dataset(tmp_path)
    assert {"promised_at", "delivered_at"} <= set(data.tables["transactions"].columns)
    assert "order_id" in data.tables["surveys"].columns
    result = train_satisfaction(data, seed=0)
    for engine, model in result.models.items():
        assert model.importance(result.test)["feature"][0] == "days_late", engine
    ordinal = result.models["ordinal"].coefficients()
    assert ordinal["term"][0] == "days_late" and ordinal["coef"][0] < 0  # later, less satisfied


def test_order_context_is_known_only_when_answering() -> None:
    """A delivery after the answer is not seen: days late counts up to the answer, not beyond."""

    t = lambda day: datetime(2025, 1, day)  # noqa: E731
    tables = {
        "customers": pl.DataFrame({"customer_id": [1], "created_at": [t(1)]}),
        "transactions": pl.DataFrame(
            {
                "order_id": [10, 11],
                "customer_id": [1, 1],
                "ordered_at": [t(2), t(3)],
                "amount": [50.0, 80.0],
                "promised_at": [t(7), t(8)],
                "delivered_at": [t(9), t(20)],  # order 10: 2 days late; order 11: 12 days late
            }
        ),
    }
    dataset = Dataset(config=load_config(Path(__file__).parent), tables=tables)
    rows = pl.LazyFrame({"customer_id": [1, 1], "order_id": [10, 11], "as_of": [t(15), t(15)]})
    out = build_features(dataset, rows).collect()
    # Order 10 was delivered (Jan 9) before the answer (Jan 15): 2 days late, delivered.
    # Order 11 is not delivered yet on Jan 15: 7 days late so far (Jan 15 − Jan 8), not delivered.
    assert out["days_late"].to_list() == [2.0, 7.0]
    assert out["delivered"].to_list() == [1, 0]
    assert out["order_amount"].to_list() == [50.0, 80.0]
    assert out["days_since_order"].to_list() == [13.0, 12.0]


def _scaled(tmp_path: Path, csat: np.ndarray, toml: str, n: int = 1_500) -> Path:
    """A small dataset with CSAT recoded onto another scale."""
    base = generate_dataset(n, seed=9)
    surveys = base.surveys.filter(pl.col("csat").is_not_null()).head(csat.size)
    tables = base.tables() | {"surveys": surveys.with_columns(pl.Series("csat", csat[: surveys.height]))}
    for name, frame in tables.items():
        frame.write_parquet(tmp_path / f"{name}.parquet")
    (tmp_path / "funnel.toml").write_text(toml)
    return tmp_path


@pytest.mark.parametrize(
    ("bounds", "toml", "satisfied", "low"),
    [
        (
            (0, 1),
            '[satisfaction]\ncsat = [0, 1]\nlabels = { 0 = "not satisfied", 1 = "satisfied" }\n',
            "satisfied",
            "not satisfied",
        ),
        ((1, 7), "[satisfaction]\ncsat = [1, 7]\n", "6–7", "1–2"),
        ((0, 10), "[satisfaction]\ncsat = [0, 10]\nsatisfied_from = 9\nlow_up_to = 6\n", "9–10", "0–6"),
    ],
)
def test_any_csat_scale(tmp_path: Path, bounds: tuple[int, int], toml: str, satisfied: str, low: str) -> None:
    rng = np.random.default_rng(0)
    csat = rng.integers(bounds[0], bounds[1] + 1, 4_000)
    data = load_dataset(_scaled(tmp_path, csat, toml))
    scale = data.config.scale
    assert (scale.lowest, scale.highest, scale.satisfied_words, scale.low_words) == (*bounds, satisfied, low)
    result = train_satisfaction(data, seed=0)
    for model in result.models.values():
        assert model.levels == tuple(range(bounds[0], bounds[1] + 1))
        proba = model.predict_proba(result.test)
        assert proba.shape[1] == bounds[1] - bounds[0] + 1 and np.allclose(proba.sum(axis=1), 1)
    assert set(result.metrics["engine"]) == {"ordinal", "lightgbm", "naive"}
    # A score off the scale is refused with the scale in the message.
    off = csat.copy()
    off[0] = bounds[1] + 1
    (tmp_path / "off").mkdir()
    with pytest.raises(DataValidationError, match=f"csat: must be a whole number from {bounds[0]} to {bounds[1]}"):
        load_dataset(_scaled(tmp_path / "off", off, toml))
