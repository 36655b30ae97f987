"""Report runs: papermill executes a notebook, nbconvert renders HTML, outputs land atomically.

A run writes ``reports/NAME/<run id>/{report.html, report.ipynb, manifest.json, tables/}``
(``report_with_code.html`` too for the analyst view). It is written in a hidden staging
folder and swapped in only when everything succeeded, so a failed run never touches the
previous good report; the failed notebook is kept in ``reports/NAME/failed/<run id>/`` and
the error names the failing cell.

Besides ``latest``, a finished run is kept under its resolved period (``2026-06``, ``2026-Q2``;
``data-to-2026-06-30`` for a report without a period), with ``_LABEL`` when a label is given,
and ``reports/NAME/index.html`` lists every kept run: what a stakeholder bookmarks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from funnelmodels.config import PARTITIONS_FILE, load_config
from funnelmodels.data.io import fingerprint_files
from funnelmodels.display.html import PAGE_SCRIPT, index_page
from funnelmodels.distributed.partition import read_partitioned
from funnelmodels.errors import ConfigError, FunnelModelsError, ReportError, did_you_mean
from funnelmodels.labels import day_text
from funnelmodels.outputs import MARKER, atomic_dir
from funnelmodels.progress import PROGRESS_ENV
from funnelmodels.provenance import MODEL_PACKAGES, REPORT_PACKAGES, git_commit, package_versions
from funnelmodels.reports.params import FAILED_FOLDER, ResolvedRun, resolve_run, safe_name
from funnelmodels.reports.registry import notebooks_folder
from funnelmodels.reports.sections import FACTS_FILE

__all__ = [
    "ReportRun",
    "ReportsFailed",
    "run_report",
    "run_reports",
    "write_index",
]


MANIFEST_FILE = "manifest.json"

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


def run_report(
    name: str,
    parameters: Mapping[str, Any] | None = None,
    *,
    reports_dir: str | Path = "reports",
    notebooks_dir: str | Path | None = None,
    with_code: bool = False,
    timeout: int = 900,
    label: str = "",
) -> ReportRun:
    """Execute notebook ``name`` with ``parameters`` and render it to HTML, atomically.

    Steps: resolve the parameters → execute the notebook (papermill) → render HTML (nbconvert)
    → write the manifest → swap the staging folder in for ``reports_dir/name/<run id>``.
    ``notebooks_dir`` defaults to the shipped notebooks. The finished run is also kept under its
    resolved period (and ``label``), and the report's ``index.html`` is rewritten.

    Raises
    ------
    ConfigError for an unknown report, parameter, missing data folder or unsafe name;
    ReportError when the notebook fails (the message names the cell and the error; the failed
    notebook is kept).
    """
    run = resolve_run(name, parameters, notebooks_dir if notebooks_dir is not None else notebooks_folder())
    if label:
        safe_name(label, "label")
    root = Path(reports_dir) / run.name
    target = root / run.run_id
    started = datetime.now().astimezone()
    clock = time.perf_counter()
    inputs = [Path(str(run.parameters[k])) for k in ("data_dir", "model_dir", "targets_file") if run.parameters.get(k)]
    output = atomic_dir(
        target, command="report", looks_like=lambda folder: (folder / "manifest.json").is_file(), inputs=inputs
    )
    with output as staging:
        try:
            _warm_renderer()  # while the kernel runs
            executed = _execute(run, staging, failed_root=root, timeout=timeout)
        except (ReportError, KeyboardInterrupt) as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            manifest = _manifest(run, started, time.perf_counter() - clock, status=status, staging=staging)
            _write_manifest(root / FAILED_FOLDER / run.run_id, manifest | {"error": str(exc) or status})
            write_index(root)
            raise
        title = _facts(staging).get("title", run.name.replace("_", " ").capitalize())
        _render(executed, staging / "report.html", with_code=False, title=title)
        if with_code:
            _render(executed, staging / "report_with_code.html", with_code=True, title=title)
        manifest = _manifest(run, started, time.perf_counter() - clock, status="succeeded", staging=staging)
        _write_manifest(staging, manifest)
    kept = _archive_name(manifest, label)
    if kept and kept != run.run_id:
        try:
            _keep_copy(target, root / kept, inputs)
        except FunnelModelsError as exc:  # a folder someone else wrote, or a run writing it now
            warnings.warn(f"the report is published in {target} but not kept as {kept}: {exc}", stacklevel=2)
    write_index(root)
    return ReportRun(name=run.name, run_id=run.run_id, folder=target, html=target / "report.html", manifest=manifest)


def _when(stamp: str) -> str:
    """``27 Nov 2026, 17:32 UTC`` from an ISO time stamp (as it was when it cannot be read)."""
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    return f"{day_text(moment)}, {moment:%H:%M %Z}".strip()


def _facts(staging: Path) -> dict[str, Any]:
    path = staging / FACTS_FILE
    facts: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return facts


def _archive_name(manifest: Mapping[str, Any], label: str) -> str:
    """The folder a run is kept in: its resolved period, else the data's last day; ``_label`` added."""
    period, length = manifest.get("period"), manifest.get("period_length")
    name = ""
    if period and length:
        day = datetime.fromisoformat(str(period)).date()
        name = {
            "month": f"{day:%Y-%m}",
            "quarter": f"{day.year}-Q{(day.month - 1) // 3 + 1}",
            "week": f"{day:%G-W%V}",
            "year": f"{day.year}",
        }.get(str(length), f"{day:%Y-%m-%d}")
    else:
        lasts = [
            t["last"]
            for t in manifest.get("data", {}).get("tables", {}).values()
            if t.get("last") not in (None, "None")
        ]
        if lasts:
            name = f"data-to-{max(lasts)[:10]}"
    if name and label:
        name = f"{name}_{label}"
    return name


def _keep_copy(source: Path, target: Path, inputs: Sequence[Path]) -> None:
    """Copy a published run to its dated folder, atomically (the copy's manifest names both)."""
    looks_like: Callable[[Path], bool] = lambda folder: (folder / MANIFEST_FILE).is_file()  # noqa: E731
    with atomic_dir(target, command="report", looks_like=looks_like, inputs=inputs) as staging:
        for item in source.iterdir():
            if item.name == MARKER:
                continue
            if item.is_dir():
                shutil.copytree(item, staging / item.name)
            else:
                shutil.copy2(item, staging / item.name)
        manifest = json.loads((staging / MANIFEST_FILE).read_text(encoding="utf-8"))
        _write_manifest(staging, manifest | {"kept_as": target.name})


def write_index(root: Path) -> Path:
    """``root/index.html``: every kept run of one report — period, data window, status, when — newest first.

    Failed runs (``failed/<run id>``) are listed too, with their error. The page is replaced
    atomically: a reader never sees half of it.
    """
    entries = []
    for manifest_file in [*root.glob(f"*/{MANIFEST_FILE}"), *root.glob(f"{FAILED_FOLDER}/*/{MANIFEST_FILE}")]:
        folder = manifest_file.parent
        if folder.name.startswith("."):
            continue
        try:
            manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        entries.append((folder, manifest))
    entries.sort(key=lambda e: str(e[1].get("finished", "")), reverse=True)
    rows = []
    for folder, manifest in entries:
        failed = folder.parent.name == FAILED_FOLDER
        page = folder / "report.html"
        rows.append(
            {
                "run": ("failed/" if failed else "") + folder.name,
                "href": page.relative_to(root).as_posix() if page.is_file() else "",
                "title": str(manifest.get("title", "")),
                "data_window": str(manifest.get("data_window", "")),
                "status": str(manifest.get("status", "")),
                "generated": _when(str(manifest.get("finished", ""))),
                "error": str(manifest.get("error", "")),
            }
        )
    index = root / "index.html"
    root.mkdir(parents=True, exist_ok=True)
    partial = root / f".index.html.partial-{os.getpid()}"
    partial.write_text(index_page(root.name.replace("_", " ").capitalize(), rows), encoding="utf-8")
    os.replace(partial, index)
    return index


def _execute(run: ResolvedRun, staging: Path, *, failed_root: Path, timeout: int) -> Path:
    """Execute the run's notebook into ``staging/report.ipynb``; a failure keeps the notebook and says where."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    executed = staging / "report.ipynb"
    kernel_log = staging.with_name(f"{staging.name}.kernel.log")
    # No progress bars in a report's notebook: nobody watches it run, and it would keep them as output.
    before = os.environ.get(PROGRESS_ENV)
    os.environ[PROGRESS_ENV] = "0"
    try:
        with _kernel_stderr(kernel_log):
            pm.execute_notebook(
                str(run.notebook),
                str(executed),
                parameters=run.parameters | {"output_dir": str(staging.resolve())},
                kernel_name="python3",
                progress_bar=False,
                cwd=str(run.notebook.parent),
                execution_timeout=timeout,
            )
    except PapermillExecutionError as exc:
        failed = _keep_failed(executed, failed_root, run.run_id, kernel_log)
        raise ReportError(
            f"report {run.name} failed in cell {exc.exec_count}: {exc.ename}: {str(exc.evalue).rstrip('.')}. "
            f"The failed notebook is saved in {failed}; the previous report (if any) is untouched.",
            notebook=str(failed),
            cell=exc.exec_count,
        ) from None
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (see cli): keep what ran, then stop
        _keep_failed(executed, failed_root, run.run_id, kernel_log)
        raise
    except Exception as exc:  # a dead kernel or a timeout: nbclient raises its own types
        failed = _keep_failed(executed, failed_root, run.run_id, kernel_log)
        raise ReportError(
            f"report {run.name} did not finish: {type(exc).__name__}: {_first_line(exc)}. "
            f"The partial notebook is saved in {failed}; the previous report (if any) is untouched.",
            notebook=str(failed),
        ) from None
    finally:
        kernel_log.unlink(missing_ok=True)
        if before is None:
            os.environ.pop(PROGRESS_ENV, None)
        else:
            os.environ[PROGRESS_ENV] = before
    return executed


@contextlib.contextmanager
def _kernel_stderr(log: Path) -> Iterator[None]:
    """Send what the kernel writes to stderr (it inherits file descriptor 2) to ``log``.

    ipykernel warns about its transport on every start and prints its own lines when it is
    interrupted: noise in a scheduled run's log. A failed run keeps the log beside its notebook.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with log.open("ab") as handle:
            os.dup2(handle.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"


def _keep_failed(executed: Path, root: Path, run_id: str, kernel_log: Path) -> Path:
    failed_dir = root / FAILED_FOLDER / run_id
    failed_dir.mkdir(parents=True, exist_ok=True)
    destination = failed_dir / "report.ipynb"
    if executed.is_file():
        shutil.copyfile(executed, destination)
    if kernel_log.is_file():
        shutil.copyfile(kernel_log, failed_dir / "kernel.log")
    return destination


_RENDERER: dict[str, Any] = {}
_RENDERER_LOCK = threading.Lock()


def _warm_renderer() -> None:
    """Load nbconvert and compile its lab template in the background (0.25 s of every report's floor).

    Started before the notebook runs: the kernel does the work meanwhile and this process waits.
    """
    if "html" not in _RENDERER:
        threading.Thread(target=_html_exporter, name="warm-html", daemon=True).start()


def _html_exporter() -> Any:
    """The one HTML exporter of this process (lab template, prompts hidden), made on first use."""
    with _RENDERER_LOCK:
        if "html" not in _RENDERER:
            import nbformat
            from nbconvert import HTMLExporter

            exporter = HTMLExporter(template_name="lab")
            exporter.exclude_input_prompt = True
            exporter.exclude_output_prompt = True
            exporter.from_notebook_node(nbformat.v4.new_notebook())  # loads and compiles the template
            _RENDERER["html"] = exporter
        return _RENDERER["html"]


def _render(executed: Path, out: Path, *, with_code: bool, title: str) -> None:
    import nbformat

    exporter = _html_exporter()
    exporter.exclude_input = not with_code
    book = nbformat.read(executed, as_version=4)
    book.metadata["title"] = title
    body, _ = exporter.from_notebook_node(book, resources={"metadata": {"name": title}})
    # The report must open offline: drop the template's CDN scripts (MathJax, require.js,
    # mermaid); our outputs are static HTML and inline SVG charts. Then the one copy of the
    # tables' sort-and-filter script.
    body = _REMOTE_MODULE.sub("", _REMOTE_SCRIPT.sub("", body))
    at = body.rfind("</body>")
    body = body[:at] + PAGE_SCRIPT + body[at:] if at >= 0 else body + PAGE_SCRIPT
    out.write_text(body, encoding="utf-8")


def _write_manifest(folder: Path, manifest: Mapping[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")


def _files(staging: Path) -> list[dict[str, Any]]:
    """Every file of the run (path, bytes, sha256): what a reader can check the published run against."""
    out = []
    for path in sorted(p for p in staging.rglob("*") if p.is_file() and p.name not in (MARKER, MANIFEST_FILE)):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        out.append({"path": path.relative_to(staging).as_posix(), "bytes": path.stat().st_size, "sha256": digest})
    return out


def _manifest(run: ResolvedRun, started: datetime, seconds: float, *, status: str, staging: Path) -> dict[str, Any]:
    """What made the report and what it holds: status, parameters, the data, versions, timing, files.

    The notebook's own facts (the resolved period, the tables' rows and dates, notes, warnings:
    see :func:`funnelmodels.reports.sections.record`) are merged in; their file is not kept.
    """
    facts_file = staging / FACTS_FILE
    facts = json.loads(facts_file.read_text(encoding="utf-8")) if facts_file.is_file() else {}
    facts_file.unlink(missing_ok=True)
    fingerprint = None
    if run.data_dir:
        try:
            fingerprint = fingerprint_files(load_config(run.data_dir))
        except ConfigError:
            fingerprint = None
        if (Path(run.data_dir) / PARTITIONS_FILE).is_file():  # the partitions' own fingerprint
            with contextlib.suppress(ConfigError):
                fingerprint = read_partitioned(run.data_dir).fingerprint
    return {
        "report": run.name,
        "status": status,
        "run_id": run.run_id,
        "parameters": dict(run.parameters),
        "data_dir": run.data_dir,
        "data_fingerprint_sha256": fingerprint,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "packages": package_versions(MODEL_PACKAGES + REPORT_PACKAGES),
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now().astimezone().isoformat(timespec="seconds"),
        "duration_seconds": round(seconds, 2),
        **facts,
        "files": _files(staging) if status == "succeeded" else [],
    }


def run_reports(
    names: Sequence[str],
    parameters: Mapping[str, Any] | None = None,
    *,
    reports_dir: str | Path = "reports",
    notebooks_dir: str | Path | None = None,
    with_code: bool = False,
    progress: Callable[[str], None] | None = None,
    label: str = "",
) -> list[ReportRun]:
    """Run several reports one after the other with shared ``parameters`` (what ``report --all`` does).

    With more than one report, each gets only the parameters its notebook declares (``model_dir``
    goes to the reports that take one); a parameter no notebook declares is refused before any
    run. Every report runs even when one fails; ``progress`` receives a line before and after
    each run.

    Raises
    ------
    ReportsFailed after the last run when any failed: the finished runs and each failure.
    """
    import papermill as pm

    folder = Path(notebooks_dir) if notebooks_dir is not None else notebooks_folder()
    say = progress or (lambda line: None)
    if label:
        safe_name(label, "label")  # refused before any run starts
    given = dict(parameters or {})
    declared = (
        {name: set(pm.inspect_notebook(str(folder / f"{name}.ipynb"))) for name in names} if len(names) > 1 else {}
    )
    if declared:
        unknown = sorted(set(given) - set().union(*declared.values()))
        if unknown:
            everything = sorted(set().union(*declared.values()))
            raise ConfigError(
                f"no report has a parameter {unknown}{did_you_mean(unknown[0], everything)}; "
                f"their parameters: {', '.join(everything)}."
            )
    runs: list[ReportRun] = []
    failures: dict[str, FunnelModelsError] = {}
    for name in names:
        own = {k: v for k, v in given.items() if name not in declared or k in declared[name]}
        say(f"report {name}: running the notebook")
        try:
            run = run_report(name, own, reports_dir=reports_dir, notebooks_dir=folder, with_code=with_code, label=label)
        except FunnelModelsError as exc:
            if len(names) == 1:
                raise
            say(f"report {name}: failed: {exc}")
            failures[name] = exc
            continue
        say(f"report {name}: {run.html} ({run.manifest['duration_seconds']:.0f}s)")
        runs.append(run)
    if failures:
        raise ReportsFailed(runs, failures)
    return runs


class ReportsFailed(ReportError):
    """Some reports of a :func:`run_reports` call failed; the others finished.

    ``runs`` holds the finished runs, ``failures`` each failed report's error.
    """

    def __init__(self, runs: list[ReportRun], failures: Mapping[str, FunnelModelsError]):
        lines = "\n".join(f"  {name}: {error}" for name, error in failures.items())
        super().__init__(f"{len(failures)} of {len(runs) + len(failures)} reports failed:\n{lines}")
        self.runs = runs
        self.failures = dict(failures)
