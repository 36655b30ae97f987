"""What the model engines share: feature encoding, reasons in words, JSON persistence.

Models are saved as JSON (and LightGBM's own text format), never pickle: a saved
model can be read, diffed and loaded without running code from the file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from funnelmodels.errors import ModelError

__all__ = [
    "FeatureEncoder",
    "package_versions",
    "read_json",
    "reason_text",
    "top_reasons",
    "write_json",
]


@dataclass(frozen=True)
class FeatureEncoder:
    """Turns a feature frame into a float matrix, the same way at fit and at predict time.

    Numeric columns become float64 (null → NaN); categorical columns become the index of
    their level in ``levels`` (unknown or null → NaN), so LightGBM treats them as categories.
    """

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    levels: Mapping[str, tuple[str, ...]]

    @staticmethod
    def fit(frame: pl.DataFrame, features: Sequence[str], categorical: Sequence[str]) -> FeatureEncoder:
        """Learn the columns and category levels from training rows."""
        cats = tuple(c for c in features if c in categorical)
        nums = tuple(c for c in features if c not in categorical)
        levels = {c: tuple(sorted(frame[c].cast(pl.String).drop_nulls().unique().to_list())) for c in cats}
        return FeatureEncoder(numeric=nums, categorical=cats, levels=levels)

    @property
    def names(self) -> tuple[str, ...]:
        """Column order of the matrix."""
        return (*self.numeric, *self.categorical)

    def check(self, frame: pl.DataFrame | pl.LazyFrame) -> None:
        """Raise a clear ModelError when ``frame`` lacks a feature or has it in another type."""
        schema = frame.collect_schema()
        missing = [c for c in self.names if c not in schema]
        wrong = [c for c in self.numeric if c in schema and not (schema[c].is_numeric() or schema[c] == pl.Boolean)]
        if missing or wrong:
            parts = []
            if missing:
                parts.append(f"missing feature columns {missing}")
            if wrong:
                parts.append(f"columns {wrong} are not numeric as they were in training")
            raise ModelError(
                "the data does not match the model's feature schema: "
                + "; ".join(parts)
                + ". Was the model trained on another dataset layout? Retrain it on this data (funnelmodels train)."
            )

    def matrix(self, frame: pl.DataFrame) -> np.ndarray:
        """The float matrix of ``frame`` in :attr:`names` order."""
        self.check(frame)
        exprs = [pl.col(c).cast(pl.Float64) for c in self.numeric]
        for c in self.categorical:
            levels = list(self.levels[c])
            exprs.append(
                pl.col(c)
                .cast(pl.String)
                .replace_strict(levels, list(range(len(levels))), default=None, return_dtype=pl.Float64)
            )
        if not exprs:
            return np.empty((frame.height, 0))
        return frame.select(exprs).to_numpy().astype(np.float64)

    def to_json(self) -> dict[str, Any]:
        """Plain-data form for metadata.json."""
        return {"numeric": list(self.numeric), "categorical": list(self.categorical), "levels": dict(self.levels)}

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> FeatureEncoder:
        """Inverse of :meth:`to_json`."""
        return FeatureEncoder(
            numeric=tuple(data["numeric"]),
            categorical=tuple(data["categorical"]),
            levels={k: tuple(v) for k, v in data["levels"].items()},
        )


_LABELS = {
    "age": ("age {v:.0f}", "age unknown"),
    "income": ("income {k}", "income unknown"),
    "product_knowledge": ("product knowledge {v:.0f}/5", "product knowledge unknown"),
    "tenure_days": ("customer for {v:.0f} days", None),
    "recency_days": ("last purchase {v:.0f} days ago", "no purchase yet"),
    "frequency": ("{v:.0f} earlier orders", None),
    "monetary_total": ("{k} spent before", None),
    "monetary_mean": ("average order {k}", "no orders yet"),
    "monetary_max": ("largest order {k}", "no orders yet"),
    "distinct_categories": ("bought in {v:.0f} categories", None),
    "spend_90d": ("{k} spent in the last 90 days", None),
    "spend_365d": ("{k} spent in the last year", None),
    "refund_count": ("{v:.0f} refunds", None),
    "refund_amount": ("{k} refunded", None),
    "last_csat": ("last CSAT {v:.0f}", "no CSAT yet"),
    "mean_csat": ("mean CSAT {v:.1f}", "no CSAT yet"),
    "last_nps": ("last NPS {v:.0f}", "no NPS yet"),
    "survey_count": ("{v:.0f} surveys answered", None),
    "prior_opportunities": ("{v:.0f} earlier opportunities", None),
    "prior_wins": ("{v:.0f} earlier wins", None),
    "prior_losses": ("{v:.0f} earlier losses", None),
    "days_since_opportunity_start": ("{v:.0f} days since the lead", None),
    "stage_entry": ("entry {v:.0f} into this stage", None),
    "deal_amount": ("deal size {k}", "deal size unknown"),
}


def _compact(value: float) -> str:
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if abs(value) >= 1_000:
        return f"{value / 1_000:.0f}k"
    return f"{value:,.0f}"


def reason_text(feature: str, value: object, contribution: float) -> str:
    """One reason in plain words, e.g. ``income 92k raises odds``."""
    direction = "raises" if contribution > 0 else "lowers"
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    template, unknown = _LABELS.get(feature, (None, None))
    if missing:
        text = unknown or f"{feature.replace('_', ' ')} unknown"
    elif template and isinstance(value, int | float):
        text = template.format(v=float(value), k=_compact(float(value)))
    else:
        text = f"{feature.replace('_', ' ')} {value}"
    return f"{text} {direction} odds"


def top_reasons(
    contributions: np.ndarray, names: Sequence[str], values: pl.DataFrame, *, k: int = 3
) -> list[dict[str, list[str]]]:
    """Per row, the ``k`` strongest positive and negative reasons in words.

    Parameters
    ----------
    contributions : (rows, features) log-odds contributions.
    names : feature names of the columns.
    values : the rows' raw feature values (for the words).
    """
    out = []
    rows = values.select(list(names)).rows()
    for row_contrib, row_values in zip(contributions, rows, strict=True):
        order = np.argsort(row_contrib)
        up = [i for i in order[::-1][:k] if row_contrib[i] > 1e-9]
        down = [i for i in order[:k] if row_contrib[i] < -1e-9]
        out.append(
            {
                "up": [reason_text(names[i], row_values[i], row_contrib[i]) for i in up],
                "down": [reason_text(names[i], row_values[i], row_contrib[i]) for i in down],
            }
        )
    return out


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape a model's numbers."""
    out = {}
    for name in ("funnelmodels", "polars", "numpy", "lightgbm", "statsmodels", "scikit-learn"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.floating):
        return _clean(float(value))
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON deterministically (sorted keys, NaN as null)."""
    path.write_text(json.dumps(_clean(dict(data)), indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def read_json(path: Path) -> dict[str, Any]:
    """Read a model's JSON file, with a clear error when it is missing or damaged."""
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ModelError(f"{path} is missing: is {path.parent} a model folder written by funnelmodels train?") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path} is not valid JSON ({exc}); the model folder is damaged, retrain it.") from None
