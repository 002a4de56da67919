"""Building many objects that outlive the step that builds them, without the cyclic garbage collector walking
them again and again while they are built."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["GcPause", "paused_gc"]


@contextmanager
def paused_gc(*, freeze: bool = False) -> Iterator[None]:
    """The collector off for the block (as it was after). Every full collection walks every live object, so
    building a hundred thousand that live on triggers collections that cost more than the building; `freeze`
    also moves everything alive at the end out of later collections, for objects that live until the process
    ends."""
    pause = GcPause()
    pause.start()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        pause.stop()


class GcPause:
    """The collector off from `start` to `stop`, for objects built in one hook and let go in a later one; `stop`
    puts it back as `start` found it, and does nothing twice."""

    def __init__(self) -> None:
        self._was_enabled: bool | None = None

    def start(self) -> None:
        if self._was_enabled is None:
            self._was_enabled = gc.isenabled()
            gc.disable()

    def stop(self) -> None:
        if self._was_enabled is not None:
            if self._was_enabled:
                gc.enable()
            self._was_enabled = None
