"""The funnel's stage-transition rows: one row per entry of an opportunity into a stage, with its outcome.

Rates computed from these rows are in :mod:`funnelmodels.rates`.

Definitions (DESIGN.md, "Core definitions"):

- A **stage-transition row** is one entry of an opportunity into a non-terminal
  stage. Re-entering a stage makes a new row.
- ``converted``: within ``horizon_days`` of entering, the opportunity entered a
  *later* stage of the funnel (``won`` included). Skipping a stage counts as
  converting (lead → relationship converts the lead row); moving back or being
  lost does not.
- ``censored``: the horizon is not yet over at the data's end. Censored rows
  stay out of rates, training and metrics (even when they already converted or
  were lost: counting only the quick outcomes of the last period would bias the
  rates), but are still scored.
- **stale opportunities** (``stale_after_days`` in the spec): an opportunity whose last
  event is not ``won`` or ``lost`` and that has had no event for that many days at the
  data's end is lost on that day — CRM exports often never record the loss.
- **snapshots**: a transition row seen again while its opportunity still sits in the stage
  (after 7, 14, 30, … days), so a model learns how waiting changes the odds; its label is
  a later stage within the horizon *of the snapshot*.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime

import polars as pl

from funnelmodels.config import FunnelSpec
from funnelmodels.data import schema as s
from funnelmodels.errors import ConfigError
from funnelmodels.frames import US_PER_DAY, as_days, collect

__all__ = [
    "SNAPSHOT_DAYS",
    "add_snapshots",
    "build_transitions",
    "data_end",
    "opportunity_columns",
    "stale_losses",
    "with_stale_losses",
]

SNAPSHOT_DAYS = (7, 14, 30, 60, 90, 180, 365, 730)
"""Intervals of days after entering a stage — (0, 7], (7, 14], … (365, 730] — in each of which a
still-open row is seen again once for training."""


def data_end(stage_events: pl.LazyFrame) -> datetime:
    """The data's end: the last stage event's time (used when no as_of is given)."""
    value = stage_events.select(pl.col(s.ENTERED_AT).max()).pipe(collect).item()
    if not isinstance(value, datetime):
        raise ConfigError("stage_events has no entered_at values; cannot tell where the data ends.")
    return value


def stale_losses(stage_events: pl.LazyFrame, spec: FunnelSpec, *, end: datetime) -> pl.LazyFrame:
    """The ``lost`` events the stale rule infers: one per opportunity silent for ``stale_after_days``.

    An opportunity whose last event up to ``end`` is neither won nor lost, and whose last event
    is at least ``stale_after_days`` before ``end``, is lost ``stale_after_days`` after that event.
    A gap followed by new activity is not a loss: only the silence at the end counts.

    Returns
    -------
    LazyFrame with the columns of ``stage_events``: the inferred events (none without the rule).
    """
    names = stage_events.collect_schema().names()
    if spec.stale_after_days is None:
        return stage_events.head(0)
    stale = pl.duration(days=spec.stale_after_days)
    last = (
        stage_events.filter(pl.col(s.ENTERED_AT) <= end)
        .with_columns(spec.stage_order(pl.col(s.STAGE)).alias("_rank"))
        .sort(s.OPPORTUNITY_ID, s.ENTERED_AT, "_rank")
        .group_by(s.OPPORTUNITY_ID, maintain_order=True)
        .last()
    )
    return (
        last.filter(~pl.col(s.STAGE).is_in([spec.won, spec.lost]) & (pl.col(s.ENTERED_AT) + stale <= pl.lit(end)))
        .with_columns(pl.lit(spec.lost).alias(s.STAGE), (pl.col(s.ENTERED_AT) + stale).alias(s.ENTERED_AT))
        .select(names)
    )


def with_stale_losses(stage_events: pl.LazyFrame, spec: FunnelSpec, *, end: datetime | None = None) -> pl.LazyFrame:
    """``stage_events`` (up to ``end``) plus the losses the stale rule infers (see :func:`stale_losses`)."""
    if spec.stale_after_days is None:
        return stage_events
    end = end or data_end(stage_events)
    events = stage_events.filter(pl.col(s.ENTERED_AT) <= end)
    return pl.concat([events, stale_losses(events, spec, end=end)], how="vertical_relaxed")


def build_transitions(
    stage_events: pl.LazyFrame,
    spec: FunnelSpec,
    *,
    horizon_days: int | None = None,
    end: datetime | None = None,
) -> pl.LazyFrame:
    """One row per entry of an opportunity into a non-terminal stage, with its outcome.

    Parameters
    ----------
    stage_events : LazyFrame ``opportunity_id, customer_id, stage, entered_at[, amount, source]``.
    spec : the funnel (stage order, lost stage, default horizon).
    horizon_days : days a stage has to convert; default ``spec.horizon_days``.
    end : the data's end; default the last stage event. Events after it are ignored, and the
        stale rule (``spec.stale_after_days``) is applied at it.

    Returns
    -------
    LazyFrame ``opportunity_id, customer_id, stage, entry, entered_at, exited_at, next_stage,
    converted, converted_at, lost_at, censored, days_in_stage, days_to_convert,
    opportunity_start[, amount, source]``; ``entry`` counts entries of the same stage (1 first).
    """
    horizon = spec.horizon_days if horizon_days is None else horizon_days
    if horizon <= 0:
        raise ConfigError(f"horizon_days must be a positive number of days; received {horizon}.")
    end = end or data_end(stage_events)
    extra = opportunity_columns(stage_events.collect_schema().names())
    events = _ordered_events(with_stale_losses(stage_events, spec, end=end), spec, end)
    entries = events.filter(pl.col("_rank") < len(spec.stages) - 1)
    out = _with_outcomes(entries, events, spec, horizon * US_PER_DAY, end)
    return out.select(*s.TRANSITION_COLUMNS, *extra).sort(s.ENTERED_AT, s.OPPORTUNITY_ID, s.STAGE)


def _ordered_events(stage_events: pl.LazyFrame, spec: FunnelSpec, end: datetime) -> pl.LazyFrame:
    """Events up to ``end`` in funnel order per opportunity, each with the event after it.

    Adds ``_rank`` (stage order; won and lost last), ``_seq`` (position in the opportunity),
    ``opportunity_start``, ``exited_at``/``next_stage``/``_next_rank`` (the next event, if any)
    and ``entry`` (1 for the first entry of a stage, 2 for a re-entry, …).
    """
    # Sorted by opportunity, the group logic is shifts and forward fills (window functions
    # over a million opportunities cost seconds).
    opp = pl.col(s.OPPORTUNITY_ID)
    first = (opp != opp.shift(1)).fill_null(True)
    same_next = (opp == opp.shift(-1)).fill_null(False)
    index = pl.int_range(pl.len(), dtype=pl.Int64)
    return (
        stage_events.filter(pl.col(s.ENTERED_AT) <= end)
        .with_columns(spec.stage_order(pl.col(s.STAGE)).alias("_rank"))
        .sort(s.OPPORTUNITY_ID, s.ENTERED_AT, "_rank")
        .with_columns(
            pl.when(first).then(pl.col(s.ENTERED_AT)).forward_fill().alias(s.OPPORTUNITY_START),
            (index - pl.when(first).then(index).forward_fill()).alias("_seq"),
            pl.when(same_next).then(pl.col(s.ENTERED_AT).shift(-1)).alias(s.EXITED_AT),
            pl.when(same_next).then(pl.col(s.STAGE).shift(-1)).alias(s.NEXT_STAGE),
            pl.when(same_next).then(pl.col("_rank").shift(-1)).alias("_next_rank"),
        )
        .with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over(s.OPPORTUNITY_ID, s.STAGE).alias(s.ENTRY))
    )


def _converted_at(entries: pl.LazyFrame, events: pl.LazyFrame, spec: FunnelSpec) -> pl.LazyFrame:
    """``opportunity_id, _seq, converted_at``: when each entry first reached a later stage (null: never)."""
    lost_rank = len(spec.stages)
    # Usually the next event decides: a later stage converts, lost or nothing does not. Only
    # after a step back (re-entry) must later events be searched for the first later stage.
    step_back = (pl.col("_next_rank") <= pl.col("_rank")).fill_null(False)
    later = events.select(s.OPPORTUNITY_ID, pl.col("_seq").alias("_seq_later"), "_rank", s.ENTERED_AT).filter(
        pl.col("_rank") != lost_rank
    )
    searched = (
        entries.filter(step_back)
        .select(s.OPPORTUNITY_ID, "_seq", pl.col("_rank").alias("_from_rank"))
        .join(later, on=s.OPPORTUNITY_ID)
        .filter((pl.col("_seq_later") > pl.col("_seq")) & (pl.col("_rank") > pl.col("_from_rank")))
        .group_by(s.OPPORTUNITY_ID, "_seq")
        .agg(pl.col(s.ENTERED_AT).min().alias("_searched_at"))
    )
    direct = pl.when((pl.col("_next_rank") > pl.col("_rank")) & (pl.col("_next_rank") != lost_rank)).then(
        pl.col(s.EXITED_AT)
    )
    return (
        entries.select(s.OPPORTUNITY_ID, "_seq", direct.alias("_direct_at"))
        .join(searched, on=[s.OPPORTUNITY_ID, "_seq"], how="left")
        .select(s.OPPORTUNITY_ID, "_seq", pl.coalesce("_direct_at", "_searched_at").alias(s.CONVERTED_AT))
    )


def _with_outcomes(
    entries: pl.LazyFrame, events: pl.LazyFrame, spec: FunnelSpec, horizon_us: int, end: datetime
) -> pl.LazyFrame:
    """Each entry with its conversion, loss, censoring and the days it spent in the stage."""
    lost = events.filter(pl.col("_rank") == len(spec.stages)).select(
        s.OPPORTUNITY_ID, pl.col(s.ENTERED_AT).alias(s.LOST_AT)
    )
    return (
        entries.join(_converted_at(entries, events, spec), on=[s.OPPORTUNITY_ID, "_seq"], how="left")
        .join(lost, on=s.OPPORTUNITY_ID, how="left")
        .with_columns(
            _within(s.CONVERTED_AT, horizon_us).alias(s.CONVERTED),
            # Censored means the horizon is not over at the data's end, whatever happened so far:
            # keeping early converters or early losses of that period would bias rates upwards.
            (pl.col(s.ENTERED_AT) + pl.duration(microseconds=horizon_us) > pl.lit(end)).alias(s.CENSORED),
            as_days(pl.coalesce(s.EXITED_AT, pl.lit(end)) - pl.col(s.ENTERED_AT)).alias(s.DAYS_IN_STAGE),
            as_days(pl.col(s.CONVERTED_AT) - pl.col(s.ENTERED_AT)).alias(s.DAYS_TO_CONVERT),
        )
    )


def add_snapshots(
    transitions: pl.LazyFrame,
    spec: FunnelSpec,
    *,
    end: datetime,
    horizon_days: int | None = None,
    days: Sequence[int] = SNAPSHOT_DAYS,
) -> pl.LazyFrame:
    """Transition rows plus snapshots of the rows still open some days after entering the stage.

    A snapshot is the same entry seen again at ``as_of = entered_at + d`` while the opportunity
    still sits in the stage (no later event yet, not lost): what a model scoring an open
    opportunity sees. Its label is a later stage within ``horizon_days`` *of the snapshot*, and
    it is censored when that horizon is not over at ``end``. Each entry gets one snapshot in
    each interval (0, 7], (7, 14], … of ``days``, at a point spread over the interval by a hash of
    the opportunity (so every waiting time is covered, the same way on every run).

    Parameters
    ----------
    transitions : LazyFrame from :func:`build_transitions` (built with the same ``end`` and horizon).
    days : upper ends of the intervals, increasing.

    Returns
    -------
    ``transitions`` with ``as_of`` (entered_at for the entry rows) and ``days_in_stage_so_far``
    (0 for the entry rows), followed by the snapshot rows (``converted`` and ``censored`` as of
    the snapshot).
    """
    horizon_us = (spec.horizon_days if horizon_days is None else horizon_days) * US_PER_DAY
    entries = transitions.with_columns(pl.col(s.ENTERED_AT).alias(s.AS_OF), pl.lit(0.0).alias(s.DAYS_IN_STAGE_SO_FAR))
    if not days:
        return entries
    bounds = [0, *days]
    grid = pl.LazyFrame(
        {"_k": list(range(len(days))), "_low": bounds[:-1], "_width": [b - a for a, b in itertools.pairwise(bounds)]},
        schema={"_k": pl.Int64, "_low": pl.Float64, "_width": pl.Float64},
    )
    spread = (pl.struct(s.OPPORTUNITY_ID, s.STAGE, s.ENTRY, "_k").hash(seed=7) % 1_000_000 + 1) / 1_000_000
    offset_us = ((pl.col("_low") + spread * pl.col("_width")) * US_PER_DAY).cast(pl.Int64)
    moment = pl.col(s.ENTERED_AT) + pl.duration(microseconds=pl.col("_offset"))

    def still_open(column: str) -> pl.Expr:
        return pl.col(column).is_null() | (pl.col(column) > moment)

    since = pl.col(s.CONVERTED_AT) - pl.col(s.AS_OF)
    snapshots = (
        transitions.join(grid, how="cross")
        .with_columns(offset_us.alias("_offset"))
        .filter((moment <= pl.lit(end)) & still_open(s.EXITED_AT) & still_open(s.LOST_AT) & still_open(s.CONVERTED_AT))
        .with_columns(moment.alias(s.AS_OF), (pl.col("_offset") / US_PER_DAY).alias(s.DAYS_IN_STAGE_SO_FAR))
        .with_columns(
            (since.dt.total_microseconds() <= horizon_us).fill_null(False).alias(s.CONVERTED),
            (pl.col(s.AS_OF) + pl.duration(microseconds=horizon_us) > pl.lit(end)).alias(s.CENSORED),
        )
        .drop("_k", "_low", "_width", "_offset")
    )
    return pl.concat([entries, snapshots], how="vertical_relaxed")


def opportunity_columns(names: Sequence[str]) -> list[str]:
    """The stage-event columns a transition row carries beyond the canonical ones.

    ``amount``, ``source`` and a CRM's own opportunity fields (product, segment, …), as on the
    entry's event.
    """
    canonical = set(s.STAGE_EVENTS.names) - {s.AMOUNT, s.SOURCE}
    optional = [c for c in (s.AMOUNT, s.SOURCE) if c in names]
    own = [c for c in names if c not in canonical and c not in optional and not c.startswith("_")]
    return [*optional, *own]


def _within(column: str, horizon_us: int) -> pl.Expr:
    elapsed = pl.col(column) - pl.col(s.ENTERED_AT)
    return (elapsed.dt.total_microseconds() <= horizon_us).fill_null(False)
