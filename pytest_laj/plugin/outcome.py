"""How records become pytest outcomes, the way pytest models xfail.

REVIEW is not a new outcome string (JUnit XML and xdist know only passed/failed/skipped): a REVIEW that blocks
fails its test at the `laj.check` call like a FAIL, with its own exception, and every other channel (the
category and letter, the short test summary, JUnit) reads the flag `laj_review` that the report carries.
Whether anything blocks is decided once, in `pytest_laj.core.gate`.

A REVIEW is not the failure an `xfail` marker expects, nor a pass that makes it XPASS: an xfail-marked test
whose check needs review is reported as REVIEW, and blocks the run as any REVIEW does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_laj.results.record import AssessmentRecord

__all__ = [
    "AssessmentError",
    "AssessmentFailed",
    "ReviewRequired",
    "failure",
    "record_properties",
    "remember",
    "report_status",
    "settle",
    "short_summary_lines",
]

RECORDS = pytest.StashKey[list["AssessmentRecord"]]()
_DETAIL = {"line": "line", "no": "line", "short": "short"}  # --tb style -> how much of the explanation


class _Blocking(Exception):
    def __init__(self, record: AssessmentRecord, detail: str) -> None:
        super().__init__(record.assessment.explain(detail))
        self.record = record


class AssessmentFailed(_Blocking, AssertionError):
    """A FAIL: the panel found a severe error."""


class AssessmentError(_Blocking):
    """An ERROR: not enough judges gave a valid verdict to decide anything."""


class ReviewRequired(_Blocking):
    """A REVIEW that blocks: a human must look before this output can pass."""


def failure(record: AssessmentRecord, tbstyle: str) -> _Blocking:
    """The exception `laj.check` raises for a blocking record, explained as much as `--tb` asks."""
    from pytest_laj.core.models import Outcome

    kind = {Outcome.FAIL: AssessmentFailed, Outcome.ERROR: AssessmentError, Outcome.REVIEW: ReviewRequired}
    return kind[record.outcome](record, _DETAIL.get(tbstyle, "long"))


def remember(item: pytest.Item, record: AssessmentRecord) -> None:
    item.stash.setdefault(RECORDS, []).append(record)


def record_properties(item: pytest.Item) -> None:
    """Outcome, score and agreement of the worst assessment, for JUnit XML (which reads the teardown report)."""
    records = item.stash.get(RECORDS, [])
    if not records:
        return
    from pytest_laj.core.models import Outcome

    worst = max(records, key=lambda r: list(Outcome).index(r.outcome)).assessment
    item.user_properties.extend(
        [
            ("laj_outcome", worst.outcome.value),
            ("laj_score", worst.score),
            ("laj_agreement", min(r.assessment.lowest_agreement for r in records)),
        ]
    )


def settle(item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport) -> None:
    """Move the test's records onto its report and mark a REVIEW as such, whatever xfail made of it."""
    if report.when != "call":
        return
    records = item.stash.get(RECORDS, [])
    if RECORDS in item.stash:
        del item.stash[RECORDS]  # the worker keeps none once sent
    if not records:
        return
    from pytest_laj.core.models import Outcome

    report.laj_records = records  # type: ignore[attr-defined]
    blocking_review = call.excinfo is not None and isinstance(call.excinfo.value, ReviewRequired)
    reviews = [r for r in records if r.enforced and r.outcome is Outcome.REVIEW]
    if blocking_review:
        report.outcome = "failed"
    elif reviews and (report.passed or _strict_xpass(report)):
        report.outcome, report.longrepr = "passed", None
    else:
        return
    if hasattr(report, "wasxfail"):
        del report.wasxfail
    from pytest_laj.core.printable import printable

    why = [reason for r in reviews for reason in r.assessment.review_reasons]
    report.laj_review = printable("; ".join(why)) or "needs review"  # type: ignore[attr-defined]


def _strict_xpass(report: pytest.TestReport) -> bool:
    return report.failed and str(report.longrepr).startswith("[XPASS(strict)]")


def report_status(report: pytest.TestReport) -> tuple[str, str, tuple[str, dict[str, Any]]] | None:
    if report.when == "call" and getattr(report, "laj_review", None):
        return "review", "R", ("REVIEW", {"yellow": True})
    return None


def short_summary_lines(reports: list[pytest.TestReport], reportchars: str) -> list[str]:
    """`REVIEW nodeid - why` for pytest's short test summary: blocking reviews are failures of the run, so
    the failure letter shows them (as by default); `p` (or `-rA`) shows those that did not block."""
    lines = []
    for report in reports:
        shown = "f" in reportchars if report.failed else "p" in reportchars
        if shown:
            lines.append(f"REVIEW {report.nodeid} - {getattr(report, 'laj_review', '')}")
    return lines
