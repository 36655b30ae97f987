"""The funnel: stage-transition rows, conversion rates, time to convert, cohorts.

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
- **time to convert**: Kaplan–Meier over days to the next later stage; an
  opportunity that is lost is censored at the day it is lost, one still open at
  the data's end on that day (cause-specific survival: the time it takes to
  convert among those not yet lost).
- **stale opportunities** (``stale_after_days`` in the spec): an opportunity whose last
  event is not ``won`` or ``lost`` and that has had no event for that many days at the
  data's end is lost on that day — CRM exports often never record the loss.
- **snapshots**: a transition row seen again while its opportunity still sits in the stage
  (after 7, 14, 30, … days), so a model learns how waiting changes the odds; its label is
  a later stage within the horizon *of the snapshot*.
- **cumulative conversion**: the share of entries that has reached a later stage by day
  ``d``, with ``lost`` as a competing event (Aalen–Johansen), so long horizons and recent
  entries are used without waiting for every outcome.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from datetime import datetime

import numpy as np
import polars as pl

from funnelmodels.config import FunnelSpec
from funnelmodels.data import schema as s
from funnelmodels.data.io import Dataset
from funnelmodels.errors import ConfigError
from funnelmodels.settings import collect
from funnelmodels.stats import cumulative_incidence, km_quantile, wilson

__all__ = [
    "AGE_BANDS",
    "SNAPSHOT_DAYS",
    "add_snapshots",
    "age_band",
    "build_transitions",
    "cohort_table",
    "conversion_table",
    "cumulative_conversion",
    "cumulative_conversion_table",
    "data_end",
    "end_to_end_rate",
    "funnel_summary",
    "historical_win_probability",
    "opportunity_columns",
    "stale_losses",
    "time_to_close",
    "time_to_convert_table",
    "with_stale_losses",
]

EXITED_AT = "exited_at"
NEXT_STAGE = "next_stage"
CONVERTED = "converted"
CENSORED = "censored"
DAYS_IN_STAGE = "days_in_stage"
DAYS_TO_CONVERT = "days_to_convert"
CONVERTED_AT = "converted_at"
LOST_AT = "lost_at"
OPPORTUNITY_START = "opportunity_start"
ENTRY = "entry"
_US_PER_DAY = 86_400_000_000
SNAPSHOT_DAYS = (7, 14, 30, 60, 90, 180, 365, 730)
"""Intervals of days after entering a stage — (0, 7], (7, 14], … (365, 730] — in each of which a
still-open row is seen again once for training."""
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


TRANSITION_COLUMNS = (
    s.OPPORTUNITY_ID,
    s.CUSTOMER_ID,
    s.STAGE,
    ENTRY,
    s.ENTERED_AT,
    EXITED_AT,
    NEXT_STAGE,
    CONVERTED,
    CONVERTED_AT,
    LOST_AT,
    CENSORED,
    DAYS_IN_STAGE,
    DAYS_TO_CONVERT,
    OPPORTUNITY_START,
)


def data_end(stage_events: pl.LazyFrame) -> datetime:
    """The data's end: the last stage event's time (used when no as_of is given)."""
    value = stage_events.select(pl.col(s.ENTERED_AT).max()).pipe(collect).item()
    if value is None:
        raise ConfigError("stage_events has no entered_at values; cannot tell where the data ends.")
    return value


def _days(expr: pl.Expr) -> pl.Expr:
    return expr.dt.total_microseconds() / _US_PER_DAY


def _rank_expr(spec: FunnelSpec) -> pl.Expr:
    return pl.col(s.STAGE).replace_strict(
        list(spec.all_stages), list(range(len(spec.all_stages))), return_dtype=pl.Int32
    )


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
        .with_columns(_rank_expr(spec).alias("_rank"))
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
    stage_events = with_stale_losses(stage_events, spec, end=end)
    horizon_us = horizon * _US_PER_DAY
    rank = _rank_expr(spec)
    extra = opportunity_columns(stage_events.collect_schema().names())
    # Sorted by opportunity, the group logic is shifts and forward fills (window functions
    # over a million opportunities cost seconds).
    opp = pl.col(s.OPPORTUNITY_ID)
    first = opp != opp.shift(1)
    same_next = (opp == opp.shift(-1)).fill_null(False)
    index = pl.int_range(pl.len(), dtype=pl.Int64)
    events = (
        stage_events.filter(pl.col(s.ENTERED_AT) <= end)
        .with_columns(rank.alias("_rank"))
        .sort(s.OPPORTUNITY_ID, s.ENTERED_AT, "_rank")
        .with_columns(
            pl.when(first.fill_null(True)).then(pl.col(s.ENTERED_AT)).forward_fill().alias(OPPORTUNITY_START),
            (index - pl.when(first.fill_null(True)).then(index).forward_fill()).alias("_seq"),
            pl.when(same_next).then(pl.col(s.ENTERED_AT).shift(-1)).alias(EXITED_AT),
            pl.when(same_next).then(pl.col(s.STAGE).shift(-1)).alias(NEXT_STAGE),
        )
        .with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over(s.OPPORTUNITY_ID, s.STAGE).alias(ENTRY))
    )
    won_rank, lost_rank = len(spec.stages) - 1, len(spec.stages)
    next_rank = pl.when(same_next).then(pl.col("_rank").shift(-1))
    events = events.with_columns(next_rank.alias("_next_rank"))
    rows = events.filter(pl.col("_rank") < won_rank)
    # Usually the next event decides: a later stage converts, lost or nothing does not. Only
    # after a step back (re-entry) must later events be searched for the first later stage.
    step_back = (pl.col("_next_rank") <= pl.col("_rank")).fill_null(False)
    later = events.select(s.OPPORTUNITY_ID, pl.col("_seq").alias("_seq_later"), "_rank", s.ENTERED_AT).filter(
        pl.col("_rank") != lost_rank
    )
    searched = (
        rows.filter(step_back)
        .select(s.OPPORTUNITY_ID, "_seq", pl.col("_rank").alias("_from_rank"))
        .join(later, on=s.OPPORTUNITY_ID)
        .filter((pl.col("_seq_later") > pl.col("_seq")) & (pl.col("_rank") > pl.col("_from_rank")))
        .group_by(s.OPPORTUNITY_ID, "_seq")
        .agg(pl.col(s.ENTERED_AT).min().alias("_searched_at"))
    )
    direct = pl.when((pl.col("_next_rank") > pl.col("_rank")) & (pl.col("_next_rank") != lost_rank)).then(
        pl.col(EXITED_AT)
    )
    forward = (
        rows.select(s.OPPORTUNITY_ID, "_seq", direct.alias("_direct_at"))
        .join(searched, on=[s.OPPORTUNITY_ID, "_seq"], how="left")
        .select(s.OPPORTUNITY_ID, "_seq", pl.coalesce("_direct_at", "_searched_at").alias(CONVERTED_AT))
    )
    lost = events.filter(pl.col("_rank") == lost_rank).select(s.OPPORTUNITY_ID, pl.col(s.ENTERED_AT).alias(LOST_AT))
    out = (
        rows.join(forward, on=[s.OPPORTUNITY_ID, "_seq"], how="left")
        .join(lost, on=s.OPPORTUNITY_ID, how="left")
        .with_columns(
            _within(CONVERTED_AT, horizon_us).alias(CONVERTED),
            (pl.col(s.ENTERED_AT) + pl.duration(microseconds=horizon_us) > pl.lit(end)).alias("_horizon_open"),
            _days(pl.coalesce(EXITED_AT, pl.lit(end)) - pl.col(s.ENTERED_AT)).alias(DAYS_IN_STAGE),
            _days(pl.col(CONVERTED_AT) - pl.col(s.ENTERED_AT)).alias(DAYS_TO_CONVERT),
        )
        # Censored means the horizon is not over at the data's end, whatever happened so far:
        # keeping early converters or early losses of that period would bias rates upwards.
        .with_columns(pl.col("_horizon_open").alias(CENSORED))
    )
    columns = [*TRANSITION_COLUMNS, *extra]
    return out.select(columns).sort(s.ENTERED_AT, s.OPPORTUNITY_ID, s.STAGE)


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
    horizon_us = (spec.horizon_days if horizon_days is None else horizon_days) * _US_PER_DAY
    entries = transitions.with_columns(pl.col(s.ENTERED_AT).alias(s.AS_OF), pl.lit(0.0).alias(s.DAYS_IN_STAGE_SO_FAR))
    if not days:
        return entries
    bounds = [0, *days]
    grid = pl.LazyFrame(
        {"_k": list(range(len(days))), "_low": bounds[:-1], "_width": [b - a for a, b in itertools.pairwise(bounds)]},
        schema={"_k": pl.Int64, "_low": pl.Float64, "_width": pl.Float64},
    )
    spread = (pl.struct(s.OPPORTUNITY_ID, s.STAGE, ENTRY, "_k").hash(seed=7) % 1_000_000 + 1) / 1_000_000
    offset_us = ((pl.col("_low") + spread * pl.col("_width")) * _US_PER_DAY).cast(pl.Int64)
    moment = pl.col(s.ENTERED_AT) + pl.duration(microseconds=pl.col("_offset"))

    def still_open(column: str) -> pl.Expr:
        return pl.col(column).is_null() | (pl.col(column) > moment)

    since = pl.col(CONVERTED_AT) - pl.col(s.AS_OF)
    snapshots = (
        transitions.join(grid, how="cross")
        .with_columns(offset_us.alias("_offset"))
        .filter((moment <= pl.lit(end)) & still_open(EXITED_AT) & still_open(LOST_AT) & still_open(CONVERTED_AT))
        .with_columns(moment.alias(s.AS_OF), (pl.col("_offset") / _US_PER_DAY).alias(s.DAYS_IN_STAGE_SO_FAR))
        .with_columns(
            (since.dt.total_microseconds() <= horizon_us).fill_null(False).alias(CONVERTED),
            (pl.col(s.AS_OF) + pl.duration(microseconds=horizon_us) > pl.lit(end)).alias(CENSORED),
        )
        .drop("_k", "_low", "_width", "_offset")
    )
    return pl.concat([entries, snapshots], how="vertical_relaxed")


def opportunity_columns(names: Sequence[str]) -> list[str]:
    """The stage-event columns a transition row carries beyond the canonical ones: ``amount``,
    ``source`` and a CRM's own opportunity fields (product, segment, …), as on the entry's event."""
    canonical = set(s.STAGE_EVENTS.names) - {s.AMOUNT, s.SOURCE}
    optional = [c for c in (s.AMOUNT, s.SOURCE) if c in names]
    own = [c for c in names if c not in canonical and c not in optional and not c.startswith("_")]
    return [*optional, *own]


def _within(column: str, horizon_us: int) -> pl.Expr:
    elapsed = pl.col(column) - pl.col(s.ENTERED_AT)
    return (elapsed.dt.total_microseconds() <= horizon_us).fill_null(False)




def conversion_table(
    transitions: pl.LazyFrame,
    spec: FunnelSpec,
    *,
    by: str | None = None,
    confidence: float = 0.95,
) -> pl.DataFrame:
    """Conversion of each stage, optionally per segment, with Wilson intervals.

    Parameters
    ----------
    transitions : LazyFrame ``stage, converted, censored[, by]`` (from :func:`build_transitions`).
    by : optional segment column, e.g. ``"region"``.

    Returns
    -------
    DataFrame ``[by,] stage, entered, observed, converted, dropped, censored, rate, rate_low,
    rate_high[, p_value]``: ``observed`` excludes censored rows and is the rate's denominator;
    ``dropped`` = observed - converted; with ``by``, ``p_value`` is a chi-square test that the
    rate is the same in every segment of that stage.
    """
    keys = [by, s.STAGE] if by else [s.STAGE]
    counts = (
        transitions.group_by(keys)
        .agg(
            pl.len().alias("entered"),
            (~pl.col(CENSORED)).sum().alias("observed"),
            (pl.col(CONVERTED) & ~pl.col(CENSORED)).sum().alias("converted"),
            pl.col(CENSORED).sum().alias("censored"),
        )
        .pipe(collect)
    )
    order = pl.col(s.STAGE).replace_strict(list(spec.all_stages), range(len(spec.all_stages)), default=99)
    counts = counts.sort([*([by] if by else []), order], nulls_last=True)
    low, high = wilson(counts["converted"].to_numpy(), counts["observed"].to_numpy(), confidence)
    table = counts.with_columns(
        (pl.col("observed") - pl.col("converted")).alias("dropped"),
        (pl.col("converted") / pl.col("observed")).fill_nan(None).alias("rate"),
        pl.Series("rate_low", low).fill_nan(None),
        pl.Series("rate_high", high).fill_nan(None),
    ).select(*keys, "entered", "observed", "converted", "dropped", "censored", "rate", "rate_low", "rate_high")
    if by:
        table = table.join(_segment_tests(table, by), on=s.STAGE, how="left")
    return table


def _segment_tests(table: pl.DataFrame, by: str) -> pl.DataFrame:
    from statsmodels.stats.proportion import proportions_chisquare

    rows = []
    for (stage,), group in table.filter(pl.col("observed") > 0).group_by(s.STAGE, maintain_order=True):
        p_value = math.nan
        rates = group["rate"].drop_nulls()
        if group.height >= 2 and rates.max() > 0 and rates.min() < 1:  # type: ignore[operator]
            _, p_value, _ = proportions_chisquare(group["converted"].to_numpy(), group["observed"].to_numpy())
        rows.append({s.STAGE: stage, "p_value": float(p_value)})
    schema = {s.STAGE: pl.String, "p_value": pl.Float64}
    return pl.DataFrame(rows, schema=schema).with_columns(pl.col("p_value").fill_nan(None))


def end_to_end_rate(table: pl.DataFrame, spec: FunnelSpec, *, confidence: float = 0.95) -> dict[str, float]:
    """First stage → won: the product of the stage rates, with a delta-method interval.

    Parameters
    ----------
    table : the overall :func:`conversion_table` (no segments).

    Returns
    -------
    ``{"rate", "rate_low", "rate_high"}``; NaN when a stage has no observed rows.
    """
    from scipy.stats import norm

    by_stage = {r[s.STAGE]: r for r in table.iter_rows(named=True)}
    log_rate, variance = 0.0, 0.0
    for stage in spec.open_stages:
        row = by_stage.get(stage)
        if not row or not row["observed"] or not row["converted"]:
            return {"rate": math.nan, "rate_low": math.nan, "rate_high": math.nan}
        p, n = row["rate"], row["observed"]
        log_rate += math.log(p)
        variance += (1 - p) / (n * p)
    z = float(norm.ppf(0.5 + confidence / 2))
    half = z * math.sqrt(variance)
    return {
        "rate": math.exp(log_rate),
        "rate_low": math.exp(log_rate - half),
        "rate_high": min(1.0, math.exp(log_rate + half)),
    }


def time_to_convert_table(
    transitions: pl.LazyFrame,
    spec: FunnelSpec,
    *,
    by: str | None = None,
    quantiles: Sequence[float] = (0.25, 0.5, 0.75),
    confidence: float = 0.95,
) -> pl.DataFrame:
    """Days to convert per stage by Kaplan–Meier (censoring respected).

    Parameters
    ----------
    transitions : LazyFrame ``stage, entered_at, converted_at, lost_at, days_in_stage[, by]``.

    Returns
    -------
    DataFrame ``[by,] stage, q, days, days_low, days_high, n, events``: the ``q``-quantile of days
    to reach a later stage; null where the curve never falls that far.
    """
    import statsmodels.api as sm

    keys = [by, s.STAGE] if by else [s.STAGE]
    frame = transitions.with_columns(
        pl.col(CONVERTED_AT).is_not_null().alias("_event"),
        pl.coalesce(
            pl.col(DAYS_TO_CONVERT),
            _days(pl.col(LOST_AT) - pl.col(s.ENTERED_AT)),
            pl.col(DAYS_IN_STAGE),
        ).alias("_time"),
    ).pipe(collect)
    rows = []
    for key, group in frame.group_by(keys, maintain_order=True):
        times = group["_time"].to_numpy().astype(float)
        events = group["_event"].to_numpy().astype(int)
        base = dict(zip(keys, key, strict=True)) | {"n": group.height, "events": int(events.sum())}
        fit = sm.SurvfuncRight(np.maximum(times, 0.0), events) if events.sum() else None
        for q in quantiles:
            rows.append(base | {"q": q} | km_quantile(fit, q, confidence))
    schema = {k: frame.schema[k] for k in keys} | {
        "n": pl.Int64,
        "events": pl.Int64,
        "q": pl.Float64,
        "days": pl.Float64,
        "days_low": pl.Float64,
        "days_high": pl.Float64,
    }
    order = pl.col(s.STAGE).replace_strict(list(spec.all_stages), range(len(spec.all_stages)), default=99)
    table = pl.DataFrame(rows, schema=schema).sort([*([by] if by else []), order, "q"])
    return table.select(*keys, "q", "days", "days_low", "days_high", "n", "events")




CUMULATIVE_DAYS = (30, 60, 90, 180, 365)
END_TO_END = "end to end"




def _competing_times(transitions: pl.LazyFrame, end: datetime) -> pl.LazyFrame:
    """Per transition row: days to its first later stage (cause 1), to lost (cause 2) or to ``end`` (0)."""
    converted_first = pl.col(CONVERTED_AT).is_not_null() & (
        pl.col(LOST_AT).is_null() | (pl.col(CONVERTED_AT) <= pl.col(LOST_AT))
    )
    lost = pl.col(LOST_AT).is_not_null() & ~converted_first
    moment = pl.when(converted_first).then(pl.col(CONVERTED_AT)).when(lost).then(pl.col(LOST_AT)).otherwise(pl.lit(end))
    return transitions.with_columns(
        _days(moment - pl.col(s.ENTERED_AT)).clip(0.0).alias("_time"),
        pl.when(converted_first).then(1).when(lost).then(2).otherwise(0).alias("_cause"),
    )


def _opportunity_times(transitions: pl.LazyFrame, spec: FunnelSpec, end: datetime, by: str | None) -> pl.LazyFrame:
    """Per opportunity: days from its first event to won (cause 1), to lost (2) or to ``end`` (0)."""
    won_at = pl.col(EXITED_AT).filter(pl.col(NEXT_STAGE) == spec.won).min()
    per_opp = transitions.group_by(s.OPPORTUNITY_ID).agg(
        pl.col(OPPORTUNITY_START).first().alias(s.ENTERED_AT),
        won_at.alias(CONVERTED_AT),
        pl.col(LOST_AT).first(),
        *([pl.col(by).first()] if by else []),
    )
    return _competing_times(per_opp, end)


def cumulative_conversion_table(
    transitions: pl.LazyFrame,
    spec: FunnelSpec,
    *,
    end: datetime,
    days: Sequence[float] = CUMULATIVE_DAYS,
    by: str | None = None,
    confidence: float = 0.95,
) -> pl.DataFrame:
    """Share converted and share lost by day ``d``, per stage and end to end (Aalen–Johansen).

    Answers "what share ever converts?" without a horizon: every entry counts, the recent ones
    as long as they have been watched (censoring), and a loss is a competing event, so
    converted + lost ≤ 1 at every day. Per stage, *converted* means a later stage was entered;
    end to end (``stage = "end to end"``, from an opportunity's first event) it means won.

    Parameters
    ----------
    transitions : LazyFrame from :func:`build_transitions` built with the same ``end`` (``[, by]``).
    end : the data's end: entries still open there are censored at it.
    days : the days to read the curves at; the longest observed day ("all data") is added.

    Returns
    -------
    DataFrame ``[by,] stage, day, entered, at_risk, converted, converted_low, converted_high,
    lost, lost_low, lost_high``; ``day`` is null on the row that reads the curves at the
    longest time any entry has been watched.
    """
    keys = [by] if by else []
    frames = {
        "stage": _competing_times(transitions, end).select(*keys, s.STAGE, "_time", "_cause"),
        "e2e": _opportunity_times(transitions, spec, end, by).select(
            *keys, pl.lit(END_TO_END).alias(s.STAGE), "_time", "_cause"
        ),
    }
    frame = pl.concat([f.pipe(collect) for f in frames.values()], how="vertical_relaxed")
    rows = []
    for key, group in frame.group_by([*keys, s.STAGE], maintain_order=True):
        times, causes = group["_time"].to_numpy(), group["_cause"].to_numpy()
        read_at = [*days, float(times.max())]
        curves = cumulative_incidence(times, causes, read_at, confidence=confidence)
        base = dict(zip([*keys, s.STAGE], key, strict=True)) | {"entered": group.height}
        for i, day in enumerate(read_at):
            row = base | {"day": None if i == len(days) else float(day)}
            row |= {name: _finite(values[i]) for name, values in curves.items()}
            rows.append(row)
    schema = {k: frame.schema[k] for k in keys} | {
        s.STAGE: pl.String,
        "day": pl.Float64,
        "entered": pl.Int64,
        **{c: pl.Float64 for c in ("at_risk", "converted", "converted_low", "converted_high")},
        **{c: pl.Float64 for c in ("lost", "lost_low", "lost_high")},
    }
    order = pl.col(s.STAGE).replace_strict([*spec.open_stages, END_TO_END], range(len(spec.stages)), default=99)
    table = pl.DataFrame(rows, schema=schema).with_columns(pl.col("at_risk").cast(pl.Int64))
    return table.sort([*keys, order, pl.col("day").fill_null(math.inf)]).select(list(schema))


def historical_win_probability(
    transitions: pl.LazyFrame, opened: pl.DataFrame, spec: FunnelSpec, *, end: datetime, as_of: datetime
) -> np.ndarray:
    """Win probability of open opportunities from history alone, aware of how long each has waited.

    For the current stage, the share of past entries that converted after having waited as long
    as this one without converting or being lost: ``(C(∞) − C(w)) / (1 − C(w) − L(w))`` from the
    stage's Aalen–Johansen curves (C converted, L lost, w the days waited) — a lead that has
    waited 300 days gets what leads that waited 300 days went on to do. Each later stage
    contributes the share of its entries that ever converted, C(∞). Where no past entry waited
    that long, the current stage's share is 0.

    Parameters
    ----------
    transitions : history from :func:`build_transitions` with ``end`` (rows up to it).
    opened : open opportunities ``stage, entered_at`` at ``as_of``.
    """
    table = _competing_times(transitions, end).select(s.STAGE, "_time", "_cause").pipe(collect)
    stages = list(spec.open_stages)
    ever: dict[str, float] = {}
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for stage in stages:
        rows = table.filter(pl.col(s.STAGE) == stage)
        if rows.height == 0:
            ever[stage] = 0.0
            continue
        times, causes = rows["_time"].to_numpy(), rows["_cause"].to_numpy()
        ever[stage] = float(cumulative_incidence(times, causes, [times.max()], intervals=False)["converted"][0])
        curves[stage] = (times, causes)
    waited = ((as_of - opened[s.ENTERED_AT]).dt.total_microseconds() / _US_PER_DAY).to_numpy()
    current = opened[s.STAGE].to_numpy()
    win = np.zeros(opened.height)
    for position, stage in enumerate(stages):
        here = current == stage
        if not here.any() or stage not in curves:
            continue
        read = cumulative_incidence(*curves[stage], waited[here], intervals=False)
        still = 1.0 - read["converted"] - read["lost"]
        p_now = np.where(still > 1e-12, (ever[stage] - read["converted"]) / np.maximum(still, 1e-12), 0.0)
        later = math.prod(ever[st] for st in stages[position + 1 :])
        win[here] = np.clip(p_now, 0.0, 1.0) * later
    return win


def cumulative_conversion(
    dataset: Dataset, *, days: Sequence[float] = CUMULATIVE_DAYS, by: str | None = None
) -> pl.DataFrame:
    """:func:`cumulative_conversion_table` of a dataset's stage events, up to the data's end."""
    events = dataset.lazy("stage_events")
    end = data_end(events)
    return cumulative_conversion_table(
        build_transitions(events, dataset.spec, end=end), dataset.spec, end=end, days=days, by=by
    )


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def cohort_table(transitions: pl.LazyFrame, spec: FunnelSpec) -> pl.DataFrame:
    """Opportunities by month they entered the funnel, and how far they got.

    Returns
    -------
    DataFrame ``cohort (month start), opportunities, reached_<stage> for each stage after the
    first, won, lost, open, win_rate`` (won / (won + lost)).
    """
    per_opp = transitions.group_by(s.OPPORTUNITY_ID).agg(
        pl.col(OPPORTUNITY_START).first(),
        pl.col(s.STAGE).unique().alias("_stages"),
        pl.col(CONVERTED_AT).is_not_null().any().alias("_any"),
        pl.col(LOST_AT).is_not_null().any().alias("_lost"),
        (pl.col(NEXT_STAGE) == spec.won).any().alias("_won"),
    )
    reached = [pl.col("_stages").list.contains(stage).sum().alias(f"reached_{stage}") for stage in spec.open_stages[1:]]
    return (
        per_opp.group_by(pl.col(OPPORTUNITY_START).dt.truncate("1mo").alias("cohort"))
        .agg(
            pl.len().alias("opportunities"),
            *reached,
            pl.col("_won").sum().alias("won"),
            pl.col("_lost").sum().alias("lost"),
        )
        .with_columns(
            (pl.col("opportunities") - pl.col("won") - pl.col("lost")).alias("open"),
            (pl.col("won") / (pl.col("won") + pl.col("lost"))).fill_nan(None).alias("win_rate"),
        )
        .sort("cohort")
        .pipe(collect)
    )


def funnel_summary(dataset: object, *, by: str | None = None, horizon_days: int | None = None) -> dict[str, object]:
    """The funnel at a glance, as plain data (what ``funnelmodels funnel`` prints).

    Parameters
    ----------
    dataset : a loaded :class:`funnelmodels.data.io.Dataset` with stage_events.
    by : a segment column (see :data:`funnelmodels.features.SEGMENTS`, or any customers column).

    Returns
    -------
    ``{"by", "horizon_days", "end", "first_stage", "won", "segments": [{"segment", "stages":
    [{stage, entered, observed, converted, rate, rate_low, rate_high, median_days,
    median_days_low, median_days_high, note}], "end_to_end": {rate, rate_low, rate_high},
    "cumulative": [rows of :func:`cumulative_conversion_table`]}], "tests": {stage: p_value},
    "stale_after_days", "stale_losses"}``; ``observed`` is the rate's denominator (entries whose
    horizon is over) and ``note`` says so when every entry of a stage is still within it.
    """
    from funnelmodels.features import add_segments

    assert isinstance(dataset, Dataset)
    spec = dataset.spec
    events = dataset.lazy("stage_events")
    end = data_end(events)
    horizon = spec.horizon_days if horizon_days is None else horizon_days
    transitions = build_transitions(events, spec, horizon_days=horizon, end=end)
    if by:
        transitions = add_segments(dataset, transitions)
        available = [c for c in transitions.collect_schema().names() if c not in _NOT_SEGMENTS]
        if by not in available:
            import difflib

            close = difflib.get_close_matches(by, available, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"--by {by!r} is not a column of this dataset{hint}; available: {', '.join(sorted(available))}."
            )
        # An empty value is "(missing)", never confused with a value "unknown" in the data.
        transitions = transitions.with_columns(pl.col(by).cast(pl.String).fill_null("(missing)"))
    transitions = transitions.pipe(collect).lazy()
    rates = conversion_table(transitions, spec, by=by)
    medians = time_to_convert_table(transitions, spec, by=by, quantiles=(0.5,))
    cumulative = cumulative_conversion_table(transitions, spec, end=end, by=by)
    table = rates.join(medians.drop("q", "n", "events"), on=[by, s.STAGE] if by else [s.STAGE], how="left")
    segments = []
    for key, group in table.group_by([by] if by else pl.lit(True), maintain_order=True):
        stages = [
            {
                "stage": r[s.STAGE],
                "entered": r["entered"],
                "observed": r["observed"],
                "converted": r["converted"],
                "rate": r["rate"],
                "rate_low": r["rate_low"],
                "rate_high": r["rate_high"],
                "median_days": r["days"],
                "median_days_low": r["days_low"],
                "median_days_high": r["days_high"],
                "note": _censored_note(r["entered"], r["observed"], horizon),
            }
            for r in group.iter_rows(named=True)
        ]
        e2e = {k: (None if math.isnan(v) else v) for k, v in end_to_end_rate(group, spec).items()}
        curves = cumulative.filter(pl.col(by) == key[0]) if by else cumulative
        segments.append(
            {
                "segment": key[0] if by else None,
                "stages": stages,
                "end_to_end": e2e,
                "cumulative": curves.drop(*([by] if by else [])).to_dicts(),
            }
        )
    tests = {}
    if by:
        tests = {
            r[s.STAGE]: r["p_value"]
            for r in rates.unique(s.STAGE, keep="first", maintain_order=True).iter_rows(named=True)
        }
    stale = stale_losses(events, spec, end=end).select(pl.len()).pipe(collect).item()
    return {
        "by": by,
        "horizon_days": horizon,
        "stale_after_days": spec.stale_after_days,
        "stale_losses": stale,
        "end": end,
        "first_stage": spec.stages[0],
        "won": spec.won,
        "segments": segments,
        "tests": tests,
    }


_NOT_SEGMENTS = {*TRANSITION_COLUMNS, s.AMOUNT, s.AGE, s.INCOME}


def _censored_note(entered: int, observed: int, horizon: int) -> str | None:
    if entered and not observed:
        return (
            f"every one of the {entered:,} entries is still within its {horizon}-day horizon, so there is no "
            "rate yet; the cumulative conversion uses them as far as they have been watched"
        )
    return None


def time_to_close(
    stage_events: pl.LazyFrame, spec: FunnelSpec, *, end: datetime | None = None, confidence: float = 0.95
) -> dict[str, float | int | None]:
    """Days from an opportunity's first event to ``won``, by Kaplan–Meier.

    Lost opportunities are censored on the day they are lost, open ones at ``end`` (the data's
    end by default): the median says how long a deal takes to win among deals still in play.

    Returns
    -------
    ``{"opportunities", "won", "median_days", "median_low", "median_high"}`` (None where the
    curve never falls below one half).
    """
    import statsmodels.api as sm

    end = end or data_end(stage_events)
    per_opp = (
        with_stale_losses(stage_events, spec, end=end)
        .filter(pl.col(s.ENTERED_AT) <= end)
        .group_by(s.OPPORTUNITY_ID)
        .agg(
            pl.col(s.ENTERED_AT).min().alias("_start"),
            pl.col(s.ENTERED_AT).filter(pl.col(s.STAGE) == spec.won).min().alias("_won"),
            pl.col(s.ENTERED_AT).filter(pl.col(s.STAGE) == spec.lost).min().alias("_lost"),
        )
        .with_columns(_days(pl.coalesce("_won", "_lost", pl.lit(end)) - pl.col("_start")).alias("_days"))
        .sort(s.OPPORTUNITY_ID)
        .pipe(collect)
    )
    won = per_opp["_won"].is_not_null().to_numpy().astype(int)
    out: dict[str, float | int | None] = {"opportunities": per_opp.height, "won": int(won.sum())}
    if not won.sum():
        return out | {"median_days": None, "median_low": None, "median_high": None}
    fit = sm.SurvfuncRight(np.maximum(per_opp["_days"].to_numpy(), 0.0), won)
    q = km_quantile(fit, 0.5, confidence)
    return out | {"median_days": q["days"], "median_low": q["days_low"], "median_high": q["days_high"]}
