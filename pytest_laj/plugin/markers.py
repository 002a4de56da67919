"""The `laj` marker: merged once per test (module, class, function; the closest winning), and what a test's
call or its case asks for on top of it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import pytest

from pytest_laj.core.modes import AskMode
from pytest_laj.core.rubric import Rubric
from pytest_laj.engine.spec import AssessmentSpec
from pytest_laj.errors import UsageError

__all__ = ["MARKER_KEYS", "assessment_spec", "marker_settings"]

MARKER_KEYS: dict[str, tuple[type, ...]] = {
    "rubric": (str, Path, Rubric),
    "context": (Mapping,),
    "judges": (list, tuple),
    "thresholds": (Mapping,),
    "ask": (str,),
}


def marker_settings(item: pytest.Item) -> dict[str, Any]:
    """Merge every `laj` marker, the closest winning; context and thresholds merge key by key."""
    merged: dict[str, Any] = {"context": {}, "thresholds": {}}
    for mark in reversed(list(item.iter_markers("laj"))):
        if mark.args:
            raise UsageError(f"{item.nodeid}: @pytest.mark.laj takes keyword arguments only, got {mark.args!r}")
        for key, value in mark.kwargs.items():
            expected = MARKER_KEYS.get(key)
            if expected is None:
                raise UsageError(
                    f"{item.nodeid}: unknown @pytest.mark.laj argument {key!r}; "
                    f"expected one of {', '.join(MARKER_KEYS)}"
                )
            if not isinstance(value, expected):
                raise UsageError(
                    f"{item.nodeid}: @pytest.mark.laj({key}=...) got {type(value).__name__}; "
                    f"expected {' or '.join(k.__name__ for k in expected)}"
                )
            if key == "ask" and value not in {m.value for m in AskMode}:
                raise UsageError(
                    f"{item.nodeid}: @pytest.mark.laj(ask={value!r}) is not a mode; "
                    f"expected one of: {', '.join(m.value for m in AskMode)}"
                )
            if key in ("context", "thresholds"):
                merged[key] = {**merged[key], **cast(Mapping[str, Any], value)}
            else:
                merged[key] = AskMode(value) if key == "ask" else value
    return merged


def assessment_spec(
    defaults: Mapping[str, Any],
    output: Any,
    input: str | None,
    context: Mapping[str, Any] | None,
    rubric: str | Path | Rubric | None,
    conversation: Any = None,
) -> AssessmentSpec:
    """What a call asks for, over what the markers say: the call's rubric wins, contexts merge."""
    return AssessmentSpec(
        conversation=conversation,
        output=output,
        rubric=str(rubric) if isinstance(rubric, Path) else (rubric or defaults.get("rubric")),
        input=input,
        context={**defaults["context"], **(context or {})},
        judges=defaults.get("judges"),
        thresholds=defaults["thresholds"],
        ask=defaults.get("ask"),
    )
