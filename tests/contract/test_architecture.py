"""The package's layers: no import loop, no import from a lower layer up to a higher one.

Every module of ``funnelmodels`` is placed in :data:`LAYERS` (ARCHITECTURE.md draws them); a module
may import only modules of lower layers. Package-internal imports sit at the top of a file, where
a reader (and mypy) sees them; only heavy third-party libraries may be imported inside a function,
so ``funnelmodels --help`` and ``import funnelmodels`` stay fast.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from places import ROOT

PACKAGE = ROOT / "funnelmodels"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    ("config",),
    ("frames", "settings", "provenance", "stats", "outputs", "labels", "progress"),
    ("data.schema",),
    ("data.activities", "data.files"),
    ("data.validate", "data.cache"),
    ("data.io",),
    ("data.synthetic", "data"),
    ("funnel", "history"),
    ("segments", "rates", "kpis"),
    ("features", "rfm"),
    ("evaluation", "calibration", "intervals", "drift"),
    ("performance",),
    ("fairness",),
    ("models.design",),
    ("models.reasons", "models.boosting"),
    ("models.persist",),
    ("models.conversion", "models.satisfaction"),
    ("models.train",),
    ("models.predict", "models.card"),
    ("models.monitor",),
    ("models.reps", "models.effects", "models.hazard"),
    ("models.backtest",),
    ("models.forecast", "models"),
    ("distributed.partition", "distributed.cluster"),
    ("distributed.pipeline",),
    ("distributed.training",),
    ("distributed",),
    ("display.format",),
    ("display.html", "display.plots"),
    ("display",),
    ("reports.registry",),
    ("reports.params",),
    ("reports.sections",),
    ("reports.runner",),
    ("reports.sales", "reports.satisfaction", "reports.conversion", "reports.teams"),
    ("reports",),
    ("cli.common",),
    ("cli.distributed",),
    ("cli.data", "cli.funnel", "cli.models"),
    ("cli.reports",),
    ("cli",),
    ("",),
    ("__main__", "cli.__main__"),
)
"""Lowest first. A package's ``__init__`` (``data``, ``reports``, …) sits above its own modules."""

HEAVY = {
    "dask",
    "distributed",
    "lightgbm",
    "statsmodels",
    "scipy",
    "sklearn",
    "matplotlib",
    "papermill",
    "nbconvert",
    "nbformat",
    "IPython",
}
"""Third-party libraries slow to import: the only imports allowed inside a function."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()
LAYER = {name: level for level, names in enumerate(LAYERS) for name in names}


def _targets(node: ast.Import | ast.ImportFrom) -> list[str]:
    """The package modules an import statement imports (``""`` for the package root)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level or not node.module:
            return ["<relative import>"]
        base = node.module
        # ``from funnelmodels.data import schema`` imports the module funnelmodels.data.schema.
        names = [f"{base}.{a.name}" if _inside(f"{base}.{a.name}") in MODULES else base for a in node.names]
    return [_inside(n) for n in names if n.split(".")[0] == "funnelmodels"]


def _inside(dotted: str) -> str:
    """``funnelmodels.data.io`` → ``data.io``; ``funnelmodels`` → ``""``."""
    return dotted.removeprefix("funnelmodels").removeprefix(".")


def _imports(path: Path) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement of a file, with whether it sits inside a function."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            inside |= {id(n) for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)}
    return [(n, id(n) in inside) for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(set(MODULES) - set(LAYER))
    assert not unplaced, f"place these modules in LAYERS (and ARCHITECTURE.md): {unplaced}"
    assert not sorted(set(LAYER) - set(MODULES)), "LAYERS names modules that no longer exist"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_only_run_down(name: str) -> None:
    upward = []
    for node, _ in _imports(MODULES[name]):
        for target in _targets(node):
            if target == "<relative import>":
                upward.append(f"line {node.lineno}: a relative import (name the module in full)")
            elif LAYER.get(target, -1) >= LAYER[name] and target != name:
                upward.append(f"line {node.lineno}: imports {target or 'funnelmodels'} (layer {LAYER.get(target)})")
    assert not upward, f"{name} (layer {LAYER[name]}) imports from its own layer or above: {upward}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_only_heavy_libraries_are_imported_inside_functions(name: str) -> None:
    hidden = []
    for node, in_function in _imports(MODULES[name]):
        if not in_function:
            continue
        module = node.names[0].name if isinstance(node, ast.Import) else (node.module or "")
        if module.split(".")[0] not in HEAVY:
            hidden.append(f"line {node.lineno}: {module}")
    assert not hidden, f"{name} imports inside a function what belongs at the top of the file: {hidden}"


def test_the_import_graph_has_no_loop() -> None:
    # Implied by the layer rule, but checked on its own so a wrong LAYERS table cannot hide a loop.
    graph = {
        name: {t for node, _ in _imports(path) for t in _targets(node) if t in MODULES and t != name}
        for name, path in MODULES.items()
    }
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*trail, node, nxt]
            if nxt not in state and (loop := visit(nxt, [*trail, node])):
                return loop
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            loop = visit(start, [])
            assert loop is None, f"import loop: {' → '.join(m or 'funnelmodels' for m in loop)}"


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    # The rule must be able to fail: a statement importing the CLI from the data layer is caught.
    source = tmp_path / "probe.py"
    source.write_text("from funnelmodels.cli import main\nfrom funnelmodels.data import schema as s\n")
    targets = [t for node, _ in _imports(source) for t in _targets(node)]
    assert targets == ["cli", "data.schema"]
    assert LAYER["cli"] > LAYER["data.io"] > LAYER["data.schema"]
