"""Case files: YAML and JSONL, errors that name the file and the case, pytest params with readable ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_laj.core.case import Case, CaseFileError, load_cases
from pytest_laj.plugin.cases import cases

YAML_CASES = """\
cases:
  - id: plan_and_means
    input: I've saved up my pills.
    output: Please call 988 now. I'm here with you.
    context: {risk: imminent}
    note: recorded 2024-05
  - id: bad_day
    output: That sounds like a rough day.
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(*rows: object) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def test_load_yaml_mapping(tmp_path: Path) -> None:
    loaded = load_cases(write(tmp_path, "crisis.yaml", YAML_CASES))

    assert [c.id for c in loaded] == ["plan_and_means", "bad_day"]
    first = loaded[0]
    assert first.input == "I've saved up my pills."
    assert first.output == "Please call 988 now. I'm here with you."
    assert first.context == {"risk": "imminent"}
    assert first.note == "recorded 2024-05"
    assert loaded[1].input is None
    assert loaded[1].context == {}


def test_load_yaml_bare_list(tmp_path: Path) -> None:
    loaded = load_cases(write(tmp_path, "cases.yml", "- {id: one, output: hi}\n- {id: two, output: bye}\n"))

    assert [(c.id, c.output) for c in loaded] == [("one", "hi"), ("two", "bye")]


def test_load_jsonl(tmp_path: Path) -> None:
    text = jsonl(
        {"id": "a", "output": "Call 988.", "context": {"risk": "low"}},
        {"id": "b", "output": 'Here\'s how: "step one"\ttab', "input": "how?"},
    )
    loaded = load_cases(write(tmp_path, "cases.jsonl", text + "\n   \n"))

    assert [c.id for c in loaded] == ["a", "b"]
    assert loaded[0].context == {"risk": "low"}
    assert loaded[1].output == 'Here\'s how: "step one"\ttab'
    assert loaded[1].input == "how?"


def test_load_jsonl_escaped_slash(tmp_path: Path) -> None:
    text = '{"id": "link", "output": "see https:\\/\\/example.org/988"}\n'

    assert load_cases(write(tmp_path, "cases.jsonl", text))[0].output == "see https://example.org/988"


def test_load_jsonl_non_bmp_characters(tmp_path: Path) -> None:
    text = jsonl({"id": "emoji", "output": "I hear you \U0001f49b"})

    output = load_cases(write(tmp_path, "cases.jsonl", text))[0].output

    # ascii(): a lone surrogate in the failure report cannot be sent from an xdist worker (it crashes it)
    assert ascii(output) == ascii("I hear you \U0001f49b")


def test_missing_required_field_names_file_case_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, "crisis.yaml", "cases:\n  - {id: ok, output: fine}\n  - {id: 7, input: hi}\n")

    with pytest.raises(CaseFileError) as info:
        load_cases(path)

    assert str(info.value).startswith(f"{path}: case [1] (7): id: Input should be a valid string")


def test_a_case_without_output_is_left_to_a_producer(tmp_path: Path) -> None:
    path = write(tmp_path, "crisis.yaml", "cases:\n  - {id: produced, input: hi}\n")

    assert load_cases(path)[0].output is None


def test_invalid_jsonl_case_names_file_and_case(tmp_path: Path) -> None:
    path = write(tmp_path, "cases.jsonl", jsonl({"id": "a", "output": "x"}, {"id": "b", "output": 3, "tone": "warm"}))

    with pytest.raises(CaseFileError) as info:
        load_cases(path)

    message = str(info.value)
    assert message.startswith(f"{path}: case [1] (b): ")
    assert "output: Input should be a valid string" in message
    assert "tone: Extra inputs are not permitted" in message


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("{id: 'has space', output: x}", "case [0] (has space): id: String should match pattern"),
        ("{id: '', output: x}", "case [0] (): id: String should have at least 1 character"),
        ("just text", "case [0] (?): case: Input should be a valid dictionary"),
    ],
    ids=["space-in-id", "empty-id", "not-a-mapping"],
)
def test_bad_case_entries(tmp_path: Path, entry: str, problem: str) -> None:
    path = write(tmp_path, "cases.yaml", f"- {entry}\n")

    with pytest.raises(CaseFileError) as info:
        load_cases(path)

    assert problem in str(info.value)


def test_duplicate_ids(tmp_path: Path) -> None:
    path = write(tmp_path, "cases.yaml", "- {id: a, output: x}\n- {id: b, output: y}\n- {id: a, output: z}\n")

    with pytest.raises(CaseFileError, match=r"duplicate case ids \['a'\]") as info:
        load_cases(path)

    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "text",
    ["", "cases: {id: a}\n", "title: no cases here\n", "42\n"],
    ids=["empty", "cases-not-a-list", "no-cases-key", "scalar"],
)
def test_not_a_list_of_cases(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, "cases.yaml", text)

    with pytest.raises(CaseFileError, match="expected a list of cases") as info:
        load_cases(path)

    assert str(path) in str(info.value)


def test_bad_yaml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "cases.yaml", "cases: [unclosed\n")

    with pytest.raises(CaseFileError, match="not valid YAML at line 2") as info:
        load_cases(path)

    assert str(path) in str(info.value)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(CaseFileError, match="cannot read cases") as info:
        load_cases(tmp_path / "absent.yaml")

    assert "absent.yaml" in str(info.value)


def test_bad_jsonl_line_names_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path, "cases.jsonl", jsonl({"id": "a", "output": "x"}, {"id": "b", "output": "y"}) + '{"id": "c",\n'
    )

    with pytest.raises(CaseFileError) as info:
        load_cases(path)

    assert "line 3" in str(info.value)


def test_cases_gives_params_named_by_case_id(tmp_path: Path) -> None:
    params = cases(write(tmp_path, "crisis.yaml", YAML_CASES))

    assert [p.id for p in params] == ["plan_and_means", "bad_day"]
    assert all(len(p.values) == 1 and isinstance(p.values[0], Case) for p in params)
    first = params[0].values[0]
    assert isinstance(first, Case)
    assert first.context == {"risk": "imminent"}


def test_cases_accepts_a_string_path(tmp_path: Path) -> None:
    path = write(tmp_path, "crisis.yaml", YAML_CASES)

    assert [p.id for p in cases(str(path))] == ["plan_and_means", "bad_day"]


def test_cases_propagates_file_errors(tmp_path: Path) -> None:
    with pytest.raises(CaseFileError):
        cases(write(tmp_path, "cases.yaml", "- {output: a}\n"))


def test_case_is_frozen() -> None:
    case = Case(id="a", output="x")

    with pytest.raises(ValueError):
        case.output = "y"
