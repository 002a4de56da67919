"""The session object the plugin keeps in `config.stash`: settings, rubrics, judges, cache and the judge loop.

It does the work behind the `laj` fixture: resolve the rubric and context, run the panel, aggregate, and tell
the hooks. It knows nothing of pytest reports; `outcome.py` turns assessments into test outcomes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import SecretStr

from pytest_laj.budget import Budget
from pytest_laj.cache import CacheMode, VerdictCache, output_key
from pytest_laj.case import Case
from pytest_laj.injection import DETECTOR_VERSION, find_injection
from pytest_laj.judge import Judge, JudgeSpec, JudgeSpecError, LiteLLMJudge, parse_judge_specs
from pytest_laj.loop import EventLoopThread
from pytest_laj.options import Settings
from pytest_laj.panel import Panel, RetryPolicy, Shared
from pytest_laj.produce import Producer
from pytest_laj.prompt import JudgeRequest
from pytest_laj.redact import remember_secrets
from pytest_laj.rubric import Rubric, RubricError, RubricRegistry, Thresholds
from pytest_laj.verdict import Assessment, JudgeResult, JudgeVerdict, aggregate

__all__ = ["AssessmentSpec", "LajSession", "UsageProblem"]

SIMULATOR_KEY = "sk-laj-simulator"


class UsageProblem(ValueError):
    """A test asked for something that cannot work (no judges, bad output type...); the message says why."""


NO_JUDGES = (
    "no judges are configured. Set judges with the ini option laj_judges, --laj-judge MODEL, or "
    "LAJ_JUDGES=model1,model2 (any litellm model string), or run offline against the judge simulator with "
    "--laj-simulate RULES.yaml."
)


@dataclass
class AssessmentSpec:
    """One output to assess, with everything the test's marker and call said about it."""

    output: Any
    rubric: str | Rubric | None
    input: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)
    judges: Sequence[Any] | None = None
    thresholds: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class _Prepared:
    rubric: Rubric
    request: JudgeRequest
    panel: Panel
    spec: AssessmentSpec
    thresholds: Thresholds


MakeJudge = Callable[[JudgeSpec], "Judge | None"]
FindProducer = Callable[[], "Producer | None"]

NO_PRODUCER = (
    "case {case!r} has no recorded output and no producer is declared: implement the hook "
    "pytest_laj_producer(config) in conftest.py, returning pytest_laj.Producer(fn, version=...)"
)


def _case_key(case: Case) -> str:
    return json.dumps([case.id, case.input, case.context], sort_keys=True, default=str)


def _prefetch_key(spec: AssessmentSpec) -> str:
    """Equal for a test's call and the prefetch of its case, so the test collects the prefetched judging
    without preparing the same assessment a second time."""
    rubric = spec.rubric.fingerprint() if isinstance(spec.rubric, Rubric) else spec.rubric
    material = [spec.output, spec.input, spec.context, rubric, spec.judges, spec.thresholds]
    return json.dumps(material, sort_keys=True, default=str)


Prefetched = tuple[_Prepared, "concurrent.futures.Future[list[JudgeResult]]"]


def _finished(results: list[JudgeResult]) -> concurrent.futures.Future[list[JudgeResult]]:
    future: concurrent.futures.Future[list[JudgeResult]] = concurrent.futures.Future()
    future.set_result(results)
    return future


class _SimulatedJudge(LiteLLMJudge):
    """An LLM judge whose provider is the in-process simulator, started by the first judge that calls it: a run
    answered from the cache never starts it (nor imports its HTTP server)."""

    def __init__(self, spec: JudgeSpec, timeout: float, simulator_url: Callable[[], str]) -> None:
        super().__init__(spec, timeout)
        self._simulator_url = simulator_url

    def _point_at_simulator(self) -> None:
        if self.spec.api_base is None:  # never left unset on a call: litellm would go to the real provider
            self.spec = self.spec.model_copy(update={"api_base": self._simulator_url()})

    def prepare(self) -> None:
        self._point_at_simulator()
        super().prepare()

    async def rate(self, request: JudgeRequest) -> JudgeVerdict:
        self._point_at_simulator()
        return await super().rate(request)


class LajSession:
    def __init__(self, settings: Settings, make_judge: MakeJudge, find_producer: FindProducer = lambda: None) -> None:
        self.settings = settings
        self.rubrics = RubricRegistry(settings.rubric_dirs, settings.base_dir)
        self.cache = VerdictCache(settings.cache_dir)
        self._memo = self.cache.memo(settings.cache_mode)
        self.loop = EventLoopThread()
        self._make_judge = make_judge
        self._judges: dict[tuple[str, ...], list[Judge]] = {}
        self._judges_lock = threading.Lock()
        self._prefetched: dict[str, list[Prefetched]] = {}
        self._produced: dict[str, list[concurrent.futures.Future[str]]] = {}
        self._prefetch_lock = threading.Lock()  # producers' prefetches register from the judge loop's thread
        self._find_producer = find_producer
        self._producer: Producer | None = None
        self.budget = Budget(settings.max_calls, settings.max_cost, settings.run_id)
        self._shared = Shared(
            cache=self.cache,
            mode=settings.cache_mode,
            limiter=asyncio.Semaphore(settings.concurrency),
            retry=RetryPolicy(retries=settings.retries),
            timeout=settings.timeout,
            budget=self.budget,
            across_processes=settings.run_id is not None,
        )
        self._simulator: Any = None
        self._simulator_rules: Any = None
        if settings.simulate is not None:
            from pytest_laj.simulator import load_rules

            self._simulator_rules = load_rules(settings.simulate)

    # -- judges ---------------------------------------------------------------------------------------------

    def _simulated(self, spec: JudgeSpec) -> JudgeSpec:
        """The same judge, reached at the simulator by its name (the model string's last part)."""
        rules = self._simulator_rules
        name = spec.model.rsplit("/", 1)[-1]
        if name not in rules.judge_names:
            raise UsageProblem(
                f"judge {spec.model!r} is not in the simulator rules {self.settings.simulate}; "
                f"simulated judges: {', '.join(rules.judge_names)}"
            )
        return spec.model_copy(
            update={
                "model": f"openai/{name}",
                "name": spec.label,
                "api_base": None,
                "api_key": spec.api_key or SecretStr(SIMULATOR_KEY),
                "fingerprint": rules.fingerprint(),
            }
        )

    def _simulator_url(self) -> str:
        with self._judges_lock:
            if self._simulator is None:
                from pytest_laj.simulator import Simulator

                self._simulator = Simulator(self._simulator_rules)
                self._simulator.start()
            return str(self._simulator.base_url)

    def _build(self, spec: JudgeSpec) -> Judge:
        """A judge from the `pytest_laj_make_judge` hook wins; otherwise an LLM judge (simulated if asked)."""
        custom = self._make_judge(spec)
        if custom is not None:
            return custom
        if self._simulator_rules is not None:
            return _SimulatedJudge(self._simulated(spec), self.settings.timeout, self._simulator_url)
        return LiteLLMJudge(spec, self.settings.timeout)

    def judges_for(self, override: Sequence[Any] | None) -> list[Judge]:
        specs = parse_judge_specs(list(override), "laj marker judges") if override else []
        key = tuple(spec.model_dump_json() for spec in specs)
        with self._judges_lock:  # tests and producers' prefetches (on the judge loop) build panels at once
            return self._panel_judges(key, specs)

    def _panel_judges(self, key: tuple[str, ...], specs: list[JudgeSpec]) -> list[Judge]:
        if key not in self._judges:
            chosen = specs or self.settings.judges
            if not chosen and self._simulator_rules is not None:
                chosen = [JudgeSpec(model=f"openai/{n}", name=n) for n in self._simulator_rules.judge_names]
            if not chosen:
                raise UsageProblem(NO_JUDGES)
            self._judges[key] = [self._build(spec) for spec in chosen]
            remember_secrets(secret for judge in self._judges[key] for secret in judge.secrets())
        return self._judges[key]

    # -- assessing --------------------------------------------------------------------------------------------

    def _prepare(self, spec: AssessmentSpec) -> _Prepared:
        output = spec.output
        if not isinstance(output, str):
            raise TypeError(
                f"laj: the output to assess must be a str, got {type(output).__name__} ({output!r:.60}); "
                "decode bytes or pick the reply text out of a structured response first"
            )
        if spec.input is not None and not isinstance(spec.input, str):
            raise TypeError(f"laj: input must be a str or None, got {type(spec.input).__name__}")
        limit = self.settings.max_chars
        for name, text in (("output", output), ("input", spec.input or "")):
            if len(text) > limit:
                raise UsageProblem(
                    f"the {name} is {len(text)} characters, over laj_max_chars ({limit}); pytest-laj never "
                    "truncates what it judges: shorten it or raise laj_max_chars"
                )
        if spec.rubric is None:
            raise UsageProblem("no rubric given: pass rubric=... to the call or to @pytest.mark.laj(rubric=...)")
        rubric = self.rubrics.get(spec.rubric)
        context = rubric.resolve_context(spec.context)
        try:
            thresholds = rubric.thresholds.merged(spec.thresholds)
        except ValueError as exc:
            raise UsageProblem(f"invalid thresholds {dict(spec.thresholds)}: {exc}") from None
        judges = self.judges_for(spec.judges)
        quorum = thresholds.quorum_for(len(judges))
        if quorum > len(judges):
            raise UsageProblem(
                f"quorum {quorum} is larger than the panel ({len(judges)} judges: "
                f"{', '.join(j.name for j in judges)}); no assessment could ever reach it"
            )
        criteria = [c for c in rubric.criteria if rubric.applies(c, context)]
        request = JudgeRequest(rubric, criteria, output, spec.input, context)
        panel = Panel(judges, self._shared)
        return _Prepared(rubric, request, panel, spec, thresholds)

    def _finish(self, prepared: _Prepared, results: Sequence[JudgeResult]) -> Assessment:
        request = prepared.request
        return aggregate(
            prepared.rubric,
            results,
            output=request.output,
            input=request.input,
            context=request.context,
            thresholds=prepared.thresholds,
            panel_size=len(prepared.panel.judges),
            suspected_injection=self._scan(request),
        )

    def _scan(self, request: JudgeRequest) -> list[str]:
        """Where the output addresses its judges, as 'kind: excerpt'. The scan depends only on the text, the
        rubric's ids and the detector, so a rerun on the same outputs reads it from the cache."""
        rubric = request.rubric
        level_ids = sorted({level.id for c in rubric.criteria for level in rubric.levels_for(c)})
        criterion_ids = sorted(c.id for c in rubric.criteria)
        material = json.dumps([DETECTOR_VERSION, level_ids, criterion_ids, request.output])
        key = "injection:" + hashlib.sha256(material.encode()).hexdigest()
        known = self._memo.get(key)
        if isinstance(known, list) and all(isinstance(finding, str) for finding in known):
            return known
        findings = find_injection(request.output, level_ids=level_ids, criterion_ids=criterion_ids)
        found = [f"{f.kind}: {f.excerpt!r}" for f in findings]
        self._memo.set(key, found)
        return found

    async def _rate(self, prepared: _Prepared) -> list[JudgeResult]:
        if not prepared.request.criteria:
            return []
        return await prepared.panel.rate(prepared.request)

    def _cached(self, prepared: _Prepared) -> list[JudgeResult] | None:
        """Every verdict straight from the cache, or None if a judge must be asked: a rerun's assessments
        never wait on the event loop's thread."""
        return [] if not prepared.request.criteria else prepared.panel.cached(prepared.request)

    def prefetch(self, specs: Sequence[AssessmentSpec]) -> int:
        """Schedule judging now; `assess` of an equal spec later collects the result instead of calling again.
        A spec that cannot be prepared is left for its test to report."""
        scheduled = 0
        for spec in specs:
            try:
                prepared = self._prepare(spec)
            except (UsageProblem, RubricError, JudgeSpecError, TypeError):
                continue
            results = self._cached(prepared)
            future = self.loop.submit(self._rate(prepared)) if results is None else _finished(results)
            with self._prefetch_lock:
                self._prefetched.setdefault(_prefetch_key(spec), []).append((prepared, future))
            scheduled += 1
        return scheduled

    def unused_prefetches(self) -> tuple[int, int]:
        """Prefetched assessments no test collected (a test judged something else), and the calls they made."""
        with self._prefetch_lock:
            waiting = [f for entries in self._prefetched.values() for _, f in entries]
        left = [f for f in waiting if f.done() and not f.cancelled()]
        results = [f.result() for f in left if f.exception() is None]
        return len(left), sum(r.attempts for results_ in results for r in results_)

    def _prefetched_for(self, spec: AssessmentSpec) -> Prefetched | None:
        with self._prefetch_lock:
            waiting = self._prefetched.get(_prefetch_key(spec))
            return waiting.pop(0) if waiting else None

    # -- producing ------------------------------------------------------------------------------------------

    def producer(self, case: Case) -> Producer:
        if self._producer is None:
            self._producer = self._find_producer()
        if self._producer is None:
            raise UsageProblem(NO_PRODUCER.format(case=case.id))
        return self._producer

    async def _produce(self, case: Case) -> str:
        producer = self.producer(case)
        key = output_key(producer.label, producer.version, case.id, case.input, case.context)
        mode = self.settings.cache_mode
        if mode is not CacheMode.OFF and mode.reads and (cached := self.cache.get_output(key)) is not None:
            return cached
        output = await producer.produce(case)
        if mode is not CacheMode.OFF and mode.writes:
            self.cache.set_output(key, output)
        return output

    def prefetch_produced(self, spec: AssessmentSpec, case: Case) -> bool:
        """Produce the case's output up front, then start judging it as soon as it exists."""
        try:
            self.producer(case)
        except UsageProblem:
            return False

        async def produce_then_judge() -> str:
            output = await self._produce(case)
            self.prefetch([replace(spec, output=output)])
            return output

        future = self.loop.submit(produce_then_judge())
        with self._prefetch_lock:
            self._produced.setdefault(_case_key(case), []).append(future)
        return True

    def produce(self, case: Case) -> str:
        """The case's output: recorded, produced up front, or produced now."""
        if case.output is not None:
            return case.output
        with self._prefetch_lock:
            waiting = self._produced.get(_case_key(case))
            future = waiting.pop(0) if waiting else None
        return future.result() if future is not None else self.loop.run(self._produce(case))

    def assess(self, spec: AssessmentSpec) -> Assessment:
        prefetched = self._prefetched_for(spec)
        if prefetched is not None:
            prepared, future = prefetched
            return self._finish(prepared, future.result())
        prepared = self._prepare(spec)
        results = self._cached(prepared)
        return self._finish(prepared, self.loop.run(self._rate(prepared)) if results is None else results)

    async def aassess(self, spec: AssessmentSpec) -> Assessment:
        prefetched = self._prefetched_for(spec)
        if prefetched is not None:
            prepared, future = prefetched
            results: list[JudgeResult] = await self.loop.wait(future)
            return self._finish(prepared, results)
        prepared = self._prepare(spec)
        cached = self._cached(prepared)
        return self._finish(prepared, await self.loop.run_async(self._rate(prepared)) if cached is None else cached)

    def assess_many(self, specs: Sequence[AssessmentSpec]) -> list[Assessment]:
        prepared = [self._prepare(s) for s in specs]
        found = [self._cached(p) for p in prepared]
        missing = [p for p, results in zip(prepared, found, strict=True) if results is None]

        async def rate_missing() -> list[list[JudgeResult]]:
            return list(await asyncio.gather(*(self._rate(p) for p in missing)))

        rated = iter(self.loop.run(rate_missing()) if missing else [])
        return [self._finish(p, next(rated) if r is None else r) for p, r in zip(prepared, found, strict=True)]

    def close(self) -> None:
        self.loop.close()
        self.cache.close()
        if self._simulator is not None:
            self._simulator.stop()
            self._simulator = None
