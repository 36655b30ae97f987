"""Reading and writing tables: file formats, column mapping and parsing.

Files are read with polars. CSV columns are read as text and parsed here, so a
column that looks like integers for a thousand rows and holds decimals later
parses the same as any other, and a value that cannot be parsed is reported
with its row instead of silently becoming null.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from funnelmodels.config import DatasetConfig, FunnelSpec, TableSource, load_config
from funnelmodels.data.schema import SCHEMAS, ColumnSpec, TableSchema
from funnelmodels.errors import DataValidationError, Problem

__all__ = ["Dataset", "atomic_dir", "fingerprint_files", "load_dataset", "read_table", "write_table"]

ROW = "_row"
"""Helper column: the 1-based data row of the input file, shown in error examples."""

_ISO_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)
_MAX_EXAMPLES = 5


@dataclass(frozen=True)
class Dataset:
    """A loaded, validated dataset: the canonical tables that are present.

    Tables are held as polars DataFrames with canonical column names and types;
    :meth:`lazy` hands them to the pipeline as LazyFrames.
    """

    config: DatasetConfig
    tables: Mapping[str, pl.DataFrame] = field(default_factory=dict)

    @property
    def spec(self) -> FunnelSpec:
        """The dataset's funnel: stage order, lost stage, horizon."""
        return self.config.spec

    def has(self, name: str) -> bool:
        """Whether table ``name`` is present."""
        return name in self.tables

    def lazy(self, name: str) -> pl.LazyFrame:
        """Table ``name`` as a LazyFrame; a clear error if the dataset lacks it."""
        if name not in self.tables:
            present = ", ".join(self.tables) or "none"
            raise DataValidationError(
                [Problem(name, "", f"this step needs the {name} table, which the dataset lacks (present: {present})")],
                source=str(self.config.root),
            )
        return self.tables[name].lazy()

    def fingerprint(self) -> str:
        """SHA-256 over the input files (and funnel.toml): which data made a result."""
        return fingerprint_files(self.config)


def fingerprint_files(config: DatasetConfig) -> str:
    """SHA-256 over a dataset's files (names and bytes, in a fixed order) and its funnel.toml."""
    digest = hashlib.sha256()
    files = [s.path for s in config.tables.values()]
    if config.config_file is not None:
        files.append(config.config_file)
    for path in sorted(files):
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def load_dataset(data_dir: str | Path) -> Dataset:
    """Load and validate every table of a dataset folder (or funnel.toml).

    Raises
    ------
    DataValidationError listing every problem in every table at once.
    ConfigError if the folder or its funnel.toml is unusable.
    """
    from funnelmodels.data.validate import validate_tables

    config = load_config(data_dir)
    problems: list[Problem] = []
    tables: dict[str, pl.DataFrame] = {}
    if not config.tables:
        expected = ", ".join(f"{name}.parquet/.csv" for name in SCHEMAS)
        problems.append(Problem("dataset", "", f"no tables found in {config.root}; expected one or more of {expected}"))
    for name, source in config.tables.items():
        frame, table_problems = read_table(source, SCHEMAS[name])
        problems.extend(table_problems)
        if frame is not None:
            tables[name] = frame
    if problems:
        raise DataValidationError(problems, source=str(config.root))
    tables = validate_tables(tables, config.spec, source=str(config.root))
    return Dataset(config=config, tables=tables)


def read_table(source: TableSource, schema: TableSchema) -> tuple[pl.DataFrame | None, list[Problem]]:
    """Read one table file, apply its column mapping and parse canonical columns.

    Returns
    -------
    (frame, problems): the frame has the canonical columns present (parsed),
    any extra columns as read, and the helper row column ``_row``; it is None
    when the file could not be read or lacks a required column.
    """
    try:
        raw = _read_file(source)
    except (OSError, pl.exceptions.PolarsError, UnicodeDecodeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, UnicodeDecodeError) or "utf-8" in reason.lower() or "utf8" in reason.lower():
            reason += (
                f'; the file is not UTF-8 (Excel often saves latin-1 or cp1252): set encoding = "latin-1" '
                f"under [tables.{schema.name}] in funnel.toml"
            )
        return None, [Problem(schema.name, "", f"cannot read {source.path.name} as {source.format}: {reason}")]
    raw, problems = _apply_mapping(raw, source, schema)
    if problems:
        return None, problems
    if raw.height == 0:
        return None, [Problem(schema.name, "", "the table is empty (0 rows); remove the file or fill it")]
    raw = raw.with_row_index(ROW, offset=1)
    parsed, problems = _parse_columns(raw, source, schema)
    return _typed_extras(parsed, source, schema), problems


def _read_file(source: TableSource) -> pl.DataFrame:
    if not source.path.is_file():
        raise OSError(f"file {source.path} does not exist")
    if source.format == "parquet":
        return pl.read_parquet(source.path)
    return pl.read_csv(
        source.path,
        separator=source.separator,
        encoding=source.encoding,
        infer_schema=False,
    )


def _derive(raw: pl.DataFrame, source: TableSource, schema: TableSchema) -> tuple[pl.DataFrame, list[Problem]]:
    """Add the columns funnel.toml derives (``[tables.X.derive]``) from the file's own columns."""
    problems: list[Problem] = []
    exprs = []
    for column, rule in source.derive.items():
        if rule.source is not None and rule.source not in raw.columns:
            problems.append(
                Problem(
                    schema.name,
                    column,
                    f"funnel.toml derives it from column {rule.source!r}, which {source.path.name} lacks "
                    f"(its columns: {', '.join(raw.columns)})",
                )
            )
            continue
        if rule.kind == "row_number":
            expr = pl.int_range(1, pl.len() + 1, dtype=pl.Int64)
        elif rule.kind == "value":
            expr = pl.lit(rule.value, dtype=pl.String)
        elif rule.kind == "copy":
            expr = pl.col(str(rule.source))
        else:
            text = pl.col(str(rule.source)).cast(pl.String).str.strip_chars()
            expr = text.replace_strict(dict(rule.mapping), default=None, return_dtype=pl.String)
        exprs.append(expr.alias(column))
    return raw.with_columns(exprs), problems


def _typed_extras(frame: pl.DataFrame, source: TableSource, schema: TableSchema) -> pl.DataFrame:
    """Give a CSV's extra (non-canonical) text columns a number type when every value is one.

    The whole column is looked at, not the first rows: a column of whole numbers that turns
    decimal on row 50,000 becomes Float64, one with any text stays text.
    """
    exprs = []
    for name, dtype in frame.schema.items():
        if name in schema.names or name == ROW or dtype != pl.String:
            continue
        text = frame[name].str.strip_chars().replace("", None)
        present = text.is_not_null().sum()
        if present == 0:
            continue
        number = frame.select(_number_expr(pl.col(name), dtype, decimal_comma=source.decimal_comma)).to_series()
        if number.is_not_null().sum() == present:
            whole = bool((number.drop_nulls() == number.drop_nulls().round(0)).all())
            integer_text = bool(text.drop_nulls().str.contains(r"^[+-]?\d+$").all())
            exprs.append(number.cast(pl.Int64) if whole and integer_text else number)
    return frame.with_columns(exprs)


def _apply_mapping(raw: pl.DataFrame, source: TableSource, schema: TableSchema) -> tuple[pl.DataFrame, list[Problem]]:
    raw, problems = _derive(raw, source, schema)
    renames: dict[str, str] = {}
    for canonical, theirs in source.columns.items():
        if canonical not in schema.names:
            problems.append(
                Problem(
                    schema.name,
                    canonical,
                    f"funnel.toml maps an unknown column; {schema.name} columns are {', '.join(schema.names)}",
                )
            )
        elif theirs not in raw.columns:
            problems.append(
                Problem(
                    schema.name,
                    canonical,
                    f"funnel.toml maps it to column {theirs!r}, which {source.path.name} lacks "
                    f"(its columns: {', '.join(raw.columns)})",
                )
            )
        else:
            renames[theirs] = canonical
    raw = raw.rename(renames)
    missing = [name for name in schema.required if name not in raw.columns]
    if missing and raw.width == 1:
        # One column whose name holds the others: the file uses another separator.
        header = raw.columns[0]
        guess = next((sep for sep in (";", "\t", "|", ",") if sep in header and sep != source.separator), None)
        if guess is not None:
            shown = "\\t" if guess == "\t" else guess
            return raw, [
                Problem(
                    schema.name,
                    "",
                    f"{source.path.name} has one column {header!r}: it looks {shown!r}-separated, not "
                    f'{source.separator!r}-separated; set separator = "{shown}" under [tables.{schema.name}] '
                    "in funnel.toml",
                )
            ]
    for name in missing:
        problems.append(
            Problem(
                schema.name,
                name,
                f"required column is missing (file has: {', '.join(raw.columns)}); "
                f"rename it in the file or map it in funnel.toml [tables.{schema.name}.columns]",
            )
        )
    return raw, problems


def _parse_columns(raw: pl.DataFrame, source: TableSource, schema: TableSchema) -> tuple[pl.DataFrame, list[Problem]]:
    problems: list[Problem] = []
    exprs = []
    for spec in schema.columns:
        if spec.name not in raw.columns:
            continue
        expr = _parse_expr(raw[spec.name], spec, source)
        exprs.append(expr.alias(spec.name))
    parsed = raw.with_columns(exprs)
    for spec in schema.columns:
        if spec.name not in raw.columns:
            continue
        failed = raw[spec.name].is_not_null() & parsed[spec.name].is_null()
        if raw[spec.name].dtype == pl.String:
            failed = failed & (raw[spec.name].str.strip_chars() != "")
        n_failed = int(failed.sum())
        if n_failed:
            bad = raw.filter(failed).head(_MAX_EXAMPLES)
            problems.append(
                Problem(
                    schema.name,
                    spec.name,
                    _parse_rule(spec, source),
                    n_failed,
                    [{"row": r[ROW], spec.name: r[spec.name]} for r in bad.iter_rows(named=True)],
                )
            )
    return parsed, problems


def _parse_rule(spec: ColumnSpec, source: TableSource) -> str:
    if spec.kind == "datetime":
        fmt = source.datetime_format or "ISO 8601 (YYYY-MM-DD[ HH:MM:SS])"
        return (
            f"wrong type: values are not dates in {fmt}; "
            "set datetime_format in funnel.toml if your dates use another format"
        )
    if spec.kind == "int":
        return "wrong type: values are not whole numbers"
    if spec.kind == "float":
        hint = " (set decimal_comma = true in funnel.toml for 1,5-style decimals)" if not source.decimal_comma else ""
        return f"wrong type: values are not numbers; no thousands separators or currency signs{hint}"
    return "wrong type: values cannot be read as identifiers"


def _parse_expr(values: pl.Series, spec: ColumnSpec, source: TableSource) -> pl.Expr:
    col = pl.col(spec.name)
    dtype = values.dtype
    if spec.kind == "str":
        return col.cast(pl.String)
    if spec.kind == "id":
        return _id_expr(col, values)
    if spec.kind == "datetime":
        return _datetime_expr(col, dtype, source.datetime_format)
    number = _number_expr(col, dtype, decimal_comma=source.decimal_comma)
    if spec.kind == "int":
        return pl.when(number == number.round(0)).then(number).otherwise(None).cast(pl.Int64)
    return number


def _id_expr(col: pl.Expr, values: pl.Series) -> pl.Expr:
    if values.dtype.is_integer():
        return col.cast(pl.Int64)
    text = col.cast(pl.String).str.strip_chars()
    # Whole numbers without leading zeros become integers; anything else (zero-padded
    # account numbers, codes) stays text so that "00017" keeps its zeros.
    as_text = values.cast(pl.String).str.strip_chars().drop_nulls()
    if as_text.len() and as_text.str.contains(r"^(0|[1-9][0-9]{0,17})$").all():
        return text.cast(pl.Int64)
    return text


def _number_expr(col: pl.Expr, dtype: pl.DataType, *, decimal_comma: bool) -> pl.Expr:
    if dtype.is_numeric():
        return col.cast(pl.Float64)
    text = col.cast(pl.String).str.strip_chars()
    if decimal_comma:
        text = text.str.replace_all(".", "", literal=True).str.replace(",", ".", literal=True)
    return text.cast(pl.Float64, strict=False).fill_nan(None)


def _datetime_expr(col: pl.Expr, dtype: pl.DataType, fmt: str | None) -> pl.Expr:
    if dtype == pl.Date or isinstance(dtype, pl.Datetime):
        return col.cast(pl.Datetime("us"))
    text = col.cast(pl.String).str.strip_chars()
    formats = (fmt,) if fmt else _ISO_FORMATS
    return pl.coalesce([text.str.strptime(pl.Datetime("us"), f, strict=False, exact=True) for f in formats])


def write_table(frame: pl.DataFrame, path: Path) -> None:
    """Write a table as Parquet or CSV (by suffix), atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".csv":
        frame.write_csv(tmp)
    else:
        frame.write_parquet(tmp, statistics=True)
    tmp.replace(path)


class atomic_dir:
    """Write a folder beside its target and swap it in only when the block succeeds.

    A failed or interrupted write leaves the previous folder untouched and no partial one.
    """

    def __init__(self, target: Path):
        self.target = Path(target)
        self.staging = self.target.with_name(f".{self.target.name}.partial")

    def __enter__(self) -> Path:
        # A run killed (SIGKILL, power loss) between the two renames below leaves only the old
        # folder: put it back before anything else. A killed run's staging folder is dropped.
        old = self.target.with_name(f".{self.target.name}.old")
        if old.is_dir() and not self.target.exists():
            old.rename(self.target)
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        return self.staging

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            return
        old = self.target.with_name(f".{self.target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if self.target.exists():
            self.target.rename(old)
        self.staging.rename(self.target)
        shutil.rmtree(old, ignore_errors=True)
