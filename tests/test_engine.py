"""The engine alone, without pytest runs: cache modes and keys, budgets, retries, quorum and timeouts, one call per
missing verdict, suite-level prefetch, producers and call counts.

Every judge here is a fake in this process (no pytester, no simulator, no litellm, no network); waits are on
events, never on long sleeps, and nothing asserts on how long anything took.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import diskcache
import pytest
import yaml
from conftest import RUBRIC

from pytest_laj.core.case import Case
from pytest_laj.core.labels import Decision, Label
from pytest_laj.core.models import Assessment, CriterionVerdict, JudgeResult, JudgeVerdict, Outcome
from pytest_laj.core.modes import CacheMode
from pytest_laj.core.rubric import Rubric
from pytest_laj.engine.produce import Producer
from pytest_laj.engine.session import Engine
from pytest_laj.engine.settings import Settings
from pytest_laj.engine.spec import AssessmentSpec
from pytest_laj.errors import UsageError
from pytest_laj.judges.base import Judge, JudgeSpec
from pytest_laj.judges.llm import LiteLLMJudge
from pytest_laj.judges.protocol import InvalidVerdict, JudgeRequest
from pytest_laj.store.keys import label_key
from pytest_laj.store.labels import LabelStore

ALPHA, BETA, GAMMA = "fake/alpha", "fake/beta", "fake/gamma"
PANEL = (ALPHA, BETA, GAMMA)
REPLY = "Please call 988, I'm with you."

SAFETY = Rubric.model_validate(yaml.safe_load(RUBRIC))  # the pytester projects' rubric; quorum 2
EDITED = Rubric.model_validate(yaml.safe_load(RUBRIC.replace("Does the reply point to human help?", "Does it refer?")))


# -- fake judges ------------------------------------------------------------------------------------------------

Behaviour = Callable[["FakeJudge", JudgeRequest], Awaitable[JudgeVerdict]]


def verdict(request: JudgeRequest, level: str | None = None, cost_usd: float | None = None) -> JudgeVerdict:
    """Best practice everywhere (or `level`), except that telling someone to 'do it' crosses a boundary."""
    levels = {c.id: level or "best_practice" for c in request.criteria}
    if level is None and "do it" in request.output.lower() and "boundaries" in levels:
        levels["boundaries"] = "high_harm"
    criteria = {cid: CriterionVerdict(level=lv, rationale=f"rated {lv}") for cid, lv in levels.items()}
    return JudgeVerdict(criteria=criteria, cost_usd=cost_usd)


async def answer(judge: FakeJudge, request: JudgeRequest) -> JudgeVerdict:
    return verdict(request)


def answering(level: str) -> Behaviour:
    async def rate(judge: FakeJudge, request: JudgeRequest) -> JudgeVerdict:
        return verdict(request, level)

    return rate


def priced(cost_usd: float) -> Behaviour:
    async def rate(judge: FakeJudge, request: JudgeRequest) -> JudgeVerdict:
        return verdict(request, cost_usd=cost_usd)

    return rate


def failing(error: Exception, times: int | None = None) -> Behaviour:
    """Raise `error` on the first `times` calls (on every call when None), then answer."""

    async def rate(judge: FakeJudge, request: JudgeRequest) -> JudgeVerdict:
        if times is None or len(judge.requests) <= times:
            raise error
        return verdict(request)

    return rate


def held_until(gate: threading.Event, matching: str = "") -> Behaviour:
    """Answer an output containing `matching` only once the test opens the gate."""

    async def rate(judge: FakeJudge, request: JudgeRequest) -> JudgeVerdict:
        while matching in request.output and not gate.is_set():
            await asyncio.sleep(0.001)
        return verdict(request)

    return rate


async def yielding(judge: FakeJudge, request: JudgeRequest) -> JudgeVerdict:
    """Give the loop to every other call a few times before answering, as a network call would."""
    for _ in range(20):
        await asyncio.sleep(0)
    return verdict(request)


async def hang(judge: FakeJudge, request: JudgeRequest) -> JudgeVerdict:
    """Never answer: only a timeout or a cancellation ends the call."""
    await asyncio.Event().wait()
    raise AssertionError("the event is never set")


class FakeJudge(Judge):
    """A judge that does what its behaviour says and remembers every request and its one-time set-ups."""

    def __init__(self, spec: JudgeSpec, behaviours: dict[str, Behaviour]) -> None:
        self.spec = spec
        self.name = spec.label
        self.weight = spec.weight
        self.max_concurrency = spec.max_concurrency
        self._behaviours = behaviours
        self._identity = LiteLLMJudge(spec, timeout=60.0).identity()  # keyed like an LLM judge of this spec
        self._lock = threading.Lock()
        self.requests: list[JudgeRequest] = []
        self.prepared = 0
        self.in_flight = 0
        self.peak = 0

    def identity(self) -> dict[str, Any]:
        return self._identity

    def retry_after(self, error: BaseException) -> float | None:
        return 0.0  # retry at once: no backoff sleeps in these tests

    def prepare(self) -> None:
        with self._lock:
            self.prepared += 1

    async def rate(self, request: JudgeRequest) -> JudgeVerdict:
        self.requests.append(request)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await self._behaviours.get(self.name, answer)(self, request)
        finally:
            self.in_flight -= 1


class FakeJudges:
    """The `make_judge` of every engine in a test: what each judge (by name) does, and every judge built."""

    def __init__(self) -> None:
        self.behaviours: dict[str, Behaviour] = {}
        self.built: list[FakeJudge] = []

    def make(self, spec: JudgeSpec) -> Judge:
        judge = FakeJudge(spec, self.behaviours)
        self.built.append(judge)
        return judge

    def __getitem__(self, name: str) -> FakeJudge:
        return [judge for judge in self.built if judge.name == name][-1]

    def outputs(self, name: str) -> list[str]:
        """Every output judges of this name were asked about, in every panel and engine of the test."""
        return [r.output for judge in self.built if judge.name == name for r in judge.requests]

    def calls(self) -> int:
        return sum(len(judge.requests) for judge in self.built)


class MakeEngine(Protocol):
    def __call__(self, judges: Sequence[str] = PANEL, producer: Producer | None = None, **settings: Any) -> Engine: ...


@pytest.fixture(autouse=True)
def _no_litellm() -> Iterator[None]:
    before = "litellm" in sys.modules
    yield
    assert before or "litellm" not in sys.modules, "an engine test imported litellm"


@pytest.fixture
def fakes() -> FakeJudges:
    return FakeJudges()


@pytest.fixture
def make_engine(tmp_path: Path, fakes: FakeJudges) -> Iterator[MakeEngine]:
    """Engines on one cache directory (a second engine is a rerun), each closed at the end of the test."""
    engines: list[Engine] = []

    def make(judges: Sequence[str] = PANEL, producer: Producer | None = None, **settings: Any) -> Engine:
        options: dict[str, Any] = {
            "cache_dir": tmp_path / "cache",
            "rubric_dirs": [tmp_path / "rubrics"],
            "base_dir": tmp_path,
            "retries": 0,
            **settings,
        }
        configured = [JudgeSpec.parse(judge, "test") for judge in judges]
        engine = Engine(Settings(judges=configured, **options), fakes.make, lambda: producer)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


@pytest.fixture
def engine(make_engine: MakeEngine) -> Engine:
    return make_engine()


def spec(output: Any, **fields: Any) -> AssessmentSpec:
    """An assessment with the safety rubric and the configured panel of three, quorum 2."""
    return AssessmentSpec(output=output, **{"rubric": SAFETY, **fields})


def solo(output: str, **fields: Any) -> AssessmentSpec:
    """An assessment by alpha alone (a marker's `judges=`), quorum 1."""
    return spec(output, **{"judges": [ALPHA], "thresholds": {"quorum": 1}, **fields})


def levels(result: JudgeResult) -> dict[str, str]:
    assert result.verdict is not None, result.error
    return {cid: v.level for cid, v in result.verdict.criteria.items()}


def eventually(condition: Callable[[], bool]) -> None:
    """Wait for work on the judge loop to finish (bounded, so a bug fails instead of hanging)."""
    for _ in range(2000):
        if condition():
            return
        time.sleep(0.005)
    raise AssertionError("the condition never became true")


# -- the four cache modes -----------------------------------------------------------------------------------------


def test_rw_second_assess_of_an_output_reads_the_cache_and_calls_no_judge(
    make_engine: MakeEngine, fakes: FakeJudges
) -> None:
    engine = make_engine()
    first = engine.assess(spec(REPLY))
    again = engine.assess(spec(REPLY))
    rerun = make_engine().assess(spec(REPLY))  # a new run on the same cache directory

    assert first.outcome is Outcome.PASS and not first.from_cache
    assert [(j.cached, j.attempts) for j in first.judges] == [(False, 1)] * 3
    for cached in (again, rerun):
        assert cached.outcome is Outcome.PASS and cached.from_cache
        assert cached.calls_made == 0 and cached.cache_hits == 3
        assert "judges: fake/alpha (cached); fake/beta (cached); fake/gamma (cached)" in cached.explain()
    assert fakes.calls() == 3
    assert (engine.rater.counts.calls, engine.rater.counts.cache_hits) == (3, 3)


def test_replay_calls_no_judge_and_a_missing_verdict_is_an_error(make_engine: MakeEngine, fakes: FakeJudges) -> None:
    missing = make_engine(cache_mode=CacheMode.REPLAY).assess(spec(REPLY))

    assert missing.outcome is Outcome.ERROR
    assert "only 0 of 3 judges gave a valid verdict; quorum is 2" in missing.reason
    assert f"{ALPHA}: replay mode: no cached verdict from this judge for this output" in missing.reason
    assert all(j.error and j.error.startswith("replay mode: no cached verdict") for j in missing.judges)
    assert fakes.calls() == 0

    make_engine().assess(spec(REPLY))  # record
    replay = make_engine(cache_mode=CacheMode.REPLAY)
    replayed = replay.assess(spec(REPLY))

    assert replayed.outcome is Outcome.PASS and replayed.from_cache
    assert fakes.calls() == 3
    assert (replay.rater.counts.calls, replay.rater.counts.cache_hits) == (0, 3)


def test_replay_misses_the_judges_never_recorded_and_errs_without_quorum(
    make_engine: MakeEngine, fakes: FakeJudges
) -> None:
    make_engine().assess(solo(REPLY))  # only alpha's verdict is recorded

    replayed = make_engine(cache_mode=CacheMode.REPLAY).assess(spec(REPLY))

    assert replayed.outcome is Outcome.ERROR
    assert [(j.judge, j.cached) for j in replayed.judges if j.valid] == [(ALPHA, True)]
    assert "only 1 of 3 judges gave a valid verdict; quorum is 2" in replayed.reason
    assert f"{BETA}: replay mode" in replayed.reason and f"{GAMMA}: replay mode" in replayed.reason
    assert fakes.calls() == 1


def test_refresh_calls_every_judge_again_and_overwrites_the_cache(make_engine: MakeEngine, fakes: FakeJudges) -> None:
    fakes.behaviours[ALPHA] = answering("suboptimal")
    make_engine().assess(spec(REPLY))
    del fakes.behaviours[ALPHA]  # alpha now answers best practice

    refresh = make_engine(cache_mode=CacheMode.REFRESH)
    refreshed = refresh.assess(spec(REPLY))
    reread = make_engine().assess(spec(REPLY))

    assert not refreshed.from_cache and refreshed.calls_made == 3
    assert (refresh.rater.counts.calls, refresh.rater.counts.cache_hits) == (3, 0)
    assert reread.from_cache
    assert levels(reread.judges[0])["boundaries"] == "best_practice"  # the refreshed verdict replaced the old
    assert fakes.calls() == 6


def test_off_never_touches_the_disk(make_engine: MakeEngine, fakes: FakeJudges, tmp_path: Path) -> None:
    produced: list[str] = []

    def chatbot(case: Case) -> str:
        produced.append(case.id)
        return REPLY

    fresh = tmp_path / "never-created"
    off = make_engine(cache_mode=CacheMode.OFF, cache_dir=fresh, producer=Producer(chatbot))
    first = off.assess(spec(REPLY))
    again = off.assess(spec(REPLY))
    off.assess_many([spec(REPLY), spec(REPLY)])
    assert off.prefetch("t.py::test_case[x]", spec(REPLY))
    collected = off.assess(spec(REPLY))
    case = Case(id="greets", input="hello")
    assert off.produce(case) == off.produce(case) == REPLY

    assert not first.from_cache and not again.from_cache and not collected.from_cache
    assert fakes.calls() == 15 and (off.rater.counts.calls, off.rater.counts.cache_hits) == (15, 0)
    assert produced == ["greets", "greets"]
    assert not fresh.exists()


def test_off_ignores_an_existing_cache_and_leaves_it_unchanged(make_engine: MakeEngine, fakes: FakeJudges) -> None:
    fakes.behaviours[ALPHA] = answering("suboptimal")
    make_engine().assess(spec(REPLY))  # rw records alpha's suboptimal verdict
    del fakes.behaviours[ALPHA]

    ignored = make_engine(cache_mode=CacheMode.OFF).assess(spec(REPLY))
    kept = make_engine().assess(spec(REPLY))

    assert not ignored.from_cache and ignored.calls_made == 3
    assert levels(ignored.judges[0])["boundaries"] == "best_practice"
    assert kept.from_cache and levels(kept.judges[0])["boundaries"] == "suboptimal"  # off wrote nothing over it
    assert fakes.calls() == 6


# -- what goes into a verdict's key -----------------------------------------------------------------------------

CHANGES_THE_VERDICT: dict[str, dict[str, Any]] = {
    "output": {"output": REPLY + " Always."},
    "input": {"input": "I feel awful"},
    "empty input": {"input": ""},
    "context": {"context": {"risk": "imminent"}},
    "rubric content": {"rubric": EDITED},
    "model": {"judges": ["fake/alpha-2"]},
    "temperature": {"judges": [f"{ALPHA} temperature=0.3"]},
    "sampling option": {"judges": [f"{ALPHA} max_tokens=512"]},
}

KEEPS_THE_VERDICT: dict[str, dict[str, Any]] = {
    "api key": {"judges": [f"{ALPHA} api_key=sk-live-0123456789SECRET"]},
    "api base": {"judges": [f"{ALPHA} api_base=http://127.0.0.1:9"]},
    "transport options": {"judges": [f"{ALPHA} timeout=5 num_retries=2"]},
    "credential-named option": {"judges": [f"{ALPHA} aws_session_token=tok-123"]},
    "name and weight": {"judges": [f"{ALPHA} name=renamed weight=2"]},
    "context default given": {"context": {"risk": "none"}},
}


@pytest.mark.parametrize("change", CHANGES_THE_VERDICT.values(), ids=list(CHANGES_THE_VERDICT))
def test_what_changes_a_verdict_changes_its_key(engine: Engine, fakes: FakeJudges, change: dict[str, Any]) -> None:
    engine.assess(solo(REPLY))

    changed = engine.assess(solo(**{"output": REPLY, **change}))
    again = engine.assess(solo(**{"output": REPLY, **change}))

    assert not changed.from_cache and changed.calls_made == 1
    assert again.from_cache  # kept under its own key
    assert fakes.calls() == 2


@pytest.mark.parametrize("change", KEEPS_THE_VERDICT.values(), ids=list(KEEPS_THE_VERDICT))
def test_what_does_not_change_a_verdict_keeps_its_key(
    engine: Engine, fakes: FakeJudges, change: dict[str, Any]
) -> None:
    engine.assess(solo(REPLY))

    same = engine.assess(solo(**{"output": REPLY, **change}))

    assert same.from_cache and same.calls_made == 0
    assert fakes.calls() == 1


def test_editing_a_rubric_file_invalidates_its_verdicts(
    make_engine: MakeEngine, fakes: FakeJudges, tmp_path: Path
) -> None:
    rubric = tmp_path / "rubrics" / "safety.yaml"
    rubric.parent.mkdir()
    rubric.write_text(RUBRIC)
    make_engine().assess(spec(REPLY, rubric="safety"))
    unchanged = make_engine().assess(spec(REPLY, rubric="safety"))

    rubric.write_text(RUBRIC.replace("Does the reply point to human help?", "Does it refer?"))
    edited = make_engine().assess(spec(REPLY, rubric="safety"))

    assert unchanged.from_cache
    assert not edited.from_cache and edited.calls_made == 3
    assert fakes.calls() == 6


def test_failed_and_invalid_verdicts_are_never_cached(
    make_engine: MakeEngine, fakes: FakeJudges, tmp_path: Path
) -> None:
    fakes.behaviours[BETA] = failing(PermissionError("HTTP 403: forbidden"))
    fakes.behaviours[GAMMA] = failing(InvalidVerdict("no JSON verdict", answer="I can't help with that."))
    engine = make_engine()

    runs = [engine.assess(spec("broken reply", thresholds={"quorum": 1, "min_agreement": 0.3})) for _ in range(2)]

    for run, assessment in enumerate(runs):
        alpha, beta, gamma = assessment.judges
        assert assessment.outcome is Outcome.PASS  # alpha alone is a quorum of one, and a third of the panel
        assert alpha.cached is (run == 1)
        assert (beta.error, beta.attempts) == ("PermissionError: HTTP 403: forbidden", 1)
        assert (gamma.error, gamma.attempts) == ("invalid verdict after a repair re-ask: no JSON verdict", 2)
    assert [len(fakes.outputs(name)) for name in PANEL] == [1, 2, 4]  # the failures are asked again each run
    engine.close()
    with diskcache.Cache(str(tmp_path / "cache")) as cache:
        stored = {str(key): cache[key] for key in cache.iterkeys()}
    assert [entry["judge"] for entry in stored.values() if "verdict" in entry] == [ALPHA]
    # Beside it only the output's injection scan (nothing found): the failed judges left nothing.
    others = [(key.split(":")[0], entry.get("value")) for key, entry in stored.items() if "verdict" not in entry]
    assert others == [("injection", [])]


def test_when_every_judge_fails_the_outcome_is_error_run_after_run(engine: Engine, fakes: FakeJudges) -> None:
    fakes.behaviours[BETA] = failing(RuntimeError("HTTP 500: internal error"))
    fakes.behaviours[GAMMA] = failing(InvalidVerdict("a refusal in prose", answer="I cannot rate this."))

    for _ in range(2):
        failed = engine.assess(spec("broken reply", judges=[BETA, GAMMA], thresholds={"quorum": 1}))
        assert failed.outcome is Outcome.ERROR
        assert "only 0 of 2 judges gave a valid verdict; quorum is 1" in failed.reason
    assert engine.rater.counts.calls == 6  # per run: beta once, gamma twice (one repair re-ask)


def test_samples_of_one_model_at_one_setting_keep_their_own_verdicts(
    make_engine: MakeEngine, fakes: FakeJudges
) -> None:
    samples = [f"openai/m temperature=0.8 name={name}" for name in ("s1", "s2", "s3")]
    fakes.behaviours["s2"] = answering("high_harm")
    uncached = make_engine(samples, cache_mode=CacheMode.OFF).assess(spec(REPLY))

    cold, warm = (make_engine(samples).assess(spec(REPLY)) for _ in range(2))

    for assessment in (uncached, cold, warm):
        assert [levels(j)["boundaries"] for j in assessment.judges] == ["best_practice", "high_harm", "best_practice"]
        assert assessment.outcome is Outcome.REVIEW
    assert [j.cached for j in warm.judges] == [True, True, True]
    assert len(fakes.outputs("s1")) + len(fakes.outputs("s2")) + len(fakes.outputs("s3")) == 6  # uncached, cold


def test_two_panel_members_with_one_name_are_a_usage_error(make_engine: MakeEngine) -> None:
    twins = ["openai/m temperature=0.8", "openai/m temperature=0.8"]
    with pytest.raises(UsageError, match=r"configured judges: two panel members are named 'openai/m'; give each"):
        make_engine(twins)

    engine = make_engine()
    with pytest.raises(UsageError, match=r"laj marker judges: two panel members are named 'openai/m'"):
        engine.assess(spec(REPLY, judges=twins))


# -- people's decisions ------------------------------------------------------------------------------------------


def test_the_engine_honours_a_decision_on_exactly_what_was_judged(make_engine: MakeEngine, tmp_path: Path) -> None:
    reply = "maybe do it"  # alpha and beta see harm, gamma does not: a critical dispute
    key = label_key(SAFETY.id, SAFETY.judged_fingerprint(), None, {"risk": "none"}, reply)
    labels = tmp_path / "laj-labels.yaml"
    store = LabelStore(labels)
    store.decide(
        Label(key=key, rubric=SAFETY.id),
        Decision(reviewer="dr-a", decided_at="2026-12-01T10:00:00+00:00", levels={"boundaries": "suboptimal"}),
    )
    store.save()
    engine = make_engine(labels=labels)
    engine.labels = engine.load_labels()

    decided = engine.assess(spec(reply, context={"risk": "none"}))
    changed = engine.assess(spec(reply + ".", context={"risk": "none"}))

    assert decided.label_key == key
    assert decided.criteria["boundaries"].consensus == "suboptimal"
    assert decided.criteria["boundaries"].human is not None
    assert changed.criteria["boundaries"].human is None


# -- budgets ------------------------------------------------------------------------------------------------------


def test_max_calls_leaves_the_judges_not_asked_missing(make_engine: MakeEngine, fakes: FakeJudges) -> None:
    engine = make_engine(max_calls=4)

    full = engine.assess(spec("reply 1"))
    short = engine.assess(spec("reply 2"))
    spent = engine.assess(spec("reply 3"))
    cached = engine.assess(spec("reply 1"))

    assert full.outcome is Outcome.PASS
    assert short.outcome is Outcome.ERROR and spent.outcome is Outcome.ERROR
    assert "only 1 of 3 judges gave a valid verdict; quorum is 2" in short.reason
    not_asked = [j for a in (short, spent) for j in a.judges if not j.valid]
    assert len(not_asked) == 5
    for judge in not_asked:
        assert judge.budget_exhausted and judge.attempts == 0
        assert judge.error == "budget exhausted: --laj-max-calls 4 reached; judge not called"
    assert cached.outcome is Outcome.PASS and cached.from_cache  # a stored verdict needs no call
    assert fakes.calls() == 4 and engine.rater.counts.calls == 4


def test_max_cost_stops_calls_once_spent(make_engine: MakeEngine, fakes: FakeJudges) -> None:
    fakes.behaviours[ALPHA] = priced(0.01)
    engine = make_engine(judges=[ALPHA], max_cost=0.025, cache_mode=CacheMode.OFF)

    results = [engine.assess(spec(f"reply {n}", thresholds={"quorum": 1})) for n in range(5)]

    assert [a.outcome for a in results] == [Outcome.PASS] * 3 + [Outcome.ERROR] * 2
    assert results[0].judges[0].cost_usd == pytest.approx(0.01)
    for assessment in results[3:]:
        (judge,) = assessment.judges
        assert judge.budget_exhausted and judge.attempts == 0
        assert judge.error == "budget exhausted: --laj-max-cost 0.025 USD spent; judge not called"
    assert fakes.calls() == 3
    assert engine.rater.counts.calls == 3 and engine.rater.counts.cost_usd == pytest.approx(0.03)


# -- retries and the repair re-ask ---------------------------------------------------------------------------------


def test_a_transient_error_is_retried_then_the_judge_is_missing(make_engine: MakeEngine, fakes: FakeJudges) -> None:
    fakes.behaviours[ALPHA] = failing(ConnectionError("connection reset by peer"))
    engine = make_engine(retries=2)

    failed = engine.assess(solo(REPLY))

    (alpha,) = failed.judges
    assert failed.outcome is Outcome.ERROR
    assert alpha.attempts == 3
    assert alpha.error == "ConnectionError: connection reset by peer (after 3 attempts)"
    assert len(fakes.outputs(ALPHA)) == 3 and engine.rater.counts.calls == 3


def test_a_transient_error_that_clears_is_retried_to_a_cached_verdict(
    make_engine: MakeEngine, fakes: FakeJudges
) -> None:
    fakes.behaviours[ALPHA] = failing(TimeoutError("read timed out"), times=2)
    engine = make_engine(retries=2)

    recovered = engine.assess(solo(REPLY))
    again = engine.assess(solo(REPLY))

    assert recovered.outcome is Outcome.PASS and recovered.judges[0].attempts == 3
    assert again.from_cache
    assert engine.rater.counts.calls == 3


def test_a_non_transient_error_is_not_retried(make_engine: MakeEngine, fakes: FakeJudges) -> None:
    fakes.behaviours[ALPHA] = failing(ValueError("HTTP 400: bad request"))

    failed = make_engine(retries=3).assess(solo(REPLY))

    (alpha,) = failed.judges
    assert failed.outcome is Outcome.ERROR
    assert (alpha.attempts, alpha.error) == (1, "ValueError: HTTP 400: bad request")
    assert len(fakes.outputs(ALPHA)) == 1


def test_an_invalid_answer_gets_one_repair_re_ask(make_engine: MakeEngine, fakes: FakeJudges) -> None:
    problem, bad = "criterion 'boundaries' is missing", '{"guides_to_care": "best_practice"}'
    fakes.behaviours[ALPHA] = failing(InvalidVerdict(problem, answer=bad), times=1)
    engine = make_engine()

    repaired = engine.assess(solo(REPLY))

    assert repaired.outcome is Outcome.PASS and repaired.judges[0].attempts == 2
    first, second = fakes[ALPHA].requests
    assert first.repair is None
    assert second.repair is not None and (second.repair.answer, second.repair.problem) == (bad, problem)
    assert engine.assess(solo(REPLY)).from_cache


@pytest.mark.parametrize(
    ("answer_given", "attempts", "error"),
    [
        ("not json at all", 2, "invalid verdict after a repair re-ask: empty verdict"),
        (None, 1, "invalid verdict: empty verdict"),  # nothing to quote back: no re-ask
    ],
    ids=["after-repair", "no-answer"],
)
def test_an_answer_still_invalid_leaves_the_judge_missing(
    make_engine: MakeEngine, fakes: FakeJudges, answer_given: str | None, attempts: int, error: str
) -> None:
    fakes.behaviours[ALPHA] = failing(InvalidVerdict("empty verdict", answer=answer_given))

    failed = make_engine(retries=3).assess(solo(REPLY))

    (alpha,) = failed.judges
    assert failed.outcome is Outcome.ERROR
    assert (alpha.attempts, alpha.error) == (attempts, error)


# -- quorum and timeouts -----------------------------------------------------------------------------------------


def test_a_judge_that_hangs_times_out_and_the_others_are_a_quorum(make_engine: MakeEngine, fakes: FakeJudges) -> None:
    fakes.behaviours[GAMMA] = hang
    engine = make_engine(timeout=0.1)

    quorate = engine.assess(spec(REPLY))
    strict = engine.assess(spec(REPLY, thresholds={"quorum": 3}))

    # Two of three agreeing is a quorum but not the 75% agreement a pass needs without the third.
    assert quorate.outcome is Outcome.REVIEW and quorate.provisional is Outcome.PASS and quorate.valid_judges == 2
    assert (quorate.judges[2].error, quorate.judges[2].attempts) == ("timed out after 0.1 s", 1)
    assert strict.outcome is Outcome.ERROR
    assert "only 2 of 3 judges gave a valid verdict; quorum is 3 (fake/gamma: timed out after 0.1 s)" in strict.reason
    assert [j.cached for j in strict.judges] == [True, True, False]


def test_outputs_over_max_chars_are_refused_not_truncated(make_engine: MakeEngine, fakes: FakeJudges) -> None:
    engine = make_engine(max_chars=100)

    with pytest.raises(UsageError, match=r"the output is 101 characters, over laj_max_chars \(100\).*never truncates"):
        engine.assess(spec("x" * 101))
    with pytest.raises(UsageError, match=r"the input is 101 characters"):
        engine.assess(spec("fine", input="x" * 101))
    assert fakes.calls() == 0
    assert engine.assess(spec("")).valid_judges == 3  # an empty reply is judged like any other


# -- one call per missing verdict, however many ask at once ---------------------------------------------------------


def test_assess_many_asks_each_judge_once_per_distinct_output(engine: Engine, fakes: FakeJudges) -> None:
    for name in PANEL:
        fakes.behaviours[name] = yielding
    x, y = spec(REPLY), spec("I hear you.")

    results = engine.assess_many([x, x, y, x])

    assert [a.from_cache for a in results] == [False, True, False, True]  # the duplicates waited and read
    assert all(sorted(fakes.outputs(name)) == sorted([x.output, y.output]) for name in PANEL)
    assert (engine.rater.counts.calls, engine.rater.counts.cache_hits) == (6, 6)


def test_concurrent_aassess_of_one_output_make_one_call(
    engine: Engine, fakes: FakeJudges, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second call reaches the judge loop while the first call's judge is still answering; it waits on that
    verdict instead of asking again. The judge answers only once both have read the store and missed."""
    gate = threading.Event()
    fakes.behaviours[ALPHA] = held_until(gate)
    misses = threading.Condition()
    reads = [0]
    read = engine.store.verdict

    def counted(key: str) -> JudgeVerdict | None:
        found = read(key)
        with misses:
            reads[0] += 1
            misses.notify_all()
        return found

    monkeypatch.setattr(engine.store, "verdict", counted)

    def both_waiting() -> bool:
        # first: before calling (test thread), on the loop, under the lock; second: before calling, on the loop
        with misses:
            return misses.wait_for(lambda: reads[0] >= 5, timeout=10)

    async def together() -> list[Assessment]:
        first = asyncio.create_task(engine.aassess(solo(REPLY)))
        second = asyncio.create_task(engine.aassess(solo(REPLY)))
        try:
            assert await asyncio.to_thread(both_waiting)
        finally:
            gate.set()
        return [await first, await second]

    first, second = asyncio.run(together())

    assert (first.from_cache, second.from_cache) == (False, True)
    assert first.outcome is second.outcome is Outcome.PASS
    assert fakes.outputs(ALPHA) == [REPLY]
    assert (engine.rater.counts.calls, engine.rater.counts.cache_hits) == (1, 1)


def test_each_judge_keeps_its_own_concurrency_bound(make_engine: MakeEngine, fakes: FakeJudges) -> None:
    names = ("fake/one", "fake/three", "fake/free")
    for name in names:
        fakes.behaviours[name] = yielding
    engine = make_engine(
        judges=["fake/one max_concurrency=1", "fake/three max_concurrency=3", "fake/free"], cache_mode=CacheMode.OFF
    )
    engine.assess(spec("warm-up"))  # every judge's one-time prepare() is behind it

    engine.assess_many([spec(f"reply {i}") for i in range(8)])

    assert [fakes[name].peak for name in names] == [1, 3, 8]


# -- prefetch ----------------------------------------------------------------------------------------------------


def unclaimed(engine: Engine) -> list[tuple[str, bool]]:
    """Each prefetch no test collected: its owner, and whether its judging finished."""
    return [(u.owner, u.finished) for u in engine.prefetcher.uncollected()]


def test_a_prefetched_assessment_is_collected_without_a_second_call(engine: Engine, fakes: FakeJudges) -> None:
    assert engine.prefetch("t.py::test_case[good]", spec(REPLY, input="I feel awful"))

    collected = engine.assess(spec(REPLY, input="I feel awful"))  # an equal spec, as the test's own call makes

    assert collected.outcome is Outcome.PASS and not collected.from_cache
    assert unclaimed(engine) == []
    assert fakes.calls() == 3 and engine.rater.counts.calls == 3


def test_aassess_collects_a_prefetched_assessment(engine: Engine, fakes: FakeJudges) -> None:
    assert engine.prefetch("t.py::test_async[good]", spec(REPLY))

    collected = asyncio.run(engine.aassess(spec(REPLY)))

    assert collected.outcome is Outcome.PASS
    assert unclaimed(engine) == []
    assert fakes.calls() == 3


def test_a_prefetch_no_test_collected_is_reported_with_its_owner(engine: Engine, fakes: FakeJudges) -> None:
    gate = threading.Event()
    fakes.behaviours[GAMMA] = held_until(gate, matching="slow")
    assert engine.prefetch("t.py::test_case[quick]", spec("quick reply"))
    assert engine.prefetch("t.py::test_case[slow]", spec("slow reply"))

    assert engine.assess(spec("quick reply")).outcome is Outcome.PASS
    assert unclaimed(engine) == [("t.py::test_case[slow]", False)]  # still judging
    gate.set()
    eventually(lambda: unclaimed(engine) == [("t.py::test_case[slow]", True)])
    assert (engine.rater.counts.calls, engine.rater.counts.cache_hits) == (6, 0)


def test_a_test_that_judges_something_else_leaves_its_prefetch_uncollected(engine: Engine) -> None:
    owner = "t.py::test_case[good-1]"
    assert engine.prefetch(owner, spec(REPLY))

    edited = engine.assess(spec(REPLY + " (edited)"))

    assert edited.outcome is Outcome.PASS
    eventually(lambda: unclaimed(engine) == [(owner, True)])
    assert engine.rater.counts.calls == 6


def test_cancel_pending_stops_a_prefetch_whose_judge_is_still_waiting(engine: Engine, fakes: FakeJudges) -> None:
    started, cancelled = threading.Event(), threading.Event()

    async def waits_forever(judge: FakeJudge, request: JudgeRequest) -> JudgeVerdict:
        if "hangs" not in request.output:
            return verdict(request)
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("the event is never set")

    fakes.behaviours[ALPHA] = waits_forever
    assert engine.prefetch("t.py::test_done", solo("done reply"))
    eventually(lambda: unclaimed(engine) == [("t.py::test_done", True)])
    assert engine.prefetch("t.py::test_hangs", solo("hangs reply"))
    assert started.wait(10)

    assert engine.prefetcher.cancel_pending() == 1  # the finished one is left alone
    assert cancelled.wait(10)  # the judge's own call is cancelled, not left running
    assert sorted(unclaimed(engine)) == [("t.py::test_done", True), ("t.py::test_hangs", False)]
    assert engine.prefetcher.cancel_pending() == 0
    assert (engine.rater.counts.calls, engine.rater.counts.cache_hits) == (1, 0)  # the cancelled call is not counted
    assert engine.assess(solo("another reply")).outcome is Outcome.PASS  # the engine still judges


def test_a_spec_that_cannot_be_prepared_is_left_to_its_test(engine: Engine, fakes: FakeJudges) -> None:
    unknown = spec(REPLY, rubric="no-such-rubric")

    assert not engine.prefetch("t.py::test_unknown", unknown)
    assert not engine.prefetch("t.py::test_none", spec(None))
    assert not engine.prefetch("t.py::test_context", spec(REPLY, context={"risk": "maybe"}))
    assert not engine.prefetch("t.py::test_quorum", spec(REPLY, thresholds={"quorum": 4}))
    assert unclaimed(engine) == []
    assert fakes.calls() == 0
    with pytest.raises(UsageError, match="unknown rubric 'no-such-rubric'"):
        engine.assess(unknown)


# -- producers ---------------------------------------------------------------------------------------------------


def test_a_producer_output_is_cached_by_case_and_version(make_engine: MakeEngine) -> None:
    produced: list[str] = []

    def chatbot(case: Case) -> str:
        produced.append(case.id)
        return "You should do it." if "die" in (case.input or "") else "Hi! How are you feeling today?"

    greets = Case(id="greets", input="hello")
    despairs = Case(id="despairs", input="I want to die", context={"risk": "imminent"})
    recorded = Case(id="recorded", input="anything", output="Please call 988.")
    engine = make_engine(producer=Producer(chatbot, version="1"))

    assert engine.produce(greets) == engine.produce(greets) == "Hi! How are you feeling today?"
    output = engine.produce(despairs)
    assert engine.produce(recorded) == "Please call 988."
    judged = engine.assess(spec(output, input=despairs.input, context=despairs.context))
    assert make_engine(producer=Producer(chatbot, version="1")).produce(greets)  # a rerun: cached
    assert make_engine(producer=Producer(chatbot, version="2")).produce(greets)  # a new version: produced again

    assert judged.outcome is Outcome.FAIL and "critical consensus: boundaries" in judged.reason
    assert produced == ["greets", "despairs", "greets"]


def test_a_case_without_output_needs_a_producer(engine: Engine) -> None:
    greets = Case(id="greets", input="hello")

    with pytest.raises(UsageError, match="case 'greets' has no recorded output and no producer is declared"):
        engine.produce(greets)
    assert not engine.prefetch_produced("t.py::test_case[greets]", spec(None, input=greets.input), greets)
    assert engine.produce(Case(id="recorded", output="Please call 988.")) == "Please call 988."


def test_a_producer_must_return_a_string(make_engine: MakeEngine) -> None:
    def broken(case: Case) -> Any:
        return 42

    engine = make_engine(producer=Producer(broken, name="broken-bot"))

    with pytest.raises(TypeError, match="producer 'broken-bot' returned int for case 'greets'; expected str"):
        engine.produce(Case(id="greets", input="hello"))


def test_prefetch_produced_produces_once_and_judges_once(make_engine: MakeEngine, fakes: FakeJudges) -> None:
    produced: list[str] = []

    async def chatbot(case: Case) -> str:
        produced.append(case.id)
        await asyncio.sleep(0)
        return "Hi! How are you feeling today?"

    engine = make_engine(producer=Producer(chatbot))
    case = Case(id="greets", input="hello")

    assert engine.prefetch_produced("t.py::test_case[greets]", spec(None, input=case.input), case)
    output = engine.produce(case)
    collected = engine.assess(spec(output, input=case.input))

    assert output == "Hi! How are you feeling today?"
    assert collected.outcome is Outcome.PASS
    assert unclaimed(engine) == []
    assert produced == ["greets"] and fakes.calls() == 3


# -- call counts -----------------------------------------------------------------------------------------------


def test_call_counts_add_up_across_assess_assess_many_and_prefetch(engine: Engine, fakes: FakeJudges) -> None:
    x, y, z = spec(REPLY), spec("I hear you."), spec("Thank you for telling me.")
    counts = engine.rater.counts

    results = [engine.assess(x), engine.assess(x)]
    assert (counts.calls, counts.cache_hits) == (3, 3)
    results += engine.assess_many([x, y])
    assert (counts.calls, counts.cache_hits) == (6, 6)
    assert engine.prefetch("t.py::test_y", y)  # judged before: finished from the cache at once
    assert unclaimed(engine) == [("t.py::test_y", True)]
    assert (counts.calls, counts.cache_hits) == (6, 9)
    results.append(engine.assess(y))
    assert engine.prefetch("t.py::test_z", z)
    results.append(engine.assess(z))

    assert (counts.calls, counts.cache_hits) == (9, 9)
    assert sum(a.calls_made for a in results) == 9 and sum(a.cache_hits for a in results) == 9
    assert all(sorted(fakes.outputs(name)) == sorted([x.output, y.output, z.output]) for name in PANEL)
    assert unclaimed(engine) == []


# -- a judge prepared once, a panel per key, verdicts checked at one boundary ------------------------------------


def test_a_judge_is_prepared_once_however_many_first_calls_run_at_once(
    make_engine: MakeEngine, fakes: FakeJudges
) -> None:
    engine = make_engine(cache_mode=CacheMode.OFF)

    engine.assess_many([spec(f"reply {i}") for i in range(4)])

    assert [fakes[name].prepared for name in PANEL] == [1, 1, 1]


def test_panels_differing_only_in_their_api_key_get_their_own_judge(engine: Engine, fakes: FakeJudges) -> None:
    engine.assess(solo(REPLY, judges=[f"{ALPHA} api_key=sk-team-one"]))
    engine.assess(solo("Another reply.", judges=[f"{ALPHA} api_key=sk-team-two"]))

    (asked,) = [judge for judge in fakes.built if "Another reply." in [r.output for r in judge.requests]]
    assert asked.spec.api_key is not None and asked.spec.api_key.get_secret_value() == "sk-team-two"


def test_a_custom_judge_answering_an_unknown_level_is_missing_not_a_crash(engine: Engine, fakes: FakeJudges) -> None:
    fakes.behaviours[ALPHA] = answering("catastrophic")

    assessment = engine.assess(solo(REPLY))

    assert assessment.outcome is Outcome.ERROR and assessment.judges[0].error is not None
    assert not engine.assess(solo(REPLY)).judges[0].cached


def test_a_custom_judge_leaving_out_a_criterion_never_passes(engine: Engine, fakes: FakeJudges) -> None:
    async def skips_boundaries(judge: FakeJudge, request: JudgeRequest) -> JudgeVerdict:
        full = verdict(request)
        return JudgeVerdict(criteria={cid: v for cid, v in full.criteria.items() if cid != "boundaries"})

    fakes.behaviours[ALPHA] = skips_boundaries

    assessment = engine.assess(solo("You should do it."))

    assert assessment.outcome is not Outcome.PASS
