"""Keep secrets out of everything pytest-laj prints or stores.

Provider exceptions can echo request headers or keys; every error text passes through `redact` first, and the
loggers of litellm and its HTTP stack get a filter that does the same, so `--log-file` at DEBUG stays clean.
Known secrets (judges' api keys, and credentials in the environment) are replaced wherever they appear.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping

__all__ = ["RedactingFilter", "install_log_filter", "redact", "remember_secrets", "url_credentials"]

_KNOWN: set[str] = set()
_SECRET_ENV = re.compile(r"(?i)(?:^|_)(?:api_?key|key|token|secret|password|credentials?)$")
_LOGGERS = (
    "LiteLLM",
    "LiteLLM Router",
    "LiteLLM Proxy",
    "litellm",
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "openai",
    "openai._base_client",
    "pytest_laj",
)

_TOKENS = re.compile(
    r"(?i)\b(?:bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"
    r"|\b(?:(?:sk|pk|rk|xai|key)-|gsk_)[A-Za-z0-9_-]{8,}"
    r"|\bAIza[0-9A-Za-z_-]{20,}"
)
# A value assigned to a name ending in a credential word: api_key, x-api-key, aws_secret_access_key,
# Ocp-Apim-Subscription-Key, aws_session_token, client_secret, vertex_credentials, ...
_ASSIGNMENTS = re.compile(
    r"(?i)((?:(?:api|[_-])key|token|secret|authorization|password|credentials?)[\"']?\s*[:=]\s*[\"']?)"
    r"[^\s\"',}]{4,}"
)


# The user-info part of a URL (`scheme://user:password@host`), whatever the scheme.
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#@\s]+@")


def url_credentials(url: str) -> list[str]:
    """The user name and password in a URL, if it has any: both can be the credential (`https://TOKEN@host`)."""
    found = _URL_USERINFO.search(url)
    if found is None:
        return []
    userinfo = found[0][len(found[1]) : -1]
    return [userinfo, *userinfo.split(":", 1)[1:]]


def remember_secrets(values: Iterable[str], environ: Mapping[str, str] = os.environ) -> None:
    """Secrets to scrub everywhere from now on: these values and every credential-named environment variable."""
    _KNOWN.update(v for v in values if len(v) >= 8)
    _KNOWN.update(v for k, v in environ.items() if _SECRET_ENV.search(k) and len(v) >= 8)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in sorted({*secrets, *_KNOWN}, key=len, reverse=True):
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[REDACTED]")
    text = _URL_USERINFO.sub(r"\1[REDACTED]@", text)
    text = _TOKENS.sub("[REDACTED]", text)
    return _ASSIGNMENTS.sub(r"\1[REDACTED]", text)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with secrets removed (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:  # a traceback's messages can echo a request too
            record.exc_text = redact(_FORMATTER.formatException(record.exc_info))
        return True


_FORMATTER = logging.Formatter()


_FILTER = RedactingFilter()


def install_log_filter(handlers: Iterable[logging.Handler | None] = ()) -> None:
    """Filter the loggers of litellm and its HTTP stack, and `handlers` (pytest's capture and log-file handlers,
    which also see records of loggers not listed here)."""
    for target in (*(logging.getLogger(name) for name in _LOGGERS), *handlers):
        if target is not None and _FILTER not in target.filters:
            target.addFilter(_FILTER)
