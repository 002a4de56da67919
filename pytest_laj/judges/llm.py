"""Any model litellm reaches, as a judge.

litellm is imported only when an LLM judge is really called: the import costs seconds, and a run served
entirely from the cache must not pay it.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import re
import threading
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any

from pytest_laj.core.gcpause import paused_gc
from pytest_laj.core.models import JudgeVerdict
from pytest_laj.core.redact import install_log_filter, url_credentials
from pytest_laj.errors import UsageError
from pytest_laj.judges.base import Judge, JudgeSpec, is_transport_key
from pytest_laj.judges.protocol import InvalidVerdict, JudgeRequest, build_messages, parse_verdict, response_format

__all__ = ["LiteLLMJudge", "MissingCredentials", "completion_params", "import_litellm"]


_litellm: ModuleType | None = None
_import_lock = threading.Lock()


def import_litellm() -> ModuleType:
    """Import litellm once, offline-safe: without this variable it fetches a cost map from the internet."""
    global _litellm
    with _import_lock:  # every judge prepares on its own executor thread
        if _litellm is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            # litellm's import makes about a million objects that are never freed. Collected during the
            # import, they slow it by a fifth; left tracked, every later full collection walks them again, and
            # pytest runs five at exit (about 1 s of CPU here).
            with paused_gc(freeze=True):
                import litellm

            install_log_filter()
            litellm.telemetry = False
            litellm.suppress_debug_info = True
            _litellm = litellm
        return _litellm


@functools.cache
def completion_params() -> frozenset[str]:
    """Every keyword litellm's completion names or lists as its own: what a judge option may be."""
    litellm = import_litellm()
    named = set(inspect.signature(litellm.completion).parameters) - {"kwargs"}
    try:
        from litellm.types.utils import all_litellm_params
    except ImportError:  # an older litellm
        all_litellm_params = []
    return frozenset({*named, *all_litellm_params, *getattr(litellm, "OPENAI_CHAT_COMPLETION_PARAMS", ())})


def _strings(value: object) -> Iterator[str]:
    """Every string in an option's value, however nested (headers are a mapping, credentials may be JSON)."""
    if isinstance(value, str):
        yield value
        yield from url_credentials(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _cost(response: Any) -> float | None:
    """The price litellm already worked out for the call (None for a model it has no price for); asking
    `completion_cost` again would repeat that work, about 2 ms of CPU per call."""
    cost = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
    return float(cost) if isinstance(cost, int | float) else None


_LITELLM_PREFIX = re.compile(
    r"^(?:litellm\.)?\w+(?:Error|Exception|Timeout): (?:\w+(?:Error|Timeout): )?(?:\w+Exception - )?"
)
_TRANSIENT_STATUS = frozenset({408, 409, 425, 429})
_TRANSIENT_NAMES = frozenset({"Timeout", "APIConnectionError", "APITimeoutError", "ConnectError", "ReadTimeout"})
_AUTH_NAMES = frozenset({"AuthenticationError", "PermissionDeniedError"})

# litellm reports most failures that never got an HTTP answer as an "HTTP 500" of its own; the chain of causes
# says what really happened, and whether asking again can help.
_DROPPED = frozenset(
    {"RemoteProtocolError", "ServerDisconnectedError", "ReadError", "ClientPayloadError", "ConnectionResetError"}
)
_UNREACHABLE = frozenset({"ConnectError", "ConnectionRefusedError", "ClientConnectorError"})
_NO_CREDENTIALS = re.compile(r"(?i)missing credentials|missing \w+ api key|api_key client option must be set")


def _flat(error: BaseException) -> str:
    return _LITELLM_PREFIX.sub("", " ".join(str(error).split()))


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _diagnosis(error: BaseException) -> tuple[str, BaseException, bool] | None:
    """What happened, the cause that says so, and whether retrying could help; None when the error's own
    status and message say it already."""
    for cause in _causes(error):
        name = type(cause).__name__
        if _NO_CREDENTIALS.search(str(cause)):
            return "no credentials", cause, False
        if isinstance(cause, json.JSONDecodeError):
            return "the provider's response was not valid JSON", cause, True
        if name in _DROPPED:
            return "connection dropped by the server", cause, True
        if name in _UNREACHABLE:
            return "could not connect to the provider", cause, True
        if isinstance(cause, UnicodeError):
            return "the request could not be encoded", cause, False
    return None


# Transport options that give no access to a model; any other (a key, a header, a base URL) may.
_NOT_ACCESS = frozenset({"timeout", "num_retries", "max_retries"})
_CREDENTIAL_VARIABLE = re.compile(r"KEY|TOKEN|SECRET|CREDENTIAL")


class MissingCredentials(UsageError):
    """A judge whose provider needs a key that is not set: every call would fail, so none is made."""


class LiteLLMJudge(Judge):
    """Any model litellm can reach: one request per output covering every applicable criterion."""

    def __init__(self, spec: JudgeSpec, timeout: float) -> None:
        self.spec = spec
        self.name = spec.label
        self.weight = spec.weight
        self.max_concurrency = spec.max_concurrency
        self.rpm = spec.rpm
        self.tpm = spec.tpm
        self.timeout = timeout

    def identity(self) -> dict[str, Any]:
        extra = {k: v for k, v in self.spec.extra.items() if not is_transport_key(k)}
        return {
            "kind": "litellm",
            "model": self.spec.model,
            "temperature": self.spec.temperature,
            "extra": extra,
            "fingerprint": self.spec.fingerprint,
        }

    def secrets(self) -> list[str]:
        """The key, every header value and every string under a transport or credential-named option (a token
        in `extra_headers`, a password in a URL): providers and their DEBUG logs echo them."""
        values = [text for k, v in self.spec.extra.items() if is_transport_key(k) for text in _strings(v)]
        values += url_credentials(self.spec.api_base or "")
        return values + ([self.spec.api_key.get_secret_value()] if self.spec.api_key else [])

    def prepare(self) -> None:
        """Import litellm, and refuse a judge that could only fail: a provider whose API key is not set."""
        missing = self._missing_keys(import_litellm())
        if missing:
            raise MissingCredentials(
                f"judge {self.name!r} ({self.spec.model}) has no credentials: set {' or '.join(missing)} in the "
                "environment, or give the judge api_key=... (or api_base=... for a gateway that needs none)"
            )

    def _missing_keys(self, litellm: ModuleType) -> list[str]:
        """The provider's API-key variables, when litellm says none is set and nothing else supplies access.

        Only keys: a provider that also accepts ambient credentials (AWS, Vertex, Azure AD) or a base URL is
        left to its first call, and a credential variable of the same provider that litellm did not name
        (ANTHROPIC_AUTH_TOKEN) counts as access."""
        spec = self.spec
        if spec.api_key or spec.api_base or any(is_transport_key(k) and k not in _NOT_ACCESS for k in spec.extra):
            return []
        try:
            report = litellm.validate_environment(model=spec.model)
        except Exception:  # an unknown provider, or litellm's own check failing: the call will say more
            return []
        missing = [str(k) for k in report.get("missing_keys") or []]
        if report.get("keys_in_environment") or not missing or not all(k.endswith("_API_KEY") for k in missing):
            return []
        providers = tuple({k.split("_", 1)[0] + "_" for k in missing})
        if any(name.startswith(providers) and _CREDENTIAL_VARIABLE.search(name) for name in os.environ):
            return []
        return missing

    def describe(self, error: BaseException) -> str:
        """One line a person can read: `RateLimitError (HTTP 429): slow down`, or what really happened when
        litellm's status is its own invention: `connection dropped by the server (ReadError: ...)`."""
        found = _diagnosis(error)
        if found is not None:
            what, cause, _ = found
            detail = _flat(cause)
            return f"{what} ({type(cause).__name__}: {detail})" if detail else what
        text = _flat(error)
        status = getattr(error, "status_code", None)
        kind = type(error).__name__ + (f" (HTTP {status})" if isinstance(status, int) else "")
        return f"{kind}: {text}" if text else kind

    async def rate(self, request: JudgeRequest) -> JudgeVerdict:
        litellm = import_litellm()
        kwargs: dict[str, Any] = {
            **self.spec.extra,
            "model": self.spec.model,
            "messages": build_messages(request),
            "response_format": response_format(request),
            "temperature": self.spec.temperature,
            "timeout": self.timeout,
            "num_retries": 0,
            "max_retries": 0,
            "drop_params": True,
        }
        if self.spec.api_base:
            kwargs["api_base"] = self.spec.api_base
        if self.spec.api_key:
            kwargs["api_key"] = self.spec.api_key.get_secret_value()
        response = await litellm.acompletion(**kwargs)
        cost = _cost(response)
        try:
            verdict = parse_verdict(response.choices[0].message.content, request)
        except InvalidVerdict as invalid:
            invalid.cost_usd = cost
            raise
        tokens = getattr(getattr(response, "usage", None), "total_tokens", None)
        return verdict.model_copy(update={"cost_usd": cost, "tokens": tokens if isinstance(tokens, int) else None})

    def is_transient(self, error: BaseException) -> bool:
        """Never an authentication problem, whatever status litellm gave it; a dropped connection or a garbage
        body may clear, a refused request will not."""
        if any(type(cause).__name__ in _AUTH_NAMES for cause in _causes(error)):
            return False
        found = _diagnosis(error)
        if found is not None:
            return found[2]
        status = getattr(error, "status_code", None)
        if isinstance(status, int):
            return status in _TRANSIENT_STATUS or status >= 500
        return super().is_transient(error) or type(error).__name__ in _TRANSIENT_NAMES

    def is_rate_limited(self, error: BaseException) -> bool:
        return getattr(error, "status_code", None) == 429 or any(
            type(cause).__name__ == "RateLimitError" for cause in _causes(error)
        )

    def retry_after(self, error: BaseException) -> float | None:
        response = getattr(error, "response", None)
        headers = getattr(response, "headers", None) or getattr(error, "litellm_response_headers", None)
        value = headers.get("retry-after") if headers is not None else None
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None
