"""The `laj` fixture: what a test author calls. It asks the engine, records each assessment with where it was
made, and makes `check` enforce what the record says blocks."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from pytest_laj.core import gate
from pytest_laj.core.case import Case
from pytest_laj.core.conversation import Conversation
from pytest_laj.core.models import Assessment, Outcome
from pytest_laj.core.rubric import Rubric
from pytest_laj.engine.session import Engine
from pytest_laj.engine.spec import AssessmentSpec
from pytest_laj.errors import UsageError
from pytest_laj.plugin import outcome
from pytest_laj.plugin.markers import assessment_spec, marker_settings
from pytest_laj.results.record import AssessmentRecord

__all__ = ["Laj"]

_PACKAGE = str(Path(__file__).resolve().parent.parent) + os.sep
_BATCH_ENTRY_KEYS = frozenset({"output", "input", "context", "rubric", "conversation"})


def _call_site(root: str) -> tuple[str | None, int | None]:
    """The file and line in the test that called pytest-laj: the first frame outside this package. Plain
    string work: it runs for every assessment."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
    if frame is None:
        return None, None
    path = frame.f_code.co_filename
    return (path[len(root) :].replace(os.sep, "/") if path.startswith(root) else path), frame.f_lineno


def _case_of(item: pytest.Item) -> Case | None:
    params = getattr(getattr(item, "callspec", None), "params", {})
    found = [p for p in params.values() if isinstance(p, Case)]
    return found[0] if len(found) == 1 else None


class Laj:
    """Assess model outputs against a rubric with the configured judge panel."""

    def __init__(self, engine: Engine, item: pytest.Item) -> None:
        self._engine = engine
        self._item = item
        self._root = str(item.config.rootpath) + os.sep
        with _usage_errors():
            self._defaults = marker_settings(item)

    def _spec(
        self,
        output: Any,
        input: str | None,
        context: Mapping[str, Any] | None,
        rubric: str | Path | Rubric | None,
        conversation: Any = None,
    ) -> AssessmentSpec:
        return assessment_spec(self._defaults, output, input, context, rubric, conversation)

    def _record(self, assessment: Assessment, enforced: bool, case: Case | None = None) -> AssessmentRecord:
        item = self._item
        file, line = _call_site(self._root)
        case = case or _case_of(item)
        record = AssessmentRecord(
            nodeid=item.nodeid,
            file=file,
            line=line,
            case_id=case.id if case is not None else None,
            enforced=enforced,
            blocks=gate.blocks(assessment, enforced, self._engine.settings.review),
            assessment=assessment,
        )
        outcome.remember(item, record)
        hook = item.config.hook
        hook.pytest_laj_assessment(assessment=assessment, nodeid=item.nodeid)
        if assessment.outcome is Outcome.REVIEW:
            hook.pytest_laj_review(assessment=assessment, nodeid=item.nodeid)
        return record

    def _enforce(self, record: AssessmentRecord) -> Assessment:
        __tracebackhide__ = True
        if record.blocks:
            raise outcome.failure(record, self._item.config.option.tbstyle)
        return record.assessment

    def _judged(
        self,
        output: Any,
        input: str | None,
        context: Mapping[str, Any] | None,
        rubric: str | Path | Rubric | None,
        *,
        enforced: bool,
        case: Case | None = None,
        conversation: Any = None,
    ) -> AssessmentRecord:
        with _usage_errors():
            if case is not None and case.conversation is None:
                output = self._engine.produce(case)
            conversation = case.conversation if case is not None else conversation
            assessment = self._engine.assess(self._spec(output, input, context, rubric, conversation))
        return self._record(assessment, enforced, case)

    def assess(
        self,
        output: str | None = None,
        *,
        input: str | None = None,
        context: Mapping[str, Any] | None = None,
        rubric: str | Path | Rubric | None = None,
        conversation: Conversation | Sequence[Mapping[str, str]] | None = None,
    ) -> Assessment:
        """Judge one output (or, with `conversation`, the assistant turns of a whole conversation) and return
        the Assessment, whatever its outcome; nothing is enforced."""
        return self._judged(output, input, context, rubric, enforced=False, conversation=conversation).assessment

    def check(
        self,
        output: str | None = None,
        *,
        input: str | None = None,
        context: Mapping[str, Any] | None = None,
        rubric: str | Path | Rubric | None = None,
        conversation: Conversation | Sequence[Mapping[str, str]] | None = None,
    ) -> Assessment:
        """Judge one output (or a conversation); a FAIL, an ERROR or a blocking REVIEW fails the test here."""
        __tracebackhide__ = True
        return self._enforce(self._judged(output, input, context, rubric, enforced=True, conversation=conversation))

    def assess_case(self, case: Case, *, rubric: str | Path | Rubric | None = None) -> Assessment:
        """Judge a case: its recorded output, or what the declared producer makes of its input."""
        return self._judged(None, case.input, case.context, rubric, enforced=False, case=case).assessment

    def check_case(self, case: Case, *, rubric: str | Path | Rubric | None = None) -> Assessment:
        """`check` for a case."""
        __tracebackhide__ = True
        return self._enforce(self._judged(None, case.input, case.context, rubric, enforced=True, case=case))

    async def _ajudged(
        self,
        output: Any,
        input: str | None,
        context: Mapping[str, Any] | None,
        rubric: str | Path | Rubric | None,
        conversation: Any,
    ) -> Assessment:
        with _usage_errors():
            return await self._engine.aassess(self._spec(output, input, context, rubric, conversation))

    async def aassess(
        self,
        output: str | None = None,
        *,
        input: str | None = None,
        context: Mapping[str, Any] | None = None,
        rubric: str | Path | Rubric | None = None,
        conversation: Conversation | Sequence[Mapping[str, str]] | None = None,
    ) -> Assessment:
        assessment = await self._ajudged(output, input, context, rubric, conversation)
        return self._record(assessment, enforced=False).assessment

    async def acheck(
        self,
        output: str | None = None,
        *,
        input: str | None = None,
        context: Mapping[str, Any] | None = None,
        rubric: str | Path | Rubric | None = None,
        conversation: Conversation | Sequence[Mapping[str, str]] | None = None,
    ) -> Assessment:
        __tracebackhide__ = True
        assessment = await self._ajudged(output, input, context, rubric, conversation)
        return self._enforce(self._record(assessment, enforced=True))

    def assess_many(
        self,
        outputs: Iterable[str | Mapping[str, Any]],
        *,
        input: str | None = None,
        context: Mapping[str, Any] | None = None,
        rubric: str | Path | Rubric | None = None,
    ) -> list[Assessment]:
        """Judge many outputs concurrently; nothing is enforced. The keywords are `assess`'s, as defaults for
        every entry. An entry is an output string or a mapping with `output` (or `conversation` instead) and
        any of `input`, `context` (merged over the shared one) and `rubric`, which override them."""
        specs = []
        with _usage_errors():
            for index, entry in enumerate(outputs):
                if not isinstance(entry, Mapping):
                    specs.append(self._spec(entry, input, context, rubric))
                    continue
                unknown = sorted(set(entry) - _BATCH_ENTRY_KEYS)
                if unknown or ("output" in entry) == ("conversation" in entry):
                    raise UsageError(
                        f"assess_many entry {index}: needs 'output' (or 'conversation' instead) and may have "
                        f"'input', 'context' and 'rubric'; got keys {sorted(map(str, entry))}"
                    )
                merged = {**(context or {}), **entry.get("context", {})}
                conversation = entry.get("conversation")
                entry_input = entry.get("input", input if conversation is None else None)
                specs.append(
                    self._spec(entry.get("output"), entry_input, merged, entry.get("rubric", rubric), conversation)
                )
            assessments = self._engine.assess_many(specs)
        return [self._record(a, enforced=False).assessment for a in assessments]


@contextmanager
def _usage_errors() -> Iterator[None]:
    """Show configuration mistakes as a plain failure message, not a traceback into the plugin."""
    try:
        yield
    except UsageError as error:
        raise pytest.fail.Exception(f"laj usage error: {error}", pytrace=False) from None
