"""The validated-dataset cache: a dataset read and checked once, kept as typed Parquet.

Reading CSV exports and checking every rule on millions of rows takes seconds; a report, a
scoring run or a notebook on unchanged data does not need it again. After a successful load,
the validated tables (and the rows set aside, and the loading notes) are written under the
cache folder (:func:`funnelmodels.settings.dataset_cache_dir`), keyed by:

- the bytes of every input file and funnel.toml (a changed file is a new key),
- every setting of the dataset (funnel, columns, data end, ``drop_invalid``),
- the source of the code that reads and checks data (a new version of the rules is a new key).

A load with the same key reads the Parquet files instead. A failed load is never cached. An
entry is written to a temporary folder and renamed into place, so a reader never sees half
of one and two runs at once do not mix theirs; an entry that cannot be read is ignored (and
the data read again). The most recently used entries are kept
(:func:`funnelmodels.settings.dataset_cache_keep`, 4 by default).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import polars as pl

from funnelmodels.settings import dataset_cache_keep

__all__ = ["CachedLoad", "cache_key", "read_cached", "write_cached"]

FORMAT: Final = 2
_CODE: Final = ("config.py", "data/schema.py", "data/files.py", "data/activities.py", "data/validate.py", "data/io.py")
"""The package files whose code decides what a validated dataset holds."""


@dataclass(frozen=True)
class CachedLoad:
    """What a successful load produced: the tables, the rows set aside, the notes, the input fingerprint."""

    tables: Mapping[str, pl.DataFrame]
    rejected: Mapping[str, pl.DataFrame]
    notes: tuple[str, ...]
    fingerprint: str


def cache_key(fingerprint: str, settings: str) -> str:
    """The key of a load: the inputs' fingerprint, the settings (a repr) and the data code's source."""
    digest = hashlib.sha256(f"{FORMAT}\n{fingerprint}\n{settings}\n".encode())
    package = Path(__file__).resolve().parent.parent
    for name in _CODE:
        digest.update((package / name).read_bytes())
    return digest.hexdigest()[:32]


def read_cached(folder: Path, key: str) -> CachedLoad | None:
    """The cached load of ``key``, or None (absent, or unreadable: then it is removed)."""
    entry = folder / key
    meta_path = entry / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            return None
        # One chunk per column and the columns known to be sorted marked so, as after a full load: polars
        # takes other paths otherwise (a group-by over a sorted column adds floats in another order), and a
        # report must be the same to the last digit whichever way its data was read.
        tables = {
            name: _with_order(pl.read_parquet(entry / "tables" / f"{name}.parquet").rechunk(), meta["sorted"][name])
            for name in meta["tables"]
        }
        rejected = {
            name: pl.read_parquet(entry / "rejected" / f"{name}.parquet").rechunk() for name in meta["rejected"]
        }
        load = CachedLoad(tables, rejected, tuple(meta["notes"]), str(meta["fingerprint"]))
    except Exception:
        shutil.rmtree(entry, ignore_errors=True)
        return None
    os.utime(meta_path)  # recently used: kept longest
    return load


def write_cached(folder: Path, key: str, load: CachedLoad) -> None:
    """Keep ``load`` under ``key``; a cache that cannot be written is skipped (it only saves time)."""
    entry = folder / key
    if entry.exists():
        return
    tmp = folder / f".{key}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    try:
        for kind, frames in (("tables", load.tables), ("rejected", load.rejected)):
            (tmp / kind).mkdir(parents=True, exist_ok=True)
            for name, frame in frames.items():
                frame.write_parquet(tmp / kind / f"{name}.parquet", statistics=False)
        meta = {
            "format": FORMAT,
            "tables": list(load.tables),
            "rejected": list(load.rejected),
            "notes": list(load.notes),
            "fingerprint": load.fingerprint,
            "sorted": {name: _order_of(frame) for name, frame in load.tables.items()},
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        tmp.rename(entry)  # another run may have put the same entry first: then keep that one
    except OSError:
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with contextlib.suppress(OSError):  # a folder that cannot be listed (never made): nothing to keep tidy
        _evict(folder)


def _order_of(frame: pl.DataFrame) -> dict[str, str]:
    """The columns polars knows to be sorted: ``{column: "asc" | "desc"}``."""
    out = {}
    for column in frame.columns:
        flags = frame[column].flags
        if flags.get("SORTED_ASC"):
            out[column] = "asc"
        elif flags.get("SORTED_DESC"):
            out[column] = "desc"
    return out


def _with_order(frame: pl.DataFrame, order: dict[str, str]) -> pl.DataFrame:
    """``frame`` with the sorted columns of :func:`_order_of` marked sorted again (Parquet does not keep it)."""
    if not order:
        return frame
    return frame.with_columns(pl.col(c).set_sorted(descending=way == "desc") for c, way in order.items())


def _evict(folder: Path) -> None:
    """Remove all but the most recently used entries, and leftovers of crashed writes (an hour old)."""
    entries = []
    for path in folder.iterdir():
        meta = path / "meta.json"
        if path.name.startswith(".") and path.name.endswith(".tmp"):
            try:
                if time.time() - path.stat().st_mtime > 3600:
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                pass
        elif meta.is_file():
            try:
                entries.append((meta.stat().st_mtime, path))
            except OSError:
                continue
    for _, path in sorted(entries, reverse=True)[dataset_cache_keep() :]:
        shutil.rmtree(path, ignore_errors=True)
