"""Any model litellm reaches, as a judge.

litellm is imported only when an LLM judge is really called: the import costs seconds, and a run served
entirely from the cache must not pay it.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import threading
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any

from pytest_laj.core.models import JudgeVerdict
from pytest_laj.core.redact import install_log_filter, url_credentials
from pytest_laj.judges.base import Judge, JudgeSpec, is_transport_key
from pytest_laj.judges.protocol import InvalidVerdict, JudgeRequest, build_messages, parse_verdict, response_format

__all__ = ["LiteLLMJudge", "import_litellm"]


_litellm: ModuleType | None = None
_import_lock = threading.Lock()


def import_litellm() -> ModuleType:
    """Import litellm once, offline-safe: without this variable it fetches a cost map from the internet."""
    global _litellm
    with _import_lock:  # every judge prepares on its own executor thread
        if _litellm is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            with _long_lived_objects():
                import litellm

            install_log_filter()
            litellm.telemetry = False
            litellm.suppress_debug_info = True
            _litellm = litellm
        return _litellm


@contextlib.contextmanager
def _long_lived_objects() -> Iterator[None]:
    """Create objects that live until the process ends without the garbage collector watching.

    litellm's import makes about a million objects that are never freed. Collected during the import, they
    slow it by a fifth; left tracked, every later full collection walks them again, and pytest runs five at
    exit (about 1 s of CPU here). Frozen, the collector skips them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


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


class LiteLLMJudge(Judge):
    """Any model litellm can reach: one request per output covering every applicable criterion."""

    def __init__(self, spec: JudgeSpec, timeout: float) -> None:
        self.spec = spec
        self.name = spec.label
        self.weight = spec.weight
        self.max_concurrency = spec.max_concurrency
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
        import_litellm()

    def describe(self, error: BaseException) -> str:
        """One line a person can read: `RateLimitError (HTTP 429): slow down`."""
        text = _LITELLM_PREFIX.sub("", " ".join(str(error).split()))
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
        return verdict.model_copy(update={"cost_usd": cost})

    def is_transient(self, error: BaseException) -> bool:
        status = getattr(error, "status_code", None)
        if isinstance(status, int):
            return status in _TRANSIENT_STATUS or status >= 500
        return super().is_transient(error) or type(error).__name__ in _TRANSIENT_NAMES

    def retry_after(self, error: BaseException) -> float | None:
        response = getattr(error, "response", None)
        headers = getattr(response, "headers", None) or getattr(error, "litellm_response_headers", None)
        value = headers.get("retry-after") if headers is not None else None
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None
