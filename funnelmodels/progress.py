"""Progress bars on the long steps (loading, features, training, scoring) for a person watching.

A bar shows in a terminal and in a notebook, never where nobody watches: not when stderr is
redirected, not in a report run (the runner sets ``FUNNELMODELS_PROGRESS=0``: its notebook
would keep the bar as output), not under the command line (it logs its own progress lines).
``FUNNELMODELS_PROGRESS=1`` or ``0`` forces it on or off.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tqdm import tqdm

__all__ = [
    "PROGRESS_ENV",
    "Steps",
    "progress_wanted",
    "steps",
]

PROGRESS_ENV = "FUNNELMODELS_PROGRESS"


def progress_wanted() -> bool:
    """Whether someone is watching: a terminal or a notebook, unless ``FUNNELMODELS_PROGRESS`` says otherwise."""
    setting = os.environ.get(PROGRESS_ENV, "").strip()
    if setting in ("0", "1"):
        return setting == "1"
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if type(shell).__name__ == "ZMQInteractiveShell":  # a notebook's kernel
        return True
    stream = sys.stderr
    return bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())


class Steps:
    """Named steps of one bar: each :meth:`step` completes the one before (nothing shown when unwatched)."""

    def __init__(self, bar: Any = None, title: str = ""):
        self._bar, self._title, self._started = bar, title, False

    def step(self, what: str) -> None:
        """Start the next step, named ``what``."""
        if self._bar is None:
            return
        if self._started:
            self._bar.update(1)
        self._started = True
        self._bar.set_description_str(f"{self._title}: {what}", refresh=True)


@contextmanager
def steps(title: str, total: int) -> Iterator[Steps]:
    """A bar of ``total`` named steps: ``with steps("training", 4) as bar: bar.step("features") …``."""
    if not progress_wanted():
        yield Steps()
        return
    bar = tqdm(total=total, desc=title, leave=False, file=sys.stderr, bar_format="{desc} {n}/{total} {bar} {elapsed}")
    try:
        yield Steps(bar, title)
        bar.update(total - bar.n)
    finally:
        bar.close()
