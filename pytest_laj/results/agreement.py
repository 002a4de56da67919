"""Agreement among judges as Krippendorff's alpha (VERA-MH's IRR), over many rated units.

Per output alpha is meaningless (one unit), so it is computed only over a suite, a rubric or a criterion.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from pytest_laj.core.models import Assessment
from pytest_laj.results.record import AlphaFigure
from pytest_laj.store.keys import alpha_key

__all__ = ["Memo", "load_alpha", "rated_units", "suite_alpha"]


class Memo(Protocol):
    """Where a figure computed from votes is kept for the next run on the same votes (the verdict cache)."""

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...


def rated_units(assessments: Iterable[Assessment]) -> dict[str, list[dict[str, int | None]]]:
    """Each criterion's rated units, in one pass: one per assessment the criterion applied to, judge -> the rank
    of the level it voted. A criterion that never applied has none."""
    units: dict[str, list[dict[str, int | None]]] = {}
    for assessment in assessments:
        for criterion in assessment.criteria.values():
            of_criterion = units.setdefault(criterion.id, [])
            if criterion.applicable:
                of_criterion.append({vote.judge: vote.rank for vote in criterion.votes})
    return units


def suite_alpha(ratings: list[dict[str, int | None]], memo: Memo | None = None) -> AlphaFigure:
    """Ordinal Krippendorff's alpha; each entry is one unit (an output's criterion): judge -> level rank.

    A rerun on cached verdicts has the same votes, so it reads the figure from `memo` instead of importing
    numpy and krippendorff (about 0.1 s) to compute it again."""
    units = [{j: r for j, r in unit.items() if r is not None} for unit in ratings]
    units = [u for u in units if len(u) >= 2]
    if not units:
        return AlphaFigure(value=None, units=0, why_undefined="no criterion was rated by two or more judges")
    if len({r for u in units for r in u.values()}) < 2:
        return AlphaFigure(
            value=None,
            units=len(units),
            why_undefined="every vote was the same level, so there is no variance to compare",
        )
    if memo is None:
        return _alpha(units)
    key = alpha_key(units)
    known = memo.get(key)
    if isinstance(known, list) and len(known) == 2 and isinstance(known[1], str):
        return AlphaFigure(value=known[0], units=len(units), why_undefined=known[1])
    result = _alpha(units)
    memo.set(key, [result.value, result.why_undefined])
    return result


def load_alpha() -> None:
    """Import what computing alpha needs, and compute one: numpy loads parts of itself on first use."""
    _alpha([{"a": 0, "b": 1}, {"a": 1, "b": 1}])


def _alpha(units: list[dict[str, int]]) -> AlphaFigure:
    import krippendorff
    import numpy as np

    judges = sorted({j for u in units for j in u})
    matrix = np.full((len(judges), len(units)), np.nan)
    for col, unit in enumerate(units):
        for judge, rank in unit.items():
            matrix[judges.index(judge), col] = rank
    try:
        value = float(krippendorff.alpha(reliability_data=matrix, level_of_measurement="ordinal"))
    except (ValueError, ZeroDivisionError) as exc:
        return AlphaFigure(value=None, units=len(units), why_undefined=str(exc))
    if value != value:  # NaN
        return AlphaFigure(value=None, units=len(units), why_undefined="not computable from these votes")
    return AlphaFigure(value=value, units=len(units))
