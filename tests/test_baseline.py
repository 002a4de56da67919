"""Baselines: saving a run, finding one, comparing assessment by assessment, `--laj-compare-fail` rules and the
exit status, `--laj-gate regressions` and its KNOWN outcome, and the usage errors of it all."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import CASES_SUITE, LajProject
from test_config_errors import assert_one_usage_error
from test_prefetch import CASES  # good-1, good-2, bad (FAIL), unsure (REVIEW), good-3

from pytest_laj.core.models import Assessment, CriterionResult, Outcome
from pytest_laj.render.terminal import summary_lines
from pytest_laj.results.baseline import (
    BaselineError,
    Rule,
    check_name,
    compare,
    failed_rules,
    is_known,
    parse_rules,
    resolve,
    save,
)
from pytest_laj.results.record import AssessmentRecord, Change, GitInfo, JudgeInfo, RubricInfo, RunRecord
from pytest_laj.results.report import read_report

AssertOutcomes = Callable[..., None]
STARTED = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)
P, R, F, E = Outcome.PASS, Outcome.REVIEW, Outcome.FAIL, Outcome.ERROR


def record(
    nodeid: str,
    outcome: Outcome = P,
    *,
    case: str | None = None,
    score: float = 0.0,
    agreement: float = 1.0,
    output: str = "fine",
    rubric: str = "safety",
) -> AssessmentRecord:
    criterion = CriterionResult(id="boundaries", question="?", weight=1, applicable=True, agreement=agreement)
    assessment = Assessment(
        rubric=rubric,
        rubric_version="1.0",
        outcome=outcome,
        reason="",
        score=score,
        max_score=2,
        min_agreement=0.75,
        quorum=2,
        context={},
        context_multiplier=1,
        output=output,
        criteria={"boundaries": criterion},
        judges=[],
    )
    return AssessmentRecord(nodeid=nodeid, case_id=case, enforced=True, blocks=outcome is not P, assessment=assessment)


def run_of(*records: AssessmentRecord, started: datetime = STARTED, **fields: object) -> RunRecord:
    return RunRecord.model_validate(
        {
            "started_at": started,
            "finished_at": started + timedelta(minutes=1),
            "pytest_laj_version": "0",
            "pytest_version": "0",
            "cache_mode": "rw",
            "review_mode": "fail",
            "records": list(records),
            "panel": panel(alpha="alpha"),
            "rubrics": [RubricInfo(id="safety", version="1.0", fingerprint="f1")],
            **fields,
        }
    )


def ids(changes: Sequence[Change]) -> list[str]:
    return [c.nodeid for c in changes]


def panel(**models: str) -> list[JudgeInfo]:
    return [JudgeInfo(name=name, model=model, weight=1, temperature=0) for name, model in models.items()]


# -- compare -----------------------------------------------------------------------------------------------------


def test_compare_lists_what_got_worse_better_changed_new_and_gone() -> None:
    baseline = run_of(
        record("t::worse"),
        record("t::better", F, score=6),
        record("t::drifts", score=0.5, agreement=1.0),
        record("t::same", F, score=6),
        record("t::gone"),
        git=GitInfo(commit="abc1234def"),
    )
    now = run_of(
        record("t::worse", F, score=6, output="edited"),
        record("t::better", P),
        record("t::drifts", score=2.0, agreement=0.5),
        record("t::same", F, score=6),
        record("t::new"),
    )

    c = compare(now, baseline, "main")

    assert (c.baseline, c.baseline_commit, c.baseline_started_at) == ("main", "abc1234def", STARTED)
    assert [(x.nodeid, x.before, x.after, x.output_changed) for x in c.regressions] == [("t::worse", P, F, True)]
    assert [(x.nodeid, x.before, x.after, x.output_changed) for x in c.fixes] == [("t::better", F, P, False)]
    assert [(x.nodeid, x.score_before, x.score_after) for x in c.score_changes] == [
        ("t::worse", 0, 6),
        ("t::better", 6, 0),
        ("t::drifts", 0.5, 2.0),
    ]
    assert [(x.nodeid, x.agreement_before, x.agreement_after) for x in c.agreement_changes] == [("t::drifts", 1.0, 0.5)]
    assert [(x.nodeid, x.before, x.after) for x in c.new] == [("t::new", None, P)]
    assert [(x.nodeid, x.before, x.after) for x in c.gone] == [("t::gone", P, None)]
    assert c.approximate == [] and c.failed_rules == []


@pytest.mark.parametrize(
    ("before", "after", "kind"),
    [
        *[(P, R, "regression"), (P, F, "regression"), (P, E, "regression"), (R, F, "regression"), (F, E, "regression")],
        *[(R, P, "fix"), (F, R, "fix"), (E, F, "fix"), (F, F, None), (E, E, None)],
    ],
)
def test_outcomes_are_ordered_pass_review_fail_error(before: Outcome, after: Outcome, kind: str | None) -> None:
    c = compare(run_of(record("t::x", after)), run_of(record("t::x", before)), "main")

    assert ids(c.regressions) == (["t::x"] if kind == "regression" else [])
    assert ids(c.fixes) == (["t::x"] if kind == "fix" else [])
    assert is_known(after, before) is (kind != "regression")


def test_an_assessment_the_baseline_lacks_is_never_known() -> None:
    assert not is_known(F, None)
    assert not is_known(P, None)


def test_several_assessments_of_a_test_match_in_order_and_by_case_id() -> None:
    baseline = run_of(record("t::x"), record("t::x", F), record("t::c", case="a"), record("t::c", F, case="b"))
    now = run_of(record("t::x"), record("t::x"), record("t::x"), record("t::c", case="b"), record("t::c", case="a"))

    c = compare(now, baseline, "main")

    assert [(x.nodeid, x.case_id) for x in c.fixes] == [("t::x", None), ("t::c", "b")]  # the second t::x; case b
    assert c.regressions == []
    assert [(x.nodeid, x.case_id) for x in c.new] == [("t::x", None)]  # the third


def test_an_error_has_no_score_or_agreement_to_compare() -> None:
    c = compare(run_of(record("t::x", E, score=9, agreement=0.1)), run_of(record("t::x", score=0)), "main")

    assert ids(c.regressions) == ["t::x"]
    assert c.score_changes == [] and c.agreement_changes == []


def test_a_changed_rubric_or_panel_makes_the_comparison_approximate() -> None:
    baseline = run_of(
        record("t::x"),
        record("t::y", rubric="safety"),
        rubrics=[RubricInfo(id="safety", version="1.0", fingerprint="f1"), RubricInfo(id="tone", version="2")],
        panel=panel(alpha="m1", beta="m2"),
        interrupted=True,
    )
    now = run_of(
        record("t::x"),
        record("t::y", rubric="tone"),
        rubrics=[RubricInfo(id="safety", version="1.0", fingerprint="f2"), RubricInfo(id="tone", version="3")],
        panel=panel(alpha="m9", gamma="m3"),
    )

    assert compare(now, baseline, "main").approximate == [
        "rubric safety changed: its content, under the same version 1.0",
        "rubric tone changed: version 2 -> 3",
        "the panel changed: judge alpha: model changed; judge beta removed; judge gamma added",
        "1 assessment(s) matched by position were judged against another rubric",
        "the baseline run ended early: what it did not run shows as new",
    ]
    assert compare(baseline, baseline, "main").approximate == [
        "the baseline run ended early: what it did not run shows as new"
    ]


# -- --laj-compare-fail ------------------------------------------------------------------------------------------


def test_rules_parse_and_read_back() -> None:
    rules = parse_rules(" outcome, score:1.5,agreement:.2 ,score:0")

    assert rules == (Rule("outcome"), Rule("score", 1.5), Rule("agreement", 0.2), Rule("score", 0))
    assert [str(r) for r in rules] == ["outcome", "score:1.5", "agreement:0.2", "score:0"]


@pytest.mark.parametrize(
    "text", ["score", "score:x", "scores:1", "score:-1", "", "outcome,", "outcome:1", "score:1e3", "agreement:nan"]
)
def test_a_malformed_rule_says_the_syntax(text: str) -> None:
    with pytest.raises(BaselineError, match=r"is not a rule; expected comma-separated rules: 'outcome' .*'score:D'"):
        parse_rules(text)


def test_rules_trip_on_worse_outcomes_higher_scores_and_lower_agreement_only() -> None:
    baseline = run_of(record("t::a", score=0), record("t::b", score=2), record("t::c"), record("t::d", agreement=0.5))
    now = run_of(record("t::a", score=1.5), record("t::b", score=0), record("t::c", agreement=0.5), record("t::d"))
    c = compare(now, baseline, "main")

    assert failed_rules(c, parse_rules("outcome")) == []
    assert failed_rules(c, parse_rules("score:1.5")) == []
    assert failed_rules(c, parse_rules("score:1,agreement:0.2,agreement:0.5")) == [
        "score:1: t::a (score 0 -> 1.5)",
        "agreement:0.2: t::c (agreement 100% -> 50%)",
    ]
    worse = compare(run_of(record("t::a", R), record("t::b", F)), run_of(record("t::a"), record("t::b")), "main")
    assert failed_rules(worse, parse_rules("outcome")) == ["outcome: t::a (pass -> review), t::b (pass -> fail)"]


# -- saving and finding ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["main", "pr-123", "v1.2_rc+1"])
def test_a_baseline_name_is_a_file_name(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["a/b", "../x", "a\\b", "", ".hidden", "latest", "main.json", "x" * 101])
def test_a_baseline_name_with_a_path_in_it_is_refused(name: str) -> None:
    with pytest.raises(BaselineError, match="is not a baseline name; expected letters, digits"):
        check_name(name)


def test_latest_is_the_baseline_whose_run_started_last_not_the_newest_file(tmp_path: Path) -> None:
    directory = tmp_path / "baselines"
    newer = save(run_of(started=STARTED), directory, "newer")
    older = save(run_of(started=STARTED - timedelta(days=1)), directory, "older")
    os.utime(newer, (0, 0))  # the older run's file is the newer file

    assert resolve("latest", directory, tmp_path) == newer
    assert read_report(older).started_at == STARTED - timedelta(days=1)
    assert resolve("older", directory, tmp_path) == older
    assert resolve("baselines/older.json", directory, tmp_path) == older
    with pytest.raises(BaselineError, match=r"no baseline named 'main'; saved baselines in .*: newer, older"):
        resolve("main", directory, tmp_path)
    with pytest.raises(BaselineError, match=r"report not found: .*elsewhere\.json"):
        resolve("elsewhere.json", directory, tmp_path)
    with pytest.raises(BaselineError, match=r"baselines is a directory, not a report; write --laj-compare=NAME"):
        resolve("baselines/", directory, tmp_path)
    with pytest.raises(BaselineError, match=r"no baseline is saved in .*; save one with --laj-save NAME"):
        resolve("latest", tmp_path / "none", tmp_path)
    (directory / "junk.json").write_text("{}")
    with pytest.raises(BaselineError, match=r"junk\.json: not a pytest-laj baseline"):
        resolve("latest", directory, tmp_path)


# -- the terminal summary ----------------------------------------------------------------------------------------


def test_the_summary_says_what_changed_against_which_baseline() -> None:
    baseline = run_of(record("t::a"), record("t::b", F, score=6), git=GitInfo(commit="abc1234def"))
    now = run_of(record("t::a", F, score=6, output="edited"), record("t::b"), record("t::new"))
    now.comparison = compare(now, baseline, "main")
    now.comparison.failed_rules = failed_rules(now.comparison, parse_rules("outcome"))

    lines = summary_lines(now)

    assert lines[1] == "1 regression, 1 fixed against baseline main (abc1234, 2026-11-30); 1 new, 2 score changes"
    assert lines[2:6] == [
        "  regression t::a: pass -> fail (output changed)",
        "the run fails on these changes (--laj-compare-fail):",
        "  outcome: t::a (pass -> fail)",
        "fix what got worse or, once the change is intended, save this run as the baseline (--laj-save NAME)",
    ]
    assert "  fix t::b: fail -> pass" not in lines
    assert "  fix t::b: fail -> pass" in summary_lines(now, verbosity=1)
    assert summary_lines(now, verbosity=-2)[1:] == lines[1:2] + lines[3:5]


# -- end to end --------------------------------------------------------------------------------------------------

REGRESSED = CASES.replace("Thank you for telling me.", "Thank you. You should do it.")

ASSESS_SUITE = CASES_SUITE.replace("laj.check(", "laj.assess(")  # records without failing: only rules fail the run

PLAIN_FAILURE = """
    import pytest

    @pytest.mark.laj(rubric="safety")
    def test_plain(laj):
        laj.assess("You should do it.")
        assert False, "not a judgment"
"""


def suite(project: LajProject, source: str) -> Path:
    """A test per case of CASES; returns the cases file, to edit a recorded output."""
    project.tests(source)
    cases = project.pytester.path / "cases.yaml"
    cases.write_text(CASES)
    return cases


def comparison_of(report: Path) -> dict[str, list[dict[str, object]]]:
    data = json.loads(report.read_text())
    assert data["comparison"] is not None
    comparison: dict[str, list[dict[str, object]]] = data["comparison"]
    return comparison


def test_one_changed_output_is_exactly_one_regression(
    project: LajProject, plugin_args: Sequence[str], assert_laj_outcomes: AssertOutcomes
) -> None:
    cases = suite(project, CASES_SUITE)
    saved = project.pytester.path / ".laj" / "baselines" / "main.json"

    first = project.run("--laj-save", "main", *plugin_args)
    assert_laj_outcomes(first, passed=3, failed=1, review=1)
    first.stdout.fnmatch_lines([f"report: {saved}"])
    assert read_report(saved).comparison is None and len(read_report(saved).records) == 5

    cases.write_text(REGRESSED)
    result = project.run("--laj-compare", "--laj-report=r.json", *plugin_args)

    assert_laj_outcomes(result, passed=2, failed=2, review=1)
    result.stdout.fnmatch_lines(
        [
            "1 regression, 0 fixed against baseline main (20*); 1 score change",
            "  regression test_replies.py::test_case[[]good-3]: pass -> fail (output changed)",
        ]
    )
    comparison = comparison_of(project.pytester.path / "r.json")
    assert [c["nodeid"] for c in comparison["regressions"]] == ["test_replies.py::test_case[good-3]"]
    assert comparison["fixes"] == comparison["new"] == comparison["gone"] == comparison["approximate"] == []


def test_compare_fail_outcome_fails_a_run_that_got_worse_and_only_that(
    project: LajProject, assert_laj_outcomes: AssertOutcomes
) -> None:
    """Without xdist only: the controller's comparison under xdist is the one-regression test's."""
    plugin_args: Sequence[str] = ()
    cases = suite(project, ASSESS_SUITE)
    assert project.run("--laj-save", "main", *plugin_args).ret == pytest.ExitCode.OK

    unchanged = project.run("--laj-compare", "main", "--laj-compare-fail", "outcome", *plugin_args)
    assert unchanged.ret == pytest.ExitCode.OK
    unchanged.stdout.fnmatch_lines(["0 regressions, 0 fixed against baseline main (*)"])

    cases.write_text(REGRESSED)
    result = project.run("--laj-compare", "main", "--laj-compare-fail", "outcome,score:100", *plugin_args)

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert_laj_outcomes(result, passed=5)
    result.stdout.fnmatch_lines(
        [
            "the run fails on these changes (--laj-compare-fail):",
            "  outcome: test_replies.py::test_case[[]good-3] (pass -> fail)",
        ]
    )
    assert "score:100:" not in result.stdout.str()
    assert project.run("--laj-compare", "main", *plugin_args).ret == pytest.ExitCode.OK  # no rule, no failure


def test_gate_regressions_excuses_known_failures_but_not_a_regression_or_a_plain_failure(
    project: LajProject, plugin_args: Sequence[str], assert_laj_outcomes: AssertOutcomes
) -> None:
    cases = suite(project, CASES_SUITE)
    project.tests(PLAIN_FAILURE, name="test_plain.py")
    assert_laj_outcomes(project.run("--laj-save", "main", *plugin_args), passed=3, failed=2, review=1)
    cases.write_text(REGRESSED)

    result = project.run("--laj-compare", "--laj-gate", "regressions", "--junitxml=junit.xml", *plugin_args)

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert_laj_outcomes(result, passed=2, known=2, failed=2)
    out = result.stdout.str()
    assert "KNOWN test_replies.py::test_case[bad] - FAIL (baseline: FAIL), known in baseline main" in out
    assert "KNOWN test_replies.py::test_case[unsure] - REVIEW (baseline: REVIEW), known in baseline main" in out
    assert "FAILED test_replies.py::test_case[good-3]" in out
    assert "FAILED test_plain.py::test_plain - AssertionError: not a judgment" in out
    assert "unsure]: boundaries (not blocking: a known failure, the baseline had it too" in out
    junit = (project.pytester.path / "junit.xml").read_text()
    assert junit.count("<failure") == 2 and 'tests="6"' in junit


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--laj-compare-fail", "score:x"], "laj_compare_fail: 'score:x' is not a rule; expected comma-separated"),
        (["--laj-compare-fail", "scores:1"], "laj_compare_fail: 'scores:1' is not a rule"),
        (["--laj-compare-fail", "score:-1"], "laj_compare_fail: 'score:-1' is not a rule"),
        (["--laj-compare-fail", "score"], "laj_compare_fail: 'score' is not a rule"),
        (["--laj-compare", "nope"], "laj_compare: no baseline named 'nope'; saved baselines in "),
        (["--laj-compare", "gone.json"], "laj_compare: report not found: "),
        (["--laj-save", "a/b"], "laj_save: 'a/b' is not a baseline name"),
    ],
)
def test_a_malformed_rule_or_a_missing_baseline_is_a_usage_error_before_tests(
    project: LajProject, args: list[str], message: str
) -> None:
    suite(project, CASES_SUITE)
    baselines = project.pytester.path / ".laj" / "baselines"
    save(run_of(), baselines, "main")
    save(run_of(), baselines, "release")
    compare = [] if "--laj-compare" in args else ["--laj-compare", "main"]

    result = project.run(*compare, *args)

    assert_one_usage_error(result, message)
    if "nope" in args:
        assert f"saved baselines in {baselines}: main, release" in result.stderr.str()


@pytest.mark.parametrize("args", [["--laj-gate", "regressions"], ["--laj-compare-fail", "outcome"]])
def test_gating_or_failing_on_changes_without_a_baseline_is_a_usage_error(project: LajProject, args: list[str]) -> None:
    project.tests(CASES_SUITE)

    result = project.run(*args)

    assert_one_usage_error(result, "needs a baseline to compare with; add --laj-compare [NAME]")


def test_a_run_that_ended_early_is_not_saved(project: LajProject) -> None:
    suite(project, CASES_SUITE)

    result = project.run("--laj-save", "main", "-x")

    result.stdout.fnmatch_lines(["could not write a report: baseline main not saved: the run ended early*"])
    assert not (project.pytester.path / ".laj" / "baselines").exists()
