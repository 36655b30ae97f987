"""The command line as a whole: help, exit codes, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from commands import Cli

from funnelmodels.cli import data as cli_data
from funnelmodels.cli import main


@pytest.mark.parametrize(
    "command", [[], ["generate"], ["validate"], ["funnel"], ["train"], ["score"], ["report"], ["demo"]]
)
def test_help_of_every_command(cli: Cli, command: list[str]) -> None:
    result = cli(*command, "--help")
    assert result.returncode == 0
    assert "usage: funnelmodels" in result.stdout


def test_bad_arguments_exit_2(cli: Cli) -> None:
    result = cli("generate", "--customers", "0", "--out", "x")
    assert result.returncode == 2
    assert "must be 1 or more" in result.stderr


def test_an_unexpected_error_is_one_line_and_exit_70(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("something nobody planned for\nsecond line")

    monkeypatch.setattr(cli_data, "load_dataset", broken)
    monkeypatch.delenv("FUNNELMODELS_DEBUG", raising=False)
    assert main(["--quiet", "validate", str(tmp_path)]) == 70
    err = capsys.readouterr().err
    assert err.startswith("error: unexpected RuntimeError: something nobody planned for. Outputs were not replaced.")
    assert "Traceback" not in err and "second line" not in err
    monkeypatch.setenv("FUNNELMODELS_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(["validate", str(tmp_path)])


def test_out_of_memory_is_one_line_and_exit_71(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def too_big(*args: object, **kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr(cli_data, "load_dataset", too_big)
    assert main(["--quiet", "validate", str(tmp_path)]) == 71
    err = capsys.readouterr().err
    assert err.startswith("error: out of memory: the data did not fit") and "Traceback" not in err
