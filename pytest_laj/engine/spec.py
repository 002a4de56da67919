"""What one call asks for, and the check that turns it into a request the panel can rate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_laj.core.conversation import Conversation
from pytest_laj.core.modes import AskMode
from pytest_laj.core.rubric import Rubric, RubricRegistry, Thresholds
from pytest_laj.errors import UsageError
from pytest_laj.judges.panel import CallPolicy, Panel
from pytest_laj.judges.protocol import JudgeRequest
from pytest_laj.judges.registry import JudgeRegistry
from pytest_laj.store.keys import assessment_identity

__all__ = ["AssessmentSpec", "Prepared", "check_spec", "prepare"]


@dataclass
class AssessmentSpec:
    """One output (or one conversation) to assess, with everything the test's marker and call said about it."""

    output: Any
    rubric: str | Rubric | None
    input: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)
    judges: Sequence[Any] | None = None
    thresholds: Mapping[str, Any] = field(default_factory=dict)
    conversation: Any = None
    """Instead of `output` and `input`: the turns, as a Conversation or a list of {role, content} mappings."""
    ask: AskMode | None = None
    """How a question-graph rubric is asked; None: as the run's `laj_ask` says."""


@dataclass
class Prepared:
    """A checked spec: the rubric, the request every judge gets, the panel and the thresholds."""

    rubric: Rubric
    request: JudgeRequest
    panel: Panel
    spec: AssessmentSpec
    thresholds: Thresholds
    ask: AskMode = AskMode.WHOLE

    @property
    def per_item(self) -> bool:
        """One call per question along each judge's path: only a question-graph rubric has questions."""
        return self.ask is AskMode.PER_ITEM and self.rubric.graph is not None

    def identity(self) -> str:
        """What the assessment is about, as its record tells (`Assessment.identity`)."""
        request, conversation = self.request, self.request.conversation
        turns = None if conversation is None else conversation.key()
        return assessment_identity(self.rubric.fingerprint(), request.input, request.context, request.output, turns)


_SCALARS = (str, int, float, bool)


def _check_encodable(name: str, text: str) -> None:
    """A lone surrogate (from bytes decoded with `surrogateescape`, or a JSON `\\ud800`) is not Unicode any
    provider accepts: it is the text's fault, so it is refused here rather than failing every call."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise UsageError(
            f"the {name} contains a lone surrogate (U+{ord(text[error.start]):04X} at position {error.start}), "
            "which is not valid Unicode and cannot be sent to a judge; decode the source bytes with "
            "errors='replace' or fix the text"
        ) from None


def _checked_conversation(spec: AssessmentSpec, max_chars: int) -> Conversation:
    if spec.output is not None or spec.input is not None:
        raise UsageError("give either a conversation or an output (with its input), not both")
    conversation = Conversation.of(spec.conversation)
    if conversation.chars() > max_chars:
        raise UsageError(
            f"the conversation is {conversation.chars()} characters (all turns together), over laj_max_chars "
            f"({max_chars}); pytest-laj never truncates what it judges: shorten it or raise laj_max_chars"
        )
    return conversation


def check_spec(spec: AssessmentSpec, max_chars: int) -> tuple[str, Conversation | None]:
    """Refuse what no judge could be asked about, before anything hashes or sends it; returns the text judged
    (the output, or the conversation's transcript) and the conversation."""
    conversation = None if spec.conversation is None else _checked_conversation(spec, max_chars)
    output = spec.output if conversation is None else conversation.transcript()
    if not isinstance(output, str):
        raise TypeError(
            f"laj: the output to assess must be a str, got {type(output).__name__} ({output!r:.60}); "
            "decode bytes or pick the reply text out of a structured response first"
        )
    if spec.input is not None and not isinstance(spec.input, str):
        raise TypeError(f"laj: input must be a str or None, got {type(spec.input).__name__}")
    texts = (("output", output), ("input", spec.input or "")) if conversation is None else ()  # turns checked
    for name, text in texts:
        if len(text) > max_chars:
            raise UsageError(
                f"the {name} is {len(text)} characters, over laj_max_chars ({max_chars}); pytest-laj never "
                "truncates what it judges: shorten it or raise laj_max_chars"
            )
        _check_encodable(name, text)
    for key, value in spec.context.items():
        if not isinstance(key, str):
            raise UsageError(f"context variables are named by a str, got a {type(key).__name__}")
        _check_encodable(f"context variable name {key!a}", key)
        # Only a plain value can equal one of the rubric's declared values; a nested or circular structure
        # is refused without being walked.
        if not (value is None or isinstance(value, _SCALARS)):
            raise UsageError(
                f"context {key!a}: expected a plain str, int, float or bool that the rubric declares, "
                f"got a {type(value).__name__}"
            )
        _check_encodable(f"context value of {key!a}", str(value))
    return output, conversation


def prepare(
    spec: AssessmentSpec,
    rubrics: RubricRegistry,
    judges: JudgeRegistry,
    policy: CallPolicy,
    max_chars: int,
    ask: AskMode = AskMode.WHOLE,
) -> Prepared:
    """Check a spec before any judge is asked; a mistake is a `UsageError` (or `TypeError`) naming it."""
    output, conversation = check_spec(spec, max_chars)
    if spec.rubric is None:
        raise UsageError("no rubric given: pass rubric=... to the call or to @pytest.mark.laj(rubric=...)")
    rubric = rubrics.get(spec.rubric)
    context = rubric.resolve_context(spec.context)
    try:
        thresholds = rubric.thresholds.merged(spec.thresholds)
    except ValueError as exc:
        raise UsageError(f"invalid thresholds {dict(spec.thresholds)}: {exc}") from None
    if (problem := rubric.vera_problem(thresholds)) is not None:
        raise UsageError(f"invalid thresholds {dict(spec.thresholds)}: min_vera_score: {problem}")
    panel = judges.judges_for(spec.judges)
    quorum = thresholds.quorum_for(len(panel))
    if quorum > len(panel):
        raise UsageError(
            f"quorum {quorum} is larger than the panel ({len(panel)} judges: "
            f"{', '.join(j.name for j in panel)}); no assessment could ever reach it"
        )
    criteria = [c for c in rubric.criteria if rubric.applies(c, context)]
    request = JudgeRequest(rubric, criteria, output, spec.input, context, conversation=conversation)
    return Prepared(rubric, request, Panel(panel, policy), spec, thresholds, spec.ask or ask)
