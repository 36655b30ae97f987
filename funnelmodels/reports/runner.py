"""Report runs: papermill executes a notebook, nbconvert renders HTML, outputs land atomically.

A run writes ``reports/NAME/<run id>/{report.html, report.ipynb, manifest.json, tables/}``
(``report_with_code.html`` too for the analyst view). It is written in a hidden staging
folder and swapped in only when everything succeeded, so a failed run never touches the
previous good report; the failed notebook is kept in ``reports/NAME/failed/<run id>/`` and
the error names the failing cell.
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
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from funnelmodels.config import load_config
from funnelmodels.data.io import fingerprint_files
from funnelmodels.errors import ConfigError, FunnelModelsError, ReportError, did_you_mean
from funnelmodels.outputs import MARKER, atomic_dir
from funnelmodels.provenance import MODEL_PACKAGES, REPORT_PACKAGES, git_commit, package_versions
from funnelmodels.reports.params import FAILED_FOLDER, ResolvedRun, resolve_run
from funnelmodels.reports.registry import notebooks_folder
from funnelmodels.reports.sections import FACTS_FILE

__all__ = [
    "ReportRun",
    "ReportsFailed",
    "run_report",
    "run_reports",
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
) -> ReportRun:
    """Execute notebook ``name`` with ``parameters`` and render it to HTML, atomically.

    Steps: resolve the parameters → execute the notebook (papermill) → render HTML (nbconvert)
    → write the manifest → swap the staging folder in for ``reports_dir/name/<run id>``.
    ``notebooks_dir`` defaults to the shipped notebooks.

    Raises
    ------
    ConfigError for an unknown report, parameter, missing data folder or unsafe name;
    ReportError when the notebook fails (the message names the cell and the error; the failed
    notebook is kept).
    """
    run = resolve_run(name, parameters, notebooks_dir if notebooks_dir is not None else notebooks_folder())
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
            executed = _execute(run, staging, failed_root=root, timeout=timeout)
        except (ReportError, KeyboardInterrupt) as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            manifest = _manifest(run, started, time.perf_counter() - clock, status=status, staging=staging)
            _write_manifest(root / FAILED_FOLDER / run.run_id, manifest | {"error": str(exc) or status})
            raise
        _render(executed, staging / "report.html", with_code=False)
        if with_code:
            _render(executed, staging / "report_with_code.html", with_code=True)
        manifest = _manifest(run, started, time.perf_counter() - clock, status="succeeded", staging=staging)
        _write_manifest(staging, manifest)
    return ReportRun(name=run.name, run_id=run.run_id, folder=target, html=target / "report.html", manifest=manifest)


def _execute(run: ResolvedRun, staging: Path, *, failed_root: Path, timeout: int) -> Path:
    """Execute the run's notebook into ``staging/report.ipynb``; a failure keeps the notebook and says where."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    executed = staging / "report.ipynb"
    kernel_log = staging.with_name(f"{staging.name}.kernel.log")
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
            run = run_report(name, own, reports_dir=reports_dir, notebooks_dir=folder, with_code=with_code)
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
