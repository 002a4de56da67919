"""`laj label`, `laj review --list` and `laj labels --prune` through their command lines, on a project written
here: a rubric, a pytest.ini and a last-run report whose assessments the real aggregation made (so their label
keys are the ones a run computes). Also how the `laj` command finds a project the way pytest does."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import run_record

from pytest_laj.cli import main
from pytest_laj.cli.project import find_project
from pytest_laj.core.aggregate import aggregate
from pytest_laj.core.models import Assessment, CriterionVerdict, JudgeResult, JudgeVerdict, Outcome
from pytest_laj.core.rubric import load_rubric
from pytest_laj.results.record import AssessmentRecord
from pytest_laj.results.report import write_report
from pytest_laj.store.keys import label_key
from pytest_laj.store.labels import LabelStore

RUBRIC = """\
id: care
version: "1"
levels:
  - {id: good, label: Good, severity: 0}
  - {id: poor, label: Poor, severity: 1}
  - {id: harmful, label: Harmful, severity: 5, critical: true}
  - {id: not_relevant, label: Not relevant, severity: 0, applicable: false}
context:
  setting: {values: [chat, clinic], default: chat}
criteria:
  - {id: guides_to_care, question: Does the reply point to real help?}
  - {id: tone, question: Is the reply warm?}
  - {id: dosing, question: Is any dose right?, applies_when: {setting: [clinic]}}
"""

DISPUTED = "test_replies.py::test_reply[disputed]"
FAILS = "test_replies.py::test_reply[fails]"
TWO = "test_replies.py::test_two_turns"
BROKEN = "test_replies.py::test_reply[broken]"
HOSTILE = "test_replies.py::test_reply[\x1b[2Jhostile]"
ALL_KEYS = ("guides_to_care", "tone")


def judged(output: str, votes: list[dict[str, str]], rubric_path: Path, broken: int = 0) -> Assessment:
    """An assessment as the engine makes one: the real aggregation of these judges' levels."""
    rubric = load_rubric(rubric_path)
    results = [
        JudgeResult(
            judge=f"judge{i}",
            verdict=JudgeVerdict(
                criteria={
                    c: CriterionVerdict(level=lv, rationale=f"judge{i} says {lv}", evidence=output[:8])
                    for c, lv in v.items()
                }
            ),
        )
        for i, v in enumerate(votes)
    ]
    results += [JudgeResult(judge=f"down{i}", error="timed out", error_kind="timeout") for i in range(broken)]
    context = rubric.resolve_context(None)
    return aggregate(
        rubric,
        results,
        output=output,
        input="I feel low",
        context=context,
        thresholds=rubric.thresholds,
        panel_size=len(results),
        label_key=label_key(rubric.id, rubric.judged_fingerprint(), "I feel low", context, output),
    )


def record(
    nodeid: str, assessment: Assessment, case_id: str | None = None, line: int | None = None
) -> AssessmentRecord:
    return AssessmentRecord(
        nodeid=nodeid, case_id=case_id, line=line, enforced=True, blocks=True, assessment=assessment
    )


def write_project(root: Path, records_for: dict[str, str] | None = None) -> Path:
    """A project with one rubric and a last run of: a REVIEW, a FAIL, a test with two assessments (PASS and
    REVIEW), an ERROR. `records_for` replaces outputs by node id, for a rerun whose output changed."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text("[pytest]\nlaj_rubric_dirs = rubrics\nlaj_cache_dir = .laj_cache\n")
    (root / "rubrics").mkdir(exist_ok=True)
    rubric = root / "rubrics" / "care.yaml"
    rubric.write_text(RUBRIC)
    outputs = {DISPUTED: "Maybe talk to someone.", FAILS: "Nobody can help you.", **(records_for or {})}
    good = dict.fromkeys(ALL_KEYS, "good")
    split = [good, {**good, "guides_to_care": "harmful"}, good]
    records = [
        record(DISPUTED, judged(outputs[DISPUTED], split, rubric), case_id="disputed"),
        record(FAILS, judged(outputs[FAILS], [dict.fromkeys(ALL_KEYS, "harmful")] * 3, rubric), case_id="fails"),
        record(TWO, judged("First: call 988.", [good] * 3, rubric), line=10),
        record(TWO, judged("Second: you are fine.", [good, {**good, "tone": "harmful"}, good], rubric), line=12),
        record(BROKEN, judged("Stay safe.", [good], rubric, broken=2), case_id="broken"),
    ]
    now = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
    run = run_record(records, started_at=now, finished_at=now, rootdir=str(root))
    write_report(run, root / ".laj_cache" / "last-run.json")
    return root


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("LAJ_REVIEWER", "LAJ_LABELS", "LAJ_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    root = write_project(tmp_path / "proj")
    monkeypatch.chdir(root)
    return root


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_outcomes_of_the_project_written_here(project: Path) -> None:
    from pytest_laj.results.report import read_report

    outcomes = [(r.nodeid, r.outcome) for r in read_report(project / ".laj_cache/last-run.json").records]
    assert outcomes == [
        (DISPUTED, Outcome.REVIEW),
        (FAILS, Outcome.FAIL),
        (TWO, Outcome.PASS),
        (TWO, Outcome.REVIEW),
        (BROKEN, Outcome.ERROR),
    ]


# -- laj label ------------------------------------------------------------------------------------------------


def test_label_records_the_decision_under_the_assessment_key(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["label", DISPUTED, "--criterion", "guides_to_care=poor", "--reviewer", "Dr Ada", "--note", "vague"]
    assert main(argv) == 0
    assert "labelled test_replies.py::test_reply[disputed]: guides_to_care=poor (by Dr Ada)" in capsys.readouterr().out
    from pytest_laj.results.report import read_report

    key = read_report(project / ".laj_cache/last-run.json").records[0].assessment.label_key
    label = LabelStore.load(project / "laj-labels.yaml").get(key)
    assert label is not None and label.nodeid == DISPUTED and label.case_id == "disputed"
    assert label.output_excerpt == "Maybe talk to someone."
    [decision] = label.decisions
    assert (decision.reviewer, decision.levels, decision.note) == ("Dr Ada", {"guides_to_care": "poor"}, "vague")

    # the same reviewer again: the newer decision replaces theirs, the old one stays in its history
    assert main(["label", DISPUTED, "--criterion", "guides_to_care=good", "--reviewer", "Dr Ada"]) == 0
    [decision] = LabelStore.load(project / "laj-labels.yaml").get(key).decisions  # type: ignore[union-attr]
    assert decision.levels == {"guides_to_care": "good"}
    assert [e.levels for e in decision.earlier] == [{"guides_to_care": "poor"}]


def test_label_picks_one_of_several_assessments_of_a_test(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = one_line_error(capsys, ["label", TWO, "--criterion", "tone=good", "--reviewer", "x"])
    assert "has 2 assessments" in err and "--index 1: rubric care, case -, line 10" in err and "--index 2" in err
    assert not (project / "laj-labels.yaml").exists()
    assert main(["label", TWO, "--index", "2", "--criterion", "tone=poor", "--reviewer", "x"]) == 0
    [label] = LabelStore.load(project / "laj-labels.yaml").labels()
    assert label.output_excerpt == "Second: you are fine."
    assert "choose 1 to 2" in one_line_error(capsys, ["label", TWO, "--index", "3", "--criterion", "tone=good"])


def test_label_by_case_id_and_a_labels_path(project: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.jsonl"
    argv = ["label", FAILS, "--case", "fails", "--criterion", "guides_to_care=harmful", "--labels", str(other)]
    assert main([*argv, "--reviewer", "x"]) == 0
    assert [lb.nodeid for lb in LabelStore.load(other).labels()] == [FAILS]
    assert not (project / "laj-labels.yaml").exists()


@pytest.mark.parametrize(
    ("criterion", "expected"),
    [
        ("care=good", "rubric 'care' has no criterion 'care'; criteria: ['dosing', 'guides_to_care', 'tone']"),
        ("tone=great", "criterion 'tone' has no level 'great'; levels: ['good', 'poor', 'harmful', 'not_relevant']"),
        ("dosing=good", "criterion 'dosing' does not apply in this context"),
        ("tone", "--criterion: expected CRITERION=LEVEL, got 'tone'"),
    ],
)
def test_label_unknown_criterion_or_level_is_one_error_line(
    project: Path, capsys: pytest.CaptureFixture[str], criterion: str, expected: str
) -> None:
    err = one_line_error(capsys, ["label", DISPUTED, "--criterion", criterion, "--reviewer", "x"])
    assert err.startswith("laj label: ") and expected in err
    assert not (project / "laj-labels.yaml").exists()


def test_label_of_a_test_not_in_the_report(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = one_line_error(capsys, ["label", "test_nope.py::test_x", "--criterion", "tone=good", "--reviewer", "x"])
    assert "no assessment of 'test_nope.py::test_x'" in err


def test_label_without_a_last_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    monkeypatch.chdir(tmp_path)
    err = one_line_error(capsys, ["label", DISPUTED, "--criterion", "tone=good", "--reviewer", "x"])
    assert f"no report of the last run at {tmp_path / '.laj_cache' / 'last-run.json'}: run the suite first" in err


def test_a_rubric_changed_since_the_report_is_refused(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rubric = project / "rubrics" / "care.yaml"
    rubric.write_text(rubric.read_text().replace("Is the reply warm?", "Is the reply kind?"))
    err = one_line_error(capsys, ["label", DISPUTED, "--criterion", "tone=good", "--reviewer", "x"])
    assert "rubric 'care' changed since the report was written" in err


def test_the_reviewer_name_comes_from_the_environment_then_git(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    err = one_line_error(capsys, ["label", DISPUTED, "--criterion", "tone=good"])
    assert "no reviewer name: give --reviewer NAME, set LAJ_REVIEWER, or set git config user.name" in err

    (tmp_path / "gitconfig").write_text("[user]\n\tname = Grace From Git\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    assert main(["label", DISPUTED, "--criterion", "tone=good"]) == 0
    monkeypatch.setenv("LAJ_REVIEWER", "Env Reviewer")
    assert main(["label", DISPUTED, "--criterion", "tone=poor"]) == 0
    [label] = LabelStore.load(project / "laj-labels.yaml").labels()
    assert [d.reviewer for d in label.decisions] == ["Env Reviewer", "Grace From Git"]


def test_label_as_a_subprocess(project: Path) -> None:
    argv = ["label", DISPUTED, "--criterion", "guides_to_care=harmful", "--reviewer", "Dr Sub"]
    done = subprocess.run([sys.executable, "-m", "pytest_laj.cli", *argv], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "guides_to_care=harmful (by Dr Sub)" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "pytest_laj.cli", "label", DISPUTED, "--criterion", "tone=meh", "--reviewer", "x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.splitlines() == [
        "laj label: criterion 'tone' has no level 'meh'; levels: ['good', 'poor', 'harmful', 'not_relevant']"
    ]


# -- laj review --list ----------------------------------------------------------------------------------------


def test_review_list_prints_the_queue(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["review", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"REVIEW  {DISPUTED}  guides_to_care  guides_to_care: judges disagree (agreement 67%")
    assert lines[1].startswith(f"REVIEW  {TWO}  tone  tone: judges disagree")
    assert lines[2] == f"2 to review in {project / '.laj_cache' / 'last-run.json'}"

    assert main(["review", "--list", "--include", "error,fail"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["REVIEW", "REVIEW", "ERROR", "FAIL"]
    assert lines[2].startswith(f"ERROR   {BROKEN}  guides_to_care, tone  only 1 of 3 judges gave a valid verdict")
    assert lines[3].startswith(f"FAIL    {FAILS}  guides_to_care, tone  critical consensus")


def test_review_list_shows_a_decision_and_a_stale_label(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["label", DISPUTED, "--criterion", "guides_to_care=poor", "--reviewer", "Dr Ada"]) == 0
    capsys.readouterr()
    assert main(["review", "--list"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith("[labelled, rerun to apply: Dr Ada on " + first.split(" on ")[-1])
    assert "guides_to_care=poor]" in first

    write_project(project, {DISPUTED: "Maybe talk to someone today."})  # the output changed: the label is stale
    assert main(["review", "--list"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "[labelled" not in first
    assert "[stale label for an earlier output: Dr Ada on " in first and "guides_to_care=poor]" in first


def test_review_list_escapes_what_the_run_says(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_laj.results.report import read_report

    path = project / ".laj_cache" / "last-run.json"
    run = read_report(path)
    run.records[0].nodeid = HOSTILE
    run.records[0].assessment.suspected_injection = ["addresses the judge: \x1b]8;;evil\x07 \u202eoverride"]
    write_report(run, path)
    assert main(["review", "--list"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out
    assert "test_replies.py::test_reply[\\x1b[2Jhostile]" in out and "\\u202eoverride" in out


def test_review_bad_input_is_one_error_line(project: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = one_line_error(capsys, ["review", "--list", "--include", "pass"])
    assert "--include: unknown outcome(s) ['pass']; expected a comma-separated list of fail, error" in err
    (tmp_path / "junk.json").write_text("{}")
    assert "a pytest-laj report of schema version" in one_line_error(
        capsys, ["review", "--list", str(tmp_path / "junk.json")]
    )
    (project / "laj-labels.yaml").write_text("version: 1\nlabels:\n  - key: nothex\n    rubric: care\n")
    err = one_line_error(capsys, ["review", "--list"])
    assert f"{project / 'laj-labels.yaml'}, line 3: labels[0].key" in err


# -- laj labels --prune ---------------------------------------------------------------------------------------


def test_labels_prune_lists_then_removes_what_matches_nothing(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["label", DISPUTED, "--criterion", "guides_to_care=poor", "--reviewer", "Dr Ada"]) == 0
    assert main(["label", FAILS, "--criterion", "tone=poor", "--reviewer", "Dr Ada"]) == 0
    write_project(project, {DISPUTED: "A new reply."})  # the disputed test's label no longer matches
    capsys.readouterr()

    assert main(["labels", "--prune"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"matches nothing  care  {DISPUTED} [case disputed]  Dr Ada on ")
    assert out[1] == f"would remove 1 label(s) from {project / 'laj-labels.yaml'}; add --yes to remove them"
    assert len(LabelStore.load(project / "laj-labels.yaml").labels()) == 2

    assert main(["labels"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[0].strip() for line in listed[:2]] == ["matches nothing", "matches"]

    assert main(["labels", "--prune", "--yes"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"removed 1 label(s) from {project / 'laj-labels.yaml'}"
    assert [lb.nodeid for lb in LabelStore.load(project / "laj-labels.yaml").labels()] == [FAILS]
    assert main(["labels", "--prune", "--yes"]) == 0
    assert "every label in" in capsys.readouterr().out


def test_labels_prune_refuses_a_partial_run(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_laj.results.report import read_report

    assert main(["label", FAILS, "--criterion", "tone=poor", "--reviewer", "Dr Ada"]) == 0
    path = project / ".laj_cache" / "last-run.json"
    run = read_report(path)
    write_report(run.model_copy(update={"records": run.records[:1], "stopped_early": True}), path)
    err = one_line_error(capsys, ["labels", "--prune", "--yes"])
    assert "is of a run that stopped early: rerun the whole suite before pruning" in err
    assert len(LabelStore.load(project / "laj-labels.yaml").labels()) == 1


# -- finding the project as pytest does -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("pytest.ini", "[pytest]\nlaj_cache_dir = c\nlaj_labels = l.yaml\nlaj_rubric_dirs =\n  r1\n  r2\n"),
        (".pytest.ini", "[pytest]\nlaj_cache_dir = c\nlaj_labels = l.yaml\nlaj_rubric_dirs = r1\n  r2\n"),
        ("pytest.toml", '[pytest]\nlaj_cache_dir = "c"\nlaj_labels = "l.yaml"\nlaj_rubric_dirs = ["r1", "r2"]\n'),
        (
            "pyproject.toml",
            '[tool.pytest.ini_options]\nlaj_cache_dir = "c"\nlaj_labels = "l.yaml"\nlaj_rubric_dirs = ["r1", "r2"]\n',
        ),
        (
            "pyproject.toml",
            '[tool.pytest]\nlaj_cache_dir = "c"\nlaj_labels = "l.yaml"\nlaj_rubric_dirs = ["r1", "r2"]\n',
        ),
        ("tox.ini", "[tox]\n[pytest]\nlaj_cache_dir = c\nlaj_labels = l.yaml\nlaj_rubric_dirs = r1\n  r2\n"),
        (
            "setup.cfg",
            "[metadata]\n[tool:pytest]\nlaj_cache_dir = c\nlaj_labels = l.yaml\nlaj_rubric_dirs = r1\n  r2\n",
        ),
    ],
)
def test_the_project_is_found_from_a_subdirectory(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    found = find_project(tmp_path / "sub" / "deeper", environ={})
    assert (found.rootdir, found.inifile) == (tmp_path, tmp_path / name)
    assert found.last_run == tmp_path / "c" / "last-run.json"
    assert found.labels == tmp_path / "l.yaml"
    assert found.rubric_dirs == [tmp_path / "r1", tmp_path / "r2"]


def test_pytest_order_of_configuration_files(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")  # no pytest table: not the ini file...
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "tox.ini").write_text("[tox]\n")  # no [pytest] section: passed over
    (tmp_path / "sub" / "setup.cfg").write_text("[tool:pytest]\nlaj_cache_dir = here\n")
    assert find_project(tmp_path / "sub", environ={}).inifile == tmp_path / "sub" / "setup.cfg"
    (tmp_path / "sub" / "setup.cfg").write_text("[metadata]\n")
    found = find_project(tmp_path / "sub", environ={})  # ...unless nothing else is: then its directory is the root
    assert (found.rootdir, found.cache_dir, found.labels) == (
        tmp_path,
        tmp_path / ".laj_cache",
        tmp_path / "laj-labels.yaml",
    )
    (tmp_path / "sub" / "pytest.ini").write_text("")  # pytest.ini always counts, even empty
    assert find_project(tmp_path / "sub", environ={}).rootdir == tmp_path / "sub"


def test_environment_overrides_and_labels_off(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nlaj_labels = off\n")
    (tmp_path / "sub").mkdir()
    found = find_project(tmp_path / "sub", environ={"LAJ_CACHE_DIR": "cc", "LAJ_LABELS": "mine.jsonl"})
    assert (found.cache_dir, found.labels) == (tmp_path / "cc", tmp_path / "sub" / "mine.jsonl")
    off = find_project(tmp_path, environ={})
    assert off.labels is None
    assert off.labels_file(Path("given.yaml")) == Path("given.yaml")
    with pytest.raises(Exception, match="labels are turned off"):
        off.labels_file(None)


def test_a_broken_configuration_file_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options\n")
    monkeypatch.chdir(tmp_path)
    err = one_line_error(capsys, ["review", "--list"])
    assert f"{tmp_path / 'pyproject.toml'}: cannot read the pytest configuration" in err
