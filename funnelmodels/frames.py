"""Polars helpers every layer uses: the one way frames are collected, and durations in days."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import polars as pl

__all__ = ["ENGINE", "US_PER_DAY", "as_days", "collect", "collect_all", "stratified_sample"]

ENGINE: Final = "in-memory"
"""polars' engine for every collect: the default streaming engine adds floats in a varying order,
so two runs on the same data could differ in the last digits; a report must be reproducible to
the byte."""
US_PER_DAY = 86_400_000_000


def collect(frame: pl.LazyFrame) -> pl.DataFrame:
    """Collect a LazyFrame with :data:`ENGINE`."""
    return frame.collect(engine=ENGINE)


def collect_all(frames: Sequence[pl.LazyFrame]) -> list[pl.DataFrame]:
    """Collect several LazyFrames at once (shared parts computed once), with :data:`ENGINE`."""
    return pl.collect_all(list(frames), engine=ENGINE)


def as_days(duration: pl.Expr) -> pl.Expr:
    """A duration expression as a float number of days."""
    return duration.dt.total_microseconds() / US_PER_DAY


def stratified_sample(frame: pl.DataFrame, share: float, by: Sequence[str | pl.Expr], *, seed: int = 0) -> pl.DataFrame:
    """About ``share`` of ``frame``'s rows: that share of every ``by`` group (rounded up), seeded, in their order."""
    if share >= 1 or frame.height == 0:
        return frame
    chance = pl.int_range(pl.len(), dtype=pl.Int64).shuffle(seed=seed)
    keep = chance.rank("ordinal").over(by) <= (pl.len().over(by) * share).ceil()
    return frame.filter(keep)
