"""Where a command may write: folders it owns, one run at a time, swapped in whole.

Every output folder a command writes carries a marker file (:data:`MARKER`, naming the
command). A command writes only into a new folder, an empty one, or one the same command wrote
before; anything else is refused with a message naming the folder and what is in it, so a
mistyped ``--out`` never deletes a dataset or a project. A folder is never an input of the run
that writes it.

One run at a time per output: a lock file beside the folder (``.NAME.lock``, holding the pid, removed
at the end)
makes a second run refuse with :class:`~funnelmodels.errors.BusyError` (exit code
:data:`~funnelmodels.errors.EXIT_BUSY`). Each run stages in its own hidden folder and swaps it in
only when every file is written.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import IO

from funnelmodels.errors import BusyError, OutputError

__all__ = [
    "MARKER",
    "atomic_dir",
    "check_file_output",
    "check_output_folder",
    "output_lock",
]

MARKER = ".funnelmodels-output.json"
"""The file that says which funnelmodels command wrote a folder."""

Recognise = Callable[[Path], bool]
"""Whether a folder without a marker looks like the command's own earlier output (written before markers)."""


def _listing(folder: Path, limit: int = 5) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _written_by(folder: Path) -> str | None:
    try:
        command = json.loads((folder / MARKER).read_text(encoding="utf-8")).get("command")
    except (OSError, ValueError, AttributeError):
        return None
    return command if isinstance(command, str) else None


def check_output_folder(
    target: Path, command: str, *, looks_like: Recognise | None = None, inputs: Iterable[Path] = ()
) -> None:
    """Refuse ``target`` as the output folder of ``command`` unless it is new, empty or the command's own.

    Raises
    ------
    OutputError naming the folder and why: a symbolic link, a file, an input of the run (or a
    folder holding one), or a folder with files another command or a person put there.
    """
    target = Path(target)
    if target.is_symlink():
        raise OutputError(
            f"refusing to write {target}: it is a symbolic link (to {os.readlink(target)}), and funnelmodels "
            "replaces the folder itself; remove the link or write to the real folder."
        )
    resolved = target.resolve()
    for given in inputs:
        source = Path(given).resolve()
        if source == resolved or source.is_relative_to(resolved):
            raise OutputError(
                f"refusing to write {target}: it holds an input of this run ({given}); an output never replaces "
                "its inputs. Choose another folder."
            )
    if not target.exists():
        return
    if not target.is_dir():
        raise OutputError(f"refusing to write the folder {target}: a file of that name exists.")
    if not any(target.iterdir()):
        return
    owner = _written_by(target)
    if owner == command or (owner is None and looks_like is not None and looks_like(target)):
        return
    by = f"funnelmodels {owner}" if owner else "someone else (no funnelmodels marker)"
    raise OutputError(
        f"refusing to replace {target}: it was written by {by}, not by funnelmodels {command}, and holds "
        f"{_listing(target)}. Choose a new folder, or empty this one yourself."
    )


def check_file_output(target: Path, *, inputs: Iterable[Path] = ()) -> None:
    """Refuse a file output that is one of the run's inputs, lies inside an input folder, or is not a file."""
    target = Path(target)
    resolved = target.resolve()
    for given in inputs:
        source = Path(given).resolve()
        if source == resolved or (source.is_dir() and resolved.is_relative_to(source)):
            raise OutputError(
                f"refusing to write {target}: it is an input of this run ({given}); write the output elsewhere."
            )
    if target.exists() and not target.is_file():
        raise OutputError(f"refusing to write {target}: it exists and is not a file.")


class output_lock:
    """Hold the lock of one output (``.NAME.lock`` beside it) for a block; refuse if another run holds it."""

    def __init__(self, target: Path):
        self.target = Path(target)
        self.path = self.target.with_name(f".{self.target.name}.lock")
        self._file: IO[str] | None = None

    def __enter__(self) -> output_lock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The lock file is removed when the run ends: a run that opened it just before must see
        # that the file it locked is no longer the one at the path, and try again.
        for _ in range(10):
            handle = self.path.open("a+", encoding="utf-8")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                pid = handle.read().strip() or "unknown"
                handle.close()
                raise BusyError(
                    f"{self.target} is being written by another funnelmodels run (pid {pid}); wait for it to "
                    "finish, or stop it. Nothing was changed."
                ) from None
            if _same_file(handle, self.path):
                break
            handle.close()
        else:  # pragma: no cover - ten runs ending between open and lock
            raise BusyError(f"{self.target} is being written by other funnelmodels runs; try again.")
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def _same_file(handle: IO[str], path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False


class atomic_dir:
    """Write a folder beside its target and swap it in only when the block succeeds.

    The target is checked first (:func:`check_output_folder`) and locked for the whole block
    (:class:`output_lock`). The run stages in its own hidden folder, marked as ``command``'s
    output; a failed or interrupted write leaves the previous folder untouched and no partial one.
    """

    def __init__(
        self,
        target: Path,
        *,
        command: str,
        looks_like: Recognise | None = None,
        inputs: Iterable[Path] = (),
    ):
        self.target = Path(target)
        self.command = command
        self.looks_like = looks_like
        self.inputs = list(inputs)
        self.staging = self.target.with_name(f".{self.target.name}.partial-{os.getpid()}")
        self._old = self.target.with_name(f".{self.target.name}.old")
        self._lock = output_lock(self.target)

    def __enter__(self) -> Path:
        check_output_folder(self.target, self.command, looks_like=self.looks_like, inputs=self.inputs)
        self._lock.__enter__()
        try:
            # A run killed (SIGKILL, power loss) between the two renames of the swap leaves only the
            # old folder: put it back. Staging folders of killed runs are dropped (the lock says
            # no other run is writing this target).
            if self._old.is_dir() and not self.target.exists():
                self._old.rename(self.target)
            check_output_folder(self.target, self.command, looks_like=self.looks_like, inputs=self.inputs)
            for stale in self.target.parent.glob(f".{self.target.name}.partial*"):
                if stale.is_dir() and not stale.is_symlink():
                    shutil.rmtree(stale, ignore_errors=True)
                else:
                    stale.unlink(missing_ok=True)
            self.staging.mkdir(parents=True)
            marker = {"command": self.command, "pid": os.getpid()}
            (self.staging / MARKER).write_text(json.dumps(marker) + "\n", encoding="utf-8")
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self.staging

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is not None:
                shutil.rmtree(self.staging, ignore_errors=True)
                return
            shutil.rmtree(self._old, ignore_errors=True)
            if self.target.exists():
                self.target.rename(self._old)
            self.staging.rename(self.target)
            shutil.rmtree(self._old, ignore_errors=True)
        finally:
            self._lock.__exit__(None, None, None)
