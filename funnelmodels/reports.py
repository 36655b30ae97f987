"""Report runs: papermill executes a notebook, nbconvert renders HTML, outputs land atomically.

A run writes ``reports/NAME/<run id>/{report.html, report.ipynb, manifest.json, tables/}``
(``report_with_code.html`` too for the analyst view). It is written in a hidden staging
folder and swapped in only when everything succeeded, so a failed run never touches the
previous good report; the failed notebook is kept in ``reports/NAME/failed/<run id>/`` and
the error names the failing cell.

The report *contents* come from the builder functions here (``sales_performance``, …), so
every number in a report can be found in one package function; notebooks only call them.
"""

from __future__ import annotations

import html
import json
import platform
import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar

import polars as pl

from funnelmodels.data import schema as s
from funnelmodels.data.io import Dataset, atomic_dir
from funnelmodels.errors import ConfigError, ReportError, did_you_mean
from funnelmodels.frames import collect
from funnelmodels.models.conversion import StageConversionModel
from funnelmodels.models.persist import ModelStore
from funnelmodels.models.predict import pipeline_value, score_from_history, score_open_opportunities
from funnelmodels.provenance import MODEL_PACKAGES, REPORT_PACKAGES, environment, git_commit, package_versions
from funnelmodels.segments import DEFAULT_SEGMENT, segment_label

T = TypeVar("T")

__all__ = [
    "REPORTS",
    "Attempt",
    "ReportRun",
    "SalesReport",
    "attempt",
    "check_period",
    "data_notes",
    "environment_summary",
    "run_report",
    "sales_performance",
    "satisfaction_overview",
    "save_tables",
    "scoring_moment",
]

REPORTS = ("sales_performance", "stage_conversion", "customer_satisfaction")
_PATH_PARAMETERS = ("data_dir", "model_dir", "targets_file")
NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_REMOTE_SCRIPT = re.compile(r"<script\b[^>]*\bsrc=\"https?://[^\"]*\"[^>]*>\s*</script>", re.IGNORECASE)
_REMOTE_MODULE = re.compile(
    r"<script\b[^>]*type=\"module\"[^>]*>(?:(?!</script>).)*https?://(?:(?!</script>).)*</script>",
    re.IGNORECASE | re.DOTALL,
)


@dataclass(frozen=True)
class ReportRun:
    """Where a finished report run wrote its files."""

    name: str
    run_id: str
    folder: Path
    html: Path
    manifest: dict[str, Any] = field(default_factory=dict)


def _safe_name(value: str, what: str) -> str:
    if not _SAFE.match(value) or ".." in value:
        raise ConfigError(
            f"{what} {value!r} is not allowed: use letters, digits, '.', '_' and '-' only (no '/' or '..'), "
            "so a report cannot be written outside reports/."
        )
    return value


def _coerce(name: str, value: Any, inferred: str | None) -> Any:
    """CLI values arrive as text; give them the parameter's declared type."""
    if not isinstance(value, str) or not inferred:
        return value
    try:
        if inferred == "int":
            return int(value)
        if inferred == "float":
            return float(value)
        if inferred == "bool":
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes")
    except ValueError:
        raise ConfigError(f"parameter {name} must be a {inferred}; received {value!r}.") from None
    return value


def _check_parameters(notebook: Path, parameters: Mapping[str, Any]) -> dict[str, Any]:
    import papermill as pm

    declared = pm.inspect_notebook(str(notebook))
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        listing = ", ".join(f"{n} ({d.get('help') or d.get('inferred_type_name')})" for n, d in declared.items())
        raise ConfigError(f"{notebook.name} has no parameter {unknown}; its parameters: {listing}.")
    return {k: _coerce(k, v, declared[k].get("inferred_type_name")) for k, v in parameters.items()}


def run_report(
    name: str,
    parameters: Mapping[str, Any] | None = None,
    *,
    reports_dir: str | Path = "reports",
    notebooks_dir: str | Path = NOTEBOOKS_DIR,
    with_code: bool = False,
    timeout: int = 900,
) -> ReportRun:
    """Execute notebook ``name`` with ``parameters`` and render it to HTML, atomically.

    Raises
    ------
    ConfigError for an unknown report, parameter or unsafe name; ReportError when the notebook
    fails (the message names the cell and the error; the failed notebook is kept).
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    name = _safe_name(name, "report name")
    notebook = Path(notebooks_dir) / f"{name}.ipynb"
    if not notebook.is_file():
        raise ConfigError(
            f"no report {name!r}; available: {', '.join(sorted(p.stem for p in Path(notebooks_dir).glob('*.ipynb')))}."
        )
    params = _check_parameters(notebook, dict(parameters or {}))
    # Paths given by the caller are relative to the caller's folder; the notebook runs in notebooks/.
    for key in _PATH_PARAMETERS:
        if params.get(key):
            params[key] = str(Path(params[key]).resolve())
    run_id = _safe_name(str(params.get("period") or "latest"), "period")
    root = Path(reports_dir) / name
    target = root / run_id
    started = datetime.now().astimezone()
    clock = time.perf_counter()
    with atomic_dir(target) as staging:
        params["output_dir"] = str(staging.resolve())
        executed = staging / "report.ipynb"
        try:
            pm.execute_notebook(
                str(notebook),
                str(executed),
                parameters=params,
                kernel_name="python3",
                progress_bar=False,
                cwd=str(Path(notebooks_dir)),
                execution_timeout=timeout,
            )
        except PapermillExecutionError as exc:
            failed = _keep_failed(executed, root, run_id)
            raise ReportError(
                f"report {name} failed in cell {exc.exec_count}: {exc.ename}: {str(exc.evalue).rstrip('.')}. "
                f"The failed notebook is saved in {failed}; the previous report (if any) is untouched.",
                notebook=str(failed),
                cell=exc.exec_count,
            ) from None
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM (see cli): keep what ran, then stop
            _keep_failed(executed, root, run_id)
            raise
        except Exception as exc:  # a dead kernel or a timeout: nbclient raises its own types
            failed = _keep_failed(executed, root, run_id)
            raise ReportError(
                f"report {name} did not finish: {type(exc).__name__}: {_first_line(exc)}. "
                f"The partial notebook is saved in {failed}; the previous report (if any) is untouched.",
                notebook=str(failed),
            ) from None
        _render(executed, staging / "report.html", with_code=False)
        if with_code:
            _render(executed, staging / "report_with_code.html", with_code=True)
        params.pop("output_dir")
        data_dir = params.get("data_dir") or _declared_default(notebook, "data_dir", Path(notebooks_dir))
        manifest = _manifest(name, run_id, params, data_dir, started, time.perf_counter() - clock)
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
    return ReportRun(name=name, run_id=run_id, folder=target, html=target / "report.html", manifest=manifest)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"


def _keep_failed(executed: Path, root: Path, run_id: str) -> Path:
    failed_dir = root / "failed" / run_id
    failed_dir.mkdir(parents=True, exist_ok=True)
    destination = failed_dir / "report.ipynb"
    if executed.is_file():
        shutil.copyfile(executed, destination)
    return destination


def _render(executed: Path, out: Path, *, with_code: bool) -> None:
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input = not with_code
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
    # The report must open offline: drop the template's CDN scripts (MathJax, require.js,
    # mermaid); our outputs are static HTML and embedded PNG charts.
    body = _REMOTE_MODULE.sub("", _REMOTE_SCRIPT.sub("", body))
    out.write_text(body, encoding="utf-8")


def _declared_default(notebook: Path, key: str, base: Path) -> str | None:
    import papermill as pm

    default = pm.inspect_notebook(str(notebook)).get(key, {}).get("default")
    return str((base / default.strip("\"'")).resolve()) if default else None


def _manifest(
    name: str, run_id: str, params: Mapping[str, Any], data_dir: str | None, started: datetime, seconds: float
) -> dict[str, Any]:
    from funnelmodels.config import load_config
    from funnelmodels.data.io import fingerprint_files

    fingerprint = None
    if data_dir:
        try:
            fingerprint = fingerprint_files(load_config(data_dir))
        except ConfigError:
            fingerprint = None
    return {
        "report": name,
        "run_id": run_id,
        "parameters": dict(params),
        "data_dir": data_dir,
        "data_fingerprint_sha256": fingerprint,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "packages": package_versions(MODEL_PACKAGES + REPORT_PACKAGES),
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now().astimezone().isoformat(timespec="seconds"),
        "duration_seconds": round(seconds, 2),
    }


def save_tables(output_dir: str, **tables: pl.DataFrame) -> None:
    """Write a report's key tables as CSV into ``output_dir/tables`` (nothing when run outside a report run)."""
    if not output_dir:
        return
    folder = Path(output_dir) / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        _safe_name(name, "table name")
        flat = frame.with_columns(pl.col(c).list.join("; ") for c, t in frame.schema.items() if t == pl.List(pl.String))
        flat.write_csv(folder / f"{name}.csv")


def data_notes(dataset: Dataset, output_dir: str = "") -> str:
    """Markdown on how the data was loaded: rows filtered, looked up or merged by funnel.toml, and
    rows set aside by ``drop_invalid`` (written to ``output_dir/rejected/<table>.csv`` with the
    reason). Empty when there is nothing to say."""
    from funnelmodels.data.io import write_rejected

    lines = [f"- {note}" for note in dataset.notes]
    set_aside = dataset.rejected_summary()
    if set_aside:
        where = ""
        if output_dir:
            written = write_rejected(dataset, Path(output_dir) / "rejected")
            where = " They are in " + ", ".join(f"`rejected/{p.name}`" for p in written) + ", with the reason."
        lines += [f"- **Set aside** — {line}" for line in set_aside]
        lines.append(f"- Rows that break a rule were set aside and the report uses the rest.{where}")
    return ("**The data as loaded**\n\n" + "\n".join(lines)) if lines else ""


def environment_summary() -> str:
    """HTML footer: package versions, Python and git commit (what made this report)."""
    items = environment()
    cells = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in items.items())
    return f'<details><summary>Environment</summary><table class="fm-table">{cells}</table></details>'


# --- report builders -----------------------------------------------------------------------------


def check_period(value: str, period_length: str, available: pl.Series, data_end: date | None = None) -> date:
    """Parse ``value`` (``2026-06``, ``2026-Q2``, ``2026-06-01``; empty = the latest full period) and check
    the data has it."""
    from funnelmodels.kpis import PERIODS

    if period_length not in PERIODS:
        raise ConfigError(f"period_length must be one of {', '.join(PERIODS)}; received {period_length!r}.")
    periods = sorted(available.to_list())
    if not periods:
        raise ReportError("the data has no transactions or closed opportunities in any period.")
    if not value:
        complete = [p for p in periods if data_end is None or _period_end(p, period_length) <= data_end]
        return complete[-1] if complete else periods[-1]
    try:
        quarter = re.fullmatch(r"(\d{4})-Q([1-4])", value)
        if quarter:
            parsed = date(int(quarter.group(1)), 3 * int(quarter.group(2)) - 2, 1)
        elif re.fullmatch(r"\d{4}-\d{2}", value):
            parsed = datetime.strptime(value, "%Y-%m").date()
        else:
            parsed = date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"period {value!r} is not a date like 2026-06, 2026-Q2 or 2026-06-01.") from None
    truncated = pl.Series([parsed]).cast(pl.Datetime).dt.truncate(PERIODS[period_length]).dt.date()[0]
    if truncated not in periods:
        raise ConfigError(
            f"period {value!r} has no data; the data covers {periods[0]} to {periods[-1]} "
            f"({len(periods)} {period_length}s)."
        )
    return truncated


@dataclass(frozen=True)
class SalesReport:
    """Everything the sales-performance report shows, computed by :func:`sales_performance`.

    A section the data cannot give is None, and ``missing`` holds one sentence per such
    section (``sales``, ``revenue``, ``segments``, ``funnel``, ``pipeline``) saying what is
    missing and how to add it.
    """

    period: date | None
    period_length: str
    kpis: pl.DataFrame | None
    changes: pl.DataFrame | None
    year_over_year: pl.DataFrame | None
    segments: pl.DataFrame | None
    funnel: pl.DataFrame | None
    cumulative: pl.DataFrame | None
    time_to_close: dict[str, Any] | None
    pipeline: pl.DataFrame | None
    attainment: pl.DataFrame | None
    notes: list[str]
    missing: dict[str, str] = field(default_factory=dict)


def sales_performance(
    dataset: Dataset,
    *,
    period: str = "",
    period_length: str = "month",
    segment: str = "region",
    targets_file: str = "",
    model_dir: str = "",
) -> SalesReport:
    """The sales-performance measurement of one period: KPIs, changes, segments, funnel, pipeline.

    The pipeline forecast is the open deals' amount × win probability: from the model in
    ``model_dir`` (its conversion/lightgbm part) when given, else from history (what past deals
    that had waited as long in the same stage went on to do). Sections the data cannot give are
    left empty with a sentence in ``missing``; the default segment ``region`` is skipped, with a
    sentence, when the customers table has no such column.
    """
    from funnelmodels.funnel import data_end, stale_losses, with_stale_losses
    from funnelmodels.kpis import attainment, counting_notes, kpi_changes, sales_kpi_table

    notes: list[str] = []
    missing: dict[str, str] = {}
    transactions = dataset.lazy("transactions") if dataset.has("transactions") else None
    events = dataset.lazy("stage_events") if dataset.has("stage_events") else None
    if transactions is None:
        missing["revenue"] = (
            "No transactions table: revenue, orders, average sale and new and returning customers need one "
            "(order_id, customer_id, ordered_at, amount; add transactions.csv or map it in funnel.toml)."
        )
    if events is None:
        missing["funnel"] = missing["pipeline"] = (
            "No stage_events table: win rate, funnel and pipeline need one (opportunity_id, customer_id, stage, "
            "entered_at; add stage_events.csv or map it in funnel.toml)."
        )
    if transactions is None and events is None:
        missing["sales"] = "No sales figures: they need a transactions or a stage_events table."
        return SalesReport(None, period_length, None, None, None, None, None, None, None, None, None, notes, missing)
    if events is not None and dataset.spec.stale_after_days:
        stale = stale_losses(events, dataset.spec, end=data_end(events)).select(pl.len()).collect().item()
        notes.append(
            f"{stale:,} opportunities had no event for {dataset.spec.stale_after_days} days and count as lost on "
            "that day (stale_after_days in funnel.toml)."
        )
    # Win rates count the losses the stale rule infers, in the period they happen.
    closed = with_stale_losses(events, dataset.spec) if events is not None else None
    rules = dataset.config.counting
    if transactions is not None:
        notes.extend(counting_notes(transactions, rules))
    kpis = sales_kpi_table(
        transactions, closed, period=period_length, won=dataset.spec.won, lost=dataset.spec.lost, rules=rules
    )
    last_day = _data_end(transactions, events)
    chosen = check_period(period, period_length, kpis["period"], last_day)
    if last_day is not None and _period_end(chosen, period_length) > last_day:
        notes.append(
            f"The {period_length} starting {chosen} is not complete: the data ends on "
            f"{last_day - timedelta(days=1)}. Its figures cover part of it, and its changes compare part of a "
            f"{period_length} with a whole one."
        )
    kpis = kpis.filter(pl.col("period") <= chosen)
    changes = kpi_changes(kpis).filter(pl.col("period") == chosen)
    lag = {"month": 12, "quarter": 4, "week": 52, "day": 365, "year": 1}[period_length]
    yoy = kpi_changes(kpis, lag=lag).filter(pl.col("period") == chosen)
    segments = _segment_table(dataset, transactions, closed, segment, period_length, chosen, missing)
    funnel = cumulative = close = pipeline = None
    if events is not None:
        funnel, cumulative, close, pipeline = _funnel_and_pipeline(
            dataset, events, chosen, period_length, model_dir, notes, missing
        )
    goals = None
    if targets_file:
        path = Path(targets_file)
        if not path.is_file():
            raise ConfigError(f"targets_file {targets_file!r} does not exist.")
        goals = attainment(kpis, pl.read_csv(path)).filter(pl.col("period") == chosen)
    return SalesReport(
        chosen, period_length, kpis, changes, yoy, segments, funnel, cumulative, close, pipeline, goals, notes, missing
    )


def _segment_table(
    dataset: Dataset,
    transactions: pl.LazyFrame | None,
    closed: pl.LazyFrame | None,
    segment: str,
    period_length: str,
    chosen: date,
    missing: dict[str, str],
) -> pl.DataFrame | None:
    from funnelmodels.kpis import sales_kpi_table

    if not segment:
        return None
    if not dataset.has("customers") or transactions is None:
        missing["segments"] = "No segment table: it needs a customers table and a transactions table."
        return None
    customers = dataset.lazy("customers")
    names = [c for c in customers.collect_schema().names() if c != s.CUSTOMER_ID]
    if segment not in names:
        if segment == DEFAULT_SEGMENT:
            missing["segments"] = (
                f"No segment table: the customers table has no {segment} column; pass -p segment COLUMN "
                f"(one of {', '.join(names)})."
            )
            return None
        raise ConfigError(
            f"segment {segment!r} is not a customers column{did_you_mean(segment, names)}; "
            f"available: {', '.join(names)}."
        )
    tx = transactions.join(customers.select(s.CUSTOMER_ID, segment), on=s.CUSTOMER_ID, how="left")
    ev = (
        closed.join(customers.select(s.CUSTOMER_ID, segment), on=s.CUSTOMER_ID, how="left")
        if closed is not None
        else None
    )
    labelled = [f.with_columns(segment_label(pl.col(segment))) if f is not None else None for f in (tx, ev)]
    table = sales_kpi_table(
        labelled[0],
        labelled[1],
        period=period_length,
        by=segment,
        won=dataset.spec.won,
        lost=dataset.spec.lost,
        rules=dataset.config.counting,
    )
    return table.filter(pl.col("period") == chosen)


def _funnel_and_pipeline(
    dataset: Dataset,
    events: pl.LazyFrame,
    chosen: date,
    period_length: str,
    model_dir: str,
    notes: list[str],
    missing: dict[str, str],
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any], pl.DataFrame | None]:
    from funnelmodels.errors import ModelError
    from funnelmodels.funnel import build_transitions
    from funnelmodels.rates import conversion_table, cumulative_conversion_table, time_to_close

    end = datetime.combine(_period_end(chosen, period_length), datetime.min.time())
    transitions = build_transitions(events, dataset.spec, end=end)
    funnel = conversion_table(transitions, dataset.spec)
    cumulative = cumulative_conversion_table(transitions, dataset.spec, end=end)
    close = time_to_close(events, dataset.spec, end=end)
    pipeline = None
    try:
        pipeline = _pipeline(dataset, end, model_dir, notes)
    except ModelError as exc:
        missing["pipeline"] = f"No pipeline forecast at {end:%Y-%m-%d}: {exc}"
    if s.AMOUNT not in events.collect_schema().names():
        if pipeline is not None:
            pipeline = pipeline.drop("pipeline_amount", s.EXPECTED_VALUE)
        missing["pipeline_value"] = (
            "The stage events have no deal value (stage_events.amount): the pipeline counts deals and their win "
            "probability but cannot say what they are worth; add amount to stage_events for its value."
        )
    return funnel, cumulative, close, pipeline


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
    import warnings

    from funnelmodels.errors import DataValidationError, ModelError

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


def _data_end(transactions: pl.LazyFrame | None, events: pl.LazyFrame | None) -> date | None:
    """The day after the last recorded activity: a period ending by then is complete."""
    ends = []
    if transactions is not None:
        ends.append(transactions.select(pl.col(s.ORDERED_AT).max()).pipe(collect).item())
    if events is not None:
        ends.append(events.select(pl.col(s.ENTERED_AT).max()).pipe(collect).item())
    ends = [e for e in ends if e is not None]
    return (max(ends) + timedelta(days=1)).date() if ends else None


def _period_end(start: date, period_length: str) -> date:
    from funnelmodels.kpis import PERIODS

    probe = pl.Series([datetime.combine(start, datetime.min.time())]).dt.offset_by(PERIODS[period_length])
    return probe.dt.date()[0]


def _pipeline(dataset: Dataset, end: datetime, model_dir: str, notes: list[str]) -> pl.DataFrame:
    if model_dir:
        model = StageConversionModel.load(ModelStore(Path(model_dir)).conversion("lightgbm"))
        scored = score_open_opportunities(dataset, model, end)
        method = "LightGBM model"
    else:
        scored = score_from_history(dataset, end)
        method = (
            "history: for each deal, what past deals that had waited as long in the same stage went on to do, "
            "times the share of each later stage's entries that converted"
        )
    notes.append(f"Pipeline forecast at {end:%Y-%m-%d} from {method}.")
    return pipeline_value(scored, by=s.STAGE, spec=dataset.spec)


def scoring_moment(dataset: Dataset) -> datetime:
    """The moment after the data: midnight after the last dated row of any table."""
    from funnelmodels.data.validate import dataset_summary

    lasts = [t["last"] for t in dataset_summary(dataset.tables, dataset.spec)["tables"].values() if t["last"] != "None"]
    if not lasts:
        raise ReportError("no table has dates: there is no 'now' to score at.")
    last = datetime.fromisoformat(max(lasts))
    return datetime.combine(last.date() + timedelta(days=1), datetime.min.time())


def dataset_window(dataset: Dataset) -> str:
    """``first … last`` dates over the dataset's tables, for report headers."""
    from funnelmodels.data.validate import dataset_summary

    summary = dataset_summary(dataset.tables, dataset.spec)["tables"]
    first = min(t["first"] for t in summary.values())[:10]
    last = max(t["last"] for t in summary.values())[:10]
    return f"{first} … {last}"


@dataclass(frozen=True)
class SatisfactionOverview:
    """CSAT/NPS per period, the change of the last period, segments and the scoring moment."""

    trend: pl.DataFrame
    change: dict[str, dict[str, float]]
    change_text: str
    segments: pl.DataFrame | None
    as_of: datetime
    segment_note: str = ""


def satisfaction_overview(
    dataset: Dataset, *, period_length: str = "month", segment: str = "region"
) -> SatisfactionOverview:
    """Trend, last-period change (with tests) and segment table of CSAT and NPS."""
    from funnelmodels.kpis import satisfaction_change, satisfaction_table

    surveys = dataset.lazy("surveys")
    scale = dataset.config.scale
    if s.RESPONDED_AT not in surveys.collect_schema().names():
        raise ReportError(
            "the surveys have no dates (no responded_at column): there is no trend to show; add the answer's date "
            "to show one."
        )
    trend = satisfaction_table(surveys, period=period_length, satisfied_from=scale.satisfied_from)
    if trend.height == 0:
        raise ReportError("the surveys table has no responses.")
    last = trend["period"][-1]
    starts = [datetime.combine(p, datetime.min.time()) for p in trend["period"].to_list()]
    end = datetime.combine(_period_end(last, period_length), datetime.min.time())
    change: dict[str, dict[str, float]] = {}
    text = "Only one period of surveys: no change to report."
    if len(starts) > 1:
        change = satisfaction_change(
            surveys, before=(starts[-2], starts[-1]), after=(starts[-1], end), satisfied_from=scale.satisfied_from
        )
        parts = []
        for key, label, unit in (
            ("csat_mean", f"{scale.name} mean", ""),
            ("satisfied_share", f"Share satisfied ({scale.satisfied_words})", "%"),
            ("nps", "NPS", " pts"),
        ):
            if key in change:
                c = change[key]
                factor = 100 if unit == "%" else 1
                verdict = "a significant change" if c["p_value"] < 0.05 else "no significant change"
                parts.append(
                    f"- **{label}**: {factor * c['before']:.2f}{unit} → {factor * c['after']:.2f}{unit} "
                    f"({verdict}, p = {c['p_value']:.3f})"
                )
        text = f"Latest {period_length} ({last}) against the one before:\n\n" + "\n".join(parts)
    segments, segment_note = None, ""
    if segment and not dataset.has("customers"):
        segment_note = "No segment table: it needs a customers table."
    elif segment:
        names = [c for c in dataset.lazy("customers").collect_schema().names() if c != s.CUSTOMER_ID]
        if segment not in names:
            if segment != DEFAULT_SEGMENT:
                raise ConfigError(
                    f"segment {segment!r} is not a customers column{did_you_mean(segment, names)}; "
                    f"available: {', '.join(names)}."
                )
            segment_note = (
                f"No segment table: the customers table has no {segment} column; pass -p segment COLUMN "
                f"(one of {', '.join(names)})."
            )
        else:
            customers = dataset.lazy("customers").select(s.CUSTOMER_ID, segment_label(pl.col(segment)))
            joined = surveys.join(customers, on=s.CUSTOMER_ID, how="left")
            # Segments over the last twelve months: per-period segment cells are too small to read.
            year_ago = end - timedelta(days=365)
            recent = joined.filter(pl.col(s.RESPONDED_AT) >= year_ago).with_columns(
                pl.lit(year_ago).alias(s.RESPONDED_AT)
            )
            segments = satisfaction_table(recent, period="year", by=segment, satisfied_from=scale.satisfied_from).drop(
                "period"
            )
    return SatisfactionOverview(trend, change, text, segments, end, segment_note)
