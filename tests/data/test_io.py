"""The loaded dataset as a notebook shows it: a few lines, whatever its size."""

from __future__ import annotations

from pathlib import Path

from funnelmodels.data.io import load_dataset


def test_a_dataset_displays_its_tables_rows_and_dates(synthetic_dir: Path) -> None:
    data = load_dataset(synthetic_dir)
    text = repr(data)
    customers = data.tables["customers"]
    first, last = customers["created_at"].min(), customers["created_at"].max()
    assert text.startswith(f"Dataset({synthetic_dir.name}: customers {customers.height:,} rows, ")
    assert f"{str(first)[:10]} … {str(last)[:10]}" in text
    assert "funnel lead → qualified → relationship → proposal → won (lost: lost)" in text
    assert len(text) < 600 and len(data._repr_html_()) < 2_000
    assert str(synthetic_dir.parent) not in data._repr_html_(), "no machine path in a notebook's output"
