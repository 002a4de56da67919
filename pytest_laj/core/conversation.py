"""A whole conversation as the thing judged: its turns, checked once, and the transcript people read.

A rubric such as VERA-MH rates how a chatbot behaved over many turns, not one reply. The assistant turns are
the system under test; the user (and system) turns are test data, which may address the judges on purpose.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pytest_laj.errors import UsageError

__all__ = ["ROLES", "Conversation", "Message", "load_transcript", "turn_label"]

Role = Literal["user", "assistant", "system"]
ROLES: tuple[str, ...] = ("user", "assistant", "system")
_SPEAKERS = {"user": "user", "assistant": "assistant", "chatbot": "assistant", "system": "system"}
_SPEAKER_LINE = re.compile(r"^(user|assistant|chatbot|system)[ \t]*:[ \t]?(.*)$", re.IGNORECASE)


class Message(BaseModel):
    """One turn: who spoke and what they said."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    role: Role
    content: str = Field(min_length=1)

    @field_validator("content", mode="before")
    @classmethod
    def _encodable(cls, content: object) -> object:
        """A lone surrogate is not Unicode any provider accepts: refused here, not by every judge call."""
        if not isinstance(content, str):
            return content  # refused as not a str
        try:
            content.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(
                f"contains a lone surrogate (U+{ord(content[error.start]):04X} at position {error.start}), "
                "which is not valid Unicode; decode the source bytes with errors='replace' or fix the text"
            ) from None
        if not content.strip():
            raise ValueError("is only whitespace")
        return content


class Conversation(BaseModel):
    """The turns in order; at least one is the assistant's, since that is what the judges rate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    messages: tuple[Message, ...] = Field(min_length=1)

    @classmethod
    def of(cls, value: object, where: str = "conversation") -> Conversation:
        """A conversation from a list of `{"role", "content"}` mappings (or a Conversation); a mistake is a
        `UsageError` naming the turn and what was expected."""
        if isinstance(value, Conversation):
            return value
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            raise UsageError(
                f"{where}: expected a list of messages like {{'role': 'user', 'content': '...'}}, "
                f"got {type(value).__name__}"
            )
        messages = []
        for number, message in enumerate(value, start=1):
            if not isinstance(message, Mapping):
                problem = f"expected a mapping with 'role' and 'content', got {type(message).__name__}"
                raise UsageError(f"{where} turn {number}: {problem}")
            try:
                messages.append(Message.model_validate(dict(message)))
            except ValidationError as exc:
                raise UsageError(f"{where}: turn {number} {_problems(exc)}") from None
        if not messages:
            raise UsageError(f"{where}: has no turns; expected at least one user and one assistant turn")
        conversation = cls.model_construct(messages=tuple(messages))
        if not any(m.role == "assistant" for m in conversation.messages):
            raise UsageError(f"{where}: has no assistant turn; the judges rate what the assistant said")
        return conversation

    def turns(self, role: str) -> list[tuple[int, str]]:
        """(turn number from 1, content) of every turn by `role`."""
        return [(n, m.content) for n, m in enumerate(self.messages, start=1) if m.role == role]

    def transcript(self) -> str:
        """The turns as people read them (and as the record, the report and the dashboard show them)."""
        return "\n\n".join(f"{m.role}: {m.content}" for m in self.messages)

    def key(self) -> list[list[str]]:
        """Every turn, role and content, as keys hash it."""
        return [[m.role, m.content] for m in self.messages]

    def chars(self) -> int:
        return sum(len(m.content) for m in self.messages)


def turn_label(number: int, role: str) -> str:
    """How a finding names its turn, e.g. "assistant's turn 4"."""
    return f"{role}'s turn {number}"


def _problems(exc: ValidationError) -> str:
    """Pydantic's errors on one turn, each with the field it is about."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'turn'}: {e['msg']}" for e in exc.errors())


def load_transcript(source: str | Path) -> Conversation:
    """A plain-text transcript (a path, or the text itself): each turn starts a line with `user:`, `chatbot:`
    (or `assistant:`) or `system:`; the lines after it, up to the next such line, are the rest of that turn."""
    where = "transcript"
    text = str(source)
    if isinstance(source, Path):
        where = str(source)
        try:
            text = source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{where}: cannot read the transcript: {exc}") from None
    turns: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        speaker = _SPEAKER_LINE.match(line)
        if speaker is not None:
            turns.append({"role": _SPEAKERS[speaker.group(1).lower()], "content": speaker.group(2)})
        elif turns:
            turns[-1]["content"] += "\n" + line
        elif line.strip():
            expected = "expected a turn starting 'user:' or 'chatbot:'"
            raise UsageError(f"{where}: line {number}: {expected}, got {line!r:.60}")
    for turn in turns:
        turn["content"] = turn["content"].strip()
    return Conversation.of(turns, where)
