"""Tiles that judge a change by its good direction and its significance; tables in words; one page script."""

from __future__ import annotations

import re

import polars as pl

from funnelmodels.display.html import html_table, judge, kpi_tiles, pipeline_tiles


def test_a_change_is_judged_by_its_good_direction_and_its_significance() -> None:
    # Fewer deals lost, clearly: good (green), though the number went down.
    assert judge("lost", -40.0, -0.4, 0.001)[0] == "good"
    assert judge("won", -40.0, -0.4, 0.001)[0] == "bad"
    # A rise that may be chance (p = 0.56) is grey, not green.
    assert judge("win_rate", 0.02, None, 0.56) == ("flat", "not significant, p = 0.56")
    # Amounts have no test: within ±5% is grey, beyond it is judged.
    assert judge("net_revenue", 1_000.0, 0.03, None)[0] == "flat"
    assert judge("net_revenue", -10_000.0, -0.12, None)[0] == "bad"
    assert judge("orders", None, None, None)[0] == "flat"


def _changes() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "kpi": ["net_revenue", "lost", "win_rate"],
            "value": [120_000.0, 10.0, 0.40],
            "previous": [100_000.0, 30.0, 0.38],
            "change": [20_000.0, -20.0, 0.02],
            "change_pct": [0.2, -0.667, 0.0526],
            "p_value": [None, 0.0003, 0.56],
        }
    )


def test_tiles_show_previous_year_target_and_judgement() -> None:
    yoy = _changes().with_columns(pl.lit(0.1).alias("change_pct"), pl.lit(0.01).alias("change"))
    targets = pl.DataFrame({"kpi": ["net_revenue"], "target": [150_000.0], "attainment": [0.8]})
    page = kpi_tiles(
        _changes(), period_label="June 2026", previous_label="May 2026", year_over_year=yoy, targets=targets
    )
    tiles = {k: t for k, t in re.findall(r'data-kpi="(\w+)">(.*?)</div></div>', page + "</div>")}
    assert len(re.findall(r'class="fm-tile"', page)) == 3
    assert 'data-judgement="good"' in tiles["lost"] and "−66.7% vs May 2026" in tiles["lost"]
    assert 'data-judgement="flat"' in tiles["win_rate"] and "+2.0 pts" in tiles["win_rate"]
    assert "previous: $100.0k" in page and "vs a year earlier: +10.0%" in page
    assert "target $150.0k: 80% reached" in page and 'aria-valuenow="80"' in page


def test_pipeline_tiles_total_expected_and_coverage() -> None:
    pipeline = pl.DataFrame(
        {
            "stage": ["lead", "proposal"],
            "open_deals": [10, 5],
            "pipeline_amount": [100.0, 50.0],
            "expected_value": [20.0, 30.0],
        }
    )
    total, expected = pipeline_tiles(pipeline, target=100.0, target_label="July")
    assert total.value == "$150" and total.lines == ("15 open deals",)
    assert expected.value == "$50" and expected.progress == 0.5
    assert any("covers 50% of the July target $100" in line for line in expected.lines)


def test_tables_read_in_words_with_intervals_merged_and_capped() -> None:
    frame = pl.DataFrame(
        {"stage": ["lead"], "entered": [1234], "rate": [0.38], "rate_low": [0.369], "rate_high": [0.401]}
    )
    page = html_table(frame)
    assert ">Conversion rate<" in page and ">Entered<" in page and "rate_low" not in page.split("<tbody>")[0]
    assert ">38.0% (36.9–40.1%)<" in page and 'data-value="1234"' in page
    names = html_table(pl.DataFrame({"feature": ["log(1+spend_365d)", "days_late"], "gain": [1.0, 2.0]}))
    assert ">Spend in the last year (log)<" in names and ">Days late<" in names and "days_late" not in names
    many = pl.DataFrame({"customer_id": list(range(100_000))})
    capped = html_table(many)
    assert capped.count("<tr>") == 61 and "99,940 more rows not shown" in capped
    assert len(capped) < 10_000, "a table's size does not grow with the data"
