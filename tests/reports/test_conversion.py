"""The stage-conversion report's business view: the share of wins the top scores hold, and its sentences."""

from __future__ import annotations

import html
import re

import polars as pl
import pytest

from funnelmodels.models.card import conversion_card
from funnelmodels.models.train import ConversionTraining
from funnelmodels.reports import (
    conversion_details,
    conversion_summary,
    model_card_section,
    top_share_interval,
    top_share_of_wins,
)


def test_the_top_scores_hold_more_of_the_wins_than_chance(trained: ConversionTraining) -> None:
    preds = trained.predictions().sort("p_lightgbm", "opportunity_id", descending=[True, False])
    top = round(0.3 * preds.height)
    by_hand = preds["converted"].head(top).sum() / preds["converted"].sum()
    held = top_share_of_wins(trained)
    assert held == pytest.approx(by_hand)
    assert 0.3 < held < 1, "a useful model puts more than 30% of the wins in its top 30%"
    # The oracle ranks at least as well as chance too, and the share is bounded by 1.
    assert top_share_of_wins(trained, top=1.0) == pytest.approx(1.0)


def test_the_summary_reads_as_words_for_a_sales_director(trained: ConversionTraining) -> None:
    said = conversion_summary(trained)
    assert 3 <= len(said) <= 5
    held = top_share_of_wins(trained)
    assert f"the top 30% of scores held **{100 * held:.0f}%** (" in said[0]
    low, high = top_share_interval(trained)
    assert low <= held <= high and f"({100 * low:.0f}%–{100 * high:.0f}%) of the conversions" in said[0]
    overall = trained.metrics.filter(pl.col("stage") == "all", pl.col("engine") == "lightgbm").row(0, named=True)
    assert f"predicted {100 * overall['mean_prediction']:.1f}% where {100 * overall['base_rate']:.1f}%" in said[1]
    assert any(s.startswith("What moves a deal most: ") for s in said)
    assert not any("_" in s for s in said), "no code names in the sentences"


def test_the_model_details_are_collapsed_and_in_words(trained: ConversionTraining) -> None:
    page = conversion_details(trained)
    assert page.startswith('<details class="fm-details"><summary>Model details')
    assert page.count("<svg") == 1, "the gains (calibration is in the model card)"
    paragraphs = re.findall(r"<p>([^<]*)</p>", page)
    coded = [p for p in paragraphs if re.search(r"\b[a-z]+_[a-z0-9_]+\b(?!\.csv)", p)]  # a CSV may be named
    assert not coded, coded
    # The odds ratios: per stage in the funnel's order, at most 12 each.
    stages = re.findall(r'<tr><td class="fm-text">(lead|qualified|relationship|proposal)</td>', page)
    order = ["lead", "qualified", "relationship", "proposal"]
    assert stages == sorted(stages, key=order.index) and max(stages.count(s) for s in set(stages)) <= 12


def test_the_model_card_section_gives_the_verdict_and_every_figure_with_its_interval(
    trained: ConversionTraining,
) -> None:
    card = conversion_card(trained, resamples=50)
    page = model_card_section(card)
    verdict = "Ready to publish" if card.gate.ready else "Not ready to publish"
    assert page.startswith(f"<p><strong>{verdict}.</strong>")
    gbm = card.headline().filter(pl.col("engine") == "lightgbm").row(0, named=True)
    # The headline cell: the value and its interval, as the table writes it.
    assert f"{gbm['roc_auc']:.3f} ({gbm['roc_auc_low']:.3f}–{gbm['roc_auc_high']:.3f})" in page
    assert page.count("<svg") == 1 and page.count("<details") == 2  # per stage; fairness intersections
    assert html.escape(card.performance_sentence()) in page and "all decided" in page
    assert html.escape(card.fairness_sentence()) in page and "Ratio to the best-off group" in page
    assert html.escape(card.drift_sentence()) in page and "Wasserstein distance (SDs)" in page
    paragraphs = re.findall(r"<p>([^<]*)</p>", page)
    assert not [p for p in paragraphs if re.search(r"\b[a-z]+_[a-z0-9_]+\b", p)], "no code names in the prose"
