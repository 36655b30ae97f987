"""The charts of the reports: every ``plot_*`` returns a matplotlib Figure with units and periods on its axes.

No function calls ``show`` itself; :func:`show` renders a figure to PNG once in a notebook.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import polars as pl

from funnelmodels.display.format import money, percent

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
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


def show(figure: Figure) -> None:
    """Display a figure once in a notebook (and free it)."""
    from IPython.display import HTML, display

    # Rendered to PNG here, so the figure shows the same in JupyterLab, papermill and nbconvert
    # whatever matplotlib backend the kernel has.
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    _pyplot().close(figure)
    # With its titles as alternative text: a screen reader says what the chart is.
    titles = [figure.get_suptitle(), *(ax.get_title() for ax in figure.get_axes())]
    alt = "; ".join(t for t in titles if t) or "chart"
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    display(HTML(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"/>'))


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
    fig, axes = _subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
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
