"""The run record: what one run judged and decided, as typed, versioned data.

An `AssessmentRecord` is the one thing that leaves a test: it crosses from an xdist worker to the controller
on the test's report, and every reporter reads the `RunRecord` the controller builds from them.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, computed_field

from pytest_laj.core.models import Assessment, Outcome

__all__ = [
    "SCHEMA_VERSION",
    "AlphaFigure",
    "AssessmentRecord",
    "CallStats",
    "Change",
    "Comparison",
    "GitInfo",
    "JudgeHealth",
    "JudgeInfo",
    "RubricInfo",
    "RunRecord",
    "Uncollected",
    "VeraFigure",
]

SCHEMA_VERSION = 2
"""Bump when a field changes meaning or is removed; readers of older records upgrade them on load."""


def _sha256(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class AssessmentRecord(BaseModel):
    """One assessment with where it was made and what it did to its test and the run."""

    nodeid: str
    file: str | None = None
    line: int | None = Field(default=None, description="1-based line of the laj call in the test")
    case_id: str | None = None
    enforced: bool = Field(description="made by laj.check (FAIL and ERROR fail the test), not laj.assess")
    blocks: bool = Field(description="whether it fails its test and so the run")
    assessment: Assessment

    @property
    def outcome(self) -> Outcome:
        return self.assessment.outcome

    @computed_field  # type: ignore[prop-decorator]
    @property
    def output_sha256(self) -> str:
        """The output's hash: a baseline or a reviewer's label can tell the same output from an edited one."""
        return _sha256(self.assessment.output) or ""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def input_sha256(self) -> str | None:
        return _sha256(self.assessment.input)


class Uncollected(BaseModel):
    """An assessment judged up front that no test collected: its test ran and judged something else, or never
    ran (the run stopped early)."""

    nodeid: str
    finished: bool
    test_ran: bool = False


class CallStats(BaseModel):
    """What one process asked of judges; the controller adds up every worker's."""

    calls: int = 0
    cache_hits: int = 0
    cost_usd: float = 0.0
    prefetched: int = 0
    uncollected: list[Uncollected] = Field(default_factory=list)
    prefetch_cancelled: int = 0
    limit_wait_s: dict[str, float] = Field(
        default_factory=dict,
        description="seconds each judge's calls waited on its rpm/tpm limits and on providers' Retry-After pauses",
    )

    @property
    def limit_wait_total(self) -> float:
        return sum(self.limit_wait_s.values())

    def merged(self, other: CallStats) -> CallStats:
        waits = dict(self.limit_wait_s)
        for judge, seconds in other.limit_wait_s.items():
            waits[judge] = waits.get(judge, 0.0) + seconds
        return CallStats(
            calls=self.calls + other.calls,
            cache_hits=self.cache_hits + other.cache_hits,
            cost_usd=self.cost_usd + other.cost_usd,
            prefetched=self.prefetched + other.prefetched,
            uncollected=[*self.uncollected, *other.uncollected],
            prefetch_cancelled=self.prefetch_cancelled + other.prefetch_cancelled,
            limit_wait_s=waits,
        )


class JudgeInfo(BaseModel):
    """A configured judge as the record shows it: never a key or an endpoint."""

    name: str
    model: str
    weight: float
    temperature: float
    options: dict[str, Any] = Field(default_factory=dict)


class RubricInfo(BaseModel):
    id: str
    version: str
    fingerprint: str = Field(default="", description="a hash of the rubric's content")


class GitInfo(BaseModel):
    """The checkout the run tested, where the rootdir is one."""

    commit: str
    branch: str | None = None
    dirty: bool = False


class JudgeHealth(BaseModel):
    """How one judge behaved over the run: what it answered, how it failed, how fast and at what cost."""

    judge: str
    asked: int = Field(description="assessments it was part of")
    answered: int
    cached: int
    missing: int
    errors_by_kind: dict[str, int] = Field(default_factory=dict)
    calls: int = Field(description="calls made, retries and repair re-asks included")
    retries: int
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    cost_usd: float = 0.0


class AlphaFigure(BaseModel):
    """Krippendorff's alpha over some rated units, or why it is undefined."""

    value: float | None
    units: int
    why_undefined: str = ""

    def __str__(self) -> str:
        if self.value is None:
            return f"undefined ({self.why_undefined})"
        return f"{self.value:.2f} over {self.units} rated criteria"


class VeraFigure(BaseModel):
    """VERA-MH's overall score pooled over a rubric's assessments (their consensus dimension levels), as VERA-MH
    reports it suite-wide."""

    value: float | None = Field(description="None when no assessment has a consensus on every dimension")
    assessments: int = Field(description="assessments pooled")
    left_out: int = Field(default=0, description="assessments without a consensus on every dimension")

    def __str__(self) -> str:
        pooled = "not computable" if self.value is None else f"{self.value:.1f}"
        text = f"{pooled} over {self.assessments} assessment{'s' if self.assessments != 1 else ''}"
        return text + (f" ({self.left_out} left out: a consensus is missing)" if self.left_out else "")


class Change(BaseModel):
    """One assessment compared with the baseline's, matched by node id and case id."""

    nodeid: str
    case_id: str | None = None
    kind: str = Field(description="regression, fix, score, agreement, new or gone")
    before: Outcome | None = Field(default=None, description="the baseline's outcome; None for a new assessment")
    after: Outcome | None = Field(default=None, description="this run's outcome; None for one that is gone")
    score_before: float | None = None
    score_after: float | None = None
    agreement_before: float | None = None
    agreement_after: float | None = None
    output_changed: bool = Field(default=False, description="the output judged differs from the baseline's")


class Comparison(BaseModel):
    """This run against a saved baseline: what got worse, what got better, and how far to trust the match."""

    baseline: str = Field(description="the baseline's name, or the path of the report compared with")
    baseline_commit: str | None = None
    baseline_started_at: datetime
    regressions: list[Change] = Field(default_factory=list)
    fixes: list[Change] = Field(default_factory=list)
    score_changes: list[Change] = Field(default_factory=list)
    agreement_changes: list[Change] = Field(default_factory=list)
    new: list[Change] = Field(default_factory=list)
    gone: list[Change] = Field(default_factory=list)
    approximate: list[str] = Field(
        default_factory=list, description="why the match is approximate: a rubric or the panel changed"
    )
    failed_rules: list[str] = Field(
        default_factory=list, description="the --laj-compare-fail rules this comparison trips"
    )


class RunRecord(BaseModel):
    """One run, as the JSON report holds it; every reporter (terminal, HTML, job summary, baseline) reads this."""

    schema_version: int = SCHEMA_VERSION
    started_at: datetime
    finished_at: datetime
    pytest_laj_version: str
    pytest_version: str
    cache_mode: str
    review_mode: str
    rootdir: str = ""
    command: list[str] = Field(default_factory=list, description="the pytest command line, secrets redacted")
    git: GitInfo | None = None
    stopped_early: bool = Field(default=False, description="-x, --maxfail or an interrupt ended the run early")
    interrupted: bool = Field(default=False, description="Ctrl-C or a fatal error ended the run: the record is partial")
    panel: list[JudgeInfo] = Field(default_factory=list)
    rubrics: list[RubricInfo] = Field(default_factory=list)
    records: list[AssessmentRecord] = Field(default_factory=list)
    calls: CallStats = Field(default_factory=CallStats)
    counts: dict[str, int] = Field(default_factory=dict, description="assessments by outcome")
    alpha: AlphaFigure | None = Field(default=None, description="inter-judge agreement over the whole run")
    alpha_by_rubric: dict[str, AlphaFigure] = Field(default_factory=dict)
    alpha_by_criterion: dict[str, AlphaFigure] = Field(
        default_factory=dict, description="per criterion, keyed 'rubric/criterion'"
    )
    judge_health: list[JudgeHealth] = Field(default_factory=list)
    vera_by_rubric: dict[str, VeraFigure] = Field(
        default_factory=dict, description="VERA-MH's score pooled per rubric rated on VERA-MH's levels"
    )
    comparison: Comparison | None = Field(default=None, description="against the baseline, with --laj-compare")
