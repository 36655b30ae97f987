"""The fairness audit: rates by hand, the four-fifths flag, proxies; a planted group bias is found."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from funnelmodels.data.io import load_dataset
from funnelmodels.data.synthetic import generate_dataset, write_dataset
from funnelmodels.fairness import fairness_audit, proxy_table
from funnelmodels.models.card import conversion_card
from funnelmodels.models.train import train_conversion


def test_rates_ratio_and_equal_opportunity_by_hand() -> None:
    # 200 rows in group a scored 0.50-0.99, 200 in b scored 0.00-0.49: the top quarter (100 rows) is
    # a's best 100. Outcomes: every other row converts in both groups (base rate 0.5 each).
    p = np.concatenate([np.linspace(0.5, 0.99, 200), np.linspace(0.0, 0.49, 200)])
    y = np.tile([1, 0], 200)
    frame = pl.DataFrame({"gender": ["a"] * 200 + ["b"] * 200})
    table = fairness_audit(frame, y, p, sensitive=["gender"], resamples=50)
    a, b = (table.filter(pl.col("group") == g).row(0, named=True) for g in ("a", "b"))
    assert (a["n"], b["n"]) == (200, 200)
    assert a["base_rate"] == b["base_rate"] == 0.5
    assert a["selection_rate"] == pytest.approx(0.5) and b["selection_rate"] == 0.0
    assert a["selection_ratio"] == 1.0 and b["selection_ratio"] == 0.0 and b["flagged"] and not a["flagged"]
    # a's conversions: half are among its top 100 → TPR 0.5; b's: none → difference −0.5.
    assert b["eo_difference"] == pytest.approx(-0.5)
    assert b["calibration_gap"] == pytest.approx(float(p[200:].mean()) - 0.5)
    assert b["selection_ratio_low"] <= b["selection_ratio"] <= b["selection_ratio_high"]


def test_without_a_difference_between_groups_few_are_flagged_and_the_intervals_cover_parity() -> None:
    # Three groups (45%, 45%, 10%) scored and converting alike; the intervals hold for the three at once.
    # Measured: 92 of 100 cover parity for all three groups; 3 of 100 flag a group.
    covered = flagged = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        p = rng.beta(2, 3, 1_500)
        y = (rng.random(p.size) < p).astype(int)
        groups = rng.choice(["a", "b", "c"], p.size, p=[0.45, 0.45, 0.10])
        table = fairness_audit(pl.DataFrame({"gender": groups}), y, p, sensitive=["gender"], resamples=100, seed=seed)
        covered += bool(((table["selection_ratio_low"] <= 1) & (table["selection_ratio_high"] >= 1)).all())
        flagged += bool(table["flagged"].any())
    assert covered >= 88  # nominal 95 of 100; the ratio to the best-off group runs a little low by nature
    assert flagged <= 10  # the test against everyone else keeps false alarms near its 5%


def test_small_groups_are_left_out_and_intersections_need_100_rows() -> None:
    rng = np.random.default_rng(0)
    frame = pl.DataFrame({"gender": ["a"] * 300 + ["b"] * 300 + ["c"] * 50, "region": ["n", "s"] * 325})
    p = rng.uniform(0, 1, 650)
    table = fairness_audit(frame, (rng.random(650) < p).astype(int), p, sensitive=["gender", "region"], resamples=20)
    assert "c" not in table["group"].to_list()
    crossed = table.filter(pl.col("attribute") == "gender × region")
    assert set(crossed["group"]) == {"a × n", "a × s", "b × n", "b × s"} and (crossed["n"] >= 100).all()


def test_a_feature_fixed_by_the_group_is_a_proxy_and_noise_is_not() -> None:
    rng = np.random.default_rng(1)
    region = np.repeat(["n", "s", "e", "w"], 250)
    frame = pl.DataFrame(
        {
            "region": region,
            "spend": np.repeat([10.0, 20.0, 30.0, 40.0], 250),  # the region fixes it: η = 1
            "noise": rng.normal(0, 1, 1000),
            "channel": np.where(region == "n", "shop", "web"),  # one level per region group: V = 1
        }
    )
    table = {
        r["feature"]: r for r in proxy_table(frame, ["spend", "noise", "channel"], ["region"]).iter_rows(named=True)
    }
    assert table["spend"]["association"] == pytest.approx(1.0) and table["spend"]["proxy"]
    assert table["channel"]["association"] == pytest.approx(1.0) and table["channel"]["measure"] == "Cramér's V"
    assert table["noise"]["association"] < 0.15 and not table["noise"]["proxy"]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 12])
def test_a_planted_bias_against_women_is_flagged_and_leaving_gender_out_evens_the_selection(
    tmp_path: Path, seed: int
) -> None:
    write_dataset(generate_dataset(6_000, seed=seed, group_bias=-1.2), tmp_path)
    data = load_dataset(tmp_path)
    training = train_conversion(data, seed=0, engines=("lightgbm",))
    without = train_conversion(data, seed=0, engines=("lightgbm",), without=("gender",))
    card = conversion_card(training, resamples=100, without=without)
    gender = {r["group"]: r for r in card.fairness.filter(pl.col("attribute") == "gender").iter_rows(named=True)}
    assert gender["female"]["flagged"] and gender["female"]["selection_ratio_high"] < 0.8
    assert gender["female"]["base_rate"] < gender["male"]["base_rate"]  # the outcomes carry the bias
    assert "gender female" in card.fairness_sentence()
    # Without gender the model cannot see it: women are selected about as often as men again, and
    # the ranking loses what gender told it.
    side = card.without_fairness.filter((pl.col("attribute") == "gender") & (pl.col("group") == "female")).row(
        0, named=True
    )
    assert side["selection_ratio_without"] > side["selection_ratio"] + 0.2
    lightgbm = card.without.filter(pl.col("engine") == "lightgbm").row(0, named=True)
    assert lightgbm["auc_change"] < 0 and lightgbm["auc_change_high"] < 0.005


def test_an_export_without_demographics_gets_no_audit_and_says_so_while_a_misspelt_column_is_refused() -> None:
    from funnelmodels.errors import ConfigError
    from funnelmodels.fairness import check_sensitive
    from funnelmodels.models.card import fairness_sentence

    bare = pl.DataFrame({"stage": ["lead"] * 300, "source": ["web", "event", "partner"] * 100})
    assert check_sensitive(bare, None) == ()  # the defaults the data lacks are left out
    audit = fairness_audit(bare, np.zeros(300), np.linspace(0, 1, 300), sensitive=())
    assert audit.height == 0
    assert fairness_sentence(audit, "deals").startswith("No fairness audit")
    with pytest.raises(ConfigError, match="did you mean 'source'"):
        check_sensitive(bare, ["sourse"])
