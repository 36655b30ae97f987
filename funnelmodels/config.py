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

import difflib
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from funnelmodels.errors import ConfigError

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_STAGES",
    "DatasetConfig",
    "Derivation",
    "FunnelSpec",
    "TableSource",
    "load_config",
]

CONFIG_FILE = "funnel.toml"
DEFAULT_STAGES = ("lead", "qualified", "relationship", "proposal", "won")
TABLE_NAMES = ("customers", "transactions", "stage_events", "surveys")
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

    def rank(self, stage: str) -> int:
        """Position of ``stage`` in the funnel (``lost`` ranks after ``won``)."""
        return self.all_stages.index(stage)


@dataclass(frozen=True)
class TableSource:
    """Where one canonical table comes from and how to read it."""

    path: Path
    format: str = "csv"
    columns: Mapping[str, str] = field(default_factory=dict)
    separator: str = ","
    encoding: str = "utf8"
    decimal_comma: bool = False
    datetime_format: str | None = None
    derive: Mapping[str, Derivation] = field(default_factory=dict)


@dataclass(frozen=True)
class Derivation:
    """How to make a column a file lacks (``[tables.X.derive]`` in funnel.toml).

    One of: ``"row_number"`` (1, 2, 3, … in file order: an order or customer id); a constant
    ``{ value = "phone" }``; a copy ``{ from = "Col" }``; or values translated
    ``{ from = "y", map = { yes = "won", no = "lost" } }`` (values not listed become empty).
    """

    kind: Literal["row_number", "value", "copy", "map"]
    source: str | None = None
    value: str | None = None
    mapping: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetConfig:
    """A dataset: its folder, its funnel and the source of each table present."""

    root: Path
    spec: FunnelSpec
    tables: Mapping[str, TableSource]
    config_file: Path | None = None


_TABLE_KEYS = ("path", "format", "columns", "separator", "encoding", "decimal_comma", "datetime_format", "derive")
_DERIVE_KEYS = ("from", "map", "value")
_FUNNEL_KEYS = ("stages", "lost", "horizon_days", "stale_after_days")


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
    return DatasetConfig(root=path, spec=FunnelSpec(), tables=_discover_tables(path))


def _discover_tables(root: Path) -> dict[str, TableSource]:
    tables: dict[str, TableSource] = {}
    for name in TABLE_NAMES:
        for fmt in ("parquet", "csv"):
            candidate = root / f"{name}.{fmt}"
            if candidate.is_file():
                tables[name] = TableSource(path=candidate, format=fmt)
                break
    return tables


def _config_from_toml(file: Path) -> DatasetConfig:
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file} is not valid TOML: {exc}") from None
    _check_keys(raw, ("funnel", "tables"), where=str(file))
    funnel = raw.get("funnel", {})
    _check_keys(funnel, _FUNNEL_KEYS, where=f"{file} [funnel]")
    spec = FunnelSpec(
        stages=tuple(funnel.get("stages", DEFAULT_STAGES)),
        lost=funnel.get("lost", "lost"),
        horizon_days=funnel.get("horizon_days", 90),
        stale_after_days=funnel.get("stale_after_days"),
    )
    root = file.parent
    tables_raw = raw.get("tables", {})
    _check_keys(tables_raw, TABLE_NAMES, where=f"{file} [tables]")
    # Tables funnel.toml does not mention are still found by their canonical file names.
    tables = _discover_tables(root) | {
        name: _table_source(name, entry, root=root, file=file) for name, entry in tables_raw.items()
    }
    return DatasetConfig(root=root, spec=spec, tables=tables, config_file=file)


def _table_source(name: str, entry: Any, *, root: Path, file: Path) -> TableSource:
    where = f"{file} [tables.{name}]"
    if not isinstance(entry, dict):
        raise ConfigError(f'{where} must be a table with at least a path = "..." entry.')
    _check_keys(entry, _TABLE_KEYS, where=where)
    if "path" in entry:
        path = (root / entry["path"]).resolve()
    elif name in (found := _discover_tables(root)):
        path = found[name].path  # only reading options given: the canonical file beside funnel.toml
    else:
        raise ConfigError(
            f'{where} has no path and there is no {name}.csv or {name}.parquet beside it; add path = "your_file.csv".'
        )
    fmt = entry.get("format") or ("parquet" if path.suffix.lower() == ".parquet" else "csv")
    if fmt not in _FORMATS:
        raise ConfigError(f"{where} format must be one of {', '.join(_FORMATS)}; received {fmt!r}.")
    columns = entry.get("columns", {})
    if not all(isinstance(v, str) for v in columns.values()):
        raise ConfigError(f"{where}.columns maps canonical names to your column names, all text; received {columns!r}.")
    derive = {
        column: _derivation(column, rule, where=f"{where}.derive") for column, rule in entry.get("derive", {}).items()
    }
    return TableSource(
        path=path,
        format=fmt,
        columns=dict(columns),
        derive=derive,
        separator=entry.get("separator", ","),
        encoding=entry.get("encoding", "utf8"),
        decimal_comma=bool(entry.get("decimal_comma", False)),
        datetime_format=entry.get("datetime_format"),
    )


def _derivation(column: str, rule: Any, *, where: str) -> Derivation:
    if rule == "row_number":
        return Derivation("row_number")
    if isinstance(rule, dict):
        _check_keys(rule, _DERIVE_KEYS, where=f"{where}.{column}")
        if "value" in rule and len(rule) == 1:
            return Derivation("value", value=str(rule["value"]))
        if isinstance(rule.get("from"), str) and "value" not in rule:
            mapping = rule.get("map")
            if mapping is None:
                return Derivation("copy", source=rule["from"])
            if isinstance(mapping, dict):
                return Derivation("map", source=rule["from"], mapping={str(k): str(v) for k, v in mapping.items()})
    raise ConfigError(
        f'{where}.{column} must be "row_number", {{ value = "…" }}, {{ from = "column" }} or '
        f'{{ from = "column", map = {{ yes = "won", no = "lost" }} }}; received {rule!r}.'
    )


def _check_keys(section: Mapping[str, Any], allowed: Sequence[str], *, where: str) -> None:
    for key in section:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{where} has an unknown key {key!r}.{hint} Allowed keys: {', '.join(allowed)}.")
