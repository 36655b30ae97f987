"""The pipeline over customer partitions on a local Dask cluster against the single-machine path.

    python benchmarks/over_partitions.py DATA --partitions 8 --workers 1,2 [--train] [--append]

For a generated dataset (``funnelmodels generate``, sizes of ``bench.py``): it times, on one machine,
the single-machine step and the same step over the partitions with 1 and 2 worker processes —
features of every transition row (gathered on the client), the monthly KPI table, the RFM summary,
scoring the open pipeline (each partition writes its own file) — and the partitioning itself. It
reads each worker's peak memory, and the cost of one partition (1 worker: the partitions one after
the other), from which RESULTS.md's estimate for 100M customers is made. With ``--train``: the
single-node fit on every row against the sampled fit over partitions (250,000, 100,000 and 30,000
rows), both judged on the full fit's test entries, and the lightgbm.dask refit's gap.

Every figure of one run comes from the same machine state; ratios (ours / single machine) are
within the run.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from funnelmodels.data.io import load_dataset
from funnelmodels.distributed import pipeline as dp
from funnelmodels.distributed.cluster import client_for
from funnelmodels.distributed.partition import partition_dataset, read_partitioned
from funnelmodels.distributed.training import fit_lightgbm_on_cluster, load_lightgbm_dask, train_conversion_over
from funnelmodels.funnel import with_stale_losses
from funnelmodels.kpis import sales_kpi_table
from funnelmodels.models.conversion import metrics_table
from funnelmodels.models.persist import ModelStore
from funnelmodels.models.predict import score_open_opportunities
from funnelmodels.models.train import train_conversion, transition_frame
from funnelmodels.rfm import rfm_summary

HERE = Path(__file__).resolve().parent


def timed(step: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = step()
    return time.perf_counter() - start, out


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--train", action="store_true")
    parser.add_argument("--append", action="store_true", help="append the tables to benchmarks/RESULTS.md")
    args = parser.parse_args()
    load_lightgbm_dask()
    work = Path(tempfile.mkdtemp(prefix="fm-dist-"))
    lines: list[str] = []
    try:
        whole = load_dataset(args.data)
        customers = whole.tables["customers"].height
        transactions = whole.tables["transactions"].height
        as_of = whole.end
        # A model to score with: a quick fit on the whole (what is timed is the scoring).
        model_dir = work / "model"
        trained = train_conversion(whole, engines=("lightgbm",), max_rows=100_000)
        trained.models["lightgbm"].save(ModelStore(model_dir).conversion("lightgbm"))
        model = trained.models["lightgbm"]

        single: dict[str, float] = {}
        single["features"], frame = timed(lambda: transition_frame(whole))
        closed = with_stale_losses(whole.lazy("stage_events"), whole.spec)
        single["kpis"], _ = timed(lambda: sales_kpi_table(whole.lazy("transactions"), closed))
        single["rfm"], _ = timed(lambda: rfm_summary(whole.lazy("transactions")))
        single["score"], scored = timed(lambda: score_open_opportunities(whole, model, as_of, reasons=False))
        rows = frame.height

        parts = work / "parts"
        parts.mkdir()
        partition_s, _ = timed(lambda: partition_dataset(whole, args.partitions, parts))
        data = read_partitioned(parts)
        results: dict[int, dict[str, float]] = {}
        memory: dict[int, float] = {}
        for workers in [int(w) for w in args.workers.split(",")]:
            with client_for(f"local:{workers}") as client:
                got: dict[str, float] = {}
                got["validate"], _ = timed(lambda c=client: dp.check_partitions(c, data))  # the partitions loaded
                got["features"], over = timed(lambda c=client: dp.features(c, data))
                assert over.height == rows
                got["kpis"], _ = timed(lambda c=client: dp.sales_kpis(c, data))
                got["rfm"], _ = timed(lambda c=client: dp.rfm(c, data))
                out = work / f"scores{workers}"
                out.mkdir()
                got["score"], per_part = timed(
                    lambda c=client, o=out: dp.score_partitions(c, data, model_dir, "lightgbm", as_of, o, False)
                )
                assert int(per_part["open"].sum()) == scored.height
                memory[workers] = max(client.run(peak_mib).values())
                results[workers] = got
        lines += report(args, customers, transactions, rows, partition_s, single, results, memory)
        if args.train:
            with client_for("local:2") as client:
                lines += training(client, whole, data)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.append:
        with (HERE / "RESULTS.md").open("a", encoding="utf-8") as results_file:
            results_file.write("\n" + text)


def report(
    args: argparse.Namespace,
    customers: int,
    transactions: int,
    rows: int,
    partition_s: float,
    single: dict[str, float],
    results: dict[int, dict[str, float]],
    memory: dict[int, float],
) -> list[str]:
    machine = f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}"
    lines = [
        f"## {date.today()} — the pipeline over {args.partitions} customer partitions on a local Dask cluster "
        f"(`python benchmarks/over_partitions.py {args.data.name} --partitions {args.partitions} "
        f"--workers {args.workers}`, {machine})",
        "",
        f"{customers:,} customers, {transactions:,} transactions, {rows:,} stage-transition rows and snapshots; "
        f"partitioning (one node, validated load excluded) took {partition_s:.1f} s. Seconds per step; "
        "the ratio is the cluster's time over the single machine's, in this run.",
        "",
        "| step | single machine | " + " | ".join(f"{w} worker{'s' if w > 1 else ''}" for w in results) + " |",
        "|---|---|" + "---|" * len(results),
    ]
    for step in ("features", "kpis", "rfm", "score"):
        cells = [f"{results[w][step]:.2f} ({results[w][step] / single[step]:.2f}×)" for w in results]
        lines.append(f"| {step} | {single[step]:.2f} | " + " | ".join(cells) + " |")
    cells = [f"{results[w]['validate']:.2f}" for w in results]
    lines.append("| load and validate every partition | — | " + " | ".join(cells) + " |")
    lines.append("| peak memory of a worker (MiB) | — | " + " | ".join(f"{memory[w]:.0f}" for w in results) + " |")
    one = results.get(1)
    if one is not None:
        per_part = sum(one[s] for s in ("validate", "features", "kpis", "rfm", "score")) / args.partitions
        per_customer_us = per_part / (customers / args.partitions) * 1e6
        lines += [
            "",
            f"One worker runs the partitions one after another: one partition of {customers // args.partitions:,} "
            f"customers costs {per_part:.2f} s for all five steps, {per_customer_us:.1f} µs per customer.",
        ]
    return lines


def training(client: Any, whole: Any, data: Any) -> list[str]:
    full_s, full = timed(lambda: train_conversion(whole))
    test = full.test

    def auc(model: Any) -> float:
        table = metrics_table(test, model.predict_proba(test), label="x")
        return float(table.filter(pl.col("stage") == "all")["roc_auc"][0])

    base = auc(full.models["lightgbm"])
    lines = [
        "",
        "Training: the single-node fit on every row against the fit on a stratified sample drawn across the "
        f"partitions, both judged on the full fit's {test.height:,} test entries (LightGBM ROC AUC).",
        "",
        "| fit | rows kept | seconds | ROC AUC | gap to every row |",
        "|---|---|---|---|---|",
        f"| one node, every row | all | {full_s:.1f} | {base:.4f} | — |",
    ]
    sampled = None
    for limit in (250_000, 100_000, 30_000):
        seconds, sampled = timed(lambda m=limit: train_conversion_over(client, data, max_rows=m))
        share = re.search(r"(\d+%) of the ([\d,]+)", sampled.sample)
        kept = f"{share.group(1)} of {share.group(2)}" if share else "every row (below the limit)"
        value = auc(sampled.models["lightgbm"])
        lines.append(f"| sample, at most {limit:,} | {kept} | {seconds:.1f} | {value:.4f} | {value - base:+.4f} |")
        if limit == 100_000:
            dask_s, (refit, comparison) = timed(lambda s=sampled: fit_lightgbm_on_cluster(client, data, s))
            value = auc(refit.models["lightgbm"])
            lines.append(
                f"| lightgbm.dask on every training row, {comparison['rounds']} rounds of the 100,000-row fit | "
                f"{comparison['rows']:,} | {dask_s:.1f} | {value:.4f} | {value - base:+.4f} |"
            )
    return lines


if __name__ == "__main__":
    sys.exit(main())
