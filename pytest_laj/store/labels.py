"""The labels file: people's decisions, meant to be committed with the suite.

YAML (`laj-labels.yaml`, the default) or JSONL (one label a line), versioned, in a stable order (labels by rubric,
node id and key; decisions by reviewer) so a diff of two reviews reads well. A file that does not parse or
validate is one `LabelsError` naming the line and the field; it is written whole or not at all, so a failed save
loses nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pytest_laj.core.labels import LABELS_VERSION, Decision, Label, LabelsFile
from pytest_laj.core.rubric import Rubric
from pytest_laj.core.yamlfile import load_yaml
from pytest_laj.errors import UsageError
from pytest_laj.store.files import write_text

__all__ = ["LabelStore", "LabelsError", "now"]

RubricLookup = Callable[[str], "Rubric | None"]


class LabelsError(UsageError):
    """A labels file that cannot be used as it is; the message names the file, the line and the field."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at `loc` (a pydantic error location), for the message."""
    try:
        node: Any = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((value for key, value in node.value if key.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


def _field(loc: tuple[Any, ...]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


class LabelStore:
    """The labels of one file, by key; loaded once, saved whole."""

    def __init__(self, path: Path, labels: Iterable[Label] = ()) -> None:
        self.path = path
        self._labels: dict[str, Label] = {label.key: label for label in labels}

    @classmethod
    def load(cls, path: Path) -> LabelStore:
        """The file's labels; an absent file has none."""
        if not path.exists():
            return cls(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise LabelsError(f"{path}: cannot read the labels file ({error})") from None
        if path.suffix == ".jsonl":
            return cls(path, cls._jsonl(path, text))
        data = load_yaml(text, str(path)) if text.strip() else {"version": LABELS_VERSION, "labels": []}
        try:
            parsed = LabelsFile.model_validate(data)
        except ValidationError as error:
            first = error.errors()[0]
            line = _line_of(text, tuple(first["loc"]))
            where = f", line {line}" if line else ""
            raise LabelsError(f"{path}{where}: {_field(tuple(first['loc']))}: {first['msg']}") from None
        if parsed.version != LABELS_VERSION:
            raise LabelsError(f"{path}: labels file version {parsed.version}; this pytest-laj reads {LABELS_VERSION}")
        return cls(path, parsed.labels)

    @staticmethod
    def _jsonl(path: Path, text: str) -> list[Label]:
        labels = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                labels.append(Label.model_validate(json.loads(line)))
            except ValueError as error:
                detail = error.errors()[0] if isinstance(error, ValidationError) else None
                what = f"{_field(tuple(detail['loc']))}: {detail['msg']}" if detail else f"not JSON ({error})"
                raise LabelsError(f"{path}, line {number}: {what}") from None
        return labels

    def check(self, rubric_for: RubricLookup) -> None:
        """Every label's criteria and levels against its rubric: a name the rubric does not have is an error,
        never quietly ignored. A label for a rubric this run cannot find is left alone."""
        for index, label in enumerate(self.labels()):
            rubric = rubric_for(label.rubric)
            if rubric is None:
                continue
            criteria = {c.id: c for c in rubric.criteria}
            for decision in label.decisions:
                for criterion_id, level_id in decision.levels.items():
                    where = f"{self.path}: labels[{index}] (rubric {label.rubric}, reviewer {decision.reviewer!r})"
                    criterion = criteria.get(criterion_id)
                    if criterion is None:
                        raise LabelsError(f"{where}: unknown criterion {criterion_id!r}; criteria: {sorted(criteria)}")
                    allowed = [lv.id for lv in rubric.levels_for(criterion)]
                    if level_id not in allowed:
                        raise LabelsError(
                            f"{where}: criterion {criterion_id!r} has no level {level_id!r}; levels: {allowed}"
                        )

    def labels(self) -> list[Label]:
        return sorted(self._labels.values(), key=lambda lb: (lb.rubric, lb.nodeid or "", lb.key))

    def get(self, key: str) -> Label | None:
        return self._labels.get(key)

    def decide(self, template: Label, decision: Decision) -> Label:
        """Record a reviewer's decision on the item `template` describes (its key, rubric, node id, output)."""
        label = self._labels.get(template.key)
        if label is None:
            label = self._labels[template.key] = template.model_copy(update={"decisions": []})
        else:  # where it was seen last, for people reading the file
            label.nodeid, label.case_id = template.nodeid or label.nodeid, template.case_id or label.case_id
        label.decide(decision)
        return label

    def remove(self, keys: Iterable[str]) -> list[Label]:
        removed = [self._labels.pop(key) for key in list(keys) if key in self._labels]
        return removed

    def save(self) -> None:
        labels = self.labels()
        if self.path.suffix == ".jsonl":
            text = "".join(label.model_dump_json(exclude_defaults=True) + "\n" for label in labels)
        else:
            document = LabelsFile(labels=labels).model_dump(mode="json", exclude_defaults=False)
            text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
        write_text(self.path, text)
