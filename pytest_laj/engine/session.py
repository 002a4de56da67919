"""The engine of a run: check a call, read its verdicts from the store or have the panel rate it, aggregate.

It knows nothing of pytest; the plugin turns what it returns into test outcomes and records.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

from pytest_laj.core.aggregate import aggregate
from pytest_laj.core.case import Case
from pytest_laj.core.models import Assessment, JudgeResult
from pytest_laj.core.rubric import RubricRegistry
from pytest_laj.engine.loop import EventLoopThread
from pytest_laj.engine.prefetch import Prefetcher, finished
from pytest_laj.engine.produce import FindProducer, Producing
from pytest_laj.engine.rating import Rater
from pytest_laj.engine.scan import scan
from pytest_laj.engine.settings import Settings
from pytest_laj.engine.spec import AssessmentSpec, Prepared, check_spec, prepare
from pytest_laj.errors import UsageError
from pytest_laj.judges.budget import Budget
from pytest_laj.judges.panel import CallPolicy, RetryPolicy
from pytest_laj.judges.registry import JudgeRegistry, MakeJudge
from pytest_laj.store.cache import Store, VerdictCache
from pytest_laj.store.keys import assessment_identity

__all__ = ["Engine"]


class Engine:
    def __init__(self, settings: Settings, make_judge: MakeJudge, find_producer: FindProducer = lambda: None) -> None:
        self.settings = settings
        self.rubrics = RubricRegistry(settings.rubric_dirs, settings.base_dir)
        self.cache = VerdictCache(settings.cache_dir, read_only=not settings.cache_mode.writes)
        self.store = Store(self.cache, settings.cache_mode)
        self.loop = EventLoopThread()
        self.judges = JudgeRegistry(settings.judges, make_judge, settings.timeout, settings.simulate)
        self.budget = Budget(settings.max_calls, settings.max_cost, settings.run_id)
        self.policy = CallPolicy(
            limiter=asyncio.Semaphore(settings.concurrency),
            retry=RetryPolicy(retries=settings.retries),
            timeout=settings.timeout,
            budget=self.budget,
        )
        self.rater = Rater(self.store, across_processes=settings.run_id is not None)
        self.prefetcher = Prefetcher()
        self.producing = Producing(find_producer, self.store)

    # -- the pipeline: check, cached or rated, aggregate ----------------------------------------------------

    def prepare(self, spec: AssessmentSpec) -> Prepared:
        return prepare(spec, self.rubrics, self.judges, self.policy, self.settings.max_chars)

    def _cached(self, prepared: Prepared) -> list[JudgeResult] | None:
        """Every verdict straight from the store, or None if a judge must be asked: a rerun's assessments
        never wait on the event loop's thread."""
        return [] if not prepared.request.criteria else self.rater.cached(prepared.panel, prepared.request)

    async def _rate(self, prepared: Prepared) -> list[JudgeResult]:
        if not prepared.request.criteria:
            return []
        return await self.rater.rate(prepared.panel, prepared.request)

    def _aggregate(self, prepared: Prepared, results: Sequence[JudgeResult]) -> Assessment:
        request = prepared.request
        return aggregate(
            prepared.rubric,
            results,
            output=request.output,
            input=request.input,
            context=request.context,
            thresholds=prepared.thresholds,
            panel_size=len(prepared.panel.judges),
            suspected_injection=scan(request, self.store),
            identity=assessment_identity(prepared.rubric.fingerprint(), request.input, request.context, request.output),
        )

    def assess(self, spec: AssessmentSpec) -> Assessment:
        check_spec(spec, self.settings.max_chars)  # before the prefetcher hashes it
        taken = self.prefetcher.take(spec)
        if taken is not None:
            prepared, future = taken
            return self._aggregate(prepared, future.result())
        prepared = self.prepare(spec)
        results = self._cached(prepared)
        return self._aggregate(prepared, self.loop.run(self._rate(prepared)) if results is None else results)

    async def aassess(self, spec: AssessmentSpec) -> Assessment:
        check_spec(spec, self.settings.max_chars)  # before the prefetcher hashes it
        taken = self.prefetcher.take(spec)
        if taken is not None:
            prepared, future = taken
            results: list[JudgeResult] = await self.loop.wait(future)
            return self._aggregate(prepared, results)
        prepared = self.prepare(spec)
        cached = self._cached(prepared)
        return self._aggregate(prepared, await self.loop.run_async(self._rate(prepared)) if cached is None else cached)

    def assess_many(self, specs: Sequence[AssessmentSpec]) -> list[Assessment]:
        prepared = [self.prepare(s) for s in specs]
        found = [self._cached(p) for p in prepared]
        missing = [p for p, results in zip(prepared, found, strict=True) if results is None]

        async def rate_missing() -> list[list[JudgeResult]]:
            return list(await asyncio.gather(*(self._rate(p) for p in missing)))

        rated = iter(self.loop.run(rate_missing()) if missing else [])
        return [self._aggregate(p, next(rated) if r is None else r) for p, r in zip(prepared, found, strict=True)]

    # -- judging up front -----------------------------------------------------------------------------------

    def prefetch(self, owner: str, spec: AssessmentSpec) -> bool:
        """Start judging now; `assess` of an equal spec later collects the result instead of calling again. A
        spec that cannot be prepared is left for its test (`owner`) to report."""
        try:
            prepared = self.prepare(spec)
        except (UsageError, TypeError):
            return False
        results = self._cached(prepared)
        self.prefetcher.add(
            owner, prepared, self.loop.submit(self._rate(prepared)) if results is None else finished(results)
        )
        return True

    def prefetch_produced(self, owner: str, spec: AssessmentSpec, case: Case) -> bool:
        """Produce the case's output up front, then start judging it as soon as it exists."""
        try:
            self.producing.producer(case)
        except UsageError:
            return False

        async def produce_then_judge() -> str:
            output = await self.producing.produce(case)
            self.prefetch(owner, replace(spec, output=output))
            return output

        self.prefetcher.add_produced(case, self.loop.submit(produce_then_judge()))
        return True

    def produce(self, case: Case) -> str:
        """The case's output: recorded, produced up front, or produced now."""
        if case.output is not None:
            return case.output
        future = self.prefetcher.take_produced(case)
        return future.result() if future is not None else self.loop.run(self.producing.produce(case))

    def close(self) -> None:
        self.loop.close()
        self.cache.close()
        self.judges.close()
