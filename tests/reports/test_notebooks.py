"""The shipped notebooks: the parameters-cell contract, outputs stripped, and nbval on small data."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from places import ROOT

from funnelmodels.data.synthetic import generate_dataset, write_dataset
from funnelmodels.reports import REPORTS, notebooks_folder

TUTORIAL = ROOT / "notebooks" / "tutorial.ipynb"
NOTEBOOKS = sorted(p for p in notebooks_folder().glob("*.ipynb") if p.stem in REPORTS)


PARAMETER_LINE = re.compile(r"^[a-z_][a-z0-9_]*: (str|int|float|bool) = [^#=]+  # [^=]+$")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_contract(path: Path) -> None:
    book = nbformat.read(path, as_version=4)
    tagged = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged parameters"
    for line in tagged[0].source.splitlines():
        assert PARAMETER_LINE.match(line), f"parameter line {line!r} is not `name: type = value  # help`"
    for cell in book.cells:
        if cell.cell_type == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, "outputs stripped"
            tree = ast.parse(cell.source)
            assert not [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)], "no def/class"
    assert {p.stem for p in NOTEBOOKS} == set(REPORTS)
    assert book.metadata["kernelspec"]["name"] == "funnelmodels", "the named kernel `make env` installs"


def test_every_notebook_is_a_report_or_the_tutorial() -> None:
    found = {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert found == {*REPORTS, "tutorial"}
    # The tutorial is committed with its outputs (nbval compares them); git's filter leaves it alone.
    book = nbformat.read(TUTORIAL, as_version=4)
    code = [c for c in book.cells if c.cell_type == "code"]
    assert all(c.outputs for c in code), "every tutorial cell has its committed output"
    assert "notebooks/tutorial.ipynb -filter" in (ROOT / ".gitattributes").read_text()
    if (ROOT / ".git").exists():
        # What git will do on commit: strip the report notebooks, keep the tutorial's outputs (a
        # filter installed into .git/info/attributes would override .gitattributes and strip it).
        said = subprocess.run(
            ["git", "check-attr", "filter", "--", "notebooks/tutorial.ipynb", "notebooks/sales_performance.ipynb"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        ).stdout
        assert "notebooks/tutorial.ipynb: filter: unset" in said, said


def _nbval(folder: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """pytest with nbval on notebooks, in this environment's kernel, from ``folder`` (none of our options)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-current-env",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            "-q",
            "--rootdir",
            str(folder),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        cwd=folder,
        env=env,
    )


@pytest.mark.slow
def test_the_tutorial_gives_the_same_outputs_again(tmp_path: Path) -> None:
    # Strict nbval: every output compared, only the last of three decimals sanitised.
    env = os.environ | {"FUNNELMODELS_THREADS": "1", "FUNNELMODELS_PROGRESS": "0", "OMP_WAIT_POLICY": "PASSIVE"}
    result = _nbval(
        tmp_path,
        "--nbval",
        "--nbval-sanitize-with",
        str(TUTORIAL.with_suffix(".sanitize.cfg")),
        str(TUTORIAL),
        env=env,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    cells = sum(c.cell_type == "code" for c in nbformat.read(TUTORIAL, as_version=4).cells)
    assert re.search(rf"\b{cells} passed", result.stdout), result.stdout[-500:]


@pytest.mark.slow
def test_nbval_runs_every_notebook_on_small_data(tmp_path: Path) -> None:
    import papermill as pm

    # 800 customers: enough for every section (the full-size runs are the report tests').
    small = tmp_path / "data"
    write_dataset(generate_dataset(800, seed=5), small)
    for path in NOTEBOOKS:
        pm.execute_notebook(
            str(path), str(tmp_path / path.name), parameters={"data_dir": str(small)}, prepare_only=True
        )
    result = _nbval(tmp_path, "--nbval-lax", *[str(tmp_path / p.name) for p in NOTEBOOKS])
    assert result.returncode == 0, result.stdout[-3000:]
    assert re.search(r"\d+ passed", result.stdout)
