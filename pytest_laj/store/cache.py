"""The verdict cache: one valid JudgeVerdict per (judge, rubric, criteria, input, context, output).

Entries carry their format and prompt version; an entry from another version is stale, not an error. Only
validated verdicts are written, and diskcache writes are atomic, so nothing half-written is ever read back.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pytest_laj.core.models import JudgeVerdict
from pytest_laj.core.modes import CacheMode
from pytest_laj.errors import UsageError
from pytest_laj.judges.protocol import PROMPT_VERSION
from pytest_laj.store.keys import CACHE_FORMAT, claim_key

__all__ = ["CacheError", "Store", "VerdictCache"]


class CacheError(UsageError):
    """The cache directory cannot be used; the message names it."""


_PROBE = "pytest-laj:probe"


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


class VerdictCache:
    """A diskcache directory, shared safely by xdist workers."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._cache: Any = None
        self._opening = threading.Lock()

    def _open(self) -> Any:
        if self._cache is None:
            with self._opening:  # the judge loop's thread and the tests' thread both read
                if self._cache is None:
                    self._cache = self._connect()
        return self._cache

    def _connect(self) -> Any:
        """Open the directory, refusing one that is not ours rather than writing into it."""
        import diskcache

        remedy = "Point laj_cache_dir elsewhere, delete the directory, or run with --laj-cache off."
        where = self.directory
        if where.exists() and not where.is_dir():
            raise CacheError(f"the verdict cache {where} is a file, not a directory. {remedy}")
        if where.is_dir() and any(where.iterdir()) and not (where / "cache.db").exists():
            raise CacheError(f"{where} is not a pytest-laj verdict cache (it has files but no cache.db). {remedy}")
        try:
            cache = diskcache.Cache(str(where))
            cache.get(_PROBE)
        except (sqlite3.DatabaseError, OSError) as exc:
            raise CacheError(f"the verdict cache {where} cannot be read ({exc}); it may be corrupt. {remedy}") from exc
        return cache

    def check(self) -> None:
        """Fail at session start, with the directory named, instead of in every test; a directory that does
        not exist yet is created only when a verdict is first read or written."""
        if self.directory.exists():
            self._open()

    @asynccontextmanager
    async def claim(self, key: str, hold: float) -> AsyncIterator[None]:
        """Let one caller at a time, across xdist workers, compute a missing verdict; the others wait for it.

        A claim whose holder died (SIGKILL) is broken at once; one held longer than `hold` seconds expires."""
        cache = self._open()
        name = claim_key(key)
        me = {"host": socket.gethostname(), "pid": os.getpid()}
        while not cache.add(name, me, expire=hold):
            holder = cache.get(name)
            if isinstance(holder, dict) and holder.get("host") == me["host"] and not _alive(holder.get("pid")):
                cache.delete(name)
                continue
            await asyncio.sleep(0.05)
        try:
            yield
        finally:
            cache.delete(name)

    def get(self, key: str) -> JudgeVerdict | None:
        entry = self._open().get(key)
        if not isinstance(entry, dict) or entry.get("format") != CACHE_FORMAT or entry.get("prompt") != PROMPT_VERSION:
            return None
        try:
            return JudgeVerdict.model_validate(entry["verdict"])
        except (KeyError, ValidationError):
            return None

    def set(self, key: str, verdict: JudgeVerdict, judge: str) -> None:
        entry = {
            "format": CACHE_FORMAT,
            "prompt": PROMPT_VERSION,
            "judge": judge,
            "verdict": verdict.model_dump(mode="json"),
        }
        self._open().set(key, entry)

    def get_output(self, key: str) -> str | None:
        entry = self._open().get(key)
        if isinstance(entry, dict) and entry.get("format") == CACHE_FORMAT and isinstance(entry.get("output"), str):
            return str(entry["output"])
        return None

    def set_output(self, key: str, output: str) -> None:
        self._open().set(key, {"format": CACHE_FORMAT, "output": output})

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None


class Store:
    """The verdict cache as the run's cache mode lets it be used: the one place where the modes' rules apply.

    Verdicts, produced outputs and memos (figures computed from them: injection scans, the suite's alpha) are
    read only in modes that read and written only in modes that write."""

    def __init__(self, cache: VerdictCache, mode: CacheMode) -> None:
        self.cache = cache
        self.mode = mode

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
        return self.cache.get(key) if self.reads else None

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
        entry = self.cache._open().get(key)
        return entry.get("value") if isinstance(entry, dict) and entry.get("format") == CACHE_FORMAT else None

    def set(self, key: str, value: Any) -> None:
        if self.writes:
            self.cache._open().set(key, {"format": CACHE_FORMAT, "value": value})
