"""Untrusted text, made safe to show: control and bidi characters become visible escapes.

An output under test (or its input, a judge's rationale, a provider's error) can carry ANSI escapes that
rewrite the terminal or a CI log ("PASSED all good" painted over a failure) and bidi overrides that reorder
what a reader sees. Every channel that shows such text to a person passes it through `printable` first.
"""

from __future__ import annotations

import re

__all__ = ["printable"]

# C0 controls, DEL and C1 controls; bidi embeddings, overrides, isolates and marks; lone surrogates (which no
# terminal or XML file can encode).
_UNSAFE = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_MULTILINE = re.compile(f"[{_UNSAFE}]")
_ONE_LINE = re.compile(f"[\t\n{_UNSAFE}]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, multiline: bool = False) -> str:
    """`text` with every control and bidi character shown as an escape (`\\x1b`, `\\u202e`); a line break and
    a tab are kept only where the channel is `multiline`."""
    return (_MULTILINE if multiline else _ONE_LINE).sub(_escape, text)
