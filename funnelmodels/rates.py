"""Rates of the funnel from its transition rows: conversion per stage, time to convert, cumulative conversion, cohorts.

Definitions (DESIGN.md, "Core definitions"):

- **conversion rate** of a stage: converted / observed entries, where observed entries are
  those whose horizon is over (censored rows stay out), with Wilson intervals.
- **time to convert**: Kaplan–Meier over days to the next later stage; an opportunity that is
  lost is censored at the day it is lost, one still open at the data's end on that day
  (cause-specific survival: the time it takes to convert among those not yet lost).
- **cumulative conversion**: the share of entries that has reached a later stage by day ``d``,
  with ``lost`` as a competing event (Aalen–Johansen), so long horizons and recent entries are
  used without waiting for every outcome.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

import numpy as np
import polars as pl

from funnelmodels.config import FunnelSpec
from funnelmodels.data import schema as s
from funnelmodels.data.io import Dataset
from funnelmodels.frames import US_PER_DAY, as_days, collect
from funnelmodels.funnel import build_transitions, data_end, with_stale_losses
from funnelmodels.stats import cumulative_incidence, km_quantile, wilson

__all__ = [
    "CUMULATIVE_DAYS",
    "END_TO_END",
    "cohort_table",
    "conversion_counts",
    "conversion_from_counts",
    "conversion_table",
    "cumulative_conversion",
    "cumulative_conversion_table",
    "end_to_end_rate",
    "historical_win_probability",
    "time_to_close",
    "time_to_convert_table",
]


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
    return conversion_from_counts(conversion_counts(transitions, by=by), spec, by=by, confidence=confidence)


def conversion_counts(transitions: pl.LazyFrame, *, by: str | None = None) -> pl.DataFrame:
    """The counts behind :func:`conversion_table`: ``[by,] stage, entered, observed, converted, censored``.

    Counts of opportunities kept apart (the partitions of :mod:`funnelmodels.distributed`) add up.
    """
    keys = [by, s.STAGE] if by else [s.STAGE]
    return (
        transitions.group_by(keys)
        .agg(
            pl.len().alias("entered"),
            (~pl.col(s.CENSORED)).sum().alias("observed"),
            (pl.col(s.CONVERTED) & ~pl.col(s.CENSORED)).sum().alias("converted"),
            pl.col(s.CENSORED).sum().alias("censored"),
        )
        .pipe(collect)
    )


def conversion_from_counts(
    counts: pl.DataFrame, spec: FunnelSpec, *, by: str | None = None, confidence: float = 0.95
) -> pl.DataFrame:
    """:func:`conversion_table` from its counts (:func:`conversion_counts`, or their sum over partitions)."""
    keys = [by, s.STAGE] if by else [s.STAGE]
    order = spec.stage_order(pl.col(s.STAGE))
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
        pl.col(s.CONVERTED_AT).is_not_null().alias("_event"),
        pl.coalesce(
            pl.col(s.DAYS_TO_CONVERT),
            as_days(pl.col(s.LOST_AT) - pl.col(s.ENTERED_AT)),
            pl.col(s.DAYS_IN_STAGE),
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
    order = spec.stage_order(pl.col(s.STAGE))
    table = pl.DataFrame(rows, schema=schema).sort([*([by] if by else []), order, "q"])
    return table.select(*keys, "q", "days", "days_low", "days_high", "n", "events")


CUMULATIVE_DAYS = (30, 60, 90, 180, 365)


END_TO_END = "end to end"


def _competing_times(transitions: pl.LazyFrame, end: datetime) -> pl.LazyFrame:
    """Per transition row: days to its first later stage (cause 1), to lost (cause 2) or to ``end`` (0)."""
    converted_first = pl.col(s.CONVERTED_AT).is_not_null() & (
        pl.col(s.LOST_AT).is_null() | (pl.col(s.CONVERTED_AT) <= pl.col(s.LOST_AT))
    )
    lost = pl.col(s.LOST_AT).is_not_null() & ~converted_first
    moment = (
        pl.when(converted_first).then(pl.col(s.CONVERTED_AT)).when(lost).then(pl.col(s.LOST_AT)).otherwise(pl.lit(end))
    )
    return transitions.with_columns(
        as_days(moment - pl.col(s.ENTERED_AT)).clip(0.0).alias("_time"),
        pl.when(converted_first).then(1).when(lost).then(2).otherwise(0).alias("_cause"),
    )


def _opportunity_times(transitions: pl.LazyFrame, spec: FunnelSpec, end: datetime, by: str | None) -> pl.LazyFrame:
    """Per opportunity: days from its first event to won (cause 1), to lost (2) or to ``end`` (0)."""
    won_at = pl.col(s.EXITED_AT).filter(pl.col(s.NEXT_STAGE) == spec.won).min()
    per_opp = transitions.group_by(s.OPPORTUNITY_ID).agg(
        pl.col(s.OPPORTUNITY_START).first().alias(s.ENTERED_AT),
        won_at.alias(s.CONVERTED_AT),
        pl.col(s.LOST_AT).first(),
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
    order = spec.stage_order(pl.col(s.STAGE), order=[*spec.open_stages, END_TO_END])
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
    waited = ((as_of - opened[s.ENTERED_AT]).dt.total_microseconds() / US_PER_DAY).to_numpy()
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
        pl.col(s.OPPORTUNITY_START).first(),
        pl.col(s.STAGE).unique().alias("_stages"),
        pl.col(s.CONVERTED_AT).is_not_null().any().alias("_any"),
        pl.col(s.LOST_AT).is_not_null().any().alias("_lost"),
        (pl.col(s.NEXT_STAGE) == spec.won).any().alias("_won"),
    )
    reached = [pl.col("_stages").list.contains(stage).sum().alias(f"reached_{stage}") for stage in spec.open_stages[1:]]
    return (
        per_opp.group_by(pl.col(s.OPPORTUNITY_START).dt.truncate("1mo").alias("cohort"))
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


def time_to_close(
    stage_events: pl.LazyFrame, spec: FunnelSpec, *, end: datetime | None = None, confidence: float = 0.95
) -> dict[str, float | int | None]:
    """Days from an opportunity's first event to ``won``, by Kaplan–Meier.

    Lost opportunities are censored on the day they are lost, open ones at ``end`` (the data's
    end by default): the median says how long a deal takes to win among deals still in play.
    Beside it, what a reader asks first: how long the won deals took (their median and 90th
    percentile) — deals still open are not in it, so it leans short when many are young.

    Returns
    -------
    ``{"opportunities", "won", "median_days", "median_low", "median_high", "won_median_days",
    "won_p90_days"}`` (the Kaplan–Meier median None where the curve never falls below one half).
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
        .with_columns(as_days(pl.coalesce("_won", "_lost", pl.lit(end)) - pl.col("_start")).alias("_days"))
        .sort(s.OPPORTUNITY_ID)
        .pipe(collect)
    )
    won = per_opp["_won"].is_not_null().to_numpy().astype(int)
    out: dict[str, float | int | None] = {"opportunities": per_opp.height, "won": int(won.sum())}
    if not won.sum():
        return out | {
            "median_days": None,
            "median_low": None,
            "median_high": None,
            "won_median_days": None,
            "won_p90_days": None,
        }
    taken = per_opp.filter(pl.col("_won").is_not_null())["_days"].to_numpy()
    out |= {
        "won_median_days": float(np.median(taken)),
        "won_p90_days": float(np.quantile(taken, 0.9, method="nearest")),
    }
    fit = sm.SurvfuncRight(np.maximum(per_opp["_days"].to_numpy(), 0.0), won)
    q = km_quantile(fit, 0.5, confidence)
    return out | {"median_days": q["days"], "median_low": q["days_low"], "median_high": q["days_high"]}
