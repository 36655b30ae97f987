"""The model commands: ``train`` into a folder, ``score`` the present, ``forecast`` a period's won value."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from funnelmodels.cli.common import (
    DROP_INVALID_HELP,
    END_HELP,
    Progress,
    end_moment,
    moment,
    non_negative_int,
    positive_int,
    print_rejected,
)
from funnelmodels.cli.distributed import add_cluster_options, partitioned_input
from funnelmodels.data import schema as s
from funnelmodels.data.io import load_dataset, write_rejected, write_table
from funnelmodels.distributed.cluster import client_for
from funnelmodels.distributed.partition import read_partitioned
from funnelmodels.distributed.pipeline import score_partitions
from funnelmodels.distributed.training import (
    SAMPLE_ROWS,
    fit_lightgbm_on_cluster,
    load_lightgbm_dask,
    train_conversion_over,
    train_satisfaction_over,
)
from funnelmodels.errors import EXIT_DRIFT, EXIT_NOT_READY, ConfigError, ModelError
from funnelmodels.kpis import FORECAST_KPI
from funnelmodels.models.card import conversion_card, drift_sentence, satisfaction_card
from funnelmodels.models.conversion import StageConversionModel
from funnelmodels.models.forecast import forecast_period, read_forecast_summary, train_forecast
from funnelmodels.models.hazard import CloseTimeModel
from funnelmodels.models.monitor import REFERENCE_FILE, pipeline_drift, pipeline_profiles
from funnelmodels.models.persist import METRICS_FILE, ModelStore, read_json, write_json
from funnelmodels.models.predict import REASONS_FOR, at_risk_customers, check_as_of, score_open_opportunities
from funnelmodels.models.satisfaction import SatisfactionModel
from funnelmodels.models.train import train_conversion, train_satisfaction
from funnelmodels.outputs import atomic_dir, check_file_output
from funnelmodels.provenance import version
from funnelmodels.reports.params import named_period, won_value_targets
from funnelmodels.reports.params import period_end as parse_period_end

__all__ = [
    "add_commands",
]


def _cmd_train(args: argparse.Namespace, progress: Progress) -> int:

    if partitioned_input(args, args.data):
        return _cmd_train_partitioned(args, progress)
    progress(f"loading {args.data}")
    dataset = load_dataset(args.data, drop_invalid=args.drop_invalid, end=getattr(args, "end", None))
    conversion = satisfaction = card = satisfaction_verdict = None
    report: dict[str, Any] = {}
    # The output folder is checked and locked before training: a second run is refused at once.
    with atomic_dir(args.out, command="train", looks_like=_is_model_folder, inputs=dataset.config.inputs) as staging:
        if args.target in ("all", "conversion"):
            progress("conversion: features, lightgbm and logit on an out-of-time split")
            conversion = train_conversion(dataset, seed=args.seed, horizon_days=args.horizon_days)
            progress("conversion: the model card (metrics with 95% intervals against the baselines, the gate)")
            card = conversion_card(conversion, seed=args.seed)
        forecast = None
        if args.target in ("all", "conversion"):
            progress("forecast: close-time models (won / lost / open by any date) and a backtest of past months")
            forecast = train_forecast(dataset, seed=args.seed, periods=args.forecast_periods, progress=progress)
        if args.target == "satisfaction" or (args.target == "all" and dataset.has("surveys")):
            progress(f"satisfaction ({args.satisfaction_score}): ordinal logit and lightgbm on an out-of-time split")
            satisfaction = train_satisfaction(dataset, target=args.satisfaction_score, seed=args.seed)
            satisfaction_verdict = satisfaction_card(satisfaction, seed=args.seed)
        store = ModelStore(staging)
        report |= _save_models(store, conversion, card, satisfaction, satisfaction_verdict)
        if conversion is not None:
            progress("conversion: the open pipeline at the test period's start, the reference for score --check-drift")
            moment = conversion.split.test_start
            for engine, profiled in pipeline_profiles(dataset, conversion.models, moment).items():
                write_json(store.conversion(engine) / REFERENCE_FILE, profiled)
        if forecast is not None:
            for engine, cmodel in forecast.models.items():
                cmodel.save(store.close_time(engine))
            write_json(store.forecast, forecast.summary())
        report["data"] = {"notes": list(dataset.notes), "set_aside": dataset.rejected_summary()}
        # Every option that shaped training, so a model folder says how it was made.
        report["training"] = {
            "data": str(args.data),
            "data_fingerprint_sha256": dataset.fingerprint(),
            "target": args.target,
            "seed": args.seed,
            "horizon_days": args.horizon_days or dataset.spec.horizon_days,
            "stale_after_days": dataset.spec.stale_after_days,
            "satisfaction_score": args.satisfaction_score,
            "forecast_periods": args.forecast_periods,
            "drop_invalid": args.drop_invalid,
            "funnelmodels": version(),
        }
        written = write_rejected(dataset, staging / "rejected")
        write_json(store.metrics, report)
    progress(f"wrote {args.out}")
    print_rejected(dataset, [args.out / "rejected" / p.name for p in written])
    return _print_training(args, conversion, card, forecast, satisfaction, satisfaction_verdict)


def _print_training(
    args: argparse.Namespace, conversion: Any, card: Any, forecast: Any, satisfaction: Any, satisfaction_verdict: Any
) -> int:
    """What ``train`` prints after writing the folder; the exit code (``--gate``)."""
    if conversion is not None:
        print("Stage conversion (out of time)")
        _print_metrics(conversion.metrics)
        for engine, model in conversion.models.items():
            for note in model.metadata.get("notes", []):
                print(f"note ({engine}): {note}")
    if card is not None:
        print(f"\nModel card ({args.out / 'conversion' / 'model_card.json'}): {card.gate.sentence()}")
    if forecast is not None:
        print("\nForecast of won value (close-time model)")
        if forecast.backtest is not None:
            print(forecast.backtest.coverage_sentence())
        for note in forecast.notes:
            print(f"note: {note}")
    if satisfaction is not None:
        print(f"\nSatisfaction: {satisfaction.target} (out of time)")
        print(f"{'engine':<10}{'rows':>7}{'MAE':>7}{'±1':>7}{'RPS':>7}{'log loss':>10}{'Spearman':>10}")
        for r in satisfaction.metrics.iter_rows(named=True):
            print(
                f"{r['engine']:<10}{r['n']:>7,}{r['mae']:>7.3f}{r['within_one']:>7.3f}{r['rps']:>7.3f}"
                f"{r['log_loss']:>10.3f}{r['spearman']:>10.3f}"
            )
        if satisfaction_verdict is not None:
            where = args.out / "satisfaction" / "model_card.json"
            print(f"\nModel card ({where}): {satisfaction_verdict.sentence()}")
    elif args.target == "all":
        print("note: satisfaction not trained: the dataset has no surveys table.")
    print(f"models and metrics.json in {args.out}/")
    waiting = [n for n, c in (("conversion", card), ("satisfaction", satisfaction_verdict)) if c and not _ready(c)]
    if args.gate and waiting:
        print(
            f"--gate: {' and '.join(waiting)} not ready to publish (exit code {EXIT_NOT_READY}); "
            "the models are written all the same."
        )
        return EXIT_NOT_READY
    return 0


def _cmd_train_partitioned(args: argparse.Namespace, progress: Progress) -> int:
    """``train`` over a partitioned dataset on a Dask cluster: a sample fitted on this node, or --distributed-fit."""
    data = read_partitioned(args.data)
    if args.drop_invalid or args.end:
        raise ConfigError("--drop-invalid and --end apply when partitioning; pass them to funnelmodels partition.")
    if args.distributed_fit:
        load_lightgbm_dask()  # before anything loads LightGBM without scikit-learn
    conversion = satisfaction = card = verdict = None
    comparison: dict[str, Any] | None = None
    report: dict[str, Any] = {}
    with atomic_dir(args.out, command="train", looks_like=_is_model_folder, inputs=[args.data]) as staging:
        with client_for(args.cluster, args.scheduler) as client:
            if args.target in ("all", "conversion"):
                progress(
                    f"conversion: rows and features on {data.count} partitions, a sample of at most "
                    f"{args.sample_rows:,} rows fitted here"
                )
                conversion = train_conversion_over(
                    client, data, max_rows=args.sample_rows, seed=args.seed, horizon_days=args.horizon_days
                )
                if args.distributed_fit:
                    progress("conversion: lightgbm.dask on every training row of every partition")
                    conversion, comparison = fit_lightgbm_on_cluster(
                        client, data, conversion, seed=args.seed, horizon_days=args.horizon_days
                    )
                progress("conversion: the model card")
                card = conversion_card(conversion, seed=args.seed)
            if args.target == "satisfaction" or (args.target == "all" and data.has("surveys")):
                progress(f"satisfaction ({args.satisfaction_score}): features on the partitions, fitted here")
                satisfaction = train_satisfaction_over(
                    client, data, target=args.satisfaction_score, seed=args.seed, max_rows=args.sample_rows
                )
                verdict = satisfaction_card(satisfaction, seed=args.seed)
        store = ModelStore(staging)
        report |= _save_models(store, conversion, card, satisfaction, verdict)
        if comparison is not None:
            report["conversion"]["distributed_fit"] = comparison
        report["data"] = {"notes": data.manifest.get("notes", []), "set_aside": []}
        report["training"] = {
            "data": str(args.data),
            "data_fingerprint_sha256": data.fingerprint,
            "partitions": data.count,
            "cluster": args.cluster or args.scheduler,
            "sample_rows": args.sample_rows,
            "distributed_fit": bool(args.distributed_fit),
            "target": args.target,
            "seed": args.seed,
            "horizon_days": args.horizon_days or data.spec.horizon_days,
            "stale_after_days": data.spec.stale_after_days,
            "satisfaction_score": args.satisfaction_score,
            "not_trained": PARTITIONED_LEFT_OUT,
            "funnelmodels": version(),
        }
        write_json(store.metrics, report)
    progress(f"wrote {args.out}")
    if comparison is not None:
        print(
            f"lightgbm.dask on {comparison['rows']:,} rows ({comparison['rounds']} rounds): ROC AUC "
            f"{comparison['roc_auc_distributed']:.4f} against {comparison['roc_auc_single_node_sample']:.4f} for the "
            f"single-node fit on the sample, on the same {comparison['test_rows']:,} test entries "
            f"(gap {comparison['gap']:+.4f}); the distributed model is the one written.\n"
        )
    print(f"note: {PARTITIONED_LEFT_OUT}")
    return _print_training(args, conversion, card, None, satisfaction, verdict)


PARTITIONED_LEFT_OUT = (
    "over partitions, train writes the conversion and satisfaction models and their cards; the forecast's "
    "close-time models and the drift reference of score --check-drift need the single-machine path."
)


def _save_models(store: ModelStore, conversion: Any, card: Any, satisfaction: Any, verdict: Any) -> dict[str, Any]:
    """Write the fitted models and their cards into the folder; their summaries for metrics.json."""
    report: dict[str, Any] = {}
    if conversion is not None:
        for engine, model in conversion.models.items():
            model.save(store.conversion(engine))
        report["conversion"] = conversion.summary()
    if card is not None:
        write_json(store.conversion_card, card.to_json())
    if satisfaction is not None:
        for engine, smodel in satisfaction.models.items():
            smodel.save(store.satisfaction(engine))
        report["satisfaction"] = satisfaction.summary()
    if verdict is not None:
        write_json(store.satisfaction_card, verdict.to_json())
    return report


def _ready(card: Any) -> bool:
    """A conversion card's gate or a satisfaction card's verdict."""
    return bool(card.gate.ready if hasattr(card, "gate") else card.ready)


def _is_model_folder(folder: Path) -> bool:
    """A model folder written before output folders were marked."""
    return (folder / METRICS_FILE).is_file()


def _print_metrics(metrics: Any) -> None:
    print(f"{'engine':<10}{'stage':<14}{'rows':>7}{'ROC AUC':>9}{'PR AUC':>8}{'log loss':>10}{'Brier':>7}{'ECE':>7}")
    for r in metrics.iter_rows(named=True):
        print(
            f"{r['engine']:<10}{r['stage']:<14}{r['n']:>7,}{r['roc_auc']:>9.3f}{r['pr_auc']:>8.3f}"
            f"{r['log_loss']:>10.3f}{r['brier']:>7.3f}{r['ece']:>7.3f}"
        )


def _cmd_score(args: argparse.Namespace, progress: Progress) -> int:

    if partitioned_input(args, args.data):
        return _cmd_score_partitioned(args, progress)
    if args.out.suffix not in (".parquet", ".csv"):
        raise ModelError(f"--out must end in .parquet or .csv; received {args.out.name!r}.")
    progress(f"loading {args.data}")
    dataset = load_dataset(args.data, drop_invalid=args.drop_invalid, end=getattr(args, "end", None))
    inputs = [*dataset.config.inputs[1:], args.model]
    check_file_output(args.out, inputs=inputs)
    drift_out = args.out.with_name(f"{args.out.stem}_drift.csv")
    if args.check_drift:
        if args.target == "satisfaction":
            raise ModelError("--check-drift compares the open pipeline: use it with --target conversion.")
        check_file_output(drift_out, inputs=inputs)
        _reference_of(args.model, args.engine)  # refused before any scoring
    if args.target == "satisfaction":
        scored = _score_satisfaction(args, dataset, progress)
        likely = int((scored["p_low"] > 0.5).sum())
        summary = f"{scored.height:,} active customers at {args.as_of}; {likely:,} more likely than not to score low"
    else:
        scored, engine = _score_conversion(args, dataset, progress)
        total, expected = scored["amount"].sum(), scored["expected_value"].sum()
        summary = (
            f"{scored.height:,} open opportunities at {args.as_of}: pipeline {total:,.0f}, expected {expected:,.0f}"
        )
    drifted = _check_drift(args, dataset, engine, drift_out, progress) if args.check_drift else False
    if args.out.suffix == ".csv":
        scored = scored.with_columns(pl.col(c).list.join("; ") for c in ("reasons_up", "reasons_down"))
    write_table(scored, args.out)
    print(summary)
    print(f"wrote {args.out}")
    written = []
    if dataset.rejected:
        rejected = args.out.parent / f"{args.out.stem}_rejected"
        with atomic_dir(rejected, command="score", inputs=inputs) as staging:
            written = [rejected / p.name for p in write_rejected(dataset, staging)]
    print_rejected(dataset, written)
    if drifted:
        print(f"--check-drift: drift found (exit code {EXIT_DRIFT}); the scores are written all the same.")
        return EXIT_DRIFT
    return 0


def _cmd_score_partitioned(args: argparse.Namespace, progress: Progress) -> int:
    """``score`` over a partitioned dataset: each partition scored on its worker into OUT/part-NNNNN.parquet."""
    data = read_partitioned(args.data)
    if args.target == "satisfaction" or args.check_drift or args.drop_invalid:
        raise ConfigError(
            "over partitions, score rates the open deals (--target conversion); --target satisfaction, "
            "--check-drift and --drop-invalid need the single-machine path."
        )
    if args.out.suffix:
        raise ConfigError(
            f"over partitions, --out is a folder (one Parquet file per partition); received {args.out.name!r}."
        )
    engine = args.engine or _carded_engine(args.model, progress)
    if engine not in ("lightgbm", "logit"):
        raise ModelError(f"conversion models are lightgbm or logit; received --engine {engine}.")
    model = StageConversionModel.load(ModelStore(args.model).conversion(engine), engine=engine)
    if data.spec.stages != model.spec.stages:
        raise ModelError(
            f"the model was trained on the funnel {list(model.spec.stages)}, the data has {list(data.spec.stages)}."
        )
    start = datetime.fromisoformat(data.manifest["start"])
    if args.as_of <= start:
        raise ModelError(
            f"as_of {args.as_of} is before any stage event (the data starts {start}); nothing is open yet."
        )
    if args.as_of > data.end + (data.end - start):
        raise ModelError(f"as_of {args.as_of} is far beyond the data's end ({data.end}); features would be stale.")
    with atomic_dir(args.out, command="score", looks_like=None, inputs=[args.data, args.model]) as staging:
        with client_for(args.cluster, args.scheduler) as client:
            progress(f"scoring the opportunities open at {args.as_of} on {data.count} partitions")
            parts = score_partitions(client, data, args.model, engine, args.as_of, staging, args.reasons)
        write_table(parts, staging / "partitions.csv")
    total, expected = parts["amount"].sum(), parts["expected_value"].sum()
    print(
        f"{int(parts['open'].sum()):,} open opportunities at {args.as_of}: pipeline {total:,.0f}, "
        f"expected {expected:,.0f} ({data.count} partitions, engine {engine})"
    )
    if args.reasons is not True and 0 < args.reasons < int(parts["open"].sum()):
        print(
            f"reasons: each partition's {args.reasons:,} deals worth most (so every deal among the "
            f"{args.reasons:,} worth most overall has them)"
        )
    print(f"wrote {args.out}/ (part-NNNNN.parquet per partition, partitions.csv)")
    return 0


def _reference_of(model_dir: Path, engine: str | None) -> dict[str, Any]:
    """The drift reference of ``engine``'s conversion model (of each one the folder holds when None)."""
    store = ModelStore(model_dir)
    engines = (
        [engine] if engine else [e for e in ("lightgbm", "logit") if (store.conversion(e) / "model.json").is_file()]
    )
    for name in engines:
        path = store.conversion(name) / REFERENCE_FILE
        if not path.is_file():
            raise ModelError(
                f"{path} is missing: the model folder was written before drift checks; train it again to check drift."
            )
    return read_json(store.conversion(engines[0]) / REFERENCE_FILE) if engines else {}


def _check_drift(args: argparse.Namespace, dataset: Any, engine: str, out: Path, progress: Progress) -> bool:
    """The open pipeline at --as-of against the one at the test period's start; True when a feature shifted."""
    reference = _reference_of(args.model, engine)
    model = StageConversionModel.load(ModelStore(args.model).conversion(engine), engine=engine)
    progress(f"drift: the pipeline open at {args.as_of} against the one at {reference.get('as_of', '?')[:10]}")
    table = pipeline_drift(dataset, model, reference, args.as_of)
    write_table(table, out)
    print(drift_sentence(table, f"the pipeline open at {args.as_of:%Y-%m-%d} against the one the model was tested on"))
    print(f"wrote {out}")
    return bool(table["alert"].any())


def _score_conversion(args: argparse.Namespace, dataset: Any, progress: Progress) -> tuple[Any, str]:

    engine = args.engine or _carded_engine(args.model, progress)
    if engine not in ("lightgbm", "logit"):
        raise ModelError(f"conversion models are lightgbm or logit; received --engine {engine}.")
    check_as_of(dataset.lazy("stage_events"), args.as_of)  # refused before any model is read
    model = StageConversionModel.load(ModelStore(args.model).conversion(engine), engine=engine)
    if dataset.spec.stages != model.spec.stages:
        raise ModelError(
            f"the model was trained on the funnel {list(model.spec.stages)}, the data has {list(dataset.spec.stages)}."
        )
    progress(f"scoring opportunities open at {args.as_of}")
    scored = score_open_opportunities(dataset, model, args.as_of, reasons=args.reasons)
    if args.reasons is not True and scored.height > args.reasons:
        shown = f"{args.reasons:,} deals worth most of {scored.height:,} open"
        progress(f"reasons for the {shown} (--reasons all for every deal)")
    return scored, engine


def _carded_engine(model_dir: Path, progress: Progress) -> str:
    """The engine the model card recommends (LightGBM when ready or when the folder has no card)."""
    path = ModelStore(model_dir).conversion_card
    if not path.is_file():
        return "lightgbm"
    gate = read_json(path).get("gate", {})
    engine = str(gate.get("engine") or "lightgbm")
    if engine != "lightgbm":
        progress(
            f"the model card says LightGBM is not ready: scoring with the {engine} (--engine lightgbm to override)"
        )
    return engine


def _reasons_count(text: str) -> bool | int:
    """``all`` or a whole number of 0 or more (the --reasons option)."""
    if text.strip().lower() == "all":
        return True
    return non_negative_int(text)


def _score_satisfaction(args: argparse.Namespace, dataset: Any, progress: Progress) -> Any:

    engine = args.engine or "ordinal"
    if engine not in ("ordinal", "lightgbm"):
        raise ModelError(f"satisfaction models are ordinal or lightgbm; received --engine {engine}.")
    model = SatisfactionModel.load(ModelStore(args.model).satisfaction(engine), engine=engine)
    progress(f"scoring customers active in the year before {args.as_of}")
    return at_risk_customers(dataset, model, args.as_of, top=None)


def _cmd_forecast(args: argparse.Namespace, progress: Progress) -> int:

    if args.out.suffix not in (".parquet", ".csv"):
        raise ModelError(f"--out must end in .parquet or .csv; received {args.out.name!r}.")
    length, start = named_period(args.period)
    end = parse_period_end(start, length)
    progress(f"loading {args.data}")
    dataset = load_dataset(args.data, drop_invalid=args.drop_invalid, end=getattr(args, "end", None))
    deals_out = args.out.with_name(f"{args.out.stem}_deals{args.out.suffix}")
    inputs = [*dataset.config.inputs[1:], args.model, *([args.targets] if args.targets else [])]
    for target in (args.out, deals_out):
        check_file_output(target, inputs=inputs)
    store = ModelStore(args.model)
    if not (store.close_time("lightgbm") / "model.json").is_file():
        raise ModelError(
            f"{args.model} has no close-time model (close_time/lightgbm/): it was trained before forecasts; "
            f"train it again with funnelmodels train."
        )
    model = CloseTimeModel.load(store.close_time("lightgbm"), engine="lightgbm")
    if dataset.spec.stages != model.spec.stages:
        raise ModelError(
            f"the model was trained on the funnel {list(model.spec.stages)}, the data has {list(dataset.spec.stages)}."
        )
    backtest = read_forecast_summary(store.forecast).get("backtest", {})
    goals = won_value_targets(args.targets, length, start, args.by)
    start_at, end_at = datetime.combine(start, datetime.min.time()), datetime.combine(end, datetime.min.time())
    progress(f"forecasting {args.period}: open deals, deals not yet created, the distribution")
    result = forecast_period(
        dataset,
        model,
        start=start_at,
        end=end_at,
        as_of=args.as_of,
        by=args.by,
        targets=goals,
        fan=False,
        spread=float(backtest.get("spread", 0.0) or 0.0),
        spread_measured="spread" in backtest,
    )
    slipped = result.slipped.select(s.OPPORTUNITY_ID, "expected_close_before").with_columns(
        pl.lit(True).alias("slipped")
    )
    deals = result.deals.join(slipped, on=s.OPPORTUNITY_ID, how="left").with_columns(pl.col("slipped").fill_null(False))
    table = result.table.with_columns(pl.lit(args.period).alias("period"), pl.lit(result.as_of).alias("as_of"))
    write_table(table.select("period", "as_of", *[c for c in table.columns if c not in ("period", "as_of")]), args.out)
    write_table(deals, deals_out)
    total = result.total
    print(
        f"{args.period} won value, forecast at {result.as_of:%Y-%m-%d}: mean {total['mean']:,.0f}, "
        f"80% between {total['p10']:,.0f} and {total['p90']:,.0f} (median {total['p50']:,.0f})"
    )
    print(
        f"  already won {total['closed']:,.0f}; from {total['open_deals']:,} open deals {total['open_mean']:,.0f}; "
        f"from deals not yet created {total['new_mean']:,.0f}"
    )
    if total["p_target"] is not None:
        print(f"  P(reaching the target {total['target']:,.0f}) = {100 * total['p_target']:.0f}%")
    elif args.targets:
        print(f"  the targets file has no {FORECAST_KPI} row for {args.period}: no P(target)")
    print(f"  {result.slipped.height:,} open deals slipped past the period's end since {result.compared_at:%Y-%m-%d}")
    if backtest.get("sentence"):
        print(f"  {backtest['sentence']}")
    for note in result.notes:
        print(f"note: {note}")
    print(f"wrote {args.out} and {deals_out}")
    return 0


def add_commands(commands: Any) -> None:
    """Add ``train`` and ``score`` to the command line's subparsers."""
    train = commands.add_parser(
        "train",
        help="train and evaluate the models; write them to a folder",
        description="Train the stage-conversion models (LightGBM and the logit baseline) and the satisfaction "
        "models (ordinal logit and LightGBM) on the past, evaluate them out of time on the latest period (with the "
        "oracle on synthetic data), fit the close-time models of the forecast and backtest it on past months, and "
        "write MODEL_DIR/conversion/<engine>/, MODEL_DIR/satisfaction/<engine>/, MODEL_DIR/close_time/<engine>/, "
        "MODEL_DIR/metrics.json, the model cards MODEL_DIR/conversion/model_card.json and "
        "MODEL_DIR/satisfaction/model_card.json (metrics with 95% intervals against simpler baselines, calibration "
        "decomposed, drift, a fairness audit, the readiness verdict), the drift reference of the open pipeline "
        "(MODEL_DIR/conversion/<engine>/reference.json, for score --check-drift) and MODEL_DIR/forecast.json. "
        "The folder is replaced only when training succeeds.",
    )
    train.add_argument("data", type=Path, metavar="DATA", help="dataset folder or funnel.toml")
    train.add_argument("--out", type=Path, required=True, metavar="MODEL_DIR", help="model folder to write")
    train.add_argument(
        "--target",
        choices=("all", "conversion", "satisfaction"),
        default="all",
        help="what to model (default %(default)s: conversion, and satisfaction when the data has surveys)",
    )
    train.add_argument(
        "--satisfaction-score",
        choices=("csat", "nps"),
        default="csat",
        help="the satisfaction target (default %(default)s)",
    )
    train.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    train.add_argument("--horizon-days", type=positive_int, metavar="N", help="days a stage has to convert")
    train.add_argument(
        "--forecast-periods",
        type=non_negative_int,
        default=8,
        metavar="N",
        help="past months to backtest the forecast on, refitting before each (default %(default)s; 0 skips it)",
    )
    train.add_argument("--drop-invalid", action="store_true", help=DROP_INVALID_HELP + " (MODEL_DIR/rejected/)")
    train.add_argument("--end", type=end_moment, metavar="DATE", help=END_HELP)
    train.add_argument(
        "--gate",
        action="store_true",
        help=f"exit with code {EXIT_NOT_READY} (after writing the models) when a model card says not ready: "
        "conversion with too little training data or no gain over the stage's own rate beyond its 95%% interval; "
        "satisfaction with no gain over the naive answer beyond its interval",
    )
    train.add_argument(
        "--sample-rows",
        type=positive_int,
        default=SAMPLE_ROWS,
        metavar="N",
        help="with --cluster/--scheduler: the most rows fitted on this node, a stratified sample drawn across "
        "the partitions (default %(default)s; within 0.01 ROC AUC of every row, benchmarks/RESULTS.md)",
    )
    train.add_argument(
        "--distributed-fit",
        action="store_true",
        help="with --cluster/--scheduler: refit LightGBM with lightgbm.dask on every training row (no early "
        "stopping; the rounds of the single-node fit on the sample) and print its ROC AUC gap to that fit",
    )
    add_cluster_options(train)
    train.set_defaults(run=_cmd_train)
    score = commands.add_parser(
        "score",
        help="score open opportunities (win probability, expected value, reasons) or at-risk customers",
        description="Score every opportunity open at AS_OF with a trained model: probability of reaching the "
        "next stage, win probability (product over the remaining stages), expected value (deal amount x win "
        "probability) and the top reasons. Writes Parquet or CSV (by the file's suffix).",
    )
    score.add_argument("data", type=Path, metavar="DATA", help="dataset folder or funnel.toml")
    score.add_argument("--model", type=Path, required=True, metavar="MODEL_DIR", help="folder written by train")
    score.add_argument(
        "--as-of", type=moment, required=True, metavar="DATE", help="the scoring moment, e.g. 2026-07-01"
    )
    score.add_argument("--out", type=Path, required=True, metavar="FILE", help="output .parquet or .csv")
    score.add_argument(
        "--target",
        choices=("conversion", "satisfaction"),
        default="conversion",
        help="conversion: open opportunities; satisfaction: the at-risk list of active customers (default %(default)s)",
    )
    score.add_argument(
        "--engine",
        choices=("lightgbm", "logit", "ordinal"),
        help="which model (default for conversion: the one the model card recommends, LightGBM when ready; "
        "ordinal for satisfaction)",
    )
    score.add_argument(
        "--check-drift",
        action="store_true",
        help=f"conversion: compare the open pipeline at AS_OF with the one the model was tested on (PSI and "
        f"Wasserstein per feature and for the score; FILE's folder, <name>_drift.csv) and exit with code {EXIT_DRIFT} "
        "when a feature shifted (PSI > 0.2 and not chance); the scores are written all the same",
    )
    score.add_argument(
        "--reasons",
        type=_reasons_count,
        default=REASONS_FOR,
        metavar="N|all",
        help="conversion: how many deals get reasons, worth most first; the others' reasons are empty "
        "(default %(default)s: every deal of a pipeline up to that size; 'all', or 0 for none)",
    )
    score.add_argument(
        "--drop-invalid", action="store_true", help=DROP_INVALID_HELP + " (FILE's folder, <name>_rejected/)"
    )
    add_cluster_options(score)
    score.set_defaults(run=_cmd_score)
    forecast = commands.add_parser(
        "forecast",
        help="the value of deals won by a period's end, as a distribution (mean, P10, P50, P90, P(target))",
        description="Forecast the value of the deals won in PERIOD: already won + each open deal's P(won by the "
        "period's end) from the close-time model + deals not yet created (their arrival rate, what they are like, "
        "how many win in time), computed exactly as a distribution, with the interval widened by the backtest's "
        "past errors. Writes FILE (one row per segment and 'all': closed, open_mean, new_mean, mean, p10, p50, "
        "p90, target, p_target) and FILE_deals (each open deal's P(won/lost/still open by the end), expected close, "
        "and whether it slipped past the period since the comparison moment).",
    )
    forecast.add_argument("data", type=Path, metavar="DATA", help="dataset folder or funnel.toml")
    forecast.add_argument("--model", type=Path, required=True, metavar="MODEL_DIR", help="folder written by train")
    forecast.add_argument("--period", required=True, metavar="PERIOD", help="2026-Q3, 2026-07 or 2026")
    forecast.add_argument("--by", metavar="SEGMENT", help="a stage_events or customers column, e.g. region")
    forecast.add_argument(
        "--targets",
        type=Path,
        metavar="FILE",
        help=f"CSV kpi, period, target[, SEGMENT]: the {FORECAST_KPI} rows of PERIOD give P(reaching the target)",
    )
    forecast.add_argument(
        "--as-of",
        type=moment,
        metavar="DATE",
        help="the forecast moment (default: the data's end, or the period's start)",
    )
    forecast.add_argument("--out", type=Path, required=True, metavar="FILE", help="output .csv or .parquet")
    forecast.add_argument("--drop-invalid", action="store_true", help=DROP_INVALID_HELP)
    forecast.set_defaults(run=_cmd_forecast)
