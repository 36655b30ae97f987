"""What fitting on a stratified sample (the model reports above ``max_fit_rows``) costs in accuracy and saves in time.

For a generated dataset: the stage-conversion LightGBM and the satisfaction models fitted on every row
and on a sample of at most ``--max-rows`` rows, both judged on the same full test period; printed as a
Markdown table (and appended to RESULTS.md with ``--append``).

    python benchmarks/sampling.py benchmarks/out/data_M --max-rows 100000
"""

from __future__ import annotations

import argparse
import math
import time
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from funnelmodels.data.io import load_dataset
from funnelmodels.evaluation import binary_metrics
from funnelmodels.models.satisfaction import ordinal_metrics
from funnelmodels.models.train import train_conversion, train_satisfaction

HERE = Path(__file__).resolve().parent


def _auc_half_width(auc: float, positives: int, negatives: int) -> float:
    """Half the 95% interval of a ROC AUC (Hanley and McNeil, 1982)."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)) / (
        positives * negatives
    )
    return 1.96 * math.sqrt(variance)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("--max-rows", type=int, default=250_000)
    parser.add_argument("--append", action="store_true")
    args = parser.parse_args()
    data = load_dataset(args.data)
    lines = [
        f"\n## {date.today()} — fitted on a sample against every row "
        f"({args.data.name}, at most {args.max_rows:,} rows)\n",
        "| model | rows | fit s (all / sample) | on the full test period: all rows | sample | difference "
        "| 95% half-width |",
        "|---|---|---|---|---|---|---|",
    ]
    start = time.perf_counter()
    full = train_conversion(data, engines=("lightgbm",), seed=0)
    full_s = time.perf_counter() - start
    start = time.perf_counter()
    part = train_conversion(data, engines=("lightgbm",), seed=0, max_rows=args.max_rows)
    part_s = time.perf_counter() - start
    y = full.test["converted"].cast(pl.Int8).to_numpy()
    aucs = [binary_metrics(y, t.models["lightgbm"].predict_proba(full.test))["roc_auc"] for t in (full, part)]
    width = _auc_half_width(aucs[0], int(y.sum()), int((1 - y).sum()))
    lines.append(
        f"| conversion, LightGBM ROC AUC | {part.sample or 'every row (below the limit)'} "
        f"| {full_s:.0f} / {part_s:.0f} | {aucs[0]:.4f} | {aucs[1]:.4f} | {aucs[1] - aucs[0]:+.4f} | {width:.4f} |"
    )
    for engine in ("ordinal", "lightgbm"):
        start = time.perf_counter()
        whole = train_satisfaction(data, engines=(engine,), seed=0)
        whole_s = time.perf_counter() - start
        start = time.perf_counter()
        sampled = train_satisfaction(data, engines=(engine,), seed=0, max_rows=args.max_rows)
        sampled_s = time.perf_counter() - start
        test, levels = whole.test, whole.models[engine].levels
        scores = test[whole.target].to_numpy()
        rps = [
            ordinal_metrics(scores, t.models[engine].predict_proba(test), levels, whole.models[engine].satisfied_from)[
                "rps"
            ]
            for t in (whole, sampled)
        ]
        per_row = _rps_rows(scores, whole.models[engine].predict_proba(test), levels)
        half = 1.96 * float(np.std(per_row)) / math.sqrt(per_row.size)
        lines.append(
            f"| satisfaction, {engine} ranked probability score | {sampled.sample or 'every row'} | "
            f"{whole_s:.0f} / {sampled_s:.0f} | {rps[0]:.4f} | {rps[1]:.4f} | {rps[1] - rps[0]:+.4f} | {half:.4f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.append:
        with (HERE / "RESULTS.md").open("a", encoding="utf-8") as handle:
            handle.write(text)


def _rps_rows(scores: np.ndarray, proba: np.ndarray, levels: list[int] | tuple[int, ...]) -> np.ndarray:
    """Each row's ranked probability score, as :func:`funnelmodels.models.satisfaction.ordinal_metrics` computes it."""
    observed = (scores[:, None] <= np.asarray(levels)[None, :]).astype(float)
    return np.sum(((np.cumsum(proba, axis=1) - observed) ** 2)[:, :-1], axis=1) / (len(levels) - 1)


if __name__ == "__main__":
    main()
