"""When deals close: a discrete-time model of winning and losing as competing risks.

An open deal seen at a moment (a *landmark*) is followed in steps — a week at a time for the
first 13 weeks, then four weeks at a time up to a year — until it is won, lost, or the data ends.
In each step it can be won, lost or stay open; a LightGBM multiclass model (and a multinomial
logit baseline) learns the probabilities of the three from the deal's state at the landmark
(stage, time already spent in it and since it began, value, source, the customer's features) and
the step. The cumulative incidence of winning by step k is the sum over earlier steps of
P(still open before the step) × P(won in the step), so won + lost + still open = 1 at every date.

Censoring: a landmark's steps stop where the data (or the training cut-off) ends, so every open
deal counts up to the last step fully observed: recent deals are neither dropped nor counted as
lost. Training landmarks are every ``every_days`` days; a deal open at several of them appears at
each, with its state as it was then.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from funnelmodels.config import FunnelSpec
from funnelmodels.data import schema as s
from funnelmodels.data.io import Dataset
from funnelmodels.errors import ModelError
from funnelmodels.features import build_transition_features, categorical_features, extra_features, feature_columns
from funnelmodels.frames import as_days, collect
from funnelmodels.funnel import build_transitions, data_end, with_stale_losses
from funnelmodels.models.boosting import booster_from_text, fit_booster
from funnelmodels.models.design import FeatureEncoder
from funnelmodels.models.persist import (
    booster_file,
    check_engine,
    damaged_model,
    member,
    model_metadata,
    read_model,
    write_model,
)

__all__ = [
    "CLOSE_ENGINES",
    "OUTCOMES",
    "CloseTimeModel",
    "aalen_johansen",
    "calibration_rows",
    "calibration_table",
    "close_time_calibration",
    "fit_close_time",
    "landmark_states",
    "model_against_aalen_johansen",
    "person_periods",
    "step_edges",
]

CloseEngine = Literal["lightgbm", "logit"]
CLOSE_ENGINES: tuple[CloseEngine, ...] = ("lightgbm", "logit")
OUTCOMES = ("open", "won", "lost")
"""The three outcomes of a step, in the order of the models' classes."""
FORMAT_VERSION = 1
EVERY_DAYS = 14
"""Days between training landmarks."""
HORIZON_DAYS = 364
CALENDAR_COLUMNS = ("step_quarter_month", "step_days_to_quarter_end")
KEEP_OPEN_ROWS = 50_000
"""Steps without an event the LightGBM fit keeps at most (a weighted random sample beyond it)."""
MAX_LANDMARK_ROWS = 120_000
"""Landmark rows (deals open at a landmark) a fit follows at most: beyond, a random share of the deals."""
CALENDAR_MARGIN = 0.02
"""The relative drop in log loss the calendar features must bring to be used."""
STEP_COLUMNS = ("step", "step_start_days", "step_days", *CALENDAR_COLUMNS)
LIGHTGBM_DEFAULTS: dict[str, Any] = {
    "objective": "multiclass",
    "num_class": 3,
    "learning_rate": 0.15,
    "num_leaves": 15,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "max_bin": 63,
    "num_boost_round": 150,
    "early_stopping_rounds": 20,
}


def step_edges(horizon_days: int = HORIZON_DAYS) -> np.ndarray:
    """Step ends in days from the landmark: every 7 days to 91, then every 28 until ``horizon_days``."""
    weekly = list(range(7, 92, 7))
    edges = [e for e in weekly if e <= max(horizon_days, 7)]
    while edges[-1] < horizon_days:
        edges.append(edges[-1] + 28)
    return np.asarray(edges, dtype=float)


def _spells(dataset: Dataset, end: datetime) -> pl.DataFrame:
    """Each stage spell up to ``end`` with the opportunity's won and lost moments (null: not by ``end``)."""
    events = dataset.lazy("stage_events").filter(pl.col(s.ENTERED_AT) < end)
    spec = dataset.spec
    transitions = build_transitions(events, spec, end=end)
    closed = with_stale_losses(events, spec, end=end)
    won = (
        closed.filter(pl.col(s.STAGE) == spec.won)
        .group_by(s.OPPORTUNITY_ID)
        .agg(pl.col(s.ENTERED_AT).min().alias("won_at"))
    )
    return (
        transitions.join(won, on=s.OPPORTUNITY_ID, how="left")
        .with_columns(pl.coalesce(s.EXITED_AT, pl.lit(end)).alias("_left"))
        .pipe(collect)
    )


def landmark_states(
    dataset: Dataset,
    moments: Sequence[datetime],
    *,
    end: datetime,
    features: bool = True,
) -> pl.DataFrame:
    """Every opportunity open at each moment, in the state it was in then, with what happened after.

    A deal is open at a moment when its last event strictly before it is a stage that is not won
    or lost (the stale rule applied at ``end``). ``won_at`` and ``lost_at`` are its outcome up to
    ``end`` (null: not by then).

    Returns
    -------
    DataFrame ``opportunity_id, customer_id, stage, entered_at, entry, opportunity_start, as_of,
    won_at, lost_at[, amount, source]`` and, with ``features``, the point-in-time features of
    :func:`funnelmodels.features.build_transition_features` as of each moment.
    """
    spells = _spells(dataset, end)
    grid = pl.DataFrame({s.AS_OF: sorted(set(moments))}, schema={s.AS_OF: pl.Datetime("us")})
    if grid.height == 0 or spells.height == 0:
        raise ModelError("no landmark to follow: the stage events are empty before the moments asked.")
    keep = [
        c
        for c in spells.columns
        if c
        not in (s.EXITED_AT, s.NEXT_STAGE, s.CONVERTED, s.CONVERTED_AT, s.CENSORED, s.DAYS_IN_STAGE, s.DAYS_TO_CONVERT)
    ]
    spells = spells.select(keep).with_columns(pl.col(s.ENTERED_AT).cast(pl.Datetime("us")))
    # A spell holds the moments after its entry and up to its exit (the next event, seen at it).
    states = spells.join_where(grid, pl.col(s.ENTERED_AT) < pl.col(s.AS_OF), pl.col("_left") >= pl.col(s.AS_OF)).filter(
        (pl.col(s.LOST_AT).is_null() | (pl.col(s.LOST_AT) >= pl.col(s.AS_OF)))
        & (pl.col("won_at").is_null() | (pl.col("won_at") >= pl.col(s.AS_OF)))
    )
    # Exits exactly at the moment leave two spells: the later entry is not yet seen, keep the earlier.
    states = (
        states.sort(s.OPPORTUNITY_ID, s.AS_OF, s.ENTERED_AT)
        .unique([s.OPPORTUNITY_ID, s.AS_OF], keep="last", maintain_order=True)
        .drop("_left")
        .sort(s.AS_OF, s.OPPORTUNITY_ID)
    )
    if not features:
        return states
    return build_transition_features(dataset, states.lazy()).pipe(collect)


def person_periods(states: pl.DataFrame, edges: np.ndarray, *, end: datetime) -> pl.DataFrame:
    """One row per landmark and step fully observed by ``end``, with the step's outcome.

    ``outcome`` is 0 (still open at the step's end), 1 (won in the step) or 2 (lost in it); a
    landmark's rows stop at its first won or lost step. A step that ends after ``end`` is not
    observed in full and is left out (censoring at its start), event or not.

    Returns
    -------
    ``states`` repeated per step with ``_landmark`` (the row of ``states``), ``step`` (1, 2, …),
    ``step_start_days``, ``step_days`` and ``outcome``.
    """
    starts = np.concatenate([[0.0], edges[:-1]])
    steps = pl.DataFrame(
        {"step": np.arange(1, edges.size + 1), "step_start_days": starts, "_step_end": edges},
        schema={"step": pl.Int32, "step_start_days": pl.Float64, "_step_end": pl.Float64},
    ).with_columns((pl.col("_step_end") - pl.col("step_start_days")).alias("step_days"))
    event_days = as_days(pl.min_horizontal(pl.col("won_at"), pl.col(s.LOST_AT)) - pl.col(s.AS_OF))
    won_first = pl.col("won_at").is_not_null() & (pl.col(s.LOST_AT).is_null() | (pl.col("won_at") <= pl.col(s.LOST_AT)))
    observed_days = as_days(pl.lit(end) - pl.col(s.AS_OF))
    frame = states.with_row_index("_landmark").with_columns(
        event_days.alias("_event_days"), won_first.alias("_won_first"), observed_days.alias("_observed_days")
    )
    expanded = frame.join(steps, how="cross").filter(
        (pl.col("_step_end") <= pl.col("_observed_days"))
        & (pl.col("_event_days").is_null() | (pl.col("step_start_days") < pl.col("_event_days")))
    )
    event_here = pl.col("_event_days").is_not_null() & (pl.col("_event_days") <= pl.col("_step_end"))
    return (
        _with_calendar(expanded)
        .with_columns(
            pl.when(event_here)
            .then(pl.when(pl.col("_won_first")).then(1).otherwise(2))
            .otherwise(0)
            .cast(pl.Int8)
            .alias("outcome")
        )
        .drop("_event_days", "_won_first", "_observed_days", "_step_end")
    )


def _with_calendar(frame: pl.DataFrame) -> pl.DataFrame:
    """Where each step falls in the calendar: the month of its quarter (1–3) and days from its end to the quarter's end.

    Sales close in waves at quarter ends in many businesses; these let the model see a step that
    holds one.
    """
    middle = pl.col(s.AS_OF) + pl.duration(
        microseconds=((pl.col("step_start_days") + pl.col("step_days") / 2) * 86_400e6).cast(pl.Int64)
    )
    stop = pl.col(s.AS_OF) + pl.duration(
        microseconds=((pl.col("step_start_days") + pl.col("step_days")) * 86_400e6).cast(pl.Int64)
    )
    quarter_end = stop.dt.truncate("1q").dt.offset_by("1q")
    return frame.with_columns(
        ((middle.dt.month() - 1) % 3 + 1).cast(pl.Int8).alias("step_quarter_month"),
        as_days(quarter_end - stop).alias("step_days_to_quarter_end"),
    )


def _features(frame: pl.DataFrame, dataset: Dataset) -> tuple[list[str], tuple[str, ...]]:
    names = feature_columns(frame, exclude=(s.DAYS_IN_STAGE, "stage_entry"), extra=extra_features(dataset))
    names = [n for n in names if frame[n].null_count() < frame.height]
    if s.STAGE not in names:
        names.insert(0, s.STAGE)
    names += list(STEP_COLUMNS)
    return names, categorical_features(frame, names)


def _landmarks(first: datetime, end: datetime, every_days: int) -> list[datetime]:
    start = first + timedelta(days=every_days)
    out = []
    moment = datetime(start.year, start.month, start.day)
    while moment < end - timedelta(days=7):
        out.append(moment)
        moment += timedelta(days=every_days)
    return out


def fit_close_time(
    dataset: Dataset,
    *,
    engine: CloseEngine = "lightgbm",
    end: datetime | None = None,
    seed: int = 0,
    every_days: int = EVERY_DAYS,
    horizon_days: int = HORIZON_DAYS,
    params: Mapping[str, Any] | None = None,
    calendar: bool | None = None,
    max_landmark_rows: int = MAX_LANDMARK_ROWS,
) -> CloseTimeModel:
    """Fit the close-time model on every landmark before ``end`` (default: the data's end).

    LightGBM takes its number of rounds from the latest 20% of landmarks (out of time), then is
    refitted on all of them with that many rounds. ``calendar``: use the step's place in the quarter
    as a feature (True), not (False), or whichever predicts the latest landmarks better (None).
    ``max_landmark_rows``: above that many deals open at landmarks, a random share of the deals (all
    their landmarks) is followed, and a note says so.
    """
    events = dataset.lazy("stage_events")
    end = end or data_end(events)
    spec = dataset.spec
    known = events.filter(pl.col(s.ENTERED_AT) < end)
    first, first_close = (
        known.select(
            pl.col(s.ENTERED_AT).min().alias("_first"),
            pl.col(s.ENTERED_AT).filter(pl.col(s.STAGE).is_in([spec.won, spec.lost])).min().alias("_close"),
        )
        .pipe(collect)
        .row(0)
    )
    if first is None:
        raise ModelError("the close-time model needs stage events; the stage_events table is empty.")
    if first_close is None:
        raise ModelError(
            f"no deal was won or lost before {end:%Y-%m-%d}: the close-time model has nothing to learn from."
        )
    # Before the first recorded close an export shows no outcome at all: a sign its history was cut
    # (deals closed earlier were left out). Landmarks start there, not at the first event.
    start = max(first, first_close - timedelta(days=every_days))
    notes = []
    if (first_close - first).days > 60:
        notes.append(
            f"The first deal won or lost is on {first_close:%Y-%m-%d}, {(first_close - first).days} days after "
            "the first event: the export seems to leave out deals closed before it, so the model follows deals "
            "from then on."
        )
    moments = _landmarks(start, end, every_days)
    if len(moments) < 4:
        raise ModelError(
            f"the close-time model needs at least 4 landmarks {every_days} days apart before {end:%Y-%m-%d}; "
            f"the stage events span {(end - first).days} days."
        )
    edges = step_edges(horizon_days)
    states = landmark_states(dataset, moments, end=end, features=False)
    every_state = states.height
    if every_state > max_landmark_rows:
        # Each landmark row becomes up to 23 steps with every feature: on a million customers that is
        # tens of millions of rows (14 GB). A random share of the deals, all their landmarks kept, fits the
        # same hazards; their open steps are sampled again below (KEEP_OPEN_ROWS).
        share = max_landmark_rows / every_state
        chance = pl.col(s.OPPORTUNITY_ID).hash(seed + 17) % 1_000_000 < int(share * 1_000_000)
        states = states.filter(chance)
        notes.append(
            f"Fitted on a random {share:.0%} of the deals open at the landmarks ({states.height:,} of "
            f"{every_state:,} landmark rows), every landmark of a deal kept."
        )
    states = build_transition_features(dataset, states.lazy()).pipe(collect)
    rows = person_periods(states, edges, end=end)
    counts = rows["outcome"].value_counts()
    events_seen = dict(counts.iter_rows())
    if events_seen.get(1, 0) < 10 or events_seen.get(2, 0) < 10:
        raise ModelError(
            f"the close-time model needs at least 10 wins and 10 losses after its landmarks; it has "
            f"{events_seen.get(1, 0)} and {events_seen.get(2, 0)} before {end:%Y-%m-%d}."
        )
    names, categorical = _features(rows, dataset)
    encoder = FeatureEncoder.fit(rows, names, categorical)
    metadata = model_metadata(
        FORMAT_VERSION,
        seed=seed,
        params=dict(params or {}),
        train_rows=rows.height,
        validation_rows=0,
        notes=notes,
        extra={
            "end": end.isoformat(),
            "landmarks_from": moments[0].isoformat(),
            "every_days": every_days,
            "landmarks": len(moments),
            "landmark_rows": states.height,
            "landmark_rows_before_sampling": every_state,
            "wins": events_seen.get(1, 0),
            "losses": events_seen.get(2, 0),
        },
    )
    y = rows["outcome"].to_numpy().astype(np.int32)
    if engine == "lightgbm":
        state, encoder, note = _fit_lightgbm(rows, y, encoder, params or {}, seed, calendar)
        metadata["validation_rows"] = state.pop("validation_rows")
        if note:
            metadata["notes"].append(note)
    elif engine == "logit":
        state = _fit_logit(rows, y)
    else:
        raise ModelError(f"unknown close-time engine {engine!r}; choose one of {', '.join(CLOSE_ENGINES)}.")
    return CloseTimeModel(engine, encoder, dataset.spec, edges, state, metadata)


def _fit_lightgbm(
    rows: pl.DataFrame,
    y: np.ndarray,
    encoder: FeatureEncoder,
    params: Mapping[str, Any],
    seed: int,
    calendar: bool | None,
) -> tuple[dict[str, Any], FeatureEncoder, str]:
    """Rounds from the latest 20% of landmarks, then a refit on all; with or without the calendar.

    ``calendar=None`` fits both (early-stopped on the latest landmarks) and keeps the calendar
    features only when they lower that slice's log loss by :data:`CALENDAR_MARGIN` or more:
    quarter-end waves are real in some businesses and noise in others. Returns the state, the encoder
    used and a note on the choice.
    """
    moments = rows[s.AS_OF].unique().sort()
    cut = moments[int(0.8 * moments.len())]
    recent = (rows[s.AS_OF] >= cut).to_numpy()
    fixed = {"objective": "multiclass", "num_class": 3}
    plain = FeatureEncoder(
        numeric=tuple(c for c in encoder.numeric if c not in CALENDAR_COLUMNS),
        categorical=encoder.categorical,
        levels=encoder.levels,
    )
    options = {True: encoder, False: plain} if calendar is None else {calendar: encoder if calendar else plain}
    # Steps a deal stays open through outnumber the wins and losses many times over: a sample of them,
    # weighted up by the inverse of its rate, fits the same hazards at a fraction of the cost.
    rate = min(1.0, KEEP_OPEN_ROWS / max(1, int((y == 0).sum())))
    rng = np.random.default_rng(seed)
    keep = (y != 0) | (rng.random(y.size) < rate)
    weight = np.where(y == 0, 1.0 / rate, 1.0)
    rows, y, recent, weight = rows.filter(pl.Series(keep)), y[keep], recent[keep], weight[keep]
    tried = {}
    for key, enc in options.items():
        X = enc.matrix(rows)
        booster, rounds = fit_booster(
            X[~recent],
            y[~recent],
            enc,
            defaults=LIGHTGBM_DEFAULTS,
            params=params,
            seed=seed,
            fixed=fixed,
            validation=(X[recent], y[recent]),
            weight=weight[~recent],
            validation_weight=weight[recent],
        )
        tried[key] = (float(booster.best_score["valid_0"]["multi_logloss"]), rounds, X)
    # The calendar must earn its place: a clearly lower log loss, not a tie won by chance.
    use = min(tried) if len(tried) == 1 else tried[True][0] < (1 - CALENDAR_MARGIN) * tried[False][0]
    loss, rounds, X = tried[use]
    note = ""
    if len(tried) == 2:
        note = (
            f"calendar features (where in the quarter a week falls) {'used' if use else 'not used'}: log loss on the "
            f"latest landmarks {tried[True][0]:.5f} with them, {tried[False][0]:.5f} without."
        )
    booster, _ = fit_booster(
        X,
        y,
        options[use],
        defaults=LIGHTGBM_DEFAULTS,
        params=params,
        seed=seed,
        fixed=fixed,
        rounds=max(rounds, 10),
        weight=weight,
    )
    state = {
        "model": booster.model_to_string(),
        "rounds": max(rounds, 10),
        "open_rows_kept": rate,
        "validation_rows": int(recent.sum()),
        "validation_log_loss": loss,
        "calendar": bool(use),
        "_booster": booster,
    }
    return state, options[use], note


# -- the multinomial logit baseline: a small, readable design ---------------------------------------

_LOGIT_STEPS = ((1, 1), (2, 2), (3, 4), (5, 8), (9, 13), (14, 99))


def _logit_design(frame: pl.DataFrame, stages: Sequence[str], centre: Mapping[str, float]) -> np.ndarray:
    step = frame["step"].to_numpy()
    cols = [np.ones(frame.height)]
    cols += [(frame[s.STAGE].cast(pl.String) == st).to_numpy().astype(float) for st in stages[1:]]
    cols += [((step >= lo) & (step <= hi)).astype(float) for lo, hi in _LOGIT_STEPS[1:]]
    cols.append(np.log(frame["step_days"].to_numpy() / 7.0))
    for name in (s.DAYS_IN_STAGE_SO_FAR, "days_since_opportunity_start", "deal_amount"):
        values = frame[name].cast(pl.Float64).to_numpy() if name in frame.columns else np.full(frame.height, np.nan)
        logged = np.log1p(np.clip(values, 0, None))
        cols.append(np.where(np.isnan(logged), centre.get(name, 0.0), logged) - centre.get(name, 0.0))
    return np.column_stack(cols)


def _fit_logit(rows: pl.DataFrame, y: np.ndarray, ridge: float = 1e-3) -> dict[str, Any]:
    from scipy.optimize import minimize

    stages = sorted(rows[s.STAGE].cast(pl.String).unique().to_list())
    centre = {}
    for name in (s.DAYS_IN_STAGE_SO_FAR, "days_since_opportunity_start", "deal_amount"):
        if name in rows.columns:
            mean = np.nanmean(np.log1p(np.clip(rows[name].cast(pl.Float64).to_numpy(), 0, None)))
            centre[name] = float(mean) if np.isfinite(mean) else 0.0
    X = _logit_design(rows, stages, centre)
    n, p = X.shape
    Y = np.eye(3)[y]

    def loss(flat: np.ndarray) -> tuple[float, np.ndarray]:
        B = np.column_stack([np.zeros(p), flat.reshape(p, 2)])
        eta = X @ B
        eta -= eta.max(axis=1, keepdims=True)
        log_p = eta - np.log(np.exp(eta).sum(axis=1, keepdims=True))
        value = -(Y * log_p).sum() / n + ridge * (flat**2).sum()
        grad = X.T @ (np.exp(log_p) - Y) / n
        return value, grad[:, 1:].ravel() + 2 * ridge * flat

    fitted = minimize(loss, np.zeros(2 * p), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return {"stages": stages, "centre": centre, "coefficients": fitted.x.reshape(p, 2).tolist()}


# -- the model ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CloseTimeModel:
    """P(won), P(lost) and P(still open) of a deal by any date after the moment it is seen.

    ``edges``: the step ends in days. :meth:`curves` gives the cumulative incidence of winning and
    losing at each edge; :meth:`by_days` at any number of days (linear between edges, flat
    after the last: the deals still open then stay open).
    """

    engine: str
    encoder: FeatureEncoder
    spec: FunnelSpec
    edges: np.ndarray
    state: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def horizon_days(self) -> float:
        """The last step's end: beyond it the model says nothing more."""
        return float(self.edges[-1])

    def _booster(self) -> Any:
        booster = self.state.get("_booster")
        if booster is None:
            booster = booster_from_text(self.state["model"])
            self.state["_booster"] = booster
        return booster

    def hazards(self, states: pl.DataFrame) -> np.ndarray:
        """Per deal and step, P(open, won, lost in the step | open at its start): shape (deals, steps, 3)."""
        n, k = states.height, self.edges.size
        if n == 0:
            return np.zeros((0, k, 3))
        starts = np.concatenate([[0.0], self.edges[:-1]])
        index = np.repeat(np.arange(n), k)
        expanded = _with_calendar(
            states[index].with_columns(
                pl.Series("step", np.tile(np.arange(1, k + 1), n), dtype=pl.Int32),
                pl.Series("step_start_days", np.tile(starts, n)),
                pl.Series("step_days", np.tile(self.edges - starts, n)),
            )
        )
        if self.engine == "lightgbm":
            proba = self._booster().predict(self.encoder.matrix(expanded))
        else:
            X = _logit_design(expanded, self.state["stages"], self.state["centre"])
            coef = np.asarray(self.state["coefficients"])
            eta = np.column_stack([np.zeros(X.shape[0]), X @ coef])
            eta -= eta.max(axis=1, keepdims=True)
            proba = np.exp(eta)
            proba /= proba.sum(axis=1, keepdims=True)
        return np.asarray(proba).reshape(n, k, 3)

    def curves(self, states: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Cumulative P(won) and P(lost) at each step end: two arrays of shape (deals, steps)."""
        h = self.hazards(states)
        survive = np.cumprod(h[:, :, 0], axis=1)
        before = np.concatenate([np.ones((h.shape[0], 1)), survive[:, :-1]], axis=1)
        return np.cumsum(before * h[:, :, 1], axis=1), np.cumsum(before * h[:, :, 2], axis=1)

    def by_days(self, states: pl.DataFrame, days: float | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """P(won), P(lost), P(still open) by ``days`` after each deal's ``as_of`` (a number or one per deal)."""
        won, lost = self.curves(states)
        return at_days(self.edges, won, lost, days)

    # -- persistence --
    def save(self, folder: str | Path) -> Path:
        """Write the model as JSON (and LightGBM's text model), nothing executable."""
        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        state = {k: v for k, v in self.state.items() if not k.startswith("_")}
        if self.engine == "lightgbm":
            (root / booster_file()).write_text(state.pop("model"), encoding="utf-8")
            state["model_file"] = booster_file()
        write_model(
            root,
            kind="close_time",
            engine=self.engine,
            encoder=self.encoder,
            state=state | {"edges": self.edges.tolist()},
            metadata=self.metadata,
            spec=self.spec.to_json(),
        )
        return root

    @classmethod
    def load(cls, folder: str | Path, *, engine: str | None = None) -> CloseTimeModel:
        """Load a model written by :meth:`save`; a damaged folder raises ModelError."""
        root = Path(folder)
        with damaged_model(root):
            data = read_model(root, kind="close_time", format_version=FORMAT_VERSION)
            check_engine(root, data["engine"], engine)
            state = dict(data["state"])
            edges = np.asarray(state.pop("edges"), dtype=float)
            if data["engine"] == "lightgbm":
                state["model"] = member(root, state.pop("model_file")).read_text(encoding="utf-8")
                state["_booster"] = booster_from_text(state["model"])
            elif data["engine"] != "logit":
                raise ModelError(f"model folder damaged: {root} holds an unknown engine {data['engine']!r}.")
            return cls(
                engine=data["engine"],
                encoder=FeatureEncoder.from_json(data["encoder"]),
                spec=FunnelSpec.from_json(data["spec"]),
                edges=edges,
                state=state,
                metadata=data["metadata"],
            )


def at_days(
    edges: np.ndarray, won: np.ndarray, lost: np.ndarray, days: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interpolate cumulative incidences given at ``edges`` to ``days`` (0 at day 0, flat after the last)."""
    n = won.shape[0]
    grid = np.concatenate([[0.0], edges])
    w = np.concatenate([np.zeros((n, 1)), won], axis=1)
    lo = np.concatenate([np.zeros((n, 1)), lost], axis=1)
    d = np.clip(np.broadcast_to(np.asarray(days, dtype=float), (n,)), 0.0, grid[-1])
    right = np.clip(np.searchsorted(grid, d, side="left"), 1, grid.size - 1)
    left = right - 1
    frac = (d - grid[left]) / (grid[right] - grid[left])
    rows = np.arange(n)
    p_won = w[rows, left] + frac * (w[rows, right] - w[rows, left])
    p_lost = lo[rows, left] + frac * (lo[rows, right] - lo[rows, left])
    return p_won, p_lost, 1.0 - p_won - p_lost


# -- the non-parametric check --------------------------------------------------------------------------


def aalen_johansen(
    states: pl.DataFrame,
    *,
    end: datetime,
    edges: np.ndarray | None = None,
    by: Sequence[str] = (s.STAGE,),
    boot: int = 200,
    seed: int = 0,
) -> pl.DataFrame:
    """Cumulative incidence of winning and losing after a landmark, per group, without a model.

    The Aalen–Johansen estimator on the step grid: at each step, the deals of the group still open
    and observed through it (the risk set), the wins and losses among them; P(won by step k) sums
    P(open before the step) × wins / at risk. 95% intervals are percentiles of a bootstrap that
    resamples opportunities (a deal seen at several landmarks moves as one). Steps after the last one
    any deal of the group is watched through are NaN: nothing is known there.

    Returns
    -------
    DataFrame ``[by…], days, at_risk, won, won_low, won_high, lost, lost_low, lost_high``.
    """
    edges = step_edges() if edges is None else edges
    rows = person_periods(states.select(s.OPPORTUNITY_ID, s.AS_OF, "won_at", s.LOST_AT, *by), edges, end=end)
    if rows.height == 0:
        raise ModelError("no step is observed after the landmarks: nothing to estimate.")
    ids, opp_index = np.unique(rows[s.OPPORTUNITY_ID].to_numpy(), return_inverse=True)
    rng = np.random.default_rng(seed)
    weights = rng.poisson(1.0, (boot, ids.size)).astype(float)
    out = []
    keys = rows.select(*by).unique().sort(by).iter_rows() if by else [()]
    step = rows["step"].to_numpy() - 1
    outcome = rows["outcome"].to_numpy()
    for key in keys:
        mask = np.ones(rows.height, dtype=bool)
        for name, value in zip(by, key, strict=True):
            mask &= (
                (rows[name] == value).fill_null(False).to_numpy()
                if value is not None
                else rows[name].is_null().to_numpy()
            )
        k, o, who = step[mask], outcome[mask], opp_index[mask]
        point = _cif(k, o, np.ones(k.size), edges.size)
        boots = np.stack([_cif(k, o, weights[b, who], edges.size) for b in range(boot)])
        at_risk = np.bincount(k, minlength=edges.size)
        with warnings.catch_warnings():
            # Steps beyond the last one watched have no estimate in any resample: NaN, said in the docstring.
            warnings.simplefilter("ignore", RuntimeWarning)
            lows = np.nanpercentile(boots, 2.5, axis=0)
            highs = np.nanpercentile(boots, 97.5, axis=0)
        out.append(
            pl.DataFrame(
                {
                    **{name: [value] * edges.size for name, value in zip(by, key, strict=True)},
                    "days": edges,
                    "at_risk": at_risk,
                    "won": point[0],
                    "won_low": lows[0],
                    "won_high": highs[0],
                    "lost": point[1],
                    "lost_low": lows[1],
                    "lost_high": highs[1],
                }
            )
        )
    return pl.concat(out, how="vertical_relaxed")


def _cif(step: np.ndarray, outcome: np.ndarray, weight: np.ndarray, k: int) -> np.ndarray:
    """Aalen–Johansen cumulative incidences (won, lost) at each step, from weighted person-period rows."""
    at_risk = np.bincount(step, weights=weight, minlength=k)
    won = np.bincount(step, weights=weight * (outcome == 1), minlength=k)
    lost = np.bincount(step, weights=weight * (outcome == 2), minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        h_won = np.where(at_risk > 0, won / at_risk, np.nan)
        h_lost = np.where(at_risk > 0, lost / at_risk, np.nan)
    # Beyond the last step with deals at risk, nothing is known: the curves stop there.
    survive = np.cumprod(1 - np.nan_to_num(h_won) - np.nan_to_num(h_lost))
    before = np.concatenate([[1.0], survive[:-1]])
    cif = np.stack([np.cumsum(before * np.nan_to_num(h_won)), np.cumsum(before * np.nan_to_num(h_lost))])
    cif[:, np.isnan(h_won)] = np.nan
    return cif


# -- calibration of P(won by a date), out of time --------------------------------------------------------


def calibration_rows(
    states: pl.DataFrame, won: np.ndarray, lost: np.ndarray, edges: np.ndarray, *, end: datetime, days: Sequence[int]
) -> pl.DataFrame:
    """Per deal and number of days d: the predicted P(won within d) and whether it was, where d is observed.

    ``states``: deals at their ``as_of`` with ``won_at``/``lost_at`` known up to ``end``; ``won``/``lost``:
    their curves (:meth:`CloseTimeModel.curves`). A d whose end falls after ``end`` is left out.
    """
    won_days = states.select(as_days(pl.col("won_at") - pl.col(s.AS_OF)).alias("d"))["d"].to_numpy()
    lost_first = (
        states.select(
            pl.col(s.LOST_AT).is_not_null() & (pl.col("won_at").is_null() | (pl.col(s.LOST_AT) < pl.col("won_at")))
        )
        .to_series()
        .to_numpy()
    )
    room = states.select(as_days(pl.lit(end) - pl.col(s.AS_OF)).alias("r"))["r"].to_numpy()
    parts = []
    for d in days:
        p, _, _ = at_days(edges, won, lost, float(d))
        y = (np.nan_to_num(won_days, nan=np.inf) <= d) & ~lost_first
        seen = room >= d
        parts.append(
            pl.DataFrame(
                {
                    s.OPPORTUNITY_ID: states[s.OPPORTUNITY_ID].filter(pl.Series(seen)),
                    s.AS_OF: states[s.AS_OF].filter(pl.Series(seen)),
                    "days": np.full(int(seen.sum()), d),
                    "predicted": p[seen],
                    "won": y[seen],
                }
            )
        )
    return pl.concat(parts, how="vertical_relaxed")


def calibration_table(rows: pl.DataFrame, *, bins: int = 5) -> pl.DataFrame:
    """Predicted against realised P(won within d), overall and per probability quintile, with Wilson 95% intervals.

    Returns
    -------
    DataFrame ``days, bin, deals, predicted, realised, low, high``: one ``bin = "all"`` row per d, then
    one row per quintile of the predictions (when there are at least 20 deals per quintile).
    """
    from statsmodels.stats.proportion import proportion_confint

    out = []
    for d in sorted(rows["days"].unique().to_list()):
        mine = rows.filter(pl.col("days") == d)
        p, y = mine["predicted"].to_numpy(), mine["won"].to_numpy()
        groups = [("all", np.ones(p.size, dtype=bool))]
        if p.size >= bins * 20:
            cuts = np.quantile(p, np.linspace(0, 1, bins + 1)[1:-1])
            which = np.searchsorted(cuts, p, side="right")
            groups += [(f"{i + 1} of {bins}", which == i) for i in range(bins)]
        for name, mask in groups:
            k, n = int(y[mask].sum()), int(mask.sum())
            if n == 0:
                continue
            low, high = proportion_confint(k, n, method="wilson")
            out.append(
                {
                    "days": int(d),
                    "bin": name,
                    "deals": n,
                    "predicted": float(p[mask].mean()),
                    "realised": k / n,
                    "low": float(low),
                    "high": float(high),
                }
            )
    return pl.DataFrame(out)


def close_time_calibration(
    dataset: Dataset,
    model: CloseTimeModel,
    as_of: datetime,
    *,
    days: Sequence[int] = (30, 60, 90),
    bins: int = 5,
) -> pl.DataFrame:
    """P(won by ``as_of`` + d) against what happened, for the deals open at ``as_of`` (:func:`calibration_table`).

    Fit ``model`` on data before ``as_of`` (``fit_close_time(..., end=as_of)``); the outcomes are
    read from ``dataset`` after it, so ``as_of`` + the longest d must be within the data.
    """
    end = data_end(dataset.lazy("stage_events"))
    if as_of + timedelta(days=max(days)) > end + timedelta(days=1):
        raise ModelError(
            f"the calibration of P(won within {max(days)} days) needs data to "
            f"{as_of + timedelta(days=max(days)):%Y-%m-%d}; it ends {end:%Y-%m-%d}."
        )
    states = landmark_states(dataset, [as_of], end=end)
    won, lost = model.curves(states)
    return calibration_table(calibration_rows(states, won, lost, model.edges, end=end, days=days), bins=bins)


def model_against_aalen_johansen(
    states: pl.DataFrame,
    won: np.ndarray,
    lost: np.ndarray,
    edges: np.ndarray,
    *,
    end: datetime,
    by: Sequence[str] = (s.STAGE,),
    days: Sequence[int] = (30, 60, 90),
    boot: int = 200,
    seed: int = 0,
) -> pl.DataFrame:
    """The model's mean P(won) and P(lost) by d days beside the Aalen–Johansen estimate for the same deals.

    Returns
    -------
    DataFrame ``[by…], days, deals, model_won, won, won_low, won_high, model_lost, lost, lost_low, lost_high``
    (the unprefixed columns are Aalen–Johansen's, with bootstrap 95% intervals).
    """
    curves = aalen_johansen(states, end=end, edges=edges, by=by, boot=boot, seed=seed)
    out = []
    keys = states.select(*by).unique().sort(by).iter_rows() if by else [()]
    for key in keys:
        mask = np.ones(states.height, dtype=bool)
        where = pl.lit(True)
        for name, value in zip(by, key, strict=True):
            mask &= (states[name] == value).fill_null(False).to_numpy()
            where = where & (pl.col(name) == value)
        curve = curves.filter(where)
        grid = np.concatenate([[0.0], curve["days"].to_numpy()])
        for d in days:
            p_won, p_lost, _ = at_days(edges, won[mask], lost[mask], float(d))
            row: dict[str, Any] = dict(zip(by, key, strict=True))
            row |= {
                "days": d,
                "deals": int(mask.sum()),
                "model_won": float(p_won.mean()),
                "model_lost": float(p_lost.mean()),
            }
            for column in ("won", "won_low", "won_high", "lost", "lost_low", "lost_high"):
                values = np.concatenate([[0.0], curve[column].to_numpy()])
                row[column] = float(np.interp(d, grid, values)) if np.isfinite(values).all() else None
            out.append(row)
    return pl.DataFrame(out)
