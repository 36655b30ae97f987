"""KPI definitions on hand-made tables whose right answers are written in the tests."""

from __future__ import annotations

from datetime import datetime

import polars as pl
import pytest

from funnelmodels.config import CountingRules
from funnelmodels.errors import ConfigError
from funnelmodels.kpis import (
    attainment,
    counting_notes,
    kpi_changes,
    sales_kpi_table,
    satisfaction_change,
    satisfaction_table,
)


def _surveys() -> pl.LazyFrame:
    return pl.DataFrame(
        {
            "responded_at": [datetime(2025, 1, d) for d in (3, 9, 15, 20)] + [datetime(2025, 2, d) for d in (2, 8)],
            "csat": [5, 4, 2, None, 3, 5],
            "nps": [10, 9, 3, 7, None, 6],
            "region": ["north", "north", "south", "south", "north", "south"],
        }
    ).lazy()


def test_csat_and_nps_per_month_with_intervals() -> None:
    t = satisfaction_table(_surveys(), period="month")
    jan = t.row(0, named=True)
    assert str(jan["period"]) == "2025-01-01"
    # January CSAT: 5, 4, 2 → mean 11/3, sd 1.5275, half-width 1.96·1.5275/√3 = 1.7285.
    assert jan["csat_n"] == 3
    assert jan["csat_mean"] == pytest.approx(11 / 3)
    assert jan["csat_high"] - jan["csat_mean"] == pytest.approx(1.959964 * 1.527525 / 3**0.5, rel=1e-5)
    assert jan["satisfied_share"] == pytest.approx(2 / 3)
    # January NPS: 10, 9, 3, 7 → 2 promoters, 1 detractor of 4: NPS = 25.
    # Trinomial variance (0.5 + 0.25 − 0.25²)/4 = 0.171875 → half-width 1.96·0.41458 = 0.8126.
    assert (jan["promoters"], jan["detractors"], jan["nps_n"]) == (2, 1, 4)
    assert jan["nps"] == pytest.approx(25.0)
    assert jan["nps_high"] - jan["nps"] == pytest.approx(100 * 1.959964 * 0.171875**0.5, rel=1e-5)
    feb = t.row(1, named=True)
    assert feb["csat_mean"] == 4.0 and feb["nps"] == pytest.approx(-100.0)


def test_segments_split_the_counts() -> None:
    t = satisfaction_table(_surveys(), period="quarter", by="region")
    assert t["region"].to_list() == ["north", "south"]
    assert t["csat_n"].to_list() == [3, 2]
    assert t["csat_n"].sum() == 5  # additive over segments


def test_change_between_periods() -> None:
    change = satisfaction_change(
        _surveys(),
        before=(datetime(2025, 1, 1), datetime(2025, 2, 1)),
        after=(datetime(2025, 2, 1), datetime(2025, 3, 1)),
    )
    assert change["csat_mean"]["change"] == pytest.approx(4.0 - 11 / 3)
    assert 0 < change["csat_mean"]["p_value"] <= 1
    assert change["nps"]["before"] == pytest.approx(25.0) and change["nps"]["after"] == pytest.approx(-100.0)


def test_unknown_period_is_refused() -> None:
    with pytest.raises(ConfigError, match="period must be one of day, week, month, quarter, year"):
        satisfaction_table(_surveys(), period="fortnight")


def _transactions() -> pl.LazyFrame:
    # Customer 1 buys in January and March (refund in March); customer 2 only in March; customer 3 in February.
    return pl.DataFrame(
        {
            "customer_id": [1, 1, 1, 2, 3, 3],
            "ordered_at": [
                datetime(2025, 1, 5),
                datetime(2025, 3, 2),
                datetime(2025, 3, 20),
                datetime(2025, 3, 9),
                datetime(2025, 2, 1),
                datetime(2025, 2, 3),
            ],
            "amount": [100.0, 50.0, -100.0, 30.0, 20.0, 40.0],
            "region": ["north", "north", "north", "south", "south", "south"],
        }
    ).lazy()


def _events() -> pl.LazyFrame:
    return pl.DataFrame(
        {
            "opportunity_id": [1, 1, 2, 2, 3, 3, 4, 4],
            "stage": ["lead", "won", "lead", "lost", "lead", "won", "lead", "lost"],
            "entered_at": [
                datetime(2025, 1, 2),
                datetime(2025, 1, 20),
                datetime(2025, 1, 3),
                datetime(2025, 2, 10),
                datetime(2025, 2, 1),
                datetime(2025, 2, 15),
                datetime(2025, 2, 2),
                datetime(2025, 2, 20),
            ],
        }
    ).lazy()


def test_sales_kpis_by_month() -> None:

    t = sales_kpi_table(_transactions(), _events(), period="month")
    assert [str(p) for p in t["period"]] == ["2025-01-01", "2025-02-01", "2025-03-01"]
    # March: net 50 − 100 + 30 = −20; 2 orders averaging 40; customer 2 new, customer 1 returning.
    assert t["net_revenue"].to_list() == [100.0, 60.0, -20.0]
    assert t["orders"].to_list() == [1, 2, 2]
    assert t["average_sale"].to_list() == [100.0, 30.0, 40.0]
    assert t["new_accounts"].to_list() == [1, 1, 1]
    assert t["returning_customers"].to_list() == [0, 0, 1]
    assert t["active_customers"].to_list() == [1, 1, 2]
    # Closed in January: 1 won; in February: 1 won, 2 lost → 1/3.
    assert t["won"].to_list() == [1, 1, 0] and t["lost"].to_list() == [0, 2, 0]
    assert t["win_rate"][0] == 1.0 and t["win_rate"][1] == pytest.approx(1 / 3) and t["win_rate"][2] is None


def test_new_plus_returning_is_active_and_revenue_adds_over_segments() -> None:

    t = sales_kpi_table(_transactions(), period="month")
    assert (t["new_accounts"] + t["returning_customers"] == t["active_customers"]).all()
    seg = sales_kpi_table(_transactions(), period="month", by="region")
    assert seg["net_revenue"].sum() == t["net_revenue"].sum()
    quarter = sales_kpi_table(_transactions(), period="quarter")
    assert quarter["net_revenue"].to_list() == [140.0]


def test_changes_with_a_test_for_the_win_rate() -> None:

    t = sales_kpi_table(_transactions(), _events(), period="month")
    changes = kpi_changes(t)
    feb = {r["kpi"]: r for r in changes.filter(pl.col("period") == t["period"][1]).iter_rows(named=True)}
    assert feb["net_revenue"]["change"] == -40.0 and feb["net_revenue"]["change_pct"] == pytest.approx(-0.4)
    # Win rate 1/1 → 1/3: pooled p = 2/4, se = √(0.25·(1 + 1/3)) = 0.5774, z = −1.1547, p = 0.2482.
    assert feb["win_rate"]["change"] == pytest.approx(-2 / 3)
    assert feb["win_rate"]["p_value"] == pytest.approx(0.2482, abs=1e-4)
    # Orders 1 → 2, equal exposure: every outcome of Binomial(3, ½) is as likely or less → p = 1;
    # the difference 1 ± 1.96·√3. Deals lost 0 → 2: P(X = 0 or 2 | n = 2, ½) = 1/4 + 1/4 = 0.5.
    assert feb["orders"]["p_value"] == pytest.approx(1.0)
    assert (feb["orders"]["change_low"], feb["orders"]["change_high"]) == pytest.approx(
        (1 - 3.3948, 1 + 3.3948), abs=1e-4
    )
    assert feb["lost"]["p_value"] == pytest.approx(0.5)
    assert feb["net_revenue"]["p_value"] is None, "no test of an amount from period totals"


def test_attainment_against_targets() -> None:

    t = sales_kpi_table(_transactions(), period="month")
    targets = pl.DataFrame({"kpi": ["net_revenue", "orders"], "period": ["2025-01", "2025-02"], "target": [200, 4]})
    a = attainment(t, targets)
    assert a["attainment"].to_list() == [0.5, 0.5]
    with pytest.raises(ConfigError, match="unknown KPIs \\['revenue'\\]"):
        attainment(t, targets.with_columns(pl.lit("revenue").alias("kpi")))


def test_counting_rules_for_purchases_of_zero_and_refunds() -> None:

    # Customer 4 takes a free sample (0) in February and buys nothing else.
    sample = pl.DataFrame(
        {"customer_id": [4], "ordered_at": [datetime(2025, 2, 10)], "amount": [0.0], "region": ["north"]}
    )
    rows = pl.concat([_transactions().collect(), sample]).lazy()

    default = sales_kpi_table(rows, period="month")
    # The default: a 0 is not an order and not a purchase; refunds are subtracted (March: −20).
    assert default["orders"].to_list() == [1, 2, 2]
    assert default["active_customers"].to_list() == [1, 1, 2]
    assert default["net_revenue"].to_list() == [100.0, 60.0, -20.0]

    counted = sales_kpi_table(rows, period="month", rules=CountingRules(zero_amounts="order", refunds="ignore"))
    # February gains an order, a new account and an active customer; the average sale falls to 60 / 3 = 20.
    assert counted["orders"].to_list() == [1, 3, 2]
    assert counted["new_accounts"].to_list() == [1, 2, 1]
    assert counted["average_sale"][1] == pytest.approx(20.0)
    # March without the refund: 50 + 30 = 80.
    assert counted["net_revenue"].to_list() == [100.0, 60.0, 80.0]

    notes = counting_notes(rows, CountingRules())
    assert notes[0].startswith(
        'Over the whole data, 1 transaction of 0 is not counted as an order or purchase (zero_amounts = "not an order"'
    )
    assert notes[1].startswith(
        "Over the whole data, 1 refund (negative amounts, $100.00 in all) is subtracted from net revenue"
    )
    with pytest.raises(ConfigError, match='zero_amounts must be "not an order" or "order"'):
        CountingRules(zero_amounts="maybe")  # type: ignore[arg-type]


def test_no_nps_columns_without_nps() -> None:
    table = satisfaction_table(_surveys().drop("nps"), period="month")
    assert "nps" not in table.columns and "promoters" not in table.columns
    assert "csat_mean" in table.columns
