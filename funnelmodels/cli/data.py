"""The data commands: ``generate`` a synthetic dataset, ``validate`` one against the data contract."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from funnelmodels.cli.common import (
    DROP_INVALID_HELP,
    END_HELP,
    Progress,
    end_moment,
    positive_int,
    print_rejected,
    print_summary,
)
from funnelmodels.data.io import load_dataset, write_rejected
from funnelmodels.data.synthetic import generate_dataset, oracle_auc, write_dataset
from funnelmodels.data.validate import dataset_summary
from funnelmodels.outputs import atomic_dir

__all__ = [
    "DEMO_CUSTOMERS",
    "DEMO_SEED",
    "add_commands",
    "generate_into",
    "print_generated",
]


DEMO_CUSTOMERS = 5_000


DEMO_SEED = 42


def generate_into(out: Path, *, customers: int, seed: int, fmt: str, progress: Progress, teams: bool = False) -> Any:
    """Generate a synthetic dataset into ``out`` (replaced only on success); returns it and its oracle AUCs."""
    # Checked and locked before minutes of generating.
    with atomic_dir(out, command="generate", looks_like=lambda folder: (folder / "ground_truth").is_dir()) as staging:
        data = generate_dataset(customers, seed=seed, teams=teams, progress=progress)
        progress(f"writing {fmt} files to {out}")
        write_dataset(data, staging, fmt=fmt)
    return data, oracle_auc(data.ground_truth["conversion"])


def _cmd_generate(args: argparse.Namespace, progress: Progress) -> int:
    data, auc = generate_into(
        args.out, customers=args.customers, seed=args.seed, fmt=args.format, progress=progress, teams=args.teams
    )
    print_generated(data, auc, args.out)
    return 0


def print_generated(data: Any, auc: dict[str, float], out: Path) -> None:
    """Print what was generated and the best ROC AUC any model can reach on it."""
    print(f"wrote {out}/")
    for name, frame in data.tables().items():
        print(f"  {name:<13} {frame.height:>11,} rows")
    print(f"  ground_truth/ {', '.join(data.ground_truth)}, coefficients.json")
    print("true per-stage ROC AUC (the best any model can do): " + ", ".join(f"{k} {v:.3f}" for k, v in auc.items()))


def _cmd_validate(args: argparse.Namespace, progress: Progress) -> int:

    progress(f"loading {args.data}")
    dataset = load_dataset(args.data, drop_invalid=args.drop_invalid, end=getattr(args, "end", None))
    summary = dataset_summary(dataset.tables, dataset.spec) | {
        "notes": list(dataset.notes),
        "set_aside": {name: frame.height for name, frame in dataset.rejected.items() if frame.height},
    }
    written = write_rejected(dataset, args.rejected_dir) if args.drop_invalid else []
    if args.json:
        print(json.dumps(summary | {"rejected_files": [str(p) for p in written]}, indent=2))
    else:
        print_summary(summary, args.data)
        print_rejected(dataset, written)
    return 0


def add_commands(commands: Any) -> None:
    """Add ``generate`` and ``validate`` to the command line's subparsers."""
    gen = commands.add_parser(
        "generate",
        help="write a synthetic dataset with ground truth",
        description="Write a reproducible synthetic dataset (four tables, six with --teams, plus ground_truth/) into a "
        "folder. "
        "The same seed gives byte-identical files.",
    )
    gen.add_argument(
        "--customers", type=positive_int, default=DEMO_CUSTOMERS, help="number of customers (default %(default)s)"
    )
    gen.add_argument("--seed", type=int, default=DEMO_SEED, help="random seed (default %(default)s)")
    gen.add_argument("--out", type=Path, required=True, help="output folder (replaced only when generation succeeds)")
    gen.add_argument(
        "--format", choices=("parquet", "csv"), default="parquet", help="file format (default %(default)s)"
    )
    gen.add_argument(
        "--teams",
        action="store_true",
        help="add sales people with planted skill, uneven lead assignment and an activities table with planted "
        "effects (owners and activities tables; ground truth for both)",
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
    val.add_argument("--end", type=end_moment, metavar="DATE", help=END_HELP)
    val.add_argument(
        "--rejected-dir",
        type=Path,
        default=Path("rejected"),
        metavar="DIR",
        help="with --drop-invalid: where the rows set aside go, one CSV per table (default %(default)s)",
    )
    val.set_defaults(run=_cmd_validate)
