"""The charts and display pieces the notebooks and reports show.

Every ``plot_*`` returns a matplotlib Figure (never calls show); axes carry units and
periods. ``kpi_tiles`` and ``html_table`` return HTML with every user-supplied string
escaped, so a segment named ``<script>`` prints as text.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter

__all__ = [
    "html_table",
    "kpi_tiles",
    "money",
    "number",
    "percent",
    "plot_coefficients",
    "plot_cumulative_conversion",
    "plot_funnel",
    "plot_importance",
    "plot_lift",
    "plot_new_vs_returning",
    "plot_reliability",
    "plot_revenue_trend",
    "plot_satisfaction_trend",
    "show",
    "time_to_close_text",
]

BLUE, ORANGE, GREY, GREEN, RED = "#1f5f99", "#e07b00", "#8c8c8c", "#2e7d32", "#c62828"


def money(value: float | None, currency: str = "$") -> str:
    """``$1.2M``, ``$84.3k``, ``$950`` (negative with a minus sign); ``–`` for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    sign = "−" if value < 0 else ""
    v = abs(value)
    if v >= 1e6:
        return f"{sign}{currency}{v / 1e6:.2f}M"
    if v >= 1e4:
        return f"{sign}{currency}{v / 1e3:.1f}k"
    return f"{sign}{currency}{v:,.0f}"


def percent(value: float | None, digits: int = 1) -> str:
    """``12.3%``; ``–`` for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.{digits}f}%"


def number(value: float | None) -> str:
    """Readable number: thousands separators, at most three significant decimals; ``–`` for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"


def _count(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


_KPI_FORMAT: dict[str, tuple[str, Callable[[Any], str]]] = {
    "net_revenue": ("Net revenue", money),
    "orders": ("Orders", _count),
    "average_sale": ("Average sale", lambda v: money(v) if v is None or abs(v) >= 1e4 else f"${v:,.2f}"),
    "new_accounts": ("New accounts", _count),
    "returning_customers": ("Returning customers", _count),
    "active_customers": ("Active customers", _count),
    "won": ("Deals won", _count),
    "lost": ("Deals lost", _count),
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


def show(figure: Figure) -> None:
    """Display a figure once in a notebook (and free it)."""
    import io

    from IPython.display import Image, display

    # Rendered to PNG here, so the figure shows the same in JupyterLab, papermill and nbconvert
    # whatever matplotlib backend the kernel has.
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    display(Image(data=buffer.getvalue(), format="png"))


def _figure(width: float = 9, height: float = 3.6) -> tuple[Figure, Any]:
    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def _money_axis(ax: Any) -> None:
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: money(v)))


def plot_revenue_trend(kpis: pl.DataFrame, *, highlight: Any = None) -> Figure:
    """Net revenue per period (bars; the report's period highlighted) and the average sale."""
    fig, ax = _figure()
    periods = [str(p)[:7] for p in kpis["period"]]
    colors = [ORANGE if highlight is not None and p == highlight else BLUE for p in kpis["period"]]
    ax.bar(periods, kpis["net_revenue"].to_numpy(), color=colors)
    ax.set_ylabel("Net revenue (refunds deducted)")
    _money_axis(ax)
    ax.set_xlabel("Period")
    ax.tick_params(axis="x", rotation=60, labelsize=8)
    twin = ax.twinx()
    twin.plot(periods, kpis["average_sale"].to_numpy(), color=GREY, marker="o", lw=1.5, label="Average sale")
    twin.set_ylabel("Average sale")
    _money_axis(twin)
    twin.legend(loc="upper left", frameon=False)
    ax.set_title("Revenue by period")
    return fig


def plot_new_vs_returning(kpis: pl.DataFrame) -> Figure:
    """New accounts and returning customers per period (stacked bars = active customers)."""
    fig, ax = _figure()
    periods = [str(p)[:7] for p in kpis["period"]]
    new = kpis["new_accounts"].to_numpy()
    ax.bar(periods, new, color=ORANGE, label="New accounts (first purchase)")
    ax.bar(periods, kpis["returning_customers"].to_numpy(), bottom=new, color=BLUE, label="Returning customers")
    ax.set_ylabel("Customers who bought")
    ax.set_xlabel("Period")
    ax.tick_params(axis="x", rotation=60, labelsize=8)
    ax.legend(frameon=False)
    ax.set_title("New and returning customers")
    return fig


def plot_funnel(conversion: pl.DataFrame) -> Figure:
    """Opportunities entering each stage, with the stage's conversion rate and 95% interval."""
    fig, ax = _figure(height=3.2)
    stages = conversion["stage"].to_list()
    y = np.arange(len(stages))[::-1]
    ax.barh(y, conversion["entered"].to_numpy(), color=BLUE)
    for yi, row in zip(y, conversion.iter_rows(named=True), strict=True):
        label = f"{row['entered']:,} entered · {percent(row['rate'])} converted"
        if row.get("rate_low") is not None:
            label += f" ({percent(row['rate_low'], 0)}–{percent(row['rate_high'], 0)})"
        ax.text(row["entered"], yi, "  " + label, va="center", fontsize=9)
    ax.set_yticks(y, stages)
    ax.set_xlabel("Opportunities that entered the stage")
    ax.set_xlim(0, conversion["entered"].max() * 1.8)  # type: ignore[operator]
    ax.set_title("Funnel: entries and stage conversion within the horizon")
    return fig


def plot_cumulative_conversion(table: pl.DataFrame, *, won: str = "won") -> Figure:
    """Share converted and share lost by day, per stage and end to end, with 95% bands.

    Parameters
    ----------
    table : :func:`funnelmodels.funnel.cumulative_conversion_table` read at many days
        (``stage, day, converted, converted_low, converted_high, lost, lost_low, lost_high``).
    """
    curves = table.filter(pl.col("day").is_not_null())
    stages = curves["stage"].unique(maintain_order=True).to_list()
    fig, axes = plt.subplots(1, len(stages), figsize=(2.3 * len(stages) + 1, 3.2), layout="constrained", sharey=True)
    for ax, stage in zip(np.atleast_1d(axes), stages, strict=True):
        rows = curves.filter(pl.col("stage") == stage)
        day = rows["day"].to_numpy()
        for name, color, label in (
            ("converted", BLUE, "converted" if stage != "end to end" else won),
            ("lost", RED, "lost"),
        ):
            low = rows[f"{name}_low"].fill_null(rows[name]).to_numpy().astype(float)
            high = rows[f"{name}_high"].fill_null(rows[name]).to_numpy().astype(float)
            ax.fill_between(day, low, high, color=color, alpha=0.2, step="post")
            ax.step(day, rows[name].to_numpy().astype(float), where="post", color=color, label=label)
        ax.spines[["top", "right"]].set_visible(False)
        ax.set_title(stage, fontsize=10)
        ax.set_xlabel("Days after entering")
        ax.yaxis.set_major_formatter(PercentFormatter(1))
        ax.legend(frameon=False, fontsize=8)
    np.atleast_1d(axes)[0].set_ylabel("Share of entries")
    fig.suptitle("What share converts, and how fast (lost as a competing outcome)", fontsize=11)
    return fig


def plot_reliability(curves: Mapping[str, pl.DataFrame]) -> Figure:
    """Reliability curves (predicted vs observed rate per bin) per engine; the diagonal is perfect."""
    fig, ax = _figure(6, 5)
    ax.plot([0, 1], [0, 1], color=GREY, ls="--", lw=1, label="perfectly calibrated")
    for (name, table), color in zip(curves.items(), (BLUE, ORANGE, GREEN, RED), strict=False):
        ax.plot(table["mean_predicted"], table["observed_rate"], marker="o", color=color, label=name)
    ax.xaxis.set_major_formatter(PercentFormatter(1))
    ax.yaxis.set_major_formatter(PercentFormatter(1))
    ax.set_xlabel("Predicted conversion probability (bin mean)")
    ax.set_ylabel("Observed conversion rate")
    ax.legend(frameon=False)
    ax.set_title("Calibration on the test period")
    return fig


def plot_lift(tables: Mapping[str, pl.DataFrame]) -> Figure:
    """Cumulative gains by decile per engine: share of conversions captured by the top-scored rows."""
    fig, ax = _figure(6, 5)
    ax.plot([0, 10], [0, 1], color=GREY, ls="--", lw=1, label="random order")
    for (name, table), color in zip(tables.items(), (BLUE, ORANGE, GREEN, RED), strict=False):
        ax.plot(
            [0, *table["decile"].to_list()],
            [0, *table["cumulative_gain"].to_list()],
            marker="o",
            color=color,
            label=name,
        )
    ax.yaxis.set_major_formatter(PercentFormatter(1))
    ax.set_xlabel("Deciles of rows, highest predicted first")
    ax.set_ylabel("Share of all conversions captured")
    ax.legend(frameon=False)
    ax.set_title("Cumulative gains on the test period")
    return fig


def plot_importance(
    table: pl.DataFrame,
    *,
    value: str = "mean_abs_contribution",
    top: int = 12,
    title: str = "What drives the prediction",
) -> Figure:
    """Horizontal bars of the ``top`` features by ``value``."""
    shown = table.sort(value, descending=True).head(top)
    fig, ax = _figure(7, 0.35 * shown.height + 1.2)
    y = np.arange(shown.height)[::-1]
    ax.barh(y, shown[value].to_numpy(), color=BLUE)
    ax.set_yticks(y, shown["feature"].to_list())
    ax.set_xlabel("Mean |contribution| (log-odds)")
    ax.set_title(title)
    return fig


def plot_coefficients(table: pl.DataFrame, *, top: int = 14) -> Figure:
    """Forest plot of the ordinal model's coefficients per SD with 95% intervals."""
    shown = table.sort(pl.col("coef").abs(), descending=True).head(top)
    fig, ax = _figure(7, 0.35 * shown.height + 1.2)
    y = np.arange(shown.height)[::-1]
    coef = shown["coef"].to_numpy()
    ax.errorbar(
        coef,
        y,
        xerr=[coef - shown["ci_low"].to_numpy(), shown["ci_high"].to_numpy() - coef],
        fmt="o",
        color=BLUE,
        ecolor=GREY,
        capsize=3,
    )
    ax.axvline(0, color=GREY, lw=1)
    ax.set_yticks(y, shown["term"].to_list())
    ax.set_xlabel("Effect on latent satisfaction per 1 SD (log-odds), 95% interval")
    ax.set_title("Key drivers of satisfaction (ordinal logit)")
    return fig


def plot_satisfaction_trend(table: pl.DataFrame, *, csat_label: str = "CSAT (1–5), mean") -> Figure:
    """CSAT mean and NPS per period with 95% interval bands (one panel per measure present)."""
    panels = [
        (mean, low, high, label, color)
        for mean, low, high, label, color in (
            ("csat_mean", "csat_low", "csat_high", csat_label, BLUE),
            ("nps", "nps_low", "nps_high", "NPS (points)", ORANGE),
        )
        if mean in table.columns
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), layout="constrained", squeeze=False)
    periods = [str(p)[:7] for p in table["period"]]
    x = np.arange(len(periods))
    for ax, (mean, low, high, label, color) in zip(axes[0], panels, strict=True):
        ax.spines[["top", "right"]].set_visible(False)
        ax.fill_between(
            x,
            table[low].to_numpy().astype(float),
            table[high].to_numpy().astype(float),
            color=color,
            alpha=0.2,
            label="95% interval",
        )
        ax.plot(x, table[mean].to_numpy().astype(float), color=color, marker="o", label=label)
        ax.set_xticks(x, periods, rotation=60, fontsize=8)
        ax.set_xlabel("Period")
        ax.set_ylabel(label)
        ax.legend(frameon=False, fontsize=8)
        ax.set_title("Customer satisfaction" if mean == "csat_mean" else "Net promoter score")
    return fig


def time_to_close_text(close: Mapping[str, Any]) -> str:
    """One sentence on the Kaplan–Meier median days from first contact to a win."""
    if close.get("median_days") is None:
        return (
            f"Median time to close: not reached — fewer than half of the {close['opportunities']:,} opportunities "
            "are won before being lost or the period's end."
        )
    interval = ""
    if close.get("median_low") is not None and close.get("median_high") is not None:
        interval = f" (95% interval {close['median_low']:.0f}–{close['median_high']:.0f})"
    return (
        f"Median time to close: **{close['median_days']:.0f} days**{interval} from the first stage to won, by "
        f"Kaplan–Meier over {close['opportunities']:,} opportunities ({close['won']:,} won; lost and open ones "
        "censored)."
    )
