"""The verdict store in a real Redis server (`laj_cache_url`): entries and modes, claims across processes (and a
killed holder's expiring), two pytest runs and xdist workers sharing it, the server going away mid-run, an
unreachable one, and its password never printed. The server is Debian's `redis-server`, started by the tests on
a free loopback port with nothing saved to disk."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import redis
from conftest import LajProject
from test_cache_modes import REPLIES, VERDICT
from test_xdist_prefetch import assert_a_stopped_run_cancels_every_workers_judging

from pytest_laj.core.modes import CacheMode
from pytest_laj.judges.budget import Budget, BudgetExhausted
from pytest_laj.store.backend import CacheError
from pytest_laj.store.cache import Store
from pytest_laj.store.keys import claim_key
from pytest_laj.store.redis_store import PREFIX, RedisStore

AssertOutcomes = Callable[..., None]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """A `redis-server` of our own on a free loopback port, saving nothing."""

    def __init__(self, binary: str, directory: Path, *extra: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        options = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            [binary, *options, "--dir", str(directory), *extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        password = extra[extra.index("--requirepass") + 1] if "--requirepass" in extra else None
        self.client = redis.Redis(host="127.0.0.1", port=self.port, password=password)
        for _ in range(200):  # up to 20 s for the server to listen
            with contextlib.suppress(redis.ConnectionError):
                self.client.ping()
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)


@pytest.fixture(scope="session")
def redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    return binary


@pytest.fixture(scope="session")
def redis_server(redis_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(redis_binary, tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared server, emptied for this test."""
    redis_server.client.flushdb()
    return redis_server.url


@pytest.fixture
def own_server(redis_binary: str, tmp_path: Path) -> Iterator[RedisServer]:
    """A server this test alone uses, and may stop."""
    server = RedisServer(redis_binary, tmp_path / "redis")
    yield server
    server.stop()


def _ini(project: LajProject, url: str) -> None:
    ini = project.pytester.path / "pytest.ini"
    ini.write_text(ini.read_text() + f"laj_cache_url = {url}\n")


# -- the store itself --------------------------------------------------------------------------------------------


def test_entries_round_trip_under_the_modes_rules(redis_url: str, redis_server: RedisServer) -> None:
    writer = Store(RedisStore(redis_url), CacheMode.RW)
    writer.keep_verdict("v", VERDICT, "alpha")
    writer.keep_output("o", "a produced reply")
    writer.set("m", {"alpha": 0.5})
    assert writer.verdict("v") == VERDICT
    assert (writer.output("o"), writer.get("m")) == ("a produced reply", {"alpha": 0.5})
    assert writer.verdict("missing") is None

    replay = Store(RedisStore(redis_url, read_only=True), CacheMode.REPLAY)
    assert replay.verdict("v") == VERDICT  # another client reads what the first kept
    before = sorted(redis_server.client.keys("*"))
    replay.keep_verdict("v2", VERDICT, "alpha")
    replay.keep_output("o2", "x")
    replay.set("m2", 1)
    replay.cache.set("v3", VERDICT, "alpha")  # the backend itself refuses to write when read-only
    assert sorted(redis_server.client.keys("*")) == before  # replay never writes

    off = Store(RedisStore(redis_url), CacheMode.OFF)
    assert off.verdict("v") is None
    refresh = Store(RedisStore(redis_url), CacheMode.REFRESH)
    assert refresh.verdict("v") is None  # refresh calls every judge again

    stale = json.loads(redis_server.client.get(PREFIX + "v") or b"")
    redis_server.client.set(PREFIX + "v", json.dumps({**stale, "prompt": "an older prompt"}))
    redis_server.client.set(PREFIX + "o", b"not json")
    assert (writer.verdict("v"), writer.output("o")) == (None, None)  # stale or damaged: a miss


def test_verdicts_read_ahead_take_an_mget_per_few_hundred_keys(
    own_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(RedisStore(own_server.url), CacheMode.RW)
    keys = [f"verdict-{n}" for n in range(1200)]
    for key in keys[::3]:
        store.keep_verdict(key, VERDICT, "alpha")
    own_server.client.set(PREFIX + "damaged", b"not json")
    client = store.cache._open()  # type: ignore[attr-defined]
    commands: list[str] = []
    for name in ("get", "mget"):
        command = getattr(client, name)
        monkeypatch.setattr(client, name, lambda *args, _c=command, _n=name: commands.append(_n) or _c(*args))
    with store.reading_ahead([*keys, "damaged"]):
        assert [store.verdict(key) for key in keys] == [VERDICT if n % 3 == 0 else None for n in range(len(keys))]
        assert store.verdict("damaged") is None
    assert commands == ["mget", "mget", "mget"]  # 1,201 keys, 500 to a trip; none one at a time

    own_server.stop()  # gone: every read a miss, said once
    with store.reading_ahead(keys):
        assert store.verdict(keys[0]) is None
    assert store.cache.lost is not None


def test_budget_counters_are_atomic_increments_kept_for_a_while(redis_url: str, redis_server: RedisServer) -> None:
    store = RedisStore(redis_url)
    one, two = Budget(2, None, "run-1", store.counter("run-1")), Budget(2, None, "run-1", store.counter("run-1"))
    one.reserve_call()
    two.reserve_call()
    with pytest.raises(BudgetExhausted, match="--laj-max-calls 2"):
        one.reserve_call()  # the two workers drew on one budget
    assert 0 < redis_server.client.ttl(PREFIX + "budget:run-1:calls") <= 24 * 3600


def test_a_budget_whose_counter_is_gone_is_spent(own_server: RedisServer) -> None:
    store = RedisStore(own_server.url)
    budget = Budget(10, None, "run-2", store.counter("run-2"))
    own_server.stop()
    with pytest.raises(BudgetExhausted, match="judge not called"):
        budget.reserve_call()
    assert store.lost is not None


async def _enter(store: RedisStore, key: str, entered: list[str], name: str) -> None:
    async with store.claim(key, 60):
        entered.append(name)
        got = store.get(key)
        if got is None:
            store.set(key, VERDICT, name)
        entered.append("read" if got is not None else "wrote")


def test_one_holder_computes_and_a_waiter_reads_its_verdict(redis_url: str) -> None:
    holder, waiter = RedisStore(redis_url), RedisStore(redis_url)  # two machines
    entered: list[str] = []

    async def scene() -> None:
        async with holder.claim("k", 60):
            waiting = asyncio.create_task(_enter(waiter, "k", entered, "waiter"))
            await asyncio.sleep(0.5)
            assert entered == []  # it waits on the claim
            holder.set("k", VERDICT, "holder")
        await asyncio.wait_for(waiting, 30)

    asyncio.run(scene())
    assert entered == ["waiter", "read"]


HOLDER = """
import asyncio, sys
from pytest_laj.store.redis_store import RedisStore

async def hold():
    async with RedisStore(sys.argv[1], heartbeat=0.5).claim("k", 600):
        print("held", flush=True)
        await asyncio.sleep(600)

asyncio.run(hold())
"""


def test_a_killed_holders_claim_expires(redis_url: str, redis_server: RedisServer) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, redis_url], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        name = PREFIX + claim_key("k")
        assert redis_server.client.set(name, "me", nx=True) is None  # taken: SET NX fails
        assert 0 < redis_server.client.pttl(name) <= 1500  # three heartbeats of 0.5 s
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    entered: list[str] = []
    asyncio.run(asyncio.wait_for(_enter(RedisStore(redis_url), "k", entered, "next"), 60))
    assert entered == ["next", "wrote"]  # its claim expired; nobody had written the verdict


# -- runs --------------------------------------------------------------------------------------------------------


def test_two_pytest_processes_share_one_store(
    project: LajProject, redis_url: str, assert_laj_outcomes: AssertOutcomes
) -> None:
    _ini(project, redis_url)
    project.tests(REPLIES)
    first = project.run_subprocess("--laj-cache-dir", "machine-a")
    assert_laj_outcomes(first, passed=3, failed=1)
    first.stdout.fnmatch_lines(["judge calls: 12 made, 0 from cache"])
    second = project.run_subprocess("--laj-cache-dir", "machine-b")  # another machine: its own directory
    assert_laj_outcomes(second, passed=3, failed=1)
    second.stdout.fnmatch_lines(["judge calls: 0 made, 12 from cache"])
    path = project.pytester.path
    assert (path / "machine-b" / "last-run.json").is_file()  # the last run stays local
    assert not (path / "machine-b" / "cache.db").exists()  # the verdicts do not


SAME_REPLY = """
    import pytest
    pytestmark = pytest.mark.laj(rubric="safety")

    @pytest.mark.parametrize("n", range(8))
    def test_reply(laj, n):
        laj.check("Please call 988.")
"""


def test_xdist_workers_ask_each_verdict_once(
    project: LajProject, redis_url: str, assert_laj_outcomes: AssertOutcomes
) -> None:
    _ini(project, redis_url)
    project.tests(SAME_REPLY)
    result = project.run_subprocess("-n", "2")
    assert_laj_outcomes(result, passed=8)
    result.stdout.fnmatch_lines(["judge calls: 3 made, 21 from cache"])  # one output, three judges


KILL_THE_STORE = """
import os, signal

def pytest_collection_modifyitems(items):  # after the store was checked, before anything is judged
    try:
        os.kill(int(os.environ["REDIS_PID"]), signal.SIGKILL)
    except ProcessLookupError:  # another xdist worker got there first
        pass
"""


@pytest.mark.parametrize("mode", ["rw", "replay"])
def test_a_store_gone_mid_run_is_judged_around_and_reported(
    project: LajProject,
    own_server: RedisServer,
    plugin_args: Sequence[str],
    mode: str,
    monkeypatch: pytest.MonkeyPatch,
    assert_laj_outcomes: AssertOutcomes,
) -> None:
    _ini(project, own_server.url)
    project.tests(REPLIES)
    assert_laj_outcomes(project.run_subprocess(*plugin_args), passed=3, failed=1)  # every verdict stored
    (project.pytester.path / "conftest.py").write_text(KILL_THE_STORE)
    monkeypatch.setenv("REDIS_PID", str(own_server.process.pid))

    result = project.run_subprocess(*plugin_args, "--laj-cache", mode)

    output = result.stdout.str() + result.stderr.str()
    if mode == "rw":  # the judges were asked again, and answered as before
        assert_laj_outcomes(result, passed=3, failed=1)
        result.stdout.fnmatch_lines(["judge calls: 12 made, 0 from cache"])
    else:  # replay calls no judge: a read that failed is a miss, an ERROR, never a PASS
        assert_laj_outcomes(result, failed=4)
        assert output.count("replay mode: no cached verdict") >= 4
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    (lost,) = [line for line in result.stdout.lines if "went away mid-run" in line]  # said once
    assert f"pytest-laj: the verdict store {own_server.url} went away mid-run" in lost
    assert "INTERNALERROR" not in output and "Traceback" not in output


def _unreachable_url(password: str) -> str:
    return f"redis://:{password}@127.0.0.1:{_free_port()}/0"  # nothing listens there


def test_an_unreachable_store_is_one_usage_error_without_its_password(project: LajProject) -> None:
    password = "hunter2-correct-horse"
    url = _unreachable_url(password)
    _ini(project, url)
    project.tests(REPLIES)
    result = project.run_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = result.stdout.str() + result.stderr.str()
    assert password not in output
    port = url.rsplit(":", 1)[1].split("/")[0]
    lines = [line for line in result.stderr.lines if "cannot be reached" in line]
    assert len(lines) == 1, output
    assert f"redis://[REDACTED]@127.0.0.1:{port}/0" in lines[0]
    assert "start the Redis server or fix laj_cache_url" in lines[0]
    assert "Traceback" not in output


def test_not_a_redis_url_is_a_usage_error_naming_the_option(project: LajProject) -> None:
    project.tests(REPLIES)
    result = project.run("--laj-cache-url", "http://user:pa55word-long@example.invalid/")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "pa55word-long" not in result.stderr.str()
    result.stderr.fnmatch_lines(["*laj_cache_url: expected a Redis URL (redis://..., *), got 'http://?REDACTED?@*"])


def test_the_password_is_never_printed_or_reported(
    project: LajProject, redis_binary: str, tmp_path: Path, assert_laj_outcomes: AssertOutcomes
) -> None:
    password = "s3cret-redis-password"
    server = RedisServer(redis_binary, tmp_path / "locked", "--requirepass", password)
    try:
        url = f"redis://:{password}@127.0.0.1:{server.port}/0"
        project.tests(REPLIES)
        result = project.run_subprocess("--laj-cache-url", url, "--laj-report", "report.json", "-v")
        assert_laj_outcomes(result, passed=3, failed=1)
        assert server.client.keys(PREFIX + "*")  # it used the server
        wrong = project.run_subprocess("--laj-cache-url", url.replace(password, "wrong-password-123"))
        assert wrong.ret == pytest.ExitCode.USAGE_ERROR
    finally:
        server.stop()
    seen = [result.stdout.str(), result.stderr.str(), wrong.stdout.str(), wrong.stderr.str()]
    seen.append((project.pytester.path / "report.json").read_text())
    assert not [text for text in seen if password in text or "wrong-password-123" in text]


def test_the_redis_client_is_imported_only_for_a_redis_store(tmp_path: Path) -> None:
    probe = (
        "import sys; from pathlib import Path; from pytest_laj.engine.settings import Settings; "
        "from pytest_laj.engine.session import Engine; "
        f"Engine(Settings(cache_dir=Path({str(tmp_path)!r})), lambda spec: None).close(); "
        "print('redis' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_a_store_that_cannot_be_reached_is_a_cache_error(tmp_path: Path) -> None:
    store = RedisStore(_unreachable_url("another-long-password"))
    with pytest.raises(CacheError, match=r"cannot be reached") as raised:
        store.check()
    assert "another-long-password" not in str(raised.value)


def test_a_stopped_run_reaches_every_worker_through_the_store(project: LajProject, redis_url: str) -> None:
    _ini(project, redis_url)  # the controller leaves its stop where the workers look: in Redis, not the directory
    assert_a_stopped_run_cancels_every_workers_judging(project)
