"""Every error pytest-laj raises on purpose shares one base; configuration mistakes share one subclass.

Only a `UsageError` is shown to the user as a usage error without a traceback: anything else escaping the
plugin is a bug, and its traceback is the most useful thing to show.
"""

from __future__ import annotations

__all__ = ["LajError", "UsageError"]


class LajError(Exception):
    """Base of the errors pytest-laj raises on purpose."""


class UsageError(LajError, ValueError):
    """The configuration or a call cannot work (an unknown rubric, a bad option, no judges...); the message
    names what is wrong and how to fix it."""
