"""The run record, built on the controller from every test's records and every process's call counts."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

from pytest_laj.core.models import Assessment, Outcome
from pytest_laj.core.vera import NOT_RELEVANT_LEVEL, vera_score
from pytest_laj.results.agreement import Memo, rated_units, suite_alpha
from pytest_laj.results.health import judge_health
from pytest_laj.results.record import (
    AssessmentRecord,
    CallStats,
    GitInfo,
    JudgeInfo,
    RubricInfo,
    RunRecord,
    VeraFigure,
)

__all__ = ["RunCollector", "pooled_vera"]


def pooled_vera(assessments: list[Assessment]) -> VeraFigure | None:
    """VERA-MH's score over every dimension level of a rubric's assessments, for a rubric on VERA-MH's levels
    (one of its assessments has a score or a minimum); an assessment missing a consensus is left out, and said."""
    if not any(a.vera_score is not None or a.min_vera_score is not None for a in assessments):
        return None
    levels = [[c.consensus if c.applicable else NOT_RELEVANT_LEVEL for c in a.criteria.values()] for a in assessments]
    complete = [lv for lv in levels if None not in lv]
    value = vera_score(level for lv in complete for level in lv) if complete else None
    return VeraFigure(value=value, assessments=len(complete), left_out=len(levels) - len(complete))


class RunCollector:
    def __init__(self) -> None:
        self.started_at = datetime.now(timezone.utc)
        self.records: list[AssessmentRecord] = []
        self.calls = CallStats()

    def add(self, records: list[AssessmentRecord]) -> None:
        self.records.extend(records)

    def add_calls(self, stats: CallStats) -> None:
        self.calls = self.calls.merged(stats)

    def finish(
        self,
        *,
        versions: tuple[str, str],
        cache_mode: str,
        review_mode: str,
        panel: list[JudgeInfo],
        stopped_early: bool,
        memo: Memo | None,
        tests_run: set[str] | frozenset[str] = frozenset(),
        interrupted: bool = False,
        rootdir: str = "",
        command: list[str] | None = None,
        git: GitInfo | None = None,
    ) -> RunRecord:
        """Counts, agreement per rubric, per criterion and over the run, judge health; `memo` keeps alpha for a
        rerun on the same votes."""
        assessments = [r.assessment for r in self.records]
        by_rubric: dict[str, list[AssessmentRecord]] = {}
        for record in self.records:
            by_rubric.setdefault(record.assessment.rubric, []).append(record)
        counts = Counter(a.outcome.value for a in assessments)
        rubrics = {(a.rubric, a.rubric_version, a.rubric_fingerprint) for a in assessments}
        overall = suite_alpha(rated_units(assessments), memo) if assessments else None
        if len(by_rubric) == 1 and overall is not None:
            per_rubric = {next(iter(by_rubric)): overall}
        else:
            per_rubric = {
                rubric: suite_alpha(rated_units([r.assessment for r in records]), memo)
                for rubric, records in sorted(by_rubric.items())
            }
        per_criterion = {
            f"{rubric}/{criterion}": suite_alpha(rated_units([r.assessment for r in records], criterion), memo)
            for rubric, records in sorted(by_rubric.items())
            for criterion in dict.fromkeys(c for r in records for c in r.assessment.criteria)
        }
        return RunRecord(
            started_at=self.started_at,
            rootdir=rootdir,
            command=command or [],
            git=git,
            interrupted=interrupted,
            finished_at=datetime.now(timezone.utc),
            pytest_laj_version=versions[0],
            pytest_version=versions[1],
            cache_mode=cache_mode,
            review_mode=review_mode,
            stopped_early=stopped_early,
            panel=panel,
            rubrics=[RubricInfo(id=i, version=v, fingerprint=f) for i, v, f in sorted(rubrics)],
            records=self.records,
            calls=self.calls.model_copy(
                update={
                    "uncollected": [
                        u.model_copy(update={"test_ran": u.nodeid in tests_run}) for u in self.calls.uncollected
                    ]
                }
            ),
            counts={o.value: counts[o.value] for o in Outcome if counts[o.value]},
            alpha=overall,
            alpha_by_rubric=per_rubric,
            alpha_by_criterion=per_criterion,
            judge_health=judge_health(assessments),
            vera_by_rubric={
                rubric: figure
                for rubric, records in sorted(by_rubric.items())
                if (figure := pooled_vera([r.assessment for r in records])) is not None
            },
        )
