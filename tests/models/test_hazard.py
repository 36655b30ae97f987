"""When deals close: landmark rows, steps by hand, Aalen–Johansen by hand, curves that add up, maturity."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from funnelmodels.data import schema as s
from funnelmodels.data.io import load_dataset
from funnelmodels.data.synthetic import generate_dataset, open_win_probability, write_dataset
from funnelmodels.errors import ModelError
from funnelmodels.models.hazard import (
    CloseTimeModel,
    aalen_johansen,
    at_days,
    close_time_calibration,
    fit_close_time,
    landmark_states,
    person_periods,
    step_edges,
)

L1, L2 = datetime(2025, 1, 1), datetime(2025, 1, 21)
END = datetime(2025, 1, 31)


def _states() -> pl.DataFrame:
    """Four deals: A won on day 3, B lost on day 10, D won on day 12 (seen at L1, 30 days before the end);
    C seen at L2, 10 days before the end, still open then."""
    return pl.DataFrame(
        {
            s.OPPORTUNITY_ID: ["A", "B", "C", "D"],
            s.AS_OF: [L1, L1, L2, L1],
            "won_at": [L1 + timedelta(days=3), None, None, L1 + timedelta(days=12)],
            s.LOST_AT: [None, L1 + timedelta(days=10), None, None],
            s.STAGE: ["lead"] * 4,
        },
        schema_overrides={"won_at": pl.Datetime("us"), s.LOST_AT: pl.Datetime("us"), s.AS_OF: pl.Datetime("us")},
    )


def test_steps_are_weekly_then_four_weekly() -> None:
    edges = step_edges(364)
    assert edges[:13].tolist() == [7.0 * k for k in range(1, 14)]
    assert np.diff(edges[13:]).tolist() == [28.0] * (edges.size - 14)
    assert edges[-1] >= 364


def test_person_periods_by_hand() -> None:
    rows = person_periods(_states(), step_edges(), end=END)
    got = {o: rows.filter(pl.col(s.OPPORTUNITY_ID) == o)["outcome"].to_list() for o in "ABCD"}
    # A: won in step 1 (days 0–7). B: open through step 1, lost in step 2 (day 10). D: won in step 2 (day 12).
    # C: 10 days to the end, so only step 1 is watched in full; step 2 is censored at its start.
    assert got == {"A": [1], "B": [0, 2], "C": [0], "D": [0, 1]}
    # An event inside a step that is not watched in full is left out with the step, like the others.
    late = (
        _states()
        .filter(pl.col(s.OPPORTUNITY_ID) == "D")
        .with_columns(
            pl.lit(L2).cast(pl.Datetime("us")).alias(s.AS_OF), (pl.lit(L2) + timedelta(days=9)).alias("won_at")
        )
    )
    assert person_periods(late, step_edges(), end=L2 + timedelta(days=10))["outcome"].to_list() == [0]


def test_aalen_johansen_by_hand() -> None:
    # Step 1: 4 at risk, A won → P(won) 1/4. Step 2: B and D at risk (A closed, C censored), one won,
    # one lost → P(won) = 1/4 + 3/4 × 1/2 = 5/8, P(lost) = 3/4 × 1/2 = 3/8. The won share of the closed
    # deals (2 of 3) would overstate it: C, still open, counts until it was last watched.
    table = aalen_johansen(_states(), end=END, by=(s.STAGE,), boot=50)
    assert table["at_risk"][:2].to_list() == [4, 2]
    assert table["won"][:2].to_list() == pytest.approx([0.25, 0.625])
    assert table["lost"][:2].to_list() == pytest.approx([0.0, 0.375])
    # No deal is watched beyond step 2: the curve stops there.
    assert table["won"][2:].is_null().all() or np.isnan(table["won"][2:].to_numpy()).all()
    assert (table["won_low"][:2] <= table["won"][:2]).all() and (table["won"][:2] <= table["won_high"][:2]).all()


def test_open_at_a_moment_means_last_event_before_it_is_not_terminal(synthetic_dir: Path) -> None:
    data = load_dataset(synthetic_dir)
    moment = datetime(2026, 1, 1)
    states = landmark_states(data, [moment], end=datetime(2026, 6, 30), features=False)
    events = data.tables["stage_events"].filter(pl.col(s.ENTERED_AT) < moment)
    last = events.sort(s.ENTERED_AT).group_by(s.OPPORTUNITY_ID).last()
    expected = set(last.filter(~pl.col(s.STAGE).is_in(["won", "lost"]))[s.OPPORTUNITY_ID].to_list())
    assert set(states[s.OPPORTUNITY_ID].to_list()) == expected
    assert states[s.OPPORTUNITY_ID].is_unique().all()
    # Each deal in the stage of its last event, with what happened after.
    stage_now = dict(last.select(s.OPPORTUNITY_ID, s.STAGE).iter_rows())
    assert all(stage_now[o] == st for o, st in states.select(s.OPPORTUNITY_ID, s.STAGE).iter_rows())
    assert (states["won_at"].drop_nulls() >= moment).all()


@pytest.fixture(scope="module")
def fitted(synthetic_dir: Path) -> dict[str, CloseTimeModel]:
    data = load_dataset(synthetic_dir)
    cut = datetime(2026, 3, 1)
    return {engine: fit_close_time(data, engine=engine, end=cut) for engine in ("lightgbm", "logit")}


@pytest.mark.parametrize("engine", ["lightgbm", "logit"])
def test_won_lost_and_still_open_add_to_one_at_every_date(
    engine: str, fitted: dict[str, CloseTimeModel], synthetic_dir: Path
) -> None:
    model = fitted[engine]
    states = landmark_states(load_dataset(synthetic_dir), [datetime(2026, 3, 1)], end=datetime(2026, 3, 1))
    won, lost = model.curves(states)
    assert won.shape == lost.shape == (states.height, model.edges.size)
    assert (np.diff(won, axis=1) >= -1e-12).all() and (np.diff(lost, axis=1) >= -1e-12).all()
    for days in (0.0, 3.5, 30.0, 91.0, 200.0, 10_000.0):
        p_won, p_lost, p_open = at_days(model.edges, won, lost, days)
        assert np.allclose(p_won + p_lost + p_open, 1.0)
        assert (p_won >= 0).all() and (p_lost >= 0).all() and (p_open >= -1e-12).all()
    assert at_days(model.edges, won, lost, 0.0)[0].max() == 0.0


def test_a_saved_model_predicts_the_same(
    fitted: dict[str, CloseTimeModel], synthetic_dir: Path, tmp_path: Path
) -> None:
    states = landmark_states(load_dataset(synthetic_dir), [datetime(2026, 3, 1)], end=datetime(2026, 3, 1))
    for engine, model in fitted.items():
        again = CloseTimeModel.load(model.save(tmp_path / engine), engine=engine)
        assert np.array_equal(again.curves(states)[0], model.curves(states)[0])
    (tmp_path / "lightgbm" / "booster.txt").write_text("not a model", encoding="utf-8")
    with pytest.raises(ModelError, match="model folder damaged"):
        CloseTimeModel.load(tmp_path / "lightgbm")


@pytest.mark.parametrize("engine", ["lightgbm", "logit"])
def test_p_won_by_30_60_90_days_is_calibrated_out_of_time(
    engine: str, fitted: dict[str, CloseTimeModel], synthetic_dir: Path
) -> None:
    # Fitted before 1 March 2026; the deals open then are followed to the data's end (30 June).
    table = close_time_calibration(load_dataset(synthetic_dir), fitted[engine], datetime(2026, 3, 1))
    overall = table.filter(pl.col("bin") == "all").sort("days")
    assert overall["days"].to_list() == [30, 60, 90]
    print(overall)
    # The mean prediction within the realised share's 95% interval (widened by 2 points for the model's own noise).
    assert ((overall["predicted"] >= overall["low"] - 0.02) & (overall["predicted"] <= overall["high"] + 0.02)).all()
    # And it ranks: the top fifth of predictions wins far more often than the bottom fifth.
    at90 = table.filter((pl.col("days") == 90) & (pl.col("bin") != "all"))
    assert at90["realised"][-1] > at90["realised"][0] + 0.2


LONG = 2_500
"""Customers of the long-cycle data: a cohort of about 1,400 deals in the last year."""


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_recent_cohorts_win_rate_is_recovered_while_closed_only_is_biased(seed: int, tmp_path: Path) -> None:
    # Sales cycles three times the usual: deals opened in the last year are mostly still open at the end.
    data = generate_dataset(LONG, seed=seed, cycle_scale=3, start=datetime(2023, 7, 1))
    write_dataset(data, tmp_path)
    dataset = load_dataset(tmp_path)
    end = datetime(2026, 7, 1)
    model = fit_close_time(dataset, horizon_days=728, every_days=28, calendar=False)
    open_now = landmark_states(dataset, [end], end=end)
    won, _ = model.curves(open_now)
    truth = data.ground_truth["opportunities"]
    # The truth of an open deal: its exact P(won) given the days it has already waited in its stage.
    scored = open_now.select(s.OPPORTUNITY_ID, s.STAGE, s.DAYS_IN_STAGE_SO_FAR).with_columns(
        pl.Series("p", won[:, -1]), pl.Series("truth", open_win_probability(truth, open_now, 3))
    )
    events = dataset.tables["stage_events"]
    cohort = (
        events.group_by(s.OPPORTUNITY_ID)
        .agg(
            pl.col(s.ENTERED_AT).min().alias("opened"),
            (pl.col(s.STAGE) == "won").any().alias("won"),
            (pl.col(s.STAGE) == "lost").any().alias("lost"),
        )
        .filter(pl.col("opened") >= end - timedelta(days=365))
        .join(scored, on=s.OPPORTUNITY_ID, how="left")
    )
    closed_so_far = pl.when(pl.col("won")).then(1.0).when(pl.col("lost")).then(0.0)
    rates = cohort.select(
        closed_so_far.otherwise(pl.col("p")).mean().alias("model"),
        closed_so_far.otherwise(pl.col("truth")).mean().alias("truth"),
        pl.col("won").filter(pl.col("won") | pl.col("lost")).mean().alias("closed_only"),
    ).row(0, named=True)
    print(f"seed {seed}: {cohort.height} deals opened in the last year; {rates}")
    assert abs(rates["model"] - rates["truth"]) <= 0.01
    # Counting only the deals already closed: the quick ones, mostly losses.
    assert rates["closed_only"] < rates["truth"] - 0.03


def test_an_export_without_lost_events_needs_the_stale_rule(tmp_path: Path) -> None:
    # Every lost lead just goes quiet: without stale_after_days no deal is ever lost, which is refused.
    write_dataset(generate_dataset(1_500, seed=5, unrecorded_losses=1.0), tmp_path)
    with pytest.raises(ModelError, match="at least 10 wins and 10 losses"):
        fit_close_time(load_dataset(tmp_path), every_days=28, calendar=False)
    (tmp_path / "funnel.toml").write_text("[funnel]\nstale_after_days = 120\n", encoding="utf-8")
    dataset = load_dataset(tmp_path / "funnel.toml")
    model = fit_close_time(dataset, every_days=28, calendar=False)
    assert model.metadata["losses"] > model.metadata["wins"] > 10
    # A deal silent for longer than the rule is not open any more.
    end = datetime(2026, 6, 30)
    states = landmark_states(dataset, [end], end=end, features=False)
    last = dataset.tables["stage_events"].group_by(s.OPPORTUNITY_ID).agg(pl.col(s.ENTERED_AT).max())
    silent = last.filter(pl.col(s.ENTERED_AT) < end - timedelta(days=120))[s.OPPORTUNITY_ID]
    assert not set(states[s.OPPORTUNITY_ID].to_list()) & set(silent.to_list())


def test_a_fit_over_many_landmarks_follows_a_random_share_of_the_deals(synthetic_dir: Path) -> None:
    """Above ``max_landmark_rows`` a share of the deals is followed (all their landmarks), and the model says so."""
    data = load_dataset(synthetic_dir)
    every = fit_close_time(data, every_days=28, calendar=False)
    few = fit_close_time(data, every_days=28, calendar=False, max_landmark_rows=every.metadata["landmark_rows"] // 3)
    assert every.metadata["landmark_rows"] == every.metadata["landmark_rows_before_sampling"]
    kept, all_rows = few.metadata["landmark_rows"], few.metadata["landmark_rows_before_sampling"]
    assert all_rows == every.metadata["landmark_rows"]
    assert 0.2 * all_rows < kept < 0.5 * all_rows  # about a third: deals are kept whole, so not exactly
    assert any("random" in note and f"{kept:,} of {all_rows:,}" in note for note in few.metadata["notes"])
    # The sampled deals give about the same chance of a win within 90 days to the deals open at the end.
    moment = data.tables["stage_events"]["entered_at"].max()
    open_now = landmark_states(data, [moment], end=moment)
    p_every = float(every.by_days(open_now, 90.0)[0].mean())
    p_few = float(few.by_days(open_now, 90.0)[0].mean())
    assert abs(p_every - p_few) < 0.03, (p_every, p_few)
