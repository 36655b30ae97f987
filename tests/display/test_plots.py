"""Charts: inline SVG with alternative text and hover values, of a size that does not grow with the history."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from funnelmodels.display.plots import MAX_PERIODS, chart_html, plot_funnel, plot_revenue_trend


def _daily(days: int) -> pl.DataFrame:
    start = date(2016, 7, 1)
    return pl.DataFrame(
        {
            "period": [start + timedelta(days=i) for i in range(days)],
            "net_revenue": [1_000.0 + i for i in range(days)],
            "orders": [10 + i % 7 for i in range(days)],
            "average_sale": [100.0 + i % 13 for i in range(days)],
        }
    )


def test_a_long_history_gives_a_chart_of_the_same_size() -> None:
    ten_years = chart_html(plot_revenue_trend(_daily(3_650), length="day"))
    four_months = chart_html(plot_revenue_trend(_daily(MAX_PERIODS), length="day"))
    assert ten_years.count("<title>") == MAX_PERIODS == four_months.count("<title>")
    assert "(the last 120 days)" in ten_years
    assert len(ten_years) < 1.2 * len(four_months) and len(ten_years) < 400_000
    # The newest day is there, with its figures on hover: day 3,649 after 1 July 2016 is 28 June 2026,
    # net revenue 1,000 + 3,649, orders 10 + 3,649 mod 7 = 12, average sale 100 + 3,649 mod 13 = 109.
    assert "<title>28 June 2026: net revenue $4,649, 12 orders, average sale $109.00</title>" in ten_years


def test_charts_are_svg_with_alternative_text_and_unique_ids() -> None:
    funnel = pl.DataFrame(
        {
            "stage": ["lead", "won"],
            "entered": [100, 30],
            "rate": [0.3, None],
            "rate_low": [0.2, None],
            "rate_high": [0.4, None],
        }
    )
    first, second = chart_html(plot_funnel(funnel)), chart_html(plot_funnel(funnel))
    assert first.startswith("<figure><svg ") and 'role="img"' in first
    assert 'aria-label="Funnel: entries and stage conversion within the horizon"' in first
    assert "<title>lead: 100 entered · 30.0% converted (20%–40%)</title>" in first
    ids = lambda page: set(__import__("re").findall(r'id="([^"]+)"', page))  # noqa: E731
    assert ids(first) and not ids(first) & ids(second), "two charts in one page share no id"
    # References follow their ids: every url(#…) and href="#…" points at an id of the same chart.
    refs = set(__import__("re").findall(r'(?:url\(#|href="#)([^)"]+)', first))
    assert refs <= ids(first)
