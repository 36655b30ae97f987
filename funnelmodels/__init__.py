"""funnelmodels: stage-conversion and satisfaction models and sales-performance reports.

Notebooks use ``import funnelmodels as fm``; the names below are the public API, with
``fm.kpis``, ``fm.plots``, ``fm.display`` and ``fm.reports`` for the measures, charts, report
pieces and reports (each tab-completes in a notebook).
"""

from funnelmodels import display, distributed, kpis, reports
from funnelmodels.config import DatasetConfig, FunnelSpec, load_config
from funnelmodels.data.io import Dataset, load_dataset
from funnelmodels.data.synthetic import SyntheticData, generate_dataset, write_dataset
from funnelmodels.display import plots
from funnelmodels.distributed.partition import open_data
from funnelmodels.errors import (
    ConfigError,
    DataValidationError,
    FunnelModelsError,
    ModelError,
    ReportError,
)
from funnelmodels.evaluation import LeakageWarning
from funnelmodels.fairness import SENSITIVE, sensitive_features
from funnelmodels.features import build_features, build_transition_features
from funnelmodels.funnel import build_transitions
from funnelmodels.models.backtest import backtest_pipeline
from funnelmodels.models.card import ModelCard, SatisfactionCard, conversion_card, satisfaction_card
from funnelmodels.models.conversion import StageConversionModel
from funnelmodels.models.predict import at_risk_customers, pipeline_value, score_from_history, score_open_opportunities
from funnelmodels.models.satisfaction import SatisfactionModel
from funnelmodels.models.train import cross_validate_conversion, train_conversion, train_satisfaction
from funnelmodels.provenance import version
from funnelmodels.rates import (
    cohort_table,
    conversion_table,
    cumulative_conversion,
    cumulative_conversion_table,
    end_to_end_rate,
    time_to_convert_table,
)
from funnelmodels.rfm import rfm_summary
from funnelmodels.segments import add_segments

__all__ = [
    "SENSITIVE",
    "ConfigError",
    "DataValidationError",
    "Dataset",
    "DatasetConfig",
    "FunnelModelsError",
    "FunnelSpec",
    "LeakageWarning",
    "ModelCard",
    "ModelError",
    "ReportError",
    "SatisfactionCard",
    "SatisfactionModel",
    "StageConversionModel",
    "SyntheticData",
    "add_segments",
    "at_risk_customers",
    "backtest_pipeline",
    "build_features",
    "build_transition_features",
    "build_transitions",
    "cohort_table",
    "conversion_card",
    "conversion_table",
    "cross_validate_conversion",
    "cumulative_conversion",
    "cumulative_conversion_table",
    "display",
    "distributed",
    "end_to_end_rate",
    "generate_dataset",
    "kpis",
    "load_config",
    "load_dataset",
    "open_data",
    "pipeline_value",
    "plots",
    "reports",
    "rfm_summary",
    "satisfaction_card",
    "score_from_history",
    "score_open_opportunities",
    "sensitive_features",
    "time_to_convert_table",
    "train_conversion",
    "train_satisfaction",
    "write_dataset",
]

__version__ = version()
