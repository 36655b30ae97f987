"""The stage-conversion report's business view: what the scores are worth to a sales team, in sentences."""

from __future__ import annotations

import html
import math
import re

import numpy as np
import polars as pl

from funnelmodels.data import schema as s
from funnelmodels.display.format import percent, period_label, points
from funnelmodels.display.html import details, html_table
from funnelmodels.display.plots import chart_html, plot_calibration_band, plot_lift
from funnelmodels.intervals import difference_interval, metric_intervals
from funnelmodels.labels import label
from funnelmodels.models.card import DRIFT_NOTE, NAIVE_BAYES, STAGE_RATE, ModelCard
from funnelmodels.models.train import ORACLE, ConversionTraining
from funnelmodels.reports.sections import fairness_html
from funnelmodels.stats import wilson

__all__ = [
    "TOP_SHARE",
    "conversion_details",
    "conversion_summary",
    "model_card_section",
    "top_share_interval",
    "top_share_of_wins",
]

HONEST_GAP = 0.02
"""A mean prediction within 2 points of the observed rate is called honest on average."""

TOP_SHARE = 0.3
"""The share of scored deals the summary looks at: "the top 30% of scored deals hold X% of the wins"."""


def top_share_of_wins(result: ConversionTraining, *, top: float = TOP_SHARE, engine: str = "lightgbm") -> float:
    """The share of the test period's conversions among its ``top`` share of rows by ``engine``'s score."""
    preds = result.predictions().sort(f"p_{engine}", s.OPPORTUNITY_ID, descending=[True, False])
    converted = preds[s.CONVERTED].cast(pl.Int64)
    total = int(converted.sum())
    if total == 0:
        return float("nan")
    head = round(top * preds.height)
    return float(converted.head(head).sum()) / total


def top_share_interval(
    result: ConversionTraining, *, top: float = TOP_SHARE, engine: str = "lightgbm", resamples: int = 200, seed: int = 0
) -> tuple[float, float]:
    """The 95% interval of :func:`top_share_of_wins` (a bootstrap over the test rows, the ranking kept)."""
    preds = result.predictions().sort(f"p_{engine}", s.OPPORTUNITY_ID, descending=[True, False])
    y = preds[s.CONVERTED].cast(pl.Float64).to_numpy()
    chosen = np.arange(y.size) < round(top * y.size)
    rng = np.random.default_rng(seed)
    shares = []
    for _ in range(resamples):
        w = rng.poisson(1.0, y.size)
        total = float((w * y).sum())
        if total > 0:
            shares.append(float((w * y * chosen).sum()) / total)
    if len(shares) < 10:
        return math.nan, math.nan
    return float(np.quantile(shares, 0.025)), float(np.quantile(shares, 0.975))


def conversion_summary(result: ConversionTraining, *, top: float = TOP_SHARE) -> list[str]:
    """The report's opening sentences: ranking value, honesty of the probabilities, the baseline, drivers.

    Every figure comes with its 95% interval (bootstrap over the test entries; Wilson for a rate).
    """
    overall = {r["engine"]: r for r in result.metrics.filter(pl.col(s.STAGE) == "all").iter_rows(named=True)}
    gbm = overall.get("lightgbm")
    if gbm is None:
        return ["No LightGBM model: see the notes below."]
    since = period_label(result.split.test_start, "day")
    held = top_share_of_wins(result, top=top)
    low, high = top_share_interval(result, top=top)
    out = [
        f"Scored on the stage entries since {since} (never seen in training), the top {top:.0%} of scores "
        f"held **{percent(held, 0)}** ({percent(low, 0)}–{percent(high, 0)}) of the conversions — "
        f"{held / top:.1f}× what picking at random gives."
        if held == held
        else f"No stage entry since {since} converted: there is nothing to rank yet."
    ]
    gap = gbm["mean_prediction"] - gbm["base_rate"]
    honest = abs(gap) < HONEST_GAP
    rate_low, rate_high = wilson(np.array([gbm["positives"]]), np.array([gbm["n"]]), 0.95)
    out.append(
        (
            "The probabilities are honest on average"
            if honest
            else f"The probabilities run {'high' if gap > 0 else 'low'} in the test period"
        )
        + f": predicted {percent(gbm['mean_prediction'])} where {percent(gbm['base_rate'])} "
        f"({percent(float(rate_low[0]))}–{percent(float(rate_high[0]))}) converted ({points(gap)}); how far each "
        "score can be taken at its word is in the model card below."
    )
    test = result.test
    y = test[s.CONVERTED].cast(pl.Int8).to_numpy()
    p_gbm = result.models["lightgbm"].predict_proba(test)
    auc = metric_intervals(y, p_gbm)
    if "logit" in result.models:
        diff, d_low, d_high = difference_interval(y, p_gbm, result.models["logit"].predict_proba(test))
        verdict = (
            "ranks better than"
            if d_low > 0
            else "ranks worse than"
            if d_high < 0
            else "ranks no differently, within the intervals, from"
        )
        out.append(
            f"LightGBM {verdict} the interpretable logit: ROC AUC {auc['roc_auc']:.3f} "
            f"({auc['roc_auc_low']:.3f}–{auc['roc_auc_high']:.3f}), {diff:+.3f} against the logit "
            f"({d_low:+.3f} to {d_high:+.3f}); 0.5 is a coin toss, 1 perfect."
        )
    if ORACLE in overall:
        truth = metric_intervals(y, test["true_probability"].to_numpy())
        out.append(
            f"On this generated data the true probabilities reach ROC AUC {truth['roc_auc']:.3f} "
            f"({truth['roc_auc_low']:.3f}–{truth['roc_auc_high']:.3f}): the best any model could do."
        )
    importance = result.models["lightgbm"].importance(result.test)
    drivers = [label(f).lower() for f in importance["feature"].head(3).to_list()]
    if drivers:
        out.append(
            f"What moves a deal most: {', '.join(drivers[:-1])} and {drivers[-1]}."
            if len(drivers) > 1
            else f"What moves a deal most: {drivers[0]}."
        )
    return out[:5]


def conversion_details(result: ConversionTraining, folds: pl.DataFrame | None = None, folds_note: str = "") -> str:
    """The analyst's detail of the stage-conversion models, as one collapsed section (HTML).

    The split, accuracy against the baselines, calibration and lift, deals that wait, the logit's
    significant odds ratios, the random k-fold comparison (when run) and the models' notes.
    """
    odds = result.models["logit"].odds_ratios()
    waiting = result.by_time_in_stage()
    parts = [
        _p(result.describe_split().replace("**", "")),
        _p(
            "Accuracy per stage against the baselines, each figure with its 95% interval, and calibration: in the "
            "model card above (and tables/model_card.csv, tables/calibration.csv)."
        ),
        "<h4>Cumulative gains</h4>",
        _p(
            "The share of all conversions found by working down each model's scores, tenth by tenth. Drawn "
            "without intervals (a curve of ten points); the summary gives the top 30%'s share with its interval."
        ),
        chart_html(plot_lift(result.lift())),
    ]
    if waiting is not None:
        parts += [
            "<h4>Deals that wait</h4>",
            _p(
                "An open opportunity is scored as it stands: the longer it has waited in its stage, the less likely "
                "it is to move on. Test-period rows by days already spent in the stage, LightGBM's mean prediction "
                "against what happened within the horizon (with its 95% Wilson interval)."
            ),
            html_table(waiting),
        ]
    parts += [
        "<h4>Logit odds ratios</h4>",
        _p(
            "Per standard deviation (or against the reference level) with 95% intervals: per stage, in the funnel's "
            f"order, the {ODDS_PER_STAGE} most significant (p < 0.05) and any the model had to treat specially (see "
            "the note); every term is in tables/odds_ratios.csv."
        ),
        html_table(_strongest_per_stage(result, odds)),
    ]
    if folds is not None:
        parts += [
            "<h4>Random k-fold, for comparison</h4>",
            _p(
                "Random folds let a model learn from contacts made after the ones it is tested on, which flatters it "
                "when the world drifts; the out-of-time figures above are the honest ones. Fold −1 is the mean; "
                "the spread of the folds is the interval here (each fold is one draw of the same split)."
            ),
            html_table(folds.select("engine", "fold", "n", "positives", "roc_auc", "pr_auc", "brier", "ece")),
        ]
    elif folds_note:
        parts.append(_p(folds_note))
    for engine, model in result.models.items():
        parts += [_p(f"Note ({label(engine)}): {_in_words(note)}") for note in model.metadata.get("notes", [])]
    return details("Model details: gains, waiting deals, odds ratios, notes", *parts)


ODDS_PER_STAGE = 12
"""The odds ratios shown per stage in the model details (the CSV holds every term)."""


def _strongest_per_stage(result: ConversionTraining, odds: pl.DataFrame) -> pl.DataFrame:
    """Each stage's significant (or specially treated) odds ratios, the most significant first, stages in order."""
    spec = result.models["logit"].spec
    shown = odds.filter((pl.col("p_value") < 0.05) | (pl.col("note") != "")).sort(s.STAGE, "p_value")
    return (
        shown.with_columns(
            pl.int_range(pl.len()).over(s.STAGE).alias("_rank"), spec.stage_order(pl.col(s.STAGE)).alias("_o")
        )
        .filter(pl.col("_rank") < ODDS_PER_STAGE)
        .sort("_o", "p_value")
        .drop("_rank", "_o")
    )


def _in_words(note: str) -> str:
    """A model's note with the feature names it quotes in words: 'days_in_stage_so_far' → 'Days in stage so far'."""
    return re.sub(r"'([a-z][a-z0-9_]*(?: missing)?|log\(1\+[a-z0-9_]+\))'", lambda m: f"'{label(m.group(1))}'", note)


def _p(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


_CARD_METRICS = ("roc_auc", "pr_auc", "brier", "log_loss")
_PARTS = ("brier", "mcb", "dsc", "unc")


def model_card_section(card: ModelCard) -> str:
    """The model card in the report: the verdict, every model's metrics with 95% intervals, calibration (HTML).

    The per-stage detail (rows, metrics, calibration parts) sits in a collapsed block below.
    """
    gate = card.gate
    verdict = "Ready to publish" if gate.ready else "Not ready to publish"
    head = card.headline()
    columns = ["engine", "n", "positives"] + [f"{m}{end}" for m in _CARD_METRICS for end in ("", "_low", "_high")]
    overall = card.calibration.filter(pl.col("group") == "all")
    parts_columns = ["engine"] + [f"{m}{end}" for m in _PARTS for end in ("", "_low", "_high")]
    parts_columns += ["mcb_excess", "mcb_excess_low", "mcb_excess_high", "miscalibrated"]
    curves = {name: card.reliability[name] for name in ("lightgbm", "logit", ORACLE) if name in card.reliability}
    by_stage = card.metrics.filter(pl.col("group") != "all").rename({"group": s.STAGE})
    stage_parts = card.calibration.filter(pl.col("group") != "all").rename({"group": s.STAGE})
    out = [
        f"<p><strong>{verdict}.</strong> {html.escape(gate.sentence().split('. ', 1)[-1])}</p>",
        _p(
            f"Every model below scored the same {card.headline()['n'].to_list()[0]:,} stage entries of the "
            "test period, which none of them saw in training. The scores must beat three simpler ones: "
            f"{label(STAGE_RATE).lower()} (what the funnel already says), a {label(NAIVE_BAYES)[0].lower()}"
            f"{label(NAIVE_BAYES)[1:]} (the lead scoring open-source CRMs ship) and the logit. Intervals: 95%, a "
            "bootstrap over the test rows."
        ),
        html_table(head.select([c for c in columns if c in head.columns])),
        "<h4>Do the probabilities mean what they say?</h4>",
        _p(
            "The Brier score (lower is better) splits into miscalibration (MCB: lost because the probabilities are "
            "off; 0 is perfect), discrimination (DSC: gained by ranking deals apart; higher is better) and "
            "uncertainty (UNC: the data's own, the same for every model): Brier = MCB − DSC + UNC. On a few "
            "thousand rows even the true probabilities show some MCB from noise alone; 'beyond noise' takes it "
            "off, and 'miscalibrated beyond chance' says whether a calibrated model would show as much only 5% "
            "of the time."
        ),
        html_table(overall.select(parts_columns)),
        _p(
            "Each panel: the rate each score's entries converted at (isotonic, no bins chosen by hand) against "
            "the score, and in grey where a calibrated model's curve falls 95% of the time on the same rows."
        ),
        chart_html(plot_calibration_band(curves)) if curves else "",
        "<h4>How is it doing before the outcomes are in?</h4>",
        _p(card.performance_sentence()),
        html_table(card.performance.with_columns(pl.col("month").dt.strftime("%B %Y").fill_null("all decided")))
        if card.performance.height
        else "",
        "<h4>Does the latest data still look like the training data?</h4>",
        _p(card.drift_sentence()),
        *fairness_html(card.fairness, card.fairness_sentence(), card.proxies, card.without, card.without_fairness),
        details(
            "The model card per stage: rows, metrics, calibration and drift",
            html_table(card.rows),
            html_table(by_stage.select([c for c in [s.STAGE, *columns] if c in by_stage.columns])),
            html_table(stage_parts.select([s.STAGE, *parts_columns])),
            _p(
                f"The gate's minimum: {gate.to_json()['min_train_rows']:,} training entries and "
                f"{gate.to_json()['min_train_positives']:,} conversions (the learning curve in benchmarks/RESULTS.md)."
            ),
            _p(DRIFT_NOTE),
            html_table(card.drift) if card.drift.height else "",
        ),
    ]
    if card.sample:
        out.insert(1, _p(f"The models were {card.sample}."))
    if card.card_sample:
        out.insert(1, _p(f"The card's figures are on {card.card_sample} (the bootstrap's cost grows with the rows)."))
    return "".join(out)
