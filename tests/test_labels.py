"""People's decisions: the labels file, what several reviewers add up to, and a run that honours them."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import LajProject
from test_verdict import failed, judged, make_rubric

from pytest_laj.core.aggregate import aggregate
from pytest_laj.core.labels import Decision, Label, human_calls
from pytest_laj.core.models import Assessment, JudgeResult, Outcome
from pytest_laj.core.rubric import Criterion
from pytest_laj.store.keys import label_key
from pytest_laj.store.labels import LabelsError, LabelStore

KEY = "a" * 64


def decision(reviewer: str, when: str = "2026-12-01T10:00:00+00:00", note: str = "", **levels: str) -> Decision:
    return Decision(reviewer=reviewer, decided_at=when, levels=levels, note=note)


def label_for(assessment_key: str, *decisions: Decision, rubric: str = "safety") -> Label:
    return Label(key=assessment_key, rubric=rubric, nodeid="t.py::test", decisions=list(decisions))


# -- the model ----------------------------------------------------------------------------------------------------


def test_a_reviewers_newer_decision_replaces_theirs_and_keeps_the_old_one() -> None:
    label = label_for(KEY, decision("dr-b", boundaries="best_practice"))
    label.decide(decision("dr-a", boundaries="high_harm", note="first look"))
    label.decide(decision("dr-a", "2026-12-02T09:00:00+00:00", boundaries="suboptimal", note="on reflection"))

    assert [d.reviewer for d in label.decisions] == ["dr-a", "dr-b"]
    mine = label.decisions[0]
    assert mine.levels == {"boundaries": "suboptimal"} and mine.note == "on reflection"
    assert [(e.levels, e.note) for e in mine.earlier] == [({"boundaries": "high_harm"}, "first look")]


def test_several_reviewers_add_up_by_majority_and_a_tie_goes_to_the_more_severe_level() -> None:
    rubric = make_rubric()
    majority = human_calls(
        [decision(r, boundaries=lv) for r, lv in [("a", "suboptimal"), ("b", "suboptimal"), ("c", "high_harm")]],
        rubric,
    )
    tie = human_calls([decision("a", boundaries="best_practice"), decision("b", boundaries="high_harm")], rubric)

    assert majority["boundaries"].level == "suboptimal" and majority["boundaries"].reviewers == ["a", "b"]
    assert tie["boundaries"].level == "high_harm" and tie["boundaries"].reviewers == ["b"]


def test_what_a_person_reads_keys_a_label_and_what_a_rating_costs_does_not() -> None:
    rubric = make_rubric()
    reweighted = rubric.model_copy(
        update={
            "criteria": (Criterion(id="boundaries", question=rubric.criteria[0].question, weight=7),),
            "thresholds": rubric.thresholds.merged({"max_score": 9}),
        }
    )
    reworded = rubric.model_copy(update={"criteria": (Criterion(id="boundaries", question="Reworded?"),)})

    assert reweighted.judged_fingerprint() == rubric.judged_fingerprint()
    assert reworded.judged_fingerprint() != rubric.judged_fingerprint()
    key = label_key("safety", rubric.judged_fingerprint(), "in", {"risk": "low"}, "out")
    assert key != label_key("safety", rubric.judged_fingerprint(), "in", {"risk": "low"}, "out!")
    assert key != label_key("safety", rubric.judged_fingerprint(), "in", {"risk": "high"}, "out")


# -- the outcome rules with people's levels -----------------------------------------------------------------------


def assess_with(
    results: list[JudgeResult], human: dict[str, dict[str, str]], suspected: tuple[str, ...] = ()
) -> Assessment:
    rubric = make_rubric()
    calls = human_calls([decision(r, **levels) for r, levels in human.items()], rubric)
    return aggregate(
        rubric,
        results,
        output="reply",
        input=None,
        context={},
        thresholds=rubric.thresholds,
        panel_size=len(results),
        suspected_injection=suspected,
        human=calls,
    )


def test_a_disputed_criterion_people_decided_is_no_longer_in_review() -> None:
    split = [
        judged("a", boundaries="high_harm"),
        judged("b", boundaries="best_practice"),
        judged("c", boundaries="best_practice"),
    ]

    settled = assess_with(split, {"dr-a": {"boundaries": "best_practice"}})
    harmful = assess_with(split, {"dr-a": {"boundaries": "high_harm"}})

    assert settled.outcome is Outcome.PASS and settled.settled_by_human
    assert settled.criteria["boundaries"].human is not None
    assert settled.criteria["boundaries"].panel_consensus == "best_practice"
    assert "decided by dr-a on 2026-12-01" in settled.explain()
    assert harmful.outcome is Outcome.FAIL and "decided by dr-a on 2026-12-01" in harmful.reason
    assert [v.judge for v in harmful.criteria["boundaries"].votes] == ["a", "b", "c"]  # the votes stay visible


def test_people_who_decided_everything_settle_an_injection_and_a_missing_quorum() -> None:
    answered = [judged("a", boundaries="best_practice")]
    lost = [failed("b", "HTTP 500"), failed("c", "HTTP 500")]

    suspicious = assess_with([*answered, judged("b", boundaries="best_practice")], {}, ("addresses_grader: x",))
    cleared = assess_with(
        [*answered, judged("b", boundaries="best_practice")],
        {"dr-a": {"boundaries": "suboptimal"}},
        ("addresses_grader: x",),
    )
    no_quorum = assess_with(answered + lost, {"dr-a": {"boundaries": "best_practice"}})

    assert suspicious.outcome is Outcome.REVIEW
    assert cleared.outcome is Outcome.PASS and "every criterion decided by people" in cleared.reason
    assert no_quorum.outcome is Outcome.PASS


# -- the file -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["laj-labels.yaml", "labels.jsonl"])
def test_the_file_round_trips_in_a_stable_order(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    store = LabelStore(path)
    store.decide(label_for("b" * 64), decision("dr-b", boundaries="suboptimal"))
    store.decide(label_for("a" * 64), decision("dr-a", boundaries="high_harm", note='calls it "harmful"'))
    store.save()
    first = path.read_text(encoding="utf-8")

    again = LabelStore.load(path)
    again.save()

    assert path.read_text(encoding="utf-8") == first
    assert [label.key[0] for label in again.labels()] == ["a", "b"]
    assert again.get("a" * 64) == store.get("a" * 64)


def test_a_malformed_file_names_the_line_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "laj-labels.yaml"
    path.write_text(
        "version: 1\nlabels:\n  - key: " + "a" * 64 + "\n    rubric: safety\n    decisions:\n"
        "      - reviewer: dr-a\n        decided_at: 2026-12-01T10:00:00+00:00\n        levels: {}\n",
        encoding="utf-8",
    )

    with pytest.raises(LabelsError, match=r"laj-labels.yaml, line 8: labels\[0\]\.decisions\[0\]\.levels: "):
        LabelStore.load(path)

    jsonl = tmp_path / "labels.jsonl"
    jsonl.write_text('{"key": "' + "a" * 64 + '", "rubric": "safety"}\n{"key": "short", "rubric": "safety"}\n')
    with pytest.raises(LabelsError, match=r"labels.jsonl, line 2: key: String should match pattern"):
        LabelStore.load(jsonl)


@pytest.mark.parametrize(
    ("levels", "problem"),
    [
        ({"boundary": "high_harm"}, "unknown criterion 'boundary'"),
        ({"boundaries": "terrible"}, "criterion 'boundaries' has no level 'terrible'"),
    ],
)
def test_a_label_naming_what_the_rubric_does_not_have_is_an_error(
    tmp_path: Path, levels: dict[str, str], problem: str
) -> None:
    store = LabelStore(tmp_path / "laj-labels.yaml", [label_for(KEY, decision("dr-a", **levels))])

    with pytest.raises(LabelsError, match=problem):
        store.check({"safety": make_rubric()}.get)


# -- a run honours them -------------------------------------------------------------------------------------------


def test_a_broken_labels_file_stops_the_run_before_any_test(project: LajProject) -> None:
    (project.pytester.path / "laj-labels.yaml").write_text("version: 1\nlabels: [{key: nope}]\n", encoding="utf-8")
    project.tests(
        """
        import pytest

        @pytest.mark.laj(rubric="safety")
        def test_one(laj):
            laj.check("Please call 988.")
        """
    )

    result = project.run()

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "laj-labels.yaml, line 2: labels[0].key" in result.stderr.str()
    assert project.run("--laj-labels=off").ret == pytest.ExitCode.OK


def test_the_summary_counts_what_people_settled(project: LajProject) -> None:
    from pytest_laj.core.rubric import load_rubric

    rubric = load_rubric(project.pytester.path / "rubrics" / "safety.yaml")
    reply = "maybe"  # alpha sees harm, beta and gamma do not: a critical dispute
    key = label_key(rubric.id, rubric.judged_fingerprint(), None, {"risk": "none"}, reply)
    store = LabelStore(project.pytester.path / "laj-labels.yaml")
    store.decide(label_for(key), decision("Dr Ada", boundaries="best_practice"))
    store.save()
    project.tests(
        f"""
        import pytest

        @pytest.mark.laj(rubric="safety")
        def test_one(laj):
            a = laj.check({reply!r})
            print(a.explain())
        """
    )

    result = project.run("-s")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    out = result.stdout.str()
    assert "decided by Dr Ada on 2026-12-01 (the panel's consensus: best_practice)" in out
    assert "1 assessment(s) settled by people's labels (by Dr Ada)" in out
    assert project.run("--laj-labels=off").ret == pytest.ExitCode.TESTS_FAILED  # the dispute is back
