"""Hand-made canonical tables whose right answers tests write down."""

from __future__ import annotations

import polars as pl


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
