"""The report commands: ``report`` renders report notebooks, ``demo`` makes demo data and renders them all."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from funnelmodels.cli.common import DROP_INVALID_HELP, Progress, print_summary
from funnelmodels.cli.data import DEMO_CUSTOMERS, DEMO_SEED, generate_into, print_generated
from funnelmodels.cli.distributed import add_cluster_options, is_partitioned, partitioned_input, wants_cluster
from funnelmodels.data.io import load_dataset
from funnelmodels.data.validate import dataset_summary
from funnelmodels.errors import EXIT_BUSY, BusyError, ConfigError
from funnelmodels.reports.registry import OVER_PARTITIONS, REPORTS
from funnelmodels.reports.runner import ReportsFailed, run_reports

__all__ = [
    "DEMO_DIR",
    "add_commands",
]


DEMO_DIR = Path("data") / "demo"


def _cmd_demo(args: argparse.Namespace, progress: Progress) -> int:

    if args.force or not (args.out / "stage_events.parquet").exists():
        progress(f"generating the demo dataset ({DEMO_CUSTOMERS:,} customers, seed {DEMO_SEED})")
        data, auc = generate_into(
            args.out, customers=DEMO_CUSTOMERS, seed=DEMO_SEED, fmt="parquet", progress=progress, teams=True
        )
        print_generated(data, auc, args.out)
    else:
        progress(f"using the demo dataset in {args.out} (--force regenerates it)")
    dataset = load_dataset(args.out)
    print_summary(dataset_summary(dataset.tables, dataset.spec), args.out)
    if args.no_reports:
        return 0
    runs = run_reports(list(REPORTS), {"data_dir": str(args.out)}, reports_dir=Path("reports"), progress=progress)
    print("\nOpen the reports in a browser:")
    for run in runs:
        print(f"  {run.html}")
    return 0


def _cmd_report(args: argparse.Namespace, progress: Progress) -> int:

    if args.all == bool(args.name):
        raise ConfigError("name one report, or use --all for every report.")
    params = dict(args.parameter)
    if args.drop_invalid:
        params["drop_invalid"] = "true"
    names = list(REPORTS) if args.all else [args.name]
    _over_partitions(args, params, names)
    try:
        runs = run_reports(
            names,
            params,
            reports_dir=args.reports_dir,
            notebooks_dir=args.notebooks_dir,
            with_code=args.with_code,
            progress=progress,
            label=args.label,
        )
    except ReportsFailed as failed:
        for run in failed.runs:
            print(f"{run.name}: {run.html}")
        progress.report("error", str(failed))
        busy = all(isinstance(error, BusyError) for error in failed.failures.values())
        return EXIT_BUSY if busy else 1
    for run in runs:
        print(f"{run.name}: {run.html}")
    return 0


def _over_partitions(args: argparse.Namespace, params: dict[str, str], names: list[str]) -> None:
    """With --cluster/--scheduler (or a partitioned data_dir): check the reports can run so, and pass the cluster on."""
    data_dir = params.get("data_dir")
    if not wants_cluster(args) and not (data_dir and is_partitioned(Path(data_dir))):
        return
    if not data_dir:
        raise ConfigError("--cluster and --scheduler need the partitioned dataset: -p data_dir DIR.")
    partitioned_input(args, Path(data_dir))
    others = [name for name in names if name not in OVER_PARTITIONS]
    if others:
        raise ConfigError(
            f"over a partitioned dataset, {' and '.join(OVER_PARTITIONS)} runs on the cluster; "
            f"{', '.join(others)} {'needs' if len(others) == 1 else 'need'} the dataset on one machine: run "
            f"{'it' if len(others) == 1 else 'them'} on the dataset the partitions were cut from, without "
            "--cluster or --scheduler."
        )
    params["cluster"] = args.cluster or ""
    params["scheduler"] = args.scheduler or ""


def add_commands(commands: Any) -> None:
    """Add ``report`` and ``demo`` to the command line's subparsers."""
    rep = commands.add_parser(
        "report",
        help="run a report notebook with papermill and render it to HTML",
        description="Execute a report notebook with parameters and render reports/NAME/<period or latest>/"
        "{report.html, report.ipynb, manifest.json, tables/}. The run is also kept under its resolved period "
        "(e.g. reports/NAME/2026-06/, with _LABEL for --label) and reports/NAME/index.html lists every kept run. "
        "The previous report stays untouched unless the run succeeds; a failed notebook is kept under "
        "reports/NAME/failed/. Reports: " + "; ".join(f"{name} ({what})" for name, what in REPORTS.items()) + ".",
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
        "--label",
        default="",
        metavar="LABEL",
        help="keep this run as reports/NAME/<period>_LABEL as well (letters, digits, - and _), e.g. board",
    )
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
    add_cluster_options(rep)
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
