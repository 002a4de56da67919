"""Under xdist the judging up front is shared by as many workers as the machine has cores: a worker past them
would pay for its own judge client (seconds of CPU to import litellm) on a core another worker already uses."""

from __future__ import annotations

import json

from conftest import CASES_SUITE, LajProject
from test_prefetch import CASES
from test_xdist_prefetch import AssertOutcomes, assert_a_stopped_run_cancels_every_workers_judging

from pytest_laj.engine.settings import Settings
from pytest_laj.plugin.prefetch import Share, machine_cores, prefetch_share


def share(worker: str, count: int, cores: int) -> Share | None:
    return prefetch_share(Settings(), {"workerid": worker, "workercount": count}, cores=cores)


def test_only_as_many_workers_as_cores_take_a_share() -> None:
    assert [share(f"gw{n}", 4, cores=2) for n in range(4)] == [Share(0, 2), Share(1, 2), None, None]
    assert [share(f"gw{n}", 2, cores=1) for n in range(2)] == [Share(0, 1), None]
    assert [share(f"gw{n}", 2, cores=8) for n in range(2)] == [Share(0, 2), Share(1, 2)]  # no more than workers
    assert share("gw5", 4, cores=2) == Share(1, 2)  # a restarted worker takes its index again
    assert share("gw6", 4, cores=2) is None
    assert machine_cores() >= 1


# Two cores, whatever the machine running these tests has; each worker says how many cases it judged up front.
TWO_CORES = """
import pytest_laj.plugin.prefetch
from pytest_laj.plugin.run import ENGINE

pytest_laj.plugin.prefetch.machine_cores = lambda: 2


def pytest_sessionfinish(session):
    worker = getattr(session.config, "workerinput", {}).get("workerid")
    engine = session.config.stash.get(ENGINE, None)
    if worker is not None and engine is not None:
        (session.config.rootpath / f"judged-{worker}.txt").write_text(str(engine.prefetcher.judged))
"""


def test_workers_past_the_cores_read_what_the_others_judge(
    project: LajProject, assert_laj_outcomes: AssertOutcomes
) -> None:
    (project.pytester.path / "cases.yaml").write_text(CASES)
    project.tests(CASES_SUITE)
    (project.pytester.path / "conftest.py").write_text(TWO_CORES)
    serial = project.run("--laj-cache", "off", "--laj-report", "serial.json")
    result = project.run("-n", "3", "--laj-report", "report.json")
    assert_laj_outcomes(result, passed=3, failed=1, review=1)
    result.stdout.fnmatch_lines(["judge calls: 15 made, * from cache"])  # 5 cases x 3 judges, each once
    data = json.loads((project.pytester.path / "report.json").read_text())
    expected = json.loads((project.pytester.path / "serial.json").read_text())
    outcomes = {r["nodeid"]: r["assessment"]["outcome"] for r in data["records"]}
    assert outcomes == {r["nodeid"]: r["assessment"]["outcome"] for r in expected["records"]}
    assert serial.ret == result.ret
    assert data["calls"]["prefetched"] == 5  # every case judged up front, by the two workers that judge
    judged = {n: int((project.pytester.path / f"judged-gw{n}.txt").read_text()) for n in range(3)}
    assert judged[2] == 0
    assert judged[0] + judged[1] == 5
    assert data["calls"]["uncollected"] == []


def test_a_stopped_run_cancels_the_judging_of_every_worker_that_judges(project: LajProject) -> None:
    """`-x` under `-n 3` on two cores: the worker that judges nothing waits on the others' claims, and stops."""
    (project.pytester.path / "conftest.py").write_text(TWO_CORES)
    assert_a_stopped_run_cancels_every_workers_judging(project, workers="3")
