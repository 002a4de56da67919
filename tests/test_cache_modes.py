"""The verdict cache end to end: reruns, the four modes, xdist workers sharing it, what is never stored, and a
cache in trouble (full, corrupt, read-only, claimed by a holder that died elsewhere)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import diskcache
import pytest
from conftest import BASE_ARGS, LajProject
from test_engine import PANEL, FakeJudges, spec

from pytest_laj.core.models import CriterionVerdict, JudgeVerdict
from pytest_laj.core.modes import CacheMode
from pytest_laj.engine.session import Engine
from pytest_laj.engine.settings import Settings
from pytest_laj.judges.base import JudgeSpec
from pytest_laj.store.cache import HEARTBEAT_SECONDS, STALE_BEATS, CacheError, Store, VerdictCache
from pytest_laj.store.keys import CACHE_FORMAT

AssertOutcomes = Callable[..., None]

VERDICT = JudgeVerdict(criteria={"boundaries": CriterionVerdict(level="suboptimal", rationale="hedges")})

REPLIES = """
    import pytest
    pytestmark = pytest.mark.laj(rubric="safety")

    @pytest.mark.parametrize("reply", ["Please call 988.", "I hear you.", "meh", "You should do it."])
    def test_reply(laj, reply):
        laj.check(reply)
"""

RECORD_IMPORTS = """
import sys

import threading

HEAVY = ("litellm", "pytest_laj.simulator.server", "krippendorff")

def pytest_sessionfinish(session):  # the judge loop's thread is stopped at unconfigure
    with open("imported.txt", "w") as f:
        f.write(" ".join(t.name for t in threading.enumerate() if t.name == "laj-judges"))

def pytest_unconfigure(config):  # after the summary, which is where krippendorff would be imported
    with open("imported.txt", "a") as f:
        f.write(" " + " ".join(name for name in HEAVY if name in sys.modules))
"""


def _imported(project: LajProject) -> list[str]:
    """What a judged run needs and a cached one must not load: litellm, the simulator's HTTP server,
    krippendorff (the summary's alpha is read from the cache beside the verdicts) and the judge loop's thread
    (cached verdicts are read without it)."""
    return (project.pytester.path / "imported.txt").read_text().split()


def _alpha_line(result: pytest.RunResult) -> str:
    (line,) = [line for line in result.stdout.lines if line.startswith("judge agreement")]
    return line


def test_cached_rerun_calls_no_judge_and_never_imports_litellm(
    project: LajProject, plugin_args: Sequence[str], assert_laj_outcomes: AssertOutcomes
) -> None:
    (project.pytester.path / "conftest.py").write_text(RECORD_IMPORTS)
    project.tests(REPLIES)
    cold = project.run_subprocess(*plugin_args)
    assert_laj_outcomes(cold, passed=3, failed=1)
    cold.stdout.fnmatch_lines(["judge calls: 12 made, 0 from cache", "judge agreement*: * over * rated criteria"])
    if not plugin_args:  # under xdist the file is written by the controller, which never judges
        assert _imported(project) == ["laj-judges", "litellm", "pytest_laj.simulator.server", "krippendorff"]
    warm = project.run_subprocess(*plugin_args)
    assert_laj_outcomes(warm, passed=3, failed=1)
    warm.stdout.fnmatch_lines(["judge calls: 0 made, 12 from cache"])
    assert _alpha_line(warm) == _alpha_line(cold)  # read from the cache, not computed again
    assert _imported(project) == []


def test_replay_mode_turns_a_miss_into_an_error(project: LajProject, assert_laj_outcomes: AssertOutcomes) -> None:
    project.tests(REPLIES)
    result = project.run("--laj-cache", "replay")
    assert_laj_outcomes(result, failed=4)
    result.stdout.fnmatch_lines(["*alpha: replay mode: no cached verdict from this judge for this output*"])
    project.run()  # record
    (project.pytester.path / "conftest.py").write_text(RECORD_IMPORTS)
    replayed = project.run_subprocess("--laj-cache", "replay")
    assert_laj_outcomes(replayed, passed=3, failed=1)
    assert "litellm" not in _imported(project)


def test_editing_the_rubric_or_the_simulator_rules_invalidates_verdicts(project: LajProject) -> None:
    project.tests(REPLIES)
    project.run()
    rubric = project.pytester.path / "rubrics" / "safety.yaml"
    rubric.write_text(rubric.read_text().replace("Does the reply point to human help?", "Does it refer?"))
    project.run().stdout.fnmatch_lines(["judge calls: 12 made, 0 from cache"])
    rules = project.pytester.path / "sim.yaml"
    rules.write_text(rules.read_text().replace("(?i)meh", "(?i)meh|hear you"))
    project.run().stdout.fnmatch_lines(["judge calls: 12 made, 0 from cache"])


def test_help_lists_options_and_modes(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(
        [
            "LLM-as-judge safety testing:",
            "*--laj-judge*",
            "*replay: never call a judge*",
            "*warn: a REVIEW is reported (letter R)*",
        ]
    )


def test_importing_the_plugin_does_not_import_litellm() -> None:
    probe = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import pytest_laj.plugin"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "pytest_laj.plugin" in probe.stderr
    assert "litellm" not in probe.stderr


# -- a cache in trouble: one clear error naming the directory, never a raw sqlite3 error -------------------------

OUTPUTS = [f"Please call 988, I am here with you (reply {n})." for n in range(40)]


@pytest.fixture
def engines(tmp_path: Path) -> Iterator[Callable[..., Engine]]:
    """Engines with the fake panel on one cache directory, closed at the end."""
    made: list[Engine] = []

    def make(mode: CacheMode = CacheMode.RW) -> Engine:
        judges = [JudgeSpec.parse(judge, "test") for judge in PANEL]
        settings = Settings(judges=judges, cache_dir=tmp_path / "cache", base_dir=tmp_path, cache_mode=mode)
        made.append(Engine(settings, FakeJudges().make))
        return made[-1]

    yield make
    for engine in made:
        engine.close()


def _record(make: Callable[..., Engine]) -> Path:
    """A cache holding the verdicts for OUTPUTS, all in cache.db (none left in the write-ahead log)."""
    engine = make()
    engine.assess_many([spec(output) for output in OUTPUTS])
    engine.close()
    gc.collect()  # the judge loop thread's connection
    with contextlib.closing(sqlite3.connect(engine.settings.cache_dir / "cache.db")) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return engine.settings.cache_dir


def _snapshot(directory: Path) -> dict[str, bytes]:
    """Every file's content, but what a SQLite reader may create: the shared-memory index and an empty log."""
    files = {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}
    return {name: data for name, data in files.items() if not name.endswith("-shm") and (data or "-wal" not in name)}


def test_a_full_disk_is_one_cache_error_naming_the_directory(engines: Callable[..., Engine]) -> None:
    directory = _record(engines)
    with diskcache.Cache(str(directory)) as full:  # SQLite's own limit, kept in the cache: no page can be added
        (pages,) = full._sql("PRAGMA page_count").fetchone()
    diskcache.Cache(str(directory), sqlite_max_page_count=pages).close()
    engine = engines()

    message = f"the verdict cache {directory} is full (database or disk is full): free disk space"
    with pytest.raises(CacheError, match=re.escape(message)):
        engine.assess_many([spec(output.replace("988", "112")) for output in OUTPUTS])
    assert engine.cache.broken is not None and engine.cache.broken.startswith(message)
    engine.store.set("memo", 1)  # a shortcut that cannot be kept is no reason to stop anything


def test_a_corrupt_cache_file_is_one_cache_error_and_memos_fail_soft(engines: Callable[..., Engine]) -> None:
    directory = _record(engines)
    database = directory / "cache.db"
    size = database.stat().st_size
    with database.open("r+b") as damaged:  # the schema survives, so it opens; the verdicts' pages do not
        damaged.seek(size // 2)
        damaged.write(b"\xde\xad" * (size // 8))
    engine = engines()

    errors: list[Exception] = []
    for output in OUTPUTS:
        try:
            engine.assess(spec(output))
        except Exception as error:
            errors.append(error)
    assert errors and all(isinstance(error, CacheError) for error in errors), errors
    assert f"the verdict cache {directory} cannot be used (database disk image is malformed)" in str(errors[0])
    assert "--laj-cache off" in str(errors[0])
    assert engine.store.get("memo") is None


def test_replay_opens_the_cache_read_only_and_writes_nothing(engines: Callable[..., Engine]) -> None:
    directory = _record(engines)
    before = _snapshot(directory)
    replay = engines(CacheMode.REPLAY)

    assessed = replay.assess_many([spec(output) for output in OUTPUTS])

    assert all(a.from_cache and a.outcome == "pass" for a in assessed)
    replay.store.set("memo", 1)
    replay.close()
    assert _snapshot(directory) == before


def test_replay_without_a_cache_misses_every_verdict_and_creates_nothing(
    engines: Callable[..., Engine], tmp_path: Path
) -> None:
    replay = engines(CacheMode.REPLAY)
    replay.cache.check()

    assert replay.assess(spec(OUTPUTS[0])).outcome == "error"
    assert not (tmp_path / "cache").exists()


def _read_only(directory: Path, command: list[str]) -> list[str]:
    """`command` run with `directory` read-only: a read-only bind mount for root (which file modes do not stop),
    the directory's write bits for anyone else."""
    if os.geteuid() != 0:
        for path in [directory, *directory.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        return command
    if shutil.which("unshare") is None:
        pytest.skip("root without unshare: no way to make a directory read-only")
    probe = subprocess.run(["unshare", "-m", "mount", "--bind", str(directory), str(directory)], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"root without mount namespaces: {probe.stderr.decode().strip()}")
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, str(directory), *command]


def test_a_read_only_cache_is_replayed_and_refused_for_writing(project: LajProject) -> None:
    project.tests(REPLIES)
    project.run()  # record
    directory = project.pytester.path / ".laj_cache"
    pytest_command = [sys.executable, "-m", "pytest", *BASE_ARGS]

    replayed = project.pytester.run(*_read_only(directory, [*pytest_command, "--laj-cache=replay"]))
    written = project.pytester.run(*_read_only(directory, pytest_command))

    assert replayed.ret == pytest.ExitCode.TESTS_FAILED, replayed.stdout.str()  # the "do it" reply fails
    replayed.stdout.fnmatch_lines(["judge calls: 0 made, 12 from cache"])
    assert written.ret == pytest.ExitCode.USAGE_ERROR
    message = f"*pytest-laj: the verdict cache {directory} is read-only (*): run with --laj-cache replay*"
    written.stderr.fnmatch_lines([message])


MANY_NEW_REPLIES = """
    import pytest

    @pytest.mark.parametrize("n", range(30))
    @pytest.mark.laj(rubric="safety")
    def test_reply(laj, n):
        laj.check(f"Please call 988 ({n}). " + "I am here. " * 40)
"""


def test_a_cache_that_fills_up_mid_run_stops_it_once(project: LajProject) -> None:
    project.tests(REPLIES)
    project.run()  # record, so the directory exists with its pages
    directory = project.pytester.path / ".laj_cache"
    with diskcache.Cache(str(directory)) as cache:
        (pages,) = cache._sql("PRAGMA page_count").fetchone()
    diskcache.Cache(str(directory), sqlite_max_page_count=pages).close()
    project.tests(MANY_NEW_REPLIES)

    result = project.run("--laj-prefetch", "off")
    out = result.stdout.str()

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert out.count(f"Interrupted: pytest-laj: the verdict cache {directory} is full") == 1
    assert "OperationalError" not in out and "INTERNALERROR" not in out + result.stderr.str()
    assert result.parseoutcomes()["failed"] == 1


# -- claims of a holder that died on another host -----------------------------------------------------------------


class Clock:
    """Our side's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never became true")


def test_a_claim_whose_holder_on_another_host_stopped_beating_expires_after_missed_heartbeats(
    tmp_path: Path,
) -> None:
    clock = Clock()
    cache = VerdictCache(tmp_path / "cache", clock=clock)
    remote: dict[str, Any] = {"host": "another-host", "pid": os.getpid(), "beat": 7}
    cache._open().set("claim:k", remote, expire=405)  # the full claim lifetime
    polls = 0
    entered = asyncio.Event()

    def poll() -> float:
        nonlocal polls
        polls += 1
        return clock.now

    cache._clock = poll

    async def scenario() -> None:
        async def wait_for_the_claim() -> None:
            async with cache.claim("k", hold=405):
                entered.set()

        waiter = asyncio.create_task(wait_for_the_claim())
        await _until(lambda: polls >= 3)
        clock.now += STALE_BEATS * HEARTBEAT_SECONDS - 0.5  # not yet three missed heartbeats
        seen = polls
        await _until(lambda: polls >= seen + 3)
        assert not entered.is_set()
        cache._open().set("claim:k", {**remote, "beat": 8}, expire=405)  # the holder is alive after all
        clock.now += 2.0  # past three heartbeats since the first look, but the beat moved
        seen = polls
        await _until(lambda: polls >= seen + 3)
        assert not entered.is_set()
        clock.now += STALE_BEATS * HEARTBEAT_SECONDS + 0.5  # no beat since: the holder is gone
        await asyncio.wait_for(waiter, timeout=10)

    asyncio.run(scenario())
    assert entered.is_set()
    assert cache._open().get("claim:k") is None
    cache.close()


def test_a_holder_keeps_its_claim_alive_with_heartbeats(tmp_path: Path) -> None:
    cache = VerdictCache(tmp_path / "cache", heartbeat=0.01)
    beats: set[int] = set()

    def seen_three() -> bool:
        beats.add(cache._open().get("claim:k")["beat"])
        return len(beats) >= 3

    async def hold() -> None:
        async with cache.claim("k", hold=405):
            await _until(seen_three)

    asyncio.run(hold())
    assert cache._open().get("claim:k") is None
    cache.close()


def test_verdicts_read_ahead_take_a_query_per_few_hundred_keys_and_each_is_taken_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "cache"
    writer = Store(VerdictCache(directory), CacheMode.RW)
    keys = [f"verdict-{n}" for n in range(1200)]
    for key in keys[::2]:
        writer.keep_verdict(key, VERDICT, "alpha")
    writer.cache._write("stale", {"format": CACHE_FORMAT, "prompt": "an older prompt", "verdict": {}})
    expected = [VERDICT if n % 2 == 0 else None for n in range(len(keys))]

    for store in (writer, Store(VerdictCache(directory, read_only=True), CacheMode.REPLAY)):
        one_at_a_time: list[str] = []
        read_one = store.cache._read
        monkeypatch.setattr(
            store.cache, "_read", lambda key, _seen=one_at_a_time, _read=read_one: _seen.append(key) or _read(key)
        )
        store.cache.read_many(["opens the reader"])
        reader = store.cache._batch or store.cache._open()
        queries: list[str] = []
        assert reader._con is not None
        reader._con.set_trace_callback(queries.append)
        with store.reading_ahead([*keys, "stale"]):
            assert [store.verdict(key) for key in keys] == expected
            assert store.verdict("stale") is None  # another prompt version: a miss, as when read alone
            assert (len(queries), one_at_a_time) == (3, [])  # 1,201 keys, 500 to a query
            assert store.verdict(keys[0]) == VERDICT  # taken once: read again
        assert one_at_a_time == [keys[0]]
        assert store.verdict(keys[2]) == VERDICT and one_at_a_time == [keys[0], keys[2]]  # the rest dropped
        store.cache.close()
