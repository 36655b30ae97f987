"""The validated-dataset cache: the same dataset as a full load, and never a stale one."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest
from commands import run_cli
from polars.testing import assert_frame_equal

from funnelmodels.data.io import load_dataset
from funnelmodels.data.synthetic import generate_dataset, write_dataset
from funnelmodels.errors import DataValidationError


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("FUNNELMODELS_CACHE", str(folder))
    return folder


@pytest.fixture
def csv_data(tmp_path: Path) -> Path:
    """A small export as CSV files, one row with a bad amount (set aside with drop_invalid)."""
    root = tmp_path / "export"
    write_dataset(generate_dataset(300, seed=4), root, fmt="csv")
    path = root / "transactions.csv"
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[1].split(",")
    cells[header.index("amount")] = "twelve"
    path.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    return root


def _entries(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if (p / "meta.json").is_file()) if cache.is_dir() else []


def test_a_second_load_reads_the_cache_and_gives_the_same_dataset(cache: Path, csv_data: Path) -> None:
    full = load_dataset(csv_data, drop_invalid=True, cache=False)
    assert _entries(cache) == [], "cache=False neither reads nor writes the cache"
    first = load_dataset(csv_data, drop_invalid=True)
    assert len(_entries(cache)) == 1
    cached = load_dataset(csv_data, drop_invalid=True)
    for loaded in (first, cached):
        assert list(loaded.tables) == list(full.tables)
        for name, frame in full.tables.items():
            assert_frame_equal(loaded.tables[name], frame)  # dtypes included
            # What polars knows of the order too: it picks how to add floats by it (the reports' sums
            # must not change in the last digit when the data comes from the cache).
            assert [loaded.tables[name][c].flags for c in frame.columns] == [frame[c].flags for c in frame.columns]
        assert loaded.notes == full.notes
        assert list(loaded.rejected) == list(full.rejected) and full.rejected["transactions"].height == 1
        assert_frame_equal(loaded.rejected["transactions"], full.rejected["transactions"])
        assert loaded.fingerprint() == full.fingerprint()
    # The same files without drop_invalid are another load (and fail: nothing cached for it).
    with pytest.raises(DataValidationError, match="amount"):
        load_dataset(csv_data)
    assert len(_entries(cache)) == 1


def test_a_changed_file_is_read_again(cache: Path, csv_data: Path) -> None:
    before = load_dataset(csv_data, drop_invalid=True)
    path = csv_data / "customers.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")  # one customer fewer (same second, another size)
    after = load_dataset(csv_data, drop_invalid=True)
    assert after.tables["customers"].height == before.tables["customers"].height - 1
    assert after.fingerprint() != before.fingerprint()
    assert len(_entries(cache)) == 2


def test_a_damaged_entry_is_ignored_and_replaced(cache: Path, csv_data: Path) -> None:
    load_dataset(csv_data, drop_invalid=True)
    (entry,) = _entries(cache)
    (entry / "tables" / "transactions.parquet").write_bytes(b"not parquet")
    again = load_dataset(csv_data, drop_invalid=True)
    assert again.tables["transactions"].height > 0
    (entry,) = _entries(cache)
    assert pl.read_parquet(entry / "tables" / "transactions.parquet").height == again.tables["transactions"].height


def test_only_the_most_recently_used_entries_are_kept(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FUNNELMODELS_CACHE_KEEP", "2")
    for seed in (1, 2, 3):
        folder = tmp_path / f"data-{seed}"
        write_dataset(generate_dataset(100, seed=seed), folder)
        load_dataset(folder)
        if seed == 1:
            first = _entries(cache)[0]
            os.utime(first / "meta.json", (1, 1))  # long unused
    entries = _entries(cache)
    assert len(entries) == 2 and first not in entries


def test_the_command_line_can_skip_the_cache_and_an_off_setting_writes_nothing(
    cache: Path, synthetic_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = run_cli("--quiet", "--no-cache", "validate", str(synthetic_dir))
    assert done.returncode == 0, done.stderr
    assert _entries(cache) == []
    done = run_cli("--quiet", "validate", str(synthetic_dir))
    assert done.returncode == 0, done.stderr
    assert len(_entries(cache)) == 1
    monkeypatch.setenv("FUNNELMODELS_CACHE", "off")
    load_dataset(synthetic_dir)
    assert not (cache.parent / "off").exists()


def test_a_cache_folder_that_cannot_be_made_only_costs_the_time(
    csv_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("FUNNELMODELS_CACHE", str(blocker / "cache"))
    loaded = load_dataset(csv_data, drop_invalid=True)
    assert loaded.tables["transactions"].height > 0
    assert load_dataset(csv_data, drop_invalid=True).tables["customers"].height == loaded.tables["customers"].height
