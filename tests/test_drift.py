"""Drift by effect size: PSI and Wasserstein per feature, flagged only when large and not noise."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from funnelmodels.drift import benjamini_hochberg, drift_table, profile

NUMERIC, CATEGORICAL = ["age", "income", "tenure_days"], ["region", "gender"]
REGIONS = np.array(["north", "south", "east", "west"])


def _customers(n: int, seed: int, *, shifted: bool = False) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    regions = rng.choice(4, n, p=[0.1, 0.2, 0.3, 0.4] if shifted else [0.4, 0.3, 0.2, 0.1]).astype(np.uint8)
    return pl.DataFrame(
        {
            "age": rng.normal(42, 11, n),
            "income": rng.lognormal(11, 0.5, n) * (1.5 if shifted else 1.0),
            "tenure_days": rng.exponential(400, n),
            "region": pl.Series(regions).replace_strict(dict(enumerate(REGIONS)), return_dtype=pl.String),
            "gender": pl.Series(rng.integers(0, 2, n, dtype=np.uint8)).replace_strict(
                {0: "female", 1: "male"}, return_dtype=pl.String
            ),
        }
    )


def test_ten_million_rows_without_a_shift_raise_no_alert() -> None:
    reference = profile(_customers(200_000, seed=1), NUMERIC, CATEGORICAL)
    table = drift_table(reference, _customers(10_000_000, seed=2))
    assert table.height == 5 and not table["alert"].any()
    assert (table["psi"] < 0.001).all()
    assert (table.filter(pl.col("kind") == "numeric")["wasserstein_sd"] < 0.02).all()


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_a_planted_shift_in_income_and_region_is_flagged_for_those_features_only(seed: int) -> None:
    reference = profile(_customers(50_000, seed=seed), NUMERIC, CATEGORICAL)
    table = drift_table(reference, _customers(20_000, seed=seed + 100, shifted=True))
    assert set(table.filter(pl.col("alert"))["feature"]) == {"income", "region"}
    income = table.filter(pl.col("feature") == "income").row(0, named=True)
    assert income["psi"] > 0.2 and income["wasserstein_sd"] > 0.5


def test_a_small_window_without_a_shift_is_not_flagged_even_when_its_psi_is_noisy() -> None:
    reference = profile(_customers(50_000, seed=6), NUMERIC, CATEGORICAL)
    for seed in range(7, 17):
        assert not drift_table(reference, _customers(150, seed=seed))["alert"].any()


def test_psi_unseen_levels_missing_and_out_of_range_by_hand() -> None:
    then = pl.DataFrame({"level": ["a", "b"] * 50, "x": np.linspace(0, 1, 100)})
    reference = profile(then, ["x"], ["level"])
    # 80/20 against 50/50: PSI = 0.3 ln(1.6) + 0.3 ln(2.5) = 0.4159.
    now = pl.DataFrame({"level": ["a"] * 80 + ["b"] * 20, "x": np.linspace(0, 1, 100)})
    row = drift_table(reference, now).filter(pl.col("feature") == "level").row(0, named=True)
    assert row["psi"] == pytest.approx(0.3 * np.log(1.6) + 0.3 * np.log(2.5), abs=1e-9)
    # A new level in 10% of the rows, a tenth of x missing and a fifth above the reference's range.
    x = np.concatenate([np.linspace(0, 1, 70), np.full(20, 2.0), np.full(10, np.nan)])
    now = pl.DataFrame({"level": ["a"] * 50 + ["b"] * 40 + ["c"] * 10, "x": x})
    table = {r["feature"]: r for r in drift_table(reference, now).iter_rows(named=True)}
    assert table["level"]["unseen"] == pytest.approx(0.1)
    assert table["x"]["missing_then"] == 0 and table["x"]["missing_now"] == pytest.approx(0.1)
    assert table["x"]["out_of_range"] == pytest.approx(20 / 90)


def test_benjamini_hochberg_by_hand() -> None:
    # Sorted 0.01, 0.03, 0.04, 0.2 → × 4 / rank: 0.04, 0.06, 0.0533, 0.2 → made monotone from the top.
    got = benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.2, np.nan]))
    assert got[:4] == pytest.approx([0.04, 0.16 / 3, 0.16 / 3, 0.2]) and np.isnan(got[4])
