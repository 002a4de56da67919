"""What an assessment does to its test and to the run, decided once; every channel reads the answer.

A FAIL or ERROR from `laj.check` fails its test. A REVIEW from `laj.check` blocks the run while reviews block
(`laj_review = fail`); under `warn` it blocks only when the panel's consensus alone would fail, so `warn` never
turns the panel's own FAIL into a pass. `laj.assess` records without enforcing: nothing it returns blocks.
"""

from __future__ import annotations

from pytest_laj.core.models import Assessment, Outcome
from pytest_laj.core.modes import ReviewMode

__all__ = ["blocks"]


def blocks(assessment: Assessment, enforced: bool, review: ReviewMode) -> bool:
    """Whether this assessment fails its test and so the run."""
    if not enforced:
        return False
    if assessment.outcome is Outcome.REVIEW:
        return review is ReviewMode.FAIL or assessment.provisional is Outcome.FAIL
    return assessment.outcome in (Outcome.FAIL, Outcome.ERROR)
