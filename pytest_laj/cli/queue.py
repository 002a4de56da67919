"""What needs a human in a run, and recording what they decide: shared by `laj review` (the page and `--list`)
and `laj label`.

The queue is read from a run report: every REVIEW, then FAIL and ERROR where asked. Each item knows the criteria
at issue, why it needs a person, the label already recorded for exactly what was judged, and the labels the
same test and case had for an earlier output or rubric (stale: their key no longer matches), so a reviewer sees
what they decided before. A decision is checked against the rubric as it is now and written through
`LabelStore` (re-read first, so a decision saved meanwhile by another tool is kept).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_laj.cli.project import Project
from pytest_laj.core.labels import Decision, Label
from pytest_laj.core.models import Assessment, Outcome
from pytest_laj.core.rubric import Rubric
from pytest_laj.errors import UsageError
from pytest_laj.results.record import AssessmentRecord, RunRecord
from pytest_laj.store.keys import label_key
from pytest_laj.store.labels import LabelStore, now

__all__ = [
    "Item",
    "at_issue",
    "build_queue",
    "parse_include",
    "record_decision",
    "reviewer_name",
    "rubric_for",
    "template",
]

EXCERPT = 200
"""How much of an output a label keeps for people reading the labels file."""


def parse_include(text: str | None) -> list[Outcome]:
    """`--include fail,error`: the outcomes queued after the REVIEWs."""
    allowed = {Outcome.FAIL.value: Outcome.FAIL, Outcome.ERROR.value: Outcome.ERROR}
    chosen = [part.strip().lower() for part in (text or "").split(",") if part.strip()]
    unknown = [part for part in chosen if part not in allowed]
    if unknown:
        raise UsageError(f"--include: unknown outcome(s) {unknown}; expected a comma-separated list of fail, error")
    return [allowed[part] for part in dict.fromkeys(chosen)]


def reviewer_name(given: str | None, environ: Mapping[str, str] = os.environ, cwd: Path | None = None) -> str:
    """Who decides: `--reviewer`, else LAJ_REVIEWER, else git's user.name; a decision is never anonymous."""
    for name in (given, environ.get("LAJ_REVIEWER")):
        if name and name.strip():
            return name.strip()
    try:
        done = subprocess.run(
            ["git", "config", "user.name"], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        done = None
    if done is not None and done.returncode == 0 and done.stdout.strip():
        return done.stdout.strip()
    raise UsageError("no reviewer name: give --reviewer NAME, set LAJ_REVIEWER, or set git config user.name")


def at_issue(assessment: Assessment) -> list[str]:
    """The criteria a person is asked to decide. A suspected injection or a missing quorum is settled only once
    people decided every applicable criterion; a FAIL is about the criteria that cost it."""
    a = assessment
    applicable = [cid for cid, c in a.criteria.items() if c.applicable and c.human is None]
    if a.outcome is Outcome.ERROR or (a.outcome is Outcome.REVIEW and a.suspected_injection):
        return applicable
    if a.outcome is Outcome.REVIEW:
        return list(a.review_criteria)
    return [cid for cid in applicable if a.criteria[cid].critical or a.criteria[cid].contribution > 0]


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT else flat[: EXCERPT - 1] + "\u2026"


def template(record: AssessmentRecord) -> Label:
    """A label for exactly what this record judged, with where it was seen for people reading the file."""
    a = record.assessment
    return Label(
        key=a.label_key,
        rubric=a.rubric,
        nodeid=record.nodeid,
        case_id=record.case_id,
        output_sha256=record.output_sha256,
        output_excerpt=_excerpt(a.output),
    )


def rubric_for(project: Project, record: AssessmentRecord) -> Rubric:
    """The record's rubric as it is now, provided it still asks what the judges were asked: a label keyed by the
    report's key must match what the next run computes."""
    a = record.assessment
    if len(a.label_key) != 64:
        raise UsageError(f"{record.nodeid}: the report has no label key; rerun the suite with this pytest-laj")
    rubric = project.rubric(a.rubric)
    if rubric is None:
        searched = ", ".join(str(d) for d in project.rubric_dirs)
        raise UsageError(f"rubric {a.rubric!r} of {record.nodeid} is not in the rubric directories ({searched})")
    turns = None if a.conversation is None else a.conversation.key()
    if label_key(rubric.id, rubric.judged_fingerprint(), a.input, a.context, a.output, turns) != a.label_key:
        raise UsageError(
            f"rubric {a.rubric!r} changed since the report was written (its questions or levels differ): "
            "rerun the suite, then review"
        )
    return rubric


def _check_levels(rubric: Rubric, record: AssessmentRecord, levels: Mapping[str, str]) -> None:
    """Every criterion and level a person gives must exist and apply: a name that does not is an error, never a
    decision quietly ignored."""
    if not levels:
        raise UsageError("no level given: name at least one criterion=level")
    criteria = {c.id: c for c in rubric.criteria}
    for criterion_id, level_id in levels.items():
        criterion = criteria.get(criterion_id)
        if criterion is None:
            raise UsageError(f"rubric {rubric.id!r} has no criterion {criterion_id!r}; criteria: {sorted(criteria)}")
        allowed = [level.id for level in rubric.levels_for(criterion)]
        if level_id not in allowed:
            raise UsageError(f"criterion {criterion_id!r} has no level {level_id!r}; levels: {allowed}")
        result = record.assessment.criteria.get(criterion_id)
        if result is not None and not result.applicable:
            raise UsageError(f"criterion {criterion_id!r} does not apply in this context ({record.assessment.context})")


def record_decision(
    project: Project, path: Path, record: AssessmentRecord, reviewer: str, levels: Mapping[str, str], note: str
) -> Label:
    """Check a reviewer's levels for `record` against its rubric and write them to the labels file at `path`."""
    _check_levels(rubric_for(project, record), record, levels)
    store = LabelStore.load(path)
    store.check(project.rubric)
    decision = Decision(reviewer=reviewer, decided_at=now(), levels=dict(levels), note=note.strip())
    label = store.decide(template(record), decision)
    store.save()
    return label


@dataclass
class Item:
    """One assessment that needs a person."""

    record: AssessmentRecord
    at_issue: list[str]
    why: str
    label: Label | None  # decisions already recorded on exactly what was judged
    stale: list[Label]  # decisions on an earlier output (or rubric) of the same test and case

    @property
    def assessment(self) -> Assessment:
        return self.record.assessment


def build_queue(run: RunRecord, store: LabelStore, include: Sequence[Outcome] = ()) -> list[Item]:
    """The items of `run` that need a person, REVIEWs first, against the labels in `store`."""
    keys = {r.assessment.label_key for r in run.records}
    unmatched: dict[tuple[str, str, str | None], list[Label]] = {}
    for label in store.labels():
        if label.key not in keys:
            unmatched.setdefault((label.rubric, label.nodeid or "", label.case_id), []).append(label)
    items: list[Item] = []
    for outcome in [Outcome.REVIEW, *include]:
        for record in run.records:
            a = record.assessment
            if a.outcome is not outcome:
                continue
            why = "; ".join(a.review_reasons) if outcome is Outcome.REVIEW and a.review_reasons else a.reason
            stale = unmatched.get((a.rubric, record.nodeid, record.case_id), [])
            items.append(Item(record, at_issue(a), why, store.get(a.label_key), stale))
    return items
