"""Every key of funnel.toml is typed: a value of the wrong type is a ConfigError naming the key.

The property test starts from a funnel.toml that uses every key, replaces one value by a value
of another TOML type (text for a number, a number for true/false, a list for text, …) and
requires :func:`load_config` to refuse it with a message that names the key, the value and what
is allowed: never a traceback, never a value silently taken for something else.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from funnelmodels.config import load_config
from funnelmodels.errors import ConfigError

BASE: dict[str, Any] = {
    "dataset": {"timezone": "Europe/Berlin", "allow_outside": False},
    "funnel": {
        "stages": ["lead", "qualified", "won"],
        "lost": "lost",
        "horizon_days": 90,
        "stale_after_days": 120,
        "data_end": date(2026, 6, 30),
    },
    "tables": {
        "customers": {
            "path": "people.csv",
            "separator": ";",
            "encoding": "utf8",
            "decimal_comma": True,
            "datetime_format": "%d/%m/%Y",
            "keep": {"status": ["active"]},
            "drop_empty": ["created"],
            "columns": {"customer_id": "id", "created_at": "created"},
            "derive": {"region": {"from": "area", "map": {"N": "north"}, "others": "keep"}},
            "drop_columns": ["notes"],
        },
        "transactions": {
            "path": "orders.csv",
            "lookups": [
                {
                    "path": "payments.csv",
                    "on": {"order_id": "order"},
                    "columns": {"amount": {"sum": "value"}},
                    "replace": True,
                }
            ],
            "one_row_per": "order_id",
        },
    },
    "satisfaction": {"csat": [1, 7], "satisfied_from": 6, "low_up_to": 2, "labels": {"1": "awful"}},
    "kpis": {"zero_amounts": "order", "refunds": "ignore"},
}


def _string(text: str) -> str:
    """A TOML basic string (JSON's escapes, plus DEL, which TOML does not allow raw)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml(value: Any) -> str:
    """A value as TOML (inline tables and arrays, so a whole file fits on ``key = value`` lines)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{_string(str(k))} = {_toml(v)}" for k, v in value.items()) + "}"


def _write(folder: Path, config: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("people.csv", "orders.csv", "payments.csv"):
        (folder / name).write_text("id\n1\n")
    file = folder / "funnel.toml"
    file.write_text("\n".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in config.items()) + "\n", encoding="utf-8")
    return file


def _leaves(value: Any, path: tuple[str | int, ...] = ()) -> list[tuple[tuple[str | int, ...], Any]]:
    """Every key path of the config with the value there (lists of text count as one value)."""
    if isinstance(value, dict):
        found = []
        for key, inner in value.items():
            found += _leaves(inner, (*path, key))
        return found
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [leaf for i, inner in enumerate(value) for leaf in _leaves(inner, (*path, i))]
    return [(path, value)]


LEAVES = _leaves(BASE)


def _kind(value: Any) -> str:
    if isinstance(value, date):
        return "date"  # a date or a date-time: both are a moment
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _replaced(config: Any, path: tuple[str | int, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(config, list):
        return [_replaced(v, rest, value) if i == head else v for i, v in enumerate(config)]
    return {k: _replaced(v, rest, value) if k == head else v for k, v in config.items()}


VALUES = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(min_value=-5, max_value=5), max_size=3),
    st.lists(st.text(max_size=4), min_size=1, max_size=3),
    st.dictionaries(st.text(min_size=1, max_size=4), st.integers(), min_size=1, max_size=2),
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1)),
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(leaf=st.sampled_from(LEAVES), value=VALUES)
def test_a_value_of_the_wrong_type_is_refused_naming_its_key(
    tmp_path_factory: pytest.TempPathFactory, leaf: tuple[tuple[str | int, ...], Any], value: Any
) -> None:
    path, original = leaf
    if _kind(value) == _kind(original):
        return  # the same type: a value of the right type may be valid
    if isinstance(original, list) and isinstance(value, list) and not value:
        return
    if "map" in path and _kind(value) == "number" and math.isfinite(value):
        return  # a value written into a column may be a number (map = { yes = 1 })
    file = _write(tmp_path_factory.mktemp("toml"), _replaced(BASE, path, value))

    with pytest.raises(ConfigError) as refused:
        load_config(file)

    key = next(str(p) for p in reversed(path) if isinstance(p, str))
    message = str(refused.value)
    # The key, where a dictionary of the user's own names is the value (columns, keep, labels,
    # derive), the key that holds it.
    holders = [str(p) for p in path if isinstance(p, str)]
    assert any(name in message for name in (key, *holders[-2:])), (path, value, message)
    assert "Traceback" not in message


def test_the_base_config_is_valid(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, BASE))
    assert config.spec.horizon_days == 90 and config.tables["customers"].main.decimal_comma is True
