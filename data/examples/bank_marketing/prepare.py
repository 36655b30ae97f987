"""Turn UCI's bank-marketing contacts into a funnelmodels dataset (a single-step funnel).

    python data/examples/bank_marketing/prepare.py   # writes data/examples/bank_marketing/prepared/
    python data/examples/bank_marketing/prepare.py --with-duration   # keep the leaky column (to see the warning)

The source (``../shared/data/bank_marketing/bank-additional-full.csv``, beside the checkout) has
one row per phone contact of a Portuguese bank, May 2008 – Nov 2010, in time order, and whether
the client subscribed a term deposit (``y``). It has no customer id and no date, so this step:

- numbers the rows: each contact is a customer (``customer_id``) and an opportunity;
- dates each contact: the file has only the month, in time order, so the year starts at 2008 and
  goes up whenever the month goes back (May 2008 … Nov 2010, checked); contacts of a month are
  spread evenly over it in file order (the day is not in the data; order is what matters);
- writes ``customers.csv``: the client's demographics (age, job, marital, education, default,
  housing, loan), the contact's context (contact, month, day_of_week), the prior-campaign history
  (campaign, pdays, previous, poutcome) and the economy at the time (emp_var_rate, …) — all
  known before the call; ``pdays`` 999 ("not contacted before") becomes empty, which the models
  see as a missing-value indicator;
- writes ``stage_events.csv``: ``contact`` when the call starts, then ``won`` or ``lost`` one
  hour later (the outcome is known when the call ends);
- leaves out ``duration``: the length of the call is known only once the call is over, and a
  long call *is* a sale in progress — with it a model scores ≈ 0.93 AUC on paper and is useless
  before the call (UCI's own note says to drop it for a realistic model). ``--with-duration``
  keeps it, to show the leakage warning ``funnelmodels train`` gives.

``funnel.toml`` (beside this script) declares the one-step funnel and reads ``prepared/``.
"""

from __future__ import annotations

import argparse
import calendar
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parents[2].parent / "shared" / "data" / "bank_marketing" / "bank-additional-full.csv"
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]


def prepare(source: Path = SOURCE, out: Path = HERE / "prepared", *, with_duration: bool = False) -> Path:
    """Write ``customers.csv`` and ``stage_events.csv`` into ``out``; returns ``out``."""
    raw = pl.read_csv(source, separator=";", infer_schema_length=None)
    raw = raw.rename({c: c.replace(".", "_") for c in raw.columns})
    month = pl.col("month").replace_strict(MONTHS, list(range(1, 13)), return_dtype=pl.Int32)
    dated = raw.with_row_index("customer_id", offset=1).with_columns(
        (2008 + (month.diff() < 0).fill_null(False).cum_sum()).alias("_year"), month.alias("_month")
    )
    dated = dated.with_columns(
        pl.int_range(pl.len()).over("_year", "_month").alias("_k"), pl.len().over("_year", "_month").alias("_n")
    )
    starts = [_moment(year, m, k, n) for year, m, k, n in dated.select("_year", "_month", "_k", "_n").iter_rows()]
    dated = dated.with_columns(pl.Series("created_at", starts), pl.col("pdays").replace(999, None))
    features = [c for c in raw.columns if c not in ("y", "duration")] + (["duration"] if with_duration else [])
    customers = dated.select("customer_id", "created_at", *features)
    contact = dated.select(
        pl.col("customer_id").alias("opportunity_id"),
        "customer_id",
        pl.lit("contact").alias("stage"),
        pl.col("created_at").alias("entered_at"),
    )
    outcome = dated.select(
        pl.col("customer_id").alias("opportunity_id"),
        "customer_id",
        pl.when(pl.col("y") == "yes").then(pl.lit("won")).otherwise(pl.lit("lost")).alias("stage"),
        (pl.col("created_at") + pl.duration(hours=1)).alias("entered_at"),
    )
    out.mkdir(parents=True, exist_ok=True)
    customers.write_csv(out / "customers.csv")
    pl.concat([contact, outcome]).sort("opportunity_id", "entered_at").write_csv(out / "stage_events.csv")
    return out


def _moment(year: int, month: int, k: int, n: int) -> datetime:
    """The k-th of n contacts of a month, spread evenly over it."""
    days = calendar.monthrange(year, month)[1]
    return datetime(year, month, 1) + timedelta(seconds=int(k * days * 86_400 / n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=SOURCE, help="bank-additional-full.csv")
    parser.add_argument("--out", type=Path, default=HERE / "prepared", help="output folder")
    parser.add_argument("--with-duration", action="store_true", help="keep the leaky call-duration column")
    args = parser.parse_args()
    print(f"wrote {prepare(args.source, args.out, with_duration=args.with_duration)}/")


if __name__ == "__main__":
    main()
