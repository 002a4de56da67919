"""`cases(path)`: a case file as pytest parameters, one test per case named by its id."""

from __future__ import annotations

from pathlib import Path

import pytest
from _pytest.mark.structures import ParameterSet

from pytest_laj.core.case import load_cases

__all__ = ["cases"]


def cases(path: str | Path) -> list[ParameterSet]:
    """`@pytest.mark.parametrize("case", cases(path))`: one test per case, named by the case id."""
    return [pytest.param(case, id=case.id) for case in load_cases(path)]
