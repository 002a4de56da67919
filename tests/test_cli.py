"""The `laj` command: `laj report` renders any JSON report as the dashboard; a file that is not a report is one
error line and exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_record

from pytest_laj.cli import main
from pytest_laj.core.models import Assessment, Outcome
from pytest_laj.results.record import AssessmentRecord, RunRecord
from pytest_laj.results.report import write_report


def one_assessment_run() -> RunRecord:
    assessment = Assessment(
        rubric="safety",
        rubric_version="1",
        outcome=Outcome.REVIEW,
        reason="judges disagree",
        score=0,
        max_score=4,
        min_agreement=0.75,
        quorum=2,
        context={},
        context_multiplier=1,
        output="Please call 988.",
        criteria={},
        judges=[],
    )
    record = AssessmentRecord(nodeid="test_replies.py::test_crisis", enforced=True, blocks=True, assessment=assessment)
    return run_record([record])


@pytest.fixture
def report(tmp_path: Path) -> Path:
    path = tmp_path / "last-run.json"
    write_report(one_assessment_run(), path)
    return path


def _nodeids(page: str) -> list[str]:
    """The node ids of the assessments the dashboard embeds."""
    tag = '<script id="laj-data" type="application/json">'
    start = page.index(tag) + len(tag)
    return [r["nodeid"] for r in json.loads(page[start : page.index("</script>", start)])["records"]]


def test_report_renders_the_dashboard(report: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "site" / "report.html"

    assert main(["report", str(report), "-o", str(target)]) == 0

    page = target.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert _nodeids(page) == ["test_replies.py::test_crisis"]
    assert capsys.readouterr().out == f"wrote {target}\n"


def test_report_writes_beside_the_json_by_default(report: Path) -> None:
    assert main(["report", str(report)]) == 0

    assert _nodeids(report.with_suffix(".html").read_text(encoding="utf-8")) == ["test_replies.py::test_crisis"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the report"),
        ("{not json", "not a JSON report"),
        ('{"schema_version": 1}', "schema version 2 was expected, got version 1"),
        ('{"schema_version": 2, "records": 3}', "started_at: Field required"),
    ],
    ids=["missing", "not-json", "old-version", "invalid"],
)
def test_a_bad_report_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    source = tmp_path / "r.json"
    if content is not None:
        source.write_text(content)

    assert main(["report", str(source), "-o", str(tmp_path / "r.html")]) == 2

    err = capsys.readouterr().err
    assert err.startswith(f"laj report: {source}: ")
    assert message in err
    assert err.count("\n") == 1
    assert not (tmp_path / "r.html").exists()


def test_an_unwritable_target_is_one_error_line(
    report: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")

    assert main(["report", str(report), "-o", str(blocker / "report.html")]) == 2

    err = capsys.readouterr().err
    assert err.startswith(f"laj report: {blocker / 'report.html'}: cannot write the dashboard (")
    assert err.count("\n") == 1
