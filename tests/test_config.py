from __future__ import annotations

from pathlib import Path

import pytest

from funnelmodels.config import FunnelSpec, load_config
from funnelmodels.errors import ConfigError


def test_default_spec_orders_stages_and_terminals() -> None:
    spec = FunnelSpec()
    assert spec.stages == ("lead", "qualified", "relationship", "proposal", "won")
    assert spec.won == "won"
    assert spec.open_stages == ("lead", "qualified", "relationship", "proposal")
    assert spec.all_stages[-1] == "lost"
    assert spec.rank("proposal") == 3
    assert spec.rank("lost") == 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stages": ("won",)}, "at least two stages"),
        ({"stages": ("lead", "lead", "won")}, "more than once"),
        ({"stages": ("lead", "lost", "won")}, "must not also be in stages"),
        ({"horizon_days": 0}, "horizon_days must be a positive"),
    ],
)
def test_bad_spec_is_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FunnelSpec(**kwargs)


def test_plain_folder_needs_no_config(tmp_path: Path) -> None:
    (tmp_path / "customers.csv").write_text("customer_id,created_at\n1,2025-01-01\n")
    (tmp_path / "surveys.parquet").write_bytes(b"")
    config = load_config(tmp_path)
    assert set(config.tables) == {"customers", "surveys"}
    assert config.tables["surveys"].format == "parquet"
    assert config.spec == FunnelSpec()
    assert config.config_file is None


def test_funnel_toml_maps_files_columns_and_stages(tmp_path: Path) -> None:
    (tmp_path / "exports").mkdir()
    (tmp_path / "funnel.toml").write_text(
        """
[funnel]
stages = ["contact", "subscribed"]
lost = "declined"
horizon_days = 30

[tables.customers]
path = "exports/accounts.csv"
separator = ";"
datetime_format = "%d/%m/%Y"
[tables.customers.columns]
customer_id = "AccountId"
created_at = "Created"
"""
    )
    config = load_config(tmp_path)
    assert config.spec.stages == ("contact", "subscribed")
    assert config.spec.lost == "declined"
    assert config.spec.horizon_days == 30
    source = config.tables["customers"]
    assert source.path == (tmp_path / "exports" / "accounts.csv").resolve()
    assert source.separator == ";"
    assert source.datetime_format == "%d/%m/%Y"
    assert dict(source.columns) == {"customer_id": "AccountId", "created_at": "Created"}


def test_typo_in_a_key_names_the_key_and_suggests_the_fix(tmp_path: Path) -> None:
    (tmp_path / "funnel.toml").write_text('[tables.customers]\npath = "c.csv"\nseperator = ";"\n')
    with pytest.raises(ConfigError, match=r"unknown key 'seperator'.*Did you mean 'separator'"):
        load_config(tmp_path)


def test_unknown_table_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "funnel.toml").write_text('[tables.customer]\npath = "c.csv"\n')
    with pytest.raises(ConfigError, match=r"unknown key 'customer'.*'customers'"):
        load_config(tmp_path)


def test_invalid_toml_and_missing_folder_are_config_errors(tmp_path: Path) -> None:
    (tmp_path / "funnel.toml").write_text("[funnel\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nowhere")
