"""The shipped notebooks: the parameters-cell contract, outputs stripped, and nbval on small data."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from funnelmodels.data.synthetic import generate_dataset, write_dataset
from funnelmodels.reports import REPORTS, notebooks_folder

NOTEBOOKS = sorted(notebooks_folder().glob("*.ipynb"))


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
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-lax",
            "-p",
            "no:cacheprovider",
            "-q",
            "--rootdir",
            str(tmp_path),
            *[str(tmp_path / p.name) for p in NOTEBOOKS],
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert re.search(r"\d+ passed", result.stdout)
