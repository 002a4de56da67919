"""Each judge's health over a run, from the assessments alone: what it answered, how it failed, its latency
and cost. A provider that degrades shows here before it costs a quorum."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from pytest_laj.core.models import Assessment, JudgeResult
from pytest_laj.results.record import JudgeHealth

__all__ = ["judge_health"]


def _percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile: a figure some call really took."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-int(fraction * 100) * len(ordered) // 100))  # ceil(fraction * n)
    return round(ordered[rank - 1], 4)


def judge_health(assessments: Sequence[Assessment]) -> list[JudgeHealth]:
    results: dict[str, list[JudgeResult]] = defaultdict(list)
    for assessment in assessments:
        for result in assessment.judges:
            results[result.judge].append(result)
    health = []
    for judge, mine in sorted(results.items()):
        called = [r for r in mine if not r.cached and r.latency_s is not None and r.attempts > 0]
        latencies = [r.latency_s / r.attempts for r in called if r.latency_s is not None]
        health.append(
            JudgeHealth(
                judge=judge,
                asked=len(mine),
                answered=sum(1 for r in mine if r.valid),
                cached=sum(1 for r in mine if r.cached),
                missing=sum(1 for r in mine if not r.valid),
                errors_by_kind=dict(Counter(r.error_kind or "error" for r in mine if not r.valid)),
                calls=sum(r.attempts for r in mine),
                retries=sum(max(0, r.attempts - 1) for r in mine),
                latency_p50_s=_percentile(latencies, 0.5),
                latency_p95_s=_percentile(latencies, 0.95),
                cost_usd=round(sum(r.cost_usd for r in mine), 6),
            )
        )
    return health
