"""The Brier score decomposed (MCB − DSC + UNC) on isotonic reliability, and its consistency band."""

from __future__ import annotations

import numpy as np
import pytest

from funnelmodels.calibration import decompose, decomposition_table, recalibrate, reliability_curve


def test_the_decomposition_of_a_small_case_matches_the_hand_computation() -> None:
    # p = 0.2 twice (outcomes 0, 1) and 0.8 twice (1, 1): the recalibrated values are 0.5 and 1.
    # Brier (0.04 + 0.64 + 0.04 + 0.04) / 4 = 0.19; recalibrated (0.25 + 0.25 + 0 + 0) / 4 = 0.125;
    # base rate 0.75, UNC 0.75 × 0.25 = 0.1875. MCB 0.19 − 0.125 = 0.065, DSC 0.1875 − 0.125 = 0.0625.
    y, p = np.array([0, 1, 1, 1]), np.array([0.2, 0.2, 0.8, 0.8])
    assert recalibrate(y, p) == pytest.approx([0.5, 0.5, 1.0, 1.0])
    parts = decompose(y, p, resamples=20)
    assert (parts.brier, parts.mcb, parts.dsc, parts.unc) == pytest.approx((0.19, 0.065, 0.0625, 0.1875))
    assert parts.brier == pytest.approx(parts.mcb - parts.dsc + parts.unc)


def test_a_reversed_pair_is_pooled_into_one_value() -> None:
    # Rates 1, 0, 1 at 0.1 < 0.5 < 0.9: not monotone, so 0.1 and 0.5 pool to 0.5.
    assert recalibrate(np.array([1, 0, 1]), np.array([0.1, 0.5, 0.9])) == pytest.approx([0.5, 0.5, 1.0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_calibrated_probabilities_show_no_miscalibration_beyond_chance(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = rng.beta(1, 3, 20_000)
    y = (rng.random(p.size) < p).astype(int)
    parts = decompose(y, p, seed=seed)
    assert parts.mcb < 0.001 and not parts.miscalibrated
    assert abs(parts.mcb_excess) < 0.0003  # net of what the isotonic fit finds in noise alone
    low, high = parts.intervals["mcb"]
    assert low <= parts.mcb <= high
    # UNC is the base rate's own score: ȳ(1 − ȳ).
    assert parts.unc == pytest.approx(y.mean() * (1 - y.mean()))
    # Distorted (too high where low, a square root), the same outcomes are far off and flagged.
    bent = decompose(y, np.sqrt(p), seed=seed)
    assert bent.miscalibrated and bent.mcb > 0.03
    # The ranking is the same, so discrimination is the same: a monotone map cannot change it.
    assert bent.dsc == pytest.approx(parts.dsc)


def test_the_reliability_curve_stays_in_its_band_when_calibrated_and_leaves_it_when_not() -> None:
    rng = np.random.default_rng(4)
    p = rng.beta(1, 3, 20_000)
    y = (rng.random(p.size) < p).astype(int)
    curve = reliability_curve(y, p)
    assert curve.height > 20
    inside = ((curve["observed"] >= curve["band_low"]) & (curve["observed"] <= curve["band_high"])).mean()
    assert inside >= 0.85
    assert (curve["band_low"] <= curve["predicted"]).all() and (curve["predicted"] <= curve["band_high"] + 1e-9).all()
    # Predictions twice too high (capped at 1): the observed curve sits below the band almost everywhere.
    high = reliability_curve(y, np.minimum(2 * p, 1.0))
    assert (high["observed"] < high["band_low"]).mean() > 0.8


def test_the_table_has_one_row_per_engine_and_group() -> None:
    rng = np.random.default_rng(5)
    p = rng.uniform(0.05, 0.6, 3_000)
    y = (rng.random(p.size) < p).astype(int)
    groups = np.where(np.arange(p.size) % 3 == 0, "lead", "proposal")
    table = decomposition_table(y, {"truth": p, "flat": np.full(p.size, y.mean())}, groups, resamples=30)
    assert table.select("engine", "group").rows() == [
        ("truth", "all"),
        ("truth", "lead"),
        ("truth", "proposal"),
        ("flat", "all"),
        ("flat", "lead"),
        ("flat", "proposal"),
    ]
    flat = table.row(3, named=True)
    # One value for every row: no discrimination, and its Brier score is the uncertainty.
    assert flat["dsc"] == pytest.approx(0.0) and flat["mcb"] == pytest.approx(0.0, abs=1e-12)
    assert flat["brier"] == pytest.approx(flat["unc"])
    assert table.filter(table["group"] == "lead")["n"].to_list() == [1_000, 1_000]
