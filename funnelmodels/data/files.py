"""From a user's files to one canonical table: reading, filtering, mapping, stacking, lookups.

A canonical table comes from one or more files (``[[tables.X.sources]]``, stacked) and may take
columns from other files by key (``[[tables.X.lookups]]``, aggregated per key). CSV columns are
read as text and parsed here, file by file (each file has its own date format and decimal
mark), so a value that cannot be parsed is reported with its file and row instead of silently
becoming null.

Steps, per file: read → keep/drop_empty filters → derive → map column names → parse the
canonical columns → type the extra columns; then stack the files, apply the lookups, merge rows
per ``one_row_per``. Every step that removes or changes rows says so in ``notes``.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field

import polars as pl

from funnelmodels.config import FileSource, Lookup, TableSource, is_parquet_parts
from funnelmodels.data.schema import CREATED_AT, FILE, IN_FILE, ROW, ColumnSpec, TableSchema
from funnelmodels.errors import Problem, did_you_mean

__all__ = ["TableRead", "read_file", "read_table"]

_ISO_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)
_ISO_OFFSET_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M:%S%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%#z",
)
_MAX_EXAMPLES = 5
"""Suffix of a file's own column whose name a mapping gives to another column."""


@dataclass
class TableRead:
    """One table as read: the parsed frame and what went wrong or was done on the way.

    ``frame`` holds the canonical columns present (parsed), extra columns (typed), the file's
    data row ``_row`` (and ``_file`` when the table has several files); it is None when the table
    cannot be used at all (unreadable file, missing required column). ``problems`` are the
    table-level ones and the values that could not be parsed (their rows are in ``unparsed``,
    with a reason, for setting aside); ``notes`` what the loader did (rows filtered, merged,
    looked up).
    """

    frame: pl.DataFrame | None
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unparsed: pl.DataFrame | None = None


def read_table(
    table: TableSource, schema: TableSchema, *, name: str | None = None, allow_empty: bool = False
) -> TableRead:
    """Read a canonical table from its files: stack the sources, apply lookups, parse, check columns.

    An empty table is refused unless ``allow_empty`` (one partition of a dataset may have no surveys).
    """
    where = name or schema.name
    many = len(table.sources) > 1
    frames, problems, notes, unparsed = [], [], [], []
    for source in table.sources:
        read = _read_source(source, schema, many=many)
        problems.extend(read.problems)
        notes.extend(read.notes)
        if read.unparsed is not None:
            unparsed.append(read.unparsed)
        if read.frame is not None:
            frames.append(read.frame)
    if len(frames) < len(table.sources):
        return TableRead(None, problems, notes)
    frame = pl.concat(frames, how="diagonal_relaxed") if many else frames[0]
    for lookup in table.lookups:
        frame, lookup_problems, lookup_notes = _apply_lookup(frame, lookup, schema)
        problems.extend(lookup_problems)
        notes.extend(lookup_notes)
    if any(p.n_rows == 0 for p in problems):  # a table-level problem: the table cannot be used
        return TableRead(None, problems, notes)
    missing = [c for c in schema.required if c not in frame.columns]
    for column in missing:
        files = ", ".join(s.path.name for s in table.sources)
        problems.append(
            Problem(
                where,
                column,
                f"required column is missing (file has: {', '.join(_file_columns(frame))}"
                + (f"; none of {files} has it" if many else "")
                + f"); rename it in the file or map it in funnel.toml [tables.{where}.columns]"
                + (" or fill it with a lookup" if table.lookups else ""),
            )
        )
    if missing:
        return TableRead(None, problems, notes)
    if table.one_row_per:
        frame, merged = _one_row_per(frame, table.one_row_per, where)
        if isinstance(merged, Problem):
            return TableRead(None, [*problems, merged], notes)
        notes.extend(merged)
    if frame.height == 0 and not allow_empty:
        problems.append(Problem(where, "", "the table is empty (0 rows); remove the file or fill it"))
        return TableRead(None, problems, notes)
    return TableRead(frame, problems, notes, pl.concat(unparsed) if unparsed else None)


def _file_columns(frame: pl.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in (ROW, FILE)]


# --- one file ------------------------------------------------------------------------------------


def read_file(source: FileSource) -> pl.DataFrame:
    """The file as it is: every CSV column as text (parsing comes later, with row numbers)."""
    path = source.path
    if not path.exists():
        raise OSError(f"file {path} does not exist")
    if path.is_dir():
        if source.format == "parquet" and is_parquet_parts(path):
            return pl.read_parquet(path)  # a folder of Parquet part files (Spark, Dask, DuckDB exports)
        raise OSError(
            f"{path} is a folder, not a file (a folder is read only when it holds Parquet part files, "
            "with format parquet)"
        )
    if not path.is_file():
        kind = "a named pipe (FIFO)" if stat.S_ISFIFO(path.stat().st_mode) else "not a regular file"
        raise OSError(f"{path} is {kind}; give the path of a CSV or Parquet file")
    if source.format == "parquet":
        return pl.read_parquet(source.path)
    return pl.read_csv(source.path, separator=source.separator, encoding=source.encoding, infer_schema=False)


def _unreadable(source: FileSource, table: str, exc: Exception) -> Problem:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, UnicodeDecodeError) or "utf-8" in reason.lower() or "utf8" in reason.lower():
        reason += (
            f'; the file is not UTF-8 (Excel often saves latin-1 or cp1252): set encoding = "latin-1" '
            f"under [tables.{table}] in funnel.toml"
        )
    return Problem(table, "", f"cannot read {source.path.name} as {source.format}: {reason}")


def _read_source(source: FileSource, schema: TableSchema, *, many: bool) -> TableRead:
    try:
        raw = read_file(source)
    except (OSError, pl.exceptions.PolarsError, UnicodeDecodeError, LookupError) as exc:
        return TableRead(None, [_unreadable(source, schema.name, exc)])
    raw = raw.with_row_index(ROW, offset=1)  # the file's data row, before any filter
    raw, problems, notes = _filter_rows(raw, source, schema.name)
    if problems:
        return TableRead(None, problems, notes)
    raw, problems = _derive(raw, source, schema)
    unknown = [c for c in source.drop_columns if c not in raw.columns]
    problems += [
        Problem(schema.name, c, f"drop_columns names a column {source.path.name} lacks{did_you_mean(c, raw.columns)}")
        for c in unknown
    ]
    if not problems:
        raw = raw.drop(list(source.drop_columns))
        raw, problems, mapping_notes = _apply_mapping(raw, source, schema)
        notes.extend(mapping_notes)
    if problems:
        return TableRead(None, problems, notes)
    if many:
        raw = raw.with_columns(pl.lit(source.path.name).alias(FILE))
    parsed, problems, unparsed = _parse_columns(raw, source, schema)
    return TableRead(_typed_extras(parsed, source, schema), problems, notes, unparsed)


def _filter_rows(raw: pl.DataFrame, source: FileSource, table: str) -> tuple[pl.DataFrame, list[Problem], list[str]]:
    """Apply ``keep`` and ``drop_empty``; say how many rows each took away."""
    problems: list[Problem] = []
    notes: list[str] = []
    for column in [*source.keep, *source.drop_empty]:
        if column not in raw.columns:
            problems.append(
                Problem(
                    table,
                    column,
                    f"funnel.toml filters on column {column!r}, which {source.path.name} lacks"
                    f"{did_you_mean(column, raw.columns)} (its columns: {', '.join(_file_columns(raw))})",
                )
            )
    if problems:
        return raw, problems, notes
    for column, allowed in source.keep.items():
        kept = raw.filter(pl.col(column).cast(pl.String).str.strip_chars().is_in(list(allowed)))
        if kept.height < raw.height:
            notes.append(
                f"{table}: {raw.height - kept.height:,} of {raw.height:,} rows of {source.path.name} left out: "
                f"{column} not one of {', '.join(allowed)} (keep in funnel.toml)"
            )
        raw = kept
    for column in source.drop_empty:
        text = pl.col(column).cast(pl.String).str.strip_chars()
        kept = raw.filter(text.is_not_null() & (text != ""))
        if kept.height < raw.height:
            notes.append(
                f"{table}: {raw.height - kept.height:,} rows of {source.path.name} left out: {column} is empty "
                "(drop_empty in funnel.toml)"
            )
        raw = kept
    return raw, problems, notes


def _derive(raw: pl.DataFrame, source: FileSource, schema: TableSchema) -> tuple[pl.DataFrame, list[Problem]]:
    """Add the columns funnel.toml derives (``[tables.X.derive]``) from the file's own columns."""
    problems: list[Problem] = []
    exprs = []
    for column, rule in source.derive.items():
        if rule.source is not None and rule.source not in raw.columns:
            problems.append(
                Problem(
                    schema.name,
                    column,
                    f"funnel.toml derives it from column {rule.source!r}, which {source.path.name} lacks"
                    f"{did_you_mean(rule.source, raw.columns)} (its columns: {', '.join(_file_columns(raw))})",
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
            others = text if rule.keep_others else None
            expr = text.replace_strict(dict(rule.mapping), default=others, return_dtype=pl.String)
        exprs.append(expr.alias(column))
    return raw.with_columns(exprs), problems


def _apply_mapping(
    raw: pl.DataFrame, source: FileSource, schema: TableSchema
) -> tuple[pl.DataFrame, list[Problem], list[str]]:
    """Give the file's columns their canonical names (``[tables.X.columns]``).

    Rule when a file already has a column of the canonical name that is mapped onto another of
    its columns (``customer_id = "customer_unique_id"`` in a file that also has ``customer_id``):
    the mapped column takes the name, and the file's own column is kept as ``customer_id_in_file``.
    """
    problems: list[Problem] = []
    notes: list[str] = []
    exprs: list[pl.Expr] = []
    for canonical, theirs in source.columns.items():
        if canonical not in schema.names:
            problems.append(
                Problem(
                    schema.name,
                    canonical,
                    f"funnel.toml maps an unknown column{did_you_mean(canonical, schema.names)}; {schema.name} "
                    f"columns are {', '.join(schema.names)}",
                )
            )
        elif theirs not in raw.columns:
            problems.append(
                Problem(
                    schema.name,
                    canonical,
                    f"funnel.toml maps it to column {theirs!r}, which {source.path.name} lacks"
                    f"{did_you_mean(theirs, raw.columns)} (its columns: {', '.join(_file_columns(raw))})",
                )
            )
        elif canonical in source.derive:
            problems.append(
                Problem(schema.name, canonical, "funnel.toml both maps and derives it; keep one of the two")
            )
        else:
            exprs.append(pl.col(theirs).alias(canonical))
    if problems:
        return raw, problems, notes
    sources = set(source.columns.values())  # file columns that become canonical ones
    passthrough = []
    for column in raw.columns:
        if column in sources:
            continue
        if column in source.columns:  # the name a mapping gives to another of the file's columns
            passthrough.append(pl.col(column).alias(f"{column}{IN_FILE}"))
            notes.append(
                f"{schema.name}: {source.path.name} has its own column {column!r}, but funnel.toml maps {column} to "
                f"{source.columns[column]!r}; the file's own {column!r} is kept as {column + IN_FILE!r}"
            )
        else:
            passthrough.append(pl.col(column))
    out = raw.select(*passthrough, *exprs)
    if len([c for c in schema.required if c not in out.columns]) and raw.width <= 2:
        # One column whose name holds the others: the file uses another separator.
        header = next((c for c in raw.columns if c != ROW), "")
        guess = next((sep for sep in (";", "\t", "|", ",") if sep in header and sep != source.separator), None)
        if guess is not None:
            shown = "\\t" if guess == "\t" else guess
            problems.append(
                Problem(
                    schema.name,
                    "",
                    f"{source.path.name} has one column {header!r}: it looks {shown!r}-separated, not "
                    f'{source.separator!r}-separated; set separator = "{shown}" under [tables.{schema.name}] '
                    "in funnel.toml",
                )
            )
    return out, problems, notes


# --- parsing -------------------------------------------------------------------------------------


def _parse_columns(
    raw: pl.DataFrame, source: FileSource, schema: TableSchema
) -> tuple[pl.DataFrame, list[Problem], pl.DataFrame | None]:
    """Parse the canonical columns present; report values that cannot be parsed, with their rows."""
    present = [spec for spec in schema.columns if spec.name in raw.columns]
    parsed = raw.with_columns(_parse_expr(raw[spec.name], spec, source).alias(spec.name) for spec in present)
    problems: list[Problem] = []
    reasons = []
    for spec in present:
        failed = raw[spec.name].is_not_null() & parsed[spec.name].is_null()
        if raw[spec.name].dtype == pl.String:
            failed = failed & (raw[spec.name].str.strip_chars() != "")
        n_failed = int(failed.sum())
        if not n_failed:
            continue
        bad = raw.filter(failed)
        shown = bad.head(_MAX_EXAMPLES)
        file_part = [FILE] if FILE in raw.columns else []
        problems.append(
            Problem(
                schema.name,
                spec.name,
                _parse_rule(spec, source),
                n_failed,
                [
                    {"row": r[ROW], **({"file": r[FILE]} if file_part else {}), spec.name: r[spec.name]}
                    for r in shown.iter_rows(named=True)
                ],
            )
        )
        reasons.append(
            bad.select(
                ROW,
                *file_part,
                pl.format(f"{spec.name}: {{}} is not {_kind_words(spec)}", pl.col(spec.name).cast(pl.String)).alias(
                    "reason"
                ),
            )
        )
    unparsed = pl.concat(reasons, how="diagonal_relaxed") if reasons else None
    return parsed, problems, unparsed


def _kind_words(spec: ColumnSpec) -> str:
    return {
        "datetime": "a date",
        "int": "a whole number",
        "float": "a number",
        "id": "an identifier",
        "str": "text",
        "bool": "true or false",
    }[spec.kind]


def _parse_rule(spec: ColumnSpec, source: FileSource) -> str:
    if spec.kind == "datetime":
        fmt = source.datetime_format or "ISO 8601 (YYYY-MM-DD[ HH:MM:SS])"
        return (
            f"wrong type: values are not dates in {fmt}; "
            "set datetime_format in funnel.toml if your dates use another format"
        )
    if spec.kind == "int":
        return "wrong type: values are not whole numbers"
    if spec.kind == "bool":
        return "wrong type: values are not true or false (true/false, yes/no, 1/0)"
    if spec.kind == "float":
        hint = " (set decimal_comma = true in funnel.toml for 1,5-style decimals)" if not source.decimal_comma else ""
        return (
            "wrong type: values are not numbers (NaN and infinity count as not numbers); no thousands separators "
            f"or currency signs{hint}"
        )
    return "wrong type: values cannot be read as identifiers"


def _parse_expr(values: pl.Series, spec: ColumnSpec, source: FileSource) -> pl.Expr:
    col = pl.col(spec.name)
    dtype = values.dtype
    if spec.kind == "str":
        return col.cast(pl.String)
    if spec.kind == "bool":
        return bool_expr(col, dtype)
    if spec.kind == "id":
        return id_expr(col, values)
    if spec.kind == "datetime":
        return datetime_expr(col, dtype, source.datetime_format, source.timezone)
    number = number_expr(col, dtype, decimal_comma=source.decimal_comma)
    if spec.kind == "int":
        return pl.when(number == number.round(0)).then(number).otherwise(None).cast(pl.Int64)
    return number


_TRUE = ("true", "yes", "y", "1", "t")
_FALSE = ("false", "no", "n", "0", "f")


def bool_expr(col: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A yes/no column as written by exports: true/false, yes/no, 1/0 in any case; anything else unparsed (null)."""
    if dtype == pl.Boolean:
        return col
    text = col.cast(pl.String).str.strip_chars().str.to_lowercase()
    return pl.when(text.is_in(_TRUE)).then(True).when(text.is_in(_FALSE)).then(False).otherwise(None)


def id_expr(col: pl.Expr, values: pl.Series) -> pl.Expr:
    """Identifiers: whole numbers without leading zeros become integers; anything else stays text.

    A whole number written as a decimal (``8.0``: an export that went through a float column)
    is the same id as ``8``.
    """
    if values.dtype.is_integer():
        return col.cast(pl.Int64)
    if values.dtype.is_float():
        finite = values.drop_nulls().drop_nans()
        if finite.len() and (finite == finite.round(0)).all() and finite.abs().max() < 2**53:  # type: ignore[operator]
            return col.cast(pl.Int64, strict=False)
        return col.cast(pl.String)
    text = col.cast(pl.String).str.strip_chars()
    # Zero-padded account numbers and codes stay text so that "00017" keeps its zeros.
    as_text = values.cast(pl.String).str.strip_chars().drop_nulls()
    if as_text.len() and as_text.str.contains(r"^(0|[1-9][0-9]{0,17})(\.0+)?$").all():
        return text.str.replace(r"\.0+$", "").cast(pl.Int64)
    return text


def number_expr(col: pl.Expr, dtype: pl.DataType, *, decimal_comma: bool) -> pl.Expr:
    """Numbers from text (``1.234,5`` with ``decimal_comma``); anything else becomes null."""
    if dtype.is_numeric():
        return finite(col.cast(pl.Float64))
    text = col.cast(pl.String).str.strip_chars()
    if decimal_comma:
        text = text.str.replace_all(".", "", literal=True).str.replace(",", ".", literal=True)
    return finite(text.cast(pl.Float64, strict=False))


def finite(number: pl.Expr) -> pl.Expr:
    """The number, or null where it is NaN or infinite (reported as a value that is not a number)."""
    return pl.when(number.is_finite()).then(number)


def datetime_expr(col: pl.Expr, dtype: pl.DataType, fmt: str | None, timezone: str = "UTC") -> pl.Expr:
    """Datetimes from text in ``fmt`` (default: the ISO forms, with or without an offset); else null.

    Every table's times end up naive in one ``timezone``: an aware value (``+02:00``, ``Z``, a
    zoned Parquet column) is converted to it; a naive one is taken as already in it. Mixing
    zoned and naive tables would otherwise put a purchase on the wrong side of a stage entry.
    """
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        return col.dt.convert_time_zone(timezone).dt.replace_time_zone(None).cast(pl.Datetime("us"))
    if dtype == pl.Date or isinstance(dtype, pl.Datetime):
        return col.cast(pl.Datetime("us"))
    text = col.cast(pl.String).str.strip_chars()
    if fmt and "%z" not in fmt and "%#z" not in fmt:
        return text.str.strptime(pl.Datetime("us"), fmt, strict=False, exact=True)
    naive = [text.str.strptime(pl.Datetime("us"), f, strict=False, exact=True) for f in _ISO_FORMATS] if not fmt else []
    aware = [
        text.str.strptime(pl.Datetime("us", "UTC"), f, strict=False, exact=True)
        .dt.convert_time_zone(timezone)
        .dt.replace_time_zone(None)
        for f in ((fmt,) if fmt else _ISO_OFFSET_FORMATS)
    ]
    return pl.coalesce([*naive, *aware])


def _typed_extras(frame: pl.DataFrame, source: FileSource, schema: TableSchema) -> pl.DataFrame:
    """Give a CSV's extra (non-canonical) text columns a number or date type when every value is one.

    The whole column is looked at, not the first rows: a column of whole numbers that turns
    decimal on row 50,000 becomes Float64, one with any text stays text; a column whose every
    value is a date (the file's datetime_format, or ISO) becomes a datetime.
    """
    exprs = []
    for name, dtype in frame.schema.items():
        if name in schema.names or name in (ROW, FILE) or dtype != pl.String:
            continue
        text = frame[name].str.strip_chars().replace("", None)
        present = text.is_not_null().sum()
        if present == 0:
            continue
        number = frame.select(number_expr(pl.col(name), dtype, decimal_comma=source.decimal_comma)).to_series()
        if number.is_not_null().sum() == present:
            whole = bool((number.drop_nulls() == number.drop_nulls().round(0)).all())
            integer_text = bool(text.drop_nulls().str.contains(r"^[+-]?\d+$").all())
            exprs.append(number.cast(pl.Int64) if whole and integer_text else number)
            continue
        moment = frame.select(datetime_expr(pl.col(name), dtype, source.datetime_format, source.timezone)).to_series()
        if moment.is_not_null().sum() == present:
            exprs.append(moment)
    return frame.with_columns(exprs)


# --- lookups and merging -------------------------------------------------------------------------


def _apply_lookup(
    frame: pl.DataFrame, lookup: Lookup, schema: TableSchema
) -> tuple[pl.DataFrame, list[Problem], list[str]]:
    """Fill (or replace) columns with values aggregated per key from another file."""
    name = lookup.file.path.name
    try:
        raw = read_file(lookup.file)
    except (OSError, pl.exceptions.PolarsError, UnicodeDecodeError, LookupError) as exc:
        return frame, [_unreadable(lookup.file, schema.name, exc)], []
    raw, problems, notes = _filter_rows(raw, lookup.file, schema.name)
    for mine, theirs in lookup.on.items():
        if mine not in frame.columns:
            problems.append(
                Problem(
                    schema.name,
                    mine,
                    f"a lookup in {name} matches on {mine!r}, which the table lacks"
                    f"{did_you_mean(mine, frame.columns)} (its columns: {', '.join(_file_columns(frame))})",
                )
            )
        if theirs not in raw.columns:
            problems.append(
                Problem(
                    schema.name,
                    mine,
                    f"the lookup matches {mine!r} with column {theirs!r}, which {name} lacks"
                    f"{did_you_mean(theirs, raw.columns)} (its columns: {', '.join(raw.columns)})",
                )
            )
    for target, (_, column) in lookup.columns.items():
        if column not in raw.columns:
            problems.append(
                Problem(
                    schema.name,
                    target,
                    f"the lookup takes it from column {column!r}, which {name} lacks"
                    f"{did_you_mean(column, raw.columns)} (its columns: {', '.join(raw.columns)})",
                )
            )
    if problems:
        return frame, problems, notes
    keys = [f"_key{i}" for i in range(len(lookup.on))]
    key_exprs = [
        pl.col(theirs).cast(pl.String).str.strip_chars().alias(k)
        for k, theirs in zip(keys, lookup.on.values(), strict=True)
    ]
    values = raw.with_columns(key_exprs)
    aggregated = values.group_by(keys, maintain_order=True).agg(
        _aggregate(how, column, target, schema, lookup.file).alias(f"_value_{target}")
        for target, (how, column) in lookup.columns.items()
    )
    left = frame.with_columns(
        pl.col(mine).cast(pl.String).str.strip_chars().alias(k) for k, mine in zip(keys, lookup.on, strict=True)
    )
    joined = left.join(aggregated, on=keys, how="left", maintain_order="left")
    first = next(iter(lookup.columns))
    matched = joined.select(pl.col(f"_value_{first}").is_not_null().sum()).item()
    if not lookup.replace and first in frame.columns:
        filled = joined.select((pl.col(first).is_null() & pl.col(f"_value_{first}").is_not_null()).sum()).item()
        empty = frame[first].null_count()
        notes.append(
            f"{schema.name}: {', '.join(lookup.columns)} filled from {name} by {', '.join(lookup.on)} where empty: "
            f"{filled:,} of {empty:,} empty values filled"
        )
    else:
        notes.append(
            f"{schema.name}: {', '.join(lookup.columns)} looked up in {name} by {', '.join(lookup.on)}: "
            f"{matched:,} of {frame.height:,} rows matched"
            + (f"; {frame.height - matched:,} found nothing there" if matched < frame.height else "")
        )
    out = joined.with_columns(
        (pl.col(f"_value_{t}") if lookup.replace or t not in frame.columns else pl.coalesce(t, f"_value_{t}")).alias(t)
        for t in lookup.columns
    )
    return out.drop(*keys, *(f"_value_{t}" for t in lookup.columns)), problems, notes


def _aggregate(how: str, column: str, target: str, schema: TableSchema, source: FileSource) -> pl.Expr:
    """One aggregated value per key, typed for the column it fills."""
    spec = next((c for c in schema.columns if c.name == target), None)
    text = pl.col(column).cast(pl.String).str.strip_chars().replace("", None)
    if how == "count":
        return text.count().cast(pl.Int64)
    number = number_expr(pl.col(column), pl.String(), decimal_comma=source.decimal_comma)
    if how in ("sum", "mean"):
        return number.sum() if how == "sum" else number.mean()
    if how in ("min", "max"):
        if (spec is not None and spec.kind == "datetime") or (spec is None and _looks_like_dates(target)):
            moment = datetime_expr(pl.col(column), pl.String(), source.datetime_format, source.timezone)
            return moment.min() if how == "min" else moment.max()
        if spec is not None and spec.kind in ("float", "int"):
            return number.min() if how == "min" else number.max()
        return text.min() if how == "min" else text.max()
    first = text.drop_nulls().first()
    if spec is None or spec.kind in ("str", "id"):
        return first
    if spec.kind == "datetime":
        return datetime_expr(first, pl.String(), source.datetime_format, source.timezone)
    return number_expr(first, pl.String(), decimal_comma=source.decimal_comma)


def _looks_like_dates(name: str) -> bool:
    return name.endswith(("_at", "_date", "date"))


def _one_row_per(frame: pl.DataFrame, key: str, table: str) -> tuple[pl.DataFrame, list[str] | Problem]:
    """Merge rows that share ``key``: the earliest ``created_at``, else the first value given."""
    if key not in frame.columns:
        return frame, Problem(
            table, key, f"one_row_per names {key!r}, which the table lacks{did_you_mean(key, frame.columns)}"
        )
    rows = frame.height
    aggregations = [
        (pl.col(c).min() if c in (CREATED_AT, ROW) else pl.col(c).drop_nulls().first()).alias(c)
        for c in frame.columns
        if c != key
    ]
    merged = frame.filter(pl.col(key).is_not_null()).group_by(key, maintain_order=True).agg(aggregations)
    merged = pl.concat([merged.select(frame.columns), frame.filter(pl.col(key).is_null())])
    notes = []
    if merged.height < rows:
        notes.append(
            f"{table}: {rows:,} rows merged into {merged.height:,}, one per {key} (one_row_per in funnel.toml; "
            f"{CREATED_AT}: the earliest, other columns: the first value given)"
        )
    return merged, notes
