"""Sales-performance measures per period and segment: revenue, accounts, win rate, CSAT, NPS.

Intervals: CSAT mean ± z·sd/√n (normal approximation); share satisfied (CSAT 4-5) by Wilson;
NPS = %promoters (9-10) − %detractors (0-6) with the trinomial variance
``(p₊ + p₋ − (p₊ − p₋)²) / n`` (not a bootstrap: exact enough for n ≥ 30 and reproducible).

Every frame in the package is collected with polars' in-memory engine: the default streaming
engine adds floats in a varying order, so two runs on the same data could differ in the last
digits, and a report must be reproducible to the byte.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

import numpy as np
import polars as pl

from funnelmodels.config import CountingRules
from funnelmodels.data import schema as s
from funnelmodels.errors import ConfigError
from funnelmodels.frames import collect, collect_all
from funnelmodels.labels import CURRENCY
from funnelmodels.stats import Z95, two_sided

__all__ = [
    "FORECAST_KPI",
    "PERIODS",
    "SALES_KPIS",
    "attainment",
    "combine_sales_kpi_parts",
    "counting_notes",
    "kpi_changes",
    "sales_kpi_parts",
    "sales_kpi_table",
    "sales_kpis_from_parts",
    "satisfaction_change",
    "satisfaction_table",
]

PERIODS = {"day": "1d", "week": "1w", "month": "1mo", "quarter": "1q", "year": "1y"}


def _period_expr(column: str, period: str) -> pl.Expr:
    if period not in PERIODS:
        raise ConfigError(f"period must be one of {', '.join(PERIODS)}; received {period!r}.")
    return pl.col(column).dt.truncate(PERIODS[period]).dt.date().alias("period")


def satisfaction_table(
    surveys: pl.LazyFrame, *, period: str = "month", by: str | None = None, satisfied_from: int = 4
) -> pl.DataFrame:
    """CSAT and NPS per period (and segment) with 95% intervals.

    Parameters
    ----------
    surveys : LazyFrame ``responded_at, csat and/or nps[, by]``.
    period : day, week, month, quarter or year.
    satisfied_from : the lowest CSAT that counts as satisfied (4 on a 1–5 scale).

    Returns
    -------
    DataFrame ``period[, by], csat_n, csat_mean, csat_low, csat_high, satisfied_share,
    satisfied_low, satisfied_high, nps_n, promoters, detractors, nps, nps_low, nps_high``
    (NPS in points, −100 to 100); the CSAT columns only when there is a csat column, the NPS
    ones only when there is an nps column.
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
            (pl.col("_csat") >= satisfied_from).sum().alias("_satisfied"),
            pl.col("_nps").count().alias("nps_n"),
            (pl.col("_nps") >= 9).sum().alias("promoters"),
            (pl.col("_nps") <= 6).sum().alias("detractors"),
        )
        .sort(keys)
        .pipe(collect)
    )
    csat_columns = [
        "csat_n",
        "csat_mean",
        "csat_low",
        "csat_high",
        "satisfied_share",
        "satisfied_low",
        "satisfied_high",
    ]
    nps_columns = ["nps_n", "promoters", "detractors", "nps", "nps_low", "nps_high"]
    return _with_intervals(table).select(
        *keys, *(csat_columns if s.CSAT in names else []), *(nps_columns if s.NPS in names else [])
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
    surveys: pl.LazyFrame,
    *,
    before: tuple[datetime, datetime],
    after: tuple[datetime, datetime],
    satisfied_from: int = 4,
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
        return surveys.filter(pl.col(s.RESPONDED_AT).is_between(bounds[0], bounds[1], closed="left")).pipe(collect)

    a, b = window(before), window(after)
    out: dict[str, dict[str, float]] = {}
    if s.CSAT in a.columns:
        x, y = a[s.CSAT].drop_nulls().to_numpy(), b[s.CSAT].drop_nulls().to_numpy()
        if x.size > 1 and y.size > 1:
            test = stats.ttest_ind(y, x, equal_var=False)
            out["csat_mean"] = _change(x.mean(), y.mean(), float(test.pvalue))
            p1, p2 = (x >= satisfied_from).mean(), (y >= satisfied_from).mean()
            pooled = ((x >= satisfied_from).sum() + (y >= satisfied_from).sum()) / (x.size + y.size)
            se = math.sqrt(pooled * (1 - pooled) * (1 / x.size + 1 / y.size))
            out["satisfied_share"] = _change(p1, p2, two_sided(p2 - p1, se))
    if s.NPS in a.columns:
        x, y = a[s.NPS].drop_nulls().to_numpy(), b[s.NPS].drop_nulls().to_numpy()
        if x.size and y.size:
            (n1, v1), (n2, v2) = _nps(x), _nps(y)
            out["nps"] = _change(100 * n1, 100 * n2, two_sided(n2 - n1, math.sqrt(v1 + v2)))
    return out


def _nps(scores: np.ndarray) -> tuple[float, float]:
    plus, minus = (scores >= 9).mean(), (scores <= 6).mean()
    score = plus - minus
    return float(score), float((plus + minus - score**2) / scores.size)


def _change(before: float, after: float, p_value: float) -> dict[str, float]:
    return {"before": float(before), "after": float(after), "change": float(after - before), "p_value": p_value}


# --- sales performance ---------------------------------------------------------------------------

FORECAST_KPI = "won_value"
"""The targets file's KPI for the forecast: the value of the deals won in a period (stage_events amounts)."""
SALES_KPIS = (
    "net_revenue",
    "orders",
    "average_sale",
    "new_accounts",
    "returning_customers",
    "active_customers",
    "won",
    "lost",
    "win_rate",
)


def sales_kpi_table(
    transactions: pl.LazyFrame | None,
    stage_events: pl.LazyFrame | None = None,
    *,
    period: str = "month",
    by: str | None = None,
    won: str = "won",
    lost: str = "lost",
    rules: CountingRules | None = None,
) -> pl.DataFrame:
    """The sales-performance measures per period (and segment).

    Definitions (DESIGN.md): net revenue = sum of amounts, refunds negative; orders = positive
    transactions; average sale = positive revenue / orders; active customers bought (a positive
    order) in the period; new accounts made their first-ever purchase in it; returning customers
    bought in it and before it (so new + returning = active); win rate = won / (won + lost),
    counted by the period the opportunity closed.

    Parameters
    ----------
    transactions : LazyFrame ``customer_id, ordered_at, amount[, by]`` (None: no sales columns).
    stage_events : LazyFrame ``opportunity_id, stage, entered_at[, by]`` (None: no win columns).
    by : a segment column present in the frames, e.g. ``"region"``.
    rules : how purchases of 0 and refunds count (:class:`funnelmodels.config.CountingRules`;
        default: a 0 is not an order, refunds are subtracted).

    Returns
    -------
    DataFrame ``period[, by], net_revenue, orders, average_sale, new_accounts, returning_customers,
    active_customers, won, lost, win_rate``; periods with no activity at all are absent.
    """
    parts = sales_kpi_parts(transactions, stage_events, period=period, by=by, won=won, lost=lost, rules=rules)
    return sales_kpis_from_parts(parts, by=by)


SUMMED = (
    "net_revenue",
    "positive_revenue",
    "orders",
    "new_accounts",
    "returning_customers",
    "active_customers",
    "won",
    "lost",
)
"""The columns of :func:`sales_kpi_parts`: sums and counts, which add up over customers kept apart."""


def sales_kpi_parts(
    transactions: pl.LazyFrame | None,
    stage_events: pl.LazyFrame | None = None,
    *,
    period: str = "month",
    by: str | None = None,
    won: str = "won",
    lost: str = "lost",
    rules: CountingRules | None = None,
) -> pl.DataFrame:
    """The sums and counts behind :func:`sales_kpi_table`, before any ratio is taken.

    Every column is a sum or a count of customers, so the parts of datasets that share no customer
    (the partitions of :mod:`funnelmodels.distributed`) add up to the parts of their union exactly:
    :func:`combine_sales_kpi_parts`, then :func:`sales_kpis_from_parts` (never an average of averages).

    Returns
    -------
    DataFrame ``period[, by]`` and, with transactions, ``net_revenue, positive_revenue, orders,
    new_accounts, returning_customers, active_customers``; with stage events, ``won, lost``.
    """
    keys = ["period", *([by] if by else [])]
    parts = []
    if transactions is not None:
        parts.append(_sales_part(transactions, period, keys, rules or CountingRules()))
    if stage_events is not None:
        closed = stage_events.filter(pl.col(s.STAGE).is_in([won, lost])).with_columns(
            _period_expr(s.ENTERED_AT, period)
        )
        parts.append(
            closed.group_by(keys)
            .agg((pl.col(s.STAGE) == won).sum().alias("won"), (pl.col(s.STAGE) == lost).sum().alias("lost"))
            .pipe(collect)
        )
    if not parts:
        raise ConfigError("sales KPIs need a transactions or a stage_events table.")
    table = parts[0]
    for part in parts[1:]:
        table = table.join(part, on=keys, how="full", coalesce=True)
    return table.with_columns(
        *[pl.col(c).fill_null(0).cast(pl.Int64) for c in SUMMED if c in table.columns and "revenue" not in c],
        *[pl.col(c).fill_null(0.0) for c in ("net_revenue", "positive_revenue") if c in table.columns],
    ).sort(keys)


def combine_sales_kpi_parts(parts: Sequence[pl.DataFrame], *, by: str | None = None) -> pl.DataFrame:
    """The parts of several datasets with no customer in common, added up: those of their union."""
    keys = ["period", *([by] if by else [])]
    frame = pl.concat(list(parts), how="diagonal_relaxed")
    summed = [c for c in frame.columns if c not in keys]
    return frame.group_by(keys).agg(pl.col(c).sum() for c in summed).sort(keys)


def sales_kpis_from_parts(parts: pl.DataFrame, *, by: str | None = None) -> pl.DataFrame:
    """:func:`sales_kpi_table` from its sums and counts (:func:`sales_kpi_parts`): the ratios taken last."""
    keys = ["period", *([by] if by else [])]
    table = parts
    for column in SUMMED:
        if column not in table.columns:
            table = table.with_columns(pl.lit(None, dtype=pl.Float64).alias(column))
    table = table.with_columns(
        (pl.col("positive_revenue") / pl.col("orders")).fill_nan(None).alias("average_sale"),
        (pl.col("won") / (pl.col("won") + pl.col("lost"))).fill_nan(None).alias("win_rate"),
    )
    return table.sort(keys).select(*keys, *SALES_KPIS)


def _sales_part(transactions: pl.LazyFrame, period: str, keys: list[str], rules: CountingRules) -> pl.DataFrame:
    purchase = pl.col(s.AMOUNT) >= 0 if rules.zero_amounts == "order" else pl.col(s.AMOUNT) > 0
    if rules.refunds == "ignore":
        transactions = transactions.filter(pl.col(s.AMOUNT) >= 0)
    if keys == ["period"]:
        return _sales_by_period(transactions.with_columns(_period_expr(s.ORDERED_AT, period)), purchase)
    first = (
        transactions.filter(purchase)
        .group_by(s.CUSTOMER_ID)
        .agg(pl.col(s.ORDERED_AT).min().dt.truncate(PERIODS[period]).dt.date().alias("_first_period"))
    )
    frame = transactions.with_columns(_period_expr(s.ORDERED_AT, period)).join(first, on=s.CUSTOMER_ID, how="left")
    positive = purchase
    buyer = pl.when(positive).then(pl.col(s.CUSTOMER_ID))
    return (
        frame.group_by(keys)
        .agg(
            pl.col(s.AMOUNT).sum().alias("net_revenue"),
            positive.sum().alias("orders"),
            pl.col(s.AMOUNT).filter(positive).sum().alias("positive_revenue"),
            buyer.filter(pl.col("_first_period") == pl.col("period")).drop_nulls().n_unique().alias("new_accounts"),
            buyer.filter(pl.col("_first_period") < pl.col("period"))
            .drop_nulls()
            .n_unique()
            .alias("returning_customers"),
            buyer.drop_nulls().n_unique().alias("active_customers"),
        )
        .pipe(collect)
    )


def _sales_by_period(transactions: pl.LazyFrame, purchase: pl.Expr) -> pl.DataFrame:
    """:func:`_sales_part` without segments, in passes that never join the orders to their buyers.

    Every customer active in their first period is new in it, so new accounts are counted from
    the first periods alone, and returning = active − new.
    """
    bought = transactions.filter(purchase).select(s.CUSTOMER_ID, "period")
    money, active, new = collect_all(
        [
            transactions.group_by("period").agg(
                pl.col(s.AMOUNT).sum().alias("net_revenue"),
                purchase.sum().alias("orders"),
                pl.col(s.AMOUNT).filter(purchase).sum().alias("positive_revenue"),
            ),
            bought.group_by("period").agg(pl.col(s.CUSTOMER_ID).n_unique().alias("active_customers")),
            bought.group_by(s.CUSTOMER_ID)
            .agg(pl.col("period").min())
            .group_by("period")
            .agg(pl.len().alias("new_accounts")),
        ]
    )
    table = money.join(active, on="period", how="left").join(new, on="period", how="left")
    counts = [pl.col(c).fill_null(0).cast(pl.UInt32) for c in ("active_customers", "new_accounts")]
    return table.with_columns(counts).select(
        "period",
        "net_revenue",
        "positive_revenue",
        pl.col("orders").cast(pl.UInt32),
        "new_accounts",
        (pl.col("active_customers") - pl.col("new_accounts")).alias("returning_customers"),
        "active_customers",
    )


def kpi_changes(table: pl.DataFrame, *, lag: int = 1, by: str | None = None) -> pl.DataFrame:
    """Each KPI against ``lag`` periods earlier (1: previous period; 12 months: a year earlier).

    Returns
    -------
    Long DataFrame ``period[, by], kpi, value, previous, change, change_pct, p_value,
    change_low, change_high``; for ``win_rate`` a two-proportion z-test and a 95% interval of
    the difference (Wald); for the counts (orders, accounts, customers, deals) the exact test of
    two Poisson counts (periods taken as equally long); null for the amounts.
    """
    keys = ["period", *([by] if by else [])]
    ordered = table.sort(keys)
    over = [by] if by else None
    lagged = ordered.with_columns(
        *[
            (pl.col(k).shift(lag).over(over) if over else pl.col(k).shift(lag)).alias(f"_prev_{k}")
            for k in (*SALES_KPIS,)
        ]
    )
    rows = []
    for r in lagged.iter_rows(named=True):
        for kpi in SALES_KPIS:
            value, previous = r[kpi], r[f"_prev_{kpi}"]
            row = {**{k: r[k] for k in keys}, "kpi": kpi, "value": _f(value), "previous": _f(previous)}
            change = None if value is None or previous is None else float(value) - float(previous)
            row["change"] = change
            row["change_pct"] = None if change is None or not previous else change / abs(float(previous))
            row |= _rate_test(r, kpi)
            rows.append(row)
    schema = {k: table.schema[k] for k in keys} | {
        "kpi": pl.String,
        "value": pl.Float64,
        "previous": pl.Float64,
        "change": pl.Float64,
        "change_pct": pl.Float64,
        "p_value": pl.Float64,
        "change_low": pl.Float64,
        "change_high": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


def _f(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


COUNT_KPIS = ("orders", "new_accounts", "returning_customers", "active_customers", "won", "lost")
"""The KPIs that count things: their change gets an exact test of two Poisson counts."""


def _count_test(now: object, before: object) -> dict[str, float | None]:
    """Two Poisson counts of periods taken as equally long: exact test and 95% interval of the difference.

    The test is the exact conditional one (``now`` out of ``now + before`` at 1/2); the interval
    ±1.96·√(now + before).
    """
    from scipy.stats import binomtest

    if not isinstance(now, int) or not isinstance(before, int) or now + before == 0:
        return {"p_value": None, "change_low": None, "change_high": None}
    half = Z95 * math.sqrt(now + before)
    return {
        "p_value": float(binomtest(now, now + before, 0.5).pvalue),
        "change_low": now - before - half,
        "change_high": now - before + half,
    }


def _rate_test(row: dict[str, object], kpi: str) -> dict[str, float | None]:
    empty: dict[str, float | None] = {"p_value": None, "change_low": None, "change_high": None}
    if kpi in COUNT_KPIS:
        return _count_test(row[kpi], row[f"_prev_{kpi}"])
    if kpi != "win_rate":
        return empty
    won, lost, pw, pl_ = row["won"], row["lost"], row["_prev_won"], row["_prev_lost"]
    if not all(isinstance(v, int) for v in (won, lost, pw, pl_)):
        return empty
    n1, n2 = pw + pl_, won + lost  # type: ignore[operator]
    if not n1 or not n2:
        return empty
    p1, p2 = pw / n1, won / n2
    pooled = (pw + won) / (n1 + n2)  # type: ignore[operator]
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    return {
        "p_value": two_sided(p2 - p1, se_pooled),
        "change_low": p2 - p1 - Z95 * se,
        "change_high": p2 - p1 + Z95 * se,
    }


def attainment(table: pl.DataFrame, targets: pl.DataFrame) -> pl.DataFrame:
    """KPI values against targets.

    Parameters
    ----------
    targets : DataFrame ``kpi, period (YYYY-MM or a date), target``.

    Returns
    -------
    DataFrame ``period, kpi, value, target, attainment`` (value / target).
    """
    missing = [c for c in ("kpi", "period", "target") if c not in targets.columns]
    if missing:
        raise ConfigError(f"the targets file needs columns kpi, period, target; it lacks {missing}.")
    unknown = sorted(set(targets["kpi"]) - set(SALES_KPIS) - {FORECAST_KPI})
    if unknown:
        raise ConfigError(
            f"targets name unknown KPIs {unknown}; known: {', '.join(SALES_KPIS)} and {FORECAST_KPI} (the forecast's)."
        )
    # The forecast's target is read by the forecast, not set against the KPI table.
    targets = targets.filter(pl.col("kpi") != FORECAST_KPI)
    periods = targets["period"].cast(pl.String)
    parsed = pl.coalesce(
        periods.str.strptime(pl.Date, "%Y-%m", strict=False), periods.str.strptime(pl.Date, "%Y-%m-%d", strict=False)
    )
    long = table.unpivot(index="period", on=list(SALES_KPIS), variable_name="kpi", value_name="value")
    goals = targets.with_columns(parsed.alias("period"), pl.col("target").cast(pl.Float64))
    return goals.join(long.with_columns(pl.col("value").cast(pl.Float64)), on=["period", "kpi"], how="left").select(
        "period", "kpi", "value", "target", (pl.col("value") / pl.col("target")).alias("attainment")
    )


def counting_notes(transactions: pl.LazyFrame, rules: CountingRules) -> list[str]:
    """How many transactions the counting rules affect, in words (for the sales report)."""
    counts = (
        transactions.select(
            (pl.col(s.AMOUNT) == 0).sum().alias("zero"),
            (pl.col(s.AMOUNT) < 0).sum().alias("refunds"),
            pl.col(s.AMOUNT).filter(pl.col(s.AMOUNT) < 0).sum().alias("refunded"),
        )
        .pipe(collect)
        .row(0, named=True)
    )
    notes = []
    if counts["zero"]:
        one = counts["zero"] == 1
        fate = "count as orders" if rules.zero_amounts == "order" else "are not counted as orders or purchases"
        if one:
            fate = "counts as an order" if rules.zero_amounts == "order" else "is not counted as an order or purchase"
        notes.append(
            f"Over the whole data, {counts['zero']:,} transaction{'' if one else 's'} of 0 {fate} (zero_amounts = "
            f'"{rules.zero_amounts}" under [kpis] in funnel.toml).'
        )
    if counts["refunds"]:
        verb = "is" if counts["refunds"] == 1 else "are"
        fate = f"{verb} subtracted from net revenue" if rules.refunds == "subtract" else f"{verb} left out of revenue"
        notes.append(
            f"Over the whole data, {counts['refunds']:,} refund{'' if counts['refunds'] == 1 else 's'} (negative "
            f"amounts, {CURRENCY[0]}{-counts['refunded']:,.2f} in all) {fate} "
            f'(refunds = "{rules.refunds}" under [kpis] in funnel.toml).'
        )
    return notes
