"""A report run's parameters: checked against the notebook's parameters cell, typed, and made safe to use."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from funnelmodels.errors import ConfigError, ReportError, did_you_mean
from funnelmodels.kpis import FORECAST_KPI, PERIODS

__all__ = [
    "ALL_SEGMENTS",
    "ResolvedRun",
    "check_period",
    "named_period",
    "parse_period",
    "period_end",
    "resolve_run",
    "safe_name",
    "shift_period",
    "won_value_targets",
]


_PATH_PARAMETERS = ("data_dir", "model_dir", "targets_file")

FAILED_FOLDER = "failed"
"""The folder beside a report's runs that keeps the notebooks of failed runs."""


_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def safe_name(value: str, what: str) -> str:
    """``value`` when it is safe as a folder name (letters, digits, ``.``, ``_``, ``-``); else ConfigError."""
    if not _SAFE.match(value) or ".." in value:
        raise ConfigError(
            f"{what} {value!r} is not allowed: use letters, digits, '.', '_' and '-' only (no '/' or '..'), "
            "so a report cannot be written outside reports/."
        )
    return value


def _coerce(name: str, value: Any, inferred: str | None) -> Any:
    """CLI values arrive as text; give them the parameter's declared type."""
    if not isinstance(value, str) or not inferred:
        return value
    try:
        if inferred == "int":
            return int(value)
        if inferred == "float":
            return float(value)
        if inferred == "bool":
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes")
    except ValueError:
        raise ConfigError(f"parameter {name} must be a {inferred}; received {value!r}.") from None
    return value


@dataclass(frozen=True)
class ResolvedRun:
    """A report run ready to execute: its notebook, typed parameters, run id and data folder."""

    name: str
    notebook: Path
    parameters: dict[str, Any]
    run_id: str
    data_dir: str | None


def resolve_run(name: str, parameters: Mapping[str, Any] | None, notebooks_dir: str | Path) -> ResolvedRun:
    """Check the report and its parameters, type them, and make paths absolute.

    Paths given by the caller are relative to the caller's folder (the notebook runs in its own
    folder); the run id is the ``period`` parameter, or ``latest``.

    Raises
    ------
    ConfigError for an unknown report or parameter, a value of the wrong type, an unsafe name,
    or a data folder that does not exist.
    """
    name = safe_name(name, "report name")
    folder = Path(notebooks_dir)
    notebook = folder / f"{name}.ipynb"
    if not notebook.is_file():
        available = ", ".join(sorted(p.stem for p in folder.glob("*.ipynb"))) or f"none in {folder}"
        raise ConfigError(f"no report {name!r}; available: {available}.")
    if (parameters or {}).get("period"):  # before any parsing: the period names a folder
        given = safe_name(str(dict(parameters or {})["period"]), "period")
        if given == FAILED_FOLDER:
            raise ConfigError(f"period {given!r} is not allowed: reports/{name}/{FAILED_FOLDER}/ keeps failed runs.")
    params = _check_parameters(notebook, dict(parameters or {}))
    for key in _PATH_PARAMETERS:
        if params.get(key):
            params[key] = str(Path(params[key]).resolve())
    run_id = safe_name(str(params.get("period") or "latest"), "period")
    data_dir = params.get("data_dir") or _declared_default(notebook, "data_dir", folder)
    if data_dir and not Path(data_dir).exists():
        given = "" if params.get("data_dir") else " (the notebook's default)"
        raise ConfigError(
            f"data_dir {data_dir}{given} does not exist; pass -p data_dir FOLDER (a dataset folder or its funnel.toml)."
        )
    return ResolvedRun(name=name, notebook=notebook, parameters=params, run_id=run_id, data_dir=data_dir)


def _check_parameters(notebook: Path, parameters: Mapping[str, Any]) -> dict[str, Any]:
    import papermill as pm

    declared = pm.inspect_notebook(str(notebook))
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        listing = ", ".join(f"{n} ({d.get('help') or d.get('inferred_type_name')})" for n, d in declared.items())
        raise ConfigError(f"{notebook.name} has no parameter {unknown}; its parameters: {listing}.")
    typed = {k: _coerce(k, v, declared[k].get("inferred_type_name")) for k, v in parameters.items()}
    for key, value in typed.items():
        _check_value(key, value)
    if typed.get("period"):
        default = str(declared.get("period_length", {}).get("default") or '"month"').strip("\"'")
        parse_period(str(typed["period"]), str(typed.get("period_length") or default))
    return typed


# Whole-number parameters of the shipped notebooks: (smallest, largest, what it means).
_WHOLE_NUMBERS = {
    "seed": (0, 2**31 - 1, "a random seed"),
    "horizon_days": (0, 3650, "days a stage has to convert (0: the dataset's own)"),
    "random_folds": (0, 20, "the number of random folds (0: none; 2 or more to run them)"),
    "max_fit_rows": (0, 10**10, "the rows the models are fitted on at most (0: every row)"),
}


def _check_value(key: str, value: Any) -> None:
    """A parameter's value against what the shipped notebooks allow, before any kernel starts."""
    if key == "period_length" and value not in PERIODS:
        raise ConfigError(
            f"parameter period_length must be one of {', '.join(PERIODS)}; received {value!r}"
            f"{did_you_mean(str(value), list(PERIODS))}."
        )
    if key in _WHOLE_NUMBERS and isinstance(value, int):
        low, high, meaning = _WHOLE_NUMBERS[key]
        if not low <= value <= high or (key == "random_folds" and value == 1):
            raise ConfigError(f"parameter {key} is {meaning}: from {low} to {high}; received {value}.")


def parse_period(value: str, period_length: str) -> date:
    """The first day of the period ``value`` names, checked against ``period_length``.

    ``2026`` (a year), ``2026-Q2`` (a quarter), ``2026-06`` (a month), ``2026-W10`` (an ISO week)
    or a date ``2026-06-15`` (the period of that length holding it). A period written for
    another length (``2026-W10`` with period_length month) is refused: the report would
    otherwise carry one length's name over another's numbers.
    """
    if period_length not in PERIODS:
        raise ConfigError(f"period_length must be one of {', '.join(PERIODS)}; received {period_length!r}.")
    forms = {
        "year": (r"\d{4}", "2026"),
        "quarter": (r"\d{4}-Q[1-4]", "2026-Q2"),
        "month": (r"\d{4}-\d{2}", "2026-06"),
        "week": (r"\d{4}-W\d{2}", "2026-W10"),
    }
    named = next((length for length, (pattern, _) in forms.items() if re.fullmatch(pattern, value)), None)
    try:
        if named is None:
            day = date.fromisoformat(value)
        elif named != period_length:
            example = forms.get(period_length, ("", "2026-06-15"))[1]
            raise ConfigError(
                f"period {value!r} names a {named}, but period_length is {period_length}; pass -p period_length "
                f"{named}, or a {period_length} such as {example} (or a date inside it)."
            )
        elif named == "year":
            day = date(int(value), 1, 1)
        elif named == "quarter":
            day = date(int(value[:4]), 3 * int(value[-1]) - 2, 1)
        elif named == "month":
            day = datetime.strptime(value, "%Y-%m").date()
        else:
            day = datetime.strptime(value + "-1", "%G-W%V-%u").date()
    except ValueError:
        raise ConfigError(
            f"period {value!r} is not a period: use 2026 (year), 2026-Q2, 2026-06, 2026-W10 or a date 2026-06-15."
        ) from None
    start: date = pl.Series([day]).cast(pl.Datetime).dt.truncate(PERIODS[period_length]).dt.date()[0]
    return start


def _declared_default(notebook: Path, key: str, base: Path) -> str | None:
    import papermill as pm

    default = pm.inspect_notebook(str(notebook)).get(key, {}).get("default")
    return str((base / default.strip("\"'")).resolve()) if default else None


def check_period(value: str, period_length: str, available: pl.Series, data_end: date | None = None) -> date:
    """The period a report is about, parsed and checked against the data.

    ``value`` is ``2026-06``, ``2026-Q2`` or ``2026-06-01``; empty means the latest complete period.
    """
    if period_length not in PERIODS:
        raise ConfigError(f"period_length must be one of {', '.join(PERIODS)}; received {period_length!r}.")
    periods: list[date] = sorted(available.to_list())
    if not periods:
        raise ReportError("the data has no transactions or closed opportunities in any period.")
    if not value:
        complete = [p for p in periods if data_end is None or period_end(p, period_length) <= data_end]
        return complete[-1] if complete else periods[-1]
    truncated = parse_period(value, period_length)
    if truncated not in periods:
        raise ConfigError(
            f"period {value!r} has no data; the data covers {periods[0]} to {periods[-1]} "
            f"({len(periods)} {period_length}s)."
        )
    return truncated


def period_end(start: date, period_length: str) -> date:
    """The first day after the period of ``period_length`` that starts on ``start``."""
    return shift_period(start, period_length, 1)


def shift_period(start: date, period_length: str, steps: int) -> date:
    """The start of the period ``steps`` periods of ``period_length`` from the one starting on ``start``."""
    probe = pl.Series([datetime.combine(start, datetime.min.time())]).dt.offset_by(
        f"{steps}{PERIODS[period_length][1:]}"
    )
    shifted: date = probe.dt.date()[0]
    return shifted


ALL_SEGMENTS = "all"


def named_period(text: str) -> tuple[str, date]:
    """``2026-Q3`` → ("quarter", 2026-07-01); ``2026-07`` → month; ``2026`` → year."""
    length = "quarter" if "Q" in text.upper() else "year" if text.isdigit() else "month"
    return length, parse_period(text.upper(), length)


def won_value_targets(path: Path | None, length: str, start: date, by: str | None) -> dict[str, float]:
    """The period's won_value targets per segment (``all`` for the whole) from a targets CSV.

    A row counts when it names the same period: a month's target (2026-07) is not a quarter's (2026-Q3).
    """
    if path is None:
        return {}
    if not path.is_file():
        raise ConfigError(f"--targets {path} does not exist.")
    table = pl.read_csv(path, infer_schema_length=0)
    missing = [c for c in ("kpi", "period", "target") if c not in table.columns]
    if missing:
        raise ConfigError(f"the targets file {path} needs columns kpi, period, target; it lacks {', '.join(missing)}.")
    rows = table.filter(pl.col("kpi") == FORECAST_KPI)
    out: dict[str, float] = {}
    for row in rows.iter_rows(named=True):
        try:
            named, when = named_period(str(row["period"]).strip())
        except ConfigError as exc:
            raise ConfigError(f"the targets file {path}: {exc}") from None
        try:
            value = float(row["target"])
        except (TypeError, ValueError):
            raise ConfigError(
                f"the targets file {path}: the {FORECAST_KPI} target of {row['period']} is {row['target']!r}, "
                "not a number."
            ) from None
        if named != length or when != start:
            continue
        segment = row.get(by) if by and by in row else None
        out[str(segment) if segment not in (None, "") else ALL_SEGMENTS] = value
    return out
