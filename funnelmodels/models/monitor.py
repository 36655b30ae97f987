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

from funnelmodels.data import schema as s
from funnelmodels.data.io import Dataset
from funnelmodels.drift import SCORE, drift_table, profile
from funnelmodels.features import build_transition_features
from funnelmodels.frames import collect
from funnelmodels.models.conversion import StageConversionModel
from funnelmodels.models.predict import open_opportunities

__all__ = ["REFERENCE_FILE", "open_pipeline", "pipeline_drift", "pipeline_profiles"]

REFERENCE_FILE = "reference.json"
"""The profile of the open pipeline at the test period's start, in each conversion engine's folder."""


def open_pipeline(dataset: Dataset, as_of: datetime) -> pl.DataFrame:
    """The deals open at ``as_of`` with their features then (as scoring sees them)."""
    opened = open_opportunities(dataset, as_of)
    return build_transition_features(dataset, opened.lazy().with_columns(pl.lit(as_of).alias(s.AS_OF))).pipe(collect)


def _profile(frame: pl.DataFrame, model: StageConversionModel) -> dict[str, Any]:
    scored = frame.with_columns(pl.Series(SCORE, model.predict_proba(frame) if frame.height else [], pl.Float64))
    return profile(scored, [*model.encoder.numeric, SCORE], model.encoder.categorical)


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
    scored = open_pipeline(dataset, as_of)
    scored = scored.with_columns(pl.Series(SCORE, model.predict_proba(scored) if scored.height else [], pl.Float64))
    return drift_table(reference, scored)
