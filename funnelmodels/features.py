"""Point-in-time features: what was known about a customer at a moment (as_of).

Every feature of a row uses only data *strictly before* its ``as_of`` (a
transaction one second later is not seen, one at the same second neither):
that is the leakage guard that makes offline metrics honest. The same code
serves training (as_of = the stage's entered_at) and scoring (open
opportunities at a chosen as_of), and satisfaction models (as_of = the
survey's responded_at).

History look-ups are running aggregates read at each row's moment
(:func:`funnelmodels.history.history_at`: one sort of the events, a binary search per moment), so
the cost grows with the number of rows, not with rows times history.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from funnelmodels.data import schema as s
from funnelmodels.data.io import Dataset
from funnelmodels.frames import US_PER_DAY, as_days, collect, collect_all
from funnelmodels.funnel import opportunity_columns, with_stale_losses
from funnelmodels.history import Running, T, history_at

__all__ = [
    "activity_features",
    "build_features",
    "build_transition_features",
    "categorical_features",
    "extra_features",
    "feature_columns",
]


def _add_purchases(rows: pl.DataFrame, transactions: pl.LazyFrame) -> pl.DataFrame:
    """Orders and refunds before each row's as_of, and the spend in the 90 and 365 days before it."""
    has_category = s.CATEGORY in transactions.collect_schema().names()
    events = transactions.select(
        s.CUSTOMER_ID,
        pl.col(s.ORDERED_AT).alias(T),
        s.AMOUNT,
        (pl.col(s.CATEGORY) if has_category else pl.lit(None, dtype=pl.String)).cast(pl.Categorical).alias("_category"),
    )
    as_of = rows[s.AS_OF]
    windows = {days: f"_since_{days}" for days in (90, 365)}  # spend: the total before as_of less that before then
    queries = rows.select(
        s.CUSTOMER_ID, s.AS_OF, *((pl.col(s.AS_OF) - pl.duration(days=d)).alias(c) for d, c in windows.items())
    )
    order, refund = pl.col(s.AMOUNT) > 0, pl.col(s.AMOUNT) < 0
    now = history_at(
        queries,
        s.AS_OF,
        events.pipe(collect),  # held by history_at alone, which lets it go once sorted
        {
            "frequency": Running("count", where=order),
            "monetary_total": Running("sum", s.AMOUNT, where=order),
            "monetary_max": Running("max", s.AMOUNT, where=order),
            "_last_order": Running("last", T, where=order),
            "distinct_categories": Running("distinct", "_category", where=order),
            "refund_count": Running("count", where=refund),
            "_refunds": Running("sum", s.AMOUNT, where=refund),
            **{column: Running("sum", s.AMOUNT, where=order, at=column) for column in windows.values()},
        },
    )
    total = now["monetary_total"]
    spend = {f"spend_{days}d": total - now[column] for days, column in windows.items()}
    bought = now["frequency"] > 0
    return rows.with_columns(
        now["frequency"],
        total,
        now["monetary_max"],
        now["distinct_categories"].cast(pl.Int32),
        now["refund_count"],
        (-now["_refunds"]).alias("refund_amount"),
        *(values.alias(name) for name, values in spend.items()),
    ).with_columns(
        ((as_of - now["_last_order"]).dt.total_microseconds() / US_PER_DAY).alias("recency_days"),
        pl.when(bought).then(total / now["frequency"]).alias("monetary_mean"),
    )


def _add_satisfaction(rows: pl.DataFrame, surveys: pl.LazyFrame) -> pl.DataFrame:
    names = surveys.collect_schema().names()
    csat = pl.col(s.CSAT) if s.CSAT in names else pl.lit(None, dtype=pl.Int64)
    nps = pl.col(s.NPS) if s.NPS in names else pl.lit(None, dtype=pl.Int64)
    events = surveys.select(
        s.CUSTOMER_ID, pl.col(s.RESPONDED_AT).alias(T), csat.alias("_csat"), nps.alias("_nps")
    ).pipe(collect)
    found = history_at(
        rows,
        s.AS_OF,
        events.with_columns(pl.col("_csat").is_not_null().alias("_answered")),
        {
            "last_csat": Running("last", "_csat"),
            "_csat_sum": Running("sum", "_csat"),
            "_csat_count": Running("count", where="_answered"),
            "last_nps": Running("last", "_nps"),
            "survey_count": Running("count"),
        },
    )
    answered = found["_csat_count"] > 0
    return rows.with_columns(
        found["last_csat"],
        pl.when(answered).then(found["_csat_sum"] / found["_csat_count"]).alias("mean_csat"),
        found["last_nps"],
        found["survey_count"],
    )


def _add_opportunity_history(
    rows: pl.DataFrame, stage_events: pl.LazyFrame, spec_won: str, spec_lost: str
) -> pl.DataFrame:
    starts, closed = collect_all(
        [
            stage_events.group_by(s.OPPORTUNITY_ID).agg(
                pl.col(s.CUSTOMER_ID).first(), pl.col(s.ENTERED_AT).min().alias(T)
            ),
            stage_events.filter(pl.col(s.STAGE).is_in([spec_won, spec_lost])).select(
                s.CUSTOMER_ID,
                pl.col(s.ENTERED_AT).alias(T),
                (pl.col(s.STAGE) == spec_won).alias("_won"),
                (pl.col(s.STAGE) == spec_lost).alias("_lost"),
            ),
        ]
    )
    # Other opportunities opened strictly before this one started; for plain as_of rows, before as_of.
    key = s.OPPORTUNITY_START if s.OPPORTUNITY_START in rows.columns else s.AS_OF
    opened = history_at(rows, key, starts, {"prior_opportunities": Running("count")})
    outcomes = history_at(
        rows,
        s.AS_OF,
        closed,
        {"prior_wins": Running("count", where="_won"), "prior_losses": Running("count", where="_lost")},
    )
    return rows.with_columns(opened["prior_opportunities"], outcomes["prior_wins"], outcomes["prior_losses"])


def _add_order_context(rows: pl.LazyFrame, transactions: pl.LazyFrame) -> pl.LazyFrame:
    """The order a row is about, as known at its as_of: amount, category, age, lateness, delivery.

    ``days_late``: delivered − promised once delivered before as_of, else as_of − promised
    (negative while not yet due); ``delivered``: 1 if delivered before as_of. A delivery after
    as_of is not seen (the leakage guard). The transactions' own columns come as ``order_<name>``.
    """
    names = transactions.collect_schema()
    canonical = set(s.SCHEMAS["transactions"].names)
    own = [c for c, t in names.items() if c not in canonical and not c.startswith("_") and _usable(t)]
    taken = set(rows.collect_schema().names())
    optional = [c for c in (s.CATEGORY, s.PROMISED_AT, s.DELIVERED_AT) if c in names]
    orders = transactions.select(
        pl.col(s.ORDER_ID).alias("_order"),
        pl.col(s.ORDERED_AT).alias("_ordered_at"),
        pl.col(s.AMOUNT).alias("order_amount"),
        *[pl.col(c).alias(f"_{c}") for c in optional],
        *[pl.col(c).alias(f"{s.ORDER_PREFIX}{c}") for c in own if f"{s.ORDER_PREFIX}{c}" not in taken],
    )
    as_of = pl.col(s.AS_OF)
    seen = pl.col("_ordered_at") < as_of
    exprs = [
        pl.when(seen).then(pl.col("order_amount")).alias("order_amount"),
        pl.when(seen).then(as_days(as_of - pl.col("_ordered_at"))).alias("days_since_order"),
    ]
    if s.CATEGORY in optional:
        exprs.append(pl.when(seen).then(pl.col(f"_{s.CATEGORY}")).alias("order_category"))
    if s.PROMISED_AT in optional and s.DELIVERED_AT in optional:
        delivered = (pl.col(f"_{s.DELIVERED_AT}") < as_of).fill_null(False)
        late_until = pl.when(delivered).then(pl.col(f"_{s.DELIVERED_AT}")).otherwise(as_of)
        exprs += [
            pl.when(seen).then(as_days(late_until - pl.col(f"_{s.PROMISED_AT}"))).alias("days_late"),
            pl.when(seen).then(delivered.cast(pl.Int8)).alias("delivered"),
        ]
    joined = rows.join(
        orders.with_columns(pl.col("_order").cast(rows.collect_schema()[s.ORDER_ID])),
        left_on=s.ORDER_ID,
        right_on="_order",
        how="left",
        maintain_order="left",
    )
    helpers = ["_ordered_at", *(f"_{c}" for c in optional)]
    return joined.with_columns(exprs).drop(helpers)


def build_features(
    dataset: Dataset,
    rows: pl.LazyFrame,
) -> pl.LazyFrame:
    """Point-in-time features for each (customer_id, as_of) row, from every table present.

    Parameters
    ----------
    dataset : the loaded dataset (tables that are absent give no features).
    rows : LazyFrame ``customer_id, as_of`` (+ any columns, kept as they are).

    Returns
    -------
    ``rows`` in their original order with feature columns added: demographics
    (``age, gender, income, region, product_knowledge, tenure_days``), purchases
    (``recency_days, frequency, monetary_total, monetary_mean, monetary_max,
    distinct_categories, spend_90d, spend_365d, refund_count, refund_amount``),
    satisfaction (``last_csat, mean_csat, last_nps, survey_count``), opportunity
    history (``prior_opportunities, prior_wins, prior_losses``) and, for rows about an order
    (an ``order_id`` column), the order's context (``schema.ORDER_CONTEXT`` and
    ``order_<column>`` for the transactions' own columns).
    """
    out = rows.pipe(collect)
    if dataset.has("customers"):
        customers = dataset.lazy("customers")
        present = customers.collect_schema().names()
        keep = [c for c in (*s.DEMOGRAPHIC, *extra_features(dataset)) if c in present and c not in out.columns]
        known = customers.select(s.CUSTOMER_ID, s.CREATED_AT, *keep).pipe(collect)
        out = out.join(known, on=s.CUSTOMER_ID, how="left", maintain_order="left")
        out = out.with_columns(as_days(pl.col(s.AS_OF) - pl.col(s.CREATED_AT)).alias("tenure_days")).drop(s.CREATED_AT)
    if dataset.has("transactions"):
        out = _add_purchases(out, dataset.lazy("transactions"))
    if dataset.has("surveys"):
        out = _add_satisfaction(out, dataset.lazy("surveys"))
    if dataset.has("transactions") and s.ORDER_ID in out.columns:
        out = _add_order_context(out.lazy(), dataset.lazy("transactions")).pipe(collect)
    if dataset.has("stage_events"):
        # Losses the stale rule infers count as earlier losses once they happened.
        events = with_stale_losses(dataset.lazy("stage_events"), dataset.spec)
        out = _add_opportunity_history(out, events, dataset.spec.won, dataset.spec.lost)
    return out.lazy()


def activity_features(rows: pl.LazyFrame, activities: pl.LazyFrame) -> pl.LazyFrame:
    """Activity features of each opportunity row, from activities strictly before its ``as_of``.

    Counts by type on the opportunity and in the current stage (from ``entered_at``), touches in the
    last 14 and 30 days, days since the last touch, days from the opportunity's start to its first
    touch (empty while there is none), and touches per week in the stage so far.

    Parameters
    ----------
    rows : ``opportunity_id, as_of, entered_at, opportunity_start`` (+ any columns, kept in their order).
    """
    rows = rows.with_row_index("_act_row")
    # Joins do not promise to keep row order: the rows are put back in theirs at the end.
    return _add_activities(rows, activities).sort("_act_row").drop("_act_row")


def _add_activities(rows: pl.LazyFrame, activities: pl.LazyFrame) -> pl.LazyFrame:
    id_type = rows.collect_schema()[s.OPPORTUNITY_ID]
    acts = activities.select(
        pl.col(s.OPPORTUNITY_ID).cast(id_type).alias(s.OPPORTUNITY_ID), pl.col(s.AT).alias("_at"), pl.col(s.TYPE)
    )
    keyed = rows.select("_act_row", s.OPPORTUNITY_ID, s.AS_OF, s.ENTERED_AT, s.OPPORTUNITY_START)
    seen = keyed.join(acts, on=s.OPPORTUNITY_ID, how="inner").filter(pl.col("_at") < pl.col(s.AS_OF))
    in_stage = pl.col("_at") >= pl.col(s.ENTERED_AT)
    recent = {days: pl.col("_at") >= pl.col(s.AS_OF) - pl.duration(days=days) for days in (14, 30)}
    after_start = pl.col("_at") >= pl.col(s.OPPORTUNITY_START)
    summary = seen.group_by("_act_row").agg(
        *[
            (pl.col(s.TYPE) == kind).sum().alias(name)
            for kind, name in zip(s.ACTIVITY_TYPES, s.ACTIVITY_COUNTS, strict=True)
        ],
        *[
            ((pl.col(s.TYPE) == kind) & in_stage).sum().alias(name)
            for kind, name in zip(s.ACTIVITY_TYPES, s.ACTIVITY_IN_STAGE, strict=True)
        ],
        *[expr.sum().alias(f"touches_{days}d") for days, expr in recent.items()],
        in_stage.sum().alias("_in_stage"),
        pl.col("_at").max().alias("_last_touch"),
        pl.col("_at").filter(after_start).min().alias("_first_touch"),
    )
    counts = [*s.ACTIVITY_COUNTS, *s.ACTIVITY_IN_STAGE, "touches_14d", "touches_30d", "_in_stage"]
    weeks = pl.max_horizontal(as_days(pl.col(s.AS_OF) - pl.col(s.ENTERED_AT)), pl.lit(1.0)) / 7
    return (
        rows.join(summary, on="_act_row", how="left")
        .with_columns(pl.col(c).fill_null(0).cast(pl.Int64) for c in counts)
        .with_columns(
            as_days(pl.col(s.AS_OF) - pl.col("_last_touch")).alias("days_since_last_touch"),
            as_days(pl.col("_first_touch") - pl.col(s.OPPORTUNITY_START)).alias("first_response_days"),
            (pl.col("_in_stage") / weeks).alias("touches_per_week_in_stage"),
        )
        .drop("_in_stage", "_last_touch", "_first_touch")
    )


def build_transition_features(dataset: Dataset, transitions: pl.LazyFrame) -> pl.LazyFrame:
    """Features of stage-transition rows: point-in-time features plus stage context.

    Parameters
    ----------
    transitions : LazyFrame from :func:`funnelmodels.funnel.build_transitions` (entry rows),
        :func:`funnelmodels.funnel.add_snapshots` (with ``as_of``), or open opportunities at a
        scoring moment (with ``as_of``).

    Returns
    -------
    ``transitions`` plus ``as_of`` (kept when given, else entered_at), the :func:`build_features`
    columns and stage context: ``days_since_opportunity_start, days_in_stage_so_far, stage_entry,
    deal_amount`` (and ``stage``, ``source`` as they are), all as of ``as_of``; with an activities
    table, the activity features (``schema.ACTIVITY_FEATURES``).
    """
    names = transitions.collect_schema().names()
    as_of = pl.col(s.AS_OF) if s.AS_OF in names else pl.col(s.ENTERED_AT)
    context = [
        as_of.alias(s.AS_OF),
        as_days(as_of - pl.col(s.OPPORTUNITY_START)).alias("days_since_opportunity_start"),
        as_days(as_of - pl.col(s.ENTERED_AT)).alias(s.DAYS_IN_STAGE_SO_FAR),
        pl.col(s.ENTRY).alias("stage_entry"),
        (pl.col(s.AMOUNT) if s.AMOUNT in names else pl.lit(None, dtype=pl.Float64)).alias("deal_amount"),
    ]
    out = build_features(dataset, transitions.with_columns(context))
    if dataset.has("activities"):
        out = activity_features(out, dataset.lazy("activities"))
    return out


def feature_columns(
    frame: pl.LazyFrame | pl.DataFrame, *, exclude: Sequence[str] = (), extra: Sequence[str] = ()
) -> list[str]:
    """The model feature columns present in ``frame``, in a fixed order.

    ``extra``: the dataset's own customer columns (:func:`extra_features`), appended.
    """
    names = frame.collect_schema().names() if isinstance(frame, pl.LazyFrame) else frame.columns
    wanted = (
        *s.DEMOGRAPHIC,
        *s.PURCHASES,
        *s.SATISFACTION,
        *s.OPPORTUNITIES,
        *s.ORDER_CONTEXT,
        *s.STAGE_CONTEXT,
        *s.ACTIVITY_FEATURES,
    )
    known = [c for c in wanted if c in names and c not in exclude]
    return known + [c for c in extra if c in names and c not in exclude and c not in known]


def extra_features(dataset: Dataset) -> list[str]:
    """A dataset's own columns used as features too.

    Customers columns beyond the canonical ones (a CRM's firmographics) and stage-event columns
    beyond them (an opportunity's product, …). A customer's name (:data:`~funnelmodels.data.schema.NAME_COLUMNS`)
    is not a feature: it identifies, it does not describe.

    Numbers and text only: a date column is not a feature as it is (its meaning depends on
    the moment it is read at).
    """
    out: list[str] = []
    if dataset.has("customers"):
        schema = dataset.lazy("customers").collect_schema()
        canonical = set(s.SCHEMAS["customers"].names)
        out += [
            c
            for c, t in schema.items()
            if c not in canonical and c not in s.NAME_COLUMNS and not c.startswith("_") and _usable(t)
        ]
    if dataset.has("stage_events"):
        schema = dataset.lazy("stage_events").collect_schema()
        own = [c for c in opportunity_columns(schema.names()) if c not in (s.AMOUNT, s.SOURCE)]
        out += [c for c in own if _usable(schema[c]) and c not in out]
    if dataset.has("transactions"):
        schema = dataset.lazy("transactions").collect_schema()
        canonical = set(s.SCHEMAS["transactions"].names)
        out += [
            f"{s.ORDER_PREFIX}{c}"
            for c, t in schema.items()
            if c not in canonical and not c.startswith("_") and _usable(t)
        ]
    return out


def _usable(dtype: pl.DataType) -> bool:
    return dtype.is_numeric() or dtype == pl.Boolean or dtype in (pl.String, pl.Categorical)


def categorical_features(frame: pl.DataFrame, features: Sequence[str]) -> tuple[str, ...]:
    """The features treated as categories: the known ones and any text column."""
    text = (pl.String, pl.Categorical, pl.Enum)
    return tuple(c for c in features if c in s.CATEGORICAL_FEATURES or isinstance(frame[c].dtype, text))
