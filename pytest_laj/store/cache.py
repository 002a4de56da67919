"""The verdict cache: one valid JudgeVerdict per (judge, rubric, criteria, input, context, output), in an
embedded diskcache directory (the default store; `store.backend` has what every store shares).

diskcache writes are atomic, so nothing half-written is ever read back.

A cache that cannot be used (full, corrupt, read-only, not ours) is one `CacheError` naming the directory and
the remedy, raised where it is found and remembered as `broken`, so the run can stop on it once. Replay opens
the directory read-only and never writes, so it works on a read-only directory or file system.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import os
import socket
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pytest_laj.core.models import JudgeVerdict
from pytest_laj.core.modes import CacheMode
from pytest_laj.store.backend import HEARTBEAT_SECONDS, STALE_BEATS, Backend, CacheError
from pytest_laj.store.keys import claim_key

__all__ = ["HEARTBEAT_SECONDS", "LAST_RUN", "STALE_BEATS", "CacheError", "Store", "VerdictCache", "open_backend"]


_PROBE = "pytest-laj:probe"
_KEYS_PER_QUERY = 500


def _alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_REMEDY = "Point laj_cache_dir elsewhere, delete the directory, or run with --laj-cache off."


def _trouble(where: Path, error: BaseException) -> str:
    """What is wrong with the cache directory, and what to do, from the error SQLite or the OS gave."""
    text = str(error)
    number = getattr(error, "errno", None)
    if number == errno.ENOSPC or "disk is full" in text:
        return (
            f"the verdict cache {where} is full ({text}): free disk space or point laj_cache_dir at a roomier "
            "place; --laj-cache off runs without it"
        )
    if number in (errno.EROFS, errno.EACCES, errno.EPERM) or "readonly" in text or "read-only" in text:
        return (
            f"the verdict cache {where} is read-only ({text}): run with --laj-cache replay to use its verdicts "
            "without writing, point laj_cache_dir at a writable directory, or run with --laj-cache off"
        )
    return f"the verdict cache {where} cannot be used ({text}); it may be corrupt. {_REMEDY}"


class _ReadOnly:
    """A diskcache directory read without writing anything, for replay: a read-only directory or file system,
    or a cache shared read-only in CI. diskcache itself cannot open read-only, so this reads its table the way
    `Cache.get` does, with diskcache's own key and value encoding."""

    def __init__(self, directory: Path) -> None:
        import diskcache

        database = (directory / "cache.db").resolve()
        self._disk = diskcache.Disk(str(directory))
        self._lock = threading.Lock()  # the judge loop's thread and the tests' thread both read
        self._con: sqlite3.Connection | None = None  # no cache yet: every read is a miss
        if not database.exists():
            return
        try:  # WAL needs a writable -shm file; immutable reads what the last clean close left in the file
            self._con = sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True, check_same_thread=False)
            self._con.execute("SELECT 1 FROM Cache LIMIT 1").fetchall()
        except sqlite3.OperationalError:
            self._con = sqlite3.connect(f"{database.as_uri()}?immutable=1", uri=True, check_same_thread=False)

    def get(self, key: str) -> Any:
        return self.get_many([key])[0]

    def get_many(self, keys: Sequence[str]) -> list[Any]:
        """Many entries, a query per few hundred keys (SQLite's limit on a query's parameters is far above)."""
        if self._con is None:
            return [None] * len(keys)
        encoded = [self._disk.put(key) for key in keys]
        found: dict[tuple[Any, bool], Any] = {}
        for start in range(0, len(encoded), _KEYS_PER_QUERY):
            chunk = encoded[start : start + _KEYS_PER_QUERY]
            for raw in {raw for _, raw in chunk}:
                db_keys = [db_key for db_key, of in chunk if of == raw]
                select = (
                    "SELECT key, mode, filename, value FROM Cache WHERE raw = ? AND key IN "
                    f"({','.join('?' * len(db_keys))}) AND (expire_time IS NULL OR expire_time > ?)"
                )
                with self._lock:
                    rows = self._con.execute(select, (raw, *db_keys, time.time())).fetchall()
                found.update({(db_key, raw): self._fetched(*entry) for db_key, *entry in rows})
        return [found.get(key) for key in encoded]

    def _fetched(self, mode: int, filename: str | None, value: Any) -> Any:
        try:
            return self._disk.fetch(mode, filename, value, False)
        except OSError:  # a value file removed since: a miss, as diskcache has it
            return None

    def close(self) -> None:
        if self._con is not None:
            self._con.close()


LAST_RUN = "last-run.json"
"""The report every run leaves beside its verdicts, for the tools that look at the last run."""


def _ours(name: str) -> bool:
    """A file pytest-laj itself keeps in the cache directory (the last run's report, or its temporary)."""
    return name == LAST_RUN or (name.startswith(f".{LAST_RUN}.") and name.endswith(".tmp"))


class VerdictCache(Backend):
    """A diskcache directory, shared safely by xdist workers; read-only (replay) when nothing is to be written."""

    def __init__(
        self,
        directory: Path,
        read_only: bool = False,
        clock: Callable[[], float] = time.monotonic,
        heartbeat: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.directory = directory
        self.read_only = read_only
        self.broken: str | None = None
        self._clock = clock
        self._heartbeat = heartbeat
        self._host = socket.gethostname()
        self._cache: Any = None
        self._batch: _ReadOnly | None = None  # reads many keys at once beside a writable cache
        self._opening = threading.Lock()

    @contextlib.contextmanager
    def _usable(self) -> Iterator[None]:
        """Turn SQLite's and the OS's errors into one `CacheError` that names the directory and the remedy."""
        try:
            yield
        except CacheError as error:
            self.broken = self.broken or str(error)
            raise
        except (sqlite3.Error, OSError) as error:
            self.broken = self.broken or _trouble(self.directory, error)
            raise CacheError(self.broken) from None

    def _open(self) -> Any:
        if self._cache is None:
            with self._opening, self._usable():  # the judge loop's thread and the tests' thread both read
                if self._cache is None:
                    self._cache = self._connect()
        return self._cache

    def _connect(self) -> Any:
        """Open the directory, refusing one that is not ours rather than writing into it."""
        import diskcache

        where = self.directory
        if where.exists() and not where.is_dir():
            raise CacheError(f"the verdict cache {where} is a file, not a directory. {_REMEDY}")
        foreign = [p for p in where.iterdir() if not _ours(p.name)] if where.is_dir() else []
        if foreign and not (where / "cache.db").exists():
            raise CacheError(f"{where} is not a pytest-laj verdict cache (it has files but no cache.db). {_REMEDY}")
        if self.read_only:
            cache: Any = _ReadOnly(where)
        else:
            if where.is_dir() and not os.access(where, os.W_OK):
                raise OSError(errno.EROFS, "the directory is not writable")
            cache = diskcache.Cache(str(where))
        cache.get(_PROBE)
        return cache

    def check(self) -> None:
        """Fail at session start, with the directory named, instead of in every test; a directory that does
        not exist yet is created only when a verdict is first read or written."""
        if self.directory.exists():
            self._open()

    @contextlib.asynccontextmanager
    async def claim(self, key: str, hold: float) -> AsyncIterator[None]:
        """Let one caller at a time, across xdist workers, compute a missing verdict; the others wait for it.

        The holder refreshes its claim every heartbeat. A claim whose holder died is broken: at once on this
        host (its process is gone), after `STALE_BEATS` missed heartbeats from another host (a cache on a
        shared drive); one held longer than `hold` seconds expires.

        A waiter looks at the claim by reading it, and tries to take it (a write, which locks the whole cache
        against every worker's writes) only once it has seen it gone."""
        cache = self._open()
        name = claim_key(key)
        me = {"host": self._host, "pid": os.getpid(), "beat": 0}
        watch: dict[str, Any] = {}
        holder: Any = None
        while holder is not None or not self._add(name, me, hold):
            holder = self._get(name)
            if holder is None:
                continue  # released just now: take it
            if self._abandoned(holder, watch):
                with self._usable(), cache.transact():  # unless another waiter took it over meanwhile
                    if cache.get(name) == holder:
                        cache.delete(name)
                holder = None
                continue
            await asyncio.sleep(0.05)
        beating = asyncio.create_task(self._beat(name, me, hold))
        try:
            yield
        finally:
            beating.cancel()
            with self._usable():
                cache.delete(name)

    def _add(self, name: str, holder: dict[str, Any], hold: float) -> bool:
        with self._usable():
            return bool(self._open().add(name, holder, expire=hold))

    def _get(self, name: str) -> Any:
        with self._usable():
            return self._open().get(name)

    async def _beat(self, name: str, me: dict[str, Any], hold: float) -> None:
        for beat in itertools.count(1):
            await asyncio.sleep(self._heartbeat)
            with self._usable():
                self._open().set(name, {**me, "beat": beat}, expire=hold)

    def _abandoned(self, holder: Any, watch: dict[str, Any]) -> bool:
        """Whether a claim's holder is gone. Another host's clock is never compared with ours: a heartbeat
        that has not changed for `STALE_BEATS` heartbeats of our own clock is a stopped one."""
        if not isinstance(holder, dict):
            return False  # released just now: the next add takes it
        if holder.get("host") == self._host:
            return not _alive(holder.get("pid"))
        now = self._clock()
        seen = (holder.get("host"), holder.get("pid"), holder.get("beat"))
        if watch.get("seen") != seen:
            watch.update(seen=seen, since=now)
            return False
        return bool(now - watch["since"] > STALE_BEATS * self._heartbeat)

    def _read(self, key: str) -> Any:
        with self._usable():
            return self._open().get(key)

    def read_many(self, keys: Sequence[str]) -> list[Any]:
        """In a few queries, through a read-only connection beside diskcache's own (which reads one key a query)."""
        with self._usable():
            cache = self._open()
            if self.read_only:
                return list(cache.get_many(keys))
            if self._batch is None or self._batch._con is None:  # none yet, or opened before the database was
                self._batch = _ReadOnly(self.directory)
            return self._batch.get_many(keys)

    def _write(self, key: str, entry: dict[str, Any]) -> None:
        with self._usable():
            self._open().set(key, entry)

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None
        if self._batch is not None:
            self._batch.close()
            self._batch = None


_UNREAD = object()


class Store:
    """The verdict cache as the run's cache mode lets it be used: the one place where the modes' rules apply.

    Verdicts, produced outputs and memos (figures computed from them: injection scans, the suite's alpha) are
    read only in modes that read and written only in modes that write."""

    def __init__(self, cache: Backend, mode: CacheMode) -> None:
        self.cache = cache
        self.mode = mode
        self._ahead: dict[str, Any] = {}  # entries read ahead, each taken once

    @property
    def reads(self) -> bool:
        return self.mode.reads

    @property
    def writes(self) -> bool:
        return self.mode.writes

    @property
    def calls_judges(self) -> bool:
        return self.mode.calls_judges

    def verdict(self, key: str) -> JudgeVerdict | None:
        if not self.reads:
            return None
        entry = self._ahead.pop(key, _UNREAD)
        return self.cache.get(key) if entry is _UNREAD else self.cache.verdict_of(entry)

    @contextlib.contextmanager
    def reading_ahead(self, keys: Sequence[str]) -> Iterator[None]:
        """Verdicts (and memos) about to be read, fetched in one trip: judging a suite up front reads thousands,
        and a shared store is a network round trip each. Each is taken once (a judge asked later reads again);
        what is left is dropped at the end."""
        if self.reads and keys:
            self._ahead = dict(zip(keys, self.cache.read_many(keys), strict=True))
        try:
            yield
        finally:
            self._ahead = {}

    def keep_verdict(self, key: str, verdict: JudgeVerdict, judge: str) -> None:
        if self.writes:
            self.cache.set(key, verdict, judge)

    def output(self, key: str) -> str | None:
        return self.cache.get_output(key) if self.reads else None

    def keep_output(self, key: str, output: str) -> None:
        if self.writes:
            self.cache.set_output(key, output)

    def get(self, key: str) -> Any:
        """A memo, or None."""
        if not self.reads:
            return None
        entry = self._ahead.pop(key, _UNREAD)
        return self.cache.get_memo(key) if entry is _UNREAD else self.cache.memo_of(entry)

    def set(self, key: str, value: Any) -> None:
        if self.writes:
            self.cache.set_memo(key, value)


def open_backend(directory: Path, url: str | None, read_only: bool) -> Backend:
    """The Redis store at `url` when one is configured (its client imported only then), else the directory."""
    if url:
        from pytest_laj.store.redis_store import RedisStore

        return RedisStore(url, read_only=read_only)
    return VerdictCache(directory, read_only=read_only)
