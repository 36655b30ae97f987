"""Backtests of the pipeline forecast: score the past as it was, compare with what happened.

At each past moment the dataset is cut to what was known then (every table before the moment),
the models are trained on that past only, the opportunities open at the moment are scored, and
their expected value is set against the value actually won afterwards (by the data's end).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from funnelmodels.data import schema as s
from funnelmodels.data.io import Dataset
from funnelmodels.errors import ModelError
from funnelmodels.frames import collect
from funnelmodels.funnel import with_stale_losses
from funnelmodels.models.conversion import Engine
from funnelmodels.models.predict import pipeline_value, score_open_opportunities
from funnelmodels.models.train import train_conversion
from funnelmodels.segments import AGE_BANDS, age_band

__all__ = ["PipelineBacktest", "backtest_pipeline", "dataset_before"]

_TIME = {
    "customers": s.CREATED_AT,
    "transactions": s.ORDERED_AT,
    "stage_events": s.ENTERED_AT,
    "surveys": s.RESPONDED_AT,
}


def dataset_before(dataset: Dataset, moment: datetime) -> Dataset:
    """The dataset as it stood at ``moment``: every table cut to rows strictly before it."""
    tables = {
        name: frame.filter(pl.col(_TIME[name]) < moment) if name in _TIME else frame
        for name, frame in dataset.tables.items()
    }
    return replace(dataset, tables=tables)


@dataclass(frozen=True)
class PipelineBacktest:
    """Forecast against outcome at past moments.

    ``moments``: per moment, ``moment, open_deals, pipeline_amount, expected_value, realised_value,
    ratio (expected / realised), expected_wins, realised_wins``. ``by_age``: per moment and age
    band, ``deals, mean_win_probability, realised_win_rate, rate_low, rate_high`` (Wilson 95%).
    ``scored``: every scored opportunity with its realised outcome (``won``).
    """

    moments: pl.DataFrame
    by_age: pl.DataFrame
    scored: pl.DataFrame


def _wins_after(dataset: Dataset, moment: datetime) -> pl.DataFrame:
    events = with_stale_losses(dataset.lazy("stage_events"), dataset.spec)
    return (
        events.filter((pl.col(s.STAGE) == dataset.spec.won) & (pl.col(s.ENTERED_AT) >= moment))
        .select(s.OPPORTUNITY_ID, pl.lit(True).alias("won"))
        .unique(s.OPPORTUNITY_ID)
        .pipe(collect)
    )


def backtest_pipeline(
    dataset: Dataset,
    moments: Sequence[datetime],
    *,
    engine: Engine = "lightgbm",
    seed: int = 0,
    params: dict[str, dict[str, Any]] | None = None,
) -> PipelineBacktest:
    """Train on the past of each moment, score what was open then, and compare with what was won.

    The realised value of a moment is the amount of the opportunities open at it that were won
    afterwards, up to the data's end: choose moments far enough back for their deals to have
    closed (a full sales cycle before the end).
    """
    from statsmodels.stats.proportion import proportion_confint

    summaries, scored_all = [], []
    for moment in moments:
        past = dataset_before(dataset, moment)
        if not past.has("stage_events") or past.tables["stage_events"].height == 0:
            raise ModelError(f"no stage event before {moment}: nothing to backtest there.")
        model = train_conversion(past, engines=(engine,), seed=seed, params=params).models[engine]
        scored = score_open_opportunities(past, model, moment, reasons=False).join(
            _wins_after(dataset, moment), on=s.OPPORTUNITY_ID, how="left"
        )
        scored = scored.with_columns(
            pl.col("won").fill_null(False),
            pl.lit(moment).alias("moment"),
            ((pl.lit(moment) - pl.col(s.OPPORTUNITY_START)).dt.total_seconds() / 86_400).alias("age_days"),
        )
        scored_all.append(scored)
        realised = scored.select(
            pl.col(s.AMOUNT).filter(pl.col("won")).sum().alias("realised_value"),
            pl.col("won").sum().alias("realised_wins"),
        )
        summaries.append(
            pl.concat([pipeline_value(scored), realised], how="horizontal").select(
                pl.lit(moment).alias("moment"), pl.all()
            )
        )
    scored = pl.concat(scored_all, how="vertical_relaxed")
    table = pl.concat(summaries).with_columns((pl.col(s.EXPECTED_VALUE) / pl.col("realised_value")).alias("ratio"))
    order = [label for *_, label in AGE_BANDS]
    by_age = (
        scored.with_columns(age_band(pl.col("age_days")).alias("age"))
        .group_by("moment", "age")
        .agg(
            pl.len().alias("deals"),
            pl.col(s.WIN_PROBABILITY).mean().alias("mean_win_probability"),
            pl.col("won").sum().alias("wins"),
        )
        .sort("moment", pl.col("age").replace_strict(order, range(len(order))))
    )
    low, high = proportion_confint(by_age["wins"].to_numpy(), by_age["deals"].to_numpy(), method="wilson")
    by_age = by_age.with_columns(
        (pl.col("wins") / pl.col("deals")).alias("realised_win_rate"),
        pl.Series("rate_low", np.asarray(low, dtype=float)),
        pl.Series("rate_high", np.asarray(high, dtype=float)),
    )
    return PipelineBacktest(moments=table, by_age=by_age, scored=scored)
