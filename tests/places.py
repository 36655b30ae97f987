"""Where things are, for tests in any folder: the checkout's root and the shared public data beside it."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
"""The checkout (README.md, funnelmodels/, notebooks/, benchmarks/)."""
SHARED_DATA = ROOT.parent / "shared" / "data"
"""The real public exports beside the checkout (bank marketing, CDNOW, the CRM pipeline)."""
