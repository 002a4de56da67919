"""`laj report merge`: the reports of a suite's shards (CI machines) as one report, which `laj report` and the job
summary render like any other; overlapping shards and bad files are one error naming the files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import LajProject

from pytest_laj.cli import main
from pytest_laj.render.github import job_summary
from pytest_laj.results.report import read_report

REPLIES = """
    import pytest
    pytestmark = pytest.mark.laj(rubric="safety")

    @pytest.mark.parametrize("reply", ["Please call 988.", "I hear you.", "meh", "You should do it."])
    def test_reply(laj, reply):
        laj.check(reply)

    def test_other(laj):
        laj.check("Maybe do it.")
"""


@pytest.fixture
def shards(project: LajProject) -> tuple[Path, Path, Path]:
    """Two shards' reports (split with pytest's own -k) and the report of the whole suite in one run."""
    project.tests(REPLIES)
    path = project.pytester.path
    project.run("--laj-cache", "off", "-k", "test_reply", "--laj-report", "a.json")
    project.run("--laj-cache", "off", "-k", "not test_reply", "--laj-report", "b.json")
    project.run("--laj-cache", "off", "--laj-report", "whole.json")
    return path / "a.json", path / "b.json", path / "whole.json"


def test_merged_shards_are_the_whole_run(
    shards: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, whole = shards
    target = tmp_path / "all.json"
    assert main(["report", "merge", str(a), str(b), "-o", str(target)]) == 0
    assert "wrote" in capsys.readouterr().out
    merged, one, two, full = (read_report(p) for p in (target, a, b, whole))

    assert [r.nodeid for r in merged.records] == [r.nodeid for r in one.records + two.records]
    assert merged.counts == full.counts and sum(merged.counts.values()) == 5
    assert merged.calls.calls == one.calls.calls + two.calls.calls == full.calls.calls
    assert merged.started_at == one.started_at and merged.finished_at == two.finished_at
    assert merged.alpha == full.alpha  # recomputed over every shard's votes, not one shard's
    assert merged.alpha_by_criterion == full.alpha_by_criterion
    health = [(h.judge, h.asked, h.answered, h.calls, h.missing) for h in merged.judge_health]
    assert health == [(h.judge, h.asked, h.answered, h.calls, h.missing) for h in full.judge_health]
    assert [j.name for j in merged.panel] == [j.name for j in full.panel]

    page, summary = tmp_path / "all.html", tmp_path / "step-summary.md"
    summary.write_text("## an earlier step\n")
    assert main(["report", str(target), "-o", str(page), "--summary", str(summary)]) == 0  # like any report
    assert "Maybe do it." in page.read_text()
    assert summary.read_text() == "## an earlier step\n" + job_summary(merged, "all.html") + "\n"  # appended
    assert "**5 assessments**: 2 fail, 3 pass" in summary.read_text()


def test_overlapping_shards_are_an_error_naming_both_files(
    shards: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, _, whole = shards
    target = tmp_path / "all.json"
    assert main(["report", "merge", str(a), str(whole), "-o", str(target)]) == 2
    error = capsys.readouterr().err
    assert "test_reply" in error and str(a) in error and str(whole) in error and "overlap" in error
    assert not target.exists()


def test_a_bad_shard_is_one_error_naming_it_and_nothing_is_written(
    shards: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, _ = shards
    target = tmp_path / "all.json"
    target.write_text("the previous merge")
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({**json.loads(b.read_text()), "records": "not a list"}))
    assert main(["report", "merge", str(a), str(broken), "-o", str(target)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"laj report: {broken}: records")
    assert target.read_text() == "the previous merge"
    assert main(["report", "merge", str(a), str(b)]) == 2
    assert "-o ALL.json" in capsys.readouterr().err
    assert main(["report", str(a), str(b)]) == 2
    assert "laj report merge" in capsys.readouterr().err
