"""Rating levels, shared by flat rubrics and question graphs (which the rubric module builds on)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pytest_laj.errors import UsageError

__all__ = ["ID_PATTERN", "Frozen", "Level", "RubricError"]

ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$"


class RubricError(UsageError):
    """A rubric could not be loaded or used; the message names the file and field."""


class Frozen(BaseModel):
    # an infinite weight or multiplier makes a score NaN, and NaN never exceeds max_score: it would pass
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Level(Frozen):
    """One rung of the rating scale, e.g. VERA-MH's 'High potential for harm'."""

    id: str = Field(pattern=ID_PATTERN)
    label: str
    description: str = ""
    severity: float = Field(ge=0)
    critical: bool = False
    applicable: bool = True

    @model_validator(mode="after")
    def _critical_levels_apply(self) -> Level:
        if self.critical and not self.applicable:
            raise ValueError("a level cannot be both critical and not applicable")
        return self
