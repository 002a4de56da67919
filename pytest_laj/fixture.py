"""The `laj` fixture: what a test author calls. Marker settings (module, class, function) are merged once."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import pytest

from pytest_laj import outcome
from pytest_laj.case import Case
from pytest_laj.judge import JudgeSpecError
from pytest_laj.rubric import Rubric, RubricError
from pytest_laj.session import AssessmentSpec, LajSession, UsageProblem
from pytest_laj.verdict import Assessment, Outcome

__all__ = ["MARKER_KEYS", "Laj", "marker_settings"]

MARKER_KEYS: dict[str, tuple[type, ...]] = {
    "rubric": (str, Path, Rubric),
    "context": (Mapping,),
    "judges": (list, tuple),
    "thresholds": (Mapping,),
}


def marker_settings(item: pytest.Item) -> dict[str, Any]:
    """Merge every `laj` marker, the closest winning; context and thresholds merge key by key."""
    merged: dict[str, Any] = {"context": {}, "thresholds": {}}
    for mark in reversed(list(item.iter_markers("laj"))):
        if mark.args:
            raise UsageProblem(f"{item.nodeid}: @pytest.mark.laj takes keyword arguments only, got {mark.args!r}")
        for key, value in mark.kwargs.items():
            expected = MARKER_KEYS.get(key)
            if expected is None:
                raise UsageProblem(
                    f"{item.nodeid}: unknown @pytest.mark.laj argument {key!r}; "
                    f"expected one of {', '.join(MARKER_KEYS)}"
                )
            if not isinstance(value, expected):
                raise UsageProblem(
                    f"{item.nodeid}: @pytest.mark.laj({key}=...) got {type(value).__name__}; "
                    f"expected {_names(expected)}"
                )
            if key in ("context", "thresholds"):
                merged[key] = {**merged[key], **cast(Mapping[str, Any], value)}
            else:
                merged[key] = value
    return merged


def _names(expected: tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in expected)


def assessment_spec(
    defaults: Mapping[str, Any],
    output: Any,
    input: str | None,
    context: Mapping[str, Any] | None,
    rubric: str | Path | Rubric | None,
) -> AssessmentSpec:
    """What a call asks for, over what the markers say: the call's rubric wins, contexts merge."""
    return AssessmentSpec(
        output=output,
        rubric=str(rubric) if isinstance(rubric, Path) else (rubric or defaults.get("rubric")),
        input=input,
        context={**defaults["context"], **(context or {})},
        judges=defaults.get("judges"),
        thresholds=defaults["thresholds"],
    )


def prefetch_cases(session: LajSession, items: Iterable[pytest.Item]) -> int:
    """Start judging, up front and concurrently, every selected test's case (a `Case` parameter, judged with
    its marker's rubric); the test's own `laj.check` then collects the finished assessment."""
    specs, produced = [], 0
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        found = [p for p in params.values() if isinstance(p, Case)]
        if len(found) != 1 or "laj" not in getattr(item, "fixturenames", ()):
            continue
        try:
            defaults = marker_settings(item)
        except UsageProblem:
            continue  # the test reports it when it runs
        case = found[0]
        spec = assessment_spec(defaults, case.output, case.input, case.context, None)
        if case.output is not None:
            specs.append(spec)
        else:
            produced += session.prefetch_produced(spec, case)
    return session.prefetch(specs) + produced


class Laj:
    """Assess model outputs against a rubric with the configured judge panel."""

    def __init__(self, session: LajSession, item: pytest.Item) -> None:
        self._session = session
        self._item = item
        with _usage_errors():
            self._defaults = marker_settings(item)

    def _spec(
        self,
        output: Any,
        input: str | None,
        context: Mapping[str, Any] | None,
        rubric: str | Path | Rubric | None,
    ) -> AssessmentSpec:
        return assessment_spec(self._defaults, output, input, context, rubric)

    def _done(self, assessment: Assessment) -> Assessment:
        outcome.remember(self._item, assessment)
        hook = self._item.config.hook
        hook.pytest_laj_assessment(assessment=assessment, nodeid=self._item.nodeid)
        if assessment.outcome is Outcome.REVIEW:
            hook.pytest_laj_review(assessment=assessment, nodeid=self._item.nodeid)
        return assessment

    def assess(
        self,
        output: str,
        *,
        input: str | None = None,
        context: Mapping[str, Any] | None = None,
        rubric: str | Path | Rubric | None = None,
    ) -> Assessment:
        """Judge one output and return the Assessment, whatever its outcome."""
        with _usage_errors():
            return self._done(self._session.assess(self._spec(output, input, context, rubric)))

    def check(
        self,
        output: str,
        *,
        input: str | None = None,
        context: Mapping[str, Any] | None = None,
        rubric: str | Path | Rubric | None = None,
    ) -> Assessment:
        """Judge one output and make a FAIL or ERROR the test's failure; a REVIEW is reported as REVIEW."""
        assessment = self.assess(output, input=input, context=context, rubric=rubric)
        outcome.enforce(self._item, assessment)
        return assessment

    def assess_case(self, case: Case, *, rubric: str | Path | Rubric | None = None) -> Assessment:
        """Judge a case: its recorded output, or what the declared producer makes of its input."""
        with _usage_errors():
            output = self._session.produce(case)
        return self.assess(output, input=case.input, context=case.context, rubric=rubric)

    def check_case(self, case: Case, *, rubric: str | Path | Rubric | None = None) -> Assessment:
        """`check` for a case: FAIL and ERROR fail the test, REVIEW is reported as REVIEW."""
        assessment = self.assess_case(case, rubric=rubric)
        outcome.enforce(self._item, assessment)
        return assessment

    async def aassess(
        self,
        output: str,
        *,
        input: str | None = None,
        context: Mapping[str, Any] | None = None,
        rubric: str | Path | Rubric | None = None,
    ) -> Assessment:
        with _usage_errors():
            return self._done(await self._session.aassess(self._spec(output, input, context, rubric)))

    async def acheck(
        self,
        output: str,
        *,
        input: str | None = None,
        context: Mapping[str, Any] | None = None,
        rubric: str | Path | Rubric | None = None,
    ) -> Assessment:
        assessment = await self.aassess(output, input=input, context=context, rubric=rubric)
        outcome.enforce(self._item, assessment)
        return assessment

    def assess_many(
        self,
        outputs: Iterable[str | Mapping[str, Any]],
        *,
        context: Mapping[str, Any] | None = None,
        rubric: str | Path | Rubric | None = None,
    ) -> list[Assessment]:
        """Judge many outputs concurrently. Each entry is an output string or a mapping with `output` and
        optionally `input` and `context` (merged over the shared `context`)."""
        specs = []
        for entry in outputs:
            if isinstance(entry, Mapping):
                unknown = set(entry) - {"output", "input", "context"}
                if unknown or "output" not in entry:
                    raise UsageProblem(
                        "assess_many entries need 'output' and may have 'input' and 'context'; "
                        f"got keys {sorted(entry)}"
                    )
                merged = {**(context or {}), **entry.get("context", {})}
                specs.append(self._spec(entry["output"], entry.get("input"), merged, rubric))
            else:
                specs.append(self._spec(entry, None, context, rubric))
        with _usage_errors():
            return [self._done(a) for a in self._session.assess_many(specs)]


@contextmanager
def _usage_errors() -> Iterator[None]:
    """Show configuration mistakes as a plain failure message, not a traceback into the plugin."""
    try:
        yield
    except (UsageProblem, RubricError, JudgeSpecError) as error:
        raise pytest.fail.Exception(f"laj usage error: {error}", pytrace=False) from None
