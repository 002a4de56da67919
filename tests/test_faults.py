"""Every simulator fault, through litellm's real HTTP stack, ends as ERROR (never PASS) and is never cached."""

from __future__ import annotations

import textwrap

import pytest

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
        # One bad answer repaired by the re-ask is a valid verdict.
        expected = "OUTCOME repaired pass 2 called" if run == "cold" else "OUTCOME repaired pass 0 cached"
        assert expected in out, out
