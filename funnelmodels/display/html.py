"""HTML pieces of a report: KPI tiles, tables and the environment footer, every user-supplied string escaped.

A segment named ``<script>`` prints as text.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import polars as pl

from funnelmodels.display.format import count, money, percent
from funnelmodels.provenance import environment

__all__ = [
    "environment_summary",
    "html_table",
    "kpi_tiles",
]


_KPI_FORMAT: dict[str, tuple[str, Callable[[Any], str]]] = {
    "net_revenue": ("Net revenue", money),
    "orders": ("Orders", count),
    "average_sale": ("Average sale", lambda v: money(v) if v is None or abs(v) >= 1e4 else f"${v:,.2f}"),
    "new_accounts": ("New accounts", count),
    "returning_customers": ("Returning customers", count),
    "active_customers": ("Active customers", count),
    "won": ("Deals won", count),
    "lost": ("Deals lost", count),
    "win_rate": ("Win rate", percent),
}


_TILE_CSS = """<style>
.fm-tiles{display:flex;flex-wrap:wrap;gap:12px;margin:8px 0 16px;font-family:system-ui,sans-serif}
.fm-tile{border:1px solid #d0d7de;border-radius:8px;padding:10px 14px;min-width:150px;background:#fff}
.fm-tile .fm-label{font-size:12px;color:#57606a;text-transform:uppercase;letter-spacing:.03em}
.fm-tile .fm-value{font-size:24px;font-weight:600;color:#1f2328;margin:2px 0}
.fm-tile .fm-change{font-size:12px}
.fm-up{color:#2e7d32}.fm-down{color:#c62828}.fm-flat{color:#57606a}
table.fm-table{border-collapse:collapse;font-family:system-ui,sans-serif;font-size:13px;margin:8px 0}
table.fm-table th,table.fm-table td{border-bottom:1px solid #d0d7de;padding:4px 10px;text-align:right}
table.fm-table th:first-child,table.fm-table td:first-child{text-align:left}
table.fm-table th{background:#f6f8fa}
</style>"""


def kpi_tiles(changes: pl.DataFrame, *, period_label: str, kpis: Sequence[str] | None = None) -> str:
    """HTML tiles: each KPI's value in the period and its change against the previous one.

    Parameters
    ----------
    changes : the period's rows of :func:`funnelmodels.kpis.kpi_changes` (``kpi, value, previous,
        change, change_pct, p_value``).
    """
    rows = {r["kpi"]: r for r in changes.iter_rows(named=True)}
    tiles = []
    for kpi in kpis or list(_KPI_FORMAT):
        if kpi not in rows or rows[kpi]["value"] is None:
            continue
        r = rows[kpi]
        label, fmt = _KPI_FORMAT.get(kpi, (kpi, str))
        tiles.append(
            f'<div class="fm-tile" data-kpi="{html.escape(kpi)}"><div class="fm-label">{html.escape(label)}</div>'
            f'<div class="fm-value">{html.escape(fmt(r["value"]))}</div>'
            f'<div class="fm-change {_direction(r)}">{html.escape(_change_text(kpi, r))}</div></div>'
        )
    head = f"<p><b>{html.escape(period_label)}</b> against the previous period</p>"
    return _TILE_CSS + head + '<div class="fm-tiles">' + "".join(tiles) + "</div>"


def _direction(row: Mapping[str, Any]) -> str:
    change = row.get("change")
    if change is None or change == 0:
        return "fm-flat"
    return "fm-up" if change > 0 else "fm-down"


def _change_text(kpi: str, row: Mapping[str, Any]) -> str:
    if row.get("change") is None:
        return "no previous period"
    if kpi == "win_rate":
        text = f"{100 * row['change']:+.1f} pts"
        if row.get("p_value") is not None:
            text += f" (p = {row['p_value']:.2f})"
        return text
    pct = row.get("change_pct")
    return f"{100 * pct:+.1f}%" if pct is not None else f"{row['change']:+,.0f}"


def html_table(
    frame: pl.DataFrame, *, formats: Mapping[str, Callable[[Any], str]] | None = None, max_rows: int = 60
) -> str:
    """A compact HTML table of ``frame`` with per-column formatters; every cell is escaped."""
    formats = dict(formats or {})
    shown = frame.head(max_rows)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    body = []
    for row in shown.iter_rows():
        cells = []
        for name, value in zip(shown.columns, row, strict=True):
            text = formats[name](value) if name in formats else _default(value)
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    note = f"<p><i>{frame.height - max_rows:,} more rows in the CSV table.</i></p>" if frame.height > max_rows else ""
    return (
        _TILE_CSS
        + f'<table class="fm-table"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
        + note
    )


def _default(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    return str(value)


def environment_summary() -> str:
    """HTML footer: package versions, Python and git commit (what made this report)."""
    items = environment()
    cells = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in items.items())
    return f'<details><summary>Environment</summary><table class="fm-table">{cells}</table></details>'
