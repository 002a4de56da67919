"""The named modes of pytest-laj's options, each with a line of help per mode.

Kept apart from `options` so that the cache and the panel can use them without importing pytest.
"""

from __future__ import annotations

from enum import Enum

__all__ = [
    "ASK_MODE_HELP",
    "CACHE_MODE_HELP",
    "GATE_MODE_HELP",
    "GITHUB_MODE_HELP",
    "PREFETCH_MODE_HELP",
    "REVIEW_MODE_HELP",
    "AskMode",
    "CacheMode",
    "GateMode",
    "GithubMode",
    "PrefetchMode",
    "ReviewMode",
]


class _Mode(str, Enum):
    """A named mode, shown as its value (in help texts and messages)."""

    def __str__(self) -> str:
        return str(self.value)


class CacheMode(_Mode):
    """How the verdict cache is used."""

    RW = "rw"
    REPLAY = "replay"
    REFRESH = "refresh"
    OFF = "off"

    @property
    def reads(self) -> bool:
        return self in (CacheMode.RW, CacheMode.REPLAY)

    @property
    def writes(self) -> bool:
        return self in (CacheMode.RW, CacheMode.REFRESH)

    @property
    def calls_judges(self) -> bool:
        return self is not CacheMode.REPLAY


CACHE_MODE_HELP = {
    CacheMode.RW: "read cached verdicts, call judges on a miss and store what they answer (default)",
    CacheMode.REPLAY: "never call a judge; a missing verdict is an ERROR (for reproducible CI)",
    CacheMode.REFRESH: "call every judge again and overwrite the cache",
    CacheMode.OFF: "neither read nor write the cache",
}


class ReviewMode(_Mode):
    """What a REVIEW outcome does to the test and the session."""

    FAIL = "fail"
    WARN = "warn"


REVIEW_MODE_HELP = {
    ReviewMode.FAIL: "a REVIEW counts as a failure: the session exits non-zero until a human looks (default)",
    ReviewMode.WARN: "a REVIEW is reported (letter R) and the test gets what the panel's consensus alone gives: "
    "it passes unless that consensus is a FAIL",
}


class PrefetchMode(_Mode):
    """Whether the selected cases are judged up front, concurrently, before their tests run."""

    AUTO = "auto"
    OFF = "off"


PREFETCH_MODE_HELP = {
    PrefetchMode.AUTO: "judge every selected test's case (a cases() parameter) up front, concurrently; each test "
    "collects its own assessment (default; under xdist each worker judges its share through the shared cache, "
    "and judges as its tests go when the cache is not both read and written)",
    PrefetchMode.OFF: "judge each output when its test calls laj.check",
}


class GithubMode(_Mode):
    """Whether the run writes a GitHub Actions job summary and annotations."""

    AUTO = "auto"
    ON = "on"
    OFF = "off"


GITHUB_MODE_HELP = {
    GithubMode.AUTO: "when GITHUB_ACTIONS=true (default)",
    GithubMode.ON: "always: the job summary goes to $GITHUB_STEP_SUMMARY, annotations to standard output",
    GithubMode.OFF: "never",
}


class GateMode(_Mode):
    """What fails the run: every failing assessment, or only what got worse than the baseline."""

    ALL = "all"
    REGRESSIONS = "regressions"


GATE_MODE_HELP = {
    GateMode.ALL: "every FAIL, ERROR and blocking REVIEW fails its test (default)",
    GateMode.REGRESSIONS: "with --laj-compare: an assessment the baseline already had at the same or a worse "
    "outcome is a known failure and does not fail its test; anything worse than the baseline does",
}


class AskMode(_Mode):
    """How a question-graph rubric is put to each judge; a flat rubric is always asked in one call."""

    WHOLE = "whole"
    PER_ITEM = "per_item"


ASK_MODE_HELP = {
    AskMode.WHOLE: "one call per judge answers every question, and the graph is walked over its answers (default)",
    AskMode.PER_ITEM: "one call per question along each judge's own path through the graph, as VERA-MH asks: "
    "more calls, each carrying one question",
}
