"""The judge simulator: scripted LLM judges behind an OpenAI-compatible HTTP endpoint on 127.0.0.1.

It lets the plugin's tests and demo run offline while litellm still talks real HTTP
(model "openai/<judge>", api_base = `Simulator.base_url`). It imports neither pytest nor litellm.
"""

from __future__ import annotations

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
