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
    if contributions.shape[0] == 0:
        return []
    columns = values.select(list(names))
    # A missing value is never a reason: "no NPS yet raises odds" tells a seller nothing to act on.
    known = np.column_stack([_present(columns[c]) for c in columns.columns])
    masked = np.where(known, contributions, 0.0)
    floor = 0.0005 if unit == "points" else 1e-9
    width = min(k, masked.shape[1])
    order = np.argsort(masked, axis=1, kind="stable")  # every row at once
    lowest, highest = order[:, :width], order[:, ::-1][:, :width]
    out = []
    for row, (ups, downs, row_values) in enumerate(zip(highest, lowest, columns.iter_rows(), strict=True)):
        up = [i for i in ups if masked[row, i] > floor]
        down = [i for i in downs if masked[row, i] < -floor]
        out.append(
            {
                "up": [reason_text(names[i], row_values[i], masked[row, i], unit=unit) for i in up],
                "down": [reason_text(names[i], row_values[i], masked[row, i], unit=unit) for i in down],
            }
        )
    return out


def _present(column: pl.Series) -> np.ndarray:
    """True where the value is there (not empty, not NaN)."""
    present = column.is_not_null()
    if column.dtype.is_float():
        present = present & ~column.is_nan().fill_null(False)
    return present.to_numpy()
