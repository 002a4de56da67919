"""Producers: the system under test, declared once, turning a case's input and context into the output to judge.

Produced outputs are cached like verdicts, keyed by the case and a producer version the user bumps when the
system under test changes, so a rerun judges exactly what was produced before. xdist workers sharing the store
produce each output once: one under a claim, the others wait for it and read it.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pytest_laj.core.case import Case
from pytest_laj.errors import UsageError
from pytest_laj.store.cache import Store
from pytest_laj.store.keys import output_key

__all__ = ["NO_PRODUCER", "Producer", "Producing"]

NO_PRODUCER = (
    "case {case!r} has no recorded output and no producer is declared: implement the hook "
    "pytest_laj_producer(config) in conftest.py, returning pytest_laj.Producer(fn, version=...)"
)


@dataclass(frozen=True)
class Producer:
    """A sync or async callable `fn(case) -> str`; supply it with the `pytest_laj_producer` hook."""

    fn: Callable[[Case], str | Awaitable[str]]
    version: str = "1"
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or getattr(self.fn, "__qualname__", type(self.fn).__name__)

    async def produce(self, case: Case) -> str:
        """Run it off the judge loop when it blocks, on it when it is a coroutine function."""
        if inspect.iscoroutinefunction(self.fn):
            output = await self.fn(case)
        else:
            output = await asyncio.to_thread(self.fn, case)
            if inspect.isawaitable(output):
                output = await output
        if not isinstance(output, str):
            raise TypeError(
                f"producer {self.label!r} returned {type(output).__name__} for case {case.id!r}; expected str"
            )
        return output


FindProducer = Callable[[], "Producer | None"]


class Producing:
    """The session's producer, found on first need, and its outputs kept in the store by case and version."""

    def __init__(self, find_producer: FindProducer, store: Store, claim_seconds: float | None = None) -> None:
        """`claim_seconds`: processes share the store (read and written): claim an output while producing it."""
        self._find = find_producer
        self._producer: Producer | None = None
        self._store = store
        self._claim_seconds = claim_seconds

    def producer(self, case: Case) -> Producer:
        if self._producer is None:
            self._producer = self._find()
        if self._producer is None:
            raise UsageError(NO_PRODUCER.format(case=case.id))
        return self._producer

    async def produce(self, case: Case) -> str:
        producer = self.producer(case)
        key = output_key(producer.label, producer.version, case.id, case.input, case.context)
        cached = self._store.output(key)
        if cached is not None:
            return cached
        if self._claim_seconds is None:
            return await self._make(producer, case, key)
        async with self._store.cache.claim(key, self._claim_seconds):
            cached = self._store.output(key)  # another worker may have produced it while we waited
            return cached if cached is not None else await self._make(producer, case, key)

    async def _make(self, producer: Producer, case: Case, key: str) -> str:
        output = await producer.produce(case)
        self._store.keep_output(key, output)
        return output
