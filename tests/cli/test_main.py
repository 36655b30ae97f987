"""The command line as a whole: help, exit codes, no traceback."""

from __future__ import annotations

import pytest
from commands import Cli


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
