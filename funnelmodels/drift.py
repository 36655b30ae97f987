"""Does today's data still look like the data the model learnt from? Drift by effect size.

A reference window is summarised once into a small profile (JSON, kept beside the model): per
numeric feature its deciles, a 100-point quantile sketch, range, standard deviation and missing
share; per categorical feature the share of each level. A current window is compared with it
feature by feature:

- **PSI** (population stability index) over the reference's deciles (categories: its levels):
  Σ (now − then) · ln(now / then). Below 0.1 stable, 0.1–0.2 moving, above 0.2 shifted.
- **Wasserstein distance** between the two distributions, in the reference's standard deviations.
- the **missing** share then and now, the share **out of the reference's range**, and the share in
  **categories never seen** in the reference.

A p-value alone fires on everything at large n (a 10M-row window finds a 0.1% change
"significant"), so a feature is flagged only when its PSI exceeds :data:`PSI_ALERT` (the effect is
large) **and** its chi-square test, Benjamini–Hochberg-adjusted across the features, is below
:data:`ALPHA` (the effect is not noise of a small window).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

__all__ = ["ALPHA", "PSI_ALERT", "SCORE", "benjamini_hochberg", "drift_table", "profile"]

SCORE = "score"
"""The column a model's probability is profiled under, beside the features."""

PSI_ALERT = 0.2
"""A PSI above this is a shift worth acting on (the common rule of thumb)."""
ALPHA = 0.05
"""False-discovery rate of the chi-square tests across features (Benjamini–Hochberg)."""
BINS = 10
SKETCH = 100
_SKETCH_AT = (np.arange(SKETCH) + 0.5) / SKETCH  # the middles of 100 equal shares: no sample minimum or maximum
TOP_LEVELS = 50
OTHER = "(other)"
MISSING = "(missing)"
_EPS = 1e-4


def profile(frame: pl.DataFrame, numeric: Sequence[str], categorical: Sequence[str]) -> dict[str, Any]:
    """The reference summary of ``frame``'s ``numeric`` and ``categorical`` columns (plain data, JSON-ready)."""
    out: dict[str, Any] = {"rows": frame.height, "numeric": {}, "categorical": {}}
    for name in numeric:
        if name not in frame.columns:
            continue
        values = frame[name].cast(pl.Float64).to_numpy()
        missing = ~np.isfinite(values)
        seen = values[~missing]
        if seen.size == 0:
            continue
        edges = np.unique(np.quantile(seen, np.arange(1, BINS) / BINS))
        out["numeric"][name] = {
            "n": int(seen.size),
            "missing": float(missing.mean()),
            "edges": edges.tolist(),
            "shares": (np.bincount(np.searchsorted(edges, seen, side="right"), minlength=edges.size + 1) / seen.size)
            .astype(float)
            .tolist(),
            "sketch": np.quantile(seen, _SKETCH_AT).tolist(),
            "min": float(seen.min()),
            "max": float(seen.max()),
            "sd": float(seen.std()),
        }
    for name in categorical:
        if name not in frame.columns:
            continue
        levels = frame[name].cast(pl.String).fill_null(MISSING)
        counts = levels.value_counts(sort=True, name="_n")
        top = counts.head(TOP_LEVELS)
        shares = {str(k): int(v) / frame.height for k, v in top.iter_rows()}
        rest = 1.0 - sum(shares.values())
        if rest > 1e-12:
            shares[OTHER] = rest
        out["categorical"][name] = {"n": frame.height, "shares": shares, "all_levels": counts.height <= TOP_LEVELS}
    return out


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (the false-discovery rate at which each would be rejected)."""
    p = np.asarray(p, dtype=float)
    finite = np.isfinite(p)
    out = np.full(p.size, math.nan)
    q = p[finite]
    if q.size == 0:
        return out
    order = np.argsort(q)
    ranked = q[order] * q.size / np.arange(1, q.size + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    back = np.empty(q.size)
    back[order] = np.minimum(adjusted, 1.0)
    out[finite] = back
    return out


def _psi(then: np.ndarray, now: np.ndarray) -> float:
    then, now = np.maximum(then, _EPS), np.maximum(now, _EPS)
    return float(((now - then) * np.log(now / then)).sum())


def _chi_square(then: np.ndarray, now: np.ndarray, n_then: int, n_now: int) -> float:
    """p-value of the two-sample chi-square test of the same distribution over the bins."""
    from scipy.stats import chi2

    table = np.vstack([then * n_then, now * n_now])
    keep = table.sum(axis=0) > 0
    table = table[:, keep]
    if table.shape[1] < 2 or n_then == 0 or n_now == 0:
        return math.nan
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(((table - expected) ** 2 / np.maximum(expected, 1e-12)).sum())
    return float(chi2.sf(statistic, table.shape[1] - 1))


def drift_table(
    reference: Mapping[str, Any], current: pl.DataFrame, *, psi_alert: float = PSI_ALERT, alpha: float = ALPHA
) -> pl.DataFrame:
    """Each profiled feature of ``current`` against the ``reference`` profile (:func:`profile`).

    Returns
    -------
    DataFrame ``feature, kind, psi, wasserstein_sd, missing_then, missing_now, out_of_range,
    unseen, p_value, p_adjusted, alert`` — worst PSI first. ``out_of_range``: the share of
    current values outside the reference's [min, max]; ``unseen``: the share in categories the
    reference never had (only when it listed every level).
    """
    rows = []
    for name, ref in reference.get("numeric", {}).items():
        if name not in current.columns:
            continue
        values = current[name].cast(pl.Float64).to_numpy()
        missing = ~np.isfinite(values)
        seen = values[~missing]
        then = np.asarray(ref["shares"], dtype=float)
        if seen.size:
            now = np.bincount(np.searchsorted(ref["edges"], seen, side="right"), minlength=then.size) / seen.size
            sketch = np.quantile(seen, _SKETCH_AT)
            distance = float(np.abs(sketch - np.asarray(ref["sketch"])).mean()) / max(ref["sd"], 1e-12)
            outside = float(((seen < ref["min"]) | (seen > ref["max"])).mean())
        else:
            now, distance, outside = np.zeros(then.size), math.nan, math.nan
        psi = _psi(then, now) if seen.size else math.nan
        rows.append(
            {
                "feature": name,
                "kind": "numeric",
                "psi": psi,
                "wasserstein_sd": distance,
                "missing_then": float(ref["missing"]),
                "missing_now": float(missing.mean()) if values.size else math.nan,
                "out_of_range": outside,
                "unseen": None,
                "p_value": _chi_square(then, now, int(ref["n"]), int(seen.size)),
            }
        )
    for name, ref in reference.get("categorical", {}).items():
        if name not in current.columns:
            continue
        levels = current[name].cast(pl.String).fill_null(MISSING)
        counts = dict(levels.value_counts(name="_n").iter_rows())
        known = [k for k in ref["shares"] if k != OTHER]
        total = max(current.height, 1)
        now_known = np.array([counts.get(k, 0) / total for k in known])
        rest = max(1.0 - float(now_known.sum()), 0.0)
        then = np.array([ref["shares"][k] for k in known] + [ref["shares"].get(OTHER, 0.0)])
        now = np.append(now_known, rest)
        unseen = rest if ref.get("all_levels") else None
        rows.append(
            {
                "feature": name,
                "kind": "categorical",
                "psi": _psi(then, now) if current.height else math.nan,
                "wasserstein_sd": None,
                "missing_then": float(ref["shares"].get(MISSING, 0.0)),
                "missing_now": counts.get(MISSING, 0) / total if current.height else math.nan,
                "out_of_range": None,
                "unseen": unseen,
                "p_value": _chi_square(then, now, int(ref["n"]), current.height),
            }
        )
    schema = {
        "feature": pl.String,
        "kind": pl.String,
        "psi": pl.Float64,
        "wasserstein_sd": pl.Float64,
        "missing_then": pl.Float64,
        "missing_now": pl.Float64,
        "out_of_range": pl.Float64,
        "unseen": pl.Float64,
        "p_value": pl.Float64,
    }
    table = pl.DataFrame(rows, schema=schema)
    adjusted = benjamini_hochberg(table["p_value"].to_numpy())
    return (
        table.with_columns(pl.Series("p_adjusted", adjusted, dtype=pl.Float64))
        .with_columns(((pl.col("psi") > psi_alert) & (pl.col("p_adjusted") < alpha)).fill_null(False).alias("alert"))
        .sort("psi", descending=True, nulls_last=True)
    )
