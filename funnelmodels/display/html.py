"""HTML pieces of a report: header, summary, KPI tiles, tables, collapsed details, the page script.

Every user-supplied string is escaped: a segment named ``<script>`` prints as text. Names are
written through :func:`funnelmodels.labels.label` and values through
:func:`funnelmodels.display.format.value_text`, so every table reads the same way.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl

from funnelmodels.display.format import interval_text, money, percent, points, signed_percent, value_text
from funnelmodels.labels import good_direction, label, unit
from funnelmodels.provenance import environment

__all__ = [
    "PAGE_SCRIPT",
    "SMALL_CHANGE",
    "Tile",
    "details",
    "environment_summary",
    "html_table",
    "index_page",
    "judge",
    "kpi_tiles",
    "pipeline_tiles",
    "report_header",
    "summary_list",
    "tiles",
]

SMALL_CHANGE = 0.05
"""A change of an amount (revenue, average sale) below 5% is shown grey: amounts have no test."""

SIGNIFICANCE = 0.05
"""A change whose test gives p ≥ 0.05 is shown grey: it may be chance."""

STYLE = """<style>
.fm-header{font-family:system-ui,sans-serif;border-bottom:2px solid #1f5f99;padding:4px 0 8px;margin:0 0 12px}
.fm-header h1{font-size:26px;margin:0 0 4px;color:#1f2328}
.fm-header .fm-sub{font-size:13px;color:#57606a}
.fm-summary{font-family:system-ui,sans-serif;font-size:15px;line-height:1.5;background:#f6f8fa;
 border-left:4px solid #1f5f99;padding:8px 16px;margin:0 0 16px}
.fm-summary li{margin:2px 0}
.fm-tiles{display:flex;flex-wrap:wrap;gap:12px;margin:8px 0 16px;font-family:system-ui,sans-serif}
.fm-tile{border:1px solid #d0d7de;border-radius:8px;padding:10px 14px;min-width:150px;max-width:220px;background:#fff;
 break-inside:avoid}
.fm-tile .fm-label{font-size:12px;color:#57606a;text-transform:uppercase;letter-spacing:.03em}
.fm-tile .fm-value{font-size:24px;font-weight:600;color:#1f2328;margin:2px 0}
.fm-tile .fm-change{font-size:13px;font-weight:600}
.fm-tile .fm-line{font-size:12px;color:#57606a}
.fm-good{color:#2e7d32}.fm-bad{color:#c62828}.fm-flat{color:#6e7781}
.fm-bar{height:6px;background:#eaeef2;border-radius:3px;margin:4px 0 2px;overflow:hidden}
.fm-bar span{display:block;height:6px;background:#1f5f99}
table.fm-table{border-collapse:collapse;font-family:system-ui,sans-serif;font-size:13px;margin:8px 0}
table.fm-table th,table.fm-table td{border-bottom:1px solid #d0d7de;padding:4px 10px;text-align:right;
 vertical-align:top}
table.fm-table th:first-child,table.fm-table td:first-child{text-align:left}
table.fm-table td.fm-text{text-align:left;max-width:28em}
table.fm-table th{background:#f6f8fa}
table.fm-table th[data-sort]{cursor:pointer}
table.fm-table th[aria-sort=ascending]::after{content:" ▲"}
table.fm-table th[aria-sort=descending]::after{content:" ▼"}
.fm-filter{font-size:13px;margin:4px 0;padding:2px 6px}
details.fm-details{margin:12px 0;font-family:system-ui,sans-serif}
details.fm-details>summary{cursor:pointer;font-weight:600;font-size:15px;color:#1f5f99}
@media print{
 @page{size:auto;margin:12mm}
 .fm-filter,.jp-InputPrompt,.jp-OutputPrompt{display:none!important}
 .jp-OutputArea-output,.jp-RenderedHTMLCommon,.jp-Cell,.jp-OutputArea{overflow:visible!important;
  max-width:100%!important;padding:0!important}
 table.fm-table{font-size:8pt;width:auto;max-width:100%;table-layout:auto}
 table.fm-table th,table.fm-table td{padding:2px 4px;word-break:normal;overflow-wrap:anywhere}
 table.fm-table td.fm-text{max-width:none}
 img,svg{max-width:100%!important;height:auto!important}
 details.fm-details>*{display:block}
 .fm-tile{min-width:120px}
}
</style>"""
"""The report's look, screen and print (a table is never wider than the page): in the header's output."""

PAGE_SCRIPT = """<script>
/* funnelmodels: sortable and filterable tables. Without scripts the tables are static. */
(function(){
  function key(cell){var v=cell.getAttribute('data-value');return v===null?cell.textContent.trim():v;}
  function compare(a,b){var x=Number(a),y=Number(b);
    if(a!==''&&b!==''&&isFinite(x)&&isFinite(y)){return x-y;}return a.localeCompare(b);}
  document.querySelectorAll('table.fm-table').forEach(function(table){
    var body=table.tBodies[0];if(!body||body.rows.length<2){return;}
    table.querySelectorAll('thead th').forEach(function(th,index){
      th.setAttribute('data-sort','');th.title='Sort by this column';
      th.addEventListener('click',function(){
        var down=th.getAttribute('aria-sort')==='ascending';
        table.querySelectorAll('thead th').forEach(function(o){o.removeAttribute('aria-sort');});
        th.setAttribute('aria-sort',down?'descending':'ascending');
        var rows=Array.prototype.slice.call(body.rows);
        rows.sort(function(r,s){var c=compare(key(r.cells[index]),key(s.cells[index]));return down?-c:c;});
        rows.forEach(function(r){body.appendChild(r);});
      });
    });
    if(body.rows.length>8){
      var box=document.createElement('input');box.type='search';box.className='fm-filter';
      box.placeholder='Filter rows…';box.setAttribute('aria-label','Filter the rows of this table');
      box.addEventListener('input',function(){var q=box.value.toLowerCase();
        Array.prototype.forEach.call(body.rows,function(r){
          r.style.display=r.textContent.toLowerCase().indexOf(q)>=0?'':'none';});});
      table.parentNode.insertBefore(box,table);
    }
  });
})();
</script>"""
"""One copy per report, added by the runner before ``</body>``."""


def report_header(title: str, subtitle: str, lines: Iterable[str] = ()) -> str:
    """The header every report opens with: its title, the period, and where the numbers come from."""
    extra = "".join(f'<div class="fm-sub">{html.escape(line)}</div>' for line in lines if line)
    return (
        STYLE
        + f'<div class="fm-header"><h1>{html.escape(title)}</h1>'
        + f'<div class="fm-sub"><b>{html.escape(subtitle)}</b></div>{extra}</div>'
    )


def summary_list(sentences: Sequence[str]) -> str:
    """The report's opening sentences as a highlighted list (plain text; ``**bold**`` kept)."""
    items = []
    for sentence in sentences:
        parts = html.escape(sentence).split("**")
        items.append("<li>" + "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts)) + "</li>")
    return f'<div class="fm-summary" role="note"><ul>{"".join(items)}</ul></div>'


def details(summary: str, *parts: str, open_: bool = False) -> str:
    """A collapsed section (``<details>``): the analyst's detail one click away from the reader's view."""
    return (
        f'<details class="fm-details"{" open" if open_ else ""}><summary>{html.escape(summary)}</summary>'
        + "".join(parts)
        + "</details>"
    )


# --- tiles ---------------------------------------------------------------------------------------

Judgement = Literal["good", "bad", "flat"]


def judge(kpi: str, change: float | None, change_pct: float | None, p_value: float | None) -> tuple[Judgement, str]:
    """Whether a KPI's change is good, bad or neither — and why, in words.

    By the KPI's good direction (fewer deals lost is good); grey when the change is not
    significant (p ≥ 0.05, counts and the win rate), small (an amount within ±5%), or the KPI has
    no good direction.
    """
    if change is None or change == 0:
        return "flat", "no change"
    if p_value is not None and p_value >= SIGNIFICANCE:
        return "flat", f"not significant, p = {p_value:.2f}"
    if p_value is None and change_pct is not None and abs(change_pct) < SMALL_CHANGE:
        return "flat", "a small change"
    direction = good_direction(kpi)
    if not direction:
        return "flat", ""
    good = (change > 0) == (direction == "up")
    return ("good" if good else "bad"), ("significant" if p_value is not None else "")


@dataclass(frozen=True)
class Tile:
    """One tile: a label, the value, a judged change line, further lines, an optional progress share."""

    label: str
    value: str
    change: str = ""
    judgement: Judgement = "flat"
    lines: tuple[str, ...] = ()
    progress: float | None = None
    key: str = ""

    def html(self) -> str:
        """The tile as HTML."""
        change = (
            f'<div class="fm-change fm-{self.judgement}" data-judgement="{self.judgement}">'
            f"{html.escape(self.change)}</div>"
            if self.change
            else ""
        )
        bar = ""
        if self.progress is not None and math.isfinite(self.progress):
            width = max(0.0, min(1.0, self.progress)) * 100
            bar = (
                f'<div class="fm-bar" role="progressbar" aria-valuenow="{100 * self.progress:.0f}" '
                f'aria-valuemin="0" aria-valuemax="100"><span style="width:{width:.0f}%"></span></div>'
            )
        lines = "".join(f'<div class="fm-line">{html.escape(line)}</div>' for line in self.lines)
        return (
            f'<div class="fm-tile" data-kpi="{html.escape(self.key)}"><div class="fm-label">{html.escape(self.label)}'
            f'</div><div class="fm-value">{html.escape(self.value)}</div>{change}{bar}{lines}</div>'
        )


def tiles(items: Sequence[Tile]) -> str:
    """Tiles side by side."""
    return '<div class="fm-tiles">' + "".join(t.html() for t in items) + "</div>"


def _change_words(kpi: str, row: Mapping[str, Any]) -> str:
    if row.get("change") is None:
        return ""
    if unit(kpi) == "share":
        return points(row["change"])
    pct = row.get("change_pct")
    return signed_percent(pct) if pct is not None else f"{row['change']:+,.0f}".replace("-", "−")


def kpi_tiles(
    changes: pl.DataFrame,
    *,
    period_label: str,
    previous_label: str = "the previous period",
    year_over_year: pl.DataFrame | None = None,
    targets: pl.DataFrame | None = None,
    kpis: Sequence[str] | None = None,
    extra: Sequence[Tile] = (),
) -> str:
    """HTML tiles: each KPI's value, judged change, previous value, change on a year, target.

    Each tile shows the period's value, its change against the previous period coloured by
    :func:`judge`, the previous value, the change against a year earlier, and — with targets —
    the target and its attainment as a bar.

    Parameters
    ----------
    changes : the period's rows of :func:`funnelmodels.kpis.kpi_changes` (``kpi, value, previous,
        change, change_pct, p_value``).
    year_over_year : the same against a year earlier.
    targets : the period's rows of :func:`funnelmodels.kpis.attainment` (``kpi, target, attainment``).
    extra : further tiles (the pipeline) after the KPIs.
    """
    rows = {r["kpi"]: r for r in changes.iter_rows(named=True)}
    yoy = {r["kpi"]: r for r in year_over_year.iter_rows(named=True)} if year_over_year is not None else {}
    goals = {r["kpi"]: r for r in targets.iter_rows(named=True)} if targets is not None else {}
    out = []
    for kpi in kpis or list(rows):
        if kpi not in rows or rows[kpi]["value"] is None:
            continue
        r = rows[kpi]
        judgement, why = judge(kpi, r.get("change"), r.get("change_pct"), r.get("p_value"))
        change = _change_words(kpi, r)
        change = f"{change} vs {previous_label}" + (f" ({why})" if why else "") if change else "no previous period"
        lines = []
        if r.get("previous") is not None:
            lines.append(f"previous: {value_text(kpi, r['previous'])}")
        year = yoy.get(kpi, {})
        if year.get("change") is not None:
            lines.append(f"vs a year earlier: {_change_words(kpi, year)}")
        progress = None
        goal = goals.get(kpi, {})
        if goal.get("target") is not None:
            lines.append(f"target {value_text(kpi, goal['target'])}: {percent(goal.get('attainment'), 0)} reached")
            progress = goal.get("attainment")
        out.append(Tile(label(kpi), value_text(kpi, r["value"]), change, judgement, tuple(lines), progress, kpi))
    head = f"<p><b>{html.escape(period_label)}</b> against {html.escape(previous_label)}</p>"
    return head + tiles([*out, *extra])


def pipeline_tiles(pipeline: pl.DataFrame, *, target: float | None = None, target_label: str = "") -> list[Tile]:
    """Tiles for the open pipeline: deals and their value, expected value, and coverage of a target."""
    deals = int(pipeline["open_deals"].sum()) if "open_deals" in pipeline.columns else 0
    lines = [f"{deals:,} open deals"]
    out = []
    if "pipeline_amount" in pipeline.columns:
        out.append(Tile("Open pipeline", money(float(pipeline["pipeline_amount"].sum())), lines=tuple(lines)))
        expected = float(pipeline["expected_value"].sum())
        extra: tuple[str, ...] = ("value × win probability",)
        progress = None
        if target:
            progress = expected / target
            extra = (*extra, f"covers {percent(progress, 0)} of the {target_label} target {money(target)}")
        out.append(Tile("Expected from pipeline", money(expected), lines=extra, progress=progress))
    else:
        out.append(Tile("Open pipeline", f"{deals:,} deals", lines=("deal values not in the data",)))
    return out


# --- tables --------------------------------------------------------------------------------------


NAMED_VALUES = ("feature", "term", "kpi", "engine", "attribute")
"""Columns whose values are names (a feature, a model term, a KPI): shown in words too."""


def _intervals(columns: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Columns ``x`` with both ``x_low`` and ``x_high``: shown as one ``x (low–high)`` cell."""
    have = set(columns)
    out = {}
    for c in columns:
        # csat_mean with csat_low/csat_high, satisfied_share with satisfied_low/satisfied_high
        if c == "odds_ratio" and {"or_low", "or_high"} <= have:
            out[c] = ("or_low", "or_high")
            continue
        for stem in (c, *((c.rsplit("_", 1)[0],) if c.endswith(("_mean", "_share")) else ())):
            if f"{stem}_low" in have and f"{stem}_high" in have and stem + "_low" != c:
                out[c] = (f"{stem}_low", f"{stem}_high")
                break
    return out


def html_table(
    frame: pl.DataFrame,
    *,
    formats: Mapping[str, Callable[[Any], str]] | None = None,
    max_rows: int = 60,
    caption: str = "",
) -> str:
    """A compact, sortable HTML table of ``frame``: headers in words, values by unit, intervals merged.

    A column ``x`` with ``x_low`` and ``x_high`` shows as one cell "38.0% (36.9–40.1%)". Each cell
    keeps its raw value (``data-value``) for sorting; every cell is escaped. Only the first
    ``max_rows`` rows are shown (the CSV table holds all).
    """
    formats = dict(formats or {})
    shown = frame.head(max_rows)
    merged = _intervals(shown.columns)
    bounds = {b for pair in merged.values() for b in pair}
    columns = [c for c in shown.columns if c not in bounds]
    head = "".join(f'<th scope="col" data-column="{html.escape(c)}">{html.escape(label(c))}</th>' for c in columns)
    body = []
    for row in shown.iter_rows(named=True):
        cells = []
        for name in columns:
            value = row[name]
            if name in formats:
                text = formats[name](value)
            elif name in NAMED_VALUES and isinstance(value, str):
                text = label(value)
            elif name in merged:
                text = interval_text(name, value, row[merged[name][0]], row[merged[name][1]])
            else:
                text = value_text(name, value)
            raw = f' data-value="{value!r}"' if isinstance(value, int | float) and not isinstance(value, bool) else ""
            css = ' class="fm-text"' if isinstance(value, str | list) else ""
            cells.append(f"<td{css}{raw}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    note = f"<p><i>{frame.height - max_rows:,} more rows not shown.</i></p>" if frame.height > max_rows else ""
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f'<table class="fm-table">{cap}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>' + note


def environment_summary() -> str:
    """HTML footer: package versions, Python and git commit (what made this report)."""
    items = environment()
    cells = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in items.items())
    return (
        f'<details class="fm-details"><summary>Environment</summary><table class="fm-table">{cells}</table></details>'
    )


def index_page(report: str, runs: Sequence[Mapping[str, str]]) -> str:
    """A report's archive page: one row per kept run (``run, href, title, data_window, status, generated, error``)."""
    body = []
    for r in runs:
        name = html.escape(r["run"])
        link = f'<a href="{html.escape(r["href"])}">{name}</a>' if r.get("href") else name
        status = html.escape(r["status"]) + (f": {html.escape(r['error'][:300])}" if r.get("error") else "")
        body.append(
            f'<tr><td class="fm-text">{link}</td><td class="fm-text">{html.escape(r["title"])}</td>'
            f'<td class="fm-text">{html.escape(r["data_window"])}</td><td class="fm-text">{status}</td>'
            f'<td class="fm-text">{html.escape(r["generated"])}</td></tr>'
        )
    table = (
        '<table class="fm-table"><thead><tr><th>Run</th><th>Report</th><th>Data</th><th>Status</th>'
        f"<th>Generated</th></tr></thead><tbody>{''.join(body)}</tbody></table>"
    )
    title = f"{report} — every run"
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f'{STYLE}</head><body style="font-family:system-ui,sans-serif;margin:24px">'
        + report_header(
            report, "Every kept run, newest first", ["latest: the most recent run of the latest period."]
        ).replace(STYLE, "")
        + table
        + PAGE_SCRIPT
        + "</body></html>"
    )
