"""Which selected tests have a case to judge up front: a test parametrized with one `Case` that uses `laj`."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from pytest_laj.core.case import Case
from pytest_laj.engine.session import Engine
from pytest_laj.errors import UsageError
from pytest_laj.plugin.markers import assessment_spec, marker_settings

__all__ = ["prefetch_cases"]


def prefetch_cases(engine: Engine, items: Iterable[pytest.Item]) -> int:
    """Start judging, up front and concurrently, every selected test's case (judged with its marker's
    rubric); the test's own `laj.check` then collects the finished assessment."""
    scheduled = 0
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        found = [p for p in params.values() if isinstance(p, Case)]
        if len(found) != 1 or "laj" not in getattr(item, "fixturenames", ()):
            continue
        try:
            defaults = marker_settings(item)
        except UsageError:
            continue  # the test reports it when it runs
        case = found[0]
        spec = assessment_spec(defaults, case.output, case.input, case.context, None, case.conversation)
        if case.output is not None or case.conversation is not None:
            scheduled += engine.prefetch(item.nodeid, spec)
        else:
            scheduled += engine.prefetch_produced(item.nodeid, spec, case)
    return scheduled
