"""The project a `laj` command runs in, found the way pytest finds it, without importing pytest.

From the working directory upward, the first of `pytest.toml`, `.pytest.toml`, `pytest.ini`, `.pytest.ini`,
`pyproject.toml` (with `[tool.pytest]` or `[tool.pytest.ini_options]`), `tox.ini` (with `[pytest]`) or `setup.cfg`
(with `[tool:pytest]`) is the ini file and its directory the rootdir; with none, the first `pyproject.toml` found
marks it, else the working directory is. The `laj_*` ini keys and their environment
variables then mean what they mean to a pytest run there.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import iniconfig

from pytest_laj.core.rubric import RubricRegistry
from pytest_laj.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - pytest itself depends on tomli there
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = ["Project", "find_project"]

# In pytest's order of precedence within one directory.
_CANDIDATES = ("pytest.toml", ".pytest.toml", "pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")
_INI_SECTIONS = {"pytest.ini": "pytest", ".pytest.ini": "pytest", "tox.ini": "pytest", "setup.cfg": "tool:pytest"}


@dataclass(frozen=True)
class Project:
    rootdir: Path
    inifile: Path | None = None
    ini: Mapping[str, Any] = field(default_factory=dict)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: Path = field(default_factory=Path.cwd)

    def value(self, name: str) -> str:
        raw = self.ini.get(name, "")
        return str(raw).strip()

    def lines(self, name: str) -> list[str]:
        """A `linelist` ini value: a TOML list, or one entry a line."""
        raw = self.ini.get(name, [])
        entries = raw if isinstance(raw, list) else str(raw).splitlines()
        return [str(entry).strip() for entry in entries if str(entry).strip()]

    @property
    def cache_dir(self) -> Path:
        return self.rootdir / (
            self.environ.get("LAJ_CACHE_DIR", "").strip() or self.value("laj_cache_dir") or ".laj_cache"
        )

    @property
    def labels(self) -> Path | None:
        """The labels file as a run here would honour it; None when it is `off`."""
        given = self.environ.get("LAJ_LABELS", "").strip()
        if given:
            return None if given == "off" else self.cwd / given
        configured = self.value("laj_labels") or "laj-labels.yaml"
        return None if configured == "off" else self.rootdir / configured

    def rubrics(self) -> RubricRegistry:
        return RubricRegistry([self.rootdir / d for d in self.lines("laj_rubric_dirs") or ["rubrics"]], self.cwd)


def _read(path: Path) -> Mapping[str, Any] | None:
    """The pytest options a candidate file holds, or None where it holds none (then it is not the ini file)."""
    try:
        if path.suffix == ".toml":
            with path.open("rb") as stream:
                document = tomllib.load(stream)
            table = document.get("tool", {}) if path.name == "pyproject.toml" else document
            options = table.get("pytest")
            if path.name == "pyproject.toml" and isinstance(options, dict) and "ini_options" in options:
                options = options["ini_options"]
            return options if isinstance(options, dict) else ({} if path.name != "pyproject.toml" else None)
        parsed = iniconfig.IniConfig(str(path))
    except (OSError, tomllib.TOMLDecodeError, iniconfig.ParseError) as error:
        raise UsageError(f"{path}: cannot read the project's configuration ({error})") from None
    section = _INI_SECTIONS[path.name]
    if section in parsed:
        return dict(parsed[section].items())
    return {} if path.name in ("pytest.ini", ".pytest.ini") else None


def find_project(cwd: Path | None = None, environ: Mapping[str, str] | None = None) -> Project:
    cwd = (cwd or Path.cwd()).resolve()
    environ = dict(os.environ if environ is None else environ)
    first_pyproject: Path | None = None
    for directory in (cwd, *cwd.parents):
        for name in _CANDIDATES:
            path = directory / name
            if not path.is_file():
                continue
            if name == "pyproject.toml" and first_pyproject is None:
                first_pyproject = path
            ini = _read(path)
            if ini is not None:
                return Project(rootdir=directory, inifile=path, ini=ini, environ=environ, cwd=cwd)
    if first_pyproject is not None:  # pytest's fallback: a pyproject.toml with no pytest options marks the root
        return Project(rootdir=first_pyproject.parent, inifile=first_pyproject, environ=environ, cwd=cwd)
    return Project(rootdir=cwd, environ=environ, cwd=cwd)
