"""The injection scan of a request's input and output, kept in the store: it depends only on the texts, the
rubric's ids and the detector, so a rerun on the same texts reads it instead of scanning again.

A strong finding sends the assessment to REVIEW. Weak ones (role markers, "new instructions") only ask for a
second opinion: `without_weak` is the request with their spans cut out, which the engine has the panel judge too
(cached like any verdict: it is just another output); the finding matters only if that moves the verdict.

In a conversation the assistant turns are the system under test and are scanned like an output. The user and
system turns are test data, which may address the judges on purpose: what is found there is only a note.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pytest_laj.core.conversation import Conversation, Message, turn_label
from pytest_laj.core.injection import DETECTOR_VERSION, InjectionFinding, find_injection, without_spans
from pytest_laj.core.rubric import Rubric
from pytest_laj.judges.protocol import JudgeRequest
from pytest_laj.store.cache import Store
from pytest_laj.store.keys import injection_key

__all__ = ["Scan", "scan", "scan_key"]

_TEST_DATA_TURNS = (turn_label(0, "user").removesuffix(" 0"), turn_label(0, "system").removesuffix(" 0"))


@dataclass(frozen=True)
class Scan:
    """Strong findings as 'kind: excerpt'; weak ones with where they are, to cut them out; notes on the turns
    of a conversation that are test data."""

    strong: list[str] = field(default_factory=list)
    weak: list[InjectionFinding] = field(default_factory=list)
    notes: list[InjectionFinding] = field(default_factory=list)

    @property
    def needs_second_opinion(self) -> bool:
        return bool(self.weak) and not self.strong

    def described(self) -> list[str]:
        return self.strong + [finding.describe() for finding in self.weak]

    def noted(self) -> list[str]:
        return [finding.describe() for finding in self.notes]

    def without_weak(self, request: JudgeRequest) -> JudgeRequest:
        """The request with every weak span removed from the text it was found in."""
        if request.conversation is not None:
            return self._conversation_without_weak(request, request.conversation)
        output = without_spans(request.output, (f for f in self.weak if f.where == "output"))
        input = request.input
        if input is not None:
            input = without_spans(input, (f for f in self.weak if f.where == "input"))
        return JudgeRequest(request.rubric, request.criteria, output, input, request.context)

    def _conversation_without_weak(self, request: JudgeRequest, conversation: Conversation) -> JudgeRequest:
        messages = []
        for number, message in enumerate(conversation.messages, start=1):
            where = turn_label(number, message.role)
            content = without_spans(message.content, (f for f in self.weak if f.where == where))
            # built without validation: a turn that was all weak span is left empty, not refused
            messages.append(Message.model_construct(role=message.role, content=content))
        cut = Conversation.model_construct(messages=tuple(messages))
        return JudgeRequest(request.rubric, request.criteria, cut.transcript(), None, request.context, conversation=cut)

    def stored(self) -> list[Any]:
        """As kept in the store: a strong finding is its text; a weak one or a note an object with its span."""
        return [*self.strong, *(finding.model_dump() for finding in self.weak + self.notes)]

    @classmethod
    def from_store(cls, value: object) -> Scan | None:
        if not isinstance(value, list):
            return None
        strong = [item for item in value if isinstance(item, str)]
        try:
            found = [InjectionFinding.model_validate(item) for item in value if not isinstance(item, str)]
        except ValueError:
            return None
        notes = [f for f in found if f.where.startswith(_TEST_DATA_TURNS)]
        return cls(strong, [f for f in found if f not in notes], notes)


def _ids(rubric: Rubric) -> tuple[list[str], list[str]]:
    """The rubric's level and criterion ids: what the detector looks for besides its own patterns."""
    level_ids = sorted({level.id for c in rubric.criteria for level in rubric.levels_for(c)})
    return level_ids, sorted(c.id for c in rubric.criteria)


def scan_key(request: JudgeRequest) -> str:
    """Where the scan of the request's texts is kept."""
    level_ids, criterion_ids = _ids(request.rubric)
    if request.conversation is None:
        text = request.output + "\0" + (request.input or "")
    else:
        text = json.dumps(request.conversation.key())
    return injection_key(DETECTOR_VERSION, level_ids, criterion_ids, text)


def scan(request: JudgeRequest, store: Store, key: str | None = None) -> Scan:
    """Where the output or the input (or a conversation's turns) address the judges. `key`: its `scan_key`,
    where the caller worked it out already."""
    key = key or scan_key(request)
    known = Scan.from_store(store.get(key))
    if known is not None:
        return known
    level_ids, criterion_ids = _ids(request.rubric)
    texts = [(request.output, "output"), *([] if request.input is None else [(request.input, "input")])]
    if request.conversation is not None:
        texts = [(m.content, turn_label(n, m.role)) for n, m in enumerate(request.conversation.messages, start=1)]
    findings = [
        finding
        for text, where in texts
        for finding in find_injection(text, level_ids=level_ids, criterion_ids=criterion_ids, where=where)
    ]
    notes = [f for f in findings if f.where.startswith(_TEST_DATA_TURNS)]
    judged = [f for f in findings if f not in notes]
    found = Scan([f.describe() for f in judged if f.strong], [f for f in judged if not f.strong], notes)
    store.set(key, found.stored())
    return found
