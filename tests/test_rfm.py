"""The lifetimes-compatible customer RFM summary, checked against the definitions by hand."""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from datetime import date, datetime

import polars as pl
import pytest
from places import SHARED_DATA

from funnelmodels.rfm import rfm_summary

CDNOW = SHARED_DATA / "cdnow" / "CDNOW_master.csv"


def _by_hand(path, end: date | None = None) -> dict[str, tuple[int, float, float, float]]:
    """lifetimes' definitions with the standard library: daily totals, first day not a repeat."""
    daily: dict[str, dict[date, float]] = defaultdict(lambda: defaultdict(float))
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            day = datetime.strptime(row["date"], "%Y%m%d").date()
            if end is None or day <= end:
                daily[row["customer_id"]][day] += float(row["dollar_value"])
    last_day = end or max(max(days) for days in daily.values())
    out = {}
    for customer, days in daily.items():
        first, last = min(days), max(days)
        repeats = [total for day, total in days.items() if day != first]
        monetary = statistics.fmean(repeats) if repeats else 0.0
        out[customer] = (len(days) - 1, float((last - first).days), float((last_day - first).days), monetary)
    return out


@pytest.mark.skipif(not CDNOW.is_file(), reason="../shared/data/cdnow is not beside the checkout")
@pytest.mark.parametrize("end", [None, date(1997, 9, 30)])
def test_rfm_summary_matches_the_lifetimes_definitions_on_cdnow(end: date | None) -> None:
    frame = pl.read_csv(CDNOW, schema_overrides={"customer_id": pl.String, "date": pl.String})
    frame = frame.with_columns(pl.col("date").str.strptime(pl.Date, "%Y%m%d"))

    ours = rfm_summary(frame, observation_end=end, time_col="date", amount_col="dollar_value")

    expected = _by_hand(CDNOW, end)
    assert ours.height == len(expected)
    assert ours["customer_id"].to_list() == sorted(expected)
    for customer, frequency, recency, t, monetary in ours.iter_rows():
        want = expected[customer]
        assert (frequency, recency, t) == want[:3], customer
        assert monetary == pytest.approx(want[3], rel=1e-12, abs=1e-12), customer


def test_rfm_summary_counts_days_not_orders_and_respects_the_end() -> None:
    # Customer 1: two orders on day 1 (one day), one on day 5, one on day 11 (after the end).
    # Customer 2: a single day.  End = day 10.
    tx = pl.DataFrame(
        {
            "customer_id": [1, 1, 1, 1, 2],
            "ordered_at": [
                datetime(2026, 1, 1, 9),
                datetime(2026, 1, 1, 17),
                datetime(2026, 1, 5, 12),
                datetime(2026, 1, 11, 8),
                datetime(2026, 1, 3, 23, 59),
            ],
            "amount": [10.0, 5.0, 40.0, 99.0, 7.0],
        }
    )

    out = rfm_summary(tx, observation_end=date(2026, 1, 10))

    assert out.rows() == [(1, 1, 4.0, 9.0, 40.0), (2, 0, 0.0, 7.0, 0.0)]
    without_money = rfm_summary(tx, amount_col=None)
    # No end given: the last purchase day (Jan 11) ends the observation.
    assert without_money.rows() == [(1, 2, 10.0, 10.0), (2, 0, 0.0, 8.0)]
