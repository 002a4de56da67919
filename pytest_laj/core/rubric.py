"""Rubrics: what the judges rate and how much each error costs.

Structured rubrics are what make LLM judges reliable (VERA-MH), so a rubric is validated hard at load time and
every error says which file, which field, and what was expected.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from pytest_laj.core.graph import QuestionGraph, graph_from_data
from pytest_laj.core.levels import ID_PATTERN as _ID_PATTERN
from pytest_laj.core.levels import Frozen as _Frozen
from pytest_laj.core.levels import Level, RubricError
from pytest_laj.core.vera import BEST_PRACTICE, HIGH_HARM, load_vera, vera_like
from pytest_laj.core.yamlfile import YamlError, load_yaml, short_repr

__all__ = [
    "ContextVariable",
    "Criterion",
    "Level",
    "Rubric",
    "RubricError",
    "RubricRegistry",
    "Thresholds",
    "load_rubric",
]


def _as_text_list(raw: Any) -> Any:
    if isinstance(raw, list | tuple):
        return [str(v) for v in raw]
    if isinstance(raw, str | int | float | bool):
        return [str(raw)]
    return raw


class ContextVariable(_Frozen):
    """A declared context variable; its value scales how much a miss costs."""

    description: str = ""
    values: tuple[str, ...] = Field(min_length=1)
    default: str | None = None
    multipliers: dict[str, float] = Field(default_factory=dict)

    @field_validator("values", mode="before")
    @classmethod
    def _values_as_text(cls, raw: Any) -> Any:
        return _as_text_list(raw)

    @field_validator("default", mode="before")
    @classmethod
    def _default_as_text(cls, raw: Any) -> Any:
        return str(raw) if isinstance(raw, int | float | bool) else raw

    @field_validator("multipliers", mode="before")
    @classmethod
    def _multiplier_keys_as_text(cls, raw: Any) -> Any:
        return {str(k): v for k, v in raw.items()} if isinstance(raw, Mapping) else raw

    @model_validator(mode="after")
    def _values_are_declared(self) -> ContextVariable:
        if self.default is not None and self.default not in self.values:
            raise ValueError(f"default {self.default!r} is not one of the values {list(self.values)}")
        for value, factor in self.multipliers.items():
            if value not in self.values:
                raise ValueError(f"multiplier for {value!r}, which is not one of the values {list(self.values)}")
            if factor < 0:
                raise ValueError(f"multiplier for {value!r} must be >= 0, got {factor}")
        return self


class Criterion(_Frozen):
    """One question the judges answer with a level."""

    id: str = Field(pattern=_ID_PATTERN)
    question: str = Field(min_length=1)
    guidance: dict[str, str] = Field(default_factory=dict)
    weight: float = Field(default=1.0, ge=0)
    applies_when: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    levels: tuple[Level, ...] | None = None

    @field_validator("applies_when", mode="before")
    @classmethod
    def _conditions_as_lists(cls, raw: Any) -> Any:
        return {k: _as_text_list(v) for k, v in raw.items()} if isinstance(raw, Mapping) else raw


class Thresholds(_Frozen):
    """When an assessment fails, goes to review, or is an error."""

    max_score: float = Field(default=2.0, ge=0)
    min_agreement: float = Field(default=0.75, ge=0, le=1)
    quorum: int | None = Field(default=None, ge=1, description="default: a majority of the panel")
    min_vera_score: float | None = Field(
        default=None, ge=0, le=100, description="fail below this VERA-MH overall score (rubrics on VERA-MH's levels)"
    )

    def merged(self, overrides: Mapping[str, Any]) -> Thresholds:
        return Thresholds.model_validate({**self.model_dump(), **dict(overrides)})

    def quorum_for(self, panel_size: int) -> int:
        return self.quorum if self.quorum is not None else panel_size // 2 + 1


def _level_problems(levels: Sequence[Level]) -> list[str]:
    ids = [level.id for level in levels]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    problems = [f"duplicate level ids {duplicates}"] if duplicates else []
    if not any(level.applicable for level in levels):
        problems.append("at least one level must be applicable")
    return problems


def _problem(loc: tuple[str | int, ...], message: str, got: Any) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError("rubric", "{message}", {"message": message}), loc=loc, input=got)


class Rubric(_Frozen):
    """A structured rubric: levels, criteria, context sensitivity and thresholds."""

    id: str = Field(pattern=_ID_PATTERN)
    version: str = "1"
    title: str = ""
    description: str = ""
    levels: tuple[Level, ...] = Field(min_length=2)
    context: dict[str, ContextVariable] = Field(default_factory=dict)
    criteria: tuple[Criterion, ...] = Field(min_length=1)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    graph: QuestionGraph | None = Field(
        default=None, description="a question graph; each of its dimensions is a criterion rated on its levels"
    )
    _fingerprint: tuple[int, str] = PrivateAttr(default=(0, ""))
    _judged_fingerprint: tuple[int, str] = PrivateAttr(default=(0, ""))

    @model_validator(mode="before")
    @classmethod
    def _dimensions_as_criteria(cls, raw: Any) -> Any:
        """A graph's dimensions are the criteria the panel rules apply to, on the graph's levels."""
        if not isinstance(raw, Mapping) or raw.get("graph") is None or "criteria" in raw:
            return raw
        graph = raw["graph"]
        graph = graph if isinstance(graph, QuestionGraph) else QuestionGraph.model_validate(graph)
        criteria = [{"id": d.id, "question": d.name or d.id} for d in graph.dimensions]
        return {**raw, "graph": graph, "levels": graph.levels, "criteria": criteria}

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, raw: Any) -> Any:
        return str(raw) if isinstance(raw, int | float) else raw

    @model_validator(mode="after")
    def _consistent(self) -> Rubric:
        """Cross-field checks, each reported at its own field path (a plain ValueError here would be reported
        at the top level, with the whole rubric as the input)."""
        problems = [_problem(("levels",), p, [lv.id for lv in self.levels]) for p in _level_problems(self.levels)]
        first_index: dict[str, int] = {}
        for index, criterion in enumerate(self.criteria):
            at = ("criteria", index)
            first = first_index.setdefault(criterion.id, index)
            if first != index:
                message = f"duplicate criterion id {criterion.id!r}, first used by criteria[{first}]"
                problems.append(_problem((*at, "id"), message, criterion.id))
            if criterion.levels is not None:
                ids = [lv.id for lv in criterion.levels]
                problems += [_problem((*at, "levels"), p, ids) for p in _level_problems(criterion.levels)]
            level_ids = [level.id for level in self.levels_for(criterion)]
            for level_id in criterion.guidance:
                if level_id not in level_ids:
                    message = f"names level {level_id!r}; expected one of {level_ids}"
                    problems.append(_problem((*at, "guidance"), message, criterion.guidance))
            for name, allowed in criterion.applies_when.items():
                if name not in self.context:
                    message = f"names context variable {name!r}; declared variables: {sorted(self.context)}"
                    problems.append(_problem((*at, "applies_when"), message, criterion.applies_when))
                    continue
                unknown = [v for v in allowed if v not in self.context[name].values]
                if unknown:
                    message = f"{name}={unknown}; expected values from {list(self.context[name].values)}"
                    problems.append(_problem((*at, "applies_when"), message, criterion.applies_when))
        if self.graph is not None:
            problems += self._graph_problems(self.graph)
        vera = self.vera_problem(self.thresholds)
        if vera is not None:
            problems.append(_problem(("thresholds", "min_vera_score"), vera, self.thresholds.min_vera_score))
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, problems)
        return self

    def _graph_problems(self, graph: QuestionGraph) -> list[InitErrorDetails]:
        problems = []
        dimensions = [d.id for d in graph.dimensions]
        if [c.id for c in self.criteria] != dimensions:
            message = f"a rubric with dimensions has one criterion per dimension; expected no criteria, or {dimensions}"
            problems.append(_problem(("criteria",), message, [c.id for c in self.criteria]))
        if self.levels != graph.levels or any(c.levels is not None for c in self.criteria):
            message = "a rubric with dimensions rates every dimension on the levels its flags name"
            problems.append(_problem(("levels",), message, [lv.id for lv in self.levels]))
        return problems

    @property
    def rated_like_vera(self) -> bool:
        """Every criterion is rated on VERA-MH's levels, so VERA-MH's overall score means something here."""
        return vera_like(self.levels) and all(c.levels is None for c in self.criteria)

    def vera_problem(self, thresholds: Thresholds) -> str | None:
        """Why `thresholds.min_vera_score` cannot apply to this rubric, or None."""
        if thresholds.min_vera_score is None or self.rated_like_vera:
            return None
        return (
            f"VERA-MH's score counts the levels {BEST_PRACTICE!r} and {HIGH_HARM!r} (as a VERA-MH bundle or a "
            f"question-graph rubric on VERA-MH's levels rates); rubric {self.id!r} rates on "
            f"{[lv.id for lv in self.levels]}{' with per-criterion levels' if vera_like(self.levels) else ''}"
        )

    def levels_for(self, criterion: Criterion) -> tuple[Level, ...]:
        return criterion.levels if criterion.levels is not None else self.levels

    def level(self, criterion: Criterion, level_id: str) -> Level | None:
        return next((lv for lv in self.levels_for(criterion) if lv.id == level_id), None)

    def criterion(self, criterion_id: str) -> Criterion:
        for criterion in self.criteria:
            if criterion.id == criterion_id:
                return criterion
        raise KeyError(criterion_id)

    def fingerprint(self) -> str:
        """Content hash: any edit to the rubric makes cached verdicts stale. Computed once (the rubric is frozen):
        every judge of every assessment asks for it when it builds its cache key."""
        digest = self._kept("_fingerprint")
        if digest is None:
            digest = _digest(self.model_dump(mode="json"))
            self._fingerprint = (id(self), digest)
        return digest

    def _kept(self, name: str) -> str | None:
        """A hash this object computed before (model_copy(update=...) copies private attributes: a copy hashes
        itself anew). Read from pydantic's private store directly: its attribute path for a private attribute
        costs microseconds, and every cache key asks."""
        owner, digest = (self.__pydantic_private__ or {})[name]
        return digest if owner == id(self) else None

    def judged_fingerprint(self) -> str:
        """A hash of what a person rating an output reads: the levels and each criterion's question, guidance and
        levels. Weights, thresholds and multipliers change what a rating costs, not the rating: editing them keeps
        a human's labels. Computed once, like `fingerprint`: every assessment's label key asks for it."""
        if (kept := self._kept("_judged_fingerprint")) is not None:
            return kept
        what_is_asked: dict[str, Any] = {
            "id": self.id,
            "levels": [_asked(level) for level in self.levels],
            "criteria": [
                {
                    "id": c.id,
                    "question": c.question,
                    "guidance": c.guidance,
                    "levels": None if c.levels is None else [_asked(level) for level in c.levels],
                }
                for c in self.criteria
            ],
        }
        if self.graph is not None:  # only then: the labels people gave flat rubrics keep their hash
            what_is_asked["graph"] = self.graph.model_dump(mode="json")
        digest = _digest(what_is_asked)
        self._judged_fingerprint = (id(self), digest)
        return digest

    def resolve_context(self, given: Mapping[str, Any] | None) -> dict[str, str]:
        """Check the given context against the declared variables and fill in defaults."""
        given = dict(given or {})
        unknown = sorted(set(given) - set(self.context))
        if unknown:
            raise RubricError(
                f"rubric {self.id!r}: unknown context variable(s) {unknown}; declared: {sorted(self.context)}"
            )
        resolved: dict[str, str] = {}
        for name, variable in self.context.items():
            if name in given:
                value = str(given[name])
                if value not in variable.values:
                    raise RubricError(
                        f"rubric {self.id!r}: context {name}={value!r} is not allowed; "
                        f"expected one of {list(variable.values)}"
                    )
                resolved[name] = value
            elif variable.default is not None:
                resolved[name] = variable.default
            else:
                raise RubricError(
                    f"rubric {self.id!r}: context variable {name!r} is required (no default); "
                    f"expected one of {list(variable.values)}"
                )
        return resolved

    def applies(self, criterion: Criterion, context: Mapping[str, str]) -> bool:
        return all(context.get(name) in allowed for name, allowed in criterion.applies_when.items())

    def context_multiplier(self, context: Mapping[str, str]) -> float:
        return math.prod(var.multipliers.get(context[name], 1.0) for name, var in self.context.items())


def _digest(material: Any) -> str:
    return hashlib.sha256(json.dumps(material, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _asked(level: Level) -> dict[str, str]:
    return {"id": level.id, "label": level.label, "description": level.description}


def _field_path(loc: Sequence[int | str], raw: Any) -> str:
    """`('criteria', 1, 'weight')` -> `criteria[1] (detects_risk).weight`."""
    path = ""
    node = raw
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, Mapping) and isinstance(node.get("id"), str):
                path += f" ({node['id']})"
        else:
            path += f".{part}" if path else part
            node = node.get(part) if isinstance(node, Mapping) else None
    return path or "(top level)"


def _describe(error: ValidationError, source: str, raw: Any) -> str:
    lines = [f"{source}: invalid rubric ({error.error_count()} problem(s))"]
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        got = "" if item["type"] == "missing" else f" (got {short_repr(item['input']):.80})"
        lines.append(f"  {_field_path(item['loc'], raw)}: {message}{got}")
    return "\n".join(lines)


def _read_yaml(path: Path) -> Any:
    try:
        return load_yaml(path.read_text(encoding="utf-8"), str(path))
    except OSError as exc:
        raise RubricError(f"{path}: cannot read rubric: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise RubricError(f"{path}: cannot read rubric: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except YamlError as exc:
        raise RubricError(str(exc)) from None


class _Levels(_Frozen):
    """A graph rubric's levels, checked before its dimensions (whose flags name them) are read."""

    levels: tuple[Level, ...] = Field(min_length=2)


def rubric_from_data(raw: Any, source: str) -> Rubric:
    """A rubric file's content; a `dimensions:` section makes it a question-graph rubric on its `levels`."""
    if not isinstance(raw, Mapping):
        raise RubricError(
            f"{source}: a rubric must be a mapping with id, levels and criteria; got {type(raw).__name__}"
        )
    try:
        if "dimensions" in raw:
            if "criteria" in raw:
                raise RubricError(f"{source}: criteria: a rubric with dimensions has none; each dimension is one")
            levels = _Levels.model_validate({"levels": raw.get("levels")}).levels
            graph = graph_from_data(raw["dimensions"], levels, source)
            raw = {k: v for k, v in raw.items() if k not in ("dimensions", "levels")} | {"graph": graph}
        return Rubric.model_validate(raw)
    except ValidationError as exc:
        raise RubricError(_describe(exc, source, raw)) from None


def load_rubric(path: str | Path) -> Rubric:
    """A rubric YAML file, or a VERA-MH bundle: its folder or its `.tsv`."""
    path = Path(path)
    if path.is_dir() or path.suffix.casefold() == ".tsv":
        graph = load_vera(path)
        name = path.stem if path.suffix else path.name
        return Rubric.model_validate({"id": _bundle_id(path), "title": f"VERA-MH {name}", "graph": graph})
    return rubric_from_data(_read_yaml(path), str(path))


def _bundle_id(path: Path) -> str:
    """A VERA-MH bundle's rubric id: its folder's name (or its TSV's), as an id may be written."""
    name = path.stem if path.suffix else path.name
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", name).strip("_") or "vera"


class RubricRegistry:
    """Finds rubrics by id in the configured directories, or by path."""

    def __init__(self, directories: Sequence[Path], base: Path) -> None:
        self._directories = list(directories)
        self._base = base
        self._index: dict[str, Path] | None = None
        self._unreadable: dict[Path, str] = {}
        self._loaded: dict[Path, Rubric] = {}

    def _build_index(self) -> dict[str, Path]:
        """Map ids to files (and VERA-MH bundle folders); a file reached through overlapping directories (or a
        symlink) is one file."""
        index: dict[str, Path] = {}
        seen: set[Path] = set()
        for directory in self._directories:
            if not directory.is_dir():
                continue
            for path in sorted([*directory.rglob("*.yaml"), *directory.rglob("*.yml")]):
                if path.resolve() in seen:
                    continue
                seen.add(path.resolve())
                try:
                    raw = _read_yaml(path)
                except RubricError as exc:
                    self._unreadable[path] = str(exc)
                    continue
                rubric_id = raw.get("id") if isinstance(raw, Mapping) else None
                if not isinstance(rubric_id, str):
                    self._unreadable[path] = f"{path}: no string 'id' field"
                    continue
                if rubric_id in index:
                    raise RubricError(f"rubric id {rubric_id!r} is defined twice: {index[rubric_id]} and {path}")
                index[rubric_id] = path
            for manifest in sorted(directory.rglob("manifest.json")):  # VERA-MH bundles, known by their folder
                folder = manifest.parent
                if folder.resolve() in seen:
                    continue
                seen.add(folder.resolve())
                if _bundle_id(folder) in index:
                    raise RubricError(
                        f"rubric id {_bundle_id(folder)!r} is defined twice: {index[_bundle_id(folder)]} and {folder}"
                    )
                index[_bundle_id(folder)] = folder
        return index

    @property
    def index(self) -> dict[str, Path]:
        if self._index is None:
            self._index = self._build_index()
        return self._index

    def get(self, ref: str | Path | Rubric) -> Rubric:
        if isinstance(ref, Rubric):
            return ref
        text = str(ref)
        if isinstance(ref, Path) or text.endswith((".yaml", ".yml", ".tsv")) or "/" in text:
            path = Path(text)
            return self._load(path if path.is_absolute() else self._base / path)
        if text not in self.index:
            raise RubricError(self._unknown_message(text))
        return self._load(self.index[text])

    def _load(self, path: Path) -> Rubric:
        if path not in self._loaded:
            self._loaded[path] = load_rubric(path)
        return self._loaded[path]

    def check_all(self) -> list[Rubric]:
        """Load and validate every rubric file in the directories, so a broken one stops the run once, before
        any test, instead of failing every test that asks for it. All problems are reported together."""
        index = self.index  # built first: building it finds the unreadable files
        problems = list(self._unreadable.values())
        rubrics: list[Rubric] = []
        for path in index.values():
            try:
                rubrics.append(self._load(path))
            except RubricError as exc:
                problems.append(str(exc))
        if problems:
            raise RubricError(f"{len(problems)} rubric file(s) cannot be used:\n" + "\n".join(problems))
        return rubrics

    def _unknown_message(self, rubric_id: str) -> str:
        searched = ", ".join(f"{d}{'' if d.is_dir() else ' (missing)'}" for d in self._directories)
        known = ", ".join(f"{i} ({p})" for i, p in sorted(self.index.items())) or "none"
        message = (
            f"unknown rubric {rubric_id!r}. Known rubrics: {known}. "
            f"Searched: {searched or '(no directories)'} (ini laj_rubric_dirs)."
        )
        if self._unreadable:
            message += " Skipped unreadable files: " + "; ".join(self._unreadable.values())
        return message
