"""Which selected tests have a case to judge up front: a test parametrized with one `Case` that uses `laj`.

Under xdist every worker collects the same selected tests (xdist refuses a run where they differ), so each of
the first `count` workers (as many as the machine has cores) judges a stable share of their cases: the cases
ranked by node id, every `count`-th from the worker's index. Each worker's tests then find their verdicts in
the shared cache, or wait on the claim of the worker judging them, and the cases are judged by the judging
workers' processes at once, as a serial run judges them all up front.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pytest

from pytest_laj.core.case import Case
from pytest_laj.core.modes import PrefetchMode
from pytest_laj.engine.session import Engine
from pytest_laj.engine.settings import Settings
from pytest_laj.engine.spec import AssessmentSpec
from pytest_laj.errors import UsageError
from pytest_laj.plugin.markers import assessment_spec, marker_settings

__all__ = ["Share", "machine_cores", "prefetch_cases", "prefetch_share"]


@dataclass(frozen=True)
class Share:
    """The cases a process judges up front: those whose rank modulo `count` is `index`."""

    index: int = 0
    count: int = 1


EVERY_CASE = Share()


def machine_cores() -> int:
    """The CPUs this process may run on."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def prefetch_share(settings: Settings, workerinput: dict[str, object] | None, cores: int | None = None) -> Share | None:
    """This process's share of the selected cases, or None to judge each as its test runs.

    Without xdist: all of them. On an xdist worker, one worker's share, which only works through a store every
    worker both reads and writes: with the cache off or in refresh mode no worker would read what another
    judged (each verdict would be asked twice), and replay never asks; there each worker judges as its tests go,
    and the one call per verdict within a worker's tests is kept.

    The cases are shared by as many workers as the machine has `cores` (all of them, by default): each worker
    that judges pays for its own judge client (importing litellm costs seconds of CPU) and its calls' CPU, so
    on two cores a third judging worker only adds that cost. The workers past them take no share: their tests
    read the verdicts the others judge, waiting on their claims."""
    if settings.prefetch is not PrefetchMode.AUTO:
        return None
    if workerinput is None:
        return EVERY_CASE
    worker, count = str(workerinput.get("workerid", "")), workerinput.get("workercount")
    number = worker.removeprefix("gw")
    if not (settings.cache_mode.reads and settings.cache_mode.writes) or not number.isdigit():
        return None
    if not isinstance(count, int) or count < 1:
        return None
    index, judging = int(number) % count, min(count, cores or machine_cores())  # a restarted worker (gw2 of 2)
    return Share(index, judging) if index < judging else None  # takes an index again


def prefetch_cases(engine: Engine, items: Iterable[pytest.Item], share: Share = EVERY_CASE) -> int:
    """Start judging, up front and concurrently, this process's share of the selected tests' cases (judged with
    each marker's rubric), in the order the tests run, recorded outputs (their stored verdicts read a batch at a
    time) before the cases whose outputs are produced; each test's own `laj.check` then collects its finished
    assessment, or (under xdist, for another worker's share) reads its verdicts from the cache."""
    found = list(_cases(items))
    ranks = {nodeid: rank for rank, nodeid in enumerate(sorted(nodeid for nodeid, _, _ in found))}
    mine = [(nodeid, spec, case) for nodeid, spec, case in found if ranks[nodeid] % share.count == share.index]
    recorded = [(nodeid, spec) for nodeid, spec, case in mine if _recorded(case)]
    produced = [(nodeid, spec, case) for nodeid, spec, case in mine if not _recorded(case)]
    return engine.prefetch_all(recorded) + sum(engine.prefetch_produced(*entry) for entry in produced)


def _recorded(case: Case) -> bool:
    return case.output is not None or case.conversation is not None


def _cases(items: Iterable[pytest.Item]) -> Iterator[tuple[str, AssessmentSpec, Case]]:
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
        yield item.nodeid, spec, case
