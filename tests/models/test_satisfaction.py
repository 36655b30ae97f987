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
from funnelmodels.errors import ModelError
from funnelmodels.models.satisfaction import SatisfactionModel, ordinal_metrics
from funnelmodels.models.training import SatisfactionTraining, at_risk_customers, train_satisfaction


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
