"""The judge simulator: scripted LLM judges behind an OpenAI-compatible HTTP endpoint on 127.0.0.1.

It lets the plugin's tests and demo run offline while litellm still talks real HTTP
(model "openai/<judge>", api_base = `Simulator.base_url`). It imports neither pytest nor litellm, and its HTTP
server only when `Simulator` is first used: a cached run reads the rules but never serves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .rules import (
    Fault,
    JudgedCase,
    JudgeScript,
    Rating,
    Rule,
    SimulatorRules,
    SimulatorRulesError,
    VerdictFault,
    load_rules,
)

if TYPE_CHECKING:
    from .server import Simulator

__all__ = [
    "Fault",
    "JudgeScript",
    "JudgedCase",
    "Rating",
    "Rule",
    "Simulator",
    "SimulatorRules",
    "SimulatorRulesError",
    "VerdictFault",
    "load_rules",
]


def __getattr__(name: str) -> Any:
    if name == "Simulator":
        from .server import Simulator

        return Simulator
    raise AttributeError(f"module 'pytest_laj.simulator' has no attribute {name!r}")
