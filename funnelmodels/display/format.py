"""Numbers and results as short text for a reader: money, shares, counts, intervals, periods.

Every value a report shows goes through :func:`value_text`, which writes it by its unit
(:mod:`funnelmodels.labels`) with fixed decimals per unit: money ``$1.23M``, a price ``$84.20``,
a share ``38.0%``, a change of a share in points ``+2.1 pts``, a count ``1,234``, a score ``0.812``.
The currency symbol is the dataset's (``[report] currency`` in funnel.toml; see :func:`use_currency`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

from funnelmodels.labels import CURRENCY, Unit, day_text, unit

__all__ = [
    "count",
    "currency",
    "interval_text",
    "money",
    "number",
    "p_value",
    "percent",
    "period_label",
    "points",
    "price",
    "signed_percent",
    "time_to_close_text",
    "use_currency",
    "value_text",
]

_CURRENCY = CURRENCY


def use_currency(symbol: str) -> None:
    """Write money with ``symbol`` from now on in this process (a notebook calls it after loading the data)."""
    _CURRENCY[0] = symbol


def currency() -> str:
    """The currency symbol money is written with."""
    return _CURRENCY[0]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def money(value: float | None, currency: str | None = None) -> str:
    """``$1.23M``, ``$84.3k``, ``$950`` (negative with a minus sign); ``–`` for missing."""
    if _missing(value):
        return "–"
    assert value is not None
    currency = _CURRENCY[0] if currency is None else currency
    sign = "−" if value < 0 else ""
    v = abs(value)
    if v >= 1e6:
        return f"{sign}{currency}{v / 1e6:.2f}M"
    if v >= 1e4:
        return f"{sign}{currency}{v / 1e3:.1f}k"
    return f"{sign}{currency}{v:,.0f}"


def price(value: float | None) -> str:
    """A unit price to the cent below 10,000 (``$84.20``), else as :func:`money`."""
    if _missing(value):
        return "–"
    assert value is not None
    if abs(value) >= 1e4:
        return money(value)
    return f"{'−' if value < 0 else ''}{_CURRENCY[0]}{abs(value):,.2f}"


def percent(value: float | None, digits: int = 1) -> str:
    """``12.3%``; ``–`` for missing."""
    if _missing(value):
        return "–"
    assert value is not None
    return f"{100 * value:.{digits}f}%"


def points(change: float | None) -> str:
    """A change of a share in percentage points: ``+2.1 pts``; ``–`` for missing."""
    if _missing(change):
        return "–"
    assert change is not None
    return f"{100 * change:+.1f} pts"


def _signed(text: str, value: float) -> str:
    return ("−" if value < 0 else "") + text


def signed_percent(share: float | None, digits: int = 1) -> str:
    """A relative change with its sign: ``+4.2%``, ``−8.6%``; ``–`` for missing."""
    if _missing(share):
        return "–"
    assert share is not None
    return ("+" if share >= 0 else "−") + f"{abs(100 * share):.{digits}f}%"


def value_text(name: str, value: Any, *, kind: Unit | None = None) -> str:
    """``value`` written by the unit of the measure or column ``name`` (or ``kind``); ``–`` for missing."""
    if _missing(value):
        return "–"
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    kind = kind or unit(name)
    if kind == "text":  # an id or a name: as it is, never "1,047"
        return str(value)
    if isinstance(value, datetime | date):
        day = day_text(value)
        return f"{day} {value:%H:%M}" if isinstance(value, datetime) and value.time() else day
    if not isinstance(value, int | float):
        return str(value)
    # One name, two meanings: "converted" counts entries in the funnel table and is a share in the
    # cumulative one. A whole number is never a share; a fraction is never a count.
    if kind == "share" and isinstance(value, int):
        kind = "count"
    elif kind == "count" and isinstance(value, float) and not value.is_integer():
        kind = "number"
    writers: dict[str, Callable[[float], str]] = {
        "money": money,
        "price": price,
        "count": count,
        "share": percent,
        "points": points,
        "days": lambda v: f"{math.floor(v):,}" if v >= 0 else f"{v:,.0f}",  # whole days elapsed
        "score": lambda v: _signed(f"{abs(v):,.2f}", v),
        "metric": lambda v: _signed(f"{abs(v):,.3f}" if abs(v) < 10 else f"{abs(v):,.1f}", v),
        "fine": lambda v: _signed(f"{abs(v):,.4f}", v),
        "index": lambda v: _signed(f"{abs(v):,.1f}", v),
        "pvalue": p_value,
    }
    if kind in writers:
        return writers[kind](value)
    return number(value)


def interval_text(name: str, value: Any, low: Any, high: Any) -> str:
    """A value with its interval, in the value's unit: ``38.0% (36.9–40.1%)``, ``$1.2M ($1.1M–$1.3M)``."""
    if _missing(value):
        return "–"
    main = value_text(name, value)
    if _missing(low) or _missing(high):
        return main
    lo, hi = value_text(name, low), value_text(name, high)
    if low < 0 or high < 0:
        return f"{main} ({lo} to {hi})"
    if unit(name) == "share":
        lo = lo.rstrip("%")
    return f"{main} ({lo}–{hi})"


_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


def period_label(start: date | datetime | str | None, period_length: str = "month") -> str:
    """A period as a reader says it: ``June 2026``, ``Q2 2026``, ``Week of 1 June 2026``, ``1 June 2026``, ``2026``."""
    if start is None:
        return "–"
    if isinstance(start, str):
        start = date.fromisoformat(start[:10])
    day = day_text(start, short=False)
    labels = {
        "month": f"{_MONTHS[start.month - 1]} {start.year}",
        "quarter": f"Q{(start.month - 1) // 3 + 1} {start.year}",
        "week": f"Week of {day}",
        "day": day,
        "year": f"{start.year}",
    }
    return labels.get(period_length, f"{start:%Y-%m-%d}")


def number(value: float | None) -> str:
    """Readable number: thousands separators, at most three significant decimals; ``–`` for missing."""
    if _missing(value):
        return "–"
    assert value is not None
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if 0 < abs(value) < 1e-3:  # 0.0000123, not 1.23e-05: a reader does not read exponents
        return f"{value:.{min(12, 2 - math.floor(math.log10(abs(value))))}f}"
    return f"{value:,.3g}"


def p_value(value: float | None) -> str:
    """A p-value to three decimals, ``< 0.001`` below that; ``–`` for missing."""
    if _missing(value):
        return "–"
    assert value is not None
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def count(value: float | None) -> str:
    """A whole number with thousands separators; ``–`` for missing."""
    return "–" if _missing(value) else f"{value:,.0f}"


def time_to_close_text(close: Mapping[str, Any]) -> str:
    """One sentence on how long won deals took, and the share of deals won."""
    if not close.get("won"):
        return f"Time to close: no deal was won among the {close['opportunities']:,} opportunities."
    median, p90 = close.get("won_median_days"), close.get("won_p90_days")
    return (
        f"Won deals took a median of **{median:.0f} days** from the first stage to won (90% within {p90:.0f} days); "
        f"{close['won']:,} of the {close['opportunities']:,} opportunities were won. Deals still open are not "
        "counted, so a young pipeline makes this look shorter."
    )
