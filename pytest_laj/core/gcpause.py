"""Building many objects that outlive the step that builds them, without the cyclic garbage collector walking
them again and again while they are built."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["paused_gc"]


@contextmanager
def paused_gc(*, freeze: bool = False) -> Iterator[None]:
    """The collector off for the block (as it was after). Every full collection walks every live object, so
    building a hundred thousand that live on triggers collections that cost more than the building; `freeze`
    also moves everything alive at the end out of later collections, for objects that live until the process
    ends."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if enabled:
            gc.enable()
