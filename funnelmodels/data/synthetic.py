"""Synthetic demo data with ground truth: the four canonical tables and the truth behind them.

The generator simulates a B2B-style sales operation over a fixed two-year window
(by default 2024-07-01 to 2026-06-30, not relative to today, so a seed gives the
same data on any day):

- customers with demographics (age, gender, income, region, product knowledge),
  a few percent of them missing;
- a purchase log with customer-specific rates, seasonality (a Q4 peak), category
  preferences and refunds (negative amounts);
- surveys after some purchases: CSAT 1-5 and NPS 0-10 cut from one latent
  satisfaction that follows an ordinal logit in point-in-time features;
- opportunities (first ones for new customers, later ones for returning
  customers) that move through the funnel; at each stage the chance to reach the
  next stage within the horizon is a known function of the point-in-time
  features, with non-linear terms and interactions; opportunities still open at
  the end of the window are censored.

``ground_truth`` holds, for every stage a opportunity entered, the true
conversion probability that generated its outcome; for every survey the true
latent satisfaction (linear predictor) and level probabilities; and the true
coefficients. A point-in-time feature here means: computed from rows strictly
before the moment (as_of) - the same rule the features module follows.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from funnelmodels.config import DEFAULT_STAGES, FunnelSpec
from funnelmodels.data import schema as s
from funnelmodels.data.io import write_table

__all__ = ["SyntheticData", "generate_dataset", "oracle_auc", "read_ground_truth", "write_dataset"]

DEFAULT_START = datetime(2024, 7, 1)
DEFAULT_END = datetime(2026, 6, 30, 23, 59, 59)
DAY = 86_400
REGIONS = ("north", "south", "east", "west", "central")
GENDERS = ("female", "male", "nonbinary")
CATEGORIES = ("hardware", "software", "services", "support", "training")
SOURCES = ("web", "referral", "event", "outbound", "partner")

# --- the true model ------------------------------------------------------------------------------
# Satisfaction: latent = x'beta + logistic noise; csat cuts it at CSAT_CUTS, nps at NPS_CUTS.
SATISFACTION_BETA = {
    "age_per_10y": 0.15,
    "log_income_ratio": 0.40,
    "product_knowledge": 0.25,
    "prior_refunds": -0.60,
    "log1p_prior_orders": 0.20,
    "region_south": -0.30,
    "region_east": 0.20,
    "region_west": 0.0,
    "region_central": -0.15,
}
CSAT_CUTS = (-2.6, -1.4, -0.1, 1.7)
LATE_EFFECT = -0.8
"""Effect on latent satisfaction of each day an order is late (as known when answering)."""
PROMISED_DAYS = 5
NPS_CUTS = (-3.6, -3.0, -2.4, -1.8, -1.2, -0.6, 0.0, 0.6, 1.3, 2.2)

# Conversion: logit p = intercept[stage] + scale[stage] * score(x) (+ stage-specific terms).
CONVERSION_INTERCEPT = {"lead": -0.85, "qualified": -0.25, "relationship": 0.05, "proposal": -0.35}
CONVERSION_SCALE = {"lead": 1.0, "qualified": 1.0, "relationship": 1.0, "proposal": 1.0}
CONVERSION_EFFECTS = {
    "log_income_ratio": 0.55,
    "age_per_10y": 0.10,
    "age_per_10y_squared": -0.20,
    "recent_buyer_exp_recency_60d": 0.90,
    "log1p_prior_orders": 0.30,
    "last_csat_minus_3": 0.35,
    "log_deal_ratio": -0.35,
    "product_knowledge_ge_4_at_qualified": 0.70,
    "log_income_ratio_at_proposal": 0.50,
    "source_referral": 0.60,
    "source_event": 0.20,
    "source_outbound": -0.40,
    "source_partner": 0.35,
    "region_south": -0.10,
    "region_east": 0.15,
    "region_west": 0.0,
    "region_central": -0.20,
}
HORIZON_DAYS = 90
BASE_INCOME = 55_000.0
BASE_DEAL = 5_000.0

# --- sales teams and activities (generate_dataset(teams=True)) -----------------------------------
TEAMS = {
    # team: (manager, region, lead tier: how good the leads it is handed are)
    "enterprise": ("Morgan Hale", "east", 1.0),
    "midmarket": ("Priya Natarajan", "north", 0.35),
    "smb": ("Luis Ortega", "south", -0.35),
    "inside": ("Grace Kim", "west", -1.0),
}
REP_NAMES = (
    "Ava Brooks", "Ben Carter", "Chloe Diaz", "Daniel Evans", "Emma Foster",
    "Farah Ghani", "Gabriel Hunt", "Hana Ito", "Ivan Jensen", "Julia Klein",
    "Kofi Larbi", "Lena Meyer", "Marco Neri", "Nadia Owusu", "Oscar Petit",
    "Paula Quinn", "Rafael Silva", "Sara Thorne", "Tomas Ulrich", "Vera Wolff",
)  # fmt: skip
SKILL_SD = 0.6
"""Spread of the reps' planted skill: a shift of the log-odds of every stage they work."""
HALF_YEAR = int(182.625 * DAY)
ASSIGNMENT_TILT = 1.5
"""How strongly better leads go to the teams with a higher lead tier (log-odds per SD of lead quality)."""
ACTIVITY_EFFECTS: dict[str, dict[str, float]] = {
    "lead": {"meeting": 0.9, "demo": 0.3, "email": 0.15, "calls_without_meeting": -0.7},
    "qualified": {"meeting": 0.5, "demo": 1.0, "email": 0.1, "calls_without_meeting": -0.5},
    "relationship": {"meeting": 0.6, "demo": 0.4, "email": 0.1, "proposal_sent": 0.8, "calls_without_meeting": -0.4},
    "proposal": {"meeting": 0.7, "demo": 0.2, "email": 0.0, "proposal_sent": 0.3, "calls_without_meeting": -0.3},
}
"""Planted effects on the log-odds of reaching the next stage, per stage: at least one activity of the type in the
stage (``calls_without_meeting``: three calls or more and no meeting)."""
ACTIVITY_PROPENSITY: dict[str, tuple[float, float]] = {
    "meeting": (0.0, 0.6),
    "demo": (-0.5, 0.5),
    "email": (0.8, 0.3),
    "proposal_sent": (0.2, 0.4),
}
"""Per type (intercept, slope on the standardised lead quality) of the log-odds of at least one in a stage:
better deals get more meetings (the confounding a fair estimate has to take out)."""
CALL_RATE = (0.6, -0.3)
"""Calls in a stage: Poisson with log-mean intercept + slope × standardised quality (weak deals get called more)."""
ACTIVITY_DAYS = 30
"""Activities of a stage fall in its first 30 days (or before it ends)."""


@dataclass(frozen=True)
class SyntheticData:
    """The generated tables; ``ground_truth`` holds ``conversion`` and ``satisfaction`` frames."""

    customers: pl.DataFrame
    transactions: pl.DataFrame
    stage_events: pl.DataFrame
    surveys: pl.DataFrame
    ground_truth: dict[str, pl.DataFrame]
    coefficients: dict[str, object]
    spec: FunnelSpec = field(default_factory=FunnelSpec)
    extra_tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    """``owners`` and ``activities`` when generated with ``teams``."""

    def tables(self) -> dict[str, pl.DataFrame]:
        """The canonical tables by name (four, six with teams)."""
        return {
            "customers": self.customers,
            "transactions": self.transactions,
            "stage_events": self.stage_events,
            "surveys": self.surveys,
            **self.extra_tables,
        }


def generate_dataset(
    n_customers: int = 5_000,
    *,
    seed: int | np.random.Generator | None = 0,
    start: datetime = DEFAULT_START,
    end: datetime = DEFAULT_END,
    orders_per_year: float = 13.5,
    unrecorded_losses: float = 0.0,
    late_deliveries: bool = False,
    survey_lag_days: tuple[float, float] = (1.0, 10.0),
    teams: bool = False,
    activity_effects: bool = True,
    cycle_scale: float = 1.0,
    group_bias: float = 0.0,
    progress: Callable[[str], None] | None = None,
) -> SyntheticData:
    """Generate a reproducible synthetic dataset with its ground truth.

    Parameters
    ----------
    n_customers : number of customers; transactions are about ``n_customers * orders_per_year``
        (each customer is active about a year on average, with a Q4 peak).
    seed : anything :func:`numpy.random.default_rng` accepts; the same seed gives the same data.
    start, end : the data window.
    unrecorded_losses : share of lost opportunities whose ``lost`` event is never recorded (0 to 1):
        the lead goes cold and simply stops, as in many CRM exports. The default 0 records
        every loss. With a share above 0, ``ground_truth["opportunities"]`` says how each
        opportunity really ended.
    late_deliveries : give orders a promised and a delivered date (``promised_at``,
        ``delivered_at``), tie each survey to the order it is about (``order_id``) and let late
        deliveries lower satisfaction (:data:`LATE_EFFECT` per day late, as known when answering).
        The other tables are the same as without it.
    survey_lag_days : surveys are answered this many days (uniform) after the order.
    teams : sales people in four teams (``owners`` table; ``owner`` and ``team`` on the stage events), each
        with a planted skill (:data:`SKILL_SD`), leads handed out unevenly (better leads to the teams with a
        higher lead tier, :data:`TEAMS`), and an ``activities`` table (calls, emails, meetings, demos,
        proposals sent) whose planted effects on the next stage differ by stage (:data:`ACTIVITY_EFFECTS`);
        ground truth ``owners`` (skill, lead tier) and ``activity_effects``. Customers, transactions and
        surveys are the same as without it; the outcomes of the stage events change with skill and activities.
    activity_effects : with ``teams``, plant the activity effects (default) or none (every effect 0).
    cycle_scale : stretch the sales cycle: waits in a stage are this many times longer (1, the default,
        changes nothing). Above 1, conversions are no longer bound to ``horizon_days`` (``true_probability``
        is then P(the stage converts at all)), each stage's probability is set by the customer as they were
        when the opportunity opened, and every opportunity is followed past the window's end:
        ``ground_truth["opportunities"]`` says how each really ended and when (``closed_at`` may lie
        after the window) and gives its ``true_win_probability`` (the product of its stages' probabilities)
        and each stage's probability (``p_<stage>``: a deal open in a stage wins with the product from it
        on) — what a model of the recent, still-open cohorts should recover. Not with ``teams``.
    group_bias : added to the log-odds of every stage's conversion of female customers (0, the default,
        gives gender no effect at all): a planted group bias, as in a history where women's leads were
        worked less, for the fairness audit to find. The truth includes it.

    Returns
    -------
    SyntheticData with ``customers``, ``transactions``, ``stage_events``, ``surveys`` in
    canonical columns and ``ground_truth["conversion"]`` (``opportunity_id, stage,
    entered_at, true_probability, converted, censored``) and ``ground_truth["satisfaction"]``
    (``customer_id, responded_at, latent, p_csat_1..p_csat_5, p_promoter, p_detractor``);
    with ``unrecorded_losses``, ``ground_truth["opportunities"]`` (``opportunity_id, outcome``
    (won, lost or open at the window's end), ``closed_at, stage_at_close, loss_recorded``).
    """
    if n_customers < 1:
        raise ValueError(f"n_customers must be at least 1; received {n_customers}.")
    if not 0.0 <= unrecorded_losses <= 1.0:
        raise ValueError(f"unrecorded_losses must be a share from 0 to 1; received {unrecorded_losses}.")
    if cycle_scale < 1.0:
        raise ValueError(f"cycle_scale must be 1 or more; received {cycle_scale}.")
    if cycle_scale != 1.0 and teams:
        raise ValueError("cycle_scale and teams do not go together: the activities' timing assumes the usual cycle.")
    rng = np.random.default_rng(seed)
    say = progress or (lambda _msg: None)
    t0, t1 = int(start.timestamp()), int(end.timestamp())
    say(f"customers: {n_customers:,}")
    customers = _customers(rng, n_customers, t0, t1)
    say("transactions")
    transactions = _transactions(rng, customers, t1, orders_per_year)
    if late_deliveries:
        # A stream of its own, so that every other table is the same as without deliveries.
        transactions = _deliveries(rng.spawn(1)[0], transactions)
    history = _History.build(transactions)
    say(f"surveys (from {transactions.height:,} transactions)")
    surveys, sat_truth = _surveys(
        rng, customers, transactions, history, t1, lag=survey_lag_days, about_orders=late_deliveries
    )
    say("opportunities and stage events")
    sales = _SalesForce.build(rng.spawn(1)[0], t0, t1, activity_effects) if teams else None
    events, conv_truth, outcomes = _opportunities(
        rng, customers, history, surveys, t1, unrecorded_losses, sales, cycle_scale, group_bias
    )
    truth = {"conversion": conv_truth, "satisfaction": sat_truth}
    if unrecorded_losses > 0 or cycle_scale != 1.0:
        truth["opportunities"] = outcomes
    extra: dict[str, pl.DataFrame] = {}
    if sales is not None:
        extra = {"owners": sales.owners(), "activities": sales.activities(events)}
        truth["owners"] = sales.truth_owners()
        truth["activity_effects"] = sales.truth_effects()
    return SyntheticData(
        customers=customers,
        transactions=transactions,
        stage_events=events,
        surveys=surveys,
        ground_truth=truth,
        coefficients=_coefficients(sales) | ({"group_bias": {"female": group_bias}} if group_bias else {}),
        extra_tables=extra,
    )


def _coefficients(sales: _SalesForce | None = None) -> dict[str, object]:
    out: dict[str, object] = {
        "horizon_days": HORIZON_DAYS,
        "base_income": BASE_INCOME,
        "base_deal": BASE_DEAL,
        "satisfaction": {"beta": SATISFACTION_BETA, "csat_cuts": CSAT_CUTS, "nps_cuts": NPS_CUTS},
        "conversion": {
            "intercept": CONVERSION_INTERCEPT,
            "scale": CONVERSION_SCALE,
            "effects": CONVERSION_EFFECTS,
        },
        "notes": (
            "Features are point-in-time (rows strictly before as_of). age_per_10y = (age-45)/10; "
            "log_income_ratio = ln(income/base_income); missing age/income/product_knowledge count as "
            "45 / base_income / 2.5 in the truth. Region effects are relative to north, source effects "
            "relative to web."
        ),
    }
    if sales is not None:
        out["teams"] = {
            "skill_sd": SKILL_SD,
            "assignment_tilt": ASSIGNMENT_TILT,
            "activity_effects": sales.effects,
            "activity_propensity": ACTIVITY_PROPENSITY,
            "call_rate": CALL_RATE,
            "notes": (
                "Skill shifts the log-odds of every stage an owner works; leads go to owners with probability "
                "proportional to exp(tilt × lead tier × standardised lead quality) among the owners started by "
                "then; a rep's lead tier is 0.4 × the team's (TEAMS) plus a fresh N(0, 1) every half-year. "
                "Activity effects shift the log-odds of the stage they happen in; calls_without_meeting is "
                "three calls or more and no meeting. ground_truth/activity_effects.effect is the difference in "
                "P(next stage) with and without the activity, averaged over the stage's observed rows: what an "
                "adjusted estimate targets."
            ),
        }
    return out


def _seconds_to_datetime(values: np.ndarray) -> pl.Series:
    return pl.from_epoch(pl.Series(values, dtype=pl.Int64), time_unit="s")


def _with_missing(rng: np.random.Generator, values: np.ndarray, share: float) -> list[object]:
    out = values.astype(object)
    out[rng.random(values.size) < share] = None
    return list(out.tolist())


def _customers(rng: np.random.Generator, n: int, t0: int, t1: int) -> pl.DataFrame:
    # Sign-ups grow over the window (a business that is gaining customers).
    created = t0 + (np.sqrt(rng.random(n)) * 0.97 * (t1 - t0)).astype(np.int64)
    created.sort()
    age = np.clip(np.round(rng.normal(44, 12, n)), 18, 85)
    region = rng.choice(len(REGIONS), n, p=[0.25, 0.2, 0.2, 0.2, 0.15])
    region_income = np.array([0.05, -0.10, 0.10, 0.0, -0.05])[region]
    income = np.round(np.exp(np.log(BASE_INCOME) + region_income + 0.08 * (age - 44) / 10 + rng.normal(0, 0.45, n)), -2)
    knowledge = rng.binomial(5, 0.45, n).astype(float)
    gender = rng.choice(len(GENDERS), n, p=[0.485, 0.485, 0.03])
    return pl.DataFrame(
        {
            s.CUSTOMER_ID: np.arange(1, n + 1, dtype=np.int64),
            s.CREATED_AT: _seconds_to_datetime(created),
            s.AGE: pl.Series(_with_missing(rng, age, 0.03), dtype=pl.Float64),
            s.GENDER: pl.Series(_with_missing(rng, np.array(GENDERS)[gender], 0.02), dtype=pl.String),
            s.INCOME: pl.Series(_with_missing(rng, income, 0.04), dtype=pl.Float64),
            s.REGION: pl.Series(np.array(REGIONS)[region], dtype=pl.String),
            s.PRODUCT_KNOWLEDGE: pl.Series(_with_missing(rng, knowledge, 0.05), dtype=pl.Float64),
        }
    )


def _month_weight(seconds: np.ndarray) -> np.ndarray:
    month = _seconds_to_datetime(seconds).dt.month().to_numpy()
    # Q4 peak, summer dip: the seasonality the KPI reports should show.
    weights = np.array([0.0, 0.9, 0.85, 1.0, 1.0, 1.0, 0.85, 0.8, 0.85, 1.05, 1.15, 1.35, 1.5])
    return np.asarray(weights[month], dtype=float)


def _transactions(rng: np.random.Generator, customers: pl.DataFrame, t1: int, orders_per_year: float) -> pl.DataFrame:
    n = customers.height
    created = customers[s.CREATED_AT].dt.epoch("s").to_numpy()
    income = customers[s.INCOME].fill_null(BASE_INCOME).to_numpy()
    knowledge = customers[s.PRODUCT_KNOWLEDGE].fill_null(2.5).to_numpy()
    rate = orders_per_year * np.exp(
        0.35 * np.log(income / BASE_INCOME) + 0.1 * (knowledge - 2.5) + rng.normal(-0.32, 0.8, n)
    )
    active_years = (t1 - created) / (365.25 * DAY)
    peak = 1.5
    counts = rng.poisson(rate * active_years * peak)
    owner = np.repeat(np.arange(n), counts)
    when = created[owner] + (rng.random(owner.size) * (t1 - created[owner])).astype(np.int64)
    keep = rng.random(owner.size) < _month_weight(when) / peak
    owner, when = owner[keep], when[keep]
    favourite = rng.integers(0, len(CATEGORIES), n)
    category = np.where(rng.random(owner.size) < 0.5, favourite[owner], rng.integers(0, len(CATEGORIES), owner.size))
    category_price = np.array([0.5, 0.2, 0.3, -0.4, -0.2])[category]
    amount = np.round(
        np.exp(
            np.log(120.0) + 0.5 * np.log(income[owner] / BASE_INCOME) + category_price + rng.normal(0, 0.6, owner.size)
        ),
        2,
    )
    refunded = rng.random(owner.size) < 0.04
    refund_when = when[refunded] + (rng.uniform(1, 30, refunded.sum()) * DAY).astype(np.int64)
    in_window = refund_when <= t1
    r_owner = owner[refunded][in_window]
    frame = pl.DataFrame(
        {
            s.CUSTOMER_ID: np.concatenate([owner, r_owner]).astype(np.int64) + 1,
            "_t": np.concatenate([when, refund_when[in_window]]),
            s.AMOUNT: np.concatenate([amount, -amount[refunded][in_window]]),
            s.CATEGORY: np.array(CATEGORIES)[np.concatenate([category, category[refunded][in_window]])],
        }
    )
    frame = frame.sort("_t", s.CUSTOMER_ID, s.AMOUNT)
    return frame.select(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(s.ORDER_ID),
        s.CUSTOMER_ID,
        pl.from_epoch("_t", time_unit="s").alias(s.ORDERED_AT),
        s.AMOUNT,
        s.CATEGORY,
    )


@dataclass(frozen=True)
class _History:
    """Per-customer running purchase history, for point-in-time look-ups by as-of join."""

    orders: pl.DataFrame  # customer_id, _t, _orders, _spend (cumulative, positive orders)
    refunds: pl.DataFrame  # customer_id, _t, _refunds (cumulative)

    @staticmethod
    def build(transactions: pl.DataFrame) -> _History:
        t = transactions.with_columns(pl.col(s.ORDERED_AT).dt.epoch("s").alias("_t")).sort("_t", s.ORDER_ID)
        orders = t.filter(pl.col(s.AMOUNT) > 0).select(
            s.CUSTOMER_ID,
            "_t",
            pl.int_range(1, pl.len() + 1).over(s.CUSTOMER_ID).alias("_orders"),
            pl.col(s.AMOUNT).cum_sum().over(s.CUSTOMER_ID).alias("_spend"),
        )
        refunds = t.filter(pl.col(s.AMOUNT) < 0).select(
            s.CUSTOMER_ID, "_t", pl.int_range(1, pl.len() + 1).over(s.CUSTOMER_ID).alias("_refunds")
        )
        return _History(orders=orders, refunds=refunds)

    def at(self, who: np.ndarray, when: np.ndarray) -> pl.DataFrame:
        """History strictly before each (customer, time): orders, spend, last order time, refunds."""
        left = pl.DataFrame({s.CUSTOMER_ID: who, "_t": when}).with_row_index("_i").sort("_t")
        joined = left.join_asof(
            self.orders.with_columns(pl.col("_t").alias("_last")),
            on="_t",
            by=s.CUSTOMER_ID,
            allow_exact_matches=False,
            check_sortedness=False,
        ).join_asof(self.refunds, on="_t", by=s.CUSTOMER_ID, allow_exact_matches=False, check_sortedness=False)
        return joined.sort("_i").select(
            pl.col("_orders").fill_null(0),
            pl.col("_spend").fill_null(0.0),
            pl.col("_refunds").fill_null(0),
            ((pl.col("_t") - pl.col("_last")) / DAY).alias("_recency_days"),
        )


def _demographic_terms(customers: pl.DataFrame, idx: np.ndarray) -> dict[str, np.ndarray]:
    age = customers[s.AGE].fill_null(45.0).to_numpy()[idx]
    income = customers[s.INCOME].fill_null(BASE_INCOME).to_numpy()[idx]
    region = customers[s.REGION].to_numpy()[idx]
    terms = {
        "age_per_10y": (age - 45.0) / 10.0,
        "log_income_ratio": np.log(income / BASE_INCOME),
        "product_knowledge": customers[s.PRODUCT_KNOWLEDGE].fill_null(2.5).to_numpy()[idx],
    }
    for name in REGIONS[1:]:
        terms[f"region_{name}"] = (region == name).astype(float)
    return terms


def _linear(weights: dict[str, float], terms: dict[str, np.ndarray]) -> np.ndarray:
    out = np.zeros(next(iter(terms.values())).size)
    for name, weight in weights.items():
        out += weight * terms[name]
    return out


def _ordinal_probabilities(eta: np.ndarray, cuts: tuple[float, ...]) -> np.ndarray:
    cdf = 1.0 / (1.0 + np.exp(-(np.asarray(cuts)[None, :] - eta[:, None])))
    cdf = np.hstack([np.zeros((eta.size, 1)), cdf, np.ones((eta.size, 1))])
    return np.diff(cdf, axis=1)


def _deliveries(rng: np.random.Generator, transactions: pl.DataFrame) -> pl.DataFrame:
    """Promised and delivered dates of the orders (not of refunds): most on time, a third late."""
    positive = (transactions[s.AMOUNT] > 0).to_numpy()
    ordered = transactions[s.ORDERED_AT].dt.epoch("s").to_numpy()
    promised = ordered + PROMISED_DAYS * DAY
    late = np.where(rng.random(ordered.size) < 0.4, rng.gamma(2.0, 3.0, ordered.size), -rng.uniform(0, 2, ordered.size))
    delivered = promised + (late * DAY).astype(np.int64)
    keep = pl.Series(positive)
    return transactions.with_columns(
        pl.when(keep).then(_seconds_to_datetime(promised)).alias(s.PROMISED_AT),
        pl.when(keep).then(_seconds_to_datetime(delivered)).alias(s.DELIVERED_AT),
    )


def days_late_known(promised: np.ndarray, delivered: np.ndarray, moment: np.ndarray) -> np.ndarray:
    """Days an order is late as known at ``moment`` (seconds).

    Delivered − promised once delivered, else moment − promised (negative while it is not yet
    due). The features use the same rule.
    """
    known = delivered <= moment
    return np.asarray((np.where(known, delivered, moment) - promised) / DAY, dtype=float)


def _surveys(
    rng: np.random.Generator,
    customers: pl.DataFrame,
    transactions: pl.DataFrame,
    history: _History,
    t1: int,
    *,
    lag: tuple[float, float],
    about_orders: bool,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    orders = transactions.filter(pl.col(s.AMOUNT) > 0)
    asked = orders.filter(pl.Series(rng.random(orders.height) < 0.12))
    responded = asked[s.ORDERED_AT].dt.epoch("s").to_numpy() + (rng.uniform(*lag, asked.height) * DAY).astype(np.int64)
    who = asked[s.CUSTOMER_ID].to_numpy()
    keep = responded <= t1
    who, responded, asked = who[keep], responded[keep], asked.filter(pl.Series(keep))
    past = history.at(who, responded)
    terms = _demographic_terms(customers, who - 1)
    terms["prior_refunds"] = past["_refunds"].to_numpy().astype(float)
    terms["log1p_prior_orders"] = np.log1p(past["_orders"].to_numpy())
    terms["product_knowledge"] = terms["product_knowledge"] - 2.5
    eta = _linear(SATISFACTION_BETA, terms)
    if s.PROMISED_AT in asked.columns:
        late = days_late_known(
            asked[s.PROMISED_AT].dt.epoch("s").to_numpy(), asked[s.DELIVERED_AT].dt.epoch("s").to_numpy(), responded
        )
        eta = eta + LATE_EFFECT * np.maximum(late, 0.0)
    latent = eta + rng.logistic(0.0, 1.0, eta.size)
    csat = 1 + np.searchsorted(np.asarray(CSAT_CUTS), latent)
    nps = np.searchsorted(np.asarray(NPS_CUTS), latent)
    p_csat = _ordinal_probabilities(eta, CSAT_CUTS)
    p_nps = _ordinal_probabilities(eta, NPS_CUTS)
    frame = pl.DataFrame(
        {
            s.CUSTOMER_ID: who.astype(np.int64),
            s.RESPONDED_AT: _seconds_to_datetime(responded),
            s.CSAT: pl.Series(_with_missing(rng, csat, 0.05), dtype=pl.Int64),
            s.NPS: pl.Series(_with_missing(rng, nps, 0.10), dtype=pl.Int64),
            s.ORDER_ID: asked[s.ORDER_ID],
            "latent": eta,
            **{f"p_csat_{k + 1}": p_csat[:, k] for k in range(5)},
            "p_promoter": p_nps[:, 9:].sum(axis=1),
            "p_detractor": p_nps[:, :7].sum(axis=1),
        }
    )
    # A survey needs a score; and one customer answers at most once a second.
    frame = frame.filter(pl.col(s.CSAT).is_not_null() | pl.col(s.NPS).is_not_null())
    frame = frame.unique([s.CUSTOMER_ID, s.RESPONDED_AT], keep="first", maintain_order=True)
    frame = frame.sort(s.RESPONDED_AT, s.CUSTOMER_ID)
    columns = [s.CUSTOMER_ID, s.RESPONDED_AT, s.CSAT, s.NPS, *([s.ORDER_ID] if about_orders else [])]
    surveys = frame.select(columns)
    truth = frame.drop(s.CSAT, s.NPS, *([] if about_orders else [s.ORDER_ID]))
    return surveys, truth


def _opportunity_starts(rng: np.random.Generator, customers: pl.DataFrame, t1: int) -> pl.DataFrame:
    n = customers.height
    created = customers[s.CREATED_AT].dt.epoch("s").to_numpy()
    first = rng.random(n) < 0.6
    first_who = np.flatnonzero(first)
    first_t = created[first] + (rng.uniform(0, 30, first.sum()) * DAY).astype(np.int64)
    # Returning customers open new opportunities later in their life.
    later_from = created + 30 * DAY
    years = np.clip((t1 - later_from) / (365.25 * DAY), 0, None)
    later_n = rng.poisson(0.35 * years)
    later_who = np.repeat(np.arange(n), later_n)
    later_t = later_from[later_who] + (rng.random(later_who.size) * (t1 - later_from[later_who])).astype(np.int64)
    who = np.concatenate([first_who, later_who])
    when = np.concatenate([first_t, later_t])
    keep = when < t1
    frame = pl.DataFrame({"_c": who[keep], "_t": when[keep]}).sort("_t", "_c")
    m = frame.height
    source = rng.choice(len(SOURCES), m, p=[0.35, 0.2, 0.15, 0.2, 0.1])
    income = customers[s.INCOME].fill_null(BASE_INCOME).to_numpy()[frame["_c"].to_numpy()]
    deal = np.round(np.exp(np.log(BASE_DEAL) + 0.6 * np.log(income / BASE_INCOME) + rng.normal(0, 0.7, m)), -1)
    return frame.with_columns(
        pl.int_range(1, m + 1, dtype=pl.Int64).alias(s.OPPORTUNITY_ID),
        pl.Series(s.SOURCE, np.array(SOURCES)[source]),
        pl.Series(s.AMOUNT, deal),
    )


def _last_csat(surveys: pl.DataFrame, who: np.ndarray, when: np.ndarray) -> np.ndarray:
    scored = surveys.filter(pl.col(s.CSAT).is_not_null()).select(
        s.CUSTOMER_ID, pl.col(s.RESPONDED_AT).dt.epoch("s").alias("_t"), s.CSAT
    )
    left = pl.DataFrame({s.CUSTOMER_ID: who, "_t": when}).with_row_index("_i").sort("_t")
    joined = left.join_asof(
        scored.sort("_t"), on="_t", by=s.CUSTOMER_ID, allow_exact_matches=False, check_sortedness=False
    )
    return joined.sort("_i")[s.CSAT].to_numpy().astype(float)


def _conversion_logit(
    stage: str,
    customers: pl.DataFrame,
    opps: pl.DataFrame,
    history: _History,
    surveys: pl.DataFrame,
    group_bias: float = 0.0,
) -> np.ndarray:
    idx = opps["_c"].to_numpy()
    when = opps["_t"].to_numpy()
    x = _demographic_terms(customers, idx)
    past = history.at(idx + 1, when)
    recency = past["_recency_days"].to_numpy()
    x["age_per_10y_squared"] = x["age_per_10y"] ** 2
    x["recent_buyer_exp_recency_60d"] = np.where(np.isnan(recency), 0.0, np.exp(-np.nan_to_num(recency) / 60.0))
    x["log1p_prior_orders"] = np.log1p(past["_orders"].to_numpy())
    x["last_csat_minus_3"] = np.nan_to_num(_last_csat(surveys, idx + 1, when) - 3.0)
    x["log_deal_ratio"] = np.log(np.maximum(opps[s.AMOUNT].to_numpy(), 10.0) / BASE_DEAL)
    x["product_knowledge_ge_4_at_qualified"] = (x["product_knowledge"] >= 4) * float(stage == "qualified")
    x["log_income_ratio_at_proposal"] = x["log_income_ratio"] * float(stage == "proposal")
    source = opps[s.SOURCE].to_numpy()
    for name in SOURCES[1:]:
        x[f"source_{name}"] = (source == name).astype(float)
    score = _linear(CONVERSION_EFFECTS, x)
    bias = group_bias * (customers[s.GENDER].to_numpy()[idx] == "female") if group_bias else 0.0
    return CONVERSION_INTERCEPT[stage] + CONVERSION_SCALE[stage] * score + bias


def _opportunities(
    rng: np.random.Generator,
    customers: pl.DataFrame,
    history: _History,
    surveys: pl.DataFrame,
    t1: int,
    unrecorded_losses: float,
    sales: _SalesForce | None = None,
    cycle_scale: float = 1.0,
    group_bias: float = 0.0,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    spec = FunnelSpec(stages=DEFAULT_STAGES, horizon_days=HORIZON_DAYS)
    opps = _opportunity_starts(rng, customers, t1)
    stretched = cycle_scale != 1.0
    win_probability = None
    by_stage: dict[str, np.ndarray] = {}
    if stretched:
        # Each stage's probability is the customer's as at the opening: the product is exactly P(won).
        win_probability = np.ones(opps.height)

        for stage in spec.open_stages:
            by_stage[stage] = 1.0 / (
                1.0 + np.exp(-_conversion_logit(stage, customers, opps, history, surveys, group_bias))
            )
            win_probability *= by_stage[stage]
        opps = opps.with_columns(pl.col("_t").alias("_t0"))
    if sales is not None:
        quality = _conversion_logit(spec.stages[0], customers, opps, history, surveys, group_bias)
        opps = opps.with_columns(pl.Series("_rep", sales.assign(quality, opps["_t"].to_numpy())))
    events = [opps.select(s.OPPORTUNITY_ID, "_c", "_t", pl.lit(spec.stages[0]).alias(s.STAGE))]
    truth, closed = [], []
    active = opps
    for stage, following in zip(spec.open_stages, spec.stages[1:], strict=True):
        at_opening = active.with_columns(pl.col("_t0").alias("_t")) if stretched else active
        logit = _conversion_logit(stage, customers, at_opening, history, surveys, group_bias)
        plan = None
        if sales is not None:
            skill = sales.skill[active["_rep"].to_numpy()]
            observed_horizon = active["_t"].to_numpy() + HORIZON_DAYS * DAY <= t1
            offset, plan = sales.plan_activities(stage, logit, skill, active, observed_horizon)
            logit = logit + skill + offset
        p = 1.0 / (1.0 + np.exp(-logit))
        converts = rng.random(p.size) < p
        # Conversions happen within the horizon (so p is exactly P(converted within horizon)).
        if stretched:
            wait = np.minimum(rng.gamma(2.0, WAIT_SCALE * cycle_scale, p.size), WAIT_CAP_DAYS) * DAY
            lose = np.minimum(rng.gamma(2.0, LOSE_SCALE * cycle_scale, p.size), 365 * cycle_scale) * DAY
        else:
            wait = np.minimum(rng.gamma(2.0, 8.0, p.size), HORIZON_DAYS - 1) * DAY
            lose = np.minimum(rng.gamma(2.0, 20.0, p.size), 365) * DAY
        next_t = active["_t"].to_numpy() + np.where(converts, wait, lose).astype(np.int64)
        if sales is not None and plan is not None:
            sales.place_activities(plan, next_t, t1)
        # A stretched cycle follows every opportunity past the window (for the truth); the data keeps what
        # happened by its end.
        recorded = next_t <= t1
        observed = np.ones(next_t.size, dtype=bool) if stretched else recorded
        entered = active.select(
            s.OPPORTUNITY_ID,
            pl.lit(stage).alias(s.STAGE),
            "_t",
            pl.Series("true_probability", p),
            pl.Series(s.CONVERTED, converts & recorded),
            (pl.col("_t") + HORIZON_DAYS * DAY > t1).alias(s.CENSORED),
        )
        truth.append(entered.filter(pl.col("_t") <= t1) if stretched else entered)
        moved = active.with_columns(pl.Series("_t", next_t)).filter(pl.Series(observed))
        outcome = np.where(converts, following, spec.lost)[observed]
        lost = outcome == spec.lost
        # A share of the losses is never recorded: the opportunity goes quiet (no draw when 0,
        # so the default data is unchanged).
        silent = lost & (rng.random(lost.size) < unrecorded_losses) if unrecorded_losses > 0 else lost & False
        ended = moved.filter(pl.Series(lost | (outcome == spec.won)))
        closed.append(
            ended.select(
                s.OPPORTUNITY_ID,
                pl.Series("outcome", outcome[lost | (outcome == spec.won)]),
                pl.col("_t").alias("_closed"),
                pl.lit(stage).alias("stage_at_close"),
                pl.Series("loss_recorded", ~silent[lost | (outcome == spec.won)]),
            )
        )
        kept = ~silent & recorded[observed] if stretched else ~silent
        events.append(
            moved.filter(pl.Series(kept)).select(s.OPPORTUNITY_ID, "_c", "_t", pl.Series(s.STAGE, outcome[kept]))
        )
        active = moved.filter(pl.Series(converts[observed]))
    info = opps.select(s.OPPORTUNITY_ID, s.AMOUNT, s.SOURCE, *(["_rep"] if sales is not None else []))
    stage_events = (
        pl.concat(events)
        .join(info, on=s.OPPORTUNITY_ID)
        .sort("_t", s.OPPORTUNITY_ID)
        .select(
            s.OPPORTUNITY_ID,
            (pl.col("_c") + 1).cast(pl.Int64).alias(s.CUSTOMER_ID),
            s.STAGE,
            pl.from_epoch("_t", time_unit="s").alias(s.ENTERED_AT),
            s.AMOUNT,
            s.SOURCE,
            *(sales.owner_columns("_rep") if sales is not None else []),
        )
    )
    conversion = (
        pl.concat(truth)
        .with_columns(pl.from_epoch("_t", time_unit="s").alias(s.ENTERED_AT))
        .drop("_t")
        .select(s.OPPORTUNITY_ID, s.STAGE, s.ENTERED_AT, "true_probability", s.CONVERTED, s.CENSORED)
        .sort(s.ENTERED_AT, s.OPPORTUNITY_ID)
    )
    ends = pl.concat(closed).with_columns(pl.from_epoch("_closed", time_unit="s").alias("closed_at")).drop("_closed")
    outcomes = (
        opps.select(s.OPPORTUNITY_ID)
        .join(ends, on=s.OPPORTUNITY_ID, how="left")
        .select(
            s.OPPORTUNITY_ID,
            pl.col("outcome").fill_null("open"),
            "closed_at",
            "stage_at_close",
            pl.col("loss_recorded").fill_null(True),
        )
        .sort(s.OPPORTUNITY_ID)
    )
    if win_probability is not None:
        chance = opps.select(
            s.OPPORTUNITY_ID,
            pl.Series("true_win_probability", win_probability),
            *(pl.Series(f"p_{stage}", p) for stage, p in by_stage.items()),
        )
        outcomes = outcomes.join(chance, on=s.OPPORTUNITY_ID, how="left")
    return stage_events, conversion, outcomes


_PLANNED = ("meeting", "demo", "email", "proposal_sent")
"""Activity types drawn as 'at least one in the stage' (calls are a count, 'other' carries no effect)."""
_EXTRA_PER_ONE = {"meeting": 0.4, "demo": 0.2, "email": 1.5, "proposal_sent": 0.0}
"""A stage with at least one such activity has 1 + Poisson(this) of them."""


@dataclass
class _SalesForce:
    """Sales people with planted skill, uneven lead assignment, and activities with planted effects."""

    rng: np.random.Generator
    reps: pl.DataFrame  # owner, team, manager, region, started_at (seconds), skill, tier, volume
    effects: dict[str, dict[str, float]]
    tiers: np.ndarray  # half-years × reps: how good the leads each rep is handed then
    t0: int
    placed: list[pl.DataFrame] = field(default_factory=list)
    truths: list[dict[str, object]] = field(default_factory=list)

    @property
    def skill(self) -> np.ndarray:
        return np.asarray(self.reps["skill"].to_numpy(), dtype=float)

    @staticmethod
    def build(rng: np.random.Generator, t0: int, t1: int, activity_effects: bool) -> _SalesForce:
        n = len(REP_NAMES)
        team_names = list(TEAMS)
        team = [team_names[i * len(team_names) // n] for i in range(n)]
        skill = rng.normal(0.0, SKILL_SD, n)
        skill -= skill.mean()
        # Lead routing changes every half-year (territories, campaigns): who gets the best leads moves.
        halves = max(1, math.ceil((t1 - t0) / HALF_YEAR))
        team_tiers = np.array([TEAMS[x][2] for x in team_names])
        of_team = [team_names.index(x) for x in team]
        tiers = 0.4 * team_tiers[of_team][None, :] + rng.normal(0.0, 1.0, (halves, n))
        started = np.full(n, t0, dtype=np.int64)
        late = rng.choice(n, 4, replace=False)  # four join during the window: few deals to judge them by
        started[late] = t0 + (rng.uniform(0.3, 0.6, late.size) * (t1 - t0)).astype(np.int64)
        reps = pl.DataFrame(
            {
                s.OWNER: list(REP_NAMES),
                s.TEAM: team,
                s.MANAGER: [TEAMS[x][0] for x in team],
                s.REGION: [TEAMS[x][1] for x in team],
                "_started": started,
                "skill": skill,
                "tier": tiers.mean(axis=0),
                "volume": rng.lognormal(0.0, 0.3, n),
            }
        )
        effects = {
            stage: {k: (v if activity_effects else 0.0) for k, v in e.items()} for stage, e in ACTIVITY_EFFECTS.items()
        }
        return _SalesForce(rng=rng, reps=reps, effects=effects, tiers=tiers, t0=t0)

    def assign(self, quality: np.ndarray, when: np.ndarray) -> np.ndarray:
        """The rep of each new opportunity: better leads to higher tiers, among the reps started by then."""
        z = (quality - quality.mean()) / max(float(quality.std()), 1e-9)
        half = np.clip((when - self.t0) // HALF_YEAR, 0, self.tiers.shape[0] - 1)
        tier = self.tiers[half]
        logits = np.log(self.reps["volume"].to_numpy())[None, :] + ASSIGNMENT_TILT * tier * z[:, None]
        logits = np.where(when[:, None] < self.reps["_started"].to_numpy()[None, :], -np.inf, logits)
        return np.asarray(np.argmax(logits + self.rng.gumbel(size=logits.shape), axis=1), dtype=np.int64)

    def plan_activities(
        self, stage: str, logit: np.ndarray, skill: np.ndarray, active: pl.DataFrame, observed: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Draw each opportunity's activities in this stage; their effect on the log-odds; the true effects.

        How many activities a deal gets depends on how good it looks (``logit``, from its features), not on
        its owner's skill: the features are then all an adjusted estimate needs.
        """
        z = (logit - logit.mean()) / max(float(logit.std()), 1e-9)
        rng, effects = self.rng, self.effects[stage]
        chance = {
            kind: (1 / (1 + np.exp(-(a + b * z))) if kind in effects else np.zeros(z.size))
            for kind, (a, b) in ACTIVITY_PROPENSITY.items()
        }
        rate = np.exp(CALL_RATE[0] + CALL_RATE[1] * z)
        has = {kind: rng.random(z.size) < chance[kind] for kind in _PLANNED}
        calls = rng.poisson(rate)
        plan = {kind: has[kind] * (1 + rng.poisson(_EXTRA_PER_ONE[kind], z.size)) for kind in _PLANNED}
        plan["call"] = calls
        plan["other"] = (rng.random(z.size) < 0.15).astype(np.int64)
        plan["_id"] = active[s.OPPORTUNITY_ID].to_numpy()
        plan["_c"] = active["_c"].to_numpy()
        plan["_rep"] = active["_rep"].to_numpy()
        plan["_t"] = active["_t"].to_numpy()
        offset = sum((effects.get(k, 0.0) * has[k] for k in _PLANNED), np.zeros(z.size))
        offset = offset + effects["calls_without_meeting"] * ((calls >= 3) & ~has["meeting"])
        self._true_effects(stage, logit + skill, chance, rate, observed)
        return offset, plan

    def _true_effects(
        self, stage: str, logit: np.ndarray, chance: dict[str, np.ndarray], rate: np.ndarray, observed: np.ndarray
    ) -> None:
        """E[P(next) | activity] − E[P(next) | none], other activities as they are drawn, over the observed rows."""
        effects = self.effects[stage]
        logit, rate = logit[observed], rate[observed]
        chance = {k: v[observed] for k, v in chance.items()}
        p_calls = [np.exp(-rate), np.exp(-rate) * (rate + rate**2 / 2), None]
        p_calls[2] = 1 - p_calls[0] - p_calls[1]
        combos = []
        for bits in itertools.product((0, 1), repeat=len(_PLANNED)):
            for calls in range(3):
                weight = np.ones(logit.size)
                for kind, bit in zip(_PLANNED, bits, strict=True):
                    weight = weight * (chance[kind] if bit else 1 - chance[kind])
                weight = weight * p_calls[calls]
                flags = dict(zip(_PLANNED, bits, strict=True))
                eta = logit + sum(effects.get(k, 0.0) * flags[k] for k in _PLANNED)
                heavy_alone = calls == 2 and not flags["meeting"]
                eta = eta + effects["calls_without_meeting"] * heavy_alone
                flags["call"] = int(calls > 0)
                flags["calls_without_meeting"] = int(heavy_alone)
                combos.append((weight, 1 / (1 + np.exp(-eta)), flags))
        for treatment in (*_PLANNED, "call", "calls_without_meeting"):
            on = sum(w * p * f[treatment] for w, p, f in combos)
            on_w = sum(w * f[treatment] for w, p, f in combos)
            off = sum(w * p * (1 - f[treatment]) for w, p, f in combos)
            off_w = sum(w * (1 - f[treatment]) for w, p, f in combos)
            if not np.any(on_w > 0):
                continue
            effect = np.asarray(on / np.where(on_w > 0, on_w, 1) - off / off_w)
            self.truths.append(
                {
                    s.STAGE: stage,
                    "treatment": treatment,
                    "logit_effect": effects.get(treatment, 0.0),
                    "effect": float(effect.mean()),
                    "treated_share": float(on_w.mean()),
                    "rows": int(logit.size),
                }
            )

    def place_activities(self, plan: dict[str, np.ndarray], next_t: np.ndarray, t1: int) -> None:
        """Date the planned activities within the stage's first days (before it ends; none after the data's end)."""
        start = plan["_t"]
        span = np.maximum(np.minimum(ACTIVITY_DAYS * DAY, next_t - start) - 1, 0)
        kinds = [k for k in (*_PLANNED, "call", "other")]
        counts = np.stack([plan[k] for k in kinds], axis=1).astype(np.int64)
        row = np.repeat(np.arange(start.size), counts.sum(axis=1))
        kind = np.concatenate([np.repeat(np.array(kinds), c) for c in counts]) if row.size else np.array([], dtype=str)
        at = start[row] + (self.rng.random(row.size) * span[row]).astype(np.int64)
        keep = at <= t1
        self.placed.append(
            pl.DataFrame(
                {
                    s.OPPORTUNITY_ID: plan["_id"][row][keep],
                    "_c": plan["_c"][row][keep],
                    "_rep": plan["_rep"][row][keep],
                    "_t": at[keep],
                    s.TYPE: kind[keep],
                },
                schema={
                    s.OPPORTUNITY_ID: pl.Int64,
                    "_c": pl.Int64,
                    "_rep": pl.Int64,
                    "_t": pl.Int64,
                    s.TYPE: pl.String,
                },
            )
        )

    def owner_columns(self, index: str) -> list[pl.Expr]:
        """Expressions naming the owner and team of the rep index in column ``index``."""
        return [
            pl.col(index)
            .replace_strict(range(self.reps.height), self.reps[c].to_list(), return_dtype=pl.String)
            .alias(c)
            for c in (s.OWNER, s.TEAM)
        ]

    def owners(self) -> pl.DataFrame:
        """The owners table: owner, team, manager, region, started_at."""
        return self.reps.select(
            s.OWNER, s.TEAM, s.MANAGER, s.REGION, pl.from_epoch("_started", time_unit="s").alias(s.STARTED_AT)
        )

    def activities(self, events: pl.DataFrame) -> pl.DataFrame:
        """The activities table, in time order, with a duration and outcome where the type has one."""
        frame = pl.concat(self.placed).sort("_t", s.OPPORTUNITY_ID, s.TYPE)
        n = frame.height
        rng = self.rng
        connected = rng.random(n) < 0.6
        minutes = {
            "call": np.where(connected, rng.uniform(2, 25, n), rng.uniform(0, 1, n)),
            "meeting": rng.choice([30.0, 45.0, 60.0], n),
            "demo": rng.choice([45.0, 60.0, 90.0], n),
        }
        kind = frame[s.TYPE].to_numpy()
        duration = np.full(n, np.nan)
        for name, values in minutes.items():
            duration = np.where(kind == name, np.round(values), duration)
        called = kind == "call"
        outcome = [("connected" if c else "no answer") if k else None for k, c in zip(called, connected, strict=True)]
        return frame.select(
            pl.int_range(1, n + 1, dtype=pl.Int64).alias(s.ACTIVITY_ID),
            s.OPPORTUNITY_ID,
            (pl.col("_c") + 1).cast(pl.Int64).alias(s.CUSTOMER_ID),
            pl.from_epoch("_t", time_unit="s").alias(s.AT),
            s.TYPE,
            pl.Series(s.DURATION_MINUTES, duration).fill_nan(None),
            pl.Series(s.OUTCOME, outcome, dtype=pl.String),
            *self.owner_columns("_rep"),
        ).drop(s.TEAM)

    def truth_owners(self) -> pl.DataFrame:
        """Each owner's planted skill and lead tier."""
        return self.reps.select(s.OWNER, s.TEAM, "skill", pl.col("tier").alias("lead_tier")).with_columns(
            pl.Series(f"lead_tier_half_{k + 1}", self.tiers[k]) for k in range(self.tiers.shape[0])
        )

    def truth_effects(self) -> pl.DataFrame:
        """The planted activity effects per stage: log-odds and the difference in P(next stage) they make."""
        return pl.DataFrame(self.truths)


WAIT_SCALE, LOSE_SCALE, WAIT_CAP_DAYS = 8.0, 20.0, 3 * 365
"""Days a stage waits before converting (Gamma(2, WAIT_SCALE)) or ending lost (Gamma(2, LOSE_SCALE))."""


def open_win_probability(truth: pl.DataFrame, open_deals: pl.DataFrame, cycle_scale: float) -> np.ndarray:
    """The exact P(won) of deals still open, from a stretched-cycle generation's truth (``cycle_scale`` > 1).

    A deal still in its stage after ``e`` days is less likely to convert than when it entered (losses
    wait longer): by Bayes, p·S_win(e) / (p·S_win(e) + (1 − p)·S_lose(e)) with the Gamma waits' survival
    functions, times the probabilities of the stages after it.

    Parameters
    ----------
    truth : ``ground_truth["opportunities"]`` (``opportunity_id, p_<stage>…``).
    open_deals : ``opportunity_id, stage, days_in_stage_so_far``.
    """
    from scipy.stats import gamma

    rows = open_deals.join(truth, on=s.OPPORTUNITY_ID, how="left")
    stages = list(DEFAULT_STAGES[:-1])
    stage = rows[s.STAGE].to_numpy()
    waited = rows[s.DAYS_IN_STAGE_SO_FAR].to_numpy().astype(float)
    out = np.zeros(rows.height)
    for i, name in enumerate(stages):
        mine = stage == name
        if not mine.any():
            continue
        p = rows[f"p_{name}"].to_numpy()[mine]
        e = waited[mine]
        s_win = np.where(e < WAIT_CAP_DAYS, gamma.sf(e, 2.0, scale=WAIT_SCALE * cycle_scale), 0.0)
        s_lose = np.where(e < 365 * cycle_scale, gamma.sf(e, 2.0, scale=LOSE_SCALE * cycle_scale), 0.0)
        now = p * s_win / np.maximum(p * s_win + (1 - p) * s_lose, 1e-300)
        for later in stages[i + 1 :]:
            now = now * rows[f"p_{later}"].to_numpy()[mine]
        out[mine] = now
    return out


def true_satisfaction(
    data: SyntheticData, customer_ids: np.ndarray, moment: datetime, order_ids: np.ndarray
) -> np.ndarray:
    """The generator's latent satisfaction of a survey answered at ``moment`` about the given order.

    Its linear predictor, for each customer: the truth an at-risk list is judged against.

    ``P(CSAT ≤ 2)`` is then the sum of the first two of :func:`_ordinal_probabilities` at
    :data:`CSAT_CUTS`; see :func:`true_low_satisfaction`.
    """
    who = np.asarray(customer_ids, dtype=np.int64)
    when = np.full(who.size, int(moment.timestamp()), dtype=np.int64)
    past = _History.build(data.transactions).at(who, when)
    terms = _demographic_terms(data.customers, who - 1)
    terms["prior_refunds"] = past["_refunds"].to_numpy().astype(float)
    terms["log1p_prior_orders"] = np.log1p(past["_orders"].to_numpy())
    terms["product_knowledge"] = terms["product_knowledge"] - 2.5
    eta = _linear(SATISFACTION_BETA, terms)
    if s.PROMISED_AT in data.transactions.columns:
        orders = pl.DataFrame({s.ORDER_ID: np.asarray(order_ids, dtype=np.int64)}).join(
            data.transactions.select(s.ORDER_ID, s.PROMISED_AT, s.DELIVERED_AT), on=s.ORDER_ID, how="left"
        )
        late = days_late_known(
            orders[s.PROMISED_AT].dt.epoch("s").to_numpy(), orders[s.DELIVERED_AT].dt.epoch("s").to_numpy(), when
        )
        eta = eta + LATE_EFFECT * np.maximum(np.nan_to_num(late), 0.0)
    return eta


def true_low_satisfaction(eta: np.ndarray) -> np.ndarray:
    """The generator's P(CSAT ≤ 2) for latent satisfactions ``eta``."""
    return np.asarray(_ordinal_probabilities(np.asarray(eta, dtype=float), CSAT_CUTS)[:, :2].sum(axis=1), dtype=float)


def write_dataset(data: SyntheticData, out: str | Path, *, fmt: str = "parquet") -> list[Path]:
    """Write the four tables, ``ground_truth/`` and a ``funnel.toml`` into ``out``.

    Returns
    -------
    The paths written (tables first).
    """
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in data.tables().items():
        path = root / f"{name}.{fmt}"
        write_table(frame, path)
        written.append(path)
    truth_dir = root / "ground_truth"
    for name, frame in data.ground_truth.items():
        path = truth_dir / f"{name}.{fmt}"
        write_table(frame, path)
        written.append(path)
    coef = truth_dir / "coefficients.json"
    coef.write_text(json.dumps(data.coefficients, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    written.append(coef)
    return written


def oracle_auc(conversion_truth: pl.DataFrame) -> dict[str, float]:
    """ROC AUC of the true probabilities per stage, on rows whose horizon is observed.

    The best any model can do on this data; the generator aims for 0.65-0.85.
    """
    observed = conversion_truth.filter(~pl.col(s.CENSORED))
    out = {}
    for stage in DEFAULT_STAGES[:-1]:
        rows = observed.filter(pl.col(s.STAGE) == stage)
        out[stage] = _auc(rows["true_probability"], rows[s.CONVERTED])
    return out


def _auc(score: pl.Series, label: pl.Series) -> float:
    positives = int(label.sum())
    negatives = label.len() - positives
    if positives == 0 or negatives == 0:
        return math.nan
    ranks = score.rank("average")
    rank_sum = float(ranks.filter(label).sum())
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def read_ground_truth(folder: str | Path, name: str) -> pl.DataFrame | None:
    """The generator's ``ground_truth/<name>`` (Parquet or CSV) in a dataset folder, or None."""
    for fmt, reader in (("parquet", pl.read_parquet), ("csv", pl.read_csv)):
        path = Path(folder) / "ground_truth" / f"{name}.{fmt}"
        if path.is_file():
            frame = reader(path)
            return frame.with_columns(
                pl.col(c).str.to_datetime() for c, t in frame.schema.items() if t == pl.String and c.endswith("_at")
            )
    return None
