"""Judges: who rates an output. `Judge` is the protocol every panel member follows; `JudgeSpec` is a judge as
configured (a litellm model string with options)."""

from __future__ import annotations

import re
import shlex
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from pytest_laj.core.models import JudgeVerdict
from pytest_laj.errors import UsageError
from pytest_laj.judges.protocol import JudgeRequest

__all__ = ["TRANSPORT_KEYS", "Judge", "JudgeSpec", "JudgeSpecError", "is_transport_key", "parse_judge_specs"]

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


def is_transport_key(name: str) -> bool:
    """A listed transport key, or any name with a word ending in a credential word (aws_session_token,
    azure_ad_token, apiKey): credentials rotate and must never reach a cache key. max_tokens is not one."""
    words = re.split(r"[^a-z0-9]+", name.lower())
    return name in TRANSPORT_KEYS or any(word.endswith(_CREDENTIAL_WORDS) for word in words)


class JudgeSpecError(UsageError):
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
