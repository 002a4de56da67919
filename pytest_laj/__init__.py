"""pytest-laj: LLM-as-judge safety regression testing for pytest.

Public API: rubrics (`Rubric`, `Criterion`, `Level`, `load_rubric`), judges (`Judge`, `JudgeSpec`), results
(`Assessment`, `Outcome`, `JudgeVerdict`, `CriterionVerdict`), case files (`cases`, `load_cases`, `Case`) and
the `Laj` fixture type. Importing this package does not import litellm.
"""

from pytest_laj.cases import Case, cases, load_cases
from pytest_laj.fixture import Laj
from pytest_laj.judge import Judge, JudgeSpec
from pytest_laj.produce import Producer
from pytest_laj.prompt import JudgeRequest
from pytest_laj.rubric import ContextVariable, Criterion, Level, Rubric, RubricError, Thresholds, load_rubric
from pytest_laj.verdict import (
    Assessment,
    CriterionResult,
    CriterionVerdict,
    JudgeResult,
    JudgeVerdict,
    Outcome,
)

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

__version__ = "0.1.0"
