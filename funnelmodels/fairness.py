"""Does the model treat groups of customers alike? A fairness audit with intervals.

For each sensitive column (by default gender, age band, income band and region) and each pair of
them, every group with at least :data:`MIN_ROWS` rows gets, on the test rows:

- ``n``, the **base rate** (what happened) and the **mean score** (what the model said);
- the **selection rate** at an operating point (the top :data:`TOP_SHARE` of scores, the deals a
  team would work first) and its **ratio** to the best-off group of the same column — the
  four-fifths rule. A group is **flagged** when its ratio is below 0.8 *and* it is selected less
  often than everyone else beyond chance (a one-sided two-proportion test, Bonferroni over the
  column's groups: ``p_below_rest``). The rule alone flags small groups by noise: the best-off
  group is partly the luckiest one, so the ratio to it runs low even when nothing differs;
- the **equal-opportunity difference**: the group's true-positive rate (the share of its
  conversions the operating point selects) minus the best-off group's;
- **calibration in the large** (mean score − base rate) and the **ROC AUC** within the group.

Each figure has a 95% bootstrap interval (Poisson weights, shared across groups, so the ratios
are paired with the best-off group's rate); the ratios' and the equal-opportunity differences'
hold for all of a column's groups at once (Bonferroni). They describe the spread; the flag uses
the test against everyone else, which keeps false alarms near 5% when nothing differs.

A selection ratio below 0.8 is not by itself unfair: when the groups' outcomes differ, their
selection rates should too — read it beside the base rates, the equal-opportunity
difference and the calibration gap. The **proxy check** says which other features stand in for
a sensitive column (correlation ratio for a number, Cramér's V for a category), so leaving the
column out of the model would not leave it out of the scores.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import polars as pl

from funnelmodels.data import schema as s
from funnelmodels.errors import ConfigError, did_you_mean
from funnelmodels.intervals import BinaryScores
from funnelmodels.segments import age_years_band, income_band

__all__ = [
    "MIN_ROWS",
    "PROXY_STRONG",
    "RATIO_FLAG",
    "SENSITIVE",
    "TOP_SHARE",
    "check_sensitive",
    "fairness_audit",
    "proxy_table",
    "sensitive_features",
    "with_sensitive_bands",
]

SENSITIVE = ("gender", "age_band", "income_band", "region")
"""The sensitive columns audited by default (``funnel.toml`` or the caller may name others)."""
MIN_ROWS = 100
"""A group (or intersection) needs this many test rows to be shown."""
TOP_SHARE = 0.25
"""The operating point: the top quarter of scores is selected."""
RATIO_FLAG = 0.8
"""The four-fifths rule."""
PROXY_STRONG = 0.5
"""An association at least this strong makes a feature a proxy of a sensitive column."""
RESAMPLES = 100
LEVEL = 0.95
_MISSING = s.MISSING_LABEL


def sensitive_features(sensitive: Sequence[str]) -> tuple[str, ...]:
    """The model features behind sensitive columns: a band is its number (``age_band`` → ``age``)."""
    return tuple(dict.fromkeys({"age_band": s.AGE, "income_band": s.INCOME}.get(c, c) for c in sensitive))


def check_sensitive(frame: pl.DataFrame, sensitive: Sequence[str] | None) -> tuple[str, ...]:
    """The sensitive columns to audit: the defaults the rows have, or every one named (a typo is refused).

    ``None`` takes :data:`SENSITIVE`, leaving out those the data lacks (an export without region);
    a list the caller names must be there, since a misspelt column would silently leave the audit.
    """
    have = with_sensitive_bands(frame.head(0)).columns
    if sensitive is None:
        return tuple(c for c in SENSITIVE if c in have)
    unknown = [c for c in sensitive if c not in have]
    if unknown:
        raise ConfigError(
            f"sensitive column {unknown[0]!r} is not a column of the scored rows{did_you_mean(unknown[0], have)}; "
            f"choose from gender, age_band, income_band, region or another customers column."
        )
    return tuple(sensitive)


def with_sensitive_bands(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with ``age_band`` and ``income_band`` from ``age`` and ``income`` (where those exist)."""
    bands = []
    if s.AGE in frame.columns and "age_band" not in frame.columns:
        bands.append(age_years_band(pl.col(s.AGE)).alias("age_band"))
    if s.INCOME in frame.columns and "income_band" not in frame.columns:
        bands.append(income_band(pl.col(s.INCOME)).alias("income_band"))
    return frame.with_columns(bands) if bands else frame


def fairness_audit(
    frame: pl.DataFrame,
    y: np.ndarray,
    p: np.ndarray,
    *,
    sensitive: Sequence[str] = SENSITIVE,
    top: float = TOP_SHARE,
    min_rows: int = MIN_ROWS,
    intersections: bool = True,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> pl.DataFrame:
    """The audit of scores ``p`` for outcomes ``y`` (0/1) over the sensitive columns of ``frame``.

    Returns
    -------
    DataFrame ``attribute, group, n, base_rate, mean_score, selection_rate, selection_ratio,
    eo_difference, calibration_gap, roc_auc`` (each figure with ``_low`` and ``_high``) and
    ``flagged`` (selection ratio below 0.8 with its interval below parity). ``attribute`` is a
    column or two joined by " × ". Columns ``frame`` lacks are left out.
    """
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    frame = with_sensitive_bands(frame)
    present = [c for c in sensitive if c in frame.columns]
    attributes: list[tuple[str, ...]] = [(c,) for c in present]
    if intersections:
        attributes += list(itertools.combinations(present, 2))
    threshold = float(np.quantile(p, 1 - top)) if p.size else math.nan
    selected = (p >= threshold).astype(float)
    rng = np.random.default_rng(seed)
    weights = rng.poisson(1.0, size=(resamples, y.size)).astype(float) if y.size else np.zeros((0, 0))
    rows: list[dict[str, object]] = []
    for attribute in attributes:
        labels = frame.select(
            pl.concat_str([pl.col(c).cast(pl.String).fill_null(_MISSING) for c in attribute], separator=" × ")
        ).to_series()
        codes, names = _codes(labels)
        counts = np.bincount(codes, minlength=len(names))
        shown = [g for g in range(len(names)) if counts[g] >= min_rows]
        if len(shown) < 2:
            continue
        point = _rates(codes, len(names), y, p, selected, None)
        boot = [_rates(codes, len(names), y, p, selected, w) for w in weights]
        best = int(max(shown, key=lambda g: point["selection_rate"][g]))
        aucs = _group_aucs(codes, shown, y, p, weights)
        together = 1 - (1 - LEVEL) / len(shown)  # the column's groups at once (Bonferroni)
        for g in shown:
            row: dict[str, object] = {"attribute": " × ".join(attribute), "group": names[g], "n": int(counts[g])}
            for name in ("base_rate", "mean_score", "selection_rate", "calibration_gap"):
                row |= _with_interval(name, point[name][g], [b[name][g] for b in boot])
            ratio = _ratio(point["selection_rate"], g, best)
            ratios = [_ratio(b["selection_rate"], g, best) for b in boot]
            row |= _with_interval("selection_ratio", ratio, ratios, level=together)
            difference = point["tpr"][g] - point["tpr"][best]
            gaps = [b["tpr"][g] - b["tpr"][best] for b in boot]
            row |= _with_interval("eo_difference", difference, gaps, level=together)
            row["p_below_rest"] = min(1.0, len(shown) * _below_rest(codes == g, selected))
            row |= _with_interval("roc_auc", aucs[g][0], aucs[g][1])
            rows.append(row)
    table = pl.DataFrame(rows) if rows else pl.DataFrame(schema={"attribute": pl.String, "group": pl.String})
    if table.height:
        table = table.with_columns(
            ((pl.col("selection_ratio") < RATIO_FLAG) & (pl.col("p_below_rest") < 1 - LEVEL))
            .fill_null(False)
            .alias("flagged")
        )
    return table


def _codes(labels: pl.Series) -> tuple[np.ndarray, list[str]]:
    names = sorted(labels.unique().to_list())
    lookup = {name: i for i, name in enumerate(names)}
    codes = labels.replace_strict(lookup, return_dtype=pl.Int64).to_numpy()
    return codes, names


def _rates(
    codes: np.ndarray, size: int, y: np.ndarray, p: np.ndarray, selected: np.ndarray, w: np.ndarray | None
) -> dict[str, np.ndarray]:
    w = np.ones(y.size) if w is None else w
    n = np.bincount(codes, weights=w, minlength=size)
    positives = np.bincount(codes, weights=w * y, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        base = positives / n
        mean = np.bincount(codes, weights=w * p, minlength=size) / n
        return {
            "base_rate": base,
            "mean_score": mean,
            "selection_rate": np.bincount(codes, weights=w * selected, minlength=size) / n,
            "calibration_gap": mean - base,
            "tpr": np.bincount(codes, weights=w * selected * y, minlength=size) / positives,
        }


def _below_rest(inside: np.ndarray, selected: np.ndarray) -> float:
    """One-sided p-value that the group is selected less often than everyone else (two-proportion z-test)."""
    from scipy.stats import norm

    n1, n2 = float(inside.sum()), float((~inside).sum())
    if n1 == 0 or n2 == 0:
        return math.nan
    r1, r2 = float(selected[inside].mean()), float(selected[~inside].mean())
    pooled = (r1 * n1 + r2 * n2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return float(norm.cdf((r1 - r2) / se)) if se > 0 else (0.0 if r1 < r2 else 1.0)


def _ratio(rates: np.ndarray, g: int, best: int) -> float:
    return float(rates[g] / rates[best]) if rates[best] > 0 else math.nan


def _group_aucs(
    codes: np.ndarray, shown: list[int], y: np.ndarray, p: np.ndarray, weights: np.ndarray
) -> dict[int, tuple[float, list[float]]]:
    out = {}
    for g in shown:
        mask = codes == g
        scores = BinaryScores.of(y[mask], p[mask])
        out[g] = (scores.roc_auc(), [scores.roc_auc(w[mask]) for w in weights])
    return out


def _with_interval(name: str, value: float, boot: Sequence[float], level: float = 0.95) -> dict[str, float]:
    values = np.asarray(boot, dtype=float)
    values = values[np.isfinite(values)]
    if not math.isfinite(value) or values.size < 10:
        return {name: float(value), f"{name}_low": math.nan, f"{name}_high": math.nan}
    tail = (1 - level) / 2
    return {
        name: float(value),
        f"{name}_low": float(np.quantile(values, tail)),
        f"{name}_high": float(np.quantile(values, 1 - tail)),
    }


def proxy_table(frame: pl.DataFrame, features: Sequence[str], sensitive: Sequence[str] = SENSITIVE) -> pl.DataFrame:
    """How strongly each feature goes with each sensitive column: a feature that does can stand in for it.

    Numbers: the correlation ratio η (the share of the feature's spread the groups explain, square
    root; 0 none, 1 the groups fix it). Categories: Cramér's V. Missing values form a group of
    their own. A feature derived from the column itself (income for the income band) is left out.

    Returns
    -------
    DataFrame ``feature, attribute, association, measure, proxy`` (strongest first); ``proxy``:
    at least :data:`PROXY_STRONG`.
    """
    frame = with_sensitive_bands(frame)
    own = {"age_band": s.AGE, "income_band": s.INCOME}
    rows = []
    for attribute in (c for c in sensitive if c in frame.columns):
        groups = frame[attribute].cast(pl.String).fill_null(_MISSING)
        codes, names = _codes(groups)
        for feature in features:
            if feature in (attribute, own.get(attribute)) or feature in sensitive or feature not in frame.columns:
                continue
            column = frame[feature]
            if column.dtype.is_numeric() and column.dtype != pl.Boolean:
                value, measure = _correlation_ratio(codes, len(names), column.cast(pl.Float64).to_numpy()), "η"
            else:
                other = column.cast(pl.String).fill_null(_MISSING)
                value, measure = _cramers_v(codes, len(names), _codes(other)[0]), "Cramér's V"
            if math.isfinite(value):
                rows.append({"feature": feature, "attribute": attribute, "association": value, "measure": measure})
    table = pl.DataFrame(
        rows, schema={"feature": pl.String, "attribute": pl.String, "association": pl.Float64, "measure": pl.String}
    )
    return table.with_columns((pl.col("association") >= PROXY_STRONG).alias("proxy")).sort(
        "association", descending=True
    )


def _correlation_ratio(codes: np.ndarray, size: int, values: np.ndarray) -> float:
    seen = np.isfinite(values)
    codes, values = codes[seen], values[seen]
    if values.size < 2 or values.var() == 0:
        return math.nan
    n = np.bincount(codes, minlength=size)
    means = np.bincount(codes, weights=values, minlength=size) / np.maximum(n, 1)
    between = float((n * (means - values.mean()) ** 2).sum())
    return math.sqrt(between / float(((values - values.mean()) ** 2).sum()))


def _cramers_v(a: np.ndarray, size_a: int, b: np.ndarray) -> float:
    size_b = int(b.max()) + 1 if b.size else 0
    if a.size == 0 or size_a < 2 or size_b < 2:
        return math.nan
    table = np.zeros((size_a, size_b))
    np.add.at(table, (a, b), 1.0)
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    if min(table.shape) < 2:
        return math.nan
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return math.sqrt(chi2 / (table.sum() * (min(table.shape) - 1)))
