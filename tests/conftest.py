"""Shared fixtures: hand-made canonical tables and a small seeded synthetic dataset."""

from __future__ import annotations

import os

# Two test workers share two cores: one LightGBM thread each (kernels started by the report
# runner inherit it), and OpenMP threads that sleep rather than spin while they wait.
os.environ.setdefault("FUNNELMODELS_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from commands import Cli, run_cli
from handmade import FUNNEL_END, FUNNEL_SPEC, funnel_events, tiny_tables
from places import SHARED_DATA
from shared import once_per_run

from funnelmodels.data.io import Dataset, load_dataset
from funnelmodels.data.synthetic import SyntheticData, generate_dataset, write_dataset
from funnelmodels.funnel import build_transitions
from funnelmodels.models.train import ConversionTraining, SatisfactionTraining, train_conversion, train_satisfaction

_HEAVY_FOLDERS = ("contract", "reports", "cli")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The long tests first (marked slow, then the folders that render reports or run commands), the quick
    unit tests last: the two workers then finish together instead of one waiting on a long test started late."""

    def weight(item: pytest.Item) -> int:
        if item.get_closest_marker("slow"):
            return 0
        return 1 if any(f"tests/{folder}/" in item.nodeid for folder in _HEAVY_FOLDERS) else 2

    items.sort(key=weight)  # stable: each group keeps its collected order


@pytest.fixture(scope="session", autouse=True)
def dataset_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The run's own validated-dataset cache, shared by the workers (never the user's own cache)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    folder = base / "dataset-cache"
    before = {name: os.environ.get(name) for name in ("FUNNELMODELS_CACHE", "FUNNELMODELS_CACHE_KEEP")}
    os.environ["FUNNELMODELS_CACHE"] = str(folder)
    os.environ["FUNNELMODELS_CACHE_KEEP"] = "1000"  # the tests load hundreds of small datasets
    yield folder
    for name, value in before.items():
        os.environ.pop(name, None)
        if value is not None:
            os.environ[name] = value


@pytest.fixture(scope="session")
def cold_leads_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Size M: 100,000 customers over four years, no loss ever recorded (every lost lead goes quiet)."""

    def build(root: Path) -> None:
        write_dataset(generate_dataset(100_000, seed=1, start=datetime(2022, 7, 1), unrecorded_losses=1.0), root)

    return once_per_run(tmp_path_factory, "cold-leads-100k", build)


@pytest.fixture
def write_tables(tmp_path: Path) -> Callable[..., Path]:
    """Write tables as CSV into a fresh folder; returns the folder."""

    def write(tables: dict[str, pl.DataFrame], folder: str = "dataset") -> Path:
        root = tmp_path / folder
        root.mkdir(parents=True, exist_ok=True)
        for name, frame in tables.items():
            frame.write_csv(root / f"{name}.csv")
        return root

    return write


@pytest.fixture(scope="session")
def synthetic() -> SyntheticData:
    """A small seeded synthetic dataset (3,000 customers)."""
    return generate_dataset(3_000, seed=7)


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory, synthetic: SyntheticData) -> Path:
    """The small synthetic dataset written as Parquet (once per run: every worker reads the same files)."""
    return once_per_run(tmp_path_factory, "synthetic", lambda root: write_dataset(synthetic, root))


@pytest.fixture
def transitions() -> pl.LazyFrame:
    """The transition rows of the hand-made :func:`handmade.funnel_events`."""
    return build_transitions(funnel_events(), FUNNEL_SPEC, end=FUNNEL_END)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public exports beside the checkout (``../shared/data``)."""
    return SHARED_DATA


@pytest.fixture
def tiny(write_tables: Callable[..., Path]) -> Dataset:
    """The hand-made three-customer dataset (:func:`handmade.tiny_tables`), loaded."""
    return load_dataset(write_tables(tiny_tables()))


@pytest.fixture(scope="session")
def cli() -> Cli:
    """Run ``funnelmodels`` in a fresh process: ``cli("validate", str(folder))``."""
    return run_cli


@pytest.fixture(scope="session")
def trained_cli(cli: Cli, synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`funnelmodels train` run once per test run (both targets), shared by the workers: the model folder and
    what it printed. Tests read the folder; one that changes a model copies it first."""

    def train(out: Path) -> None:
        result = cli("--quiet", "train", str(synthetic_dir), "--out", str(out / "models"))
        assert result.returncode == 0, result.stderr
        (out / "stdout.txt").write_text(result.stdout, encoding="utf-8")

    root = once_per_run(tmp_path_factory, "trained-cli", train)
    return root / "models", (root / "stdout.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def trained(synthetic_dir: Path) -> ConversionTraining:
    """Both conversion engines trained (seed 0) on the small synthetic dataset."""
    return train_conversion(load_dataset(synthetic_dir), seed=0)


@pytest.fixture(scope="session")
def satisfaction(synthetic_dir: Path) -> SatisfactionTraining:
    """Both satisfaction engines trained (seed 0, CSAT) on the small synthetic dataset."""
    return train_satisfaction(load_dataset(synthetic_dir), seed=0)


TEAMS_CUSTOMERS = 4_000
"""Enough deals per owner (about 160) for the planted skill to show; the same size for every seed."""


@pytest.fixture(scope="session")
def teams_data(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., tuple[SyntheticData, Dataset]]:
    """A synthetic dataset with sales teams and activities per (seed, planted effects), generated once and loaded."""
    made: dict[tuple[int, bool], tuple[SyntheticData, Dataset]] = {}

    def get(seed: int, effects: bool = True) -> tuple[SyntheticData, Dataset]:
        if (seed, effects) not in made:
            data = generate_dataset(TEAMS_CUSTOMERS, seed=seed, teams=True, activity_effects=effects)
            # The same seed gives the same files: written once per run, whichever worker asks first.
            root = once_per_run(tmp_path_factory, f"teams-{seed}-{int(effects)}", lambda out: write_dataset(data, out))
            made[(seed, effects)] = (data, load_dataset(root))
        return made[(seed, effects)]

    return get
