"""The verdict store in a Redis server (`laj_cache_url = redis://host:6379/0`), shared by CI machines.

The same entries under the same keys as the diskcache directory, as JSON. A claim is `SET NX` with an expiry
that the holder's heartbeat refreshes, so a killed holder's claim expires by itself; budget counters are atomic
`INCRBY`s under the run's id, kept a day.

Fail closed: a server that cannot be reached at session start is one usage error naming the URL (never its
password). One that goes away mid-run is `lost`: from then on every read is a miss (the judges are called, never
a PASS from a failed read), writes and claims are skipped, and the run says so once in its summary, going on
without the store rather than stopping a CI run that can still judge. Replay never writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from pytest_laj.core.redact import redact, remember_secrets, url_credentials
from pytest_laj.judges.budget import BudgetExhausted
from pytest_laj.store.backend import HEARTBEAT_SECONDS, STALE_BEATS, Backend, CacheError
from pytest_laj.store.keys import claim_key

__all__ = ["PREFIX", "RedisStore"]

PREFIX = "pytest-laj:"
"""Every key pytest-laj writes in the server begins with this: the database may be shared with other uses."""

_COUNTERS_KEPT = 24 * 3600  # seconds a run's budget counters outlive its last increment
_TIMEOUT = 5.0  # seconds for one command or connection: a server that takes longer is gone
_MGET_KEYS = 500  # keys per MGET: one round trip, a reply of a few hundred kB


class RedisStore(Backend):
    """Verdicts, outputs, memos, claims and budget counters in Redis. The client connects on first use."""

    shared = True

    def __init__(self, url: str, read_only: bool = False, heartbeat: float = HEARTBEAT_SECONDS) -> None:
        remember_secrets(url_credentials(url))
        self.url = url
        self.where = redact(url)
        self.read_only = read_only
        self.broken: str | None = None
        self.lost: str | None = None
        self._heartbeat = heartbeat
        self._client: Any = None

    def _open(self) -> Any:
        if self._client is None:
            try:
                import redis
            except ImportError:
                raise CacheError(
                    f"laj_cache_url is {self.where}, but the redis client is not installed: "
                    "pip install 'pytest-laj[redis]'"
                ) from None
            try:
                self._client = redis.Redis.from_url(
                    self.url, socket_timeout=_TIMEOUT, socket_connect_timeout=_TIMEOUT, retry_on_timeout=False
                )
            except ValueError as error:
                raise CacheError(
                    f"laj_cache_url: {self.where} is not a Redis URL ({redact(str(error))}); expected "
                    "redis://[:password@]host[:port][/db], rediss://... or unix://path"
                ) from None
        return self._client

    def check(self) -> None:
        """Reach the server now: one usage error naming it (its password redacted) and what to do."""
        import redis

        try:
            self._open().ping()
        except redis.RedisError as error:
            self.broken = (
                f"the verdict store {self.where} cannot be reached ({redact(str(error))}): start the Redis server "
                "or fix laj_cache_url (--laj-cache-url, LAJ_CACHE_URL); leave it unset to use the local "
                "laj_cache_dir, or run with --laj-cache off"
            )
            raise CacheError(self.broken) from None

    def _lose(self, error: Exception) -> None:
        """The server went away: go on without it, said once."""
        if self.lost is None:
            self.lost = (
                f"the verdict store {self.where} went away mid-run ({redact(str(error))}); the run went on "
                "without it: verdicts were judged again, not read, and none were stored"
            )

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        import redis

        try:
            yield
        except redis.RedisError as error:
            self._lose(error)

    def _read(self, key: str) -> Any:
        raw = None
        if self.lost is None:
            with self._guard():
                raw = self._open().get(PREFIX + key)
        return _decoded(raw)

    def read_many(self, keys: Sequence[str]) -> list[Any]:
        """One `MGET` per few hundred keys: a round trip each would cost far more than reading."""
        raws: list[Any] = [None] * len(keys)
        for start in range(0, len(keys), _MGET_KEYS):
            if self.lost is not None:
                break
            with self._guard():
                chunk = [PREFIX + key for key in keys[start : start + _MGET_KEYS]]
                raws[start : start + len(chunk)] = self._open().mget(chunk)
        return [_decoded(raw) for raw in raws]

    def _write(self, key: str, entry: dict[str, Any]) -> None:
        if self.read_only or self.lost is not None:
            return
        with self._guard():
            self._open().set(PREFIX + key, json.dumps(entry, separators=(",", ":")))

    @contextlib.asynccontextmanager
    async def claim(self, key: str, hold: float) -> AsyncIterator[None]:
        """`SET NX` with an expiry of `STALE_BEATS` heartbeats, refreshed every heartbeat while the holder is
        at work (another host's clock is never read), so `hold` is not needed: a claim lasts while its holder
        lives. With the server gone, there is no claim to wait on."""
        import redis

        lock = self._open().lock(
            PREFIX + claim_key(key), timeout=STALE_BEATS * self._heartbeat, blocking=False, thread_local=False
        )
        held = False
        while self.lost is None and not held:
            with self._guard():
                held = bool(lock.acquire())
            if not held:
                await asyncio.sleep(0.05)
        beating = asyncio.create_task(self._beat(lock)) if held else None
        try:
            yield
        finally:
            if beating is not None:
                beating.cancel()
                with self._guard(), contextlib.suppress(redis.exceptions.LockError):
                    lock.release()  # only if still ours: an expired claim may be another's now

    async def _beat(self, lock: Any) -> None:
        import redis

        for _ in itertools.count():
            await asyncio.sleep(self._heartbeat)
            with self._guard(), contextlib.suppress(redis.exceptions.LockError):
                lock.reacquire()

    def counter(self, run_id: str) -> _Counters:
        return _Counters(self, f"{PREFIX}budget:{run_id}:")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _decoded(raw: Any) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:  # not ours, or damaged: a miss
        return None


class _Counters:
    """A run's budget counters: one `INCRBY` each, so every worker on every machine draws on one budget. A
    counter the server cannot give is a spent budget: the judge is not called."""

    def __init__(self, store: RedisStore, prefix: str) -> None:
        self._store = store
        self._prefix = prefix

    def _failed(self, error: Exception) -> BudgetExhausted:
        self._store._lose(error)
        return BudgetExhausted(
            f"budget unknown: its counter in {self._store.where} cannot be read ({redact(str(error))}); "
            "judge not called"
        )

    def add(self, name: str, amount: int) -> int:
        import redis

        if self._store.lost is not None:
            raise self._failed(ConnectionError(self._store.lost))
        try:
            pipe = self._store._open().pipeline()
            pipe.incrby(self._prefix + name, amount)
            pipe.expire(self._prefix + name, _COUNTERS_KEPT)
            value, _ = pipe.execute()
        except redis.RedisError as error:
            raise self._failed(error) from None
        return int(value)

    def value(self, name: str) -> int:
        return self.add(name, 0)
