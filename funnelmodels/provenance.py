"""What made a result: package versions, the Python, the git commit."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

__all__ = ["environment", "git_commit", "package_versions", "version"]

MODEL_PACKAGES = ("funnelmodels", "polars", "numpy", "lightgbm", "statsmodels", "scikit-learn")
"""The packages that shape a model's numbers."""
REPORT_PACKAGES = ("papermill", "nbconvert", "matplotlib")


def version() -> str:
    """Funnelmodels' own version, from the installed package's metadata."""
    try:
        return metadata.version("funnelmodels")
    except metadata.PackageNotFoundError:
        return "not installed"


def package_versions(names: tuple[str, ...] = MODEL_PACKAGES) -> dict[str, str]:
    """Versions of the named packages (``not installed`` for a missing one)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit() -> str | None:
    """The commit of the checkout the package runs from, or None outside a git checkout."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
            check=False,
        )
    except OSError:
        return None
    return done.stdout.strip() or None


def environment() -> dict[str, str]:
    """Everything a report's footer and manifest record: package versions, Python, git commit."""
    return package_versions(MODEL_PACKAGES + REPORT_PACKAGES) | {
        "python": platform.python_version(),
        "git commit": git_commit() or "unknown",
    }
