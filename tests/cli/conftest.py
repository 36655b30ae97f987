"""Fixtures of the command-line tests: the runner and one trained model folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from commands import Cli, run_cli


@pytest.fixture(scope="session")
def cli() -> Cli:
    """Run ``funnelmodels`` in a fresh process: ``cli("validate", str(folder))``."""
    return run_cli


@pytest.fixture(scope="session")
def trained_cli(cli: Cli, synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`funnelmodels train` run once (both targets): the model folder and what it printed."""
    models = tmp_path_factory.mktemp("cli") / "models"
    result = cli("--quiet", "train", str(synthetic_dir), "--out", str(models))
    assert result.returncode == 0, result.stderr
    return models, result.stdout
