from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from places import ROOT

from funnelmodels.config import FunnelSpec, load_config
from funnelmodels.data.io import load_dataset
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
        ({"horizon_days": True}, "horizon_days must be a positive"),
        ({"stale_after_days": 0}, "stale_after_days must be a positive whole number"),
        ({"stale_after_days": 30.5}, "stale_after_days must be a positive whole number"),
        ({"stale_after_days": "180"}, r"stale_after_days .*received '180'"),
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


def test_the_readme_crm_walkthrough_loads(tmp_path: Path) -> None:
    """The funnel.toml of README's "From a CRM export" section, on exports shaped as it says."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    toml = readme.split("```toml\n# exports/funnel.toml\n", 1)[1].split("```", 1)[0]
    root = tmp_path / "exports"
    root.mkdir()
    (root / "funnel.toml").write_text(toml, encoding="utf-8")
    accounts = (
        "AccountId;CreatedDate;BillingState;Employees;Revenue\n"
        "A-1;31/12/2025;Bayern;12;1.234,50\nA-2;02/01/2026;Köln;7;980,00\n"
    )
    (root / "Accounts.csv").write_bytes(accounts.encode("latin-1"))
    (root / "OpportunityHistory.csv").write_text(
        "OpportunityId,AccountId,StageName,CreatedDate,Amount\n"
        "O-1,A-1,Prospecting,2026-01-05,5000\nO-1,A-1,Proposal,2026-01-20,5000\nO-1,A-1,Closed Won,2026-02-01,5000\n"
        "O-2,A-2,Prospecting,2026-01-07,800\nO-2,A-2,Closed Lost,2026-01-09,800\n",
        encoding="utf-8",
    )
    (root / "orders.csv").write_text(
        "account,date,total\nA-1,2026-02-03,5000\nA-2,2026-02-04,-20.5\n", encoding="utf-8"
    )

    data = load_dataset(root / "funnel.toml")

    customers = data.tables["customers"]
    assert customers["region"].to_list() == ["Bayern", "Köln"]
    assert customers["Revenue"].to_list() == [1234.5, 980.0]  # an extra column, decimal comma, typed
    assert customers["Employees"].dtype == pl.Int64
    assert str(customers["created_at"][0]) == "2025-12-31 00:00:00"
    assert data.tables["transactions"]["order_id"].to_list() == [1, 2]
    assert data.spec.stages[-1] == "Closed Won" and data.spec.lost == "Closed Lost"


def test_stale_after_days_is_read_from_funnel_toml(tmp_path: Path) -> None:
    (tmp_path / "funnel.toml").write_text("[funnel]\nstale_after_days = 120\n")
    assert load_config(tmp_path).spec.stale_after_days == 120
    (tmp_path / "funnel.toml").write_text("[funnel]\nstale_after_day = 120\n")
    with pytest.raises(ConfigError, match="Did you mean 'stale_after_days'"):
        load_config(tmp_path)
