"""Progress bars for a person watching, never in unattended runs."""

from __future__ import annotations

import io
import sys

import pytest

from funnelmodels.progress import PROGRESS_ENV, progress_wanted, steps


def test_no_bar_where_nobody_watches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # redirected: a log file, a pipe
    assert not progress_wanted()
    monkeypatch.setenv(PROGRESS_ENV, "1")
    assert progress_wanted()
    monkeypatch.setenv(PROGRESS_ENV, "0")
    assert not progress_wanted()


def test_a_bar_names_each_step_and_ends_complete(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setenv(PROGRESS_ENV, "1")
    with steps("training", 3) as bar:
        bar.step("features")
        bar.step("fitting lightgbm")
        bar.step("evaluating")
    shown = stream.getvalue()
    assert "training: features 0/3" in shown and "training: fitting lightgbm 1/3" in shown
    assert "training: evaluating 2/3" in shown
    assert shown.endswith("\r") and not shown.rsplit("\r", 2)[-2].strip(), "the bar clears its line when done"
    monkeypatch.setenv(PROGRESS_ENV, "0")
    quiet = io.StringIO()
    monkeypatch.setattr(sys, "stderr", quiet)
    with steps("training", 2) as bar:
        bar.step("features")
    assert quiet.getvalue() == ""
