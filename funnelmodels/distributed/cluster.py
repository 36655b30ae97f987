"""Which Dask cluster a command runs on: ``--cluster local:N`` starts one, ``--scheduler`` joins one.

Dask is an optional extra (``pip install 'funnelmodels[dask]'``): nothing here is imported on the
single-machine path, and asking for a cluster without it installed is a clear error.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from funnelmodels.errors import ConfigError, FunnelModelsError

__all__ = [
    "DASK_MISSING",
    "client_for",
    "gather_in_order",
    "run_on_partitions",
]

DASK_MISSING = (
    "running on a Dask cluster needs the optional Dask packages: pip install 'funnelmodels[dask]' "
    "(or `make env`, which installs them)."
)

_LOCAL = re.compile(r"^local:(\d+)$")


def _dask() -> Any:
    try:
        import distributed
    except ImportError:
        raise ConfigError(DASK_MISSING) from None
    return distributed


@contextmanager
def client_for(cluster: str | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """A Dask client: on a new local cluster (``local:N``, N worker processes) or an existing scheduler.

    The local cluster's workers run one task at a time each, and polars in each uses its share of the
    cores (``POLARS_MAX_THREADS``), so N workers do not fight over the machine. It is closed on leaving.
    """
    if (cluster is None) == (scheduler is None):
        raise ConfigError("give one of --cluster local:N or --scheduler tcp://host:port.")
    distributed = _dask()
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise FunnelModelsError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        try:
            yield client
        finally:
            client.close()
        return
    match = _LOCAL.match(str(cluster))
    if match is None or int(match.group(1)) < 1:
        raise ConfigError(f"--cluster takes local:N with N ≥ 1 worker processes (e.g. local:2); received {cluster!r}.")
    workers = int(match.group(1))
    threads = max(1, (os.cpu_count() or 1) // workers)
    try:
        local = _local_cluster(distributed, workers, threads)
    except RuntimeError as exc:  # Dask's own words: "Nanny failed to start."
        raise FunnelModelsError(
            f"the local Dask cluster could not start its {workers} worker processes ({exc}). A Python script "
            'that starts one must do so under `if __name__ == "__main__":` (worker processes import the '
            "script again); the command line and notebooks need nothing."
        ) from None
    try:
        client = distributed.Client(local)
        try:
            yield client
        finally:
            client.close()
    finally:
        local.close()


def _local_cluster(distributed: Any, workers: int, threads: int) -> Any:
    return distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",  # a free port: two clusters at once do not fight over the default one
        worker_dashboard_address=None,
        # A task's error comes back to the command as its own message; the workers' logs would print it again
        # with a traceback.
        silence_logs=logging.CRITICAL,
        env={"POLARS_MAX_THREADS": str(threads), "OMP_NUM_THREADS": str(threads), "FUNNELMODELS_PROGRESS": "0"},
    )


def run_on_partitions(
    client: Any, task: Callable[..., Any], parts: Sequence[Any], *args: Any, **kwargs: Any
) -> list[Any]:
    """``task(part, *args, **kwargs)`` for every partition on the cluster, results in partition order.

    A task that fails raises its own error here (a data problem keeps its message), with the partition named.
    """
    futures = client.map(task, list(parts), *[[a] * len(parts) for a in args], pure=False, **kwargs)
    return gather_in_order(futures, parts)


def gather_in_order(futures: Sequence[Any], parts: Sequence[Any]) -> list[Any]:
    """The futures' results, in order; the first failure cancels the rest and is raised with its partition named.

    A funnelmodels error (a rule a partition breaks) keeps its own message, which names the partition's folder.
    """
    results = []
    for part, future in zip(parts, futures, strict=True):
        try:
            results.append(future.result())
            future.release()  # the worker may drop its copy now, not when every partition is done
        except FunnelModelsError:
            for other in futures:
                other.cancel()
            raise
        except Exception as exc:
            for other in futures:
                other.cancel()
            raise FunnelModelsError(f"partition {part}: {type(exc).__name__}: {exc}") from None
    return results
