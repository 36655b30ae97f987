"""The bad-input catalogue: one case per row, each a real command-line run.

Every case gives a non-zero exit and one plain message naming the table, the column and
the rule (never a traceback), or a documented fallback that is tested to work. README's
"Troubleshooting" table lists the same cases by their ids (a test checks it does).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from handmade import tiny_tables
from places import ROOT

from funnelmodels.cli import main
from funnelmodels.data.io import load_dataset
from funnelmodels.data.synthetic import generate_dataset, write_dataset
from funnelmodels.errors import FunnelModelsError
from funnelmodels.evaluation import MAX_STATSMODELS_FEATURES
from funnelmodels.models.conversion import StageConversionModel
from funnelmodels.models.train import train_conversion, train_satisfaction, transition_frame

README = ROOT / "README.md"
Tables = dict[str, pl.DataFrame]


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Path], list[str]]  # writes the input under the folder, returns the CLI arguments
    message: str  # regular expression the error (stderr) must match
    code: int = 1


def _write(root: Path, tables: Tables, *, separators: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.write_csv(root / f"{name}.csv", separator=(separators or {}).get(name, ","))
    return root


def _validate(change: Callable[[Tables], None]) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        tables = tiny_tables()
        change(tables)
        return ["validate", str(_write(tmp / "data", tables))]

    return build


def _set(table: str, column: str, values: list[object]) -> Callable[[Tables], None]:
    def change(tables: Tables) -> None:
        tables[table] = tables[table].with_columns(pl.Series(column, values))

    return change


def _activities(opportunity: int, randomised: str) -> Callable[[Tables], None]:
    def change(tables: Tables) -> None:
        tables["activities"] = pl.DataFrame(
            {
                "activity_id": [1, 2],
                "opportunity_id": [100, opportunity],
                "at": ["2025-01-05", "2025-01-12"],
                "type": ["Phone call", "Site visit"],
                "randomised": ["no", randomised],
            }
        )

    return change


def _drop(table: str, column: str) -> Callable[[Tables], None]:
    def change(tables: Tables) -> None:
        tables[table] = tables[table].drop(column)

    return change


def _events(stages: list[str], customers: list[int] | None = None) -> Callable[[Tables], None]:
    def change(tables: Tables) -> None:
        n = len(stages)
        tables["stage_events"] = pl.DataFrame(
            {
                "opportunity_id": [100] * n,
                "customer_id": customers or [1] * n,
                "stage": stages,
                "entered_at": [f"2025-01-{d:02d}" for d in range(2, 2 + 3 * n, 3)],
            }
        )

    return change


def _wrong_delimiter(tmp: Path) -> list[str]:
    return ["validate", str(_write(tmp / "data", tiny_tables(), separators={"customers": ";"}))]


def _latin1(tmp: Path) -> list[str]:
    root = _write(tmp / "data", tiny_tables())
    text = (root / "customers.csv").read_text(encoding="utf-8").replace("north", "Nordfjörd")
    (root / "customers.csv").write_bytes(text.encode("latin-1"))
    return ["validate", str(root)]


def _truncated_parquet(tmp: Path) -> list[str]:
    root = _write(tmp / "data", tiny_tables())
    (root / "transactions.csv").unlink()
    tiny_tables()["transactions"].write_parquet(root / "transactions.parquet")
    data = (root / "transactions.parquet").read_bytes()
    (root / "transactions.parquet").write_bytes(data[: len(data) // 2])
    return ["validate", str(root)]


def _two_sources(tmp: Path) -> list[str]:
    root = _write(tmp / "data", tiny_tables())
    tiny_tables()["customers"].write_parquet(root / "customers.parquet")  # an older copy left beside the CSV
    return ["validate", str(root)]


def _not_a_file(kind: str) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        root = _write(tmp / "data", tiny_tables())
        (root / "customers.csv").unlink()
        if kind == "folder":
            (root / "people").mkdir()
        else:
            os.mkfifo(root / "people")
        (root / "funnel.toml").write_text('[tables.customers]\npath = "people"\nformat = "csv"\n', encoding="utf-8")
        return ["validate", str(root)]

    return build


def _parquet_amounts(value: float) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        root = _write(tmp / "data", tiny_tables())
        (root / "transactions.csv").unlink()
        orders = tiny_tables()["transactions"].with_columns(pl.Series("amount", [120.0, value, 80.5, 42.0]))
        orders.write_parquet(root / "transactions.parquet")
        return ["validate", str(root)]

    return build


def _zero_rows(change: Tables) -> None:
    change["surveys"] = change["surveys"].head(0)


def _toml(text: str) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        root = _write(tmp / "data", tiny_tables())
        (root / "funnel.toml").write_text(text, encoding="utf-8")
        return ["funnel", str(root)]

    return build


def _foreign_model(tmp: Path) -> list[str]:
    model = tmp / "model" / "conversion" / "lightgbm"
    model.mkdir(parents=True)
    (model / "model.json").write_text('{"kind": "satisfaction", "format_version": 1}', encoding="utf-8")
    root = _write(tmp / "data", tiny_tables())
    return ["score", str(root), "--model", str(tmp / "model"), "--as-of", "2025-02-01", "--out", str(tmp / "s.csv")]


def _damaged_model(tmp: Path) -> list[str]:
    args = _foreign_model(tmp)
    model = tmp / "model" / "conversion" / "lightgbm" / "model.json"
    model.write_text('{"kind": "stage_conversion", "engine": "lightgbm", "metadata": {"format_version": 2}}')
    return args


def _as_of_before_data(tmp: Path) -> list[str]:
    args = _foreign_model(tmp)  # the moment is checked before the model is read
    return [*args[:4], "--as-of", "2001-01-01", *args[6:]]


def _report(*params: str) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        root = _write(tmp / "data", tiny_tables())
        return ["report", "sales_performance", "-p", "data_dir", str(root), *params, "--reports-dir", str(tmp / "r")]

    return build


CASES = [
    # --- the foundation's validation rules
    Case("missing-column", _validate(_drop("customers", "created_at")), r"customers\.created_at: required column"),
    Case("wrong-type", _validate(_set("customers", "age", ["34", "thirty", None])), r"customers\.age: wrong type"),
    Case(
        "duplicate-id", _validate(_set("customers", "customer_id", [1, 1, 3])), r"customers\.customer_id: .*duplicate"
    ),
    Case("negative-age", _validate(_set("customers", "age", [34, -2, None])), r"customers\.age: .*"),
    Case(
        "activity-unknown-opportunity",
        _validate(_activities(777, "no")),
        r"activities\.opportunity_id: refers to opportunities that are not in the stage_events table",
    ),
    Case(
        "activity-randomised-word",
        _validate(_activities(101, "perhaps")),
        r"activities\.randomised: wrong type: values are not true or false",
    ),
    Case("csat-off-scale", _validate(_set("surveys", "csat", [4, 9])), r"surveys\.csat: .*1.*5"),
    Case("nps-off-scale", _validate(_set("surveys", "nps", [9, 11])), r"surveys\.nps: .*0.*10"),
    Case("unknown-stage", _validate(_events(["lead", "negotiation"])), r"stage_events\.stage: .*negotiation"),
    Case(
        "stages-out-of-order",
        _validate(_events(["proposal", "lead"])),
        r"stage_events\.entered_at: stage events out of order",
    ),
    Case("won-and-lost", _validate(_events(["lead", "won", "lost"])), r"stage_events\.stage: .*won.*lost"),
    Case(
        "unknown-customer", _validate(_set("transactions", "customer_id", [1, 1, 2, 99])), r"transactions\.customer_id"
    ),
    Case(
        "unparsable-date",
        _validate(_set("surveys", "responded_at", ["2025-01-15", "tomorrow"])),
        r"surveys\.responded_at: wrong type",
    ),
    # --- real-export mishaps
    Case("wrong-delimiter", _wrong_delimiter, r"customers: .*looks ';'-separated.*separator = \";\""),
    Case("latin-1-file", _latin1, r"customers: .*not UTF-8.*encoding = \"latin-1\""),
    Case("truncated-parquet", _truncated_parquet, r"transactions: cannot read transactions\.parquet"),
    Case(
        "mixed-date-formats",
        _validate(_set("customers", "created_at", ["2025-01-01", "05/01/2025", "2025-02-01"])),
        r"customers\.created_at: wrong type.*datetime_format.*row=2",
    ),
    Case(
        "thousands-separators",
        _validate(_set("transactions", "amount", ["1,120.00", "-120.00", "80.50", "42.00"])),
        r"transactions\.amount: wrong type.*thousands separators.*row=1",
    ),
    Case("zero-rows", _validate(_zero_rows), r"surveys: the table is empty \(0 rows\)"),
    Case(
        "two-sources",
        _two_sources,
        r"two sources for the customers table in .*: customers\.parquet and customers\.csv\. Remove or rename one",
    ),
    Case("folder-as-file", _not_a_file("folder"), r"customers: cannot read people as csv: .*people is a folder"),
    Case("fifo-as-file", _not_a_file("fifo"), r"customers: cannot read people as csv: .*people is a named pipe"),
    Case(
        "nan-amount",
        _validate(_set("transactions", "amount", ["120", "NaN", "80.5", "42"])),
        r"transactions\.amount: wrong type: values are not numbers \(NaN and infinity.*amount='NaN'",
    ),
    Case(
        "infinite-amount",
        _parquet_amounts(float("inf")),
        r"transactions\.amount: wrong type: values are not numbers .*amount=inf",
    ),
    Case(
        "absurd-amount",
        _parquet_amounts(1e308),
        r"transactions\.amount: implausibly large: more than 1,000,000,000,000 .*amount=1e\+308",
    ),
    Case(
        "toml-typo", _toml('[tables.customers]\npath = "customers.csv"\nseperator = ";"\n'), r"Did you mean 'separator'"
    ),
    Case("one-stage-funnel", _toml('[funnel]\nstages = ["won"]\n'), r"\[funnel\] stages needs at least two stages"),
    Case(
        "bad-currency",
        _toml("[report]\ncurrency = 978\n"),
        r'\[report\] currency must be a symbol or code of 1 to 5 characters, e\.g\. currency = "€" or "CHF "; '
        r"received 978",
    ),
    Case(
        "misspelt-column",
        _toml('[tables.customers]\npath = "customers.csv"\n[tables.customers.columns]\ncreated_at = "Created_At"\n'),
        r"customers\.created_at: funnel\.toml maps it to column 'Created_At', which customers\.csv lacks "
        r"\(did you mean 'created_at'\?\) \(its columns: customer_id, created_at",
    ),
    # --- models and reports
    Case("foreign-model", _foreign_model, r"satisfaction.*conversion|conversion.*satisfaction"),
    Case("damaged-model", _damaged_model, r"model folder damaged: .*lightgbm \(KeyError: 'state'\); retrain it"),
    Case("as-of-before-data", _as_of_before_data, r"as_of 2001-01-01.* before any stage event"),
    Case("period-without-data", _report("-p", "period", "2031-01"), r"period '2031-01' has no data"),
    Case("path-in-report-name", lambda tmp: ["report", "../escape", "--reports-dir", str(tmp / "r")], r"not allowed"),
    Case(
        "path-in-period",
        _report("-p", "period", "../../escape"),
        r"period '\.\./\.\./escape' is not allowed",
    ),
    Case(
        "unknown-period-length",
        _report("-p", "period_length", "fortnight"),
        r"parameter period_length must be one of day, week, month, quarter, year; received 'fortnight'",
    ),
    Case(
        "period-of-another-length",
        _report("-p", "period", "2026-W10"),
        r"period '2026-W10' names a week, but period_length is month; pass -p period_length week",
    ),
    Case(
        "parameter-out-of-range",
        lambda tmp: ["report", "stage_conversion", *_report("-p", "random_folds", "1")(tmp)[2:]],
        r"random_folds is the number of random folds .*from 0 to 20; received 1",
    ),
    Case(
        "misspelt-parameter-in-all",
        lambda tmp: ["report", "--all", "-p", "perod", "2026-06", "--reports-dir", str(tmp / "r")],
        r"no report has a parameter \['perod'\] \(did you mean 'period'\?\)",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_gives_a_clear_error_and_a_nonzero_exit(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = case.build(tmp_path)

    code = main(["--quiet", *args])

    err = capsys.readouterr().err
    assert code == case.code, err
    assert re.search(case.message, err, re.DOTALL), err
    assert "Traceback" not in err
    assert not (tmp_path / "escape").exists() and not (tmp_path.parent / "escape").exists()


# Cases about a command's options rather than the data: the Python API has no such argument.
OPTION_CASES = {
    "foreign-model",
    "damaged-model",
    "as-of-before-data",
    "period-without-data",
    "path-in-report-name",
    "path-in-period",
    "unknown-period-length",
    "period-of-another-length",
    "parameter-out-of-range",
    "misspelt-parameter-in-all",
}


@pytest.mark.parametrize("case", [c for c in CASES if c.id not in OPTION_CASES], ids=lambda c: c.id)
def test_the_python_api_refuses_the_same_data_with_the_same_message(case: Case, tmp_path: Path) -> None:
    args = case.build(tmp_path)
    assert args[0] in ("validate", "funnel")
    with pytest.raises(FunnelModelsError) as refused:
        load_dataset(args[1])
    assert re.search(case.message, str(refused.value), re.DOTALL), str(refused.value)


def test_the_readme_lists_every_case() -> None:
    text = README.read_text(encoding="utf-8")
    missing = [case.id for case in CASES if f"`{case.id}`" not in text]
    assert missing == []


# --- documented fallbacks: odd but valid input that works ---------------------------------------


def test_ids_written_as_decimals_match_whole_numbers(tmp_path: Path) -> None:
    # An export that passed ids through a float column writes 1.0 for customer 1: the same id.
    tables = tiny_tables()
    tables["transactions"] = tables["transactions"].with_columns(pl.col("customer_id").cast(pl.Float64))
    root = _write(tmp_path / "data", tables)
    assert "1.0" in (root / "transactions.csv").read_text()
    data = load_dataset(root)
    assert sorted(data.tables["transactions"]["customer_id"]) == sorted(tiny_tables()["transactions"]["customer_id"])
    assert data.tables["transactions"]["customer_id"].dtype == data.tables["customers"]["customer_id"].dtype == pl.Int64
    # The same from Parquet, where the column is a float column.
    (root / "transactions.csv").unlink()
    tables["transactions"].write_parquet(root / "transactions.parquet")
    assert load_dataset(root).tables["transactions"]["customer_id"].dtype == pl.Int64


def test_a_folder_of_parquet_part_files_is_read_as_one_table(tmp_path: Path) -> None:
    root = _write(tmp_path / "data", tiny_tables())
    (root / "transactions.csv").unlink()
    parts = root / "transactions.parquet"
    parts.mkdir()
    orders = tiny_tables()["transactions"]
    orders.head(2).write_parquet(parts / "part-0.parquet")
    orders.tail(orders.height - 2).write_parquet(parts / "part-1.parquet")
    data = load_dataset(root)
    assert data.tables["transactions"].height == orders.height == 4
    assert data.fingerprint() != load_dataset(_write(tmp_path / "other", tiny_tables())).fingerprint()


def test_a_feature_with_only_nulls_is_left_out_with_a_note(synthetic_dir: Path) -> None:

    frame = transition_frame(load_dataset(synthetic_dir)).with_columns(pl.lit(None, dtype=pl.Float64).alias("income"))

    model = StageConversionModel.fit(frame, engine="logit", seed=0)

    assert "income" not in model.encoder.names and "age" in model.encoder.names
    assert "feature 'income' has no values in the training rows; it is not used." in model.metadata["notes"]
    assert np.isfinite(model.predict_proba(frame)).all()


def test_a_single_step_funnel_works(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 7 contacts in January with their outcome the same day: 3 won, 4 lost → 3/7. An 8th,
    # in June, is still open at the data's end (censored: its 90-day horizon is not over).
    outcomes = ["won", "lost", "won", "lost", "lost", "won", "lost"]
    events = pl.DataFrame(
        {
            "opportunity_id": [i for i in range(7) for _ in range(2)] + [7],
            "customer_id": [1 + i % 3 for i in range(7) for _ in range(2)] + [1],
            "stage": [s for outcome in outcomes for s in ("contact", outcome)] + ["contact"],
            "entered_at": [f"2025-01-{1 + i:02d} {h}:00:00" for i in range(7) for h in (9, 17)] + ["2025-06-01"],
        }
    )
    tables = tiny_tables()
    tables["stage_events"] = events
    root = _write(tmp_path / "data", tables)
    (root / "funnel.toml").write_text('[funnel]\nstages = ["contact", "won"]\n', encoding="utf-8")

    assert main(["--quiet", "funnel", str(root), "--json"]) == 0

    [segment] = json.loads(capsys.readouterr().out)["segments"]
    [row] = segment["stages"]
    assert (row["stage"], row["entered"], row["observed"], row["converted"]) == ("contact", 8, 7, 3)
    assert row["rate"] == pytest.approx(3 / 7)


def test_a_column_named_like_a_computed_one_is_renamed_not_used(synthetic_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(synthetic_dir, root)
    customers = pl.read_parquet(root / "customers.parquet")
    # A label-like column (every customer "converted") and one named like a computed feature.
    customers.with_columns(converted=pl.lit(True), frequency=pl.lit(999)).write_parquet(root / "customers.parquet")

    data = load_dataset(root)

    assert {"converted_in_file", "frequency_in_file"} <= set(data.tables["customers"].columns)
    assert any(note.startswith("customers.converted: funnelmodels computes a column") for note in data.notes)
    frame = transition_frame(data)
    original = transition_frame(load_dataset(synthetic_dir))
    assert frame["converted"].to_list() == original["converted"].to_list()  # the label, not the column
    assert frame["frequency"].to_list() == original["frequency"].to_list()  # the computed count


def test_a_date_far_beyond_the_rest_is_flagged_and_the_end_can_be_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 30 opportunities closed in 2025; the last one's close typed as 2062 instead of 2026.
    events = pl.DataFrame(
        {
            "opportunity_id": [i for i in range(30) for _ in range(2)],
            "customer_id": [1 + i % 3 for i in range(30) for _ in range(2)],
            "stage": [s for i in range(30) for s in ("lead", "won" if i % 3 == 0 else "lost")],
            "entered_at": [f"2025-{1 + i % 12:02d}-{d:02d}" for i in range(30) for d in (1, 20)],
        }
    ).with_columns(
        pl.when(pl.int_range(pl.len()) == 59).then(pl.lit("2062-03-01")).otherwise("entered_at").alias("entered_at")
    )
    tables = tiny_tables() | {"stage_events": events}
    root = _write(tmp_path / "data", tables)

    assert main(["--quiet", "validate", str(root)]) == 0
    out = capsys.readouterr().out
    assert (
        "stage_events.entered_at: 1 row dated far after the rest (2062-03-01; 99% of the rows are on or before" in out
    )
    assert "set data_end under [funnel]" in out

    # --end (or data_end in funnel.toml) leaves the later rows out, and says so.
    assert main(["--quiet", "validate", str(root), "--end", "2025-12-31"]) == 0
    out = capsys.readouterr().out
    assert "stage_events: 1 rows dated 2026-01-01 00:00 or later left out (the data's end)." in out
    assert "dated far after" not in out
    (root / "funnel.toml").write_text("[funnel]\ndata_end = 2025-12-31\n")
    data = load_dataset(root)
    assert data.tables["stage_events"]["entered_at"].max() < datetime(2026, 1, 1)
    assert data.tables["stage_events"].height == 59


def test_times_with_an_offset_and_zoned_tables_land_in_one_zone(tmp_path: Path) -> None:
    tables = tiny_tables()
    root = _write(tmp_path / "data", tables)
    # The orders export writes UTC with an offset; the customers file is naive, in Berlin time.
    orders = tables["transactions"].with_columns(
        pl.col("ordered_at").str.to_datetime().dt.strftime("%Y-%m-%dT%H:%M:%S+00:00").alias("ordered_at")
    )
    orders.write_csv(root / "transactions.csv")
    (root / "funnel.toml").write_text('[dataset]\ntimezone = "Europe/Berlin"\n')
    data = load_dataset(root)
    naive = load_dataset(_write(tmp_path / "plain", tiny_tables())).tables["transactions"]["ordered_at"]
    # Berlin is UTC+1 in winter and UTC+2 in summer: every order moves by that much, none is lost.
    shift = (data.tables["transactions"]["ordered_at"] - naive).dt.total_hours().to_list()
    assert set(shift) <= {1, 2} and len(shift) == naive.len()
    # A zoned Parquet column is converted the same way.
    (root / "transactions.csv").unlink()
    zoned = tiny_tables()["transactions"].with_columns(
        pl.col("ordered_at").str.to_datetime().dt.replace_time_zone("UTC")
    )
    zoned.write_parquet(root / "transactions.parquet")
    assert (load_dataset(root).tables["transactions"]["ordered_at"] - naive).dt.total_hours().to_list() == shift
    (root / "funnel.toml").write_text('[dataset]\ntimezone = "Europe/Berlinn"\n')
    with pytest.raises(FunnelModelsError, match=r"timezone must be a zone name .*did you mean 'Europe/Berlin'"):
        load_dataset(root)


def test_a_wide_export_gives_readable_statsmodels_fits(tmp_path: Path) -> None:
    # 300 extra customer fields (a CRM's custom fields), all noise.
    data = generate_dataset(1_500, seed=11)
    customers = data.customers
    rng = np.random.default_rng(0)
    noise = {f"field_{i:03d}": rng.normal(size=customers.height) for i in range(300)}
    customers = customers.with_columns(**{k: pl.Series(v) for k, v in noise.items()})
    root = tmp_path / "wide"
    write_dataset(replace(data, customers=customers), root)
    wide = load_dataset(root)

    conversion = train_conversion(wide, engines=("logit",), seed=0)
    satisfaction = train_satisfaction(wide, engines=("ordinal",), seed=0)

    for model, where in ((conversion.models["logit"], "logit"), (satisfaction.models["ordinal"], "ordinal model")):
        assert len(model.encoder.names) <= MAX_STATSMODELS_FEATURES
        note = next(n for n in model.metadata["notes"] if n.startswith(f"{where}: "))
        assert "features are more than a readable model can take" in note and "LightGBM uses all" in note
    # The funnel's own context stays in the logit whatever the width.
    assert {"stage", "days_in_stage_so_far"} <= set(conversion.models["logit"].encoder.names)


def test_a_funnel_toml_reads_only_its_own_folder_unless_allowed(tmp_path: Path) -> None:
    secret = tmp_path / "elsewhere" / "customers.csv"
    secret.parent.mkdir()
    tiny_tables()["customers"].write_csv(secret)
    root = _write(tmp_path / "export", {k: v for k, v in tiny_tables().items() if k != "customers"})
    (root / "funnel.toml").write_text('[tables.customers]\npath = "../elsewhere/customers.csv"\n')
    with pytest.raises(
        FunnelModelsError, match=r"reads .*elsewhere/customers\.csv, outside the folder of funnel\.toml"
    ):
        load_dataset(root)
    (root / "funnel.toml").write_text(
        '[dataset]\nallow_outside = true\n[tables.customers]\npath = "../elsewhere/customers.csv"\n'
    )
    assert load_dataset(root).tables["customers"].height == 3


def test_messages_quote_a_clipped_sample_of_the_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tables = tiny_tables()
    tables["customers"] = tables["customers"].with_columns(pl.Series("age", ["34", "x" * 5000, None]))
    assert main(["--quiet", "validate", str(_write(tmp_path / "data", tables))]) == 1
    err = capsys.readouterr().err
    assert "customers.age: wrong type" in err and "x" * 100 not in err and "…" in err
