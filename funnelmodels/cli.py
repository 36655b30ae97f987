"""The ``funnelmodels`` command line: one command per job, an exit code, files on disk.

Exit codes: 0 success; 1 the data, configuration or a run failed (the message
says what and where); 2 the command line itself is wrong. Heavy libraries are
imported inside the commands that need them, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from funnelmodels.data import schema as s
from funnelmodels.data.io import Dataset
from funnelmodels.errors import ConfigError, FunnelModelsError, did_you_mean
from funnelmodels.frames import collect
from funnelmodels.funnel import build_transitions, data_end, stale_losses
from funnelmodels.models.persist import ModelStore
from funnelmodels.rates import conversion_table, cumulative_conversion_table, end_to_end_rate, time_to_convert_table
from funnelmodels.reports.registry import REPORTS
from funnelmodels.reports.runner import run_reports
from funnelmodels.segments import segment_label

__all__ = ["main"]

DEMO_DIR = Path("data") / "demo"
DROP_INVALID_HELP = "set rows that break a rule aside, with the reason, and go on with the rest"
DEMO_CUSTOMERS = 5_000
DEMO_SEED = 42


class _Progress:
    """Timed progress lines on stderr, so stdout stays clean for results."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"[{time.perf_counter() - self.start:6.1f}s] {message}", file=sys.stderr, flush=True)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, received {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, received {value}")
    return value


def _moment(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date like 2026-07-01 or 2026-07-01T09:00, received {text!r}"
        ) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="funnelmodels",
        description="Sales-funnel models and reports: stage conversion, satisfaction, sales performance.",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = commands.add_parser(
        "generate",
        help="write a synthetic dataset with ground truth",
        description="Write a reproducible synthetic dataset (four tables plus ground_truth/) into a folder. "
        "The same seed gives byte-identical files.",
    )
    gen.add_argument(
        "--customers", type=_positive_int, default=DEMO_CUSTOMERS, help="number of customers (default %(default)s)"
    )
    gen.add_argument("--seed", type=int, default=DEMO_SEED, help="random seed (default %(default)s)")
    gen.add_argument("--out", type=Path, required=True, help="output folder (replaced only when generation succeeds)")
    gen.add_argument(
        "--format", choices=("parquet", "csv"), default="parquet", help="file format (default %(default)s)"
    )
    gen.set_defaults(run=_cmd_generate)

    val = commands.add_parser(
        "validate",
        help="check a dataset against the data contract",
        description="Load every table of DATA (a folder or a funnel.toml), check every rule and print a summary. "
        "Exits 1 and lists every problem when the data breaks the contract.",
    )
    val.add_argument("data", type=Path, metavar="DATA", help="dataset folder or funnel.toml")
    val.add_argument("--json", action="store_true", help="print the summary as JSON")
    val.add_argument("--drop-invalid", action="store_true", help=DROP_INVALID_HELP)
    val.add_argument(
        "--rejected-dir",
        type=Path,
        default=Path("rejected"),
        metavar="DIR",
        help="with --drop-invalid: where the rows set aside go, one CSV per table (default %(default)s)",
    )
    val.set_defaults(run=_cmd_validate)

    fun = commands.add_parser(
        "funnel",
        help="the funnel at a glance: conversion and time to convert per stage",
        description="Conversion per stage (entered, converted, rate with 95%% Wilson interval) and median days "
        "to convert (Kaplan-Meier, censoring respected), overall or per segment.",
    )
    fun.add_argument("data", type=Path, metavar="DATA", help="dataset folder or funnel.toml")
    fun.add_argument("--by", metavar="COLUMN", help="break down by a customer or opportunity column, e.g. region")
    fun.add_argument(
        "--horizon-days", type=_positive_int, metavar="N", help="days a stage has to convert (default: the dataset's)"
    )
    fun.add_argument("--json", action="store_true", help="print the same as JSON")
    fun.add_argument(
        "--drop-invalid", action="store_true", help=DROP_INVALID_HELP.split(" (")[0] + " (counted, not written)"
    )
    fun.set_defaults(run=_cmd_funnel)

    train = commands.add_parser(
        "train",
        help="train and evaluate the models; write them to a folder",
        description="Train the stage-conversion models (LightGBM and the logit baseline) and the satisfaction "
        "models (ordinal logit and LightGBM) on the past, evaluate them out of time on the latest period (with the "
        "oracle on synthetic data) and write MODEL_DIR/conversion/<engine>/, MODEL_DIR/satisfaction/<engine>/ and "
        "MODEL_DIR/metrics.json. The folder is replaced only when training succeeds.",
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
    train.add_argument("--horizon-days", type=_positive_int, metavar="N", help="days a stage has to convert")
    train.add_argument("--drop-invalid", action="store_true", help=DROP_INVALID_HELP + " (MODEL_DIR/rejected/)")
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
        "--as-of", type=_moment, required=True, metavar="DATE", help="the scoring moment, e.g. 2026-07-01"
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
        help="which model (default lightgbm for conversion, ordinal for satisfaction)",
    )
    score.add_argument(
        "--drop-invalid", action="store_true", help=DROP_INVALID_HELP + " (FILE's folder, <name>_rejected/)"
    )
    score.set_defaults(run=_cmd_score)

    rep = commands.add_parser(
        "report",
        help="run a report notebook with papermill and render it to HTML",
        description="Execute a report notebook with parameters and render reports/NAME/<period or latest>/"
        "{report.html, report.ipynb, manifest.json, tables/}. The previous report stays untouched unless the run "
        "succeeds; a failed notebook is kept under reports/NAME/failed/. Reports: "
        + "; ".join(f"{name} ({what})" for name, what in REPORTS.items())
        + ".",
    )
    rep.add_argument("name", nargs="?", metavar="NAME", help="the report (omit with --all)")
    rep.add_argument("--all", action="store_true", help="render every report (what a scheduled run calls)")
    rep.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("KEY", "VALUE"),
        help="a notebook parameter, e.g. -p period 2026-06 -p data_dir data/demo (repeatable)",
    )
    rep.add_argument("--with-code", action="store_true", help="also write report_with_code.html (analyst view)")
    rep.add_argument(
        "--drop-invalid", action="store_true", help=DROP_INVALID_HELP + " (the report's folder, rejected/)"
    )
    rep.add_argument("--reports-dir", type=Path, default=Path("reports"), help="output root (default %(default)s)")
    rep.add_argument(
        "--notebooks-dir",
        type=Path,
        default=None,
        help="run your own notebooks (NAME.ipynb with a 'parameters' cell) through the same runner",
    )
    rep.set_defaults(run=_cmd_report)

    demo = commands.add_parser(
        "demo",
        help="generate the demo dataset, validate it and render the three reports",
        description=f"Generate the synthetic demo dataset into {DEMO_DIR} (if absent), validate it and render "
        "every report from it into reports/.",
    )
    demo.add_argument("--out", type=Path, default=DEMO_DIR, help="demo data folder (default %(default)s)")
    demo.add_argument("--force", action="store_true", help="regenerate even if the folder exists")
    demo.add_argument("--no-reports", action="store_true", help="only generate and validate the data")
    demo.set_defaults(run=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    progress = _Progress(quiet=args.quiet)
    run: Callable[[argparse.Namespace, _Progress], int] = args.run
    # A scheduler stops a job with SIGTERM: unwind like Ctrl-C, so every atomic write is rolled
    # back (the previous output stays) and the exit code says the run did not finish.
    previous = (
        signal.signal(signal.SIGTERM, _interrupt) if threading.current_thread() is threading.main_thread() else None
    )
    try:
        return run(args, progress)
    except FunnelModelsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc.strerror or exc} ({exc.filename or 'no file name'})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: nothing was replaced; earlier outputs are untouched", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _generate_into(out: Path, *, customers: int, seed: int, fmt: str, progress: _Progress) -> Any:
    from funnelmodels.data.io import atomic_dir
    from funnelmodels.data.synthetic import generate_dataset, oracle_auc, write_dataset

    data = generate_dataset(customers, seed=seed, progress=progress)
    progress(f"writing {fmt} files to {out}")
    with atomic_dir(out) as staging:
        write_dataset(data, staging, fmt=fmt)
    return data, oracle_auc(data.ground_truth["conversion"])


def _cmd_generate(args: argparse.Namespace, progress: _Progress) -> int:
    data, auc = _generate_into(args.out, customers=args.customers, seed=args.seed, fmt=args.format, progress=progress)
    _print_generated(data, auc, args.out)
    return 0


def _print_generated(data: Any, auc: dict[str, float], out: Path) -> None:
    print(f"wrote {out}/")
    for name, frame in data.tables().items():
        print(f"  {name:<13} {frame.height:>11,} rows")
    print("  ground_truth/ conversion, satisfaction, coefficients.json")
    print("true per-stage ROC AUC (the best any model can do): " + ", ".join(f"{k} {v:.3f}" for k, v in auc.items()))


def _cmd_validate(args: argparse.Namespace, progress: _Progress) -> int:
    from funnelmodels.data.io import load_dataset
    from funnelmodels.data.validate import dataset_summary

    progress(f"loading {args.data}")
    dataset = load_dataset(args.data, drop_invalid=args.drop_invalid)
    summary = dataset_summary(dataset.tables, dataset.spec) | {
        "notes": list(dataset.notes),
        "set_aside": {name: frame.height for name, frame in dataset.rejected.items() if frame.height},
    }
    written = _write_rejected(dataset, args.rejected_dir) if args.drop_invalid else []
    if args.json:
        print(json.dumps(summary | {"rejected_files": [str(p) for p in written]}, indent=2))
    else:
        _print_summary(summary, args.data)
        _print_rejected(dataset, written)
    return 0


def _write_rejected(dataset: Any, folder: Path) -> list[Path]:
    from funnelmodels.data.io import write_rejected

    return write_rejected(dataset, folder)


def _print_rejected(dataset: Any, written: Sequence[Path]) -> None:
    for line in dataset.rejected_summary():
        print(f"  set aside: {line}")
    if written:
        print(f"  rows set aside, with the reason: {', '.join(str(p) for p in written)}")


def _print_summary(summary: dict[str, Any], data: Path) -> None:
    print(f"{data}: valid")
    for name, info in summary["tables"].items():
        print(f"  {name:<13} {info['rows']:>11,} rows  {info['first'][:10]} … {info['last'][:10]}")
    if summary["missing"]:
        print(f"  not present:  {', '.join(summary['missing'])}")
    for note in summary.get("notes", []):
        print(f"  note: {note}")
    if summary["stages"]:
        print("  stages:       " + ", ".join(f"{k} {v:,}" for k, v in summary["stages"].items()))
    for warning in summary.get("warnings", []):
        print(f"  warning: {warning}")


def _cmd_funnel(args: argparse.Namespace, progress: _Progress) -> int:
    from funnelmodels.cli import funnel_summary
    from funnelmodels.data.io import load_dataset

    progress(f"loading {args.data}")
    dataset = load_dataset(args.data, drop_invalid=args.drop_invalid)
    for line in dataset.rejected_summary():
        progress(f"set aside: {line}")
    progress("building stage transitions")
    summary = funnel_summary(dataset, by=args.by, horizon_days=args.horizon_days)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        _print_funnel(summary, args.data)
    return 0


def _pct(value: float | None) -> str:
    return "    –" if value is None else f"{100 * value:5.1f}%"


def _print_funnel(summary: dict[str, Any], data: Path) -> None:
    print(f"Funnel of {data}: horizon {summary['horizon_days']} days, data to {str(summary['end'])[:10]}")
    if summary.get("stale_after_days"):
        print(
            f"stale rule: no event for {summary['stale_after_days']} days counts as lost "
            f"({summary['stale_losses']:,} opportunities)"
        )
    for block in summary["segments"]:
        if summary["by"]:
            print(f"\n{summary['by']} = {block['segment']}")
        print(
            f"  {'stage':<14}{'entered':>9}{'observed':>10}{'converted':>11}{'rate':>8}  {'95% CI':<15}"
            "median days (95% CI)"
        )
        for row in block["stages"]:
            ci = (
                f"{_pct(row['rate_low']).strip()}–{_pct(row['rate_high']).strip()}"
                if row["rate_low"] is not None
                else "–"
            )
            days = "–" if row["median_days"] is None else f"{row['median_days']:.0f}"
            if row["median_days_low"] is not None and row["median_days_high"] is not None:
                days += f" ({row['median_days_low']:.0f}–{row['median_days_high']:.0f})"
            print(
                f"  {row['stage']:<14}{row['entered']:>9,}{row['observed']:>10,}{row['converted']:>11,}"
                f"{_pct(row['rate']):>8}  {ci:<15}{days}"
            )
            if row.get("note"):
                print(f"    note: {row['note']}")
        e2e = block["end_to_end"]
        ci = f"{_pct(e2e['rate_low']).strip()}–{_pct(e2e['rate_high']).strip()}" if e2e["rate"] is not None else "–"
        print(f"  {summary['first_stage'] + ' → ' + summary['won']:<44}{_pct(e2e['rate']):>8}  {ci}")
        _print_cumulative(block["cumulative"], summary)
    print(
        "\nrate: converted within the horizon / observed (entries whose horizon is over; open ones are left out).\n"
        "median days: Kaplan-Meier to the next later stage, lost opportunities censored when lost;\n"
        "– means fewer than half convert before being lost or the data's end.\n"
        "cumulative: share that reached a later stage (end to end: won) and share lost by day d, every entry\n"
        "counted as far as it has been watched (Aalen-Johansen, lost as a competing event; 95% intervals);\n"
        "'all' reads the curves at the longest time any entry has been watched."
    )
    if summary["by"] and summary["tests"]:
        print("\nAre the segments different? (chi-square test per stage)")
        for stage, p in summary["tests"].items():
            verdict = "no p-value" if p is None else ("yes" if p < 0.05 else "no evidence") + f" (p = {p:.3g})"
            print(f"  {stage:<14}{verdict}")


def _print_cumulative(rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    def share(value: float | None, low: float | None, high: float | None) -> str:
        if value is None:
            return "–"
        interval = f" ({_pct(low).strip()}–{_pct(high).strip()})" if low is not None and high is not None else ""
        return f"{_pct(value).strip()}{interval}"

    print(f"  cumulative by day d    {'converted (95% CI)':<26}{'lost (95% CI)':<26}{'still watched':>13}")
    for row in rows:
        day = "all" if row["day"] is None else f"{row['day']:.0f}"
        label = f"{summary['first_stage']} → {summary['won']}" if row["stage"] == "end to end" else row["stage"]
        converted = share(row["converted"], row["converted_low"], row["converted_high"])
        lost = share(row["lost"], row["lost_low"], row["lost_high"])
        print(f"  {label[:16]:<16}{day:>5}  {converted:<26}{lost:<26}{row['at_risk']:>13,}")


def _cmd_train(args: argparse.Namespace, progress: _Progress) -> int:
    from funnelmodels.data.io import atomic_dir, load_dataset, write_rejected
    from funnelmodels.models.persist import write_json
    from funnelmodels.models.train import train_conversion, train_satisfaction

    progress(f"loading {args.data}")
    dataset = load_dataset(args.data, drop_invalid=args.drop_invalid)
    conversion = satisfaction = None
    if args.target in ("all", "conversion"):
        progress("conversion: features, lightgbm and logit on an out-of-time split")
        conversion = train_conversion(dataset, seed=args.seed, horizon_days=args.horizon_days)
    if args.target == "satisfaction" or (args.target == "all" and dataset.has("surveys")):
        progress(f"satisfaction ({args.satisfaction_score}): ordinal logit and lightgbm on an out-of-time split")
        satisfaction = train_satisfaction(dataset, target=args.satisfaction_score, seed=args.seed)
    report: dict[str, Any] = {}
    with atomic_dir(args.out) as staging:
        store = ModelStore(staging)
        if conversion is not None:
            for engine, model in conversion.models.items():
                model.save(store.conversion(engine))
            report["conversion"] = conversion.summary()
        if satisfaction is not None:
            for engine, smodel in satisfaction.models.items():
                smodel.save(store.satisfaction(engine))
            report["satisfaction"] = satisfaction.summary()
        report["data"] = {"notes": list(dataset.notes), "set_aside": dataset.rejected_summary()}
        written = write_rejected(dataset, staging / "rejected")
        write_json(store.metrics, report)
    progress(f"wrote {args.out}")
    _print_rejected(dataset, [args.out / "rejected" / p.name for p in written])
    if conversion is not None:
        print("Stage conversion (out of time)")
        _print_metrics(conversion.metrics)
        for engine, model in conversion.models.items():
            for note in model.metadata.get("notes", []):
                print(f"note ({engine}): {note}")
    if satisfaction is not None:
        print(f"\nSatisfaction: {satisfaction.target} (out of time)")
        print(f"{'engine':<10}{'rows':>7}{'MAE':>7}{'±1':>7}{'RPS':>7}{'log loss':>10}{'Spearman':>10}")
        for r in satisfaction.metrics.iter_rows(named=True):
            print(
                f"{r['engine']:<10}{r['n']:>7,}{r['mae']:>7.3f}{r['within_one']:>7.3f}{r['rps']:>7.3f}"
                f"{r['log_loss']:>10.3f}{r['spearman']:>10.3f}"
            )
    elif args.target == "all":
        print("note: satisfaction not trained: the dataset has no surveys table.")
    print(f"models and metrics.json in {args.out}/")
    return 0


def _print_metrics(metrics: Any) -> None:
    print(f"{'engine':<10}{'stage':<14}{'rows':>7}{'ROC AUC':>9}{'PR AUC':>8}{'log loss':>10}{'Brier':>7}{'ECE':>7}")
    for r in metrics.iter_rows(named=True):
        print(
            f"{r['engine']:<10}{r['stage']:<14}{r['n']:>7,}{r['roc_auc']:>9.3f}{r['pr_auc']:>8.3f}"
            f"{r['log_loss']:>10.3f}{r['brier']:>7.3f}{r['ece']:>7.3f}"
        )


def _cmd_score(args: argparse.Namespace, progress: _Progress) -> int:
    import polars as pl

    from funnelmodels.data.io import load_dataset, write_table
    from funnelmodels.errors import ModelError

    if args.out.suffix not in (".parquet", ".csv"):
        raise ModelError(f"--out must end in .parquet or .csv; received {args.out.name!r}.")
    progress(f"loading {args.data}")
    dataset = load_dataset(args.data, drop_invalid=args.drop_invalid)
    if args.target == "satisfaction":
        scored = _score_satisfaction(args, dataset, progress)
        likely = int((scored["p_low"] > 0.5).sum())
        summary = f"{scored.height:,} active customers at {args.as_of}; {likely:,} more likely than not to score low"
    else:
        scored = _score_conversion(args, dataset, progress)
        total, expected = scored["amount"].sum(), scored["expected_value"].sum()
        summary = (
            f"{scored.height:,} open opportunities at {args.as_of}: pipeline {total:,.0f}, expected {expected:,.0f}"
        )
    if args.out.suffix == ".csv":
        scored = scored.with_columns(pl.col(c).list.join("; ") for c in ("reasons_up", "reasons_down"))
    write_table(scored, args.out)
    print(summary)
    print(f"wrote {args.out}")
    written = _write_rejected(dataset, args.out.parent / f"{args.out.stem}_rejected") if dataset.rejected else []
    _print_rejected(dataset, written)
    return 0


def _score_conversion(args: argparse.Namespace, dataset: Any, progress: _Progress) -> Any:
    from funnelmodels.errors import ModelError
    from funnelmodels.models.conversion import StageConversionModel
    from funnelmodels.models.predict import check_as_of, score_open_opportunities

    engine = args.engine or "lightgbm"
    if engine not in ("lightgbm", "logit"):
        raise ModelError(f"conversion models are lightgbm or logit; received --engine {engine}.")
    check_as_of(dataset.lazy("stage_events"), args.as_of)  # refused before any model is read
    model = StageConversionModel.load(ModelStore(args.model).conversion(engine))
    if dataset.spec.stages != model.spec.stages:
        raise ModelError(
            f"the model was trained on the funnel {list(model.spec.stages)}, the data has {list(dataset.spec.stages)}."
        )
    progress(f"scoring opportunities open at {args.as_of}")
    return score_open_opportunities(dataset, model, args.as_of)


def _score_satisfaction(args: argparse.Namespace, dataset: Any, progress: _Progress) -> Any:
    from funnelmodels.errors import ModelError
    from funnelmodels.models.predict import at_risk_customers
    from funnelmodels.models.satisfaction import SatisfactionModel

    engine = args.engine or "ordinal"
    if engine not in ("ordinal", "lightgbm"):
        raise ModelError(f"satisfaction models are ordinal or lightgbm; received --engine {engine}.")
    model = SatisfactionModel.load(ModelStore(args.model).satisfaction(engine))
    progress(f"scoring customers active in the year before {args.as_of}")
    return at_risk_customers(dataset, model, args.as_of, top=None)


def _cmd_demo(args: argparse.Namespace, progress: _Progress) -> int:
    from funnelmodels.data.io import load_dataset
    from funnelmodels.data.validate import dataset_summary

    if args.force or not (args.out / "stage_events.parquet").exists():
        progress(f"generating the demo dataset ({DEMO_CUSTOMERS:,} customers, seed {DEMO_SEED})")
        data, auc = _generate_into(args.out, customers=DEMO_CUSTOMERS, seed=DEMO_SEED, fmt="parquet", progress=progress)
        _print_generated(data, auc, args.out)
    else:
        progress(f"using the demo dataset in {args.out} (--force regenerates it)")
    dataset = load_dataset(args.out)
    _print_summary(dataset_summary(dataset.tables, dataset.spec), args.out)
    if args.no_reports:
        return 0
    runs = run_reports(list(REPORTS), {"data_dir": str(args.out)}, reports_dir=Path("reports"), progress=progress)
    print("\nOpen the reports in a browser:")
    for run in runs:
        print(f"  {run.html}")
    return 0


def _cmd_report(args: argparse.Namespace, progress: _Progress) -> int:
    from funnelmodels.errors import ConfigError

    if args.all == bool(args.name):
        raise ConfigError("name one report, or use --all for every report.")
    params = dict(args.parameter)
    if args.drop_invalid:
        params["drop_invalid"] = "true"
    names = list(REPORTS) if args.all else [args.name]
    runs = run_reports(
        names,
        params,
        reports_dir=args.reports_dir,
        notebooks_dir=args.notebooks_dir,
        with_code=args.with_code,
        progress=progress,
    )
    for run in runs:
        print(f"{run.name}: {run.html}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def funnel_summary(dataset: object, *, by: str | None = None, horizon_days: int | None = None) -> dict[str, object]:
    """The funnel at a glance, as plain data (what ``funnelmodels funnel`` prints).

    Parameters
    ----------
    dataset : a loaded :class:`funnelmodels.data.io.Dataset` with stage_events.
    by : a segment column (see :data:`funnelmodels.features.SEGMENTS`, or any customers column).

    Returns
    -------
    ``{"by", "horizon_days", "end", "first_stage", "won", "segments": [{"segment", "stages":
    [{stage, entered, observed, converted, rate, rate_low, rate_high, median_days,
    median_days_low, median_days_high, note}], "end_to_end": {rate, rate_low, rate_high},
    "cumulative": [rows of :func:`cumulative_conversion_table`]}], "tests": {stage: p_value},
    "stale_after_days", "stale_losses"}``; ``observed`` is the rate's denominator (entries whose
    horizon is over) and ``note`` says so when every entry of a stage is still within it.
    """
    from funnelmodels.segments import add_segments

    assert isinstance(dataset, Dataset)
    spec = dataset.spec
    events = dataset.lazy("stage_events")
    end = data_end(events)
    horizon = spec.horizon_days if horizon_days is None else horizon_days
    transitions = build_transitions(events, spec, horizon_days=horizon, end=end)
    if by:
        transitions = add_segments(dataset, transitions)
        available = [c for c in transitions.collect_schema().names() if c not in _NOT_SEGMENTS]
        if by not in available:
            hint = did_you_mean(by, available)
            raise ConfigError(
                f"--by {by!r} is not a column of this dataset{hint}; available: {', '.join(sorted(available))}."
            )
        transitions = transitions.with_columns(segment_label(pl.col(by)))
    transitions = transitions.pipe(collect).lazy()
    rates = conversion_table(transitions, spec, by=by)
    medians = time_to_convert_table(transitions, spec, by=by, quantiles=(0.5,))
    cumulative = cumulative_conversion_table(transitions, spec, end=end, by=by)
    table = rates.join(medians.drop("q", "n", "events"), on=[by, s.STAGE] if by else [s.STAGE], how="left")
    segments = []
    for key, group in table.group_by([by] if by else pl.lit(True), maintain_order=True):
        stages = [
            {
                "stage": r[s.STAGE],
                "entered": r["entered"],
                "observed": r["observed"],
                "converted": r["converted"],
                "rate": r["rate"],
                "rate_low": r["rate_low"],
                "rate_high": r["rate_high"],
                "median_days": r["days"],
                "median_days_low": r["days_low"],
                "median_days_high": r["days_high"],
                "note": _censored_note(r["entered"], r["observed"], horizon),
            }
            for r in group.iter_rows(named=True)
        ]
        e2e = {k: (None if math.isnan(v) else v) for k, v in end_to_end_rate(group, spec).items()}
        curves = cumulative.filter(pl.col(by) == key[0]) if by else cumulative
        segments.append(
            {
                "segment": key[0] if by else None,
                "stages": stages,
                "end_to_end": e2e,
                "cumulative": curves.drop(*([by] if by else [])).to_dicts(),
            }
        )
    tests = {}
    if by:
        tests = {
            r[s.STAGE]: r["p_value"]
            for r in rates.unique(s.STAGE, keep="first", maintain_order=True).iter_rows(named=True)
        }
    stale = stale_losses(events, spec, end=end).select(pl.len()).pipe(collect).item()
    return {
        "by": by,
        "horizon_days": horizon,
        "stale_after_days": spec.stale_after_days,
        "stale_losses": stale,
        "end": end,
        "first_stage": spec.stages[0],
        "won": spec.won,
        "segments": segments,
        "tests": tests,
    }


_NOT_SEGMENTS = {*s.TRANSITION_COLUMNS, s.AMOUNT, s.AGE, s.INCOME}


def _censored_note(entered: int, observed: int, horizon: int) -> str | None:
    if entered and not observed:
        return (
            f"every one of the {entered:,} entries is still within its {horizon}-day horizon, so there is no "
            "rate yet; the cumulative conversion uses them as far as they have been watched"
        )
    return None
