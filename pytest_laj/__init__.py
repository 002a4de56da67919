"""pytest-laj: LLM-as-judge safety regression testing for pytest.

Public API: rubrics (`Rubric`, `Criterion`, `Level`, `load_rubric`), judges (`Judge`, `JudgeSpec`), results
(`Assessment`, `Outcome`, `JudgeVerdict`, `CriterionVerdict`), case files (`cases`, `load_cases`, `Case`),
conversations (`Conversation`, `Message`, `load_transcript`), the
`Laj` fixture type, and a run's report (`RunRecord`, `AssessmentRecord`, `read_report`). Names are imported on
first use: pytest loads this package for every run, and a run that judges nothing should not pay for pydantic
models (nor ever for litellm, which only a judge call imports).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_laj.core.case import Case, load_cases
    from pytest_laj.core.conversation import Conversation, Message, load_transcript
    from pytest_laj.core.models import Assessment, CriterionResult, CriterionVerdict, JudgeResult, JudgeVerdict, Outcome
    from pytest_laj.core.rubric import ContextVariable, Criterion, Level, Rubric, RubricError, Thresholds, load_rubric
    from pytest_laj.engine.produce import Producer
    from pytest_laj.errors import LajError, UsageError
    from pytest_laj.judges.base import Judge, JudgeSpec
    from pytest_laj.judges.protocol import JudgeRequest
    from pytest_laj.plugin.cases import cases
    from pytest_laj.plugin.fixture import Laj
    from pytest_laj.results.record import AssessmentRecord, RunRecord
    from pytest_laj.results.report import read_report

__all__ = [
    "Assessment",
    "AssessmentRecord",
    "Case",
    "ContextVariable",
    "Conversation",
    "Criterion",
    "CriterionResult",
    "CriterionVerdict",
    "Judge",
    "JudgeRequest",
    "JudgeResult",
    "JudgeSpec",
    "JudgeVerdict",
    "Laj",
    "LajError",
    "Level",
    "Message",
    "Outcome",
    "Producer",
    "Rubric",
    "RubricError",
    "RunRecord",
    "Thresholds",
    "UsageError",
    "cases",
    "load_cases",
    "load_rubric",
    "load_transcript",
    "read_report",
]

# Where each public name lives.
_HOME_OF = {
    "Case": "pytest_laj.core.case",
    "Conversation": "pytest_laj.core.conversation",
    "Message": "pytest_laj.core.conversation",
    "load_transcript": "pytest_laj.core.conversation",
    "cases": "pytest_laj.plugin.cases",
    "load_cases": "pytest_laj.core.case",
    "Laj": "pytest_laj.plugin.fixture",
    "Judge": "pytest_laj.judges.base",
    "JudgeSpec": "pytest_laj.judges.base",
    "Producer": "pytest_laj.engine.produce",
    "JudgeRequest": "pytest_laj.judges.protocol",
    "ContextVariable": "pytest_laj.core.rubric",
    "Criterion": "pytest_laj.core.rubric",
    "Level": "pytest_laj.core.rubric",
    "Rubric": "pytest_laj.core.rubric",
    "RubricError": "pytest_laj.core.rubric",
    "Thresholds": "pytest_laj.core.rubric",
    "load_rubric": "pytest_laj.core.rubric",
    "Assessment": "pytest_laj.core.models",
    "CriterionResult": "pytest_laj.core.models",
    "CriterionVerdict": "pytest_laj.core.models",
    "JudgeResult": "pytest_laj.core.models",
    "JudgeVerdict": "pytest_laj.core.models",
    "Outcome": "pytest_laj.core.models",
    "LajError": "pytest_laj.errors",
    "UsageError": "pytest_laj.errors",
    "AssessmentRecord": "pytest_laj.results.record",
    "RunRecord": "pytest_laj.results.record",
    "read_report": "pytest_laj.results.report",
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
