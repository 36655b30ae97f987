"""The lifetimes-style RFM summary of each customer's purchases (frequency, recency, T, monetary value)."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl

from funnelmodels.data import schema as s
from funnelmodels.frames import collect

__all__ = [
    "rfm_summary",
]


def rfm_summary(
    transactions: pl.LazyFrame | pl.DataFrame,
    *,
    observation_end: date | datetime | None = None,
    customer_col: str = s.CUSTOMER_ID,
    time_col: str = s.ORDERED_AT,
    amount_col: str | None = s.AMOUNT,
) -> pl.DataFrame:
    """Customer RFM summary with the definitions of ``lifetimes`` and ``pymc-marketing``.

    The same numbers as ``lifetimes.utils.summary_data_from_transaction_data`` (freq ``"D"``)
    and ``pymc_marketing.clv.utils.rfm_summary``, so BG/NBD and Gamma-Gamma fits can start
    from it: purchases are counted per calendar day, the first purchase day is not a repeat.
    Rows are taken as given (refunds, if present, count into the day's total, as there).

    Parameters
    ----------
    transactions : ``customer_id, ordered_at[, amount]`` (names set by the ``*_col`` arguments);
        ``ordered_at`` a Date or Datetime.
    observation_end : the day the observation ends (default: the last purchase day); later
        purchases are ignored.
    amount_col : the money column, or ``None`` for no ``monetary_value``.

    Returns
    -------
    DataFrame ``customer_id, frequency, recency, T[, monetary_value]`` sorted by customer:
    frequency = purchase days − 1; recency = days from the first to the last purchase day;
    T = days from the first purchase day to ``observation_end``; monetary_value = mean
    daily total over the repeat days (0 without repeats).
    """
    amount = pl.col(amount_col).cast(pl.Float64) if amount_col else pl.lit(0.0)
    days = transactions.lazy().select(
        pl.col(customer_col), pl.col(time_col).cast(pl.Date).alias("_day"), amount.alias("_amount")
    )
    if observation_end is not None:
        end = observation_end.date() if isinstance(observation_end, datetime) else observation_end
        days = days.filter(pl.col("_day") <= end)
    frame = _by_customer_and_day(days.pipe(collect), customer_col)
    # Sorted by customer and day, every customer and every purchase day is a run of rows:
    # flags and running sums replace a group-by over (customer, day) pairs (≈ one per row).
    customer, day = pl.col(customer_col), pl.col("_day")
    new_customer = (customer != customer.shift(1)).fill_null(True)
    new_day = new_customer | (day != day.shift(1)).fill_null(True)
    first_day = pl.when(new_customer).then(day).forward_fill()
    per_customer = (
        frame.lazy()
        .with_columns(
            new_customer.cum_sum().alias("_customer"),
            new_day.alias("_new_day"),
            pl.when(day == first_day).then(pl.lit(0.0)).otherwise(pl.col("_amount")).alias("_repeat_amount"),
        )
        .group_by("_customer")
        .agg(
            customer.first(),
            day.first().alias("_first"),
            day.last().alias("_last"),
            (pl.col("_new_day").sum() - 1).cast(pl.Int64).alias("frequency"),
            pl.col("_repeat_amount").sum().alias("_repeat_total"),
        )
    )
    end_expr = pl.lit(end, dtype=pl.Date) if observation_end is not None else pl.col("_last").max()
    monetary = (
        [
            pl.when(pl.col("frequency") > 0)
            .then(pl.col("_repeat_total") / pl.col("frequency"))
            .otherwise(0.0)
            .alias("monetary_value")
        ]
        if amount_col
        else []
    )
    return (
        per_customer.select(
            customer_col,
            "frequency",
            (pl.col("_last") - pl.col("_first")).dt.total_days().cast(pl.Float64).alias("recency"),
            (end_expr - pl.col("_first")).dt.total_days().cast(pl.Float64).alias("T"),
            *monetary,
        )
        .sort(customer_col)
        .pipe(collect)
    )


def _by_customer_and_day(frame: pl.DataFrame, customer_col: str) -> pl.DataFrame:
    """``frame`` ordered by customer, then day, sorting only as much as needed (file order kept within a day)."""
    customer, day = pl.col(customer_col), pl.col("_day")
    in_order = frame.select(
        ((customer > customer.shift(1)) | ((customer == customer.shift(1)) & (day >= day.shift(1))))
        .fill_null(True)
        .all()
    ).item()
    if in_order:  # e.g. an export ordered by customer (CDNOW)
        return frame
    if frame["_day"].is_sorted():  # a log in time order: a stable sort on one key suffices
        return frame.sort(customer_col, maintain_order=True)
    return frame.sort(customer_col, "_day", maintain_order=True)
