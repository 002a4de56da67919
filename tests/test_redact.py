"""Secrets never reach what pytest-laj prints or stores."""

from __future__ import annotations

import pytest

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
