"""One thread at a time in `ast.parse`, on the CPython releases where two at once can fail.

Before 3.11.8, CPython keeps the AST constructor's recursion depth in state the whole interpreter shares
(gh-106905). A garbage collection inside the constructor runs finalizers, which may hand the GIL to another
thread; if that thread parses too, one of them raises `SystemError: AST constructor recursion depth mismatch`
for a tree it built correctly. The judge loop's thread formats tracebacks (litellm does on every failed call,
and on 3.11 a traceback's caret lines call `ast.parse`) while pytest parses source on the main thread to show a
failure or rewrite a test module's asserts: a run could abort with an INTERNALERROR. Every such parse goes
through `ast.parse`, so a lock around it makes the overlap impossible; nothing is caught or retried.
"""

from __future__ import annotations

import ast
import functools
import sys
import threading
from typing import Any

__all__ = ["RACY_AST", "serialize_ast_parse"]

RACY_AST = sys.version_info < (3, 11, 8) or (3, 12) <= sys.version_info < (3, 12, 2)
_lock = threading.RLock()  # re-entrant: a finalizer run mid-parse may itself parse on the same thread


def serialize_ast_parse() -> None:
    """Install the lock once, where the interpreter has the race; idempotent."""
    if not RACY_AST or getattr(ast.parse, "_laj_serialized", False):
        return
    parse = ast.parse

    @functools.wraps(parse)
    def serialized(*args: Any, **kwargs: Any) -> Any:
        with _lock:
            return parse(*args, **kwargs)

    serialized._laj_serialized = True  # type: ignore[attr-defined]
    ast.parse = serialized
