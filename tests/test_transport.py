"""What a failed call to a provider was, in words, and whether asking again can help: through litellm's real
HTTP stack against the judge simulator, and a judge without credentials stopped before its first call."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from conftest import CASES_SUITE, RUBRIC, LajProject

from pytest_laj.core.rubric import Rubric
from pytest_laj.judges.base import JudgeSpec
from pytest_laj.judges.llm import LiteLLMJudge, MissingCredentials
from pytest_laj.judges.protocol import JudgeRequest
from pytest_laj.simulator import Simulator

SAFETY = Rubric.model_validate(yaml.safe_load(RUBRIC))
FAULTS = {
    "dropped": {"drop": True},
    "garbage": {"body": "garbage"},
    "unauthorized": {"status": 401},
    "forbidden": {"status": 403},
    "overloaded": {"status": 503},
}


@pytest.fixture(scope="module")
def simulator(judging_machinery: None) -> Iterator[Simulator]:
    judges = {name: {"default": "best_practice", "faults": [{**f, "times": "always"}]} for name, f in FAULTS.items()}
    with Simulator({"judges": judges}) as running:
        yield running


def _failure(simulator: Simulator, name: str) -> tuple[LiteLLMJudge, BaseException]:
    spec = JudgeSpec(model=f"openai/{name}", api_base=simulator.base_url, api_key="sk-laj-test-key")
    judge = LiteLLMJudge(spec, timeout=10)
    judge.prepare()
    request = JudgeRequest(SAFETY, list(SAFETY.criteria), "Please call 988.", None, {"risk": "none"})
    with pytest.raises(Exception) as caught:
        asyncio.run(judge.rate(request))
    return judge, caught.value


@pytest.mark.parametrize(
    ("fault", "described", "transient"),
    [
        ("dropped", "connection dropped by the server (", True),
        ("garbage", "the provider's response was not valid JSON (JSONDecodeError: ", True),
        ("unauthorized", "Error (HTTP 401): ", False),
        ("forbidden", "Error (HTTP 403): ", False),
        ("overloaded", "ServiceUnavailableError (HTTP 503): ", True),
    ],
)
def test_a_failed_call_says_what_happened(simulator: Simulator, fault: str, described: str, transient: bool) -> None:
    judge, error = _failure(simulator, fault)

    assert described in judge.describe(error), judge.describe(error)
    assert "HTTP 500" not in judge.describe(error)
    assert judge.is_transient(error) is transient


def test_a_lone_surrogate_that_reaches_the_provider_is_not_retried(simulator: Simulator) -> None:
    spec = JudgeSpec(model="openai/overloaded", api_base=simulator.base_url, api_key="sk-laj-test-key")
    judge = LiteLLMJudge(spec, timeout=10)
    request = JudgeRequest(SAFETY, list(SAFETY.criteria), "call 988 \ud800", None, {"risk": "none"})
    with pytest.raises(Exception) as caught:  # a custom caller may skip the engine's own refusal
        asyncio.run(judge.rate(request))

    assert judge.describe(caught.value).startswith("the request could not be encoded (UnicodeEncodeError: ")
    assert not judge.is_transient(caught.value)


# -- missing credentials ------------------------------------------------------------------------------------------


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_ADMIN_KEY", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_keys", "judging_machinery")
def test_a_provider_error_about_missing_credentials_is_never_retried() -> None:
    judge = LiteLLMJudge(JudgeSpec(model="openai/gpt-4o"), timeout=10)  # not prepared: the call itself fails
    request = JudgeRequest(SAFETY, list(SAFETY.criteria), "Please call 988.", None, {"risk": "none"})
    with pytest.raises(Exception) as caught:
        asyncio.run(judge.rate(request))

    assert judge.describe(caught.value).startswith("no credentials (")
    assert not judge.is_transient(caught.value)


@pytest.mark.usefixtures("no_keys", "judging_machinery")
@pytest.mark.parametrize(
    ("model", "options", "missing"),
    [
        ("openai/gpt-4o", {}, "OPENAI_API_KEY"),
        ("anthropic/claude-sonnet-4-5", {"name": "claude"}, "ANTHROPIC_API_KEY"),
        ("openai/gpt-4o", {"api_key": "sk-given-in-the-spec"}, None),
        ("openai/gpt-4o", {"api_base": "http://127.0.0.1:9/v1"}, None),
        ("openai/gpt-4o", {"extra_headers": {"Authorization": "Token abc"}}, None),
        ("bedrock/anthropic.claude-3", {}, None),  # AWS credentials may be ambient (a role, a profile)
    ],
    ids=["openai", "anthropic-named", "api-key", "api-base", "auth-header", "ambient"],
)
def test_a_judge_without_credentials_is_refused_before_its_first_call(
    model: str, options: dict[str, Any], missing: str | None
) -> None:
    judge = LiteLLMJudge(JudgeSpec.parse({"model": model, **options}, "test"), timeout=10)
    if missing is None:
        judge.prepare()
        return
    with pytest.raises(MissingCredentials) as refused:
        judge.prepare()
    assert f"judge {judge.name!r} ({model}) has no credentials: set {missing} in the environment" in str(refused.value)


def test_a_credential_variable_litellm_did_not_name_counts(
    no_keys: None, judging_machinery: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "token-from-the-environment")

    LiteLLMJudge(JudgeSpec(model="anthropic/claude-sonnet-4-5"), timeout=10).prepare()


@pytest.mark.usefixtures("no_keys")
@pytest.mark.parametrize(("prefetch", "workers"), [("auto", "0"), ("off", "0"), ("auto", "2")])
def test_a_run_with_a_judge_without_credentials_stops_once_with_a_usage_error(
    project: LajProject, prefetch: str, workers: str
) -> None:
    (project.pytester.path / "pytest.ini").write_text(
        f"[pytest]\nlaj_judges = openai/gpt-4o\nlaj_prefetch = {prefetch}\n"
    )
    (project.pytester.path / "rubrics" / "safety.yaml").write_text(RUBRIC.replace("quorum: 2", "quorum: 1"))
    (project.pytester.path / "cases.yaml").write_text(
        "cases:\n" + "".join(f"  - {{id: c{n}, output: 'Please call 988 ({n}).'}}\n" for n in range(4))
    )
    project.tests(CASES_SUITE)
    result = project.run("--laj-retries", "3", "-n", workers)
    out = result.stdout.str()

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    refusal = "judge 'openai/gpt-4o' (openai/gpt-4o) has no credentials: set OPENAI_API_KEY in the environment"
    assert f"pytest-laj: {refusal}" in out
    assert "HTTP 500" not in out and "attempts" not in out
    if workers == "0":
        assert f"Interrupted: pytest-laj: {refusal}" in out
        assert result.parseoutcomes()["failed"] == 1  # the run stops at the first test that needed the judge
    else:  # each worker stops at its first such test
        assert result.parseoutcomes()["failed"] <= 2
