"""Per-judge rate limits: token buckets for requests and tokens a minute, and adaptive concurrency (AIMD).

A judge's `rpm` and `tpm` buckets live in a `BucketStore`. Without xdist that is a dict in the process; under
xdist it is a diskcache under the temp directory keyed by the run id, changed in transactions, so the workers
of a run together keep the limit. A Redis store can take its place by implementing `BucketStore.update`.

The in-flight limit and a provider's Retry-After pause are per process: each worker backs off on the 429s it
sees (the shared buckets already keep the workers' combined rate).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pytest_laj.judges.base import Judge
from pytest_laj.judges.budget import run_state
from pytest_laj.judges.protocol import JudgeRequest

__all__ = ["AdaptiveLimit", "BucketStore", "DiskBuckets", "LocalBuckets", "RateLimits", "TokenBucket"]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
BucketState = tuple[float, float]
"""The tokens a bucket holds (negative: owed by calls already let through) and the time that was so."""


class BucketStore(Protocol):
    """Where buckets live: one atomic read-modify-write of a key is all a bucket needs from it."""

    def update(self, key: str, change: Callable[[BucketState | None], BucketState]) -> BucketState:
        """Replace the state under `key` (None: never set) by `change(state)` atomically; return the new state."""
        ...


class LocalBuckets:
    """Buckets of one process."""

    def __init__(self) -> None:
        self._states: dict[str, BucketState] = {}
        self._lock = threading.Lock()

    def update(self, key: str, change: Callable[[BucketState | None], BucketState]) -> BucketState:
        with self._lock:
            self._states[key] = change(self._states.get(key))
            return self._states[key]


class DiskBuckets:
    """Buckets shared by the xdist workers of one run: a diskcache keyed by the run id, changed in transactions."""

    def __init__(self, run_id: str) -> None:
        import diskcache

        self._cache: Any = diskcache.Cache(str(run_state("rates", run_id)))

    def update(self, key: str, change: Callable[[BucketState | None], BucketState]) -> BucketState:
        with self._cache.transact():
            old = self._cache.get(key)
            new = change(None if old is None else (float(old[0]), float(old[1])))
            self._cache.set(key, new)
            return new


@dataclass
class TokenBucket:
    """`per_minute` tokens a minute, spread evenly: bursts of at most one second's share (one token at least).

    A call reserves its tokens at once and waits until the bucket could pay for them, so waiting callers, in
    any process, queue in order without polling. A call larger than the burst goes when the bucket is full and
    leaves a debt the next calls wait out."""

    key: str
    per_minute: float
    store: BucketStore
    clock: Clock

    @property
    def rate(self) -> float:
        return self.per_minute / 60

    @property
    def burst(self) -> float:
        return max(1.0, self.rate)

    def _refilled(self, state: BucketState | None, now: float) -> BucketState:
        level, stamp = state if state is not None else (self.burst, now)
        return min(self.burst, level + max(0.0, now - stamp) * self.rate), max(now, stamp)

    def reserve(self, amount: float) -> float:
        """Take `amount` tokens; the seconds to wait before using them."""
        now = self.clock()
        wait = 0.0

        def take(state: BucketState | None) -> BucketState:
            nonlocal wait
            level, stamp = self._refilled(state, now)
            wait = max(0.0, min(amount, self.burst) - level) / self.rate
            return level - amount, stamp

        self.store.update(self.key, take)
        return wait

    def adjust(self, amount: float) -> None:
        """Give back tokens reserved but not used (negative: take what was used beyond the reservation)."""
        now = self.clock()

        def give(state: BucketState | None) -> BucketState:
            level, stamp = self._refilled(state, now)
            return min(self.burst, level + amount), stamp

        self.store.update(self.key, give)


@dataclass(frozen=True)
class Ticket:
    """One admitted call: the limit's generation when it started, and the seconds it waited on a pause."""

    generation: int
    paused: float


class AdaptiveLimit:
    """A judge's in-flight bound: halved (not below 1) when the provider says it is rate limited, then raised by
    one per window of successes (as many as the bound) back up to `ceiling`. Calls that started before a decrease
    do not decrease it again, so a burst of 429s halves it once. A Retry-After pauses every new call until it
    passes. Used from one event loop."""

    def __init__(self, ceiling: int, clock: Clock, sleep: Sleep) -> None:
        self.ceiling = ceiling
        self.limit = ceiling
        self.in_flight = 0
        self.paused_until = 0.0
        self._clock = clock
        self._sleep = sleep
        self._generation = 0
        self._successes = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self) -> Ticket:
        paused = 0.0
        while True:
            pause = self.paused_until - self._clock()
            if pause > 0:
                await self._sleep(pause)
                paused += pause
            elif self.in_flight < self.limit:
                self.in_flight += 1
                return Ticket(self._generation, paused)
            else:
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                try:
                    await waiter
                except asyncio.CancelledError:
                    if waiter.done() and not waiter.cancelled():  # woken, then cancelled: pass the slot on
                        self._wake()
                    raise

    def release(self, ticket: Ticket, *, succeeded: bool, limited: bool, pause: float | None) -> None:
        self.in_flight -= 1
        if pause is not None:
            self.paused_until = max(self.paused_until, self._clock() + pause)
        if limited and ticket.generation == self._generation:
            self.limit = max(1, self.limit // 2)
            self._generation += 1
            self._successes = 0
        elif succeeded and self.limit < self.ceiling:
            self._successes += 1
            if self._successes >= self.limit:
                self.limit += 1
                self._successes = 0
        self._wake()

    def _wake(self) -> None:
        """Wake the longest waiting, as many as there are free slots: waking every waiter on every release
        would cost each release as many wake-ups as calls queued (thousands, when a suite is judged up front)."""
        free = self.limit - self.in_flight
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # one cancelled meanwhile keeps no slot from the rest
                waiter.set_result(None)
                free -= 1


class Call:
    """One call under a judge's limits; `used` corrects the token bucket by what the reply says it cost."""

    def __init__(self, bucket: TokenBucket | None, estimate: int) -> None:
        self._bucket = bucket
        self._estimate = estimate

    def used(self, tokens: int | None) -> None:
        if self._bucket is not None and tokens is not None:
            self._bucket.adjust(self._estimate - tokens)


class RateLimits:
    """Every judge's limits in one session, by judge name, and the seconds calls waited on them (token buckets and
    Retry-After pauses, not the in-flight bound)."""

    def __init__(
        self,
        ceiling: int,
        max_pause: float,
        run_id: str | None = None,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.ceiling = ceiling
        self.max_pause = max_pause
        self._run_id = run_id
        self._clock = clock
        self._sleep = sleep
        self._store: BucketStore | None = None
        self._buckets: dict[str, TokenBucket] = {}
        self._limits: dict[str, AdaptiveLimit] = {}
        self._waited: dict[str, float] = {}
        self._lock = threading.Lock()  # the loop's thread adds, the test's reads at the end

    def waited(self) -> dict[str, float]:
        with self._lock:
            return dict(self._waited)

    def _wait(self, judge: Judge, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self._waited[judge.name] = self._waited.get(judge.name, 0.0) + seconds

    def _bucket(self, judge: Judge, kind: str, per_minute: float | None) -> TokenBucket | None:
        if per_minute is None:
            return None
        key = f"{judge.name}\0{kind}"
        if key not in self._buckets:
            if self._store is None:
                self._store = DiskBuckets(self._run_id) if self._run_id else LocalBuckets()
            self._buckets[key] = TokenBucket(key, per_minute, self._store, self._clock)
        return self._buckets[key]

    def limit(self, judge: Judge) -> AdaptiveLimit:
        if judge.name not in self._limits:
            ceiling = min(judge.max_concurrency or self.ceiling, self.ceiling)
            self._limits[judge.name] = AdaptiveLimit(ceiling, self._clock, self._sleep)
        return self._limits[judge.name]

    @contextlib.asynccontextmanager
    async def call(self, judge: Judge, request: JudgeRequest) -> AsyncIterator[Call]:
        """Admit one call: wait out a pause, for an in-flight slot, then for the judge's buckets."""
        limit = self.limit(judge)
        ticket = await limit.acquire()
        self._wait(judge, ticket.paused)
        succeeded, limited, pause = False, False, None
        try:
            requests = self._bucket(judge, "rpm", judge.rpm)
            tokens = self._bucket(judge, "tpm", judge.tpm)
            estimate = judge.estimate_tokens(request) if tokens is not None else 0
            wait = max(requests.reserve(1) if requests else 0.0, tokens.reserve(estimate) if tokens else 0.0)
            if wait > 0:
                await self._sleep(wait)
                self._wait(judge, wait)
            yield Call(tokens, estimate)
            succeeded = True
        except Exception as error:
            limited = judge.is_rate_limited(error)
            asked = judge.retry_after(error)
            pause = None if asked is None else min(max(asked, 0.0), self.max_pause)
            raise
        finally:
            limit.release(ticket, succeeded=succeeded, limited=limited, pause=pause)
