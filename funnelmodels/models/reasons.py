"""A model's reasons in plain words: each feature's contribution to one row's odds, as a sentence."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl

__all__ = [
    "reason_text",
    "top_reasons",
]


_LABELS = {
    "age": ("age {v:.0f}", "age unknown"),
    "income": ("income {k}", "income unknown"),
    "product_knowledge": ("product knowledge {v:.0f}/5", "product knowledge unknown"),
    "tenure_days": ("customer for {v:.0f} days", None),
    "recency_days": ("last purchase {v:.0f} days ago", "no purchase yet"),
    "frequency": ("{v:.0f} earlier orders", None),
    "monetary_total": ("{k} spent before", None),
    "monetary_mean": ("average order {k}", "no orders yet"),
    "monetary_max": ("largest order {k}", "no orders yet"),
    "distinct_categories": ("bought in {v:.0f} categories", None),
    "spend_90d": ("{k} spent in the last 90 days", None),
    "spend_365d": ("{k} spent in the last year", None),
    "refund_count": ("{v:.0f} refunds", None),
    "refund_amount": ("{k} refunded", None),
    "last_csat": ("last CSAT {v:.0f}", "no CSAT yet"),
    "mean_csat": ("mean CSAT {v:.1f}", "no CSAT yet"),
    "last_nps": ("last NPS {v:.0f}", "no NPS yet"),
    "survey_count": ("{v:.0f} surveys answered", None),
    "prior_opportunities": ("{v:.0f} earlier opportunities", None),
    "prior_wins": ("{v:.0f} earlier wins", None),
    "prior_losses": ("{v:.0f} earlier losses", None),
    "days_since_opportunity_start": ("{v:.0f} days since the lead", None),
    "stage_entry": ("entry {v:.0f} into this stage", None),
    "deal_amount": ("deal size {k}", "deal size unknown"),
}


def _compact(value: float) -> str:
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if abs(value) >= 1_000:
        return f"{value / 1_000:.0f}k"
    return f"{value:,.0f}"


def reason_text(feature: str, value: object, contribution: float) -> str:
    """One reason in plain words, e.g. ``income 92k raises odds``."""
    direction = "raises" if contribution > 0 else "lowers"
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    template, unknown = _LABELS.get(feature, (None, None))
    if missing:
        text = unknown or f"{feature.replace('_', ' ')} unknown"
    elif template and isinstance(value, int | float):
        text = template.format(v=float(value), k=_compact(float(value)))
    else:
        text = f"{feature.replace('_', ' ')} {value}"
    return f"{text} {direction} odds"


def top_reasons(
    contributions: np.ndarray, names: Sequence[str], values: pl.DataFrame, *, k: int = 3
) -> list[dict[str, list[str]]]:
    """Per row, the ``k`` strongest positive and negative reasons in words.

    Parameters
    ----------
    contributions : (rows, features) log-odds contributions.
    names : feature names of the columns.
    values : the rows' raw feature values (for the words).
    """
    out = []
    rows = values.select(list(names)).rows()
    for row_contrib, row_values in zip(contributions, rows, strict=True):
        order = np.argsort(row_contrib)
        up = [i for i in order[::-1][:k] if row_contrib[i] > 1e-9]
        down = [i for i in order[:k] if row_contrib[i] < -1e-9]
        out.append(
            {
                "up": [reason_text(names[i], row_values[i], row_contrib[i]) for i in up],
                "down": [reason_text(names[i], row_values[i], row_contrib[i]) for i in down],
            }
        )
    return out
