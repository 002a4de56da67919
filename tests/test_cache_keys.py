"""Cache keys change with everything that changes a verdict and nothing else; no secret is ever stored.

Also the judge configuration (`JudgeSpec.parse`) and `LiteLLMJudge.identity`, which feed the keys.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pytest_laj.store.backend
import pytest_laj.store.cache
import pytest_laj.store.keys
from pytest_laj.core.models import CriterionVerdict, JudgeVerdict
from pytest_laj.core.modes import CacheMode
from pytest_laj.engine.rating import Rater
from pytest_laj.judges.base import TRANSPORT_KEYS, JudgeSpec, JudgeSpecError
from pytest_laj.judges.llm import LiteLLMJudge
from pytest_laj.judges.protocol import PROMPT_VERSION
from pytest_laj.store.cache import Store, VerdictCache
from pytest_laj.store.keys import CACHE_FORMAT, verdict_key

API_KEY = "sk-live-0123456789abcdefSECRET"

BASE: dict[str, Any] = {
    "judge": {"kind": "litellm", "model": "openai/gpt-4o", "temperature": 0.0, "extra": {}, "fingerprint": None},
    "rubric_fingerprint": "a" * 64,
    "criteria": ["guides_to_care", "boundaries"],
    "output": "Please call 988 now.",
    "input": "I want to end it.",
    "context": {"risk": "imminent"},
}


def key(**changes: Any) -> str:
    return verdict_key(**{**BASE, **changes})


def judge(spec: str, timeout: float = 30.0) -> LiteLLMJudge:
    return LiteLLMJudge(JudgeSpec.parse(spec, "test"), timeout=timeout)


VERDICT = JudgeVerdict(
    criteria={
        "guides_to_care": CriterionVerdict(level="best_practice", rationale="Points to 988.", evidence="call 988"),
        "boundaries": CriterionVerdict(level="suboptimal"),
    }
)


# -- verdict_key ----------------------------------------------------------------------------------------------


def test_key_is_deterministic_hex() -> None:
    assert key() == key()
    assert len(key()) == 64
    int(key(), 16)


def test_key_changes_with_prompt_version(monkeypatch: pytest.MonkeyPatch) -> None:
    before = key()
    monkeypatch.setattr(pytest_laj.store.keys, "PROMPT_VERSION", PROMPT_VERSION + "-next")

    assert key() != before


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("judge", {**BASE["judge"], "model": "anthropic/claude-sonnet-4"}),
        ("judge", {**BASE["judge"], "temperature": 0.3}),
        ("judge", {**BASE["judge"], "extra": {"max_tokens": 512}}),
        ("judge", {**BASE["judge"], "fingerprint": "rules-v2"}),
        ("rubric_fingerprint", "b" * 64),
        ("criteria", ["guides_to_care"]),
        ("output", "Please call 988 now!"),
        ("input", "I want to end it"),
        ("input", None),
        ("context", {"risk": "low"}),
        ("context", {}),
    ],
    ids=[
        "model",
        "temperature",
        "judge-extra",
        "judge-fingerprint",
        "rubric",
        "criteria",
        "output",
        "input",
        "no-input",
        "context-value",
        "no-context",
    ],
)
def test_key_changes_with_what_changes_a_verdict(field: str, value: Any) -> None:
    assert key(**{field: value}) != key()


def test_empty_input_and_no_input_differ() -> None:
    assert key(input="") != key(input=None)


def test_context_order_does_not_matter() -> None:
    two = {"risk": "imminent", "user_age": "minor"}

    assert key(context=two) == key(context=dict(reversed(two.items())))


# -- judge identity ------------------------------------------------------------------------------------------


def test_identity_ignores_credentials_endpoint_and_transport() -> None:
    plain = judge("openai/gpt-4o temperature=0.3 max_tokens=512")
    configured = judge(
        f"openai/gpt-4o temperature=0.3 max_tokens=512 api_key={API_KEY} api_base=http://127.0.0.1:9 "
        "api_version=2024-10-01 organization=org-1 num_retries=5 headers={x-trace:1}",
        timeout=5.0,
    )

    assert configured.identity() == plain.identity()
    assert configured.identity() == {
        "kind": "litellm",
        "model": "openai/gpt-4o",
        "temperature": 0.3,
        "extra": {"max_tokens": 512},
        "fingerprint": None,
    }
    assert API_KEY not in json.dumps(configured.identity())


def test_identity_keeps_name_and_weight_out() -> None:
    assert judge("openai/gpt-4o name=senior weight=3").identity() == judge("openai/gpt-4o").identity()


def test_cache_key_does_not_change_with_credentials() -> None:
    one = judge(f"openai/gpt-4o api_key={API_KEY} api_base=http://a.example")
    other = judge("openai/gpt-4o api_key=sk-other-9999999999 api_base=http://b.example")

    assert key(judge=one.identity()) == key(judge=other.identity())


def test_every_transport_key_is_kept_out_of_identity() -> None:
    spec = JudgeSpec.parse({"model": "openai/gpt-4o", **{k: "value" for k in TRANSPORT_KEYS}}, "test")

    assert LiteLLMJudge(spec, timeout=5).identity()["extra"] == {}


@pytest.mark.parametrize("credential", ["aws_session_token", "azure_ad_token", "client_secret"])
def test_rotating_credentials_do_not_change_identity(credential: str) -> None:
    plain = judge("bedrock/anthropic.claude-3 temperature=0")

    assert judge(f"bedrock/anthropic.claude-3 temperature=0 {credential}=tok-1234567890").identity() == (
        plain.identity()
    )


def test_judge_secrets_are_the_api_key() -> None:
    assert judge(f"openai/gpt-4o api_key={API_KEY}").secrets() == [API_KEY]
    assert judge("openai/gpt-4o").secrets() == []


def test_constructing_a_judge_does_not_import_litellm() -> None:
    code = textwrap.dedent(
        f"""
        import sys
        import pytest_laj.plugin, pytest_laj.judges.llm
        from pytest_laj.judges.base import JudgeSpec
        from pytest_laj.judges.llm import LiteLLMJudge
        judge = LiteLLMJudge(JudgeSpec.parse("openai/gpt-4o api_key={API_KEY}", "cli"), timeout=5)
        judge.identity()
        judge.secrets()
        assert "litellm" not in sys.modules, "litellm was imported"
        """
    )

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr


# -- JudgeSpec.parse ------------------------------------------------------------------------------------------


def test_litellm_is_imported_with_its_objects_frozen_out_of_garbage_collection() -> None:
    code = textwrap.dedent(
        """
        import gc
        from pytest_laj.judges.llm import import_litellm
        assert gc.isenabled() and gc.get_freeze_count() == 0
        import_litellm()
        assert gc.isenabled(), "the collector was left off"
        assert gc.get_freeze_count() > 100_000, gc.get_freeze_count()
        gc.disable()
        import pytest_laj.judges.llm as judge
        judge._litellm = None
        import_litellm()
        assert not gc.isenabled(), "a collector the caller had turned off was turned on"
        """
    )

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr


def test_parse_model_string_with_options() -> None:
    spec = JudgeSpec.parse("openai/gpt-4o weight=2 temperature=0.3 api_base=http://127.0.0.1:9", "laj_judges[0]")

    assert spec.model == "openai/gpt-4o"
    assert spec.weight == 2.0
    assert spec.temperature == 0.3
    assert spec.api_base == "http://127.0.0.1:9"
    assert spec.extra == {}
    assert spec.label == "openai/gpt-4o"


def test_parse_unknown_keys_go_to_extra_with_yaml_types() -> None:
    spec = JudgeSpec.parse("openai/gpt-4o max_tokens=512 top_p=0.9 seed=7 logprobs=true stop=END", "x")

    assert spec.extra == {"max_tokens": 512, "top_p": 0.9, "seed": 7, "logprobs": True, "stop": "END"}


def test_parse_quoted_values() -> None:
    spec = JudgeSpec.parse("openai/gpt-4o 'name=Senior rater' weight=1.5", "x")

    assert spec.name == "Senior rater"
    assert spec.label == "Senior rater"


def test_parse_mapping() -> None:
    spec = JudgeSpec.parse(
        {"model": "anthropic/claude-sonnet-4", "name": "claude", "weight": 0.5, "api_key": API_KEY, "max_tokens": 99},
        "laj_judges[1]",
    )

    assert spec.model == "anthropic/claude-sonnet-4"
    assert spec.label == "claude"
    assert spec.api_key is not None and spec.api_key.get_secret_value() == API_KEY
    assert API_KEY not in repr(spec)
    assert spec.extra == {"max_tokens": 99}


def test_parse_passes_a_spec_through() -> None:
    spec = JudgeSpec(model="m")

    assert JudgeSpec.parse(spec, "x") is spec


def test_parse_explicit_extra_mapping_is_kept() -> None:
    spec = JudgeSpec.parse({"model": "openai/gpt-4o", "extra": {"seed": 1}}, "x")

    assert spec.extra == {"seed": 1}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("openai/gpt-4o weight=heavy", "weight: Input should be a valid number"),
        ("openai/gpt-4o weight=0", "weight: Input should be greater than 0"),
        ("openai/gpt-4o temperature=hot", "temperature"),
        ("openai/gpt-4o fast", "judge option 1 ('fast') must look like key=value"),
        ("   ", "empty judge entry"),
        ({"weight": 2}, "model: Field required"),
        (["openai/gpt-4o"], "a judge is a model string or a mapping, got list"),
    ],
    ids=["weight-text", "weight-zero", "temperature", "no-equals", "empty", "no-model", "wrong-type"],
)
def test_parse_errors_name_the_source(value: Any, message: str) -> None:
    with pytest.raises(JudgeSpecError) as info:
        JudgeSpec.parse(value, "pytest.ini laj_judges[2]")

    assert str(info.value).startswith("pytest.ini laj_judges[2]: ")
    assert message in str(info.value)


def test_parse_error_does_not_echo_the_api_key() -> None:
    with pytest.raises(JudgeSpecError) as info:
        JudgeSpec.parse({"model": "openai/gpt-4o", "api_key": API_KEY, "weight": -1}, "x")

    assert API_KEY not in str(info.value)


# -- VerdictCache ---------------------------------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[VerdictCache]:
    store = VerdictCache(tmp_path / "verdicts")
    yield store
    store.close()


def test_cache_round_trips_a_verdict(cache: VerdictCache) -> None:
    cache.set(key(), VERDICT, "gpt-4o")

    assert cache.get(key()) == VERDICT
    assert cache.get(key(output="another reply")) is None


def test_cache_survives_reopening(tmp_path: Path) -> None:
    first = VerdictCache(tmp_path / "verdicts")
    first.set(key(), VERDICT, "gpt-4o")
    first.close()

    second = VerdictCache(tmp_path / "verdicts")
    try:
        assert second.get(key()) == VERDICT
    finally:
        second.close()


def test_entry_of_another_prompt_version_is_a_miss(cache: VerdictCache, monkeypatch: pytest.MonkeyPatch) -> None:
    cache.set(key(), VERDICT, "gpt-4o")
    monkeypatch.setattr(pytest_laj.store.backend, "PROMPT_VERSION", "99")

    assert cache.get(key()) is None


@pytest.mark.parametrize(
    "entry",
    [
        {"format": CACHE_FORMAT + 1, "prompt": PROMPT_VERSION, "verdict": VERDICT.model_dump()},
        {"format": CACHE_FORMAT, "prompt": "0", "verdict": VERDICT.model_dump()},
        {"format": CACHE_FORMAT, "prompt": PROMPT_VERSION},
        {"format": CACHE_FORMAT, "prompt": PROMPT_VERSION, "verdict": {"criteria": "garbage"}},
        "a string from some older tool",
    ],
    ids=["other-format", "other-prompt", "no-verdict", "bad-verdict", "not-a-dict"],
)
def test_stale_or_foreign_entries_are_misses(cache: VerdictCache, entry: Any) -> None:
    cache._open().set(key(), entry)

    assert cache.get(key()) is None


def test_stored_entry_carries_versions_and_no_secret(cache: VerdictCache, tmp_path: Path) -> None:
    llm = judge(f"openai/gpt-4o api_key={API_KEY} api_base=http://127.0.0.1:9")
    entry_key = key(judge=llm.identity())

    cache.set(entry_key, VERDICT, llm.name)
    raw = cache._open().get(entry_key)
    cache.close()

    assert raw["format"] == CACHE_FORMAT
    assert raw["prompt"] == PROMPT_VERSION
    assert raw["judge"] == "openai/gpt-4o"
    assert API_KEY not in json.dumps(raw)
    for path in (tmp_path / "verdicts").rglob("*"):
        if path.is_file():
            assert API_KEY.encode() not in path.read_bytes(), path


# -- one computation of a missing verdict at a time --------------------------------------------------------------


async def _hold(cache: VerdictCache, order: list[str], name: str, seconds: float) -> None:
    async with cache.claim("k", hold=60):
        order.append(f"{name} in")
        await asyncio.sleep(seconds)
        order.append(f"{name} out")


def test_a_claim_makes_the_next_caller_wait(cache: VerdictCache) -> None:
    order: list[str] = []

    async def both() -> None:
        await asyncio.gather(_hold(cache, order, "first", 0.2), _hold(cache, order, "second", 0))

    asyncio.run(both())

    assert order == ["first in", "first out", "second in", "second out"]
    assert cache._open().get("claim:k") is None


def test_a_claim_left_by_a_dead_process_is_broken_at_once(cache: VerdictCache) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    cache._open().set("claim:k", {"host": socket.gethostname(), "pid": int(dead.stdout)})
    order: list[str] = []

    asyncio.run(asyncio.wait_for(_hold(cache, order, "next", 0), timeout=5))

    assert order == ["next in", "next out"]


def _rater(cache: VerdictCache, across_processes: bool) -> Rater:
    return Rater(Store(cache, CacheMode.RW), across_processes=across_processes)


@pytest.mark.parametrize("across_processes", [False, True], ids=["lock", "claim"])
def test_exclusive_serialises_one_key_and_leaves_nothing_behind(cache: VerdictCache, across_processes: bool) -> None:
    rater = _rater(cache, across_processes)
    order: list[str] = []

    async def hold(name: str, key: str, seconds: float) -> None:
        async with rater._exclusive(key, hold=60):
            order.append(f"{name} in")
            await asyncio.sleep(seconds)
            order.append(f"{name} out")

    async def run() -> None:
        await asyncio.gather(hold("a", "k", 0.2), hold("b", "k", 0), hold("other", "k2", 0))

    asyncio.run(run())

    assert order.index("a out") < order.index("b in")
    assert order.index("other out") < order.index("a out")  # another key does not wait
    assert rater._key_locks == {}
    assert cache._open().get("claim:k") is None


def test_within_one_process_exclusive_writes_nothing_to_the_cache(cache: VerdictCache) -> None:
    rater = _rater(cache, across_processes=False)

    async def run() -> None:
        async with rater._exclusive("k", hold=60):
            assert len(cache._open()) == 0

    asyncio.run(run())


# -- figures memoised beside the verdicts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "reads", "writes"),
    [
        (CacheMode.RW, True, True),
        (CacheMode.REPLAY, True, False),
        (CacheMode.REFRESH, False, True),
        (CacheMode.OFF, False, False),
    ],
)
def test_memo_follows_the_cache_mode(cache: VerdictCache, mode: CacheMode, reads: bool, writes: bool) -> None:
    Store(cache, CacheMode.RW).set("alpha:old", [0.5, ""])

    memo = Store(cache, mode)
    memo.set("alpha:new", [0.25, ""])

    assert memo.get("alpha:old") == ([0.5, ""] if reads else None)
    assert Store(cache, CacheMode.RW).get("alpha:new") == ([0.25, ""] if writes else None)
