"""One YAML loader for every file pytest-laj reads (rubrics, case files, simulator rules) and judge options.

YAML aliases let a few lines stand for a structure of billions of nodes (a "billion laughs" bomb): the parser
builds it as shared references in microseconds, and whatever walks it next (validation, a repr in an error
message, a cache key) runs until the machine gives up. So a document is parsed, then measured with a walk that
stops at a budget, before anything else sees it; the budget only bites a document whose aliases expand it far
beyond its own size.
"""

from __future__ import annotations

import reprlib
from typing import Any, ClassVar

import yaml

from pytest_laj.errors import UsageError

__all__ = ["MAX_CHARS", "MAX_DEPTH", "YamlError", "load_yaml", "short_repr"]

MAX_CHARS = 64 * 1024 * 1024
MAX_DEPTH = 100
_SPARE_NODES = 10_000  # what aliases may add to a small document before it counts as expanding

# libyaml's loader, where PyYAML was built with it, parses about five times faster; it also caps nesting at 1000.
_BASE: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class _Loader(_BASE):  # type: ignore[valid-type,misc]
    """Plain data without dates: nothing pytest-laj reads is a date, and `api_version=2024-06-01`, a case id or a
    rubric version that looks like one must stay the text it is."""

    yaml_implicit_resolvers: ClassVar[dict[Any, list[tuple[str, Any]]]] = {
        first: [(tag, pattern) for tag, pattern in resolvers if tag != _TIMESTAMP]
        for first, resolvers in _BASE.yaml_implicit_resolvers.items()
    }


class YamlError(UsageError):
    """A YAML document cannot be read; the message names the source and the line."""


def load_yaml(text: str, source: str) -> Any:
    """Parse one YAML document of plain data, refusing one too large, too deep or inflated by aliases."""
    if len(text) > MAX_CHARS:
        raise YamlError(f"{source}: {len(text)} characters is larger than the {MAX_CHARS} pytest-laj reads")
    try:
        data = yaml.load(text, Loader=_Loader)  # a safe loader: CSafeLoader or SafeLoader
    except yaml.MarkedYAMLError as exc:
        raise YamlError(f"{source}: not valid YAML{_where(exc)}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise YamlError(f"{source}: not valid YAML: {exc}") from None
    except RecursionError:  # the pure-Python loader, without libyaml's nesting cap
        raise YamlError(f"{source}: nested more deeply than {MAX_DEPTH} levels") from None
    _check_size(data, source, budget=len(text) + _SPARE_NODES)
    return data


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 2, 60, 60
_SHORT.maxlist = _SHORT.maxdict = _SHORT.maxtuple = _SHORT.maxset = 4


def short_repr(value: Any) -> str:
    """A repr for an error message that looks at a few items of a value, however large the value is."""
    return _SHORT.repr(value)


def _where(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _check_size(data: Any, source: str, budget: int) -> None:
    """Count the nodes as a reader will see them (an alias counts each time it is used), up to `budget`.

    Iterative, so a deep or self-referencing document (`&a [*a]`) ends at a limit, not in a RecursionError."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    seen = 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > budget:
            raise YamlError(
                f"{source}: its aliases expand it to more than {budget} nodes (a YAML bomb?); "
                "write the repeated parts out or use fewer aliases"
            )
        if depth > MAX_DEPTH:
            raise YamlError(f"{source}: nested more deeply than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            stack.extend((item, depth + 1) for pair in node.items() for item in pair)
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)
