"""The result models: judges' verdicts, the panel's judgment per criterion, and one Assessment. Data only: the
rules that decide an outcome live in `aggregate`."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, computed_field

from pytest_laj.core.conversation import Conversation
from pytest_laj.core.modes import AskMode
from pytest_laj.core.printable import printable

__all__ = [
    "Assessment",
    "CriterionResult",
    "CriterionVerdict",
    "HumanCall",
    "ItemAnswer",
    "JudgeResult",
    "JudgeVerdict",
    "Outcome",
    "PathStep",
    "Vote",
    "explain_assessment",
    "headline",
]


class Outcome(str, Enum):
    """What an assessment means for the test, most severe last."""

    PASS = "pass"
    FAIL = "fail"
    REVIEW = "review"
    ERROR = "error"

    def __str__(self) -> str:
        return self.value


class CriterionVerdict(BaseModel):
    """One judge's rating of one criterion."""

    model_config = ConfigDict(frozen=True)

    level: str
    rationale: str = ""
    evidence: str = ""
    driver: str | None = Field(
        default=None, description="of a question-graph dimension: the item whose answer set the level"
    )


class ItemAnswer(BaseModel):
    """A judge's answer to one item of a question graph, with the quote it rests on."""

    model_config = ConfigDict(frozen=True)

    answer: str
    evidence: str = ""


class JudgeVerdict(BaseModel):
    """A judge's complete, validated answer for one output: a level for every criterion asked, and for a
    question-graph rubric the answer to every item the levels were walked from."""

    model_config = ConfigDict(frozen=True)

    criteria: dict[str, CriterionVerdict]
    answers: dict[str, ItemAnswer] = Field(default_factory=dict, description="item id -> answer, for a graph")
    cost_usd: float | None = Field(default=None, exclude=True, description="what the call cost, where known")
    tokens: int | None = Field(default=None, exclude=True, description="the call's tokens, where the reply says")


class JudgeResult(BaseModel):
    """What one judge contributed to an assessment: a verdict, or the reason it is missing."""

    judge: str
    weight: float = 1.0
    verdict: JudgeVerdict | None = None
    error: str | None = None
    error_kind: str | None = Field(
        default=None,
        description="what kind of failure: timeout, invalid_verdict, budget, replay_miss, or the error type",
    )
    cached: bool = False
    attempts: int = 0
    cost_usd: float = 0.0
    latency_s: float | None = Field(default=None, description="wall time of this judge's calls, retries included")
    budget_exhausted: bool = False

    @property
    def valid(self) -> bool:
        return self.verdict is not None


class PathStep(BaseModel):
    """One item a judge's answers visited in a dimension, in order."""

    item: str
    answer: str
    evidence: str = ""
    auto: bool = Field(default=False, description="answered by the rubric, not the judge")


class Vote(BaseModel):
    """One judge's level for one criterion; `rank` orders applicable levels for reliability statistics."""

    judge: str
    weight: float
    level: str
    rank: int | None = None
    critical: bool = False
    rationale: str = ""
    evidence: str = ""
    driver: str | None = Field(default=None, description="of a graph dimension: the item that set the level")
    path: list[PathStep] = Field(
        default_factory=list, description="of a graph dimension: the items this judge's answers visited"
    )


class HumanCall(BaseModel):
    """The level people gave a criterion, which replaces the panel's consensus: the reviewers' majority, a tie
    going to the more severe level."""

    level: str
    reviewers: list[str]
    decided_at: str = Field(description="the latest of their decisions, ISO 8601")
    note: str = ""

    def describe(self) -> str:
        return f"decided by {', '.join(self.reviewers)} on {self.decided_at[:10]}"


class CriterionResult(BaseModel):
    """The panel's judgment on one criterion (and a human's, where one decided it)."""

    id: str
    question: str
    weight: float
    applicable: bool
    consensus: str | None = None
    consensus_label: str = "Not relevant"
    critical: bool = False
    severity: float = 0.0
    agreement: float = 1.0
    contribution: float = 0.0
    votes: list[Vote] = Field(default_factory=list)
    human: HumanCall | None = Field(default=None, description="set when people decided this criterion")
    panel_consensus: str | None = Field(default=None, description="with `human`: what the panel's consensus was")


class Assessment(BaseModel):
    """The result of judging one output against one rubric."""

    identity: str = Field(
        default="", description="what was judged, by content: the rubric's content, the input, context and output"
    )
    label_key: str = Field(
        default="", description="the key of people's labels: the rubric's questions, the input, context and output"
    )
    rubric: str
    rubric_version: str
    rubric_fingerprint: str = Field(default="", description="a hash of the rubric's content")
    outcome: Outcome
    reason: str
    score: float
    max_score: float
    vera_score: float | None = Field(
        default=None,
        description="VERA-MH's overall score over the consensus levels, for a rubric on VERA-MH's levels; None "
        "when a consensus is missing",
    )
    min_vera_score: float | None = Field(default=None, description="the score below which it fails, where set")
    min_agreement: float
    quorum: int
    context: dict[str, str]
    context_multiplier: float
    input: str | None = None
    output: str = Field(description="the output judged; for a conversation, its transcript")
    conversation: Conversation | None = Field(default=None, description="the turns, when a conversation was judged")
    criteria: dict[str, CriterionResult]
    judges: list[JudgeResult]
    asked: AskMode = Field(
        default=AskMode.WHOLE,
        description="how each judge was asked: whole (the rubric in one call) or per_item (a question graph one "
        "question per call, along that judge's path)",
    )
    review_criteria: list[str] = Field(default_factory=list)
    provisional: Outcome | None = Field(
        default=None, description="for a REVIEW: the outcome the panel's consensus alone gives (pass or fail)"
    )
    suspected_injection: list[str] = Field(
        default_factory=list, description="text in the output that addresses the judges, as 'kind: excerpt'"
    )
    injection_notes: list[str] = Field(
        default_factory=list,
        description="a conversation's user or system turns that address the judges, as 'kind in the user's turn "
        "N: excerpt'; test data may do so on purpose, so they decide nothing",
    )

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASS

    @property
    def settled_by_human(self) -> bool:
        return any(c.human is not None for c in self.criteria.values())

    @property
    def valid_judges(self) -> int:
        return sum(1 for j in self.judges if j.valid)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def missing_judges(self) -> list[str]:
        """Panel members whose verdict this assessment was decided without (each one's error is in `judges`)."""
        return [j.judge for j in self.judges if not j.valid]

    @property
    def from_cache(self) -> bool:
        """True when every verdict used came from the cache (no judge was called)."""
        return all(j.cached for j in self.judges if j.valid) and self.valid_judges > 0

    @property
    def calls_made(self) -> int:
        return sum(j.attempts for j in self.judges)

    @property
    def cache_hits(self) -> int:
        return sum(1 for j in self.judges if j.cached)

    @property
    def lowest_agreement(self) -> float:
        return min((c.agreement for c in self.criteria.values() if c.applicable), default=1.0)

    def explain(self, detail: str = "long") -> str:
        """Why, criterion by criterion; `detail` is "long" (every judge's vote), "short" (no per-judge lines) or
        "line" (the headline alone)."""
        return explain_assessment(self, detail)

    @property
    def review_reasons(self) -> list[str]:
        """Why a human must look, one phrase per cause: a disputed criterion, or text addressing the judges."""
        disagree = "judges disagree" if not self.missing_judges else "judges disagree or are missing"
        reasons = [
            f"{cid}: {disagree} (agreement {self.criteria[cid].agreement:.0%} < {self.min_agreement:.0%})"
            for cid in self.review_criteria
        ]
        if self.suspected_injection:
            reasons.append("suspected prompt injection: " + "; ".join(self.suspected_injection))
        return reasons


# -- the assessment in words: it decides nothing ----------------------------------------------------------------


def _clip(text: str, limit: int) -> str:
    """One line of untrusted text, at most `limit` characters before escaping, safe to print."""
    flat = " ".join(text.split())
    return printable(flat if len(flat) <= limit else flat[: limit - 1] + "\u2026")


def _criterion_lines(result: CriterionResult, votes: bool) -> list[str]:
    if not result.applicable:
        return [f"  {result.id}: not relevant in this context"]
    if result.consensus is None:
        return [f"  {result.id}: no valid vote"]
    mark = " [critical]" if result.critical else ""
    head = (
        f"  {result.id} (weight {result.weight:g}) -> {result.consensus_label}{mark}, "
        f"agreement {result.agreement:.0%}, adds {result.contribution:g}"
    )
    if result.human is not None:
        head += f"; {result.human.describe()} (the panel's consensus: {result.panel_consensus or 'none'})"
    lines = [head]
    unanimous_best = result.agreement == 1.0 and result.severity == 0 and not result.critical
    if unanimous_best or not votes:
        return lines
    width = max(len(v.judge) for v in result.votes)
    for vote in result.votes:
        line = f"    {vote.judge:<{width}}  {vote.level}"
        if vote.rationale:
            line += f": {_clip(vote.rationale, 160)}"
        if vote.evidence:
            line += f' | evidence: "{_clip(vote.evidence, 120)}"'
        lines.append(line)
    return lines


def _vera_phrase(a: Assessment) -> str:
    if a.vera_score is None and a.min_vera_score is None:
        return ""
    score = "not computable (a consensus is missing)" if a.vera_score is None else f"{a.vera_score:.1f}"
    return f"; VERA-MH score {score}" + (f" (min {a.min_vera_score:g})" if a.min_vera_score is not None else "")


def headline(assessment: Assessment) -> str:
    """One line: the outcome, the rubric, and what decided it."""
    a = assessment
    provisional = f" (provisional {a.provisional.value.upper()})" if a.provisional is not None else ""
    return printable(f"{a.outcome.value.upper()}{provisional} [{a.rubric} v{a.rubric_version}]: {a.reason}")


def explain_assessment(assessment: Assessment, detail: str = "long") -> str:
    """The readable account a failing test shows. `detail`: "line" is the headline alone, "short" adds the
    score and each criterion, "long" also every judge's vote, rationale and evidence."""
    a = assessment
    if detail == "line":
        return headline(a)
    context = printable(", ".join(f"{k}={v}" for k, v in a.context.items())) or "none"
    lines = [
        headline(a),
        f"score {a.score:g} (max_score {a.max_score:g}){_vera_phrase(a)}; "
        f"context {context} (severity x{a.context_multiplier:g}); "
        f"{a.valid_judges}/{len(a.judges)} judges valid (quorum {a.quorum})",
    ]
    for result in a.criteria.values():
        lines.extend(_criterion_lines(result, votes=detail == "long"))
    states = []
    for judge in a.judges:
        if judge.verdict is None:
            states.append(f"{judge.judge} MISSING ({printable(judge.error or '')})")
        elif judge.cached:
            states.append(f"{judge.judge} (cached)")
        else:
            states.append(f"{judge.judge} ({judge.attempts} call{'s' if judge.attempts != 1 else ''})")
    lines.append("judges: " + "; ".join(states))
    lines.extend(f"note: {printable(note)}" for note in a.injection_notes)
    lines.append(f'output: "{_clip(a.output, 300)}"')
    return "\n".join(lines)
