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
from funnelmodels.display.format import (
    count,
    money,
    percent,
    period_label,
    points,
    price,
    signed_percent,
    value_text,
)
from funnelmodels.display.html import judge
from funnelmodels.distributed.cluster import client_for, run_on_partitions
from funnelmodels.distributed.partition import Partitioned
from funnelmodels.distributed.pipeline import partition_dataset_of, sales_kpis
from funnelmodels.errors import ConfigError, ModelError, did_you_mean
from funnelmodels.frames import collect
from funnelmodels.funnel import build_transitions, data_end, stale_losses, with_stale_losses
from funnelmodels.kpis import attainment, counting_notes, kpi_changes, sales_kpi_table
from funnelmodels.labels import label, unit
from funnelmodels.models.backtest import dataset_before
from funnelmodels.models.conversion import StageConversionModel
from funnelmodels.models.forecast import PeriodForecast, forecast_period, read_forecast_summary
from funnelmodels.models.hazard import CloseTimeModel, fit_close_time
from funnelmodels.models.persist import ModelStore
from funnelmodels.models.predict import (
    NothingOpenError,
    pipeline_value,
    score_from_history,
    score_open_opportunities,
    with_people,
)
from funnelmodels.rates import (
    conversion_counts,
    conversion_from_counts,
    conversion_table,
    cumulative_conversion_table,
    time_to_close,
)
from funnelmodels.reports.params import check_period, period_end, shift_period, won_value_targets
from funnelmodels.segments import DEFAULT_SEGMENT, with_segment

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
    segment_changes: pl.DataFrame | None = None
    """Each segment's KPI changes against the previous period (:func:`funnelmodels.kpis.kpi_changes`)."""
    next_target: float | None = None
    """The net revenue target of the period after the report's: what the pipeline is to cover."""
    segment: str = ""
    top_deals: pl.DataFrame | None = None
    """The open deals worth most (expected value) at the period's end: the list a seller works."""
    forecast: PeriodForecast | None = None
    """The next period's won value as a distribution, made at the report period's end (:func:`forecast_period`)."""
    forecast_backtest: str = ""
    """One sentence on how the forecast did on past periods (empty without a trained model's backtest)."""
    forecast_checks: dict[str, pl.DataFrame] = field(default_factory=dict)
    """From the model's backtest: ``calibration`` (P(won within 30/60/90 days)) and ``aalen_johansen``."""

    def forecast_views(self) -> dict[str, pl.DataFrame]:
        """The forecast's tables as a reader sees them.

        ``segments``, ``deals`` (the 15 worth most in the period), ``slipped``, and from the backtest
        ``calibration`` and ``aalen_johansen``.
        """
        if self.forecast is None:
            return {}
        f = self.forecast
        columns = ["segment", "closed", "open_deals", "open_mean", "new_mean", "mean", "p10", "p50", "p90"]
        if f.table["target"].is_not_null().any():
            columns += ["target", "p_target"]
        deal_columns = [
            s.OPPORTUNITY_ID,
            s.CUSTOMER_ID,
            s.STAGE,
            s.AMOUNT,
            "p_won_by_end",
            "p_lost_by_end",
            "p_open_at_end",
            "expected_value_in_period",
            "expected_close",
        ]
        views = {
            "segments": f.table.select(columns),
            "deals": f.deals.select([c for c in deal_columns if c in f.deals.columns]).head(TOP_DEALS),
            "slipped": f.slipped.select(
                [c for c in (*deal_columns, "expected_close_before") if c in f.slipped.columns]
            ).head(TOP_DEALS),
        }
        if "calibration" in self.forecast_checks:
            views["calibration"] = self.forecast_checks["calibration"].rename(
                {"bin": "group", "low": "realised_low", "high": "realised_high"}, strict=False
            )
        if "aalen_johansen" in self.forecast_checks:
            views["aalen_johansen"] = self.forecast_checks["aalen_johansen"].rename(
                {
                    "won": "won_by",
                    "won_low": "won_by_low",
                    "won_high": "won_by_high",
                    "lost": "lost_by",
                    "lost_low": "lost_by_low",
                    "lost_high": "lost_by_high",
                },
                strict=False,
            )
        return views

    @property
    def next_label(self) -> str:
        """The period after the report's, in words: what the forecast is about."""
        if self.period is None:
            return "the next period"
        return period_label(shift_period(self.period, self.period_length, 1), self.period_length)

    @property
    def period_label(self) -> str:
        """The period in words: ``June 2026``, ``Q2 2026``."""
        return period_label(self.period, self.period_length)

    @property
    def previous_label(self) -> str:
        """The period before, in words."""
        if self.period is None:
            return "the previous period"
        return period_label(shift_period(self.period, self.period_length, -1), self.period_length)

    @property
    def year_earlier_label(self) -> str:
        """The same period a year earlier, in words."""
        if self.period is None:
            return "a year earlier"
        return period_label(self.period.replace(year=self.period.year - 1), self.period_length)

    def summary(self) -> list[str]:
        """The report's opening sentences (3–5): level and changes, win rate, targets, pipeline, biggest mover."""
        return _summary(self)


def sales_performance(
    dataset: Dataset | Partitioned,
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

    A partitioned dataset (:func:`funnelmodels.open_data` with a cluster) gets the same figures from each
    partition's sums and counts, added up on the cluster: KPIs, changes, segments, targets, the funnel
    and, with ``model_dir``, the pipeline and the deals worth most (:func:`_over_partitions`).
    """
    if isinstance(dataset, Partitioned):
        return _over_partitions(dataset, period, period_length, segment, targets_file, model_dir)
    notes: list[str] = []
    transactions = dataset.lazy("transactions") if dataset.has("transactions") else None
    events = dataset.lazy("stage_events") if dataset.has("stage_events") else None
    missing = _missing_tables(transactions, events)
    if transactions is None and events is None:
        return SalesReport(None, period_length, None, None, None, None, None, None, None, None, None, notes, missing)
    if events is not None and dataset.spec.stale_after_days:
        notes.append(_stale_note(dataset, events))
    # Win rates count the losses the stale rule infers, in the period they happen.
    closed = with_stale_losses(events, dataset.spec, end=dataset.end) if events is not None else None
    rules = dataset.config.counting
    if transactions is not None:
        notes.extend(counting_notes(transactions, rules))
    kpis = sales_kpi_table(
        transactions, closed, period=period_length, won=dataset.spec.won, lost=dataset.spec.lost, rules=rules
    )
    chosen = _chosen_period(period, period_length, kpis, _data_end(transactions, events), notes)
    kpis = kpis.filter(pl.col("period") <= chosen)
    by_segment = _segment_table(dataset, transactions, closed, segment, period_length, chosen, missing)
    changes, yoy, segments, segment_changes = _period_views(kpis, by_segment, chosen, period_length, segment)
    funnel = cumulative = close = pipeline = deals = None
    if events is not None:
        funnel, cumulative, close, pipeline, deals = _funnel_and_pipeline(
            dataset, events, chosen, period_length, model_dir, notes, missing
        )
    goals, next_target = _attainment(kpis, targets_file, chosen, period_length) if targets_file else (None, None)
    forecast, sentence = None, ""
    checks: dict[str, pl.DataFrame] = {}
    if events is not None:
        forecast, sentence, checks = _forecast(dataset, chosen, period_length, model_dir, targets_file, missing)
    return SalesReport(
        chosen,
        period_length,
        kpis,
        changes,
        yoy,
        segments,
        funnel,
        cumulative,
        close,
        pipeline,
        goals,
        notes,
        missing,
        segment_changes=segment_changes,
        next_target=next_target,
        segment=segment,
        top_deals=deals,
        forecast=forecast,
        forecast_backtest=sentence,
        forecast_checks=checks,
    )


def _over_partitions(
    data: Partitioned, period: str, period_length: str, segment: str, targets_file: str, model_dir: str
) -> SalesReport:
    """:func:`sales_performance` of a partitioned dataset, computed on its cluster from each partition's parts.

    The time to close and the forecast of the next period need every deal's history at once: they are
    left out, each with a sentence; so is the pipeline without a trained model (its history-based
    estimate reads every partition's history together).
    """
    has_tx, has_ev = data.has("transactions"), data.has("stage_events")
    missing = _missing_tables(pl.LazyFrame() if has_tx else None, pl.LazyFrame() if has_ev else None)
    notes = [
        f"Computed on a Dask cluster over {data.count} partitions by customer: each partition's sums and counts, "
        "added up, so the figures are those of the whole dataset."
    ]
    if not has_tx and not has_ev:
        return SalesReport(None, period_length, None, None, None, None, None, None, None, None, None, notes, missing)
    ends = [datetime.fromisoformat(e) for e in (data.manifest.get("transactions_end"), data.manifest["end"]) if e]
    last_day = (max(ends) + timedelta(days=1)).date()
    funnel = pipeline = deals = by_segment = None
    with client_for(data.cluster, data.scheduler) as client:
        kpis = sales_kpis(client, data, period=period_length)
        chosen = _chosen_period(period, period_length, kpis, last_day, notes)
        kpis = kpis.filter(pl.col("period") <= chosen)
        columns = data.columns("customers") if data.has("customers") else None
        if _segment_available(columns, segment, has_tx, missing):
            before = shift_period(chosen, period_length, -1)
            by_segment = sales_kpis(client, data, period=period_length, segment=segment).filter(
                pl.col("period").is_between(before, chosen)
            )
        if has_ev:
            end = datetime.combine(period_end(chosen, period_length), datetime.min.time())
            counts = run_on_partitions(client, _funnel_counts, data.parts, end)
            summed = pl.concat(counts).group_by(s.STAGE).agg(pl.all().sum())
            funnel = conversion_from_counts(summed, data.spec)
            if model_dir:
                found = run_on_partitions(client, _pipeline_part, data.parts, model_dir, end)
                pipeline, deals = _combined_pipeline(found, data, end, notes)
            else:
                missing["pipeline"] = (
                    "Over partitions the pipeline forecast needs a trained model (-p model_dir MODEL_DIR, from "
                    "funnelmodels train --cluster …): the history-based estimate reads every history at once."
                )
    missing["time_to_close"] = (
        "The time to close and the share converted or lost by day 30 … 365 are not computed over partitions: "
        "they need every deal's history at once (run the report on one machine for them)."
    )
    if has_ev:
        missing["forecast"] = (
            "The forecast of the next period's won value is not computed over partitions yet: it needs the close-time "
            "models, which train on one machine."
        )
    changes, yoy, segments, segment_changes = _period_views(kpis, by_segment, chosen, period_length, segment)
    goals, next_target = _attainment(kpis, targets_file, chosen, period_length) if targets_file else (None, None)
    return SalesReport(
        chosen,
        period_length,
        kpis,
        changes,
        yoy,
        segments,
        funnel,
        None,
        None,
        pipeline,
        goals,
        notes,
        missing,
        segment_changes=segment_changes,
        next_target=next_target,
        segment=segment,
        top_deals=deals,
    )


def _segment_available(columns: list[str] | None, segment: str, has_tx: bool, missing: dict[str, str]) -> bool:
    """Whether the segment table can be made from customers ``columns`` (None: no customers table).

    When it cannot, ``missing`` says why; a segment that is not a column (other than the default) is an error.
    """
    if not segment:
        missing["segments"] = "No segment table: no segment was chosen (pass -p segment COLUMN, e.g. region)."
        return False
    if columns is None or not has_tx:
        missing["segments"] = "No segment table: it needs a customers table and a transactions table."
        return False
    names = [c for c in columns if c != s.CUSTOMER_ID]
    if segment in names:
        return True
    if segment == DEFAULT_SEGMENT:
        missing["segments"] = (
            f"No segment table: the customers table has no {segment} column; pass -p segment COLUMN "
            f"(one of {', '.join(names)})."
        )
        return False
    raise ConfigError(
        f"segment {segment!r} is not a customers column{did_you_mean(segment, names)}; available: {', '.join(names)}."
    )


def _funnel_counts(part: str, end: datetime) -> pl.DataFrame:
    """Task: one partition's funnel counts at ``end``."""
    dataset = partition_dataset_of(part)
    return conversion_counts(build_transitions(dataset.lazy("stage_events"), dataset.spec, end=end))


def _pipeline_part(part: str, model_dir: str, end: datetime) -> tuple[pl.DataFrame, pl.DataFrame] | None:
    """Task: one partition's pipeline by stage and its deals worth most at ``end`` (None: nothing open)."""
    dataset = partition_dataset_of(part)
    model = StageConversionModel.load(ModelStore(Path(model_dir)).conversion("lightgbm"), engine="lightgbm")
    try:
        scored = score_open_opportunities(dataset, model, end, reasons=TOP_DEALS)
    except NothingOpenError:
        return None
    return pipeline_value(scored, by=s.STAGE, spec=dataset.spec), _top_deals(dataset, scored, end)


def _combined_pipeline(
    found: list[tuple[pl.DataFrame, pl.DataFrame] | None], data: Partitioned, end: datetime, notes: list[str]
) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
    """The partitions' pipelines added up by stage, and the deals worth most of all of them."""
    parts = [f for f in found if f is not None]
    notes.append(f"Pipeline forecast at the start of {period_label(end.date(), 'day')} from LightGBM model.")
    if not parts:
        return None, None
    sums = ["open_deals", "pipeline_amount", "expected_wins", s.EXPECTED_VALUE]
    pipeline = (
        pl.concat([p for p, _ in parts])
        .group_by(s.STAGE)
        .agg(pl.col(c).sum() for c in sums)
        .with_columns((pl.col("expected_wins") / pl.col("open_deals")).alias("mean_win_probability"))
        .sort(data.spec.stage_order(pl.col(s.STAGE)))
        .select(s.STAGE, "open_deals", "pipeline_amount", "mean_win_probability", "expected_wins", s.EXPECTED_VALUE)
    )
    deals = (
        pl.concat([d for _, d in parts], how="diagonal_relaxed")
        .sort(s.EXPECTED_VALUE, s.WIN_PROBABILITY, s.OPPORTUNITY_ID, descending=[True, True, False], nulls_last=True)
        .head(TOP_DEALS)
    )
    if s.AMOUNT not in data.columns("stage_events"):
        deals = deals.drop(s.AMOUNT, s.EXPECTED_VALUE, strict=False)
        pipeline = pipeline.drop("pipeline_amount", s.EXPECTED_VALUE)
    return pipeline, deals


def _missing_tables(transactions: pl.LazyFrame | None, events: pl.LazyFrame | None) -> dict[str, str]:
    """One sentence per section a missing table empties, saying what to add."""
    missing = {}
    if transactions is None:
        missing["revenue"] = (
            "No transactions table: revenue, orders, average sale and new and returning customers need one "
            "(order_id, customer_id, ordered_at, amount; add transactions.csv or map it in funnel.toml)."
        )
    if events is None:
        missing["funnel"] = missing["pipeline"] = missing["forecast"] = (
            "No stage_events table: win rate, funnel, pipeline and forecast need one (opportunity_id, customer_id, "
            "stage, entered_at; add stage_events.csv or map it in funnel.toml)."
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
            f"{period_label(chosen, period_length)} is not complete: the data ends on "
            f"{period_label(last_day - timedelta(days=1), 'day')}. Its figures cover part of the {period_length}, and "
            f"its changes compare part of a {period_length} with a whole one."
        )
    return chosen


def _period_views(
    kpis: pl.DataFrame, by_segment: pl.DataFrame | None, chosen: date, period_length: str, segment: str
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame | None, pl.DataFrame | None]:
    """The period's changes (on the period before, on a year earlier), its segments and their changes."""
    changes, yoy = _changes(kpis, chosen, period_length)
    if by_segment is None:
        return changes, yoy, None, None
    segment_changes = kpi_changes(by_segment, by=segment).filter(pl.col("period") == chosen)
    return changes, yoy, by_segment.filter(pl.col("period") == chosen), segment_changes


def _changes(kpis: pl.DataFrame, chosen: date, period_length: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The period's KPI changes against the period before and against the same period a year earlier."""
    lag = {"month": 12, "quarter": 4, "week": 52, "day": 365, "year": 1}[period_length]
    changes = kpi_changes(kpis).filter(pl.col("period") == chosen)
    return changes, kpi_changes(kpis, lag=lag).filter(pl.col("period") == chosen)


def _attainment(
    kpis: pl.DataFrame, targets_file: str, chosen: date, period_length: str
) -> tuple[pl.DataFrame, float | None]:
    """The period's targets against its KPIs, and the next period's net revenue target, from the targets CSV."""
    path = Path(targets_file)
    if not path.is_file():
        raise ConfigError(f"targets_file {targets_file!r} does not exist.")
    goals = attainment(kpis, pl.read_csv(path))
    upcoming = goals.filter((pl.col("period") == period_end(chosen, period_length)) & (pl.col("kpi") == "net_revenue"))[
        "target"
    ]
    return goals.filter(pl.col("period") == chosen), (float(upcoming[0]) if len(upcoming) else None)


def _segment_table(
    dataset: Dataset,
    transactions: pl.LazyFrame | None,
    closed: pl.LazyFrame | None,
    segment: str,
    period_length: str,
    chosen: date,
    missing: dict[str, str],
) -> pl.DataFrame | None:

    names = dataset.lazy("customers").collect_schema().names() if dataset.has("customers") else None
    if not _segment_available(names, segment, transactions is not None, missing) or transactions is None:
        return None
    customers = dataset.lazy("customers")
    # The period and the one before it: the segments' table and their changes (the biggest mover).
    table = sales_kpi_table(
        with_segment(transactions, customers, segment),
        with_segment(closed, customers, segment) if closed is not None else None,
        period=period_length,
        by=segment,
        won=dataset.spec.won,
        lost=dataset.spec.lost,
        rules=dataset.config.counting,
    )
    before = shift_period(chosen, period_length, -1)
    return table.filter(pl.col("period").is_between(before, chosen))


def _funnel_and_pipeline(
    dataset: Dataset,
    events: pl.LazyFrame,
    chosen: date,
    period_length: str,
    model_dir: str,
    notes: list[str],
    missing: dict[str, str],
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any], pl.DataFrame | None, pl.DataFrame | None]:

    end = datetime.combine(period_end(chosen, period_length), datetime.min.time())
    transitions = build_transitions(events, dataset.spec, end=end)
    funnel = conversion_table(transitions, dataset.spec)
    cumulative = cumulative_conversion_table(transitions, dataset.spec, end=end)
    close = time_to_close(events, dataset.spec, end=end)
    pipeline = deals = None
    try:
        pipeline, deals = _pipeline(dataset, end, model_dir, notes)
    except ModelError as exc:
        missing["pipeline"] = f"No pipeline forecast at {end:%Y-%m-%d}: {exc}"
    if s.AMOUNT not in events.collect_schema().names():
        if deals is not None:
            deals = deals.drop(s.AMOUNT, s.EXPECTED_VALUE, strict=False)
        if pipeline is not None:
            pipeline = pipeline.drop("pipeline_amount", s.EXPECTED_VALUE)
        missing["pipeline_value"] = (
            "The stage events have no deal value (stage_events.amount): the pipeline counts deals and their win "
            "probability but cannot say what they are worth; add amount to stage_events for its value."
        )
    return funnel, cumulative, close, pipeline, deals


REPORT_EVERY_DAYS = 28
"""Days between the landmarks of the close-time model a report fits itself (without ``model_dir``)."""
REPORT_LANDMARK_ROWS = 40_000
"""Deals open at its landmarks the report's own close-time model follows at most (a random share beyond)."""
TOP_DEALS = 15
"""How many open deals the sales report lists, worth most first."""


def _pipeline(dataset: Dataset, end: datetime, model_dir: str, notes: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    if model_dir:
        model = StageConversionModel.load(ModelStore(Path(model_dir)).conversion("lightgbm"), engine="lightgbm")
        scored = score_open_opportunities(dataset, model, end, reasons=TOP_DEALS)  # reasons for the deals listed
        method = "LightGBM model"
    else:
        scored = score_from_history(dataset, end)
        method = (
            "history: for each deal, what past deals that had waited as long in the same stage went on to do, "
            "times the share of each later stage's entries that converted"
        )
    notes.append(f"Pipeline forecast at the start of {period_label(end.date(), 'day')} from {method}.")
    return pipeline_value(scored, by=s.STAGE, spec=dataset.spec), _top_deals(dataset, scored, end)


def _top_deals(dataset: Dataset, scored: pl.DataFrame, end: datetime) -> pl.DataFrame:
    """The open deals worth most, with who they are for and who works them: the list to act on."""
    ranked = scored.sort(
        s.EXPECTED_VALUE, s.WIN_PROBABILITY, s.OPPORTUNITY_ID, descending=[True, True, False], nulls_last=True
    ).head(TOP_DEALS)
    ranked = ranked.with_columns(
        ((pl.lit(end) - pl.col(s.ENTERED_AT)).dt.total_hours() / 24).floor().alias(s.DAYS_IN_STAGE_SO_FAR)
    )
    columns = [
        s.OPPORTUNITY_ID,
        s.CUSTOMER_ID,
        s.STAGE,
        s.DAYS_IN_STAGE_SO_FAR,
        s.AMOUNT,
        s.WIN_PROBABILITY,
        s.EXPECTED_VALUE,
        s.REASONS_UP,
        s.REASONS_DOWN,
    ]
    return with_people(dataset, ranked.select([c for c in columns if c in ranked.columns]), end)


def _forecast(
    dataset: Dataset, chosen: date, period_length: str, model_dir: str, targets_file: str, missing: dict[str, str]
) -> tuple[PeriodForecast | None, str, dict[str, pl.DataFrame]]:
    """The next period's won value, forecast at the report period's end with the data known then.

    With ``model_dir``, its close-time model and its backtest (the interval widened by the past errors,
    the coverage sentence, the checks); else a close-time model fitted here on the data before the
    moment, with deals taken as independent (the report says so).
    """
    start = datetime.combine(period_end(chosen, period_length), datetime.min.time())
    stop = datetime.combine(period_end(start.date(), period_length), datetime.min.time())
    if s.AMOUNT not in dataset.lazy("stage_events").collect_schema().names():
        missing["forecast"] = (
            f"No forecast of {period_label(start.date(), period_length)}: the stage events have no deal value "
            "(stage_events.amount), so there is no value to forecast; add amount to stage_events."
        )
        return None, "", {}
    spread, sentence, checks = 0.0, "", {}
    try:
        if model_dir and (ModelStore(Path(model_dir)).close_time("lightgbm") / "model.json").is_file():
            store = ModelStore(Path(model_dir))
            model = CloseTimeModel.load(store.close_time("lightgbm"), engine="lightgbm")
            backtest = read_forecast_summary(store.forecast).get("backtest", {})
            spread = float(backtest.get("spread") or 0.0)
            sentence = str(backtest.get("sentence", ""))
            checks = {
                key: pl.DataFrame(backtest[key]) for key in ("calibration", "aalen_johansen") if backtest.get(key)
            }
        else:
            # A quick fit for the report (landmarks every four weeks, no calendar features); a trained
            # model is the full one.
            model = fit_close_time(
                dataset_before(dataset, start),
                end=start,
                every_days=REPORT_EVERY_DAYS,
                calendar=False,
                max_landmark_rows=REPORT_LANDMARK_ROWS,
            )
        goals = won_value_targets(Path(targets_file), period_length, start.date(), None) if targets_file else {}
        result = forecast_period(
            dataset,
            model,
            start=start,
            end=stop,
            as_of=start,
            targets=goals,
            spread=spread,
            spread_measured=bool(sentence),
        )
    except ModelError as exc:
        missing["forecast"] = f"No forecast of {period_label(start.date(), period_length)}: {exc}"
        return None, "", {}
    if not sentence:
        sentence = (
            "The forecast has not been backtested here: train a model (funnelmodels train) and pass it as "
            "model_dir for the backtest, and an interval widened by the errors it measured."
        )
    return result, sentence, checks


def _data_end(transactions: pl.LazyFrame | None, events: pl.LazyFrame | None) -> date | None:
    """The day after the last recorded activity: a period ending by then is complete."""
    ends = []
    if transactions is not None:
        ends.append(transactions.select(pl.col(s.ORDERED_AT).max()).pipe(collect).item())
    if events is not None:
        ends.append(events.select(pl.col(s.ENTERED_AT).max()).pipe(collect).item())
    ends = [e for e in ends if e is not None]
    return (max(ends) + timedelta(days=1)).date() if ends else None


# --- the summary -----------------------------------------------------------------------------------


def _rows(table: pl.DataFrame | None) -> dict[str, dict[str, Any]]:
    return {r["kpi"]: r for r in table.iter_rows(named=True)} if table is not None else {}


def _move(kpi: str, row: dict[str, Any], against: str) -> str:
    """``up 4.2% on May 2026``; for a share ``+2.1 pts on May 2026``; empty without a comparison."""
    if not row or row.get("change") is None:
        return ""
    if unit(kpi) == "share":
        return f"{points(row['change'])} on {against}"
    pct = row.get("change_pct")
    if pct is None:
        return f"{row['change']:+,.0f} on {against}"
    if abs(pct) < 0.0005:
        return f"level with {against}"
    return f"{'up' if pct > 0 else 'down'} {abs(100 * pct):.1f}% on {against}"


def _verdict(kpi: str, row: dict[str, Any]) -> str:
    judgement, why = judge(kpi, row.get("change"), row.get("change_pct"), row.get("p_value"))
    if why.startswith("not significant"):
        return f" — within chance ({why.split(', ')[1]})"
    return {"good": " — a significant improvement", "bad": " — a significant decline"}.get(judgement, "")


def _summary(report: SalesReport) -> list[str]:
    if report.changes is None:
        return [report.missing.get("sales", "No sales figures for the period.")]
    now, yoy = _rows(report.changes), _rows(report.year_over_year)
    when = report.period_label
    out = []
    revenue = now.get("net_revenue", {})
    if revenue.get("value") is not None:
        moves = [
            m
            for m in (
                _move("net_revenue", revenue, report.previous_label),
                _move("net_revenue", yoy.get("net_revenue", {}), report.year_earlier_label),
            )
            if m
        ]
        out.append(
            f"Net revenue in {when}: **{money(revenue['value'])}**" + (f", {' and '.join(moves)}." if moves else ".")
        )
        active = now.get("active_customers", {}).get("value")
        if active:
            new, back = now["new_accounts"]["value"], now["returning_customers"]["value"]
            out.append(
                f"{count(active)} customers bought ({count(new)} new accounts, {count(back)} returning); "
                f"average sale {price(now['average_sale']['value'])}."
            )
    win = now.get("win_rate", {})
    if win.get("value") is not None:
        move = _move("win_rate", win, report.previous_label)
        out.append(
            f"Win rate **{percent(win['value'])}** ({count(now['won']['value'])} won, {count(now['lost']['value'])} "
            f"lost)" + (f", {move}{_verdict('win_rate', win)}." if move else ".")
        )
    if report.attainment is not None and report.attainment.height:
        parts = [
            f"{label(r['kpi']).lower()} {percent(r['attainment'], 0)} of {value_text(r['kpi'], r['target'])}"
            for r in report.attainment.iter_rows(named=True)
            if r["attainment"] is not None
        ]
        if parts:
            out.append("Targets reached: " + "; ".join(parts) + ".")
    if report.pipeline is not None and report.pipeline.height and report.forecast is not None:
        out.append(_forecast_sentence(report))
    elif report.pipeline is not None and report.pipeline.height:
        deals = int(report.pipeline["open_deals"].sum())
        text = f"Open pipeline at the period's end: {count(deals)} deals"
        if "pipeline_amount" in report.pipeline.columns:
            expected = float(report.pipeline["expected_value"].sum())
            text += (
                f" worth {money(float(report.pipeline['pipeline_amount'].sum()))}, expected to bring "
                f"**{money(expected)}** (value × win probability)"
            )
            if report.next_target:
                text += f", {percent(expected / report.next_target, 0)} of next period's revenue target"
        out.append(text + ".")
    mover = _biggest_mover(report)
    if mover:
        out.append(mover)
    return out[:5] if len(out) > 5 else out


def _forecast_sentence(report: SalesReport) -> str:
    """The pipeline and the next period's forecast in two sentences (one bullet)."""
    assert report.forecast is not None and report.pipeline is not None
    deals = int(report.pipeline["open_deals"].sum())
    text = f"Open pipeline at the period's end: {count(deals)} deals"
    if "pipeline_amount" in report.pipeline.columns:
        weighted = money(float(report.pipeline["expected_value"].sum()))
        worth = money(float(report.pipeline["pipeline_amount"].sum()))
        text += f" worth {worth} ({weighted} weighted by win probability)"
    total = report.forecast.total
    text += (
        f". Forecast for {report.next_label}: **{money(total['mean'])}** won, 80% between {money(total['p10'])} "
        f"and {money(total['p90'])}"
    )
    if total["p_target"] is not None:
        text += f", a {percent(total['p_target'], 0)} chance of reaching the {money(total['target'])} target"
    return text + "."


def _biggest_mover(report: SalesReport) -> str:
    """The segment whose net revenue (or, without revenue, won deals) changed most against the previous period."""
    if report.segment_changes is None or report.segment_changes.height == 0:
        return ""
    for kpi in ("net_revenue", "won"):
        rows = report.segment_changes.filter((pl.col("kpi") == kpi) & pl.col("change").is_not_null())
        if rows.height:
            top = rows.sort(pl.col("change").abs(), descending=True).row(0, named=True)
            if not top["change"]:
                return ""
            change = money(top["change"]) if unit(kpi) == "money" else f"{top['change']:+,.0f}"
            if top["change"] > 0 and unit(kpi) == "money":
                change = "+" + change
            pct = f" ({signed_percent(top['change_pct'], 0)})" if top.get("change_pct") is not None else ""
            return (
                f"Biggest mover: {label(report.segment).lower()} **{top[report.segment]}**, "
                f"{label(kpi).lower()} {change}{pct} on {report.previous_label}."
            )
    return ""
