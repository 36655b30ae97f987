"""Run-time settings read from the environment when they are used (so a notebook or a test can set them first)."""

from __future__ import annotations

import os

from funnelmodels.errors import ModelError

__all__ = ["lightgbm_threads"]


def stop_grace_seconds() -> float:
    """How long a run may take to unwind after SIGTERM before it stops hard (``FUNNELMODELS_STOP_GRACE``, 30)."""
    text = os.environ.get("FUNNELMODELS_STOP_GRACE", "30")
    try:
        value = float(text)
    except ValueError:
        return 30.0
    return value if value > 0 else 30.0


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
