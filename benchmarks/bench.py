"""Benchmarks: whole-process wall time, CPU time and peak memory, ours against a baseline.

Each measured step runs in a fresh child process (``python bench.py step NAME DATA``), so
its peak RSS is its own (``os.wait4``), and imports count as they would for a user. The child
also times its own work after imports and reading the input ("call" time) and how much its
memory grew meanwhile. Steps run ``--repeat`` times; the median is reported, and ours/baseline
ratios come from the same run (the machine is shared and noisy). Scaling exponents are the
log-log slope of call time and call memory against transactions over the sizes of one run.
Results are appended to ``benchmarks/RESULTS.md``.

    python benchmarks/bench.py run --sizes S,M        # what `make bench` calls
    python benchmarks/bench.py run --sizes S,M,L --repeat 3

The RFM peers (lifetimes, pymc-marketing) run in their own environment,
``benchmarks/.venv-peers`` built from ``benchmarks/peers.lock`` by ``make bench``: they are
not part of funnelmodels' install, and pymc-marketing pins its own stack.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
PEERS_PYTHON = HERE / ".venv-peers" / "bin" / "python"
SIZES = {"S": 10_000, "M": 100_000, "L": 1_000_000}
# (step, baselines): a baseline is another step measured in the same run.
PAIRS: list[tuple[str, tuple[str, ...]]] = [
    ("import_engines", ()),
    ("load_validate", ()),
    ("load_cached", ()),
    ("transitions", ()),
    ("features_rfm", ("features_rfm_pandas",)),
    ("features_all", ()),
    ("rfm_summary", ("rfm_lifetimes", "rfm_pymc_marketing")),
    ("kpi_month", ("kpi_month_pandas",)),
    ("fit_lightgbm", ()),
    ("fit_lightgbm_busy", ("fit_lightgbm",)),
    ("fit_logit", ()),
    ("score_rows", ()),
    ("score_open", ()),
    ("report_floor", ("report_empty_floor",)),
    ("report_sales_performance", ("report_floor",)),
    ("report_stage_conversion", ("report_floor",)),
    ("report_customer_satisfaction", ("report_floor",)),
]
PEER_STEPS = {"rfm_lifetimes", "rfm_pymc_marketing"}
FEATURES = "_bench_features.parquet"
MODEL = "_bench_model"


# --- steps (run in a child process) --------------------------------------------------------------


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def _timed(work: Callable[[], int]) -> dict[str, float]:
    """Run ``work`` (inputs already read); its time and how far it raised the process's peak RSS."""
    import resource

    before = _rss_mib()
    start = time.perf_counter()
    rows = work()
    call = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"rows": rows, "call": call, "call_mib": max(peak - before, 0.0)}


def _raw(data: Path, only: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    """The tables (``only`` these, when given) as written by the generator, read without validation (like
    the pandas side)."""
    import polars as pl

    from funnelmodels.config import load_config
    from funnelmodels.data.io import Dataset

    config = load_config(data)
    return Dataset(
        config=config,
        tables={n: pl.read_parquet(src.path) for n, src in config.tables.items() if not only or n in only},
    )


def step(name: str, data: Path) -> dict[str, float]:
    """Run one step in this process."""
    steps: dict[str, Callable[[Path], dict[str, float]]] = {
        "import_engines": _import_engines_step,
        "load_validate": _load_validate,
        "load_cached": _load_cached,
        "transitions": _transitions,
        "features_rfm": _features_rfm,
        "features_all": _features_all,
        "features_rfm_pandas": _features_rfm_pandas,
        "rfm_summary": _rfm_summary,
        "rfm_lifetimes": lambda data: _rfm_peer(data, "rfm_lifetimes"),
        "rfm_pymc_marketing": lambda data: _rfm_peer(data, "rfm_pymc_marketing"),
        "kpi_month": _kpi_month,
        "kpi_month_pandas": _kpi_month_pandas,
        "fit_lightgbm": lambda data: _fit(data, "fit_lightgbm"),
        "fit_lightgbm_busy": lambda data: _fit(data, "fit_lightgbm"),  # the driver runs a busy process beside
        "fit_logit": lambda data: _fit(data, "fit_logit"),
        "score_rows": _score_rows,
        "score_open": _score_open,
        "report_empty_floor": _report_floor,
        "report_floor": _report_floor_ours,
    }
    if name.startswith("report_") and name not in steps:
        return _report(name.removeprefix("report_"), data)
    return steps[name](data)


def _import_engines_step(data: Path) -> dict[str, float]:
    """The package and LightGBM imported (what a score or train process pays before any work)."""
    import time as clock

    start = clock.perf_counter()
    import funnelmodels  # noqa: F401
    from funnelmodels.models.boosting import lightgbm

    lightgbm()
    return {"rows": 1, "call": clock.perf_counter() - start, "call_mib": _rss_mib()}


def _load_validate(data: Path) -> dict[str, float]:
    """Every file read and every rule checked (the validated-dataset cache neither read nor written)."""
    from funnelmodels.data.io import load_dataset

    return _timed(lambda: sum(f.height for f in load_dataset(data, cache=False).tables.values()))


def _load_cached(data: Path) -> dict[str, float]:
    """The validated dataset read back from the cache (filled here first when empty, outside the clock)."""
    from funnelmodels.data.io import load_dataset

    load_dataset(data)
    return _timed(lambda: sum(f.height for f in load_dataset(data).tables.values()))


def _transitions(data: Path) -> dict[str, float]:
    from funnelmodels.funnel import build_transitions

    ds = _raw(data)
    return _timed(lambda: build_transitions(ds.lazy("stage_events"), ds.spec).collect(engine="in-memory").height)


def _features_rfm(data: Path) -> dict[str, float]:
    import polars as pl

    from funnelmodels.data.io import Dataset
    from funnelmodels.features import build_features
    from funnelmodels.funnel import build_transitions

    ds = _raw(data, ("transactions", "stage_events"))  # what the pandas side reads
    # The rows are the transition rows (built by the `transitions` step, timed there).
    rows = (
        build_transitions(ds.lazy("stage_events"), ds.spec)
        .select("customer_id", pl.col("entered_at").alias("as_of"))
        .collect(engine="in-memory")
    )
    only_purchases = Dataset(config=ds.config, tables={"transactions": ds.tables["transactions"]})
    return _timed(lambda: build_features(only_purchases, rows.lazy()).collect(engine="in-memory").height)


def _features_all(data: Path) -> dict[str, float]:
    from funnelmodels.features import build_transition_features
    from funnelmodels.funnel import build_transitions

    ds = _raw(data)

    def work() -> int:
        transitions = build_transitions(ds.lazy("stage_events"), ds.spec)
        frame = build_transition_features(ds, transitions).collect(engine="in-memory")
        if not (data / FEATURES).is_file():  # the input of the fit and scoring steps
            frame.write_parquet(data / FEATURES)
        return frame.height

    return _timed(work)


def _features_rfm_pandas(data: Path) -> dict[str, float]:
    import pandas as pd

    tx = pd.read_parquet(data / "transactions.parquet")
    events = pd.read_parquet(data / "stage_events.parquet")
    return _timed(lambda: len(pandas_rfm_frame(tx, events)))


def pandas_rfm_frame(tx, events):  # type: ignore[no-untyped-def]
    """The same purchase-history features, written plainly in pandas as an analyst would."""
    import pandas as pd

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


def _rfm_summary(data: Path) -> dict[str, float]:
    import polars as pl

    from funnelmodels.rfm import rfm_summary

    tx = pl.read_parquet(data / "transactions.parquet", columns=["customer_id", "ordered_at", "amount"])
    return _timed(lambda: rfm_summary(tx).height)


def _rfm_peer(data: Path, name: str) -> dict[str, float]:
    """lifetimes or pymc-marketing, run in the peers' environment (see the module docstring)."""
    import pandas as pd

    tx = pd.read_parquet(data / "transactions.parquet", columns=["customer_id", "ordered_at", "amount"])
    if name == "rfm_lifetimes":
        from lifetimes.utils import summary_data_from_transaction_data as summary

        kwargs: dict[str, Any] = {}
    else:
        from pymc_marketing.clv.utils import rfm_summary as summary

        kwargs = {"time_unit": "D"}
    return _timed(lambda: len(summary(tx, "customer_id", "ordered_at", "amount", **kwargs)))


def _kpi_month(data: Path) -> dict[str, float]:
    import polars as pl

    from funnelmodels.kpis import sales_kpi_table

    tx = pl.read_parquet(data / "transactions.parquet", columns=["customer_id", "ordered_at", "amount"])
    events = pl.read_parquet(data / "stage_events.parquet", columns=["opportunity_id", "stage", "entered_at"])
    return _timed(lambda: sales_kpi_table(tx.lazy(), events.lazy(), period="month").tail(12).height)


def _kpi_month_pandas(data: Path) -> dict[str, float]:
    import pandas as pd

    tx = pd.read_parquet(data / "transactions.parquet", columns=["customer_id", "ordered_at", "amount"])
    events = pd.read_parquet(data / "stage_events.parquet", columns=["opportunity_id", "stage", "entered_at"])
    return _timed(lambda: len(pandas_kpi_table(tx, events).tail(12)))


def pandas_kpi_table(tx, events):  # type: ignore[no-untyped-def]
    """The monthly sales KPIs of ``funnelmodels.kpis.sales_kpi_table``, written plainly in pandas."""
    import pandas as pd

    tx = tx.assign(period=tx["ordered_at"].dt.to_period("M"))
    positive = tx[tx["amount"] > 0]
    first = positive.groupby("customer_id")["period"].min().rename("first_period")
    table = tx.groupby("period").agg(net_revenue=("amount", "sum"))
    table["orders"] = positive.groupby("period").size()
    table["average_sale"] = positive.groupby("period")["amount"].sum() / table["orders"]
    buyers = positive[["period", "customer_id"]].drop_duplicates().join(first, on="customer_id")
    table["new_accounts"] = buyers[buyers["period"] == buyers["first_period"]].groupby("period").size()
    table["returning_customers"] = buyers[buyers["period"] > buyers["first_period"]].groupby("period").size()
    table["active_customers"] = buyers.groupby("period").size()
    closed = events[events["stage"].isin(["won", "lost"])]
    closed = closed.assign(period=closed["entered_at"].dt.to_period("M"))
    outcomes = pd.crosstab(closed["period"], closed["stage"])
    table = table.join(outcomes, how="outer")
    counts = ["orders", "new_accounts", "returning_customers", "active_customers", "won", "lost"]
    table[counts] = table[counts].fillna(0).astype("int64")
    table["win_rate"] = table["won"] / (table["won"] + table["lost"])
    return table.sort_index()


def _feature_frame(data: Path):  # type: ignore[no-untyped-def]
    """Every transition row with its features (written by ``features_all``; built here when missing)."""
    import polars as pl

    if not (data / FEATURES).is_file():
        _features_all(data)
    return pl.read_parquet(data / FEATURES)


def _model(data: Path):  # type: ignore[no-untyped-def]
    from funnelmodels.models.conversion import StageConversionModel

    if not (data / MODEL / "model.json").is_file():
        _fit(data, "fit_lightgbm")
    return StageConversionModel.load(data / MODEL)


def _import_engines() -> None:
    """Import the model libraries before the clock starts (their import is not the fit), as funnelmodels does."""
    import statsmodels.api  # noqa: F401

    from funnelmodels.models.boosting import lightgbm

    lightgbm()


def _fit(data: Path, name: str) -> dict[str, float]:
    import polars as pl

    from funnelmodels.config import load_config
    from funnelmodels.models.conversion import StageConversionModel

    frame = _feature_frame(data).filter(~pl.col("censored"))
    cut = frame["as_of"].quantile(0.85)
    train, validation = frame.filter(pl.col("as_of") < cut), frame.filter(pl.col("as_of") >= cut)
    spec = load_config(data).spec
    engine = name.removeprefix("fit_")
    _import_engines()

    def work() -> int:
        model = StageConversionModel.fit(train, validation=validation, engine=engine, spec=spec, seed=0)  # type: ignore[arg-type]
        if engine == "lightgbm":
            model.save(data / MODEL)
        return frame.height

    return _timed(work)


def _score_rows(data: Path) -> dict[str, float]:
    frame = _feature_frame(data)
    model = _model(data)
    _import_engines()
    return _timed(lambda: int(model.predict_proba(frame).size))


def _score_open(data: Path) -> dict[str, float]:
    from funnelmodels.models.predict import score_open_opportunities

    ds = _raw(data)
    model = _model(data)
    _import_engines()
    as_of = ds.tables["stage_events"]["entered_at"].max()
    return _timed(lambda: score_open_opportunities(ds, model, as_of).height)


def _report(name: str, data: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            str(Path(sys.executable).with_name("funnelmodels")),
            "--quiet",
            "report",
            name,
            "-p",
            "data_dir",
            str(data),
            "--reports-dir",
            tmp,
        ]
        return _timed(lambda: subprocess.run(command, check=True, cwd=ROOT).returncode + 1)


def _report_floor_ours(data: Path) -> dict[str, float]:
    """``funnelmodels report`` on a notebook with only its parameters: the floor of our reports."""
    import nbformat

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "notebooks"
        source.mkdir()
        cell = nbformat.v4.new_code_cell('data_dir: str = ""\noutput_dir: str = ""', metadata={"tags": ["parameters"]})
        nb = nbformat.v4.new_notebook(cells=[cell])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, source / "empty.ipynb")
        command = [str(Path(sys.executable).with_name("funnelmodels")), "--quiet", "report", "empty"]
        command += ["--notebooks-dir", str(source), "--reports-dir", str(Path(tmp) / "reports")]
        return _timed(lambda: subprocess.run(command, check=True, cwd=ROOT).returncode + 1)


def _report_floor(data: Path) -> dict[str, float]:
    """papermill + nbconvert on a notebook with one empty cell: the floor of any report."""
    import nbformat

    with tempfile.TemporaryDirectory() as tmp:
        notebook = Path(tmp) / "empty.ipynb"
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("")])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, notebook)
        bin_dir = Path(sys.executable).parent

        def work() -> int:
            subprocess.run(
                [bin_dir / "papermill", "--no-progress-bar", "--log-level", "ERROR", notebook, Path(tmp) / "out.ipynb"],
                check=True,
            )
            subprocess.run(
                [bin_dir / "jupyter", "nbconvert", "--log-level", "ERROR", "--to", "html", Path(tmp) / "out.ipynb"],
                check=True,
            )
            return 1

        return _timed(work)


# --- the driver ----------------------------------------------------------------------------------


BUSY = "while True: pass"
"""The other busy process of the ``*_busy`` steps: one core kept busy, as by another job on a shared machine."""


def _measure(name: str, data: Path) -> dict[str, float]:
    python = str(PEERS_PYTHON) if name in PEER_STEPS else sys.executable
    busy = subprocess.Popen([sys.executable, "-c", BUSY]) if name.endswith("_busy") else None
    load = os.getloadavg()[0]
    start = time.perf_counter()
    child = subprocess.Popen([python, __file__, "step", name, str(data)], stdout=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if busy is not None:
        busy.kill()
        busy.wait()
    output = child.stdout.read().strip().splitlines() if child.stdout else []
    if status != 0 or not output:
        raise SystemExit(f"step {name} failed on {data} (status {status})")
    inner = json.loads(output[-1])
    cpu = usage.ru_utime + usage.ru_stime
    return {"wall": wall, "cpu": cpu, "rss_mib": usage.ru_maxrss / 1024, "load": load, **inner}


def _generate(size: str) -> tuple[Path, dict[str, float]]:
    """Generate the size's data (measured: it is a step too); reused by every other step."""
    target = OUT / f"data_{size}"
    command = [sys.executable, "-m", "funnelmodels.cli", "--quiet", "generate"]
    command += ["--customers", str(SIZES[size]), "--seed", "1", "--out", str(target)]
    start = time.perf_counter()
    child = subprocess.Popen(command)
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        raise SystemExit(f"generating {size} failed (status {status})")
    wall = time.perf_counter() - start
    return target, {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mib": usage.ru_maxrss / 1024}


def _transactions(data: Path) -> int:
    import polars as pl

    return pl.scan_parquet(data / "transactions.parquet").select(pl.len()).collect().item()


def _memory_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def _versions() -> str:
    from importlib import metadata

    names = ("polars", "pandas", "numpy", "lightgbm", "statsmodels", "papermill", "nbconvert")
    ours = ", ".join(f"{n} {metadata.version(n)}" for n in names)
    if not PEERS_PYTHON.is_file():
        return ours + "; peers not installed"
    code = "from importlib.metadata import version as v; print(v('lifetimes'), v('pymc-marketing'), v('pandas'))"
    peers = subprocess.run([str(PEERS_PYTHON), "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return ours + f"; peers: lifetimes {peers[0]}, pymc-marketing {peers[1]} (pandas {peers[2]})"


HEADER = (
    "| step | rows | wall s | call s | CPU s | peak RSS MiB | call MiB | load | baseline | baseline wall s | "
    "baseline call s | baseline RSS MiB | speed-up (call) | memory ratio (RSS) |"
)


def _row(name: str, a: dict[str, float], baseline: str | None = None, b: dict[str, float] | None = None) -> str:
    row = (
        f"| {name} | {a.get('rows', math.nan):,.0f} | {a['wall']:.2f} | {a.get('call', math.nan):.2f} | "
        f"{a['cpu']:.2f} | {a['rss_mib']:.0f} | {a.get('call_mib', math.nan):.0f} | {a.get('load', math.nan):.1f} |"
    )
    if baseline and b:
        row += (
            f" {baseline} | {b['wall']:.2f} | {b['call']:.2f} | {b['rss_mib']:.0f} | "
            f"{b['call'] / a['call']:.2f}× | {b['rss_mib'] / a['rss_mib']:.2f}× |"
        )
    else:
        row += " – | – | – | – | – | – |"
    return row


def _slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log y on log x."""
    lx, ly = [math.log(x) for x in xs], [math.log(max(y, 1e-3)) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    return sum((x - mx) * (y - my) for x, y in zip(lx, ly, strict=True)) / sum((x - mx) ** 2 for x in lx)


def run(sizes: list[str], repeat: int, only: set[str] | None = None, large_repeat: int = 1) -> str:
    lines = [
        f"\n## {date.today()} — {os.cpu_count()} cores, {_memory_gib():.0f} GiB, {platform.machine()}, "
        f"Python {platform.python_version()}",
        f"\n{_versions()}. Medians of {repeat} runs (L: {large_repeat}), each a fresh process (imports included).\n",
    ]
    results: dict[str, dict[str, dict[str, float]]] = {}
    rows_of: dict[str, int] = {}
    for size in sizes:
        data, generated = _generate(size)
        rows_of[size] = _transactions(data)
        lines += [f"\n### {size} ({SIZES[size]:,} customers, {rows_of[size]:,} transactions)\n", HEADER]
        lines.append("|" + "---|" * (HEADER.count("|") - 1))
        lines.append(_row("generate", generated | {"rows": rows_of[size]}))
        results[size] = {}
        runs = large_repeat if size == "L" else repeat
        for ours, baselines in PAIRS:
            if only and ours not in only:
                continue
            a = _median([_measure(ours, data) for _ in range(runs)])
            results[size][ours] = a
            if not baselines:
                lines.append(_row(ours, a))
            for baseline in baselines:
                if baseline in PEER_STEPS and not PEERS_PYTHON.is_file():
                    continue
                b = results[size].get(baseline) or _median([_measure(baseline, data) for _ in range(runs)])
                results[size][baseline] = b
                lines.append(_row(ours, a, baseline, b))
            print(lines[-1], flush=True)
        lines += _targets(size, results[size])
    if len(sizes) > 1:
        lines += _scaling(sizes, results, rows_of)
    return "\n".join(lines) + "\n"


def _targets(size: str, r: dict[str, dict[str, float]]) -> list[str]:
    """The performance issue's targets (set for L) against this size's figures: met, missed, or not measured."""
    out = [
        f"\n**Targets at {size}** (set for L = 1M customers; wall = whole process, call = the work itself):\n",
        "| path | measured | target | verdict |",
        "|---|---|---|---|",
    ]

    def row(path: str, needs: tuple[str, ...], measure: Callable[[], tuple[str, bool]], target: str) -> None:
        if not all(n in r for n in needs):
            out.append(f"| {path} | not measured | {target} | – |")
            return
        text, met = measure()
        out.append(f"| {path} | {text} | {target} | {'met' if met else '**missed**'} |")

    def ratio(ours: str, theirs: str, key: str = "call") -> float:
        return r[theirs][key] / r[ours][key]

    row(
        "point-in-time purchase features",
        ("features_rfm", "features_rfm_pandas"),
        lambda: (
            f"{ratio('features_rfm', 'features_rfm_pandas'):.2f}× faster, "
            f"{ratio('features_rfm', 'features_rfm_pandas', 'rss_mib'):.2f}× leaner than pandas",
            ratio("features_rfm", "features_rfm_pandas") >= 2
            and ratio("features_rfm", "features_rfm_pandas", "rss_mib") >= 1,
        ),
        "≥ 2× faster than pandas `merge_asof`, ≤ its memory",
    )
    row(
        "all features of all transition rows",
        ("features_all",),
        lambda: (
            f"{r['features_all']['call']:.1f} s, {r['features_all']['rss_mib'] / 1024:.2f} GiB",
            r["features_all"]["call"] <= 8 and r["features_all"]["rss_mib"] <= 2048,
        ),
        "≤ 8 s, ≤ 2 GiB",
    )
    for peer in ("rfm_lifetimes", "rfm_pymc_marketing"):
        row(
            f"customer summary (RFM) against {peer.removeprefix('rfm_')}",
            ("rfm_summary", peer),
            lambda peer=peer: (  # type: ignore[misc]
                f"{ratio('rfm_summary', peer):.1f}× faster, 1/{ratio('rfm_summary', peer, 'rss_mib'):.1f} of its peak",
                ratio("rfm_summary", peer) >= 10 and ratio("rfm_summary", peer, "rss_mib") >= 3,
            ),
            "≥ 10× faster, ≤ 1/3 of its peak memory",
        )
    row(
        "monthly KPI table",
        ("kpi_month", "kpi_month_pandas"),
        lambda: (
            f"{r['kpi_month']['call']:.2f} s, {ratio('kpi_month', 'kpi_month_pandas'):.1f}× pandas",
            r["kpi_month"]["call"] <= 1.5 and ratio("kpi_month", "kpi_month_pandas") >= 3,
        ),
        "≤ 1.5 s, ≥ 3× pandas",
    )
    for name, limit, memory in (
        ("report_sales_performance", 8.0, None),
        ("report_stage_conversion", 45.0, None),
        ("report_customer_satisfaction", 45.0, 3072.0),
    ):
        row(
            name.removeprefix("report_").replace("_", " ") + " report, end to end (data cache warm)",
            (name,),
            lambda name=name, limit=limit, memory=memory: (  # type: ignore[misc]
                f"{r[name]['wall']:.1f} s, {r[name]['rss_mib'] / 1024:.2f} GiB",
                r[name]["wall"] <= limit and (memory is None or r[name]["rss_mib"] <= memory),
            ),
            f"≤ {limit:.0f} s" + (f", ≤ {memory / 1024:.0f} GiB" if memory else ""),
        )
    row(
        "scoring the open opportunities with reasons",
        ("score_open",),
        lambda: (f"{r['score_open']['call']:.1f} s", r["score_open"]["call"] <= 10),
        "≤ 10 s",
    )
    row(
        "scoring rows (probabilities)",
        ("score_rows",),
        lambda: (
            f"{r['score_rows']['call'] / r['score_rows']['rows'] * 1e6:.1f} s per million",
            r["score_rows"]["call"] / r["score_rows"]["rows"] * 1e6 <= 5,
        ),
        "≤ 5 s per million",
    )
    row(
        "LightGBM fit beside one busy process",
        ("fit_lightgbm", "fit_lightgbm_busy"),
        lambda: (
            f"{1 / ratio('fit_lightgbm_busy', 'fit_lightgbm'):.2f}× its time alone",
            1 / ratio("fit_lightgbm_busy", "fit_lightgbm") <= 1.5,
        ),
        "≤ 1.5× slower than alone",
    )
    row(
        "report floor (an empty notebook through funnelmodels report)",
        ("report_floor",),
        lambda: (f"{r['report_floor']['wall']:.2f} s", r["report_floor"]["wall"] <= 1.5),
        "≤ 1.5 s",
    )
    row(
        "import of the package with LightGBM",
        ("import_engines",),
        lambda: (f"{r['import_engines']['wall']:.2f} s", r["import_engines"]["wall"] <= 1.0),
        "≤ 1 s (whole process)",
    )
    return out


def _scaling(sizes: list[str], results: dict[str, dict[str, dict[str, float]]], rows_of: dict[str, int]) -> list[str]:
    xs = [float(rows_of[size]) for size in sizes]
    out = [
        f"\n### Scaling {'→'.join(sizes)} (log-log slope against transactions; 1 = linear)\n",
        "| step | time exponent (call) | memory exponent (call MiB) |",
        "|---|---|---|",
    ]
    for name in results[sizes[0]]:
        if all(name in results[size] for size in sizes):
            calls = [results[size][name]["call"] for size in sizes]
            mib = [results[size][name]["call_mib"] for size in sizes]
            out.append(f"| {name} | {_slope(xs, calls):.2f} | {_slope(xs, mib):.2f} |")
    return out


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="measure and append to RESULTS.md")
    r.add_argument("--sizes", default="S,M", help="comma-separated of S, M, L (default S,M)")
    r.add_argument("--repeat", type=int, default=3)
    r.add_argument("--large-repeat", type=int, default=1, help="runs per step at size L (default 1: minutes each)")
    r.add_argument("--only", default="", help="comma-separated steps to measure (default all)")
    r.add_argument("--no-append", action="store_true", help="print only; do not append to RESULTS.md")
    s = sub.add_parser("step", help="(internal) run one step in this process")
    s.add_argument("name")
    s.add_argument("data", type=Path)
    args = parser.parse_args()
    if args.command == "step":
        print(json.dumps(step(args.name, args.data)))
        return
    OUT.mkdir(exist_ok=True)
    # The reports read the validated dataset from a cache of the benchmark's own (filled by load_cached).
    os.environ.setdefault("FUNNELMODELS_CACHE", str(OUT / "cache"))
    only = {x.strip() for x in args.only.split(",") if x.strip()} or None
    text = run([x.strip() for x in args.sizes.split(",")], args.repeat, only, args.large_repeat)
    print(text)
    if not args.no_append:
        with (HERE / "RESULTS.md").open("a", encoding="utf-8") as handle:
            handle.write(text)
        print(f"appended to {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
