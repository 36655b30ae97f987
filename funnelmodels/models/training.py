"""Train, evaluate and score stage-conversion models on a dataset: the pipeline in named steps.

``train_conversion`` is what ``funnelmodels train`` and the stage-conversion notebook
call; ``score_open_opportunities`` what ``funnelmodels score`` calls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from funnelmodels.data import schema as s
from funnelmodels.data.io import Dataset
from funnelmodels.data.synthetic import read_ground_truth
from funnelmodels.errors import ModelError
from funnelmodels.evaluation import OutOfTimeSplit, out_of_time_split
from funnelmodels.features import build_features, build_transition_features, extra_features, feature_columns
from funnelmodels.frames import collect
from funnelmodels.funnel import SNAPSHOT_DAYS, add_snapshots, build_transitions, data_end
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
from funnelmodels.segments import AGE_BANDS, age_band

__all__ = [
    "ConversionTraining",
    "SatisfactionTraining",
    "at_risk_customers",
    "cross_validate_conversion",
    "pipeline_value",
    "score_open_opportunities",
    "survey_frame",
    "train_conversion",
    "train_satisfaction",
]

ORACLE = "oracle"


BASE_RATE_SHIFT = 0.05
"""A test-period base rate this far (in probability) from training's is said in words."""


@dataclass(frozen=True)
class ConversionTraining:
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

    def reliability(self) -> dict[str, pl.DataFrame]:
        """Reliability table (calibration curve) on the test rows, per engine and the oracle."""
        from funnelmodels.evaluation import reliability_table

        preds = self.predictions()
        y = preds[s.CONVERTED].cast(pl.Int8).to_numpy()
        return {c[2:]: reliability_table(y, preds[c].to_numpy()) for c in preds.columns if c.startswith("p_")}

    def lift(self) -> dict[str, pl.DataFrame]:
        """Lift and cumulative gains by decile on the test rows, per engine and the oracle."""
        from funnelmodels.evaluation import lift_table

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

    def describe_split(self) -> str:
        """Which rows trained, chose the rounds and tested the models, in one sentence (markdown)."""
        split = self.split
        snapshots = self.snapshots.height - self.test.height
        return (
            f"The models learnt from every transition before **{split.test_start:%Y-%m-%d}** "
            f"({self.history.height:,} stage entries, plus snapshots of the opportunities still open some days "
            f"later); LightGBM chose its number of rounds on the entries from **{split.validation_start:%Y-%m-%d}** "
            f"(trained without them first, then refitted on all). They are tested on the {self.test.height:,} stage "
            f"entries from {split.test_start:%Y-%m-%d} on"
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
        DataFrame ``days_in_stage, rows, observed_rate, mean_predicted`` over the entry rows
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
        return pl.DataFrame(
            {
                "days_in_stage": present,
                "rows": [int((labels == label).sum()) for label in present],
                "observed_rate": [float(y[labels == label].mean()) for label in present],
                "mean_predicted": [float(p[labels == label].mean()) for label in present],
            }
        )


def _split_by_time(
    dataset: Dataset, rows: pl.DataFrame, test_share: float, *, entries: pl.Series | None = None
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
        "data_fingerprint": dataset.fingerprint(),
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
    events = dataset.lazy("stage_events")
    end = data_end(events)
    transitions = build_transitions(events, dataset.spec, horizon_days=horizon_days, end=end)
    rows = add_snapshots(transitions, dataset.spec, end=end, horizon_days=horizon_days, days=snapshots or ())
    frame = build_transition_features(dataset, rows).pipe(collect)
    truth = _ground_truth(dataset)
    if truth is not None and (horizon_days is None or horizon_days == dataset.spec.horizon_days):
        # The generator's probabilities are those of the entry rows.
        truth = truth.with_columns(pl.lit(0.0).alias(s.DAYS_IN_STAGE_SO_FAR))
        frame = frame.join(truth, on=[s.OPPORTUNITY_ID, s.STAGE, s.ENTERED_AT, s.DAYS_IN_STAGE_SO_FAR], how="left")
    # One order on every run, whatever the joins did: the models are fitted in row order.
    return frame.sort(s.AS_OF, s.OPPORTUNITY_ID, s.STAGE, s.ENTRY, s.DAYS_IN_STAGE_SO_FAR)


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
) -> ConversionTraining:
    """Fit each engine on the past and evaluate it on the latest period (out of time).

    Steps: transition rows and snapshots with features → out-of-time split by as_of (the
    boundaries from the entry rows: train, validation, test) → fit each engine (LightGBM chooses
    its number of rounds on the validation slice, then is refitted on train + validation)
    → metrics per stage and overall on the test period's entry rows, with the oracle (the
    generator's true probabilities) when the dataset has ground truth.
    """
    frame = transition_frame(dataset, horizon_days=horizon_days, snapshots=snapshots)
    observed = frame.filter(~pl.col(s.CENSORED))
    if observed.height == 0:
        horizon = horizon_days or dataset.spec.horizon_days
        raise ModelError(
            f"every stage entry is still within its {horizon}-day horizon, so no outcome is known yet and there is "
            "nothing to learn from; the models need stage entries older than the horizon (a longer history, or a "
            "shorter horizon_days)."
        )
    entries = observed[s.DAYS_IN_STAGE_SO_FAR] == 0
    split, train, validation, test, meta = _split_by_time(dataset, observed, test_share, entries=entries)
    spec = dataset.spec if horizon_days is None else replace(dataset.spec, horizon_days=horizon_days)
    features = feature_columns(frame, extra=extra_features(dataset))
    models: dict[str, StageConversionModel] = {}
    for engine in engines:
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
    test_entries = test.filter(pl.col(s.DAYS_IN_STAGE_SO_FAR) == 0)
    tables = [
        metrics_table(test_entries, model.predict_proba(test_entries), label=name) for name, model in models.items()
    ]
    if "true_probability" in test_entries.columns and test_entries["true_probability"].null_count() == 0:
        tables.append(metrics_table(test_entries, test_entries["true_probability"].to_numpy(), label=ORACLE))
    metrics = (
        pl.concat(tables)
        .with_columns(dataset.spec.stage_order(pl.col(s.STAGE), order=("all", *dataset.spec.open_stages)).alias("_o"))
        .sort("engine", "_o")
        .drop("_o")
    )
    history = pl.concat([train, validation]).filter(pl.col(s.DAYS_IN_STAGE_SO_FAR) == 0)
    return ConversionTraining(
        models=models, split=split, test=test_entries, metrics=metrics, snapshots=test, history=history
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


def check_as_of(events: pl.LazyFrame, as_of: datetime) -> None:
    """Refuse a scoring moment before the first stage event or far beyond the data's end."""
    first = events.select(pl.col(s.ENTERED_AT).min()).pipe(collect).item()
    if first is None or as_of <= first:
        raise ModelError(f"as_of {as_of} is before any stage event (the data starts {first}); nothing is open yet.")
    end = data_end(events)
    if as_of > end + (end - first):
        raise ModelError(f"as_of {as_of} is far beyond the data's end ({end}); features would be stale.")


def open_opportunities(dataset: Dataset, as_of: datetime) -> pl.DataFrame:
    """Opportunities open at ``as_of``: their last event strictly before it is not won or lost.

    Returns
    -------
    DataFrame ``opportunity_id, customer_id, stage, entered_at, entry, opportunity_start[, amount, source]``.
    """
    events = dataset.lazy("stage_events")
    check_as_of(events, as_of)
    transitions = build_transitions(events.filter(pl.col(s.ENTERED_AT) < as_of), dataset.spec, end=as_of).pipe(collect)
    last = transitions.sort(s.ENTERED_AT).group_by(s.OPPORTUNITY_ID, maintain_order=True).last()
    # Still open: nothing after the last non-terminal entry (no exit, not lost).
    return last.filter(pl.col(s.EXITED_AT).is_null() & pl.col(s.LOST_AT).is_null())


def score_open_opportunities(dataset: Dataset, model: StageConversionModel, as_of: datetime) -> pl.DataFrame:
    """Win probability and expected value of every opportunity open at ``as_of``, with reasons.

    Win probability = P(current stage converts) × the product over every later non-terminal
    stage (DESIGN.md). The current stage is scored as it stands at ``as_of``: features known
    then, the days already spent in the stage and since the opportunity began (a lead that has
    waited 300 days is not a fresh lead). Each later stage is scored as if entered at ``as_of``
    (0 days in it), the best guess of a moment that has not come.

    Returns
    -------
    DataFrame ``opportunity_id, customer_id, stage, entered_at, opportunity_start, days_in_stage_so_far,
    amount, p_next_stage, win_probability, expected_value, reasons_up, reasons_down`` sorted by
    expected value.
    """
    opened = open_opportunities(dataset, as_of)
    if opened.height == 0:
        raise ModelError(f"no opportunity is open at {as_of}.")
    rows = build_transition_features(dataset, opened.lazy().with_columns(pl.lit(as_of).alias(s.AS_OF))).pipe(collect)
    stages = list(model.spec.open_stages)
    current = rows[s.STAGE].to_numpy()
    p_now = model.predict_proba(rows)
    win = p_now.copy()
    fresh = rows.with_columns(pl.lit(0.0).alias(s.DAYS_IN_STAGE_SO_FAR), pl.lit(1).alias("stage_entry"))
    for position, stage in enumerate(stages):
        later = np.isin(current, stages[:position])
        if later.any():
            p = model.predict_proba(fresh.filter(pl.Series(later)).with_columns(pl.lit(stage).alias(s.STAGE)))
            win[later] *= p
    explained = model.explain(rows)
    amount = rows[s.AMOUNT] if s.AMOUNT in rows.columns else pl.Series(s.AMOUNT, [None] * rows.height, pl.Float64)
    out = rows.select(
        s.OPPORTUNITY_ID, s.CUSTOMER_ID, s.STAGE, s.ENTERED_AT, s.OPPORTUNITY_START, s.DAYS_IN_STAGE_SO_FAR
    ).with_columns(
        amount.alias(s.AMOUNT),
        pl.Series(s.P_NEXT_STAGE, p_now),
        pl.Series(s.WIN_PROBABILITY, win),
        (amount * pl.Series(win)).alias(s.EXPECTED_VALUE),
        explained[s.REASONS_UP],
        explained[s.REASONS_DOWN],
    )
    return out.sort(s.EXPECTED_VALUE, s.OPPORTUNITY_ID, descending=[True, False], nulls_last=True)


def pipeline_value(scored: pl.DataFrame, *, by: str | None = None) -> pl.DataFrame:
    """Open pipeline by segment: deals, total value and expected (probability-weighted) value.

    Returns
    -------
    DataFrame ``[by,] opportunities, pipeline_amount, expected_value, mean_win_probability``.
    """
    keys = [by] if by else []
    agg = [
        pl.len().alias("opportunities"),
        pl.col(s.AMOUNT).sum().alias("pipeline_amount"),
        pl.col(s.EXPECTED_VALUE).sum().alias(s.EXPECTED_VALUE),
        pl.col(s.WIN_PROBABILITY).mean().alias("mean_win_probability"),
    ]
    if by:
        return scored.group_by(keys).agg(agg).sort(s.EXPECTED_VALUE, descending=True)
    return scored.select(agg)


# --- satisfaction --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SatisfactionTraining:
    """The outcome of :func:`train_satisfaction`: fitted engines, the split and test metrics."""

    models: dict[str, SatisfactionModel]
    target: str
    split: OutOfTimeSplit | None
    train: pl.DataFrame
    test: pl.DataFrame
    metrics: pl.DataFrame
    evaluation: str = "out of time"
    """How the test rows were chosen: "out of time", or "random" when the surveys have no dates."""

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
) -> SatisfactionTraining:
    """Fit each satisfaction engine on past responses and evaluate on the latest (out of time).

    The table holds both engines, a naive baseline (the training distribution of scores for
    everyone, so its expected score is the training mean) and, for CSAT on synthetic data,
    the oracle (the generator's true level probabilities).
    """
    if not dataset.has("surveys"):
        raise ModelError("the dataset has no surveys table; satisfaction models need survey responses (csat/nps).")
    frame = survey_frame(dataset)
    check_target(frame, target)
    frame = frame.filter(pl.col(target).is_not_null())
    evaluation = "out of time"
    if s.AS_OF in frame.columns:
        split, train, validation, test, meta = _split_by_time(dataset, frame, test_share)
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
        meta = {"data_fingerprint": dataset.fingerprint(), "evaluation": "random split (the surveys have no dates)"}
    features = feature_columns(frame, exclude=(s.STAGE,), extra=extra_features(dataset))
    meta = meta | {"response_lag": response_lag(pl.concat([train, validation]))}
    models: dict[str, SatisfactionModel] = {
        engine: SatisfactionModel.fit(
            train,
            validation=validation,
            engine=engine,
            target=target,
            features=features,
            seed=seed,
            metadata=meta,
            scale=dataset.config.scale,
        )
        for engine in engines
    }
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
        models, target, split, pl.concat([train, validation]), test, pl.DataFrame(rows), evaluation
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


def at_risk_customers(
    dataset: Dataset, model: SatisfactionModel, as_of: datetime, *, active_days: int = 365, top: int | None = 50
) -> pl.DataFrame:
    """Customers most likely to give a low score if asked now about their last order, with the reasons.

    Every customer who bought in the ``active_days`` before ``as_of`` is scored as a survey answered
    at ``as_of`` about their last order. The model only learnt from surveys answered within a few
    weeks of an order (``model.metadata["response_lag"]``): a customer whose last order is older
    than the 95th percentile of those lags is *out of range* — listed after the others, with a
    note, not ranked as if the model knew. Reasons that run against the customer's own last
    answer (a last CSAT of 1 said to raise satisfaction) are left out, and the note says so.

    Returns
    -------
    DataFrame ``customer_id, p_low, expected_score, in_range, days_since_order, last_csat,
    reasons_down, reasons_up, note`` — in-range customers first, by ``p_low`` (P(score in the
    scale's bottom levels)) highest first; the ``top`` rows (all if None).
    """
    if not dataset.has("transactions"):
        raise ModelError(
            "the at-risk list needs the transactions table: it scores the customers who bought in the last year."
        )
    start = as_of - timedelta(days=active_days)
    last_orders = (
        dataset.lazy("transactions")
        .filter(pl.col(s.ORDERED_AT).is_between(start, as_of, closed="left") & (pl.col(s.AMOUNT) > 0))
        .sort(s.ORDERED_AT, s.ORDER_ID)
        .group_by(s.CUSTOMER_ID)
        .agg(pl.col(s.ORDER_ID).last())
        .sort(s.CUSTOMER_ID)
        .with_columns(pl.lit(as_of).alias(s.AS_OF))
    )
    rows = build_features(dataset, last_orders).pipe(collect)
    if rows.height == 0:
        raise ModelError(f"no customer bought in the {active_days} days before {as_of}; nobody to score.")
    lag = model.metadata.get("response_lag", {}) or {}
    column = lag.get("column") or ("days_since_order" if "days_since_order" in rows.columns else "recency_days")
    waited = rows[column] if column in rows.columns else pl.Series([None] * rows.height, dtype=pl.Float64)
    in_range = (
        (waited <= lag["p95"]).fill_null(False) if lag.get("p95") is not None else pl.Series([True] * rows.height)
    )
    # Probabilities for everyone (cheap), reasons (TreeSHAP, costly) only for the rows returned.
    levels = np.asarray(model.levels, dtype=float)
    proba = model.predict_proba(rows)
    ranked = rows.with_columns(
        pl.Series(s.P_LOW, model.low_share(proba)),
        pl.Series(s.EXPECTED_SCORE, proba @ levels),
        in_range.alias(s.IN_RANGE),
        waited.alias("_waited"),
    ).sort(s.IN_RANGE, s.P_LOW, s.CUSTOMER_ID, descending=[True, True, False])
    if top:
        ranked = ranked.head(top)
    explained = model.explain(ranked)
    notes = _at_risk_notes(ranked, explained, lag)
    last_csat = (
        ranked["last_csat"] if "last_csat" in ranked.columns else pl.Series([None] * ranked.height, dtype=pl.Float64)
    )
    return ranked.select(s.CUSTOMER_ID, s.P_LOW, s.EXPECTED_SCORE, s.IN_RANGE).with_columns(
        ranked["_waited"].alias("days_since_order"),
        last_csat.alias("last_csat"),
        explained[s.REASONS_DOWN],
        explained[s.REASONS_UP],
        pl.Series("note", notes, dtype=pl.String),
    )


def _at_risk_notes(ranked: pl.DataFrame, explained: pl.DataFrame, lag: dict[str, Any]) -> list[str]:
    notes = []
    for row, dropped in zip(ranked.iter_rows(named=True), explained["left_out"].to_list(), strict=True):
        parts = []
        if not row[s.IN_RANGE] and lag.get("p95") is not None:
            waited = row["_waited"]
            parts.append(
                f"out of range: last order {waited:.0f} days ago; the model learnt from answers given within "
                f"{lag['p95']:.0f} days of an order"
                if waited is not None
                else "out of range: no order to ask about"
            )
        if dropped:
            parts.append(f"left out a reason that runs against the customer's own answer ({'; '.join(dropped)})")
        notes.append("; ".join(parts))
    return notes
