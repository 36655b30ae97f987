"""The customer-satisfaction report's measures: CSAT and NPS per period, the last change and segments."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

from funnelmodels.data import schema as s
from funnelmodels.data.io import Dataset
from funnelmodels.errors import ConfigError, ReportError, did_you_mean
from funnelmodels.kpis import satisfaction_change, satisfaction_table
from funnelmodels.reports.params import period_end
from funnelmodels.segments import DEFAULT_SEGMENT, segment_label

__all__ = [
    "SatisfactionOverview",
    "satisfaction_overview",
]


@dataclass(frozen=True)
class SatisfactionOverview:
    """CSAT/NPS per period, the change of the last period, segments and the scoring moment."""

    trend: pl.DataFrame
    change: dict[str, dict[str, float]]
    change_text: str
    segments: pl.DataFrame | None
    as_of: datetime
    segment_note: str = ""


def satisfaction_overview(
    dataset: Dataset, *, period_length: str = "month", segment: str = "region"
) -> SatisfactionOverview:
    """Trend, last-period change (with tests) and segment table of CSAT and NPS."""
    surveys = dataset.lazy("surveys")
    scale = dataset.config.scale
    if s.RESPONDED_AT not in surveys.collect_schema().names():
        raise ReportError(
            "the surveys have no dates (no responded_at column): there is no trend to show; add the answer's date "
            "to show one."
        )
    trend = satisfaction_table(surveys, period=period_length, satisfied_from=scale.satisfied_from)
    if trend.height == 0:
        raise ReportError("the surveys table has no responses.")
    last = trend["period"][-1]
    starts = [datetime.combine(p, datetime.min.time()) for p in trend["period"].to_list()]
    end = datetime.combine(period_end(last, period_length), datetime.min.time())
    change: dict[str, dict[str, float]] = {}
    text = "Only one period of surveys: no change to report."
    if len(starts) > 1:
        change = satisfaction_change(
            surveys, before=(starts[-2], starts[-1]), after=(starts[-1], end), satisfied_from=scale.satisfied_from
        )
        parts = []
        for key, label, unit in (
            ("csat_mean", f"{scale.name} mean", ""),
            ("satisfied_share", f"Share satisfied ({scale.satisfied_words})", "%"),
            ("nps", "NPS", " pts"),
        ):
            if key in change:
                c = change[key]
                factor = 100 if unit == "%" else 1
                verdict = "a significant change" if c["p_value"] < 0.05 else "no significant change"
                parts.append(
                    f"- **{label}**: {factor * c['before']:.2f}{unit} → {factor * c['after']:.2f}{unit} "
                    f"({verdict}, p = {c['p_value']:.3f})"
                )
        text = f"Latest {period_length} ({last}) against the one before:\n\n" + "\n".join(parts)
    segments, segment_note = None, ""
    if not segment:
        segment_note = "No segment table: no segment was chosen (pass -p segment COLUMN, e.g. region)."
    elif not dataset.has("customers"):
        segment_note = "No segment table: it needs a customers table."
    elif segment:
        names = [c for c in dataset.lazy("customers").collect_schema().names() if c != s.CUSTOMER_ID]
        if segment not in names:
            if segment != DEFAULT_SEGMENT:
                raise ConfigError(
                    f"segment {segment!r} is not a customers column{did_you_mean(segment, names)}; "
                    f"available: {', '.join(names)}."
                )
            segment_note = (
                f"No segment table: the customers table has no {segment} column; pass -p segment COLUMN "
                f"(one of {', '.join(names)})."
            )
        else:
            customers = dataset.lazy("customers").select(s.CUSTOMER_ID, segment_label(pl.col(segment)))
            joined = surveys.join(customers, on=s.CUSTOMER_ID, how="left")
            # Segments over the last twelve months: per-period segment cells are too small to read.
            year_ago = end - timedelta(days=365)
            recent = joined.filter(pl.col(s.RESPONDED_AT) >= year_ago).with_columns(
                pl.lit(year_ago).alias(s.RESPONDED_AT)
            )
            segments = satisfaction_table(recent, period="year", by=segment, satisfied_from=scale.satisfied_from).drop(
                "period"
            )
    return SatisfactionOverview(trend, change, text, segments, end, segment_note)
