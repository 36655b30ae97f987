"""Funnel specification and dataset configuration (``funnel.toml``).

A dataset is either a plain folder of canonical files (``customers.parquet``
or ``customers.csv`` and so on) or a folder with a ``funnel.toml`` that maps a
user's own files and column names onto the canonical tables::

    [funnel]
    stages = ["lead", "qualified", "relationship", "proposal", "won"]
    lost = "lost"
    horizon_days = 90
    stale_after_days = 180          # optional: no event for 180 days means lost (exports without lost events)

    [tables.customers]
    path = "exports/accounts.csv"
    separator = ";"
    datetime_format = "%d/%m/%Y"
    [tables.customers.columns]      # canonical name = name in your file
    customer_id = "AccountId"
    created_at = "CreatedDate"
"""

from __future__ import annotations

import codecs
import math
import tomllib
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import polars as pl

from funnelmodels.errors import ConfigError, closest, did_you_mean

__all__ = [
    "AGGREGATIONS",
    "CONFIG_FILE",
    "DEFAULT_STAGES",
    "CountingRules",
    "DatasetConfig",
    "Derivation",
    "FileSource",
    "FunnelSpec",
    "Lookup",
    "SatisfactionScale",
    "TableSource",
    "load_config",
]

CONFIG_FILE = "funnel.toml"
PARTITIONS_FILE = "partitions.json"
"""The manifest of a dataset partitioned by customer (``funnelmodels partition``)."""
DEFAULT_STAGES = ("lead", "qualified", "relationship", "proposal", "won")
TABLE_NAMES = ("customers", "transactions", "stage_events", "surveys", "owners", "activities")
_FORMATS = ("csv", "parquet")


@dataclass(frozen=True)
class FunnelSpec:
    """The ordered stages of a sales funnel.

    The last stage is the terminal success (``won`` by default); ``lost`` is the
    terminal failure an opportunity can reach from any stage. ``horizon_days``
    is how long a stage has to convert before the row counts as not converted.
    ``stale_after_days`` (optional) turns silence into a loss: an open opportunity with no
    event for that many days counts as lost on that day, for rates, training and scoring
    (CRM exports often never record ``lost``: a lead that goes cold simply stops).
    """

    stages: tuple[str, ...] = DEFAULT_STAGES
    lost: str = "lost"
    horizon_days: int = 90
    stale_after_days: int | None = None

    def __post_init__(self) -> None:
        stages = tuple(self.stages)
        object.__setattr__(self, "stages", stages)
        if len(stages) < 2:
            raise ConfigError(
                f"[funnel] stages needs at least two stages (an entry stage and the won stage); "
                f"received {list(stages)}."
            )
        if len(set(stages)) != len(stages):
            dupes = sorted({s for s in stages if stages.count(s) > 1})
            raise ConfigError(f"[funnel] stages lists {dupes} more than once; each stage must appear once.")
        if any(not isinstance(s, str) or not s.strip() for s in stages):
            raise ConfigError(f"[funnel] stages must be non-empty names; received {list(stages)}.")
        if self.lost in stages:
            raise ConfigError(f"[funnel] lost stage {self.lost!r} must not also be in stages {list(stages)}.")
        if isinstance(self.horizon_days, bool) or not isinstance(self.horizon_days, int) or self.horizon_days <= 0:
            raise ConfigError(
                f"[funnel] horizon_days must be a positive whole number of days; received {self.horizon_days!r}."
            )
        stale = self.stale_after_days
        if stale is not None and (isinstance(stale, bool) or not isinstance(stale, int) or stale <= 0):
            raise ConfigError(
                f"[funnel] stale_after_days must be a positive whole number of days (or left out); received {stale!r}."
            )

    @property
    def won(self) -> str:
        """The terminal success stage."""
        return self.stages[-1]

    @property
    def open_stages(self) -> tuple[str, ...]:
        """Non-terminal stages: the ones a stage-transition row can start from."""
        return self.stages[:-1]

    @property
    def all_stages(self) -> tuple[str, ...]:
        """Every stage name a stage event may carry, ``lost`` last."""
        return (*self.stages, self.lost)

    def to_json(self) -> dict[str, Any]:
        """Plain data for a saved model."""
        return {
            "stages": list(self.stages),
            "lost": self.lost,
            "horizon_days": self.horizon_days,
            "stale_after_days": self.stale_after_days,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FunnelSpec:
        """Inverse of :meth:`to_json`."""
        return cls(
            stages=tuple(data["stages"]),
            lost=data["lost"],
            horizon_days=data["horizon_days"],
            stale_after_days=data.get("stale_after_days"),
        )

    def rank(self, stage: str) -> int:
        """Position of ``stage`` in the funnel (``lost`` ranks after ``won``)."""
        return self.all_stages.index(stage)

    def stage_order(self, column: pl.Expr, *, order: Sequence[str] | None = None) -> pl.Expr:
        """Each value's position in the funnel, as an Int32 expression (for sorting and comparing).

        ``order`` defaults to :attr:`all_stages` (``lost`` after ``won``); a table can give its
        own labels around the stages, e.g. ``("all", *spec.open_stages)``. A value not in the
        order comes after every one in it.
        """
        labels = list(self.all_stages if order is None else order)
        return column.cast(pl.String).replace_strict(
            labels, list(range(len(labels))), default=len(labels), return_dtype=pl.Int32
        )


@dataclass(frozen=True)
class SatisfactionScale:
    """The CSAT scale a dataset uses (``[satisfaction]`` in funnel.toml): 1–5 unless it says otherwise.

    ``satisfied_from``: scores from here up count as satisfied (default: the top two of a scale
    with four or more scores, the top one otherwise); ``low_up_to``: scores up to here count as
    low, for the at-risk list (the bottom two, or the bottom one); ``labels``: words for scores,
    used by the reports (a yes/no survey mapped to 0/1 reads "satisfied" / "not satisfied").
    """

    lowest: int = 1
    highest: int = 5
    satisfied: int | None = None
    """``satisfied_from`` as given (None: the default)."""
    low: int | None = None
    """``low_up_to`` as given (None: the default)."""
    labels: Mapping[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("lowest", "highest"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(
                    f"[satisfaction] csat must be two whole numbers, lowest and highest; received {value!r}."
                )
        if self.highest <= self.lowest:
            raise ConfigError(
                f"[satisfaction] csat = [{self.lowest}, {self.highest}]: the highest score must be above the lowest."
            )
        for name in ("satisfied_from", "low_up_to"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not self.lowest <= value <= self.highest:
                raise ConfigError(
                    f"[satisfaction] {name} must be a score from {self.lowest} to {self.highest}; received {value!r}."
                )

    @property
    def satisfied_from(self) -> int:
        """Scores from here up count as satisfied: the top two of a scale of four or more, else the top."""
        if self.satisfied is not None:
            return self.satisfied
        return self.highest - 1 if self.highest - self.lowest >= 3 else self.highest

    @property
    def low_up_to(self) -> int:
        """Scores up to here count as low: the bottom two of a scale of four or more, else the bottom."""
        if self.low is not None:
            return self.low
        return self.lowest + 1 if self.highest - self.lowest >= 3 else self.lowest

    @property
    def levels(self) -> tuple[int, ...]:
        """Every score of the scale, lowest first."""
        return tuple(range(self.lowest, self.highest + 1))

    def words(self, score: int) -> str:
        """A score as the reports write it: its label, else the number."""
        return self.labels.get(score, str(score))

    @property
    def name(self) -> str:
        """``CSAT 1–5``, or ``CSAT (not satisfied / satisfied)`` for a labelled yes/no scale."""
        if self.labels and len(self.levels) == 2:
            return f"CSAT ({self.words(self.lowest)} / {self.words(self.highest)})"
        return f"CSAT {self.lowest}–{self.highest}"

    @property
    def satisfied_words(self) -> str:
        """``4–5``, or the label of the top score."""
        if self.satisfied_from == self.highest:
            return self.words(self.highest)
        return f"{self.satisfied_from}–{self.highest}"

    @property
    def low_words(self) -> str:
        """``1–2``, or the label of the bottom score."""
        if self.low_up_to == self.lowest:
            return self.words(self.lowest)
        return f"{self.lowest}–{self.low_up_to}"


@dataclass(frozen=True)
class CountingRules:
    """How transactions count in the sales KPIs (``[kpis]`` in funnel.toml).

    ``zero_amounts``: a purchase of 0 (a free sample, a voucher) is ``"not an order"`` (the
    default: neither an order nor a day the customer bought) or an ``"order"``. ``refunds``:
    negative amounts are ``"subtract"``-ed from net revenue (the default) or ``"ignore"``-d.
    """

    zero_amounts: Literal["not an order", "order"] = "not an order"
    refunds: Literal["subtract", "ignore"] = "subtract"

    def __post_init__(self) -> None:
        if self.zero_amounts not in ("not an order", "order"):
            raise ConfigError(f'[kpis] zero_amounts must be "not an order" or "order"; received {self.zero_amounts!r}.')
        if self.refunds not in ("subtract", "ignore"):
            raise ConfigError(f'[kpis] refunds must be "subtract" or "ignore"; received {self.refunds!r}.')


@dataclass(frozen=True)
class Derivation:
    """How to make a column a file lacks (``[tables.X.derive]`` in funnel.toml).

    One of: ``"row_number"`` (1, 2, 3, … in file order: an order or customer id); a constant
    ``{ value = "phone" }``; a copy ``{ from = "Col" }``; or values translated
    ``{ from = "y", map = { yes = "won", no = "lost" } }`` (values not listed become empty, or
    stay as they are with ``others = "keep"``).
    """

    kind: Literal["row_number", "value", "copy", "map"]
    source: str | None = None
    value: str | None = None
    mapping: Mapping[str, str] = field(default_factory=dict)
    keep_others: bool = False


@dataclass(frozen=True)
class FileSource:
    """One file feeding a canonical table: how to read it, which rows to take, how to map it."""

    path: Path
    format: str = "csv"
    columns: Mapping[str, str] = field(default_factory=dict)
    separator: str = ","
    encoding: str = "utf8"
    decimal_comma: bool = False
    datetime_format: str | None = None
    derive: Mapping[str, Derivation] = field(default_factory=dict)
    keep: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Rows to take: a column's value (spaces trimmed) must be one of the listed ones."""
    drop_empty: tuple[str, ...] = ()
    """Rows to skip: any of these columns empty."""
    drop_columns: tuple[str, ...] = ()
    """Columns of the file not to carry into the table (fields known only after the outcome)."""
    timezone: str = "UTC"
    """The zone times are read in: aware values (``+02:00``, a zoned Parquet column) are converted
    to it, naive ones are taken as already in it (``[dataset] timezone`` in funnel.toml)."""


Aggregation = Literal["first", "sum", "min", "max", "mean", "count"]
AGGREGATIONS: tuple[Aggregation, ...] = ("first", "sum", "min", "max", "mean", "count")


@dataclass(frozen=True)
class Lookup:
    """Columns taken from another file by key, aggregated per key (``[[tables.X.lookups]]``).

    ``on`` maps a column of the table (canonical, or the file's own) to the lookup file's key
    column; ``columns`` maps each column to fill (or replace) to ``(aggregation, file column)``.
    """

    file: FileSource
    on: Mapping[str, str]
    columns: Mapping[str, tuple[Aggregation, str]]
    replace: bool = True
    """False: fill only the cells that are empty (a list price where a deal has no value yet)."""


@dataclass(frozen=True)
class TableSource:
    """Where one canonical table comes from: one or more files (stacked), then lookups.

    ``one_row_per`` merges rows that share that column's value into one (for a customers file
    with one row per customer *and order*): the earliest ``created_at``, else the first value.
    """

    sources: tuple[FileSource, ...]
    lookups: tuple[Lookup, ...] = ()
    one_row_per: str | None = None

    @property
    def main(self) -> FileSource:
        """The first (often the only) file."""
        return self.sources[0]

    @property
    def path(self) -> Path:
        """The first file's path."""
        return self.main.path

    @property
    def format(self) -> str:
        """The first file's format."""
        return self.main.format

    @property
    def columns(self) -> Mapping[str, str]:
        """The first file's column mapping."""
        return self.main.columns

    @property
    def separator(self) -> str:
        """The first file's separator."""
        return self.main.separator

    @property
    def datetime_format(self) -> str | None:
        """The first file's date format."""
        return self.main.datetime_format

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file the table reads: its sources, then its lookups."""
        return tuple(dict.fromkeys([*(f.path for f in self.sources), *(lk.file.path for lk in self.lookups)]))


@dataclass(frozen=True)
class DatasetConfig:
    """A dataset: its folder, its funnel and the source of each table present."""

    root: Path
    spec: FunnelSpec
    tables: Mapping[str, TableSource]
    config_file: Path | None = None
    scale: SatisfactionScale = field(default_factory=SatisfactionScale)
    counting: CountingRules = field(default_factory=CountingRules)
    end: datetime | None = None
    """The data's end, when set (``[funnel] data_end``): rows dated after it are left out, with a note."""
    timezone: str = "UTC"
    currency: str = "$"
    """The symbol reports write money with (``[report] currency`` in funnel.toml)."""
    whole_end: datetime | None = None
    """For one partition of a dataset (:mod:`funnelmodels.distributed`): the last stage event of the
    whole dataset, where the partition's data ends too (its own last event is earlier)."""

    @property
    def name(self) -> str:
        """How messages name the dataset: its funnel.toml, else its folder (never just '.')."""
        return str(self.config_file if self.config_file is not None else self.root.resolve())

    @property
    def inputs(self) -> list[Path]:
        """What the dataset is read from: its folder, every file of every table, its funnel.toml."""
        files = [path for table in self.tables.values() for path in table.files]
        return [self.root, *files, *([self.config_file] if self.config_file is not None else [])]


_READ_KEYS = ("path", "format", "separator", "encoding", "decimal_comma", "datetime_format", "keep", "drop_empty")
_SOURCE_KEYS = (*_READ_KEYS, "columns", "derive", "drop_columns")
_TABLE_KEYS = (*_SOURCE_KEYS, "sources", "lookups", "one_row_per")
_LOOKUP_KEYS = (*_READ_KEYS, "on", "columns", "replace")
_DERIVE_KEYS = ("from", "map", "value", "others")
_FUNNEL_KEYS = ("stages", "lost", "horizon_days", "stale_after_days", "data_end")


def load_config(data_dir: str | Path) -> DatasetConfig:
    """Read a dataset folder: its ``funnel.toml`` if present, else canonical files.

    Parameters
    ----------
    data_dir : a folder, or the path of a ``funnel.toml`` inside one.

    Returns
    -------
    DatasetConfig with the tables found (absent tables are simply not listed).
    """
    path = Path(data_dir)
    if path.is_file() and path.suffix == ".toml":
        return _config_from_toml(path)
    if not path.exists():
        raise ConfigError(f"data folder {str(path)!r} does not exist; pass a folder of tables or a funnel.toml.")
    if not path.is_dir():
        raise ConfigError(f"{str(path)!r} is not a folder or a .toml file.")
    if (path / CONFIG_FILE).is_file():
        return _config_from_toml(path / CONFIG_FILE)
    if (path / PARTITIONS_FILE).is_file():
        raise ConfigError(
            f"{str(path)!r} is a dataset partitioned by customer ({PARTITIONS_FILE}): run the command with "
            "--cluster local:N (or --scheduler tcp://host:port), or open one partition with "
            "funnelmodels.distributed.open_partition."
        )
    return DatasetConfig(root=path, spec=FunnelSpec(), tables=_discover_tables(path))


def is_parquet_parts(folder: Path) -> bool:
    """Whether ``folder`` holds Parquet part files (``part-0.parquet``, …, or hive partitions below it)."""
    return folder.is_dir() and any(folder.rglob("*.parquet"))


def _discover_tables(root: Path, *, skip: Iterable[str] = ()) -> dict[str, TableSource]:
    """Tables found by their canonical file names (``customers.csv``, ``customers.parquet``, …).

    Two files for one table (a CSV beside an older Parquet copy) are refused, naming both:
    silently reading one of them would hide that the other is there.
    """
    tables: dict[str, TableSource] = {}
    for name in TABLE_NAMES:
        if name in skip:
            continue
        found = [
            (root / f"{name}.{fmt}", fmt)
            for fmt in ("parquet", "csv")
            if (root / f"{name}.{fmt}").is_file() or (fmt == "parquet" and is_parquet_parts(root / f"{name}.{fmt}"))
        ]
        if len(found) > 1:
            raise ConfigError(
                f"two sources for the {name} table in {root}: {' and '.join(p.name for p, _ in found)}. Remove or "
                f"rename one, or name the one to read in funnel.toml ([tables.{name}] path = ...)."
            )
        if found:
            tables[name] = TableSource(sources=(FileSource(path=found[0][0], format=found[0][1]),))
    return tables


def _config_from_toml(file: Path) -> DatasetConfig:
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file} is not UTF-8 text; save funnel.toml as UTF-8.") from None
    _check_keys(raw, ("dataset", "funnel", "tables", "satisfaction", "kpis", "report"), where=str(file))
    settings = _section(raw.get("dataset", {}), where=f"{file} [dataset]")
    _check_keys(settings, ("timezone", "allow_outside"), where=f"{file} [dataset]")
    timezone = _timezone(settings.get("timezone", "UTC"), where=f"{file} [dataset]")
    allow_outside = settings.get("allow_outside", False)
    if not isinstance(allow_outside, bool):
        raise ConfigError(
            f"{file} [dataset] allow_outside must be true or false (without quotes); received {allow_outside!r}."
        )
    funnel = _section(raw.get("funnel", {}), where=f"{file} [funnel]")
    _check_keys(funnel, _FUNNEL_KEYS, where=f"{file} [funnel]")
    stages = funnel.get("stages", DEFAULT_STAGES)
    if not isinstance(stages, list | tuple) or not all(isinstance(x, str) for x in stages):
        raise ConfigError(f'{file} [funnel] stages must be a list of names, e.g. ["lead", "won"]; received {stages!r}.')
    lost = funnel.get("lost", "lost")
    if not isinstance(lost, str):
        raise ConfigError(f"{file} [funnel] lost must be a stage name (text); received {lost!r}.")
    spec = FunnelSpec(
        stages=tuple(stages),
        lost=lost,
        horizon_days=funnel.get("horizon_days", 90),
        stale_after_days=funnel.get("stale_after_days"),
    )
    end = _data_end(funnel.get("data_end"), where=f"{file} [funnel]")
    root = file.parent
    tables_raw = _section(raw.get("tables", {}), where=f"{file} [tables]")
    _check_keys(tables_raw, TABLE_NAMES, where=f"{file} [tables]")
    # Tables funnel.toml does not mention are still found by their canonical file names.
    tables = _discover_tables(root, skip=tables_raw) | {
        name: _table_source(name, entry, root=root, file=file) for name, entry in tables_raw.items()
    }
    scale = _scale(
        _section(raw.get("satisfaction", {}), where=f"{file} [satisfaction]"), where=f"{file} [satisfaction]"
    )
    kpis = _section(raw.get("kpis", {}), where=f"{file} [kpis]")
    _check_keys(kpis, ("zero_amounts", "refunds"), where=f"{file} [kpis]")
    counting = CountingRules(**kpis)
    currency = _currency(_section(raw.get("report", {}), where=f"{file} [report]"), where=f"{file} [report]")
    tables = {name: _in_zone(table, timezone) for name, table in tables.items()}
    if not allow_outside:
        _check_inside(file, tables)
    return DatasetConfig(
        root=root,
        spec=spec,
        tables=tables,
        config_file=file,
        scale=scale,
        counting=counting,
        end=end,
        timezone=timezone,
        currency=currency,
    )


def _currency(section: Mapping[str, Any], *, where: str) -> str:
    """``[report] currency``: the symbol or code money is written with (``$``, ``€``, ``CHF ``)."""
    _check_keys(section, ("currency",), where=where)
    value = section.get("currency", "$")
    if not isinstance(value, str) or not 1 <= len(value) <= 5 or value.strip() != value.rstrip():
        raise ConfigError(
            f'{where} currency must be a symbol or code of 1 to 5 characters, e.g. currency = "€" or "CHF "; '
            f"received {value!r}."
        )
    return value


def _check_inside(file: Path, tables: Mapping[str, TableSource]) -> None:
    """Refuse files outside the folder of funnel.toml unless ``[dataset] allow_outside = true``.

    A funnel.toml found in an export folder should read that folder, not any file the account
    running the job can read.
    """
    home = file.parent.resolve()
    for name, table in tables.items():
        for path in table.files:
            if not path.resolve().is_relative_to(home):
                raise ConfigError(
                    f"{file} [tables.{name}] reads {path}, outside the folder of funnel.toml ({home}). Move the "
                    "file beside funnel.toml, or set allow_outside = true under [dataset] if that is intended."
                )


def _timezone(value: Any, *, where: str) -> str:
    if isinstance(value, str):
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
        else:
            return value
    raise ConfigError(
        f'{where} timezone must be a zone name such as "UTC" or "Europe/Berlin"; received {value!r}'
        f"{did_you_mean(str(value), sorted(zoneinfo.available_timezones())) if isinstance(value, str) else ''}."
    )


def _data_end(value: Any, *, where: str) -> datetime | None:
    """``data_end``: a TOML date (the end of that day) or date-time; rows after it are left out."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, date):
        return datetime.combine(value, datetime.min.time()) + timedelta(days=1)
    raise ConfigError(
        f"{where} data_end must be a date without quotes, e.g. data_end = 2026-06-30; received {value!r}."
    )


def _in_zone(table: TableSource, timezone: str) -> TableSource:
    sources = tuple(replace(source, timezone=timezone) for source in table.sources)
    lookups = tuple(replace(lookup, file=replace(lookup.file, timezone=timezone)) for lookup in table.lookups)
    return replace(table, sources=sources, lookups=lookups)


def _scale(entry: dict[str, Any], *, where: str) -> SatisfactionScale:
    _check_keys(entry, ("csat", "satisfied_from", "low_up_to", "labels"), where=where)
    bounds = entry.get("csat", [1, 5])
    if not isinstance(bounds, list) or len(bounds) != 2:
        raise ConfigError(f"{where} csat must be [lowest, highest], e.g. csat = [1, 7]; received {bounds!r}.")
    labels_raw = _section(entry.get("labels", {}), where=f"{where} labels")
    labels = {}
    for key, text in labels_raw.items():
        if not str(key).lstrip("-").isdigit() or not isinstance(text, str):
            raise ConfigError(
                f'{where} labels map scores to words, e.g. labels = {{ 0 = "no", 1 = "yes" }}; '
                f"received {key!r} = {text!r}."
            )
        labels[int(key)] = text
    return SatisfactionScale(
        lowest=bounds[0],
        highest=bounds[1],
        satisfied=entry.get("satisfied_from"),
        low=entry.get("low_up_to"),
        labels=labels,
    )


def _section(value: Any, *, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table of keys (a [section] in funnel.toml); received {value!r}.")
    return value


def _table_source(name: str, entry: Any, *, root: Path, file: Path) -> TableSource:
    where = f"{file} [tables.{name}]"
    entry = _section(entry, where=where)
    _check_keys(entry, _TABLE_KEYS, where=where)
    if "sources" in entry:
        own = [k for k in _SOURCE_KEYS if k in entry]
        if own:
            raise ConfigError(
                f"{where} has sources and also {', '.join(own)}: with [[tables.{name}.sources]], put each "
                "file's path, columns and options in its own sources entry."
            )
        listed = entry["sources"]
        if not isinstance(listed, list) or not listed:
            raise ConfigError(f"{where}.sources must be one or more [[tables.{name}.sources]] entries.")
        sources = tuple(
            _file_source(name, item, root=root, where=f"{where} sources #{i + 1}", keys=_SOURCE_KEYS)
            for i, item in enumerate(listed)
        )
    else:
        sources = (_file_source(name, entry, root=root, where=where, keys=_TABLE_KEYS),)
    lookups_raw = entry.get("lookups", [])
    if not isinstance(lookups_raw, list):
        raise ConfigError(f"{where}.lookups must be [[tables.{name}.lookups]] entries.")
    lookups = tuple(_lookup(item, root=root, where=f"{where} lookups #{i + 1}") for i, item in enumerate(lookups_raw))
    one_row_per = entry.get("one_row_per")
    if one_row_per is not None and not isinstance(one_row_per, str):
        raise ConfigError(f"{where}.one_row_per must be a column name; received {one_row_per!r}.")
    return TableSource(sources=sources, lookups=lookups, one_row_per=one_row_per)


def _file_source(name: str, entry: Any, *, root: Path, where: str, keys: Sequence[str]) -> FileSource:
    entry = _section(entry, where=where)
    _check_keys(entry, keys, where=where)
    path = _path(name, entry, root=root, where=where)
    columns = entry.get("columns", {})
    if not isinstance(columns, dict) or not all(isinstance(v, str) for v in columns.values()):
        raise ConfigError(f"{where}.columns maps canonical names to your column names, all text; received {columns!r}.")
    derive = _section(entry.get("derive", {}), where=f"{where}.derive")
    drop_columns = entry.get("drop_columns", [])
    if not isinstance(drop_columns, list) or not all(isinstance(x, str) for x in drop_columns):
        raise ConfigError(
            f'{where} drop_columns is a list of columns, e.g. drop_columns = ["close_date"]; received {drop_columns!r}.'
        )
    return FileSource(
        path=path,
        columns=dict(columns),
        drop_columns=tuple(drop_columns),
        derive={column: _derivation(column, rule, where=f"{where}.derive") for column, rule in derive.items()},
        **_read_options(entry, path, where=where),
    )


def _lookup(entry: Any, *, root: Path, where: str) -> Lookup:
    entry = _section(entry, where=where)
    _check_keys(entry, _LOOKUP_KEYS, where=where)
    if "path" not in entry:
        raise ConfigError(f'{where} needs path = "the_file.csv" (the file to look values up in).')
    path = _path("lookup", entry, root=root, where=where)
    on = entry.get("on")
    if not isinstance(on, dict) or not on or not all(isinstance(v, str) for v in on.values()):
        raise ConfigError(
            f"{where}.on must say which column of the table matches which column of the file, e.g. "
            f'on = {{ order_id = "order_id" }}; received {on!r}.'
        )
    columns_raw = _section(entry.get("columns", {}), where=f"{where}.columns")
    if not columns_raw:
        raise ConfigError(f'{where}.columns must name at least one column to fill, e.g. amount = {{ sum = "value" }}.')
    columns: dict[str, tuple[Aggregation, str]] = {}
    for target, rule in columns_raw.items():
        if isinstance(rule, str):
            columns[target] = ("first", rule)
            continue
        if not isinstance(rule, dict) or len(rule) != 1:
            raise ConfigError(
                f"{where}.columns.{target} must be a column name or one aggregation such as "
                f'{{ sum = "value" }} ({", ".join(AGGREGATIONS)}); received {rule!r}.'
            )
        ((how, column),) = rule.items()
        if how not in AGGREGATIONS or not isinstance(column, str):
            match = closest(str(how), AGGREGATIONS)
            hint = f" Did you mean {match!r}?" if match else ""
            raise ConfigError(
                f"{where}.columns.{target}: {how!r} is not an aggregation of a column.{hint} "
                f'Use one of {", ".join(AGGREGATIONS)}, e.g. {{ sum = "value" }}.'
            )
        columns[target] = (how, column)
    replace = entry.get("replace", True)
    if not isinstance(replace, bool):
        raise ConfigError(f"{where}.replace must be true or false (without quotes); received {replace!r}.")
    file = FileSource(path=path, **_read_options(entry, path, where=where))
    return Lookup(file=file, on=dict(on), columns=columns, replace=replace)


def _path(name: str, entry: Mapping[str, Any], *, root: Path, where: str) -> Path:
    if "path" in entry:
        if not isinstance(entry["path"], str) or not entry["path"].strip():
            raise ConfigError(
                f'{where} path must be a file name, e.g. path = "customers.csv"; received {entry["path"]!r}.'
            )
        return (root / entry["path"]).resolve()
    if name in (found := _discover_tables(root, skip=[other for other in TABLE_NAMES if other != name])):
        return found[name].path  # only reading options given: the canonical file beside funnel.toml
    raise ConfigError(
        f'{where} has no path and there is no {name}.csv or {name}.parquet beside it; add path = "your_file.csv".'
    )


def _read_options(entry: Mapping[str, Any], path: Path, *, where: str) -> dict[str, Any]:
    fmt = entry.get("format") or ("parquet" if path.suffix.lower() == ".parquet" else "csv")
    if fmt not in _FORMATS:
        raise ConfigError(f"{where} format must be one of {', '.join(_FORMATS)}; received {fmt!r}.")
    separator = entry.get("separator", ",")
    if not isinstance(separator, str) or len(separator) != 1:
        raise ConfigError(f'{where} separator must be one character, e.g. separator = ";"; received {separator!r}.')
    encoding = entry.get("encoding", "utf8")
    if not isinstance(encoding, str) or not _known_encoding(encoding):
        raise ConfigError(
            f'{where} encoding must be a name such as "utf8", "latin-1" or "cp1252"; received {encoding!r}.'
        )
    decimal_comma = entry.get("decimal_comma", False)
    if not isinstance(decimal_comma, bool):
        raise ConfigError(f"{where} decimal_comma must be true or false (without quotes); received {decimal_comma!r}.")
    datetime_format = entry.get("datetime_format")
    if datetime_format is not None and (not isinstance(datetime_format, str) or "%" not in datetime_format):
        raise ConfigError(
            f'{where} datetime_format must be a strftime pattern such as "%d/%m/%Y"; received {datetime_format!r}.'
        )
    keep = entry.get("keep", {})
    if not isinstance(keep, dict) or not all(
        isinstance(v, list) and all(isinstance(x, str | int | float) for x in v) for v in keep.values()
    ):
        raise ConfigError(
            f'{where} keep takes each column\'s allowed values, e.g. keep = {{ deal_stage = ["Won", "Lost"] }}; '
            f"received {keep!r}."
        )
    drop_empty = entry.get("drop_empty", [])
    if not isinstance(drop_empty, list) or not all(isinstance(x, str) for x in drop_empty):
        raise ConfigError(
            f'{where} drop_empty is a list of columns, e.g. drop_empty = ["close_date"]; received {drop_empty!r}.'
        )
    return {
        "format": fmt,
        "separator": separator,
        "encoding": encoding,
        "decimal_comma": decimal_comma,
        "datetime_format": datetime_format,
        "keep": {str(k): tuple(str(x) for x in v) for k, v in keep.items()},
        "drop_empty": tuple(drop_empty),
    }


def _known_encoding(name: str) -> bool:
    if name in ("utf8", "utf8-lossy"):
        return True
    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True


def _derivation(column: str, rule: Any, *, where: str) -> Derivation:
    if rule == "row_number":
        return Derivation("row_number")
    if isinstance(rule, dict):
        _check_keys(rule, _DERIVE_KEYS, where=f"{where}.{column}")
        if "value" in rule and len(rule) == 1:
            return Derivation("value", value=_text(rule["value"], where=f"{where}.{column}.value"))
        if isinstance(rule.get("from"), str) and "value" not in rule:
            mapping = rule.get("map")
            others = rule.get("others", "empty")
            if others not in ("empty", "keep"):
                raise ConfigError(f'{where}.{column}.others must be "empty" or "keep"; received {others!r}.')
            if mapping is None and "others" not in rule:
                return Derivation("copy", source=rule["from"])
            if isinstance(mapping, dict):
                return Derivation(
                    "map",
                    source=rule["from"],
                    mapping={str(k): _text(v, where=f"{where}.{column}.map.{k}") for k, v in mapping.items()},
                    keep_others=others == "keep",
                )
    raise ConfigError(
        f'{where}.{column} must be "row_number", {{ value = "…" }}, {{ from = "column" }} or '
        f'{{ from = "column", map = {{ yes = "won", no = "lost" }} }} (with others = "keep" to keep unlisted '
        f"values); received {rule!r}."
    )


def _text(value: Any, *, where: str) -> str:
    """A value written into a column: text or a finite number; true/false, lists and tables are refused."""
    if isinstance(value, str) or (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ):
        return str(value)
    raise ConfigError(f'{where} must be text (in quotes, e.g. "won") or a number; received {value!r}.')


def _check_keys(section: Mapping[str, Any], allowed: Sequence[str], *, where: str) -> None:
    for key in section:
        if key not in allowed:
            match = closest(key, allowed)
            hint = f" Did you mean {match!r}?" if match else ""
            raise ConfigError(f"{where} has an unknown key {key!r}.{hint} Allowed keys: {', '.join(allowed)}.")
