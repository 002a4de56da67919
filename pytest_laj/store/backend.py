"""What every verdict store is: entries (verdicts, produced outputs, memos) in one format, claims on a missing
verdict, and where it lives. The embedded diskcache directory (`store.cache`) and a Redis server
(`store.redis_store`) are the two backends; `store.cache.open_backend` picks one from the configuration.

Entries carry their format and prompt version; an entry from another version is stale, not an error. Only
validated verdicts are written.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from pytest_laj.core.models import JudgeVerdict
from pytest_laj.errors import UsageError
from pytest_laj.judges.protocol import PROMPT_VERSION
from pytest_laj.store.keys import CACHE_FORMAT

if TYPE_CHECKING:
    from pytest_laj.judges.budget import Counter

__all__ = ["HEARTBEAT_SECONDS", "STALE_BEATS", "Backend", "CacheError"]

HEARTBEAT_SECONDS = 2.0  # how often a claim's holder says it is still at work
STALE_BEATS = 3  # heartbeats a claim may miss before it counts as abandoned


class CacheError(UsageError):
    """The verdict store cannot be used; the message names it."""


class Backend(abc.ABC):
    """A verdict store. `broken` is a trouble every later judgment would meet again (the run stops on it);
    `lost` is a shared store gone away mid-run, which the run goes on without and reports."""

    broken: str | None = None
    lost: str | None = None
    shared = False
    """Whether other machines may use the store at once: their claims count even outside one xdist run."""

    @abc.abstractmethod
    def _read(self, key: str) -> Any: ...

    @abc.abstractmethod
    def _write(self, key: str, entry: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    def check(self) -> None:
        """Fail at session start, with the store named, instead of in every test."""

    @abc.abstractmethod
    def claim(self, key: str, hold: float) -> contextlib.AbstractAsyncContextManager[None]:
        """Let one caller at a time, across processes, compute a missing verdict; the others wait for it."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def counter(self, run_id: str) -> Counter | None:
        """Budget counters shared by a run's processes, when the store keeps them; None: the budget's own."""
        return None

    def read_many(self, keys: Sequence[str]) -> list[Any]:
        """The entries of many keys, in order (None where there is none): one at a time here, in one trip where
        the store can fetch several at once."""
        return [self._read(key) for key in keys]

    def get(self, key: str) -> JudgeVerdict | None:
        return self.verdict_of(self._read(key))

    @staticmethod
    def verdict_of(entry: Any) -> JudgeVerdict | None:
        """The verdict an entry holds; None for one of another format or prompt version, or damaged."""
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
        self._write(key, entry)

    def get_output(self, key: str) -> str | None:
        entry = self._read(key)
        if isinstance(entry, dict) and entry.get("format") == CACHE_FORMAT and isinstance(entry.get("output"), str):
            return str(entry["output"])
        return None

    def set_output(self, key: str, output: str) -> None:
        self._write(key, {"format": CACHE_FORMAT, "output": output})

    def get_memo(self, key: str) -> Any:
        """A figure computed from verdicts, or None; a store that fails here is reported once, by `broken`,
        and never stops what only wanted a shortcut (the summary's alpha, an injection scan)."""
        try:
            entry = self._read(key)
        except CacheError:
            return None
        return self.memo_of(entry)

    @staticmethod
    def memo_of(entry: Any) -> Any:
        return entry.get("value") if isinstance(entry, dict) and entry.get("format") == CACHE_FORMAT else None

    def set_memo(self, key: str, value: Any) -> None:
        with contextlib.suppress(CacheError):
            self._write(key, {"format": CACHE_FORMAT, "value": value})
