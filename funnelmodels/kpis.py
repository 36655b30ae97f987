"""Sales-performance measures: satisfaction (CSAT, NPS) per period and segment, and their change.

Intervals: CSAT mean ± z·sd/√n (normal approximation); share satisfied (CSAT 4-5) by Wilson;
NPS = %promoters (9-10) − %detractors (0-6) with the trinomial variance
``(p₊ + p₋ − (p₊ − p₋)²) / n`` (not a bootstrap: exact enough for n ≥ 30 and reproducible).
"""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import polars as pl

from funnelmodels.data import schema as s
from funnelmodels.errors import ConfigError

__all__ = ["PERIODS", "satisfaction_change", "satisfaction_table"]

PERIODS = {"day": "1d", "week": "1w", "month": "1mo", "quarter": "1q", "year": "1y"}
Z95 = 1.959963984540054


def _period_expr(column: str, period: str) -> pl.Expr:
    if period not in PERIODS:
        raise ConfigError(f"period must be one of {', '.join(PERIODS)}; received {period!r}.")
    return pl.col(column).dt.truncate(PERIODS[period]).dt.date().alias("period")


def satisfaction_table(surveys: pl.LazyFrame, *, period: str = "month", by: str | None = None) -> pl.DataFrame:
    """CSAT and NPS per period (and segment) with 95% intervals.

    Parameters
    ----------
    surveys : LazyFrame ``responded_at, csat and/or nps[, by]``.
    period : day, week, month, quarter or year.

    Returns
    -------
    DataFrame ``period[, by], csat_n, csat_mean, csat_low, csat_high, satisfied_share,
    satisfied_low, satisfied_high, nps_n, promoters, detractors, nps, nps_low, nps_high``
    (NPS in points, −100 to 100).
    """
    names = surveys.collect_schema().names()
    csat = pl.col(s.CSAT) if s.CSAT in names else pl.lit(None, dtype=pl.Int64)
    nps = pl.col(s.NPS) if s.NPS in names else pl.lit(None, dtype=pl.Int64)
    keys = ["period", *([by] if by else [])]
    table = (
        surveys.with_columns(_period_expr(s.RESPONDED_AT, period), csat.alias("_csat"), nps.alias("_nps"))
        .group_by(keys)
        .agg(
            pl.col("_csat").count().alias("csat_n"),
            pl.col("_csat").mean().alias("csat_mean"),
            pl.col("_csat").std().alias("_csat_sd"),
            (pl.col("_csat") >= 4).sum().alias("_satisfied"),
            pl.col("_nps").count().alias("nps_n"),
            (pl.col("_nps") >= 9).sum().alias("promoters"),
            (pl.col("_nps") <= 6).sum().alias("detractors"),
        )
        .sort(keys)
        .collect()
    )
    return _with_intervals(table).select(
        *keys,
        "csat_n",
        "csat_mean",
        "csat_low",
        "csat_high",
        "satisfied_share",
        "satisfied_low",
        "satisfied_high",
        "nps_n",
        "promoters",
        "detractors",
        "nps",
        "nps_low",
        "nps_high",
    )


def _with_intervals(table: pl.DataFrame) -> pl.DataFrame:
    from statsmodels.stats.proportion import proportion_confint

    n = table["csat_n"].to_numpy()
    low, high = proportion_confint(table["_satisfied"].to_numpy(), np.maximum(n, 1), alpha=0.05, method="wilson")
    half = Z95 * table["_csat_sd"].fill_null(0.0) / table["csat_n"].cast(pl.Float64).sqrt()
    p_plus = table["promoters"] / table["nps_n"]
    p_minus = table["detractors"] / table["nps_n"]
    score = p_plus - p_minus
    nps_half = Z95 * ((p_plus + p_minus - score**2) / table["nps_n"]).sqrt()
    empty = n == 0
    return table.with_columns(
        (pl.col("csat_mean") - half).alias("csat_low"),
        (pl.col("csat_mean") + half).alias("csat_high"),
        (pl.col("_satisfied") / pl.col("csat_n")).fill_nan(None).alias("satisfied_share"),
        pl.Series("satisfied_low", np.where(empty, np.nan, low)).fill_nan(None),
        pl.Series("satisfied_high", np.where(empty, np.nan, high)).fill_nan(None),
        (100 * score).fill_nan(None).alias("nps"),
        (100 * (score - nps_half)).fill_nan(None).alias("nps_low"),
        (100 * (score + nps_half)).fill_nan(None).alias("nps_high"),
    )


def satisfaction_change(
    surveys: pl.LazyFrame, *, before: tuple[datetime, datetime], after: tuple[datetime, datetime]
) -> dict[str, dict[str, float]]:
    """Change of CSAT mean, share satisfied and NPS between two periods, with tests.

    Parameters
    ----------
    before, after : ``[start, end)`` of each period.

    Returns
    -------
    ``{"csat_mean" | "satisfied_share" | "nps": {"before", "after", "change", "p_value"}}``:
    Welch's t-test for the mean, a two-proportion z-test for the share, a z-test with the
    trinomial variances for NPS (points).
    """
    from scipy import stats

    def window(bounds: tuple[datetime, datetime]) -> pl.DataFrame:
        return surveys.filter(pl.col(s.RESPONDED_AT).is_between(bounds[0], bounds[1], closed="left")).collect()

    a, b = window(before), window(after)
    out: dict[str, dict[str, float]] = {}
    if s.CSAT in a.columns:
        x, y = a[s.CSAT].drop_nulls().to_numpy(), b[s.CSAT].drop_nulls().to_numpy()
        if x.size > 1 and y.size > 1:
            test = stats.ttest_ind(y, x, equal_var=False)
            out["csat_mean"] = _change(x.mean(), y.mean(), float(test.pvalue))
            p1, p2 = (x >= 4).mean(), (y >= 4).mean()
            pooled = ((x >= 4).sum() + (y >= 4).sum()) / (x.size + y.size)
            se = math.sqrt(pooled * (1 - pooled) * (1 / x.size + 1 / y.size))
            out["satisfied_share"] = _change(p1, p2, _two_sided(p2 - p1, se))
    if s.NPS in a.columns:
        x, y = a[s.NPS].drop_nulls().to_numpy(), b[s.NPS].drop_nulls().to_numpy()
        if x.size and y.size:
            (n1, v1), (n2, v2) = _nps(x), _nps(y)
            out["nps"] = _change(100 * n1, 100 * n2, _two_sided(n2 - n1, math.sqrt(v1 + v2)))
    return out


def _nps(scores: np.ndarray) -> tuple[float, float]:
    plus, minus = (scores >= 9).mean(), (scores <= 6).mean()
    score = plus - minus
    return float(score), float((plus + minus - score**2) / scores.size)


def _two_sided(diff: float, se: float) -> float:
    from scipy.stats import norm

    return float(2 * norm.sf(abs(diff) / se)) if se > 0 else math.nan


def _change(before: float, after: float, p_value: float) -> dict[str, float]:
    return {"before": float(before), "after": float(after), "change": float(after - before), "p_value": p_value}
