"""The forecast of a period: the value of deals won by its end, as a distribution, and its backtest.

Three parts add up (for the whole pipeline and per segment):

1. **closed** — deals already won in the period before the forecast moment (known);
2. **open** — each deal open at the moment is won by the period's end with its probability from the
   close-time model (:mod:`funnelmodels.models.hazard`); the sum of amount × Bernoulli is computed
   exactly on a fine grid of amounts (:func:`won_value_pmf`: each amount rounded to the grid, the
   worst-case effect of the rounding on any quantile is reported in money);
3. **not yet created** — new opportunities arrive at the rate of the last weeks (Poisson with the
   rate's own uncertainty, so a negative binomial count), each worth an amount drawn from recent
   won deals and won by the period's end with the share of fresh deals that win that fast
   (Aalen–Johansen from history); the compound sum is computed on the same grid by FFT.

Deals are taken as independent: one event that moves many deals at once (a price change, a lost
reseller) is not in the interval. The backtest (:func:`backtest_forecast`) measures how often the
80% interval held on past periods, beside the naive forecast (amount × the stage's historical win
rate).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from funnelmodels.data import schema as s
from funnelmodels.data.io import Dataset
from funnelmodels.errors import ConfigError, ModelError, did_you_mean
from funnelmodels.features import build_transition_features
from funnelmodels.frames import collect
from funnelmodels.funnel import build_transitions, data_end, with_stale_losses
from funnelmodels.models.backtest import dataset_before
from funnelmodels.models.hazard import (
    CloseEngine,
    CloseTimeModel,
    at_days,
    calibration_rows,
    calibration_table,
    fit_close_time,
    landmark_states,
    model_against_aalen_johansen,
)
from funnelmodels.models.persist import damaged_model, read_json

__all__ = [
    "ARRIVAL_WEEKS",
    "ForecastBacktest",
    "PeriodForecast",
    "backtest_forecast",
    "forecast_period",
    "won_value_pmf",
]

ARRIVAL_WEEKS = 26
"""Weeks of history the arrival rate of new opportunities is measured on."""
CELLS = 1 << 15
"""Grid cells of a won-value distribution: each amount is rounded to (support / CELLS)."""
LEVELS = (0.1, 0.5, 0.9)
ALL = "all"
MAX_LEAD_DAYS = 7
"""How long before a period's start a forecast of it may be made (the data ending just before it)."""
CHECK_DAYS = (30, 60, 90)
"""Days after a backtest origin at which P(won by then) is checked."""


# -- distributions on a grid ------------------------------------------------------------------------


@dataclass(frozen=True)
class ValueDistribution:
    """A distribution of money: ``offset`` + U × (a value on the grid 0, step, 2·step, … with P = pmf).

    U is a common factor with mean 1 and variance ``spread`` (a Gamma; U = 1 when ``spread`` is 0): what
    moves many deals at once, measured on past periods (:func:`period_spread`). ``rounding``: the most
    the rounding of amounts to the grid can move any quantile (money). ``mean``: the exact mean (from
    the amounts as they are, not rounded).
    """

    offset: float
    step: float
    pmf: np.ndarray
    mean: float
    rounding: float = 0.0
    spread: float = 0.0

    @property
    def independent_variance(self) -> float:
        """The variance of the grid part alone (U = 1): what independent deals give."""
        x = np.arange(self.pmf.size) * self.step
        p = self.pmf / self.pmf.sum()
        centre = float((p * x).sum())
        return float((p * (x - centre) ** 2).sum())

    @cached_property
    def _factors(self) -> np.ndarray:
        if self.spread <= 0:
            return np.ones(1)
        from scipy.stats import gamma

        shape = 1.0 / self.spread
        nodes: np.ndarray = gamma.ppf((np.arange(MIXTURE_NODES) + 0.5) / MIXTURE_NODES, a=shape, scale=1.0 / shape)
        return nodes

    @cached_property
    def _cumulative(self) -> np.ndarray:
        cumulative: np.ndarray = np.cumsum(self.pmf) / self.pmf.sum()
        return cumulative

    def cdf(self, values: np.ndarray | float) -> np.ndarray:
        """P(value ≤ ``values``)."""
        cdf = self._cumulative
        cells = np.arange(cdf.size, dtype=float)
        x = (np.atleast_1d(np.asarray(values, dtype=float)) - self.offset) / max(self.step, 1e-12)
        parts = [np.interp(np.floor(x / u + 1e-9), cells, cdf, left=0.0, right=1.0) for u in self._factors]
        mixed: np.ndarray = np.mean(parts, axis=0)
        return mixed

    def quantile(self, q: float) -> float:
        """The smallest value whose cumulative probability reaches ``q``."""
        if self.spread <= 0:
            i = int(np.searchsorted(self._cumulative, q - 1e-12, side="left"))
            return self.offset + min(i, self.pmf.size - 1) * self.step
        # With the common factor: bisection on the value, to a hundredth of a grid cell.
        low, high = self.offset, self.offset + self.pmf.size * self.step * float(self._factors.max())
        while high - low > self.step / 100:
            middle = (low + high) / 2
            if self.cdf(middle)[0] >= q - 1e-12:
                high = middle
            else:
                low = middle
        return high

    def at_least(self, value: float) -> float:
        """P(value ≥ ``value``)."""
        if value <= self.offset:
            return 1.0
        below = value - max(self.step, 1e-12) * 1e-6
        return float(1.0 - self.cdf(below)[0])


MIXTURE_NODES = 41
"""Points of the common factor's distribution the mixture is averaged over."""


LEAF_CELLS = 4096
"""Cells of a leaf of the product tree in :func:`won_value_pmf`: deals are added one at a time up to it."""


def won_value_pmf(amounts: np.ndarray, probabilities: np.ndarray, step: float, cells: int) -> tuple[np.ndarray, float]:
    """The distribution of Σ amount × Bernoulli(p) on the grid 0, step, 2·step, … (``cells`` long).

    Each amount is rounded to the nearest multiple of ``step``; the result is exact for the rounded
    amounts (to the floating-point error of a Fourier transform, about 1e-15 of the largest
    probability). Mass beyond the grid is cut and its size returned (choose ``cells`` so that it is
    negligible).

    The deals are sorted by amount and cut into leaves whose amounts add up to at most
    :data:`LEAF_CELLS` cells; within a leaf they are added one at a time (P_new[i] = (1 − p) P[i] +
    p P[i − k]) on an array as long as the leaf's reach, and the leaves are multiplied pairwise by FFT,
    each product cut at ``cells``. Deals bigger than a leaf are added one at a time to the product.
    The work follows the total of the rounded amounts rather than deals × cells (112,000 deals on a
    32,768-cell grid: 0.6 s instead of 10 s).

    Returns
    -------
    (pmf, mass cut beyond the grid)
    """
    p = np.asarray(probabilities, dtype=float)
    k = np.rint(np.asarray(amounts, dtype=float) / step).astype(np.int64) if step > 0 else np.zeros(p.size, np.int64)
    keep = (p > 1e-12) & (k > 0)
    k, p = k[keep], p[keep]
    beyond = k >= cells
    never = float(np.prod(1.0 - p[beyond]))  # a deal past the grid adds only the chance it is not won
    k, p = k[~beyond], p[~beyond]
    order = np.argsort(k, kind="stable")
    k, p = k[order], p[order]
    small = k <= LEAF_CELLS
    leaves = _leaves(k[small], p[small], cells)
    pmf = _tree_product(leaves, cells) if leaves else np.ones(1)
    pmf = np.pad(pmf, (0, cells - pmf.size)) if pmf.size < cells else pmf[:cells]
    for ki, pi in zip(k[~small], p[~small], strict=True):
        shifted = pmf[: cells - ki] * pi
        pmf *= 1 - pi
        pmf[ki:] += shifted
    pmf = pmf * never
    return pmf, max(0.0, 1.0 - float(pmf.sum()))


def _leaves(k: np.ndarray, p: np.ndarray, cells: int) -> list[np.ndarray]:
    """Deals (sorted by ``k``) added one at a time in runs whose ``k`` add up to at most a leaf."""
    if k.size == 0:
        return []
    run = np.cumsum(k) // LEAF_CELLS
    cuts = np.flatnonzero(np.diff(run)) + 1
    out = []
    for ks, ps in zip(np.split(k, cuts), np.split(p, cuts), strict=True):
        size = min(int(ks.sum()) + 1, cells)
        leaf = np.zeros(size)
        leaf[0] = 1.0
        reach = 1
        for ki, pi in zip(ks.tolist(), ps.tolist(), strict=True):
            reach = min(reach + ki, size)
            if ki < reach:
                shifted = leaf[: reach - ki] * pi
                leaf[:reach] *= 1 - pi
                leaf[ki:reach] += shifted
            else:
                leaf[:reach] *= 1 - pi
        out.append(leaf)
    return out


def _tree_product(parts: list[np.ndarray], cells: int) -> np.ndarray:
    """The product of polynomials (coefficient arrays), cut at ``cells``: pairwise, by FFT."""
    while len(parts) > 1:
        paired = [_fft_product(parts[i], parts[i + 1], cells) for i in range(0, len(parts) - 1, 2)]
        parts = paired + ([parts[-1]] if len(parts) % 2 else [])
    return parts[0]


def _fft_product(a: np.ndarray, b: np.ndarray, cells: int) -> np.ndarray:
    n = min(a.size + b.size - 1, cells)
    size = 1 << int(np.ceil(np.log2(a.size + b.size - 1)))
    out = np.fft.irfft(np.fft.rfft(a, size) * np.fft.rfft(b, size), size)[:n]
    return np.clip(out, 0.0, None)


def _support(amounts: np.ndarray, p: np.ndarray, extra_mean: float = 0.0, extra_sd: float = 0.0) -> float:
    """An upper end beyond which the sum has (far) less than 1e-9 of its mass (Bernstein's bound)."""
    mean = float((amounts * p).sum()) + extra_mean
    sd = float(np.sqrt((amounts**2 * p * (1 - p)).sum() + extra_sd**2))
    biggest = float(amounts.max()) if amounts.size else 0.0
    # P(X - mean > t) <= exp(-t^2 / (2 (var + biggest t / 3))) <= 1e-9 when t solves the quadratic.
    c = 2 * np.log(1e9)
    t = (c * biggest / 3 + np.sqrt((c * biggest / 3) ** 2 + 4 * c * sd**2)) / 2
    return float(min(float(amounts.sum()) + extra_mean + 12 * extra_sd, mean + t + biggest) + 1.0)


# -- arrivals of new opportunities -------------------------------------------------------------------

TEMPLATES = 200
"""Recently created deals whose state at creation stands for the deals not yet created."""


@dataclass
class Arrivals:
    """New opportunities of one segment: how many will come, what they are like, how many win in time.

    The count over ``days`` is Poisson with a rate that is itself uncertain: a Gamma with ``shape``
    (opportunities counted + ½) over ``weeks`` (the weeks they were counted in), so a negative
    binomial. Each new deal is like one of the ``templates`` (recently created deals, in their state
    at creation: customer, source, amount) created at a moment spread evenly over the days left, and
    is won by the end with the close-time model's probability for it — which knows where in the
    quarter it falls.
    """

    shape: float
    weeks: float
    model: CloseTimeModel
    templates: pl.DataFrame
    as_of: datetime
    _cache: dict[float, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def weekly_rate(self) -> float:
        """The mean number of new opportunities per week."""
        return self.shape / self.weeks

    def values(self, days: float) -> tuple[np.ndarray, np.ndarray]:
        """Each template's amount and its P(won by the end) when created over the next ``days``."""
        key = round(float(days), 6)
        if key not in self._cache:
            amounts = self.templates[s.AMOUNT].cast(pl.Float64).fill_null(0.0).to_numpy()
            if days <= 0 or self.templates.height == 0:
                self._cache[key] = (amounts, np.zeros(amounts.size))
            else:
                # Creation moments at the middles of (up to) six equal slices of the days left.
                slices = min(6, max(1, int(np.ceil(days / 7))))
                offsets = (np.arange(slices) + 0.5) * days / slices
                won = np.zeros(amounts.size)
                for offset in offsets:
                    moved = self.templates.with_columns(
                        pl.lit(self.as_of + timedelta(days=float(offset))).cast(pl.Datetime("us")).alias(s.AS_OF)
                    )
                    won_c, lost_c = self.model.curves(moved)
                    won += at_days(self.model.edges, won_c, lost_c, days - offset)[0]
                self._cache[key] = (amounts, won / offsets.size)
        return self._cache[key]

    def moments(self, days: float) -> tuple[float, float]:
        """Mean and standard deviation of the value won from deals created in the next ``days``."""
        amounts, q = self.values(days)
        if days <= 0 or amounts.size == 0:
            return 0.0, 0.0
        m = self.weekly_rate * days / 7
        ex, ex2 = float((q * amounts).mean()), float((q * amounts**2).mean())
        # Compound negative binomial: Var = E[N] E[X²] + (Var N − E[N]) E[X]², Var N = m + m² / shape.
        var = m * ex2 + (m**2 / self.shape) * ex**2
        return m * ex, float(np.sqrt(var))

    def biggest(self) -> float:
        """The largest amount a new deal can bring."""
        if self.templates.height == 0:
            return 0.0
        top = self.templates[s.AMOUNT].cast(pl.Float64).max()
        return float(top) if isinstance(top, int | float) else 0.0

    def pmf(self, days: float, step: float, cells: int) -> np.ndarray:
        """The distribution of the value won from deals created in the next ``days``, on the grid (by FFT)."""
        out = np.zeros(cells)
        out[0] = 1.0
        amounts, q = self.values(days)
        if days <= 0 or amounts.size == 0:
            return out
        size = 1 << int(np.ceil(np.log2(2 * cells)))
        one = np.zeros(size)
        k = np.clip(np.rint(amounts / step).astype(np.int64), 0, size - 1)
        np.add.at(one, k, q / amounts.size)
        one[0] += 1 - q.mean()
        phi = np.fft.rfft(one)
        scale = (days / 7) / self.weeks
        # The count is Poisson with a Gamma(shape, weeks) rate: its generating function at phi.
        values = np.fft.irfft((1 + scale * (1 - phi)) ** (-self.shape), n=size)
        values = np.clip(values[:cells], 0.0, None)
        normalised: np.ndarray = values / values.sum()
        return normalised


def _templates(known: Dataset, as_of: datetime, since: datetime | None, segments: pl.LazyFrame | None) -> pl.DataFrame:
    """The most recently created deals, each in its state at creation, with its features then."""
    events = known.lazy("stage_events").filter(pl.col(s.ENTERED_AT) < as_of)
    entries = build_transitions(events, known.spec, end=as_of).filter(
        pl.col(s.ENTERED_AT) == pl.col(s.OPPORTUNITY_START)
    )
    if since is not None:
        entries = entries.filter(pl.col(s.ENTERED_AT) >= since)
    first = (
        entries.sort(s.ENTERED_AT, s.OPPORTUNITY_ID)
        .unique(s.OPPORTUNITY_ID, keep="first")
        .sort(s.ENTERED_AT, s.OPPORTUNITY_ID)
        .tail(TEMPLATES * 10)
        .with_columns(pl.col(s.ENTERED_AT).alias(s.AS_OF))
        .pipe(collect)
    )
    if segments is not None:
        first = first.join(segments.pipe(collect), on=s.OPPORTUNITY_ID, how="left")
    else:
        first = first.with_columns(pl.lit(ALL).alias("segment"))
    first = first.with_columns(pl.col("segment").fill_null("(none)"))
    return build_transition_features(known, first.lazy()).pipe(collect)


def _segment_values(dataset: Dataset, by: str) -> tuple[pl.LazyFrame, str]:
    """``opportunity_id, segment`` and where the column comes from (stage events or customers)."""
    events = dataset.lazy("stage_events")
    names = events.collect_schema().names()
    if by in names:
        frame = events.sort(s.ENTERED_AT).group_by(s.OPPORTUNITY_ID).agg(pl.col(by).first())
        return frame.select(s.OPPORTUNITY_ID, pl.col(by).cast(pl.String).alias("segment")), "stage_events"
    if dataset.has("customers"):
        customers = dataset.lazy("customers")
        if by in customers.collect_schema().names():
            opp = events.group_by(s.OPPORTUNITY_ID).agg(pl.col(s.CUSTOMER_ID).first())
            joined = opp.join(customers.select(s.CUSTOMER_ID, by), on=s.CUSTOMER_ID, how="left")
            return joined.select(s.OPPORTUNITY_ID, pl.col(by).cast(pl.String).alias("segment")), "customers"
        names = names + customers.collect_schema().names()
    raise ConfigError(
        f"forecast segment {by!r} is neither a stage_events nor a customers column{did_you_mean(by, names)}."
    )


def fit_arrivals(
    known: Dataset,
    model: CloseTimeModel,
    as_of: datetime,
    *,
    weeks: int = ARRIVAL_WEEKS,
    segments: pl.LazyFrame | None = None,
    since: datetime | None = None,
) -> dict[str, Arrivals]:
    """The arrival model of new opportunities per segment (``"all"`` without segments), from the weeks before ``as_of``.

    ``since``: count from no earlier than this (the close-time model's first landmark).
    """
    events = known.lazy("stage_events").filter(pl.col(s.ENTERED_AT) < as_of)
    first = events.select(pl.col(s.ENTERED_AT).min()).pipe(collect).item()
    origin = max(first, since) if first is not None and since is not None else first
    span = min(float(weeks), (as_of - origin).total_seconds() / 604_800) if origin is not None else 0.0
    if span < 1:
        return {}
    starts = events.group_by(s.OPPORTUNITY_ID).agg(pl.col(s.ENTERED_AT).min().alias("_start"))
    starts = starts.filter(pl.col("_start") >= as_of - timedelta(weeks=span))
    if segments is not None:
        starts = starts.join(segments, on=s.OPPORTUNITY_ID, how="left")
    else:
        starts = starts.with_columns(pl.lit(ALL).alias("segment"))
    counts = dict(starts.group_by(pl.col("segment").fill_null("(none)")).agg(pl.len()).pipe(collect).iter_rows())
    templates = _templates(known, as_of, since, segments)
    out = {}
    for segment, n in sorted(counts.items()):
        mine = templates.filter(pl.col("segment") == segment)
        # A segment with few deals of its own borrows the most recent deals of all.
        chosen = mine.tail(TEMPLATES) if mine.height >= 30 else templates.tail(TEMPLATES)
        out[segment] = Arrivals(float(n) + 0.5, span, model, chosen, as_of)
    return out


# -- the forecast of a period ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PeriodForecast:
    """The forecast of the value of deals won in ``[start, end)``, made at ``as_of``.

    ``table``: per segment (and ``all``) ``segment, closed, open_deals, open_mean, new_mean, mean,
    p10, p50, p90, target, p_target, rounding``. ``deals``: each open deal with ``p_won_by_end,
    p_lost_by_end, p_open_at_end, p_won_in_horizon, expected_close``. ``fan``: per day checked
    (weekly) the total's ``p10, p50, p90`` and the closed value so far. ``slipped``: open deals
    whose expected close was inside the period at ``compared_at`` and is now after its end.
    """

    start: datetime
    end: datetime
    as_of: datetime
    by: str | None
    table: pl.DataFrame
    deals: pl.DataFrame
    fan: pl.DataFrame
    slipped: pl.DataFrame
    compared_at: datetime | None
    notes: list[str] = field(default_factory=list)
    distributions: dict[str, ValueDistribution] = field(default_factory=dict, repr=False)

    @property
    def total(self) -> dict[str, Any]:
        """The ``all`` row of :attr:`table`."""
        return self.table.filter(pl.col("segment") == ALL).row(0, named=True)


def _won_before(dataset: Dataset, start: datetime, stop: datetime, segments: pl.LazyFrame | None) -> pl.DataFrame:
    """``segment, closed``: the value of deals won in ``[start, stop)``."""
    events = dataset.lazy("stage_events")
    amount = pl.col(s.AMOUNT) if s.AMOUNT in events.collect_schema().names() else pl.lit(0.0)
    won = (
        events.filter(pl.col(s.STAGE) == dataset.spec.won)
        .group_by(s.OPPORTUNITY_ID)
        .agg(pl.col(s.ENTERED_AT).min(), amount.first().cast(pl.Float64).alias("_amount"))
        .filter(pl.col(s.ENTERED_AT).is_between(start, stop, closed="left"))
    )
    won = (
        won.join(segments, on=s.OPPORTUNITY_ID, how="left")
        if segments is not None
        else won.with_columns(pl.lit(ALL).alias("segment"))
    )
    return (
        won.group_by(pl.col("segment").fill_null("(none)"))
        .agg(pl.col("_amount").fill_null(0).sum().alias("closed"))
        .pipe(collect)
    )


def _expected_close(model: CloseTimeModel, won: np.ndarray, lost: np.ndarray) -> np.ndarray:
    """Days until P(closed, won or lost) reaches 50% (NaN when not within the model's horizon)."""
    closed = won + lost
    edges = np.concatenate([[0.0], model.edges])
    c = np.concatenate([np.zeros((closed.shape[0], 1)), closed], axis=1)
    out = np.full(closed.shape[0], np.nan)
    reached = c[:, -1] >= 0.5
    idx = np.argmax(c >= 0.5, axis=1)
    rows = np.flatnonzero(reached)
    j = idx[rows]
    lo, hi = c[rows, j - 1], c[rows, j]
    frac = np.where(hi > lo, (0.5 - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0)
    out[rows] = edges[j - 1] + frac * (edges[j] - edges[j - 1])
    return out


def forecast_period(
    dataset: Dataset,
    model: CloseTimeModel,
    *,
    start: datetime,
    end: datetime,
    as_of: datetime | None = None,
    by: str | None = None,
    targets: Mapping[str, float] | None = None,
    arrival_weeks: int = ARRIVAL_WEEKS,
    fan: bool = True,
    slip_days: int = 28,
    spread: float = 0.0,
    spread_measured: bool = False,
) -> PeriodForecast:
    """The value of deals won in ``[start, end)``: closed + open + not yet created, as a distribution.

    Parameters
    ----------
    as_of : the forecast moment (default: the period's start, or the data's end if that is later
        and within the period). The data after it is not used.
    by : a stage_events or customers column to break the forecast down by (e.g. ``region``).
    targets : the period's won-value target per segment (``"all"`` for the whole), for P(target).
    fan : also compute the weekly fan (P10–P90 of the value won by each week's end).
    slip_days : the slip list compares with the forecast made this many days before ``as_of`` (or at
        the period's start when that is earlier).
    spread : the variance of a common factor multiplying the uncertain part (what moves many deals at
        once), measured by the backtest on past periods (:attr:`ForecastBacktest.spread`); 0 takes the
        deals as independent. ``spread_measured``: a backtest measured it (a 0 then means it found none).
    """
    if end <= start:
        raise ConfigError(f"the forecast period must end after it starts ({start:%Y-%m-%d} – {end:%Y-%m-%d}).")
    events = dataset.lazy("stage_events")
    last = data_end(events)
    as_of = as_of or (min(last, end) if last > start else start)
    if as_of > end:
        raise ModelError(f"the forecast moment {as_of:%Y-%m-%d} is after the period's end {end:%Y-%m-%d}.")
    if as_of < start - timedelta(days=MAX_LEAD_DAYS):
        raise ModelError(
            f"the forecast moment {as_of:%Y-%m-%d} is {(start - as_of).days} days before the period starts "
            f"({start:%Y-%m-%d}): forecast a period that starts within {MAX_LEAD_DAYS} days of the data's end "
            "(or of --as-of)."
        )
    known = dataset_before(dataset, as_of)
    segments = _segment_values(known, by)[0] if by else None
    notes: list[str] = []
    days_left = (end - as_of).total_seconds() / 86_400
    compared_at = max(start, as_of - timedelta(days=slip_days)) if as_of > start else as_of - timedelta(days=slip_days)
    # The deals open now and a slip period ago, in one pass over the history.
    both = landmark_states(known, [compared_at, as_of], end=as_of)
    states, earlier = both.filter(pl.col(s.AS_OF) == as_of), both.filter(pl.col(s.AS_OF) == compared_at)
    del both
    if segments is not None:
        states = states.join(segments.pipe(collect), on=s.OPPORTUNITY_ID, how="left")
    else:
        states = states.with_columns(pl.lit(ALL).alias("segment"))
    states = states.with_columns(pl.col("segment").fill_null("(none)"))
    won_c, lost_c = model.curves(states) if states.height else (np.zeros((0, model.edges.size)),) * 2
    p_won, p_lost, p_open = at_days(model.edges, won_c, lost_c, days_left)
    if as_of < start:
        # The data ends just before the period: what is won before it starts does not count.
        p_won = p_won - at_days(model.edges, won_c, lost_c, (start - as_of).total_seconds() / 86_400)[0]
    amount = (
        states[s.AMOUNT].cast(pl.Float64).fill_null(0.0).to_numpy()
        if s.AMOUNT in states.columns
        else np.zeros(states.height)
    )
    if s.AMOUNT in states.columns and states[s.AMOUNT].null_count():
        notes.append(f"{states[s.AMOUNT].null_count():,} open deals have no amount: they add nothing to the value.")
    if days_left > model.horizon_days:
        notes.append(
            f"The period ends {days_left:.0f} days after the forecast moment, beyond the close-time model's "
            f"{model.horizon_days:.0f} days: deals still open then are taken as not won in the period."
        )
    if spread <= 0 and spread_measured:
        notes.append(
            "The backtest of past periods found no swing beyond what independent deals give: the range takes "
            "deals as independent."
        )
    elif spread <= 0:
        notes.append(
            "The interval takes deals as independent: nothing measured yet says how much they move together "
            "(the backtest of past periods does), so it is likely too narrow."
        )
    closed = _won_before(dataset, start, as_of, segments)
    since = model.metadata.get("landmarks_from")
    arrivals = fit_arrivals(
        known,
        model,
        as_of,
        weeks=arrival_weeks,
        segments=segments,
        since=datetime.fromisoformat(since) if since else None,
    )
    if not arrivals:
        notes.append(
            "Too little history to measure how fast new opportunities arrive: deals not yet created are left out."
        )
    seg_values = states["segment"].to_numpy()
    names = sorted(set(seg_values.tolist()) | set(closed["segment"].to_list()) | set(arrivals))
    closed_by = dict(closed.iter_rows())
    rows, dists = [], {}
    groups = [(ALL, np.ones(states.height, dtype=bool))]
    if by is not None:
        groups += [(name, seg_values == name) for name in names]
    for name, mask in groups:
        if name == ALL and by is not None:
            new_parts = list(arrivals.values())
            done = float(sum(closed_by.values()))
        else:
            new_parts = [arrivals[name]] if name in arrivals else []
            done = float(closed_by.get(name, 0.0))
        dist = _distribution(amount[mask], p_won[mask], new_parts, days_left, done, spread=spread)
        dists[name] = dist
        target = (targets or {}).get(name)
        new_mean = sum(a.moments(days_left)[0] for a in new_parts)
        rows.append(
            {
                "segment": name,
                "closed": done,
                "open_deals": int(mask.sum()),
                "open_mean": float((amount[mask] * p_won[mask]).sum()),
                "new_mean": new_mean,
                "mean": dist.mean,
                **{f"p{int(q * 100)}": dist.quantile(q) for q in LEVELS},
                "target": target,
                "p_target": dist.at_least(target) if target is not None else None,
                "rounding": dist.rounding,
            }
        )
    table = pl.DataFrame(rows, schema_overrides={"target": pl.Float64, "p_target": pl.Float64}).with_columns(
        pl.lit(spread).alias("spread")
    )
    close_days = _expected_close(model, won_c, lost_c)
    horizon = at_days(model.edges, won_c, lost_c, model.horizon_days)[0]
    deals = (
        states.select(s.OPPORTUNITY_ID, s.CUSTOMER_ID, "segment", s.STAGE, s.ENTERED_AT, s.OPPORTUNITY_START)
        .with_columns(
            pl.Series(s.AMOUNT, amount),
            pl.Series("p_won_by_end", p_won),
            pl.Series("p_lost_by_end", p_lost),
            pl.Series("p_open_at_end", p_open),
            pl.Series("p_won_in_horizon", horizon),
            pl.Series("expected_value_in_period", amount * p_won),
            (
                pl.lit(as_of)
                + pl.duration(seconds=pl.lit(pl.Series(np.nan_to_num(close_days, nan=-1) * 86_400).cast(pl.Int64)))
            ).alias("expected_close"),
        )
        .with_columns(
            pl.when(pl.Series(np.isnan(close_days)))
            .then(None)
            .otherwise(pl.col("expected_close"))
            .alias("expected_close")
        )
    )
    if by is None:
        deals = deals.drop("segment")
    deals = deals.sort("expected_value_in_period", s.OPPORTUNITY_ID, descending=[True, False])
    fan_table = (
        _fan(model, amount, won_c, lost_c, arrivals, float(closed["closed"].sum()), end, as_of, spread)
        if fan
        else pl.DataFrame()
    )
    slipped = _slipped(earlier, model, deals, compared_at, end)
    return PeriodForecast(start, end, as_of, by, table, deals, fan_table, slipped, compared_at, notes, dists)


def _distribution(
    amounts: np.ndarray,
    p: np.ndarray,
    arrivals: Sequence[Arrivals],
    days: float,
    closed: float,
    cells: int = CELLS,
    spread: float = 0.0,
) -> ValueDistribution:
    """Closed + Σ open amount × Bernoulli(p) + the won value of new deals, on one grid."""
    parts = [a.moments(days) for a in arrivals]
    new_mean = sum(m for m, _ in parts)
    new_sd = float(np.sqrt(sum(sd**2 for _, sd in parts)))
    biggest_new = max((a.biggest() for a in arrivals), default=0.0)
    upper = _support(amounts, p, new_mean, new_sd) + biggest_new
    step = upper / cells if upper > 1 else 1.0
    open_pmf, _ = won_value_pmf(amounts, p, step, cells)
    total = open_pmf
    for a in arrivals:
        total = _fft_product(total, a.pmf(days, step, cells), cells)
    # Worst case: every open deal's rounding one way, plus half a cell per new deal expected to be won.
    new_wins = sum(a.weekly_rate * days / 7 * float(a.values(days)[1].mean()) for a in arrivals)
    rounding = float(np.abs(amounts - np.rint(amounts / step) * step).sum()) + step / 2 * new_wins
    mean = closed + float((amounts * p).sum()) + new_mean
    return ValueDistribution(closed, step, total / total.sum(), mean, rounding, spread)


def _fan(
    model: CloseTimeModel,
    amount: np.ndarray,
    won_c: np.ndarray,
    lost_c: np.ndarray,
    arrivals: Mapping[str, Arrivals],
    closed_so_far: float,
    end: datetime,
    as_of: datetime,
    spread: float,
) -> pl.DataFrame:
    """The whole forecast's P10, P50, P90 at each week's end from the forecast moment to the period's end."""
    days_total = (end - as_of).total_seconds() / 86_400
    checks = sorted({*np.arange(7.0, days_total, 7.0).tolist(), days_total}) if days_total > 0 else []
    rows = [{"day": as_of, "p10": closed_so_far, "p50": closed_so_far, "p90": closed_so_far, "mean": closed_so_far}]
    for d in checks:
        p, _, _ = at_days(model.edges, won_c, lost_c, d)
        dist = _distribution(amount, p, list(arrivals.values()), d, closed_so_far, cells=1 << 13, spread=spread)
        rows.append(
            {
                "day": as_of + timedelta(days=d),
                **{f"p{int(q * 100)}": dist.quantile(q) for q in LEVELS},
                "mean": dist.mean,
            }
        )
    return pl.DataFrame(rows).with_columns(pl.lit(closed_so_far).alias("closed_so_far"))


def _slipped(
    earlier: pl.DataFrame, model: CloseTimeModel, deals: pl.DataFrame, compared_at: datetime, end: datetime
) -> pl.DataFrame:
    """Open deals expected to close in the period at ``compared_at`` and expected after its end now.

    ``earlier``: the deals open at ``compared_at`` in their state then (:func:`landmark_states`).
    """
    empty = deals.head(0).with_columns(pl.lit(None, dtype=pl.Datetime("us")).alias("expected_close_before"))
    earlier = earlier.filter(pl.col(s.OPPORTUNITY_ID).is_in(deals[s.OPPORTUNITY_ID].implode()))
    if deals.height == 0 or earlier.height == 0:
        return empty
    w, lo = model.curves(earlier)
    before = _expected_close(model, w, lo)
    then = (
        earlier.select(s.OPPORTUNITY_ID)
        .with_columns(pl.Series("_days", before).fill_nan(None))
        .with_columns(
            (pl.lit(compared_at) + pl.duration(seconds=(pl.col("_days") * 86_400).cast(pl.Int64))).alias(
                "expected_close_before"
            )
        )
        .drop("_days")
    )
    joined = deals.join(then, on=s.OPPORTUNITY_ID, how="inner")
    moved = (pl.col("expected_close_before") < pl.lit(end)) & (
        pl.col("expected_close").is_null() | (pl.col("expected_close") >= pl.lit(end))
    )
    return joined.filter(moved).sort(s.AMOUNT, s.OPPORTUNITY_ID, descending=[True, False])


# -- the backtest ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForecastBacktest:
    """The forecast of past periods against what was won in them, beside the naive forecast.

    ``periods``: per origin ``start, end, realised, open_deals, open_mean, new_mean`` and, for ours and
    (prefixed ``naive_``) the naive forecast, ``mean, p10, p90, inside`` (the realised value within
    P10–P90), ``spread`` (τ² from the earlier periods) and ``independent_inside`` (within the
    interval that takes deals as independent). :meth:`summary`: coverage of the 80% interval and the
    mean absolute percentage error of the mean, ours and naive.
    """

    periods: pl.DataFrame
    engine: str
    period: str = "month"
    spread: float = 0.0
    """τ² from every period's error: what the next forecast's interval is widened by."""
    calibration: pl.DataFrame | None = None
    """With ``checks``: per engine, P(won within 30/60/90 days) against what happened (:func:`calibration_table`)."""
    check: pl.DataFrame | None = None
    """With ``checks``: the model's mean curves beside Aalen–Johansen's (:func:`model_against_aalen_johansen`)."""

    def coverage_sentence(self) -> str:
        """One sentence: how often the 80% interval held, and the error of the mean, ours against naive."""
        table = self.summary()
        ours, naive = table.row(0, named=True), table.row(1, named=True)
        if not ours["periods"]:
            return "The forecast has no backtest: no past period was complete enough to check it on."
        held = round(ours["coverage_80"] * ours["periods"])
        return (
            f"Backtest: on the last {ours['periods']} {self.period}s the 80% range held {held} times out of "
            f"{ours['periods']} ({100 * ours['coverage_80']:.0f}%); the forecast was off by "
            f"{100 * ours['mape']:.0f}% on average, against {100 * naive['mape']:.0f}% for amount × stage win rate."
        )

    def to_json(self) -> dict[str, Any]:
        """Everything the backtest measured, for a model folder's ``forecast.json``."""
        out: dict[str, Any] = {
            "engine": self.engine,
            "period": self.period,
            "spread": self.spread,
            "summary": self.summary().to_dicts(),
            "periods": self.periods.with_columns(pl.col("start", "end").dt.strftime("%Y-%m-%d")).to_dicts(),
            "sentence": self.coverage_sentence(),
        }
        if self.calibration is not None:
            out["calibration"] = self.calibration.to_dicts()
        if self.check is not None:
            out["aalen_johansen"] = self.check.to_dicts()
        return out

    def summary(self) -> pl.DataFrame:
        """``forecast, periods, coverage_80, coverage_low, coverage_high, mape`` for ours and the naive one."""
        from statsmodels.stats.proportion import proportion_confint

        rows = []
        p = self.periods.filter(pl.col("realised") > 0)
        for name, prefix in (("close-time model", ""), ("naive: amount × stage win rate", "naive_")):
            inside = int(p[f"{prefix}inside"].sum())
            low, high = proportion_confint(inside, p.height, method="wilson") if p.height else (np.nan, np.nan)
            ape = ((p[f"{prefix}mean"] - p["realised"]).abs() / p["realised"]).mean()
            rows.append(
                {
                    "forecast": name,
                    "periods": p.height,
                    "coverage_80": inside / p.height if p.height else None,
                    "coverage_low": float(low),
                    "coverage_high": float(high),
                    "mape": ape,
                }
            )
        return pl.DataFrame(rows)


def _stage_win_rates(known: Dataset, as_of: datetime) -> dict[str, float]:
    """Per stage, the share of its closed entries that ended won (the naive forecast's rates)."""
    events = known.lazy("stage_events")
    transitions = build_transitions(events, known.spec, end=as_of).pipe(collect)
    won = (
        with_stale_losses(events, known.spec, end=as_of)
        .filter(pl.col(s.STAGE) == known.spec.won)
        .select(s.OPPORTUNITY_ID)
        .unique()
        .with_columns(pl.lit(True).alias("_won"))
        .pipe(collect)
    )
    closed = transitions.join(won, on=s.OPPORTUNITY_ID, how="left").with_columns(pl.col("_won").fill_null(False))
    closed = closed.filter(pl.col("_won") | pl.col(s.LOST_AT).is_not_null())
    rates = closed.group_by(s.STAGE).agg(pl.col("_won").mean())
    return {str(k): float(v) for k, v in rates.iter_rows()}


MIN_EARLIER = 2
"""Earlier backtest periods needed before their errors widen a later period's interval."""


def spread_from_errors(realised: np.ndarray, mean: np.ndarray, closed: np.ndarray, variance: np.ndarray) -> float:
    """The common factor's variance τ² that past forecast errors call for (0 when they need none).

    With U (mean 1, variance τ²) multiplying the uncertain part (mean u = mean − closed, variance v
    from independent deals), the variance of a period's value is v + τ² (v + u²); the method of
    moments over the periods gives τ² = Σ ((realised − mean)² − v) / Σ (v + u²), floored at 0.
    """
    u = np.asarray(mean) - np.asarray(closed)
    excess = ((np.asarray(realised) - np.asarray(mean)) ** 2 - variance).sum()
    scale = (np.asarray(variance) + u**2).sum()
    return max(0.0, float(excess / scale)) if scale > 0 else 0.0


def backtest_forecast(
    dataset: Dataset,
    origins: Sequence[datetime],
    *,
    period: str = "month",
    engine: CloseEngine = "lightgbm",
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    arrival_weeks: int = ARRIVAL_WEEKS,
    calendar: bool | None = None,
    checks: bool = False,
    progress: Callable[[str], None] | None = None,
) -> ForecastBacktest:
    """For each origin (a period's start), refit on the data before it, forecast the period, compare.

    Each period's interval is widened by the errors of the periods before it (from the third period on:
    :func:`spread_from_errors`), never by its own or later ones, so the coverage is what a user would
    have seen. The naive forecast (amount × the stage's historical win rate, no dates, no new deals) is
    given an interval the same way. ``period``: ``month`` or ``quarter``; every period must end by the
    data's end (its last day counted whole).

    ``checks``: also fit the logit baseline at each origin and score both engines' P(won within 30, 60,
    90 days) for the deals open there against what happened (:attr:`ForecastBacktest.calibration`),
    and set the model's mean curves beside Aalen–Johansen's for the same deals, per stage
    (:attr:`ForecastBacktest.check`).
    """
    last = data_end(dataset.lazy("stage_events"))
    rows, dists = [], []
    calibration, followed = [], []
    say = progress or (lambda _m: None)
    for number, origin in enumerate(sorted(origins), start=1):
        say(f"forecast backtest: period {number} of {len(origins)} from {origin:%Y-%m-%d}")
        stop = _shift(origin, period)
        # The data's last day counts whole (exports often hold dates, not moments).
        if stop > last + timedelta(days=1):
            raise ModelError(
                f"the period from {origin:%Y-%m-%d} ends {stop:%Y-%m-%d}, after the data ({last:%Y-%m-%d})."
            )
        past = dataset_before(dataset, origin)
        model = fit_close_time(past, engine=engine, end=origin, seed=seed, params=params, calendar=calendar)
        ours = forecast_period(
            past, model, start=origin, end=stop, as_of=origin, fan=False, arrival_weeks=arrival_weeks
        )
        realised = float(_won_before(dataset, origin, stop, None)["closed"].sum())
        rates = _stage_win_rates(past, origin)
        deals = ours.deals
        p_naive = deals[s.STAGE].cast(pl.String).replace_strict(rates, default=0.0, return_dtype=pl.Float64).to_numpy()
        naive = _distribution(deals[s.AMOUNT].to_numpy(), p_naive, [], 0.0, 0.0)
        dists.append((ours.distributions[ALL], naive))
        if checks:
            after = landmark_states(dataset, [origin], end=last)
            engines = {"lightgbm": model, "logit": fit_close_time(past, engine="logit", end=origin)}
            for name, fitted in engines.items():
                won_c, lost_c = fitted.curves(after)
                calibration.append(
                    calibration_rows(after, won_c, lost_c, fitted.edges, end=last, days=CHECK_DAYS).with_columns(
                        pl.lit(name).alias("engine")
                    )
                )
                if name == engine:
                    keep = after.select(s.OPPORTUNITY_ID, s.AS_OF, "won_at", s.LOST_AT, s.STAGE)
                    followed.append((keep, won_c, lost_c, fitted.edges))
        rows.append(
            {
                "start": origin,
                "end": stop,
                "realised": realised,
                "open_deals": ours.total["open_deals"],
                "open_mean": ours.total["open_mean"],
                "new_mean": ours.total["new_mean"],
            }
        )
    out = []
    for j, (row, pair) in enumerate(zip(rows, dists, strict=True)):
        widened: dict[str, Any] = {}
        for which, prefix in enumerate(("", "naive_")):
            dist = pair[which]
            earlier = [(r["realised"], d[which]) for r, d in zip(rows[:j], dists[:j], strict=True)]
            spread = (
                spread_from_errors(
                    np.array([r for r, _ in earlier]),
                    np.array([d.mean for _, d in earlier]),
                    np.array([d.offset for _, d in earlier]),
                    np.array([d.independent_variance for _, d in earlier]),
                )
                if len(earlier) >= MIN_EARLIER
                else 0.0
            )
            used = replace(dist, spread=spread)
            low, high = used.quantile(0.1), used.quantile(0.9)
            widened |= {
                f"{prefix}mean": dist.mean,
                f"{prefix}p10": low,
                f"{prefix}p90": high,
                f"{prefix}inside": low <= row["realised"] <= high,
                f"{prefix}spread": spread,
                f"{prefix}independent_inside": dist.quantile(0.1) <= row["realised"] <= dist.quantile(0.9),
            }
            if not prefix:
                widened["p50"] = used.quantile(0.5)
        out.append(row | widened)
    every = [(r["realised"], d[0]) for r, d in zip(rows, dists, strict=True)]
    spread = spread_from_errors(
        np.array([r for r, _ in every]),
        np.array([d.mean for _, d in every]),
        np.array([d.offset for _, d in every]),
        np.array([d.independent_variance for _, d in every]),
    )
    calibrated = check = None
    if calibration:
        pooled = pl.concat(calibration, how="vertical_relaxed")
        calibrated = pl.concat(
            [
                calibration_table(pooled.filter(pl.col("engine") == name)).select(
                    pl.lit(name).alias("engine"), pl.all()
                )
                for name in pooled["engine"].unique(maintain_order=True).to_list()
            ]
        )
        states = pl.concat([f[0] for f in followed], how="vertical_relaxed")
        check = model_against_aalen_johansen(
            states,
            np.vstack([f[1] for f in followed]),
            np.vstack([f[2] for f in followed]),
            followed[0][3],
            end=last,
            days=CHECK_DAYS,
            seed=seed,
        )
    return ForecastBacktest(pl.DataFrame(out), engine, period, spread, calibrated, check)


def _shift(start: datetime, period: str, steps: int = 1) -> datetime:
    """The start of the month or quarter ``steps`` periods from the one starting on ``start``."""
    months = {"month": 1, "quarter": 3}.get(period)
    if months is None:
        raise ConfigError(f"the forecast backtest works on months or quarters; received {period!r}.")
    month = start.month - 1 + steps * months
    return start.replace(year=start.year + month // 12, month=month % 12 + 1)


# -- training: the models, the backtest, the checks -----------------------------------------------------

FORECAST_PERIODS = 8
"""Past months the forecast is backtested on when a model is trained."""


def backtest_origins(dataset: Dataset, count: int = FORECAST_PERIODS, *, period: str = "month") -> list[datetime]:
    """The starts of the last ``count`` complete periods with three months of closes before them.

    Fewer (possibly none) when the data is short: a backtest needs history before each origin.
    """
    events = dataset.lazy("stage_events")
    spec = dataset.spec
    last = data_end(events)
    first_close = (
        events.filter(pl.col(s.STAGE).is_in([spec.won, spec.lost]))
        .select(pl.col(s.ENTERED_AT).min())
        .pipe(collect)
        .item()
    )
    if first_close is None:
        return []
    months = {"month": 1, "quarter": 3}[period]
    # From the period after the one the data ends in, back one period at a time.
    start = _shift(datetime(last.year, (last.month - 1) // months * months + 1, 1), period)
    origins: list[datetime] = []
    while len(origins) < count:
        start = _shift(start, period, -1)
        if start < first_close + timedelta(days=90):
            break
        if _shift(start, period) <= last + timedelta(days=1):
            origins.append(start)
    return sorted(origins)


@dataclass(frozen=True)
class ForecastTraining:
    """The close-time models fitted on all the data, and the backtest of the forecast they make."""

    models: dict[str, CloseTimeModel]
    backtest: ForecastBacktest | None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """What ``forecast.json`` holds: the models' making and the backtest (coverage, error, checks)."""
        out: dict[str, Any] = {
            "models": {
                name: {k: v for k, v in model.metadata.items() if k not in ("versions",)}
                for name, model in self.models.items()
            },
            "notes": list(self.notes),
        }
        if self.backtest is not None:
            out["backtest"] = self.backtest.to_json()
        return out


def train_forecast(
    dataset: Dataset,
    *,
    seed: int = 0,
    periods: int = FORECAST_PERIODS,
    progress: Callable[[str], None] | None = None,
) -> ForecastTraining:
    """Fit the close-time models (LightGBM and the logit baseline) and backtest the monthly forecast.

    The backtest refits at the start of each of the last ``periods`` complete months (fewer when the
    data is short; none with ``periods=0``), with the calibration and Aalen–Johansen checks.
    """
    say = progress or (lambda _m: None)
    notes: list[str] = []
    backtest = None
    origins = backtest_origins(dataset, periods) if periods else []
    if periods and len(origins) < periods:
        notes.append(
            f"The forecast is backtested on {len(origins)} past months, not {periods}: each needs three months of "
            "closes before it and a complete month after."
        )
    if origins:
        backtest = backtest_forecast(dataset, origins, seed=seed, checks=True, progress=say)
    say("close-time models on all the data")
    models = {engine: fit_close_time(dataset, engine=engine, seed=seed) for engine in ("lightgbm", "logit")}
    return ForecastTraining(models, backtest, notes)


def read_forecast_summary(path: Path) -> dict[str, Any]:
    """The ``forecast.json`` of a model folder (empty when it has none: a model trained before forecasts)."""
    file = Path(path)
    if not file.is_file():
        return {}
    with damaged_model(file.parent):
        return read_json(file)
