"""The injection scan of a request's input and output, kept in the store: it depends only on the texts, the
rubric's ids and the detector, so a rerun on the same texts reads it instead of scanning again.

A strong finding sends the assessment to REVIEW. Weak ones (role markers, "new instructions") only ask for a
second opinion: `without_weak` is the request with their spans cut out, which the engine has the panel judge too
(cached like any verdict: it is just another output); the finding matters only if that moves the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pytest_laj.core.injection import DETECTOR_VERSION, InjectionFinding, find_injection, without_spans
from pytest_laj.judges.protocol import JudgeRequest
from pytest_laj.store.cache import Store
from pytest_laj.store.keys import injection_key

__all__ = ["Scan", "scan"]


@dataclass(frozen=True)
class Scan:
    """Strong findings as 'kind: excerpt'; weak ones with where they are, to cut them out."""

    strong: list[str] = field(default_factory=list)
    weak: list[InjectionFinding] = field(default_factory=list)

    @property
    def needs_second_opinion(self) -> bool:
        return bool(self.weak) and not self.strong

    def described(self) -> list[str]:
        return self.strong + [finding.describe() for finding in self.weak]

    def without_weak(self, request: JudgeRequest) -> JudgeRequest:
        """The request with every weak span removed from the text it was found in."""
        output = without_spans(request.output, (f for f in self.weak if f.where == "output"))
        input = request.input
        if input is not None:
            input = without_spans(input, (f for f in self.weak if f.where == "input"))
        return JudgeRequest(request.rubric, request.criteria, output, input, request.context)

    def stored(self) -> list[Any]:
        """As kept in the store: a strong finding is its text; a weak one an object with its span."""
        return [*self.strong, *(finding.model_dump() for finding in self.weak)]

    @classmethod
    def from_store(cls, value: object) -> Scan | None:
        if not isinstance(value, list):
            return None
        strong = [item for item in value if isinstance(item, str)]
        try:
            weak = [InjectionFinding.model_validate(item) for item in value if not isinstance(item, str)]
        except ValueError:
            return None
        return cls(strong, weak)


def scan(request: JudgeRequest, store: Store) -> Scan:
    """Where the output or the input addresses the judges."""
    rubric = request.rubric
    level_ids = sorted({level.id for c in rubric.criteria for level in rubric.levels_for(c)})
    criterion_ids = sorted(c.id for c in rubric.criteria)
    key = injection_key(DETECTOR_VERSION, level_ids, criterion_ids, request.output + "\0" + (request.input or ""))
    known = Scan.from_store(store.get(key))
    if known is not None:
        return known
    findings = find_injection(request.output, level_ids=level_ids, criterion_ids=criterion_ids)
    if request.input is not None:
        findings += find_injection(request.input, level_ids=level_ids, criterion_ids=criterion_ids, where="input")
    found = Scan([f.describe() for f in findings if f.strong], [f for f in findings if not f.strong])
    store.set(key, found.stored())
    return found
