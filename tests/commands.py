"""The command line as a scheduled job runs it: a fresh process, an exit code, stdout and stderr."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

Cli = Callable[..., subprocess.CompletedProcess[str]]
"""``cli("train", DATA, "--out", DIR, cwd=None)``: run ``funnelmodels`` with those arguments."""


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m funnelmodels.cli ARGS`` in a new process and wait for it (at most 5 minutes)."""
    command = [sys.executable, "-m", "funnelmodels.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=300, check=False)
