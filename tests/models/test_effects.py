"""Activity effects: the doubly robust estimate recovers planted effects, and covers 0 where there are none."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from scipy.stats import spearmanr

from funnelmodels.data.io import load_dataset
from funnelmodels.data.synthetic import generate_dataset
from funnelmodels.models.effects import ASSOCIATION, RANDOMISED, activity_effects


def _against_truth(data: Any, dataset: Any) -> pl.DataFrame:
    estimates = activity_effects(dataset, seed=0).filter(pl.col("adjusted").is_not_null())
    truth = data.ground_truth["activity_effects"].select("stage", "treatment", pl.col("effect").alias("truth"))
    return estimates.join(truth, on=["stage", "treatment"], how="inner")


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 2])
def test_planted_effects_are_recovered_in_sign_rank_and_interval(seed: int, teams_data: Callable[..., Any]) -> None:
    data, dataset = teams_data(seed)
    table = _against_truth(data, dataset)
    assert table.height >= 20  # four stages × five or six activities
    covered = ((table["adjusted_low"] <= table["truth"]) & (table["truth"] <= table["adjusted_high"])).mean()
    rank = spearmanr(table["adjusted"], table["truth"]).statistic
    print(f"seed {seed}: intervals cover the planted effect in {covered:.0%} of {table.height}; Spearman {rank:.2f}")
    assert covered >= 0.8
    assert rank >= 0.8
    clear = table.filter(pl.col("truth").abs() >= 0.05)
    assert (clear["adjusted"].sign() == clear["truth"].sign()).all()
    # Meetings at the lead stage: the largest planted effect, found clear of zero.
    lead = table.filter((pl.col("stage") == "lead") & (pl.col("treatment") == "meeting")).row(0, named=True)
    assert lead["adjusted_low"] > 0.1
    # Deals that look good get more meetings: the plain difference overstates what the adjusted one finds.
    assert lead["raw_difference"] > lead["adjusted"]
    assert set(table["label"]) == {ASSOCIATION}
    assert table["extreme_share"].max() < 0.5


@pytest.mark.slow
def test_without_planted_effects_the_intervals_cover_zero(teams_data: Callable[..., Any]) -> None:
    data, dataset = teams_data(1, effects=False)
    table = _against_truth(data, dataset)
    assert table["truth"].abs().max() < 1e-12
    covered = ((table["adjusted_low"] <= 0) & (table["adjusted_high"] >= 0)).mean()
    print(f"no effect planted: intervals cover 0 in {covered:.0%} of {table.height}")
    assert covered >= 0.85


def test_randomised_activities_get_a_plain_difference(tmp_path: Path) -> None:
    data = generate_dataset(2_000, seed=0, teams=True)
    tables = data.tables()
    tables["activities"] = tables["activities"].with_columns(
        pl.when(pl.col("type") == "demo").then(pl.lit("yes")).otherwise(pl.lit("no")).alias("randomised")
    )
    for name, frame in tables.items():
        frame.write_parquet(tmp_path / f"{name}.parquet")
    dataset = load_dataset(tmp_path)
    table = activity_effects(dataset, treatments=("demo", "meeting"))
    demo = table.filter(pl.col("treatment") == "demo")
    assert set(demo["label"]) == {RANDOMISED}
    assert (demo["adjusted"] - demo["raw_difference"]).abs().max() < 1e-12
    assert set(table.filter(pl.col("treatment") == "meeting")["label"]) == {ASSOCIATION}


def test_no_activities_no_estimates(tiny: Any) -> None:
    assert activity_effects(tiny).height == 0
