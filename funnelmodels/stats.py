"""Interval estimates and tests shared by the measures: Wilson, Kaplan–Meier, Aalen–Johansen, z-tests."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["Z95", "by_engine_and_group", "cumulative_incidence", "every_and_each", "km_quantile", "two_sided", "wilson"]


def wilson(successes: np.ndarray, trials: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of each proportion ``successes / trials`` (null where there are no trials)."""
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(successes, np.maximum(trials, 1), alpha=1 - confidence, method="wilson")
    empty = trials == 0
    return np.where(empty, np.nan, low), np.where(empty, np.nan, high)


def km_quantile(fit: object, q: float, confidence: float) -> dict[str, float | None]:
    """Days at which a Kaplan–Meier curve (statsmodels' SurvfuncRight) falls to ``1 − q``, with an interval.

    Returns ``{"days", "days_low", "days_high"}``; None where the curve never gets there.
    """
    if fit is None:
        return {"days": None, "days_low": None, "days_high": None}
    days = fit.quantile(q)  # type: ignore[attr-defined]
    # statsmodels takes log(-log(S)) at S = 1 inside the interval; the warning it gives there is noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = fit.quantile_ci(q, alpha=1 - confidence)  # type: ignore[attr-defined]
    return {
        k: (None if v is None or not np.isfinite(v) else float(v))
        for k, v in zip(("days", "days_low", "days_high"), (days, low, high), strict=True)
    }


def cumulative_incidence(
    times: np.ndarray, causes: np.ndarray, at: Sequence[float], *, confidence: float = 0.95, intervals: bool = True
) -> dict[str, np.ndarray]:
    """Aalen–Johansen cumulative incidence of two competing events, with 95% intervals.

    Parameters
    ----------
    times : days from the start to the event or to censoring.
    causes : 1 = the event of interest (converted / won), 2 = the competing one (lost), 0 = censored.
    at : days at which to read the curves.
    intervals : False skips the intervals (null), for reading the curves at many days.

    Returns
    -------
    ``{"at_risk", "converted", "converted_low", "converted_high", "lost", "lost_low", "lost_high"}``,
    one value per ``at``. The variance is the delta-method (Greenwood-type) estimator of
    Collett, *Modelling Survival Data in Medical Research*, 3rd ed., §12.3; intervals are taken
    on the log(−log) scale so they stay within [0, 1]. Before the first event an estimate is 0
    and its interval is null.
    """
    from scipy.stats import norm

    times = np.asarray(times, dtype=float)
    causes = np.asarray(causes, dtype=int)
    days = np.asarray(at, dtype=float)
    events = causes > 0
    event_times, slot = np.unique(times[events], return_inverse=True)
    order = np.sort(times)
    n = (times.size - np.searchsorted(order, event_times, side="left")).astype(float)
    d1 = np.bincount(slot, weights=(causes[events] == 1).astype(float), minlength=event_times.size)
    d2 = np.bincount(slot, weights=(causes[events] == 2).astype(float), minlength=event_times.size)
    d = d1 + d2
    survival = np.cumprod(1 - d / np.maximum(n, 1))
    lagged = np.r_[1.0, survival[:-1]]
    z = float(norm.ppf(0.5 + confidence / 2))
    out: dict[str, np.ndarray] = {"at_risk": (times.size - np.searchsorted(order, days, side="left")).astype(float)}
    with np.errstate(divide="ignore", invalid="ignore"):
        tie_term = np.where(n > d, d / (n * (n - d)), 0.0)
        for name, dk in (("converted", d1), ("lost", d2)):
            curve = np.cumsum(lagged * dk / np.maximum(n, 1))
            k = np.searchsorted(event_times, days, side="right")  # events at or before each day
            value = np.where(k > 0, curve[np.maximum(k - 1, 0)], 0.0)
            out[name] = value
            if not intervals:
                out[f"{name}_low"] = out[f"{name}_high"] = np.full(days.size, np.nan)
                continue
            variance = np.zeros(days.size)
            for i, (ki, f) in enumerate(zip(k, value, strict=True)):
                gap = f - curve[:ki]
                variance[i] = np.sum(
                    gap**2 * tie_term[:ki]
                    + lagged[:ki] ** 2 * dk[:ki] * (n[:ki] - dk[:ki]) / n[:ki] ** 3
                    - 2 * gap * lagged[:ki] * dk[:ki] / n[:ki] ** 2
                )
            log_f = np.log(value)
            se = np.sqrt(np.maximum(variance, 0.0)) / (value * np.abs(log_f))
            inner = np.log(-log_f)
            defined = (value > 0) & (value < 1)
            out[f"{name}_low"] = np.where(defined, np.exp(-np.exp(inner + z * se)), np.nan)
            out[f"{name}_high"] = np.where(defined, np.exp(-np.exp(inner - z * se)), np.nan)
    return out


Z95 = 1.959963984540054


def two_sided(diff: float, se: float) -> float:
    """Two-sided p-value of a normal z-test of ``diff`` with standard error ``se`` (NaN when ``se`` is 0)."""
    from scipy.stats import norm

    return float(2 * norm.sf(abs(diff) / se)) if se > 0 else math.nan


def every_and_each(size: int, groups: np.ndarray | None) -> list[tuple[str, np.ndarray]]:
    """``("all", every row)`` then ``(label, its rows)`` per distinct label of ``groups`` (first seen first)."""
    out = [("all", np.ones(size, dtype=bool))]
    if groups is not None:
        labels = np.asarray(groups)
        out += [(str(label), labels == label) for label in dict.fromkeys(labels.tolist())]
    return out


def by_engine_and_group(
    y: np.ndarray,
    scores: Mapping[str, np.ndarray],
    groups: np.ndarray | None,
    resamples: int,
    figures: Callable[[np.ndarray, np.ndarray, int], Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """One row per model and group (``"all"`` first): ``figures(y, p, resamples)`` of its rows.

    A group gets half the resamples of the whole (at least 20): its intervals are wide anyway, and
    the overall figures are the ones read most.
    """
    y = np.asarray(y, dtype=float)
    rows = []
    for engine, p in scores.items():
        p = np.asarray(p, dtype=float)
        for label, mask in every_and_each(y.size, groups):
            count = resamples if label == "all" else max(resamples // 2, 20)
            rows.append({"engine": engine, "group": label, **figures(y[mask], p[mask], count)})
    return rows
