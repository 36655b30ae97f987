"""The ``funnel`` command: conversion and time to convert per stage, printed or as JSON."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import polars as pl

from funnelmodels.cli.common import DROP_INVALID_HELP, END_HELP, Progress, end_moment, positive_int
from funnelmodels.data import schema as s
from funnelmodels.data.io import Dataset, load_dataset
from funnelmodels.errors import ConfigError, did_you_mean
from funnelmodels.frames import collect
from funnelmodels.funnel import build_transitions, data_end, stale_losses
from funnelmodels.rates import conversion_table, cumulative_conversion_table, end_to_end_rate, time_to_convert_table
from funnelmodels.segments import add_segments, segment_label

__all__ = [
    "add_commands",
    "funnel_summary",
]


def _cmd_funnel(args: argparse.Namespace, progress: Progress) -> int:

    progress(f"loading {args.data}")
    dataset = load_dataset(args.data, drop_invalid=args.drop_invalid, end=getattr(args, "end", None))
    for line in dataset.rejected_summary():
        progress(f"set aside: {line}")
    progress("building stage transitions")
    summary = funnel_summary(dataset, by=args.by, horizon_days=args.horizon_days)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        _print_funnel(summary, args.data)
    return 0


def _pct(value: float | None) -> str:
    return "    –" if value is None else f"{100 * value:5.1f}%"


def _print_funnel(summary: dict[str, Any], data: Path) -> None:
    print(f"Funnel of {data}: horizon {summary['horizon_days']} days, data to {str(summary['end'])[:10]}")
    if summary.get("stale_after_days"):
        print(
            f"stale rule: no event for {summary['stale_after_days']} days counts as lost "
            f"({summary['stale_losses']:,} opportunities)"
        )
    for block in summary["segments"]:
        if summary["by"]:
            print(f"\n{summary['by']} = {block['segment']}")
        print(
            f"  {'stage':<14}{'entered':>9}{'observed':>10}{'converted':>11}{'rate':>8}  {'95% CI':<15}"
            "median days (95% CI)"
        )
        for row in block["stages"]:
            ci = (
                f"{_pct(row['rate_low']).strip()}–{_pct(row['rate_high']).strip()}"
                if row["rate_low"] is not None
                else "–"
            )
            days = "–" if row["median_days"] is None else f"{row['median_days']:.0f}"
            if row["median_days_low"] is not None and row["median_days_high"] is not None:
                days += f" ({row['median_days_low']:.0f}–{row['median_days_high']:.0f})"
            print(
                f"  {row['stage']:<14}{row['entered']:>9,}{row['observed']:>10,}{row['converted']:>11,}"
                f"{_pct(row['rate']):>8}  {ci:<15}{days}"
            )
            if row.get("note"):
                print(f"    note: {row['note']}")
        e2e = block["end_to_end"]
        ci = f"{_pct(e2e['rate_low']).strip()}–{_pct(e2e['rate_high']).strip()}" if e2e["rate"] is not None else "–"
        print(f"  {summary['first_stage'] + ' → ' + summary['won']:<44}{_pct(e2e['rate']):>8}  {ci}")
        _print_cumulative(block["cumulative"], summary)
    print(
        "\nrate: converted within the horizon / observed (entries whose horizon is over; open ones are left out).\n"
        "median days: Kaplan-Meier to the next later stage, lost opportunities censored when lost;\n"
        "– means fewer than half convert before being lost or the data's end.\n"
        "cumulative: share that reached a later stage (end to end: won) and share lost by day d, every entry\n"
        "counted as far as it has been watched (Aalen-Johansen, lost as a competing event; 95% intervals);\n"
        "'all' reads the curves at the longest time any entry has been watched."
    )
    if summary["by"] and summary["tests"]:
        print("\nAre the segments different? (chi-square test per stage)")
        for stage, p in summary["tests"].items():
            verdict = "no p-value" if p is None else ("yes" if p < 0.05 else "no evidence") + f" (p = {p:.3g})"
            print(f"  {stage:<14}{verdict}")


def _print_cumulative(rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    def share(value: float | None, low: float | None, high: float | None) -> str:
        if value is None:
            return "–"
        interval = f" ({_pct(low).strip()}–{_pct(high).strip()})" if low is not None and high is not None else ""
        return f"{_pct(value).strip()}{interval}"

    print(f"  cumulative by day d    {'converted (95% CI)':<26}{'lost (95% CI)':<26}{'still watched':>13}")
    for row in rows:
        day = "all" if row["day"] is None else f"{row['day']:.0f}"
        label = f"{summary['first_stage']} → {summary['won']}" if row["stage"] == "end to end" else row["stage"]
        converted = share(row["converted"], row["converted_low"], row["converted_high"])
        lost = share(row["lost"], row["lost_low"], row["lost_high"])
        print(f"  {label[:16]:<16}{day:>5}  {converted:<26}{lost:<26}{row['at_risk']:>13,}")


def funnel_summary(dataset: Dataset, *, by: str | None = None, horizon_days: int | None = None) -> dict[str, object]:
    """The funnel at a glance, as plain data (what ``funnelmodels funnel`` prints).

    Parameters
    ----------
    dataset : a loaded dataset with stage_events.
    by : a segment column (see :data:`funnelmodels.segments.SEGMENTS`, or any customers column).

    Returns
    -------
    ``{"by", "horizon_days", "end", "first_stage", "won", "segments": [{"segment", "stages":
    [{stage, entered, observed, converted, rate, rate_low, rate_high, median_days,
    median_days_low, median_days_high, note}], "end_to_end": {rate, rate_low, rate_high},
    "cumulative": [rows of :func:`cumulative_conversion_table`]}], "tests": {stage: p_value},
    "stale_after_days", "stale_losses"}``; ``observed`` is the rate's denominator (entries whose
    horizon is over) and ``note`` says so when every entry of a stage is still within it.
    """
    spec = dataset.spec
    events = dataset.lazy("stage_events")
    end = data_end(events)
    horizon = spec.horizon_days if horizon_days is None else horizon_days
    transitions = build_transitions(events, spec, horizon_days=horizon, end=end)
    if by:
        transitions = _by_segment(dataset, transitions, by)
    transitions = transitions.pipe(collect).lazy()
    rates = conversion_table(transitions, spec, by=by)
    medians = time_to_convert_table(transitions, spec, by=by, quantiles=(0.5,))
    cumulative = cumulative_conversion_table(transitions, spec, end=end, by=by)
    table = rates.join(medians.drop("q", "n", "events"), on=[by, s.STAGE] if by else [s.STAGE], how="left")
    segments = []
    for key, group in table.group_by([by] if by else pl.lit(True), maintain_order=True):
        curves = cumulative.filter(pl.col(by) == key[0]).drop(by) if by else cumulative
        segments.append(
            {
                "segment": key[0] if by else None,
                "stages": [_stage_row(row, horizon) for row in group.iter_rows(named=True)],
                "end_to_end": {k: (None if math.isnan(v) else v) for k, v in end_to_end_rate(group, spec).items()},
                "cumulative": curves.to_dicts(),
            }
        )
    first_per_stage = rates.unique(s.STAGE, keep="first", maintain_order=True)
    tests = {r[s.STAGE]: r["p_value"] for r in first_per_stage.iter_rows(named=True)} if by else {}
    return {
        "by": by,
        "horizon_days": horizon,
        "stale_after_days": spec.stale_after_days,
        "stale_losses": stale_losses(events, spec, end=end).select(pl.len()).pipe(collect).item(),
        "end": end,
        "first_stage": spec.stages[0],
        "won": spec.won,
        "segments": segments,
        "tests": tests,
    }


def _by_segment(dataset: Dataset, transitions: pl.LazyFrame, by: str) -> pl.LazyFrame:
    """The transitions with the segment columns, ``by`` labelled for display; refused if ``by`` is not one."""
    transitions = add_segments(dataset, transitions)
    available = [c for c in transitions.collect_schema().names() if c not in _NOT_SEGMENTS]
    if by not in available:
        raise ConfigError(
            f"--by {by!r} is not a column of this dataset{did_you_mean(by, available)}; "
            f"available: {', '.join(sorted(available))}."
        )
    return transitions.with_columns(segment_label(pl.col(by)))


def _stage_row(row: dict[str, Any], horizon: int) -> dict[str, Any]:
    """One stage's line of the summary from a row of the rates joined to the median days."""
    return {
        "stage": row[s.STAGE],
        "entered": row["entered"],
        "observed": row["observed"],
        "converted": row["converted"],
        "rate": row["rate"],
        "rate_low": row["rate_low"],
        "rate_high": row["rate_high"],
        "median_days": row["days"],
        "median_days_low": row["days_low"],
        "median_days_high": row["days_high"],
        "note": _censored_note(row["entered"], row["observed"], horizon),
    }


_NOT_SEGMENTS = {*s.TRANSITION_COLUMNS, s.AMOUNT, s.AGE, s.INCOME}


def _censored_note(entered: int, observed: int, horizon: int) -> str | None:
    if entered and not observed:
        return (
            f"every one of the {entered:,} entries is still within its {horizon}-day horizon, so there is no "
            "rate yet; the cumulative conversion uses them as far as they have been watched"
        )
    return None


def add_commands(commands: Any) -> None:
    """Add ``funnel`` to the command line's subparsers."""
    fun = commands.add_parser(
        "funnel",
        help="the funnel at a glance: conversion and time to convert per stage",
        description="Conversion per stage (entered, converted, rate with 95%% Wilson interval) and median days "
        "to convert (Kaplan-Meier, censoring respected), overall or per segment.",
    )
    fun.add_argument("data", type=Path, metavar="DATA", help="dataset folder or funnel.toml")
    fun.add_argument("--by", metavar="COLUMN", help="break down by a customer or opportunity column, e.g. region")
    fun.add_argument(
        "--horizon-days", type=positive_int, metavar="N", help="days a stage has to convert (default: the dataset's)"
    )
    fun.add_argument("--json", action="store_true", help="print the same as JSON")
    fun.add_argument(
        "--drop-invalid", action="store_true", help=DROP_INVALID_HELP.split(" (")[0] + " (counted, not written)"
    )
    fun.add_argument("--end", type=end_moment, metavar="DATE", help=END_HELP)
    fun.set_defaults(run=_cmd_funnel)
