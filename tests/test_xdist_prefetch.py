"""Cooperative judging up front under xdist: each worker judges its share of the selected cases for every
worker's tests, through the shared cache; each verdict is asked once across workers."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from conftest import CASES_SUITE, RULES, LajProject
from test_prefetch import CASES, PRODUCED_CASES, PRODUCED_SUITE, PRODUCER

AssertOutcomes = Callable[..., None]


def report(project: LajProject, *args: str) -> tuple[pytest.RunResult, dict[str, Any]]:
    result = project.run("--laj-report", "report.json", *args)
    return result, json.loads((project.pytester.path / "report.json").read_text())


def outcomes(data: dict[str, Any]) -> dict[str, str]:
    return {r["nodeid"]: r["assessment"]["outcome"] for r in data["records"]}


@pytest.mark.parametrize("dist", ["load", "loadscope", "loadfile", "worksteal"])
def test_workers_share_the_judging_up_front_and_ask_each_verdict_once(
    project: LajProject, assert_laj_outcomes: AssertOutcomes, dist: str
) -> None:
    (project.pytester.path / "cases.yaml").write_text(CASES)
    project.tests(CASES_SUITE)
    _, serial = report(project, "--laj-cache", "off")
    result, data = report(project, "-n", "2", "--dist", dist)
    assert_laj_outcomes(result, passed=3, failed=1, review=1)
    assert outcomes(data) == outcomes(serial)
    result.stdout.fnmatch_lines(["judge calls: 15 made, * from cache"])  # 5 cases x 3 judges, each once
    assert data["calls"]["prefetched"] == 5  # every case judged up front, by one worker or the other
    # A case judged by one worker for a test that ran on the other was collected there, through the cache.
    assert data["calls"]["uncollected"] == []
    assert "not collected" not in result.stdout.str()
    assert "were not run" not in result.stdout.str()


def test_only_the_selected_cases_are_judged_across_workers(
    project: LajProject, assert_laj_outcomes: AssertOutcomes
) -> None:
    (project.pytester.path / "cases.yaml").write_text(CASES)
    project.tests(CASES_SUITE)
    result, data = report(project, "-n", "2", "-k", "good-1 or bad")
    assert_laj_outcomes(result, passed=1, failed=1)  # deselected on the workers: the controller counts none
    result.stdout.fnmatch_lines(["judge calls: 6 made, * from cache"])
    assert data["calls"]["prefetched"] == 2


def test_cases_no_test_collected_are_told_across_workers(project: LajProject) -> None:
    (project.pytester.path / "cases.yaml").write_text(CASES)
    project.tests(
        """
        from pathlib import Path
        import pytest
        from pytest_laj import cases

        @pytest.mark.parametrize("case", cases(Path(__file__).parent / "cases.yaml")[:2])
        @pytest.mark.laj(rubric="safety")
        def test_case(laj, case):
            laj.assess(case.output + " (edited)")
        """
    )
    result, data = report(project, "-n", "2")
    result.stdout.fnmatch_lines(
        [
            "judge calls: 12 made, * from cache",  # the cases judged up front, then what the tests judged instead
            "2 case(s) judged up front were not collected by their tests: a test judged something other*",
        ]
    )
    assert sorted(u["nodeid"] for u in data["calls"]["uncollected"]) == sorted(r["nodeid"] for r in data["records"])


SLOW_CASES = "cases:\n  - {id: bad, output: 'You should do it.'}\n" + "".join(
    f"  - {{id: slow-{n}, output: 'Slow reply {n}.'}}\n" for n in range(6)
)


def test_a_stopped_run_cancels_every_workers_judging(project: LajProject) -> None:
    assert_a_stopped_run_cancels_every_workers_judging(project)


def assert_a_stopped_run_cancels_every_workers_judging(project: LajProject, workers: str = "2") -> None:
    """`-x` under `-n 2` with slow judging up front: the controller's stop reaches every worker."""
    (project.pytester.path / "cases.yaml").write_text(SLOW_CASES)
    slow = "\n      - {match: '^Slow', latency_ms: 4000, times: always}"  # for every judge
    rules = RULES.replace("  alpha:", "  alpha:\n    faults:" + slow).replace("  beta:", "  beta:\n    faults:" + slow)
    gamma = '    faults:\n      - {match: "(?i)broken", verdict'
    (project.pytester.path / "sim.yaml").write_text(rules.replace(gamma, gamma.replace(":\n", ":" + slow + "\n")))
    project.tests(CASES_SUITE)
    result, data = report(project, "-n", workers, "-x")
    result.stdout.fnmatch_lines(["*the run stopped early*still being judged were cancelled*"])
    # Only the tests that ran were judged (3 calls each): no worker judged the rest of its share of the slow
    # cases once the run stopped, though its test was still waiting on a slow verdict.
    assert data["calls"]["calls"] <= 3 * len(data["records"]) < 3 * 7


def test_without_a_shared_cache_workers_judge_as_their_tests_go(
    project: LajProject, assert_laj_outcomes: AssertOutcomes
) -> None:
    (project.pytester.path / "cases.yaml").write_text(CASES)
    project.tests(CASES_SUITE)
    for mode in ("off", "refresh"):
        result, data = report(project, "-n", "2", "--laj-cache", mode)
        assert_laj_outcomes(result, passed=3, failed=1, review=1)
        result.stdout.fnmatch_lines(["judge calls: 15 made, 0 from cache"])
        assert data["calls"]["prefetched"] == 0


def test_workers_produce_each_output_once(project: LajProject, assert_laj_outcomes: AssertOutcomes) -> None:
    path = project.pytester.path
    (path / "cases.yaml").write_text(PRODUCED_CASES)
    (path / "conftest.py").write_text(PRODUCER.replace("{version}", "1"))
    project.tests(PRODUCED_SUITE, "test_one.py")
    project.tests(PRODUCED_SUITE, "test_two.py")  # the same cases again, on the other worker
    result, data = report(project, "-n", "2", "--dist", "loadfile")
    assert_laj_outcomes(result, passed=4, failed=2)
    produced = Counter(case for line in (path / "produced.txt").read_text().splitlines() for case in line.split(","))
    assert produced - Counter({"": produced[""]}) == Counter({"greets": 1, "despairs": 1})
    assert data["calls"]["uncollected"] == []


def test_each_worker_takes_a_stable_share_only_with_a_store_it_reads_and_writes() -> None:
    from pytest_laj.core.modes import CacheMode, PrefetchMode
    from pytest_laj.engine.settings import Settings
    from pytest_laj.plugin.prefetch import Share, prefetch_share

    rw = Settings()
    assert prefetch_share(rw, None) == Share(0, 1)  # no xdist: every case
    assert prefetch_share(rw, {"workerid": "gw1", "workercount": 2}, cores=2) == Share(1, 2)
    assert prefetch_share(rw, {"workerid": "gw2", "workercount": 2}, cores=2) == Share(0, 2)  # a restarted worker
    for mode in (CacheMode.OFF, CacheMode.REFRESH, CacheMode.REPLAY):
        assert prefetch_share(Settings(cache_mode=mode), {"workerid": "gw0", "workercount": 2}) is None
    assert prefetch_share(Settings(prefetch=PrefetchMode.OFF), None) is None
