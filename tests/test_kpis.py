"""KPI definitions on hand-made tables whose right answers are written in the tests."""

from __future__ import annotations

from datetime import datetime

import polars as pl
import pytest

from funnelmodels.errors import ConfigError
from funnelmodels.kpis import satisfaction_change, satisfaction_table


def _surveys() -> pl.LazyFrame:
    return pl.DataFrame(
        {
            "responded_at": [datetime(2025, 1, d) for d in (3, 9, 15, 20)] + [datetime(2025, 2, d) for d in (2, 8)],
            "csat": [5, 4, 2, None, 3, 5],
            "nps": [10, 9, 3, 7, None, 6],
            "region": ["north", "north", "south", "south", "north", "south"],
        }
    ).lazy()


def test_csat_and_nps_per_month_with_intervals() -> None:
    t = satisfaction_table(_surveys(), period="month")
    jan = t.row(0, named=True)
    assert str(jan["period"]) == "2025-01-01"
    # January CSAT: 5, 4, 2 → mean 11/3, sd 1.5275, half-width 1.96·1.5275/√3 = 1.7285.
    assert jan["csat_n"] == 3
    assert jan["csat_mean"] == pytest.approx(11 / 3)
    assert jan["csat_high"] - jan["csat_mean"] == pytest.approx(1.959964 * 1.527525 / 3**0.5, rel=1e-5)
    assert jan["satisfied_share"] == pytest.approx(2 / 3)
    # January NPS: 10, 9, 3, 7 → 2 promoters, 1 detractor of 4: NPS = 25.
    # Trinomial variance (0.5 + 0.25 − 0.25²)/4 = 0.171875 → half-width 1.96·0.41458 = 0.8126.
    assert (jan["promoters"], jan["detractors"], jan["nps_n"]) == (2, 1, 4)
    assert jan["nps"] == pytest.approx(25.0)
    assert jan["nps_high"] - jan["nps"] == pytest.approx(100 * 1.959964 * 0.171875**0.5, rel=1e-5)
    feb = t.row(1, named=True)
    assert feb["csat_mean"] == 4.0 and feb["nps"] == pytest.approx(-100.0)


def test_segments_split_the_counts() -> None:
    t = satisfaction_table(_surveys(), period="quarter", by="region")
    assert t["region"].to_list() == ["north", "south"]
    assert t["csat_n"].to_list() == [3, 2]
    assert t["csat_n"].sum() == 5  # additive over segments


def test_change_between_periods() -> None:
    change = satisfaction_change(
        _surveys(),
        before=(datetime(2025, 1, 1), datetime(2025, 2, 1)),
        after=(datetime(2025, 2, 1), datetime(2025, 3, 1)),
    )
    assert change["csat_mean"]["change"] == pytest.approx(4.0 - 11 / 3)
    assert 0 < change["csat_mean"]["p_value"] <= 1
    assert change["nps"]["before"] == pytest.approx(25.0) and change["nps"]["after"] == pytest.approx(-100.0)


def test_unknown_period_is_refused() -> None:
    with pytest.raises(ConfigError, match="period must be one of day, week, month, quarter, year"):
        satisfaction_table(_surveys(), period="fortnight")
