"""The engine of a run: check a call, read its verdicts from the store or have the panel rate it, aggregate.

A text with only weak injection signals is judged a second time with their spans cut out (off the path when
there are none); the signals send it to REVIEW only if that moves the verdict. It knows nothing of pytest; the
plugin turns what it returns into test outcomes and records.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

from pytest_laj.core.aggregate import aggregate
from pytest_laj.core.case import Case
from pytest_laj.core.labels import human_calls
from pytest_laj.core.models import Assessment, HumanCall, JudgeResult, Outcome
from pytest_laj.core.modes import AskMode
from pytest_laj.core.rubric import Rubric, RubricRegistry
from pytest_laj.engine.loop import EventLoopThread
from pytest_laj.engine.per_item import PerItem
from pytest_laj.engine.prefetch import Prefetched, Prefetcher, finished
from pytest_laj.engine.produce import FindProducer, Producing
from pytest_laj.engine.rating import Rater
from pytest_laj.engine.scan import Scan, scan, scan_key
from pytest_laj.engine.settings import Settings
from pytest_laj.engine.spec import AssessmentSpec, Prepared, check_spec, prepare
from pytest_laj.errors import UsageError
from pytest_laj.judges.budget import Budget
from pytest_laj.judges.limits import RateLimits
from pytest_laj.judges.panel import CallPolicy, RetryPolicy
from pytest_laj.judges.registry import JudgeRegistry, MakeJudge
from pytest_laj.store.cache import Store, open_backend
from pytest_laj.store.keys import label_key
from pytest_laj.store.labels import LabelStore

__all__ = ["Engine"]

_READ_AHEAD = 256  # specs judged up front per batch of verdict reads


class Engine:
    def __init__(self, settings: Settings, make_judge: MakeJudge, find_producer: FindProducer = lambda: None) -> None:
        self.settings = settings
        self.rubrics = RubricRegistry(settings.rubric_dirs, settings.base_dir)
        self.labels: LabelStore | None = None  # set by load_labels()
        self.cache = open_backend(settings.cache_dir, settings.cache_url, read_only=not settings.cache_mode.writes)
        self.store = Store(self.cache, settings.cache_mode)
        self.loop = EventLoopThread()
        self.judges = JudgeRegistry(settings.judges, make_judge, settings.timeout, settings.simulate)
        shared = self.cache.counter(settings.run_id) if settings.run_id else None
        self.budget = Budget(settings.max_calls, settings.max_cost, settings.run_id, shared)
        retry = RetryPolicy(retries=settings.retries)
        self.policy = CallPolicy(
            limiter=asyncio.Semaphore(settings.concurrency),
            retry=retry,
            timeout=settings.timeout,
            budget=self.budget,
            limits=RateLimits(settings.concurrency, retry.max_delay, settings.run_id),
        )
        self.rater = Rater(self.store, across_processes=settings.run_id is not None or self.cache.shared)
        self.per_item = PerItem(self.rater)
        self.prefetcher = Prefetcher()
        self.shares_prefetch = False  # an xdist worker judging its share of the cases for every worker's tests
        self._up_front = asyncio.Semaphore(settings.concurrency)
        shares_store = self.rater.across_processes and self.store.reads and self.store.writes
        self.producing = Producing(find_producer, self.store, self.policy.claim_seconds if shares_store else None)
        self._rules_checked: set[str] = set()  # graph rubrics (by fingerprint) the simulator's rules were checked on
        self._path_graphs: list[Rubric] = []

    # -- the pipeline: check, cached or rated, aggregate ----------------------------------------------------

    def prepare(self, spec: AssessmentSpec) -> Prepared:
        prepared = prepare(spec, self.rubrics, self.judges, self.policy, self.settings.max_chars, self.settings.ask)
        self._check_rules(prepared.rubric)
        return prepared

    def _check_rules(self, rubric: Rubric) -> None:
        """The simulator's rules against a question graph the run met by its path (a bundle named by a marker or
        a call, not in the rubric directories checked up front), before any judge answers it: an item id the
        rules misspell would otherwise quietly go unanswered."""
        rules = self.judges.rules
        if rules is None or rubric.graph is None or rubric.fingerprint() in self._rules_checked:
            return
        known = self.rubrics.check_all()
        if all(r.fingerprint() != rubric.fingerprint() for r in known):
            rules.check_answers_against([*known, *self._path_graphs, rubric], str(self.settings.simulate))
            self._path_graphs.append(rubric)
        self._rules_checked.add(rubric.fingerprint())

    def _asker(self, prepared: Prepared) -> Rater | PerItem:
        return self.per_item if prepared.per_item else self.rater

    def _cached(
        self, prepared: Prepared, count: bool = True, keys: Sequence[str] | None = None
    ) -> list[JudgeResult] | None:
        """Every verdict straight from the store, or None if a judge must be asked: a rerun's assessments
        never wait on the event loop's thread. `keys`: a whole request's member keys, worked out already."""
        if not prepared.request.criteria:
            return []
        if keys is not None:
            return self.rater.cached(prepared.panel, prepared.request, count, keys)
        return self._asker(prepared).cached(prepared.panel, prepared.request, count)

    async def _rate(self, prepared: Prepared) -> list[JudgeResult]:
        if not prepared.request.criteria:
            return []
        return await self._asker(prepared).rate(prepared.panel, prepared.request)

    @staticmethod
    def _second_opinion(prepared: Prepared, found: Scan) -> Prepared | None:
        """The request with its weak injection spans cut out, when only weak ones were found; else None."""
        return replace(prepared, request=found.without_weak(prepared.request)) if found.needs_second_opinion else None

    def _judge(self, prepared: Prepared) -> list[JudgeResult]:
        cached = self._cached(prepared)
        return cached if cached is not None else self.loop.run(self._rate(prepared))

    def _judged(self, prepared: Prepared | None) -> list[JudgeResult] | None:
        return None if prepared is None else self._judge(prepared)

    def _aggregate(
        self,
        prepared: Prepared,
        results: Sequence[JudgeResult],
        found: Scan,
        second: Sequence[JudgeResult] | None = None,
    ) -> Assessment:
        """The assessment, with the injection scan's verdict: strong findings go to REVIEW; weak ones only when
        the panel's verdict without them (`second`) differs."""
        notes = found.noted()
        if not found.needs_second_opinion or second is None:
            return self._assessment(prepared, results, found.described(), notes)
        plain = self._assessment(prepared, results, [], notes)
        without = self._assessment(prepared, second, [])
        before, after = _verdict(plain), _verdict(without)
        if before == after:
            return plain
        moved = f"the verdict without it differs ({_describe(after)} instead of {_describe(before)})"
        return self._assessment(prepared, results, [*found.described(), moved], notes)

    def _assessment(
        self, prepared: Prepared, results: Sequence[JudgeResult], suspected: list[str], notes: Sequence[str] = ()
    ) -> Assessment:
        request, rubric = prepared.request, prepared.rubric
        conversation = request.conversation
        turns = None if conversation is None else conversation.key()
        key = label_key(rubric.id, rubric.judged_fingerprint(), request.input, request.context, request.output, turns)
        assessment = aggregate(
            prepared.rubric,
            results,
            output=request.output,
            input=request.input,
            context=request.context,
            thresholds=prepared.thresholds,
            panel_size=len(prepared.panel.judges),
            suspected_injection=suspected,
            identity=prepared.identity(),
            label_key=key,
            human=self._human_calls(key, prepared),
            asked=AskMode.PER_ITEM if prepared.per_item else AskMode.WHOLE,
        )
        if conversation is None and not notes:
            return assessment
        return assessment.model_copy(update={"conversation": conversation, "injection_notes": list(notes)})

    def _human_calls(self, key: str, prepared: Prepared) -> dict[str, HumanCall]:
        """People's levels for this output, where the labels file has a decision on exactly what was judged."""
        label = self.labels.get(key) if self.labels is not None else None
        return human_calls(label.decisions, prepared.rubric) if label is not None else {}

    def load_labels(self) -> LabelStore | None:
        """Read and check the labels file once, before any test: a mistake in it stops the run."""
        if self.settings.labels is None:
            return None
        store = LabelStore.load(self.settings.labels)
        rubrics = {rubric.id: rubric for rubric in self.rubrics.check_all()}  # loaded once: check_all caches
        store.check(rubrics.get)
        return store

    def assess(self, spec: AssessmentSpec) -> Assessment:
        check_spec(spec, self.settings.max_chars)  # before the prefetcher hashes it
        taken = self._take(spec)
        if taken is not None:
            prepared, results = taken.prepared, taken.future.result()
        else:
            prepared = self.prepare(spec)
            results = self._judge(prepared)
        found = self._scanned(prepared, taken)
        return self._aggregate(prepared, results, found, self._judged(self._second_opinion(prepared, found)))

    async def aassess(self, spec: AssessmentSpec) -> Assessment:
        check_spec(spec, self.settings.max_chars)  # before the prefetcher hashes it
        taken = self._take(spec)
        if taken is not None:
            prepared, results = taken.prepared, await self.loop.wait(taken.future)
        else:
            prepared = self.prepare(spec)
            results = await self._ajudged(prepared)
        found = self._scanned(prepared, taken)
        second = self._second_opinion(prepared, found)
        return self._aggregate(prepared, results, found, None if second is None else await self._ajudged(second))

    def _scanned(self, prepared: Prepared, taken: Prefetched | None) -> Scan:
        found = taken.found if taken is not None else None
        return found if found is not None else scan(prepared.request, self.store)

    def _take(self, spec: AssessmentSpec) -> Prefetched | None:
        """The assessment judged up front for this spec, its cache reads now counted as the run's."""
        taken = self.prefetcher.take(spec)
        if taken is not None:
            self.rater.counts.add(cache_hits=taken.hits)
        return taken

    async def _ajudged(self, prepared: Prepared) -> list[JudgeResult]:
        cached = self._cached(prepared)
        return await self.loop.run_async(self._rate(prepared)) if cached is None else cached

    def assess_many(self, specs: Sequence[AssessmentSpec]) -> list[Assessment]:
        prepared = [self.prepare(s) for s in specs]
        scans = [scan(p.request, self.store) for p in prepared]
        seconds = [self._second_opinion(p, found) for p, found in zip(prepared, scans, strict=True)]
        batch = prepared + [s for s in seconds if s is not None]  # every judging at once, second opinions too
        found = [self._cached(p) for p in batch]
        missing = [p for p, results in zip(batch, found, strict=True) if results is None]

        async def rate_missing() -> list[list[JudgeResult]]:
            return list(await asyncio.gather(*(self._rate(p) for p in missing)))

        rated = iter(self.loop.run(rate_missing()) if missing else [])
        judged = iter([next(rated) if r is None else r for r in found])
        results = [next(judged) for _ in prepared]
        return [
            self._aggregate(p, r, found, None if s is None else next(judged))
            for p, r, found, s in zip(prepared, results, scans, seconds, strict=True)
        ]

    # -- judging up front -----------------------------------------------------------------------------------

    def prefetch(self, owner: str, spec: AssessmentSpec) -> bool:
        """Start judging now; `assess` of an equal spec later collects the result instead of calling again. A
        spec that cannot be prepared is left for its test (`owner`) to report."""
        prepared = self._prepared(spec)
        return prepared is not None and self._prefetch(owner, prepared)

    def prefetch_all(self, owned: Sequence[tuple[str, AssessmentSpec]]) -> int:
        """`prefetch` for many specs, a batch at a time, each batch's stored verdicts read in one trip; returns
        how many were scheduled."""
        scheduled = 0
        for start in range(0, len(owned), _READ_AHEAD):
            batch = [(owner, self._prepared(spec)) for owner, spec in owned[start : start + _READ_AHEAD]]
            ready = [
                (owner, prepared, scan_key(prepared.request), _whole_keys(prepared))
                for owner, prepared in batch
                if prepared is not None
            ]
            ahead = [key for _, _, scanned, keys in ready for key in (scanned, *(keys or ()))]
            with self.store.reading_ahead(ahead):
                for owner, prepared, scanned, keys in ready:  # scanned now too, its memo read with the verdicts
                    found = scan(prepared.request, self.store, scanned)
                    scheduled += self._prefetch(owner, prepared, found, keys)
        return scheduled

    def _prepared(self, spec: AssessmentSpec) -> Prepared | None:
        try:
            return self.prepare(spec)
        except (UsageError, TypeError):
            return None

    def _prefetch(
        self, owner: str, prepared: Prepared, found: Scan | None = None, keys: Sequence[str] | None = None
    ) -> bool:
        counted = not self.shares_prefetch  # a worker's share: read again by the worker whose test runs it
        results = self._cached(prepared, counted, keys)
        future = self.loop.submit(self._rate_up_front(prepared)) if results is None else finished(results)
        hits = 0 if counted or results is None else len(results)
        self.prefetcher.add(Prefetched(owner, prepared, future, hits, found))
        return True

    async def _rate_up_front(self, prepared: Prepared) -> list[JudgeResult]:
        """Across processes, judging up front waits its turn before it claims its verdicts: a claim is written,
        refreshed every heartbeat and waited on by other workers, so only judging about to call holds one, not
        the whole suite queued behind the concurrency limit."""
        if not self.rater.across_processes:
            return await self._rate(prepared)
        async with self._up_front:
            return await self._rate(prepared)

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


def _whole_keys(prepared: Prepared) -> list[str] | None:
    """The panel members' verdict keys of a request asked whole (a per-item one is read question by question)."""
    if not prepared.request.criteria or prepared.per_item:
        return None
    return Rater.keys(prepared.panel, prepared.request)


def _verdict(assessment: Assessment) -> tuple[Outcome, dict[str, str | None]]:
    """What a second opinion is compared on: the consensus outcome and each criterion's consensus level."""
    outcome = assessment.provisional or assessment.outcome
    return outcome, {cid: c.consensus for cid, c in assessment.criteria.items()}


def _describe(verdict: tuple[Outcome, dict[str, str | None]]) -> str:
    outcome, levels = verdict
    return f"{outcome.value}: " + ", ".join(f"{cid}={level}" for cid, level in levels.items())
