"""The project a `laj` command works on, found the way pytest finds it: from the working directory upward, the
first pytest configuration file (`pytest.toml`, `pytest.ini`, `pyproject.toml` with a `[tool.pytest]` table,
`tox.ini` with `[pytest]`, `setup.cfg` with `[tool:pytest]`) is the ini file and its directory the rootdir.

The `laj` command cannot ask pytest (only the plugin layer imports it, and its discovery is private API that
changed between the pytest versions this package supports), so this reads the few settings it needs itself:
`laj_cache_dir`, `laj_labels` and `laj_rubric_dirs`, with the same environment overrides the plugin honours.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import iniconfig

from pytest_laj.core.rubric import Rubric, RubricRegistry
from pytest_laj.errors import UsageError
from pytest_laj.results.report import LAST_RUN

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest itself depends on tomli before Python 3.11
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = ["Project", "find_project"]

Section = dict[str, Any]


def _toml(path: Path) -> dict[str, Any]:
    try:
        document: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise UsageError(f"{path}: cannot read the pytest configuration ({error})") from None
    return document


def _ini(path: Path, section: str, always: bool) -> Section | None:
    try:
        parsed = iniconfig.IniConfig(str(path))
    except (OSError, UnicodeDecodeError, iniconfig.ParseError) as error:
        raise UsageError(f"{path}: cannot read the pytest configuration ({error})") from None
    if section in parsed:
        return dict(parsed[section].items())
    return {} if always else None


def _pytest_toml(path: Path) -> Section | None:
    table = _toml(path).get("pytest", {})
    return dict(table) if isinstance(table, dict) else {}


def _pyproject(path: Path) -> Section | None:
    tool = _toml(path).get("tool", {})
    pytest_table = tool.get("pytest") if isinstance(tool, dict) else None
    if not isinstance(pytest_table, dict):
        return None
    native = {k: v for k, v in pytest_table.items() if k != "ini_options"}
    ini_options = pytest_table.get("ini_options")
    return native or (dict(ini_options) if isinstance(ini_options, dict) else None)


# pytest's own order: the first of these in a directory that holds pytest configuration is the ini file.
_READERS: dict[str, Callable[[Path], Section | None]] = {
    "pytest.toml": _pytest_toml,
    ".pytest.toml": _pytest_toml,
    "pytest.ini": lambda p: _ini(p, "pytest", always=True),
    ".pytest.ini": lambda p: _ini(p, "pytest", always=True),
    "pyproject.toml": _pyproject,
    "tox.ini": lambda p: _ini(p, "pytest", always=False),
    "setup.cfg": lambda p: _ini(p, "tool:pytest", always=False),
}


def _locate(start: Path) -> tuple[Path, Path | None, Section]:
    """The rootdir, the ini file and its pytest settings, as pytest would find them from `start`."""
    pyproject: Path | None = None
    for base in (start, *start.parents):
        for name, read in _READERS.items():
            path = base / name
            if not path.is_file():
                continue
            if name == "pyproject.toml" and pyproject is None:
                pyproject = path
            section = read(path)
            if section is not None:
                return base, path, section
    if pyproject is not None:  # pytest takes a pyproject.toml without its table as the rootdir
        return pyproject.parent, pyproject, {}
    setup_py = next((base for base in (start, *start.parents) if (base / "setup.py").is_file()), None)
    return setup_py or start, None, {}


def _text(section: Section, name: str) -> str:
    value = section.get(name)
    return str(value).strip() if isinstance(value, str | int | float) else ""


def _lines(section: Section, name: str) -> list[str]:
    value = section.get(name)
    items = value if isinstance(value, list) else str(value or "").splitlines()
    return [str(item).strip() for item in items if str(item).strip()]


@dataclass
class Project:
    """Where a project's run report, labels file and rubrics are."""

    rootdir: Path
    inifile: Path | None
    cache_dir: Path
    labels: Path | None  # None: labels are turned off (`off`)
    rubric_dirs: list[Path]
    _registry: RubricRegistry | None = field(default=None, repr=False)

    @property
    def last_run(self) -> Path:
        return self.cache_dir / LAST_RUN

    def labels_file(self, given: Path | None) -> Path:
        """The labels file to read and write: `given` (relative to the working directory), else the project's."""
        if given is not None:
            return given
        if self.labels is None:
            raise UsageError("labels are turned off (laj_labels or LAJ_LABELS is 'off'); give --labels PATH")
        return self.labels

    @property
    def rubrics(self) -> RubricRegistry:
        if self._registry is None:
            self._registry = RubricRegistry(self.rubric_dirs, self.rootdir)
        return self._registry

    def rubric(self, rubric_id: str) -> Rubric | None:
        """The rubric of that id in the project's rubric directories; None where there is none."""
        return self.rubrics.get(rubric_id) if rubric_id in self.rubrics.index else None


def find_project(start: Path | None = None, environ: Mapping[str, str] = os.environ) -> Project:
    """The project around `start` (default: the working directory), with the plugin's defaults and overrides:
    LAJ_CACHE_DIR (relative to the rootdir) and LAJ_LABELS (relative to `start`) win over the ini file."""
    start = (start or Path.cwd()).resolve()
    root, inifile, section = _locate(start)
    cache = environ.get("LAJ_CACHE_DIR", "").strip() or _text(section, "laj_cache_dir") or ".laj_cache"
    labels: Path | None
    env_labels = environ.get("LAJ_LABELS", "").strip()
    if env_labels:
        labels = None if env_labels == "off" else start / env_labels
    else:
        ini_labels = _text(section, "laj_labels") or "laj-labels.yaml"
        labels = None if ini_labels == "off" else root / ini_labels
    dirs = _lines(section, "laj_rubric_dirs") or ["rubrics"]
    return Project(root, inifile, root / cache, labels, [root / d for d in dirs])
