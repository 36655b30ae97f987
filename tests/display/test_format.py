"""Numbers as a reader reads them: units, fixed decimals, intervals, periods, the currency."""

from __future__ import annotations

from datetime import date

import pytest

from funnelmodels.display.format import (
    currency,
    interval_text,
    money,
    period_label,
    points,
    signed_percent,
    use_currency,
    value_text,
)


def test_values_are_written_by_unit_with_fixed_decimals() -> None:
    assert value_text("net_revenue", 1_234_567.0) == "$1.23M"
    assert value_text("average_sale", 84.2) == "$84.20"
    assert value_text("orders", 1234) == "1,234"
    assert value_text("win_rate", 0.38) == "38.0%"
    assert value_text("csat_mean", 3.4251) == "3.43"
    assert value_text("roc_auc", 0.81234) == "0.812"
    assert value_text("nps", -20.94) == "−20.9"
    assert value_text("orders", None) == "–" and value_text("win_rate", float("nan")) == "–"
    assert points(0.021) == "+2.1 pts" and signed_percent(-0.086) == "−8.6%"
    # "converted" is a count in the funnel table and a share in the cumulative one.
    assert value_text("converted", 1202) == "1,202" and value_text("converted", 0.383) == "38.3%"
    assert value_text("lost", 0.593) == "0.593" and value_text("lost", 53) == "53"
    assert value_text("p_value", 2.42e-95) == "< 0.001" and value_text("p_value", 0.0421) == "0.042"
    assert value_text("gain", 0.0000123) == "0.0000123"


def test_intervals_in_the_value_unit() -> None:
    assert interval_text("rate", 0.38, 0.369, 0.401) == "38.0% (36.9–40.1%)"
    assert interval_text("nps", -20.9, -29.9, -12.0) == "−20.9 (−29.9 to −12.0)"
    assert interval_text("rate", 0.38, None, 0.4) == "38.0%"


@pytest.mark.parametrize(
    ("length", "words"),
    [
        ("month", "June 2026"),
        ("quarter", "Q2 2026"),
        ("week", "Week of 1 June 2026"),
        ("day", "1 June 2026"),
        ("year", "2026"),
    ],
)
def test_periods_in_words(length: str, words: str) -> None:
    assert period_label(date(2026, 6, 1), length) == words


def test_the_currency_is_configurable() -> None:
    before = currency()
    try:
        use_currency("€")
        assert money(1_500_000.0) == "€1.50M" and value_text("average_sale", 12.5) == "€12.50"
    finally:
        use_currency(before)
