"""Fixtures of the model tests: the conversion and satisfaction models trained once on the small synthetic dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

from funnelmodels.data.io import load_dataset
from funnelmodels.models.train import ConversionTraining, SatisfactionTraining, train_conversion, train_satisfaction


@pytest.fixture(scope="session")
def trained(synthetic_dir: Path) -> ConversionTraining:
    """Both conversion engines trained (seed 0) on the small synthetic dataset."""
    return train_conversion(load_dataset(synthetic_dir), seed=0)


@pytest.fixture(scope="session")
def satisfaction(synthetic_dir: Path) -> SatisfactionTraining:
    """Both satisfaction engines trained (seed 0, CSAT) on the small synthetic dataset."""
    return train_satisfaction(load_dataset(synthetic_dir), seed=0)
