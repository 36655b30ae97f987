"""An output never destroys what it did not write, and two runs of the same output never mix.

Each case is a mistake a user or a scheduler makes: an ``--out`` that names the dataset, a
project or an input file; a period that names the folder of failed runs; a ``latest`` that is a
symbolic link; two runs at once. The refused ones exit non-zero, name the folder and change nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import polars as pl
import pytest
from commands import Cli
from handmade import tiny_tables

from funnelmodels.data.synthetic import generate_dataset, write_dataset
from funnelmodels.errors import BusyError, ConfigError, OutputError
from funnelmodels.models.conversion import StageConversionModel
from funnelmodels.outputs import MARKER, atomic_dir, output_lock
from funnelmodels.reports.runner import run_report


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _tiny_dataset(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name, frame in tiny_tables().items():
        frame.write_csv(folder / f"{name}.csv")
    return folder


def test_generate_refuses_a_folder_it_did_not_write(cli: Cli, tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "README.md").write_text("my project")
    before = _snapshot(project)

    result = cli("generate", "--customers", "200", "--out", str(project))

    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"refusing to replace {project}" in result.stderr
    assert "README.md, src/" in result.stderr
    assert _snapshot(project) == before


def test_generate_replaces_its_own_folder_and_marks_it(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "gen"
    assert cli("--quiet", "generate", "--customers", "200", "--seed", "1", "--out", str(out)).returncode == 0
    assert json.loads((out / MARKER).read_text())["command"] == "generate"
    assert cli("--quiet", "generate", "--customers", "200", "--seed", "2", "--out", str(out)).returncode == 0
    # A dataset generated before folders were marked (no marker, ground_truth/ beside the tables).
    (out / MARKER).unlink()
    assert cli("--quiet", "generate", "--customers", "200", "--seed", "3", "--out", str(out)).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen"], "no staging folder or lock file left behind"


@pytest.mark.parametrize("where", ["the dataset", "its parent", "a table file"])
def test_train_never_writes_over_its_input(cli: Cli, tmp_path: Path, where: str) -> None:
    data = _tiny_dataset(tmp_path / "project" / "data")
    out = {"the dataset": data, "its parent": data.parent, "a table file": data / "customers.csv"}[where]
    before = _snapshot(tmp_path)

    result = cli("train", str(data), "--out", str(out))

    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "refusing to" in result.stderr and str(out) in result.stderr
    assert _snapshot(tmp_path) == before


def test_score_never_writes_over_an_input(
    cli: Cli, synthetic_dir: Path, trained_cli: tuple[Path, str], tmp_path: Path
) -> None:
    models = trained_cli[0]
    for out in (synthetic_dir / "customers.parquet", models / "conversion" / "lightgbm" / "model.csv"):
        before = _snapshot(synthetic_dir) | _snapshot(models)
        result = cli("score", str(synthetic_dir), "--model", str(models), "--as-of", "2026-05-01", "--out", str(out))
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert f"refusing to write {out}: it is an input of this run" in result.stderr
        assert _snapshot(synthetic_dir) | _snapshot(models) == before


def test_atomic_dir_refuses_symbolic_links_and_files(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "report.html").write_text("kept")
    link = tmp_path / "latest"
    link.symlink_to(real)
    with (
        pytest.raises(OutputError, match=r"latest: it is a symbolic link \(to .*real\)"),
        atomic_dir(link, command="report"),
    ):
        pass
    assert link.is_symlink() and (real / "report.html").read_text() == "kept"

    afile = tmp_path / "models"
    afile.write_text("not a folder")
    with pytest.raises(OutputError, match="a file of that name exists"), atomic_dir(afile, command="train"):
        pass
    assert afile.read_text() == "not a folder"


def test_a_folder_written_by_another_command_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with atomic_dir(out, command="generate") as staging:
        (staging / "customers.parquet").write_text("data")
    with (
        pytest.raises(OutputError, match="written by funnelmodels generate, not by funnelmodels train"),
        atomic_dir(out, command="train"),
    ):
        pass
    assert (out / "customers.parquet").read_text() == "data"


def _sleepy_notebooks(tmp_path: Path) -> Path:
    """A report that takes a few seconds and writes its ``token`` parameter into a table."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    book = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('token: str = ""\nperiod: str = ""\noutput_dir: str = ""')
    params.metadata["tags"] = ["parameters"]
    work = nbformat.v4.new_code_cell(
        "import time, pathlib\ntime.sleep(4)\n"
        "t = pathlib.Path(output_dir) / 'tables'\nt.mkdir()\n(t / 'token.csv').write_text(token)"
    )
    book.cells = [params, work]
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(book, folder / "sleepy.ipynb")
    return folder


def test_report_period_cannot_name_the_folder_of_failed_runs(tmp_path: Path) -> None:
    notebooks = _sleepy_notebooks(tmp_path)
    with pytest.raises(ConfigError, match="keeps failed runs"):
        run_report("sleepy", {"period": "failed"}, reports_dir=tmp_path / "r", notebooks_dir=notebooks)


@pytest.mark.slow
def test_two_report_runs_at_once_publish_one_whole_run(tmp_path: Path) -> None:
    notebooks = _sleepy_notebooks(tmp_path)
    reports = tmp_path / "reports"
    command = [sys.executable, "-m", "funnelmodels.cli", "--quiet", "report", "sleepy"]
    options = ["--reports-dir", str(reports), "--notebooks-dir", str(notebooks)]
    runs = [
        subprocess.Popen([*command, "-p", "token", token, *options], stderr=subprocess.PIPE, text=True)
        for token in ("first", "second")
    ]
    results = [(run.wait(timeout=120), run.stderr.read() if run.stderr else "") for run in runs]

    codes = sorted(code for code, _ in results)
    assert codes == [0, 75], results
    busy = next(err for code, err in results if code == 75)
    assert "is being written by another funnelmodels run (pid" in busy and "Traceback" not in busy
    folder = reports / "sleepy" / "latest"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert (folder / "tables" / "token.csv").read_text() == manifest["parameters"]["token"]
    assert sorted(p.name for p in (reports / "sleepy").iterdir()) == ["index.html", "latest"], "no staging or lock"


def test_train_refuses_while_another_run_writes_the_same_folder(cli: Cli, tmp_path: Path) -> None:
    data = _tiny_dataset(tmp_path / "data")
    out = tmp_path / "models"
    with output_lock(out):
        result = cli("train", str(data), "--out", str(out))
        assert (out.parent / f".{out.name}.lock").read_text() == str(os.getpid())
    assert result.returncode == 75, result.stderr
    assert f"busy: {out} is being written by another funnelmodels run (pid {os.getpid()})" in result.stderr
    assert not out.exists()
    with output_lock(out), pytest.raises(BusyError), output_lock(out):
        pass


def test_score_writes_scores_beside_the_data_but_not_over_it(
    cli: Cli, synthetic_dir: Path, trained_cli: tuple[Path, str], tmp_path: Path
) -> None:
    out = tmp_path / "scores.csv"
    result = cli(
        "score", str(synthetic_dir), "--model", str(trained_cli[0]), "--as-of", "2026-05-01", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert pl.read_csv(out).height > 0


@pytest.mark.slow
def test_two_train_runs_at_once_publish_one_whole_model_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_dataset(generate_dataset(800, seed=4), data)
    out = tmp_path / "models"
    command = [sys.executable, "-m", "funnelmodels.cli", "--quiet", "train", str(data), "--out", str(out)]
    runs = [
        subprocess.Popen(
            [*command, "--seed", seed, "--target", "conversion", "--forecast-periods", "0"],
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in ("1", "2")
    ]
    results = [(run.wait(timeout=300), run.stderr.read() if run.stderr else "") for run in runs]

    assert sorted(code for code, _ in results) == [0, 75], results
    metrics = json.loads((out / "metrics.json").read_text())
    winner = next(i for i, (code, _) in enumerate(results) if code == 0)
    assert metrics["training"]["seed"] == winner + 1  # the folder is the finished run's, whole
    for engine in ("lightgbm", "logit"):
        assert StageConversionModel.load(out / "conversion" / engine).metadata["seed"] == winner + 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "models"], "no staging or lock left"
