"""Tracebacks formatted on the judge loop's thread while pytest parses source on the main thread never abort a
run with `SystemError: AST constructor recursion depth mismatch` (CPython before 3.11.8)."""

from __future__ import annotations

import ast
import time
import traceback

import pytest

from pytest_laj.engine.astlock import RACY_AST
from pytest_laj.engine.loop import EventLoopThread

SOURCE = "\n".join(f"def f{i}(a, b):\n    return [x + {i} for x in (a, b) if x]" for i in range(300))


class Litter:
    """Garbage with a finalizer: a collection inside the AST constructor runs it, and may switch threads there."""

    def __init__(self) -> None:
        self.cycle = self

    def __del__(self) -> None:
        time.sleep(0)


def fail_deep(depth: int, found: dict[str, int]) -> int:
    if depth == 0:
        return found["missing"] + 1
    return fail_deep(depth - 1, found) + 1


async def format_failures(until: float) -> int:
    """What litellm does on every failed call: format the traceback of the error it caught, many frames deep."""
    formatted = 0
    while time.monotonic() < until:
        litter = [Litter() for _ in range(20)]
        del litter
        try:
            fail_deep(10, {})
        except KeyError:
            formatted += len(traceback.format_exc()) > 0
    return formatted


@pytest.mark.skipif(not RACY_AST, reason="this interpreter keeps the AST constructor's depth per thread")
def test_tracebacks_on_the_judge_thread_and_parsing_on_the_main_thread_do_not_collide() -> None:
    loop = EventLoopThread()
    until = time.monotonic() + 3.0  # without the lock the race shows within a second here
    formatting = loop.submit(format_failures(until))
    parsed = 0
    try:
        while time.monotonic() < until:
            ast.parse(SOURCE)
            parsed += 1
        assert formatting.result(timeout=60) > 0
    finally:
        loop.close()
    assert parsed > 0
