"""The exception tree of funnelmodels.

Every error a user can cause derives from :class:`FunnelModelsError`, so a
scheduled run can catch one class, and the CLI turns it into a message and a
non-zero exit instead of a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "EXIT_BUSY",
    "EXIT_DRIFT",
    "EXIT_NOT_READY",
    "EXIT_NO_MEMORY",
    "EXIT_UNEXPECTED",
    "BusyError",
    "ConfigError",
    "DataValidationError",
    "FunnelModelsError",
    "ModelError",
    "OutputError",
    "Problem",
    "ReportError",
    "clip",
    "closest",
    "did_you_mean",
]


class FunnelModelsError(Exception):
    """Base class of every error funnelmodels raises on purpose."""


class ConfigError(FunnelModelsError):
    """A funnel.toml, a FunnelSpec or a parameter is wrong."""


class ModelError(FunnelModelsError):
    """A model cannot be fitted, loaded or applied."""


class OutputError(FunnelModelsError):
    """An output would replace something its command did not write (a dataset, a project, an input)."""


EXIT_BUSY = 75
"""The command line's exit code when another run is writing the same output (EX_TEMPFAIL: try again later)."""


EXIT_NO_MEMORY = 71
"""The command line's exit code when the data does not fit in memory (EX_OSERR)."""

EXIT_NOT_READY = 3
"""``funnelmodels train --gate``: the models were written, but the model card says LightGBM is not ready to publish
(too little training data, or it does not beat the stage's own conversion rate beyond its interval)."""

EXIT_DRIFT = 4
"""``funnelmodels score --check-drift``: the scores were written, but a feature or the score has shifted since the
model was tested (PSI above 0.2 and not chance, :mod:`funnelmodels.drift`)."""

EXIT_UNEXPECTED = 70
"""The command line's exit code for an error funnelmodels does not handle (EX_SOFTWARE): one line, no traceback."""


class BusyError(OutputError):
    """Another run holds the lock of the same output; nothing was changed."""


class ReportError(FunnelModelsError):
    """A report run failed; keeps the failed notebook path and cell."""

    def __init__(self, message: str, *, notebook: str | None = None, cell: int | None = None):
        super().__init__(message)
        self.notebook = notebook
        self.cell = cell


@dataclass(frozen=True)
class Problem:
    """One broken rule in one table column.

    ``examples`` holds up to five offending rows, each a mapping of column
    name to value (the row's id first), so a user can find them in the file.
    """

    table: str
    column: str
    rule: str
    n_rows: int = 0
    examples: Sequence[Mapping[str, object]] = field(default_factory=tuple)

    def __str__(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        text = f"{where}: {self.rule}"
        if self.n_rows:
            text += f" ({self.n_rows:,} row{'s' if self.n_rows != 1 else ''}"
            if self.examples:
                shown = "; ".join(_format_row(row) for row in self.examples)
                text += f", e.g. {shown}"
            text += ")"
        return text


def _format_row(row: Mapping[str, object]) -> str:
    return ", ".join(f"{key}={clip(value)}" for key, value in row.items())


def clip(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters: a message quotes a sample of the data, never all of it."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class DataValidationError(FunnelModelsError):
    """The input data breaks the data contract; lists every problem found."""

    def __init__(self, problems: Sequence[Problem], *, source: str = ""):
        self.problems = tuple(problems)
        self.source = source
        super().__init__(self._message())

    def _message(self) -> str:
        n = len(self.problems)
        head = f"data validation failed: {n} problem{'s' if n != 1 else ''}"
        if self.source:
            head += f" in {self.source}"
        return head + "\n" + "\n".join(f"  - {p}" for p in self.problems)


def closest(name: str, options: Iterable[str]) -> str | None:
    """The option most like ``name`` (a likely typo of it), or None."""
    close = difflib.get_close_matches(str(name), [o for o in options if not o.startswith("_")], n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the option most like ``name``, or an empty string."""
    match = closest(name, options)
    return f" (did you mean {match!r}?)" if match else ""
