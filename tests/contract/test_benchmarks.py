"""The benchmarks compare like with like: each plain-pandas baseline gives our numbers."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import polars as pl
from places import ROOT

from funnelmodels.data.io import Dataset, load_dataset
from funnelmodels.features import build_features
from funnelmodels.funnel import build_transitions
from funnelmodels.kpis import SALES_KPIS, sales_kpi_table


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench", ROOT / "benchmarks" / "bench.py")
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_the_pandas_feature_baseline_computes_the_same_features(synthetic_dir: Path) -> None:
    tx = pd.read_parquet(synthetic_dir / "transactions.parquet")
    events = pd.read_parquet(synthetic_dir / "stage_events.parquet")
    theirs = pl.from_pandas(_bench().pandas_rfm_frame(tx, events)).sort("as_of", "customer_id")
    ds = load_dataset(synthetic_dir)
    transitions = build_transitions(ds.lazy("stage_events"), ds.spec).collect()
    rows = transitions.select("customer_id", pl.col("entered_at").alias("as_of")).sort("as_of")
    ours = build_features(Dataset(config=ds.config, tables={"transactions": ds.tables["transactions"]}), rows.lazy())
    ours = ours.collect().sort("as_of", "customer_id")
    assert ours.height == theirs.height > 1000
    for column in ("frequency", "monetary_total", "spend_90d", "spend_365d", "refund_count", "recency_days"):
        a = ours[column].fill_null(0).cast(pl.Float64).to_numpy()
        b = theirs[column].fill_null(0).cast(pl.Float64).to_numpy()
        assert np.allclose(a, b), column


def test_the_pandas_kpi_baseline_computes_the_same_table(synthetic_dir: Path) -> None:
    tx = pd.read_parquet(synthetic_dir / "transactions.parquet", columns=["customer_id", "ordered_at", "amount"])
    events = pd.read_parquet(synthetic_dir / "stage_events.parquet", columns=["opportunity_id", "stage", "entered_at"])
    theirs = _bench().pandas_kpi_table(tx, events)
    ours = sales_kpi_table(pl.from_pandas(tx).lazy(), pl.from_pandas(events).lazy(), period="month")
    assert ours.height == len(theirs) > 12
    assert [str(p) for p in ours["period"]] == [p.start_time.strftime("%Y-%m-%d") for p in theirs.index]
    for kpi in SALES_KPIS:
        a = ours[kpi].cast(pl.Float64).fill_null(np.nan).to_numpy()
        b = theirs[kpi].astype(float).to_numpy()
        assert np.allclose(a, b, equal_nan=True), kpi
