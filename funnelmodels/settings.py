"""Run-time settings read from the environment when they are used (so a notebook or a test can set them first)."""

from __future__ import annotations

import os
from pathlib import Path

from funnelmodels.errors import ModelError

__all__ = ["dataset_cache_dir", "dataset_cache_keep", "lightgbm_threads"]

CACHE_OFF = ("", "0", "off", "no", "false")


def dataset_cache_dir() -> Path | None:
    """Where validated datasets are kept (:mod:`funnelmodels.data.cache`); None when caching is off.

    ``FUNNELMODELS_CACHE``: a folder, or ``off``; default ``$XDG_CACHE_HOME/funnelmodels/datasets``
    (``~/.cache/funnelmodels/datasets``). The command line's ``--no-cache`` sets it to ``off``.
    """
    value = os.environ.get("FUNNELMODELS_CACHE")
    if value is not None:
        return None if value.strip().lower() in CACHE_OFF else Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "funnelmodels" / "datasets"


def dataset_cache_keep() -> int:
    """How many datasets the cache keeps, the most recently used (``FUNNELMODELS_CACHE_KEEP``, 4)."""
    try:
        return max(int(os.environ.get("FUNNELMODELS_CACHE_KEEP", "4")), 1)
    except ValueError:
        return 4


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
