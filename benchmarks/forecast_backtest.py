"""The forecast's own accuracy: rolling-origin backtests on the generator and the CRM example, and maturity.

    python benchmarks/forecast_backtest.py [--seeds 1 2 3] [--out benchmarks/RESULTS.md]

1. **Backtest.** For each past month, the close-time model is refitted on the data before it, the month's
   won value is forecast (closed + open + not yet created), and the realised value is compared with the
   80% range and the mean — beside the naive weighted pipeline (amount × the stage's historical win rate).
   Generator: 5,000 customers per seed, the 12 months July 2025 – June 2026. CRM example
   (``../shared/data/crm_sales_opportunities``): the 8 months May – December 2017 (its closes start in
   March 2017).
2. **Maturity.** Long cycles (``cycle_scale=3``, 2,500 customers, three years): the win rate of the deals
   opened in the last 180 and 365 days, estimated as won so far + P(won) of those still open, against the
   generator's exact truth, and the share won among those already closed.

Appends one section (machine, date, tables) to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl

from funnelmodels.data import schema as s
from funnelmodels.data.io import load_dataset
from funnelmodels.data.synthetic import generate_dataset, open_win_probability, write_dataset
from funnelmodels.models.forecast import backtest_forecast
from funnelmodels.models.hazard import fit_close_time, landmark_states

ROOT = Path(__file__).resolve().parent.parent
CRM = ROOT / "data" / "examples" / "crm" / "funnel.toml"


def _months(first: date, count: int) -> list[datetime]:
    out, year, month = [], first.year, first.month
    for _ in range(count):
        out.append(datetime(year, month, 1))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def _row(name: str, table: pl.DataFrame, seconds: float) -> str:
    ours, naive = table.row(0, named=True), table.row(1, named=True)
    held = round(ours["coverage_80"] * ours["periods"])
    naive_held = round(naive["coverage_80"] * naive["periods"])
    return (
        f"| {name} | {ours['periods']} | {held}/{ours['periods']} ({100 * ours['coverage_80']:.0f}%) | "
        f"{100 * ours['mape']:.1f}% | {naive_held}/{naive['periods']} ({100 * naive['coverage_80']:.0f}%) | "
        f"{100 * naive['mape']:.1f}% | {seconds:.0f} |"
    )


def backtests(seeds: list[int], work: Path) -> list[str]:
    lines = [
        "| data | months | 80% range held (ours) | error of the mean (ours, MAPE) | "
        "80% range held (naive) | error of the mean (naive, MAPE) | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    pooled = []
    for seed in seeds:
        folder = work / f"gen-{seed}"
        write_dataset(generate_dataset(5_000, seed=seed), folder)
        started = time.perf_counter()
        result = backtest_forecast(load_dataset(folder), _months(date(2025, 7, 1), 12), seed=0)
        pooled.append(result.periods)
        lines.append(_row(f"generator, seed {seed}", result.summary(), time.perf_counter() - started))
        print(lines[-1], flush=True)
    if CRM.is_file():
        started = time.perf_counter()
        result = backtest_forecast(load_dataset(CRM), _months(date(2017, 5, 1), 8), seed=0)
        lines.append(_row("CRM example", result.summary(), time.perf_counter() - started))
        print(lines[-1], flush=True)
        print(result.periods.select("start", "realised", "mean", "p10", "p90", "inside", "naive_mean"), flush=True)
    every = pl.concat(pooled)
    held = int(every["inside"].sum())
    lines.append(
        f"\nGenerator, all seeds together: the 80% range held {held} times in {every.height} "
        f"({100 * held / every.height:.0f}%)."
    )
    return lines


def maturity(seeds: list[int], work: Path) -> list[str]:
    lines = [
        "| seed | engine | opened in the last | deals | truth | model | closed only |",
        "|---|---|---|---|---|---|---|",
    ]
    end = datetime(2026, 7, 1)
    for seed in seeds:
        data = generate_dataset(2_500, seed=seed, cycle_scale=3, start=datetime(2023, 7, 1))
        folder = work / f"long-{seed}"
        write_dataset(data, folder)
        dataset = load_dataset(folder)
        opened = (
            dataset.tables["stage_events"]
            .group_by(s.OPPORTUNITY_ID)
            .agg(
                pl.col(s.ENTERED_AT).min().alias("opened"),
                (pl.col(s.STAGE) == "won").any().alias("won"),
                (pl.col(s.STAGE) == "lost").any().alias("lost"),
            )
        )
        open_now = landmark_states(dataset, [end], end=end)
        truth = open_win_probability(data.ground_truth["opportunities"], open_now, 3)
        for engine in ("lightgbm", "logit"):
            model = fit_close_time(dataset, engine=engine, horizon_days=728, every_days=28)  # type: ignore[arg-type]
            won, _ = model.curves(open_now)
            scored = open_now.select(s.OPPORTUNITY_ID).with_columns(
                pl.Series("p", won[:, -1]), pl.Series("truth", truth)
            )
            for days in (180, 365):
                cohort = opened.filter(pl.col("opened") >= end - timedelta(days=days)).join(
                    scored, on=s.OPPORTUNITY_ID, how="left"
                )
                so_far = pl.when(pl.col("won")).then(1.0).when(pl.col("lost")).then(0.0)
                r = cohort.select(
                    so_far.otherwise(pl.col("p")).mean().alias("model"),
                    so_far.otherwise(pl.col("truth")).mean().alias("truth"),
                    pl.col("won").filter(pl.col("won") | pl.col("lost")).mean().alias("closed"),
                ).row(0, named=True)
                lines.append(
                    f"| {seed} | {engine} | {days} days | {cohort.height:,} | {100 * r['truth']:.1f}% | "
                    f"{100 * r['model']:.1f}% ({100 * (r['model'] - r['truth']):+.1f} pts) | "
                    f"{100 * r['closed']:.1f}% ({100 * (r['closed'] - r['truth']):+.1f} pts) |"
                )
                print(lines[-1], flush=True)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        first = backtests(args.seeds, work)
        second = maturity(args.seeds, work)
    machine = f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"
    section = [
        f"\n## {date.today():%Y-%m-%d} — forecast backtest and maturity ({machine})\n",
        "`python benchmarks/forecast_backtest.py`: each month's won value forecast at its start by a close-time "
        "model refitted on the data before it; the 80% range widened by the errors of the earlier months "
        "(the first two months have none). Naive: open deals' amount × their stage's historical win rate.\n",
        *first,
        "\nMaturity, long cycles (`cycle_scale=3`): the win rate of recently opened deals — won so far plus the "
        "model's P(won) of the open ones — against the generator's exact truth, and the won share of the "
        "deals already closed.\n",
        *second,
        "",
    ]
    with args.out.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(section))
    print(f"appended to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
