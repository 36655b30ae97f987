"""The learning curve behind the readiness gate's minimum training size (``funnelmodels.models.card``).

For datasets of growing size from the generator (several seeds each), train the stage-conversion
models and read, on the test period: how many stage entries and conversions the training had,
LightGBM's and the logit's ROC AUC gain over the stage's own rate with its paired 95% interval,
and LightGBM's gap to the truth (the generator's probabilities). The gate's minimum is the
smallest training from which LightGBM's gain is interval-separated from 0 on every seed, at that
size and every larger one.

    python benchmarks/learning_curve.py [--sizes 150,300,600,1200,2500,5000] [--seeds 1,2,3]

Prints a markdown table and the minimum found.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import polars as pl

from funnelmodels.data.io import load_dataset
from funnelmodels.data.synthetic import generate_dataset, write_dataset
from funnelmodels.intervals import difference_interval
from funnelmodels.models.card import STAGE_RATE, conversion_card, stage_rate
from funnelmodels.models.train import train_conversion


def _one(customers: int, seed: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as folder:
        write_dataset(generate_dataset(customers, seed=seed), Path(folder))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            training = train_conversion(load_dataset(Path(folder)), seed=0)
    card = conversion_card(training, resamples=200)
    y = training.test["converted"].cast(pl.Int8).to_numpy()
    stage = card.metrics.filter((pl.col("group") == "all") & (pl.col("engine") == STAGE_RATE))["roc_auc"].item()
    auc = {r["engine"]: r["roc_auc"] for r in card.metrics.filter(pl.col("group") == "all").iter_rows(named=True)}
    logit = difference_interval(
        y, training.models["logit"].predict_proba(training.test), stage_rate(training.history, training.test)
    )
    gain = card.gate.auc_gain
    return {
        "customers": customers,
        "seed": seed,
        "train_rows": card.gate.train_rows,
        "train_positives": card.gate.train_positives,
        "test_rows": training.test.height,
        "stage_auc": stage,
        "lightgbm_gain": gain[0],
        "lightgbm_low": gain[1],
        "lightgbm_high": gain[2],
        "logit_gain": logit[0],
        "logit_low": logit[1],
        "gap_to_truth": auc.get("oracle", math.nan) - auc["lightgbm"],
        "beats": bool(gain[1] > 0),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="150,300,600,1200,2500,5000")
    parser.add_argument("--seeds", default="1,2,3")
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")]
    rows = [_one(n, seed) for n in sizes for seed in seeds]
    table = pl.DataFrame(rows)
    print(
        "| customers | seed | training entries | conversions | test entries | stage-rate AUC "
        "| LightGBM gain (95% interval) | logit gain (low) | LightGBM gap to the truth |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['customers']:,} | {r['seed']} | {r['train_rows']:,} | {r['train_positives']:,} "
            f"| {r['test_rows']:,} | {r['stage_auc']:.3f} "
            f"| {r['lightgbm_gain']:+.3f} ({r['lightgbm_low']:+.3f} to {r['lightgbm_high']:+.3f}) "
            f"| {r['logit_gain']:+.3f} ({r['logit_low']:+.3f}) | {r['gap_to_truth']:+.3f} |"
        )
    # The smallest size from which every seed, at it and every larger size, beats the stage rate.
    by_size = (
        table.group_by("customers")
        .agg(pl.col("beats").all(), pl.col("train_rows").min(), pl.col("train_positives").min())
        .sort("customers")
    )
    ok = by_size["beats"].to_numpy()
    suffix = np.flip(np.logical_and.accumulate(np.flip(ok)))
    if suffix.any():
        first = int(np.argmax(suffix))
        row = by_size.row(first, named=True)
        print(
            f"\nLightGBM beats the stage rate on every seed from {row['customers']:,} customers on: "
            f"at least {row['train_rows']:,} training entries and {row['train_positives']:,} conversions."
        )
    else:
        print("\nLightGBM never beat the stage rate on every seed at these sizes.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
