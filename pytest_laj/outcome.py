"""How assessments become pytest outcomes, the way pytest models xfail.

REVIEW is not a new outcome string (JUnit XML and xdist know only passed/failed/skipped): the report keeps a
standard outcome (failed while reviews block, passed under `laj_review = warn`), carries the review, and
`report_status` gives it its own category, letter and word.

The hooks here run for every test of every run; `verdict` (pydantic models) is imported only once a test has
an assessment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pytest_laj.modes import ReviewMode

if TYPE_CHECKING:
    from pytest_laj.verdict import Assessment

__all__ = ["AssessmentError", "AssessmentFailed", "record_on_report", "report_status", "review_pending"]

ASSESSMENTS = pytest.StashKey[list["Assessment"]]()
REVIEWS = pytest.StashKey[list["Assessment"]]()


class AssessmentFailed(AssertionError):
    """A FAIL: the panel found a severe error."""

    def __init__(self, assessment: Assessment) -> None:
        super().__init__(assessment.explain())
        self.assessment = assessment


class AssessmentError(Exception):
    """An ERROR: not enough judges gave a valid verdict to decide anything."""

    def __init__(self, assessment: Assessment) -> None:
        super().__init__(assessment.explain())
        self.assessment = assessment


def remember(item: pytest.Item, assessment: Assessment) -> None:
    item.stash.setdefault(ASSESSMENTS, []).append(assessment)


def review_pending(item: pytest.Item, assessment: Assessment) -> None:
    item.stash.setdefault(REVIEWS, []).append(assessment)


def enforce(item: pytest.Item, assessment: Assessment) -> None:
    """What `laj.check` does with a finished assessment."""
    from pytest_laj.verdict import Outcome

    if assessment.outcome is Outcome.FAIL:
        raise AssessmentFailed(assessment)
    if assessment.outcome is Outcome.ERROR:
        raise AssessmentError(assessment)
    if assessment.outcome is Outcome.REVIEW:
        review_pending(item, assessment)


def record_properties(item: pytest.Item) -> None:
    """Outcome, score and agreement of the worst assessment, for JUnit XML (which reads the teardown report)."""
    assessments = item.stash.get(ASSESSMENTS, [])
    if not assessments:
        return
    from pytest_laj.verdict import Outcome

    worst = max(assessments, key=lambda a: list(Outcome).index(a.outcome))
    item.user_properties.extend(
        [
            ("laj_outcome", worst.outcome.value),
            ("laj_score", worst.score),
            ("laj_agreement", min(a.lowest_agreement for a in assessments)),
        ]
    )


def record_on_report(
    item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport, review: ReviewMode
) -> None:
    """Attach digests and user properties, show our failures without a traceback, and apply reviews."""
    if report.when != "call":
        return
    # Dropped from the item once reported: a suite's assessments (thousands of models) would otherwise live
    # until the session ends, and every garbage collection, pytest's five at exit included, walks them.
    assessments = item.stash.get(ASSESSMENTS, [])
    reviews = item.stash.get(REVIEWS, [])
    for key in (ASSESSMENTS, REVIEWS):
        if key in item.stash:
            del item.stash[key]
    if assessments:
        report.laj = [a.summary() for a in assessments]  # type: ignore[attr-defined]
    if call.excinfo is not None and isinstance(call.excinfo.value, AssessmentFailed | AssessmentError):
        report.longrepr = str(call.excinfo.value)
    if not reviews:
        return
    report.laj_review = "\n\n".join(a.explain() for a in reviews)  # type: ignore[attr-defined]
    if report.passed and review is ReviewMode.FAIL:
        report.outcome = "failed"
        report.longrepr = report.laj_review


def report_status(report: pytest.TestReport) -> tuple[str, str, tuple[str, dict[str, Any]]] | None:
    if report.when == "call" and getattr(report, "laj_review", None) and (report.passed or _only_review(report)):
        return "review", "R", ("REVIEW", {"yellow": True})
    return None


def _only_review(report: pytest.TestReport) -> bool:
    return report.failed and report.longrepr == getattr(report, "laj_review", None)
