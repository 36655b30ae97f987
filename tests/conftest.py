"""Shared fixtures: hand-made canonical tables and a small seeded synthetic dataset."""

from __future__ import annotations

import os

# Two test workers share two cores: one LightGBM thread each (kernels started by the report
# runner inherit it), and OpenMP threads that sleep rather than spin while they wait.
os.environ.setdefault("FUNNELMODELS_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from funnelmodels.data.synthetic import SyntheticData, generate_dataset, write_dataset

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def write_tables(tmp_path: Path) -> Callable[..., Path]:
    """Write tables as CSV into a fresh folder; returns the folder."""

    def write(tables: dict[str, pl.DataFrame], folder: str = "dataset") -> Path:
        root = tmp_path / folder
        root.mkdir(parents=True, exist_ok=True)
        for name, frame in tables.items():
            frame.write_csv(root / f"{name}.csv")
        return root

    return write


@pytest.fixture(scope="session")
def synthetic() -> SyntheticData:
    """A small seeded synthetic dataset (3,000 customers)."""
    return generate_dataset(3_000, seed=7)


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory, synthetic: SyntheticData) -> Path:
    """The small synthetic dataset written as Parquet."""
    root = tmp_path_factory.mktemp("synthetic")
    write_dataset(synthetic, root)
    return root
