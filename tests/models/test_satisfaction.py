"""Satisfaction models: truth recovery, evaluation against baselines, persistence, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from funnelmodels.data.io import load_dataset
from funnelmodels.data.synthetic import generate_dataset, write_dataset
from funnelmodels.errors import DataValidationError, ModelError
from funnelmodels.models.predict import at_risk_customers
from funnelmodels.models.satisfaction import SatisfactionModel, ordinal_metrics
from funnelmodels.models.train import SatisfactionTraining, train_satisfaction


@pytest.fixture(scope="session")
def satisfaction(synthetic_dir: Path) -> SatisfactionTraining:
    return train_satisfaction(load_dataset(synthetic_dir), seed=0)


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


def test_engines_beat_the_naive_baseline(satisfaction: SatisfactionTraining) -> None:
    m = {r["engine"]: r for r in satisfaction.metrics.iter_rows(named=True)}
    assert set(m) == {"ordinal", "lightgbm", "naive", "oracle"}
    for engine in ("ordinal", "lightgbm"):
        assert m[engine]["rps"] < m["naive"]["rps"]
        assert m[engine]["mae"] < m["naive"]["mae"]
    # The generator's satisfaction is an ordinal logit, so the ordinal model is the right
    # specification: it gets within a hair of the oracle.
    assert m["ordinal"]["rps"] - m["oracle"]["rps"] < 0.005


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


def test_saved_models_predict_identically_in_a_fresh_process(
    satisfaction: SatisfactionTraining, tmp_path: Path
) -> None:
    rows = satisfaction.test.head(100)
    rows.write_parquet(tmp_path / "rows.parquet")
    for engine, model in satisfaction.models.items():
        folder = model.save(tmp_path / engine)
        assert all(b"pickle" not in p.read_bytes() for p in folder.iterdir())
        script = (
            "import sys, numpy as np, polars as pl\n"
            "from funnelmodels.models.satisfaction import SatisfactionModel\n"
            "m = SatisfactionModel.load(sys.argv[1])\n"
            "np.save(sys.argv[3], m.predict_proba(pl.read_parquet(sys.argv[2])))\n"
        )
        out = tmp_path / f"{engine}.npy"
        subprocess.run(
            [sys.executable, "-c", script, str(folder), str(tmp_path / "rows.parquet"), str(out)],
            check=True,
            timeout=300,
        )
        assert np.array_equal(np.load(out), model.predict_proba(rows)), engine


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


def test_at_risk_list_with_reasons(synthetic_dir: Path, satisfaction: SatisfactionTraining) -> None:
    risk = at_risk_customers(load_dataset(synthetic_dir), satisfaction.models["ordinal"], datetime(2026, 7, 1), top=10)
    assert risk.height == 10
    assert risk["p_low"].is_sorted(descending=True)
    assert all(r.endswith("lowers satisfaction") for rs in risk["reasons_down"].to_list() for r in rs)
    # Reasons are computed only for the rows returned: the same as the head of the full list.
    everyone = at_risk_customers(
        load_dataset(synthetic_dir), satisfaction.models["ordinal"], datetime(2026, 7, 1), top=None
    )
    head = everyone.head(10)
    assert everyone.height > 100
    assert head.select("customer_id", "reasons_down", "reasons_up").equals(
        risk.select(head.select("customer_id", "reasons_down", "reasons_up").columns)
    )
    assert np.allclose(
        head["p_low"].to_numpy(), risk["p_low"].to_numpy(), rtol=1e-12
    )  # matrix products may round differently


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

    from funnelmodels.models.satisfaction import _ordered_logit

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
    from funnelmodels.config import load_config
    from funnelmodels.data.io import Dataset
    from funnelmodels.features import build_features

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


@pytest.mark.slow
def test_at_risk_list_finds_the_truly_unhappy_better_than_the_last_answer(tmp_path: Path) -> None:
    """Surveys answered 1–4 weeks after an order; the list is judged against the generator's truth."""
    from funnelmodels.data.synthetic import true_low_satisfaction, true_satisfaction
    from funnelmodels.models.predict import at_risk_customers

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


def test_reasons_never_run_against_the_customers_own_answer(satisfaction: SatisfactionTraining) -> None:
    rows = satisfaction.test.filter(pl.col("last_csat").is_not_null()).head(300)
    for engine, model in satisfaction.models.items():
        explained = model.explain(rows)
        for last, ups, downs in zip(rows["last_csat"], explained["reasons_up"], explained["reasons_down"], strict=True):
            assert not (last <= 2 and any(r.startswith("last CSAT") for r in ups)), (engine, last, ups)
            assert not (last >= 4 and any(r.startswith("last CSAT") for r in downs)), (engine, last, downs)


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


def test_surveys_without_dates_are_judged_on_random_answers(tmp_path: Path) -> None:
    base = generate_dataset(1_500, seed=4)
    for name, frame in base.tables().items():
        frame = frame.drop("responded_at") if name == "surveys" else frame
        frame.write_parquet(tmp_path / f"{name}.parquet")
    data = load_dataset(tmp_path)
    result = train_satisfaction(data, seed=0)
    assert result.evaluation == "random" and result.split is None
    assert "The surveys have no dates" in result.verdict()
    assert set(result.models["ordinal"].encoder.names) <= {"age", "gender", "income", "region", "product_knowledge"}
