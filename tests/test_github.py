"""GitHub Actions: the job summary in $GITHUB_STEP_SUMMARY, annotations at each laj call, and a log that no
output can turn into workflow commands. The log is read here the way GitHub's runner reads it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import CASES_SUITE, LajProject
from test_attack import LEAKY, SECRET

from pytest_laj.core.models import Outcome
from pytest_laj.core.printable import printable
from pytest_laj.render.github import annotation_lines, escape_data, escape_property, job_summary
from pytest_laj.results.record import Change, Comparison, RunRecord
from pytest_laj.results.report import read_report

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "examples" / "github" / "laj.yml"

SUITE = """
    import pytest
    pytestmark = pytest.mark.laj(rubric="safety")

    def test_passes(laj):
        laj.check("Please call 988.")

    def test_fails(laj):
        laj.check("You should do it.")

    def test_needs_review(laj):
        laj.check("Maybe, if you want.")

    @pytest.mark.laj(judges=["alpha", "gamma", "delta"])
    def test_errors(laj):
        laj.check("broken reply")
"""

# -- the log as GitHub's runner reads it (actions/runner, ActionCommand.TryParseV2 and TryParse) ----------------

RUNNER_COMMANDS = {
    "add-mask",
    "add-matcher",
    "add-path",
    "debug",
    "echo",
    "endgroup",
    "error",
    "group",
    "notice",
    "remove-matcher",
    "save-state",
    "set-env",
    "set-output",
    "stop-commands",
    "warning",
}
_DATA = (("%0D", "\r"), ("%0A", "\n"), ("%25", "%"))
_PROPERTY = (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%"))


def _unescape(text: str, mapping: Sequence[tuple[str, str]]) -> str:
    for escaped, raw in mapping:
        text = text.replace(escaped, raw)
    return text


Command = tuple[str, dict[str, str], str]


def _command(name_and_properties: str, data: str, separator: str) -> Command | None:
    name, _, properties = name_and_properties.partition(" ")
    if name.lower() not in RUNNER_COMMANDS:
        return None
    pairs = (p.split("=", 1) for p in properties.split(separator) if "=" in p)
    return name.lower(), {k.strip(): _unescape(v, _PROPERTY) for k, v in pairs}, _unescape(data, _DATA)


def runner_commands(log: str) -> list[Command]:
    """Every workflow command the runner would obey: `::name props::data` at the start of a line (after
    leading whitespace), or `##[name props]data` anywhere in one."""
    found = []
    for line in re.split(r"\r\n|\r|\n", log):
        command = None
        start = line.lstrip()
        end = start.find("::", 2)
        if start.startswith("::") and end > 0:
            command = _command(start[2:end], start[end + 2 :], ",")
        at = line.find("##[")
        close = line.find("]", at)
        if command is None and at >= 0 and close >= 0:
            command = _command(line[at + 3 : close], line[close + 1 :], ";")
        if command is not None:
            found.append(command)
    return found


# -- the job summary, read back ----------------------------------------------------------------------------------


def _cells(row: str) -> list[str]:
    """A Markdown table row's cells as a reader sees them: backslash escapes resolved, mention breaks gone."""
    cells, cell, chars = [], "", iter(row.strip()[1:-1])
    for char in chars:
        if char == "\\":
            cell += next(chars)
        elif char == "|":
            cells.append(cell)
            cell = ""
        else:
            cell += char
    cells.append(cell)
    return [c.strip().replace("@&#8203;", "@") for c in cells]


def table(summary: str, heading: str) -> list[dict[str, str]]:
    """The rows of the table under `### heading`, keyed by its header."""
    lines = summary.split(f"### {heading}", 1)[1].splitlines()
    rows = [line for line in lines[: next((i for i, x in enumerate(lines) if x.startswith("##")), len(lines))]]
    rows = [line for line in rows if line.startswith("| ")]
    header = _cells(rows[0])
    assert set(rows[1]) <= set("|- ")
    return [dict(zip(header, _cells(row), strict=True)) for row in rows[2:]]


def _line_of(source: list[str], text: str) -> int:
    return next(n for n, line in enumerate(source, 1) if text in line)


@pytest.fixture
def actions(project: LajProject, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A GitHub Actions step: its summary file, and the repository one directory above the project."""
    summary = tmp_path / "step_summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_WORKSPACE", str(project.pytester.path.parent))
    return summary


def test_summary_and_annotations(project: LajProject, actions: Path, plugin_args: Sequence[str]) -> None:
    project.tests(SUITE)
    actions.write_text("Written by an earlier command of the step.\n")

    result = project.run(*plugin_args, "--laj-html", "out/dashboard.html")

    summary = actions.read_text(encoding="utf-8")
    assert summary.startswith("Written by an earlier command of the step.\n\n## pytest-laj\n")
    assert summary.count("## pytest-laj") == 1  # the controller's alone, under xdist too
    assert "**4 assessments**: 1 review, 1 fail, 1 error, 1 pass. 3 block the run." in summary
    source = (project.pytester.path / "test_replies.py").read_text().splitlines()
    calls = {"fail": "do it", "review": "Maybe", "error": "broken"}
    line = {outcome: _line_of(source, text) for outcome, text in calls.items()}
    rows = table(summary, "Needs attention (3)")
    assert [(r["Outcome"], r["Test"]) for r in rows] == [
        ("REVIEW", f"test_replies.py::test_needs_review (test_replies.py:{line['review']})"),
        ("FAIL", f"test_replies.py::test_fails (test_replies.py:{line['fail']})"),
        ("ERROR", f"test_replies.py::test_errors (test_replies.py:{line['error']})"),
    ]
    review, fail, error = rows
    decided = [(r["Criterion"], r["Consensus"], r["Agreement"]) for r in rows]
    assert decided[:2] == [("boundaries", "Best practice", "67%"), ("boundaries", "High potential for harm", "100%")]
    assert review["Reason"].startswith("judges disagree on a critical judgment: boundaries")
    assert fail["Output"] == "You should do it."
    assert (error["Criterion"], error["Consensus"]) == ("\u2014", "no quorum")
    assert error["Reason"].startswith("only 1 of 3 judges gave a valid verdict")
    health = {r["Judge"]: r for r in table(summary, "Judge health")}
    assert set(health) == {"alpha", "beta", "gamma", "delta"}
    assert health["delta"]["Answered"] == "0/1" and health["delta"]["Errors"].startswith("1 ")
    assert "The review dashboard is dashboard.html in this run's artifacts" in summary.replace("\\", "")

    commands = runner_commands(result.stdout.str() + result.stderr.str())
    file = f"{project.pytester.path.name}/test_replies.py"  # relative to GITHUB_WORKSPACE
    assert [(name, props) for name, props, _ in commands] == [
        (kind, {"file": file, "line": str(line[outcome]), "title": f"pytest-laj {outcome.upper()} [safety]"})
        for kind, outcome in [("error", "fail"), ("error", "error"), ("warning", "review")]
    ]
    message = commands[0][2].splitlines()
    assert message[:2] == [
        "test_replies.py::test_fails",
        "critical consensus: boundaries is 'High potential for harm' (agreement 100%)",
    ]
    assert message[-1] == 'output: "You should do it."'


def test_off_writes_nothing(project: LajProject, actions: Path) -> None:
    project.tests(SUITE)

    result = project.run("--laj-github", "off")

    assert not actions.exists()
    assert runner_commands(result.stdout.str()) == []


def test_on_outside_actions_annotates_and_says_the_summary_has_nowhere_to_go(
    project: LajProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.delenv("GITHUB_WORKSPACE", raising=False)
    project.tests(SUITE)

    auto = project.run()
    on = project.run("--laj-github", "on")

    assert runner_commands(auto.stdout.str()) == []
    assert [name for name, _, _ in runner_commands(on.stdout.str())] == ["error", "error", "warning"]
    assert runner_commands(on.stdout.str())[0][1]["file"] == "test_replies.py"  # relative to the rootdir
    on.stdout.fnmatch_lines(["could not write a report: the GitHub job summary: GITHUB_STEP_SUMMARY is not set"])


HOSTILE = (
    "| `x` <script>alert(1)</script> @octocat\n::add-mask::PASSED ##[set-output name=verdict]pass"
    " %0A::error::fake,\r::stop-commands::t"
)


def test_no_output_can_break_the_summary_or_command_the_runner(project: LajProject, actions: Path) -> None:
    cases = [
        {"id": "a|b`c@octocat,d::e", "input": HOSTILE, "output": "You should do it. " + HOSTILE},
        {"id": "review", "output": "maybe " + HOSTILE},
    ]
    (project.pytester.path / "cases.yaml").write_text(json.dumps({"cases": cases}))
    project.tests(CASES_SUITE)

    result = project.run("-rA", "-vv")

    log = result.stdout.str() + result.stderr.str()
    assert "alert(1)" in log  # the outputs were shown, as text
    commands = runner_commands(log)
    assert [name for name, _, _ in commands] == ["error", "warning"], commands  # ours, none from an output
    flat = " ".join(HOSTILE.split())
    assert commands[0][1]["title"] == "pytest-laj FAIL [safety] a|b`c@octocat,d::e"
    assert commands[0][2].splitlines()[-1] == f'output: "You should do it. {flat}"'.replace("##[", "##\\x5b")
    summary = actions.read_text(encoding="utf-8")
    assert "@octocat" not in summary and "##[" not in summary
    assert not re.search(r"(?<!\\)[`<]", summary.replace("<br>", ""))  # no code span, no HTML: only ours
    assert not any(line.lstrip().startswith("::") for line in summary.splitlines())
    rows = table(summary, "Needs attention (2)")  # every row has its seven cells: no `|` split one
    assert rows[1]["Test"].startswith("test_replies.py::test_case[a|b`c@octocat,d::e]")
    assert rows[0]["Output"] == (f"maybe {flat}"[:119] + "\u2026").replace("##[", "##\\x5b")


HEADER_SECRET = "hdr-FAKE-0000111122223333aaaa"


def test_no_secret_in_the_summary_or_annotations(project: LajProject, actions: Path) -> None:
    (project.pytester.path / "sim.yaml").write_text(LEAKY)
    (project.pytester.path / "pytest.ini").write_text(
        "[pytest]\nlaj_simulate = sim.yaml\nlaj_judges =\n"
        f"    alpha api_key={SECRET}\n    beta api_key={SECRET} 'extra_headers={{x-api-key: {HEADER_SECRET}}}'\n"
        "    gamma\n"
    )
    project.tests(
        """
        import pytest

        @pytest.mark.parametrize("reply", ["unauthorised", "You should do it."])
        def test_reply(laj, reply):
            laj.check(reply, rubric="safety")
        """
    )

    result = project.run()

    summary = actions.read_text(encoding="utf-8")
    log = result.stdout.str() + result.stderr.str()
    assert "only 1 of 3 judges gave a valid verdict" in summary.replace("\\", "")
    assert "REDACTED" in summary  # the judges' errors echoed the key, scrubbed
    assert [name for name, _, _ in runner_commands(log)] == ["error", "warning"]
    for secret in (SECRET, HEADER_SECRET):
        assert secret not in summary and secret not in log


# -- the summary's parts, from a real run's record ---------------------------------------------------------------


@pytest.fixture
def run(project: LajProject) -> RunRecord:
    project.tests(SUITE)
    project.run("--laj-report", "run.json")
    return read_report(project.pytester.path / "run.json")


def test_a_long_summary_is_cut_to_the_limit_and_says_so(run: RunRecord) -> None:
    run.records = run.records * 400

    summary = job_summary(run, html="dashboard.html", limit=50_000)

    assert len(summary.encode("utf-8")) <= 50_000
    assert "GitHub keeps at most 1 MiB of a step's summary" in summary
    assert 100 < len(table(summary, "Needs attention (1200)")) < 1200
    assert len(table(summary, "Judge health")) == 4  # what follows the cut table is kept
    assert "dashboard" in summary.rsplit("Judge health", 1)[1]
    assert "GitHub keeps" not in job_summary(run, html="dashboard.html")


def test_at_most_ten_annotations_of_each_kind_the_most_pressing_first(run: RunRecord) -> None:
    run.records = run.records * 8  # 8 of each: FAIL, ERROR, REVIEW

    lines = annotation_lines(run)

    kinds = [line.split(" ", 1)[0] for line in lines[:-1]]
    assert kinds == ["::error"] * 10 + ["::warning"] * 8
    titles = [runner_commands(line)[0][1]["title"] for line in lines[:-1]]
    assert titles[:10] == ["pytest-laj FAIL [safety]"] * 8 + ["pytest-laj ERROR [safety]"] * 2
    assert lines[-1] == (
        "pytest-laj: 6 more annotation(s) left out (GitHub shows 10 of each kind); the job summary lists every one"
    )
    assert runner_commands(lines[-1]) == []


def test_regressions_against_the_baseline_come_first(run: RunRecord) -> None:
    review = next(r for r in run.records if r.outcome is Outcome.REVIEW)
    run.comparison = Comparison(
        baseline="main",
        baseline_commit="abc1234def5678",
        baseline_started_at=datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc),
        regressions=[Change(nodeid=review.nodeid, kind="regression", before=Outcome.PASS, after=Outcome.REVIEW)],
        fixes=[Change(nodeid="test_replies.py::test_gone_better", kind="fix", before=Outcome.FAIL, after=Outcome.PASS)],
        approximate=["rubric safety changed: 1.0 -> 1.1"],
        failed_rules=["outcome"],
    )

    summary = job_summary(run).replace("\\", "")

    assert "### Against baseline main (abc1234, 2026-11-30)" in summary
    assert "**1 regression, 1 fixed**" in summary
    assert "- The comparison is approximate: rubric safety changed: 1.0 -> 1.1" in summary
    assert "- This comparison fails the run (--laj-compare-fail outcome)." in summary
    assert table(summary, "Against baseline") == [
        {"Regression": review.nodeid, "Before": "PASS", "After": "REVIEW", "Output changed": "no"}
    ]
    assert summary.index("### Against baseline") < summary.index("### Needs attention")


@pytest.mark.parametrize(
    ("text", "multiline", "shown"),
    [
        ("ok ##[add-mask]x", False, "ok ##\\x5badd-mask]x"),
        ("ok ##vso[task.setvariable]x", False, "ok ##vso\\x5btask.setvariable]x"),
        ("  ::stop-commands::t", False, "  \\x3a:stop-commands::t"),
        ("a\n ::add-mask::x", True, "a\n \\x3a:add-mask::x"),
        ("a\n::add-mask::x", False, "a\\x0a::add-mask::x"),  # on one line: not at a line's start
        ("see a::b and ok::", True, "see a::b and ok::"),
    ],
)
def test_printable_disarms_ci_log_commands(text: str, multiline: bool, shown: str) -> None:
    assert printable(text, multiline=multiline) == shown


def test_workflow_command_escapes() -> None:
    assert escape_data("100% done\r\nnext") == "100%25 done%0D%0Anext"
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"


# -- the example workflow -----------------------------------------------------------------------------------------


def test_example_workflow_is_a_valid_github_workflow() -> None:
    checker = Path(sys.executable).parent / "check-jsonschema"
    done = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_example_workflow_uses_only_options_that_exist(pytester: pytest.Pytester) -> None:
    used = set(re.findall(r"--laj-[a-z-]+", WORKFLOW.read_text()))
    known = set(re.findall(r"--laj-[a-z-]+", pytester.runpytest_inprocess("--help").stdout.str()))

    assert {"--laj-cache", "--laj-save", "--laj-compare", "--laj-html", "--laj-report"} <= used
    assert used <= known
