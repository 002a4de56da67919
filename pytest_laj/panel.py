"""The panel: every judge rates one output concurrently, through the cache, under one retry policy.

A judge that errors, times out or answers something unusable is retried where that can help and then counted
as missing, with the reason kept. It never contributes a verdict it did not give.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_laj.cache import CacheMode, VerdictCache, cache_key
from pytest_laj.judge import Judge
from pytest_laj.prompt import InvalidVerdict, JudgeRequest
from pytest_laj.redact import redact
from pytest_laj.verdict import JudgeResult

__all__ = ["Panel", "RetryPolicy"]


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


class Panel:
    """The judges for one assessment, sharing the session's cache and concurrency bound."""

    def __init__(
        self,
        judges: Sequence[Judge],
        cache: VerdictCache | None,
        mode: CacheMode,
        limiter: asyncio.Semaphore,
        retry: RetryPolicy,
        timeout: float,
    ) -> None:
        self.judges = list(judges)
        self._cache = cache if mode is not CacheMode.OFF else None
        self._mode = mode
        self._limiter = limiter
        self._retry = retry
        self._timeout = timeout

    async def rate(self, request: JudgeRequest) -> list[JudgeResult]:
        return list(await asyncio.gather(*(self._rate_one(judge, request) for judge in self.judges)))

    async def _rate_one(self, judge: Judge, request: JudgeRequest) -> JudgeResult:
        result = JudgeResult(judge=judge.name, weight=judge.weight)
        key = cache_key(
            judge.identity(),
            request.rubric.fingerprint(),
            [c.id for c in request.criteria],
            request.output,
            request.input,
            request.context,
        )
        if self._cache is not None and self._mode.reads:
            cached = self._cache.get(key)
            if cached is not None:
                return result.model_copy(update={"verdict": cached, "cached": True})
        if not self._mode.calls_judges:
            return result.model_copy(
                update={"error": f"replay mode: no cached verdict from this judge for this output (key {key[:12]})"}
            )
        result = await self._call(judge, request, result)
        if result.verdict is not None and self._cache is not None and self._mode.writes:
            self._cache.set(key, result.verdict, judge.name)
        return result

    async def _call(self, judge: Judge, request: JudgeRequest, result: JudgeResult) -> JudgeResult:
        await asyncio.to_thread(judge.prepare)
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._limiter:
                    verdict = await asyncio.wait_for(judge.rate(request), self._timeout)
                return result.model_copy(update={"verdict": verdict, "attempts": attempt})
            except InvalidVerdict as error:
                reason = redact(f"invalid verdict: {error}", judge.secrets())
                return result.model_copy(update={"error": reason, "attempts": attempt})
            except asyncio.CancelledError:
                raise
            except Exception as error:
                reason = _describe(judge, error, self._timeout)
                if attempt > self._retry.retries or not judge.is_transient(error):
                    if attempt > 1:
                        reason += f" (after {attempt} attempts)"
                    return result.model_copy(update={"error": reason, "attempts": attempt})
                await asyncio.sleep(self._retry.delay(attempt, judge.retry_after(error)))
