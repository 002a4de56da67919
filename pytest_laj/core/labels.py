"""People's decisions on assessments, as the labels file holds them, and what they add up to per criterion.

A label is keyed by what was rated (the rubric's questions, the input, the context and the output), never by the
test's name: a renamed test keeps its labels, and an edited output loses them. Each reviewer has one current
decision per label; a newer one replaces theirs and the replaced one moves to its `earlier` list, so the file
keeps the history a clinical team needs to see.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from pytest_laj.core.aggregate import severity_rank
from pytest_laj.core.models import HumanCall
from pytest_laj.core.rubric import Rubric

__all__ = ["LABELS_VERSION", "Decision", "EarlierDecision", "Label", "LabelsFile", "human_calls"]

LABELS_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EarlierDecision(_Strict):
    decided_at: str
    levels: dict[str, str]
    note: str = ""


class Decision(_Strict):
    """One reviewer's current levels for some criteria of a label."""

    reviewer: str = Field(min_length=1)
    decided_at: str = Field(min_length=10, description="ISO 8601, UTC")
    levels: dict[str, str] = Field(min_length=1, description="criterion id -> level id")
    note: str = ""
    earlier: list[EarlierDecision] = Field(default_factory=list, description="this reviewer's replaced decisions")


class Label(_Strict):
    key: str = Field(pattern=r"^[0-9a-f]{64}$")
    rubric: str
    nodeid: str | None = Field(default=None, description="where it was last seen, for people")
    case_id: str | None = None
    output_sha256: str = ""
    output_excerpt: str = Field(default="", description="the start of the output, so a diff shows what was judged")
    decisions: list[Decision] = Field(default_factory=list)

    def decide(self, decision: Decision) -> None:
        """Record `decision` as its reviewer's current one; their previous one moves to its history."""
        for index, current in enumerate(self.decisions):
            if current.reviewer == decision.reviewer:
                earlier = [
                    *current.earlier,
                    EarlierDecision(decided_at=current.decided_at, levels=current.levels, note=current.note),
                ]
                self.decisions[index] = decision.model_copy(update={"earlier": earlier})
                return
        self.decisions.append(decision)
        self.decisions.sort(key=lambda d: d.reviewer)


class LabelsFile(_Strict):
    version: int = LABELS_VERSION
    labels: list[Label] = Field(default_factory=list)


def human_calls(decisions: Sequence[Decision], rubric: Rubric) -> dict[str, HumanCall]:
    """Per criterion, the reviewers' majority level; a tie goes to the more severe level, as among judges."""
    calls: dict[str, HumanCall] = {}
    criteria = {c.id: c for c in rubric.criteria}
    for criterion_id in sorted({cid for d in decisions for cid in d.levels}):
        criterion = criteria.get(criterion_id)
        if criterion is None:
            continue  # a file checked against its rubric names none; kept for a rubric that dropped it
        voters = [d for d in decisions if criterion_id in d.levels]
        counts: Mapping[str, int] = Counter(d.levels[criterion_id] for d in voters)
        levels = rubric.levels_for(criterion)
        best = max(counts.values())
        tied = [(i, lv) for i, lv in enumerate(levels) if counts.get(lv.id) == best]
        if not tied:
            continue
        _, level = max(tied, key=lambda pair: severity_rank(pair[1], pair[0]))
        agreeing = [d for d in voters if d.levels[criterion_id] == level.id]
        calls[criterion_id] = HumanCall(
            level=level.id,
            reviewers=sorted(d.reviewer for d in agreeing),
            decided_at=max(d.decided_at for d in agreeing),
            note=" / ".join(d.note for d in agreeing if d.note),
        )
    return calls
