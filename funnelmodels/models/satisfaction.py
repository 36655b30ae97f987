"""Customer-satisfaction models: ordinal logit and LightGBM on CSAT (1-5) or NPS (0-10).

Rows are survey responses; features are point-in-time at the survey's responded_at.

- ``ordinal``: statsmodels ``OrderedModel`` with a logit link on the standardised design
  shared with the conversion logit: coefficients with 95% intervals (per standard deviation
  and per unit of the feature), thresholds, and the predicted distribution over the levels.
- ``lightgbm``: multiclass (softmax) over the levels. Chosen over an ordinal-aware
  regression because every measure we report needs the full distribution (P(CSAT ≤ 2) for
  the at-risk list, P(4-5), promoters and detractors, the ranked probability score), which
  a regression on the score does not give; with five or eleven levels and thousands of
  responses a multiclass model learns the order from the data. Deterministic like the
  conversion booster.

Both expose ``predict_proba`` (rows × levels), ``predict`` (expected score),
``evaluate``, ``explain``, ``save`` and ``load``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict, cast

import numpy as np
import polars as pl

from funnelmodels.config import SatisfactionScale
from funnelmodels.data import schema as s
from funnelmodels.errors import ModelError
from funnelmodels.evaluation import expected_calibration_error, strongest_features
from funnelmodels.features import categorical_features, feature_columns
from funnelmodels.models.boosting import IMPORTANCE_ROWS, booster_from_text, importance_rows, train_booster
from funnelmodels.models.design import (
    DesignPlan,
    FeatureEncoder,
    design_matrix,
    design_notes,
    design_plan,
    plan_from_json,
    unit_labels,
)
from funnelmodels.models.persist import (
    booster_file,
    check_engine,
    damaged_model,
    model_metadata,
    read_model,
    write_model,
)
from funnelmodels.models.reasons import reason_text, top_reasons

__all__ = ["SATISFACTION_ENGINES", "SatisfactionModel", "ordinal_metrics"]

SatisfactionEngine = Literal["ordinal", "lightgbm"]
SATISFACTION_ENGINES: tuple[SatisfactionEngine, ...] = ("ordinal", "lightgbm")
Target = Literal["csat", "nps"]
LEVELS: dict[str, tuple[int, ...]] = {"csat": (1, 2, 3, 4, 5), "nps": tuple(range(11))}
"""The default scales; a dataset's ``[satisfaction] csat`` sets its own (:class:`SatisfactionScale`)."""
NPS_SCALE = SatisfactionScale(lowest=0, highest=10, satisfied=9, low=6)
FORMAT_VERSION = 2
MIN_RESPONSES = 100

LIGHTGBM_DEFAULTS: dict[str, Any] = {
    # 0.1, not 0.05: 57 rounds instead of 138 at M (100k customers) for the same test ranked probability
    # score (0.14586 vs 0.14580) and log loss (+0.0003); the fit takes half as long (4.3 s vs 8.1 s).
    "learning_rate": 0.1,
    "num_leaves": 15,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.9,
    "lambda_l2": 1.0,
    "num_boost_round": 1000,
    "early_stopping_rounds": 50,
}


class ScaleState(TypedDict):
    """The score levels a satisfaction model knows and how its scale reads them."""

    levels: list[int]
    """The scores seen in training, lowest first: the columns of ``predict_proba``."""
    satisfied_from: int
    low_up_to: int
    scale: list[int]
    """``[lowest, highest]`` of the scale."""
    notes: NotRequired[list[str]]


class OrdinalState(ScaleState):
    """The ordinal logit's parameters as plain data."""

    plan: DesignPlan
    beta: list[float]
    thresholds: list[float]
    ci_low: list[float]
    ci_high: list[float]
    pvalues: list[float]
    converged: bool


class BoosterState(ScaleState):
    """The LightGBM engine's parameters as plain data (its text model is saved beside model.json)."""

    model: str
    best_iteration: int


OWN_ANSWERS = {"last_csat": (2, 4), "mean_csat": (2, 4), "last_nps": (6, 9)}
"""A customer's own earlier answers: at or below the first value it is low, at or above the second high."""


def _against_own_answers(frame: pl.DataFrame, names: Sequence[str], contributions: np.ndarray) -> np.ndarray:
    """Where a contribution runs against the customer's own answer.

    A low answer pushing satisfaction up, or a high one pushing it down.
    """
    out = np.zeros(contributions.shape, dtype=bool)
    for j, name in enumerate(names):
        if name not in OWN_ANSWERS:
            continue
        low, high = OWN_ANSWERS[name]
        value = frame[name].cast(pl.Float64).to_numpy()
        with np.errstate(invalid="ignore"):
            out[:, j] = ((value <= low) & (contributions[:, j] > 1e-9)) | (
                (value >= high) & (contributions[:, j] < -1e-9)
            )
    return out


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _ordinal_proba(eta: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    cdf = 1.0 / (1.0 + np.exp(-(thresholds[None, :] - eta[:, None])))
    cdf = np.hstack([np.zeros((eta.size, 1)), cdf, np.ones((eta.size, 1))])
    return np.clip(np.diff(cdf, axis=1), 0.0, 1.0)


def check_target(frame: pl.DataFrame, target: Target) -> None:
    """Refuse, with a message naming the problem, a target that cannot be modelled."""
    if target not in LEVELS:
        raise ModelError(f"target must be csat or nps; received {target!r}.")
    if target not in frame.columns:
        raise ModelError(f"surveys has no {target} column; satisfaction models need one.")
    values = frame[target].drop_nulls()
    if values.len() < MIN_RESPONSES:
        raise ModelError(
            f"only {values.len()} survey responses with a {target} score; a satisfaction model needs at least "
            f"{MIN_RESPONSES}."
        )
    if values.n_unique() < 2:
        raise ModelError(f"every {target} score is {values[0]}; a constant score cannot be modelled.")


@dataclass(frozen=True)
class SatisfactionModel:
    """A fitted satisfaction model (frozen): engine, target, encoder and parameters as plain data."""

    engine: SatisfactionEngine
    target: Target
    encoder: FeatureEncoder
    state: OrdinalState | BoosterState
    metadata: Mapping[str, Any] = field(default_factory=dict)
    _booster: Any = field(default=None, compare=False, repr=False)

    def __repr__(self) -> str:
        """Engine, target, levels and features in one line (``.metadata`` has the rest)."""
        return (
            f"SatisfactionModel({self.engine}; {self.target}; levels {list(self.levels)}; "
            f"{len(self.encoder.names)} features)"
        )

    @property
    def levels(self) -> tuple[int, ...]:
        """The score levels the model gives probabilities to (those seen in training), lowest first."""
        return tuple(self.state["levels"])

    @property
    def _ordinal(self) -> OrdinalState:
        if self.engine != "ordinal":
            raise ModelError(f"this is a {self.engine} model, not the ordinal logit.")
        return cast(OrdinalState, self.state)

    @property
    def satisfied_from(self) -> int:
        """Scores from here up count as satisfied."""
        return int(self.state["satisfied_from"])

    @property
    def low_up_to(self) -> int:
        """Scores up to here count as low (the at-risk list's P(low))."""
        return int(self.state["low_up_to"])

    @classmethod
    def fit(
        cls,
        train: pl.DataFrame,
        *,
        engine: SatisfactionEngine = "ordinal",
        target: Target = "csat",
        validation: pl.DataFrame | None = None,
        features: Sequence[str] | None = None,
        params: Mapping[str, Any] | None = None,
        seed: int = 0,
        metadata: Mapping[str, Any] | None = None,
        scale: SatisfactionScale | None = None,
    ) -> SatisfactionModel:
        """Fit on survey rows with features and the ``target`` score (rows without it are skipped).

        Parameters
        ----------
        train : DataFrame ``<features>, csat and/or nps``.
        validation : later rows for LightGBM's early stopping; the ordinal model fits on both.
        scale : the CSAT scale (default 1–5); NPS is always 0–10. The models give probabilities to
            the scores seen in training; a score of the scale nobody gave is said in ``notes``.
        """
        if engine not in SATISFACTION_ENGINES:
            raise ModelError(f"engine must be one of {', '.join(SATISFACTION_ENGINES)}; received {engine!r}.")
        check_target(train, target)
        train = train.filter(pl.col(target).is_not_null())
        validation = (validation if validation is not None else train.head(0)).filter(pl.col(target).is_not_null())
        features = list(features) if features is not None else feature_columns(train, exclude=(s.STAGE,))
        scale = NPS_SCALE if target == "nps" else (scale or SatisfactionScale())
        capped: list[str] = []
        if engine == "ordinal":
            low = (train[target] <= scale.low_up_to).cast(pl.Float64).to_numpy()
            features, capped = strongest_features(train, features, low, keep=s.ORDER_CONTEXT, where="ordinal model")
        encoder = FeatureEncoder.fit(train, features, categorical_features(train, features))
        params = dict(params or {})
        seen = sorted({int(v) for v in pl.concat([train, validation])[target].to_list()})
        unused = [v for v in scale.levels if v not in seen]
        scale_state = ScaleState(
            levels=seen,
            satisfied_from=scale.satisfied_from,
            low_up_to=scale.low_up_to,
            scale=[scale.lowest, scale.highest],
        )
        booster = None
        state: OrdinalState | BoosterState
        if engine == "ordinal":
            state = _fit_ordinal(pl.concat([train, validation]), encoder, target, scale_state)
        else:
            state, booster = _fit_lightgbm(train, validation, encoder, target, params, seed, scale_state)
        state["notes"] = [*capped, *state.get("notes", [])]
        if unused:
            state["notes"] = [
                *state.get("notes", []),
                f"nobody gave {target.upper()} {', '.join(map(str, unused))} in the training answers: the models give "
                "those scores no probability.",
            ]
        meta = model_metadata(
            FORMAT_VERSION,
            seed=seed,
            params=params,
            train_rows=train.height,
            validation_rows=validation.height,
            notes=state.get("notes", []),
            extra=metadata,
        )
        return cls(engine, target, encoder, state, meta, booster)

    def predict_proba(self, frame: pl.DataFrame) -> np.ndarray:
        """Probability of each level (columns in :attr:`levels` order) for each row."""
        self.encoder.check(frame)
        if frame.height == 0:
            return np.empty((0, len(self.levels)))
        if self.engine == "ordinal":
            fitted = self._ordinal
            X = design_matrix(frame, fitted["plan"])
            return _ordinal_proba(X @ np.asarray(fitted["beta"]), np.asarray(fitted["thresholds"]))
        return np.asarray(self._booster.predict(self.encoder.matrix(frame))).reshape(frame.height, -1)

    def low_share(self, proba: np.ndarray) -> np.ndarray:
        """P(a low score): up to :attr:`low_up_to` (CSAT 1–2 by default; NPS 0–6, a detractor)."""
        return np.asarray(proba[:, np.asarray(self.levels) <= self.low_up_to].sum(axis=1), dtype=float)

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """Expected score of each row."""
        return np.asarray(self.predict_proba(frame) @ np.asarray(self.levels, dtype=float), dtype=float)

    def evaluate(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Metrics on rows with a score: see :func:`ordinal_metrics`."""
        rows = frame.filter(pl.col(self.target).is_not_null())
        return pl.DataFrame(
            [
                {
                    "engine": self.engine,
                    **ordinal_metrics(
                        rows[self.target].to_numpy(), self.predict_proba(rows), self.levels, self.satisfied_from
                    ),
                }
            ]
        )

    def contributions(self, frame: pl.DataFrame) -> np.ndarray:
        """Per feature, its push on satisfaction: positive = more satisfied.

        On the latent satisfaction (ordinal), or on the log-odds of the satisfied scores against
        the others (LightGBM).
        """
        return self._pushes(frame)[0]

    def _pushes(self, frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`contributions`, and for LightGBM each class's starting score (from one TreeSHAP pass)."""
        names = list(self.encoder.names)
        out = np.zeros((frame.height, len(names)))
        if self.engine == "ordinal":
            fitted = self._ordinal
            X = design_matrix(frame, fitted["plan"])
            terms = X * np.asarray(fitted["beta"])
            for j, owner in enumerate(fitted["plan"]["owners"]):
                out[:, names.index(owner)] += terms[:, j]
            return out, None
        contrib = np.asarray(self._booster.predict(self.encoder.matrix(frame), pred_contrib=True))
        k = len(self.levels)
        per_class = contrib.reshape(frame.height, k, len(names) + 1)
        # Softmax contributions per class; the satisfied scores' mean minus the others'.
        satisfied = np.asarray(self.levels) >= self.satisfied_from
        if satisfied.all() or not satisfied.any():
            satisfied = np.arange(k) >= k - 1
        features = per_class[:, :, :-1]
        contrast = features[:, satisfied, :].mean(axis=1) - features[:, ~satisfied, :].mean(axis=1)
        return np.asarray(contrast), per_class[:, :, -1]

    def risk_points(self, frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Each feature's part of a row's chance of a low score, in probability: the parts add up to p − base.

        The feature's push on satisfaction (:meth:`contributions`) is shared out in proportion over
        the distance between the row's P(low) and the model's base P(low) — with every push taken
        away (the ordinal model at the average customer; LightGBM at its starting scores). For
        the ordinal model a part has the opposite sign of the push: what raises satisfaction
        lowers the risk.

        Returns
        -------
        ``(points, base)``: an array (rows × ``encoder.names``; positive raises the risk) and each
        row's base P(low).
        """
        contributions, starts = self._pushes(frame)
        return self._risk(frame, self.predict_proba(frame), contributions, starts)

    def _risk(
        self, frame: pl.DataFrame, proba: np.ndarray, contributions: np.ndarray, starts: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`risk_points` from the probabilities and pushes already computed."""
        p = self.low_share(proba)
        if starts is None:  # the ordinal model: the average customer
            thresholds = np.asarray(self._ordinal["thresholds"])
            base = self.low_share(_ordinal_proba(np.zeros(frame.height), thresholds))
        else:
            shifted = np.exp(starts - starts.max(axis=1, keepdims=True))
            base = self.low_share(shifted / shifted.sum(axis=1, keepdims=True))
        total = contributions.sum(axis=1)
        share = np.divide(p - base, total, out=np.zeros_like(p), where=np.abs(total) > 1e-12)
        return contributions * share[:, None], base

    def explain(self, frame: pl.DataFrame, *, k: int = 3) -> pl.DataFrame:
        """Per row: expected score, P(low), and the strongest reasons, in words.

        ``reasons_down``/``reasons_up``: what lowers and raises satisfaction. ``risk_up``/``risk_down``:
        the same reasons stated in points of the chance of a low score (:meth:`risk_points`), e.g.
        "8 refunds +12.3 pts". A reason about the customer's own earlier answer that runs against
        it (a last CSAT of 1 said to raise satisfaction: the model weighing it against other
        things) is left out of the lists and named in ``left_out``.

        Returns
        -------
        DataFrame ``expected_score, p_low, base_p_low, reasons_down, reasons_up, risk_up, risk_down,
        left_out``; ``p_low`` is P(CSAT ≤ 2) or P(NPS ≤ 6, a detractor).
        """
        proba = self.predict_proba(frame)
        contributions, starts = self._pushes(frame)
        against = _against_own_answers(frame, self.encoder.names, contributions)
        reasons = top_reasons(np.where(against, 0.0, contributions), self.encoder.names, frame, k=k)
        points, base = self._risk(frame, proba, contributions, starts)
        risks = top_reasons(np.where(against, 0.0, points), self.encoder.names, frame, k=k, unit="points")
        words = {"raises odds": "raises satisfaction", "lowers odds": "lowers satisfaction"}

        def reword(items: list[str]) -> list[str]:
            return [next((t.replace(a, b) for a, b in words.items() if t.endswith(a)), t) for t in items]

        names = list(self.encoder.names)
        values = frame.select(names).rows()
        left_out = [
            [reword([reason_text(names[j], row[j], contributions[i, j])])[0] for j in np.flatnonzero(against[i])]
            for i, row in enumerate(values)
        ]
        text = pl.List(pl.String)
        return pl.DataFrame(
            {
                s.EXPECTED_SCORE: proba @ np.asarray(self.levels, dtype=float),
                s.P_LOW: self.low_share(proba),
                "base_p_low": base,
                s.REASONS_DOWN: [reword(r["down"]) for r in reasons],
                s.REASONS_UP: [reword(r["up"]) for r in reasons],
                "risk_up": [r["up"] for r in risks],
                "risk_down": [r["down"] for r in risks],
                "left_out": left_out,
            },
            schema={
                s.EXPECTED_SCORE: pl.Float64,
                s.P_LOW: pl.Float64,
                "base_p_low": pl.Float64,
                s.REASONS_DOWN: text,
                s.REASONS_UP: text,
                "risk_up": text,
                "risk_down": text,
                "left_out": text,
            },
        )

    def coefficients(self) -> pl.DataFrame:
        """The ordinal model's coefficients with 95% intervals.

        Returns
        -------
        DataFrame ``term, coef, ci_low, ci_high, p_value, unit, coef_per_unit, per_unit_low,
        per_unit_high, note``: ``coef`` per standard deviation (comparable across features, the
        key-driver view), ``coef_per_unit`` per unit of the feature (or of log(1+x)). Values that
        cannot be computed are null, and ``note`` says why.
        """
        if self.engine != "ordinal":
            raise ModelError("coefficients come from the ordinal engine; this model is LightGBM.")
        fitted = self._ordinal
        plan = fitted["plan"]
        sds = {(f"log(1+{n})" if log else n): sd for n, _, _, sd, _, log in plan["numeric"]}
        units = unit_labels(plan)
        rows = []
        for j, term in enumerate(plan["terms"]):
            scale = sds.get(term, 1.0)
            coef, low, high, p_value = (_finite(fitted[key][j]) for key in ("beta", "ci_low", "ci_high", "pvalues"))
            rows.append(
                {
                    "term": term,
                    "coef": coef,
                    "ci_low": low,
                    "ci_high": high,
                    "p_value": p_value,
                    "unit": units[term],
                    "coef_per_unit": None if coef is None else coef / scale,
                    "per_unit_low": None if low is None else low / scale,
                    "per_unit_high": None if high is None else high / scale,
                    "note": ""
                    if low is not None and high is not None
                    else "no interval: the data barely tells this term apart from others",
                }
            )
        schema = {c: pl.Float64 for c in ("coef", "ci_low", "ci_high", "p_value")} | {"unit": pl.String}
        schema |= {c: pl.Float64 for c in ("coef_per_unit", "per_unit_low", "per_unit_high")}
        rows_frame = pl.DataFrame(rows, schema={"term": pl.String, **schema, "note": pl.String})
        return rows_frame.sort(pl.col("coef").abs(), descending=True, nulls_last=True)

    def importance(self, frame: pl.DataFrame, *, max_rows: int | None = IMPORTANCE_ROWS) -> pl.DataFrame:
        """Key drivers: mean |contribution| per feature and its direction on ``frame``.

        Computed on at most ``max_rows`` rows (a seeded sample; None for all).

        Returns
        -------
        DataFrame ``feature, mean_abs_contribution, direction`` (``+`` when higher values go
        with more satisfaction, by the sign of the correlation of value and contribution).
        """
        frame = importance_rows(frame, max_rows)
        contrib = self.contributions(frame)
        X = self.encoder.matrix(frame)
        directions = []
        for j in range(X.shape[1]):
            ok = ~np.isnan(X[:, j])
            if (
                ok.sum() > 2
                and X[ok, j].std() > 0
                and contrib[ok, j].std() > 0
                and self.encoder.names[j] not in self.encoder.categorical
            ):
                directions.append("+" if np.corrcoef(X[ok, j], contrib[ok, j])[0, 1] > 0 else "−")
            else:
                directions.append("by level")
        return pl.DataFrame(
            {
                "feature": list(self.encoder.names),
                "mean_abs_contribution": np.abs(contrib).mean(axis=0),
                "direction": directions,
            }
        ).sort("mean_abs_contribution", descending=True)

    def save(self, folder: str | Path) -> Path:
        """Write JSON (+ LightGBM's text model), nothing executable."""
        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        state: dict[str, Any] = dict(self.state)
        if self.engine == "lightgbm":
            (root / booster_file()).write_text(state.pop("model"), encoding="utf-8")
        write_model(
            root,
            kind="satisfaction",
            engine=self.engine,
            encoder=self.encoder,
            state=state,
            metadata=self.metadata,
            target=self.target,
        )
        return root

    @classmethod
    def load(cls, folder: str | Path, *, engine: str | None = None) -> SatisfactionModel:
        """Load a model written by :meth:`save` (of ``engine``, when given).

        Raises
        ------
        ModelError ``model folder damaged: …`` for anything but what :meth:`save` wrote.
        """
        root = Path(folder)
        with damaged_model(root):
            data = read_model(root, kind="satisfaction", format_version=FORMAT_VERSION)
            check_engine(root, data["engine"], engine)
            saved = dict(data["state"])
            booster = None
            state: OrdinalState | BoosterState
            if data["engine"] == "lightgbm":
                state = cast(BoosterState, saved | {"model": (root / booster_file()).read_text(encoding="utf-8")})
                booster = booster_from_text(state["model"])
            elif data["engine"] == "ordinal":
                state = cast(OrdinalState, saved | {"plan": plan_from_json(saved["plan"])})
            else:
                raise ModelError(
                    f"model folder damaged: {root} holds an unknown engine {data['engine']!r}; retrain it."
                )
            if data["target"] not in ("csat", "nps"):
                raise ModelError(
                    f"model folder damaged: {root} predicts an unknown score {data['target']!r}; retrain it."
                )
            return cls(
                data["engine"],
                data["target"],
                FeatureEncoder.from_json(data["encoder"]),
                state,
                data["metadata"],
                booster,
            )


def _fit_ordinal(frame: pl.DataFrame, encoder: FeatureEncoder, target: Target, scale: ScaleState) -> OrdinalState:
    from statsmodels.miscmodels.ordinal_model import OrderedModel

    y = frame[target].to_numpy()
    plan = design_plan(frame, encoder)
    X = design_matrix(frame, plan)
    codes = np.searchsorted(np.asarray(scale["levels"]), y)
    where = f"ordinal model of {target.upper()}"
    notes = design_notes(plan, where=where)
    plan, X, left_out = drop_entangled(plan, X)
    if left_out:
        shown = "; ".join(f"{t!r} moves with {w!r} (VIF {v:.0f})" for t, w, v in left_out[:6])
        notes.append(
            f"{where}: terms that move together this closely cannot be told apart by the data, and their "
            f"coefficients would swing in opposite directions; one of each such pair is left out ({shown}; "
            f"variance inflation above {MAX_VIF:g}). Its effect shows in the term it moves with."
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _ordered_logit(OrderedModel)(codes, X, distr="logit").fit(method="bfgs", disp=False, maxiter=2000)
    settled = bool(result.mle_retvals.get("converged", True)) and not any(
        "converge" in str(w.message).lower() for w in caught
    )
    if not settled:
        notes.append(
            f"{where}: the fit did not settle within 2,000 steps of its optimiser; the coefficients are those of "
            "the last step and may be off in the second digit. Read the key drivers for direction and rough size."
        )
    k = X.shape[1]
    params = np.asarray(result.params)
    thresholds = np.cumsum(np.r_[params[k], np.exp(params[k + 1 :])])
    ci = np.asarray(result.conf_int(alpha=0.05))
    unsure = [plan["terms"][j] for j in range(k) if not (np.isfinite(ci[j, 0]) and np.isfinite(ci[j, 1]))]
    if unsure:
        notes.append(
            f"{where}: no interval could be computed for {', '.join(repr(t) for t in unsure)} (the data barely "
            "tells these terms apart from others); their coefficients are shown without one and should not be "
            "read on their own."
        )
    return OrdinalState(
        **scale,
        plan=plan,
        beta=params[:k].tolist(),
        thresholds=thresholds.tolist(),
        ci_low=ci[:k, 0].tolist(),
        ci_high=ci[:k, 1].tolist(),
        pvalues=np.asarray(result.pvalues)[:k].tolist(),
        converged=bool(result.mle_retvals.get("converged", True)),
        notes=notes,
    )


MAX_VIF = 20.0
"""A term whose variance inflation factor exceeds this is entangled with others (severe: 10 is the
common warning level; at 10 the generator's own driver, log(1+frequency), would go)."""


def drop_entangled(plan: DesignPlan, X: np.ndarray) -> tuple[DesignPlan, np.ndarray, list[tuple[str, str, float]]]:
    """Leave out, one at a time, the term with the largest variance inflation above :data:`MAX_VIF`.

    Returns the plan and design without them, and for each one left out ``(term, the term it
    moves with most, its VIF)``. A key-driver table needs coefficients that mean something on
    their own; two terms that move together get opposite, unstable ones.
    """
    plan = plan.copy()
    keep, terms, owners = list(plan["keep"]), list(plan["terms"]), list(plan["owners"])
    left_out = []
    while X.shape[1] >= 2:
        corr = np.corrcoef(X, rowvar=False)
        vif = np.diag(np.linalg.pinv(corr))
        worst = int(np.argmax(vif))
        if not np.isfinite(vif[worst]) or vif[worst] <= MAX_VIF:
            break
        partner = int(np.argmax(np.where(np.arange(len(terms)) == worst, -1, np.abs(corr[worst]))))
        left_out.append((terms[worst], terms[partner], float(vif[worst])))
        X = np.delete(X, worst, axis=1)
        for listed in (keep, terms, owners):
            listed.pop(worst)
    plan["keep"], plan["terms"], plan["owners"] = keep, terms, owners
    plan["entangled"] = [t for t, _, _ in left_out]
    return plan, X, left_out


def _ordered_logit(base: type) -> type:
    """The ordered logit of statsmodels' OrderedModel, with its analytic gradient.

    OrderedModel differentiates its log-likelihood numerically (two evaluations per parameter
    for every gradient, k² for the Hessian): 18 s for 11k responses × 35 terms. The same model
    and optimiser with the exact gradient take a fraction of that; the Hessian (for intervals)
    is the numerical derivative of the exact gradient. Tested equal to the plain OrderedModel.
    """

    class OrderedLogit(base):  # type: ignore[misc]  # statsmodels' classes carry no annotations
        def score(self, params: np.ndarray) -> np.ndarray:
            return np.asarray(self.score_obs(params).sum(0))

        def score_obs(self, params: np.ndarray) -> np.ndarray:
            low, upp = self._bounds(params)
            prob = np.maximum(self.prob(low, upp), 1e-300)
            pdf_low, pdf_upp = self.pdf(low), self.pdf(upp)  # the logistic pdf; 0 at ±inf
            k = self.exog.shape[1]
            m = self.k_levels - 1  # thresholds θ_1 … θ_m; θ_j = p_0 + Σ_{l≤j-1} exp(p_l)
            increments = np.exp(params[k + 1 :])
            # d θ_j / d p_0 = 1; d θ_j / d p_l = exp(p_l) for l < j.
            d_theta = np.tril(np.ones((m, m)), 0) * np.r_[1.0, increments][None, :]
            upper = np.zeros((self.nobs, m))
            lower = np.zeros((self.nobs, m))
            rows = np.arange(self.nobs)
            has_upper = self.endog < m
            has_lower = self.endog > 0
            upper[rows[has_upper], self.endog[has_upper]] = pdf_upp[has_upper]
            lower[rows[has_lower], self.endog[has_lower] - 1] = pdf_low[has_lower]
            d_logp_d_theta = (upper - lower) / prob[:, None]
            d_beta = -((pdf_upp - pdf_low) / prob)[:, None] * self.exog
            return np.column_stack([d_beta, d_logp_d_theta @ d_theta])

        def hessian(self, params: np.ndarray) -> np.ndarray:
            from statsmodels.tools.numdiff import approx_fprime

            return np.asarray(approx_fprime(params, self.score, centered=True))

    return OrderedLogit


def _fit_lightgbm(
    train: pl.DataFrame,
    validation: pl.DataFrame,
    encoder: FeatureEncoder,
    target: Target,
    params: Mapping[str, Any],
    seed: int,
    scale: ScaleState,
) -> tuple[BoosterState, Any]:
    levels = np.asarray(scale["levels"])
    y = np.searchsorted(levels, train[target].to_numpy())
    validation_rows = None
    if validation.height:
        validation_rows = (encoder.matrix(validation), np.searchsorted(levels, validation[target].to_numpy()))
    text, best = train_booster(
        encoder.matrix(train),
        y,
        encoder,
        defaults=LIGHTGBM_DEFAULTS,
        params=params,
        seed=seed,
        fixed={"objective": "multiclass", "num_class": len(levels)},
        validation=validation_rows,
    )
    return BoosterState(**scale, model=text, best_iteration=best), booster_from_text(text)


def ordinal_metrics(y: np.ndarray, proba: np.ndarray, levels: Sequence[int], satisfied_from: int) -> dict[str, float]:
    """Accuracy of predicted score distributions against observed scores.

    Returns
    -------
    ``n, mae`` (expected score vs observed), ``within_one`` (share whose most likely level is
    within one of the observed), ``rps`` (ranked probability score, 0 best), ``log_loss``,
    ``spearman`` (expected vs observed), ``ece_satisfied`` (calibration of P(satisfied)). Scores
    outside ``levels`` (not seen in training) get the probability of the nearest level below.
    """
    from scipy.stats import spearmanr

    scores = np.asarray(levels)
    y = np.asarray(y)
    codes = np.clip(np.searchsorted(scores, y, side="right") - 1, 0, scores.size - 1)
    expected = proba @ scores
    mode = scores[proba.argmax(axis=1)]
    observed_cdf = (np.arange(scores.size)[None, :] >= codes[:, None]).astype(float)
    rps = ((np.cumsum(proba, axis=1) - observed_cdf)[:, :-1] ** 2).sum(axis=1) / (scores.size - 1)
    satisfied = y >= satisfied_from
    rho = spearmanr(expected, y).statistic if np.ptp(expected) > 1e-9 and np.ptp(y) > 0 else math.nan
    return {
        "n": int(y.size),
        "mae": float(np.abs(expected - y).mean()),
        "within_one": float((np.abs(mode - y) <= 1).mean()),
        "rps": float(rps.mean()),
        "log_loss": float(-np.log(np.clip(proba[np.arange(y.size), codes], 1e-12, 1)).mean()),
        "spearman": float(rho),
        "ece_satisfied": expected_calibration_error(
            satisfied.astype(int), proba[:, scores >= satisfied_from].sum(axis=1)
        ),
    }
