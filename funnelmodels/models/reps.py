"""Fair per-rep performance: wins against the wins the leads a rep received would have given.

A raw win rate rewards whoever was handed the best leads. Here each opportunity gets a
probability of being won, **at assignment**, from a model that sees the lead (the customer's
point-in-time features, the deal's value and source, the time left until the data's end) but
never the owner, never the team and never the activities (the rep's own doing). A rep's
*expected wins* are the sum of those probabilities over the opportunities they received;
observed / expected above 1 means more wins than those leads usually give.

- **The reference model**: LightGBM, cross-fitted (five folds by opportunity: no opportunity
  is scored by a model that saw it), then shifted on the log-odds scale so that expected wins
  add up to the observed wins over everyone (calibration in the large).
- **The interval** of observed / expected is exact under the Poisson-binomial distribution of
  the wins: the rep's skill as one log-odds shift ``b`` of every lead's probability; the 95%
  interval holds the shifts whose Poisson-binomial tails reach 2.5% at the observed wins
  (exact convolution up to :data:`EXACT_UP_TO` deals, the refined normal approximation above),
  reported as the ratio each shift gives.
- **Shrinkage**: a binomial mixed model (a GLMM) with a random intercept per rep on the
  log-odds scale and the reference model's log-odds as an offset, its variance fitted by
  marginal maximum likelihood (Gauss–Hermite quadrature) — empirical Bayes. A rep's shrunk
  ratio is the posterior mean of observed / expected; with few deals it stays near 1.
  (statsmodels' ``BinomialBayesMixedGLM`` takes no offset and is a variational approximation,
  so the one-dimensional integral is done here exactly.)
- **Stability**: the window is split at its middle; the rank agreement (Spearman) of each
  rep's shrunk ratio between the halves, beside that of the raw win rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from funnelmodels.data import schema as s
from funnelmodels.data.io import Dataset
from funnelmodels.evaluation import binary_metrics
from funnelmodels.features import build_transition_features, categorical_features, extra_features, feature_columns
from funnelmodels.frames import as_days
from funnelmodels.funnel import build_transitions, data_end, with_stale_losses
from funnelmodels.models.boosting import cross_fitted, fold_of
from funnelmodels.models.design import FeatureEncoder

__all__ = [
    "EXACT_UP_TO",
    "MIN_DEALS",
    "RepPerformance",
    "assignments",
    "observed_expected_interval",
    "opportunity_owners",
    "poisson_binomial_cdf",
    "rep_performance",
    "shrink",
]

EXACT_UP_TO = 150
"""Deals up to which the Poisson-binomial tail is convolved exactly (the refined normal approximation above)."""
MIN_DEALS = 30
"""Opportunities below which the reference model is not fitted (every lead gets the overall win rate)."""
NOT_FEATURES = frozenset(
    {*s.OWNER_COLUMNS, *s.ACTIVITY_FEATURES, s.DAYS_IN_STAGE_SO_FAR, "days_since_opportunity_start"}
)
"""What the reference model never sees: who works the deal and what they did with it."""
_NODES = 60


# --- the Poisson-binomial -------------------------------------------------------------------------


def _expit(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)), dtype=float)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.asarray(np.log(p / (1 - p)), dtype=float)


def poisson_binomial_cdf(k: float, p: np.ndarray) -> float:
    """P(W ≤ k) for W a sum of independent Bernoulli(p_i): exact convolution, or refined normal for many."""
    p = np.asarray(p, dtype=float)
    if k < 0:
        return 0.0
    if k >= p.size:
        return 1.0
    if p.size <= EXACT_UP_TO:
        pmf = np.zeros(p.size + 1)
        pmf[0] = 1.0
        for i, q in enumerate(p, start=1):
            pmf[1 : i + 1] = pmf[1 : i + 1] * (1 - q) + pmf[:i] * q
            pmf[0] *= 1 - q
        return float(min(pmf[: int(k) + 1].sum(), 1.0))
    # Volkova's refined normal approximation: a skewness correction to the normal.
    from scipy.stats import norm

    mu = float(p.sum())
    sigma = math.sqrt(float((p * (1 - p)).sum()))
    gamma = float((p * (1 - p) * (1 - 2 * p)).sum()) / sigma**3
    x = (k + 0.5 - mu) / sigma
    return float(np.clip(norm.cdf(x) + gamma * (1 - x**2) * norm.pdf(x) / 6, 0.0, 1.0))


def observed_expected_interval(wins: int, p: np.ndarray, *, confidence: float = 0.95) -> tuple[float, float]:
    """The exact interval of observed / expected wins under a constant log-odds shift of the leads' probabilities."""
    from scipy.optimize import brentq

    p = np.asarray(p, dtype=float)
    expected = float(p.sum())
    if p.size == 0 or expected <= 0:
        return math.nan, math.nan
    alpha = (1 - confidence) / 2
    base = _logit(p)

    def ratio(shift: float) -> float:
        return float(_expit(base + shift).sum()) / expected

    def upper_tail(shift: float) -> float:  # P(W >= wins) - alpha
        return 1 - poisson_binomial_cdf(wins - 1, _expit(base + shift)) - alpha

    def lower_tail(shift: float) -> float:  # P(W <= wins) - alpha
        return poisson_binomial_cdf(wins, _expit(base + shift)) - alpha

    low = 0.0 if wins == 0 else ratio(brentq(upper_tail, -20, 20, xtol=1e-4))
    high = p.size / expected if wins >= p.size else ratio(brentq(lower_tail, -20, 20, xtol=1e-4))
    return low, high


# --- shrinkage (binomial GLMM, random intercept per group, offset) ----------------------------------


@dataclass(frozen=True)
class Shrunk:
    """Posterior summaries per group and the fitted spread of the groups (SD on the log-odds scale)."""

    ratio: np.ndarray
    low: np.ndarray
    high: np.ndarray
    shift: np.ndarray
    sd: float


def _group_loglik(y: np.ndarray, offset: np.ndarray, group: np.ndarray, n_groups: int, u: np.ndarray) -> np.ndarray:
    """Log-likelihood of each group's rows at each value of the random intercept: groups × len(u)."""
    eta = offset[:, None] + u[None, :]
    ll = y[:, None] * eta - np.logaddexp(0.0, eta)
    out = np.zeros((n_groups, u.size))
    np.add.at(out, group, ll)
    return out


def shrink(y: np.ndarray, p: np.ndarray, group: np.ndarray, *, confidence: float = 0.95) -> Shrunk:
    """Empirical-Bayes observed / expected per group: a binomial GLMM with offset logit(p) and a random intercept.

    The intercepts' SD is fitted by marginal maximum likelihood (Gauss–Hermite quadrature); each group's
    posterior of its intercept (on a fine grid) gives the posterior mean of observed / expected and its
    central ``confidence`` interval.
    """
    from scipy.optimize import minimize_scalar
    from scipy.special import logsumexp

    y, offset = np.asarray(y, dtype=float), _logit(np.asarray(p, dtype=float))
    codes, group = np.unique(group, return_inverse=True)
    n_groups = codes.size
    nodes, weights = np.polynomial.hermite.hermgauss(_NODES)
    log_w = np.log(weights) - 0.5 * math.log(math.pi)

    def minus_marginal(log_sd: float) -> float:
        u = math.sqrt(2.0) * math.exp(log_sd) * nodes
        return -float(logsumexp(_group_loglik(y, offset, group, n_groups, u) + log_w[None, :], axis=1).sum())

    best = minimize_scalar(minus_marginal, bounds=(math.log(1e-3), math.log(3.0)), method="bounded")
    sd = math.exp(float(best.x))
    if minus_marginal(math.log(1e-3)) <= best.fun + 1e-6:
        sd = 0.0  # no spread between the groups beyond chance
    grid = np.linspace(-4.0, 4.0, 801)
    log_post = _group_loglik(y, offset, group, n_groups, grid)
    log_post += -0.5 * (grid / sd) ** 2 if sd > 0 else np.where(np.abs(grid) < 1e-12, 0.0, -np.inf)[None, :]
    post = np.exp(log_post - log_post.max(axis=1, keepdims=True))
    post /= post.sum(axis=1, keepdims=True)
    # Each group's ratio at each shift: its expected wins with the shift over those without.
    expected = np.bincount(group, weights=_expit(offset), minlength=n_groups)
    ratio_at = np.zeros((n_groups, grid.size))
    np.add.at(ratio_at, group, _expit(offset[:, None] + grid[None, :]))
    ratio_at /= expected[:, None]
    cdf = post.cumsum(axis=1)
    alpha = (1 - confidence) / 2
    low_i = np.argmax(cdf >= alpha, axis=1)
    high_i = np.argmax(cdf >= 1 - alpha, axis=1)
    rows = np.arange(n_groups)
    return Shrunk(
        ratio=(post * ratio_at).sum(axis=1),
        low=ratio_at[rows, low_i],
        high=ratio_at[rows, high_i],
        shift=(post * grid[None, :]).sum(axis=1),
        sd=sd,
    )


# --- the opportunities and their reference probabilities ---------------------------------------------


def opportunity_owners(dataset: Dataset) -> pl.DataFrame:
    """Who works each opportunity: ``opportunity_id, owner, team``.

    The first owner and team its events name; a team the events do not give comes from the owners table.
    """
    events = dataset.tables["stage_events"].sort(s.ENTERED_AT)
    columns = [c for c in (s.OWNER, s.TEAM) if c in events.columns]
    frame = events.group_by(s.OPPORTUNITY_ID).agg(pl.col(c).drop_nulls().first() for c in columns)
    for column in (s.OWNER, s.TEAM):
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(column))
    if dataset.has("owners") and s.TEAM in dataset.tables["owners"].columns:
        owners = dataset.tables["owners"].select(s.OWNER, pl.col(s.TEAM).alias("_team"))
        frame = frame.join(owners, on=s.OWNER, how="left").with_columns(pl.coalesce(s.TEAM, "_team").alias(s.TEAM))
        frame = frame.drop("_team")
    return frame.select(s.OPPORTUNITY_ID, s.OWNER, s.TEAM)


def assignments(dataset: Dataset, *, end: datetime | None = None) -> pl.DataFrame:
    """One row per opportunity: when and to whom it was assigned, its features then, and how it ended.

    Columns: the opportunity's first-entry transition row (stage, entered_at, features as of then),
    ``owner``, ``team`` (the stage events' own, else the owners table's), ``won`` (by ``end``),
    ``lost``, ``closed_at``, ``won_amount`` (the won event's amount, else the deal's).
    """
    events = dataset.lazy("stage_events")
    spec = dataset.spec
    end = end or data_end(events)
    names = events.collect_schema().names()
    events = with_stale_losses(events.filter(pl.col(s.ENTERED_AT) <= end), spec, end=end)
    first = build_transitions(events, spec, end=end).filter(pl.col(s.ENTRY) == 1)
    first = first.sort(s.ENTERED_AT, s.OPPORTUNITY_ID).unique(s.OPPORTUNITY_ID, keep="first", maintain_order=True)
    closed = events.filter(pl.col(s.STAGE).is_in([spec.won, spec.lost])).sort(s.ENTERED_AT)
    ends = closed.group_by(s.OPPORTUNITY_ID).agg(
        (pl.col(s.STAGE) == spec.won).any().alias("won"),
        pl.col(s.ENTERED_AT).first().alias("closed_at"),
        (pl.col(s.AMOUNT).filter(pl.col(s.STAGE) == spec.won).first() if s.AMOUNT in names else pl.lit(None))
        .cast(pl.Float64)
        .alias("_won_amount"),
    )
    id_type = first.collect_schema()[s.OPPORTUNITY_ID]
    who = opportunity_owners(dataset).lazy().with_columns(pl.col(s.OPPORTUNITY_ID).cast(id_type))
    rows = build_transition_features(dataset, first).join(who, on=s.OPPORTUNITY_ID, how="left")
    rows = rows.join(ends, on=s.OPPORTUNITY_ID, how="left").with_columns(
        pl.col("won").fill_null(False),
        (pl.col("won").fill_null(True).not_()).alias("lost"),
        as_days(pl.lit(end) - pl.col(s.ENTERED_AT)).alias("days_observed"),
    )
    amount = (
        pl.coalesce("_won_amount", "deal_amount")
        if "deal_amount" in rows.collect_schema().names()
        else pl.col("_won_amount")
    )
    rows = rows.with_columns(pl.when(pl.col("won")).then(amount).alias("won_amount")).drop("_won_amount")
    frame = rows.collect()
    return frame.sort(s.ENTERED_AT, s.OPPORTUNITY_ID)


@dataclass(frozen=True)
class Reference:
    """The reference (owner-blind) probabilities of winning, and how good the model behind them is."""

    probability: np.ndarray
    engine: str
    features: tuple[str, ...]
    metrics: dict[str, float]
    shift: float
    note: str


def reference_probabilities(dataset: Dataset, frame: pl.DataFrame, *, seed: int = 0, folds: int = 5) -> Reference:
    """Cross-fitted P(won by the data's end) at assignment, blind to owner, team and activities."""
    y = frame["won"].to_numpy().astype(float)
    if frame.height < MIN_DEALS or y.sum() < 5 or y.sum() > y.size - 5:
        rate = float(y.mean()) if y.size else math.nan
        note = (
            f"{frame.height:,} opportunities, {int(y.sum()):,} won: too few for a model, so every lead counts "
            f"as the overall win rate ({rate:.1%}) and observed / expected is the win rate against it."
        )
        return Reference(np.full(y.size, rate), "overall rate", (), {}, 0.0, note)
    extra = [c for c in extra_features(dataset) if c not in NOT_FEATURES]
    features = [
        c for c in feature_columns(frame, extra=extra) if c not in NOT_FEATURES and frame[c].null_count() < frame.height
    ]
    features.append("days_observed")
    encoder = FeatureEncoder.fit(frame, features, categorical_features(frame, features))
    X = encoder.matrix(frame)
    p = cross_fitted(X, y, encoder, fold_of(frame[s.OPPORTUNITY_ID], folds, seed), seed=seed)
    # Calibration in the large: expected wins add up to the observed wins over everyone.
    from scipy.optimize import brentq

    base = _logit(p)
    shift = float(brentq(lambda b: float(_expit(base + b).sum() - y.sum()), -10, 10, xtol=1e-8))
    p = _expit(base + shift)
    metrics = binary_metrics(y, p)
    note = (
        f"Expected wins come from LightGBM fitted on {frame.height:,} opportunities ({int(y.sum()):,} won), "
        f"cross-fitted in {folds} folds by opportunity, blind to owner, team and activities; out-of-fold ROC AUC "
        f"{metrics['roc_auc']:.3f}. Its log-odds were shifted by {shift:+.3f} so that expected wins add up to the "
        "observed wins."
    )
    return Reference(p, "lightgbm", tuple(features), metrics, shift, note)


# --- per rep and team -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RepPerformance:
    """Observed against expected wins per rep and team, with shrinkage and the stability of both rankings."""

    reps: pl.DataFrame
    teams: pl.DataFrame
    stability: dict[str, float]
    reference: Reference
    skill_sd: float
    window: tuple[datetime, datetime]
    opportunities: pl.DataFrame = field(repr=False)
    notes: tuple[str, ...] = ()

    def __repr__(self) -> str:
        """``RepPerformance(20 owners, 4 teams, 2024-07-01 … 2026-06-30; split-half Spearman …)``."""
        st = self.stability
        return (
            f"RepPerformance({self.reps.height} owners, {self.teams.height} teams, "
            f"{self.window[0]:%Y-%m-%d} … {self.window[1]:%Y-%m-%d}; split-half Spearman shrunk "
            f"{st.get('shrunk', math.nan):.2f}, raw {st.get('raw', math.nan):.2f})"
        )


def _table(frame: pl.DataFrame, key: str) -> pl.DataFrame:
    """Counts, raw rate, revenue, cycle time, expected wins and the exact interval of observed / expected per key."""
    decided = pl.col("won") | pl.col("lost")
    cycle = as_days(pl.col("closed_at") - pl.col(s.ENTERED_AT)).filter(pl.col("won"))
    table = (
        frame.group_by(key)
        .agg(
            pl.len().alias("opportunities"),
            decided.sum().alias("decided"),
            pl.col("won").sum().alias("wins"),
            pl.col("won_amount").sum().alias("revenue"),
            cycle.median().alias("cycle_days"),
            pl.col("_p").sum().alias("expected_wins"),
            pl.col("_p"),
            pl.col("won").cast(pl.Int64).sum().alias("_w"),
        )
        .with_columns(
            (pl.col("wins") / pl.col("decided")).alias("win_rate"),
            (pl.col("wins") / pl.col("expected_wins")).alias("ratio"),
        )
    )
    bounds = [observed_expected_interval(int(w), np.asarray(p)) for w, p in zip(table["_w"], table["_p"], strict=True)]
    return table.with_columns(
        pl.Series("ratio_low", [b[0] for b in bounds], dtype=pl.Float64),
        pl.Series("ratio_high", [b[1] for b in bounds], dtype=pl.Float64),
    ).drop("_p", "_w")


def _ranked(frame: pl.DataFrame) -> tuple[pl.DataFrame, float]:
    table = _table(frame, s.OWNER)
    shrunk = shrink(frame["won"].to_numpy(), frame["_p"].to_numpy(), frame[s.OWNER].to_numpy())
    owners = np.unique(frame[s.OWNER].to_numpy())
    posterior = pl.DataFrame(
        {
            s.OWNER: owners,
            "shrunk_ratio": shrunk.ratio,
            "shrunk_ratio_low": shrunk.low,
            "shrunk_ratio_high": shrunk.high,
        },
        schema_overrides={s.OWNER: frame.schema[s.OWNER]},
    )
    return table.join(posterior, on=s.OWNER, how="left"), shrunk.sd


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 3:
        return math.nan
    return float(spearmanr(a[keep], b[keep]).statistic)


def _stability(frame: pl.DataFrame, start: datetime, end: datetime, min_decided: int) -> dict[str, float]:
    middle = start + (end - start) / 2
    halves = []
    for part in (frame.filter(pl.col(s.ENTERED_AT) < middle), frame.filter(pl.col(s.ENTERED_AT) >= middle)):
        if part.height == 0 or part[s.OWNER].n_unique() < 3:
            return {"raw": math.nan, "shrunk": math.nan, "owners": 0.0}
        table, _ = _ranked(part)
        halves.append(table.filter(pl.col("decided") >= min_decided).select(s.OWNER, "win_rate", "shrunk_ratio"))
    both = halves[0].join(halves[1], on=s.OWNER, suffix="_2")
    return {
        "raw": _spearman(both["win_rate"].to_numpy(), both["win_rate_2"].to_numpy()),
        "shrunk": _spearman(both["shrunk_ratio"].to_numpy(), both["shrunk_ratio_2"].to_numpy()),
        "owners": float(both.height),
        "split": middle.timestamp(),
    }


def rep_performance(
    dataset: Dataset,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    seed: int = 0,
    min_decided: int = 10,
) -> RepPerformance:
    """Per owner and team: opportunities, wins, raw win rate, revenue, cycle time, expected wins, observed / expected.

    Parameters
    ----------
    start, end : the opportunities judged are those assigned (first stage event) from ``start`` to ``end``
        (default: the whole data); outcomes count up to ``end``.
    min_decided : owners with fewer decided deals in a half are left out of the stability figure.

    Returns
    -------
    :class:`RepPerformance`. Columns of ``reps``: owner, team, opportunities, decided, wins, win_rate,
    revenue, cycle_days (median days to win), expected_wins, ratio (observed / expected) with ratio_low /
    ratio_high (exact 95%), shrunk_ratio with shrunk_ratio_low / shrunk_ratio_high (95% posterior). ``teams``: the same
    without shrinkage (teams have many deals).

    Raises
    ------
    ReportError (via the caller) when the stage events name no owner: check ``s.OWNER`` first.
    """
    events = dataset.lazy("stage_events")
    end = end or data_end(events)
    frame = assignments(dataset, end=end)
    if start is not None:
        frame = frame.filter(pl.col(s.ENTERED_AT) >= start)
    notes: list[str] = []
    unowned = frame.filter(pl.col(s.OWNER).is_null()).height
    if unowned:
        notes.append(f"{unowned:,} opportunities have no owner and are left out of the owners' table.")
    reference = reference_probabilities(dataset, frame, seed=seed)
    frame = frame.with_columns(pl.Series("_p", reference.probability))
    owned = frame.filter(pl.col(s.OWNER).is_not_null())
    reps, sd = _ranked(owned)
    first = frame[s.ENTERED_AT].min()
    window = (first if isinstance(first, datetime) else end, end)
    teams = _table(owned.with_columns(pl.col(s.TEAM).fill_null(s.MISSING_LABEL)), s.TEAM)
    team_of = owned.group_by(s.OWNER).agg(pl.col(s.TEAM).drop_nulls().mode().first())
    reps = reps.join(team_of, on=s.OWNER, how="left")
    order = [s.OWNER, s.TEAM, "opportunities", "decided", "wins", "win_rate", "revenue", "cycle_days", "expected_wins"]
    ratios = ["ratio", "ratio_low", "ratio_high", "shrunk_ratio", "shrunk_ratio_low", "shrunk_ratio_high"]
    return RepPerformance(
        reps=reps.select(*order, *ratios).sort("shrunk_ratio", descending=True),
        teams=teams.select(*[c for c in order if c != s.OWNER], *ratios[:3]).sort("ratio", descending=True),
        stability=_stability(owned, window[0], end, min_decided),
        reference=reference,
        skill_sd=sd,
        window=window,
        opportunities=frame.rename({"_p": "expected_win"}),
        notes=tuple(notes),
    )


def stability_text(performance: RepPerformance) -> str:
    """The split-half rank agreement of both rankings, in words."""
    st: dict[str, Any] = performance.stability
    if not st.get("owners"):
        return "Too few owners with deals in both halves of the window to judge how stable the rankings are."
    split = datetime.fromtimestamp(st["split"]).strftime("%d %B %Y").lstrip("0")
    return (
        f"Split at {split}, the ranking of the {int(st['owners'])} owners by shrunk observed / expected agrees "
        f"between the two halves with Spearman {st['shrunk']:.2f}; the ranking by raw win rate with {st['raw']:.2f}."
    )
