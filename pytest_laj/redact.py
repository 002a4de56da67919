"""Keep secrets out of everything pytest-laj prints or stores.

Provider exceptions can echo request headers or keys; every error text passes through `redact` first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["redact"]

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


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[REDACTED]")
    text = _TOKENS.sub("[REDACTED]", text)
    return _ASSIGNMENTS.sub(r"\1[REDACTED]", text)
