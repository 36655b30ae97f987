"""Activity effects per stage, honestly labelled: adjusted associations, not experiments.

For each stage and activity, the question is: among opportunities alike at the moment they entered
the stage, how much more often did those that got the activity (at least one, in the stage, before
it ended and within the horizon) reach the next stage? Deals that look good get more meetings, so
the plain difference overstates; this module adjusts for what was known at entry.

- **Doubly robust (AIPW)**: a propensity model P(activity | features) and an outcome model
  P(next stage | features, activity), both small LightGBMs, **cross-fitted** (three folds by
  opportunity: each row's nuisance values come from models that never saw it). The estimate is the
  mean of the AIPW scores; it is right when either model is.
- **Overlap**: rows whose propensity is below :data:`TRIM` or above 1 − :data:`TRIM` are set aside
  (their share is reported): there the data holds no comparable deals, and the estimate is about
  the rest.
- **Intervals**: 95% percentile intervals from :data:`BOOTSTRAP` resamples of the rows' scores,
  clustered by opportunity (the nuisance models are not refitted).
- **Labels**: every such estimate is "association, not a controlled experiment": an activity can
  follow from a deal going well as much as cause it. When the activities table marks an activity
  type as randomised (``randomised`` true on all its rows), the estimate is the plain difference of
  rates with a Wald interval, labelled as a randomised comparison.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

import numpy as np
import polars as pl

from funnelmodels.data import schema as s
from funnelmodels.data.io import Dataset
from funnelmodels.features import build_transition_features, categorical_features, extra_features, feature_columns
from funnelmodels.funnel import build_transitions, data_end
from funnelmodels.models.boosting import CROSS_FIT_PARAMS, cross_fitted, fit_booster, fold_of
from funnelmodels.models.design import FeatureEncoder

__all__ = [
    "ASSOCIATION",
    "BOOTSTRAP",
    "RANDOMISED",
    "TREATMENTS",
    "TRIM",
    "activity_effects",
    "stage_spells",
]

TREATMENTS = ("meeting", "demo", "proposal_sent", "email", "call", "calls_without_meeting")
"""What is compared: at least one activity of the type in the stage; ``calls_without_meeting`` is three calls or
more and no meeting."""
HEAVY_CALLS = 3
TRIM = 0.05
FOLDS = 3
"""Cross-fitting folds of the nuisance models."""
BOOTSTRAP = 400
MIN_ROWS = 30
"""Rows needed with and without the activity (and conversions and non-conversions) for an estimate."""
ASSOCIATION = "association, not a controlled experiment"
RANDOMISED = "randomised: a controlled comparison"
_IN_STAGE = frozenset({*s.ACTIVITY_IN_STAGE, "touches_per_week_in_stage", s.DAYS_IN_STAGE_SO_FAR, *s.OWNER_COLUMNS})


def stage_spells(dataset: Dataset, *, end: datetime | None = None) -> pl.DataFrame:
    """Each entry into a stage whose horizon is over, its features at entry, its outcome and its activities.

    Columns: the transition row and its features (as of entry), ``converted``, and per activity type
    ``<type>_n`` — activities of the type from entry until the stage ended (or the horizon did) — plus
    the 0/1 treatments of :data:`TREATMENTS`.
    """
    events = dataset.lazy("stage_events")
    end = end or data_end(events)
    spec = dataset.spec
    rows = build_transitions(events, spec, end=end).filter(~pl.col(s.CENSORED))
    frame = build_transition_features(dataset, rows).with_row_index("_spell")
    horizon = pl.duration(days=spec.horizon_days)
    until = pl.min_horizontal(pl.coalesce(s.EXITED_AT, pl.col(s.ENTERED_AT) + horizon), pl.col(s.ENTERED_AT) + horizon)
    id_type = frame.collect_schema()[s.OPPORTUNITY_ID]
    acts = dataset.lazy("activities").select(pl.col(s.OPPORTUNITY_ID).cast(id_type), pl.col(s.AT).alias("_at"), s.TYPE)
    spans = frame.select("_spell", s.OPPORTUNITY_ID, s.ENTERED_AT, until.alias("_until"))
    counted = (
        spans.join(acts, on=s.OPPORTUNITY_ID, how="inner")
        .filter((pl.col("_at") >= pl.col(s.ENTERED_AT)) & (pl.col("_at") < pl.col("_until")))
        .group_by("_spell")
        .agg((pl.col(s.TYPE) == kind).sum().alias(f"{kind}_n") for kind in s.ACTIVITY_TYPES)
    )
    counts = [f"{kind}_n" for kind in s.ACTIVITY_TYPES]
    out = (
        frame.join(counted, on="_spell", how="left")
        .with_columns(pl.col(c).fill_null(0) for c in counts)
        .with_columns(
            *[(pl.col(f"{kind}_n") > 0).cast(pl.Int8).alias(kind) for kind in TREATMENTS if kind in s.ACTIVITY_TYPES],
            ((pl.col("call_n") >= HEAVY_CALLS) & (pl.col("meeting_n") == 0))
            .cast(pl.Int8)
            .alias("calls_without_meeting"),
        )
        .sort("_spell")
        .drop("_spell")
    )
    return out.collect()


def _randomised_types(dataset: Dataset) -> set[str]:
    activities = dataset.tables["activities"]
    if s.RANDOMISED not in activities.columns:
        return set()
    marked = activities.group_by(s.TYPE).agg(pl.col(s.RANDOMISED).fill_null(False).all())
    return set(marked.filter(pl.col(s.RANDOMISED))[s.TYPE].to_list())


def _aipw(
    X: np.ndarray,
    t: np.ndarray,
    y: np.ndarray,
    encoder: FeatureEncoder,
    treated_encoder: FeatureEncoder,
    folds: np.ndarray,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Cross-fitted AIPW scores and propensities."""
    e = cross_fitted(X, t.astype(float), encoder, folds, seed=seed)
    mu1, mu0 = np.empty(y.size), np.empty(y.size)
    Xt = np.column_stack([X, t])
    for fold in np.unique(folds):
        test = folds == fold
        if y[~test].min() == y[~test].max():
            mu1[test] = mu0[test] = float(y[~test].mean())
            continue
        booster, _ = fit_booster(
            Xt[~test], y[~test], treated_encoder, defaults=CROSS_FIT_PARAMS, params={}, seed=seed, rounds=40
        )
        mu1[test] = booster.predict(np.column_stack([X[test], np.ones(test.sum())]))
        mu0[test] = booster.predict(np.column_stack([X[test], np.zeros(test.sum())]))
    psi = mu1 - mu0 + t * (y - mu1) / e - (1 - t) * (y - mu0) / (1 - e)
    return psi, e


def _bootstrap(psi: np.ndarray, clusters: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """95% percentile interval of the mean score, resampling opportunities."""
    codes, inverse = np.unique(clusters, return_inverse=True)
    sums = np.bincount(inverse, weights=psi, minlength=codes.size)
    sizes = np.bincount(inverse, minlength=codes.size).astype(float)
    draws = rng.integers(0, codes.size, size=(BOOTSTRAP, codes.size))
    means = sums[draws].sum(axis=1) / sizes[draws].sum(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return float(low), float(high)


def activity_effects(
    dataset: Dataset,
    *,
    end: datetime | None = None,
    seed: int = 0,
    treatments: Sequence[str] = TREATMENTS,
) -> pl.DataFrame:
    """Per stage and activity: the adjusted difference in P(next stage), its interval and its label.

    Parameters
    ----------
    treatments : the comparisons to make (default every one of :data:`TREATMENTS`).

    Returns
    -------
    One row per stage and treatment: ``stage, treatment, rows, treated_share, raw_difference, adjusted,
    adjusted_low, adjusted_high`` (differences in probability, 0.12 = 12 points), ``extreme_share`` (rows with
    a propensity outside [TRIM, 1 − TRIM], set aside), ``method``, ``label`` and ``note`` (why there is no
    estimate, when there is none). Empty when the dataset has no activities.
    """
    if not dataset.has("activities") or not dataset.has("stage_events"):
        return pl.DataFrame()
    spells = stage_spells(dataset, end=end)
    randomised = _randomised_types(dataset)
    extra = [c for c in extra_features(dataset) if c not in _IN_STAGE]
    features = [
        c for c in feature_columns(spells, extra=extra) if c not in _IN_STAGE and spells[c].null_count() < spells.height
    ]
    rng = np.random.default_rng(seed)
    out = []
    for stage in dataset.spec.open_stages:
        rows = spells.filter(pl.col(s.STAGE) == stage)
        if rows.height == 0:
            continue
        used = [c for c in features if c != s.STAGE and rows[c].null_count() < rows.height]
        encoder = FeatureEncoder.fit(rows, used, categorical_features(rows, used))
        X = encoder.matrix(rows)
        y = rows[s.CONVERTED].cast(pl.Float64).to_numpy()
        folds = fold_of(rows[s.OPPORTUNITY_ID], FOLDS, seed)
        clusters = rows[s.OPPORTUNITY_ID].cast(pl.String).to_numpy()
        for treatment in treatments:
            t = rows[treatment].cast(pl.Float64).to_numpy()
            row = {s.STAGE: stage, "treatment": treatment, "rows": rows.height, "treated_share": float(t.mean())}
            raw = float(y[t == 1].mean() - y[t == 0].mean()) if 0 < t.sum() < t.size else math.nan
            row["raw_difference"] = raw
            short = min(t.sum(), t.size - t.sum()) < MIN_ROWS or min(y.sum(), y.size - y.sum()) < MIN_ROWS
            if short:
                out.append(
                    row
                    | {
                        "note": f"too few rows with and without it (at least {MIN_ROWS} of each needed)",
                        "method": "",
                        "label": "",
                    }
                )
                continue
            base = treatment if treatment != "calls_without_meeting" else "call"
            if base in randomised:
                n1, n0 = t.sum(), t.size - t.sum()
                p1, p0 = y[t == 1].mean(), y[t == 0].mean()
                se = math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
                out.append(
                    row
                    | {
                        "adjusted": raw,
                        "adjusted_low": raw - 1.96 * se,
                        "adjusted_high": raw + 1.96 * se,
                        "extreme_share": 0.0,
                        "method": "difference of rates",
                        "label": RANDOMISED,
                    }
                )
                continue
            psi, e = _aipw(X, t, y, encoder, _with_flag(encoder), folds, seed)
            keep = (e >= TRIM) & (e <= 1 - TRIM)
            low, high = _bootstrap(psi[keep], clusters[keep], rng)
            out.append(
                row
                | {
                    "adjusted": float(psi[keep].mean()),
                    "adjusted_low": low,
                    "adjusted_high": high,
                    "extreme_share": float(1 - keep.mean()),
                    "method": "doubly robust (AIPW, cross-fitted LightGBM)",
                    "label": ASSOCIATION,
                }
            )
    columns = [
        s.STAGE,
        "treatment",
        "rows",
        "treated_share",
        "raw_difference",
        "adjusted",
        "adjusted_low",
        "adjusted_high",
        "extreme_share",
        "method",
        "label",
        "note",
    ]
    frame = pl.DataFrame(out, infer_schema_length=None)
    for column in columns:
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String if column == "note" else pl.Float64).alias(column))
    return frame.select(columns)


def _with_flag(encoder: FeatureEncoder) -> FeatureEncoder:
    """The outcome model's encoder: the features, then the activity flag (a number) last."""
    return _FlagEncoder(numeric=encoder.numeric, categorical=encoder.categorical, levels=encoder.levels)


class _FlagEncoder(FeatureEncoder):
    @property
    def names(self) -> tuple[str, ...]:
        return (*self.numeric, *self.categorical, "_treated")
