"""The three dependency lists agree: pyproject.toml, environment.yml and the pinned lock."""

from __future__ import annotations

import re
import tomllib

from places import ROOT


def _pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    return dict(_split(r) for r in reqs)


def _split(requirement: str) -> tuple[str, str]:
    match = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", requirement.strip())
    assert match, requirement
    return match.group(1).lower(), match.group(2).replace(" ", "")


def _environment_yml_requirements() -> dict[str, str]:
    out = {}
    text = (ROOT / "environment.yml").read_text()
    for line in text.split("dependencies:", 1)[1].splitlines():
        item = re.match(r"^  - ([A-Za-z0-9_.\-]+[^:#]*)$", line)
        if item:
            name, spec = _split(item.group(1))
            if name not in {"python", "pip"}:
                out[name] = spec
    return out


def test_environment_yml_lists_the_same_dependencies_as_pyproject() -> None:
    assert _environment_yml_requirements() == _pyproject_requirements()


def test_lock_pins_every_dependency_exactly() -> None:
    lock = (ROOT / "requirements.lock").read_text().lower()
    pinned = set(re.findall(r"^([a-z0-9_.\-]+)==", lock, flags=re.MULTILINE))
    missing = set(_pyproject_requirements()) - pinned
    assert not missing, f"requirements.lock lacks {missing}; run `make lock`"
    unpinned = [line for line in lock.splitlines() if line and not line.startswith(("#", " ")) and "==" not in line]
    assert not unpinned
