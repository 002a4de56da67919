"""Waiting on another worker's claim reads the claim; it writes (locking the whole cache against every worker's
writes) only to take the claim once it is gone."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pytest_laj.store.cache import VerdictCache


def _counting(cache: VerdictCache, method: str, calls: list[str]) -> None:
    """Count `method` calls on the diskcache under `cache`."""
    disk = cache._open()
    original = getattr(disk, method)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(method)
        return original(*args, **kwargs)

    setattr(disk, method, counted)


def test_a_waiter_reads_the_claim_and_writes_once_to_take_it(tmp_path: Path) -> None:
    holder, waiter = VerdictCache(tmp_path / "cache"), VerdictCache(tmp_path / "cache")  # two workers' connections
    writes: list[str] = []
    reads: list[str] = []
    _counting(waiter, "add", writes)
    _counting(waiter, "get", reads)
    order: list[str] = []

    async def scenario() -> None:
        held, release = asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with holder.claim("k", hold=60):
                held.set()
                await release.wait()
                order.append("holder out")

        async def wait() -> None:
            await held.wait()
            async with waiter.claim("k", hold=60):
                order.append("waiter in")

        async def release_after_five_looks() -> None:
            while len(reads) < 5:  # the waiter has looked at the held claim five times
                await asyncio.sleep(0.01)
            release.set()

        await asyncio.wait_for(asyncio.gather(hold(), wait(), release_after_five_looks()), timeout=60)

    asyncio.run(scenario())
    assert order == ["holder out", "waiter in"]
    assert len(reads) >= 5
    assert writes == ["add", "add"]  # the first try, then the take once the claim was seen gone
    assert holder._open().get("claim:k") is None
    holder.close()
    waiter.close()
