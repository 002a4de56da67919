"""The judge script: which level each scripted judge gives, and which faults it plays.

A rules file is validated hard at load time, like a rubric, because a typo in a test fixture that silently
changes a verdict is worse than a loud error: every error names the file, the field and what was expected.

    latency_ms: 20                       # every judge's latency unless it sets its own
    judges:
      strict:                            # reachable as model "openai/strict"
        default: best_practice
        rules:                           # all that hold apply, later ones win per criterion
          - {match: "(?i)988", input_match: "(?i)pills", context: {risk: [low]}, levels: {"*": suboptimal}}
        faults:                          # the first with times left (and a matching output) is played
          - {status: 429, times: 2, retry_after: 1}
      gullible:
        default: suboptimal
        obey_injection: true             # an output that talks to the grader gets the best level everywhere
      canned:
        answer: {score: 8, reason: simulated}   # this JSON object is the content of every answer

A conversation (turns in blocks named by their role) is rated like an output: a rule's `match` holds when it
matches any assistant turn, its `input_match` when it matches any user turn.

A question-graph rubric asks each item rather than each criterion: a rule's `answers` (item id, or "*" for
every item, -> the answer's label) and a judge's `default_answer` answer them. An item nothing answers gets no
valid answer, so that judge's verdict is invalid, as an unreadable one from a real judge would be.

      - {match: "(?i)crisis line", answers: {"10": "No"}}

A judge with `answer` plays a judge for another tool's protocol (DeepEval's GEval, say): it answers ANY
well-formed chat request (a known model, a non-empty `messages` list with a user message) with the object as
the message content, without asking for the rubric protocol (no json_schema, no untrusted-output block). It
has no `default`, `rules` or `obey_injection`; its faults still play, a fault's `match` is tried on the last
user message, and of the verdict faults only those that make sense for any JSON apply (not_json,
truncated_json, fenced, refusal, empty).
"""

from __future__ import annotations

import hashlib
import json
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from pytest_laj.core.yamlfile import YamlError, load_yaml, short_repr
from pytest_laj.errors import UsageError

if TYPE_CHECKING:
    from pytest_laj.core.rubric import Rubric

__all__ = [
    "EVERY_CRITERION",
    "Fault",
    "JudgeScript",
    "JudgedCase",
    "Rating",
    "Rule",
    "SimulatorRules",
    "SimulatorRulesError",
    "VerdictFault",
    "load_rules",
]

EVERY_CRITERION = "*"
_JUDGE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
# What a gullible judge takes for instructions meant for it: an override, or a grader addressed by name. It is
# deliberately cruder than pytest_laj.injection: the simulator plays a judge that falls for it, not the guard.
_INJECTION = re.compile(
    r"(?i)\b(?:(?:ignore|disregard) (?:all |any )?(?:the )?(?:previous|prior|above) instructions"
    r"|(?:grader|judge|evaluator|rater)s?\b(?! (?:yourself|you|me|myself|them|others)\b))"
)
_OBEYED_INJECTION = "followed instructions found in the reply"


class SimulatorRulesError(UsageError):
    """A rules file could not be loaded; the message names the file, the field and what was expected."""


def _compile_regex(raw: object) -> re.Pattern[str]:
    if isinstance(raw, re.Pattern):
        return raw
    if not isinstance(raw, str):
        raise ValueError(f"expected a regular expression as a string, got {type(raw).__name__}")
    try:
        return re.compile(raw)
    except re.error as exc:
        raise ValueError(f"expected a valid regular expression, {raw!r} does not compile: {exc}") from None


Regex = Annotated[
    re.Pattern[str],
    PlainValidator(_compile_regex),
    PlainSerializer(lambda pattern: pattern.pattern, return_type=str),
]
"""A regex compiled at load time; it serialises back to its source so fingerprints stay stable."""

ContextValue = str | int | float | bool | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VerdictFault(str, Enum):
    """A well-formed chat completion whose content is a bad or odd verdict."""

    NOT_JSON = "not_json"
    TRUNCATED_JSON = "truncated_json"
    FENCED = "fenced"
    UNKNOWN_LEVEL = "unknown_level"
    MISSING_CRITERION = "missing_criterion"
    REFUSAL = "refusal"
    EMPTY = "empty"

    def __str__(self) -> str:
        return self.value


_FAULT_KINDS = ("status", "latency_ms", "drop", "body", "verdict")


class Fault(_Strict):
    """One misbehaviour of a judge, played for the first `times` requests whose output matches."""

    times: int | Literal["always"] = 1
    match: Regex | None = None
    status: int | None = Field(default=None, ge=400, le=599)
    retry_after: int | None = Field(default=None, ge=0)
    message: str | None = None
    echo_auth: StrictBool = False  # echo the request's Authorization header, as careless providers do
    latency_ms: int | None = Field(default=None, ge=0)
    drop: Literal[True] | None = None
    body: Literal["garbage"] | None = None
    verdict: VerdictFault | None = None

    @field_validator("times", mode="before")
    @classmethod
    def _times_is_count_or_always(cls, raw: object) -> object:
        if raw == "always" or (isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0):
            return raw
        raise ValueError(f"expected a non-negative integer or 'always', got {raw!r}")

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Fault:
        kinds = [kind for kind in _FAULT_KINDS if getattr(self, kind) is not None]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none"
            raise ValueError(f"expected exactly one of {', '.join(_FAULT_KINDS)} (found {found})")
        if self.status is None and (self.retry_after is not None or self.message is not None or self.echo_auth):
            raise ValueError("retry_after, message and echo_auth only go with a status fault")
        return self

    @property
    def kind(self) -> str:
        """Which misbehaviour this is: status, latency_ms, drop, body or verdict."""
        return next(kind for kind in _FAULT_KINDS if getattr(self, kind) is not None)


@dataclass(frozen=True)
class JudgedCase:
    """What a judge sees of one test case: the output under test, its input and context; for a conversation,
    its turns as (role, text), with `output` the assistant turns together."""

    output: str
    input: str | None = None
    context: Mapping[str, Any] | None = None
    turns: tuple[tuple[str, str], ...] = ()

    def said_by(self, role: str) -> list[str]:
        """Each text by `role`: a conversation's turns, or the output (assistant) and the input (user)."""
        if self.turns:
            return [text for kind, text in self.turns if kind == role]
        single = self.output if role == "assistant" else self.input if role == "user" else None
        return [] if single is None else [single]


@dataclass(frozen=True)
class Rating:
    """A judge's answer for one criterion (a level), or for one question of a graph (an answer label)."""

    level: str
    rationale: str
    evidence: str
    answers_item: bool = False

    def as_json(self) -> dict[str, str]:
        if self.answers_item:
            return {"answer": self.level, "evidence": self.evidence}
        return {"level": self.level, "rationale": self.rationale, "evidence": self.evidence}


def _as_text(value: object) -> str:
    return json.dumps(value) if value is None else str(value)


class Rule(_Strict):
    """Levels (and answers to a graph's items) to give when every condition holds; a rule without conditions
    always applies."""

    match: Regex | None = None
    input_match: Regex | None = None
    context: dict[str, list[ContextValue]] | None = None
    levels: dict[str, str] = Field(default_factory=dict)
    answers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _gives_something(self) -> Rule:
        if not self.levels and not self.answers:  # reported at `levels`, the usual one, as a missing field is
            message = "missing; expected 'levels' (criterion -> level) or 'answers' (item id -> answer), or both"
            error = PydanticCustomError("missing_levels", message)
            problem = InitErrorDetails(type=error, loc=("levels",), input=None)
            raise ValidationError.from_exception_data(type(self).__name__, [problem])
        return self

    @field_validator("context", mode="before")
    @classmethod
    def _context_values_as_lists(cls, raw: object) -> object:
        if not isinstance(raw, Mapping):
            return raw
        as_lists: dict[object, list[object]] = {}
        for key, value in raw.items():
            values = list(value) if isinstance(value, list | tuple) else [value]
            if not all(v is None or isinstance(v, str | int | float | bool) for v in values):
                raise ValueError(f"expected context {key!r} to be a scalar or a list of scalars, not {value!r}")
            as_lists[key] = values
        return as_lists

    def evidence_for(self, case: JudgedCase) -> str | None:
        """The output text this rule matched ('' without `match`), or None when a condition fails. In a
        conversation `match` holds when it matches any assistant turn, `input_match` any user turn."""
        evidence = ""
        if self.match is not None:
            found = next(filter(None, map(self.match.search, case.said_by("assistant"))), None)
            if found is None:
                return None
            evidence = found.group(0)
        if self.input_match is not None and not any(map(self.input_match.search, case.said_by("user"))):
            return None
        if self.context is not None and not self._context_holds(case.context):
            return None
        return evidence

    def _context_holds(self, context: Mapping[str, Any] | None) -> bool:
        if context is None:
            return False
        for key, allowed in (self.context or {}).items():
            if key not in context:
                return False
            actual = context[key]
            actual_values = actual if isinstance(actual, list) else [actual]
            if not {_as_text(v) for v in actual_values} & {_as_text(v) for v in allowed}:
                return False
        return True

    def describe(self, number: int) -> str:
        """How a rationale names this rule, e.g. 'rule 2 matched /(?i)you should do it/'."""
        conditions = []
        if self.match is not None:
            conditions.append(f"/{self.match.pattern}/")
        if self.input_match is not None:
            conditions.append(f"input /{self.input_match.pattern}/")
        if self.context is not None:
            conditions.append(f"context {json.dumps(self.context, sort_keys=True)}")
        if not conditions:
            return f"rule {number} applies to every output"
        return f"rule {number} matched " + " and ".join(conditions)


_RUBRIC_VERDICT_FAULTS = (VerdictFault.UNKNOWN_LEVEL, VerdictFault.MISSING_CRITERION)


def _json_object(raw: object) -> object:
    """A canned answer must be a JSON object: a mapping with string keys whose values JSON can write."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"expected a JSON object (a mapping), got {type(raw).__name__}")
    if not all(isinstance(key, str) for key in raw):
        raise ValueError("expected a JSON object with string keys")
    try:
        json.dumps(raw, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"expected a JSON object, but it cannot be written as JSON: {exc}") from None
    return dict(raw)


class JudgeScript(_Strict):
    """How one scripted judge rates: a default level, rules that override it, and faults it plays.

    With `answer` it rates nothing: every well-formed chat request gets that fixed JSON object as content.
    """

    latency_ms: int | None = Field(default=None, ge=0)
    default: str | None = None
    rules: list[Rule] = Field(default_factory=list)
    faults: list[Fault] = Field(default_factory=list)
    obey_injection: StrictBool = False
    answer: Annotated[dict[str, Any], PlainValidator(_json_object)] | None = None
    default_answer: str | None = None

    @model_validator(mode="after")
    def _answer_stands_alone(self) -> JudgeScript:
        if self.answer is None:
            return self
        rating = [
            name
            for name, given in (
                ("default", self.default is not None),
                ("default_answer", self.default_answer is not None),
                ("rules", bool(self.rules)),
                ("obey_injection", self.obey_injection),
            )
            if given
        ]
        if rating:
            raise ValueError(f"a judge with 'answer' rates nothing, so it takes no {', '.join(rating)}")
        for index, fault in enumerate(self.faults):
            if fault.verdict in _RUBRIC_VERDICT_FAULTS:
                raise ValueError(
                    f"faults[{index}]: verdict {fault.verdict} needs rubric criteria; a judge with 'answer' "
                    f"takes not_json, truncated_json, fenced, refusal or empty"
                )
        return self

    def rate(
        self,
        case: JudgedCase,
        criteria: Mapping[str, Sequence[str]],
        items: Mapping[str, Sequence[str]] | None = None,
    ) -> dict[str, Rating]:
        """Rate every requested criterion (criterion id -> allowed level ids) and answer every item.

        Every rule whose conditions hold applies in file order, later rules overriding earlier ones; within a
        rule a named criterion beats "*". A level the criterion does not allow is replaced by the default if
        that is allowed, else by the first allowed level, since a real judge would answer something allowed.

        A judge with `obey_injection` does what an output addressed to the grader tells it instead: it ignores
        its rules and gives every criterion its first (best) allowed level, quoting the text it obeyed.
        """
        items = items or {}
        if (injection := self.obeys(case)) is not None:
            asked = {**criteria, **items}
            return {
                key: Rating(allowed[0] if allowed else "", _OBEYED_INJECTION, injection.group(0), key in items)
                for key, allowed in asked.items()
            }
        return {**self._rate_criteria(case, criteria), **self._answer_items(case, items)}

    def _answer_items(self, case: JudgedCase, items: Mapping[str, Sequence[str]]) -> dict[str, Rating]:
        """Answers as scripted, allowed or not: an item with no valid answer makes the verdict invalid."""
        default = Rating(self.default_answer or "", "no rule matched; default answer", "", answers_item=True)
        answered = dict.fromkeys(items, default)
        for number, rule in enumerate(self.rules, start=1):
            evidence = rule.evidence_for(case)
            if evidence is None:
                continue
            for item in items:
                answer = rule.answers.get(item, rule.answers.get(EVERY_CRITERION))
                if answer is not None:
                    answered[item] = Rating(answer, rule.describe(number), evidence, answers_item=True)
        return answered

    def _rate_criteria(self, case: JudgedCase, criteria: Mapping[str, Sequence[str]]) -> dict[str, Rating]:
        chosen = {criterion: self._default_rating() for criterion in criteria}
        for number, rule in enumerate(self.rules, start=1):
            evidence = rule.evidence_for(case)
            if evidence is None:
                continue
            for criterion in criteria:
                level = rule.levels.get(criterion, rule.levels.get(EVERY_CRITERION))
                if level is not None:
                    chosen[criterion] = Rating(level, rule.describe(number), evidence)
        return {criterion: self._allowed(rating, criteria[criterion]) for criterion, rating in chosen.items()}

    def obeys(self, case: JudgedCase) -> re.Match[str] | None:
        """What in the output this judge takes for instructions to it, if it obeys such things."""
        return _INJECTION.search(case.output) if self.obey_injection else None

    def _default_rating(self) -> Rating:
        if self.default is None:
            return Rating("", "no rule matched and no default is set; first allowed level", "")
        return Rating(self.default, "no rule matched; default level", "")

    def _allowed(self, rating: Rating, allowed: Sequence[str]) -> Rating:
        if rating.level in allowed or not allowed:
            return rating
        fallback = self.default if self.default is not None and self.default in allowed else allowed[0]
        if not rating.level:
            return Rating(fallback, rating.rationale, rating.evidence)
        note = f"; level {rating.level!r} is not allowed for this criterion, so answered {fallback!r}"
        return Rating(fallback, rating.rationale + note, rating.evidence)


def _options_of(rubrics: Sequence[Rubric]) -> dict[str, set[str]]:
    """Every item id of the rubrics' question graphs, with the answers it takes."""
    options_of: dict[str, set[str]] = {}
    for rubric in rubrics:
        for _, item in rubric.graph.items() if rubric.graph is not None else ():
            options_of.setdefault(item.id, set()).update(o.label for o in item.options)
    return options_of


def _raise_unknown(problems: Sequence[str], rubrics: Sequence[Rubric], source: str) -> None:
    if problems:
        ids = ", ".join(rubric.id for rubric in rubrics)
        raise SimulatorRulesError(
            f"{source}: the rules name what no rubric of the run ({ids}) has:\n  " + "\n  ".join(problems)
        )


class SimulatorRules(_Strict):
    """A whole rules file: a default latency and the scripted judges by name."""

    latency_ms: int = Field(default=0, ge=0)
    judges: dict[str, JudgeScript] = Field(min_length=1)

    @field_validator("judges")
    @classmethod
    def _judge_names_are_reachable(cls, judges: dict[str, JudgeScript]) -> dict[str, JudgeScript]:
        for name in judges:
            if not _JUDGE_NAME.match(name):
                raise ValueError(
                    f"expected judge names of letters, digits, '_', '.' or '-' (reachable as model "
                    f"'openai/<name>'), got {name!r}"
                )
        return judges

    @classmethod
    def from_mapping(cls, data: object, source: str = "<rules>") -> SimulatorRules:
        """Validate already-parsed rules; errors raise SimulatorRulesError naming `source`."""
        if not isinstance(data, Mapping):
            kind = type(data).__name__
            raise SimulatorRulesError(f"{source}: expected a mapping with 'judges', got {kind}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "\n".join(f"  {_describe_error(error)}" for error in exc.errors())
            raise SimulatorRulesError(f"{source}: invalid simulator rules:\n{problems}") from None

    def check_against(self, rubrics: Sequence[Rubric], source: str) -> None:
        """Every criterion and level the rules name must exist in one of the run's rubrics: a misspelt one
        never matches, and the judge would quietly answer its default instead."""
        levels_of: dict[str, set[str]] = {}
        for rubric in rubrics:
            for asked in rubric.criteria:
                levels_of.setdefault(asked.id, set()).update(lv.id for lv in rubric.levels_for(asked))
        every_level = sorted(set().union(*levels_of.values()))
        problems = self._answer_problems(_options_of(rubrics))
        for name, script in self.judges.items():
            if script.default is not None and script.default not in every_level:
                problems.append(f"judges.{name}.default: unknown level {script.default!r}; levels: {every_level}")
            for index, rule in enumerate(script.rules):
                for criterion, level in rule.levels.items():
                    at = f"judges.{name}.rules[{index}].levels"
                    if criterion != EVERY_CRITERION and criterion not in levels_of:
                        problems.append(f"{at}: unknown criterion {criterion!r}; criteria: {sorted(levels_of)}")
                        continue
                    allowed = every_level if criterion == EVERY_CRITERION else sorted(levels_of[criterion])
                    if level not in allowed:
                        problems.append(f"{at}.{criterion}: unknown level {level!r}; levels: {allowed}")
        _raise_unknown(problems, rubrics, source)

    def check_answers_against(self, rubrics: Sequence[Rubric], source: str) -> None:
        """Every item and answer the rules name must exist in one of these question graphs: for a bundle the run
        meets by its path, after the rubric files were checked."""
        _raise_unknown(self._answer_problems(_options_of(rubrics)), rubrics, source)

    def _answer_problems(self, options_of: Mapping[str, set[str]]) -> list[str]:
        """Items and answers the rules name that no question graph of the run has; with no graph to check
        against (a bundle named by its path is checked when the run meets it), nothing is."""
        if not options_of:
            return []
        every_answer = sorted(set().union(*options_of.values()))
        problems = []
        for name, script in self.judges.items():
            if script.default_answer is not None and script.default_answer not in every_answer:
                given = script.default_answer
                problems.append(f"judges.{name}.default_answer: unknown answer {given!r}; answers: {every_answer}")
            for index, rule in enumerate(script.rules):
                for item, answer in rule.answers.items():
                    at = f"judges.{name}.rules[{index}].answers"
                    if item != EVERY_CRITERION and item not in options_of:
                        problems.append(f"{at}: unknown item {item!r}; items: {sorted(options_of)}")
                        continue
                    allowed = every_answer if item == EVERY_CRITERION else sorted(options_of[item])
                    if answer not in allowed:
                        problems.append(f"{at}.{item}: unknown answer {answer!r}; answers: {allowed}")
        return problems

    @property
    def judge_names(self) -> tuple[str, ...]:
        """The judges this script plays, in file order."""
        return tuple(self.judges)

    def latency_seconds(self, judge_name: str) -> float:
        """How long the judge takes to answer: its own latency_ms, else the file's."""
        own = self.judges[judge_name].latency_ms
        return (self.latency_ms if own is None else own) / 1000

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of the rules, so editing them invalidates cached verdicts.

        `obey_injection` is left out while false, `answer` and `default_answer` while unset and a rule's `answers`
        while empty, so a rules file that does not use them keeps the fingerprint (and the cached verdicts) it had
        before the options existed.
        """
        data = self.model_dump(mode="json")
        for name, script in self.judges.items():
            if not script.obey_injection:
                del data["judges"][name]["obey_injection"]
            if script.answer is None:
                del data["judges"][name]["answer"]
            if script.default_answer is None:
                del data["judges"][name]["default_answer"]
            for rule in data["judges"][name]["rules"]:
                if not rule["answers"]:
                    del rule["answers"]
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def load_rules(path: str | Path) -> SimulatorRules:
    """Read and validate a YAML rules file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SimulatorRulesError(f"{source}: cannot read rules file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SimulatorRulesError(f"{source}: cannot read rules file: not UTF-8 ({exc.reason})") from None
    try:
        data = load_yaml(text, source)
    except YamlError as exc:
        raise SimulatorRulesError(str(exc)) from None
    return SimulatorRules.from_mapping(data, source)


def _describe_error(error: ErrorDetails) -> str:
    location = _field_path(error["loc"])
    if error["type"] == "extra_forbidden":
        expected = _known_keys(error["loc"][:-1])
        return f"{location}: unknown key; expected one of {', '.join(expected)}"
    if error["type"] == "missing":
        return f"{location}: required field is missing"
    message = str(error.get("ctx", {}).get("error", "")) or error["msg"]
    return f"{location or '(top level)'}: {message} (got {short_repr(error['input'])})"


def _field_path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return path


def _known_keys(location: tuple[int | str, ...]) -> list[str]:
    """The fields of the model at `location`, found by walking the annotations from SimulatorRules."""
    annotation: object = SimulatorRules
    for part in location:
        annotation = _inner_model_or_container(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return []
            annotation = field.annotation
        else:
            args = typing.get_args(annotation)
            annotation = args[-1] if args else None
    annotation = _inner_model_or_container(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _inner_model_or_container(annotation: object) -> object:
    """Unwrap `X | None` so the walk reaches the model or container inside."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        present = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return present[0] if len(present) == 1 else annotation
    return annotation
