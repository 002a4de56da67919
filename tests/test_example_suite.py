"""The example suite is what new users run first, so its outcomes are pinned here exactly."""

from __future__ import annotations

import re

import pytest

# 23 recorded cases (3 of them conversations) plus 5 hand-written tests. The ERROR case is a failed test in
# pytest's terms; the pytest-laj summary counts assessments (the cold-handoff test makes two) by their own outcome.
STATS_LINE = "*= 8 failed, 14 passed, 6 review in *"
ASSESSMENTS_LINE = "29 assessments: 13 pass, 9 fail, 6 review, 1 error"
JUDGE_SLOTS = 29 * 3
FAILED_JUDGES = 2  # in the ERROR case, whose failed verdicts are not cached


def _judge_calls(result: pytest.RunResult) -> tuple[int, int]:
    found = re.search(r"judge calls: (\d+) made, (\d+) from cache", result.stdout.str())
    assert found, result.stdout.str()
    return int(found[1]), int(found[2])


def _check_outcomes(result: pytest.RunResult) -> None:
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    assert result.parseoutcomes() == {"failed": 8, "passed": 14, "review": 6}
    result.stdout.fnmatch_lines(
        [
            "*ERROR [[]postop_triage v1.0]: only 1 of 3 judges gave a valid verdict; quorum is 2*",
            ASSESSMENTS_LINE,
            STATS_LINE,
        ]
    )


@pytest.mark.slow
def test_example_suite_outcomes_and_cache(example_suite: pytest.Pytester) -> None:
    first = example_suite.runpytest_inprocess("-p", "no:cacheprovider")
    _check_outcomes(first)
    made, cached = _judge_calls(first)
    assert made >= JUDGE_SLOTS
    assert cached == 0

    # Same directory, same cache: every valid verdict is replayed. Only the two judges that
    # failed in the ERROR case are asked again (failures are never cached), with the same retries.
    second = example_suite.runpytest_inprocess("-p", "no:cacheprovider")
    _check_outcomes(second)
    made_again, cached = _judge_calls(second)
    assert cached == JUDGE_SLOTS - FAILED_JUDGES
    assert made_again == made - cached
