"""What a report shows: numbers as text (format), HTML tiles and tables (html), charts (plots).

Notebooks use ``from funnelmodels.display import html_table, percent, show`` or ``fm.display.plot_funnel``.
"""

from funnelmodels.display.format import count, money, number, percent, time_to_close_text
from funnelmodels.display.html import environment_summary, html_table, kpi_tiles
from funnelmodels.display.plots import (
    plot_coefficients,
    plot_cumulative_conversion,
    plot_funnel,
    plot_importance,
    plot_lift,
    plot_new_vs_returning,
    plot_reliability,
    plot_revenue_trend,
    plot_satisfaction_trend,
    show,
)

__all__ = [
    "count",
    "environment_summary",
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
