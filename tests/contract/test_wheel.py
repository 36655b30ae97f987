"""The package as a user installs it: a wheel, in a fresh virtual environment outside the checkout.

An editable install finds the notebooks in the checkout; an installed wheel must carry them as
package data. This builds the wheel, installs it (with the locked dependencies, from uv's cache
when it can) into a new environment in a temporary folder, generates a small dataset and runs
``funnelmodels report --all`` on it from there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from places import ROOT


def _run(command: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)


def _clean_environment(venv: Path) -> dict[str, str]:
    """The environment of a user of the installed wheel: its venv first on PATH, nothing of the checkout.

    Python may cache compiled modules there (PYTHONDONTWRITEBYTECODE is dropped): each report's
    kernel is a new process, and without the cache every one of them compiles LightGBM, statsmodels
    and papermill from source again.
    """
    dropped = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    return env | {"PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", "VIRTUAL_ENV": str(venv)}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the funnelmodels wheel and its locked dependencies."""
    root = tmp_path_factory.mktemp("wheel")
    uv = [sys.executable, "-m", "uv"]
    built = _run(
        [*uv, "build", "--wheel", "--no-build-isolation", "--out-dir", str(root / "dist"), str(ROOT)], cwd=root
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (root / "dist").glob("funnelmodels-*.whl")
    venv = root / "venv"
    made = _run([*uv, "venv", "--quiet", "--python", sys.executable, str(venv)], cwd=root)
    assert made.returncode == 0, made.stderr
    install = [*uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python")]
    packages = ["--constraint", str(ROOT / "requirements.lock"), str(wheel)]
    # uv's cache holds every locked wheel after `make env`; the package index is asked only if it does not.
    done = _run([*install, "--offline", *packages], cwd=root)
    if done.returncode != 0:
        done = _run([*install, *packages], cwd=root)
    assert done.returncode == 0, done.stderr
    return venv


@pytest.mark.slow
def test_the_installed_wheel_ships_every_notebook_and_renders_a_report_outside_the_checkout(
    installed: Path, tmp_path: Path
) -> None:
    env = _clean_environment(installed) | {"FUNNELMODELS_THREADS": "1"}
    where = _run(
        [str(installed / "bin" / "python"), "-c", "import funnelmodels.reports as r; print(r.notebooks_folder())"],
        cwd=tmp_path,
        env=env,
    )
    assert where.returncode == 0, where.stderr
    notebooks = Path(where.stdout.strip())
    assert notebooks.is_relative_to(installed), f"the notebooks come from {notebooks}, not from the installed wheel"
    assert sorted(p.name for p in notebooks.glob("*.ipynb")) == sorted(
        p.name for p in (ROOT / "notebooks").glob("*.ipynb")
    )

    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    shown = _run([str(installed / "bin" / "funnelmodels"), "--version"], cwd=tmp_path, env=env)
    assert shown.stdout.strip() == f"funnelmodels {version}"

    # The installed command generates a small dataset and renders a report from it (every notebook is in the
    # wheel, checked above; every report renders from the checkout in tests/reports and tests/contract).
    made = _run(
        ["funnelmodels", "generate", "--customers", "800", "--seed", "3", "--out", "data"], cwd=tmp_path, env=env
    )
    assert made.returncode == 0, made.stderr
    result = _run(
        ["funnelmodels", "--quiet", "report", "sales_performance", "-p", "data_dir", "data"], cwd=tmp_path, env=env
    )
    assert result.returncode == 0, result.stderr
    for name in ("sales_performance",):
        folder = tmp_path / "reports" / name / "latest"
        assert "<html" in (folder / "report.html").read_text(encoding="utf-8")
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        assert manifest["packages"]["funnelmodels"] == version
        assert manifest["data_dir"] == str((tmp_path / "data").resolve())
