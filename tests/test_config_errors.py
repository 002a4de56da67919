"""Configuration mistakes stop a run once, before any test, as a usage error naming the file, the field and what
was expected: broken or hostile YAML, non-finite numbers, mistyped judge options, simulator rules that name what
no rubric has, and a `--laj-simulate PATH` that moved pytest's rootdir."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import CASES_SUITE, RUBRIC, LajProject

from pytest_laj.core.case import CaseFileError, load_cases
from pytest_laj.core.rubric import RubricError, load_rubric
from pytest_laj.errors import UsageError
from pytest_laj.judges.base import JudgeSpec, JudgeSpecError
from pytest_laj.judges.llm import completion_params
from pytest_laj.simulator import SimulatorRulesError, load_rules

USAGE_ERROR = 4


def billion_laughs(key: str) -> str:
    """Twelve lines whose aliases stand for 9**10 strings, under `key`."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "\n".join(lines) + f"\n{key}: *a9\n"


# -- YAML bombs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("load", "error", "key"),
    [
        (load_rubric, RubricError, "description"),
        (load_cases, CaseFileError, "cases"),
        (load_rules, SimulatorRulesError, "judges"),
    ],
    ids=["rubric", "cases", "rules"],
)
def test_a_yaml_bomb_is_refused_quickly_naming_the_file(
    tmp_path: Path, load: Callable[[Path], Any], error: type[UsageError], key: str
) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(("id: x\n" if key == "description" else "") + billion_laughs(key), encoding="utf-8")
    started = time.perf_counter()

    with pytest.raises(error) as info:
        load(path)

    assert time.perf_counter() - started < 5
    assert str(path) in str(info.value)
    assert "aliases expand it" in str(info.value)


def test_a_self_referencing_document_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cases.yaml"
    path.write_text("cases: &a [*a]\n", encoding="utf-8")

    with pytest.raises(CaseFileError, match="nested more deeply than 100 levels"):
        load_cases(path)


# -- non-finite numbers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (
            (
                "risk: {values: [none, imminent], default: none, multipliers: {imminent: 3}}",
                "risk: {values: [none, imminent], default: none, multipliers: {imminent: .inf}}",
            ),
            "context.risk.multipliers.imminent",
        ),
        (("multipliers: {imminent: 3}", "multipliers: {imminent: .nan}"), "context.risk.multipliers.imminent"),
        (
            (
                '{id: boundaries, question: "Does the reply stay within an AI\'s boundaries?"}',
                '{id: boundaries, question: "Does the reply stay within an AI\'s boundaries?", weight: .inf}',
            ),
            "criteria[1] (boundaries).weight",
        ),
        (("severity: 5,", "severity: .inf,"), "levels[2] (high_harm).severity"),
        (("max_score: 2,", "max_score: .inf,"), "thresholds.max_score"),
    ],
    ids=["multiplier-inf", "multiplier-nan", "weight-inf", "severity-inf", "max-score-inf"],
)
def test_a_rubric_refuses_non_finite_numbers(tmp_path: Path, edit: tuple[str, str], field: str) -> None:
    old, new = edit
    assert old in RUBRIC
    path = tmp_path / "safety.yaml"
    path.write_text(RUBRIC.replace(old, new), encoding="utf-8")

    with pytest.raises(RubricError) as info:
        load_rubric(path)

    assert str(path) in str(info.value)
    assert f"{field}: Input should be a finite number" in str(info.value)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("openai/strict weight=.inf", "weight: Input should be a finite number"),
        ("openai/strict temperature=.nan", "temperature: Input should be a finite number"),
        ("openai/strict top_p=.nan", "option 'top_p' must be a finite number"),
    ],
)
def test_a_judge_refuses_non_finite_numbers(entry: str, problem: str) -> None:
    with pytest.raises(JudgeSpecError, match=f"LAJ_JUDGES\\[0\\]: judge 'openai/strict': {problem}"):
        JudgeSpec.parse(entry, "LAJ_JUDGES[0]")


@pytest.mark.parametrize("option", ["--laj-timeout", "--laj-max-cost"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_float_option_refuses_non_finite_numbers(project: LajProject, option: str, value: str) -> None:
    project.tests("def test_it(laj):\n    pass\n")
    result = project.run(f"{option}={value}")

    assert result.ret == USAGE_ERROR
    name = option.removeprefix("--").replace("-", "_")
    assert f"pytest-laj: {name}: expected a finite number, got '{value}'" in result.stderr.str()


# -- judge options ------------------------------------------------------------------------------------------


def never_import_litellm() -> set[str]:
    raise AssertionError("litellm's parameters were asked for an option pytest-laj knows")


@pytest.mark.parametrize(
    ("entry", "suggestion"),
    [("openai/strict temprature=0", "temperature"), ("openai/strict weigth=2", "weight")],
)
def test_a_mistyped_judge_option_is_refused_with_a_suggestion(entry: str, suggestion: str) -> None:
    with pytest.raises(JudgeSpecError, match=f"did you mean '{suggestion}'\\?"):
        JudgeSpec.parse(entry, "LAJ_JUDGES[0]", completion_params)


def test_common_options_are_checked_without_litellm() -> None:
    spec = JudgeSpec.parse(
        "openai/strict temperature=0.2 weight=2 top_p=0.9 max_tokens=300 api_version=2024-06-01",
        "LAJ_JUDGES[0]",
        never_import_litellm,
    )

    assert spec.extra == {"top_p": 0.9, "max_tokens": 300, "api_version": "2024-06-01"}


def test_a_rarer_litellm_parameter_is_accepted_after_asking_litellm() -> None:
    spec = JudgeSpec.parse("openai/strict mock_response=hi", "LAJ_JUDGES[0]", completion_params)

    assert spec.extra == {"mock_response": "hi"}


SECRET = "sk-live0123456789abcdef"


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (f"openai/strict api_key:{SECRET}", "judge option 1 ('api_key...') must look like key=value"),
        (f"openai/strict api_kee={SECRET}", "unknown option 'api_kee' - did you mean 'api_key'?"),
        (f"openai/strict apikey={SECRET}", "unknown option 'apikey' - did you mean 'api_key'?"),
        (
            f"openai/strict @api_key={SECRET}",
            "an option name is letters, digits and '_' (not starting with a digit), got a name starting with '@'",
        ),
        (f"openai/strict {SECRET}", "judge option 1 ('sk...') must look like key=value"),
    ],
)
def test_a_mistyped_option_never_shows_its_value(entry: str, problem: str) -> None:
    with pytest.raises(JudgeSpecError) as info:
        JudgeSpec.parse(entry, "LAJ_JUDGES[0]", completion_params)

    assert problem in str(info.value)
    assert "live0123456789" not in str(info.value)


def test_a_secret_option_value_is_taken_as_written() -> None:
    spec = JudgeSpec.parse("openai/strict api_key=@abc:def 'extra_headers={x-api-key: 1}'", "x", never_import_litellm)

    assert spec.api_key is not None and spec.api_key.get_secret_value() == "@abc:def"
    assert spec.extra == {"extra_headers": {"x-api-key": 1}}


def test_a_value_starting_with_at_is_a_usage_error_that_does_not_show_it() -> None:
    with pytest.raises(JudgeSpecError) as info:
        JudgeSpec.parse("openai/strict name=@secretive", "LAJ_JUDGES[0]", never_import_litellm)

    assert "judge option 'name': not valid YAML at line 1, column 1" in str(info.value)
    assert "secretive" not in str(info.value)


def test_judge_options_are_checked_at_configure(project: LajProject, monkeypatch: pytest.MonkeyPatch) -> None:
    project.tests("def test_it(laj):\n    pass\n")
    monkeypatch.setenv("LAJ_JUDGES", f"openai/alpha temprature=0 api_key={SECRET}")
    result = project.run()

    assert result.ret == USAGE_ERROR
    err = result.stderr.str()
    assert "LAJ_JUDGES[0]: judge 'openai/alpha': unknown option 'temprature' - did you mean 'temperature'?" in err
    assert "live0123456789" not in result.stdout.str() + err


# -- one usage error, before any test -----------------------------------------------------------------------

TWO_TESTS = """
    import pytest
    pytestmark = pytest.mark.laj(rubric="safety")

    def test_one(laj):
        laj.check("Please call 988 now.")

    def test_two(laj):
        laj.check("Please call 988 now, I am here.")
"""


def assert_one_usage_error(result: pytest.RunResult, *fragments: str) -> None:
    """rc 4, no test ran, the message shown once, and no traceback of pytest-laj's."""
    out, err = result.stdout.str(), result.stderr.str()
    assert result.ret == USAGE_ERROR, out[-2000:] + err[-2000:]
    assert "passed" not in out and "failed" not in out
    for fragment in fragments:
        assert (out + err).count(fragment) == 1, out[-2000:] + err[-2000:]
    assert "Traceback" not in out + err and "pytest_laj/" not in out + err


def test_a_rubric_file_that_does_not_parse_stops_the_run_once(project: LajProject) -> None:
    (project.pytester.path / "rubrics" / "broken.yaml").write_text("id: broken\nlevels: [unclosed\n")
    project.tests(TWO_TESTS)

    result = project.run()

    assert_one_usage_error(result, "rubrics/broken.yaml: not valid YAML at line 3")


def test_an_invalid_rubric_file_stops_the_run_once(project: LajProject) -> None:
    rubric = project.pytester.path / "rubrics" / "safety.yaml"
    rubric.write_text(rubric.read_text().replace("severity: 5,", "severity: -5,"))
    project.tests(TWO_TESTS)

    result = project.run()

    assert_one_usage_error(result, "levels[2] (high_harm).severity: Input should be greater than or equal to 0")


@pytest.mark.parametrize("plugin", [[], ["-n", "2"]], ids=["n0", "n2"])
def test_a_broken_cases_file_stops_the_run_once(project: LajProject, plugin: list[str]) -> None:
    project.tests(CASES_SUITE)
    (project.pytester.path / "cases.yaml").write_text("cases:\n  - {id: a, output: fine}\n  - {id: a b, output: x}\n")

    result = project.run(*plugin)

    assert_one_usage_error(result, "cases.yaml: case [1] (a b): id: String should match pattern")


def test_a_broken_simulator_file_stops_the_run_once(project: LajProject) -> None:
    (project.pytester.path / "sim.yaml").write_text("judges:\n  alpha: {default: [unclosed\n")
    project.tests(TWO_TESTS)

    result = project.run()

    assert_one_usage_error(result, "sim.yaml: not valid YAML at line 3")


def test_a_misspelt_rubric_directory_is_named_as_missing(project: LajProject) -> None:
    ini = project.pytester.path / "pytest.ini"
    ini.write_text(ini.read_text() + "laj_rubric_dirs = rubircs\n")
    project.tests(TWO_TESTS)

    result = project.run()

    assert_one_usage_error(result, f"laj_rubric_dirs: rubric directory not found: {project.pytester.path / 'rubircs'}")


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (
            (
                '{match: "(?i)do it", levels: {boundaries: high_harm}}',
                '{match: "(?i)do it", levels: {boundary: high_harm}}',
            ),
            "judges.alpha.rules[0].levels: unknown criterion 'boundary'; criteria: ['boundaries', 'guides_to_care']",
        ),
        (
            ('{match: "(?i)meh", levels: {"*": suboptimal}}', '{match: "(?i)meh", levels: {"*": sub_optimal}}'),
            "judges.alpha.rules[2].levels.*: unknown level 'sub_optimal'; levels: ['best_practice', 'high_harm', "
            "'not_relevant', 'suboptimal']",
        ),
        (
            ("  beta:\n    default: best_practice", "  beta:\n    default: best"),
            "judges.beta.default: unknown level 'best'",
        ),
    ],
    ids=["criterion", "level", "default"],
)
def test_simulator_rules_naming_what_no_rubric_has_stop_the_run(
    project: LajProject, edit: tuple[str, str], problem: str
) -> None:
    rules = project.pytester.path / "sim.yaml"
    old, new = edit
    assert old in rules.read_text()
    rules.write_text(rules.read_text().replace(old, new, 1))
    project.tests(TWO_TESTS)

    result = project.run()

    assert_one_usage_error(result, problem, "the rules name what no rubric of the run (safety) has")


# -- the rootdir --------------------------------------------------------------------------------------------


def test_simulate_with_a_space_that_moves_the_rootdir_is_a_usage_error(
    project: LajProject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("rules") / "rules.yaml"
    elsewhere.write_text((project.pytester.path / "sim.yaml").read_text())
    project.tests(TWO_TESTS)

    spaced = project.run("--laj-simulate", str(elsewhere))

    assert_one_usage_error(spaced, "Write --laj-simulate=PATH.")
    assert (
        f"instead of {project.pytester.path} (ini file: {project.pytester.path / 'pytest.ini'})" in spaced.stderr.str()
    )
    joined = project.run(f"--laj-simulate={elsewhere}")
    assert joined.ret == 0, joined.stdout.str()[-2000:]
    inside = project.run("--laj-simulate", "sim.yaml")  # the rootdir it gives is the project's: no harm done
    assert inside.ret == 0, inside.stdout.str()[-2000:]
