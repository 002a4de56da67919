"""Judges: who rates an output. `Judge` is the protocol every panel member follows; `JudgeSpec` is a judge as
configured (a litellm model string with options)."""

from __future__ import annotations

import difflib
import math
import re
import shlex
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from pytest_laj.core.models import JudgeVerdict
from pytest_laj.core.yamlfile import YamlError, load_yaml, short_repr
from pytest_laj.errors import UsageError
from pytest_laj.judges.protocol import JudgeRequest, build_messages

__all__ = [
    "COMMON_PARAMS",
    "TRANSPORT_KEYS",
    "Judge",
    "JudgeSpec",
    "JudgeSpecError",
    "is_secret_name",
    "is_transport_key",
    "parse_judge_specs",
]

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
# litellm parameters a judge commonly sets, known without importing litellm (which takes seconds): only an
# option outside these and pytest-laj's own makes the check import it.
COMMON_PARAMS = frozenset(
    {
        "top_p",
        "top_k",
        "n",
        "stop",
        "seed",
        "max_tokens",
        "max_completion_tokens",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "user",
        "reasoning_effort",
        "verbosity",
        "thinking",
        "service_tier",
        "extra_body",
        "custom_llm_provider",
        "deployment_id",
        "metadata",
        "vertex_project",
        "vertex_location",
        "aws_region_name",
        "aws_session_token",
        "aws_profile_name",
        "azure_ad_token",
    }
)
_CREDENTIAL_WORDS = ("key", "token", "secret", "password", "credential", "credentials", "authorization")
_OPTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def is_secret_name(name: str) -> bool:
    """A name with a word ending in a credential word (api_key, aws_session_token, azure_ad_token, apiKey).
    max_tokens is not one."""
    return any(word.endswith(_CREDENTIAL_WORDS) for word in re.split(r"[^a-z0-9]+", name.lower()))


def is_transport_key(name: str) -> bool:
    """A listed transport key, or a secret-named one: credentials rotate and must never reach a cache key."""
    return name in TRANSPORT_KEYS or is_secret_name(name)


class JudgeSpecError(UsageError):
    """A judge was configured in a way that cannot work; the message says where and how to fix it."""


LitellmParams = Callable[[], Collection[str]]
"""The keywords litellm's completion accepts; called only for an option pytest-laj does not know itself."""


class JudgeSpec(BaseModel):
    """A configured judge: a litellm model string plus options."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    model: str = Field(min_length=1)
    name: str = ""
    weight: float = Field(default=1.0, gt=0)
    max_concurrency: int | None = Field(default=None, ge=1, description="calls in flight to this judge at once")
    rpm: float | None = Field(default=None, gt=0, description="requests a minute to this judge, all xdist workers")
    tpm: float | None = Field(default=None, gt=0, description="tokens a minute to this judge, all xdist workers")
    temperature: float = 0.0
    api_base: str | None = None
    api_key: SecretStr | None = None
    fingerprint: str | None = Field(default=None, description="extra cache-key material, e.g. simulator rules")
    extra: dict[str, Any] = Field(default_factory=dict, description="passed to litellm unchecked")

    @property
    def label(self) -> str:
        return self.name or self.model

    @classmethod
    def parse(
        cls, value: str | Mapping[str, Any] | JudgeSpec, source: str, litellm_params: LitellmParams = frozenset
    ) -> JudgeSpec:
        """`"openai/gpt-4o weight=2 temperature=0.2"`, or a mapping with the same keys.

        Every option must be one of pytest-laj's or a parameter litellm's completion accepts: a typo
        (`temprature=0`) would otherwise reach the provider, be dropped, and split the cache. A provider
        parameter litellm does not list goes in `extra`. No message ever shows an option's value."""
        if isinstance(value, JudgeSpec):
            return value
        if isinstance(value, str):
            fields = _fields_from_words(value, source)
        elif isinstance(value, Mapping):
            fields = dict(value)
        else:
            raise JudgeSpecError(f"{source}: a judge is a model string or a mapping, got {type(value).__name__}")
        model = fields.get("model")
        where = f"{source}: judge {model!r}" if isinstance(model, str) else f"{source}: judge"
        _check_option_names(list(fields), where, litellm_params)
        known = {k: v for k, v in fields.items() if k in cls.model_fields and k != "extra"}
        unknown = {k: v for k, v in fields.items() if k not in cls.model_fields}
        for key, option in unknown.items():
            if isinstance(option, float) and not math.isfinite(option):
                raise JudgeSpecError(f"{where}: option {key!r} must be a finite number")
        extra = fields.get("extra", {})
        known["extra"] = {**extra, **unknown} if isinstance(extra, Mapping) else extra
        try:
            return cls.model_validate(known)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise JudgeSpecError(f"{where}: {problems}") from None


def _fields_from_words(value: str, source: str) -> dict[str, Any]:
    """`model key=value ...`: a value is read as YAML (`weight=2` is a number), except a secret-named key's,
    which is taken as written: it is a string, and a YAML error would quote it."""
    try:
        words = shlex.split(value)
    except ValueError as exc:
        raise JudgeSpecError(f"{source}: cannot split the judge entry into words: {exc}") from None
    if not words:
        raise JudgeSpecError(f"{source}: empty judge entry")
    fields: dict[str, Any] = {"model": words[0]}
    for position, word in enumerate(words[1:], start=1):
        key, sep, raw = word.partition("=")
        if not sep:
            raise JudgeSpecError(f"{source}: judge option {position} ({_name_only(word)}) must look like key=value")
        _check_option_name(key, f"{source}: judge option {position}")
        if is_secret_name(key) or not raw:
            fields[key] = raw
            continue
        try:
            fields[key] = load_yaml(raw, f"{source}: judge option {key!r}")
        except YamlError as exc:
            raise JudgeSpecError(f"{exc}; to pass it as text, quote it for YAML too: {key}=\"'...'\"") from None
    return fields


def _name_only(word: str) -> str:
    """The leading name of a malformed option, never the rest: `api_key:sk-...` may carry a key."""
    name = re.match(r"[A-Za-z_]*", word)
    shown = name.group(0) if name else ""
    return repr(shown + ("..." if len(shown) < len(word) else ""))


def _check_option_name(key: object, where: str) -> None:
    """A name, checked before anything is done with it: `@` starts no YAML token, and a name that is not one may
    be a pasted value."""
    if isinstance(key, str) and _OPTION_NAME.match(key):
        return
    if not isinstance(key, str):
        got = f"a {type(key).__name__}"
    elif not key or not re.match(r"[A-Za-z_]", key):
        got = f"a name starting with {key[:1]!r}" if key else "an empty name"
    else:
        got = _name_only(key)
    raise JudgeSpecError(f"{where}: an option name is letters, digits and '_' (not starting with a digit), got {got}")


def _check_option_names(keys: list[Any], where: str, litellm_params: LitellmParams) -> None:
    for key in keys:
        _check_option_name(key, where)
    ours = set(JudgeSpec.model_fields)
    unknown = [k for k in keys if k not in ours and k not in COMMON_PARAMS and k not in TRANSPORT_KEYS]
    if not unknown:
        return
    known = {*ours, *COMMON_PARAMS, *TRANSPORT_KEYS, *litellm_params()}
    for key in unknown:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
            if not close and is_transport_key(key):
                continue  # a provider's own credential option (client_secret, aws_session_token): its to check
            hint = f" - did you mean {close[0]!r}?" if close else "."
            raise JudgeSpecError(
                f"{where}: unknown option {short_repr(key)}{hint} Expected one of pytest-laj's "
                f"({', '.join(sorted(ours - {'fingerprint'}))}) or a parameter litellm's completion accepts; "
                "a provider parameter litellm does not list goes in extra={...}"
            )


def parse_judge_specs(entries: list[Any], source: str, litellm_params: LitellmParams = frozenset) -> list[JudgeSpec]:
    return [JudgeSpec.parse(entry, f"{source}[{i}]", litellm_params) for i, entry in enumerate(entries)]


class Judge(ABC):
    """A panel member. Subclass it for a non-LLM judge (a rule, a local classifier) and supply it through
    the `pytest_laj_make_judge` hook; it joins the panel, the cache and the retry policy like any other."""

    name: str
    weight: float = 1.0
    max_concurrency: int | None = None
    rpm: float | None = None
    tpm: float | None = None

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

    def is_rate_limited(self, error: BaseException) -> bool:
        """Whether the provider refused the call for its rate (HTTP 429): the judge's in-flight limit drops."""
        return False

    def estimate_tokens(self, request: JudgeRequest) -> int:
        """The request's tokens before it is sent, for a `tpm` limit: a character count over 4 (a tokenizer
        would be exact but costs seconds to import); the reply's reported usage corrects it afterwards."""
        return sum(len(message["content"]) for message in build_messages(request)) // 4 + 1

    def secrets(self) -> list[str]:
        """Values to scrub from anything shown about this judge."""
        return []

    def prepare(self) -> None:  # noqa: B027 - optional, most judges need no set-up
        """Slow one-time set-up (an import, a model load), run off the event loop and outside any timeout."""

    def describe(self, error: BaseException) -> str:
        """A one-line account of a failed call, for failure messages."""
        return f"{type(error).__name__}: {' '.join(str(error).split())}".rstrip(": ")
