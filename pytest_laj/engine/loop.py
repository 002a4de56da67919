"""One long-lived asyncio loop on a background thread, for every judge call of the session.

litellm's async clients are bound to the loop that made them, and a fresh loop per test would rebuild them;
one loop also lets sync tests, async tests and batches share one concurrency bound.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from pytest_laj.engine.astlock import serialize_ast_parse

__all__ = ["EventLoopThread"]

T = TypeVar("T")


class EventLoopThread:
    """Started on first use; stopped at session end."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                serialize_ast_parse()  # this thread formats tracebacks while pytest parses source
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="laj-judges", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._ensure())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Block the calling (test) thread until the coroutine finishes on the judge loop."""
        future = self.submit(coro)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise

    async def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await judge work from a test's own event loop (asyncio, or trio through anyio) without blocking it."""
        return await self.wait(self.submit(coro))

    @staticmethod
    async def wait(future: concurrent.futures.Future[T]) -> T:
        if _on_asyncio():
            return await asyncio.wrap_future(future)
        import anyio.to_thread

        return await anyio.to_thread.run_sync(future.result)

    def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        pending = asyncio.run_coroutine_threadsafe(_cancel_pending(), loop)
        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            pending.result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        if not loop.is_running():
            loop.close()


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def _cancel_pending() -> None:
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
