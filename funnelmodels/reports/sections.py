"""Pieces every report notebook uses: a section that may not apply, notes on the data, saved tables, dates."""

from __future__ import annotations

import html
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar

import polars as pl

from funnelmodels.data.io import Dataset, write_rejected
from funnelmodels.data.validate import dataset_summary
from funnelmodels.display.format import period_label, use_currency
from funnelmodels.display.html import details, html_table, report_header
from funnelmodels.distributed.partition import Partitioned
from funnelmodels.errors import DataValidationError, ModelError, ReportError
from funnelmodels.reports.params import safe_name

__all__ = [
    "FACTS_FILE",
    "Attempt",
    "attempt",
    "data_notes",
    "dataset_window",
    "fairness_html",
    "header",
    "record",
    "save_tables",
    "scoring_moment",
]


T = TypeVar("T")


def save_tables(output_dir: str, **tables: pl.DataFrame) -> None:
    """Write a report's key tables as CSV into ``output_dir/tables`` (nothing when run outside a report run)."""
    if not output_dir:
        return
    folder = Path(output_dir) / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        safe_name(name, "table name")
        flat = frame.with_columns(pl.col(c).list.join("; ") for c, t in frame.schema.items() if t == pl.List(pl.String))
        flat.write_csv(folder / f"{name}.csv")


FACTS_FILE = "facts.json"
"""What a notebook records about its run (period, data window, notes) for the runner's manifest."""


def record(output_dir: str, **facts: Any) -> None:
    """Add ``facts`` about the run (``period=…``, ``warnings=[…]``) to the run's manifest.

    Nothing happens outside a report run (``output_dir`` empty, as in JupyterLab).
    """
    if not output_dir:
        return
    path = Path(output_dir) / FACTS_FILE
    known = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    path.write_text(json.dumps(known | facts, indent=2, default=str) + "\n", encoding="utf-8")


def data_notes(dataset: Dataset | Partitioned, output_dir: str = "") -> str:
    """Markdown on how the data was loaded; empty when there is nothing to say.

    Rows filtered, looked up or merged by funnel.toml, and rows set aside by ``drop_invalid``
    (written to ``output_dir/rejected/<table>.csv`` with the reason). The tables' rows and
    dates, the notes and the rows set aside go to the run's manifest too (:func:`record`).
    """
    if isinstance(dataset, Partitioned):
        record(output_dir, data={"tables": dataset.summary["tables"], "notes": dataset.notes, "set_aside": []})
        return "**The data as loaded**\n\n" + "\n".join(f"- {note}" for note in dataset.notes)
    lines = [f"- {note}" for note in dataset.notes]
    set_aside = dataset.rejected_summary()
    tables = dataset_summary(dataset.tables, dataset.spec)["tables"]
    record(
        output_dir,
        data={
            "tables": {name: {k: t[k] for k in ("rows", "first", "last")} for name, t in tables.items()},
            "notes": list(dataset.notes),
            "set_aside": set_aside,
        },
    )
    if set_aside:
        where = ""
        if output_dir:
            written = write_rejected(dataset, Path(output_dir) / "rejected")
            where = " They are in " + ", ".join(f"`rejected/{p.name}`" for p in written) + ", with the reason."
        lines += [f"- **Set aside** — {line}" for line in set_aside]
        lines.append(f"- Rows that break a rule were set aside and the report uses the rest.{where}")
    return ("**The data as loaded**\n\n" + "\n".join(lines)) if lines else ""


@dataclass(frozen=True)
class Attempt(Generic[T]):
    """A report section's value, or — when the data cannot give it — a sentence saying why.

    ``warnings`` holds what the call warned about (e.g. possible leakage), in words, for the
    report to show instead of a stray stderr block.
    """

    value: T | None
    note: str = ""
    warnings: tuple[str, ...] = ()


_TABLE_HINTS = {
    "customers": "customer_id, created_at",
    "transactions": "order_id, customer_id, ordered_at, amount",
    "stage_events": "opportunity_id, customer_id, stage, entered_at",
    "surveys": "customer_id, responded_at, csat or nps",
}


def attempt(function: Callable[..., T], *args: Any, **kwargs: Any) -> Attempt[T]:
    """Run a section's package call; if the data cannot give it, keep the reason as a sentence.

    Only data-dependent failures become sentences — a table the dataset lacks, too few rows for a
    model (:class:`DataValidationError`, :class:`ModelError`); a wrong parameter still fails the run.
    """
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = function(*args, **kwargs)
        said = tuple(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, UserWarning)))
        return Attempt(value, warnings=said)
    except DataValidationError as exc:
        needed = [p.table for p in exc.problems if p.rule.startswith("this step needs the")]
        if needed:
            table = needed[0]
            return Attempt(
                None,
                f"No {table} table: this section needs one ({_TABLE_HINTS.get(table, 'see the data contract')}; "
                f"add {table}.csv or map it in funnel.toml).",
            )
        return Attempt(None, f"Not shown: {exc}")
    except (ModelError, ReportError) as exc:
        return Attempt(None, f"Not shown: {exc}")


def scoring_moment(dataset: Dataset) -> datetime:
    """The moment after the data: midnight after the last dated row of any table."""
    lasts = [t["last"] for t in dataset_summary(dataset.tables, dataset.spec)["tables"].values() if t["last"] != "None"]
    if not lasts:
        raise ReportError("no table has dates: there is no 'now' to score at.")
    last = datetime.fromisoformat(max(lasts))
    return datetime.combine(last.date() + timedelta(days=1), datetime.min.time())


def dataset_window(dataset: Dataset) -> str:
    """``first … last`` dates over the dataset's tables, for report headers."""
    summary = dataset_summary(dataset.tables, dataset.spec)["tables"]
    first = min(t["first"] for t in summary.values())[:10]
    last = max(t["last"] for t in summary.values())[:10]
    return f"{first} … {last}"


def header(dataset: Dataset | Partitioned, title: str, *, period: str = "", output_dir: str = "") -> str:
    """The header every report opens with (HTML), and the page's title for the runner.

    Title and period ("Sales performance", "June 2026"), when it was generated, and the data's
    window ("from data of 3 January 2024 to 30 June 2026"). Money is written in the dataset's
    currency from here on (``[report] currency``).
    """
    if isinstance(dataset, Partitioned):
        use_currency(dataset.currency)
        summary = dataset.summary["tables"]
    else:
        use_currency(dataset.config.currency)
        summary = dataset_summary(dataset.tables, dataset.spec)["tables"]
    firsts = [t["first"] for t in summary.values() if t["first"] != "None"]
    lasts = [t["last"] for t in summary.values() if t["last"] != "None"]
    window = (
        f"from data of {period_label(min(firsts), 'day')} to {period_label(max(lasts), 'day')}"
        if firsts and lasts
        else "from undated data"
    )
    generated = datetime.now().astimezone()
    subtitle = period or (f"Data up to {period_label(max(lasts), 'day')}" if lasts else "Undated data")
    record(output_dir, title=f"{title} · {subtitle}", data_window=window)
    return report_header(
        title,
        subtitle,
        [f"Generated {generated:%d %B %Y, %H:%M %Z} {window}."],
    )


_FAIR = ("base_rate", "mean_score", "selection_rate", "selection_ratio", "eo_difference", "calibration_gap", "roc_auc")


def fairness_html(
    audit: pl.DataFrame,
    sentence: str,
    proxies: pl.DataFrame,
    without: pl.DataFrame | None = None,
    without_fairness: pl.DataFrame | None = None,
) -> list[str]:
    """The fairness audit in a report: the sentence and the groups of each sensitive column; the rest collapsed."""
    out = ["<h4>Does it treat groups of customers alike?</h4>", _paragraph(sentence)]
    if audit.height == 0:
        return out
    columns = ["attribute", "group", "n"] + [f"{m}{e}" for m in _FAIR for e in ("", "_low", "_high")]
    columns += ["p_below_rest", "flagged"]
    single = audit.filter(~pl.col("attribute").str.contains(" × "))
    out += [
        _paragraph(
            "Per group of 100 test rows or more: what happened (base rate), what the model said (mean score), the "
            "share it puts in the top quarter of scores and that share against the best-off group's (below 0.8 "
            "fails the four-fifths rule), the equal-opportunity difference (the share of the group's conversions "
            "selected, against the best-off group's), the calibration gap and the ROC AUC within the group. "
            "Intervals: 95%, a bootstrap over the rows."
        ),
        html_table(single.select([c for c in columns if c in single.columns])),
    ]
    parts = [
        _paragraph("Intersections of two sensitive columns with 100 rows or more."),
        html_table(audit.filter(pl.col("attribute").str.contains(" × ")).select(columns), max_rows=80),
        _paragraph(
            "Proxies: how strongly each feature goes with each sensitive column (η for numbers, Cramér's V for "
            "categories; 0.5 or more is a strong proxy): leaving the column out would not leave it out of the "
            "scores while these stay in."
        ),
        html_table(proxies.head(20)),
    ]
    if without is not None and without.height:
        parts += [
            _paragraph("Trained again without the sensitive columns: the ranking lost or gained, and the ratios then."),
            html_table(without),
            html_table(without_fairness if without_fairness is not None else pl.DataFrame()),
        ]
    compared = without is not None and without.height > 0
    out.append(
        details("Fairness: intersections, proxies" + (", without the sensitive columns" if compared else ""), *parts)
    )
    return out


def _paragraph(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"
