"""What each customer's history held strictly before given moments: counts, sums, maxima, last values.

A customer's point-in-time features (orders before a stage was entered, surveys before an
answer, deals before a deal) are running aggregates read at many moments. Here the events are
sorted once by a single integer key (customer, time); every aggregate is a running sum or
maximum over that order; and each moment (query) finds how far into its customer's events it
reaches by a binary search of the same key, with the queries in key order too. A handful of
vectorised passes, whatever the number of customers. A query sees the events strictly before
its moment (one at the same time is not seen: the leakage guard).

Sums of whole numbers and of amounts in whole cents are added as integers, so they are exact
(the decimal total, rounded once); other amounts are added as floats.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import polars as pl

from funnelmodels.data import schema as s

__all__ = ["Running", "T", "history_at"]

T: Final = "_t"
"""The events' time column."""
_KEY_LIMIT: Final = 2**62


@dataclass(frozen=True)
class Running:
    """One aggregate of a customer's events before each query.

    ``count``: events (where ``where``, a boolean column or expression of the events, holds);
    ``sum``/``max``: of ``column`` over those events (``sum`` is 0 and ``max`` empty without any);
    ``last``: the latest non-empty ``column`` value; ``distinct``: how many different non-empty
    ``column`` values. ``at``: the queries' moment column to read it at (default: the call's).
    """

    kind: Literal["count", "sum", "max", "last", "distinct"]
    column: str | None = None
    where: str | pl.Expr | None = None
    at: str | None = None


def history_at(queries: pl.DataFrame, at: str, events: pl.DataFrame, aggregates: Mapping[str, Running]) -> pl.DataFrame:
    """The ``aggregates`` of each query's customer's events strictly before the query's moment.

    Parameters
    ----------
    queries : ``customer_id`` and the moment column ``at`` (and those the aggregates name; others ignored).
    events : ``customer_id``, ``_t`` (the event's time) and the columns the aggregates read.
        Events at the same time keep their order here (it decides ``last`` between them).
    aggregates : output column → :class:`Running`.

    Returns
    -------
    One row per query, in the queries' order, one column per aggregate. A query without a
    customer or a moment gets the empty history (0 counts and sums, empty maxima and last values).
    """
    events = events.filter(pl.col(s.CUSTOMER_ID).is_not_null() & pl.col(T).is_not_null())
    events = _of_customers_asked(events, queries)
    if events.height == 0:
        return pl.DataFrame([_nothing(name, spec, events, queries.height) for name, spec in aggregates.items()])
    moments = list(dict.fromkeys(spec.at or at for spec in aggregates.values()))
    n, m = queries.height, len(moments)
    id_type = queries[s.CUSTOMER_ID].dtype
    customers = pl.concat([*[queries[s.CUSTOMER_ID]] * m, events[s.CUSTOMER_ID].cast(id_type)], rechunk=True)
    when = queries[at].dtype
    times = pl.concat([*(queries[c].cast(when) for c in moments), events[T].cast(when)], rechunk=True)
    keys, span = _keys(_codes(customers), times)
    usable = customers.is_not_null().to_numpy() & times.is_not_null().to_numpy()
    del customers, times
    # Events in key order, ties in their given order; the key doubled plus one sorts an event after a
    # query at the same time (doubled), which does not see it.
    ordered = (
        events.drop(s.CUSTOMER_ID).with_columns(pl.Series(_KEY, keys[n * m :] * 2 + 1)).sort(_KEY, maintain_order=True)
    )
    del events
    doubled = ordered[_KEY].to_numpy()
    reads = {
        moment: _Reach.find(doubled, keys[n * i : n * (i + 1)], usable[n * i : n * (i + 1)], span)
        for i, moment in enumerate(moments)
    }
    del keys

    wholes: dict[str, tuple[pl.Series | None, int]] = {}  # each column made whole numbers once
    out: dict[str, pl.Series] = {}
    for name, spec in aggregates.items():
        plan = _plan(ordered, spec, span, wholes)
        running = ordered.select(plan.running).to_series()  # one column at a time: memory stays flat
        read = reads[spec.at or at]
        at_reach = np.where(read.reach > 0, running.gather(read.upto).to_numpy(), 0)
        if spec.kind in ("count", "distinct", "sum"):
            found = at_reach - np.where(read.start > 0, running.gather(read.before).to_numpy(), 0)
            values = pl.Series(name, found / plan.scale if plan.scale != 1 else found)
        elif spec.kind == "max":
            customer = doubled[read.upto.to_numpy()] // 2 // span
            values = plan.decode(np.where(read.has_any, at_reach - customer * plan.levels, 0)).rename(name)
        else:
            seen = read.has_any & (at_reach >= read.start)
            column = ordered[_column(spec)]
            values = column.gather(pl.Series(np.where(seen, at_reach, 0))).set(pl.Series(~seen), None).rename(name)
        del running
        out[name] = read.in_query_order(values, spec)
    return pl.DataFrame(out)


@dataclass(frozen=True)
class _Reach:
    """Where each query's moment falls among the sorted events (the queries taken in key order)."""

    reach: np.ndarray  # the events strictly before the query, all customers
    start: np.ndarray  # the query's customer's first event
    upto: pl.Series  # the query's last event seen (0 when none)
    before: pl.Series  # the event before its customer's first (0 when none)
    back: pl.Series  # each query's place in key order
    missing: pl.Series | None  # queries without customer or moment

    @property
    def has_any(self) -> np.ndarray:
        return self.reach > self.start

    @staticmethod
    def find(doubled: np.ndarray, keys: np.ndarray, usable: np.ndarray, span: int) -> _Reach:
        # A binary search is fast for sorted queries, slow for scattered ones.
        order = _sorted_positions(np.where(usable, keys, -1))
        order = order[usable[order]]
        asked = keys[order] * 2
        reach = np.searchsorted(doubled, asked)
        start = np.searchsorted(doubled, asked // 2 // span * span * 2)
        place = np.zeros(keys.size, dtype=np.int64)
        place[order] = np.arange(order.size)
        return _Reach(
            reach=reach,
            start=start,
            upto=pl.Series(np.maximum(reach - 1, 0)),
            before=pl.Series(np.maximum(start - 1, 0)),
            back=pl.Series(place),
            missing=None if order.size == keys.size else pl.Series(~usable),
        )

    def in_query_order(self, values: pl.Series, spec: Running) -> pl.Series:
        """Answers back in the queries' order; unusable queries get the empty history."""
        placed = values.gather(self.back) if values.len() else _empty(values.name, self.back.len(), values.dtype)
        if self.missing is not None:
            placed = placed.set(self.missing, 0 if spec.kind in ("count", "distinct", "sum") else None)
        return placed


_KEY: Final = "_history_key"


@dataclass(frozen=True)
class _Plan:
    """How one aggregate runs over the sorted events: a running column and how to read it back."""

    spec: Running
    running: pl.Expr
    scale: int = 1
    levels: int = 0
    decode: Callable[[np.ndarray], pl.Series] = lambda rank: pl.Series(rank)


def _plan(ordered: pl.DataFrame, spec: Running, span: int, wholes: dict[str, tuple[pl.Series | None, int]]) -> _Plan:
    where = pl.col(spec.where) if isinstance(spec.where, str) else spec.where
    valid = where.fill_null(False) if where is not None else pl.col(_KEY).is_not_null()
    if spec.kind == "count":
        return _Plan(spec, valid.cast(pl.Int64).cum_sum())
    column = ordered[_column(spec)]
    valid = valid & pl.col(column.name).is_not_null()
    customer = pl.col(_KEY) // 2 // span
    if spec.kind == "last":
        return _Plan(spec, pl.when(valid).then(pl.int_range(pl.len(), dtype=pl.Int64)).otherwise(-1).cum_max())
    if spec.kind == "distinct":
        codes = column.cast(pl.Categorical) if column.dtype == pl.String else column
        physical = codes.to_physical().cast(pl.Int64)
        low, high = _number(physical.min()), _number(physical.max())
        pair = customer * (high - low + 1) + (pl.lit(physical) - low)
        first = pl.when(valid).then(pair).is_first_distinct() & valid
        return _Plan(spec, first.cast(pl.Int64).cum_sum())
    if column.name not in wholes:
        wholes[column.name] = _whole(column)
    whole, scale = wholes[column.name]
    if spec.kind == "sum":
        if whole is None:
            return _Plan(spec, pl.when(valid).then(pl.col(column.name)).otherwise(0.0).cast(pl.Float64).cum_sum())
        return _Plan(spec, pl.when(valid).then(pl.lit(whole)).otherwise(0).cum_sum(), scale=scale)
    # max: customers come in increasing order, so a running maximum of customer × levels + rank restarts at
    # each customer (rank 0: nothing valid seen yet).
    mask = ordered.select(valid).to_series()
    if not mask.any():  # nothing to take the largest of
        return _Plan(
            spec,
            pl.repeat(0, pl.len(), dtype=pl.Int64),
            levels=1,
            decode=lambda rank: _empty("", rank.size, column.dtype),
        )
    if whole is not None:
        kept_whole = whole.filter(mask)
        low = _number(kept_whole.min())
        rank = pl.lit(whole) - low + 1
        levels = _number(kept_whole.max()) - low + 2

        def decode(rank: np.ndarray) -> pl.Series:
            best = pl.Series((np.maximum(rank, 1) - 1 + low) / scale if scale != 1 else np.maximum(rank, 1) - 1 + low)
            return best.cast(column.dtype).set(pl.Series(rank <= 0), None)
    else:
        distinct = column.filter(mask).unique().sort()
        rank = pl.lit((distinct.search_sorted(column.fill_null(distinct[0])) + 1).cast(pl.Int64))
        levels = distinct.len() + 1

        def decode(rank: np.ndarray) -> pl.Series:
            return distinct.gather(pl.Series(np.maximum(rank, 1) - 1)).set(pl.Series(rank <= 0), None)

    running = (customer * levels + pl.when(valid).then(rank).otherwise(0)).cum_max()
    return _Plan(spec, running, levels=levels, decode=decode)


def _rank_in(column: pl.Series, distinct: pl.Series) -> pl.Series:
    """Each value's place (from 1) among the sorted ``distinct`` values; 0 when empty."""
    return (distinct.search_sorted(column.fill_null(distinct[0] if distinct.len() else None)) + 1).cast(pl.Int64)


def _whole(column: pl.Series) -> tuple[pl.Series | None, int]:
    """The values as whole numbers and their scale (1, or 100 for amounts in whole cents); None when not."""
    if column.dtype.is_integer() or column.dtype == pl.Boolean:
        return column.cast(pl.Int64), 1
    if not column.dtype.is_float():
        return None, 1
    values = column.fill_null(0.0).to_numpy()
    if values.size and (not np.all(np.isfinite(values)) or np.abs(values).max() * 100 * values.size >= 2**62):
        return None, 1
    cents = np.rint(values * 100)
    if np.array_equal(cents / 100, values):  # numpy divides exactly (not by multiplying with 0.01)
        return pl.Series(cents.astype(np.int64)), 100
    return None, 1


def _column(spec: Running) -> str:
    if spec.column is None:
        raise ValueError(f"a {spec.kind} needs a column")
    return spec.column


def _codes(customers: pl.Series) -> np.ndarray:
    """A whole number from 0 per customer (equal ids share it; the order means nothing)."""
    if customers.dtype.is_integer():
        low, high = _number(customers.min()), _number(customers.max())
        if high - low < 2**40:
            codes: np.ndarray = customers.fill_null(low).to_numpy().astype(np.int64) - low
            return codes
    if customers.dtype == pl.String:
        return customers.cast(pl.Categorical).to_physical().fill_null(0).to_numpy().astype(np.int64)
    return customers.rank("dense").fill_null(0).to_numpy().astype(np.int64)


def _keys(codes: np.ndarray, times: pl.Series) -> tuple[np.ndarray, int]:
    """One integer per row ordering by (customer, time), and the number of time steps per customer.

    Times are counted in the coarsest unit (day, second, millisecond) they are all whole numbers
    of; when customers × steps would not fit, the distinct times are ranked.
    """
    ticks = times.to_physical().fill_null(0).to_numpy().astype(np.int64)
    if ticks.size == 0:
        return ticks, 1
    ticks -= ticks.min()
    for unit in (86_400_000_000, 1_000_000, 1_000):
        if not np.any(ticks[:1000] % unit) and not np.any(ticks % unit):
            ticks //= unit
            break
    customers = int(codes.max()) + 1
    span = int(ticks.max()) + 1
    if customers * span * 2 >= _KEY_LIMIT:
        ticks = pl.Series(ticks).rank("dense").to_numpy().astype(np.int64) - 1
        span = int(ticks.max()) + 1
    if customers * span * 2 >= _KEY_LIMIT:
        raise ValueError(f"{customers:,} customers × {span:,} distinct times do not fit one sort key")
    return codes * span + ticks, span


def _sorted_positions(key: np.ndarray) -> np.ndarray:
    """Positions in increasing ``key`` order, equal keys in their order."""
    return pl.DataFrame({"k": key}).with_row_index("i").sort("k", maintain_order=True)["i"].to_numpy()


def _nothing(name: str, spec: Running, events: pl.DataFrame, n: int) -> pl.Series:
    """The aggregate of no events: 0 counts and sums, empty maxima and last values."""
    if spec.kind in ("count", "distinct"):
        return pl.Series(name, [0] * n, dtype=pl.Int64)
    dtype = events[_column(spec)].dtype
    if spec.kind == "sum":
        return pl.Series(name, [0] * n, dtype=pl.Int64 if dtype.is_integer() else pl.Float64)
    return _empty(name, n, dtype)


def _number(value: Any) -> int:
    """A whole-number aggregate of a series (min, max) as an int; 0 for an empty series."""
    return 0 if value is None else int(value)


def _empty(name: str, n: int, dtype: pl.DataType) -> pl.Series:
    return pl.Series(name, [], dtype=dtype).extend_constant(None, n)


def _of_customers_asked(events: pl.DataFrame, queries: pl.DataFrame) -> pl.DataFrame:
    """Only the events of the queries' customers, when that leaves out most of them (less to sort).

    The deals open at one moment are a tenth of the customers: their history is a tenth of the
    events. When the queries cover most customers, the filter would cost more than it saves.
    """
    asked = queries[s.CUSTOMER_ID].drop_nulls().unique()
    if asked.len() * _FEW_CUSTOMERS >= events.height:
        return events
    asked = asked.cast(events[s.CUSTOMER_ID].dtype, strict=False).drop_nulls()
    return events.filter(pl.col(s.CUSTOMER_ID).is_in(asked.implode()))


_FEW_CUSTOMERS: Final = 20
"""Filter the events to the queries' customers when there are fewer than one per this many events."""
