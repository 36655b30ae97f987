"""Activity types: an export's own words mapped to the documented set.

CRMs name their activities freely ("Phone call", "Outbound Call", "E-mail", "Site visit",
"Product demo", "Quote sent"). The models and reports count them by a small documented set,
:data:`~funnelmodels.data.schema.ACTIVITY_TYPES`: ``call, email, meeting, demo, proposal_sent,
other``. A word is matched after folding case, spaces, hyphens and underscores, first exactly
(:data:`SYNONYMS`), then by a key word it contains (:data:`KEY_WORDS`, in order: "demo call" is
a demo); anything else is ``other``, and the loader says which words went there. The export's
word is kept as ``type_in_file``.
"""

from __future__ import annotations

import polars as pl

from funnelmodels.data import schema as s

__all__ = ["KEY_WORDS", "SYNONYMS", "map_activity_types"]

SYNONYMS: dict[str, str] = {
    **{t: t for t in s.ACTIVITY_TYPES},
    "phone": "call",
    "phone call": "call",
    "cold call": "call",
    "voicemail": "call",
    "e mail": "email",
    "mail": "email",
    "inmail": "email",
    "visit": "meeting",
    "site visit": "meeting",
    "video call": "meeting",
    "presentation": "demo",
    "proposal": "proposal_sent",
    "proposal sent": "proposal_sent",
    "quote": "proposal_sent",
    "quote sent": "proposal_sent",
    "offer": "proposal_sent",
}
"""Whole words (folded) and the type they mean."""

KEY_WORDS: tuple[tuple[str, str], ...] = (
    ("demo", "demo"),
    ("proposal", "proposal_sent"),
    ("quote", "proposal_sent"),
    ("meeting", "meeting"),
    ("visit", "meeting"),
    ("video", "meeting"),
    ("mail", "email"),
    ("call", "call"),
    ("phone", "call"),
)
"""Words inside a longer name and the type they mean, tried in this order."""

TYPE_IN_FILE = f"{s.TYPE}{s.IN_FILE}"


def _folded(column: pl.Expr) -> pl.Expr:
    return column.str.to_lowercase().str.replace_all(r"[\s_\-/]+", " ").str.strip_chars()


def _kind(word: str) -> str:
    """The documented type of one folded word: a whole-word synonym, else the first key word in it, else other."""
    if word in SYNONYMS:
        return SYNONYMS[word]
    return next((kind for key, kind in KEY_WORDS if key in word), "other")


def map_activity_types(frame: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """``activities`` with ``type`` mapped to the documented set (the export's word kept as ``type_in_file``).

    Returns
    -------
    The table and notes: which words were mapped to ``other`` (none when every word is known).
    """
    if s.TYPE not in frame.columns:
        return frame, []
    # An export has a handful of distinct words: each is looked up once.
    words = frame.select(_folded(pl.col(s.TYPE).cast(pl.String)).unique()).to_series().to_list()
    mapped = _folded(pl.col(s.TYPE).cast(pl.String)).replace_strict(
        {w: _kind(w) for w in words if w is not None}, default="other", return_dtype=pl.String
    )
    # An empty type stays empty, for validation to report.
    kind = pl.when(pl.col(s.TYPE).is_null()).then(pl.lit(None, dtype=pl.String)).otherwise(mapped)
    out = frame.with_columns(pl.col(s.TYPE).alias(TYPE_IN_FILE), kind.alias(s.TYPE))
    unknown = out.filter((pl.col(s.TYPE) == "other") & (_folded(pl.col(TYPE_IN_FILE)) != "other"))
    if unknown.height == 0:
        return out, []
    counts = unknown[TYPE_IN_FILE].value_counts(sort=True)
    shown = ", ".join(f"{word!r} ({n:,})" for word, n in counts.head(5).iter_rows())
    more = f" and {counts.height - 5} more" if counts.height > 5 else ""
    return out, [
        f"activities.type: {unknown.height:,} rows with a word that is not one of "
        f"{', '.join(s.ACTIVITY_TYPES[:-1])} counted as other: {shown}{more}."
    ]
