"""Reports: the shipped notebooks, the runner that renders them, and the measures each report shows.

Notebooks use ``fm.reports.sales_performance``, ``fm.reports.attempt``, ``fm.reports.save_tables``, …;
``funnelmodels report`` calls :func:`run_reports`.
"""

from funnelmodels.reports.conversion import (
    conversion_details,
    conversion_summary,
    model_card_section,
    top_share_interval,
    top_share_of_wins,
)
from funnelmodels.reports.params import ResolvedRun, check_period, period_end, resolve_run
from funnelmodels.reports.registry import REPORTS, notebooks_folder
from funnelmodels.reports.runner import ReportRun, ReportsFailed, run_report, run_reports
from funnelmodels.reports.sales import SalesReport, sales_performance
from funnelmodels.reports.satisfaction import (
    SatisfactionOverview,
    satisfaction_card_section,
    satisfaction_details,
    satisfaction_overview,
    satisfaction_summary,
    top_drivers,
)
from funnelmodels.reports.sections import (
    Attempt,
    attempt,
    data_notes,
    dataset_window,
    header,
    record,
    save_tables,
    scoring_moment,
)
from funnelmodels.reports.teams import TeamReport, action_list, stability_text, team_details, team_performance

__all__ = [
    "REPORTS",
    "Attempt",
    "ReportRun",
    "ReportsFailed",
    "ResolvedRun",
    "SalesReport",
    "SatisfactionOverview",
    "TeamReport",
    "action_list",
    "attempt",
    "check_period",
    "conversion_details",
    "conversion_summary",
    "data_notes",
    "dataset_window",
    "header",
    "model_card_section",
    "notebooks_folder",
    "period_end",
    "record",
    "resolve_run",
    "run_report",
    "run_reports",
    "sales_performance",
    "satisfaction_card_section",
    "satisfaction_details",
    "satisfaction_overview",
    "satisfaction_summary",
    "save_tables",
    "scoring_moment",
    "stability_text",
    "team_details",
    "team_performance",
    "top_drivers",
    "top_share_interval",
    "top_share_of_wins",
]
