"""The reports funnelmodels ships, and where their notebooks are found."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from funnelmodels.errors import ReportError

__all__ = ["OVER_PARTITIONS", "REPORTS", "notebooks_folder"]

REPORTS: dict[str, str] = {
    "sales_performance": "revenue, new and returning accounts, win rate, funnel and pipeline forecast of a period",
    "stage_conversion": "how well the stage-conversion models predict, what drives conversion, what share converts",
    "customer_satisfaction": "CSAT and NPS over time, what drives them, and the customers at risk of a low score",
    "team_performance": "sales people and teams against the leads they got, activities and progress, the action list",
}

OVER_PARTITIONS: tuple[str, ...] = ("sales_performance",)
"""The reports that run over a partitioned dataset on a Dask cluster (``report NAME --cluster local:N``)."""
"""Every shipped report: its name (notebook ``<name>.ipynb``) and what it shows, in the order ``--all`` runs them."""


def notebooks_folder() -> Path:
    """The folder of the shipped report notebooks.

    In an installed wheel they are package data (``funnelmodels/notebooks``); in a checkout
    (an editable install) they are the repository's ``notebooks/``.
    """
    shipped = Path(str(resources.files("funnelmodels") / "notebooks"))
    if shipped.is_dir():
        return shipped
    checkout = Path(__file__).resolve().parents[2] / "notebooks"
    if checkout.is_dir():
        return checkout
    raise ReportError(
        f"the report notebooks are not installed with funnelmodels (looked in {shipped} and {checkout}); "
        "reinstall the package, or pass --notebooks-dir."
    )
