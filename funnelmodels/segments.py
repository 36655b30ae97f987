"""Segments to break the funnel down by: customer columns, bands of age, income and waiting time.

An empty segment value is shown as ``(missing)``, never confused with a value 'unknown' in the data.
"""

from __future__ import annotations

import polars as pl

from funnelmodels.data import schema as s
from funnelmodels.data.io import Dataset

__all__ = [
    "AGE_BANDS",
    "DEFAULT_SEGMENT",
    "SEGMENTS",
    "add_segments",
    "age_band",
    "age_years_band",
    "income_band",
    "segment_label",
    "with_segment",
]


AGE_BANDS: tuple[tuple[float, float | None, str], ...] = (
    (0.0, 30.0, "≤30 days"),
    (30.0, 90.0, "31–90 days"),
    (90.0, 180.0, "91–180 days"),
    (180.0, None, ">180 days"),
)
"""Bands of days an open opportunity has waited (in its stage, or since it began)."""


def age_band(days: pl.Expr) -> pl.Expr:
    """The :data:`AGE_BANDS` label of a number of days (0 falls in the first band)."""
    band = pl.lit(None, dtype=pl.String)
    for low, high, label in reversed(AGE_BANDS):
        inside = (days > low) if high is None else ((days > low) & (days <= high))
        band = pl.when(inside).then(pl.lit(label)).otherwise(band)
    return pl.when(days <= AGE_BANDS[0][1]).then(pl.lit(AGE_BANDS[0][2])).otherwise(band)


SEGMENTS = ("region", "gender", "age_band", "income_band", "customer_type", "source")


def add_segments(dataset: Dataset, transitions: pl.LazyFrame) -> pl.LazyFrame:
    """Add the segment columns analysts break the funnel down by.

    Parameters
    ----------
    transitions : LazyFrame ``customer_id, opportunity_start, …`` (from build_transitions).

    Returns
    -------
    ``transitions`` plus, where the data allows: ``region, gender`` and every other
    customers column, ``age_band`` (18–29, 30–44, 45–59, 60+, (missing)), ``income_band``
    (<40k, 40–60k, 60–90k, 90k+, (missing)) and ``customer_type`` (new, or returning when the
    customer bought before the opportunity started).
    """
    out = transitions
    names = out.collect_schema().names()
    if dataset.has("customers"):
        customers = dataset.lazy("customers")
        extra = [c for c in customers.collect_schema().names() if c not in names and c != s.CREATED_AT]
        out = out.join(customers.select(s.CUSTOMER_ID, *extra), on=s.CUSTOMER_ID, how="left")
        cols = customers.collect_schema().names()
        if s.AGE in cols:
            out = out.with_columns(age_years_band(pl.col(s.AGE)).alias("age_band"))
        if s.INCOME in cols:
            out = out.with_columns(income_band(pl.col(s.INCOME)).alias("income_band"))
    if dataset.has("transactions"):
        first = (
            dataset.lazy("transactions")
            .filter(pl.col(s.AMOUNT) > 0)
            .group_by(s.CUSTOMER_ID)
            .agg(pl.col(s.ORDERED_AT).min().alias("_first_order"))
        )
        returning = (pl.col("_first_order") < pl.col(s.OPPORTUNITY_START)).fill_null(False)
        out = (
            out.join(first, on=s.CUSTOMER_ID, how="left")
            .with_columns(pl.when(returning).then(pl.lit("returning")).otherwise(pl.lit("new")).alias("customer_type"))
            .drop("_first_order")
        )
    return out


def age_years_band(age: pl.Expr) -> pl.Expr:
    """A customer's age band: 18–29, 30–44, 45–59, 60+ or (missing)."""
    return _band(age, [30, 45, 60], ["18–29", "30–44", "45–59", "60+"])


def income_band(income: pl.Expr) -> pl.Expr:
    """A customer's income band: <40k, 40–60k, 60–90k, 90k+ or (missing)."""
    return _band(income, [40_000, 60_000, 90_000], ["<40k", "40–60k", "60–90k", "90k+"])


def _band(value: pl.Expr, breaks: list[float], labels: list[str]) -> pl.Expr:
    expr = pl.lit(labels[-1])
    for upper, label in reversed(list(zip(breaks, labels, strict=False))):
        expr = pl.when(value < upper).then(pl.lit(label)).otherwise(expr)
    return pl.when(value.is_null()).then(pl.lit(s.MISSING_LABEL)).otherwise(expr)


DEFAULT_SEGMENT = "region"


def segment_label(column: pl.Expr) -> pl.Expr:
    """A segment's values as text, an empty value shown as ``(missing)`` (not as a value 'unknown')."""
    return column.cast(pl.String).fill_null(s.MISSING_LABEL)


def with_segment(frame: pl.LazyFrame, customers: pl.LazyFrame, segment: str) -> pl.LazyFrame:
    """``frame`` with its customer's ``segment`` column (a customers column), labelled as reports show it."""
    joined = frame.join(customers.select(s.CUSTOMER_ID, segment), on=s.CUSTOMER_ID, how="left")
    return joined.with_columns(segment_label(pl.col(segment)))
