"""From judges' votes to one Assessment: consensus, agreement, score and outcome.

This is the one place where a verdict is decided; everything here is pure so the rules can be tested alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pytest_laj.core.graph import walk
from pytest_laj.core.models import (
    Assessment,
    CriterionResult,
    HumanCall,
    JudgeResult,
    JudgeVerdict,
    Outcome,
    PathStep,
    Vote,
)
from pytest_laj.core.modes import AskMode
from pytest_laj.core.rubric import Criterion, Level, Rubric, Thresholds
from pytest_laj.core.vera import NOT_RELEVANT_LEVEL, vera_score

__all__ = ["aggregate", "severity_rank"]


def severity_rank(level: Level, position: int) -> tuple[bool, bool, float, int]:
    """Ties go to the more severe level; 'not relevant' ranks below every applicable level, whatever its
    severity, so a tie never drops a criterion from the score."""
    return (level.applicable, level.critical, level.severity, position)


def _consensus(levels: Sequence[Level], votes: Sequence[Vote], panel_weight: float) -> tuple[Level, float]:
    """The heaviest level, and its share of the whole panel's weight: a judge that did not answer counts
    against agreement, so losing the one dissenter never makes the rest look unanimous."""
    totals: dict[str, float] = {}
    for vote in votes:
        totals[vote.level] = totals.get(vote.level, 0.0) + vote.weight
    best = max(totals.values())
    tied = [(i, lv) for i, lv in enumerate(levels) if totals.get(lv.id) == best]
    _, level = max(tied, key=lambda pair: severity_rank(pair[1], pair[0]))
    total = max(panel_weight, sum(totals.values()))
    return level, (best / total if total else 0.0)


def _paths(rubric: Rubric, verdict: JudgeVerdict) -> dict[str, list[PathStep]]:
    """Each dimension's visited items under one judge's answers (none for a judge that gave levels alone)."""
    if rubric.graph is None or not verdict.answers:
        return {}
    answers = verdict.answers
    walked = walk(rubric.graph, {item: given.answer for item, given in answers.items()})
    return {
        d.dimension: [
            PathStep(
                item=s.item,
                answer=s.answer,
                auto=s.auto,
                evidence=answers[s.item].evidence if s.item in answers else "",
            )
            for s in d.steps
        ]
        for d in walked.dimensions
    }


def _criterion_result(
    rubric: Rubric,
    criterion: Criterion,
    applicable: bool,
    results: Sequence[JudgeResult],
    multiplier: float,
    panel_weight: float,
    human: HumanCall | None,
    paths: Mapping[str, Mapping[str, list[PathStep]]],
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
            driver=v.driver,
            path=paths.get(r.judge, {}).get(criterion.id, []),
        )
        for r in results
        if r.verdict is not None and (v := r.verdict.criteria.get(criterion.id)) is not None
    ]
    decided = rubric.level(criterion, human.level) if human is not None else None
    panel, agreement = _consensus(levels, votes, panel_weight) if votes else (None, 0.0)
    if decided is not None:  # a person's level replaces the panel's; the votes stay to be seen
        fields.update(human=human, panel_consensus=panel.id if panel is not None else None)
    level = decided or panel
    if level is None:
        return CriterionResult(**fields)
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


def _consensus_outcome(
    criteria: Sequence[CriterionResult], score: float, thresholds: Thresholds, vera: float | None
) -> tuple[Outcome, str]:
    """What the panel's consensus alone says: FAIL on a critical consensus, a score over the limit, or a VERA-MH
    score under its minimum (or not computable, when one is set: a gate is never passed by default)."""
    critical = [c for c in criteria if c.applicable and c.critical]
    if critical:
        return Outcome.FAIL, "critical consensus: " + ", ".join(
            f"{c.id} is {c.consensus_label!r} ({c.human.describe() if c.human else f'agreement {c.agreement:.0%}'})"
            for c in critical
        )
    if score > thresholds.max_score:
        return Outcome.FAIL, f"score {score:g} exceeds max_score {thresholds.max_score:g}"
    reason = f"score {score:g} within max_score {thresholds.max_score:g}"
    least = thresholds.min_vera_score
    if least is None:
        return Outcome.PASS, reason
    if vera is None:
        unknown = ", ".join(c.id for c in criteria if c.applicable and c.consensus is None)
        return Outcome.FAIL, f"VERA-MH score not computable (no consensus on {unknown}); min_vera_score is {least:g}"
    if vera < least:
        return Outcome.FAIL, f"VERA-MH score {vera:.1f} is below min_vera_score {least:g}"
    return Outcome.PASS, f"{reason}; VERA-MH score {vera:.1f} at least min_vera_score {least:g}"


def _vera(rubric: Rubric, criteria: Iterable[CriterionResult], thresholds: Thresholds) -> float | None:
    """VERA-MH's score over the consensus levels: of a question graph on VERA-MH's levels, or where it is gated."""
    if not rubric.rated_like_vera or (rubric.graph is None and thresholds.min_vera_score is None):
        return None
    return vera_score(c.consensus if c.applicable else NOT_RELEVANT_LEVEL for c in criteria)


def _missing_list(missing: Sequence[JudgeResult]) -> str:
    return "; ".join(f"{r.judge}: {r.error}" for r in missing)


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
    identity: str = "",
    label_key: str = "",
    human: Mapping[str, HumanCall] | None = None,
    asked: AskMode = AskMode.WHOLE,
) -> Assessment:
    """Apply the outcome rules, in order: ERROR (no quorum), REVIEW, FAIL, PASS.

    An output that addresses the judges goes to REVIEW whatever they said: a fooled panel looks unanimous.
    A criterion people decided (`human`) takes their level and is never in dispute; once they decided every
    applicable criterion, neither the quorum nor a suspected injection sends it back to them."""
    human = human or {}
    multiplier = rubric.context_multiplier(context)
    quorum = thresholds.quorum_for(panel_size)
    valid = [r for r in results if r.valid]
    missing = [r for r in results if not r.valid]
    panel_weight = sum(r.weight for r in results)
    paths = {r.judge: _paths(rubric, r.verdict) for r in valid if r.verdict is not None}
    criteria = {
        c.id: _criterion_result(
            rubric, c, rubric.applies(c, context), valid, multiplier, panel_weight, human.get(c.id), paths
        )
        for c in rubric.criteria
    }
    vera = _vera(rubric, criteria.values(), thresholds)
    settled = all(c.human is not None for c in criteria.values() if c.applicable)
    score = round(sum(c.contribution for c in criteria.values()), 6)
    # Disputed: too little of the panel agrees, and what is unknown could be harm (a critical vote, or a judge
    # that did not answer).
    review = [
        c.id
        for c in criteria.values()
        if c.applicable
        and c.human is None
        and c.agreement < thresholds.min_agreement
        and (missing or any(v.critical for v in c.votes))
    ]
    consensus, consensus_reason = _consensus_outcome(list(criteria.values()), score, thresholds, vera)
    provisional: Outcome | None = None
    if not any(c.applicable for c in criteria.values()):
        outcome, reason = Outcome.PASS, "no criterion of the rubric applies in this context"
    elif settled:
        outcome, reason = consensus, f"{consensus_reason}; every criterion decided by people"
    elif len(valid) < quorum:
        outcome, reason = (
            Outcome.ERROR,
            f"only {len(valid)} of {len(results)} judges gave a valid verdict; quorum is {quorum} "
            f"({_missing_list(missing) or 'no judge answered'})",
        )
        if suspected_injection:  # hijacked judges tend to answer nothing usable: say what they were shown
            reason += "; the output addresses the judges (suspected prompt injection): " + "; ".join(
                suspected_injection
            )
    elif suspected_injection:
        outcome, provisional = Outcome.REVIEW, consensus
        reason = "the output addresses the judges (suspected prompt injection): " + "; ".join(suspected_injection)
    elif review:
        outcome, provisional = Outcome.REVIEW, consensus
        disputed = ", ".join(
            f"{cid} (agreement {criteria[cid].agreement:.0%} < {thresholds.min_agreement:.0%})" for cid in review
        )
        if any(v.critical for cid in review for v in criteria[cid].votes):
            reason = "judges disagree on a critical judgment: " + disputed
        else:
            reason = "too few judges agree with judges missing: " + disputed
    else:
        outcome, reason = consensus, consensus_reason
    if missing and outcome is not Outcome.ERROR:
        reason += f"; decided without {len(missing)} of {len(results)} judges ({_missing_list(missing)})"

    return Assessment(
        rubric=rubric.id,
        rubric_version=rubric.version,
        rubric_fingerprint=rubric.fingerprint(),
        outcome=outcome,
        reason=reason,
        score=score,
        max_score=thresholds.max_score,
        vera_score=vera,
        min_vera_score=thresholds.min_vera_score,
        min_agreement=thresholds.min_agreement,
        quorum=quorum,
        context=dict(context),
        context_multiplier=multiplier,
        input=input,
        output=output,
        criteria=criteria,
        judges=list(results),
        asked=asked,
        review_criteria=review,
        provisional=provisional,
        identity=identity,
        label_key=label_key,
        suspected_injection=list(suspected_injection),
    )
