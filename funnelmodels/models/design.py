"""The feature matrix a model sees: LightGBM's encoding of the columns, the statsmodels engines' design.

:class:`FeatureEncoder` turns feature columns into the float matrix LightGBM takes (categories
as level indices). :func:`design_plan` learns, from training rows, the design of the logit and
ordinal engines: log scales, missing-value indicators, standardisation, which category levels get
a term of their own; :func:`design_matrix` applies it to any rows.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, NamedTuple, NotRequired, TypedDict, cast

import numpy as np
import polars as pl

from funnelmodels.data import schema as s
from funnelmodels.errors import ModelError, closest

__all__ = [
    "LOG_FEATURES",
    "MAX_LEVELS",
    "MIN_LEVEL_OUTCOMES",
    "MIN_LEVEL_ROWS",
    "OTHER",
    "UNSEEN_SHARE",
    "FeatureEncoder",
    "UnseenCategoryWarning",
    "design_matrix",
    "design_notes",
    "design_plan",
    "unit_labels",
    "warn_unseen",
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

    def unseen(self, frame: pl.DataFrame) -> dict[str, tuple[float, list[str]]]:
        """Per categorical feature, the share of rows with a level training never saw, and some such levels."""
        out: dict[str, tuple[float, list[str]]] = {}
        for column in self.categorical:
            if column not in frame.columns or frame.height == 0:
                continue
            values = frame[column].cast(pl.String)
            new = values.is_not_null() & ~values.is_in(list(self.levels.get(column, ())))
            if new.any():
                shown = values.filter(new).value_counts(sort=True).head(5)[column].to_list()
                out[column] = (float(new.cast(pl.Float64).mean() or 0.0), shown)  # type: ignore[arg-type]
        return out

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

    def code(self, name: str, value: object) -> float:
        """How one value of feature ``name`` appears in the matrix (a category as its level's index)."""
        if name in self.categorical:
            levels = self.levels[name]
            return float(levels.index(str(value))) if value is not None and str(value) in levels else math.nan
        return math.nan if value is None else float(value)  # type: ignore[arg-type]

    def rows(self, frame: pl.DataFrame) -> FeatureRows:
        """``frame`` checked against the features, ready for several predictions (its matrix built once)."""
        self.check(frame)
        return FeatureRows(frame, self)


def _same_but_spelling(value: str, levels: Sequence[str]) -> str | None:
    folded = {level.strip().casefold(): level for level in levels}
    return folded.get(value.strip().casefold()) or closest(value, levels)


UNSEEN_SHARE = 0.05
"""Above this share of scored rows with categories unseen in training, scoring warns."""


class UnseenCategoryWarning(UserWarning):
    """Many scored rows carry categories the model never saw (a spelling change in the export?)."""


def warn_unseen(encoder: FeatureEncoder, frame: pl.DataFrame) -> None:
    """Warn, per column, when more than :data:`UNSEEN_SHARE` of the rows have levels training never saw."""
    for column, (share, shown) in encoder.unseen(frame).items():
        if share <= UNSEEN_SHARE:
            continue
        known = ", ".join(repr(level) for level in encoder.levels.get(column, ())[:8])
        levels = encoder.levels.get(column, ())
        near = [f"{v!r} ~ {m!r}" for v in shown if (m := _same_but_spelling(v, levels))]
        warnings.warn(
            f"{column}: {100 * share:.0f}% of the scored rows have categories the model never saw in training "
            f"({', '.join(repr(v) for v in shown)}); they are scored as if the value were unknown. Did the export "
            f"change its spelling?{' Near: ' + ', '.join(near) + '.' if near else ''} Training knew: {known}.",
            UnseenCategoryWarning,
            stacklevel=3,
        )


@dataclass(frozen=True)
class FeatureRows:
    """Rows of features with their matrix, built on first use and then shared by every prediction.

    :meth:`subset` and :meth:`assign` give variants without building the matrix again, e.g. the
    same open deals as if they had just entered a later stage.
    """

    frame: pl.DataFrame
    encoder: FeatureEncoder
    _matrix: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def height(self) -> int:
        """The number of rows."""
        return self.frame.height

    @cached_property
    def matrix(self) -> np.ndarray:
        """The float matrix of the rows in ``encoder.names`` order (:meth:`FeatureEncoder.matrix`)."""
        return self._matrix if self._matrix is not None else self.encoder.matrix(self.frame)

    def subset(self, mask: np.ndarray) -> FeatureRows:
        """The rows where ``mask`` is true."""
        built = self.__dict__.get("matrix")
        return FeatureRows(self.frame.filter(pl.Series(mask)), self.encoder, None if built is None else built[mask])

    def assign(self, values: Mapping[str, object]) -> FeatureRows:
        """The same rows with the features in ``values`` set to one value each."""
        present = {k: v for k, v in values.items() if k in self.frame.columns}
        frame = self.frame.with_columns(pl.lit(v).alias(k) for k, v in present.items())
        built = self.__dict__.get("matrix")
        if built is None:
            return FeatureRows(frame, self.encoder)
        matrix = built.copy()
        for name, value in values.items():
            if name in self.encoder.names:
                matrix[:, self.encoder.names.index(name)] = self.encoder.code(name, value)
        return FeatureRows(frame, self.encoder, matrix)


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

Coding = Literal["reference", "every level"]


class NumericTerm(NamedTuple):
    """How one numeric feature enters the design: filled, scaled and (optionally) flagged when missing."""

    name: str
    median: float
    """The training median, given to a missing value."""
    mean: float
    sd: float
    indicator: bool
    """A 0/1 column says the value was missing (only when some, not all, training rows miss it)."""
    log: bool
    """Taken as log(1 + x) first (:data:`LOG_FEATURES`)."""


class CategoryPlan(TypedDict):
    """Which levels of one category get a term of their own (:func:`_category_plan`)."""

    name: str
    reference: str
    levels: list[str]
    """Levels with a term of their own, most frequent first (the reference not among them)."""
    other: bool
    """The remaining levels are pooled into one term ``other`` (else they count as the reference)."""
    pooled_levels: int
    pooled_rows: int
    seen: list[str]
    """Pooled levels counted with the reference (when there is no ``other``)."""
    shares: list[float]
    """Training share of each term's level: an unseen level is scored as their average."""
    reference_share: float


class DesignPlan(TypedDict):
    """The design the statsmodels engines learnt from training rows, as plain data (saved in model.json)."""

    coding: Coding
    numeric: list[NumericTerm]
    categorical: list[CategoryPlan]
    keep: list[int]
    """Columns of the full design kept (the others are combinations of kept ones)."""
    terms: list[str]
    owners: list[str]
    """The feature each term belongs to."""
    dropped: list[str]
    copies: dict[str, str]
    """Dropped terms that are exact copies of a kept term: {dropped: kept}."""
    entangled: NotRequired[list[str]]
    """Terms the ordinal model left out because they move with another (variance inflation)."""


def plan_from_json(data: Mapping[str, Any]) -> DesignPlan:
    """A :class:`DesignPlan` read back from JSON (numeric terms arrive as lists)."""
    plan = cast(DesignPlan, dict(data))
    plan["numeric"] = [NumericTerm(*term) for term in data["numeric"]]
    return plan


def _numeric_values(frame: pl.DataFrame, name: str, log: bool) -> np.ndarray:
    raw = frame[name].cast(pl.Float64).to_numpy()
    return np.log1p(np.clip(raw, 0, None)) if log else raw


def _category_values(frame: pl.DataFrame, name: str) -> np.ndarray:
    return frame[name].cast(pl.String).fill_null(s.MISSING_LABEL).to_numpy()


def _category_plan(values: np.ndarray, target: np.ndarray | None, name: str) -> CategoryPlan | None:
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
    coding: Coding = "reference",
) -> DesignPlan:
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

    Returns plain data: ``coding, numeric, categorical, keep, terms, owners, dropped, copies``.
    """
    numeric: list[NumericTerm] = []
    terms: list[str] = []
    owners: list[str] = []
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
        numeric.append(NumericTerm(name, med, float(filled.mean()), sd, indicator, log))
        terms.append(f"log(1+{name})" if log else name)
        owners.append(name)
        if indicator:
            terms.append(f"{name} missing")
            owners.append(name)
    categorical: list[CategoryPlan] = []
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
    X = _full_design(frame, numeric, categorical, coding)
    independent = [j - 1 for j in _independent(np.column_stack([np.ones(frame.height), X]))[1:]]
    dropped = [j for j in range(len(terms)) if j not in independent]
    copies = _copies(X, dropped, independent)
    keep = independent if coding == "reference" else list(range(len(terms)))
    if coding == "every level":
        # A full set of level columns always sums to the constant: that is the coding, not a duplicate.
        references = {f"{e['name']} = {e['reference']}" for e in categorical}
        dropped = [j for j in dropped if terms[j] not in references]
    return DesignPlan(
        coding=coding,
        numeric=numeric,
        categorical=categorical,
        keep=keep,
        terms=[terms[j] for j in keep],
        owners=[owners[j] for j in keep],
        dropped=[terms[j] for j in dropped],
        copies={terms[j]: terms[k] for j, k in copies.items() if j in dropped},
    )


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


def design_matrix(frame: pl.DataFrame, plan: DesignPlan) -> np.ndarray:
    """The standardised design of ``frame`` (no constant column) as learnt by :func:`design_plan`."""
    return _full_design(frame, plan["numeric"], plan["categorical"], plan["coding"])[:, plan["keep"]]


def _full_design(
    frame: pl.DataFrame, numeric: Sequence[NumericTerm], categorical: Sequence[CategoryPlan], coding: Coding
) -> np.ndarray:
    """Every column of the design, before the ones that duplicate others are left out."""
    cols = []
    for name, med, mean, sd, indicator, log in numeric:
        raw = _numeric_values(frame, name, log)
        missing = np.isnan(raw)
        cols.append((np.where(missing, med, raw) - mean) / sd)
        if indicator:
            cols.append(missing.astype(float))
    every = coding == "every level"
    for entry in categorical:
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
    return np.column_stack(cols) if cols else np.empty((frame.height, 0))


def design_notes(plan: DesignPlan, *, where: str) -> list[str]:
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
    copies = plan["copies"]
    if copies:
        pairs = "; ".join(f"{t!r} = {k!r}" for t, k in list(copies.items())[:8]) + (" …" if len(copies) > 8 else "")
        notes.append(
            f"{where}: some terms are exact copies of others in the training rows ({pairs}; e.g. with one order "
            "per customer total = mean = largest, or the same customers missing several values). "
            + (
                "The penalised fit shares their effect evenly between the copies."
                if plan["coding"] == "every level"
                else "Each copy was left out; its effect shows in the term it copies."
            )
        )
    entangled = [t for t in plan["dropped"] if t not in copies]
    if entangled:
        shown = ", ".join(repr(t) for t in entangled[:8]) + (" …" if len(entangled) > 8 else "")
        if plan["coding"] == "every level":
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


def unit_labels(plan: DesignPlan) -> dict[str, str]:
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
