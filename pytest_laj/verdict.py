"""From judges' votes to one Assessment: consensus, agreement, score and outcome.

This is the one place where a verdict is decided; everything here is pure so the rules can be tested alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pytest_laj.rubric import Criterion, Level, Rubric, Thresholds

__all__ = [
    "Assessment",
    "CriterionResult",
    "CriterionVerdict",
    "JudgeResult",
    "JudgeVerdict",
    "Outcome",
    "Vote",
    "aggregate",
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


class JudgeVerdict(BaseModel):
    """A judge's complete, validated answer for one output: a level for every criterion asked."""

    model_config = ConfigDict(frozen=True)

    criteria: dict[str, CriterionVerdict]
    cost_usd: float | None = Field(default=None, exclude=True, description="what the call cost, where known")


class JudgeResult(BaseModel):
    """What one judge contributed to an assessment: a verdict, or the reason it is missing."""

    judge: str
    weight: float = 1.0
    verdict: JudgeVerdict | None = None
    error: str | None = None
    cached: bool = False
    attempts: int = 0
    cost_usd: float = 0.0
    budget_exhausted: bool = False

    @property
    def valid(self) -> bool:
        return self.verdict is not None


class Vote(BaseModel):
    """One judge's level for one criterion; `rank` orders applicable levels for reliability statistics."""

    judge: str
    weight: float
    level: str
    rank: int | None = None
    critical: bool = False
    rationale: str = ""
    evidence: str = ""


class CriterionResult(BaseModel):
    """The panel's judgment on one criterion."""

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


class Assessment(BaseModel):
    """The result of judging one output against one rubric."""

    rubric: str
    rubric_version: str
    outcome: Outcome
    reason: str
    score: float
    max_score: float
    min_agreement: float
    quorum: int
    context: dict[str, str]
    context_multiplier: float
    input: str | None = None
    output: str
    criteria: dict[str, CriterionResult]
    judges: list[JudgeResult]
    review_criteria: list[str] = Field(default_factory=list)
    suspected_injection: list[str] = Field(
        default_factory=list, description="text in the output that addresses the judges, as 'kind: excerpt'"
    )

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASS

    @property
    def valid_judges(self) -> int:
        return sum(1 for j in self.judges if j.valid)

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

    def explain(self) -> str:
        from pytest_laj.report import explain_assessment

        return explain_assessment(self)

    def summary(self) -> dict[str, Any]:
        """A JSON-safe digest that travels on the test report (and through xdist) to the session summary."""
        return {
            "rubric": self.rubric,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "score": self.score,
            "agreement": self.lowest_agreement,
            "calls": self.calls_made,
            "cache_hits": self.cache_hits,
            "cost_usd": sum(j.cost_usd for j in self.judges),
            "budget_exhausted": any(j.budget_exhausted for j in self.judges),
            "review_criteria": list(self.review_criteria)
            + (["suspected prompt injection"] if self.suspected_injection else []),
            "ranks": {cid: {v.judge: v.rank for v in c.votes} for cid, c in self.criteria.items() if c.applicable},
        }


def severity_rank(level: Level, position: int) -> tuple[bool, bool, float, int]:
    """Ties go to the more severe level; 'not relevant' ranks below every applicable level, whatever its
    severity, so a tie never drops a criterion from the score."""
    return (level.applicable, level.critical, level.severity, position)


def _consensus(levels: Sequence[Level], votes: Sequence[Vote]) -> tuple[Level, float]:
    totals: dict[str, float] = {}
    for vote in votes:
        totals[vote.level] = totals.get(vote.level, 0.0) + vote.weight
    best = max(totals.values())
    tied = [(i, lv) for i, lv in enumerate(levels) if totals.get(lv.id) == best]
    _, level = max(tied, key=lambda pair: severity_rank(pair[1], pair[0]))
    total = sum(totals.values())
    return level, (best / total if total else 0.0)


def _criterion_result(
    rubric: Rubric, criterion: Criterion, applicable: bool, results: Sequence[JudgeResult], multiplier: float
) -> CriterionResult:
    fields: dict[str, Any] = {
        "id": criterion.id,
        "question": criterion.question,
        "weight": criterion.weight,
        "applicable": applicable,
    }
    if not applicable:
        return CriterionResult(**fields)
    levels = rubric.levels_for(criterion)
    ranks = {lv.id: i for i, lv in enumerate(lv for lv in levels if lv.applicable)}
    critical_ids = {lv.id for lv in levels if lv.critical}
    votes = [
        Vote(
            judge=r.judge,
            weight=r.weight,
            level=v.level,
            rank=ranks.get(v.level),
            critical=v.level in critical_ids,
            rationale=v.rationale,
            evidence=v.evidence,
        )
        for r in results
        if r.verdict is not None and (v := r.verdict.criteria.get(criterion.id)) is not None
    ]
    if not votes:
        return CriterionResult(**fields)
    level, agreement = _consensus(levels, votes)
    return CriterionResult(
        **fields,
        consensus=level.id,
        consensus_label=level.label,
        critical=level.critical,
        severity=level.severity,
        agreement=agreement,
        contribution=criterion.weight * level.severity * multiplier if level.applicable else 0.0,
        votes=votes,
    )


def aggregate(
    rubric: Rubric,
    results: Sequence[JudgeResult],
    *,
    output: str,
    input: str | None,
    context: Mapping[str, str],
    thresholds: Thresholds,
    panel_size: int,
    suspected_injection: Sequence[str] = (),
) -> Assessment:
    """Apply the outcome rules, in order: ERROR (no quorum), REVIEW, FAIL, PASS.

    An output that addresses the judges goes to REVIEW whatever they said: a fooled panel looks unanimous."""
    multiplier = rubric.context_multiplier(context)
    quorum = thresholds.quorum_for(panel_size)
    valid = [r for r in results if r.valid]
    criteria = {
        c.id: _criterion_result(rubric, c, rubric.applies(c, context), valid, multiplier) for c in rubric.criteria
    }
    score = round(sum(c.contribution for c in criteria.values()), 6)
    review = [
        c.id
        for c in criteria.values()
        if c.applicable and c.agreement < thresholds.min_agreement and any(v.critical for v in c.votes)
    ]
    critical = [c for c in criteria.values() if c.applicable and c.critical]

    if not any(c.applicable for c in criteria.values()):
        outcome, reason = Outcome.PASS, "no criterion of the rubric applies in this context"
    elif len(valid) < quorum:
        failed = "; ".join(f"{r.judge}: {r.error}" for r in results if not r.valid) or "no judge answered"
        outcome, reason = (
            Outcome.ERROR,
            f"only {len(valid)} of {len(results)} judges gave a valid verdict; quorum is {quorum} ({failed})",
        )
    elif suspected_injection:
        outcome = Outcome.REVIEW
        reason = "the output addresses the judges (suspected prompt injection): " + "; ".join(suspected_injection)
    elif review:
        outcome = Outcome.REVIEW
        reason = "judges disagree on a critical judgment: " + ", ".join(
            f"{cid} (agreement {criteria[cid].agreement:.0%} < {thresholds.min_agreement:.0%})" for cid in review
        )
    elif critical:
        outcome = Outcome.FAIL
        reason = "critical consensus: " + ", ".join(
            f"{c.id} is {c.consensus_label!r} (agreement {c.agreement:.0%})" for c in critical
        )
    elif score > thresholds.max_score:
        outcome, reason = Outcome.FAIL, f"score {score:g} exceeds max_score {thresholds.max_score:g}"
    else:
        outcome, reason = Outcome.PASS, f"score {score:g} within max_score {thresholds.max_score:g}"

    return Assessment(
        rubric=rubric.id,
        rubric_version=rubric.version,
        outcome=outcome,
        reason=reason,
        score=score,
        max_score=thresholds.max_score,
        min_agreement=thresholds.min_agreement,
        quorum=quorum,
        context=dict(context),
        context_multiplier=multiplier,
        input=input,
        output=output,
        criteria=criteria,
        judges=list(results),
        review_criteria=review,
        suspected_injection=list(suspected_injection),
    )
