"""Judges answered by the bundled judge simulator, reached over real HTTP by litellm like any provider."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import SecretStr

from pytest_laj.core.models import JudgeVerdict
from pytest_laj.errors import UsageError
from pytest_laj.judges.base import JudgeSpec
from pytest_laj.judges.llm import LiteLLMJudge
from pytest_laj.judges.protocol import JudgeRequest

__all__ = ["SIMULATOR_KEY", "SimulatedJudge", "simulated_spec"]

SIMULATOR_KEY = "sk-laj-simulator"


def simulated_spec(spec: JudgeSpec, rules: Any, rules_path: object) -> JudgeSpec:
    """The same judge, reached at the simulator by its name (the model string's last part)."""
    name = spec.model.rsplit("/", 1)[-1]
    if name not in rules.judge_names:
        raise UsageError(
            f"judge {spec.model!r} is not in the simulator rules {rules_path}; "
            f"simulated judges: {', '.join(rules.judge_names)}"
        )
    return spec.model_copy(
        update={
            "model": f"openai/{name}",
            "name": spec.label,
            "api_base": None,
            "api_key": spec.api_key or SecretStr(SIMULATOR_KEY),
            "fingerprint": rules.fingerprint(),
        }
    )


class SimulatedJudge(LiteLLMJudge):
    """An LLM judge whose provider is the in-process simulator, started by the first judge that calls it: a run
    answered from the cache never starts it (nor imports its HTTP server)."""

    def __init__(self, spec: JudgeSpec, timeout: float, simulator_url: Callable[[], str]) -> None:
        super().__init__(spec, timeout)
        self._simulator_url = simulator_url

    def _point_at_simulator(self) -> None:
        if self.spec.api_base is None:  # never left unset on a call: litellm would go to the real provider
            self.spec = self.spec.model_copy(update={"api_base": self._simulator_url()})

    def prepare(self) -> None:
        self._point_at_simulator()
        super().prepare()

    async def rate(self, request: JudgeRequest) -> JudgeVerdict:
        self._point_at_simulator()
        return await super().rate(request)
