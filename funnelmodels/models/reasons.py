"""A model's reasons in plain words: each feature's contribution to one row's odds, as a sentence."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import polars as pl

from funnelmodels.labels import CURRENCY, LABELS, label

__all__ = [
    "reason_text",
    "top_reasons",
]


_PLURALS = {
    "days": "day",
    "orders": "order",
    "wins": "win",
    "losses": "loss",
    "refunds": "refund",
    "categories": "category",
    "surveys": "survey",
    "opportunities": "opportunity",
}


def _singular(text: str) -> str:
    """``1 days ago`` → ``1 day ago``: a count of one takes the singular."""
    return re.sub(
        r"\b1 (earlier )?(\w+)", lambda m: f"1 {m.group(1) or ''}{_PLURALS.get(m.group(2), m.group(2))}", text
    )


def _compact(value: float) -> str:
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if abs(value) >= 1_000:
        return f"{value / 1_000:.0f}k"
    return f"{value:,.0f}"


def reason_text(feature: str, value: object, contribution: float, *, unit: str = "odds") -> str:
    """One reason in plain words: ``income 92k raises odds``, or in points ``income 92k +4.1 pts``."""
    direction = "raises" if contribution > 0 else "lowers"
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    entry = LABELS.get(feature)
    template, unknown = (entry.reason, entry.unknown) if entry is not None else ("", "")
    if missing:
        text = unknown or f"{label(feature).lower()} unknown"
    elif template and isinstance(value, int | float):
        compact = _compact(float(value))
        if entry is not None and entry.unit == "money":
            compact = CURRENCY[0] + compact
        text = _singular(template.format(v=float(value), k=compact))
    else:
        text = f"{label(feature).lower()} {value}"
    if unit == "points":
        return f"{text} {'+' if contribution > 0 else '−'}{abs(100 * contribution):.1f} pts"
    return f"{text} {direction} odds"


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def top_reasons(
    contributions: np.ndarray, names: Sequence[str], values: pl.DataFrame, *, k: int = 3, unit: str = "odds"
) -> list[dict[str, list[str]]]:
    """Per row, the ``k`` strongest positive and negative reasons in words (never a missing value).

    Parameters
    ----------
    contributions : (rows, features) log-odds contributions, or probability points with
        ``unit="points"`` (a reason below 0.05 points is too small to say).
    names : feature names of the columns.
    values : the rows' raw feature values (for the words).
    """
    out = []
    rows = values.select(list(names)).rows()
    for row_contrib, row_values in zip(contributions, rows, strict=True):
        # A missing value is never a reason: "no NPS yet raises odds" tells a seller nothing to act on.
        known = np.array([not _is_missing(v) for v in row_values])
        row_contrib = np.where(known, row_contrib, 0.0)
        order = np.argsort(row_contrib)
        floor = 0.0005 if unit == "points" else 1e-9
        up = [i for i in order[::-1][:k] if row_contrib[i] > floor]
        down = [i for i in order[:k] if row_contrib[i] < -floor]
        out.append(
            {
                "up": [reason_text(names[i], row_values[i], row_contrib[i], unit=unit) for i in up],
                "down": [reason_text(names[i], row_values[i], row_contrib[i], unit=unit) for i in down],
            }
        )
    return out
