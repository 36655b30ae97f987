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
from funnelmodels.features import add_segments, build_features, build_transition_features
from funnelmodels.funnel import (
    build_transitions,
    cohort_table,
    conversion_table,
    end_to_end_rate,
    time_to_convert_table,
)
from funnelmodels.models.conversion import StageConversionModel
from funnelmodels.models.training import pipeline_value, score_open_opportunities, train_conversion

__all__ = [
    "ConfigError",
    "DataValidationError",
    "Dataset",
    "DatasetConfig",
    "FunnelModelsError",
    "FunnelSpec",
    "ModelError",
    "ReportError",
    "StageConversionModel",
    "SyntheticData",
    "add_segments",
    "build_features",
    "build_transition_features",
    "build_transitions",
    "cohort_table",
    "conversion_table",
    "end_to_end_rate",
    "generate_dataset",
    "load_config",
    "load_dataset",
    "pipeline_value",
    "score_open_opportunities",
    "time_to_convert_table",
    "train_conversion",
    "write_dataset",
]

__version__ = "0.1.0"
