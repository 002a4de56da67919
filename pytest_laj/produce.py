"""Producers: the system under test, declared once, turning a case's input and context into the output to judge.

Produced outputs are cached like verdicts, keyed by the case and a producer version the user bumps when the
system under test changes, so a rerun judges exactly what was produced before.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pytest_laj.case import Case

__all__ = ["Producer"]


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
