"""The one dictionary of words and units: every name a reader sees reads as words."""

from __future__ import annotations

import pytest

from funnelmodels.kpis import SALES_KPIS
from funnelmodels.labels import LABELS, good_direction, label, unit


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("net_revenue", "Net revenue"),
        ("log(1+spend_365d)", "Spend in the last year (log)"),
        ("region = east", "Region: east"),
        ("stage[qualified]", "Stage: qualified"),
        ("last_nps missing", "Last NPS missing"),
        ("rate_low", "Conversion rate, low"),
        ("some_new_column", "Some new column"),
    ],
)
def test_names_read_as_words(name: str, words: str) -> None:
    assert label(name) == words


def test_every_kpi_has_words_a_unit_and_a_good_direction() -> None:
    for kpi in SALES_KPIS:
        assert kpi in LABELS and label(kpi) != kpi
        assert good_direction(kpi) in ("up", "down")
    # Fewer deals lost is good; a share is written as a share.
    assert good_direction("lost") == "down" and good_direction("won") == "up"
    assert unit("win_rate") == "share" and unit("rate_high") == "share" and unit("net_revenue") == "money"


def test_reasons_use_the_same_dictionary() -> None:
    from funnelmodels.models.reasons import reason_text

    assert reason_text("recency_days", 12.0, 0.3) == "last purchase 12 days ago raises odds"
    assert reason_text("income", 92_000.0, -0.1) == "income $92k lowers odds"
    assert reason_text("frequency", 1.0, 0.1) == "1 earlier order raises odds"
    assert reason_text("recency_days", 1.0, 0.004, unit="points") == "last purchase 1 day ago +0.4 pts"
    assert reason_text("region", "west", 0.2) == "region west raises odds"
