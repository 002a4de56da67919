"""The run record, built on the controller from every test's records and every process's call counts."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import NamedTuple

from pydantic import TypeAdapter

from pytest_laj.core.models import Assessment, Outcome
from pytest_laj.core.vera import NOT_RELEVANT_LEVEL, vera_score
from pytest_laj.results.agreement import Memo, load_alpha, rated_units, suite_alpha
from pytest_laj.results.health import judge_health
from pytest_laj.results.record import (
    AlphaFigure,
    AssessmentRecord,
    CallStats,
    GitInfo,
    JudgeInfo,
    RubricInfo,
    RunRecord,
    VeraFigure,
)

__all__ = ["KeptRecord", "RunCollector", "keep", "pooled_vera"]


def pooled_vera(assessments: list[Assessment]) -> VeraFigure | None:
    """VERA-MH's score over every dimension level of a rubric's assessments, for a rubric on VERA-MH's levels
    (one of its assessments has a score or a minimum); an assessment missing a consensus is left out, and said."""
    if not any(a.vera_score is not None or a.min_vera_score is not None for a in assessments):
        return None
    levels = [[c.consensus if c.applicable else NOT_RELEVANT_LEVEL for c in a.criteria.values()] for a in assessments]
    complete = [lv for lv in levels if None not in lv]
    value = vera_score(level for lv in complete for level in lv) if complete else None
    return VeraFigure(value=value, assessments=len(complete), left_out=len(levels) - len(complete))


class KeptRecord(NamedTuple):
    """A record as a run keeps it until the run is finished: its JSON, and what is asked of it before then."""

    nodeid: str
    identity: str
    json: str
    judged: bool = False  # a judge was called for it: its votes are new, so alpha will be computed at the end


def keep(record: AssessmentRecord) -> KeptRecord:
    assessment = record.assessment
    return KeptRecord(record.nodeid, assessment.identity, record.model_dump_json(), assessment.calls_made > 0)


_RECORDS = TypeAdapter(list[AssessmentRecord])


class RunCollector:
    """Every assessment of a run, kept as JSON until the run is finished: thousands of strings rather than the
    hundreds of thousands of objects of their models, which every garbage collection during the run would walk."""

    def __init__(self) -> None:
        self.started_at = datetime.now(timezone.utc)
        self.kept: list[KeptRecord] = []
        self.calls = CallStats()
        self._loading_alpha = False

    def add(self, records: Iterable[AssessmentRecord]) -> None:
        self.add_kept(map(keep, records))

    def add_kept(self, kept: Iterable[KeptRecord]) -> None:
        """Records as `keep` made them (an xdist worker sends them so). The first one with new votes starts
        loading what alpha needs on a thread: new votes miss alpha's memo, and the load (0.15 s of CPU) then
        fits in the run's waits on judges instead of delaying its end."""
        added = len(self.kept)
        self.kept.extend(kept)
        if not self._loading_alpha and any(k.judged for k in self.kept[added:]):
            self._loading_alpha = True
            # Not a daemon: one stopped at exit in the middle of an import would hold its module lock, and a
            # finalizer importing anything then (litellm's HTTP client does) would wait on it for ever.
            threading.Thread(target=load_alpha, name="laj-load-alpha").start()

    def records(self) -> list[AssessmentRecord]:
        """The kept records as models again, in one validation."""
        return _RECORDS.validate_json("[" + ",".join(k.json for k in self.kept) + "]")

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
        records = self.records()
        assessments = [r.assessment for r in records]
        by_rubric: dict[str, list[Assessment]] = {}
        for assessment in assessments:
            by_rubric.setdefault(assessment.rubric, []).append(assessment)
        by_rubric = dict(sorted(by_rubric.items()))
        units = {rubric: rated_units(of_rubric) for rubric, of_rubric in by_rubric.items()}
        per_criterion = {
            f"{rubric}/{criterion}": suite_alpha(criterion_units, memo)
            for rubric, by_criterion in units.items()
            for criterion, criterion_units in by_criterion.items()
        }
        per_rubric = {
            rubric: suite_alpha([u for criterion_units in by_criterion.values() for u in criterion_units], memo)
            for rubric, by_criterion in units.items()
        }
        if len(per_rubric) == 1:
            overall: AlphaFigure | None = next(iter(per_rubric.values()))
        else:
            every = [u for by_criterion in units.values() for us in by_criterion.values() for u in us]
            overall = suite_alpha(every, memo) if assessments else None
        counts = Counter(a.outcome.value for a in assessments)
        rubrics = {(a.rubric, a.rubric_version, a.rubric_fingerprint) for a in assessments}
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
            records=records,
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
                for rubric, of_rubric in by_rubric.items()
                if (figure := pooled_vera(of_rubric)) is not None
            },
        )
