"""The verdict cache: one valid JudgeVerdict per (judge, rubric, criteria, input, context, output).

Entries carry their format and prompt version; an entry from another version is stale, not an error. Only
validated verdicts are written, and diskcache writes are atomic, so nothing half-written is ever read back.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import sqlite3
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pytest_laj.modes import CacheMode
from pytest_laj.prompt import PROMPT_VERSION
from pytest_laj.verdict import JudgeVerdict

__all__ = ["CACHE_FORMAT", "CacheError", "CacheMode", "VerdictCache", "cache_key", "output_key"]

CACHE_FORMAT = 1


class CacheError(RuntimeError):
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


def cache_key(
    judge: Mapping[str, Any],
    rubric_fingerprint: str,
    criteria: Sequence[str],
    output: str,
    input: str | None,
    context: Mapping[str, str],
) -> str:
    """Everything that changes a verdict, and nothing that does not (credentials, endpoints, nonces)."""
    material = {
        "format": CACHE_FORMAT,
        "prompt": PROMPT_VERSION,
        "judge": judge,
        "rubric": rubric_fingerprint,
        "criteria": list(criteria),
        "output": output,
        "input": input,
        "context": dict(context),
    }
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def output_key(producer: str, version: str, case_id: str, input: str | None, context: Mapping[str, Any]) -> str:
    material = {
        "format": CACHE_FORMAT,
        "producer": producer,
        "version": version,
        "case": case_id,
        "input": input,
        "context": dict(context),
    }
    return "output:" + hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


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
        name = f"claim:{key}"
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

    def memo(self, mode: CacheMode) -> CacheMemo:
        return CacheMemo(self, mode)

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None


class CacheMemo:
    """What is computed from cached verdicts and outputs (the suite's alpha, each output's injection scan),
    kept beside them and read or written as the cache mode says verdicts are."""

    def __init__(self, cache: VerdictCache, mode: CacheMode) -> None:
        self.cache = cache
        self.mode = mode

    def get(self, key: str) -> Any:
        if not self.mode.reads:
            return None
        entry = self.cache._open().get(key)
        return entry.get("value") if isinstance(entry, dict) and entry.get("format") == CACHE_FORMAT else None

    def set(self, key: str, value: Any) -> None:
        if self.mode.writes:
            self.cache._open().set(key, {"format": CACHE_FORMAT, "value": value})
