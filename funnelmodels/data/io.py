"""Loading a dataset and writing outputs: the validated tables, atomic writes.

Reading a table from its files is :mod:`funnelmodels.data.files`; checking the data contract
is :mod:`funnelmodels.data.validate`; this module puts them together (:func:`load_dataset`) and
writes tables and folders so that a reader never sees half an output.
"""

from __future__ import annotations

import hashlib
import html
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import polars as pl

from funnelmodels.config import DatasetConfig, FunnelSpec, TableSource, load_config
from funnelmodels.data.activities import map_activity_types
from funnelmodels.data.cache import CachedLoad, cache_key, read_cached, write_cached
from funnelmodels.data.files import read_table
from funnelmodels.data.schema import COMPUTED, CSAT, DATE_COLUMNS, ENTERED_AT, IN_FILE, NPS, SCHEMAS
from funnelmodels.data.validate import missing_customers_problem, missing_events_problem, validate_tables
from funnelmodels.errors import ConfigError, DataValidationError, Problem
from funnelmodels.frames import collect
from funnelmodels.progress import steps
from funnelmodels.settings import dataset_cache_dir

__all__ = ["Dataset", "fingerprint_files", "lines_html", "load_dataset", "write_rejected", "write_table"]


@dataclass(frozen=True)
class Dataset:
    """A loaded, validated dataset: the canonical tables that are present.

    Tables are held as polars DataFrames with canonical column names and types;
    :meth:`lazy` hands them to the pipeline as LazyFrames. ``notes`` say what loading did
    (rows filtered out by funnel.toml, looked up, merged); ``rejected`` holds, per table, the
    rows set aside by ``drop_invalid`` with the reason.
    """

    config: DatasetConfig
    tables: Mapping[str, pl.DataFrame] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    rejected: Mapping[str, pl.DataFrame] = field(default_factory=dict)
    _fingerprint: str | None = field(default=None, repr=False, compare=False)

    @property
    def spec(self) -> FunnelSpec:
        """The dataset's funnel: stage order, lost stage, horizon."""
        return self.config.spec

    def _lines(self) -> list[tuple[str, str]]:
        """What a notebook shows of the dataset: each table's rows and dates, the funnel, notes."""
        out = []
        for name, frame in self.tables.items():
            column = DATE_COLUMNS.get(name)
            window = ""
            if column in frame.columns and frame.height:
                first, last = frame[column].min(), frame[column].max()
                window = f", {str(first)[:10]} … {str(last)[:10]}"
            out.append((name, f"{frame.height:,} rows{window}"))
        out.append(("funnel", " → ".join(self.spec.stages) + f" (lost: {self.spec.lost})"))
        if self.notes:
            out.append(("notes", f"{len(self.notes)} (see .notes)"))
        if self.rejected:
            out.append(("set aside", ", ".join(f"{n}: {f.height:,}" for n, f in self.rejected.items())))
        return out

    def __repr__(self) -> str:
        """``Dataset(demo: customers 3,000 rows, 2024-07-01 … 2026-06-30; …)``: short, whatever the size."""
        body = "; ".join(f"{k} {v}" for k, v in self._lines())
        return f"Dataset({Path(self.config.name).name}: {body})"

    def _repr_html_(self) -> str:
        return lines_html("Dataset", self._lines(), subtitle=Path(self.config.name).name)

    @property
    def end(self) -> datetime:
        """Where the data ends: its last stage event (that of the whole dataset, for a partition)."""
        if self.config.whole_end is not None:
            return self.config.whole_end
        last = collect(self.lazy("stage_events").select(pl.col(ENTERED_AT).max())).item()
        if not isinstance(last, datetime):
            raise ConfigError("stage_events has no entered_at values; cannot tell where the data ends.")
        return last

    def has(self, name: str) -> bool:
        """Whether table ``name`` is present."""
        return name in self.tables

    def lazy(self, name: str) -> pl.LazyFrame:
        """Table ``name`` as a LazyFrame; a clear error if the dataset lacks it."""
        if name not in self.tables:
            present = ", ".join(self.tables) or "none"
            raise DataValidationError(
                [Problem(name, "", f"this step needs the {name} table, which the dataset lacks (present: {present})")],
                source=self.config.name,
            )
        return self.tables[name].lazy()

    def fingerprint(self) -> str:
        """SHA-256 over the input files (and funnel.toml): which data made a result."""
        if self._fingerprint is None:
            object.__setattr__(self, "_fingerprint", fingerprint_files(self.config))  # computed once
        return str(self._fingerprint)

    def rejected_summary(self) -> list[str]:
        """One line per table with rows set aside: how many and the commonest reasons."""
        lines = []
        for name, frame in self.rejected.items():
            if frame.height == 0:
                continue
            reasons = frame["reason"].str.split("; ").explode().str.replace(r" \d+ ", " … ").value_counts(sort=True)
            top = "; ".join(f"{reason} ({count:,})" for reason, count in reasons.head(3).iter_rows())
            lines.append(f"{name}: {frame.height:,} rows set aside — {top}")
        return lines


def lines_html(title: str, lines: list[tuple[str, str]], *, subtitle: str = "") -> str:
    """A notebook's short view of an object: a bold title (and subtitle) over a table of (name, value) lines."""
    rows = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>{html.escape(v)}</td></tr>"
        for k, v in lines
    )
    after = f" {html.escape(subtitle)}" if subtitle else ""
    return f"<b>{html.escape(title)}</b>{after}<table>{rows}</table>"


def fingerprint_files(config: DatasetConfig) -> str:
    """SHA-256 over a dataset's files (names and bytes, in a fixed order) and its funnel.toml."""
    digest = hashlib.sha256()
    files = [
        part for path in config.inputs[1:] for part in (sorted(path.rglob("*.parquet")) if path.is_dir() else [path])
    ]
    for path in sorted(set(files)):
        digest.update(path.name.encode())
        if not path.is_file():  # a named pipe or a missing file: its name only (opening a pipe would wait)
            continue
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def load_dataset(
    data_dir: str | Path | DatasetConfig, *, drop_invalid: bool = False, end: datetime | None = None, cache: bool = True
) -> Dataset:
    """Load and validate every table of a dataset folder (or funnel.toml).

    Every problem of every table is reported at once: files that cannot be read or lack a
    required column beside bad values in the tables that could be read.

    A dataset that loaded once is read back from the validated-dataset cache while its files,
    its settings and this package's data code are unchanged (:mod:`funnelmodels.data.cache`:
    typed Parquet, seconds faster on large exports).

    Parameters
    ----------
    drop_invalid : set the rows that break a rule aside (``Dataset.rejected``, with the reason)
        and go on with the rest; problems about whole tables still fail.
    end : the data's end (default ``[funnel] data_end`` in funnel.toml, else none): rows dated
        after it are left out, with a note. For an export with a typo far in the future, or to
        look at the data as it was.
    cache : False reads and checks every file again (and leaves the cache as it is); so does
        ``FUNNELMODELS_CACHE=off`` (the command line's ``--no-cache``).

    Raises
    ------
    DataValidationError listing every problem in every table at once.
    ConfigError if the folder or its funnel.toml is unusable.
    """
    config = data_dir if isinstance(data_dir, DatasetConfig) else load_config(data_dir)
    if end is not None:
        config = replace(config, end=end)
    folder = dataset_cache_dir() if cache else None
    # Only regular files are fingerprinted: reading a named pipe to hash it would wait forever (and
    # consume it); a missing or odd input gets the full load and its clear error.
    plain = all(path.is_file() or path.is_dir() for path in config.inputs[1:])
    if folder is None or not config.tables or not plain:
        return _load(config, drop_invalid)
    fingerprint = fingerprint_files(config)
    key = cache_key(fingerprint, repr((config, drop_invalid)))
    cached = read_cached(folder, key)
    if cached is not None:
        return Dataset(config, cached.tables, cached.notes, cached.rejected, _fingerprint=fingerprint)
    dataset = _load(config, drop_invalid)
    # One chunk per column, like a cached read (the same sums to the last digit either way).
    dataset = replace(dataset, tables={name: frame.rechunk() for name, frame in dataset.tables.items()})
    write_cached(folder, key, CachedLoad(dataset.tables, dataset.rejected, dataset.notes, fingerprint))
    return replace(dataset, _fingerprint=fingerprint)


def _load(config: DatasetConfig, drop_invalid: bool) -> Dataset:
    """Read and check every table (no cache)."""
    problems: list[Problem] = []
    notes: list[str] = []
    tables: dict[str, pl.DataFrame] = {}
    unparsed: dict[str, pl.DataFrame] = {}
    if not config.tables:
        expected = ", ".join(f"{name}.parquet/.csv" for name in SCHEMAS)
        problems.append(Problem("dataset", "", f"no tables found in {config.name}; expected one or more of {expected}"))
    with steps("loading", len(config.tables) + 1) as bar:
        for name, source in config.tables.items():
            bar.step(name)
            _read_one(name, source, config, tables, unparsed, problems, notes)
        bar.step("validating")
        return _validated(config, tables, unparsed, problems, notes, drop_invalid)


def _read_one(
    name: str,
    source: TableSource,
    config: DatasetConfig,
    tables: dict[str, pl.DataFrame],
    unparsed: dict[str, pl.DataFrame],
    problems: list[Problem],
    notes: list[str],
) -> None:
    """Read one table into ``tables`` (and its unparsed text into ``unparsed``), collecting problems and notes."""
    # A partition of a dataset (its whole end set) may hold none of a table's rows.
    read = read_table(source, SCHEMAS[name], allow_empty=config.whole_end is not None)
    problems.extend(read.problems)
    notes.extend(read.notes)
    if read.frame is not None:
        tables[name], renamed = _rename_computed(name, read.frame)
        notes.extend(renamed)
        if name == "activities":
            tables[name], mapped = map_activity_types(tables[name])
            notes.extend(mapped)
        if config.end is not None:
            tables[name], after = _until(name, tables[name], config.end)
            notes.extend(after)
    if read.unparsed is not None:
        unparsed[name] = read.unparsed


def _validated(
    config: DatasetConfig,
    tables: dict[str, pl.DataFrame],
    unparsed: dict[str, pl.DataFrame],
    problems: list[Problem],
    notes: list[str],
    drop_invalid: bool,
) -> Dataset:
    problems.extend(_whole_table_problems(config, tables))
    validated = validate_tables(
        tables,
        config.spec,
        source=config.name,
        problems=problems,
        unparsed=unparsed,
        drop_invalid=drop_invalid,
        scale=config.scale,
    )
    return Dataset(config=config, tables=validated.tables, notes=tuple(notes), rejected=validated.rejected)


def _until(name: str, frame: pl.DataFrame, end: datetime) -> tuple[pl.DataFrame, list[str]]:
    """The table's rows dated before ``end`` (its date column), with a note on what was left out."""
    column = DATE_COLUMNS[name]
    if column not in frame.columns or frame.schema[column] != pl.Datetime("us"):
        return frame, []
    kept = frame.filter(pl.col(column).is_null() | (pl.col(column) < end))
    dropped = frame.height - kept.height
    if not dropped:
        return frame, []
    return kept, [f"{name}: {dropped:,} rows dated {end:%Y-%m-%d %H:%M} or later left out (the data's end)."]


def _rename_computed(name: str, frame: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """A table's own columns named like a computed one (a label, a feature, a score), renamed ``…_in_file``.

    A customers column called ``converted`` would otherwise stand in for the label, and one called
    ``frequency`` for the computed purchase count.
    """
    canonical = set(SCHEMAS[name].names)
    clashes = [c for c in frame.columns if c in COMPUTED and c not in canonical]
    if not clashes:
        return frame, []
    frame = frame.rename({c: f"{c}{IN_FILE}" for c in clashes})
    return frame, [
        f"{name}.{c}: funnelmodels computes a column of that name (a label, feature or score); the file's own "
        f"column is kept as {c}{IN_FILE}"
        for c in clashes
    ]


def _whole_table_problems(config: DatasetConfig, tables: Mapping[str, pl.DataFrame]) -> list[Problem]:
    problems = []
    for missing in (missing_customers_problem(list(config.tables)), missing_events_problem(list(config.tables))):
        if missing is not None:
            problems.append(missing)
    surveys = tables.get("surveys")
    if surveys is not None and CSAT not in surveys.columns and NPS not in surveys.columns:
        problems.append(Problem("surveys", CSAT, "surveys need a csat or an nps column"))
    return problems


def write_rejected(dataset: Dataset, folder: Path) -> list[Path]:
    """Write the rows set aside, ``folder/<table>.csv`` with a ``reason`` column; returns the files."""
    written = []
    for name, frame in dataset.rejected.items():
        if frame.height:
            path = folder / f"{name}.csv"
            write_table(frame, path)
            written.append(path)
    return written


def write_table(frame: pl.DataFrame, path: Path) -> None:
    """Write a table as Parquet or CSV (by suffix), atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if path.suffix == ".csv":
        frame.write_csv(tmp)
    else:
        frame.write_parquet(tmp, statistics=True)
    tmp.replace(path)
