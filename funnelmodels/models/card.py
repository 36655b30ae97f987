"""The model card of a stage-conversion training, and the readiness gate.

What a sales director needs before a score decides where the team spends its week: the data
the model learnt from and was tested on, every metric with its 95% interval, the same metrics
for three simpler models the score must beat — the stage's own historical rate (what a funnel
report already says), a naive Bayes on stage and source (the lead scoring open-source CRMs
ship), and the regularised logit —, the calibration decomposed (:mod:`funnelmodels.calibration`),
and one verdict.

**The gate.** LightGBM is *ready* when both hold:

1. the training had at least :data:`MIN_TRAIN_ROWS` stage entries with at least
   :data:`MIN_TRAIN_POSITIVES` conversions (below that, on the generator, LightGBM did not beat
   the stage's rate reliably: the learning curve in ``benchmarks/learning_curve.py`` and
   ``benchmarks/RESULTS.md``);
2. its test ROC AUC beats the stage-only rate's by an interval-separated margin: the 95% interval
   of the paired difference (same rows, same bootstrap weights) lies above 0.

When it is not ready, the card recommends the regularised logit, whose intervals are shown as they
are (wide on little data), and says why; ``funnelmodels train --gate`` then exits with
:data:`funnelmodels.errors.EXIT_NOT_READY` after writing the model folder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from funnelmodels.calibration import decomposition_table, reliability_curve
from funnelmodels.data import schema as s
from funnelmodels.drift import SCORE, drift_table, profile
from funnelmodels.errors import ModelError
from funnelmodels.fairness import check_sensitive, fairness_audit, proxy_table
from funnelmodels.frames import stratified_sample
from funnelmodels.intervals import (
    BinaryScores,
    difference_interval,
    mean_intervals,
    metric_intervals,
    metrics_with_intervals,
)
from funnelmodels.labels import label
from funnelmodels.models.satisfaction import LEVELS
from funnelmodels.models.train import ORACLE, ConversionTraining, SatisfactionTraining
from funnelmodels.performance import estimated_performance

__all__ = [
    "CARD_ROWS",
    "DRIFT_NOTE",
    "MIN_TRAIN_POSITIVES",
    "MIN_TRAIN_ROWS",
    "NAIVE_BAYES",
    "STAGE_RATE",
    "Gate",
    "ModelCard",
    "SatisfactionCard",
    "conversion_card",
    "drift_sentence",
    "fairness_sentence",
    "naive_bayes",
    "performance_table",
    "readiness",
    "satisfaction_card",
    "stage_rate",
]

MIN_TRAIN_ROWS = 1_000
"""Stage entries a training needs before LightGBM may be published (the learning curve on the generator, 2026-11-28:
LightGBM beat the stage's rate beyond its interval in all 18 runs from 672 entries up, and in 1 of 3 at 480–542;
the minimum keeps a margin above the smallest passing size)."""
MIN_TRAIN_POSITIVES = 450
"""Conversions among them (the same curve: all 18 runs passed from 306 conversions up, 1 of 3 at 226–280)."""
CARD_ROWS = 20_000
"""The card's bootstrap figures use at most this many test entries (a stratified sample beyond): at M a
card on 15,000 entries takes 8 s, and its cost grows with the rows × resamples."""
STAGE_RATE = "stage rate"
NAIVE_BAYES = "naive Bayes"
_NONE = "(none)"


def stage_rate(history: pl.DataFrame, rows: pl.DataFrame) -> np.ndarray:
    """Each row's stage's conversion rate in ``history`` (the overall rate for a stage it never saw)."""
    overall = float(history[s.CONVERTED].cast(pl.Float64).mean() or 0.0)  # type: ignore[arg-type]
    rates = history.group_by(s.STAGE).agg(pl.col(s.CONVERTED).cast(pl.Float64).mean().alias("_rate"))
    joined = rows.select(s.STAGE).join(rates, on=s.STAGE, how="left", maintain_order="left")
    return joined["_rate"].fill_null(overall).to_numpy()


def naive_bayes(
    history: pl.DataFrame, rows: pl.DataFrame, columns: tuple[str, ...] = (s.STAGE, "source")
) -> np.ndarray:
    """P(converted) from a naive Bayes on ``columns`` (each categorical, Laplace-smoothed), fitted on ``history``.

    P(y | x) ∝ P(y) Π P(x_j | y): the lead scoring of open-source CRMs. A column missing from the
    data is left out; a value never seen counts as one more level with no rows.
    """
    y = history[s.CONVERTED].cast(pl.Int8).to_numpy()
    positives, total = float(y.sum()), float(y.size)
    if total == 0:
        return np.full(rows.height, math.nan)
    log_odds = np.full(rows.height, math.log((positives + 1) / (total - positives + 1)))
    for column in columns:
        if column not in history.columns or column not in rows.columns:
            continue
        seen = history.select(pl.col(column).cast(pl.String).fill_null(_NONE).alias("_x"), pl.Series("_y", y))
        counts = seen.group_by("_x").agg(pl.col("_y").sum().alias("_pos"), pl.len().alias("_n"))
        levels = counts.height + 1
        asked = rows.select(pl.col(column).cast(pl.String).fill_null(_NONE).alias("_x"))
        joined = asked.join(counts, on="_x", how="left", maintain_order="left").fill_null(0)
        pos = joined["_pos"].to_numpy().astype(float)
        neg = joined["_n"].to_numpy().astype(float) - pos
        log_odds += np.log((pos + 1) / (positives + levels)) - np.log((neg + 1) / (total - positives + levels))
    probability: np.ndarray = 1 / (1 + np.exp(-log_odds))
    return probability


@dataclass(frozen=True)
class Gate:
    """The readiness verdict: ``ready`` (LightGBM may be published), the engine to use, and why."""

    ready: bool
    engine: str
    reasons: list[str]
    auc_gain: tuple[float, float, float]
    """LightGBM's test ROC AUC minus the stage rate's: (point, low, high), paired bootstrap."""
    train_rows: int
    train_positives: int

    def sentence(self) -> str:
        """The verdict in one or two sentences, for the report and the command line."""
        gain, low, high = self.auc_gain
        beat = (
            f"LightGBM ranks the test period's stage entries {gain:+.3f} ROC AUC against the stage's own rate "
            f"(95% interval {low:+.3f} to {high:+.3f})"
            if math.isfinite(gain)
            else "The test period has no conversion or no loss, so no ROC AUC can be compared"
        )
        if self.ready:
            return f"Ready to publish. {beat}, on {self.train_rows:,} training entries."
        return f"Not ready: {' '.join(self.reasons)} {beat}. Use the {self.engine} model and read its wide intervals."

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``model_card.json``."""
        gain, low, high = self.auc_gain
        return {
            "ready": self.ready,
            "engine": self.engine,
            "reasons": self.reasons,
            "auc_gain_over_stage_rate": {"point": gain, "low": low, "high": high},
            "train_rows": self.train_rows,
            "train_positives": self.train_positives,
            "min_train_rows": MIN_TRAIN_ROWS,
            "min_train_positives": MIN_TRAIN_POSITIVES,
            "sentence": self.sentence(),
        }


@dataclass(frozen=True)
class ModelCard:
    """Data window, rows per stage, metrics with intervals against the baselines, calibration, gate."""

    window: dict[str, datetime | None]
    rows: pl.DataFrame
    """``stage, train_rows, train_positives, test_rows, test_positives`` ("all" first)."""
    metrics: pl.DataFrame
    """:func:`funnelmodels.intervals.metrics_with_intervals` per engine and stage (``group``)."""
    calibration: pl.DataFrame
    """:func:`funnelmodels.calibration.decomposition_table` per engine and stage."""
    gate: Gate
    reliability: dict[str, pl.DataFrame] = field(default_factory=dict)
    """Per engine, the CORP reliability curve of the test rows with its consistency band."""
    sample: str = ""
    card_sample: str = ""
    """Above :data:`CARD_ROWS` test entries, the sample the card's figures are on ("" for every entry)."""
    drift: pl.DataFrame = field(default_factory=pl.DataFrame)
    """The test period's entries against the training entries, per feature and LightGBM's score
    (:func:`funnelmodels.drift.drift_table`)."""
    fairness: pl.DataFrame = field(default_factory=pl.DataFrame)
    """The recommended engine's fairness audit on the test entries (:func:`funnelmodels.fairness.fairness_audit`)."""
    proxies: pl.DataFrame = field(default_factory=pl.DataFrame)
    """Each feature's association with each sensitive column (:func:`funnelmodels.fairness.proxy_table`)."""
    without: pl.DataFrame = field(default_factory=pl.DataFrame)
    """With a training without the sensitive columns: per engine the ROC AUC with and without them."""
    without_fairness: pl.DataFrame = field(default_factory=pl.DataFrame)
    """… and per group the selection ratio with and without them."""
    performance: pl.DataFrame = field(default_factory=pl.DataFrame)
    """Per month of the test period, ROC AUC and conversion rate estimated from the probabilities beside
    the realised ones, including the months whose outcomes are still open (:func:`performance_table`)."""

    def performance_sentence(self) -> str:
        """The estimate against the realised ROC AUC on the decided entries, and the latest month's estimate."""
        if self.performance.height == 0:
            return "No estimate of performance: no model to score the entries."
        checked = self.performance.filter(pl.col("month").is_null()).row(0, named=True)
        open_months = self.performance.filter(pl.col("month").is_not_null() & (pl.col("pending") > 0))
        text = (
            f"On the {checked['entries']:,} test entries whose outcome is known, the ROC AUC estimated from the "
            f"probabilities alone is {checked['estimated_auc']:.3f} and the realised one {checked['realised_auc']:.3f}"
        )
        if open_months.height:
            last = open_months.row(-1, named=True)
            text += (
                f"; for {last['month']:%B %Y}, whose {last['pending']:,} entries are still open, the estimate is "
                f"{last['estimated_auc']:.3f} ({last['estimated_auc_low']:.3f}–{last['estimated_auc_high']:.3f}) and a "
                f"conversion rate of {100 * last['estimated_rate']:.1f}%"
            )
        return text + ". The estimates hold as far as the probabilities are calibrated (above)."

    def fairness_sentence(self) -> str:
        """The audit in one sentence: which groups the operating point selects at under four-fifths of the best."""
        return fairness_sentence(self.fairness, "deals")

    def drift_sentence(self) -> str:
        """Which features shifted between training and test, in one sentence."""
        return drift_sentence(self.drift, "the test period's stage entries against the training entries")

    def to_json(self) -> dict[str, Any]:
        """Plain data (``model_card.json`` beside the models)."""
        return {
            "drift": self.drift.to_dicts(),
            "fairness": self.fairness.to_dicts(),
            "proxies": self.proxies.to_dicts(),
            "without_sensitive": {"auc": self.without.to_dicts(), "ratios": self.without_fairness.to_dicts()},
            "performance": self.performance.to_dicts(),
            "kind": "stage conversion",
            "window": {k: (v.isoformat() if v else None) for k, v in self.window.items()},
            "sample": self.sample,
            "card_sample": self.card_sample,
            "rows": self.rows.to_dicts(),
            "metrics": self.metrics.to_dicts(),
            "calibration": self.calibration.to_dicts(),
            "gate": self.gate.to_json(),
        }

    def headline(self) -> pl.DataFrame:
        """Every engine's overall metrics with intervals, one row each, best ROC AUC first."""
        return self.metrics.filter(pl.col("group") == "all").sort("roc_auc", descending=True, nulls_last=True)


def conversion_card(
    training: ConversionTraining,
    *,
    seed: int = 0,
    resamples: int = 200,
    sensitive: Sequence[str] | None = None,
    without: ConversionTraining | None = None,
) -> ModelCard:
    """The model card of ``training``: its models and the baselines on the test period's stage entries.

    ``sensitive``: the columns the fairness audit groups by (default: gender, age band, income band
    and region, those the data has). ``without``: the same training
    without the sensitive columns (``train_conversion(..., without=...)``): the card then shows
    the ROC AUC and the selection ratios with and without them, side by side.
    """
    history, test = training.history, training.test
    sensitive = check_sensitive(test, sensitive)
    card_sample = ""
    if test.height > CARD_ROWS:
        test = stratified_sample(test, CARD_ROWS / test.height, [s.STAGE, s.CONVERTED], seed=seed)
        card_sample = f"a stratified sample of {test.height:,} of the {training.test.height:,} test entries"
    y = test[s.CONVERTED].cast(pl.Int8).to_numpy()
    stages = test[s.STAGE].to_numpy()
    scores: dict[str, np.ndarray] = {name: model.predict_proba(test) for name, model in training.models.items()}
    scores[NAIVE_BAYES] = naive_bayes(history, test)
    scores[STAGE_RATE] = stage_rate(history, test)
    if "true_probability" in test.columns and test["true_probability"].null_count() == 0:
        scores[ORACLE] = test["true_probability"].to_numpy()
    metrics = metrics_with_intervals(y, scores, stages, resamples=resamples, seed=seed)
    calibration = decomposition_table(y, scores, stages, resamples=min(resamples, 100), seed=seed)
    reliability = {name: reliability_curve(y, p, seed=seed) for name, p in scores.items() if name != STAGE_RATE}
    positives = int(history[s.CONVERTED].cast(pl.Int64).sum())
    gate = readiness(history.height, positives, y, scores, seed=seed, resamples=resamples)
    drift = pl.DataFrame()
    if "lightgbm" in training.models:
        model = training.models["lightgbm"]
        then = history.with_columns(pl.Series(SCORE, model.predict_proba(history)))
        now = test.with_columns(pl.Series(SCORE, scores["lightgbm"]))
        reference = profile(then, [*model.encoder.numeric, SCORE], model.encoder.categorical)
        drift = drift_table(reference, now)
    engine = gate.engine if gate.engine in scores else next(iter(training.models))
    fairness = fairness_audit(test, y, scores[engine], sensitive=sensitive, resamples=min(resamples, 100), seed=seed)
    encoder = training.models[engine].encoder
    proxies = proxy_table(test, [*encoder.numeric, *encoder.categorical], sensitive)
    performance = performance_table(training, engine, seed=seed, resamples=min(resamples, 100))
    compared, compared_fairness = pl.DataFrame(), pl.DataFrame()
    if without is not None:
        compared, compared_fairness = _without(training, without, test, y, scores, fairness, engine, sensitive, seed)
    return ModelCard(
        window={
            "train_from": _first(history),
            "validation_from": training.split.validation_start,
            "test_from": training.split.test_start,
            "test_to": _last(training.test),
        },
        rows=_rows(history, training.test),
        metrics=metrics,
        calibration=calibration,
        gate=gate,
        reliability=reliability,
        sample=training.sample,
        drift=drift,
        fairness=fairness,
        proxies=proxies,
        without=compared,
        without_fairness=compared_fairness,
        performance=performance,
        card_sample=card_sample,
    )


def performance_table(
    training: ConversionTraining, engine: str, *, seed: int = 0, resamples: int = 200
) -> pl.DataFrame:
    """ROC AUC and conversion rate per month of the test period, estimated beside realised.

    Estimated from ``engine``'s probabilities (:mod:`funnelmodels.performance`) beside what was
    realised; for the latest months, whose entries are still within their horizon, the estimate
    alone (the realised figures come when every entry of the month is decided).

    Returns
    -------
    DataFrame ``month, entries, pending, estimated_auc(_low, _high), realised_auc,
    estimated_rate(_low, _high), realised_rate`` and a last row ``month = None`` for every entry
    whose outcome is known (the check of the method: estimate against realised).
    """
    model = training.models[engine]
    known = training.test.select(s.AS_OF, s.CONVERTED).with_columns(pl.Series("_p", model.predict_proba(training.test)))
    parts = [known.with_columns(pl.lit(False).alias("_pending"))]
    if training.pending.height:
        waiting = training.pending.select(s.AS_OF, pl.lit(None, dtype=pl.Boolean).alias(s.CONVERTED))
        parts.append(
            waiting.with_columns(pl.Series("_p", model.predict_proba(training.pending)), pl.lit(True).alias("_pending"))
        )
    rows = pl.concat(parts, how="vertical_relaxed").with_columns(pl.col(s.AS_OF).dt.truncate("1mo").alias("_month"))
    out = []
    groups = [(m, rows.filter(pl.col("_month") == m)) for m in rows["_month"].unique().sort().to_list()]
    groups.append((None, rows.filter(~pl.col("_pending"))))
    for month, part in groups:
        found = estimated_performance(part["_p"].to_numpy(), resamples=resamples, seed=seed)
        outcomes = part.filter(~pl.col("_pending"))
        complete = outcomes.height == part.height
        y = outcomes[s.CONVERTED].cast(pl.Int8).to_numpy()
        realised = BinaryScores.of(y, outcomes["_p"].to_numpy()).metrics()["roc_auc"] if complete else math.nan
        out.append(
            {
                "month": month,
                "entries": part.height,
                "pending": part.height - outcomes.height,
                **{k: v for k, v in found.items() if k != "n"},
                "realised_auc": realised,
                "realised_rate": float(y.mean()) if complete and y.size else math.nan,
            }
        )
    return pl.DataFrame(out, schema_overrides={"month": pl.Datetime("us")})


def _without(
    training: ConversionTraining,
    without: ConversionTraining,
    test: pl.DataFrame,
    y: np.ndarray,
    scores: dict[str, np.ndarray],
    fairness: pl.DataFrame,
    engine: str,
    sensitive: Sequence[str],
    seed: int,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """ROC AUC per engine and selection ratios per group, with and without the sensitive columns.

    ``test``, ``y`` and ``scores``: the rows the card is on (a sample of the test period above
    :data:`CARD_ROWS`), scored by the training with the sensitive columns.
    """
    if (
        without.test.height != training.test.height
        or not (without.test[s.OPPORTUNITY_ID] == training.test[s.OPPORTUNITY_ID]).all()
    ):
        raise ModelError(
            "the training without the sensitive columns was tested on other rows: train it on the same data with "
            "the same seed, horizon and max_rows, only without=... added."
        )
    rows = []
    for name, model in without.models.items():
        if name not in scores:
            continue
        p = model.predict_proba(test)
        point, low, high = difference_interval(y, p, scores[name], seed=seed)
        with_auc = BinaryScores.of(y, scores[name]).metrics()["roc_auc"]
        rows.append(
            {
                "engine": name,
                "roc_auc": with_auc,
                "roc_auc_without": with_auc + point,
                "auc_change": point,
                "auc_change_low": low,
                "auc_change_high": high,
            }
        )
    if engine not in without.models:
        return pl.DataFrame(rows), pl.DataFrame()
    p = without.models[engine].predict_proba(test)
    audited = fairness_audit(test, y, p, sensitive=sensitive, seed=seed)
    keys = ["attribute", "group"]
    side = fairness.select(*keys, "n", "selection_ratio", "flagged").join(
        audited.select(
            *keys,
            pl.col("selection_ratio").alias("selection_ratio_without"),
            pl.col("flagged").alias("flagged_without"),
        ),
        on=keys,
        how="left",
        maintain_order="left",
    )
    return pl.DataFrame(rows), side


def fairness_sentence(table: pl.DataFrame, what: str) -> str:
    """An audit (:func:`funnelmodels.fairness.fairness_audit`) in one sentence: the flagged groups or none."""
    if table.height == 0:
        return "No fairness audit: no sensitive column with two groups of 100 rows or more."
    flagged = table.filter(pl.col("flagged") & ~pl.col("attribute").str.contains(" × "))
    if flagged.height == 0:
        return (
            f"No group's {what} are selected at under four-fifths of the best-off group's rate beyond chance "
            "(the top quarter of scores)."
        )
    named = "; ".join(
        f"{label(r['attribute']).lower()} {r['group']} at {r['selection_ratio']:.2f} of the best-off group"
        for r in flagged.iter_rows(named=True)
    )
    return (
        f"Selected at under four-fifths of the best-off group's rate (the top quarter of scores): {named}. "
        "Where the groups' base rates differ as much, the scores follow the outcomes: compare the base rates, "
        "the equal-opportunity difference and the calibration gap below."
    )


DRIFT_NOTE = (
    "Drift per feature and for the model's probability: the population stability index over the training "
    "deciles (below 0.1 stable, above 0.2 shifted), the Wasserstein distance in training standard deviations, "
    "missing shares then and now, values outside the training range and categories never seen. A feature is "
    "called shifted when its PSI is above 0.2 and its chi-square test, adjusted for testing every feature "
    "(Benjamini–Hochberg), says it is not chance."
)
"""What the drift table's columns mean, for a report."""


def drift_sentence(table: pl.DataFrame, what: str) -> str:
    """``table`` (:func:`funnelmodels.drift.drift_table`) in one sentence: the flagged features or none."""
    if table.height == 0:
        return f"No drift check of {what}: no model to compare."
    flagged = table.filter(pl.col("alert"))
    if flagged.height == 0:
        worst = table.row(0, named=True)
        return (
            f"No drift: comparing {what}, no feature shifted beyond PSI 0.2 (the largest, "
            f"{label(worst['feature']).lower()}, {worst['psi']:.3f})."
        )
    names = ", ".join(f"{label(r['feature']).lower()} (PSI {r['psi']:.2f})" for r in flagged.iter_rows(named=True))
    return f"Drift: comparing {what}, {flagged.height} shifted beyond PSI 0.2 and chance: {names}."


def readiness(
    rows: int, positives: int, y: np.ndarray, scores: dict[str, np.ndarray], *, seed: int = 0, resamples: int = 200
) -> Gate:
    """The gate: enough training entries and conversions, and LightGBM's test ROC AUC above the stage rate's.

    ``scores`` holds each model's test probabilities, with ``"lightgbm"`` and :data:`STAGE_RATE`;
    ``y`` the test outcomes.
    """
    reasons = []
    if rows < MIN_TRAIN_ROWS or positives < MIN_TRAIN_POSITIVES:
        reasons.append(
            f"the training had {rows:,} stage entries and {positives:,} conversions, below the "
            f"{MIN_TRAIN_ROWS:,} and {MIN_TRAIN_POSITIVES:,} from which LightGBM beat the stage's rate reliably "
            "on the generator."
        )
    gain = (math.nan, math.nan, math.nan)
    if "lightgbm" in scores:
        gain = difference_interval(y, scores["lightgbm"], scores[STAGE_RATE], seed=seed, resamples=resamples)
        if not gain[1] > 0:
            reasons.append("LightGBM does not beat the stage's own rate by more than its interval.")
    else:
        reasons.append("no LightGBM model was trained.")
    return Gate(not reasons, "logit" if reasons else "lightgbm", reasons, gain, rows, positives)


def _rows(history: pl.DataFrame, test: pl.DataFrame) -> pl.DataFrame:
    def counts(frame: pl.DataFrame, prefix: str) -> pl.DataFrame:
        by = frame.group_by(s.STAGE).agg(
            pl.len().alias(f"{prefix}_rows"), pl.col(s.CONVERTED).cast(pl.Int64).sum().alias(f"{prefix}_positives")
        )
        every = frame.select(
            pl.lit("all").alias(s.STAGE),
            pl.len().alias(f"{prefix}_rows"),
            pl.col(s.CONVERTED).cast(pl.Int64).sum().alias(f"{prefix}_positives"),
        )
        return pl.concat([every.cast(by.schema), by])

    joined = counts(history, "train").join(counts(test, "test"), on=s.STAGE, how="full", coalesce=True)
    order = ["all", *dict.fromkeys(history[s.STAGE].to_list() + test[s.STAGE].to_list())]
    return (
        joined.with_columns(pl.col(s.STAGE).replace_strict(order, list(range(len(order)))).alias("_o"))
        .sort("_o")
        .drop("_o")
        .fill_null(0)
    )


def _first(frame: pl.DataFrame) -> datetime | None:
    value = frame[s.AS_OF].min() if frame.height else None
    return value if isinstance(value, datetime) else None


def _last(frame: pl.DataFrame) -> datetime | None:
    value = frame[s.AS_OF].max() if frame.height else None
    return value if isinstance(value, datetime) else None


# -- satisfaction ------------------------------------------------------------------------------------------

NAIVE = "naive"
_ORDINAL_LOSSES = ("rps", "mae", "within_one", "log_loss")


@dataclass(frozen=True)
class SatisfactionCard:
    """The satisfaction models' card: per engine the score metrics and the low-score chance, with intervals.

    ``metrics``: ``engine, n, rps, mae, within_one, log_loss`` (each with ``_low``/``_high``), then
    ``low_share`` (the share answering low), ``low_roc_auc``, ``low_brier`` for P(low) (CSAT ≤ 2, or
    an NPS detractor). ``calibration``: P(low) decomposed per engine. ``ready``: the best engine
    beats the naive baseline (the training distribution for everyone) on the ranked probability
    score beyond its paired interval.
    """

    target: str
    low_up_to: int
    metrics: pl.DataFrame
    calibration: pl.DataFrame
    reliability: dict[str, pl.DataFrame]
    best: str
    rps_gain: tuple[float, float, float]
    """The naive RPS minus the best engine's (point, low, high): above 0 is better than naive."""
    rows: dict[str, int]
    sample: str = ""
    drift: pl.DataFrame = field(default_factory=pl.DataFrame)
    """The test answers against the training answers, per feature and the best engine's P(low)."""
    fairness: pl.DataFrame = field(default_factory=pl.DataFrame)
    """The best engine's P(low) audited by group: who is put on the at-risk list (the top quarter)."""
    proxies: pl.DataFrame = field(default_factory=pl.DataFrame)

    def fairness_sentence(self) -> str:
        """The audit in one sentence."""
        return fairness_sentence(self.fairness, "customers")

    def drift_sentence(self) -> str:
        """Which features shifted between the training and the test answers, in one sentence."""
        return drift_sentence(self.drift, "the test answers against the training answers")

    @property
    def ready(self) -> bool:
        """The best engine's RPS is below the naive baseline's by more than the paired interval."""
        return bool(self.rps_gain[1] > 0)

    def sentence(self) -> str:
        """The verdict in one sentence."""
        gain, low, high = self.rps_gain
        if not math.isfinite(gain):
            return "No verdict: no model was scored on the test answers."
        head = "Ready to publish" if self.ready else "Not ready"
        answers = self.rows.get("card", self.rows["test"])
        return (
            f"{head}: {label(self.best)}'s ranked probability score is {gain:.4f} better than the naive "
            f"baseline's (95% interval {low:.4f} to {high:.4f}) on {answers:,} test answers"
            + ("." if self.ready else ", not beyond its interval: its scores add little to the average answer.")
        )

    def to_json(self) -> dict[str, Any]:
        """Plain data (``satisfaction/model_card.json``)."""
        gain, low, high = self.rps_gain
        return {
            "kind": "satisfaction",
            "target": self.target,
            "low_up_to": self.low_up_to,
            "sample": self.sample,
            "rows": self.rows,
            "metrics": self.metrics.to_dicts(),
            "calibration": self.calibration.to_dicts(),
            "drift": self.drift.to_dicts(),
            "fairness": self.fairness.to_dicts(),
            "proxies": self.proxies.to_dicts(),
            "gate": {
                "ready": self.ready,
                "engine": self.best,
                "rps_gain_over_naive": {"point": gain, "low": low, "high": high},
                "sentence": self.sentence(),
            },
        }


def satisfaction_card(
    training: SatisfactionTraining, *, seed: int = 0, resamples: int = 200, sensitive: Sequence[str] | None = None
) -> SatisfactionCard:
    """The card of a satisfaction training: its engines, the naive baseline and the truth on the test answers.

    The fairness audit reads P(a low answer) as the score and the top quarter as the at-risk list.
    """
    test, target = training.test, training.target
    sensitive = check_sensitive(test, sensitive)
    if test.height > CARD_ROWS:
        test = stratified_sample(test, CARD_ROWS / test.height, [target], seed=seed)
    first = next(iter(training.models.values()))
    levels = np.asarray(first.levels)
    low_up_to = int(first.low_up_to)
    y = test[target].to_numpy()
    history = training.train[target].to_numpy()
    probabilities = {name: model.predict_proba(test) for name, model in training.models.items()}
    probabilities[NAIVE] = np.tile([(history == level).mean() for level in levels], (test.height, 1))
    truth = [f"p_csat_{k}" for k in levels]
    if (
        target == "csat"
        and tuple(levels) == LEVELS["csat"]
        and all(c in test.columns for c in truth)
        and test.select(truth).null_count().sum_horizontal()[0] == 0
    ):
        probabilities[ORACLE] = test.select(truth).to_numpy()
    losses = {name: _ordinal_losses(y, proba, levels) for name, proba in probabilities.items()}
    low = (y <= low_up_to).astype(int)
    rows = []
    for name, proba in probabilities.items():
        found = mean_intervals(losses[name], resamples=resamples, seed=seed)
        p_low = proba[:, levels <= low_up_to].sum(axis=1)
        binary = metric_intervals(low, p_low, resamples=resamples, seed=seed)
        row: dict[str, Any] = {"engine": name, "n": int(y.size)}
        for metric in _ORDINAL_LOSSES:
            row |= dict(zip((metric, f"{metric}_low", f"{metric}_high"), found[metric], strict=True))
        row |= {"low_share": float(low.mean()) if low.size else math.nan}
        for metric in ("roc_auc", "brier"):
            row |= {f"low_{metric}{end}": binary[f"{metric}{end}"] for end in ("", "_low", "_high")}
        rows.append(row)
    metrics = pl.DataFrame(rows)
    engines = [name for name in training.models if name in losses]
    best = min(engines, key=lambda name: float(losses[name]["rps"].mean())) if engines and y.size else ""
    gain = (math.nan, math.nan, math.nan)
    if best:
        paired = mean_intervals(
            {NAIVE: losses[NAIVE]["rps"], best: losses[best]["rps"]}, against=best, resamples=resamples, seed=seed
        )[f"{NAIVE} - {best}"]
        gain = paired
    p_lows = {name: proba[:, levels <= low_up_to].sum(axis=1) for name, proba in probabilities.items()}
    calibration = decomposition_table(low, p_lows, resamples=min(resamples, 100), seed=seed)
    reliability = {name: reliability_curve(low, p, seed=seed) for name, p in p_lows.items() if name != NAIVE}
    drift = fairness = proxies = pl.DataFrame()
    if best:
        model = training.models[best]
        then = training.train.with_columns(pl.Series(SCORE, model.low_share(model.predict_proba(training.train))))
        now = test.with_columns(pl.Series(SCORE, p_lows[best]))
        drift = drift_table(profile(then, [*model.encoder.numeric, SCORE], model.encoder.categorical), now)
        fairness = fairness_audit(
            test, low, p_lows[best], sensitive=sensitive, resamples=min(resamples, 100), seed=seed
        )
        proxies = proxy_table(test, [*model.encoder.numeric, *model.encoder.categorical], sensitive)
    return SatisfactionCard(
        target=target,
        low_up_to=low_up_to,
        metrics=metrics,
        calibration=calibration,
        reliability=reliability,
        best=best,
        rps_gain=gain,
        rows={"train": training.train.height, "test": training.test.height, "card": test.height},
        sample=training.sample,
        drift=drift,
        fairness=fairness,
        proxies=proxies,
    )


def _ordinal_losses(y: np.ndarray, proba: np.ndarray, levels: np.ndarray) -> dict[str, np.ndarray]:
    """Per answer: ranked probability score, absolute error of the expected score, within one, log loss.

    The same definitions as :func:`funnelmodels.models.satisfaction.ordinal_metrics` (their means).
    """
    codes = np.clip(np.searchsorted(levels, y, side="right") - 1, 0, levels.size - 1)
    observed_cdf = (np.arange(levels.size)[None, :] >= codes[:, None]).astype(float)
    rps = ((np.cumsum(proba, axis=1) - observed_cdf)[:, :-1] ** 2).sum(axis=1) / max(levels.size - 1, 1)
    mode = levels[proba.argmax(axis=1)]
    return {
        "rps": rps,
        "mae": np.abs(proba @ levels - y),
        "within_one": (np.abs(mode - y) <= 1).astype(float),
        "log_loss": -np.log(np.clip(proba[np.arange(y.size), codes], 1e-12, 1)),
    }
