"""Debian's chromium, headless: how the tests look at rendered reports like a reader would."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "Debian's chromium is needed for the browser check: `make test` installs it (apt-get install chromium)"
    return path


def browser(url: str, *args: str, user_dir: Path) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={user_dir}",
        "--enable-logging=stderr",
        "--v=0",
    ]
    return subprocess.run([chromium(), *flags, *args, url], capture_output=True, text=True, timeout=120, check=False)
