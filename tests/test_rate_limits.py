"""Provider rate limits: per-judge rpm/tpm token buckets (shared by xdist workers), an in-flight limit that halves
on a 429 and recovers (AIMD), a Retry-After that pauses all of a judge's new calls, and the wait in the summary.

Unit tests drive the bucket and the limit with an injected clock; end-to-end tests read when requests reached
the simulator, and only ever assert a lower bound on a span, which a slow machine cannot break."""

from __future__ import annotations

import asyncio
import contextlib
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from conftest import LajProject

from pytest_laj.core.models import JudgeVerdict
from pytest_laj.judges.base import Judge, JudgeSpec, JudgeSpecError
from pytest_laj.judges.limits import AdaptiveLimit, DiskBuckets, LocalBuckets, RateLimits, TokenBucket
from pytest_laj.judges.protocol import JudgeRequest
from pytest_laj.simulator import Simulator

AssertOutcomes = Callable[..., None]


class FakeTime:
    """A clock that only moves when a caller sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


# -- the token bucket ---------------------------------------------------------------------------------------


def test_requests_are_spread_evenly_after_a_one_second_burst() -> None:
    clock = FakeTime()
    bucket = TokenBucket("alpha", 120, LocalBuckets(), clock)  # 2 a second, a burst of 2
    assert [bucket.reserve(1) for _ in range(5)] == [0.0, 0.0, 0.5, 1.0, 1.5]
    clock.now += 60  # an idle minute refills the burst, no more
    assert [bucket.reserve(1) for _ in range(3)] == [0.0, 0.0, 0.5]


def test_a_slow_rate_lets_one_request_through_then_waits_a_full_interval() -> None:
    bucket = TokenBucket("alpha", 6, LocalBuckets(), FakeTime())
    assert [bucket.reserve(1) for _ in range(3)] == [0.0, 10.0, 20.0]


def test_a_large_request_goes_when_the_bucket_is_full_and_the_next_waits_out_its_debt() -> None:
    clock = FakeTime()
    bucket = TokenBucket("alpha", 600, LocalBuckets(), clock)  # 10 tokens a second
    assert bucket.reserve(100) == 0.0
    assert bucket.reserve(10) == pytest.approx(10.0)  # the 90 owed, then its own 10
    clock.now += 10
    bucket.adjust(100 - 40)  # the first reply said it used 40 tokens, not the 100 estimated
    assert bucket.reserve(10) == pytest.approx(0.0)


def test_buckets_in_a_disk_store_are_one_bucket_for_every_process_of_a_run(tmp_path: Path) -> None:
    clock = FakeTime()
    run_id = f"test-{uuid.uuid4().hex}"
    worker_1 = TokenBucket("alpha\0rpm", 120, DiskBuckets(run_id), clock)
    worker_2 = TokenBucket("alpha\0rpm", 120, DiskBuckets(run_id), clock)
    waits = [bucket.reserve(1) for bucket in (worker_1, worker_2, worker_1, worker_2)]
    assert waits == [0.0, 0.0, 0.5, 1.0]
    other_run = TokenBucket("alpha\0rpm", 120, DiskBuckets(run_id + "-other"), clock)
    assert other_run.reserve(1) == 0.0


# -- adaptive concurrency -----------------------------------------------------------------------------------


def test_a_429_halves_the_in_flight_limit_once_per_burst_and_successes_raise_it_again() -> None:
    async def scenario() -> list[int]:
        clock = FakeTime()
        limit = AdaptiveLimit(8, clock, clock.sleep)
        seen = [limit.limit]
        tickets = [await limit.acquire() for _ in range(8)]
        for ticket in tickets[:3]:  # three calls sent together all get a 429: one decrease, not three
            limit.release(ticket, succeeded=False, limited=True, pause=None)
        seen.append(limit.limit)
        for ticket in tickets[3:]:
            limit.release(ticket, succeeded=True, limited=False, pause=None)
        later = await limit.acquire()  # started after the decrease: its 429 counts
        limit.release(later, succeeded=False, limited=True, pause=None)
        seen.append(limit.limit)
        for _ in range(2 + 3 + 4):  # one more per window of as many successes as the limit
            limit.release(await limit.acquire(), succeeded=True, limited=False, pause=None)
            seen.append(limit.limit)
        for _ in range(100):
            limit.release(await limit.acquire(), succeeded=True, limited=False, pause=None)
        seen.append(limit.limit)
        return seen

    assert asyncio.run(scenario()) == [8, 4, 2, 2, 3, 3, 3, 4, 4, 4, 4, 5, 8]


def test_the_limit_never_drops_below_one_call() -> None:
    async def scenario() -> int:
        clock = FakeTime()
        limit = AdaptiveLimit(2, clock, clock.sleep)
        for _ in range(5):
            limit.release(await limit.acquire(), succeeded=False, limited=True, pause=None)
        return limit.limit

    assert asyncio.run(scenario()) == 1


def test_a_call_over_the_limit_waits_for_a_slot() -> None:
    async def scenario() -> list[str]:
        clock = FakeTime()
        limit = AdaptiveLimit(1, clock, clock.sleep)
        events: list[str] = []
        first = await limit.acquire()

        async def second() -> None:
            ticket = await limit.acquire()
            events.append("second admitted")
            limit.release(ticket, succeeded=True, limited=False, pause=None)

        waiting = asyncio.ensure_future(second())
        await asyncio.sleep(0)
        events.append("first released")
        limit.release(first, succeeded=True, limited=False, pause=None)
        await waiting
        return events

    assert asyncio.run(scenario()) == ["first released", "second admitted"]


def test_a_release_wakes_as_many_waiters_as_there_are_slots_and_a_cancelled_one_passes_its_slot_on() -> None:
    async def scenario() -> tuple[int, list[str]]:
        clock = FakeTime()
        limit = AdaptiveLimit(1, clock, clock.sleep)
        first = await limit.acquire()
        admitted: list[str] = []

        async def wait(name: str) -> None:
            limit.release(await limit.acquire(), succeeded=True, limited=False, pause=None)
            admitted.append(name)

        waiting = {name: asyncio.ensure_future(wait(name)) for name in ("second", "third")}
        await asyncio.sleep(0)
        limit.release(first, succeeded=True, limited=False, pause=None)  # one slot: only the longest waiting
        still_queued = len(limit._waiters)
        waiting["second"].cancel()  # woken, but cancelled before it ran: its slot goes to the third
        await asyncio.wait_for(asyncio.gather(*waiting.values(), return_exceptions=True), 10)
        return still_queued, admitted

    assert asyncio.run(scenario()) == (1, ["third"])


def test_a_retry_after_pauses_every_new_call_of_the_judge() -> None:
    async def scenario() -> tuple[list[float], float]:
        clock = FakeTime()
        limit = AdaptiveLimit(4, clock, clock.sleep)
        started = clock.now
        limit.release(await limit.acquire(), succeeded=False, limited=True, pause=5.0)
        tickets = [await limit.acquire() for _ in range(2)]
        return [t.paused for t in tickets], clock.now - started

    paused, elapsed = asyncio.run(scenario())
    assert paused == [5.0, 0.0]  # the first waited the pause out; by then it had passed for the second
    assert elapsed == 5.0


class Limited(Exception):
    status_code = 429


class TokenJudge(Judge):
    """Estimates 100 tokens a request; rated by the test, not here."""

    name = "alpha"
    tpm = 600.0  # 10 a second

    def identity(self) -> dict[str, Any]:
        return {}

    async def rate(self, request: JudgeRequest) -> JudgeVerdict:
        raise NotImplementedError

    def estimate_tokens(self, request: JudgeRequest) -> int:
        return 100

    def is_rate_limited(self, error: BaseException) -> bool:
        return isinstance(error, Limited)

    def retry_after(self, error: BaseException) -> float | None:
        return 30.0 if isinstance(error, Limited) else None


def test_calls_wait_on_the_estimate_pay_what_the_reply_used_and_count_every_wait() -> None:
    async def scenario() -> tuple[list[float], dict[str, float]]:
        clock = FakeTime()
        limits = RateLimits(ceiling=4, max_pause=20.0, clock=clock, sleep=clock.sleep)
        judge, request = TokenJudge(), cast(JudgeRequest, None)
        started, admitted = clock.now, []
        async with limits.call(judge, request) as call:  # a full bucket (10) lets 100 through, owing 90
            call.used(40)  # the reply said 40: 60 back, 30 owed
        for _ in range(2):  # each waits until the debt is paid and a burst's 10 are in, then owes 90 more
            async with limits.call(judge, request):
                admitted.append(clock.now - started)
        with pytest.raises(Limited):
            async with limits.call(judge, request):  # admitted at 24
                raise Limited  # asks for 30 s: paused for 20, the most a retry would wait
        async with limits.call(judge, request):
            admitted.append(clock.now - started)
        return admitted, limits.waited()

    admitted, waited = asyncio.run(scenario())
    assert admitted == pytest.approx([4.0, 14.0, 44.0])
    assert waited == {"alpha": pytest.approx(4.0 + 10.0 + 10.0 + 20.0)}


# -- options ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("openai/alpha rpm=-1", "judge 'openai/alpha': rpm: Input should be greater than 0"),
        ("openai/alpha tpm=0", "judge 'openai/alpha': tpm: Input should be greater than 0"),
        ("openai/alpha rpm=.inf", "judge 'openai/alpha': rpm: Input should be a finite number"),
        ("openai/alpha tpm=.nan", "judge 'openai/alpha': tpm: Input should be a finite number"),
        ("openai/alpha rpm=many", "judge 'openai/alpha': rpm: Input should be a valid number"),
        ("openai/alpha rpms=60", "unknown option 'rpms' - did you mean 'rpm'?"),
    ],
)
def test_a_bad_rate_limit_is_a_usage_error_naming_the_judge_and_option(entry: str, expected: str) -> None:
    with pytest.raises(JudgeSpecError) as error:
        JudgeSpec.parse(entry, "laj_judges[0]")
    assert expected in str(error.value)
    assert str(error.value).startswith("laj_judges[0]")


def test_a_bad_rate_limit_stops_the_run_before_any_test(project: LajProject) -> None:
    (project.pytester.path / "pytest.ini").write_text("[pytest]\nlaj_judges = openai/alpha rpm=-5\n")
    project.tests("def test_nothing():\n    pass\n")
    result = project.run()
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*laj_judges*judge 'openai/alpha': rpm: Input should be greater than 0*"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


# -- end to end, against the simulator's clock --------------------------------------------------------------

SUITE = """
    from pathlib import Path
    import pytest
    from pytest_laj import cases

    pytestmark = pytest.mark.laj(rubric="safety", thresholds={"quorum": 1})

    @pytest.mark.parametrize("case", cases(Path(__file__).parent / "cases.yaml"))
    def test_case(laj, case):
        laj.check(case.output)
"""


@pytest.fixture(scope="module")
def warm_litellm(judging_machinery: None) -> None:
    """litellm's first call in a process imports its HTTP client (about 2 s here): calls the buckets let through
    meanwhile would reach the server together. One call first, so the in-process runs measure the limiter."""
    from pytest_laj.judges.llm import import_litellm

    litellm = import_litellm()
    with Simulator({"judges": {"alpha": {"default": "best_practice"}}}) as server:
        message = {"role": "user", "content": "warm up"}
        call = litellm.acompletion(
            model="openai/alpha", api_base=server.base_url, api_key="sk-test", messages=[message], max_retries=0
        )
        with contextlib.suppress(litellm.BadRequestError):  # the simulator refuses a bare request: a round trip
            asyncio.run(call)


@pytest.fixture
def simulator(request: pytest.FixtureRequest, warm_litellm: None) -> Iterator[Simulator]:
    """One simulator for the whole run, every xdist worker included, so its clock sees all their requests."""
    faults = getattr(request, "param", [])
    with Simulator({"judges": {"alpha": {"default": "best_practice", "faults": faults}}}) as server:
        yield server


def _suite(project: LajProject, simulator: Simulator, options: str, cases: int) -> None:
    judge = f"openai/alpha api_base={simulator.base_url} api_key=sk-test {options}"
    (project.pytester.path / "pytest.ini").write_text(f"[pytest]\nlaj_judges = {judge}\n")
    lines = "".join(f'  - {{id: c{i}, output: "Reply number {i}: please call 988."}}\n' for i in range(cases))
    (project.pytester.path / "cases.yaml").write_text("cases:\n" + lines)
    project.tests(SUITE)


def _waited(output: str) -> float:
    found = re.search(r"waited ([\d.]+) s on rate limits \(openai/alpha [\d.]+ s\)", output)
    assert found, output[-2000:]
    return float(found.group(1))


def test_a_judge_with_an_rpm_sends_no_faster_than_it_allows(
    project: LajProject, simulator: Simulator, assert_laj_outcomes: AssertOutcomes
) -> None:
    _suite(project, simulator, "rpm=120", cases=6)  # judged up front, all at once but for the limit
    result = project.run("--laj-cache", "off")
    assert_laj_outcomes(result, passed=6)
    times = simulator.request_times["alpha"]
    assert len(times) == 6
    assert times[-1] - times[0] >= 1.5  # a burst of 2, then one every 0.5 s: at least 2 s
    assert _waited(result.stdout.str()) >= 1.5


@pytest.mark.parametrize("simulator", [[{"status": 429, "times": 1, "retry_after": 2}]], indirect=True)
def test_a_retry_after_pauses_the_judges_other_calls_too(
    project: LajProject, simulator: Simulator, assert_laj_outcomes: AssertOutcomes
) -> None:
    _suite(project, simulator, "max_concurrency=1", cases=4)
    result = project.run("--laj-cache", "off", "--laj-retries", "2")
    assert_laj_outcomes(result, passed=4)
    times = simulator.request_times["alpha"]
    assert len(times) == 5  # the 429, its retry and three other calls
    assert times[1] - times[0] >= 1.8  # nothing reached the judge while it asked for 2 s of quiet
    assert _waited(result.stdout.str()) >= 1.8


def test_two_xdist_workers_together_keep_one_rpm(
    project: LajProject,
    simulator: Simulator,
    assert_laj_outcomes: AssertOutcomes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shared = tmp_path / "tmp"  # the temp directory of the controller and of both workers
    shared.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    monkeypatch.setenv("TMPDIR", str(shared))
    _suite(project, simulator, "rpm=120", cases=10)
    (project.pytester.path / "pytest.ini").write_text(
        (project.pytester.path / "pytest.ini").read_text() + "laj_max_calls = 100\n"
    )
    result = project.run("--laj-cache", "off", "-n", "2")
    assert_laj_outcomes(result, passed=10)
    times = simulator.request_times["alpha"]
    assert len(times) == 10
    assert times[-1] - times[0] >= 3.0  # one bucket: 2 at once, then one every 0.5 s, at least 4 s (a bucket
    # per worker would let each send its 5 in 1.5 s)
    assert _waited(result.stdout.str()) > 0
    assert not list(shared.glob("pytest-laj-*")), "the run's shared budget and rate buckets outlive it"
