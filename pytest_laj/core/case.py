"""Case files: recorded model outputs (or inputs for a producer) to judge, one case each."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pytest_laj.core.conversation import Conversation
from pytest_laj.core.printable import printable
from pytest_laj.core.yamlfile import YamlError, load_yaml
from pytest_laj.errors import UsageError

__all__ = ["Case", "CaseFileError", "load_cases"]


class CaseFileError(UsageError):
    """A case file cannot be used; the message names the file and the case."""


class Case(BaseModel):
    """One recorded exchange: what the user said, the context, and the reply under test; or a whole recorded
    conversation instead of `input` and `output`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, pattern=r"^\S+$")
    output: str | None = Field(default=None, description="the recorded reply; None when a producer makes it")
    input: str | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    note: str = ""
    conversation: Conversation | None = Field(default=None, description="the turns, instead of input and output")

    @field_validator("conversation", mode="before")
    @classmethod
    def _turns(cls, raw: object) -> object:
        """A list of {role, content} mappings, checked turn by turn."""
        if raw is None:
            return None
        try:
            return Conversation.of(raw, "the conversation")
        except UsageError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _one_thing_judged(self) -> Case:
        if self.conversation is not None and (self.input is not None or self.output is not None):
            raise ValueError("a case holds either a conversation or an input and output, not both")
        return self

    def __repr__(self) -> str:
        """pytest shows a failing test's case in its traceback, and a recorded reply is untrusted text."""
        return printable(super().__repr__())


def _read_jsonl(text: str) -> list[Any]:
    """One JSON value a line, read with json: YAML decodes the surrogate-pair escapes json.dumps writes for
    non-BMP characters (emoji) into two lone surrogates. Lines end at newline only, not at U+2028."""
    entries: list[Any] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"line {number}, column {exc.colno}: {exc.msg}") from exc
    return entries


def load_cases(path: str | Path) -> list[Case]:
    """Read a YAML file `{cases: [...]}` (or a bare list), or a JSONL file with one case per line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        raw: Any = _read_jsonl(text) if path.suffix == ".jsonl" else load_yaml(text, str(path))
    except YamlError as exc:
        raise CaseFileError(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise CaseFileError(f"{path}: cannot read cases: {exc}") from None
    entries = raw.get("cases") if isinstance(raw, dict) else raw
    if not isinstance(entries, list):
        raise CaseFileError(f"{path}: expected a list of cases (or a mapping with key 'cases')")
    loaded: list[Case] = []
    for index, entry in enumerate(entries):
        try:
            loaded.append(Case.model_validate(entry))
        except ValidationError as exc:
            name = entry.get("id", "?") if isinstance(entry, dict) else "?"
            name = name if isinstance(name, str | int | float) else "?"  # never a structure of unknown size
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'case'}: {e['msg']}" for e in exc.errors())
            raise CaseFileError(f"{path}: case [{index}] ({name}): {problems}") from None
    duplicates = sorted(i for i, n in Counter(c.id for c in loaded).items() if n > 1)
    if duplicates:
        raise CaseFileError(f"{path}: duplicate case ids {duplicates}")
    return loaded
