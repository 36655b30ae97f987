"""Tables built from exports as they come: several files, lookups, mapping rules, rows set aside.

Each fixture is a small export of a shape found in real data, with the right answer written beside it.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from funnelmodels.cli import main
from funnelmodels.data.io import load_dataset
from funnelmodels.errors import ConfigError, DataValidationError


def _files(root: Path, files: dict[str, str], toml: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    (root / "funnel.toml").write_text(toml, encoding="utf-8")
    return root / "funnel.toml"


ACCOUNTS = "account,created\nA,2025-01-01\nB,2025-01-03\nC,2025-02-01\n"


def test_leads_and_deals_files_make_one_stage_events_table(tmp_path: Path) -> None:
    """A CRM's leads file (first contact) and its closed-deals file (won or lost), stacked."""
    config = _files(
        tmp_path,
        {
            "accounts.csv": ACCOUNTS,
            "leads.csv": "lead_id,account,first_contact\nL1,A,2025-01-05\nL2,B,2025-01-06\nL3,C,2025-02-02\n",
            "deals.csv": "lead_id,account,status,closed,value\nL1,A,Won,2025-02-10,5000\nL2,B,Lost,2025-01-20,\n",
        },
        """
[funnel]
stages = ["lead", "won"]
[tables.customers]
path = "accounts.csv"
[tables.customers.columns]
customer_id = "account"
created_at = "created"
[tables.stage_events]
[[tables.stage_events.sources]]
path = "leads.csv"
[tables.stage_events.sources.columns]
opportunity_id = "lead_id"
customer_id = "account"
entered_at = "first_contact"
[tables.stage_events.sources.derive]
stage = { value = "lead" }
[[tables.stage_events.sources]]
path = "deals.csv"
[tables.stage_events.sources.columns]
opportunity_id = "lead_id"
customer_id = "account"
entered_at = "closed"
amount = "value"
[tables.stage_events.sources.derive]
stage = { from = "status", map = { Won = "won", Lost = "lost" } }
""",
    )
    events = load_dataset(config).tables["stage_events"]
    # Three leads, one won, one lost; L3 still open. Sorted by time.
    assert events.select("opportunity_id", "stage", "amount").rows() == [
        ("L1", "lead", None),
        ("L2", "lead", None),
        ("L2", "lost", None),
        ("L3", "lead", None),
        ("L1", "won", 5000.0),
    ]


def test_orders_order_lines_and_payments_make_one_transactions_table(tmp_path: Path) -> None:
    """A shop export: the amount is the sum of an order's payments, the category its first line's."""
    config = _files(
        tmp_path,
        {
            "customers.csv": "customer_id,created_at\n1,2025-01-01\n2,2025-01-02\n",
            "orders.csv": "order_id,customer_id,purchased\nO1,1,2025-01-10 10:00:00\nO2,2,2025-01-11 12:30:00\n"
            "O3,1,2025-02-01 09:00:00\n",
            "order_lines.csv": "order_id,line,category\nO1,1,toys\nO1,2,books\nO2,1,garden\nO3,1,books\n",
            "payments.csv": "order_id,kind,paid\nO1,card,30.50\nO1,voucher,9.50\nO2,card,12\nO3,card,7.25\n",
        },
        """
[tables.transactions]
path = "orders.csv"
[tables.transactions.columns]
ordered_at = "purchased"
[[tables.transactions.lookups]]
path = "payments.csv"
on = { order_id = "order_id" }
columns = { amount = { sum = "paid" } }
[[tables.transactions.lookups]]
path = "order_lines.csv"
on = { order_id = "order_id" }
columns = { category = "category", items = { count = "line" } }
""",
    )
    data = load_dataset(config)
    orders = data.tables["transactions"]
    # O1: 30.50 + 9.50 = 40; O2: 12; O3: 7.25. O1's first line is toys; it has two lines.
    assert orders.select("order_id", "amount", "category", "items").rows() == [
        ("O1", 40.0, "toys", 2),
        ("O2", 12.0, "garden", 1),
        ("O3", 7.25, "books", 1),
    ]
    assert any("amount looked up in payments.csv by order_id: 3 of 3 rows matched" in n for n in data.notes)


def test_a_shop_export_with_one_row_per_customer_and_order(tmp_path: Path) -> None:
    """The person is a second column: customer_id is per order, customer_unique_id the person."""
    config = _files(
        tmp_path,
        {
            "shop_customers.csv": "customer_id,customer_unique_id,city\nc1,P1,Lyon\nc2,P2,Nice\nc3,P1,Lyon\n",
            "shop_orders.csv": "order_id,customer_id,purchased\nO1,c1,2025-03-01\nO2,c2,2025-03-02\nO3,c3,2025-02-10\n",
            "shop_payments.csv": "order_id,paid\nO1,10\nO2,20\nO3,30\n",
        },
        """
[tables.customers]
path = "shop_customers.csv"
one_row_per = "customer_id"           # the person: merge their rows, the earliest created_at
[tables.customers.columns]
customer_id = "customer_unique_id"    # the file's own customer_id is kept as customer_id_in_file
[[tables.customers.lookups]]          # created_at: the first order of each per-order id
path = "shop_orders.csv"
on = { customer_id_in_file = "customer_id" }
columns = { created_at = { min = "purchased" } }

[tables.transactions]
path = "shop_orders.csv"
[tables.transactions.columns]
ordered_at = "purchased"
[[tables.transactions.lookups]]       # the person behind each order's per-order customer id
path = "shop_customers.csv"
on = { customer_id = "customer_id" }
columns = { customer_id = "customer_unique_id" }
[[tables.transactions.lookups]]
path = "shop_payments.csv"
on = { order_id = "order_id" }
columns = { amount = { sum = "paid" } }
""",
    )
    data = load_dataset(config)
    customers = data.tables["customers"].sort("customer_id")
    # P1 ordered on Feb 10 (as c3) and Mar 1 (as c1): one person, a customer since Feb 10.
    assert customers.select("customer_id", "created_at", "city").rows() == [
        ("P1", datetime(2025, 2, 10), "Lyon"),
        ("P2", datetime(2025, 3, 2), "Nice"),
    ]
    orders = data.tables["transactions"].sort("order_id")
    assert orders.select("order_id", "customer_id", "amount").rows() == [
        ("O1", "P1", 10.0),
        ("O2", "P2", 20.0),
        ("O3", "P1", 30.0),
    ]
    notes = " ".join(data.notes)
    assert "the file's own 'customer_id' is kept as 'customer_id_in_file'" in notes
    assert "3 rows merged into 2, one per customer_id" in notes


def test_mapping_messages_quote_the_files_headers_and_suggest(tmp_path: Path) -> None:
    config = _files(
        tmp_path,
        {"customers.csv": "Customer ID,Created At\n1,2025-01-01\n"},
        '[tables.customers]\npath = "customers.csv"\n[tables.customers.columns]\ncustomer_id = "Customer Id"\n'
        'created_at = "Created At"\n',
    )
    with pytest.raises(DataValidationError) as info:
        load_dataset(config)
    message = str(info.value)
    assert str(config) in message.splitlines()[0]  # the config file is named, not "."
    assert "maps it to column 'Customer Id', which customers.csv lacks (did you mean 'Customer ID'?)" in message
    assert "(its columns: Customer ID, Created At)" in message


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('decimal_comma = "false"', "decimal_comma must be true or false (without quotes); received 'false'"),
        ('separator = ";;"', "separator must be one character"),
        ('encoding = "latin-9000"', "encoding must be a name such as"),
        ('keep = { deal_stage = "Won" }', "keep takes each column's allowed values"),
        ('drop_empty = "close_date"', "drop_empty is a list of columns"),
        ('datetime_format = "dd/mm/yyyy"', "datetime_format must be a strftime pattern"),
    ],
)
def test_reading_options_are_typed(tmp_path: Path, entry: str, message: str) -> None:
    config = _files(
        tmp_path,
        {"customers.csv": "customer_id,created_at\n1,2025-01-01\n"},
        f'[tables.customers]\npath = "customers.csv"\n{entry}\n',
    )
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_dataset(config)


def test_lookup_mistakes_are_named(tmp_path: Path) -> None:
    files = {
        "customers.csv": "customer_id,created_at\n1,2025-01-01\n",
        "orders.csv": "order_id,customer_id,ordered_at\nO1,1,2025-02-01\n",
        "pay.csv": "order_id,paid\nO1,3\n",
    }
    config = _files(
        tmp_path,
        files,
        '[tables.transactions]\npath = "orders.csv"\n[[tables.transactions.lookups]]\n'
        'path = "pay.csv"\non = { order_id = "order_id" }\ncolumns = { amount = { summ = "paid" } }\n',
    )
    with pytest.raises(ConfigError, match=r"'summ' is not an aggregation of a column\. Did you mean 'sum'\?"):
        load_dataset(config)
    (tmp_path / "funnel.toml").write_text(
        '[tables.transactions]\npath = "orders.csv"\n[[tables.transactions.lookups]]\n'
        'path = "pay.csv"\non = { order_id = "order_id" }\n'
        'columns = { amount = { sum = "payd" } }\n'
    )
    with pytest.raises(
        DataValidationError, match=r"takes it from column 'payd', which pay.csv lacks \(did you mean 'paid'\?\)"
    ):
        load_dataset(tmp_path)


def test_drop_invalid_sets_bad_rows_aside_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _files(
        tmp_path / "data",
        {
            # Row 2: age out of range; row 3: a date that is not one; row 4 repeats customer 1.
            "customers.csv": "customer_id,created_at,age\n1,2025-01-01,40\n2,2025-01-02,-3\n3,2025-13-45,30\n"
            "1,2025-01-05,41\n4,2025-01-06,50\n",
            # Order 11 belongs to customer 3, set aside above; order 12 to nobody known.
            "transactions.csv": "order_id,customer_id,ordered_at,amount\n10,1,2025-02-01,5\n11,3,2025-02-02,6\n"
            "12,99,2025-02-03,7\n13,4,2025-02-04,8\n",
        },
        "",
    )
    with pytest.raises(DataValidationError) as info:
        load_dataset(config.parent)
    assert len(info.value.problems) == 4  # without the option: every problem, nothing loaded

    data = load_dataset(config.parent, drop_invalid=True)

    assert sorted(data.tables["customers"]["customer_id"].to_list()) == [1, 4]
    assert data.tables["transactions"]["order_id"].to_list() == [10, 13]
    customers = data.rejected["customers"].sort("row")
    assert customers.select("row", "reason").rows() == [
        (2, "age: must be between 0 and 120 years"),
        (3, "created_at: 2025-13-45 is not a date"),
        (4, "duplicate id: repeats row 1"),
    ]
    orders = data.rejected["transactions"].sort("row")
    assert orders.select("row", "reason").rows() == [
        (2, "customer_id 3 is not in the customers table"),
        (3, "customer_id 99 is not in the customers table"),
    ]
    # The command line writes them, says how many and why, and goes on (exit 0).
    code = main(["--quiet", "validate", str(config.parent), "--drop-invalid", "--rejected-dir", str(tmp_path / "rej")])
    out = capsys.readouterr().out
    assert code == 0
    assert "set aside: customers: 3 rows set aside" in out and "set aside: transactions: 2 rows set aside" in out
    written = pl.read_csv(tmp_path / "rej" / "customers.csv")
    assert written.columns[:2] == ["row", "reason"] and written.height == 3
