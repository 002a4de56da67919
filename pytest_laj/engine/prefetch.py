"""Suite-level judging: the selected cases are judged up front, concurrently, and each test collects its own.

Each prefetch is registered under the test that will collect it (its node id) and a key equal for that test's
call, so the test does not prepare the same assessment again. What no test collected is told apart at the end:
a test that ran but judged something else, or a test that never ran (the run stopped early).

Under xdist each worker judges its share of the selected cases, for tests that may run on another worker: what
it judged then reaches them through the shared cache, and its uncollected entries carry the assessment's
identity, so the controller can tell a case collected elsewhere from one no test took.
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pytest_laj.core.case import Case
from pytest_laj.core.models import JudgeResult
from pytest_laj.core.rubric import Rubric
from pytest_laj.engine.scan import Scan
from pytest_laj.engine.spec import AssessmentSpec, Prepared

__all__ = ["Prefetched", "Prefetcher", "Unclaimed"]

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
class Prefetched:
    """An assessment judged up front for the test `owner`; `hits` are cache reads not counted yet, counted when
    a test of this process collects it (under xdist, another worker's test may read the same verdicts)."""

    owner: str
    prepared: Prepared
    future: Results
    hits: int = 0
    found: Scan | None = None  # the injection scan, when it was made up front too


@dataclass(frozen=True)
class Unclaimed:
    """A prefetched assessment no test of this process collected; `identity` is the assessment's."""

    owner: str
    finished: bool
    identity: str


class Prefetcher:
    """The registry of prefetched assessments and produced outputs, shared by the tests' thread and the loop."""

    def __init__(self) -> None:
        self._judging: dict[str, list[Prefetched]] = {}
        self._producing: dict[str, list[concurrent.futures.Future[str]]] = {}
        self._lock = threading.Lock()
        self.judged = 0  # assessments judged up front by this process, for the report

    def add(self, entry: Prefetched) -> None:
        with self._lock:
            self.judged += 1
            self._judging.setdefault(spec_key(entry.prepared.spec), []).append(entry)

    def add_produced(self, case: Case, future: concurrent.futures.Future[str]) -> None:
        with self._lock:
            self._producing.setdefault(case_key(case), []).append(future)

    def take(self, spec: AssessmentSpec) -> Prefetched | None:
        with self._lock:
            waiting = self._judging.get(spec_key(spec))
            return waiting.pop(0) if waiting else None

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

    def settle(self, stopped: Callable[[], bool] = lambda: False, every: float = 0.1) -> int:
        """Wait for judging already under way that no test collected: its calls are paid for, its verdicts are
        worth caching (under xdist other workers' tests wait for them), and the call counts told at the end are
        then the same on every run. If `stopped()` turns true meanwhile (asked every `every` seconds), what is
        pending is cancelled instead; returns how many were."""
        while True:
            with self._lock:  # a produced output adds its judging when it exists: look again each time
                futures: list[concurrent.futures.Future[Any]] = [f for fs in self._producing.values() for f in fs]
                futures += [e.future for entries in self._judging.values() for e in entries]
            pending = [f for f in futures if not f.done()]
            if not pending:
                return 0
            concurrent.futures.wait(pending, timeout=every)
            if stopped():
                return self.cancel_pending()

    def uncollected(self) -> list[Unclaimed]:
        """Prefetched assessments no test collected: whose each was, and whether its judging finished."""
        with self._lock:
            entries = [e for entries in self._judging.values() for e in entries]
        return [
            Unclaimed(e.owner, e.future.done() and not e.future.cancelled(), e.prepared.identity()) for e in entries
        ]
