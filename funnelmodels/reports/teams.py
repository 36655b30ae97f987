"""The team-performance report's measures: who sells, against the leads they got; what activities go with progress.

Per owner and team for a period: opportunities opened, won and lost, win rate, revenue and cycle
time; over the window before the period's end, observed against expected wins (the fair measure,
:mod:`funnelmodels.models.reps`); the funnel per team; the activity mix and the activities'
adjusted associations with progress (:mod:`funnelmodels.models.effects`); and the action list:
every open opportunity per owner, by expected value, with the activity most associated with
progress at its stage that it has not had yet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

import polars as pl

from funnelmodels.data import schema as s
from funnelmodels.data.io import Dataset
from funnelmodels.display.format import period_label, value_text
from funnelmodels.display.html import details, html_table
from funnelmodels.errors import ConfigError
from funnelmodels.features import activity_features
from funnelmodels.funnel import build_transitions, data_end, with_stale_losses
from funnelmodels.kpis import PERIODS
from funnelmodels.models.effects import ASSOCIATION, activity_effects
from funnelmodels.models.predict import score_from_history, with_people
from funnelmodels.models.reps import RepPerformance, opportunity_owners, rep_performance, stability_text
from funnelmodels.rates import conversion_table
from funnelmodels.reports.params import check_period, period_end, shift_period

__all__ = ["TeamReport", "action_list", "stability_text", "team_details", "team_performance"]

ACTIVITY_WORDS = {
    "meeting": ("meeting", "meetings"),
    "demo": ("demo", "demos"),
    "proposal_sent": ("proposal sent", "proposals sent"),
    "email": ("email", "emails"),
    "call": ("call", "calls"),
    "calls_without_meeting": ("", "three calls or more without a meeting"),
}


@dataclass(frozen=True)
class TeamReport:
    """Everything the team-performance notebook shows; a section the data cannot fill has a ``missing`` sentence."""

    period: date | None
    period_length: str
    team: str
    period_table: pl.DataFrame | None = None
    team_table: pl.DataFrame | None = None
    performance: RepPerformance | None = None
    funnel: pl.DataFrame | None = None
    activity_mix: pl.DataFrame | None = None
    effects: pl.DataFrame | None = None
    actions: pl.DataFrame | None = None
    as_of: datetime | None = None
    window_start: datetime | None = None
    notes: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def period_label(self) -> str:
        """The period in words ("Q2 2026")."""
        return period_label(self.period, self.period_length) if self.period else ""

    def summary(self) -> list[str]:
        """The 3–5 sentences the report opens with."""
        return _summary(self)

    def only(self, team: str) -> TeamReport:
        """The same report showing one team's owners and deals (judged against everyone's leads, as before)."""
        mine = pl.col(s.TEAM) == team
        performance = replace(self.performance, reps=self.performance.reps.filter(mine)) if self.performance else None

        def of_team(frame: pl.DataFrame | None) -> pl.DataFrame | None:
            return frame.filter(mine) if frame is not None and s.TEAM in frame.columns else frame

        return replace(
            self,
            team=team,
            performance=performance,
            period_table=of_team(self.period_table),
            actions=of_team(self.actions),
        )


def _no_owner(dataset: Dataset) -> str:
    if not dataset.has("stage_events"):
        return (
            "No stage_events table: team performance needs opportunities with their owner (opportunity_id, "
            "customer_id, stage, entered_at, owner)."
        )
    if s.OWNER not in dataset.tables["stage_events"].columns:
        return (
            "The stage events name no owner: add an owner column (the sales person working the deal) to "
            'stage_events, or map the export\'s own (e.g. owner = "sales_agent" in funnel.toml), and optionally '
            "an owners table (owner, team, manager, region, started_at)."
        )
    if dataset.tables["stage_events"][s.OWNER].drop_nulls().n_unique() < 2:
        return "The stage events name fewer than two owners: there is no one to compare."
    return ""


def team_performance(
    dataset: Dataset,
    *,
    period: str = "",
    period_length: str = "month",
    team: str = "",
    window_months: int = 12,
    seed: int = 0,
) -> TeamReport:
    """The team-performance measurement of one period (the latest complete one by default).

    Parameters
    ----------
    team : show this team's owners only (the reference model still learns from every team's deals).
    window_months : observed / expected is judged on the opportunities assigned in the months before the
        period's end (default 12), their outcomes counted up to it.
    """
    reason = _no_owner(dataset)
    if reason:
        return TeamReport(None, period_length, team, missing={"owners": reason})
    events = dataset.lazy("stage_events")
    last = data_end(events)
    starts = events.select(pl.col(s.ENTERED_AT).dt.truncate(PERIODS[period_length]).dt.date().unique()).collect()
    chosen = check_period(period, period_length, starts.to_series(), (last + timedelta(days=1)).date())
    end = datetime.combine(period_end(chosen, period_length), datetime.min.time())
    start = datetime.combine(chosen, datetime.min.time())
    notes: list[str] = []
    missing: dict[str, str] = {}
    if end > last + timedelta(days=1):
        notes.append(f"{period_label(chosen, period_length)} is not complete: the data ends on {last:%d %B %Y}.")
        end = min(end, last + timedelta(days=1))
    teams = opportunity_owners(dataset)
    if team and team not in set(teams[s.TEAM].drop_nulls().to_list()):
        known = ", ".join(sorted(teams[s.TEAM].drop_nulls().unique().to_list()))
        raise ConfigError(f"team {team!r} is not in the data; its teams are: {known or 'none'}.")
    window_start = datetime.combine(
        shift_period(period_end(chosen, period_length), "month", -window_months), datetime.min.time()
    )
    performance = rep_performance(dataset, start=window_start, end=end, seed=seed)
    notes.extend(performance.notes)
    period_table, team_table = _period_tables(dataset, start, end, teams)
    funnel = _funnel_by_team(dataset, teams, end)
    mix = effects = actions = None
    as_of = end
    if dataset.has("activities"):
        mix = _activity_mix(dataset, start, end, teams)
        effects = activity_effects(dataset, end=end, seed=seed)
        actions = action_list(dataset, effects, as_of)
    else:
        missing["activities"] = (
            "No activities table: the activity mix, the activities' association with progress and the suggested "
            "next step need one (activity_id, opportunity_id, at, type — call, email, meeting, demo, proposal sent)."
        )
        actions = action_list(dataset, None, as_of)
    report = TeamReport(
        chosen,
        period_length,
        "",
        period_table=period_table,
        team_table=team_table,
        performance=performance,
        funnel=funnel,
        activity_mix=mix,
        effects=effects,
        actions=actions,
        as_of=as_of,
        window_start=window_start,
        notes=notes,
        missing=missing,
    )
    return report.only(team) if team else report


def _period_tables(
    dataset: Dataset, start: datetime, end: datetime, teams: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per owner and per team in the period: opened, won, lost, win rate, revenue, median days to win."""
    spec = dataset.spec
    events = with_stale_losses(dataset.lazy("stage_events"), spec).collect()
    first = events.group_by(s.OPPORTUNITY_ID).agg(pl.col(s.ENTERED_AT).min().alias("_opened"))
    closed = events.filter(pl.col(s.STAGE).is_in([spec.won, spec.lost])).sort(s.ENTERED_AT)
    closed = closed.unique(s.OPPORTUNITY_ID, keep="first").select(
        s.OPPORTUNITY_ID,
        pl.col(s.STAGE).alias("_end"),
        pl.col(s.ENTERED_AT).alias("_closed"),
        *([pl.col(s.AMOUNT).alias("_amount")] if s.AMOUNT in closed.columns else [pl.lit(None).alias("_amount")]),
    )
    opps = teams.join(first, on=s.OPPORTUNITY_ID).join(closed, on=s.OPPORTUNITY_ID, how="left")
    in_period = pl.col("_closed").is_between(start, end, closed="left")
    won = in_period & (pl.col("_end") == spec.won)
    lost = in_period & (pl.col("_end") == spec.lost)

    def table(key: str) -> pl.DataFrame:
        return (
            opps.filter(pl.col(key).is_not_null())
            .group_by(key)
            .agg(
                pl.col("_opened").is_between(start, end, closed="left").sum().alias("opened"),
                won.sum().alias("won"),
                lost.sum().alias("lost"),
                pl.col("_amount").filter(won).sum().alias("revenue"),
                ((pl.col("_closed") - pl.col("_opened")).dt.total_hours() / 24)
                .filter(won)
                .median()
                .alias("cycle_days"),
            )
            .with_columns((pl.col("won") / (pl.col("won") + pl.col("lost"))).alias("win_rate"))
            .select(key, "opened", "won", "lost", "win_rate", "revenue", "cycle_days")
            .sort("revenue", key, descending=[True, False], nulls_last=True)
        )

    per_owner = table(s.OWNER).join(
        teams.group_by(s.OWNER).agg(pl.col(s.TEAM).drop_nulls().mode().first()), on=s.OWNER, how="left"
    )
    per_owner = per_owner.select(s.OWNER, s.TEAM, pl.exclude(s.OWNER, s.TEAM))
    return per_owner, table(s.TEAM)


def _funnel_by_team(dataset: Dataset, teams: pl.DataFrame, end: datetime) -> pl.DataFrame | None:
    if teams[s.TEAM].drop_nulls().n_unique() < 1:
        return None
    transitions = build_transitions(dataset.lazy("stage_events"), dataset.spec, end=end)
    id_type = transitions.collect_schema()[s.OPPORTUNITY_ID]
    joined = transitions.join(
        teams.lazy().select(pl.col(s.OPPORTUNITY_ID).cast(id_type), pl.col(s.TEAM).fill_null(s.MISSING_LABEL)),
        on=s.OPPORTUNITY_ID,
        how="left",
    )
    table = conversion_table(joined, dataset.spec, by=s.TEAM)
    keep = [c for c in (s.TEAM, s.STAGE, "entered", "observed", "rate", "rate_low", "rate_high") if c in table.columns]
    return table.select(keep)


def _activity_mix(dataset: Dataset, start: datetime, end: datetime, teams: pl.DataFrame) -> pl.DataFrame:
    """Activities of the period per team and type, and per opportunity worked."""
    acts = dataset.tables["activities"].filter(pl.col(s.AT).is_between(start, end, closed="left"))
    id_type = acts.schema[s.OPPORTUNITY_ID]
    acts = acts.join(
        teams.select(pl.col(s.OPPORTUNITY_ID).cast(id_type), pl.col(s.TEAM).fill_null(s.MISSING_LABEL)),
        on=s.OPPORTUNITY_ID,
        how="left",
    )
    counts = acts.group_by(s.TEAM).agg(
        pl.col(s.OPPORTUNITY_ID).n_unique().alias("opportunities_worked"),
        *[(pl.col(s.TYPE) == kind).sum().alias(kind) for kind in s.ACTIVITY_TYPES],
        pl.len().alias("activities"),
    )
    return counts.with_columns((pl.col("activities") / pl.col("opportunities_worked")).alias("per_opportunity")).sort(
        s.TEAM
    )


def _suggestion(stage: str, counts: dict[str, int], days: float, best: list[dict[str, object]]) -> tuple[str, float]:
    """The activity most associated with progress at this stage that the deal has not had yet, in words."""
    for row in best:
        treatment = str(row["treatment"])
        effect = float(row["adjusted"])  # type: ignore[arg-type]
        points = f"{100 * effect:+.0f} points"
        if treatment == "calls_without_meeting":
            if counts.get("call", 0) >= 3 and counts.get("meeting", 0) == 0:
                return (
                    f"{counts['call']} calls and no meeting in {days:.0f} days at stage {stage}: three calls or more "
                    f"without a meeting are associated with {points} at this stage; book a meeting",
                    effect,
                )
            continue
        if effect <= 0 or counts.get(treatment, 0) > 0:
            continue
        one, many = ACTIVITY_WORDS.get(treatment, (treatment, treatment))
        return (
            f"no {one} yet in {days:.0f} days at stage {stage}: {many} are associated with {points} at this stage",
            effect,
        )
    return "", math.nan


def action_list(dataset: Dataset, effects: pl.DataFrame | None, as_of: datetime) -> pl.DataFrame:
    """Every opportunity open at ``as_of``, per owner by expected value, with the suggested next activity.

    The suggestion is the activity with the largest association with progress at the deal's stage whose
    95% interval is clear of zero and that the deal has not had in this stage (or, after three calls and
    no meeting where that pattern goes with less progress, a meeting). Associations, not experiments.
    """
    scored = with_people(dataset, score_from_history(dataset, as_of), as_of)
    days = ((pl.lit(as_of) - pl.col(s.ENTERED_AT)).dt.total_hours() / 24).alias(s.DAYS_IN_STAGE_SO_FAR)
    scored = scored.with_columns(days, pl.lit(as_of).alias(s.AS_OF))
    if dataset.has("activities"):
        scored = activity_features(scored.lazy(), dataset.lazy("activities")).collect()
    else:
        scored = scored.with_columns(pl.lit(None, dtype=pl.Float64).alias("days_since_last_touch"))
    useful: dict[str, list[dict[str, object]]] = {}
    if effects is not None and effects.height and "adjusted" in effects.columns:
        clear = effects.filter(
            pl.col("adjusted").is_not_null()
            & (
                (pl.col("adjusted_low") > 0)
                | ((pl.col("treatment") == "calls_without_meeting") & (pl.col("adjusted_high") < 0))
            )
        ).sort("adjusted", descending=True)
        for row in clear.iter_rows(named=True):
            useful.setdefault(row[s.STAGE], []).append(row)
    suggestions, effects_at = [], []
    in_stage = [c for c in s.ACTIVITY_IN_STAGE if c in scored.columns]
    for row in scored.select(s.STAGE, s.DAYS_IN_STAGE_SO_FAR, *in_stage).iter_rows(named=True):
        counts = {kind: row.get(f"{kind}_in_stage") or 0 for kind in s.ACTIVITY_TYPES}
        text, effect = _suggestion(row[s.STAGE], counts, row[s.DAYS_IN_STAGE_SO_FAR], useful.get(row[s.STAGE], []))
        suggestions.append(text)
        effects_at.append(effect)
    scored = scored.with_columns(
        pl.col("days_since_last_touch").alias("last_touch_days"),
        pl.Series("next_step", suggestions, dtype=pl.String),
        pl.Series("next_step_effect", effects_at, dtype=pl.Float64).fill_nan(None),
    )
    owner = [c for c in (s.OWNER, s.TEAM) if c in scored.columns]
    names = [c for c in s.NAME_COLUMNS if c in scored.columns]
    columns = [
        *owner,
        s.OPPORTUNITY_ID,
        s.CUSTOMER_ID,
        *names,
        s.STAGE,
        s.DAYS_IN_STAGE_SO_FAR,
        s.AMOUNT,
        s.WIN_PROBABILITY,
        s.EXPECTED_VALUE,
        "last_touch_days",
        "next_step",
        "next_step_effect",
    ]
    ranked = scored.select([c for c in columns if c in scored.columns])
    keys = [*owner[:1], s.EXPECTED_VALUE]
    return ranked.sort(keys, descending=[False] * len(owner[:1]) + [True], nulls_last=True)


# --- the summary and the analyst's detail ------------------------------------------------------------


def _summary(report: TeamReport) -> list[str]:
    if "owners" in report.missing:
        return [report.missing["owners"]]
    out = []
    perf = report.performance
    if perf is not None and perf.reps.height:
        reps = perf.reps
        wins, opps = int(reps["wins"].sum()), int(reps["opportunities"].sum())
        start = report.window_start or perf.window[0]
        last_day = (perf.window[1] - timedelta(seconds=1)).date()
        out.append(
            f"From {period_label(start.date(), 'day')} to {period_label(last_day, 'day')}, "
            f"{reps.height} owners worked {opps:,} new opportunities and won {wins:,} of them by the period's end."
        )
        top, bottom = reps.row(0, named=True), reps.row(reps.height - 1, named=True)
        clear = reps.filter((pl.col("shrunk_ratio_low") > 1) | (pl.col("shrunk_ratio_high") < 1)).height
        if clear:
            out.append(
                f"Against the leads they received, **{top[s.OWNER]}** won most above expectation "
                f"({top['shrunk_ratio']:.2f}× expected wins, 95% {top['shrunk_ratio_low']:.2f}–"
                f"{top['shrunk_ratio_high']:.2f}) and **{bottom[s.OWNER]}** least ({bottom['shrunk_ratio']:.2f}×, "
                f"{bottom['shrunk_ratio_low']:.2f}–{bottom['shrunk_ratio_high']:.2f}); {clear} of {reps.height} "
                "differ clearly from 1."
            )
        else:
            out.append(
                "Against the leads they received, **no owner won clearly more or less than expected**: every "
                f"owner's 95% interval holds 1 (shrunk ratios {bottom['shrunk_ratio']:.2f} to "
                f"{top['shrunk_ratio']:.2f}). Differences in raw win rate here are the leads and chance."
            )
        by_raw = reps.sort("win_rate", descending=True, nulls_last=True)[s.OWNER].head(5).to_list()
        by_fair = reps[s.OWNER].head(5).to_list()
        moved = len(set(by_raw) - set(by_fair))
        out.append(
            f"{moved} of the top 5 by raw win rate {'are' if moved != 1 else 'is'} not in the top 5 by observed / "
            f"expected: a raw win rate also measures the leads. {stability_text(perf)}"
        )
    if report.effects is not None and report.effects.height and "adjusted" in report.effects.columns:
        helps = report.effects.filter(pl.col("adjusted").is_not_null() & (pl.col("adjusted_low") > 0))
        if helps.height:
            best = helps.sort("adjusted", descending=True).row(0, named=True)
            many = ACTIVITY_WORDS.get(best["treatment"], ("", best["treatment"]))[1]
            out.append(
                f"At stage {best[s.STAGE]}, {many} go with {100 * best['adjusted']:+.0f} points of reaching the "
                f"next stage (95% {100 * best['adjusted_low']:+.0f} to {100 * best['adjusted_high']:+.0f}), adjusted "
                f"for the deals: an {ASSOCIATION}."
            )
    if report.actions is not None and report.actions.height and "activities" not in report.missing:
        untouched = report.actions.filter(pl.col("last_touch_days").is_null() | (pl.col("last_touch_days") > 14))
        value = untouched[s.EXPECTED_VALUE].sum() if s.EXPECTED_VALUE in untouched.columns else None
        worth = f", worth {value_text('expected_value', value)} in expected value" if value else ""
        out.append(
            f"{report.actions.height:,} deals are open; {untouched.height:,} of them had no touch in the last 14 days"
            f"{worth}."
        )
    elif report.actions is not None and report.actions.height:
        value = report.actions[s.EXPECTED_VALUE].sum() if s.EXPECTED_VALUE in report.actions.columns else None
        worth = f", worth {value_text('expected_value', value)} in expected value" if value else ""
        out.append(
            f"{report.actions.height:,} deals are open{worth}; without an activities table the action list ranks "
            "them per owner but cannot suggest a next step."
        )
    return out[:5]


def team_details(report: TeamReport) -> str:
    """The analyst's section: the reference model, the shrinkage, the raw and fair tables side by side, notes."""
    perf = report.performance
    if perf is None:
        return details("Model details", "<p>No owners to judge.</p>")
    ref = perf.reference
    sd = perf.skill_sd
    parts = [
        f"<p>{ref.note}</p>",
        "<p>Observed / expected: the exact 95% interval under a Poisson-binomial count of wins (each owner's skill "
        "as one shift of the log-odds of every lead). Shrunk: a binomial mixed model with a random intercept per "
        "owner and the reference log-odds as offset, its spread fitted by marginal maximum likelihood "
        f"(Gauss–Hermite quadrature): the owners' skill varies with a standard deviation of {sd:.2f} on the log-odds "
        "scale; a shrunk ratio is the posterior mean, pulled toward 1 the fewer deals an owner has.</p>",
        f"<p>{stability_text(perf)}</p>",
    ]
    if ref.metrics:
        metrics = pl.DataFrame([{"engine": ref.engine, **ref.metrics}])
        parts.append(html_table(metrics, caption="The reference model, out of fold"))
    if report.effects is not None and report.effects.height and "extreme_share" in report.effects.columns:
        overlap = report.effects.select(s.STAGE, "treatment", "rows", "treated_share", "extreme_share", "method")
        parts.append(html_table(overlap, caption="Overlap: rows with a propensity below 5% or above 95%, set aside"))
    return details("Model details: the reference model, shrinkage, overlap", *parts)
