"""Numbers and results as short text for a reader: money, percentages, counts, a sentence on time to close."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = [
    "count",
    "money",
    "number",
    "percent",
    "time_to_close_text",
]


def money(value: float | None, currency: str = "$") -> str:
    """``$1.2M``, ``$84.3k``, ``$950`` (negative with a minus sign); ``–`` for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    sign = "−" if value < 0 else ""
    v = abs(value)
    if v >= 1e6:
        return f"{sign}{currency}{v / 1e6:.2f}M"
    if v >= 1e4:
        return f"{sign}{currency}{v / 1e3:.1f}k"
    return f"{sign}{currency}{v:,.0f}"


def percent(value: float | None, digits: int = 1) -> str:
    """``12.3%``; ``–`` for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.{digits}f}%"


def number(value: float | None) -> str:
    """Readable number: thousands separators, at most three significant decimals; ``–`` for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"


def count(value: float | None) -> str:
    """A whole number with thousands separators; ``–`` for missing."""
    return "–" if value is None else f"{value:,.0f}"


def time_to_close_text(close: Mapping[str, Any]) -> str:
    """One sentence on the Kaplan–Meier median days from first contact to a win."""
    if close.get("median_days") is None:
        return (
            f"Median time to close: not reached — fewer than half of the {close['opportunities']:,} opportunities "
            "are won before being lost or the period's end."
        )
    interval = ""
    if close.get("median_low") is not None and close.get("median_high") is not None:
        interval = f" (95% interval {close['median_low']:.0f}–{close['median_high']:.0f})"
    return (
        f"Median time to close: **{close['median_days']:.0f} days**{interval} from the first stage to won, by "
        f"Kaplan–Meier over {close['opportunities']:,} opportunities ({close['won']:,} won; lost and open ones "
        "censored)."
    )
