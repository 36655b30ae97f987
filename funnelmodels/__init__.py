"""funnelmodels: stage-conversion and satisfaction models and sales-performance reports.

Notebooks use ``import funnelmodels as fm``; the names below are the public API.
"""

from funnelmodels.config import DatasetConfig, FunnelSpec, load_config
from funnelmodels.data.io import Dataset, load_dataset
from funnelmodels.data.synthetic import SyntheticData, generate_dataset, write_dataset
from funnelmodels.errors import (
    ConfigError,
    DataValidationError,
    FunnelModelsError,
    ModelError,
    ReportError,
)

__all__ = [
    "ConfigError",
    "DataValidationError",
    "Dataset",
    "DatasetConfig",
    "FunnelModelsError",
    "FunnelSpec",
    "ModelError",
    "ReportError",
    "SyntheticData",
    "generate_dataset",
    "load_config",
    "load_dataset",
    "write_dataset",
]

__version__ = "0.1.0"
