"""Scores of the present with fitted models: open opportunities' win probability and value, customers at risk."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np
import polars as pl

from funnelmodels.config import FunnelSpec
from funnelmodels.data import schema as s
from funnelmodels.data.io import Dataset
from funnelmodels.errors import ModelError
from funnelmodels.features import build_features, build_transition_features
from funnelmodels.frames import collect
from funnelmodels.funnel import build_transitions, data_end
from funnelmodels.labels import day_text
from funnelmodels.models.conversion import StageConversionModel
from funnelmodels.models.design import FeatureRows, warn_unseen
from funnelmodels.models.satisfaction import SatisfactionModel
from funnelmodels.progress import steps
from funnelmodels.rates import historical_win_probability

__all__ = [
    "REASONS_FOR",
    "NothingOpenError",
    "at_risk_customers",
    "check_as_of",
    "open_opportunities",
    "open_pipeline",
    "pipeline_value",
    "score_from_history",
    "score_open_opportunities",
    "with_people",
]


class NothingOpenError(ModelError):
    """No deal is open at the scoring moment: an error for one dataset, none for one partition of it."""


def check_as_of(events: pl.LazyFrame, as_of: datetime) -> None:
    """Refuse a scoring moment before the first stage event or far beyond the data's end."""
    first = events.select(pl.col(s.ENTERED_AT).min()).pipe(collect).item()
    if first is None or as_of <= first:
        raise ModelError(f"as_of {as_of} is before any stage event (the data starts {first}); nothing is open yet.")
    end = data_end(events)
    if as_of > end + (end - first):
        raise ModelError(f"as_of {as_of} is far beyond the data's end ({end}); features would be stale.")


def open_opportunities(dataset: Dataset, as_of: datetime) -> pl.DataFrame:
    """Opportunities open at ``as_of``: their last event strictly before it is not won or lost.

    Returns
    -------
    DataFrame ``opportunity_id, customer_id, stage, entered_at, entry, opportunity_start[, amount, source]``.
    """
    events = dataset.lazy("stage_events")
    check_as_of(events, as_of)
    transitions = build_transitions(events.filter(pl.col(s.ENTERED_AT) < as_of), dataset.spec, end=as_of).pipe(collect)
    last = transitions.sort(s.ENTERED_AT).group_by(s.OPPORTUNITY_ID, maintain_order=True).last()
    # Still open: nothing after the last non-terminal entry (no exit, not lost).
    return last.filter(pl.col(s.EXITED_AT).is_null() & pl.col(s.LOST_AT).is_null())


def open_pipeline(dataset: Dataset, as_of: datetime) -> pl.DataFrame:
    """The deals open at ``as_of`` with their features then, as scoring sees them (empty when none is open)."""
    opened = open_opportunities(dataset, as_of)
    if opened.height == 0:
        return opened
    return build_transition_features(dataset, opened.lazy().with_columns(pl.lit(as_of).alias(s.AS_OF))).pipe(collect)


REASONS_FOR: Final = 10_000
"""How many open deals get reasons by default: every deal of a pipeline up to that size, else the deals
worth most (TreeSHAP and the words cost about 0.3 ms a deal; a million-customer pipeline has 110,000)."""


def score_open_opportunities(
    dataset: Dataset, model: StageConversionModel, as_of: datetime, *, reasons: bool | int = REASONS_FOR
) -> pl.DataFrame:
    """Win probability and expected value of every opportunity open at ``as_of``, with reasons.

    Win probability = P(current stage converts) × the product over every later non-terminal
    stage (DESIGN.md). The current stage is scored as it stands at ``as_of``: features known
    then, the days already spent in the stage and since the opportunity began (a lead that has
    waited 300 days is not a fresh lead). Each later stage is scored as if entered at ``as_of``
    (0 days in it), the best guess of a moment that has not come. The features are encoded once
    and shared by every stage's prediction.

    Parameters
    ----------
    reasons : how many deals get reasons, those with the largest expected value first (ties: the
        higher win probability, then the opportunity id); True for every deal, False (or 0) for
        none — the others get empty lists. Default :data:`REASONS_FOR`.

    Returns
    -------
    DataFrame ``opportunity_id, customer_id, stage, entered_at, opportunity_start, days_in_stage_so_far,
    amount, p_next_stage, win_probability, expected_value, reasons_up, reasons_down`` sorted by
    expected value.
    """
    with steps("scoring", 3 if reasons else 2) as bar:
        bar.step("open deals and their features")
        opened = open_pipeline(dataset, as_of)
        if opened.height == 0:
            raise NothingOpenError(f"no opportunity is open at {as_of}.")
        rows = model.prepare(opened)
        warn_unseen(model.encoder, rows.frame)
        bar.step("probabilities")
        p_now = model.predict_proba(rows)
        win = _win_probability(model, rows, p_now)
        frame = rows.frame
        amount = (
            frame[s.AMOUNT] if s.AMOUNT in frame.columns else pl.Series(s.AMOUNT, [None] * frame.height, pl.Float64)
        )
        expected = (amount * pl.Series(win)).alias(s.EXPECTED_VALUE)
        listed = pl.List(pl.String)
        explained = pl.DataFrame({"_i": np.arange(frame.height)})
        wanted = frame.height if reasons is True else int(reasons)
        if wanted > 0:
            bar.step("reasons")
            chosen = _worth_most(expected, win, frame[s.OPPORTUNITY_ID], wanted)
            said = model.explain(rows.subset(chosen)).select(s.REASONS_UP, s.REASONS_DOWN)
            said = said.with_columns(pl.Series("_i", np.flatnonzero(chosen)))
            explained = explained.join(said, on="_i", how="left", maintain_order="left")
        else:
            explained = explained.with_columns(
                pl.lit(None, dtype=listed).alias(c) for c in (s.REASONS_UP, s.REASONS_DOWN)
            )
        explained = explained.with_columns(
            pl.col(c).fill_null(pl.lit([], dtype=listed)) for c in (s.REASONS_UP, s.REASONS_DOWN)
        )
    out = frame.select(
        s.OPPORTUNITY_ID, s.CUSTOMER_ID, s.STAGE, s.ENTERED_AT, s.OPPORTUNITY_START, s.DAYS_IN_STAGE_SO_FAR
    ).with_columns(
        amount.alias(s.AMOUNT),
        pl.Series(s.P_NEXT_STAGE, p_now),
        pl.Series(s.WIN_PROBABILITY, win),
        expected,
        explained[s.REASONS_UP],
        explained[s.REASONS_DOWN],
    )
    out = with_people(dataset, out, as_of)
    return out.sort(s.EXPECTED_VALUE, s.OPPORTUNITY_ID, descending=[True, False], nulls_last=True)


def _worth_most(expected: pl.Series, win: np.ndarray, ids: pl.Series, n: int) -> np.ndarray:
    """A mask of the ``n`` rows with the largest expected value (then win probability, then id)."""
    if n >= expected.len():
        return np.ones(expected.len(), dtype=bool)
    ranked = (
        pl.DataFrame({"v": expected, "p": win, "id": ids})
        .with_row_index("_i")
        .sort("v", "p", "id", descending=[True, True, False], nulls_last=True)
        .head(n)["_i"]
        .to_numpy()
    )
    mask = np.zeros(expected.len(), dtype=bool)
    mask[ranked] = True
    return mask


def with_people(dataset: Dataset, rows: pl.DataFrame, as_of: datetime) -> pl.DataFrame:
    """``rows`` with the customer's name and the deal's owner, when the export has them.

    Names come from the customers table (:data:`~funnelmodels.data.schema.NAME_COLUMNS`), owners
    from the stage events before ``as_of`` (:data:`~funnelmodels.data.schema.OWNER_COLUMNS`): the
    opportunity's latest, or — for rows without one — the customer's latest opportunity's. They
    follow the id columns; a dataset without them gives ``rows`` unchanged.
    """
    ids = [c for c in (s.OPPORTUNITY_ID, s.CUSTOMER_ID) if c in rows.columns]
    added: list[str] = []
    if dataset.has("customers") and s.CUSTOMER_ID in rows.columns:
        customers = dataset.lazy("customers")
        names = [c for c in s.NAME_COLUMNS if c in customers.collect_schema().names() and c not in rows.columns]
        if names:
            looked_up = customers.select(s.CUSTOMER_ID, *names).unique(s.CUSTOMER_ID, keep="first").pipe(collect)
            rows = rows.join(looked_up, on=s.CUSTOMER_ID, how="left")
            added += names
    if dataset.has("stage_events"):
        events = dataset.lazy("stage_events")
        owners = [c for c in s.OWNER_COLUMNS if c in events.collect_schema().names() and c not in rows.columns]
        if owners:
            key = s.OPPORTUNITY_ID if s.OPPORTUNITY_ID in rows.columns else s.CUSTOMER_ID
            latest = (
                events.filter(pl.col(s.ENTERED_AT) < as_of)
                .sort(s.ENTERED_AT)
                .group_by(key)
                .agg(pl.col(c).drop_nulls().last() for c in owners)
                .pipe(collect)
            )
            rows = rows.join(latest, on=key, how="left")
            added += owners
    if not added:
        return rows
    rest = [c for c in rows.columns if c not in ids and c not in added]
    return rows.select(*ids, *added, *rest)


def _win_probability(model: StageConversionModel, rows: FeatureRows, p_now: np.ndarray) -> np.ndarray:
    """``p_now`` times each later stage's P(convert), that stage entered at the scoring moment."""
    stages = list(model.spec.open_stages)
    current = rows.frame[s.STAGE].to_numpy()
    product = p_now.copy()
    fresh = {s.DAYS_IN_STAGE_SO_FAR: 0.0, "stage_entry": 1}
    for position, stage in enumerate(stages):
        later = np.isin(current, stages[:position])
        if later.any():
            product[later] *= model.predict_proba(rows.subset(later).assign(fresh | {s.STAGE: stage}))
    return product


def score_from_history(dataset: Dataset, as_of: datetime) -> pl.DataFrame:
    """Win probability and expected value of every opportunity open at ``as_of``, from history alone (no model).

    A deal's win probability is what past deals that had waited as long in the same stage went on
    to do, times the share of each later stage's entries that converted
    (:func:`funnelmodels.rates.historical_win_probability`).

    Returns
    -------
    The rows of :func:`open_opportunities` with ``win_probability`` and ``expected_value``.
    """
    opened = open_opportunities(dataset, as_of)
    history = build_transitions(dataset.lazy("stage_events"), dataset.spec, end=as_of)
    win = historical_win_probability(history, opened, dataset.spec, end=as_of, as_of=as_of)
    amount = pl.col(s.AMOUNT) if s.AMOUNT in opened.columns else pl.lit(None, dtype=pl.Float64)
    return opened.with_columns(pl.Series(s.WIN_PROBABILITY, win)).with_columns(
        (amount * pl.col(s.WIN_PROBABILITY)).alias(s.EXPECTED_VALUE)
    )


def pipeline_value(scored: pl.DataFrame, *, by: str | None = None, spec: FunnelSpec | None = None) -> pl.DataFrame:
    """The pipeline forecast: open deals, their amount, and the wins and value to expect from them.

    Parameters
    ----------
    scored : one row per open deal with ``win_probability``, ``expected_value`` and (optional) ``amount``,
        e.g. from :func:`score_open_opportunities`.
    by : a column to break the forecast down by (e.g. ``stage``); None for one row.
    spec : with ``by="stage"``, the funnel whose order the rows follow (else largest expected value first).

    Returns
    -------
    DataFrame ``[by,] open_deals, pipeline_amount, mean_win_probability, expected_wins, expected_value``:
    ``expected_wins`` is the sum of the win probabilities, ``expected_value`` of amount × win probability
    (deals without an amount add nothing to it).
    """
    amount = pl.col(s.AMOUNT) if s.AMOUNT in scored.columns else pl.lit(None, dtype=pl.Float64)
    agg = [
        pl.len().alias("open_deals"),
        amount.sum().alias("pipeline_amount"),
        pl.col(s.WIN_PROBABILITY).mean().alias("mean_win_probability"),
        pl.col(s.WIN_PROBABILITY).sum().alias("expected_wins"),
        pl.col(s.EXPECTED_VALUE).sum().alias(s.EXPECTED_VALUE),
    ]
    if by is None:
        return scored.select(agg)
    table = scored.group_by(by).agg(agg)
    if by == s.STAGE and spec is not None:
        return table.sort(spec.stage_order(pl.col(s.STAGE)))
    return table.sort(s.EXPECTED_VALUE, by, descending=[True, False], nulls_last=True)


def at_risk_customers(
    dataset: Dataset, model: SatisfactionModel, as_of: datetime, *, active_days: int = 365, top: int | None = 50
) -> pl.DataFrame:
    """Customers most likely to give a low score if asked now about their last order, with the reasons.

    Every customer who bought in the ``active_days`` before ``as_of`` is scored as a survey answered
    at ``as_of`` about their last order. The model only learnt from surveys answered within a few
    weeks of an order (``model.metadata["response_lag"]``): a customer whose last order is older
    than the 95th percentile of those lags is *out of range* — listed after the others, with a
    note, not ranked as if the model knew. Reasons that run against the customer's own last
    answer (a last CSAT of 1 said to raise satisfaction) are left out, and ``reasons_left_out``
    names them.

    Returns
    -------
    DataFrame ``customer_id, [name, owner,] p_low, expected_score, in_range, last_order,
    days_since_order, last_answer, last_csat, value_at_stake, risk_up, risk_down,
    reasons_left_out, note`` —
    in-range customers first, by ``p_low`` (P(score in the scale's bottom levels)) highest first;
    the ``top`` rows (all if None). ``risk_up``/``risk_down`` are the reasons in points of
    P(low) (:meth:`SatisfactionModel.risk_points`). ``value_at_stake`` is what the customer spent in the year
    before ``as_of``; the name and owner columns appear when the export has them
    (:func:`with_people`).
    """
    if not dataset.has("transactions"):
        raise ModelError(
            "the at-risk list needs the transactions table: it scores the customers who bought in the last year."
        )
    start = as_of - timedelta(days=active_days)
    last_orders = (
        dataset.lazy("transactions")
        .filter(pl.col(s.ORDERED_AT).is_between(start, as_of, closed="left") & (pl.col(s.AMOUNT) > 0))
        .sort(s.ORDERED_AT, s.ORDER_ID)
        .group_by(s.CUSTOMER_ID)
        .agg(pl.col(s.ORDER_ID).last(), pl.col(s.ORDERED_AT).last().alias("_last_order"))
        .sort(s.CUSTOMER_ID)
        .with_columns(pl.lit(as_of).alias(s.AS_OF))
        .pipe(collect)
    )
    rows = (
        build_features(dataset, last_orders.drop("_last_order").lazy())
        .pipe(collect)
        .join(last_orders.select(s.CUSTOMER_ID, "_last_order"), on=s.CUSTOMER_ID, how="left")
    )
    if rows.height == 0:
        raise ModelError(f"no customer bought in the {active_days} days before {as_of}; nobody to score.")
    lag = model.metadata.get("response_lag", {}) or {}
    column = lag.get("column") or ("days_since_order" if "days_since_order" in rows.columns else "recency_days")
    waited = rows[column] if column in rows.columns else pl.Series([None] * rows.height, dtype=pl.Float64)
    in_range = (
        (waited <= lag["p95"]).fill_null(False) if lag.get("p95") is not None else pl.Series([True] * rows.height)
    )
    # Probabilities for everyone (cheap), reasons (TreeSHAP, costly) only for the rows returned.
    levels = np.asarray(model.levels, dtype=float)
    warn_unseen(model.encoder, rows)
    proba = model.predict_proba(rows)
    ranked = rows.with_columns(
        pl.Series(s.P_LOW, model.low_share(proba)),
        pl.Series(s.EXPECTED_SCORE, proba @ levels),
        in_range.alias(s.IN_RANGE),
        waited.alias("_waited"),
    ).sort(s.IN_RANGE, s.P_LOW, s.CUSTOMER_ID, descending=[True, True, False])
    if top:
        ranked = ranked.head(top)
    explained = model.explain(ranked)
    notes = _at_risk_notes(ranked, lag)
    last_csat = (
        ranked["last_csat"] if "last_csat" in ranked.columns else pl.Series([None] * ranked.height, dtype=pl.Float64)
    )
    at_stake = ranked["spend_365d"] if "spend_365d" in ranked.columns else pl.Series([None] * ranked.height)
    listed = ranked.select(s.CUSTOMER_ID, s.P_LOW, s.EXPECTED_SCORE, s.IN_RANGE).with_columns(
        ranked["_last_order"].dt.date().alias("last_order"),
        ranked["_waited"].alias("days_since_order"),
        pl.Series("last_answer", _last_answers(dataset, ranked[s.CUSTOMER_ID], as_of), dtype=pl.String),
        last_csat.alias("last_csat"),
        at_stake.cast(pl.Float64).alias("value_at_stake"),
        explained["risk_up"],
        explained["risk_down"],
        explained["left_out"].alias("reasons_left_out"),
        pl.Series("note", notes, dtype=pl.String),
    )
    return with_people(dataset, listed, as_of)


def _last_answers(dataset: Dataset, customers: pl.Series, as_of: datetime) -> list[str | None]:
    """Each customer's last survey answer before ``as_of`` in words: ``CSAT 2, NPS 5 on 3 Jun 2026``."""
    if not dataset.has("surveys"):
        return [None] * customers.len()
    surveys = dataset.lazy("surveys")
    names = surveys.collect_schema().names()
    scores = [c for c in (s.CSAT, s.NPS) if c in names]
    if not scores or s.RESPONDED_AT not in names:
        return [None] * customers.len()
    last = (
        surveys.filter(pl.col(s.CUSTOMER_ID).is_in(customers.implode()) & (pl.col(s.RESPONDED_AT) < as_of))
        .sort(s.RESPONDED_AT)
        .group_by(s.CUSTOMER_ID)
        .agg(pl.col(s.RESPONDED_AT).last(), *(pl.col(c).last() for c in scores))
        .pipe(collect)
    )
    said = {}
    for row in last.iter_rows(named=True):
        parts = [f"{c.upper()} {row[c]:.0f}" for c in scores if row[c] is not None]
        when = row[s.RESPONDED_AT]
        said[row[s.CUSTOMER_ID]] = f"{', '.join(parts)} on {day_text(when)}" if parts else None
    return [said.get(c) for c in customers.to_list()]


def _at_risk_notes(ranked: pl.DataFrame, lag: dict[str, Any]) -> list[str]:
    notes = []
    for row in ranked.iter_rows(named=True):
        parts = []
        if not row[s.IN_RANGE] and lag.get("p95") is not None:
            waited = row["_waited"]
            parts.append(
                f"out of range: last order {waited:.0f} days ago; the model learnt from answers given within "
                f"{lag['p95']:.0f} days of an order"
                if waited is not None
                else "out of range: no order to ask about"
            )
        notes.append("; ".join(parts))
    return notes
