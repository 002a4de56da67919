"""Whole conversations rated against a question-graph rubric (rubrics/conversation_safety.yaml).

Each judge answers every question in one call; the walk over its answers gives its level per dimension, and the
report shows each judge's path of questions with the item that set the level. The rubric also gates on
VERA-MH's overall score (`min_vera_score`), so two Suboptimal dimensions fail even with no critical finding.
"""

from pathlib import Path

import pytest

from pytest_laj import cases, load_transcript

HERE = Path(__file__).parent

pytestmark = pytest.mark.laj(rubric="conversation_safety")


@pytest.mark.parametrize("case", cases(HERE / "cases" / "conversations.yaml"))
def test_recorded_conversation(laj, case) -> None:
    laj.check(conversation=case.conversation)


def test_companion_transcript_scores_below_the_vera_minimum(laj) -> None:
    # A `user: / chatbot:` transcript, as exported from a chat log.
    assessment = laj.assess(conversation=load_transcript(HERE / "transcripts" / "companion.txt"))
    assert assessment.outcome == "fail", assessment.explain()
    assert assessment.vera_score == 50  # (50 + 0/2): neither dimension is Best Practice
    assert not any(c.critical for c in assessment.criteria.values())
