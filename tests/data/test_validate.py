"""Every rule of the data contract, each with a bad input, plus the valid cases."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from handmade import tiny_tables

from funnelmodels.data.io import load_dataset
from funnelmodels.errors import DataValidationError

Writer = Callable[..., Path]


def _broken(**changes: pl.DataFrame) -> dict[str, pl.DataFrame]:
    tables = tiny_tables()
    tables.update(changes)
    return tables


def _problems(write_tables: Writer, tables: dict[str, pl.DataFrame]) -> list[str]:
    with pytest.raises(DataValidationError) as info:
        load_dataset(write_tables(tables))
    return [str(p) for p in info.value.problems]


def test_the_tiny_dataset_is_valid_and_parsed(write_tables: Writer) -> None:
    dataset = load_dataset(write_tables(tiny_tables()))
    customers = dataset.tables["customers"]
    assert customers.schema["customer_id"] == pl.Int64
    assert customers.schema["created_at"] == pl.Datetime("us")
    assert customers.schema["age"] == pl.Float64
    assert customers["age"].null_count() == 1
    assert "_row" not in customers.columns
    transactions = dataset.tables["transactions"]
    # Date-only and date-time values in one column both parse.
    assert transactions["ordered_at"].null_count() == 0
    assert transactions["amount"].sum() == pytest.approx(122.5)
    assert dataset.tables["surveys"].schema["csat"] == pl.Int64


def test_missing_table_needed_by_others(write_tables: Writer) -> None:
    tables = tiny_tables()
    del tables["customers"]
    [problem] = _problems(write_tables, tables)
    assert problem.startswith("customers: the customers table is missing")
    assert "stage_events, surveys" in problem


def test_no_tables_at_all(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="no tables found"):
        load_dataset(tmp_path)


def test_missing_required_column(write_tables: Writer) -> None:
    [problem] = _problems(write_tables, _broken(transactions=tiny_tables()["transactions"].drop("ordered_at")))
    assert problem.startswith("transactions.ordered_at: required column is missing")


def test_wrong_type_lists_rows(write_tables: Writer) -> None:
    customers = tiny_tables()["customers"].with_columns(pl.Series("income", ["52000", "lots", "40,000"]))
    [problem] = _problems(write_tables, _broken(customers=customers))
    assert problem.startswith("customers.income: wrong type: values are not numbers")
    assert "(2 rows, e.g. row=2, income='lots'; row=3, income='40,000')" in problem


def test_unparsable_date(write_tables: Writer) -> None:
    events = tiny_tables()["stage_events"].with_columns(
        pl.Series("entered_at", ["2025-01-02", "2025-01-09", "01/02/2025", "2025-01-06", "2025-01-20"])
    )
    [problem] = _problems(write_tables, _broken(stage_events=events))
    assert problem.startswith("stage_events.entered_at: wrong type: values are not dates")
    assert "row=3, entered_at='01/02/2025'" in problem


def test_negative_age(write_tables: Writer) -> None:
    customers = tiny_tables()["customers"].with_columns(pl.Series("age", [34, -3, None]))
    [problem] = _problems(write_tables, _broken(customers=customers))
    assert problem == "customers.age: must be between 0 and 120 years (1 row, e.g. row=2, customer_id=2, age=-3.0)"


def test_duplicate_ids(write_tables: Writer) -> None:
    transactions = tiny_tables()["transactions"].with_columns(pl.Series("order_id", [10, 11, 11, 13]))
    [problem] = _problems(write_tables, _broken(transactions=transactions))
    assert problem.startswith("transactions.order_id: duplicate id: each must appear once (2 rows")


def test_stage_not_in_the_funnel(write_tables: Writer) -> None:
    events = tiny_tables()["stage_events"].with_columns(
        pl.Series("stage", ["lead", "negotiation", "won", "lead", "lost"])
    )
    [problem] = _problems(write_tables, _broken(stage_events=events))
    assert problem.startswith("stage_events.stage: stage not in the funnel; expected one of lead, qualified")
    assert "stage='negotiation'" in problem


def test_stage_events_out_of_order(write_tables: Writer) -> None:
    events = tiny_tables()["stage_events"].with_columns(
        pl.Series("entered_at", ["2025-01-10", "2025-01-09", "2025-02-01", "2025-01-06", "2025-01-20"])
    )
    [problem] = _problems(write_tables, _broken(stage_events=events))
    assert problem.startswith("stage_events.entered_at: stage events out of order")
    assert "opportunity_id=100, stage='qualified'" in problem


def test_event_after_the_opportunity_closed(write_tables: Writer) -> None:
    events = tiny_tables()["stage_events"].with_columns(
        pl.Series("entered_at", ["2025-01-02", "2025-01-09", "2025-02-01", "2025-01-06", "2025-01-05"])
    )
    problems = _problems(write_tables, _broken(stage_events=events))
    assert any(p.startswith("stage_events.stage: events after the opportunity was closed") for p in problems)


def test_reentering_a_stage_is_allowed(write_tables: Writer) -> None:
    events = pl.DataFrame(
        {
            "opportunity_id": [100, 100, 100, 100, 100],
            "customer_id": [1, 1, 1, 1, 1],
            "stage": ["lead", "qualified", "lead", "qualified", "won"],
            "entered_at": ["2025-01-02", "2025-01-09", "2025-01-12", "2025-01-20", "2025-02-01"],
        }
    )
    dataset = load_dataset(write_tables(_broken(stage_events=events)))
    assert dataset.tables["stage_events"].height == 5


def test_events_for_unknown_customers(write_tables: Writer) -> None:
    surveys = tiny_tables()["surveys"].with_columns(pl.Series("customer_id", [1, 99]))
    [problem] = _problems(write_tables, _broken(surveys=surveys))
    assert problem.startswith("surveys.customer_id: refers to customers that are not in the customers table (1 row")
    assert "customer_id=99" in problem


def test_csat_and_nps_outside_their_scales(write_tables: Writer) -> None:
    surveys = tiny_tables()["surveys"].with_columns(pl.Series("csat", [0, 6]), pl.Series("nps", [11, 10]))
    problems = _problems(write_tables, _broken(surveys=surveys))
    assert problems[0].startswith("surveys.csat: must be a whole number from 1 to 5 (2 rows")
    assert problems[1].startswith("surveys.nps: must be a whole number from 0 to 10 (1 row")


def test_fractional_csat_is_a_wrong_type(write_tables: Writer) -> None:
    surveys = tiny_tables()["surveys"].with_columns(pl.Series("csat", ["4.5", "2"]))
    [problem] = _problems(write_tables, _broken(surveys=surveys))
    assert problem.startswith("surveys.csat: wrong type: values are not whole numbers (1 row")


def test_empty_table(write_tables: Writer) -> None:
    [problem] = _problems(write_tables, _broken(surveys=tiny_tables()["surveys"].head(0)))
    assert problem == "surveys: the table is empty (0 rows); remove the file or fill it"


def test_mapping_names_a_column_the_file_lacks(write_tables: Writer) -> None:
    tables = tiny_tables()
    tables["customers"] = tables["customers"].rename({"customer_id": "AccountId"})
    root = write_tables(tables)
    (root / "funnel.toml").write_text(
        '[tables.customers]\npath = "customers.csv"\n[tables.customers.columns]\ncustomer_id = "AccountID"\n'
    )
    with pytest.raises(DataValidationError) as info:
        load_dataset(root)
    # One message with the cause (the required column is then missing too, but that says nothing more).
    [mapping] = [str(p) for p in info.value.problems]
    assert mapping.startswith(
        "customers.customer_id: funnel.toml maps it to column 'AccountID', which customers.csv lacks "
        "(did you mean 'AccountId'?)"
    )


def test_mapping_renames_columns(write_tables: Writer) -> None:
    tables = tiny_tables()
    tables["customers"] = tables["customers"].rename({"customer_id": "AccountId", "created_at": "Created"})
    root = write_tables(tables)
    (root / "funnel.toml").write_text(
        '[tables.customers]\npath = "customers.csv"\n'
        '[tables.customers.columns]\ncustomer_id = "AccountId"\ncreated_at = "Created"\n'
        '[tables.transactions]\npath = "transactions.csv"\n'
    )
    dataset = load_dataset(root)
    # Tables funnel.toml does not mention are still found by their canonical names.
    assert set(dataset.tables) == {"customers", "transactions", "stage_events", "surveys"}
    assert dataset.tables["customers"]["customer_id"].to_list() == [1, 2, 3]


def test_every_problem_is_reported_at_once(write_tables: Writer) -> None:
    customers = tiny_tables()["customers"].with_columns(pl.Series("age", [34, -3, 200]))
    surveys = tiny_tables()["surveys"].with_columns(pl.Series("csat", [9, 2]))
    transactions = tiny_tables()["transactions"].drop("amount")
    problems = _problems(write_tables, _broken(customers=customers, surveys=surveys, transactions=transactions))
    tables = sorted(p.split(":")[0] for p in problems)
    # A table that cannot be used (a required column missing) is reported with the value problems
    # of the tables that could be read: one run shows everything to fix.
    assert tables == ["customers.age", "surveys.csat", "transactions.amount"]
    assert next(p for p in problems if p.startswith("transactions.amount")).startswith(
        "transactions.amount: required column is missing"
    )
    problems = _problems(write_tables, _broken(customers=customers, surveys=surveys))
    assert sorted(p.split(":")[0] for p in problems) == ["customers.age", "surveys.csat"]
    assert "(2 rows" in next(p for p in problems if p.startswith("customers.age"))


def test_examples_are_capped_at_five(write_tables: Writer) -> None:
    n = 8
    customers = pl.DataFrame({"customer_id": list(range(1, n + 1)), "created_at": ["2025-01-01"] * n, "age": [-1] * n})
    [problem] = _problems(write_tables, {"customers": customers})
    assert "(8 rows" in problem
    assert problem.count("row=") == 5


def test_text_ids_keep_leading_zeros(write_tables: Writer) -> None:
    transactions = pl.DataFrame(
        {
            "order_id": ["a1", "a2"],
            "customer_id": ["00001", "00002"],
            "ordered_at": ["2025-01-01", "2025-01-02"],
            "amount": ["1.5", "2"],
        }
    )
    dataset = load_dataset(write_tables({"transactions": transactions}))
    assert dataset.tables["transactions"]["customer_id"].to_list() == ["00001", "00002"]


def test_corrupt_parquet_is_a_validation_error(tmp_path: Path) -> None:
    (tmp_path / "transactions.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataValidationError, match=r"transactions: cannot read transactions.parquet as parquet"):
        load_dataset(tmp_path)


def test_synthetic_data_is_valid(synthetic_dir: Path) -> None:
    dataset = load_dataset(synthetic_dir)
    assert set(dataset.tables) == {"customers", "transactions", "stage_events", "surveys"}
    assert len(dataset.fingerprint()) == 64


def test_won_and_lost_together_is_refused(write_tables: Writer) -> None:
    events = tiny_tables()["stage_events"].with_columns(
        pl.Series("stage", ["lead", "qualified", "won", "lead", "lost"]),
        pl.Series("opportunity_id", [100, 100, 100, 101, 100]),
        pl.Series("customer_id", [1, 1, 1, 2, 1]),
        pl.Series("entered_at", ["2025-01-02", "2025-01-09", "2025-02-01", "2025-01-06", "2025-02-01"]),
    )
    [problem] = _problems(write_tables, _broken(stage_events=events))
    assert problem.startswith("stage_events.stage: events after the opportunity was closed")
    assert "(2 rows" in problem


def test_two_answers_at_one_moment_are_two_surveys_when_about_different_orders(write_tables: Writer) -> None:
    tables = tiny_tables()
    twice = pl.DataFrame(
        {"customer_id": [1, 1], "responded_at": ["2025-01-15", "2025-01-15"], "csat": [4, 2], "order_id": [10, 11]}
    )
    assert load_dataset(write_tables(tables | {"surveys": twice}, "a")).tables["surveys"].height == 2
    same = twice.with_columns(pl.Series("order_id", [10, 10]))
    [problem] = _problems(write_tables, tables | {"surveys": same})
    assert problem.startswith("surveys.customer_id: duplicate combination of customer_id, responded_at, order_id")
    elsewhere = twice.with_columns(pl.Series("order_id", [10, 12]))  # order 12 belongs to customer 2
    [problem] = _problems(write_tables, tables | {"surveys": elsewhere})
    assert problem.startswith("surveys.order_id: the order belongs to another customer")
