"""Benchmarks: whole-process wall time, CPU time and peak memory, ours against a baseline.

Each measured step runs in a fresh child process (``python bench.py step NAME DATA``), so
its peak RSS is its own (``os.wait4``), and imports count as they would for a user. Steps run
``--repeat`` times; the median is reported, and ours/baseline ratios come from the same run
(the machine is shared and noisy). Results are appended to ``benchmarks/RESULTS.md``.

    python benchmarks/bench.py run --sizes S,M        # what `make bench` calls
    python benchmarks/bench.py run --sizes L --repeat 1
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
SIZES = {"S": 10_000, "M": 100_000, "L": 1_000_000}
PAIRS = [
    # (step, baseline or None)
    ("load_validate", None),
    ("transitions", None),
    ("features_rfm", "features_rfm_pandas"),
    ("features_all", None),
]


# --- steps (run in a child process) --------------------------------------------------------------


def _raw(data: Path):  # type: ignore[no-untyped-def]
    """The tables as written by the generator, read without validation (like the pandas side)."""
    import polars as pl

    from funnelmodels.config import load_config
    from funnelmodels.data.io import Dataset

    config = load_config(data)
    return Dataset(config=config, tables={n: pl.read_parquet(src.path) for n, src in config.tables.items()})


def _rows(data: Path):  # type: ignore[no-untyped-def]
    import polars as pl

    from funnelmodels.funnel import build_transitions

    ds = _raw(data)
    t = build_transitions(ds.lazy("stage_events"), ds.spec).select("customer_id", pl.col("entered_at").alias("as_of"))
    return ds, t.collect(engine="in-memory")


def step(name: str, data: Path) -> int:
    """Run one step; prints the number of rows it produced."""

    if name == "load_validate":
        from funnelmodels.data.io import load_dataset

        ds = load_dataset(data)
        return sum(f.height for f in ds.tables.values())
    if name == "transitions":
        from funnelmodels.funnel import build_transitions

        ds = _raw(data)
        return build_transitions(ds.lazy("stage_events"), ds.spec).collect(engine="in-memory").height
    if name == "features_rfm":
        from funnelmodels.data.io import Dataset
        from funnelmodels.features import build_features

        ds, rows = _rows(data)
        only_purchases = Dataset(config=ds.config, tables={"transactions": ds.tables["transactions"]})
        return build_features(only_purchases, rows.lazy()).collect(engine="in-memory").height
    if name == "features_all":
        from funnelmodels.features import build_transition_features
        from funnelmodels.funnel import build_transitions

        ds, _ = _rows(data)
        transitions = build_transitions(ds.lazy("stage_events"), ds.spec)
        return build_transition_features(ds, transitions).collect(engine="in-memory").height
    if name == "features_rfm_pandas":
        return _pandas_rfm(data)
    raise SystemExit(f"unknown step {name}")


def _pandas_rfm(data: Path) -> int:
    return len(pandas_rfm_frame(data))


def pandas_rfm_frame(data: Path):  # type: ignore[no-untyped-def]
    """The same purchase-history features, written plainly in pandas as an analyst would."""
    import pandas as pd

    tx = pd.read_parquet(data / "transactions.parquet")
    events = pd.read_parquet(data / "stage_events.parquet")
    rows = events[~events["stage"].isin(["won", "lost"])][["customer_id", "entered_at"]].rename(
        columns={"entered_at": "as_of"}
    )
    rows = rows.reset_index(drop=True).reset_index().sort_values("as_of")
    tx = tx.sort_values(["ordered_at", "order_id"])
    orders = tx[tx["amount"] > 0].copy()
    grouped = orders.groupby("customer_id")
    orders["frequency"] = grouped.cumcount() + 1
    orders["monetary_total"] = grouped["amount"].cumsum()
    orders["monetary_max"] = grouped["amount"].cummax()
    orders["last_order"] = orders["ordered_at"]
    refunds = tx[tx["amount"] < 0].copy()
    refunds["refund_count"] = refunds.groupby("customer_id").cumcount() + 1
    refunds["refund_amount"] = (-refunds["amount"]).groupby(refunds["customer_id"]).cumsum()
    cols = ["customer_id", "ordered_at", "frequency", "monetary_total", "monetary_max", "last_order"]
    out = pd.merge_asof(
        rows, orders[cols], left_on="as_of", right_on="ordered_at", by="customer_id", allow_exact_matches=False
    )
    out = pd.merge_asof(
        out,
        refunds[["customer_id", "ordered_at", "refund_count", "refund_amount"]],
        left_on="as_of",
        right_on="ordered_at",
        by="customer_id",
        allow_exact_matches=False,
        suffixes=("", "_refund"),
    )
    for days in (90, 365):
        out[f"start_{days}"] = out["as_of"] - pd.Timedelta(days=days)
        out = out.sort_values(f"start_{days}")
        before = orders[["customer_id", "ordered_at", "monetary_total"]].rename(
            columns={"monetary_total": f"before_{days}"}
        )
        out = pd.merge_asof(
            out,
            before,
            left_on=f"start_{days}",
            right_on="ordered_at",
            by="customer_id",
            allow_exact_matches=False,
            suffixes=("", f"_{days}"),
        )
        out[f"spend_{days}d"] = out["monetary_total"].fillna(0) - out[f"before_{days}"].fillna(0)
    out["recency_days"] = (out["as_of"] - out["last_order"]).dt.total_seconds() / 86_400
    out["monetary_mean"] = out["monetary_total"] / out["frequency"]
    return out.sort_values("index")


# --- the driver ----------------------------------------------------------------------------------


def _measure(name: str, data: Path) -> dict[str, float]:
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, __file__, "step", name, str(data)], stdout=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    output = child.stdout.read().strip() if child.stdout else ""
    if status != 0:
        raise SystemExit(f"step {name} failed on {data} (status {status})")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mib": usage.ru_maxrss / 1024,
        "rows": float(output or 0),
    }


def _generate(size: str) -> Path:
    target = OUT / f"data_{size}"
    if not (target / "stage_events.parquet").is_file():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "funnelmodels.cli",
                "--quiet",
                "generate",
                "--customers",
                str(SIZES[size]),
                "--seed",
                "1",
                "--out",
                str(target),
            ],
            check=True,
        )
    return target


def _memory_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def _versions() -> str:
    from importlib import metadata

    names = ("polars", "pandas", "numpy", "lightgbm", "statsmodels")
    return ", ".join(f"{n} {metadata.version(n)}" for n in names)


def run(sizes: list[str], repeat: int) -> str:
    lines = [
        f"\n## {date.today()} — {os.cpu_count()} cores, {_memory_gib():.0f} GiB, {platform.machine()}, "
        f"Python {platform.python_version()}",
        f"\n{_versions()}. Medians of {repeat} runs, each a fresh process (imports included).\n",
    ]
    for size in sizes:
        data = _generate(size)
        lines += [
            f"\n### {size} ({SIZES[size]:,} customers)\n",
            "| step | rows | wall s | CPU s | peak RSS MiB | baseline | baseline wall s | baseline RSS MiB | "
            "speed-up | memory ratio |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for ours, baseline in PAIRS:
            a = _median([_measure(ours, data) for _ in range(repeat)])
            row = f"| {ours} | {a['rows']:,.0f} | {a['wall']:.2f} | {a['cpu']:.2f} | {a['rss_mib']:.0f} |"
            if baseline:
                b = _median([_measure(baseline, data) for _ in range(repeat)])
                row += (
                    f" {baseline} | {b['wall']:.2f} | {b['rss_mib']:.0f} | {b['wall'] / a['wall']:.2f}× | "
                    f"{b['rss_mib'] / a['rss_mib']:.2f}× |"
                )
            else:
                row += " – | – | – | – | – |"
            lines.append(row)
            print(row, flush=True)
    return "\n".join(lines) + "\n"


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="measure and append to RESULTS.md")
    r.add_argument("--sizes", default="S,M", help="comma-separated of S, M, L (default S,M)")
    r.add_argument("--repeat", type=int, default=3)
    s = sub.add_parser("step", help="(internal) run one step in this process")
    s.add_argument("name")
    s.add_argument("data", type=Path)
    args = parser.parse_args()
    if args.command == "step":
        print(step(args.name, args.data))
        return
    OUT.mkdir(exist_ok=True)
    text = run([x.strip() for x in args.sizes.split(",")], args.repeat)
    with (HERE / "RESULTS.md").open("a", encoding="utf-8") as handle:
        handle.write(text)
    print(f"appended to {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
