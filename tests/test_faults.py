"""Every simulator fault, through litellm's real HTTP stack, ends as ERROR (never PASS) and is never cached; input
no judge could be sent is refused before any call."""

from __future__ import annotations

import asyncio
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import LajProject, assert_laj_outcomes
from test_engine import PANEL, FakeJudges, spec

from pytest_laj.engine.session import Engine
from pytest_laj.engine.settings import Settings
from pytest_laj.errors import UsageError
from pytest_laj.judges.base import JudgeSpec

REPLY = "Please call 988."

FAULTS = {
    "http_500": "{status: 500, times: always}",
    "http_503": "{status: 503, times: always}",
    "http_429": "{status: 429, times: always, retry_after: 0}",
    "http_401": "{status: 401, times: always}",
    "http_400": "{status: 400, times: always}",
    "dropped": "{drop: true, times: always}",
    "garbage": "{body: garbage, times: always}",
    "slow": "{latency_ms: 60000, times: always}",
    "not_json": "{verdict: not_json, times: always}",
    "truncated_json": "{verdict: truncated_json, times: always}",
    "unknown_level": "{verdict: unknown_level, times: always}",
    "missing_criterion": "{verdict: missing_criterion, times: always}",
    "refusal": "{verdict: refusal, times: always}",
    "empty": "{verdict: empty, times: always}",
}

INVALID_VERDICTS = ("not_json", "truncated_json", "unknown_level", "missing_criterion", "refusal", "empty")

RUBRIC = """\
id: r
levels:
  - {id: ok, label: OK, severity: 0}
  - {id: harm, label: Harm, severity: 5, critical: true}
criteria:
  - {id: a, question: "A?"}
  - {id: b, question: "B?"}
thresholds: {quorum: 1}
"""


@pytest.fixture
def faulty(pytester: pytest.Pytester, judging_machinery: None) -> pytest.Pytester:
    judges = {"steady": "    default: ok\n"}
    judges.update({name: f"    default: ok\n    faults:\n      - {fault}\n" for name, fault in FAULTS.items()})
    judges["fenced"] = "    default: ok\n    faults:\n      - {verdict: fenced, times: always}\n"
    judges["repaired"] = "    default: ok\n    faults:\n      - {verdict: unknown_level, times: 1}\n"
    rules = "judges:\n" + "".join(f"  {name}:\n{body}" for name, body in judges.items())
    pytester.makefile(".yaml", sim=rules)
    pytester.mkdir("rubrics")
    (pytester.path / "rubrics" / "r.yaml").write_text(RUBRIC)
    pytester.makeini("[pytest]\nlaj_simulate = sim.yaml\n")
    params = ", ".join(f"pytest.param({n!r}, marks=pytest.mark.laj(judges=[{n!r}]))" for n in judges)
    pytester.makepyfile(
        textwrap.dedent(
            """
            import pytest

            @pytest.mark.parametrize("judge", [PARAMS])
            def test_alone(laj, judge):
                a = laj.assess("a perfectly fine reply", rubric="r")
                j = a.judges[0]
                print("OUTCOME", judge, a.outcome, j.attempts, "cached" if j.cached else "called", j.error)
            """
        ).replace("PARAMS", params)
    )
    return pytester


def test_every_fault_is_an_error_retried_when_transient_and_never_cached(faulty: pytest.Pytester) -> None:
    # A 5 s timeout leaves every answering judge a wide margin on a loaded machine; the slow one never answers.
    args = ("-p", "no:cacheprovider", "--laj-retries", "1", "--laj-timeout", "5", "-s")
    for run in ("cold", "warm"):
        out = faulty.runpytest_inprocess(*args).stdout.str()
        # Valid verdicts, including one inside code fences and prose, pass and are cached.
        for name in ("steady", "fenced"):
            expected = f"OUTCOME {name} pass 1 called" if run == "cold" else f"OUTCOME {name} pass 0 cached"
            assert expected in out, (name, out)
        # Transient faults are retried once (--laj-retries 1), an unusable verdict gets one repair re-ask, and
        # other 4xx are final. None passes, and none is cached: the warm run calls every faulty judge again.
        for name in FAULTS:
            attempts = 1 if name in ("http_401", "http_400") else 2
            assert f"OUTCOME {name} error {attempts} called" in out, (name, out)
            if name in INVALID_VERDICTS:
                assert f"OUTCOME {name} error 2 called invalid verdict after a repair re-ask:" in out, (name, out)
        # What went wrong is said as it happened, not as the "HTTP 500" litellm makes of it.
        assert "OUTCOME dropped error 2 called connection dropped by the server (" in out, out
        assert "OUTCOME garbage error 2 called the provider's response was not valid JSON (" in out, out
        # One bad answer repaired by the re-ask is a valid verdict.
        expected = "OUTCOME repaired pass 2 called" if run == "cold" else "OUTCOME repaired pass 0 cached"
        assert expected in out, out


# -- hostile input is the input's fault: refused before any judge is asked ------------------------------------


def _nested(depth: int) -> Any:
    value: Any = "none"
    for _ in range(depth):
        value = [value]
    return value


def _circular() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"output": "Please call 988.\ud800"}, "the output contains a lone surrogate (U+D800 at position 16)"),
        ({"input": "\udcff help"}, "the input contains a lone surrogate (U+DCFF at position 0)"),
        ({"context": {"risk": "none\ud83d"}}, "the context value of 'risk' contains a lone surrogate"),
        ({"context": {"risk": _nested(100_000)}}, "context 'risk': expected a plain str, int, float or bool"),
        ({"context": {"risk": _circular()}}, "context 'risk': expected a plain str, int, float or bool"),
        ({"context": {("risk",): "none"}}, "context variables are named by a str, got a tuple"),
    ],
    ids=["output-surrogate", "input-surrogate", "context-surrogate", "deep-context", "circular-context", "key"],
)
@pytest.mark.parametrize("how", ["assess", "aassess", "prefetch"])
def test_input_no_judge_could_be_sent_is_refused_before_any_call(
    tmp_path: Path, fields: dict[str, Any], message: str, how: str
) -> None:
    fakes = FakeJudges()
    judges = [JudgeSpec.parse(judge, "test") for judge in PANEL]
    engine = Engine(Settings(judges=judges, cache_dir=tmp_path / "cache", base_dir=tmp_path), fakes.make)
    request = spec(**{"output": REPLY, **fields})
    if how == "prefetch":
        assert engine.prefetch("test_it", request) is False  # left for its test to report
    with pytest.raises(UsageError, match=re.escape(message)):
        if how == "aassess":
            asyncio.run(engine.aassess(request))
        else:
            engine.assess(request)
    engine.close()
    assert fakes.calls() == 0


DISSENT_RULES = """\
judges:
  alpha: {default: best_practice}
  beta: {default: best_practice}
  gamma:
    default: best_practice
    rules: [{match: "(?i)risky", levels: {boundaries: high_harm}}]
    faults: [{match: "(?i)outage", status: 500, times: always}]
"""


def test_a_fault_in_the_only_dissenting_judge_never_turns_review_into_pass(project: LajProject) -> None:
    (project.pytester.path / "sim.yaml").write_text(DISSENT_RULES)
    project.tests(
        """
        import pytest

        @pytest.mark.laj(rubric="safety")
        @pytest.mark.parametrize("reply", ["a risky reply", "a risky reply on the day of the outage"])
        def test_reply(laj, reply):
            laj.check(reply)
        """
    )
    result = project.run("-rA")
    out = result.stdout.str()

    assert_laj_outcomes(result, review=2)
    assert "boundaries: judges disagree (agreement 67% < 75%)" in out
    assert "judges disagree or are missing (agreement 67% < 75%)" in out
    assert "decided without 1 of 3 judges (gamma: InternalServerError (HTTP 500)" in out
    assert "1 assessment(s) decided with judges missing (gamma in 1)" in out
    assert "needs review (2): 1 where judges disagree on a critical judgment, 1 where too few judges agree" in out
