"""A report run stopped half-way (SIGTERM from a scheduler, SIGKILL) loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from funnelmodels.reports import run_report


def _notebooks(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    book = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('marker: str = ""  # a file the notebook touches when it is mid-run')
    params.metadata["tags"] = ["parameters"]
    book.cells = [params, nbformat.v4.new_code_cell(body)]
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(book, folder / "slow.ipynb")
    return folder


def _start(tmp_path: Path, reports: Path, marker: Path) -> subprocess.Popen[str]:
    slow = _notebooks(tmp_path / "slow", "import pathlib, time\npathlib.Path(marker).touch()\ntime.sleep(120)")
    command = [sys.executable, "-m", "funnelmodels.cli", "--quiet", "report", "slow", "-p", "marker", str(marker)]
    command += ["--reports-dir", str(reports), "--notebooks-dir", str(slow)]
    child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert child.poll() is None, child.stderr.read() if child.stderr else ""
        assert time.monotonic() < deadline, "the notebook never started"
        time.sleep(0.2)
    return child


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def good_report(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    reports = tmp_path / "reports"
    fine = _notebooks(tmp_path / "fine", "print('a good report')")
    run = run_report("slow", reports_dir=reports, notebooks_dir=fine)
    return reports, _snapshot(run.folder)


def test_sigterm_mid_run_exits_130_and_keeps_the_previous_report(
    tmp_path: Path, good_report: tuple[Path, dict[str, bytes]]
) -> None:
    reports, before = good_report
    child = _start(tmp_path, reports, tmp_path / "started")

    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)

    assert child.returncode == 130, err
    # The last word is ours and plain (the kernel, shut down under it, may log its own noise).
    assert err.strip().splitlines()[-1] == "interrupted: nothing was replaced; earlier outputs are untouched"
    assert "funnelmodels/" not in err
    assert _snapshot(reports / "slow" / "latest") == before
    # No half-written folder is left beside it; the partial notebook is kept for debugging.
    assert sorted(p.name for p in (reports / "slow").iterdir()) == ["failed", "index.html", "latest"]
    assert (reports / "slow" / "failed" / "latest" / "report.ipynb").is_file()


def test_sigkill_mid_run_keeps_the_previous_report_and_the_next_run_cleans_up(
    tmp_path: Path, good_report: tuple[Path, dict[str, bytes]]
) -> None:
    reports, before = good_report
    child = _start(tmp_path, reports, tmp_path / "started")

    os.killpg(child.pid, signal.SIGKILL)  # the runner and its kernel, with no chance to clean up
    child.wait(timeout=30)

    assert child.returncode == -signal.SIGKILL
    assert _snapshot(reports / "slow" / "latest") == before
    # What a hard kill leaves is hidden (a dot-folder), never in place of the report...
    leftovers = [p.name for p in (reports / "slow").iterdir() if p.name not in ("latest", "index.html")]
    assert all(name.startswith(".") for name in leftovers), leftovers
    # ...and the next run removes it.
    again = run_report("slow", reports_dir=reports, notebooks_dir=_notebooks(tmp_path / "again", "print('new')"))
    assert sorted(p.name for p in (reports / "slow").iterdir()) == ["index.html", "latest"]
    assert "new" in again.html.read_text(encoding="utf-8")


BLOCKED_IN_NATIVE_CODE = """
import sys
import polars as pl
import funnelmodels.cli.data as commands
from funnelmodels.cli import main

def blocked(*args, **kwargs):
    print("reading", file=sys.stderr, flush=True)
    # Opening a named pipe nobody writes to waits inside polars (Rust retries the interrupted
    # call): no Python signal handler runs until it returns, which it never does.
    pl.read_csv(sys.argv[1])
    print("read", file=sys.stderr, flush=True)

commands.load_dataset = blocked
sys.exit(main(["--quiet", "validate", "anything"]))
"""


def test_sigterm_stops_a_run_blocked_inside_a_native_library(tmp_path: Path) -> None:
    pipe = tmp_path / "export.csv"
    os.mkfifo(pipe)
    env = os.environ | {"FUNNELMODELS_STOP_GRACE": "1"}
    child = subprocess.Popen(
        [sys.executable, "-c", BLOCKED_IN_NATIVE_CODE, str(pipe)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert child.stderr is not None
    assert child.stderr.readline().strip() == "reading"
    time.sleep(0.5)  # inside the call
    sent = time.monotonic()
    child.send_signal(signal.SIGTERM)
    code = child.wait(timeout=60)
    waited = time.monotonic() - sent
    rest = child.stderr.read()

    assert code == 130, rest
    assert "still busy 1 s after SIGTERM (inside a native library); stopping now" in rest
    assert "read\n" not in rest
    assert waited < 10, waited
