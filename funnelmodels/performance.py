"""How well is the model doing before the outcomes arrive? Performance estimated from its probabilities.

A sales cycle takes months, so the realised ROC AUC of last month's deals is not known for
months. If the probabilities are calibrated, each deal converts with its own probability, and the
expected confusion matrix at every threshold follows: a deal scored p adds p to the expected
positives above its score and 1 − p to the negatives (confidence-based performance estimation).
The expected ROC AUC is then Σ_{i,j} p_i (1 − p_j) [s_i > s_j] / (Σ p)(Σ (1 − p)), ties counting
half; the expected win rate is the mean probability.

The interval is the range the realised value will fall in: outcomes drawn again and again from
the probabilities themselves (a parametric bootstrap), so it holds the outcomes' own chance, not
only the estimate's. It is only as good as the calibration: the model card's calibration
section says whether that holds, and the realised figures are shown beside the estimates as the
outcomes arrive.
"""

from __future__ import annotations

import math

import numpy as np

from funnelmodels.intervals import BinaryScores

__all__ = ["estimated_auc", "estimated_performance"]

RESAMPLES = 200
LEVEL = 0.95


def estimated_auc(p: np.ndarray) -> float:
    """The ROC AUC expected if each row converts with its probability ``p`` (calibrated scores)."""
    p = np.clip(np.asarray(p, dtype=float), 0.0, 1.0)
    if p.size < 2:
        return math.nan
    values, index = np.unique(p, return_inverse=True)
    pos = np.bincount(index.ravel(), weights=p, minlength=values.size)
    neg = np.bincount(index.ravel(), weights=1 - p, minlength=values.size)
    total_pos, total_neg = float(pos.sum()), float(neg.sum())
    if total_pos <= 0 or total_neg <= 0:
        return math.nan
    below = np.cumsum(neg) - neg
    # Rows with the same score are not compared with themselves: a row is never both sides of a pair.
    same = float((p * (1 - p)).sum())
    pairs = float(np.dot(pos, below + neg / 2)) - same / 2
    return pairs / (total_pos * total_neg - same)


def estimated_performance(
    p: np.ndarray, *, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL
) -> dict[str, float]:
    """Expected ROC AUC and win rate of rows scored ``p``, with the range the realised values fall in.

    Returns
    -------
    ``{"n", "estimated_auc", "estimated_auc_low", "estimated_auc_high", "estimated_rate",
    "estimated_rate_low", "estimated_rate_high"}``.
    """
    p = np.clip(np.asarray(p, dtype=float), 0.0, 1.0)
    out = {
        "n": float(p.size),
        "estimated_auc": estimated_auc(p),
        "estimated_rate": float(p.mean()) if p.size else math.nan,
    }
    if p.size < 2:
        return out | {f"{k}_{e}": math.nan for k in ("estimated_auc", "estimated_rate") for e in ("low", "high")}
    rng = np.random.default_rng(seed)
    aucs, rates = np.empty(resamples), np.empty(resamples)
    scores = BinaryScores.of(np.zeros(p.size), p)  # sorted once; the outcomes are drawn below
    for r in range(resamples):
        drawn = (rng.random(p.size) < p).astype(float)
        aucs[r] = BinaryScores(drawn, scores.p, scores.index, scores.size).roc_auc()
        rates[r] = drawn.mean()
    tail = (1 - level) / 2
    finite = aucs[np.isfinite(aucs)]
    low, high = np.quantile(finite, [tail, 1 - tail]) if finite.size else (math.nan, math.nan)
    return out | {
        "estimated_auc_low": float(low),
        "estimated_auc_high": float(high),
        "estimated_rate_low": float(np.quantile(rates, tail)),
        "estimated_rate_high": float(np.quantile(rates, 1 - tail)),
    }
