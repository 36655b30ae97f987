"""Interval estimates checked by hand and by coverage on simulated data."""

from __future__ import annotations

import numpy as np
import pytest

from funnelmodels.stats import cumulative_incidence


def test_cumulative_incidence_by_hand() -> None:

    # Six entries: converted at 2 and 5, lost at 3 and 8, censored at 3 and 10.
    # t=2: 6 at risk → C = 1/6, S = 5/6.  t=3: 5 at risk, one lost → L = 5/6·1/5 = 1/6, S = 2/3.
    # t=5: 3 at risk → C = 1/6 + 2/3·1/3 = 7/18, S = 4/9.  t=8: 2 at risk → L = 1/6 + 4/9·1/2 = 7/18.
    times = [2, 3, 3, 5, 8, 10]
    causes = [1, 2, 0, 1, 2, 0]
    out = cumulative_incidence(times, causes, [1, 4, 10])
    assert out["converted"] == pytest.approx([0, 1 / 6, 7 / 18])
    assert out["lost"] == pytest.approx([0, 1 / 6, 7 / 18])
    assert out["at_risk"].tolist() == [6, 3, 1]
    assert np.isnan(out["converted_low"][0])  # nothing has happened yet: no interval
    assert out["converted_low"][2] < 7 / 18 < out["converted_high"][2]


def test_cumulative_incidence_intervals_cover_the_truth() -> None:
    """Competing exponential risks with known curves: the 95% intervals cover about 95% of the time."""

    rng = np.random.default_rng(0)
    rate_won, rate_lost, day = 0.02, 0.01, 60.0
    total = rate_won + rate_lost
    truth = (1 - np.exp(-total * day)) * np.array([rate_won, rate_lost]) / total
    covered = np.zeros(2)
    runs = 300
    for _ in range(runs):
        event = rng.exponential(1 / total, 300)
        cause = np.where(rng.random(300) < rate_won / total, 1, 2)
        censor = rng.uniform(0, 150, 300)
        times = np.round(np.minimum(event, censor))  # whole days: ties, as in real data
        out = cumulative_incidence(times, np.where(event <= censor, cause, 0), [day])
        covered += [
            out["converted_low"][0] <= truth[0] <= out["converted_high"][0],
            out["lost_low"][0] <= truth[1] <= out["lost_high"][0],
        ]
    assert ((covered / runs) > 0.92).all() and ((covered / runs) < 0.98).all(), covered / runs
