"""Judges: who rates an output. An LLM reached through litellm, or anything else that returns a JudgeVerdict.

litellm is imported only when an LLM judge is really called: the import costs seconds, and a run served
entirely from the cache must not pay it.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import shlex
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from pytest_laj.prompt import InvalidVerdict, JudgeRequest, build_messages, parse_verdict, response_format
from pytest_laj.redact import install_log_filter
from pytest_laj.verdict import JudgeVerdict

__all__ = ["Judge", "JudgeSpec", "JudgeSpecError", "LiteLLMJudge", "import_litellm", "parse_judge_specs"]

# Keys that say where or how to reach a model, not what it answers: never part of a cache key.
TRANSPORT_KEYS = frozenset(
    {
        "api_base",
        "base_url",
        "api_key",
        "api_version",
        "timeout",
        "headers",
        "extra_headers",
        "num_retries",
        "max_retries",
        "organization",
        "aws_access_key_id",
        "aws_secret_access_key",
        "vertex_credentials",
    }
)
_CREDENTIAL_WORDS = ("key", "token", "secret", "password", "credential", "credentials")


def _is_transport_key(name: str) -> bool:
    """A listed transport key, or any name with a word ending in a credential word (aws_session_token,
    azure_ad_token, apiKey): credentials rotate and must never reach a cache key. max_tokens is not one."""
    words = re.split(r"[^a-z0-9]+", name.lower())
    return name in TRANSPORT_KEYS or any(word.endswith(_CREDENTIAL_WORDS) for word in words)


class JudgeSpecError(ValueError):
    """A judge was configured in a way that cannot work; the message says where and how to fix it."""


class JudgeSpec(BaseModel):
    """A configured judge: a litellm model string plus options."""

    model_config = ConfigDict(frozen=True)

    model: str = Field(min_length=1)
    name: str = ""
    weight: float = Field(default=1.0, gt=0)
    max_concurrency: int | None = Field(default=None, ge=1, description="calls in flight to this judge at once")
    temperature: float = 0.0
    api_base: str | None = None
    api_key: SecretStr | None = None
    fingerprint: str | None = Field(default=None, description="extra cache-key material, e.g. simulator rules")
    extra: dict[str, Any] = Field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.name or self.model

    @classmethod
    def parse(cls, value: str | Mapping[str, Any] | JudgeSpec, source: str) -> JudgeSpec:
        """`"openai/gpt-4o weight=2 temperature=0.2"`, or a mapping with the same keys."""
        if isinstance(value, JudgeSpec):
            return value
        if isinstance(value, str):
            words = shlex.split(value)
            if not words:
                raise JudgeSpecError(f"{source}: empty judge entry")
            fields: dict[str, Any] = {"model": words[0]}
            for word in words[1:]:
                key, sep, raw = word.partition("=")
                if not sep:
                    raise JudgeSpecError(f"{source}: judge option {word!r} must look like key=value")
                fields[key] = yaml.safe_load(raw) if raw else ""
        elif isinstance(value, Mapping):
            fields = dict(value)
        else:
            raise JudgeSpecError(f"{source}: a judge is a model string or a mapping, got {type(value).__name__}")
        known = {k: v for k, v in fields.items() if k in cls.model_fields and k != "extra"}
        unknown = {k: v for k, v in fields.items() if k not in cls.model_fields}
        extra = fields.get("extra", {})
        known["extra"] = {**extra, **unknown} if isinstance(extra, Mapping) else extra
        try:
            return cls.model_validate(known)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise JudgeSpecError(f"{source}: invalid judge {fields.get('model')!r}: {problems}") from None


def parse_judge_specs(entries: list[Any], source: str) -> list[JudgeSpec]:
    return [JudgeSpec.parse(entry, f"{source}[{i}]") for i, entry in enumerate(entries)]


class Judge(ABC):
    """A panel member. Subclass it for a non-LLM judge (a rule, a local classifier) and supply it through
    the `pytest_laj_make_judge` hook; it joins the panel, the cache and the retry policy like any other."""

    name: str
    weight: float = 1.0
    max_concurrency: int | None = None

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """Everything that changes this judge's verdicts (never credentials): it goes into the cache key."""

    @abstractmethod
    async def rate(self, request: JudgeRequest) -> JudgeVerdict:
        """Rate one output; raise `InvalidVerdict` for an unusable answer, anything else for a failed call."""

    def is_transient(self, error: BaseException) -> bool:
        """Whether retrying could help."""
        return isinstance(error, TimeoutError | ConnectionError)

    def retry_after(self, error: BaseException) -> float | None:
        """Seconds the provider asked us to wait, if it said."""
        return None

    def secrets(self) -> list[str]:
        """Values to scrub from anything shown about this judge."""
        return []

    def prepare(self) -> None:  # noqa: B027 - optional, most judges need no set-up
        """Slow one-time set-up (an import, a model load), run off the event loop and outside any timeout."""

    def describe(self, error: BaseException) -> str:
        """A one-line account of a failed call, for failure messages."""
        return f"{type(error).__name__}: {' '.join(str(error).split())}".rstrip(": ")


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
        extra = {k: v for k, v in self.spec.extra.items() if not _is_transport_key(k)}
        return {
            "kind": "litellm",
            "model": self.spec.model,
            "temperature": self.spec.temperature,
            "extra": extra,
            "fingerprint": self.spec.fingerprint,
        }

    def secrets(self) -> list[str]:
        values = [str(v) for k, v in self.spec.extra.items() if _is_transport_key(k) and isinstance(v, str)]
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
