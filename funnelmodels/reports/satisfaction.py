"""The customer-satisfaction report's measures: CSAT and NPS per period, the last change and segments."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

from funnelmodels.data import schema as s
from funnelmodels.data.io import Dataset
from funnelmodels.display.format import interval_text, percent, period_label, value_text
from funnelmodels.display.html import details, html_table
from funnelmodels.display.plots import chart_html, plot_calibration_band
from funnelmodels.errors import ConfigError, ReportError, did_you_mean
from funnelmodels.kpis import satisfaction_change, satisfaction_table
from funnelmodels.labels import label
from funnelmodels.models.card import DRIFT_NOTE, SatisfactionCard
from funnelmodels.models.train import ORACLE, SatisfactionTraining
from funnelmodels.reports.params import period_end
from funnelmodels.reports.sections import fairness_html
from funnelmodels.segments import DEFAULT_SEGMENT, segment_label

__all__ = [
    "SatisfactionOverview",
    "satisfaction_card_section",
    "satisfaction_details",
    "satisfaction_overview",
    "satisfaction_summary",
    "top_drivers",
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
    period_length: str = "month"


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
        for key, label in (
            ("csat_mean", f"{scale.name} mean"),
            ("satisfied_share", f"Share satisfied ({scale.satisfied_words})"),
            ("nps", "NPS"),
        ):
            if key in change:
                c = change[key]
                verdict = "a significant change" if c["p_value"] < 0.05 else "no significant change"
                before, after = (value_text(key, c[k]) for k in ("before", "after"))
                parts.append(f"- **{label}**: {before} → {after} ({verdict}, p = {c['p_value']:.2f})")
        text = f"{period_label(last, period_length)} against the {period_length} before:\n\n" + "\n".join(parts)
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
    return SatisfactionOverview(trend, change, text, segments, end, segment_note, period_length)


def top_drivers(coefficients: pl.DataFrame, *, k: int = 3) -> list[str]:
    """The ``k`` significant effects of the ordinal model largest per standard deviation, in words."""
    strong = (
        coefficients.filter((pl.col("p_value") < 0.05) & ~pl.col("term").str.ends_with(" missing"))
        .sort(pl.col("coef").abs(), descending=True)
        .head(k)
    )
    return [
        f"{label(r['term']).lower()} {'raises' if r['coef'] > 0 else 'lowers'} it" for r in strong.iter_rows(named=True)
    ]


def satisfaction_summary(
    overview: SatisfactionOverview | None,
    coefficients: pl.DataFrame | None,
    at_risk: pl.DataFrame | None,
    *,
    scale_name: str = "CSAT",
) -> list[str]:
    """The report's opening sentences: the level, the change, the three strongest drivers, the risk list."""
    out = []
    if overview is not None:
        last = overview.trend.row(-1, named=True)
        when = period_label(last["period"], overview.period_length)
        levels = []
        if last.get("csat_mean") is not None:
            level = interval_text("csat_mean", last["csat_mean"], last["csat_low"], last["csat_high"])
            levels.append(f"{scale_name} averaged **{level}** over {last['csat_n']:,} answers")
        if last.get("nps") is not None:
            levels.append(f"NPS was **{interval_text('nps', last['nps'], last['nps_low'], last['nps_high'])}**")
        if levels:
            out.append(f"In {when}, " + " and ".join(levels) + " (95% intervals).")
        moves = []
        for key, name in (("csat_mean", scale_name), ("nps", "NPS")):
            c = overview.change.get(key)
            if c:
                verdict = "a significant change" if c["p_value"] < 0.05 else "within chance"
                before, after = (value_text(key, c[k]) for k in ("before", "after"))
                moves.append(f"{name} {before} → {after} ({verdict}, p = {c['p_value']:.2f})")
        if moves:
            out.append("Against the period before: " + "; ".join(moves) + ".")
    if coefficients is not None:
        drivers = top_drivers(coefficients)
        if drivers:
            out.append(
                "What moves satisfaction most (per standard deviation, or against the reference group): "
                + "; ".join(drivers)
                + "."
            )
    if at_risk is not None and at_risk.height:
        worst = at_risk.row(0, named=True)
        out.append(
            f"The {at_risk.height} customers most likely to give a low score if asked now are listed below, "
            f"with reasons; the highest chance is {percent(worst['p_low'], 0)}."
        )
    return out or ["No survey answers to summarise."]


def satisfaction_details(
    result: SatisfactionTraining, drivers: pl.DataFrame, card: SatisfactionCard | None = None
) -> str:
    """The analyst's detail of the satisfaction models, as one collapsed section (HTML).

    With ``card`` the accuracy table is the card's, every figure with its 95% interval.
    """
    paragraph = (
        "An ordinal logit and LightGBM predict the distribution of scores from what we knew about the customer (and "
        "the order a survey is about) before the answer; judged on the latest period against a naive baseline "
        "(everyone gets the historical distribution)."
    )
    accuracy = (
        html_table(card.metrics.select([c for c in card.metrics.columns if not c.startswith("low_")]))
        if card is not None
        else html_table(result.metrics)
    )
    return details(
        "Model details: accuracy against the baseline, LightGBM's drivers",
        f"<p>{html.escape(paragraph)}</p>",
        accuracy,
        f"<p>{html.escape(result.verdict().replace('**', ''))}</p>",
        "<h4>LightGBM's drivers</h4>",
        "<p>The mean size of each feature's contribution to LightGBM's scores on the test answers: a ranking of "
        "what the model uses, not an estimate with a sampling interval (the ordinal model's effects above have "
        "theirs).</p>",
        html_table(drivers.head(12)),
    )


def satisfaction_card_section(card: SatisfactionCard) -> str:
    """The satisfaction models' card in the report: verdict, metrics with 95% intervals, P(low) calibration (HTML)."""
    low = f"{card.target.upper()} ≤ {card.low_up_to}"
    ends = ("", "_low", "_high")
    columns = ["engine", "n"] + [f"{m}{e}" for m in ("rps", "mae", "within_one", "log_loss") for e in ends]
    columns += ["low_share"] + [f"low_{m}{e}" for m in ("roc_auc", "brier") for e in ends]
    parts = ["engine"] + [f"{m}{e}" for m in ("brier", "mcb", "dsc", "unc") for e in ends]
    parts += ["mcb_excess", "mcb_excess_low", "mcb_excess_high", "miscalibrated"]
    curves = {name: card.reliability[name] for name in ("ordinal", "lightgbm", ORACLE) if name in card.reliability}
    verdict = "Ready to publish" if card.ready else "Not ready to publish"
    tested = card.rows.get("card", card.rows["test"])
    about = (
        f"Every model scored the same {tested:,} answers of the latest period, which none saw in training, beside "
        "the naive baseline (everyone gets the historical distribution of answers). The last columns judge the "
        f"chance of a low answer ({low}), the one the at-risk list ranks by. Intervals: 95%, a bootstrap over the "
        "answers."
    )
    calibration = (
        f"The chance of a low answer ({low}): its Brier score split into miscalibration, discrimination and "
        "uncertainty (Brier = MCB − DSC + UNC), and its reliability with the band a calibrated model stays in."
    )
    out = [
        f"<p><strong>{verdict}.</strong> {html.escape(card.sentence().split(': ', 1)[-1])}</p>",
        f"<p>{html.escape(about)}</p>",
        html_table(card.metrics.select([c for c in columns if c in card.metrics.columns])),
        f"<p>{html.escape(calibration)}</p>",
        html_table(card.calibration.filter(pl.col("group") == "all").select(parts)),
        chart_html(plot_calibration_band(curves)) if curves else "",
        f"<p>{html.escape(card.drift_sentence())}</p>",
        *fairness_html(card.fairness, card.fairness_sentence(), card.proxies),
        details("Drift per feature", f"<p>{html.escape(DRIFT_NOTE)}</p>", html_table(card.drift))
        if card.drift.height
        else "",
    ]
    if card.sample:
        out.insert(1, f"<p>{html.escape(f'The models were {card.sample}.')}</p>")
    return "".join(out)
