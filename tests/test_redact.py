"""Secrets never reach what pytest-laj prints or stores."""

from __future__ import annotations

import pytest
import yaml

from pytest_laj.core.redact import redact

R = "[REDACTED]"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "eyJhbGciOiJIUzI1NiJ9.payload.sig"),
        ("header was 'bearer abcdEFGH1234'", "abcdEFGH1234"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
    ],
    ids=["bearer", "lowercase-bearer", "basic"],
)
def test_authorization_tokens(text: str, secret: str) -> None:
    cleaned = redact(text)

    assert secret not in cleaned
    assert R in cleaned


@pytest.mark.parametrize(
    "key",
    [
        "sk-abcdefghijklmnop",
        "sk-proj-AbC123_def-456ghiJKL",
        "sk-ant-api03-AAAAbbbbCCCCdddd",
        "xai-ABCDEFGH12345678",
        "AIza" + "B" * 35,
    ],
    ids=["openai", "openai-project", "anthropic", "xai", "google"],
)
def test_provider_keys(key: str) -> None:
    cleaned = redact(f"AuthenticationError: Incorrect API key provided: {key}. Check your key.")

    assert key not in cleaned
    assert cleaned.removeprefix("AuthenticationError: ") == "Incorrect API key provided: [REDACTED]. Check your key."


def test_groq_key() -> None:
    key = "gsk_" + "aB3dE5" * 8 + "Zz90"

    assert key not in redact(f"Invalid API Key: {key}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("api_key=hunter2secret", f"api_key={R}"),
        ("api-key: hunter2secret", f"api-key: {R}"),
        ("ApiKey = 'hunter2secret' next", f"ApiKey = '{R}' next"),
        ('{"api_key": "hunter2secret", "model": "gpt-4o"}', f'{{"api_key": "{R}", "model": "gpt-4o"}}'),
        ("x-api-key: hunter2secret", f"x-api-key: {R}"),
        ("access_token=hunter2secret&x=1", f"access_token={R}"),
        ("client_secret: hunter2secret", f"client_secret: {R}"),
        ("password=hunter2secret", f"password={R}"),
    ],
    ids=["api_key", "api-key", "camel-quoted", "json", "header", "token", "secret", "password"],
)
def test_assignments(text: str, expected: str) -> None:
    cleaned = redact(text)

    assert "hunter2secret" not in cleaned
    assert cleaned.startswith(expected)


def test_aws_secret_access_key_assignment() -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

    assert secret not in redact(f"aws_secret_access_key={secret}")


def test_explicit_secrets_are_replaced_everywhere() -> None:
    secret = "my-custom-token-7Hq"

    cleaned = redact(f"sent {secret} to http://proxy?t={secret}", secrets=[secret])

    assert secret not in cleaned
    assert cleaned.count(R) == 2


def test_explicit_secret_with_regex_characters() -> None:
    secret = "a.b*c+d(e)"

    assert redact(f"value {secret} end", [secret]) == f"value {R} end"


def test_too_short_or_empty_secrets_are_ignored() -> None:
    assert redact("the cat sat", secrets=["", "at"]) == "the cat sat"


def test_ordinary_text_is_untouched() -> None:
    text = "RateLimitError: 429 Too Many Requests for model openai/gpt-4o; retry after 2s (task-risk assessment)"

    assert redact(text) == text


def test_short_bearer_values_are_left() -> None:
    assert redact("bearer of bad news") == "bearer of bad news"


def test_url_credentials_are_redacted_whatever_the_scheme() -> None:
    cleaned = redact("POST http://laj:pw-5Hq2@127.0.0.1:8080/v1 and wss://tok3n@example.org/x")

    assert cleaned == "POST http://[REDACTED]@127.0.0.1:8080/v1 and wss://[REDACTED]@example.org/x"


HEADER_TOKEN = "tok-9f8e7d6c5b4a3921"
TENANT = "tenant-c0ffee-4242"  # a header whose name says nothing of secrets
PASSWORD = "pw-5Hq2Zr8Lm4"

LEAKY_RULES = """\
judges:
  alpha:
    default: best_practice
    faults: [{status: 401, echo_auth: true, times: always}]
  beta:
    default: best_practice
"""


def test_header_values_and_url_passwords_never_reach_messages_junit_or_the_debug_log(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import RUBRIC

    from pytest_laj.simulator import Simulator

    pytester.mkdir("rubrics")
    (pytester.path / "rubrics" / "safety.yaml").write_text(RUBRIC)
    pytester.makepyfile(
        f"""
        import logging
        import pytest

        pytestmark = pytest.mark.laj(rubric="safety", thresholds={{"quorum": 1}})

        def test_it(laj):
            laj.check("Please call 988.")

        def test_another_sdk_logs_the_request(laj):  # botocore, google-auth... log headers at DEBUG
            laj.assess("Please call 988.")
            log = logging.getLogger("botocore.endpoint")
            log.debug("Sending http request: headers=%r", {{"X-Tenant": {TENANT!r}}})
            log.debug("retrying", exc_info=ConnectionError("reset while sending X-Tenant: {TENANT}"))
        """
    )
    headers = f'{{"Authorization": "Token {HEADER_TOKEN}", "X-Tenant": "{TENANT}"}}'
    monkeypatch.setenv("LITELLM_LOG", "DEBUG")  # litellm's own DEBUG logging prints every request's headers
    with Simulator(yaml.safe_load(LEAKY_RULES)) as simulator:
        with_password = simulator.base_url.replace("http://", f"http://laj:{PASSWORD}@")
        pytester.makeini(
            "[pytest]\nlaj_judges =\n"
            f"    openai/alpha api_key=sk-test-aaaaaaaaaa api_base={simulator.base_url} 'extra_headers={headers}'\n"
            f"    openai/beta api_key=sk-test-bbbbbbbbbb api_base={with_password}\n"
        )
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "--laj-retries", "0", "--junitxml=junit.xml",
            "--log-file=debug.log", "--log-file-level=DEBUG", "--log-level=DEBUG", "-rA",
        )  # fmt: skip
    channels = {
        "terminal": result.stdout.str() + result.stderr.str(),
        "junit": (pytester.path / "junit.xml").read_text(),
        "log": (pytester.path / "debug.log").read_text(),
    }
    assert "Incorrect API key provided: [REDACTED]" in channels["terminal"]  # the provider echoed it
    assert "Authorization" in channels["log"] and "Sending http request" in channels["log"]  # headers logged
    assert "ConnectionError: reset while sending X-Tenant: [REDACTED]" in channels["log"]
    assert f"http://[REDACTED]@127.0.0.1:{with_password.rsplit(':', 1)[1]}" in channels["log"]
    for name, text in channels.items():
        for secret in (HEADER_TOKEN, TENANT, PASSWORD, "sk-test-aaaaaaaaaa", "sk-test-bbbbbbbbbb"):
            assert secret not in text, (name, secret)
