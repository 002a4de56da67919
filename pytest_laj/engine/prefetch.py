"""Suite-level judging: the selected cases are judged up front, concurrently, and each test collects its own.

Each prefetch is registered under the test that will collect it (its node id) and a key equal for that test's
call, so the test does not prepare the same assessment again. What no test collected is told apart at the end:
a test that ran but judged something else, or a test that never ran (the run stopped early).
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
from dataclasses import dataclass
from typing import Any

from pytest_laj.core.case import Case
from pytest_laj.core.models import JudgeResult
from pytest_laj.core.rubric import Rubric
from pytest_laj.engine.spec import AssessmentSpec, Prepared

__all__ = ["Prefetcher"]

Results = concurrent.futures.Future[list[JudgeResult]]


def spec_key(spec: AssessmentSpec) -> str:
    """Equal for a test's call and the prefetch of its case."""
    rubric = spec.rubric.fingerprint() if isinstance(spec.rubric, Rubric) else spec.rubric
    material = [spec.output, spec.input, spec.context, rubric, spec.judges, spec.thresholds, spec.conversation]
    material += [] if spec.ask is None else [str(spec.ask)]
    return json.dumps(material, sort_keys=True, default=str)


def case_key(case: Case) -> str:
    return json.dumps([case.id, case.input, case.context], sort_keys=True, default=str)


def finished(results: list[JudgeResult]) -> Results:
    future: Results = concurrent.futures.Future()
    future.set_result(results)
    return future


@dataclass
class _Entry:
    owner: str
    prepared: Prepared
    future: Results


class Prefetcher:
    """The registry of prefetched assessments and produced outputs, shared by the tests' thread and the loop."""

    def __init__(self) -> None:
        self._judging: dict[str, list[_Entry]] = {}
        self._producing: dict[str, list[concurrent.futures.Future[str]]] = {}
        self._lock = threading.Lock()

    def add(self, owner: str, prepared: Prepared, future: Results) -> None:
        with self._lock:
            self._judging.setdefault(spec_key(prepared.spec), []).append(_Entry(owner, prepared, future))

    def add_produced(self, case: Case, future: concurrent.futures.Future[str]) -> None:
        with self._lock:
            self._producing.setdefault(case_key(case), []).append(future)

    def take(self, spec: AssessmentSpec) -> tuple[Prepared, Results] | None:
        with self._lock:
            waiting = self._judging.get(spec_key(spec))
            entry = waiting.pop(0) if waiting else None
        return (entry.prepared, entry.future) if entry is not None else None

    def take_produced(self, case: Case) -> concurrent.futures.Future[str] | None:
        with self._lock:
            waiting = self._producing.get(case_key(case))
            return waiting.pop(0) if waiting else None

    def cancel_pending(self) -> int:
        """Stop judging what has not finished (the run is stopping early): saves calls to real judges."""
        with self._lock:
            futures: list[concurrent.futures.Future[Any]] = [e.future for es in self._judging.values() for e in es]
            futures += [f for produced in self._producing.values() for f in produced]
        return sum(future.cancel() for future in futures if not future.done())

    def settle(self) -> None:
        """Wait for judging already under way that no test collected: its calls are paid for, its verdicts are
        worth caching, and the call counts told at the end are then the same on every run."""
        with self._lock:
            producing = [f for produced in self._producing.values() for f in produced]
        concurrent.futures.wait(producing)  # a produced output starts its judging when it exists
        with self._lock:
            judging = [e.future for entries in self._judging.values() for e in entries]
        concurrent.futures.wait(judging)

    def uncollected(self) -> list[tuple[str, bool]]:
        """Prefetched assessments no test collected: whose each was, and whether its judging finished."""
        with self._lock:
            entries = [e for entries in self._judging.values() for e in entries]
        return [(e.owner, e.future.done() and not e.future.cancelled()) for e in entries]
