"""pytest-laj: LLM-as-judge safety regression testing for pytest.

Public API: rubrics (`Rubric`, `Criterion`, `Level`, `load_rubric`), judges (`Judge`, `JudgeSpec`), results
(`Assessment`, `Outcome`, `JudgeVerdict`, `CriterionVerdict`), case files (`cases`, `load_cases`, `Case`) and
the `Laj` fixture type. Names are imported on first use: pytest loads this package for every run, and a run
that judges nothing should not pay for pydantic models (nor ever for litellm, which only a judge call imports).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_laj.case import Case, cases, load_cases
    from pytest_laj.fixture import Laj
    from pytest_laj.judge import Judge, JudgeSpec
    from pytest_laj.produce import Producer
    from pytest_laj.prompt import JudgeRequest
    from pytest_laj.rubric import ContextVariable, Criterion, Level, Rubric, RubricError, Thresholds, load_rubric
    from pytest_laj.verdict import Assessment, CriterionResult, CriterionVerdict, JudgeResult, JudgeVerdict, Outcome

__all__ = [
    "Assessment",
    "Case",
    "ContextVariable",
    "Criterion",
    "CriterionResult",
    "CriterionVerdict",
    "Judge",
    "JudgeRequest",
    "JudgeResult",
    "JudgeSpec",
    "JudgeVerdict",
    "Laj",
    "Level",
    "Outcome",
    "Producer",
    "Rubric",
    "RubricError",
    "Thresholds",
    "cases",
    "load_cases",
    "load_rubric",
]

# Where each public name lives.
_HOME_OF = {
    "Case": "pytest_laj.case",
    "cases": "pytest_laj.case",
    "load_cases": "pytest_laj.case",
    "Laj": "pytest_laj.fixture",
    "Judge": "pytest_laj.judge",
    "JudgeSpec": "pytest_laj.judge",
    "Producer": "pytest_laj.produce",
    "JudgeRequest": "pytest_laj.prompt",
    "ContextVariable": "pytest_laj.rubric",
    "Criterion": "pytest_laj.rubric",
    "Level": "pytest_laj.rubric",
    "Rubric": "pytest_laj.rubric",
    "RubricError": "pytest_laj.rubric",
    "Thresholds": "pytest_laj.rubric",
    "load_rubric": "pytest_laj.rubric",
    "Assessment": "pytest_laj.verdict",
    "CriterionResult": "pytest_laj.verdict",
    "CriterionVerdict": "pytest_laj.verdict",
    "JudgeResult": "pytest_laj.verdict",
    "JudgeVerdict": "pytest_laj.verdict",
    "Outcome": "pytest_laj.verdict",
}

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_laj' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
