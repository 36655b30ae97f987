"""Running aggregates of a customer's events before moments, against a plain loop over the events."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import polars as pl
import pytest

from funnelmodels import history
from funnelmodels.history import Running, T, history_at

AGGREGATES = {
    "orders": Running("count", where="is_order"),
    "events": Running("count"),
    "spent": Running("sum", "amount", where="is_order"),
    "largest": Running("max", "amount", where="is_order"),
    "last_at": Running("last", T, where="is_order"),
    "last_note": Running("last", "note"),
    "kinds": Running("distinct", "kind", where="is_order"),
    "points": Running("sum", "points"),
    "best_points": Running("max", "points"),
}


def _by_hand(queries: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """The same aggregates, one query at a time, over the events strictly before it."""
    rows = []
    listed = list(events.iter_rows(named=True))
    for query in queries.iter_rows(named=True):
        seen = [
            e
            for e in listed
            if query["customer_id"] is not None
            and query["as_of"] is not None
            and e["customer_id"] == query["customer_id"]
            and e[T] < query["as_of"]
        ]
        orders = [e for e in seen if e["is_order"]]
        noted = [e for e in seen if e["note"] is not None]
        amounts = [e["amount"] for e in orders if e["amount"] is not None]
        points = [e["points"] for e in seen if e["points"] is not None]
        rows.append(
            {
                "orders": len(orders),
                "events": len(seen),
                "spent": sum(amounts),
                "largest": max(amounts) if amounts else None,
                "last_at": max((e[T] for e in orders), default=None),
                # the latest by time; events at the same time in their given order
                "last_note": sorted(noted, key=lambda e: e[T])[-1]["note"] if noted else None,
                "kinds": len({e["kind"] for e in orders if e["kind"] is not None}),
                "points": sum(points),
                "best_points": max(points) if points else None,
            }
        )
    return pl.DataFrame(rows, schema=dict(_schema()))


def _schema() -> list[tuple[str, pl.DataType]]:
    return [
        ("orders", pl.Int64()),
        ("events", pl.Int64()),
        ("spent", pl.Float64()),
        ("largest", pl.Float64()),
        ("last_at", pl.Datetime("us")),
        ("last_note", pl.String()),
        ("kinds", pl.Int64()),
        ("points", pl.Int64()),
        ("best_points", pl.Int64()),
    ]


def _random_case(seed: int, *, ids: str, cents: bool, fine_times: bool) -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = random.Random(seed)
    customers: list[object] = (
        [f"C-{i:03d}" for i in range(12)] if ids == "text" else [rng.randrange(-(2**62), 2**62) for _ in range(12)]
    )
    start = datetime(2020, 1, 1)

    def moment() -> datetime:
        if fine_times:  # microseconds over ten years: too fine for one key, the times get ranked
            return start + timedelta(microseconds=rng.randrange(10 * 365 * 86_400 * 10**6))
        return start + timedelta(days=rng.randrange(60))  # whole days, many ties

    events = []
    for _ in range(400):
        amount = round(rng.uniform(-50, 500), 2) if cents else rng.uniform(-50, 500) * 1.000001
        events.append(
            {
                "customer_id": rng.choice(customers),
                T: moment(),
                "amount": None if rng.random() < 0.05 else amount,
                "is_order": (amount > 0) if rng.random() > 0.02 else None,
                "kind": rng.choice(["a", "b", "c", None]),
                "note": rng.choice(["x", "y", None]),
                "points": rng.choice([None, -3, 0, 4, 10]),
            }
        )
    queries = [
        {
            "customer_id": None if rng.random() < 0.03 else rng.choice([*customers, customers[0]]),
            "as_of": None if rng.random() < 0.03 else moment(),
        }
        for _ in range(150)
    ]
    queries += [{"customer_id": e["customer_id"], "as_of": e[T]} for e in events[:20]]  # exactly at an event
    id_type = pl.String() if ids == "text" else pl.Int64()
    event_frame = pl.DataFrame(
        events,
        schema={
            "customer_id": id_type,
            T: pl.Datetime("us"),
            "amount": pl.Float64(),
            "is_order": pl.Boolean(),
            "kind": pl.String(),
            "note": pl.String(),
            "points": pl.Int64(),
        },
    )
    return pl.DataFrame(queries, schema={"customer_id": id_type, "as_of": pl.Datetime("us")}), event_frame


def _assert_same(got: pl.DataFrame, want: pl.DataFrame) -> None:
    for name, dtype in _schema():
        a, b = got[name].cast(dtype), want[name]
        if dtype == pl.Float64():
            assert ((a - b).abs() <= 1e-9 * (1 + b.abs())).fill_null(True).all(), name
            assert (a.is_null() == b.is_null()).all(), name
        else:
            assert a.to_list() == b.to_list(), name


@pytest.mark.parametrize(
    ("seed", "ids", "cents", "fine_times"),
    [(0, "text", True, False), (1, "numbers", True, False), (2, "numbers", False, True), (3, "text", False, False)],
)
def test_every_aggregate_equals_a_plain_loop_over_the_earlier_events(
    seed: int, ids: str, cents: bool, fine_times: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if fine_times:  # as if customers × microseconds did not fit one key: the times are ranked instead
        monkeypatch.setattr(history, "_KEY_LIMIT", 2**40)
    queries, events = _random_case(seed, ids=ids, cents=cents, fine_times=fine_times)
    got = history_at(queries, "as_of", events, AGGREGATES)
    want = _by_hand(queries, events.sort(T, maintain_order=True))
    assert got.columns == want.columns and got.height == queries.height
    _assert_same(got, want)


@pytest.mark.parametrize(("seed", "ids"), [(5, "text"), (6, "numbers")])
def test_queries_of_a_few_customers_read_only_their_events_and_agree_with_the_loop(seed: int, ids: str) -> None:
    # Two customers asked of twelve: the other customers' events are left out before the sort.
    queries, events = _random_case(seed, ids=ids, cents=True, fine_times=False)
    two = events["customer_id"].unique().sort().head(2)
    queries = queries.filter(pl.col("customer_id").is_in(two.implode()) | pl.col("customer_id").is_null())
    assert queries.height > 10
    got = history_at(queries, "as_of", events, AGGREGATES)
    want = _by_hand(queries, events.sort(T, maintain_order=True))
    _assert_same(got, want)


def test_an_event_at_the_moment_itself_is_not_seen_and_sums_of_cents_are_exact() -> None:
    day = datetime(2025, 3, 1)
    events = pl.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b"],
            T: [day - timedelta(days=2), day - timedelta(days=1), day, day - timedelta(days=5)],
            "amount": [0.1, 0.2, 1000.0, 7.0],
        }
    )
    queries = pl.DataFrame(
        {"customer_id": ["a", "a", "b", "c", None], "as_of": [day, day - timedelta(days=1), day, day, day]}
    )
    got = history_at(
        queries,
        "as_of",
        events,
        {"n": Running("count"), "total": Running("sum", "amount"), "top": Running("max", "amount")},
    )
    # 0.1 + 0.2 is 0.30000000000000004 as floats; added in cents it is the decimal 0.30.
    assert got.to_dicts() == [
        {"n": 2, "total": 0.3, "top": 0.2},
        {"n": 1, "total": 0.1, "top": 0.1},
        {"n": 1, "total": 7.0, "top": 7.0},
        {"n": 0, "total": 0.0, "top": None},
        {"n": 0, "total": 0.0, "top": None},
    ]


def test_each_aggregate_can_be_read_at_its_own_moment() -> None:
    day = datetime(2025, 3, 1)
    events = pl.DataFrame(
        {"customer_id": [1, 1, 1], T: [day - timedelta(days=d) for d in (100, 30, 1)], "amount": [5.0, 7.0, 11.0]}
    )
    queries = pl.DataFrame({"customer_id": [1], "as_of": [day], "since": [day - timedelta(days=90)]})
    got = history_at(
        queries,
        "as_of",
        events,
        {"now": Running("sum", "amount"), "then": Running("sum", "amount", at="since")},
    )
    assert got.row(0) == (23.0, 5.0)


def test_no_events_gives_the_empty_history() -> None:
    events = pl.DataFrame(
        {"customer_id": [], T: [], "amount": []},
        schema={"customer_id": pl.Int64, T: pl.Datetime("us"), "amount": pl.Float64},
    )
    queries = pl.DataFrame({"customer_id": [1, 2], "as_of": [datetime(2025, 1, 1)] * 2})
    got = history_at(
        queries, "as_of", events, {"n": Running("count"), "top": Running("max", "amount"), "at": Running("last", T)}
    )
    assert got.to_dicts() == [{"n": 0, "top": None, "at": None}] * 2


def test_a_maximum_over_no_matching_event_is_empty() -> None:
    """Only refunds (and a fine amount, not whole cents): no order to take the largest of."""
    day = datetime(2025, 3, 1)
    for amount in (-1.0, -1.0001):
        events = pl.DataFrame({"customer_id": [1, 2], T: [day - timedelta(days=1)] * 2, "amount": [amount, amount]})
        queries = pl.DataFrame({"customer_id": [1, 2, 3], "as_of": [day] * 3})
        got = history_at(queries, "as_of", events, {"top": Running("max", "amount", where=pl.col("amount") > 0)})
        assert got["top"].to_list() == [None, None, None]
