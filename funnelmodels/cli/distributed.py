"""``partition`` a dataset by customer, and the options that put a command on a Dask cluster."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from funnelmodels.cli.common import DROP_INVALID_HELP, END_HELP, Progress, end_moment, positive_int, print_rejected
from funnelmodels.config import PARTITIONS_FILE
from funnelmodels.data.io import load_dataset
from funnelmodels.distributed.cluster import client_for
from funnelmodels.distributed.partition import Partitioned, open_partition, partition_dataset
from funnelmodels.distributed.pipeline import check_partitions
from funnelmodels.errors import ConfigError
from funnelmodels.outputs import atomic_dir

__all__ = [
    "add_cluster_options",
    "add_commands",
    "is_partitioned",
    "partitioned_input",
    "wants_cluster",
]

CLUSTER_HELP = "run on a new local Dask cluster of N worker processes (needs funnelmodels[dask]; DATA partitioned)"
SCHEDULER_HELP = "run on an existing Dask cluster (its scheduler's address, e.g. tcp://10.0.0.5:8786)"


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """``--cluster local:N`` and ``--scheduler ADDRESS`` (one or the other)."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--cluster", metavar="local:N", help=CLUSTER_HELP)
    where.add_argument("--scheduler", metavar="ADDRESS", help=SCHEDULER_HELP)


def wants_cluster(args: argparse.Namespace) -> bool:
    """Whether the command was asked to run on a Dask cluster."""
    return bool(getattr(args, "cluster", None) or getattr(args, "scheduler", None))


def is_partitioned(path: Path) -> bool:
    """Whether ``path`` is a folder written by ``funnelmodels partition``."""
    return (Path(path) / PARTITIONS_FILE).is_file()


def partitioned_input(args: argparse.Namespace, data: Path) -> bool:
    """Whether the command runs over a partitioned dataset on a cluster (False: the single-machine path).

    A cluster asked for a plain dataset, or a partitioned dataset without a cluster, is refused with what to do.
    """
    if wants_cluster(args) and not is_partitioned(data):
        raise ConfigError(
            f"--cluster and --scheduler run over a partitioned dataset; {str(data)!r} is not one. "
            f"Partition it first: funnelmodels partition {data} --partitions N --out DIR."
        )
    if is_partitioned(data) and not wants_cluster(args):
        raise ConfigError(
            f"{str(data)!r} is a dataset partitioned by customer: add --cluster local:N (N worker processes on "
            "this machine) or --scheduler tcp://host:port (an existing Dask cluster)."
        )
    return wants_cluster(args)


def _is_partition_folder(folder: Path) -> bool:
    return (folder / PARTITIONS_FILE).is_file()


def _cmd_partition(args: argparse.Namespace, progress: Progress) -> int:
    if is_partitioned(args.data):
        raise ConfigError(f"{args.data} is partitioned already; partition the dataset it was cut from.")
    progress(f"loading {args.data}")
    dataset = load_dataset(args.data, drop_invalid=args.drop_invalid, end=args.end)
    with atomic_dir(
        args.out, command="partition", looks_like=_is_partition_folder, inputs=dataset.config.inputs
    ) as staging:
        progress(f"writing {args.partitions} partitions by customer to {args.out}")
        manifest = partition_dataset(dataset, args.partitions, staging)
        written = Partitioned(staging, manifest)
        if args.cluster or args.scheduler:
            progress("validating each partition on its own, on the cluster")
            with client_for(args.cluster, args.scheduler) as client:
                check_partitions(client, written)
        else:
            progress("validating each partition on its own")
            for part in written.parts:
                open_partition(part, validate=True)
    print_rejected(dataset, sorted((args.out / "rejected").glob("*")) if dataset.rejected else [])
    sizes = [n for entry in manifest["tables"].values() for n in entry.get("per_partition", [])]
    print(f"wrote {args.partitions} partitions to {args.out}/ ({PARTITIONS_FILE}: row counts and fingerprint)")
    for name, entry in manifest["tables"].items():
        if entry.get("shared"):
            print(f"  {name:<13}{entry['rows']:>12,} rows, copied into every partition")
        else:
            counts = entry["per_partition"]
            print(f"  {name:<13}{entry['rows']:>12,} rows, {min(counts):,} to {max(counts):,} per partition")
    if sizes and args.partitions > 1:
        print(f"customers are placed by {manifest['hash']}")
    return 0


def add_commands(commands: Any) -> None:
    """Add ``partition``."""
    part = commands.add_parser(
        "partition",
        help="split a dataset by customer into partitions, for a Dask cluster",
        description=(
            "Write each table as Parquet partitions by a stable hash of customer_id, so that a customer's "
            "transactions, stage events, surveys and activities sit in one partition, plus partitions.json "
            "(partition count, row counts, each file's SHA-256). The dataset is validated whole first, then each "
            "partition on its own; a task reads a partition as validated while its files are unchanged, and "
            "validates it again otherwise. Then: train, score and report with --cluster."
        ),
    )
    part.add_argument("data", type=Path, metavar="DATA", help="dataset folder or funnel.toml")
    part.add_argument("--partitions", type=positive_int, required=True, metavar="N", help="how many partitions")
    part.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write (a new one)")
    part.add_argument("--drop-invalid", action="store_true", help=DROP_INVALID_HELP + " (DIR/rejected/)")
    part.add_argument("--end", type=end_moment, metavar="DATE", help=END_HELP)
    add_cluster_options(part)
    part.set_defaults(run=_cmd_partition)
