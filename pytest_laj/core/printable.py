"""Untrusted text, made safe to show: control and bidi characters become visible escapes.

An output under test (or its input, a judge's rationale, a provider's error) can carry ANSI escapes that
rewrite the terminal or a CI log ("PASSED all good" painted over a failure) and bidi overrides that reorder
what a reader sees. A CI runner also reads the log: GitHub Actions obeys `##[command]` anywhere in a line and
`::command::` at its start (Azure Pipelines `##vso[`), so untrusted text could mask a value, set a step's
output or stop the runner reading the annotations that follow. Every channel that shows such text to a person
passes it through `printable` first.
"""

from __future__ import annotations

import re

__all__ = ["printable"]

# C0 controls, DEL and C1 controls; bidi embeddings, overrides, isolates and marks; lone surrogates (which no
# terminal or XML file can encode).
_UNSAFE = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_MULTILINE = re.compile(f"[{_UNSAFE}]")
_ONE_LINE = re.compile(f"[\t\n{_UNSAFE}]")
# The bracket of a `##[` or `##vso[` command, and the first colon of a `::` that begins a line.
_COMMAND = re.compile(r"(?<=##)\[|(?<=##[vV][sS][oO])\[|(?m:^(?=\s*::))(\s*):")


def _escape(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _disarm(match: re.Match[str]) -> str:
    return f"{match[1] or ''}\\x{ord(match[0][-1]):02x}"


def printable(text: str, multiline: bool = False) -> str:
    """`text` with every control and bidi character shown as an escape (`\\x1b`, `\\u202e`); a line break and
    a tab are kept only where the channel is `multiline`. A CI log command in it is disarmed the same way
    (`##\\x5b`, `\\x3a:`)."""
    return _COMMAND.sub(_disarm, (_MULTILINE if multiline else _ONE_LINE).sub(_escape, text))
