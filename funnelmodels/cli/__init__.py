"""The ``funnelmodels`` command line: one command per job, an exit code, files on disk.

Exit codes: 0 success; 1 the data, configuration or a run failed (the message
says what and where); 2 the command line itself is wrong; 130 interrupted. Each
command group lives in its own module (data, funnel, models, reports) and adds
its subcommands here. Heavy libraries (LightGBM, statsmodels, papermill,
matplotlib) load only when a command uses them, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from funnelmodels.cli import data, distributed, funnel, models, reports
from funnelmodels.cli.common import LOG_FORMATS, Progress
from funnelmodels.errors import EXIT_BUSY, EXIT_NO_MEMORY, EXIT_UNEXPECTED, BusyError, FunnelModelsError
from funnelmodels.progress import PROGRESS_ENV
from funnelmodels.provenance import version
from funnelmodels.settings import stop_grace_seconds

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per job, in the order a new user meets them."""
    parser = argparse.ArgumentParser(
        prog="funnelmodels",
        description="Sales-funnel models and reports: stage conversion, satisfaction, sales performance.",
    )
    _common_options(parser, default=False)
    parser.add_argument("--version", action="version", version=f"funnelmodels {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (data, distributed, funnel, models, reports):
        group.add_commands(commands)
    # The same options after the command too (`funnelmodels report --all --quiet`); absent there,
    # they leave what was given before the command.
    for command in commands.choices.values():
        _common_options(command, default=argparse.SUPPRESS)
    return parser


def _common_options(parser: argparse.ArgumentParser, *, default: Any) -> None:
    parser.add_argument(
        "--quiet", action="store_true", default=default, help="no progress lines on stderr (errors still)"
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        default=default,
        help="read and check every input file again instead of the validated-dataset cache (FUNNELMODELS_CACHE=off)",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text" if default is False else default,
        help="progress and error lines on stderr: text (time-stamped) or json (one object per line)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    progress = Progress(quiet=args.quiet, log_format=args.log_format)
    cache_setting = os.environ.get("FUNNELMODELS_CACHE")
    if args.no_cache:  # the report kernels inherit it
        os.environ["FUNNELMODELS_CACHE"] = "off"
    # The command line logs its own progress lines; no bars beside them (FUNNELMODELS_PROGRESS=1 asks for them).
    os.environ.setdefault(PROGRESS_ENV, "0")
    run: Callable[[argparse.Namespace, Progress], int] = args.run
    # A scheduler stops a job with SIGTERM: unwind like Ctrl-C, so every atomic write is rolled
    # back (the previous output stays) and the exit code says the run did not finish.
    previous = (
        signal.signal(signal.SIGTERM, _interrupt) if threading.current_thread() is threading.main_thread() else None
    )
    unwatch = _watch_for_stop(progress) if previous is not None else None
    try:
        with _warnings_said(progress):
            return run(args, progress)
    except BusyError as exc:
        progress.report("busy", str(exc))
        return EXIT_BUSY
    except FunnelModelsError as exc:
        progress.report("error", str(exc))
        return 1
    except OSError as exc:
        progress.report("error", f"{exc.strerror or exc} ({exc.filename or 'no file name'})")
        return 1
    except KeyboardInterrupt:
        progress.report("interrupted", "nothing was replaced; earlier outputs are untouched")
        return 130
    except MemoryError:
        progress.report(
            "error",
            "out of memory: the data did not fit in this machine's memory (or the job's limit). Nothing was "
            "replaced. Free memory, raise the limit, or work on part of the data (data_end, a smaller export).",
        )
        return EXIT_NO_MEMORY
    except Exception as exc:  # a case funnelmodels does not handle: one line, not a traceback
        if os.environ.get("FUNNELMODELS_DEBUG"):
            raise
        what = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        progress.report(
            "error",
            f"unexpected {type(exc).__name__}{': ' + what if what else ''}. Outputs were not replaced. "
            "This is a case funnelmodels does not handle yet: rerun with FUNNELMODELS_DEBUG=1 for the traceback "
            "and report it.",
        )
        return EXIT_UNEXPECTED
    finally:
        if args.no_cache:
            os.environ.pop("FUNNELMODELS_CACHE", None)
            if cache_setting is not None:
                os.environ["FUNNELMODELS_CACHE"] = cache_setting
        if unwatch is not None:
            unwatch()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _warnings_said(progress: Progress) -> Iterator[None]:
    """The package's warnings (leakage, unseen categories, …) as ``warning: …`` lines, once each.

    Python would print them with a file name and line number, which reads like a crash.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            yield
        finally:
            for message in dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, UserWarning)):
                progress.report("warning", message)


def _watch_for_stop(progress: Progress) -> Callable[[], None]:
    """Stop hard if a SIGTERM has not ended the run within the grace time.

    Python runs a signal handler only between two steps of Python code: a main thread busy in a
    native library (a polars query, a LightGBM fit, a deadlock under a tight memory limit)
    would never see the scheduler's SIGTERM. The C-level handler still writes the signal to a
    wake-up pipe; a watcher thread reads it and, if the run has not unwound by then, exits with
    130. Outputs are staged, so a hard stop replaces nothing; the next run clears the staging.
    Returns the function that removes the watcher.
    """
    read, write = os.pipe()
    os.set_blocking(write, False)
    previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)

    def watch() -> None:
        with os.fdopen(read, "rb", buffering=0) as pipe:
            while True:
                try:
                    got = pipe.read(1)
                except OSError:
                    return
                if not got:
                    return
                if got[0] == signal.SIGTERM:
                    break
        grace = stop_grace_seconds()
        time.sleep(grace)
        progress.report(
            "interrupted",
            f"still busy {grace:g} s after SIGTERM (inside a native library); stopping now. Nothing was replaced; "
            "earlier outputs are untouched",
        )
        os._exit(130)

    threading.Thread(target=watch, name="funnelmodels-stop-watch", daemon=True).start()

    def unwatch() -> None:
        signal.set_wakeup_fd(previous)
        os.close(write)

    return unwatch


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
