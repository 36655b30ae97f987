"""Run-time settings read from the environment, and the one way frames are collected.

Nothing here is read at import time: each setting is read when it is used, so a notebook or a
test can change the environment first.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import polars as pl

from funnelmodels.errors import ModelError

__all__ = ["collect", "collect_all", "lightgbm_threads"]

ENGINE = "in-memory"


def collect(frame: pl.LazyFrame) -> pl.DataFrame:
    """Collect a LazyFrame with polars' in-memory engine.

    The default streaming engine adds floats in a varying order, so two runs on the same data
    could differ in the last digits; a report must be reproducible to the byte.
    """
    return frame.collect(engine=ENGINE)


def collect_all(frames: Sequence[pl.LazyFrame]) -> list[pl.DataFrame]:
    """Collect several LazyFrames at once (shared parts computed once), with the same engine as `collect`."""
    return pl.collect_all(list(frames), engine=ENGINE)


def lightgbm_threads() -> int:
    """LightGBM's thread count: ``FUNNELMODELS_THREADS`` if set, else 2 (the reference machine's cores).

    Set it to 1 when several fits share the cores (parallel test workers, reports run side by
    side): OpenMP threads that outnumber the cores wait on each other.
    """
    value = os.environ.get("FUNNELMODELS_THREADS", "2")
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ModelError(f"FUNNELMODELS_THREADS must be a whole number of 1 or more; received {value!r}.")
    return threads
