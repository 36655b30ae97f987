"""The charts of the reports: every ``plot_*`` returns a matplotlib Figure with units and periods on its axes.

No function calls ``show`` itself; :func:`show` renders a figure once in a notebook, as inline SVG
with hover values on the main charts' bars and points.
"""

from __future__ import annotations

import html
import io
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import polars as pl

from funnelmodels.display.format import count, interval_text, money, percent, period_label, price
from funnelmodels.labels import label as words

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "chart_html",
    "plot_activity_effects",
    "plot_calibration_band",
    "plot_coefficients",
    "plot_cumulative_conversion",
    "plot_forecast_fan",
    "plot_funnel",
    "plot_importance",
    "plot_lift",
    "plot_new_vs_returning",
    "plot_owner_ratios",
    "plot_reliability",
    "plot_revenue_trend",
    "plot_satisfaction_trend",
    "show",
]

BLUE, ORANGE, GREY, GREEN, RED = "#1f5f99", "#e07b00", "#8c8c8c", "#2e7d32", "#c62828"


def _pyplot() -> Any:
    """Matplotlib's pyplot on the Agg backend when none is chosen (imported on first use: it is slow to import)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _percent_axis(axis: Any) -> None:
    from matplotlib.ticker import PercentFormatter

    axis.set_major_formatter(PercentFormatter(1))


def _tip(figure: Figure, artist: Any, text: str) -> None:
    """Give ``artist`` a hover text: :func:`chart_html` writes it as the SVG element's ``<title>``."""
    tips: dict[str, str] = figure.__dict__.setdefault("_fm_tips", {})
    gid = f"fm-tip-{len(tips)}"
    artist.set_gid(gid)
    tips[gid] = text


_CHARTS = [0]


def chart_html(figure: Figure) -> str:
    """A figure as inline SVG: sharp at any zoom and in print, text as text, hover values, alt text.

    The figure is closed afterwards. Element ids are unique per chart in a page (a salt per chart),
    and the SVG carries no creation date, so the same figure gives the same text.
    """
    import matplotlib

    _CHARTS[0] += 1
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"fm-chart-{_CHARTS[0]}"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    _pyplot().close(figure)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]
    for gid, text in figure.__dict__.get("_fm_tips", {}).items():
        svg = svg.replace(f'<g id="{gid}">', f'<g id="{gid}"><title>{html.escape(text)}</title>', 1)
    # Every id unique in the page (two charts both have a "figure_1"), references with them.
    prefix = f"fm{_CHARTS[0]}-"
    svg = svg.replace('id="', f'id="{prefix}').replace("url(#", f"url(#{prefix}").replace('href="#', f'href="#{prefix}')
    # With its titles as alternative text: a screen reader says what the chart is.
    titles = [figure.get_suptitle(), *(ax.get_title() for ax in figure.get_axes())]
    alt = html.escape("; ".join(t for t in titles if t) or "chart")
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{alt}" class="fm-chart" ', 1)
    return f"<figure>{svg}</figure>"


def show(figure: Figure) -> None:
    """Display a figure once in a notebook, as inline SVG (:func:`chart_html`), and free it."""
    from IPython.display import HTML, display

    display(HTML(chart_html(figure)))


def _subplots(*args: Any, **kwargs: Any) -> tuple[Figure, Any]:
    fig, axes = _pyplot().subplots(*args, layout="constrained", **kwargs)
    return cast("Figure", fig), axes


def _figure(width: float = 9, height: float = 3.6) -> tuple[Figure, Any]:
    fig, ax = _subplots(figsize=(width, height))
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def _money_axis(ax: Any) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: money(v)))


MAX_PERIODS = 120
"""A trend chart shows at most the last 120 periods (the CSV tables hold all): a report's size does
not grow with the length of the history."""


def _recent(table: pl.DataFrame, ax: Any, title: str, length: str) -> pl.DataFrame:
    """The last :data:`MAX_PERIODS` rows, and the chart's title saying so when older ones are left out."""
    if table.height <= MAX_PERIODS:
        ax.set_title(title)
        return table
    ax.set_title(f"{title} (the last {MAX_PERIODS} {length}s)")
    return table.tail(MAX_PERIODS)


def _thin_ticks(ax: Any, count: int, most: int = 30) -> None:
    """At most ``most`` labels on the x axis, every k-th one, the last always."""
    if count > most:
        step = -(-count // most)
        ax.set_xticks([i for i in range(count) if (count - 1 - i) % step == 0])


def _period_ticks(periods: pl.Series, length: str) -> list[str]:
    """Short tick labels: ``Jun 2026`` for months, ``Q2 2026`` for quarters, the date otherwise."""
    if length == "month":
        return [f"{p:%b %Y}" for p in periods]
    if length in ("quarter", "year"):
        return [period_label(p, length) for p in periods]
    return [f"{p:%Y-%m-%d}" for p in periods]


def plot_revenue_trend(kpis: pl.DataFrame, *, highlight: Any = None, length: str = "month") -> Figure:
    """Net revenue per period (bars; the report's period highlighted) and the average sale."""
    fig, ax = _figure()
    kpis = _recent(kpis, ax, "Revenue by period", length)
    periods = _period_ticks(kpis["period"], length)
    colors = [ORANGE if highlight is not None and p == highlight else BLUE for p in kpis["period"]]
    bars = ax.bar(periods, kpis["net_revenue"].to_numpy(), color=colors)
    for bar, row in zip(bars, kpis.iter_rows(named=True), strict=True):
        _tip(
            fig,
            bar,
            f"{period_label(row['period'], length)}: net revenue {money(row['net_revenue'])}, "
            f"{count(row['orders'])} orders, average sale {price(row['average_sale'])}",
        )
    ax.set_ylabel("Net revenue (refunds deducted)")
    _money_axis(ax)
    ax.set_xlabel("Period")
    _thin_ticks(ax, len(periods))
    ax.tick_params(axis="x", rotation=60, labelsize=8)
    twin = ax.twinx()
    twin.plot(periods, kpis["average_sale"].to_numpy(), color=GREY, marker="o", lw=1.5, label="Average sale")
    twin.set_ylabel("Average sale")
    _money_axis(twin)
    twin.legend(loc="upper left", frameon=False)
    return fig


def plot_new_vs_returning(kpis: pl.DataFrame, *, length: str = "month") -> Figure:
    """New accounts and returning customers per period (stacked bars = active customers)."""
    fig, ax = _figure()
    kpis = _recent(kpis, ax, "New and returning customers", length)
    periods = _period_ticks(kpis["period"], length)
    new = kpis["new_accounts"].to_numpy()
    bars = ax.bar(periods, new, color=ORANGE, label="New accounts (first purchase)")
    ax.bar(periods, kpis["returning_customers"].to_numpy(), bottom=new, color=BLUE, label="Returning customers")
    for bar, row in zip(bars, kpis.iter_rows(named=True), strict=True):
        _tip(
            fig,
            bar,
            f"{period_label(row['period'], length)}: {count(row['new_accounts'])} new, "
            f"{count(row['returning_customers'])} returning",
        )
    ax.set_ylabel("Customers who bought")
    ax.set_xlabel("Period")
    _thin_ticks(ax, len(periods))
    ax.tick_params(axis="x", rotation=60, labelsize=8)
    ax.legend(frameon=False)
    return fig


def plot_funnel(conversion: pl.DataFrame) -> Figure:
    """Opportunities entering each stage, with the stage's conversion rate and 95% interval."""
    fig, ax = _figure(height=3.2)
    stages = conversion["stage"].to_list()
    y = np.arange(len(stages))[::-1]
    bars = ax.barh(y, conversion["entered"].to_numpy(), color=BLUE)
    for bar, yi, row in zip(bars, y, conversion.iter_rows(named=True), strict=True):
        label = f"{row['entered']:,} entered · {percent(row['rate'])} converted"
        if row.get("rate_low") is not None:
            label += f" ({percent(row['rate_low'], 0)}–{percent(row['rate_high'], 0)})"
        ax.text(row["entered"], yi, "  " + label, va="center", fontsize=9)
        _tip(fig, bar, f"{row['stage']}: {label}")
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
    fig, axes = _subplots(1, len(stages), figsize=(2.3 * len(stages) + 1, 3.2), sharey=True)
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
        _percent_axis(ax.yaxis)
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
    _percent_axis(ax.xaxis)
    _percent_axis(ax.yaxis)
    ax.set_xlabel("Predicted conversion probability (bin mean)")
    ax.set_ylabel("Observed conversion rate")
    ax.legend(frameon=False)
    ax.set_title("Calibration on the test period")
    return fig


def plot_calibration_band(curves: Mapping[str, pl.DataFrame]) -> Figure:
    """Isotonic reliability curves, one panel per model, each with the band a calibrated model stays in.

    ``curves``: model name → :func:`funnelmodels.calibration.reliability_curve` (``predicted,
    observed, band_low, band_high``). A curve outside its grey band is miscalibrated there beyond
    chance: above it the model predicts too low, below it too high.
    """
    shown = list(curves.items())[:3]
    fig, axes = _subplots(1, max(len(shown), 1), figsize=(4.2 * max(len(shown), 1), 4.2), squeeze=False)
    for ax, (name, table), color in zip(axes[0], shown, (BLUE, ORANGE, GREEN), strict=False):
        x = table["predicted"].to_numpy()
        ax.plot([0, 1], [0, 1], color=GREY, ls="--", lw=1)
        ax.fill_between(x, table["band_low"].to_numpy(), table["band_high"].to_numpy(), color=GREY, alpha=0.25, lw=0)
        line = ax.plot(x, table["observed"].to_numpy(), color=color, marker=".", lw=1.5)[0]
        outside = int(((table["observed"] < table["band_low"]) | (table["observed"] > table["band_high"])).sum())
        _tip(fig, line, f"{words(name)}: {outside} of {table.height} points outside the band")
        _percent_axis(ax.xaxis)
        _percent_axis(ax.yaxis)
        ax.set_xlim(0, max(float(x.max()) * 1.05, 0.05) if x.size else 1)
        ax.set_ylim(0, 1)
        ax.set_title(words(name), fontsize=10)
        ax.set_xlabel("Predicted probability")
    axes[0][0].set_ylabel("Observed rate (isotonic)")
    fig.suptitle("Calibration on the test period: curve and the band of a calibrated model (95%)", fontsize=10)
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
    _percent_axis(ax.yaxis)
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
    ax.set_yticks(y, [words(f) for f in shown["feature"].to_list()])
    ax.set_xlabel("Average size of the feature's effect on a score (log-odds)")
    ax.set_title(title)
    return fig


def _forest(ax: Any, names: list[str], value: np.ndarray, low: np.ndarray, high: np.ndarray, at: float) -> Any:
    """Points with 95% intervals, one row per name (the first on top), and a line at ``at``."""
    y = np.arange(len(names))[::-1]
    bars = ax.errorbar(value, y, xerr=[value - low, high - value], fmt="o", color=BLUE, ecolor=GREY, capsize=3)
    ax.axvline(at, color=GREY, lw=1)
    ax.set_yticks(y, names)
    return bars, y


def plot_coefficients(table: pl.DataFrame, *, top: int = 14) -> Figure:
    """Forest plot of the ordinal model's coefficients per SD with 95% intervals."""
    shown = table.sort(pl.col("coef").abs(), descending=True).head(top)
    fig, ax = _figure(7, 0.35 * shown.height + 1.2)
    names = [words(f) for f in shown["term"].to_list()]
    _forest(ax, names, shown["coef"].to_numpy(), shown["ci_low"].to_numpy(), shown["ci_high"].to_numpy(), 0.0)
    ax.set_xlabel("Effect on latent satisfaction per 1 SD (log-odds), 95% interval")
    ax.set_title("Key drivers of satisfaction (ordinal logit)")
    return fig


def plot_owner_ratios(reps: pl.DataFrame, *, top: int = 40) -> Figure:
    """Each owner's shrunk observed / expected wins with its 95% interval, the raw ratio beside it (hollow)."""
    shown = reps.sort("shrunk_ratio", descending=True, nulls_last=True).head(top)
    fig, ax = _figure(7, 0.32 * shown.height + 1.3)
    names = [str(n) for n in shown["owner"].to_list()]
    value = shown["shrunk_ratio"].to_numpy().astype(float)
    low, high = (shown[c].to_numpy().astype(float) for c in ("shrunk_ratio_low", "shrunk_ratio_high"))
    _, y = _forest(ax, names, value, low, high, 1.0)
    raw = shown["ratio"].to_numpy().astype(float)
    ax.scatter(raw, y, facecolors="none", edgecolors=ORANGE, zorder=3, label="observed / expected, not shrunk")
    for row, yy in zip(shown.iter_rows(named=True), y, strict=True):
        marker = ax.scatter([row["shrunk_ratio"]], [yy], s=60, alpha=0, zorder=4)
        _tip(
            fig,
            marker,
            f"{row['owner']}: {row['wins']:,} won, {row['expected_wins']:.1f} expected; shrunk "
            f"{row['shrunk_ratio']:.2f} ({row['shrunk_ratio_low']:.2f}–{row['shrunk_ratio_high']:.2f})",
        )
    ax.set_xlabel("Wins against the wins their leads would usually give (1 = as expected), 95% interval")
    ax.set_title("Sales people against the leads they received")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def plot_activity_effects(effects: pl.DataFrame, *, stages: list[str] | None = None) -> Figure:
    """Per stage and activity, the adjusted difference in the chance of the next stage with its 95% interval."""
    shown = effects.filter(pl.col("adjusted").is_not_null())
    if stages:
        order = {stage: i for i, stage in enumerate(stages)}
        shown = shown.with_columns(pl.col("stage").replace_strict(order, default=len(order)).alias("_order"))
        shown = shown.sort("_order", "adjusted", descending=[False, True])
    fig, ax = _figure(7, 0.3 * shown.height + 1.3)
    names = [f"{stage}: {words(kind).lower()}" for stage, kind in shown.select("stage", "treatment").iter_rows()]
    value = 100 * shown["adjusted"].to_numpy().astype(float)
    low, high = (100 * shown[c].to_numpy().astype(float) for c in ("adjusted_low", "adjusted_high"))
    bars, _ = _forest(ax, names, value, low, high, 0.0)
    _tip(fig, bars.lines[0], "Adjusted difference in points, 95% interval: an association, not an experiment")
    ax.set_xlabel("Points of the chance of reaching the next stage, adjusted for the deals (95% interval)")
    ax.set_title("Activities and progress, per stage")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def plot_forecast_fan(fan: pl.DataFrame, *, target: float | None = None, period: str = "") -> Figure:
    """The value won by each week's end of the period: the 80% band (P10–P90), the median, the target.

    ``fan``: ``day, p10, p50, p90, mean`` from :class:`funnelmodels.models.forecast.PeriodForecast`.
    """
    fig, ax = _figure(8, 3.4)
    days = fan["day"].to_list()
    low, mid, high = (fan[c].to_numpy().astype(float) for c in ("p10", "p50", "p90"))
    band = ax.fill_between(days, low, high, color=BLUE, alpha=0.2, linewidth=0, label="80% range (P10–P90)")
    ax.plot(days, mid, color=BLUE, linewidth=2, label="median (P50)")
    _tip(fig, band, f"80% range at the period's end: {money(low[-1])} – {money(high[-1])}")
    for day, lo, me, hi in zip(days, low, mid, high, strict=True):
        point = ax.scatter([day], [me], s=18, color=BLUE, zorder=3)
        _tip(fig, point, f"by {day:%d %b %Y}: median {money(me)}, 80% between {money(lo)} and {money(hi)}")
    if target is not None:
        line = ax.axhline(target, color=ORANGE, linestyle="--", linewidth=1.5, label=f"target {money(target)}")
        _tip(fig, line, f"target {money(target)}")
    _money_axis(ax)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("Value of deals won")
    ax.set_title(f"Won value forecast{' for ' + period if period else ''}, by week")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    fig.autofmt_xdate()
    return fig


def plot_satisfaction_trend(
    table: pl.DataFrame, *, csat_label: str = "CSAT (1–5), mean", length: str = "month"
) -> Figure:
    """CSAT mean and NPS per period with 95% interval bands (one panel per measure present)."""
    panels = [
        (mean, low, high, label, color)
        for mean, low, high, label, color in (
            ("csat_mean", "csat_low", "csat_high", csat_label, BLUE),
            ("nps", "nps_low", "nps_high", "NPS (points)", ORANGE),
        )
        if mean in table.columns
    ]
    fig, axes = _subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    if table.height > MAX_PERIODS:
        table = table.tail(MAX_PERIODS)
        fig.suptitle(f"The last {MAX_PERIODS} {length}s", fontsize=10)
    periods = _period_ticks(table["period"], length)
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
        for xi, row in zip(x, table.iter_rows(named=True), strict=True):
            if row[mean] is not None:
                (point,) = ax.plot([xi], [row[mean]], marker="o", ms=9, alpha=0, ls="none")
                value = interval_text(mean, row[mean], row[low], row[high])
                _tip(fig, point, f"{period_label(row['period'], length)}: {label} {value}")
        ax.set_xticks(x, periods, rotation=60, fontsize=8)
        ax.set_xlabel("Period")
        ax.set_ylabel(label)
        ax.legend(frameon=False, fontsize=8)
        ax.set_title("Customer satisfaction" if mean == "csat_mean" else "Net promoter score")
    return fig
