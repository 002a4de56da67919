"""The example suite is what new users run first, so its outcomes are pinned here exactly."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

EXAMPLE_SUITE = Path(__file__).resolve().parent.parent / "example_suite"

# 20 recorded cases plus 4 hand-written tests (see example_suite/README.md for which is which).
EXPECTED = {"passed": 12, "failed": 6, "review": 5, "errors": 1}


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    # Judges named in the environment would replace the simulator and call real models.
    monkeypatch.delenv("LAJ_JUDGES", raising=False)
    shutil.copytree(
        EXAMPLE_SUITE, pytester.path, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".laj_cache")
    )
    return pytester


def _outcomes(result: pytest.RunResult) -> dict[str, int]:
    counts = result.parseoutcomes()
    return {key: counts.get(key, 0) for key in EXPECTED}


@pytest.mark.slow
def test_example_suite_outcomes_and_cache(suite: pytest.Pytester) -> None:
    first = suite.runpytest_subprocess("-p", "no:cacheprovider")
    assert _outcomes(first) == EXPECTED, first.stdout.str()
    assert first.ret == pytest.ExitCode.TESTS_FAILED

    # Same directory, same cache: every verdict is replayed and no judge is called.
    second = suite.runpytest_subprocess("-p", "no:cacheprovider")
    assert _outcomes(second) == EXPECTED, second.stdout.str()
    assert second.ret == pytest.ExitCode.TESTS_FAILED
    second.stdout.fnmatch_lines(["*judge calls: 0 made*"])
