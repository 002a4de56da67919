"""The panel on a bad day: retries, budgets, per-judge bounds, a broken cache, workers racing, kills and Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import LajProject

AssertOutcomes = Callable[..., None]


def _with_rules(project: LajProject, rules: str) -> None:
    (project.pytester.path / "sim.yaml").write_text(rules)


def test_rate_limits_are_retried_after_the_time_the_provider_asks(project: LajProject) -> None:
    _with_rules(
        project,
        "judges:\n  alpha:\n    default: best_practice\n    faults:\n      - {status: 429, times: 2, retry_after: 1}\n",
    )
    project.tests(
        """
        import time
        import pytest

        @pytest.mark.laj(rubric="safety", judges=["alpha"], thresholds={"quorum": 1})
        def test_after_two_429s(laj):
            started = time.monotonic()
            a = laj.check("Please call 988.")
            assert a.judges[0].attempts == 3
            assert time.monotonic() - started >= 2.0  # two Retry-After: 1 waits, not shorter backoff
        """
    )
    assert project.run("--laj-retries", "3").ret == 0


def test_a_judge_that_runs_out_of_retries_is_missing(project: LajProject) -> None:
    _with_rules(
        project, "judges:\n  alpha:\n    default: best_practice\n    faults:\n      - {status: 503, times: 3}\n"
    )
    project.tests(
        """
        import pytest

        @pytest.mark.laj(rubric="safety", judges=["alpha"], thresholds={"quorum": 1})
        def test_it(laj):
            a = laj.assess("Please call 988.")
            assert a.outcome == "error"
            assert a.judges[0].attempts == 3
            assert "ServiceUnavailableError (HTTP 503)" in a.judges[0].error
            assert "after 3 attempts" in a.judges[0].error
        """
    )
    assert project.run("--laj-retries", "2").ret == 0


def test_per_judge_concurrency_bound(project: LajProject) -> None:
    (project.pytester.path / "conftest.py").write_text(
        """
import asyncio
from pytest_laj import CriterionVerdict, Judge, JudgeVerdict

class Slow(Judge):
    def __init__(self, name, limit):
        self.name, self.max_concurrency = name, limit
        self.now = self.peak = 0
    def identity(self):
        return {"kind": "slow", "name": self.name}
    async def rate(self, request):
        self.now += 1
        self.peak = max(self.peak, self.now)
        await asyncio.sleep(0.05)
        self.now -= 1
        return JudgeVerdict(criteria={c.id: CriterionVerdict(level="best_practice") for c in request.criteria})

JUDGES = {"slow/one": Slow("slow/one", 1), "slow/three": Slow("slow/three", 3), "slow/free": Slow("slow/free", None)}

def pytest_laj_make_judge(spec, config):
    return JUDGES.get(spec.model)
"""
    )
    project.tests(
        """
        import pytest
        from conftest import JUDGES

        @pytest.mark.laj(rubric="safety", judges=["slow/one", "slow/three", "slow/free"])
        def test_bounds(laj):
            laj.assess_many([f"reply {i}" for i in range(8)])
            assert [JUDGES[n].peak for n in ("slow/one", "slow/three", "slow/free")] == [1, 3, 8]
        """
    )
    assert project.run("--laj-cache", "off").ret == 0


def test_call_budget_is_shared_by_xdist_workers(project: LajProject) -> None:
    project.tests(
        """
        import pytest

        @pytest.mark.parametrize("n", range(6))
        @pytest.mark.laj(rubric="safety", thresholds={"quorum": 3})
        def test_reply(laj, n):
            laj.check(f"Please call 988. ({n})")
        """
    )
    result = project.run("-n", "2", "--laj-max-calls", "6", "--laj-cache", "off")
    counts = result.parseoutcomes()
    assert counts.get("passed", 0) <= 2
    assert counts.get("passed", 0) + counts["failed"] == 6
    result.stdout.fnmatch_lines(["judge calls: 6 made, 0 from cache", "the judge-call budget ran out: *"])
    assert "budget exhausted: --laj-max-calls 6 reached; judge not called" in result.stdout.str()


@pytest.mark.parametrize("configured", [True, False], ids=["judges-configured", "opened-by-a-test"])
@pytest.mark.parametrize("damage", ["a file", "garbage cache.db", "a foreign directory"])
def test_a_broken_cache_directory_is_named(project: LajProject, damage: str, configured: bool) -> None:
    if not configured:  # the session opens when the collected tests ask for laj, still before any test runs
        (project.pytester.path / "pytest.ini").write_text("[pytest]\nlaj_prefetch = off\n")
    cache = project.pytester.path / ".laj_cache"
    if damage == "a file":
        cache.write_text("not a cache")
    else:
        cache.mkdir()
        name = "cache.db" if damage == "garbage cache.db" else "notes.txt"
        (cache / name).write_bytes(b"\x00garbage" * 64)
    project.tests("def test_it(laj):\n    laj.check('hello', rubric='safety')\n")
    result = project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert str(cache) in result.stderr.str()
    assert "laj_cache_dir" in result.stderr.str()
    assert (cache.read_text() == "not a cache") if damage == "a file" else cache.is_dir()  # nothing overwritten


def test_workers_asking_for_the_same_verdict_make_one_call(project: LajProject) -> None:
    _with_rules(
        project,
        "latency_ms: 400\njudges:\n"
        + "".join(f"  {n}:\n    default: best_practice\n" for n in ("alpha", "beta", "gamma")),
    )
    project.tests(
        """
        import pytest

        @pytest.mark.parametrize("n", range(4))
        def test_same_reply(laj, n):
            laj.check("Please call 988.", rubric="safety")
        """
    )
    result = project.run("-n", "2")
    result.stdout.fnmatch_lines(["judge calls: 3 made, 9 from cache"])


def _start(project: LajProject, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", *args]
    return subprocess.Popen(
        command, cwd=project.pytester.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _read_until(process: subprocess.Popen[str], needle: str, seconds: float = 120) -> str:
    seen = ""
    deadline = time.monotonic() + seconds
    assert process.stdout is not None
    while needle not in seen and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen += line
    assert needle in seen, seen
    return seen


SLOW_SUITE = """
    import pytest
    pytestmark = pytest.mark.laj(rubric="safety")

    @pytest.mark.parametrize("n", range(3))
    def test_quick(laj, n):
        laj.check(f"Please call 988. ({n})")

    @pytest.mark.parametrize("n", range(3))
    def test_slow(laj, n):
        laj.check(f"slow reply {n}")
"""

SLOW_RULES = """\
judges:
  alpha:
    default: best_practice
    faults: [{match: "slow", latency_ms: 30000, times: always}]
  beta:
    default: best_practice
  gamma:
    default: best_practice
"""


def test_a_run_killed_mid_way_leaves_a_cache_the_next_run_reads_and_completes(
    project: LajProject, assert_laj_outcomes: AssertOutcomes
) -> None:
    _with_rules(project, SLOW_RULES)
    project.tests(SLOW_SUITE)
    process = _start(project, "--laj-timeout", "60")
    _read_until(process, "test_quick[2] PASSED")
    time.sleep(0.5)  # the slow judge's call is in flight
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    # Nothing the dead run left may make this run wait (a dead xdist worker's claim is covered in
    # test_cache_keys); the slow judge now times out, and the other two judges are a quorum.
    rerun = project.run("--laj-timeout", "2", "--laj-retries", "0")
    assert_laj_outcomes(rerun, passed=6)
    found = re.search(r"judge calls: (\d+) made, (\d+) from cache", rerun.stdout.str())
    assert found is not None
    assert int(found[2]) >= 9  # every verdict the killed run finished was kept


def test_ctrl_c_stops_judge_calls_and_prints_the_partial_summary(project: LajProject) -> None:
    _with_rules(project, SLOW_RULES)
    project.tests(SLOW_SUITE)
    process = _start(project, "--laj-timeout", "60")
    _read_until(process, "test_quick[2] PASSED")
    time.sleep(0.5)
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert time.monotonic() - started < 20  # not the 30 s the slow judge would take, nor the 60 s timeout
    assert "KeyboardInterrupt" in output
    assert "3 assessments: 3 pass" in output
    assert "judge calls: 9 made, 0 from cache" in output


def test_outputs_over_the_limit_are_refused_not_truncated(project: LajProject) -> None:
    project.tests(
        """
        def test_long(laj):
            laj.check("x" * 101, rubric="safety")

        def test_empty_is_judged(laj):
            a = laj.check("", rubric="safety")
            assert a.valid_judges == 3
        """
    )
    result = project.run("--laj-max-chars", "100")
    result.stdout.fnmatch_lines(["*the output is 101 characters, over laj_max_chars (100)*never truncates*"])
    assert result.parseoutcomes() == {"failed": 1, "passed": 1}


def test_cache_holds_nothing_but_valid_verdicts(project: LajProject, tmp_path: Path) -> None:
    import diskcache

    project.tests(
        """
        import pytest
        @pytest.mark.laj(rubric="safety", judges=["gamma", "delta", "alpha"], thresholds={"quorum": 1})
        def test_it(laj):
            laj.check("broken reply")
        """
    )
    project.run()
    with diskcache.Cache(str(project.pytester.path / ".laj_cache")) as cache:
        entries = {str(k): cache[k] for k in cache.iterkeys()}
    verdicts = [e for k, e in entries.items() if not k.startswith(("injection:", "alpha:"))]
    assert [e["judge"] for e in verdicts] == ["alpha"]
    assert all(e["format"] == 1 and e["verdict"]["criteria"] for e in verdicts)
    # Beside it, only the output's injection scan (nothing found): the failed judges left nothing.
    assert [e["value"] for k, e in entries.items() if k.startswith("injection:")] == [[]]


def test_cost_budget_stops_calls_once_spent(project: LajProject) -> None:
    (project.pytester.path / "conftest.py").write_text(
        """
from pytest_laj import CriterionVerdict, Judge, JudgeVerdict

class Priced(Judge):
    name = "priced/judge"
    def identity(self):
        return {"kind": "priced"}
    async def rate(self, request):
        verdict = {c.id: CriterionVerdict(level="best_practice") for c in request.criteria}
        return JudgeVerdict(criteria=verdict, cost_usd=0.01)

def pytest_laj_make_judge(spec, config):
    return Priced() if spec.model == "priced/judge" else None
"""
    )
    project.tests(
        """
        import pytest

        @pytest.mark.parametrize("n", range(5))
        @pytest.mark.laj(rubric="safety", judges=["priced/judge"], thresholds={"quorum": 1})
        def test_reply(laj, n):
            laj.check(f"reply {n}")
        """
    )
    result = project.run("--laj-max-cost", "0.025", "--laj-cache", "off")
    assert result.parseoutcomes() == {"passed": 3, "failed": 2}
    result.stdout.fnmatch_lines(["judge calls: 3 made, 0 from cache, $0.0300 spent where priced"])
    assert "budget exhausted: --laj-max-cost 0.025 USD spent; judge not called" in result.stdout.str()
