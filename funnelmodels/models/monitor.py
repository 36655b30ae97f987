"""Drift of the open pipeline a model scores, against the pipeline it was tested on.

At training, the deals open at the start of the test period are profiled (their features as
scoring sees them, and the model's probability of the next stage): ``conversion/reference.json``
beside the model. ``funnelmodels score --check-drift`` profiles the deals open at ``--as-of`` the
same way and compares (:func:`funnelmodels.drift.drift_table`): like with like, an open pipeline
against an open pipeline, so the time deals have waited and the mix of stages are not mistaken
for drift.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import polars as pl

from funnelmodels.data.io import Dataset
from funnelmodels.drift import SCORE, drift_table, profile
from funnelmodels.models.conversion import StageConversionModel
from funnelmodels.models.predict import open_pipeline

__all__ = ["REFERENCE_FILE", "pipeline_drift", "pipeline_profiles"]

REFERENCE_FILE = "reference.json"
"""The profile of the open pipeline at the test period's start, in each conversion engine's folder."""


def _profile(frame: pl.DataFrame, model: StageConversionModel) -> dict[str, Any]:
    return profile(_scored(frame, model), [*model.encoder.numeric, SCORE], model.encoder.categorical)


def _scored(frame: pl.DataFrame, model: StageConversionModel) -> pl.DataFrame:
    """``frame`` with the model's probability of the next stage as :data:`funnelmodels.drift.SCORE`."""
    return frame.with_columns(pl.Series(SCORE, model.predict_proba(frame) if frame.height else [], pl.Float64))


def pipeline_profiles(
    dataset: Dataset, models: Mapping[str, StageConversionModel], as_of: datetime
) -> dict[str, dict[str, Any]]:
    """Per engine, the reference profile of the pipeline open at ``as_of``: features and that engine's score."""
    frame = open_pipeline(dataset, as_of)
    return {engine: _profile(frame, model) | {"as_of": as_of.isoformat()} for engine, model in models.items()}


def pipeline_drift(
    dataset: Dataset, model: StageConversionModel, reference: Mapping[str, Any], as_of: datetime
) -> pl.DataFrame:
    """The open pipeline at ``as_of`` against the ``reference`` profile: one row per feature and the score."""
    return drift_table(reference, _scored(open_pipeline(dataset, as_of), model))
