"""Property tests (hypothesis): the loader only ever fails with DataValidationError, and the
KPI, funnel and feature invariants hold on random valid data."""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from funnelmodels.config import DatasetConfig, FunnelSpec
from funnelmodels.data.io import Dataset, load_dataset
from funnelmodels.errors import DataValidationError
from funnelmodels.features import build_features
from funnelmodels.funnel import build_transitions
from funnelmodels.kpis import sales_kpi_table
from funnelmodels.rates import conversion_table

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
START = datetime(2025, 1, 1)

# --- the loader on malformed tables ----------------------------------------------------------------

CELLS = st.one_of(
    st.sampled_from(
        [
            "",
            "1",
            "2",
            "-3",
            "007",
            "1.5",
            "1,5",
            "1e309",
            "nan",
            "NULL",
            "2025-01-01",
            "2025-13-45",
            "01/02/2025",
            "2025-01-01T10:00:00",
            "yes",
            "lead",
            "won",
            "lost",
            "qualified",
            '"',
            "'",
            ";",
        ]
    ),
    st.text(max_size=12),
)
CUSTOMER_COLUMNS = ["customer_id", "created_at", "age", "gender", "income", "region", "product_knowledge", "extra"]
EVENT_COLUMNS = ["opportunity_id", "customer_id", "stage", "entered_at", "amount", "source"]


@st.composite
def _table(draw: st.DrawFn, columns: list[str]) -> pl.DataFrame:
    chosen = draw(st.lists(st.sampled_from(columns), min_size=1, max_size=len(columns), unique=True))
    rows = draw(st.integers(min_value=0, max_value=6))
    return pl.DataFrame(
        {c: draw(st.lists(CELLS, min_size=rows, max_size=rows)) for c in chosen},
        schema=dict.fromkeys(chosen, pl.String),
    )


@SETTINGS
@given(customers=_table(CUSTOMER_COLUMNS), events=st.one_of(st.none(), _table(EVENT_COLUMNS)))
def test_the_loader_fails_only_with_a_validation_error(customers: pl.DataFrame, events: pl.DataFrame | None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        customers.write_csv(Path(folder) / "customers.csv")
        if events is not None:
            events.write_csv(Path(folder) / "stage_events.csv")
        try:
            dataset = load_dataset(folder)
        except DataValidationError as exc:
            assert exc.problems and all(p.table for p in exc.problems)
        else:
            assert dataset.tables["customers"].height == customers.height


# --- KPI invariants on random valid transactions -------------------------------------------------------

TRANSACTIONS = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=12),  # customer
        st.integers(min_value=0, max_value=400 * 24),  # hours after START
        st.one_of(st.floats(min_value=1, max_value=500), st.floats(min_value=-200, max_value=-1)),
    ),
    min_size=1,
    max_size=60,
)


def _transactions(rows: list[tuple[int, int, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "order_id": list(range(len(rows))),
            "customer_id": [r[0] for r in rows],
            "ordered_at": [START + timedelta(hours=r[1]) for r in rows],
            "amount": [round(r[2], 2) for r in rows],
            "region": ["north" if r[0] % 3 else "south" for r in rows],
        }
    )


@SETTINGS
@given(rows=TRANSACTIONS, period=st.sampled_from(["week", "month", "quarter"]))
def test_kpi_invariants(rows: list[tuple[int, int, float]], period: str) -> None:
    tx = _transactions(rows)
    table = sales_kpi_table(tx.lazy(), period=period)
    by_region = sales_kpi_table(tx.lazy(), period=period, by="region")

    assert (table["new_accounts"] + table["returning_customers"] == table["active_customers"]).all()
    assert table["orders"].sum() == int((tx["amount"] > 0).sum())
    assert abs(table["net_revenue"].sum() - tx["amount"].sum()) < 1e-6
    # Revenue and orders add up over segments; a customer is new once, in one segment.
    summed = by_region.group_by("period").agg(pl.col("net_revenue", "orders", "new_accounts").sum()).sort("period")
    joined = table.join(summed, on="period", suffix="_segments")
    assert ((joined["net_revenue"] - joined["net_revenue_segments"]).abs() < 1e-6).all()
    assert (joined["orders"] == joined["orders_segments"]).all()
    assert (joined["new_accounts"] == joined["new_accounts_segments"]).all()
    assert table["new_accounts"].sum() == tx.filter(pl.col("amount") > 0)["customer_id"].n_unique()


# --- funnel rates on random valid stage histories ----------------------------------------------------------

SPEC = FunnelSpec()
OPPORTUNITY = st.tuples(
    st.lists(st.sampled_from(SPEC.open_stages), min_size=1, max_size=4).map(sorted),  # stages entered
    st.sampled_from([None, "won", "lost"]),
    st.integers(min_value=0, max_value=300),  # start day
    st.integers(min_value=1, max_value=60),  # days between events
)


def _events(opportunities: list[tuple[list[str], str | None, int, int]]) -> pl.DataFrame:
    rows = []
    order = {stage: i for i, stage in enumerate(SPEC.open_stages)}
    for opp, (stages, outcome, start, gap) in enumerate(opportunities):
        path = sorted(set(stages), key=order.__getitem__) + ([outcome] if outcome else [])
        rows += [(opp, opp % 5, stage, START + timedelta(days=start + i * gap)) for i, stage in enumerate(path)]
    return pl.DataFrame(rows, schema=["opportunity_id", "customer_id", "stage", "entered_at"], orient="row")


@SETTINGS
@given(opportunities=st.lists(OPPORTUNITY, min_size=1, max_size=25), horizon=st.integers(min_value=1, max_value=120))
def test_conversion_rates_are_proportions(opportunities: list, horizon: int) -> None:
    transitions = build_transitions(_events(opportunities).lazy(), SPEC, horizon_days=horizon)
    table = conversion_table(transitions, SPEC)

    assert (table["converted"] <= table["observed"]).all() and (table["observed"] <= table["entered"]).all()
    rates = table["rate"].drop_nulls()
    assert ((rates >= 0) & (rates <= 1)).all()
    assert table["entered"].sum() == transitions.collect().height


# --- features never look past their as_of -------------------------------------------------------------


@SETTINGS
@given(rows=TRANSACTIONS, cut_hours=st.integers(min_value=0, max_value=400 * 24))
def test_features_do_not_depend_on_data_after_as_of(rows: list[tuple[int, int, float]], cut_hours: int) -> None:
    tx = _transactions(rows).drop("region").with_columns(pl.lit("software").alias("category"))
    as_of = START + timedelta(hours=cut_hours)
    config = DatasetConfig(root=Path("."), spec=SPEC, tables={})
    queries = pl.DataFrame({"customer_id": list(range(1, 13)), "as_of": [as_of] * 12}).lazy()

    everything = build_features(Dataset(config, {"transactions": tx}), queries).collect()
    only_before = build_features(Dataset(config, {"transactions": tx.filter(pl.col("ordered_at") < as_of)}), queries)

    assert everything.equals(only_before.collect())
