"""The panel: every judge rates one output concurrently, through the cache, under one retry policy.

A judge that errors, times out or answers something unusable is retried where that can help and then counted
as missing, with the reason kept. It never contributes a verdict it did not give.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from pytest_laj.budget import Budget, BudgetExhausted
from pytest_laj.cache import CacheMode, VerdictCache, cache_key
from pytest_laj.judge import Judge
from pytest_laj.prompt import InvalidVerdict, JudgeRequest
from pytest_laj.redact import redact
from pytest_laj.verdict import JudgeResult

__all__ = ["Panel", "RetryPolicy", "Shared"]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter; a provider's Retry-After wins when it names a wait."""

    retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 20.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        backoff: float = min(self.base_delay * 2 ** (attempt - 1), self.max_delay)
        return backoff * random.uniform(0.5, 1.5)


def _describe(judge: Judge, error: BaseException, timeout: float) -> str:
    if isinstance(error, TimeoutError) and not str(error):
        return f"timed out after {timeout:g} s"
    return redact(judge.describe(error)[:400], judge.secrets())


@dataclass
class Shared:
    """What every panel of a session shares: the cache, the concurrency bounds, the retry policy and budget."""

    cache: VerdictCache | None
    mode: CacheMode
    limiter: asyncio.Semaphore
    retry: RetryPolicy
    timeout: float
    budget: Budget
    across_processes: bool = False  # xdist workers share the cache and must not judge the same output twice
    judge_limits: dict[str, asyncio.Semaphore] = field(default_factory=dict)
    prepared: set[int] = field(default_factory=set)
    _key_locks: dict[str, tuple[asyncio.Lock, int]] = field(default_factory=dict)

    def judge_limit(self, judge: Judge) -> asyncio.Semaphore | contextlib.nullcontext[None]:
        """Providers throttle per key: a judge's own bound applies on top of the session-wide one."""
        if judge.max_concurrency is None:
            return contextlib.nullcontext()
        return self.judge_limits.setdefault(judge.name, asyncio.Semaphore(judge.max_concurrency))

    @contextlib.asynccontextmanager
    async def exclusive(self, key: str) -> AsyncIterator[None]:
        """Compute one missing verdict at a time: across xdist workers by a claim in the cache, within a single
        process by a lock, which costs no disk writes."""
        if self.across_processes and self.cache is not None:
            async with self.cache.claim(key, self.claim_seconds):
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

    @property
    def claim_seconds(self) -> float:
        """How long a claim on a missing verdict may stand before other workers stop waiting for it."""
        return self.timeout * (self.retry.retries + 2) + self.retry.max_delay * (self.retry.retries + 1)


class Panel:
    """The judges for one assessment."""

    def __init__(self, judges: Sequence[Judge], shared: Shared) -> None:
        self.judges = list(judges)
        self._shared = shared
        self._cache = shared.cache if shared.mode is not CacheMode.OFF else None

    async def rate(self, request: JudgeRequest) -> list[JudgeResult]:
        return list(await asyncio.gather(*(self._rate_one(judge, request) for judge in self.judges)))

    def _key(self, judge: Judge, request: JudgeRequest) -> str:
        criteria = [c.id for c in request.criteria]
        return cache_key(
            judge.identity(), request.rubric.fingerprint(), criteria, request.output, request.input, request.context
        )

    def cached(self, request: JudgeRequest) -> list[JudgeResult] | None:
        """Every judge's verdict from the cache, or None at the first one missing: an output judged before
        needs no trip through the event loop."""
        if self._cache is None or not self._shared.mode.reads:
            return None
        results = []
        for judge in self.judges:
            verdict = self._cache.get(self._key(judge, request))
            if verdict is None:
                return None
            results.append(JudgeResult(judge=judge.name, weight=judge.weight, verdict=verdict, cached=True))
        return results

    async def _rate_one(self, judge: Judge, request: JudgeRequest) -> JudgeResult:
        result = JudgeResult(judge=judge.name, weight=judge.weight)
        mode, cache = self._shared.mode, self._cache
        key = self._key(judge, request)
        if cache is not None and mode.reads:
            cached = cache.get(key)
            if cached is not None:
                return result.model_copy(update={"verdict": cached, "cached": True})
        if not mode.calls_judges:
            return result.model_copy(
                update={"error": f"replay mode: no cached verdict from this judge for this output (key {key[:12]})"}
            )
        if cache is None or not mode.reads:
            return self._store(key, await self._call(judge, request, result))
        async with self._shared.exclusive(key):
            cached = cache.get(key)  # another worker may have judged it while we waited
            if cached is not None:
                return result.model_copy(update={"verdict": cached, "cached": True})
            return self._store(key, await self._call(judge, request, result))

    def _store(self, key: str, result: JudgeResult) -> JudgeResult:
        if result.verdict is not None and self._cache is not None and self._shared.mode.writes:
            self._cache.set(key, result.verdict, result.judge)
        return result

    async def _call(self, judge: Judge, request: JudgeRequest, result: JudgeResult) -> JudgeResult:
        """Call with retries on transient failures and one repair re-ask on an unusable answer."""
        shared = self._shared
        if id(judge) not in shared.prepared:
            await asyncio.to_thread(judge.prepare)
            shared.prepared.add(id(judge))
        attempt, cost, repaired = 0, 0.0, False
        while True:
            attempt += 1
            try:
                shared.budget.reserve_call()
                async with shared.judge_limit(judge), shared.limiter:
                    verdict = await asyncio.wait_for(judge.rate(request), shared.timeout)
                cost += verdict.cost_usd or 0.0
                shared.budget.spend(verdict.cost_usd)
                return result.model_copy(update={"verdict": verdict, "attempts": attempt, "cost_usd": cost})
            except BudgetExhausted as error:
                update = {"error": str(error), "attempts": attempt - 1, "cost_usd": cost, "budget_exhausted": True}
                return result.model_copy(update=update)
            except InvalidVerdict as error:
                cost += error.cost_usd or 0.0
                shared.budget.spend(error.cost_usd)
                if not repaired and error.answer is not None:
                    request, repaired = request.repaired(error.answer, error.problem), True
                    continue
                reason = redact(
                    f"invalid verdict{' after a repair re-ask' if repaired else ''}: {error}", judge.secrets()
                )
                return result.model_copy(update={"error": reason, "attempts": attempt, "cost_usd": cost})
            except asyncio.CancelledError:
                raise
            except Exception as error:
                reason = _describe(judge, error, shared.timeout)
                if attempt > shared.retry.retries or not judge.is_transient(error):
                    if attempt > 1:
                        reason += f" (after {attempt} attempts)"
                    return result.model_copy(update={"error": reason, "attempts": attempt, "cost_usd": cost})
                await asyncio.sleep(shared.retry.delay(attempt, judge.retry_after(error)))
