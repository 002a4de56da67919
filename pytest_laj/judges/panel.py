"""The panel and its call policy: how one judge is asked, with bounds, a timeout, retries and a budget.

A judge that errors, times out or answers something unusable is retried where that can help and then counted
as missing, with the reason kept. It never contributes a verdict it did not give.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from pytest_laj.core.models import JudgeResult
from pytest_laj.core.redact import redact
from pytest_laj.errors import UsageError
from pytest_laj.judges.base import Judge
from pytest_laj.judges.budget import Budget, BudgetExhausted
from pytest_laj.judges.limits import RateLimits
from pytest_laj.judges.protocol import InvalidVerdict, JudgeRequest, verdict_problem

__all__ = ["CallPolicy", "Panel", "RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter; a provider's Retry-After instead pauses all of the judge's calls (up to
    `max_delay`: see limits)."""

    retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 20.0

    def delay(self, attempt: int) -> float:
        backoff: float = min(self.base_delay * 2 ** (attempt - 1), self.max_delay)
        return backoff * random.uniform(0.5, 1.5)


def _describe(judge: Judge, error: BaseException, timeout: float) -> str:
    if isinstance(error, TimeoutError) and not str(error):
        return f"timed out after {timeout:g} s"
    return redact(judge.describe(error)[:400], judge.secrets())


@dataclass
class CallPolicy:
    """What every judge call of a session shares: the concurrency bounds, the retry policy, timeout, budget and
    rate limits."""

    limiter: asyncio.Semaphore
    retry: RetryPolicy
    timeout: float
    budget: Budget
    limits: RateLimits
    prepared: set[int] = field(default_factory=set)
    preparing: dict[int, asyncio.Lock] = field(default_factory=dict)
    refused: dict[int, str] = field(default_factory=dict)

    @property
    def refusal(self) -> str | None:
        """The first judge that refused to prepare (a configuration mistake): the run should stop on it."""
        return next(iter(self.refused.values()), None)

    @property
    def claim_seconds(self) -> float:
        """How long a claim on a missing verdict may stand before other workers stop waiting for it."""
        return self.timeout * (self.retry.retries + 2) + self.retry.max_delay * (self.retry.retries + 1)


class Panel:
    """The judges for one assessment, asked under the session's call policy."""

    def __init__(self, judges: Sequence[Judge], policy: CallPolicy) -> None:
        self.judges = list(judges)
        self.policy = policy

    async def ask(self, judge: Judge, request: JudgeRequest) -> JudgeResult:
        """Call with retries on transient failures and one repair re-ask on an unusable answer."""
        policy = self.policy
        result = JudgeResult(judge=judge.name, weight=judge.weight)
        if id(judge) not in policy.prepared:
            async with policy.preparing.setdefault(id(judge), asyncio.Lock()):  # once, however many calls start
                if id(judge) not in policy.prepared and id(judge) not in policy.refused:
                    try:
                        await asyncio.to_thread(judge.prepare)
                    except UsageError as error:
                        policy.refused[id(judge)] = str(error)
                        raise
                    policy.prepared.add(id(judge))
            if id(judge) in policy.refused:  # a new error each time: one raised twice would share a traceback
                raise UsageError(policy.refused[id(judge)])
        attempt, cost, repaired, spent = 0, 0.0, False, 0.0  # spent: seconds in calls, not queued or backing off
        while True:
            attempt += 1
            try:
                policy.budget.reserve_call()
                async with policy.limits.call(judge, request) as call, policy.limiter:
                    started = time.monotonic()
                    try:
                        verdict = await asyncio.wait_for(judge.rate(request), policy.timeout)
                    finally:
                        spent += time.monotonic() - started
                    call.used(verdict.tokens)
                problem = verdict_problem(verdict, request)  # whichever judge answered, custom ones too
                if problem is not None:
                    raise InvalidVerdict(problem, cost_usd=verdict.cost_usd)
                cost += verdict.cost_usd or 0.0
                policy.budget.spend(verdict.cost_usd)
                update = {"verdict": verdict, "attempts": attempt, "cost_usd": cost, "latency_s": spent}
                return result.model_copy(update=update)
            except BudgetExhausted as error:
                update = {"error": str(error), "attempts": attempt - 1, "cost_usd": cost, "budget_exhausted": True}
                return result.model_copy(update={**update, "error_kind": "budget", "latency_s": spent})
            except InvalidVerdict as error:
                cost += error.cost_usd or 0.0
                policy.budget.spend(error.cost_usd)
                if not repaired and error.answer is not None:
                    request, repaired = request.repaired(error.answer, error.problem), True
                    continue
                reason = redact(
                    f"invalid verdict{' after a repair re-ask' if repaired else ''}: {error}", judge.secrets()
                )
                update = {"error": reason, "attempts": attempt, "cost_usd": cost, "latency_s": spent}
                return result.model_copy(update={**update, "error_kind": "invalid_verdict"})
            except asyncio.CancelledError:
                raise
            except Exception as error:
                reason = _describe(judge, error, policy.timeout)
                if attempt > policy.retry.retries or not judge.is_transient(error):
                    if attempt > 1:
                        reason += f" (after {attempt} attempts)"
                    kind = "timeout" if isinstance(error, TimeoutError) else type(error).__name__
                    update = {"error": reason, "attempts": attempt, "cost_usd": cost, "latency_s": spent}
                    return result.model_copy(update={**update, "error_kind": kind})
                if judge.retry_after(error) is None:  # one that names a wait paused the judge's calls: see limits
                    await asyncio.sleep(policy.retry.delay(attempt))
