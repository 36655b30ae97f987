"""Words and units for every measure, feature and column a reader sees: the one dictionary.

Tables, charts, tiles, reasons and the at-risk list all name things through :func:`label`, so
``net_revenue`` reads "Net revenue" everywhere and ``log(1+spend_365d)`` reads "Spend in the
last year (log)". A name the dictionary does not know is shown with its underscores as spaces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Literal

__all__ = [
    "CURRENCY",
    "LABELS",
    "Label",
    "Unit",
    "day_text",
    "good_direction",
    "label",
    "unit",
]

Unit = Literal[
    "money",
    "price",
    "count",
    "share",
    "points",
    "days",
    "number",
    "score",
    "metric",
    "fine",
    "index",
    "pvalue",
    "text",
    "date",
    "period",
]
"""How a value is written: money ($1.2M), price ($84.20), count (1,234), share (38.0%), points (+2.1 pts),
days (12), number (3 significant digits), score (3.42: CSAT), metric (0.812: AUC, Brier), fine (0.0029: parts of
a Brier score), index (−20.9: NPS),
pvalue (0.042, < 0.001), text, date, period (June 2026)."""


CURRENCY = ["$"]
"""The symbol money is written with: set once per process (``display.format.use_currency``), read by
every writer of money — tables, tiles and a model's reasons alike."""


@dataclass(frozen=True)
class Label:
    """A name in words, its unit, and which way is good (``up``, ``down`` or ``""`` for neither).

    ``reason`` is the phrase a model's reason uses for a value (``{v}`` the number, ``{k}`` it
    compacted: 92k) and ``unknown`` the phrase for a missing value.
    """

    text: str
    unit: Unit = "number"
    good: Literal["up", "down", ""] = ""
    reason: str = ""
    unknown: str = ""


LABELS: dict[str, Label] = {
    # --- sales KPIs (kpis.SALES_KPIS) ---
    "net_revenue": Label("Net revenue", "money", "up"),
    "orders": Label("Orders", "count", "up"),
    "average_sale": Label("Average sale", "price", "up"),
    "new_accounts": Label("New accounts", "count", "up"),
    "returning_customers": Label("Returning customers", "count", "up"),
    "active_customers": Label("Active customers", "count", "up"),
    "won": Label("Deals won", "count", "up"),
    "lost": Label("Deals lost", "count", "down"),
    "win_rate": Label("Win rate", "share", "up"),
    # --- report tables ---
    "period": Label("Period", "period"),
    "kpi": Label("Measure", "text"),
    "value": Label("Value"),
    "previous": Label("Previous"),
    "change": Label("Change"),
    "change_pct": Label("Change", "share"),
    "p_value": Label("p-value", "pvalue"),
    "target": Label("Target"),
    "attainment": Label("Attainment", "share", "up"),
    "stage": Label("Stage", "text"),
    "segment": Label("Segment", "text"),
    "entered": Label("Entered", "count"),
    "converted": Label("Converted", "share"),
    "observed": Label("Horizon over", "count"),
    "dropped": Label("Did not convert", "count"),
    "censored": Label("Horizon not over", "count"),
    "rate": Label("Conversion rate", "share"),
    "lost_share": Label("Lost", "share"),
    "at_risk": Label("Still open", "count"),
    "day": Label("Day", "count"),
    "open_deals": Label("Open deals", "count"),
    "pipeline_amount": Label("Pipeline value", "money"),
    "amount": Label("Amount", "money"),
    "expected_wins": Label("Expected wins", "index"),
    "expected_value": Label("Expected value", "money", "up"),
    "mean_win_probability": Label("Mean win probability", "share", "up"),
    "win_probability": Label("Win probability", "share", "up"),
    "probability": Label("Probability", "share"),
    "base_probability": Label("Base probability", "share"),
    "base_p_low": Label("Base chance of a low score", "share"),
    "p_next_stage": Label("Chance of the next stage", "share", "up"),
    # --- the forecast (models.forecast) ---
    "closed": Label("Won so far", "money"),
    "open_mean": Label("From open deals", "money"),
    "new_mean": Label("From deals not yet created", "money"),
    "mean": Label("Expected (mean)", "money"),
    "p10": Label("P10 (9 in 10 above)", "money"),
    "p50": Label("Median", "money"),
    "p90": Label("P90 (1 in 10 above)", "money"),
    "p_target": Label("Chance of reaching the target", "share", "up"),
    "rounding": Label("Rounding error at most", "money"),
    "spread": Label("Common swing (variance)", "number"),
    "p_won_by_end": Label("Chance of being won by the end", "share", "up"),
    "p_lost_by_end": Label("Chance of being lost by the end", "share", "down"),
    "p_open_at_end": Label("Chance of still being open", "share"),
    "p_won_in_horizon": Label("Chance of being won within a year", "share", "up"),
    "expected_value_in_period": Label("Expected value in the period", "money", "up"),
    "expected_close": Label("Expected close", "date"),
    "expected_close_before": Label("Expected close before", "date"),
    "slipped": Label("Slipped past the period", "text"),
    "realised": Label("Realised", "share"),
    "predicted": Label("Predicted", "share"),
    "deals": Label("Deals", "count"),
    "model_won": Label("Won, model", "share"),
    "model_lost": Label("Lost, model", "share"),
    "won_by": Label("Won (Aalen–Johansen)", "share"),
    "lost_by": Label("Lost (Aalen–Johansen)", "share"),
    "days_in_stage_so_far": Label("Days in stage so far", "days", reason="{v:.0f} days in this stage so far"),
    "observed_rate": Label("Observed rate", "share"),
    "mean_predicted": Label("Mean prediction", "share"),
    "mean_prediction": Label("Mean prediction", "share"),
    "base_rate": Label("Base rate", "share"),
    "n": Label("Rows", "count"),
    "positives": Label("Positives", "count"),
    "engine": Label("Model", "text"),
    "roc_auc": Label("ROC AUC", "metric"),
    "pr_auc": Label("PR AUC", "metric"),
    "brier": Label("Brier", "metric"),
    "log_loss": Label("Log loss", "metric"),
    "ece": Label("ECE", "metric"),
    "mcb": Label("Miscalibration (MCB)", "fine", "down"),
    "dsc": Label("Discrimination (DSC)", "fine", "up"),
    "unc": Label("Uncertainty (UNC)", "fine"),
    "mcb_excess": Label("Miscalibration beyond noise", "fine", "down"),
    "mcb_expected": Label("MCB from noise alone", "fine"),
    "mcb_by_chance": Label("MCB a calibrated model reaches by chance (95%)", "fine"),
    "miscalibrated": Label("Miscalibrated beyond chance", "text"),
    "low_share": Label("Answered low", "share"),
    "score": Label("The model's probability", "share"),
    "month": Label("Month", "text"),
    "entries": Label("Entries", "count"),
    "pending": Label("Still open", "count"),
    "estimated_auc": Label("ROC AUC, estimated", "metric", "up"),
    "realised_auc": Label("ROC AUC, realised", "metric", "up"),
    "estimated_rate": Label("Conversion, estimated", "share"),
    "realised_rate": Label("Conversion, realised", "share"),
    "attribute": Label("Sensitive column", "text"),
    "group": Label("Group", "text"),
    "mean_score": Label("Mean score", "share"),
    "selection_rate": Label("Selected (top quarter)", "share"),
    "selection_ratio": Label("Ratio to the best-off group", "metric", "up"),
    "eo_difference": Label("Equal-opportunity difference", "points"),
    "calibration_gap": Label("Mean score − base rate", "points"),
    "flagged": Label("Under four-fifths", "text"),
    "p_below_rest": Label("p-value, selected less than the rest", "pvalue"),
    "association": Label("Association", "metric"),
    "measure": Label("Measure", "text"),
    "proxy": Label("Strong proxy", "text"),
    "selection_ratio_without": Label("Ratio, without the sensitive columns", "metric", "up"),
    "flagged_without": Label("Under four-fifths, without", "text"),
    "roc_auc_without": Label("ROC AUC without the sensitive columns", "metric", "up"),
    "auc_change": Label("Change in ROC AUC", "metric"),
    "age_band": Label("Age band", "text"),
    "income_band": Label("Income band", "text"),
    "psi": Label("PSI", "metric", "down"),
    "wasserstein_sd": Label("Wasserstein distance (SDs)", "metric", "down"),
    "missing_then": Label("Missing, then", "share"),
    "missing_now": Label("Missing, now", "share"),
    "out_of_range": Label("Outside the earlier range", "share"),
    "unseen": Label("In categories never seen", "share"),
    "p_adjusted": Label("p-value (BH-adjusted)", "pvalue"),
    "alert": Label("Shifted", "text"),
    "low_roc_auc": Label("ROC AUC of P(low)", "metric", "up"),
    "low_brier": Label("Brier of P(low)", "metric", "down"),
    "train_rows": Label("Training entries", "count"),
    "train_positives": Label("Training conversions", "count"),
    "test_rows": Label("Test entries", "count"),
    "test_positives": Label("Test conversions", "count"),
    "naive Bayes": Label("Naive Bayes on stage and source", "text"),
    "stage rate": Label("The stage's own rate", "text"),
    "feature": Label("Feature", "text"),
    "mean_abs_contribution": Label("Mean contribution (log-odds)", "metric"),
    "gain": Label("Gain", "number"),
    "odds_ratio": Label("Odds ratio", "metric"),
    "or_low": Label("Odds ratio, low", "metric"),
    "or_high": Label("Odds ratio, high", "metric"),
    "mae": Label("Mean absolute error", "metric"),
    "rps": Label("Ranked probability score", "metric"),
    "ece_satisfied": Label("ECE of P(satisfied)", "metric"),
    "within_one": Label("Within one level", "share"),
    "spearman": Label("Spearman", "metric"),
    "fold": Label("Fold", "text"),
    "lightgbm": Label("LightGBM", "text"),
    "logit": Label("Logit", "text"),
    "ordinal": Label("Ordinal logit", "text"),
    "naive": Label("Naive baseline", "text"),
    "oracle": Label("Oracle (true probabilities)", "text"),
    "note": Label("Note", "text"),
    "reasons_left_out": Label("Reasons left out", "text"),
    "reasons_up": Label("Raises", "text"),
    "reasons_down": Label("Lowers", "text"),
    "risk_up": Label("Raises the risk", "text"),
    "risk_down": Label("Lowers the risk", "text"),
    "customer_id": Label("Customer", "text"),
    "customer_name": Label("Name", "text"),
    "owner": Label("Owner", "text"),
    "team": Label("Team", "text"),
    "opportunity_id": Label("Opportunity", "text"),
    "p_low": Label("Chance of a low score", "share", "down"),
    "expected_score": Label("Expected score", "score"),
    "in_range": Label("In range", "text"),
    "days_since_order": Label("Days since the last order", "days", reason="last order {v:.0f} days ago"),
    "last_order": Label("Last order", "date"),
    "last_answer": Label("Last answer", "text"),
    "value_at_stake": Label("Bought in the last year", "money"),
    "csat_mean": Label("CSAT (mean)", "score", "up"),
    "csat_n": Label("CSAT answers", "count"),
    "nps": Label("NPS", "index", "up"),
    "nps_n": Label("NPS answers", "count"),
    "satisfied_share": Label("Satisfied", "share", "up"),
    "promoters": Label("Promoters", "count"),
    "detractors": Label("Detractors", "count"),
    "effect": Label("Effect (1 SD)", "metric"),
    "coef": Label("Coefficient", "metric"),
    # --- customer and purchase-history features (features.py) ---
    "age": Label("Age", "number", reason="age {v:.0f}", unknown="age unknown"),
    "gender": Label("Gender", "text"),
    "income": Label("Income", "money", reason="income {k}", unknown="income unknown"),
    "region": Label("Region", "text"),
    "source": Label("Lead source", "text"),
    "product_knowledge": Label(
        "Product knowledge (1–5)", "number", reason="product knowledge {v:.0f}/5", unknown="product knowledge unknown"
    ),
    "tenure_days": Label("Customer for (days)", "days", reason="customer for {v:.0f} days"),
    "recency_days": Label(
        "Days since the last purchase", "days", reason="last purchase {v:.0f} days ago", unknown="no purchase yet"
    ),
    "frequency": Label("Earlier orders", "count", reason="{v:.0f} earlier orders"),
    "monetary_total": Label("Spent before", "money", reason="{k} spent before"),
    "monetary_mean": Label("Average order", "money", reason="average order {k}", unknown="no orders yet"),
    "monetary_max": Label("Largest order", "money", reason="largest order {k}", unknown="no orders yet"),
    "distinct_categories": Label("Categories bought", "count", reason="bought in {v:.0f} categories"),
    "spend_90d": Label("Spend in the last 90 days", "money", reason="{k} spent in the last 90 days"),
    "spend_365d": Label("Spend in the last year", "money", reason="{k} spent in the last year"),
    "refund_count": Label("Number of refunds", "count", reason="{v:.0f} refunds"),
    "refund_amount": Label("Amount refunded", "money", reason="{k} refunded"),
    "last_csat": Label("Last CSAT", "number", reason="last CSAT {v:.0f}", unknown="no CSAT yet"),
    "mean_csat": Label("Mean CSAT", "score", reason="mean CSAT {v:.1f}", unknown="no CSAT yet"),
    "last_nps": Label("Last NPS", "number", reason="last NPS {v:.0f}", unknown="no NPS yet"),
    "survey_count": Label("Surveys answered", "count", reason="{v:.0f} surveys answered"),
    "prior_opportunities": Label("Earlier opportunities", "count", reason="{v:.0f} earlier opportunities"),
    "prior_wins": Label("Earlier wins", "count", reason="{v:.0f} earlier wins"),
    "prior_losses": Label("Earlier losses", "count", reason="{v:.0f} earlier losses"),
    "days_since_opportunity_start": Label(
        "Days since the lead", "days", reason="{v:.0f} days since the lead", unknown="lead date unknown"
    ),
    "stage_entry": Label("Entry into the stage", "count", reason="entry {v:.0f} into this stage"),
    "deal_amount": Label("Deal size", "money", reason="deal size {k}", unknown="deal size unknown"),
    "order_amount": Label("Order amount", "money", reason="order of {k}", unknown="order amount unknown"),
    "order_category": Label("Order category", "text"),
    "days_late": Label("Days late", "days", "down", reason="delivered {v:.0f} days late", unknown="delivery unknown"),
    # --- owners, teams and activities (models.reps, models.effects, reports.teams) ---
    "manager": Label("Manager", "text"),
    "opportunities": Label("Opportunities", "count"),
    "decided": Label("Won or lost", "count"),
    "wins": Label("Won", "count", "up"),
    "opened": Label("Opened", "count", "up"),
    "revenue": Label("Revenue", "money", "up"),
    "cycle_days": Label("Median days to win", "days", "down"),
    "ratio": Label("Observed / expected", "number", "up"),
    "shrunk_ratio": Label("Shrunk observed / expected", "number", "up"),
    "treatment": Label("Activity", "text"),
    "treated_share": Label("Deals with it", "share"),
    "raw_difference": Label("Plain difference", "points"),
    "adjusted": Label("Adjusted difference", "points"),
    "extreme_share": Label("Rows without overlap", "share"),
    "method": Label("Method", "text"),
    "label": Label("What it is", "text"),
    "last_touch_days": Label("Days since the last touch", "days"),
    "next_step": Label("Suggested next step", "text"),
    "next_step_effect": Label("Its association", "points"),
    "opportunities_worked": Label("Deals worked", "count"),
    "activities": Label("Activities", "count"),
    "per_opportunity": Label("Per deal", "number"),
    "call": Label("Calls", "count"),
    "email": Label("Emails", "count"),
    "meeting": Label("Meetings", "count"),
    "demo": Label("Demos", "count"),
    "proposal_sent": Label("Proposals sent", "count"),
    "other": Label("Other", "count"),
    "calls_without_meeting": Label("Three calls or more, no meeting", "text"),
    "call_count": Label("Calls so far", "count", reason="{v:.0f} calls so far"),
    "email_count": Label("Emails so far", "count", reason="{v:.0f} emails so far"),
    "meeting_count": Label("Meetings so far", "count", reason="{v:.0f} meetings so far"),
    "demo_count": Label("Demos so far", "count", reason="{v:.0f} demos so far"),
    "proposal_sent_count": Label("Proposals sent so far", "count", reason="{v:.0f} proposals sent so far"),
    "other_count": Label("Other activities so far", "count", reason="{v:.0f} other activities so far"),
    "call_in_stage": Label("Calls in this stage", "count", reason="{v:.0f} calls in this stage"),
    "email_in_stage": Label("Emails in this stage", "count", reason="{v:.0f} emails in this stage"),
    "meeting_in_stage": Label("Meetings in this stage", "count", reason="{v:.0f} meetings in this stage"),
    "demo_in_stage": Label("Demos in this stage", "count", reason="{v:.0f} demos in this stage"),
    "proposal_sent_in_stage": Label("Proposals sent in this stage", "count", reason="{v:.0f} proposals in this stage"),
    "other_in_stage": Label("Other activities in this stage", "count", reason="{v:.0f} other activities in this stage"),
    "touches_14d": Label("Touches in the last 14 days", "count", reason="{v:.0f} touches in 14 days"),
    "touches_30d": Label("Touches in the last 30 days", "count", reason="{v:.0f} touches in 30 days"),
    "days_since_last_touch": Label(
        "Days since the last touch", "days", reason="last touch {v:.0f} days ago", unknown="never touched"
    ),
    "first_response_days": Label(
        "Days to the first touch", "days", reason="first touch after {v:.0f} days", unknown="no touch yet"
    ),
    "touches_per_week_in_stage": Label(
        "Touches per week in this stage", "number", reason="{v:.1f} touches a week in this stage"
    ),
}

_SUFFIXES = {
    "_low": "low",
    "_high": "high",
    "_missing": "missing",
}


def _entry(name: str) -> tuple[str, Label | None]:
    """The dictionary key a column name refers to (``log(1+x)`` → ``x``), and its entry."""
    inner = re.fullmatch(r"log\(1\+(.+)\)", name)
    key = inner.group(1) if inner else name
    return key, LABELS.get(key)


def label(name: str) -> str:
    """``net_revenue`` → "Net revenue"; ``log(1+spend_365d)`` → "Spend in the last year (log)".

    ``x_low``/``x_high`` (interval bounds) and ``x_missing`` (a missing-value indicator) read
    "X, low", "X, high", "X missing"; ``feature[level]`` reads "Feature: level"; an unknown
    name shows with spaces for underscores.
    """
    level = re.fullmatch(r"(.+)\[(.+)\]", name) or re.fullmatch(r"(\w+) = (.+)", name)
    if level:
        return f"{label(level.group(1))}: {level.group(2)}"
    flag = re.fullmatch(r"(\w+) missing", name)
    if flag:
        return f"{label(flag.group(1))} missing"
    key, entry = _entry(name)
    if entry is not None:
        return entry.text + (" (log)" if key != name else "")
    suffixed = _suffixed(name)
    if suffixed is not None:
        base, word = suffixed
        return f"{base.text} {word}" if word == "missing" else f"{base.text}, {word}"
    text = name.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _suffixed(name: str) -> tuple[Label, str] | None:
    """A known name with a suffix (``rate_low``): the known name's entry and the suffix's word."""
    for suffix, word in _SUFFIXES.items():
        if name.endswith(suffix) and name[: -len(suffix)] in LABELS:
            return LABELS[name[: -len(suffix)]], word
    return None


def unit(name: str) -> Unit:
    """How values of ``name`` are written (interval bounds ``x_low``/``x_high`` take ``x``'s unit)."""
    _, entry = _entry(name)
    if entry is not None:
        return entry.unit
    suffixed = _suffixed(name)
    return suffixed[0].unit if suffixed is not None and suffixed[1] != "missing" else "number"


def day_text(moment: date, *, short: bool = True) -> str:
    """A day as a reader writes it: ``30 Jun 2026`` (short, never wraps in a table) or ``30 June 2026``."""
    return f"{moment.day} {moment:{'%b' if short else '%B'} %Y}"


def good_direction(name: str) -> Literal["up", "down", ""]:
    """Which way a change of ``name`` is good for the business (``""`` when neither)."""
    entry = LABELS.get(name)
    return entry.good if entry is not None else ""
