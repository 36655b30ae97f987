"""A dataset split by customer into partitions, and one partition read back as a dataset.

Every table with a ``customer_id`` is cut by a stable hash of it, so all of a customer's
transactions, stage events, surveys and activities sit in one partition: every rule and every
feature that looks at one customer (or one of their opportunities or orders) gives the same answer
on the partition as on the whole. The owners table has no customer: each partition holds a copy.

What a partition cannot know alone is the data's end: the whole dataset's last stage event ends
every partition too (``DatasetConfig.whole_end``), so the stale rule, censoring and the scoring
moment are those of the whole.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

import numpy as np
import polars as pl

from funnelmodels.config import PARTITIONS_FILE, CountingRules, FunnelSpec, SatisfactionScale, load_config
from funnelmodels.data import schema as s
from funnelmodels.data.io import Dataset, load_dataset, write_rejected
from funnelmodels.data.validate import dataset_summary
from funnelmodels.errors import ConfigError, FunnelModelsError
from funnelmodels.provenance import version

__all__ = [
    "HASH",
    "Partitioned",
    "open_data",
    "open_partition",
    "partition_dataset",
    "partition_of",
    "read_partitioned",
]

FORMAT: Final = 1
"""The manifest's format: a reader refuses a newer one."""

HASH: Final = "fnv1a-64 of the customer_id as UTF-8 text, modulo the partition count"
"""How a customer's partition is chosen: the same on every machine, Python and polars version (polars'
own hash is not stable across versions), and the same for the id 42 stored as a number or as text."""

_FNV_OFFSET: Final = np.uint64(0xCBF29CE484222325)
_FNV_PRIME: Final = np.uint64(0x100000001B3)
_SHARED: Final = ("owners",)
"""Tables without customers: copied whole into every partition."""


def partition_of(ids: pl.Series, partitions: int) -> np.ndarray:
    """The partition (0 … ``partitions`` − 1) of each customer id: FNV-1a 64 of its text, modulo the count.

    Vectorised over the ids' bytes (one pass per byte position of the longest id).
    """
    if partitions < 1:
        raise ConfigError(f"the partition count must be at least 1; received {partitions}.")
    text = ids.cast(pl.String)
    if text.null_count():
        raise ConfigError("a customer_id is missing: every row needs one to be placed in a partition.")
    lengths = text.str.len_bytes().to_numpy()
    width = int(lengths.max()) if len(lengths) else 0
    hashed = np.full(len(text), _FNV_OFFSET, dtype=np.uint64)
    if width:
        encoded = np.char.encode(text.to_numpy().astype(np.str_), "utf-8").astype(f"S{width}")
        octets = np.frombuffer(encoded.tobytes(), dtype=np.uint8).reshape(len(text), width)
        for j in range(width):
            step = (hashed ^ octets[:, j].astype(np.uint64)) * _FNV_PRIME
            hashed = np.where(lengths > j, step, hashed)
    return (hashed % np.uint64(partitions)).astype(np.int64)


@dataclass(frozen=True)
class Partitioned:
    """A partitioned dataset: its folder and manifest (``partitions.json``)."""

    folder: Path
    manifest: dict[str, Any]
    cluster: str | None = None
    """Where its work runs: ``local:N`` (a new local cluster) …"""
    scheduler: str | None = None
    """… or the address of an existing Dask scheduler."""

    @property
    def name(self) -> str:
        """How messages name it: its folder."""
        return str(self.folder.resolve())

    @property
    def notes(self) -> list[str]:
        """What loading the dataset said before it was partitioned, and how it is partitioned."""
        return [
            *self.manifest.get("notes", []),
            f"{self.count} partitions by customer ({self.manifest['hash']}); each partition validated on its own.",
        ]

    @property
    def currency(self) -> str:
        """The symbol reports write money with."""
        return str(self.manifest.get("currency", "$"))

    @property
    def summary(self) -> dict[str, Any]:
        """The whole dataset's rows and dates per table, as :func:`funnelmodels.data.validate.dataset_summary`."""
        return dict(self.manifest["summary"])

    def columns(self, table: str) -> list[str]:
        """The columns of ``table`` (none when the dataset lacks it)."""
        return list(self.manifest.get("columns", {}).get(table, []))

    @property
    def count(self) -> int:
        """How many partitions."""
        return int(self.manifest["partitions"])

    @property
    def end(self) -> datetime:
        """The whole dataset's last stage event: where every partition's data ends."""
        return datetime.fromisoformat(self.manifest["end"])

    @property
    def spec(self) -> FunnelSpec:
        """The funnel of the dataset the partitions were cut from."""
        return FunnelSpec.from_json(self.manifest["spec"])

    @property
    def fingerprint(self) -> str:
        """SHA-256 over the partition files: which data made a result."""
        return str(self.manifest["fingerprint"])

    def rows(self, table: str) -> int:
        """The table's rows over every partition (0 when the dataset lacks it)."""
        entry = self.manifest["tables"].get(table)
        return int(entry["rows"]) if entry else 0

    def has(self, table: str) -> bool:
        """Whether the dataset has ``table``."""
        return table in self.manifest["tables"]

    def part(self, index: int) -> Path:
        """The folder of partition ``index``."""
        return self.folder / _part_name(index)

    @property
    def parts(self) -> list[str]:
        """Every partition's folder, as text (what a task is sent)."""
        return [str(self.part(i)) for i in range(self.count)]


def _part_name(index: int) -> str:
    return f"part-{index:05d}"


def read_partitioned(folder: str | Path, *, cluster: str | None = None, scheduler: str | None = None) -> Partitioned:
    """Open a folder written by ``funnelmodels partition`` (a clear error for anything else).

    ``cluster`` or ``scheduler``: where the work on it runs (:func:`funnelmodels.distributed.cluster.client_for`).
    """
    path = Path(folder)
    manifest_file = path / PARTITIONS_FILE
    if not manifest_file.is_file():
        raise ConfigError(
            f"{str(path)!r} is not a partitioned dataset (no {PARTITIONS_FILE}); write one with "
            f"`funnelmodels partition DATA --partitions N --out {path}`."
        )
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{manifest_file} cannot be read ({exc}); partition the dataset again.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ConfigError(
            f"{manifest_file} is of another format ({manifest.get('format') if isinstance(manifest, dict) else '?'}; "
            f"this funnelmodels reads {FORMAT}); partition the dataset again."
        )
    missing = [i for i in range(int(manifest["partitions"])) if not (path / _part_name(i)).is_dir()]
    if missing:
        raise ConfigError(f"{path} lacks partition folders {', '.join(_part_name(i) for i in missing[:5])}.")
    return Partitioned(path, manifest, cluster=cluster, scheduler=scheduler)


def open_partition(part: str | Path, *, validate: bool = False) -> Dataset:
    """One partition as a dataset, with the funnel, scales, counting rules and end of the whole (the manifest's).

    ``funnelmodels partition`` validates every partition on its own (every rule of every table, across
    tables too) and records each file's SHA-256. A partition whose files are still those is read as it
    was validated; one whose files changed since — or ``validate=True`` — is read and validated again,
    and a rule it breaks is an error naming the partition's folder, table, column and rule.
    """
    folder = Path(part)
    if not folder.is_dir():
        raise ConfigError(
            f"partition {folder} is not there; on a cluster, the partitioned folder must be on storage every "
            "worker sees under the same path (a shared mount)."
        )
    manifest = read_partitioned(folder.parent).manifest
    scale = dict(manifest["scale"])
    scale["labels"] = {int(k): v for k, v in scale["labels"].items()}
    config = replace(
        load_config(folder),
        spec=FunnelSpec.from_json(manifest["spec"]),
        scale=SatisfactionScale(**scale),
        counting=CountingRules(**manifest["counting"]),
        timezone=manifest["timezone"],
        currency=manifest["currency"],
        whole_end=datetime.fromisoformat(manifest["end"]),
    )
    if not validate and _unchanged(folder, manifest.get("files", {})):
        tables = {name: pl.read_parquet(folder / f"{name}.parquet") for name in config.tables}
        return Dataset(config, tables, _fingerprint=manifest["fingerprint"])
    # Not through the validated-dataset cache: it keeps a few datasets, and N partitions would evict
    # the user's own.
    return load_dataset(config, cache=False)


def open_data(
    data_dir: str | Path, *, drop_invalid: bool = False, cluster: str = "", scheduler: str = ""
) -> Dataset | Partitioned:
    """A dataset folder loaded (:func:`funnelmodels.data.io.load_dataset`), or a partitioned one opened.

    A partitioned folder (``funnelmodels partition``) needs ``cluster`` (``local:N``) or ``scheduler``
    (``tcp://host:port``): its reports are computed there. What a report notebook calls first.
    """
    path = Path(data_dir)
    if not (path.is_dir() and (path / PARTITIONS_FILE).is_file()):
        if cluster or scheduler:
            raise ConfigError(
                f"a cluster runs over a partitioned dataset; {str(path)!r} is not one "
                f"(funnelmodels partition {path} --partitions N --out DIR)."
            )
        return load_dataset(path, drop_invalid=drop_invalid)
    if not (cluster or scheduler):
        raise ConfigError(
            f"{str(path)!r} is a dataset partitioned by customer: give cluster (local:N) or scheduler "
            "(tcp://host:port) to compute on it."
        )
    if drop_invalid:
        raise ConfigError("drop_invalid applies when partitioning (funnelmodels partition --drop-invalid).")
    return read_partitioned(path, cluster=cluster or None, scheduler=scheduler or None)


@lru_cache(maxsize=2)
def cached_partition(part: str, stamp: str) -> Dataset:
    """:func:`open_partition`, kept for the next task of the same worker (``stamp``: the manifest's fingerprint)."""
    return open_partition(part)


def partition_dataset(dataset: Dataset, partitions: int, staging: Path) -> dict[str, Any]:
    """Write ``dataset`` into ``staging`` as ``partitions`` partitions by customer, and its manifest.

    Each partition is a folder of canonical Parquet tables (``part-00000/stage_events.parquet``, …);
    rows set aside by ``--drop-invalid`` go to ``rejected/``. Returns the manifest.
    """
    if not dataset.has("stage_events"):
        raise ConfigError("partitioning needs a stage_events table: the partitions' end is its last event.")
    customers = dataset.tables["customers"].height if dataset.has("customers") else 0
    if customers and partitions > customers:
        raise ConfigError(
            f"{partitions} partitions for {customers:,} customers would leave partitions empty; use at most "
            f"{customers:,} (a partition of tens of thousands of customers or more is the useful size)."
        )
    tables: dict[str, Any] = {}
    for name, frame in dataset.tables.items():
        if name in _SHARED or s.CUSTOMER_ID not in frame.columns:
            for i in range(partitions):
                _write(frame, staging / _part_name(i) / f"{name}.parquet")
            tables[name] = {"rows": frame.height, "shared": True}
            continue
        keyed = frame.with_columns(pl.Series("_part", partition_of(frame[s.CUSTOMER_ID], partitions)))
        pieces = keyed.partition_by("_part", as_dict=True, include_key=False, maintain_order=True)
        counts = []
        for i in range(partitions):
            piece = pieces.get((i,), frame.head(0))
            _write(piece, staging / _part_name(i) / f"{name}.parquet")
            counts.append(piece.height)
        tables[name] = {"rows": frame.height, "per_partition": counts}
    if any(f.height for f in dataset.rejected.values()):
        write_rejected(dataset, staging / "rejected")
    transactions_end = dataset.tables["transactions"][s.ORDERED_AT].max() if dataset.has("transactions") else None
    fingerprint, files = _files_fingerprint(staging, partitions)
    manifest = {
        "format": FORMAT,
        "partitions": partitions,
        "hash": HASH,
        "tables": tables,
        "end": dataset.end.isoformat(),
        "start": dataset.tables["stage_events"][s.ENTERED_AT].min().isoformat(),  # type: ignore[union-attr]
        "summary": dataset_summary(dataset.tables, dataset.spec),
        "columns": {name: frame.columns for name, frame in dataset.tables.items()},
        "transactions_end": transactions_end.isoformat() if isinstance(transactions_end, datetime) else None,
        "spec": dataset.spec.to_json(),
        "scale": _plain(asdict(dataset.config.scale)),
        "counting": asdict(dataset.config.counting),
        "timezone": dataset.config.timezone,
        "currency": dataset.config.currency,
        "source": dataset.config.name,
        "source_fingerprint": dataset.fingerprint(),
        "fingerprint": fingerprint,
        "files": files,
        "notes": list(dataset.notes),
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "funnelmodels": version(),
    }
    (staging / PARTITIONS_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    return {
        k: ({str(i): v for i, v in value.items()} if isinstance(value, dict) else value) for k, value in data.items()
    }


def _write(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        frame.write_parquet(path, statistics=True)
    except OSError as exc:
        raise FunnelModelsError(f"cannot write {path}: {exc}") from None


def _files_fingerprint(staging: Path, partitions: int) -> tuple[str, dict[str, str]]:
    """SHA-256 over every partition file, and each file's own (``part-00000/customers.parquet``: digest)."""
    digest, files = hashlib.sha256(), {}
    for i in range(partitions):
        for path in sorted((staging / _part_name(i)).glob("*.parquet")):
            data = path.read_bytes()
            digest.update(f"{path.parent.name}/{path.name}\0".encode())
            digest.update(data)
            files[f"{path.parent.name}/{path.name}"] = hashlib.sha256(data).hexdigest()
    return digest.hexdigest(), files


_VERIFIED: dict[tuple[str, tuple[tuple[str, int, int], ...]], bool] = {}
"""The partitions this process has checked, by their files' names, sizes and times: checked once per process."""


def _unchanged(folder: Path, files: dict[str, str]) -> bool:
    """Whether the partition's files are those written (and validated) by ``funnelmodels partition``."""
    found = sorted(folder.glob("*.parquet"))
    expected = sorted(name for name in files if name.startswith(f"{folder.name}/"))
    if [f"{folder.name}/{p.name}" for p in found] != expected:
        return False
    stats = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in found)
    key = (str(folder.resolve()), stats)
    if key not in _VERIFIED:
        _VERIFIED[key] = all(
            hashlib.sha256(p.read_bytes()).hexdigest() == files[f"{folder.name}/{p.name}"] for p in found
        )
    return _VERIFIED[key]
