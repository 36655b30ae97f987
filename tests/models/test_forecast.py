"""The forecast of a period: the exact distribution, the arrivals, the parts adding up, the backtest."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from funnelmodels.data import schema as s
from funnelmodels.data.io import load_dataset
from funnelmodels.errors import ModelError
from funnelmodels.models.forecast import (
    ALL,
    ValueDistribution,
    _distribution,
    backtest_origins,
    forecast_period,
    spread_from_errors,
    won_value_pmf,
)
from funnelmodels.models.hazard import fit_close_time
from funnelmodels.models.persist import ModelStore


def test_the_won_value_distribution_is_exact_against_enumeration() -> None:
    rng = np.random.default_rng(3)
    amounts = rng.integers(1, 40, 10).astype(float)
    p = rng.uniform(0.05, 0.95, 10)
    pmf, cut = won_value_pmf(amounts, p, 1.0, int(amounts.sum()) + 1)
    exact = np.zeros(int(amounts.sum()) + 1)
    for won in itertools.product([0, 1], repeat=10):
        chosen = np.array(won, dtype=bool)
        exact[int(amounts[chosen].sum())] += np.prod(np.where(chosen, p, 1 - p))
    assert cut == pytest.approx(0.0, abs=1e-12)
    assert np.allclose(pmf, exact, atol=1e-12)


def _one_deal_at_a_time(amounts: np.ndarray, p: np.ndarray, step: float, cells: int) -> np.ndarray:
    """The plain recursion: P_new[i] = (1 − p) P[i] + p P[i − k], cut at the grid's end."""
    pmf = np.zeros(cells)
    pmf[0] = 1.0
    for amount, chance in zip(amounts, p, strict=True):
        k = int(np.rint(amount / step))
        if k <= 0:
            continue
        moved = pmf[: max(cells - k, 0)] * chance
        pmf *= 1 - chance
        pmf[k:] += moved
    return pmf


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_product_tree_equals_adding_deals_one_at_a_time(seed: int) -> None:
    # Thousands of deals: small ones (many leaves multiplied by FFT), ones bigger than a leaf (added
    # to the product one by one), ones past the grid, certain wins, p = 0 and amount 0.
    rng = np.random.default_rng(seed)
    amounts = np.concatenate([rng.lognormal(3, 1.0, 4_000), rng.uniform(5_000, 7_000, 20), [9_000.0, 20_000.0]])
    p = np.concatenate([rng.beta(0.5, 6, 4_000), rng.uniform(0, 1, 20), [0.3, 0.6]])
    p[:3], p[3:6], amounts[6:9] = 0.0, 1.0, 0.0
    cells = 8_192
    pmf, cut = won_value_pmf(amounts, p, 1.0, cells)
    expected = _one_deal_at_a_time(amounts, p, 1.0, cells)
    assert np.abs(pmf - expected).max() < 1e-13
    assert cut == pytest.approx(1.0 - expected.sum(), abs=1e-12)
    assert cut > 0.3  # the deal of 20,000 past the grid is won with probability 0.6


def test_quantiles_and_the_chance_of_a_target_read_the_distribution() -> None:
    # Two deals of 100 and 300 at 50%: 0, 100, 300, 400 each with probability 1/4, plus 50 already won.
    dist = _distribution(np.array([100.0, 300.0]), np.array([0.5, 0.5]), [], 0.0, 50.0, cells=1024)
    assert dist.mean == pytest.approx(250.0)
    assert dist.quantile(0.1) == pytest.approx(50.0, abs=1.0)
    assert dist.quantile(0.5) == pytest.approx(150.0, abs=1.0)
    assert dist.quantile(0.9) == pytest.approx(450.0, abs=1.0)
    # Between the values (amounts sit on a grid, each within dist.rounding of where it was).
    assert dist.rounding < 1.0
    assert dist.at_least(349.0) == pytest.approx(0.5) and dist.at_least(351.0) == pytest.approx(0.25)
    assert dist.at_least(50.0) == 1.0 and dist.at_least(452.0) == 0.0


def test_a_common_swing_widens_the_range_and_keeps_the_mean() -> None:
    rng = np.random.default_rng(0)
    amounts, p = rng.uniform(1_000, 20_000, 400), rng.uniform(0.05, 0.6, 400)
    alone = _distribution(amounts, p, [], 0.0, 0.0)
    swung = ValueDistribution(alone.offset, alone.step, alone.pmf, alone.mean, alone.rounding, spread=0.04)
    x = np.arange(alone.pmf.size) * alone.step
    assert float((alone.pmf * x).sum()) == pytest.approx(alone.mean, rel=0.01)
    assert swung.quantile(0.1) < alone.quantile(0.1) < alone.quantile(0.9) < swung.quantile(0.9)
    # Var = v + τ² (v + m²): the widened 80% range against a normal's, within a few percent.
    sd = np.sqrt(alone.independent_variance + 0.04 * (alone.independent_variance + alone.mean**2))
    assert swung.quantile(0.9) - swung.quantile(0.1) == pytest.approx(2 * 1.2816 * sd, rel=0.05)


def test_the_common_swing_is_measured_by_the_method_of_moments() -> None:
    # Means 100, errors ±20 with an independent-deal variance of 100: excess 400 − 100 = 300 per
    # period over v + u² = 100 + 10,000 → τ² = 300 / 10,100.
    tau = spread_from_errors(
        np.array([120.0, 80.0]), np.array([100.0, 100.0]), np.array([0.0, 0.0]), np.array([100.0, 100.0])
    )
    assert tau == pytest.approx(300 / 10_100)
    assert spread_from_errors(np.array([101.0]), np.array([100.0]), np.zeros(1), np.array([100.0])) == 0.0


@pytest.fixture(scope="module")
def july(synthetic_dir: Path) -> tuple[object, object]:
    data = load_dataset(synthetic_dir)
    model = fit_close_time(data, end=datetime(2026, 4, 1), every_days=28)
    result = forecast_period(
        data,
        model,
        start=datetime(2026, 4, 1),
        end=datetime(2026, 7, 1),
        as_of=datetime(2026, 5, 10),
        by="region",
        targets={ALL: 500_000.0},
    )
    return data, result


def test_the_forecast_adds_closed_open_and_new_and_its_segments_add_up(july: tuple[object, object]) -> None:
    data, f = july
    table = f.table  # type: ignore[attr-defined]
    total = table.filter(pl.col("segment") == ALL).row(0, named=True)
    parts = table.filter(pl.col("segment") != ALL)
    for column in ("closed", "open_mean", "new_mean", "open_deals"):
        assert total[column] == pytest.approx(parts[column].sum())
    assert total["mean"] == pytest.approx(total["closed"] + total["open_mean"] + total["new_mean"])
    assert (table["p10"] <= table["p50"]).all() and (table["p50"] <= table["p90"]).all()
    assert (table["p10"] >= table["closed"]).all()
    assert total["p_target"] == pytest.approx(f.distributions[ALL].at_least(500_000.0))  # type: ignore[attr-defined]
    # Closed: the deals won from 1 April to the forecast moment, by the won events' amounts.
    events = data.tables["stage_events"]  # type: ignore[attr-defined]
    won = events.filter(
        (pl.col(s.STAGE) == "won")
        & pl.col(s.ENTERED_AT).is_between(datetime(2026, 4, 1), datetime(2026, 5, 10), "left")
    )
    assert total["closed"] == pytest.approx(won[s.AMOUNT].sum())
    deals = f.deals  # type: ignore[attr-defined]
    assert deals.height == total["open_deals"]
    assert np.allclose(deals["p_won_by_end"] + deals["p_lost_by_end"] + deals["p_open_at_end"], 1.0)
    assert total["open_mean"] == pytest.approx((deals[s.AMOUNT] * deals["p_won_by_end"]).sum())


def test_the_fan_grows_to_the_period_end(july: tuple[object, object]) -> None:
    _, f = july
    fan = f.fan  # type: ignore[attr-defined]
    assert fan["day"][0] == datetime(2026, 5, 10) and fan["day"][-1] == datetime(2026, 7, 1)
    assert fan["mean"].is_sorted() and fan["p90"].is_sorted()
    assert fan["mean"][-1] == pytest.approx(f.total["mean"], rel=1e-6)  # type: ignore[attr-defined]


def test_slipped_deals_were_expected_in_the_period_and_no_longer_are(july: tuple[object, object]) -> None:
    _, f = july
    slipped = f.slipped  # type: ignore[attr-defined]
    end = datetime(2026, 7, 1)
    assert (slipped["expected_close_before"] < end).all()
    assert (slipped["expected_close"].is_null() | (slipped["expected_close"] >= end)).all()
    assert set(slipped[s.OPPORTUNITY_ID]) <= set(f.deals[s.OPPORTUNITY_ID])  # type: ignore[attr-defined]


def test_backtest_origins_are_the_last_complete_months(synthetic_dir: Path) -> None:
    data = load_dataset(synthetic_dir)
    origins = backtest_origins(data, 8)
    last = data.tables["stage_events"][s.ENTERED_AT].max()
    assert len(origins) == 8 and all(o.day == 1 for o in origins)
    months = [o.year * 12 + o.month for o in origins]
    assert months == list(range(months[0], months[0] + 8))
    # The last origin's month is complete (its last day is in the data), the month after it is not.
    after = datetime(origins[-1].year + origins[-1].month // 12, origins[-1].month % 12 + 1, 1)
    assert after.date() <= last.date() + timedelta(days=1)
    assert datetime(after.year + after.month // 12, after.month % 12 + 1, 1).date() > last.date() + timedelta(days=1)


def test_train_backtests_the_forecast_on_eight_months(trained_cli: tuple[Path, str]) -> None:
    models, printed = trained_cli
    store = ModelStore(models)
    assert (store.close_time("lightgbm") / "model.json").is_file()
    assert (store.close_time("logit") / "model.json").is_file()
    backtest = json.loads(store.forecast.read_text(encoding="utf-8"))["backtest"]
    periods = pl.DataFrame(backtest["periods"])
    assert periods.height == 8
    # Each period's verdict is its realised value against its own P10–P90.
    inside = (periods["p10"] <= periods["realised"]) & (periods["realised"] <= periods["p90"])
    assert inside.to_list() == periods["inside"].to_list()
    ours, naive = backtest["summary"]
    assert ours["coverage_80"] == pytest.approx(inside.mean())
    # The naive weighted pipeline has no dates: it counts deals that close after the month.
    assert ours["mape"] < naive["mape"]
    # The first two periods have no earlier errors to widen them; the later ones do.
    assert periods["spread"][:2].to_list() == [0.0, 0.0]
    calibration = pl.DataFrame(backtest["calibration"])
    assert set(calibration["engine"]) == {"lightgbm", "logit"}
    assert set(calibration["days"]) == {30, 60, 90}
    check = pl.DataFrame(backtest["aalen_johansen"])
    assert set(check["stage"]) == {"lead", "qualified", "relationship", "proposal"}
    print(backtest["sentence"])
    assert backtest["sentence"] in printed


def test_a_forecast_made_long_before_its_period_is_refused(synthetic_dir: Path) -> None:
    data = load_dataset(synthetic_dir)
    model = fit_close_time(data, end=datetime(2026, 3, 1), every_days=28)
    with pytest.raises(ModelError, match="days before the period starts"):
        forecast_period(data, model, start=datetime(2026, 5, 1), end=datetime(2026, 6, 1), as_of=datetime(2026, 3, 1))
    # A day before: deals won in that day do not count towards the period.
    early = forecast_period(
        data, model, start=datetime(2026, 5, 1), end=datetime(2026, 6, 1), as_of=datetime(2026, 4, 30), fan=False
    )
    on_time = forecast_period(
        data, model, start=datetime(2026, 4, 30), end=datetime(2026, 6, 1), as_of=datetime(2026, 4, 30), fan=False
    )
    assert early.total["open_mean"] < on_time.total["open_mean"]
    # The range's note says whether a backtest measured the common swing, and what it found.
    assert any("likely too narrow" in note for note in on_time.notes)
    measured = forecast_period(
        data,
        model,
        start=datetime(2026, 4, 30),
        end=datetime(2026, 6, 1),
        as_of=datetime(2026, 4, 30),
        fan=False,
        spread_measured=True,
    )
    assert any("found no swing beyond what independent deals give" in note for note in measured.notes)
