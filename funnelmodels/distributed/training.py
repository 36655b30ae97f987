"""Training over partitions: one node on a stratified sample (the default), or ``lightgbm.dask`` on every row.

The default draws the same share of every partition's stage-transition rows, stratified by stage,
outcome and entry/snapshot, builds their features on the workers (the single-machine functions) and
fits on one node exactly as ``funnelmodels train`` does: distributed data-parallel LightGBM scores
worse than a single-node fit, and a sample of a few hundred thousand rows is within 0.01 ROC AUC of
every row (``benchmarks/RESULTS.md``). With a share of 1 (a dataset below the limit) the model is
the single-machine model, to the last digit.

Opt-in, :func:`fit_lightgbm_on_cluster` fits ``lightgbm.dask.DaskLGBMClassifier`` on every training
row, with early stopping off (it hangs distributed training) and the number of rounds the single-node
fit on the sample chose; the ROC AUC gap between the two on the same test rows is measured and kept.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Final

import numpy as np
import polars as pl

from funnelmodels.data import schema as s
from funnelmodels.distributed.cluster import gather_in_order
from funnelmodels.distributed.partition import Partitioned
from funnelmodels.distributed.pipeline import partition_dataset_of
from funnelmodels.errors import ModelError
from funnelmodels.features import extra_features
from funnelmodels.frames import stratified_sample
from funnelmodels.funnel import SNAPSHOT_DAYS
from funnelmodels.models.boosting import booster_from_text, lightgbm_parameters
from funnelmodels.models.conversion import (
    ENGINES,
    LIGHTGBM_DEFAULTS,
    Engine,
    LightGBMState,
    StageConversionModel,
    metrics_table,
    stage_offsets,
)
from funnelmodels.models.train import (
    ROW_ORDER,
    ConversionTraining,
    SatisfactionTraining,
    fit_conversion_frame,
    sample_share,
    split_by_time,
    survey_frame,
    train_satisfaction,
    transition_rows,
    with_features,
)
from funnelmodels.progress import steps

__all__ = [
    "SAMPLE_ROWS",
    "fit_lightgbm_on_cluster",
    "load_lightgbm_dask",
    "train_conversion_over",
    "train_satisfaction_over",
]

SAMPLE_ROWS: Final = 250_000
"""The default sample for a fit on one node: at M a sample of 30,000 rows was within 0.004 ROC AUC of every
row and 100,000 within 0.002 (``benchmarks/RESULTS.md``); the reports' own limit is the same 250,000."""


# --- tasks ----------------------------------------------------------------------------------------


def _rows(part: str, horizon_days: int | None, snapshots: Sequence[int] | None) -> pl.DataFrame:
    return transition_rows(partition_dataset_of(part), horizon_days, snapshots)


def _observed(rows: pl.DataFrame) -> int:
    return int((~rows[s.CENSORED]).sum())


def _sample(part: str, rows: pl.DataFrame, share: float, seed: int, horizon_days: int | None) -> pl.DataFrame:
    if share < 1:
        entry = pl.col(s.DAYS_IN_STAGE_SO_FAR) == 0
        observed = rows.filter(~pl.col(s.CENSORED))
        waiting = rows.filter(pl.col(s.CENSORED))
        rows = pl.concat(
            [
                stratified_sample(observed, share, [s.STAGE, s.CONVERTED, entry], seed=seed),
                stratified_sample(waiting, share, [s.STAGE, entry], seed=seed),
            ]
        )
    return with_features(partition_dataset_of(part), rows, horizon_days)


def _extra(part: str) -> list[str]:
    return extra_features(partition_dataset_of(part))


def _surveys(part: str, target: str, share: float, seed: int) -> pl.DataFrame:
    frame = survey_frame(partition_dataset_of(part))
    if target in frame.columns:
        frame = frame.filter(pl.col(target).is_not_null())
        frame = stratified_sample(frame, share, [target], seed=seed)
    return frame


# --- on the client --------------------------------------------------------------------------------


def train_conversion_over(
    client: Any,
    data: Partitioned,
    *,
    max_rows: int | None = SAMPLE_ROWS,
    seed: int = 0,
    engines: Sequence[Engine] = ENGINES,
    horizon_days: int | None = None,
    test_share: float = 0.2,
    snapshots: Sequence[int] | None = SNAPSHOT_DAYS,
) -> ConversionTraining:
    """:func:`funnelmodels.models.train.train_conversion` over a partitioned dataset, fitted on this node.

    Rows and features are built on the workers; at most ``max_rows`` observed rows are kept, a
    stratified sample of every partition.

    The out-of-time split is drawn from the sample's stage entries (the boundaries of a uniform sample
    are those of every row, to its sampling error). ``sample`` (and the models' metadata) says how much
    was kept, from how many partitions.
    """
    with steps("training", 3 + len(engines)) as bar:
        bar.step("transition rows on the workers")
        rows = client.map(_rows, data.parts, [horizon_days] * data.count, [snapshots] * data.count, pure=False)
        counts = gather_in_order(client.map(_observed, rows, pure=False), data.parts)
        total = sum(counts)
        if total == 0:
            raise ModelError("every stage entry of every partition is still within its horizon: nothing to learn from.")
        share, sample = sample_share(total, max_rows, "stage-transition rows")
        bar.step("sample and features on the workers")
        seeds = [seed * 1_000_003 + i for i in range(data.count)]
        futures = client.map(
            _sample, data.parts, rows, [share] * data.count, seeds, [horizon_days] * data.count, pure=False
        )
        frame = pl.concat(gather_in_order(futures, data.parts), how="vertical_relaxed").sort(ROW_ORDER)
        del rows
        extra = gather_in_order([client.submit(_extra, data.parts[0], pure=False)], data.parts[:1])[0]
        observed = frame.filter(~pl.col(s.CENSORED))
        entries = observed[s.DAYS_IN_STAGE_SO_FAR] == 0
        split, *_, meta = split_by_time(data.fingerprint, observed, test_share, entries=entries)
        if sample:
            sample += f", drawn across {data.count} partitions"
            meta = meta | {"sample": sample}
        meta = meta | {"partitions": data.count}
        return fit_conversion_frame(
            frame, split, meta, data.spec, extra, bar, engines, seed, horizon_days, None, snapshots, (), sample
        )


def train_satisfaction_over(
    client: Any, data: Partitioned, *, target: str = "csat", seed: int = 0, max_rows: int | None = SAMPLE_ROWS
) -> SatisfactionTraining:
    """:func:`funnelmodels.models.train.train_satisfaction` over a partitioned dataset.

    Each partition builds its responses' features and keeps the same share of each score (at most
    ``max_rows`` responses in all, known from the manifest's row counts); the fit is on this node.
    """
    if not data.has("surveys"):
        raise ModelError("the dataset has no surveys table; satisfaction models need survey responses (csat/nps).")
    total = data.rows("surveys")
    share = 1.0 if not max_rows or total <= max_rows else max_rows / total
    seeds = [seed * 1_000_003 + i for i in range(data.count)]
    futures = client.map(_surveys, data.parts, [target] * data.count, [share] * data.count, seeds, pure=False)
    frame = pl.concat(gather_in_order(futures, data.parts), how="diagonal_relaxed")
    order = [c for c in (s.AS_OF, s.CUSTOMER_ID, s.RESPONDED_AT) if c in frame.columns]
    frame = frame.sort(order, maintain_order=True)
    first = partition_dataset_of(data.parts[0])
    training = train_satisfaction(first, target=target, seed=seed, frame=frame, fingerprint=data.fingerprint)  # type: ignore[arg-type]
    if share < 1:
        kept = (
            f"a stratified sample of {share:.0%} of the {total:,} survey responses, "
            f"drawn across {data.count} partitions"
        )
        training = replace(training, sample=kept)
    return training


# --- every row, with lightgbm.dask ----------------------------------------------------------------


def load_lightgbm_dask() -> Any:
    """``lightgbm.dask``, with LightGBM's scikit-learn layer in place.

    Its estimators need scikit-learn, which funnelmodels otherwise keeps out of LightGBM's import
    (:func:`funnelmodels.models.boosting.lightgbm`); where LightGBM was loaded without it (a worker that
    scored before), its compatibility and scikit-learn modules are loaded again with it.
    """
    import sklearn  # noqa: F401

    if "lightgbm" in sys.modules and not sys.modules["lightgbm"].compat.SKLEARN_INSTALLED:
        import lightgbm.sklearn

        importlib.reload(sys.modules["lightgbm"].compat)
        importlib.reload(lightgbm.sklearn)
        if "lightgbm.dask" in sys.modules:  # it read the compatibility flags when it was loaded
            importlib.reload(sys.modules["lightgbm.dask"])
    import lightgbm.dask as lgb_dask

    return lgb_dask


def _on_worker_lightgbm_dask() -> bool:
    load_lightgbm_dask()
    return True


def _design(
    part: str,
    model: StageConversionModel,
    test_start: datetime,
    horizon_days: int | None,
    snapshots: Sequence[int] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dataset = partition_dataset_of(part)
    rows = transition_rows(dataset, horizon_days, snapshots)
    rows = rows.filter(~pl.col(s.CENSORED) & (pl.col(s.AS_OF) < test_start))
    frame = with_features(dataset, rows, horizon_days)
    state = model._lightgbm
    X = model.encoder.matrix(frame)
    y = frame[s.CONVERTED].cast(pl.Int8).to_numpy()
    return X, y, stage_offsets(frame, state["stage_offsets"])


def fit_lightgbm_on_cluster(
    client: Any,
    data: Partitioned,
    training: ConversionTraining,
    *,
    seed: int = 0,
    horizon_days: int | None = None,
    snapshots: Sequence[int] | None = SNAPSHOT_DAYS,
) -> tuple[ConversionTraining, dict[str, Any]]:
    """Refit the LightGBM engine with ``lightgbm.dask`` on every training row of every partition.

    Every observed row before the test period (train and validation, as the single-node refit), the
    sample model's encoding and stage offsets, and its number of rounds (early stopping off). Returns
    the training with the distributed model in place of the single-node one (metrics recomputed on the
    same test rows) and the comparison: ROC AUC of both and the gap.
    """
    import dask.array as da
    from dask.delayed import delayed

    if "lightgbm" not in training.models:
        raise ModelError("the distributed fit refits the lightgbm engine; train it first.")
    single = training.models["lightgbm"]
    state = single._lightgbm
    if set(state["models"]) != {"all"}:
        raise ModelError("the distributed fit supports one booster for every stage (the default), not one per stage.")
    lgb_dask = load_lightgbm_dask()
    client.run(_on_worker_lightgbm_dask)
    rounds = int(state["best_iteration"]["all"])
    n = data.count
    designs = client.map(
        _design,
        data.parts,
        [single] * n,
        [training.split.test_start] * n,
        [horizon_days] * n,
        [snapshots] * n,
        pure=False,
    )
    shapes = gather_in_order(client.map(lambda d: (d[0].shape, len(d[1])), designs, pure=False), data.parts)
    width = len(single.encoder.names)
    kept = [(f, shape) for f, (shape, count) in zip(designs, shapes, strict=True) if count]

    def column(index: int, dims: int, dtype: str) -> Any:
        blocks = []
        for future, shape in kept:
            part = delayed(lambda d, i=index: d[i])(future)
            blocks.append(da.from_delayed(part, shape=(shape[0], width) if dims == 2 else (shape[0],), dtype=dtype))
        return da.concatenate(blocks)

    X, y, init = column(0, 2, "float64"), column(1, 1, "int8"), column(2, 1, "float64")
    params, _, _ = lightgbm_parameters(LIGHTGBM_DEFAULTS, {}, seed, {"objective": "binary"})
    for key in ("num_threads", "force_row_wise", "deterministic"):
        params.pop(key, None)
    names = list(single.encoder.names)
    categorical = [i for i, name in enumerate(names) if name in single.encoder.categorical]
    classifier = lgb_dask.DaskLGBMClassifier(client=client, n_estimators=rounds, **params)
    with warnings.catch_warnings():  # the scikit-learn layer always passes n_jobs, which Dask sets itself
        warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
        classifier.fit(X, y, init_score=init, feature_name=names, categorical_feature=categorical)
    text = classifier.booster_.model_to_string()
    rows = int(sum(shape[0] for _, shape in kept))
    dask_state = LightGBMState(
        models={"all": text},
        best_iteration=dict(state["best_iteration"]),
        calibration=list(state["calibration"]),
        stage_offsets=dict(state["stage_offsets"]),
        refit_rows=rows,
    )
    fitted = (
        f"lightgbm.dask on {rows:,} rows over {n} partitions, {rounds} rounds (chosen by the single-node fit "
        "on the sample; early stopping off)"
    )
    probe = StageConversionModel(
        "lightgbm",
        single.encoder,
        single.spec,
        dask_state,
        {},
        {"all": booster_from_text(text)},
    )
    test = training.test
    auc_single, auc_dask = _auc(test, single), _auc(test, probe)
    comparison = {
        "fitted": fitted,
        "rows": rows,
        "rounds": rounds,
        "roc_auc_single_node_sample": auc_single,
        "roc_auc_distributed": auc_dask,
        "gap": auc_dask - auc_single,
        "test_rows": test.height,
    }
    distributed = replace(probe, metadata=dict(single.metadata) | {"distributed_fit": comparison})
    models = dict(training.models) | {"lightgbm": distributed}
    tables = [metrics_table(test, model.predict_proba(test), label=name) for name, model in models.items()]
    metrics = pl.concat([training.metrics.filter(~pl.col("engine").is_in(list(models))), *tables])
    return replace(training, models=models, metrics=metrics), comparison


def _auc(test: pl.DataFrame, model: StageConversionModel) -> float:
    table = metrics_table(test, model.predict_proba(test), label="m")
    return float(table.filter(pl.col(s.STAGE) == "all")["roc_auc"][0])
