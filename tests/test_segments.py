"""Segments: customer columns, bands and new versus returning."""

from __future__ import annotations

from funnelmodels.data.io import Dataset
from funnelmodels.funnel import build_transitions
from funnelmodels.segments import add_segments


def test_segments_bands_and_new_versus_returning(tiny: Dataset) -> None:

    transitions = build_transitions(tiny.lazy("stage_events"), tiny.spec)
    seg = add_segments(tiny, transitions).collect().sort("opportunity_id", "entered_at")
    by_opp = {r["opportunity_id"]: r for r in seg.iter_rows(named=True)}
    # Customer 1 (34, income 52,000) first bought on 2025-01-10, after opportunity 100 started (01-02).
    assert (by_opp[100]["age_band"], by_opp[100]["income_band"], by_opp[100]["customer_type"]) == (
        "30–44",
        "40–60k",
        "new",
    )
    # Customer 2 (51, income 81,000) first bought on 2025-02-01, after opportunity 101 started.
    assert (by_opp[101]["age_band"], by_opp[101]["income_band"]) == ("45–59", "60–90k")
    assert by_opp[101]["region"] == "south"
