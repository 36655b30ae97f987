"""The single-machine pipeline, run partition by partition on a Dask cluster.

Each task opens one partition (:func:`funnelmodels.distributed.partition.open_partition`) and calls
the same polars functions as the single-machine path — features, transitions, KPI sums, RFM,
scoring — so there is no second implementation of anything. The client combines what comes back:
rows are concatenated (customers never span partitions), and KPIs are added up from sums and counts,
their ratios taken last. Tasks are plain functions over partition folders (Dask ``client.map``), not
``dask.dataframe``, which is pandas-backed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from funnelmodels.config import PARTITIONS_FILE
from funnelmodels.data import schema as s
from funnelmodels.data.io import Dataset, write_table
from funnelmodels.distributed.cluster import run_on_partitions
from funnelmodels.distributed.partition import Partitioned, cached_partition, open_partition
from funnelmodels.errors import ConfigError, ModelError
from funnelmodels.frames import collect
from funnelmodels.funnel import SNAPSHOT_DAYS, with_stale_losses
from funnelmodels.kpis import combine_sales_kpi_parts, sales_kpi_parts, sales_kpis_from_parts
from funnelmodels.models.conversion import StageConversionModel
from funnelmodels.models.persist import ModelStore
from funnelmodels.models.predict import NothingOpenError, score_open_opportunities
from funnelmodels.models.train import ROW_ORDER, transition_frame
from funnelmodels.rfm import rfm_summary
from funnelmodels.segments import with_segment

__all__ = [
    "PartitionCheck",
    "check_partitions",
    "features",
    "rfm",
    "sales_kpis",
    "score_partitions",
]


def partition_dataset_of(part: str) -> Dataset:
    """The dataset of partition folder ``part``, kept by the worker for its next task on the same partition."""
    manifest = Path(part).parent / PARTITIONS_FILE
    if not manifest.is_file():
        raise ConfigError(
            f"{manifest} is not there; on a cluster, the partitioned folder must be on storage every worker "
            "sees under the same path (a shared mount)."
        )
    stamp = str(manifest.stat().st_mtime_ns)
    return cached_partition(part, stamp)


# --- tasks: one partition each, on a worker ------------------------------------------------------


def _check(part: str) -> dict[str, Any]:
    dataset = open_partition(part, validate=True)
    return {
        "rows": {name: frame.height for name, frame in dataset.tables.items()},
        "notes": list(dataset.notes),
    }


def _features(part: str, horizon_days: int | None, snapshots: Sequence[int] | None) -> pl.DataFrame:
    return transition_frame(partition_dataset_of(part), horizon_days=horizon_days, snapshots=snapshots)


def _kpi_parts(part: str, period: str, segment: str | None) -> pl.DataFrame:
    dataset = partition_dataset_of(part)
    transactions = dataset.lazy("transactions") if dataset.has("transactions") else None
    events = dataset.lazy("stage_events") if dataset.has("stage_events") else None
    closed = with_stale_losses(events, dataset.spec, end=dataset.end) if events is not None else None
    if segment:
        customers = dataset.lazy("customers")
        transactions = with_segment(transactions, customers, segment) if transactions is not None else None
        closed = with_segment(closed, customers, segment) if closed is not None else None
    return sales_kpi_parts(
        transactions,
        closed,
        period=period,
        by=segment,
        won=dataset.spec.won,
        lost=dataset.spec.lost,
        rules=dataset.config.counting,
    )


def _rfm(part: str, observation_end: datetime | None) -> pl.DataFrame:
    dataset = partition_dataset_of(part)
    return rfm_summary(dataset.lazy("transactions"), observation_end=observation_end)


def _score(part: str, model_dir: str, engine: str, as_of: datetime, out: str, reasons: bool | int) -> dict[str, Any]:
    dataset = partition_dataset_of(part)
    model = StageConversionModel.load(ModelStore(Path(model_dir)).conversion(engine), engine=engine)
    try:
        scored = score_open_opportunities(dataset, model, as_of, reasons=reasons)
    except NothingOpenError:  # nothing open in this partition: no file (a moment before the data is an error)
        scored = None
    path = Path(out) / f"{Path(part).name}.parquet"
    if scored is None:
        return {"part": path.name, "open": 0, "amount": 0.0, "expected_value": 0.0}
    write_table(scored, path)
    return {
        "part": path.name,
        "open": scored.height,
        "amount": float(scored[s.AMOUNT].sum() or 0.0),
        "expected_value": float(scored[s.EXPECTED_VALUE].sum() or 0.0),
    }


# --- on the client: map over the partitions, combine ---------------------------------------------


@dataclass(frozen=True)
class PartitionCheck:
    """What validating every partition found: rows per table over all partitions, and the notes."""

    rows: dict[str, int]
    notes: list[str]


def check_partitions(client: Any, data: Partitioned) -> PartitionCheck:
    """Validate every partition on its own (each one's rules across its tables too), on the cluster.

    A partition that breaks a rule raises the same error as the single-machine load, naming the
    partition's folder, table, column and rule. Shared tables (owners) are counted once.
    """
    found = run_on_partitions(client, _check, data.parts)
    rows: dict[str, int] = {}
    for result in found:
        for name, count in result["rows"].items():
            shared = data.manifest["tables"].get(name, {}).get("shared", False)
            rows[name] = count if shared else rows.get(name, 0) + count
    notes = sorted({note for result in found for note in result["notes"]})
    return PartitionCheck(rows, notes)


def features(
    client: Any,
    data: Partitioned,
    *,
    horizon_days: int | None = None,
    snapshots: Sequence[int] | None = SNAPSHOT_DAYS,
) -> pl.DataFrame:
    """Every stage-transition row and snapshot with its features, as :func:`funnelmodels.models.train.transition_frame`.

    Built partition by partition and gathered on the client, in the single-machine row order. For a
    dataset too large for one machine, map :func:`_features` and keep the results on the workers.
    """
    parts = run_on_partitions(client, _features, data.parts, horizon_days, snapshots)
    frame: pl.DataFrame = pl.concat(parts, how="vertical_relaxed")
    return frame.sort(ROW_ORDER)


def sales_kpis(client: Any, data: Partitioned, *, period: str = "month", segment: str | None = None) -> pl.DataFrame:
    """:func:`funnelmodels.kpis.sales_kpi_table` of the whole dataset, from each partition's sums and counts.

    Win rates count the losses the stale rule infers, as the sales report does. ``segment``: a
    customers column (e.g. ``region``), labelled as the report labels it.
    """
    parts = run_on_partitions(client, _kpi_parts, data.parts, period, segment)
    return sales_kpis_from_parts(combine_sales_kpi_parts(parts, by=segment), by=segment)


def rfm(client: Any, data: Partitioned) -> pl.DataFrame:
    """:func:`funnelmodels.rfm.rfm_summary` of every customer, observed to the whole dataset's last purchase."""
    if not data.has("transactions"):
        raise ModelError("an RFM summary needs a transactions table; the partitioned dataset has none.")
    end = data.manifest.get("transactions_end")
    parts = run_on_partitions(client, _rfm, data.parts, datetime.fromisoformat(end) if end else None)
    frame: pl.DataFrame = pl.concat(parts)
    return frame.sort(s.CUSTOMER_ID)


def score_partitions(
    client: Any, data: Partitioned, model_dir: Path, engine: str, as_of: datetime, out: Path, reasons: bool | int
) -> pl.DataFrame:
    """Score the deals open at ``as_of`` in every partition, each with a copy of the booster on its worker.

    Writes ``out/part-NNNNN.parquet`` (the partition's scored deals, as ``funnelmodels score`` writes them)
    and returns one row per partition: open deals, amount and expected value. ``reasons``: each partition
    explains its own deals worth most, so every deal among the N worth most overall has its reasons.
    """
    found = run_on_partitions(client, _score, data.parts, str(model_dir), engine, as_of, str(out), reasons)
    return pl.DataFrame(
        found, schema={"part": pl.String, "open": pl.Int64, "amount": pl.Float64, "expected_value": pl.Float64}
    )


def read_scores(folder: Path) -> pl.DataFrame:
    """The scored deals of every partition (``score_partitions``' files), worth most first."""
    files = sorted(Path(folder).glob("part-*.parquet"))
    if not files:
        return pl.DataFrame()
    frame = pl.scan_parquet(files).pipe(collect)
    return frame.sort(s.EXPECTED_VALUE, s.OPPORTUNITY_ID, descending=[True, False], nulls_last=True)
