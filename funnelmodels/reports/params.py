"""A report run's parameters: checked against the notebook's parameters cell, typed, and made safe to use."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from funnelmodels.errors import ConfigError, ReportError
from funnelmodels.kpis import PERIODS

__all__ = [
    "ResolvedRun",
    "check_period",
    "period_end",
    "resolve_run",
    "safe_name",
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
    params = _check_parameters(notebook, dict(parameters or {}))
    for key in _PATH_PARAMETERS:
        if params.get(key):
            params[key] = str(Path(params[key]).resolve())
    run_id = safe_name(str(params.get("period") or "latest"), "period")
    if run_id == FAILED_FOLDER:
        raise ConfigError(f"period {run_id!r} is not allowed: reports/{name}/{FAILED_FOLDER}/ keeps failed runs.")
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
    return {k: _coerce(k, v, declared[k].get("inferred_type_name")) for k, v in parameters.items()}


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
    try:
        quarter = re.fullmatch(r"(\d{4})-Q([1-4])", value)
        if quarter:
            parsed = date(int(quarter.group(1)), 3 * int(quarter.group(2)) - 2, 1)
        elif re.fullmatch(r"\d{4}-\d{2}", value):
            parsed = datetime.strptime(value, "%Y-%m").date()
        else:
            parsed = date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"period {value!r} is not a date like 2026-06, 2026-Q2 or 2026-06-01.") from None
    truncated: date = pl.Series([parsed]).cast(pl.Datetime).dt.truncate(PERIODS[period_length]).dt.date()[0]
    if truncated not in periods:
        raise ConfigError(
            f"period {value!r} has no data; the data covers {periods[0]} to {periods[-1]} "
            f"({len(periods)} {period_length}s)."
        )
    return truncated


def period_end(start: date, period_length: str) -> date:
    """The first day after the period of ``period_length`` that starts on ``start``."""
    probe = pl.Series([datetime.combine(start, datetime.min.time())]).dt.offset_by(PERIODS[period_length])
    end: date = probe.dt.date()[0]
    return end
