"""Verdicts for a prepared request: each judge's from the store, or asked once under a claim and then kept.

Several tests (or xdist workers) may need the same missing verdict at once: one asks the judge, the others
wait and read what it kept. Across processes that is a claim in the cache; within one, a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from pytest_laj.core.models import JudgeResult, JudgeVerdict
from pytest_laj.judges.base import Judge
from pytest_laj.judges.panel import Panel
from pytest_laj.judges.protocol import JudgeRequest, verdict_problem
from pytest_laj.store.cache import Store
from pytest_laj.store.keys import verdict_key

__all__ = ["CallCounts", "Rater"]


@dataclass
class CallCounts:
    """What this process asked of judges: every attempt made, and every verdict read from the store. Added to
    from the tests' thread (cache reads) and the judge loop's (calls), so under a lock."""

    calls: int = 0
    cache_hits: int = 0
    cost_usd: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, calls: int = 0, cache_hits: int = 0, cost_usd: float = 0.0) -> None:
        with self._lock:
            self.calls += calls
            self.cache_hits += cache_hits
            self.cost_usd += cost_usd


class Rater:
    def __init__(self, store: Store, across_processes: bool) -> None:
        self.store = store
        self.across_processes = across_processes  # xdist workers share the store: claims, not locks
        self.counts = CallCounts()
        self._key_locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @staticmethod
    def key(judge: Judge, request: JudgeRequest, sample: int = 0) -> str:
        """`sample` numbers panel members alike in everything that changes a verdict (three samples of one model
        at one temperature): each keeps its own verdict, not one answer read three times."""
        criteria = [c.id for c in request.criteria]
        member = judge.identity() if sample == 0 else {"judge": judge.identity(), "sample": sample}
        turns = None if request.conversation is None else request.conversation.key()
        judged = (request.output, request.input, request.context, turns)
        return verdict_key(member, request.rubric.fingerprint(), criteria, *judged, item=request.item)

    @staticmethod
    def samples(panel: Panel) -> list[int]:
        """Each member's sample number: how many members before it in the panel share its identity."""
        identities = [judge.identity() for judge in panel.judges]
        return [identities[:index].count(identity) for index, identity in enumerate(identities)]

    @classmethod
    def keys(cls, panel: Panel, request: JudgeRequest) -> list[str]:
        """Each member's key, numbering repeats of one identity in panel order."""
        return [cls.key(judge, request, sample) for judge, sample in zip(panel.judges, cls.samples(panel), strict=True)]

    def cached(
        self, panel: Panel, request: JudgeRequest, count: bool = True, keys: Sequence[str] | None = None
    ) -> list[JudgeResult] | None:
        """Every judge's verdict from the store, or None at the first one missing: an output judged before needs
        no trip through the event loop. `count`: add the reads to the cache hits now. `keys`: the members' keys,
        where the caller worked them out already."""
        if not self.store.reads:
            return None
        results = []
        for judge, key in zip(panel.judges, self.keys(panel, request) if keys is None else keys, strict=True):
            verdict = self.stored(key, request)
            if verdict is None:
                return None
            results.append(JudgeResult(judge=judge.name, weight=judge.weight, verdict=verdict, cached=True))
        self.counts.add(cache_hits=len(results) if count else 0)
        return results

    async def rate(self, panel: Panel, request: JudgeRequest) -> list[JudgeResult]:
        members = zip(panel.judges, self.keys(panel, request), strict=True)
        return list(await asyncio.gather(*(self.rate_one(panel, judge, key, request) for judge, key in members)))

    def stored(self, key: str, request: JudgeRequest) -> JudgeVerdict | None:
        """A stored verdict that answers the request; an incomplete one (written by an older version, or edited
        on disk) is a miss, and the judge is asked again."""
        verdict = self.store.verdict(key)
        return verdict if verdict is not None and verdict_problem(verdict, request) is None else None

    def _hit(self, judge: Judge, key: str, request: JudgeRequest) -> JudgeResult | None:
        verdict = self.stored(key, request)
        if verdict is None:
            return None
        self.counts.add(cache_hits=1)
        return JudgeResult(judge=judge.name, weight=judge.weight, verdict=verdict, cached=True)

    async def rate_one(self, panel: Panel, judge: Judge, key: str, request: JudgeRequest) -> JudgeResult:
        """One judge's verdict for one request (a per-item question among them): from the store, or asked once
        under a claim and kept."""
        if (hit := self._hit(judge, key, request)) is not None:
            return hit
        if not self.store.calls_judges:
            return JudgeResult(
                judge=judge.name,
                weight=judge.weight,
                error=f"replay mode: no cached verdict from this judge for this output (key {key[:12]})",
                error_kind="replay_miss",
            )
        if not self.store.reads:
            return self._keep(key, await self._ask(panel, judge, request))
        async with self._exclusive(key, panel.policy.claim_seconds):
            if (hit := self._hit(judge, key, request)) is not None:  # another worker may have judged it while we waited
                return hit
            return self._keep(key, await self._ask(panel, judge, request))

    async def _ask(self, panel: Panel, judge: Judge, request: JudgeRequest) -> JudgeResult:
        result = await panel.ask(judge, request)
        self.counts.add(calls=result.attempts, cost_usd=result.cost_usd)
        return result

    def _keep(self, key: str, result: JudgeResult) -> JudgeResult:
        if result.verdict is not None:
            self.store.keep_verdict(key, result.verdict, result.judge)
        return result

    @contextlib.asynccontextmanager
    async def _exclusive(self, key: str, hold: float) -> AsyncIterator[None]:
        """Compute one missing verdict at a time: across xdist workers by a claim in the cache, within a single
        process by a lock, which costs no disk writes."""
        if self.across_processes:
            async with self.store.cache.claim(key, hold):
                yield
            return
        lock, users = self._key_locks.get(key, (asyncio.Lock(), 0))
        self._key_locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._key_locks.pop(key)
            if users > 1:
                self._key_locks[key] = (lock, users - 1)
