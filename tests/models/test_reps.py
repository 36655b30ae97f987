"""Fair per-rep performance: observed against expected wins, its exact interval, shrinkage, stability."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr

from funnelmodels.models.reps import observed_expected_interval, poisson_binomial_cdf, rep_performance, shrink


def test_poisson_binomial_cdf_is_the_exact_convolution() -> None:
    # Three deals at 0.2, 0.5 and 0.9: P(W <= 1) by hand.
    p = np.array([0.2, 0.5, 0.9])
    none = 0.8 * 0.5 * 0.1
    one = 0.2 * 0.5 * 0.1 + 0.8 * 0.5 * 0.1 + 0.8 * 0.5 * 0.9
    assert poisson_binomial_cdf(1, p) == pytest.approx(none + one)
    assert poisson_binomial_cdf(-1, p) == 0.0 and poisson_binomial_cdf(3, p) == 1.0


def test_refined_normal_is_close_to_the_exact_tail_for_many_deals() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.6, 500)
    from funnelmodels.models import reps

    exact = reps.EXACT_UP_TO
    try:
        reps.EXACT_UP_TO = 1_000
        truth = [poisson_binomial_cdf(k, p) for k in (120, 150, 170)]
    finally:
        reps.EXACT_UP_TO = exact
    approx = [poisson_binomial_cdf(k, p) for k in (120, 150, 170)]
    assert np.max(np.abs(np.array(truth) - np.array(approx))) < 0.003


def test_interval_holds_the_ratio_and_covers_the_truth_about_95_percent() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0.1, 0.5, 80)
    low, high = observed_expected_interval(round(float(p.sum())), p)
    assert low < 1.0 < high
    # A rep as good as the leads: over many draws the interval covers 1 about 95% of the time.
    covered = 0
    for _ in range(300):
        wins = int((rng.random(p.size) < p).sum())
        low, high = observed_expected_interval(wins, p)
        covered += low <= 1.0 <= high
    assert 0.92 <= covered / 300 <= 0.99
    # No wins: the interval starts at 0; every deal won: it ends at n / expected.
    assert observed_expected_interval(0, p)[0] == 0.0
    assert observed_expected_interval(p.size, p)[1] == pytest.approx(p.size / p.sum())


def test_shrinkage_pulls_a_rep_with_few_deals_toward_one() -> None:
    rng = np.random.default_rng(2)
    # Ten owners of 200 deals with a real spread of skill, and one with 6 deals who won 5 of them.
    skill = rng.normal(0, 0.6, 10)
    p = np.full(2_000, 0.3)
    group = np.repeat(np.arange(10), 200)
    y = rng.random(2_000) < 1 / (1 + np.exp(-(np.log(0.3 / 0.7) + skill[group])))
    p = np.concatenate([p, np.full(6, 0.3)])
    y = np.concatenate([y, [1, 1, 1, 1, 1, 0]])
    group = np.concatenate([group, np.full(6, 10)])
    out = shrink(y.astype(float), p, group)
    raw_lucky = 5 / (6 * 0.3)
    assert out.ratio[10] < raw_lucky - 0.5  # 2.78 raw, pulled toward 1
    # The posterior mean by direct integration (scipy's quad) at the fitted spread: the same number.
    from scipy.integrate import quad
    from scipy.stats import norm

    def odds(u: float) -> float:
        return 1 / (1 + np.exp(-(np.log(0.3 / 0.7) + u)))

    def likelihood(u: float) -> float:
        return float(odds(u) ** 5 * (1 - odds(u)) * norm.pdf(u, scale=out.sd))

    evidence = quad(likelihood, -8, 8)[0]
    by_hand = quad(lambda u: likelihood(u) * odds(u) / 0.3, -8, 8)[0] / evidence
    assert out.ratio[10] == pytest.approx(by_hand, abs=0.01)
    # Without the lucky owner, the fitted spread is the owners' spread of log-odds shifts the draws show.
    ten = shrink(y[:2_000].astype(float), p[:2_000], group[:2_000])
    rates = np.array([y[group == g].mean() for g in range(10)])
    shifts = np.log(rates / (1 - rates)) - np.log(0.3 / 0.7)
    assert ten.sd == pytest.approx(float(np.std(shifts, ddof=1)), abs=0.15)
    # The big owners keep their ordering: shrunk ratios rank like their raw ratios.
    raw = np.array([y[group == g].sum() / (200 * 0.3) for g in range(10)])
    assert spearmanr(raw, out.ratio[:10]).statistic > 0.95


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shrunk_ratio_finds_planted_skill_where_the_raw_win_rate_does_not(
    seed: int, teams_data: Callable[..., Any]
) -> None:
    data, dataset = teams_data(seed)
    result = rep_performance(dataset)
    joined = result.reps.join(data.ground_truth["owners"], on="owner")
    fair = spearmanr(joined["shrunk_ratio"], joined["skill"]).statistic
    raw = spearmanr(joined["win_rate"], joined["skill"]).statistic
    stable = result.stability
    print(f"seed {seed}: Spearman with planted skill: shrunk {fair:.2f}, raw {raw:.2f}; split-half: {stable}")
    assert fair >= 0.8
    assert raw <= fair - 0.05
    assert stable["shrunk"] > stable["raw"]
    # Expected wins add up to the observed wins (calibration in the large) and every owner is there.
    assert joined.height == data.ground_truth["owners"].height
    assert result.reps["expected_wins"].sum() == pytest.approx(
        result.opportunities.filter(pl.col("owner").is_not_null())["expected_win"].sum()
    )
    assert result.opportunities["expected_win"].sum() == pytest.approx(result.opportunities["won"].sum(), rel=1e-6)
    # Team rows add up to the owners'.
    assert result.teams["wins"].sum() == result.reps["wins"].sum()


def test_reference_model_never_sees_the_owner_or_the_activities(teams_data: Callable[..., Any]) -> None:
    _, dataset = teams_data(0)
    result = rep_performance(dataset)
    features = set(result.reference.features)
    assert not features & {"owner", "team", "sales_agent", "meeting_count", "call_in_stage", "touches_14d"}
    assert "days_observed" in features and "income" in features
