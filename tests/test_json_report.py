"""The JSON report: one versioned document per run, valid against the schema shipped in the package, the same
with and without xdist, written whole, marked when the run was cut short, and free of secrets."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import CASES_SUITE, LajProject

from pytest_laj.cli import main as laj
from pytest_laj.results.record import SCHEMA_VERSION
from pytest_laj.results.report import LAST_RUN, ReportError, read_report, report_schema, write_text

SHIPPED_SCHEMA = Path(__file__).resolve().parent.parent / "pytest_laj" / "schemas" / "run-report.schema.json"
SECRET = "sk-live-REPORTSECRET0123456789"


def _validate(document: Any) -> None:
    schema = json.loads(SHIPPED_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(document)


def _content(report: dict[str, Any]) -> dict[str, Any]:
    """What must not depend on how the run was spread over processes: assessments and counts."""
    records = sorted(report["records"], key=lambda r: (r["nodeid"], r["assessment"]["identity"]))
    for record in records:
        for judge in record["assessment"]["judges"]:
            judge.pop("latency_s")  # wall time: differs run to run
            judge.pop("cached")
            judge.pop("attempts")
    return {"records": records, "counts": report["counts"], "alpha": report["alpha"]}


def test_the_shipped_schema_is_the_models_schema(capsys: pytest.CaptureFixture[str]) -> None:
    """Regenerate with `laj schema > pytest_laj/schemas/run-report.schema.json` after changing a model."""
    assert json.loads(SHIPPED_SCHEMA.read_text(encoding="utf-8")) == report_schema()
    assert laj(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == report_schema()


@pytest.mark.slow
def test_the_example_suite_report_validates_and_is_the_same_under_xdist(example_suite: pytest.Pytester) -> None:
    plain = example_suite.runpytest_inprocess("-p", "no:cacheprovider", "--laj-report=plain.json")
    example_suite.runpytest_inprocess("-p", "no:cacheprovider", "--laj-report=spread.json", "-n", "2")

    documents = [
        json.loads((example_suite.path / name).read_text(encoding="utf-8")) for name in ("plain.json", "spread.json")
    ]
    for document in documents:
        _validate(document)
        assert document["schema_version"] == SCHEMA_VERSION
        assert document["counts"] == {"pass": 13, "fail": 9, "review": 6, "error": 1}
        assert not document["interrupted"]
    assert _content(documents[0]) == _content(documents[1])
    assert "report: " in plain.stdout.str() and "plain.json" in plain.stdout.str()

    report = read_report(example_suite.path / "plain.json")
    assert read_report(example_suite.path / ".laj_cache" / LAST_RUN) == read_report(example_suite.path / "spread.json")
    first = next(r for r in report.records if r.file == "test_crisis_response.py")
    assert first.line is not None and first.case_id
    assert len(first.output_sha256) == 64
    assert {r.id for r in report.rubrics} == {"conversation_safety", "crisis_response", "postop_triage"}
    assert all(len(r.fingerprint) == 64 for r in report.rubrics)
    assert "crisis_response/guides_to_care" in report.alpha_by_criterion
    assert [h.judge for h in report.judge_health] == ["balanced", "cautious", "literal"]
    cautious = next(h for h in report.judge_health if h.judge == "cautious")
    assert cautious.errors_by_kind == {"invalid_verdict": 1}
    assert report.panel[0].name and report.panel[0].model.startswith("openai/")
    assert report.command == ["-p", "no:cacheprovider", "--laj-report=plain.json"]


def test_a_run_with_judge_calls_records_latency_and_error_kinds(project: LajProject) -> None:
    ini = (project.pytester.path / "pytest.ini").read_text(encoding="utf-8")
    (project.pytester.path / "pytest.ini").write_text(ini + "    delta\n", encoding="utf-8")
    (project.pytester.path / "cases.yaml").write_text(
        "cases:\n  - {id: fine, output: 'Please call 988.'}\n  - {id: broken, output: 'broken reply'}\n"
    )
    project.tests(CASES_SUITE)
    project.run("--laj-report=r.json")

    report = read_report(project.pytester.path / "r.json")
    health = {h.judge: h for h in report.judge_health}
    assert health["gamma"].errors_by_kind == {"invalid_verdict": 1}
    assert health["delta"].errors_by_kind == {"InternalServerError": 1}
    assert health["alpha"].latency_p50_s is not None and health["alpha"].latency_p50_s > 0
    assert health["alpha"].calls == 2 and health["alpha"].retries == 0
    broken = next(r for r in report.records if r.case_id == "broken")
    assert {j.judge: j.error_kind for j in broken.assessment.judges if not j.valid} == {
        "gamma": "invalid_verdict",
        "delta": "InternalServerError",
    }


def test_an_interrupted_run_still_writes_its_report_marked_so(project: LajProject) -> None:
    project.tests(
        """
        import pytest

        @pytest.mark.laj(rubric="safety")
        def test_one(laj):
            laj.check("Please call 988.")

        def test_stop():
            raise KeyboardInterrupt
        """
    )
    result = project.run_subprocess("--laj-report=r.json")  # in process, the interrupt would stop this run too

    assert result.ret == pytest.ExitCode.INTERRUPTED
    report = read_report(project.pytester.path / "r.json")
    assert report.interrupted and report.counts == {"pass": 1}


def test_no_last_run_file_when_the_cache_is_off_and_report_paths_are_relative_to_where_pytest_ran(
    project: LajProject,
) -> None:
    project.tests(
        """
        import pytest

        @pytest.mark.laj(rubric="safety")
        def test_one(laj):
            laj.check("Please call 988.")
        """
    )
    (project.pytester.path / "sub").mkdir()
    os.chdir(project.pytester.path / "sub")
    project.run("--laj-cache=off", "--laj-report=out/r.json", str(project.pytester.path))

    assert (project.pytester.path / "sub" / "out" / "r.json").is_file()
    assert not (project.pytester.path / ".laj_cache" / LAST_RUN).exists()


def test_no_secret_reaches_the_report(project: LajProject) -> None:
    (project.pytester.path / "pytest.ini").write_text(
        "[pytest]\nlaj_simulate = sim.yaml\nlaj_judges =\n"
        f"    alpha api_key={SECRET}\n"
        f'    beta extra_headers={{"Authorization": "Token {SECRET}"}}\n'
        "    gamma\n"
    )
    project.tests(
        """
        import pytest

        @pytest.mark.laj(rubric="safety")
        def test_one(laj):
            laj.check("Please call 988.")
        """
    )
    project.run(f"--laj-judge=alpha api_key={SECRET}", "--laj-report=r.json")

    for path in (project.pytester.path / "r.json", project.pytester.path / ".laj_cache" / LAST_RUN):
        text = path.read_text(encoding="utf-8")
        assert "REPORTSECRET" not in text
        assert "[REDACTED]" in text  # the command line said it, and it was replaced


def test_a_report_is_replaced_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    target.write_text("old", encoding="utf-8")

    with pytest.raises(UnicodeEncodeError):
        write_text(target, "new text that fails half way \ud800")

    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary left behind


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("not json", "not a JSON report"),
        ('{"schema_version": 1}', "of schema version 2 was expected, got version 1"),
        ("[]", "got no schema_version"),
        (f'{{"schema_version": {SCHEMA_VERSION}}}', "started_at: Field required"),
    ],
)
def test_a_file_that_is_not_a_report_is_one_clear_error(
    tmp_path: Path, content: str, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "r.json"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(ReportError, match=problem):
        read_report(path)
