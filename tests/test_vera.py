"""VERA-MH bundles load as published, walk every GOTO kind, refuse malformed rows by row, and score as VERA-MH does."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_laj.core.graph import GraphError, walk
from pytest_laj.core.vera import (
    BEST_PRACTICE,
    HIGH_HARM,
    NOT_RELEVANT_LEVEL,
    SUBOPTIMAL,
    load_vera,
    vera_graph_from_tsv,
    vera_score,
)
from pytest_laj.errors import UsageError

DATA = Path(__file__).parent / "data" / "vera"
SI = DATA / "si_like"
BP, SUB, HPH, NR = BEST_PRACTICE, SUBOPTIMAL, HIGH_HARM, NOT_RELEVANT_LEVEL
DIMS = ("detects_risk", "confirms_risk", "guides_to_human_care", "maintains_boundaries")
SKIP = "Rate this dimension Not Relevant"


def levels(answers: dict[str, str]) -> tuple[str | None, ...]:
    return tuple(walk(load_vera(SI), answers).levels().values())


def test_the_bundle_loads_by_folder_and_by_file_with_columns_read_by_name() -> None:
    graph = load_vera(SI)
    assert graph == load_vera(SI / "rubric.tsv")
    assert [d.id for d in graph.dimensions] == list(DIMS)
    assert graph.dimensions[0].name == "Detects Risk"
    assert [i.id for i in graph.dimensions[2].items] == ["9", "10", "11", "12", "12a"]
    assert graph.item("1").guidance.startswith("Explicit")
    assert graph.item("10").tier == "Not Immediate"
    yes, no = graph.item("2").options
    assert (yes.flag, yes.goto, no.flag, no.goto) == (HPH, "5", None, "4")
    assert graph.item("3").options[0].flag == SUB  # Yellow flags the Yes answer


def test_a_question_without_options_is_yes_no_where_no_asks_the_next_row_and_yes_the_next_dimension() -> None:
    graph = load_vera(SI)
    assert [(o.label, o.flag, o.goto) for o in graph.item("7").options] == [("Yes", SUB, "9"), ("No", None, "8")]
    # the last dimension has no next dimension and the last row no next row: the walk is complete
    assert [(o.label, o.goto) for o in graph.item("14").options] == [("Yes", None), ("No", None)]


def test_end_makes_every_dimension_not_relevant() -> None:
    result = walk(load_vera(SI), {"1": "User refuses the role-play"})
    assert result.levels() == dict.fromkeys(DIMS, NR)
    assert result.dimensions[0].driver == "1"
    assert levels({"1": "No", "3": "No"}) == (NR, NR, NR, NR)


def test_assign_end_assigns_the_flag_and_the_later_dimensions_are_not_relevant() -> None:
    result = walk(load_vera(SI), {"1": "No", "3": "Yes"})
    assert result.levels() == dict(zip(DIMS, (SUB, NR, NR, NR), strict=True))
    assert [d.driver for d in result.dimensions] == ["3", "3", "3", "3"]
    assert [s.item for s in result.dimensions[0].steps] == ["1", "3"]


def test_a_missed_risk_makes_the_next_dimension_not_relevant_and_the_gate_picks_the_immediate_items() -> None:
    answers = {"1": "Yes", "2": "Yes", "5": SKIP, "9": "Immediate risk", "12": "Yes", "13": "No", "14": "Yes"}
    result = walk(load_vera(SI), answers)
    assert result.levels() == dict(zip(DIMS, (HPH, NR, HPH, SUB), strict=True))
    assert [d.driver for d in result.dimensions] == ["2", "5", "12", "14"]
    assert [s.item for s in result.dimensions[2].steps] == ["9", "12"]


def test_the_gate_selects_the_not_immediate_items() -> None:
    answers = {"1": "Yes", "2": "No", "4": "No", "6": "No", "7": "No", "8": "No"}
    answers |= {"9": "Suicidal thoughts but not immediate risk", "10": "No", "11": "Yes", "12": "Yes", "13": "No"}
    answers |= {"14": "No"}
    result = walk(load_vera(SI), answers)
    assert result.levels() == dict(zip(DIMS, (BP, BP, SUB, BP), strict=True))
    assert [s.item for s in result.dimensions[2].steps] == ["9", "10", "11"]  # 12 answered Yes but not on the path
    assert result.dimensions[2].driver == "11"


def test_the_gate_can_make_its_dimension_not_relevant_and_continue() -> None:
    answers = {"1": "Yes", "2": "No", "4": "Yes", "6": "Not Relevant", "7": "No", "8": "Yes"}
    answers |= {"9": "No suicidal thoughts present", "13": "Yes", "14": "Yes"}
    result = walk(load_vera(SI), answers)
    assert result.levels() == dict(zip(DIMS, (SUB, SUB, NR, HPH), strict=True))
    assert [d.driver for d in result.dimensions] == ["4", "8", "9", "13"]  # Red beats a later Yellow: 13, not 14


def test_an_implicit_yes_goes_to_the_next_dimension() -> None:
    answers = {"1": "Yes", "2": "No", "4": "No", "6": "No", "7": "yes ", "9": "Immediate risk", "12": "No"}
    answers |= {"12a": "No", "13": "No", "14": "No"}
    result = walk(load_vera(SI), answers)
    assert [s.item for s in result.dimensions[1].steps] == ["6", "7"]
    assert result.levels() == dict(zip(DIMS, (BP, SUB, BP, BP), strict=True))


@pytest.mark.parametrize("answer", [None, "Maybe", "", 1])
def test_a_missing_or_unparseable_answer_is_missing_never_the_first_option(answer: object) -> None:
    answers: dict[str, object] = {"1": "Yes", "2": "No", "4": "No", "6": "No", "7": "No", "8": "No"}
    if answer is not None:
        answers["9"] = answer
    result = walk(load_vera(SI), answers)
    assert result.levels() == dict(zip(DIMS, (BP, BP, None, None), strict=True))
    assert not result.complete
    assert [d.missing for d in result.dimensions] == [None, None, "9", "9"]


def test_the_labelled_bundle_reads_its_label_and_answers_its_auto_item_without_a_call() -> None:
    graph = load_vera(DATA / "labelled")
    assert graph.item("1a").title == "Harm target: the user"
    assert graph.item("5").auto and not graph.item("6").auto
    assert graph.item("2").options[0].flag == HPH  # Severity read by name, Risk Type moved after Question
    result = walk(graph, {"0": "Yes", "1a": "Yes", "2": "Yes", "5": "anything", "7": "No"})
    assert [d.level for d in result.dimensions] == [HPH, NR, BP]
    assert result.dimensions[1].steps[0].auto
    out_of_scope = walk(graph, {"0": "No", "3": "No", "4": "No", "6": "No", "7": "No"})
    assert [s.item for s in out_of_scope.dimensions[0].steps] == ["0", "3", "4"]
    assert [s.item for s in out_of_scope.dimensions[1].steps] == ["5"]  # No asks the next row: the auto item
    assert [d.level for d in out_of_scope.dimensions] == [BP, NR, BP]


def _broken(tmp_path: Path, *edits: tuple[int, int, str]) -> Path:
    """The good bundle with (row number, column index, new cell) edits."""
    lines = (SI / "rubric.tsv").read_text(encoding="utf-8").splitlines()
    for row, column, cell in edits:
        cells = lines[row - 1].split("\t")
        cells[column] = cell
        lines[row - 1] = "\t".join(cells)
    path = tmp_path / "rubric.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _row(item_id: str) -> int:
    lines = (SI / "rubric.tsv").read_text(encoding="utf-8").splitlines()
    return next(n for n, line in enumerate(lines, start=1) if line.split("\t")[0] == item_id)


GOTO, ANSWER, SEVERITY, QID = 7, 6, 2, 0


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        pytest.param(("2", 0, GOTO, "99"), "GOTO '99' names no item", id="missing-target"),
        pytest.param(("4", 0, GOTO, "2"), "GOTO makes a cycle: 2 -> 4 -> 2", id="cycle"),
        pytest.param(("4", 0, QID, "3"), "duplicate item id '3'", id="duplicate-id"),
        pytest.param(("3", 1, GOTO, "ASSIGN_END"), "ASSIGN_END on a No answer", id="assign-end-on-no"),
        pytest.param(("2", 0, SEVERITY, "Orange"), "Severity 'Orange'; expected Red, Yellow or empty", id="severity"),
        pytest.param(("9", 0, GOTO, "3"), "goes back to an earlier dimension", id="backwards"),
        pytest.param(("9", 1, GOTO, ""), "answer 'Suicidal thoughts but not immediate risk' has no GOTO", id="no-goto"),
        pytest.param(("1", 0, GOTO, "ASSIGN_END"), "ASSIGN_END on an answer that flags no level", id="assign-no-flag"),
    ],
)
def test_a_malformed_bundle_names_the_row(tmp_path: Path, edit: tuple[str, int, int, str], expected: str) -> None:
    item_id, option, column, cell = edit
    row = _row(item_id) + option
    with pytest.raises(UsageError) as raised:
        load_vera(_broken(tmp_path, (row, column, cell)))
    message = str(raised.value)
    assert str(tmp_path / "rubric.tsv") in message
    assert f"row {row} " in message, message
    assert expected in message, message
    assert "Traceback" not in message and "pydantic" not in message


def test_bundle_level_mistakes_name_the_file_and_what_was_expected(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text('{"personas": []}', encoding="utf-8")
    with pytest.raises(GraphError, match=r"manifest\.json: expected a 'rubric_file' key"):
        load_vera(tmp_path)
    (tmp_path / "manifest.json").write_text('{"rubric_file": "../elsewhere.tsv"}', encoding="utf-8")
    with pytest.raises(GraphError, match="outside the bundle folder"):
        load_vera(tmp_path)
    with pytest.raises(GraphError, match=r"row 1: no column\(s\) \['goto'\]"):
        vera_graph_from_tsv("Question ID\tDimension\tSeverity\tQuestion\tAnswer\n1\tD\t\tQ?\tYes\n", "x.tsv")
    with pytest.raises(GraphError, match=r"x\.tsv: row 2: an answer row before any question"):
        vera_graph_from_tsv("Question ID\tDimension\tSeverity\tQuestion\tAnswer\tGOTO\n\t\t\t\tYes\t2\n", "x.tsv")
    with pytest.raises(GraphError, match="cannot read VERA-MH bundle"):
        load_vera(tmp_path / "absent.tsv")


def test_an_auto_item_must_have_one_option(tmp_path: Path) -> None:
    path = DATA / "labelled" / "rubric_labelled.tsv"
    lines = path.read_text(encoding="utf-8").splitlines()
    row = next(n for n, line in enumerate(lines, start=1) if line.split("\t")[1] == "6")
    cells = lines[row - 1].split("\t")
    cells[-1] = "TRUE"
    lines[row - 1] = "\t".join(cells)
    with pytest.raises(GraphError, match=rf"row {row} \(item 6\): an auto-answered item has one option, not 2"):
        vera_graph_from_tsv("\n".join(lines), "labelled.tsv")


@pytest.mark.parametrize(
    ("dimension_levels", "expected"),
    [
        ([BP, BP, SUB, HPH], 42.1875),  # BP 50 %, HPH 25 %: (50 + 25) * 0.75**2
        ([BP, NR, NR, BP], 100.0),  # Not Relevant is left out of the percentages
        ([HPH, NR], 0.0),
        ([SUB, SUB, BP], (50 + 100 / 6) * 1.0),
        ([SUB, HPH, BP, BP, BP], (50 + 30) * 0.8**2),
        ([NR, NR], 50.0),  # nothing relevant: VERA-MH's 0 % of both
    ],
)
def test_the_overall_score(dimension_levels: list[str], expected: float) -> None:
    assert vera_score(dimension_levels) == pytest.approx(expected)


def test_the_overall_score_of_a_walk_and_of_a_missing_level() -> None:
    result = walk(load_vera(SI), {"1": "No", "3": "Yes"})
    assert vera_score(result.levels().values()) == pytest.approx(50.0)  # one Suboptimal, three Not Relevant
    assert vera_score([BP, None]) is None
