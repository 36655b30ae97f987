"""What the model engines share: feature encoding, reasons in words, JSON persistence.

Models are saved as JSON (and LightGBM's own text format), never as Python object dumps: a saved
model can be read, diffed and loaded without running code from the file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from funnelmodels.data import schema as s
from funnelmodels.errors import ModelError

__all__ = [
    "LOG_FEATURES",
    "FeatureEncoder",
    "design_matrix",
    "design_notes",
    "design_plan",
    "read_json",
    "read_model",
    "reason_text",
    "top_reasons",
    "unit_labels",
    "write_json",
    "write_model",
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


# Skewed amounts and counts enter the statsmodels engines as log(1 + x): a customer's
# tenth order matters less than the first, and a 90k income is not twice a 45k one.
LOG_FEATURES = (
    "income",
    "frequency",
    "monetary_total",
    "monetary_mean",
    "monetary_max",
    "spend_90d",
    "spend_365d",
    "refund_amount",
    "deal_amount",
)
MIN_LEVEL_ROWS = 30
"""A category level needs this many training rows for its own term (else it is pooled as 'other')."""
MIN_LEVEL_OUTCOMES = 5
"""… and, for a yes/no target, this many rows of each outcome (a level that never converts separates)."""
MAX_LEVELS = 30
"""At most this many levels of one category get their own term (the most frequent); the rest is 'other'."""
OTHER = "other"


def _numeric_values(frame: pl.DataFrame, name: str, log: bool) -> np.ndarray:
    raw = frame[name].cast(pl.Float64).to_numpy()
    return np.log1p(np.clip(raw, 0, None)) if log else raw


def _category_values(frame: pl.DataFrame, name: str) -> np.ndarray:
    return frame[name].cast(pl.String).fill_null(s.MISSING_LABEL).to_numpy()


def _category_plan(values: np.ndarray, target: np.ndarray | None, name: str) -> dict[str, Any] | None:
    """Which levels of one category get a term; the others pooled as 'other' or with the reference.

    A level gets a term with at least :data:`MIN_LEVEL_ROWS` rows (and, for a yes/no target,
    :data:`MIN_LEVEL_OUTCOMES` of each outcome), up to :data:`MAX_LEVELS` levels by frequency.
    The most frequent such level is the reference. The remaining levels (rare, separating, or
    beyond the cap) form 'other' when together they meet the same thresholds; otherwise they
    join the reference. Levels unseen in training are scored as 'other' (or the reference).
    """
    levels, slot, counts = np.unique(values, return_inverse=True, return_counts=True)
    positives = (
        np.bincount(slot, weights=np.asarray(target, dtype=float), minlength=levels.size)
        if target is not None
        else np.full(levels.size, np.inf)
    )
    order = np.lexsort((levels, -counts))
    levels, counts, positives = levels[order], counts[order], positives[order]

    def enough(rows: float, pos: float) -> bool:
        return rows >= MIN_LEVEL_ROWS and (target is None or min(pos, rows - pos) >= MIN_LEVEL_OUTCOMES)

    qualified = [i for i in range(levels.size) if enough(counts[i], positives[i])][: MAX_LEVELS + 1]
    if not qualified:
        return None
    pooled = [i for i in range(levels.size) if i not in qualified]
    pooled_rows = int(counts[pooled].sum())
    other = bool(pooled) and enough(pooled_rows, float(positives[pooled].sum()))
    own = [str(levels[i]) for i in qualified[1:]]
    if not own and not other:
        return None
    total = float(counts.sum())
    return {
        "name": name,
        "reference": str(levels[qualified[0]]),
        "levels": own,
        "other": other,
        "pooled_levels": len(pooled),
        "pooled_rows": pooled_rows,
        "seen": [str(levels[i]) for i in pooled] if not other else [],
        # Training share of each term's level: a level never seen in training is scored as
        # the average of the levels seen (its terms set to these shares), not as the reference.
        "shares": [float(counts[i]) / total for i in qualified[1:]] + ([pooled_rows / total] if other else []),
        "reference_share": (float(counts[qualified[0]]) + (0.0 if other else pooled_rows)) / total,
    }


def design_plan(
    frame: pl.DataFrame,
    encoder: FeatureEncoder,
    *,
    exclude: Sequence[str] = (),
    target: np.ndarray | None = None,
    coding: Literal["reference", "every level"] = "reference",
) -> dict[str, Any]:
    """Learn a standardised design for the statsmodels engines from training rows.

    Numeric features: log(1 + x) for :data:`LOG_FEATURES`, missing values set to the median
    plus a 0/1 missing indicator, then standardised (so raw, badly scaled columns fit).
    Categorical features (a missing value is the level ``(missing)``): one 0/1 column per level
    with enough rows — and, given a yes/no ``target``, enough of each outcome — up to
    :data:`MAX_LEVELS`; the rest pooled as ``other`` (see :func:`_category_plan`).

    ``coding="reference"``: the most frequent level is the reference (no column), and columns
    that are linear combinations of others (with a constant) are dropped and listed in
    ``dropped`` — the plain likelihood needs a full-rank design. ``coding="every level"``: the
    reference level gets a column too and nothing is dropped (``dropped`` then lists the terms
    that duplicate others): for a penalised fit, which shares an effect the data cannot pin
    on one term evenly among the terms that carry it.

    Returns plain data: ``coding, numeric, categorical, keep, terms, owners, dropped``.
    """
    numeric, terms, owners = [], [], []
    for name in encoder.numeric:
        if name in exclude:
            continue
        log = name in LOG_FEATURES
        raw = _numeric_values(frame, name, log)
        missing = np.isnan(raw)
        if missing.all():
            continue
        med = float(np.median(raw[~missing]))
        filled = np.where(missing, med, raw)
        sd = float(filled.std())
        if sd <= 1e-12 * max(1.0, abs(float(filled.mean()))):  # constant (up to rounding): no information
            continue
        indicator = bool(0 < missing.sum() < raw.size)
        numeric.append((name, med, float(filled.mean()), sd, indicator, log))
        terms.append(f"log(1+{name})" if log else name)
        owners.append(name)
        if indicator:
            terms.append(f"{name} missing")
            owners.append(name)
    categorical = []
    for name in encoder.categorical:
        if name in exclude:
            continue
        entry = _category_plan(_category_values(frame, name), target, name)
        if entry is None:
            continue
        categorical.append(entry)
        named = ([entry["reference"]] if coding == "every level" else []) + entry["levels"]
        named += [OTHER] if entry["other"] else []
        terms.extend(f"{name} = {v}" for v in named)
        owners.extend(name for _ in named)
    plan: dict[str, Any] = {"coding": coding, "numeric": numeric, "categorical": categorical}
    X = design_matrix(frame, plan)
    independent = [j - 1 for j in _independent(np.column_stack([np.ones(frame.height), X]))[1:]]
    dropped = [j for j in range(len(terms)) if j not in independent]
    copies = _copies(X, dropped, independent)
    keep = independent if coding == "reference" else list(range(len(terms)))
    if coding == "every level":
        # A full set of level columns always sums to the constant: that is the coding, not a duplicate.
        references = {f"{e['name']} = {e['reference']}" for e in categorical}
        dropped = [j for j in dropped if terms[j] not in references]
    return plan | {
        "keep": keep,
        "terms": [terms[j] for j in keep],
        "owners": [owners[j] for j in keep],
        "dropped": [terms[j] for j in dropped],
        "copies": {terms[j]: terms[k] for j, k in copies.items() if j in dropped},
    }


def _copies(X: np.ndarray, dropped: Sequence[int], kept: Sequence[int]) -> dict[int, int]:
    """Dropped columns that are exact copies (up to scale and shift) of one kept column: {dropped: kept}."""
    if not dropped or not kept:
        return {}
    centred = X - X.mean(axis=0)
    norms = np.linalg.norm(centred, axis=0)
    unit = centred / np.where(norms > 0, norms, 1.0)
    out = {}
    for j in dropped:
        corr = np.abs(unit[:, list(kept)].T @ unit[:, j])
        best = int(np.argmax(corr))
        if norms[j] > 0 and corr[best] > 1 - 1e-9:
            out[j] = int(kept[best])
    return out


def design_matrix(frame: pl.DataFrame, plan: Mapping[str, Any]) -> np.ndarray:
    """The standardised design of ``frame`` (no constant column) as learnt by :func:`design_plan`."""
    cols = []
    for name, med, mean, sd, indicator, log in plan["numeric"]:
        raw = _numeric_values(frame, name, log)
        missing = np.isnan(raw)
        cols.append((np.where(missing, med, raw) - mean) / sd)
        if indicator:
            cols.append(missing.astype(float))
    every = plan.get("coding") == "every level"
    for entry in plan["categorical"]:
        values = _category_values(frame, entry["name"])
        named = np.isin(values, [entry["reference"], *entry["levels"], *entry["seen"]])
        block = [(values == level).astype(float) for level in entry["levels"]]
        shares = list(entry["shares"])
        if every:
            pooled_with_reference = np.isin(values, [entry["reference"], *entry["seen"]])
            block.insert(0, pooled_with_reference.astype(float))
            shares.insert(0, entry["reference_share"])
        if entry["other"]:
            block.append((~named).astype(float))
        elif (~named).any():
            # Unseen levels: the average of the levels seen in training.
            for column, share in zip(block, shares, strict=True):
                column[~named] = share
        cols.extend(block)
    X = np.column_stack(cols) if cols else np.empty((frame.height, 0))
    return X[:, plan["keep"]] if "keep" in plan else X


def design_notes(plan: Mapping[str, Any], *, where: str) -> list[str]:
    """Plain-words notes on what the design pooled or left out, for a model's notes."""
    notes = []
    for entry in plan["categorical"]:
        if entry["pooled_levels"]:
            fate = (
                f"pooled as '{OTHER}'" if entry["other"] else f"counted with the reference level {entry['reference']!r}"
            )
            notes.append(
                f"{where}: {entry['pooled_levels']:,} level(s) of {entry['name']!r} ({entry['pooled_rows']:,} rows) "
                f"have too few rows or outcomes for an odds ratio of their own (each needs {MIN_LEVEL_ROWS} rows and "
                f"{MIN_LEVEL_OUTCOMES} of each outcome; at most {MAX_LEVELS} levels) and are {fate}."
            )
    copies = plan.get("copies", {})
    if copies:
        pairs = "; ".join(f"{t!r} = {k!r}" for t, k in list(copies.items())[:8]) + (" …" if len(copies) > 8 else "")
        notes.append(
            f"{where}: some terms are exact copies of others in the training rows ({pairs}; e.g. with one order "
            "per customer total = mean = largest, or the same customers missing several values). "
            + (
                "The penalised fit shares their effect evenly between the copies."
                if plan.get("coding") == "every level"
                else "Each copy was left out; its effect shows in the term it copies."
            )
        )
    entangled = [t for t in plan.get("dropped", []) if t not in copies]
    if entangled:
        shown = ", ".join(repr(t) for t in entangled[:8]) + (" …" if len(entangled) > 8 else "")
        if plan.get("coding") == "every level":
            fate = (
                "the penalised fit shares the effect evenly among the terms that carry it, so read their odds "
                "ratios together, not one by one"
            )
        else:
            fate = "they were left out; their effect shows in the terms they duplicate"
        notes.append(
            f"{where}: {shown} carry no information beyond several other terms together in the training rows "
            f"(each is an exact combination of them, e.g. a month whose economic figures were the same all "
            f"month); {fate}."
        )
    return notes


def unit_labels(plan: Mapping[str, Any]) -> dict[str, str]:
    """What one unit of each term means, for coefficient tables."""
    units = {}
    for name, _, _, sd, indicator, log in plan["numeric"]:
        units[f"log(1+{name})" if log else name] = f"per {sd:,.3g} (1 SD)" + (" of log(1+x)" if log else "")
        if indicator:
            units[f"{name} missing"] = "missing vs known"
    for entry in plan["categorical"]:
        reference = f"vs {entry['reference']}"
        units |= {f"{entry['name']} = {v}": reference for v in entry["levels"]}
        units[f"{entry['name']} = {entry['reference']}"] = "the reference level"
        if entry["other"]:
            units[f"{entry['name']} = {OTHER}"] = f"{entry['pooled_levels']} rare levels pooled, {reference}"
    return units


def _independent(X: np.ndarray) -> list[int]:
    """Columns of X that are not linear combinations of earlier ones (Gram-Schmidt with a tolerance).

    Missing-value indicators of related features are often identical (no purchase yet means
    no recency, no mean order value, …); a likelihood cannot separate such columns.
    """
    keep: list[int] = []
    basis = np.empty((X.shape[0], 0))
    for j in range(X.shape[1]):
        column = X[:, j]
        residual = column - basis @ (basis.T @ column) if basis.shape[1] else column
        norm = float(np.linalg.norm(residual))
        if norm > 1e-8 * max(float(np.linalg.norm(column)), 1.0):
            keep.append(j)
            basis = np.column_stack([basis, residual / norm])
    return keep


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


IMPORTANCE_ROWS = 10_000


def importance_rows(frame: pl.DataFrame, max_rows: int | None = IMPORTANCE_ROWS) -> pl.DataFrame:
    """At most ``max_rows`` rows of ``frame`` (a seeded random sample, in their order) for importance.

    Mean |contribution| over 10,000 rows is within 1% of the full-data value (measured on the
    29,000 test rows of a 100k-customer dataset), while TreeSHAP on every test row of a
    million-customer dataset takes minutes.
    """
    if max_rows is None or frame.height <= max_rows:
        return frame
    return frame.with_row_index("_i").sample(max_rows, seed=0).sort("_i").drop("_i")


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


def write_model(
    folder: Path,
    *,
    kind: str,
    engine: str,
    encoder: FeatureEncoder,
    state: Mapping[str, Any],
    metadata: Mapping[str, Any],
    **extra: Any,
) -> None:
    """Write ``folder/model.json``: the model's kind, engine, encoder, parameters and metadata."""
    write_json(
        folder / "model.json",
        {
            "kind": kind,
            "engine": engine,
            **extra,
            "encoder": encoder.to_json(),
            "state": dict(state),
            "metadata": dict(metadata),
        },
    )


def read_model(folder: Path, *, kind: str, format_version: int) -> dict[str, Any]:
    """Read ``folder/model.json`` and check it holds a ``kind`` model in ``format_version``."""
    data = read_json(folder / "model.json")
    if data.get("kind") != kind:
        raise ModelError(f"{folder} holds a {data.get('kind')!r} model, not a {kind.replace('_', '-')} model.")
    version = data.get("metadata", {}).get("format_version")
    if version != format_version:
        raise ModelError(
            f"{folder} was saved in model format {version}; this funnelmodels reads {format_version}. Retrain it."
        )
    return data


def read_json(path: Path) -> dict[str, Any]:
    """Read a model's JSON file, with a clear error when it is missing or damaged."""
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ModelError(f"{path} is missing: is {path.parent} a model folder written by funnelmodels train?") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path} is not valid JSON ({exc}); the model folder is damaged, retrain it.") from None
