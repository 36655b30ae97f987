"""Honest evaluation: out-of-time splits, probability metrics, calibration, lift.

A model is judged on the *latest* period after training on the past (never a
random split by default), against a baseline, and with calibration checked,
because a scored pipeline is only as good as its probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import polars as pl

from funnelmodels.errors import ModelError
from funnelmodels.frames import collect

__all__ = [
    "LEAKAGE_AUC",
    "MAX_STATSMODELS_FEATURES",
    "LeakageWarning",
    "OutOfTimeSplit",
    "binary_metrics",
    "expected_calibration_error",
    "lift_table",
    "out_of_fold_level_rate",
    "out_of_time_split",
    "reliability_table",
    "single_feature_auc",
    "single_feature_aucs",
    "strongest_features",
    "suspected_leaks",
]

LEAKAGE_AUC = 0.9


class LeakageWarning(UserWarning):
    """A feature predicts the target almost perfectly on its own: it is probably known only after it."""


@dataclass(frozen=True)
class OutOfTimeSplit:
    """Row masks of an out-of-time split and the moments that separate them."""

    train: pl.Series
    validation: pl.Series
    test: pl.Series
    validation_start: datetime
    test_start: datetime


def out_of_time_split(times: pl.Series, *, test_share: float = 0.2, validation_share: float = 0.15) -> OutOfTimeSplit:
    """Split rows by time: train on the past, validate on the next slice, test on the latest.

    Parameters
    ----------
    times : each row's as_of.
    test_share : share of rows (the latest) held out for testing.
    validation_share : share of the rows before the test slice used to choose the number of rounds.
    """
    if times.len() == 0 or times.null_count() == times.len():
        raise ModelError("cannot split an empty set of rows by time.")
    test_start = times.quantile(1 - test_share, interpolation="lower")
    before = times.filter(times < test_start)
    if before.len() == 0:
        raise ModelError(f"all rows share the latest time {test_start}; an out-of-time split needs history.")
    validation_start = before.quantile(1 - validation_share, interpolation="lower")
    test = times >= test_start
    validation = (times >= validation_start) & ~test
    train = times < validation_start
    return OutOfTimeSplit(train, validation, test, validation_start, test_start)  # type: ignore[arg-type]


def _bins(p: np.ndarray, n_bins: int) -> np.ndarray:
    return np.asarray(np.minimum((p * n_bins).astype(int), n_bins - 1), dtype=int)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, *, n_bins: int = 10) -> float:
    """Weighted mean gap between predicted and observed rates over equal-width bins."""
    if y.size == 0:
        return math.nan
    bins = _bins(p, n_bins)
    total = 0.0
    for b in np.unique(bins):
        mask = bins == b
        total += mask.sum() * abs(p[mask].mean() - y[mask].mean())
    return total / y.size


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC, log loss, Brier score, ECE, base rate and mean prediction.

    Returns
    -------
    ``{"n", "positives", "base_rate", "mean_prediction", "roc_auc", "pr_auc", "log_loss",
    "brier", "ece"}``; AUCs are NaN when only one class is present.
    """
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    y = np.asarray(y, dtype=int)
    p = np.clip(np.asarray(p, dtype=float), 1e-7, 1 - 1e-7)
    both = 0 < y.sum() < y.size
    return {
        "n": int(y.size),
        "positives": int(y.sum()),
        "base_rate": float(y.mean()) if y.size else math.nan,
        "mean_prediction": float(p.mean()) if y.size else math.nan,
        "roc_auc": float(roc_auc_score(y, p)) if both else math.nan,
        "pr_auc": float(average_precision_score(y, p)) if both else math.nan,
        "log_loss": float(log_loss(y, p, labels=[0, 1])) if y.size else math.nan,
        "brier": float(brier_score_loss(y, p)) if y.size else math.nan,
        "ece": expected_calibration_error(y, p),
    }


def reliability_table(y: np.ndarray, p: np.ndarray, *, n_bins: int = 10) -> pl.DataFrame:
    """Predicted against observed rate per probability bin (a reliability curve).

    Returns
    -------
    DataFrame ``bin_low, bin_high, n, mean_predicted, observed_rate``.
    """
    bins = _bins(np.asarray(p, dtype=float), n_bins)
    frame = pl.DataFrame({"bin": bins, "p": p, "y": np.asarray(y, dtype=float)})
    return (
        frame.group_by("bin")
        .agg(pl.len().alias("n"), pl.col("p").mean().alias("mean_predicted"), pl.col("y").mean().alias("observed_rate"))
        .sort("bin")
        .select(
            (pl.col("bin") / n_bins).alias("bin_low"),
            ((pl.col("bin") + 1) / n_bins).alias("bin_high"),
            "n",
            "mean_predicted",
            "observed_rate",
        )
    )


def lift_table(y: np.ndarray, p: np.ndarray, *, groups: int = 10) -> pl.DataFrame:
    """Lift and cumulative gains by decile of predicted probability (highest first).

    Returns
    -------
    DataFrame ``decile (1 = highest scores), n, positives, rate, lift, cumulative_gain``:
    ``lift`` = the decile's rate / the overall rate; ``cumulative_gain`` = share of all
    positives captured in this and the higher deciles.
    """
    y = np.asarray(y, dtype=float)
    order = np.argsort(-np.asarray(p, dtype=float), kind="stable")
    decile = np.empty(y.size, dtype=int)
    decile[order] = np.arange(y.size) * groups // max(y.size, 1) + 1
    overall = y.mean() if y.size else math.nan
    table = (
        pl.DataFrame({"decile": decile, "y": y})
        .group_by("decile")
        .agg(pl.len().alias("n"), pl.col("y").sum().cast(pl.Int64).alias("positives"))
        .sort("decile")
        .with_columns((pl.col("positives") / pl.col("n")).alias("rate"))
        .with_columns(
            (pl.col("rate") / overall).alias("lift"),
            (pl.col("positives").cum_sum() / max(y.sum(), 1)).alias("cumulative_gain"),
        )
    )
    return table


def single_feature_auc(values: np.ndarray, y: np.ndarray, strata: np.ndarray | None = None) -> float:
    """ROC AUC of one numeric feature used directly as a score, direction-free (≥ 0.5).

    With ``strata`` (e.g. the month and stage of each row), the AUC is computed within each
    stratum and averaged weighted by its positive–negative pairs: it then measures how well
    the feature ranks rows *of the same time and stage*, undisturbed by base rates that drift.
    Rows where the feature is NaN are left out; NaN when no stratum has both classes.
    """
    frame = pl.DataFrame(
        {"v": values, "y": y.astype(np.int64), "g": strata if strata is not None else np.zeros(values.size, np.int64)},
        nan_to_null=True,
    ).drop_nulls("v")
    # Mann–Whitney within each stratum: ties get their average rank.
    per_stratum = (
        frame.lazy()
        .with_columns(pl.col("v").rank("average").over("g").alias("r"))
        .group_by("g")
        .agg(
            pl.col("y").sum().cast(pl.Float64).alias("p"),
            (1 - pl.col("y")).sum().cast(pl.Float64).alias("n"),
            pl.col("r").filter(pl.col("y") == 1).sum().alias("rank_sum"),
        )
        .filter((pl.col("p") > 0) & (pl.col("n") > 0))
        .select(
            (pl.col("rank_sum") - pl.col("p") * (pl.col("p") + 1) / 2).sum().alias("u"),
            (pl.col("p") * pl.col("n")).sum().alias("pairs"),
        )
        .pipe(collect)
    )
    u, pairs = per_stratum.row(0)
    if not pairs:
        return math.nan
    auc = u / pairs
    return float(max(auc, 1 - auc))


def out_of_fold_level_rate(values: pl.Series, y: np.ndarray, *, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Each row's category scored by the target rate of its level in the *other* folds.

    A missing value is a level of its own; a level absent from the other folds gets the overall
    rate. Out of fold, a level seen once (an id-like column) scores the overall rate and cannot
    look predictive; a level that is filled in only for converted rows scores high.
    """
    rng = np.random.default_rng(seed)
    fold = rng.integers(0, folds, values.len())
    frame = pl.DataFrame(
        {"level": values.cast(pl.String).fill_null("\x00missing"), "y": np.asarray(y, dtype=float), "fold": fold}
    )
    per_fold = frame.group_by("level", "fold").agg(pl.col("y").sum().alias("k"), pl.len().alias("n"))
    totals = per_fold.group_by("level").agg(pl.col("k").sum().alias("k_all"), pl.col("n").sum().alias("n_all"))
    overall = float(np.mean(y)) if len(y) else 0.0
    rate = (
        frame.join(per_fold, on=["level", "fold"], how="left")
        .join(totals, on="level", how="left")
        .select(
            pl.when(pl.col("n_all") > pl.col("n"))
            .then((pl.col("k_all") - pl.col("k")) / (pl.col("n_all") - pl.col("n")))
            .otherwise(pl.lit(overall))
            .alias("rate")
        )
    )
    return rate["rate"].to_numpy()


def suspected_leaks(
    frame: pl.DataFrame, features: list[str], target: str, *, strata: np.ndarray | None = None
) -> dict[str, float]:
    """Features that alone rank ``target`` almost perfectly: the signature of target leakage.

    A single-feature ROC AUC above :data:`LEAKAGE_AUC` (within ``strata`` when given).

    No honest pre-decision feature of a sales funnel does that (CRM models reach 0.75–0.85 with
    every feature together); one that does is usually recorded after the outcome — a call's
    duration, a "closed" date, a post-sale field. Numeric features are used as they are, missing
    values ranked lowest, so a field filled in only for won deals is caught too; categorical and
    text features by the out-of-fold conversion rate of their level
    (:func:`out_of_fold_level_rate`), a missing value being a level of its own.
    """
    aucs = single_feature_aucs(frame, features, frame[target].cast(pl.Float64).to_numpy(), strata=strata)
    return {name: auc for name, auc in aucs.items() if auc > LEAKAGE_AUC}


def single_feature_aucs(
    frame: pl.DataFrame, features: Sequence[str], y: np.ndarray, *, strata: np.ndarray | None = None
) -> dict[str, float]:
    """Each feature's ROC AUC for the binary ``y`` on its own (see :func:`suspected_leaks` for how)."""
    out = {}
    for name in features:
        column = frame[name]
        if column.null_count() == frame.height:
            continue
        if column.dtype.is_numeric() or column.dtype == pl.Boolean:
            values = column.cast(pl.Float64).fill_nan(None).fill_null(-np.inf).to_numpy()
        elif column.dtype in (pl.String, pl.Categorical) or isinstance(column.dtype, pl.Enum):
            values = out_of_fold_level_rate(column, y)
        else:
            continue
        out[name] = single_feature_auc(values, y, strata)
    return out


MAX_STATSMODELS_FEATURES = 40
"""The most features the logit and the ordinal logit take: beyond, the strongest alone are kept."""


def strongest_features(
    frame: pl.DataFrame, features: Sequence[str], y: np.ndarray, *, keep: Sequence[str] = (), where: str
) -> tuple[list[str], list[str]]:
    """At most :data:`MAX_STATSMODELS_FEATURES` features, the strongest alone first, and a note.

    A wide export (hundreds of CRM fields) would make the statsmodels fits run for many minutes
    and their coefficients unreadable; LightGBM still sees every feature. ``keep`` (the stage
    context) is always kept. Strength: how far the feature's ROC AUC for ``y`` on its own is from
    0.5 (either direction).
    """
    if len(features) <= MAX_STATSMODELS_FEATURES:
        return list(features), []
    kept = [f for f in features if f in keep][:MAX_STATSMODELS_FEATURES]
    aucs = single_feature_aucs(frame, [f for f in features if f not in kept], y)
    ranked = sorted(aucs, key=lambda name: -abs(aucs[name] - 0.5))
    chosen = set(kept + ranked[: MAX_STATSMODELS_FEATURES - len(kept)])
    out = [f for f in features if f in chosen]
    left = [f for f in features if f not in chosen]
    note = (
        f"{where}: {len(features)} features are more than a readable model can take; it uses the "
        f"{len(out)} that alone rank the outcome best (LightGBM uses all). Left out: "
        f"{', '.join(left[:10])}{f' and {len(left) - 10} more' if len(left) > 10 else ''}."
    )
    return out, [note]
