"""Every metric with its interval: a bootstrap over rows, paired between models.

The rows are resampled with Poisson(1) weights (each row counted 0, 1, 2, … times: the Poisson
bootstrap), so one sort of the scores serves every resample: ROC AUC and average precision are
read from per-score weighted counts (ties pooled, as scikit-learn does), Brier score and log
loss are weighted means. Two models scored on the same rows share the same weights, so the
interval of their difference is paired: it is much narrower than the two intervals side by side,
and it is what decides whether one beats the other.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from funnelmodels.stats import by_engine_and_group

__all__ = [
    "METRICS",
    "BinaryScores",
    "difference_interval",
    "mean_intervals",
    "metric_intervals",
    "metrics_with_intervals",
]

METRICS = ("roc_auc", "pr_auc", "brier", "log_loss")
RESAMPLES = 200
LEVEL = 0.95
_EPS = 1e-7


@dataclass(frozen=True)
class BinaryScores:
    """One model's probabilities for outcomes ``y``, pooled by equal score once for every resample."""

    y: np.ndarray
    p: np.ndarray
    index: np.ndarray  # each row's place among the distinct scores (ascending)
    size: int

    @staticmethod
    def of(y: np.ndarray, p: np.ndarray) -> BinaryScores:
        """Outcomes (0/1) and probabilities (clipped to [1e-7, 1 − 1e-7] as for the log loss)."""
        y = np.asarray(y, dtype=float)
        p = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
        values, index = np.unique(p, return_inverse=True)
        return BinaryScores(y, p, index.ravel(), values.size)

    def roc_auc(self, w: np.ndarray | None = None) -> float:
        """ROC AUC alone with row weights ``w`` (the fast path of :meth:`metrics`)."""
        weights = np.ones(self.y.size) if w is None else w
        pos = np.bincount(self.index, weights=weights * self.y, minlength=self.size)
        neg = np.bincount(self.index, weights=weights - weights * self.y, minlength=self.size)
        total_pos, total_neg = float(pos.sum()), float(neg.sum())
        if total_pos <= 0 or total_neg <= 0:
            return math.nan
        return float(np.dot(pos, np.cumsum(neg) - neg / 2)) / (total_pos * total_neg)

    def metrics(self, w: np.ndarray | None = None) -> dict[str, float]:
        """ROC AUC, PR AUC (average precision), Brier score and log loss with row weights ``w``."""
        w = np.ones(self.y.size) if w is None else w
        pos = np.bincount(self.index, weights=w * self.y, minlength=self.size)
        neg = np.bincount(self.index, weights=w * (1 - self.y), minlength=self.size)
        total_pos, total_neg, total = float(pos.sum()), float(neg.sum()), float(w.sum())
        out = dict.fromkeys(METRICS, math.nan)
        if total <= 0:
            return out
        out["brier"] = float(np.dot(w, (self.p - self.y) ** 2)) / total
        loss = -(self.y * np.log(self.p) + (1 - self.y) * np.log(1 - self.p))
        out["log_loss"] = float(np.dot(w, loss)) / total
        if total_pos > 0 and total_neg > 0:
            # A positive beats every negative with a lower score and half of those with the same.
            below = np.cumsum(neg) - neg
            out["roc_auc"] = float(np.dot(pos, below + neg / 2)) / (total_pos * total_neg)
            # Thresholds from the highest score down: precision at each, weighted by the recall it adds.
            tp, fp = np.cumsum(pos[::-1]), np.cumsum(neg[::-1])
            precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
            out["pr_auc"] = float(np.dot(pos[::-1], precision)) / total_pos
        return out


_CHUNK_VALUES = 4_000_000
"""Weights drawn at most this many at a time (32 MB): 200 resamples of a million rows would be 1.6 GB."""


def _weight_chunks(n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """The resamples' Poisson(1) row weights, a block of resamples at a time (the same for any block size)."""
    rng = np.random.default_rng(seed)
    step = max(1, _CHUNK_VALUES // max(n, 1))
    for start in range(0, resamples, step):
        yield rng.poisson(1.0, size=(min(step, resamples - start), n)).astype(float)


def _weights(n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """One resample's row weights at a time."""
    for block in _weight_chunks(n, resamples, seed):
        yield from block


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2
    finite = values[np.isfinite(values)]
    if finite.size < max(10, values.size // 2):
        return math.nan, math.nan
    return float(np.quantile(finite, tail)), float(np.quantile(finite, 1 - tail))


def metric_intervals(
    y: np.ndarray, p: np.ndarray, *, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL
) -> dict[str, float]:
    """Each metric of :data:`METRICS` with ``_low`` and ``_high`` (a percentile bootstrap at ``level``)."""
    scores = BinaryScores.of(y, p)
    out = scores.metrics()
    if scores.y.size == 0:
        return out | {f"{m}_{end}": math.nan for m in METRICS for end in ("low", "high")}
    boot = [scores.metrics(w) for w in _weights(scores.y.size, resamples, seed)]
    for name in METRICS:
        low, high = _interval(np.array([b[name] for b in boot]), level)
        out |= {f"{name}_low": low, f"{name}_high": high}
    return out


def difference_interval(
    y: np.ndarray,
    p_a: np.ndarray,
    p_b: np.ndarray,
    *,
    metric: str = "roc_auc",
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> tuple[float, float, float]:
    """``metric`` of ``p_a`` minus that of ``p_b`` on the same rows, with its paired bootstrap interval."""
    a, b = BinaryScores.of(y, p_a), BinaryScores.of(y, p_b)
    point = a.metrics()[metric] - b.metrics()[metric]
    if a.y.size == 0:
        return math.nan, math.nan, math.nan
    diffs = np.array([a.metrics(w)[metric] - b.metrics(w)[metric] for w in _weights(a.y.size, resamples, seed)])
    low, high = _interval(diffs, level)
    return float(point), low, high


def metrics_with_intervals(
    y: np.ndarray,
    scores: Mapping[str, np.ndarray],
    groups: np.ndarray | None = None,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> pl.DataFrame:
    """:func:`metric_intervals` per model (``scores``: name → probabilities), overall and per group.

    Returns
    -------
    DataFrame ``engine, group, n, positives, roc_auc, roc_auc_low, roc_auc_high, pr_auc, …``
    (``group`` "all" for every row). Every model is resampled with the same weights; a group gets
    half the resamples of the whole.
    """

    def figures(y: np.ndarray, p: np.ndarray, count: int) -> dict[str, Any]:
        found = metric_intervals(y, p, resamples=count, seed=seed)
        return {"n": int(y.size), "positives": int(y.sum()), **found}

    return pl.DataFrame(by_engine_and_group(y, scores, groups, resamples, figures))


def mean_intervals(
    losses: Mapping[str, np.ndarray],
    *,
    against: str | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, tuple[float, float, float]]:
    """The mean of each per-row value (a loss, an error) with its bootstrap interval: name → (mean, low, high).

    Every array is over the same rows and resampled with the same weights. With ``against`` (one
    of the names), each other name also gets ``"<name> - <against>"``: the paired difference.
    """
    arrays = {name: np.asarray(v, dtype=float) for name, v in losses.items()}
    n = next(iter(arrays.values())).size if arrays else 0
    if n == 0:
        return {name: (math.nan, math.nan, math.nan) for name in arrays}
    if against is not None:
        arrays |= {f"{name} - {against}": v - arrays[against] for name, v in list(arrays.items()) if name != against}
    names = list(arrays)
    matrix = np.column_stack([arrays[name] for name in names])
    boot = np.concatenate(
        [
            (block @ matrix) / np.maximum(block.sum(axis=1), 1e-12)[:, None]
            for block in _weight_chunks(n, resamples, seed)
        ]
    )
    out = {}
    for j, name in enumerate(names):
        low, high = _interval(boot[:, j], level)
        out[name] = (float(matrix[:, j].mean()), low, high)
    return out
