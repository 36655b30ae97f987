"""Training on a dataset's past and judging on its latest period: the models' pipeline in named steps.

:func:`train_conversion` and :func:`train_satisfaction` are what ``funnelmodels train`` and the
report notebooks call: rows with point-in-time features → an out-of-time split → each engine
fitted → metrics on the test period (with the generator's oracle on synthetic data).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from funnelmodels.config import FunnelSpec
from funnelmodels.data import schema as s
from funnelmodels.data.io import Dataset, lines_html
from funnelmodels.data.synthetic import read_ground_truth
from funnelmodels.errors import ModelError
from funnelmodels.evaluation import OutOfTimeSplit, lift_table, out_of_time_split, reliability_table
from funnelmodels.features import build_features, build_transition_features, extra_features, feature_columns
from funnelmodels.frames import collect, stratified_sample
from funnelmodels.funnel import SNAPSHOT_DAYS, add_snapshots, build_transitions
from funnelmodels.labels import day_text
from funnelmodels.models.conversion import ENGINES, Engine, StageConversionModel, metrics_table
from funnelmodels.models.satisfaction import (
    LEVELS,
    SATISFACTION_ENGINES,
    SatisfactionEngine,
    SatisfactionModel,
    Target,
    check_target,
    ordinal_metrics,
)
from funnelmodels.progress import Steps, steps
from funnelmodels.segments import AGE_BANDS, age_band
from funnelmodels.stats import wilson

__all__ = [
    "BASE_RATE_SHIFT",
    "ORACLE",
    "ConversionTraining",
    "SatisfactionTraining",
    "cross_validate_conversion",
    "response_lag",
    "stratified_folds",
    "survey_frame",
    "train_conversion",
    "train_satisfaction",
    "transition_frame",
]

ORACLE = "oracle"


BASE_RATE_SHIFT = 0.05
"""A test-period base rate this far (in probability) from training's is said in words."""


class _Headlined(ABC):
    """What a notebook shows of a training result: a few lines from ``_headline``, whatever the data's size."""

    _TITLE = ""

    @abstractmethod
    def _headline(self) -> list[tuple[str, str]]:
        """The (name, value) lines shown: engines, split, headline metrics."""

    def __repr__(self) -> str:
        """One line: the headline (engines, split, headline metrics); the fields hold the rest."""
        return f"{type(self).__name__}(" + "; ".join(f"{k}: {v}" for k, v in self._headline()) + ")"

    def _repr_html_(self) -> str:
        return lines_html(self._TITLE, self._headline())


@dataclass(frozen=True, repr=False)
class ConversionTraining(_Headlined):
    """The outcome of :func:`train_conversion`: fitted engines, the split and the test metrics.

    ``test`` holds the test period's entry rows (what the metrics are on), ``snapshots`` every
    test-period row including the snapshots of open opportunities, ``history`` the entry rows
    the models learnt from (train and validation).
    """

    models: dict[str, StageConversionModel]
    split: OutOfTimeSplit
    test: pl.DataFrame
    metrics: pl.DataFrame
    snapshots: pl.DataFrame = field(default_factory=pl.DataFrame, repr=False)
    history: pl.DataFrame = field(default_factory=pl.DataFrame, repr=False)
    sample: str = ""
    """How the rows were sampled ("" when every row was used)."""
    pending: pl.DataFrame = field(default_factory=pl.DataFrame, repr=False)
    """Stage entries of the test period whose outcome is not known yet (still within the horizon at the
    data's end), with their features: what performance is estimated on before the outcomes arrive."""
    _TITLE = "Stage-conversion training"

    def _headline(self) -> list[tuple[str, str]]:
        overall = self.metrics.filter(pl.col(s.STAGE) == "all")
        auc = ", ".join(f"{r['engine']} {r['roc_auc']:.3f}" for r in overall.iter_rows(named=True))
        return [
            ("engines", ", ".join(self.models)),
            ("learnt from", f"{self.history.height:,} stage entries before {self.split.test_start:%Y-%m-%d}"),
            ("tested on", f"{self.test.height:,} stage entries from {self.split.test_start:%Y-%m-%d}"),
            ("ROC AUC (test)", auc),
        ]

    def reliability(self) -> dict[str, pl.DataFrame]:
        """Reliability table (calibration curve) on the test rows, per engine and the oracle."""
        preds = self.predictions()
        y = preds[s.CONVERTED].cast(pl.Int8).to_numpy()
        return {c[2:]: reliability_table(y, preds[c].to_numpy()) for c in preds.columns if c.startswith("p_")}

    def lift(self) -> dict[str, pl.DataFrame]:
        """Lift and cumulative gains by decile on the test rows, per engine and the oracle."""
        preds = self.predictions()
        y = preds[s.CONVERTED].cast(pl.Int8).to_numpy()
        return {c[2:]: lift_table(y, preds[c].to_numpy()) for c in preds.columns if c.startswith("p_")}

    def predictions(self) -> pl.DataFrame:
        """Test rows with each engine's probability (and the oracle's where known)."""
        out = self.test.select(s.OPPORTUNITY_ID, s.STAGE, s.ENTERED_AT, s.CONVERTED, s.CENSORED)
        for name, model in self.models.items():
            out = out.with_columns(pl.Series(f"p_{name}", model.predict_proba(self.test)))
        if "true_probability" in self.test.columns:
            out = out.with_columns(self.test["true_probability"].alias(f"p_{ORACLE}"))
        return out

    def summary(self) -> dict[str, Any]:
        """The split and the test metrics as plain data (``metrics.json`` of ``funnelmodels train``)."""
        split = self.split
        out: dict[str, Any] = {
            "split": {
                "method": "out of time by as_of",
                "train_rows": int(split.train.sum()),
                "validation_rows": int(split.validation.sum()),
                "test_rows": int(split.test.sum()),
                "validation_start": split.validation_start,
                "test_start": split.test_start,
            },
            "metrics": self.metrics.to_dicts(),
        }
        overall = {r["engine"]: r for r in self.metrics.filter(pl.col(s.STAGE) == "all").to_dicts()}
        if ORACLE in overall:
            out["gap_to_oracle_roc_auc"] = {
                e: overall[ORACLE]["roc_auc"] - r["roc_auc"] for e, r in overall.items() if e != ORACLE
            }
        return out

    def describe_split(self) -> str:
        """Which rows trained, chose the rounds and tested the models, in one sentence (markdown)."""
        split = self.split
        snapshots = self.snapshots.height - self.test.height
        test_start, validation_start = (day_text(d, short=False) for d in (split.test_start, split.validation_start))
        return (
            f"The models learnt from every transition before **{test_start}** "
            f"({self.history.height:,} stage entries, plus snapshots of the opportunities still open some days "
            f"later); LightGBM chose its number of rounds on the entries from **{validation_start}** "
            f"(trained without them first, then refitted on all). They are tested on the {self.test.height:,} stage "
            f"entries from {test_start} on"
            + (f" (and {snapshots:,} snapshots of open opportunities, below)." if snapshots > 0 else ".")
        )

    def base_rates(self) -> dict[str, float]:
        """Conversion rate of the entry rows the models learnt from and of the test period's."""
        train = float(self.history[s.CONVERTED].mean()) if self.history.height else math.nan  # type: ignore[arg-type]
        test = float(self.test[s.CONVERTED].mean()) if self.test.height else math.nan  # type: ignore[arg-type]
        return {"training": train, "test": test}

    def base_rate_note(self) -> str | None:
        """A sentence when the test period converts at a rate more than 5 points from training's."""
        rates = self.base_rates()
        shift = rates["test"] - rates["training"]
        if not math.isfinite(shift) or abs(shift) <= BASE_RATE_SHIFT:
            return None
        way = "more" if shift > 0 else "less"
        return (
            f"The test period converts at {100 * rates['test']:.1f}% against {100 * rates['training']:.1f}% in the "
            f"rows the models learnt from ({100 * abs(shift):.0f} points {way}). Probabilities learnt on the past "
            f"are then too {'low' if shift > 0 else 'high'} on average — the calibration error below is mostly "
            "this shift, not a fault of the ranking; read ROC AUC for how well deals are ranked, and expect the "
            "scores to be off in level until the models are retrained on recent data."
        )

    def by_time_in_stage(self, engine: str = "lightgbm") -> pl.DataFrame:
        """Predicted against observed conversion of test-period rows by days already spent in the stage.

        Returns
        -------
        DataFrame ``days_in_stage, rows, observed_rate(_low, _high), mean_predicted`` over the entry rows
        (``0``) and the snapshots of still-open rows, banded (≤30, 31–90, 91–180, >180 days).
        """
        rows = self.snapshots if self.snapshots.height else self.test
        p = self.models[engine].predict_proba(rows)
        days = pl.col(s.DAYS_IN_STAGE_SO_FAR)
        band = pl.when(days == 0).then(pl.lit("on entry")).otherwise(age_band(days))
        order = ["on entry", *(label for *_, label in AGE_BANDS)]
        labels = rows.select(band.alias("b"))["b"].to_numpy()
        y = rows[s.CONVERTED].cast(pl.Float64).to_numpy()
        # Means in numpy, in row order: a parallel group-by may add floats in another order each run.
        present = [label for label in order if (labels == label).any()]
        counts = np.array([int((labels == label).sum()) for label in present])
        hits = np.array([float(y[labels == label].sum()) for label in present])
        low, high = wilson(hits, counts, 0.95)
        return pl.DataFrame(
            {
                "days_in_stage": present,
                "rows": counts,
                "observed_rate": hits / np.maximum(counts, 1),
                "observed_rate_low": low,
                "observed_rate_high": high,
                "mean_predicted": [float(p[labels == label].mean()) for label in present],
            }
        )


def split_by_time(
    fingerprint: str, rows: pl.DataFrame, test_share: float, *, entries: pl.Series | None = None
) -> tuple[OutOfTimeSplit, pl.DataFrame, pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    """Out-of-time split of ``rows`` by as_of, and the metadata a model records about it.

    The boundaries are the quantiles of the rows marked in ``entries`` (default: every row), so
    adding snapshot rows does not move them; every row then goes to the side its as_of falls on.
    """
    times = rows[s.AS_OF]
    split = out_of_time_split(times.filter(entries) if entries is not None else times, test_share=test_share)
    split = OutOfTimeSplit(
        train=times < split.validation_start,
        validation=(times >= split.validation_start) & (times < split.test_start),
        test=times >= split.test_start,
        validation_start=split.validation_start,
        test_start=split.test_start,
    )
    train, validation, test = (rows.filter(mask) for mask in (split.train, split.validation, split.test))
    meta = {
        "data_fingerprint": fingerprint,
        "training_window": {
            "start": rows[s.AS_OF].min(),
            "validation_start": split.validation_start,
            "test_start": split.test_start,
            "end": rows[s.AS_OF].max(),
        },
    }
    return split, train, validation, test, meta


def transition_frame(
    dataset: Dataset, *, horizon_days: int | None = None, snapshots: Sequence[int] | None = SNAPSHOT_DAYS
) -> pl.DataFrame:
    """Stage-transition rows and their snapshots, with point-in-time features (and the truth on synthetic data).

    Entry rows have ``days_in_stage_so_far = 0`` (as_of = entered_at); snapshot rows are the
    entries still open 7, 14, 30, … days later (:func:`funnelmodels.funnel.add_snapshots`), with
    features and label as of then. ``snapshots=()`` or None gives the entry rows only.
    """
    return with_features(dataset, transition_rows(dataset, horizon_days, snapshots), horizon_days)


ROW_ORDER = (s.AS_OF, s.OPPORTUNITY_ID, s.STAGE, s.ENTRY, s.DAYS_IN_STAGE_SO_FAR)
"""The one order of the transition rows on every run, whatever the joins did: models are fitted in row order."""


def transition_rows(dataset: Dataset, horizon_days: int | None, snapshots: Sequence[int] | None) -> pl.DataFrame:
    """The entry rows and their snapshots, without features, in :data:`ROW_ORDER`."""
    events = dataset.lazy("stage_events")
    end = dataset.end
    transitions = build_transitions(events, dataset.spec, horizon_days=horizon_days, end=end)
    rows = add_snapshots(transitions, dataset.spec, end=end, horizon_days=horizon_days, days=snapshots or ())
    return rows.pipe(collect).sort(ROW_ORDER)


def with_features(dataset: Dataset, rows: pl.DataFrame, horizon_days: int | None) -> pl.DataFrame:
    """``rows`` with their point-in-time features (each row's depend on that row alone) and the truth when known."""
    frame = build_transition_features(dataset, rows.lazy()).pipe(collect)
    truth = _ground_truth(dataset)
    if truth is not None and (horizon_days is None or horizon_days == dataset.spec.horizon_days):
        # The generator's probabilities are those of the entry rows.
        truth = truth.with_columns(pl.lit(0.0).alias(s.DAYS_IN_STAGE_SO_FAR))
        frame = frame.join(truth, on=[s.OPPORTUNITY_ID, s.STAGE, s.ENTERED_AT, s.DAYS_IN_STAGE_SO_FAR], how="left")
    return frame.sort(ROW_ORDER)


def _ground_truth(dataset: Dataset) -> pl.DataFrame | None:
    truth = read_ground_truth(dataset.config.root, "conversion")
    if truth is None:
        return None
    return truth.select(s.OPPORTUNITY_ID, s.STAGE, pl.col(s.ENTERED_AT).cast(pl.Datetime("us")), "true_probability")


def train_conversion(
    dataset: Dataset,
    *,
    engines: Sequence[Engine] = ENGINES,
    seed: int = 0,
    horizon_days: int | None = None,
    test_share: float = 0.2,
    params: dict[str, dict[str, Any]] | None = None,
    snapshots: Sequence[int] | None = SNAPSHOT_DAYS,
    max_rows: int | None = None,
    without: Sequence[str] = (),
) -> ConversionTraining:
    """Fit each engine on the past and evaluate it on the latest period (out of time).

    Steps: transition rows and snapshots with features → out-of-time split by as_of (the
    boundaries from the entry rows: train, validation, test) → fit each engine (LightGBM chooses
    its number of rounds on the validation slice, then is refitted on train + validation)
    → metrics per stage and overall on the test period's entry rows, with the oracle (the
    generator's true probabilities) when the dataset has ground truth.

    ``max_rows``: above that many observed rows, the train, validation and test periods are each
    cut to the same share of their rows, stratified by stage, outcome and entry/snapshot (seeded);
    ``sample`` says so. For reports on large data: the metrics keep their meaning, with wider
    intervals (measured in ``benchmarks/RESULTS.md``).

    ``without``: features the models may not use (e.g. the sensitive columns, to see what leaving
    them out changes); the rows and the split are the same.
    """
    with steps("training", 2 + len(engines)) as bar:
        bar.step("transitions and features")
        return _train_conversion(
            dataset, bar, engines, seed, horizon_days, test_share, params, snapshots, max_rows, tuple(without)
        )


def _train_conversion(
    dataset: Dataset,
    bar: Steps,
    engines: Sequence[Engine],
    seed: int,
    horizon_days: int | None,
    test_share: float,
    params: dict[str, dict[str, Any]] | None,
    snapshots: Sequence[int] | None,
    max_rows: int | None,
    without: tuple[str, ...] = (),
) -> ConversionTraining:
    rows = transition_rows(dataset, horizon_days, snapshots)
    observed = rows.filter(~pl.col(s.CENSORED))
    if observed.height == 0:
        horizon = horizon_days or dataset.spec.horizon_days
        raise ModelError(
            f"every stage entry is still within its {horizon}-day horizon, so no outcome is known yet and there is "
            "nothing to learn from; the models need stage entries older than the horizon (a longer history, or a "
            "shorter horizon_days)."
        )
    share, sample = sample_share(observed.height, max_rows, "stage-transition rows")
    entries = observed[s.DAYS_IN_STAGE_SO_FAR] == 0
    split, train, validation, test, meta = split_by_time(dataset.fingerprint(), observed, test_share, entries=entries)
    if sample:
        # The sample is drawn before the features are built (on 3M rows they are most of the cost); a row's
        # features depend on that row alone, so they are the same either way.
        strata: list[str | pl.Expr] = [s.STAGE, s.CONVERTED, pl.col(s.DAYS_IN_STAGE_SO_FAR) == 0]
        kept = [stratified_sample(f, share, strata, seed=seed) for f in (train, validation, test)]
        waiting = _pending_entries(rows, split.test_start)
        kept.append(stratified_sample(waiting, share, [s.STAGE], seed=seed) if waiting.height else waiting)
        frame = with_features(dataset, pl.concat(kept), horizon_days)
        meta = meta | {"sample": sample}
    else:
        frame = with_features(dataset, rows, horizon_days)
    return fit_conversion_frame(
        frame,
        split,
        meta,
        dataset.spec,
        extra_features(dataset),
        bar,
        engines,
        seed,
        horizon_days,
        params,
        snapshots,
        without,
        sample,
    )


def fit_conversion_frame(
    frame: pl.DataFrame,
    split: OutOfTimeSplit,
    meta: dict[str, Any],
    dataset_spec: FunnelSpec,
    extra: Sequence[str],
    bar: Steps,
    engines: Sequence[Engine],
    seed: int,
    horizon_days: int | None,
    params: dict[str, dict[str, Any]] | None,
    snapshots: Sequence[int] | None,
    without: tuple[str, ...],
    sample: str,
) -> ConversionTraining:
    """Fit and judge the engines on transition rows that already have their features.

    The part of :func:`train_conversion` after the rows are built, shared with the training over
    partitions (:mod:`funnelmodels.distributed`).
    """
    # The same periods, now with the features: the boundaries of the split above.
    observed = frame.filter(~pl.col(s.CENSORED))
    times = observed[s.AS_OF]
    train = observed.filter(times < split.validation_start)
    validation = observed.filter((times >= split.validation_start) & (times < split.test_start))
    test = observed.filter(times >= split.test_start)
    spec = dataset_spec if horizon_days is None else replace(dataset_spec, horizon_days=horizon_days)
    features = [f for f in feature_columns(frame, extra=list(extra)) if f not in without]
    models: dict[str, StageConversionModel] = {}
    for engine in engines:
        bar.step(f"fitting {engine}")
        models[engine] = StageConversionModel.fit(
            train,
            validation=validation,
            engine=engine,
            spec=spec,
            features=features,
            seed=seed,
            params=(params or {}).get(engine),
            metadata=meta | {"snapshot_days": list(snapshots or ())},
        )
    bar.step("evaluating on the test period")
    test_entries = test.filter(pl.col(s.DAYS_IN_STAGE_SO_FAR) == 0)
    tables = [
        metrics_table(test_entries, model.predict_proba(test_entries), label=name) for name, model in models.items()
    ]
    if "true_probability" in test_entries.columns and test_entries["true_probability"].null_count() == 0:
        tables.append(metrics_table(test_entries, test_entries["true_probability"].to_numpy(), label=ORACLE))
    metrics = (
        pl.concat(tables)
        .with_columns(dataset_spec.stage_order(pl.col(s.STAGE), order=("all", *dataset_spec.open_stages)).alias("_o"))
        .sort("engine", "_o")
        .drop("_o")
    )
    history = pl.concat([train, validation]).filter(pl.col(s.DAYS_IN_STAGE_SO_FAR) == 0)
    return ConversionTraining(
        models=models,
        split=split,
        test=test_entries,
        metrics=metrics,
        snapshots=test,
        history=history,
        sample=sample,
        pending=_pending_entries(frame, split.test_start),
    )


def _pending_entries(rows: pl.DataFrame, test_start: datetime) -> pl.DataFrame:
    """The test period's stage entries still within their horizon: no outcome yet."""
    return rows.filter(pl.col(s.CENSORED) & (pl.col(s.DAYS_IN_STAGE_SO_FAR) == 0) & (pl.col(s.AS_OF) >= test_start))


def sample_share(rows: int, max_rows: int | None, what: str) -> tuple[float, str]:
    """The share of rows a training keeps and the sentence it carries (1 and "" when it uses every row)."""
    if max_rows is None or max_rows <= 0 or rows <= max_rows:
        return 1.0, ""
    share = max_rows / rows
    return share, (
        f"fitted and tested on a stratified sample of {share:.0%} of the {rows:,} {what} "
        f"(at most {max_rows:,}; every period and outcome in the same share)"
    )


def stratified_folds(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold number (0…k−1) of each row: random, with each class spread evenly over the folds."""
    rng = np.random.default_rng(seed)
    fold = np.empty(y.size, dtype=np.int64)
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        fold[rows] = (np.arange(rows.size) + rng.integers(k)) % k
    return fold


def cross_validate_conversion(
    dataset: Dataset,
    *,
    engines: Sequence[Engine] = ENGINES,
    folds: int = 5,
    seed: int = 0,
    horizon_days: int | None = None,
) -> pl.DataFrame:
    """Random stratified k-fold evaluation, for comparison with published figures.

    Not how the package judges a model (that is out of time, :func:`train_conversion`): a
    random split lets a model learn from contacts made *after* the ones it is tested on, which
    flatters it whenever the world drifts (prices, campaigns, the economy). Papers often report
    it, so it is here to compare like with like. In each fold, 15% of the training rows (at
    random, stratified) are held back for early stopping.

    Returns
    -------
    DataFrame ``engine, fold, n, positives, …, roc_auc, pr_auc, log_loss, brier, ece`` (per engine and
    fold) followed by ``fold = -1`` rows holding each engine's mean over the folds.
    """
    if folds < 2:
        raise ModelError(f"folds must be 2 or more; received {folds}.")
    frame = transition_frame(dataset, horizon_days=horizon_days, snapshots=None).filter(~pl.col(s.CENSORED))
    if frame.height < folds * 10:
        raise ModelError(f"only {frame.height} observed transition rows; too few for {folds} folds.")
    y = frame[s.CONVERTED].cast(pl.Int8).to_numpy()
    fold = stratified_folds(y, folds, seed)
    features = feature_columns(frame, extra=extra_features(dataset))
    rows = []
    for k in range(folds):
        rest, test = frame.filter(fold != k), frame.filter(fold == k)
        held_back = stratified_folds(rest[s.CONVERTED].cast(pl.Int8).to_numpy(), 7, seed + k + 1) == 0
        train, validation = rest.filter(~held_back), rest.filter(held_back)
        for engine in engines:
            model = StageConversionModel.fit(
                train, validation=validation, engine=engine, spec=dataset.spec, features=features, seed=seed
            )
            metrics = metrics_table(test, model.predict_proba(test), label=engine).filter(pl.col(s.STAGE) == "all")
            rows.append(metrics.drop(s.STAGE).with_columns(pl.lit(k).alias("fold")))
    table = pl.concat(rows, how="diagonal")
    means = table.group_by("engine", maintain_order=True).agg(pl.exclude("fold").mean(), pl.lit(-1).alias("fold"))
    return pl.concat([table, means.select(table.columns)], how="vertical_relaxed").select(
        "engine", "fold", pl.exclude("engine", "fold")
    )


# --- satisfaction --------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class SatisfactionTraining(_Headlined):
    """The outcome of :func:`train_satisfaction`: fitted engines, the split and test metrics."""

    models: dict[str, SatisfactionModel]
    target: str
    split: OutOfTimeSplit | None
    train: pl.DataFrame
    test: pl.DataFrame
    metrics: pl.DataFrame
    evaluation: str = "out of time"
    """How the test rows were chosen: "out of time", or "random" when the surveys have no dates."""
    sample: str = ""
    """How the rows were sampled ("" when every row was used)."""
    _TITLE = "Satisfaction training"

    def _headline(self) -> list[tuple[str, str]]:
        rps = ", ".join(f"{r['engine']} {r['rps']:.4f}" for r in self.metrics.iter_rows(named=True) if "rps" in r)
        return [
            ("target", self.target),
            ("engines", ", ".join(self.models)),
            ("rows", f"{self.train.height:,} to learn from, {self.test.height:,} to test ({self.evaluation})"),
            ("ranked probability score (test, lower is better)", rps),
        ]

    def summary(self) -> dict[str, Any]:
        """The split, the test metrics and the ordinal model's coefficients as plain data (``metrics.json``)."""
        split: dict[str, Any] = {"method": "out of time by responded_at", "test_rows": self.test.height}
        if self.split is None:
            split["method"] = "random (the surveys have no dates)"
        else:
            split |= {"validation_start": self.split.validation_start, "test_start": self.split.test_start}
        out: dict[str, Any] = {"target": self.target, "split": split, "metrics": self.metrics.to_dicts()}
        if "ordinal" in self.models:
            out["coefficients"] = self.models["ordinal"].coefficients().to_dicts()
        return out

    def verdict(self) -> str:
        """One paragraph on how the engines compare on the ranked probability score, and why."""
        rps = {r["engine"]: r["rps"] for r in self.metrics.iter_rows(named=True)}
        lines = []
        if self.evaluation == "random":
            lines.append(
                f"The surveys have no dates, so the models use the customers' own columns only and are judged on "
                f"a random {self.test.height:,} answers (not on a later period: nothing is later than anything)."
            )
        if "lightgbm" in rps and "naive" in rps:
            beat = "beats" if rps["lightgbm"] < rps["naive"] else "does not beat"
            lines.append(f"LightGBM {beat} the naive baseline (RPS {rps['lightgbm']:.4f} vs {rps['naive']:.4f}).")
        if "lightgbm" in rps and "ordinal" in rps:
            if rps["lightgbm"] <= rps["ordinal"]:
                lines.append(
                    f"It is at least as good as the ordinal model ({rps['ordinal']:.4f}), so the "
                    "relationships in this data are not all linear."
                )
            else:
                why = (
                    "The generator's satisfaction is exactly an ordinal logit in these features, so the ordinal "
                    "model is the correct specification"
                    if ORACLE in rps
                    else "The satisfaction signal here looks close to linear in the features, which suits the "
                    "ordinal model"
                )
                lines.append(
                    f"The ordinal model does better ({rps['ordinal']:.4f} vs {rps['lightgbm']:.4f}). {why}; "
                    "LightGBM must learn the same shape from fewer rows per level."
                )
        if ORACLE in rps:
            lines.append(f"The oracle (true probabilities) scores {rps[ORACLE]:.4f}: the best any model can do.")
        return " ".join(lines)


def survey_frame(dataset: Dataset) -> pl.DataFrame:
    """Every survey response with point-in-time features at its responded_at (truth joined on synthetic data).

    Surveys without dates (no responded_at column) get the customers' own columns only: nothing
    can be said about what was known when they were answered.
    """
    surveys = dataset.lazy("surveys")
    if s.RESPONDED_AT not in surveys.collect_schema().names():
        if not dataset.has("customers"):
            return surveys.pipe(collect)
        customers = dataset.lazy("customers")
        columns = [c for c in (*s.DEMOGRAPHIC, *extra_features(dataset)) if c in customers.collect_schema().names()]
        return surveys.join(customers.select(s.CUSTOMER_ID, *columns), on=s.CUSTOMER_ID, how="left").pipe(collect)
    frame = build_features(dataset, surveys.with_columns(pl.col(s.RESPONDED_AT).alias(s.AS_OF))).pipe(collect)
    truth = read_ground_truth(dataset.config.root, "satisfaction")
    if truth is not None:
        truth = truth.with_columns(pl.col(s.RESPONDED_AT).cast(pl.Datetime("us")))
        frame = frame.join(truth.drop(s.ORDER_ID, strict=False), on=[s.CUSTOMER_ID, s.RESPONDED_AT], how="left")
    return frame


def train_satisfaction(
    dataset: Dataset,
    *,
    target: Target = "csat",
    engines: Sequence[SatisfactionEngine] = SATISFACTION_ENGINES,
    seed: int = 0,
    test_share: float = 0.2,
    max_rows: int | None = None,
    frame: pl.DataFrame | None = None,
    fingerprint: str | None = None,
) -> SatisfactionTraining:
    """Fit each satisfaction engine on past responses and evaluate on the latest (out of time).

    The table holds both engines, a naive baseline (the training distribution of scores for
    everyone, so its expected score is the training mean) and, for CSAT on synthetic data,
    the oracle (the generator's true level probabilities).

    ``max_rows``: above that many responses, the train, validation and test rows are each cut to
    the same share, stratified by the score (seeded); ``sample`` says so.

    ``frame`` and ``fingerprint``: the responses with their features (:func:`survey_frame`) and the data
    they come from, when built elsewhere (over the partitions of :mod:`funnelmodels.distributed`);
    ``dataset`` then gives the funnel, the scale and the extra feature columns.
    """
    if frame is None:
        if not dataset.has("surveys"):
            raise ModelError("the dataset has no surveys table; satisfaction models need survey responses (csat/nps).")
        frame = survey_frame(dataset)
    fingerprint = fingerprint or dataset.fingerprint()
    check_target(frame, target)
    frame = frame.filter(pl.col(target).is_not_null())
    evaluation = "out of time"
    if s.AS_OF in frame.columns:
        split, train, validation, test, meta = split_by_time(fingerprint, frame, test_share)
    else:
        # No dates: nothing is "later" than anything; a random split is the only one possible.
        evaluation, split = "random", None
        fold = stratified_folds(frame[target].to_numpy(), 20, seed)
        test_n, valid_n = round(20 * test_share), 3
        train, validation, test = (
            frame.filter(pl.Series(fold >= test_n + valid_n)),
            frame.filter(pl.Series((fold >= test_n) & (fold < test_n + valid_n))),
            frame.filter(pl.Series(fold < test_n)),
        )
        meta = {"data_fingerprint": fingerprint, "evaluation": "random split (the surveys have no dates)"}
    share, sample = sample_share(frame.height, max_rows, "survey responses")
    if sample:
        train, validation, test = (stratified_sample(f, share, [target], seed=seed) for f in (train, validation, test))
        meta = meta | {"sample": sample}
    features = feature_columns(frame, exclude=(s.STAGE,), extra=extra_features(dataset))
    meta = meta | {"response_lag": response_lag(pl.concat([train, validation]))}
    models: dict[str, SatisfactionModel] = {}
    with steps("training", len(engines)) as bar:
        for engine in engines:
            bar.step(f"fitting {engine}")
            models[engine] = SatisfactionModel.fit(
                train,
                validation=validation,
                engine=engine,
                target=target,
                features=features,
                seed=seed,
                metadata=meta,
                scale=dataset.config.scale,
            )
    first = next(iter(models.values()))
    levels, satisfied_from = first.levels, first.satisfied_from
    y = test[target].to_numpy()
    rows: list[dict[str, object]] = [
        {"engine": name, **ordinal_metrics(y, m.predict_proba(test), levels, satisfied_from)}
        for name, m in models.items()
    ]
    history = pl.concat([train, validation])[target].to_numpy()
    naive = np.array([(history == level).mean() for level in levels])
    rows.append({"engine": "naive", **ordinal_metrics(y, np.tile(naive, (test.height, 1)), levels, satisfied_from)})
    truth = [f"p_csat_{k}" for k in levels]
    has_truth = all(c in test.columns for c in truth) and test.select(truth).null_count().sum_horizontal()[0] == 0
    if target == "csat" and tuple(levels) == LEVELS["csat"] and has_truth:
        rows.append({"engine": ORACLE, **ordinal_metrics(y, test.select(truth).to_numpy(), levels, satisfied_from)})
    return SatisfactionTraining(
        models, target, split, pl.concat([train, validation]), test, pl.DataFrame(rows), evaluation, sample
    )


def response_lag(frame: pl.DataFrame) -> dict[str, Any]:
    """How long after an order the training surveys were answered: what a score "now" may rely on.

    The days since the order a survey is about (``days_since_order``), else since the customer's
    last order (``recency_days``): median and 95th percentile.
    """
    column = "days_since_order" if "days_since_order" in frame.columns else "recency_days"
    if column not in frame.columns or frame[column].drop_nulls().len() == 0:
        return {"column": None, "median": None, "p95": None}
    values = frame[column].drop_nulls()
    return {"column": column, "median": float(values.median()), "p95": float(values.quantile(0.95))}  # type: ignore[arg-type]
