"""What every command shares: progress lines on stderr, argument types, printing a dataset's summary."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = [
    "DROP_INVALID_HELP",
    "END_HELP",
    "LOG_FORMATS",
    "Progress",
    "end_moment",
    "moment",
    "non_negative_int",
    "positive_int",
    "print_rejected",
    "print_summary",
]


DROP_INVALID_HELP = "set rows that break a rule aside, with the reason, and go on with the rest"


LOG_FORMATS = ("text", "json")


class Progress:
    """Progress lines on stderr, stamped with the time, so stdout stays clean for results.

    ``text``: ``2026-11-27 06:15:02 [   1.2s] message``; ``json``: one object per line with
    ``time``, ``elapsed_s``, ``level`` and ``message``, for a scheduler's log collector. Errors
    are written whatever ``quiet`` says.
    """

    def __init__(self, quiet: bool = False, log_format: str = "text"):
        self.quiet = quiet
        self.log_format = log_format
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        """Print a progress ``message`` (unless quiet)."""
        if not self.quiet:
            self._write("info", message)

    def report(self, level: str, message: str) -> None:
        """Print the run's outcome line (``error``, ``busy``, ``interrupted``), quiet or not."""
        self._write(level, message)

    def _write(self, level: str, message: str) -> None:
        now = datetime.now().astimezone()
        elapsed = time.perf_counter() - self.start
        if self.log_format == "json":
            line = json.dumps(
                {"time": now.isoformat(timespec="seconds"), "elapsed_s": round(elapsed, 1), "level": level}
                | {"message": message},
                ensure_ascii=False,
            )
        elif level == "info":
            line = f"{now:%Y-%m-%d %H:%M:%S} [{elapsed:6.1f}s] {message}"
        else:
            line = f"{level}: {message}"
        print(line, file=sys.stderr, flush=True)


END_HELP = (
    "the data's end: rows dated after it are left out (a date keeps that whole day); "
    "default [funnel] data_end in funnel.toml"
)


def end_moment(text: str) -> datetime:
    """An argument type for ``--end``: a date means the end of that day."""
    value = moment(text)
    return value + timedelta(days=1) if len(text.strip()) == 10 else value


def _whole_number(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, received {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be {least} or more, received {value}")
    return value


def positive_int(text: str) -> int:
    """An argument type: a whole number of 1 or more."""
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    """An argument type: a whole number of 0 or more."""
    return _whole_number(text, 0)


def moment(text: str) -> datetime:
    """An argument type: a date or date and time in ISO form (``2026-07-01``, ``2026-07-01T09:00``)."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date like 2026-07-01 or 2026-07-01T09:00, received {text!r}"
        ) from None


def print_rejected(dataset: Any, written: Sequence[Path]) -> None:
    """Say which rows were set aside, and where they were written."""
    for line in dataset.rejected_summary():
        print(f"  set aside: {line}")
    if written:
        print(f"  rows set aside, with the reason: {', '.join(str(p) for p in written)}")


def print_summary(summary: dict[str, Any], data: Path) -> None:
    """Print a valid dataset's summary: rows and dates per table, stages, notes and warnings."""
    print(f"{data}: valid")
    for name, info in summary["tables"].items():
        dated = info["first"] != "None"
        window = f"  {info['first'][:10]} … {info['last'][:10]}" if dated else "  (no dates)"
        print(f"  {name:<13} {info['rows']:>11,} rows{window}")
    if summary["missing"]:
        print(f"  not present:  {', '.join(summary['missing'])}")
    for note in summary.get("notes", []):
        print(f"  note: {note}")
    if summary["stages"]:
        print("  stages:       " + ", ".join(f"{k} {v:,}" for k, v in summary["stages"].items()))
    for warning in summary.get("warnings", []):
        print(f"  warning: {warning}")
