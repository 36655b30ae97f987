"""Hand-made canonical tables whose right answers tests write down."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from funnelmodels.config import FunnelSpec


def tiny_tables() -> dict[str, pl.DataFrame]:
    """A valid three-customer dataset, small enough to reason about by hand."""
    return {
        "customers": pl.DataFrame(
            {
                "customer_id": [1, 2, 3],
                "created_at": ["2025-01-01", "2025-01-05", "2025-02-01"],
                "age": [34, 51, None],
                "gender": ["female", "male", None],
                "income": [52000.0, 81000.0, 40000.0],
                "region": ["north", "south", "east"],
            }
        ),
        "transactions": pl.DataFrame(
            {
                "order_id": [10, 11, 12, 13],
                "customer_id": [1, 1, 2, 3],
                "ordered_at": ["2025-01-10 09:00:00", "2025-03-01 10:30:00", "2025-02-01 12:00:00", "2025-02-03"],
                "amount": [120.0, -120.0, 80.5, 42.0],
                "category": ["software", "software", "services", "training"],
            }
        ),
        "stage_events": pl.DataFrame(
            {
                "opportunity_id": [100, 100, 100, 101, 101],
                "customer_id": [1, 1, 1, 2, 2],
                "stage": ["lead", "qualified", "won", "lead", "lost"],
                "entered_at": ["2025-01-02", "2025-01-09", "2025-02-01", "2025-01-06", "2025-01-20"],
                "amount": [5000.0, 5000.0, 5000.0, 2000.0, 2000.0],
                "source": ["web", "web", "web", "event", "event"],
            }
        ),
        "surveys": pl.DataFrame(
            {
                "customer_id": [1, 2],
                "responded_at": ["2025-01-15", "2025-02-10"],
                "csat": [4, 2],
                "nps": [9, None],
            }
        ),
    }


FUNNEL_SPEC = FunnelSpec(horizon_days=30)
"""The funnel of :func:`funnel_events`: a 30-day horizon."""


FUNNEL_END = datetime(2025, 6, 30)
"""The data's end for :func:`funnel_events`."""


def funnel_events() -> pl.LazyFrame:
    """Seven opportunities whose transitions the funnel and rates tests work out by hand."""
    rows = [
        # 1: straight through; relationship → proposal takes 39 days (> 30: not converted).
        (1, 1, "lead", "2025-01-01"),
        (1, 1, "qualified", "2025-01-11"),
        (1, 1, "relationship", "2025-01-21"),
        (1, 1, "proposal", "2025-03-01"),
        (1, 1, "won", "2025-03-11"),
        # 2: lost at the lead stage after 10 days.
        (2, 2, "lead", "2025-01-05"),
        (2, 2, "lost", "2025-01-15"),
        # 3: skips qualified (lead converts), then lost.
        (3, 3, "lead", "2025-02-01"),
        (3, 3, "relationship", "2025-02-10"),
        (3, 3, "lost", "2025-03-01"),
        # 4: re-enters lead and qualified, still open at the end (its horizon is over).
        (4, 4, "lead", "2025-03-01"),
        (4, 4, "qualified", "2025-03-05"),
        (4, 4, "lead", "2025-03-10"),
        (4, 4, "qualified", "2025-03-20"),
        (4, 4, "relationship", "2025-03-25"),
        # 5: open, entered 10 days before the end: censored.
        (5, 5, "lead", "2025-06-20"),
        # 6: lost after 5 days, its horizon over: observed.
        (6, 6, "lead", "2025-05-10"),
        (6, 6, "lost", "2025-05-15"),
        # 7: lost after 3 days, but its 30 days are not over: censored like any other recent row.
        (7, 7, "lead", "2025-06-15"),
        (7, 7, "lost", "2025-06-18"),
    ]
    return (
        pl.DataFrame(rows, schema=["opportunity_id", "customer_id", "stage", "entered_at"], orient="row")
        .with_columns(pl.col("entered_at").str.to_datetime("%Y-%m-%d"))
        .lazy()
    )
