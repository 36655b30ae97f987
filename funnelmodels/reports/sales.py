"""The sales-performance report's measures of one period: KPIs and their changes, segments, funnel, pipeline.

Every number the report shows comes from :func:`sales_performance`; the notebook only lays it out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from funnelmodels.data import schema as s
from funnelmodels.data.io import Dataset
from funnelmodels.errors import ConfigError, ModelError, did_you_mean
from funnelmodels.frames import collect
from funnelmodels.funnel import build_transitions, data_end, stale_losses, with_stale_losses
from funnelmodels.kpis import attainment, counting_notes, kpi_changes, sales_kpi_table
from funnelmodels.models.conversion import StageConversionModel
from funnelmodels.models.persist import ModelStore
from funnelmodels.models.predict import pipeline_value, score_from_history, score_open_opportunities
from funnelmodels.rates import conversion_table, cumulative_conversion_table, time_to_close
from funnelmodels.reports.params import check_period, period_end
from funnelmodels.segments import DEFAULT_SEGMENT, segment_label

__all__ = [
    "SalesReport",
    "sales_performance",
]


# --- report builders -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SalesReport:
    """Everything the sales-performance report shows, computed by :func:`sales_performance`.

    A section the data cannot give is None, and ``missing`` holds one sentence per such
    section (``sales``, ``revenue``, ``segments``, ``funnel``, ``pipeline``) saying what is
    missing and how to add it.
    """

    period: date | None
    period_length: str
    kpis: pl.DataFrame | None
    changes: pl.DataFrame | None
    year_over_year: pl.DataFrame | None
    segments: pl.DataFrame | None
    funnel: pl.DataFrame | None
    cumulative: pl.DataFrame | None
    time_to_close: dict[str, Any] | None
    pipeline: pl.DataFrame | None
    attainment: pl.DataFrame | None
    notes: list[str]
    missing: dict[str, str] = field(default_factory=dict)


def sales_performance(
    dataset: Dataset,
    *,
    period: str = "",
    period_length: str = "month",
    segment: str = "region",
    targets_file: str = "",
    model_dir: str = "",
) -> SalesReport:
    """The sales-performance measurement of one period: KPIs, changes, segments, funnel, pipeline.

    The pipeline forecast is the open deals' amount × win probability: from the model in
    ``model_dir`` (its conversion/lightgbm part) when given, else from history (what past deals
    that had waited as long in the same stage went on to do). Sections the data cannot give are
    left empty with a sentence in ``missing``; the default segment ``region`` is skipped, with a
    sentence, when the customers table has no such column.
    """
    notes: list[str] = []
    transactions = dataset.lazy("transactions") if dataset.has("transactions") else None
    events = dataset.lazy("stage_events") if dataset.has("stage_events") else None
    missing = _missing_tables(transactions, events)
    if transactions is None and events is None:
        return SalesReport(None, period_length, None, None, None, None, None, None, None, None, None, notes, missing)
    if events is not None and dataset.spec.stale_after_days:
        notes.append(_stale_note(dataset, events))
    # Win rates count the losses the stale rule infers, in the period they happen.
    closed = with_stale_losses(events, dataset.spec) if events is not None else None
    rules = dataset.config.counting
    if transactions is not None:
        notes.extend(counting_notes(transactions, rules))
    kpis = sales_kpi_table(
        transactions, closed, period=period_length, won=dataset.spec.won, lost=dataset.spec.lost, rules=rules
    )
    chosen = _chosen_period(period, period_length, kpis, _data_end(transactions, events), notes)
    kpis = kpis.filter(pl.col("period") <= chosen)
    changes, yoy = _changes(kpis, chosen, period_length)
    segments = _segment_table(dataset, transactions, closed, segment, period_length, chosen, missing)
    funnel = cumulative = close = pipeline = None
    if events is not None:
        funnel, cumulative, close, pipeline = _funnel_and_pipeline(
            dataset, events, chosen, period_length, model_dir, notes, missing
        )
    goals = _attainment(kpis, targets_file, chosen) if targets_file else None
    return SalesReport(
        chosen, period_length, kpis, changes, yoy, segments, funnel, cumulative, close, pipeline, goals, notes, missing
    )


def _missing_tables(transactions: pl.LazyFrame | None, events: pl.LazyFrame | None) -> dict[str, str]:
    """One sentence per section a missing table empties, saying what to add."""
    missing = {}
    if transactions is None:
        missing["revenue"] = (
            "No transactions table: revenue, orders, average sale and new and returning customers need one "
            "(order_id, customer_id, ordered_at, amount; add transactions.csv or map it in funnel.toml)."
        )
    if events is None:
        missing["funnel"] = missing["pipeline"] = (
            "No stage_events table: win rate, funnel and pipeline need one (opportunity_id, customer_id, stage, "
            "entered_at; add stage_events.csv or map it in funnel.toml)."
        )
    if transactions is None and events is None:
        missing["sales"] = "No sales figures: they need a transactions or a stage_events table."
    return missing


def _stale_note(dataset: Dataset, events: pl.LazyFrame) -> str:
    """How many opportunities the stale rule counts as lost."""
    stale = stale_losses(events, dataset.spec, end=data_end(events)).select(pl.len()).pipe(collect).item()
    return (
        f"{stale:,} opportunities had no event for {dataset.spec.stale_after_days} days and count as lost on "
        "that day (stale_after_days in funnel.toml)."
    )


def _chosen_period(
    period: str, period_length: str, kpis: pl.DataFrame, last_day: date | None, notes: list[str]
) -> date:
    """The report's period (the latest complete one by default), with a note when it is not complete."""
    chosen = check_period(period, period_length, kpis["period"], last_day)
    if last_day is not None and period_end(chosen, period_length) > last_day:
        notes.append(
            f"The {period_length} starting {chosen} is not complete: the data ends on "
            f"{last_day - timedelta(days=1)}. Its figures cover part of it, and its changes compare part of a "
            f"{period_length} with a whole one."
        )
    return chosen


def _changes(kpis: pl.DataFrame, chosen: date, period_length: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The period's KPI changes against the period before and against the same period a year earlier."""
    lag = {"month": 12, "quarter": 4, "week": 52, "day": 365, "year": 1}[period_length]
    changes = kpi_changes(kpis).filter(pl.col("period") == chosen)
    return changes, kpi_changes(kpis, lag=lag).filter(pl.col("period") == chosen)


def _attainment(kpis: pl.DataFrame, targets_file: str, chosen: date) -> pl.DataFrame:
    """The period's targets against its KPIs, from the targets CSV."""
    path = Path(targets_file)
    if not path.is_file():
        raise ConfigError(f"targets_file {targets_file!r} does not exist.")
    return attainment(kpis, pl.read_csv(path)).filter(pl.col("period") == chosen)


def _segment_table(
    dataset: Dataset,
    transactions: pl.LazyFrame | None,
    closed: pl.LazyFrame | None,
    segment: str,
    period_length: str,
    chosen: date,
    missing: dict[str, str],
) -> pl.DataFrame | None:

    if not segment:
        missing["segments"] = "No segment table: no segment was chosen (pass -p segment COLUMN, e.g. region)."
        return None
    if not dataset.has("customers") or transactions is None:
        missing["segments"] = "No segment table: it needs a customers table and a transactions table."
        return None
    customers = dataset.lazy("customers")
    names = [c for c in customers.collect_schema().names() if c != s.CUSTOMER_ID]
    if segment not in names:
        if segment == DEFAULT_SEGMENT:
            missing["segments"] = (
                f"No segment table: the customers table has no {segment} column; pass -p segment COLUMN "
                f"(one of {', '.join(names)})."
            )
            return None
        raise ConfigError(
            f"segment {segment!r} is not a customers column{did_you_mean(segment, names)}; "
            f"available: {', '.join(names)}."
        )
    tx = transactions.join(customers.select(s.CUSTOMER_ID, segment), on=s.CUSTOMER_ID, how="left")
    ev = (
        closed.join(customers.select(s.CUSTOMER_ID, segment), on=s.CUSTOMER_ID, how="left")
        if closed is not None
        else None
    )
    labelled = [f.with_columns(segment_label(pl.col(segment))) if f is not None else None for f in (tx, ev)]
    table = sales_kpi_table(
        labelled[0],
        labelled[1],
        period=period_length,
        by=segment,
        won=dataset.spec.won,
        lost=dataset.spec.lost,
        rules=dataset.config.counting,
    )
    return table.filter(pl.col("period") == chosen)


def _funnel_and_pipeline(
    dataset: Dataset,
    events: pl.LazyFrame,
    chosen: date,
    period_length: str,
    model_dir: str,
    notes: list[str],
    missing: dict[str, str],
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any], pl.DataFrame | None]:

    end = datetime.combine(period_end(chosen, period_length), datetime.min.time())
    transitions = build_transitions(events, dataset.spec, end=end)
    funnel = conversion_table(transitions, dataset.spec)
    cumulative = cumulative_conversion_table(transitions, dataset.spec, end=end)
    close = time_to_close(events, dataset.spec, end=end)
    pipeline = None
    try:
        pipeline = _pipeline(dataset, end, model_dir, notes)
    except ModelError as exc:
        missing["pipeline"] = f"No pipeline forecast at {end:%Y-%m-%d}: {exc}"
    if s.AMOUNT not in events.collect_schema().names():
        if pipeline is not None:
            pipeline = pipeline.drop("pipeline_amount", s.EXPECTED_VALUE)
        missing["pipeline_value"] = (
            "The stage events have no deal value (stage_events.amount): the pipeline counts deals and their win "
            "probability but cannot say what they are worth; add amount to stage_events for its value."
        )
    return funnel, cumulative, close, pipeline


def _pipeline(dataset: Dataset, end: datetime, model_dir: str, notes: list[str]) -> pl.DataFrame:
    if model_dir:
        model = StageConversionModel.load(ModelStore(Path(model_dir)).conversion("lightgbm"), engine="lightgbm")
        scored = score_open_opportunities(dataset, model, end)
        method = "LightGBM model"
    else:
        scored = score_from_history(dataset, end)
        method = (
            "history: for each deal, what past deals that had waited as long in the same stage went on to do, "
            "times the share of each later stage's entries that converted"
        )
    notes.append(f"Pipeline forecast at {end:%Y-%m-%d} from {method}.")
    return pipeline_value(scored, by=s.STAGE, spec=dataset.spec)


def _data_end(transactions: pl.LazyFrame | None, events: pl.LazyFrame | None) -> date | None:
    """The day after the last recorded activity: a period ending by then is complete."""
    ends = []
    if transactions is not None:
        ends.append(transactions.select(pl.col(s.ORDERED_AT).max()).pipe(collect).item())
    if events is not None:
        ends.append(events.select(pl.col(s.ENTERED_AT).max()).pipe(collect).item())
    ends = [e for e in ends if e is not None]
    return (max(ends) + timedelta(days=1)).date() if ends else None
