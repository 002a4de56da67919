"""Words for people: one assessment explained, and the end-of-session summary with the suite's agreement.

Krippendorff's alpha is a suite-level figure (VERA-MH's IRR): per output it is meaningless, so per output we
show agreement shares and only the summary computes alpha, across every assessment the session made.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pytest_laj.verdict import Assessment, CriterionResult

__all__ = ["SuiteSummary", "explain_assessment", "suite_alpha"]


def _clip(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "\u2026"


def _criterion_lines(result: CriterionResult) -> list[str]:
    if not result.applicable:
        return [f"  {result.id}: not relevant in this context"]
    if result.consensus is None:
        return [f"  {result.id}: no valid vote"]
    mark = " [critical]" if result.critical else ""
    head = (
        f"  {result.id} (weight {result.weight:g}) -> {result.consensus_label}{mark}, "
        f"agreement {result.agreement:.0%}, adds {result.contribution:g}"
    )
    lines = [head]
    unanimous_best = result.agreement == 1.0 and result.severity == 0 and not result.critical
    if unanimous_best:
        return lines
    width = max(len(v.judge) for v in result.votes)
    for vote in result.votes:
        line = f"    {vote.judge:<{width}}  {vote.level}"
        if vote.rationale:
            line += f": {_clip(vote.rationale, 160)}"
        if vote.evidence:
            line += f' | evidence: "{_clip(vote.evidence, 120)}"'
        lines.append(line)
    return lines


def explain_assessment(assessment: Assessment) -> str:
    """The readable account a failing test shows: why, criterion by criterion, judge by judge."""
    a = assessment
    context = ", ".join(f"{k}={v}" for k, v in a.context.items()) or "none"
    lines = [
        f"{a.outcome.value.upper()} [{a.rubric} v{a.rubric_version}]: {a.reason}",
        f"score {a.score:g} (max_score {a.max_score:g}); context {context} (severity x{a.context_multiplier:g}); "
        f"{a.valid_judges}/{len(a.judges)} judges valid (quorum {a.quorum})",
    ]
    for result in a.criteria.values():
        lines.extend(_criterion_lines(result))
    states = []
    for judge in a.judges:
        if judge.verdict is None:
            states.append(f"{judge.judge} MISSING ({judge.error})")
        elif judge.cached:
            states.append(f"{judge.judge} (cached)")
        else:
            states.append(f"{judge.judge} ({judge.attempts} call{'s' if judge.attempts != 1 else ''})")
    lines.append("judges: " + "; ".join(states))
    lines.append(f'output: "{_clip(a.output, 300)}"')
    return "\n".join(lines)


@dataclass
class AlphaResult:
    value: float | None
    units: int
    why_undefined: str = ""

    def __str__(self) -> str:
        if self.value is None:
            return f"undefined ({self.why_undefined})"
        return f"{self.value:.2f} over {self.units} rated criteria"


class Memo(Protocol):
    """Where a figure computed from votes is kept for the next run on the same votes (the verdict cache)."""

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...


def suite_alpha(ratings: list[dict[str, int | None]], memo: Memo | None = None) -> AlphaResult:
    """Ordinal Krippendorff's alpha; each entry is one unit (an output's criterion): judge -> level rank.

    A rerun on cached verdicts has the same votes, so it reads the figure from `memo` instead of importing
    numpy and krippendorff (about 0.1 s) to compute it again."""
    units = [{j: r for j, r in unit.items() if r is not None} for unit in ratings]
    units = [u for u in units if len(u) >= 2]
    if not units:
        return AlphaResult(None, 0, "no criterion was rated by two or more judges")
    if len({r for u in units for r in u.values()}) < 2:
        return AlphaResult(None, len(units), "every vote was the same level, so there is no variance to compare")
    if memo is None:
        return _alpha(units)
    votes = json.dumps(sorted(sorted(u.items()) for u in units), separators=(",", ":"))  # xdist: any order
    key = "alpha:" + hashlib.sha256(votes.encode()).hexdigest()
    known = memo.get(key)
    if isinstance(known, list) and len(known) == 2 and isinstance(known[1], str):
        return AlphaResult(known[0], len(units), known[1])
    result = _alpha(units)
    memo.set(key, [result.value, result.why_undefined])
    return result


def _alpha(units: list[dict[str, int]]) -> AlphaResult:
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
        return AlphaResult(None, len(units), str(exc))
    if value != value:  # NaN
        return AlphaResult(None, len(units), "not computable from these votes")
    return AlphaResult(value, len(units))


@dataclass
class SuiteSummary:
    """Collected on the controller from every test report (also under xdist)."""

    outcomes: Counter[str] = field(default_factory=Counter)
    calls: int = 0
    cache_hits: int = 0
    cost_usd: float = 0.0
    budget_errors: int = 0
    unused_prefetches: tuple[int, int] = (0, 0)
    ratings: dict[str, list[dict[str, int | None]]] = field(default_factory=dict)
    reviews: list[tuple[str, list[str], str]] = field(default_factory=list)

    def add(self, nodeid: str, digests: list[dict[str, Any]], review_text: str | None = None) -> None:
        for digest in digests:
            self.outcomes[digest["outcome"]] += 1
            self.calls += int(digest.get("calls", 0))
            self.cache_hits += int(digest.get("cache_hits", 0))
            self.cost_usd += float(digest.get("cost_usd", 0.0))
            self.budget_errors += bool(digest.get("budget_exhausted")) and digest["outcome"] == "error"
            per_rubric = self.ratings.setdefault(digest["rubric"], [])
            per_rubric.extend(dict(unit) for unit in digest.get("ranks", {}).values())
            if digest["outcome"] == "review":
                explanation = review_text or digest.get("reason", "")
                self.reviews.append((nodeid, list(digest.get("review_criteria", [])), explanation))

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())

    def lines(self, review_blocks: bool, verbose: bool, memo: Memo | None = None) -> list[str]:
        if not self.total:
            return []
        order = ["pass", "fail", "review", "error"]
        counts = ", ".join(f"{self.outcomes[o]} {o}" for o in order if self.outcomes[o])
        lines = [
            f"{self.total} assessment{'s' if self.total != 1 else ''}: {counts}",
            f"judge calls: {self.calls} made, {self.cache_hits} from cache"
            + (f", ${self.cost_usd:.4f} spent where priced" if self.cost_usd else ""),
        ]
        unused, unused_calls = self.unused_prefetches
        if unused:
            lines.append(
                f"{unused} case(s) judged up front were not collected by their tests ({unused_calls} calls): "
                "a test judged something other than its case's output"
            )
        every = [unit for units in self.ratings.values() for unit in units]
        lines.append(f"judge agreement (Krippendorff's alpha, ordinal): {suite_alpha(every, memo)}")
        if len(self.ratings) > 1 or verbose:
            for rubric, units in sorted(self.ratings.items()):
                lines.append(f"  {rubric}: {suite_alpha(units, memo)}")
        if self.reviews:
            lines.append(f"needs review ({len(self.reviews)}): judges disagree on a critical judgment")
            for nodeid, criteria, explanation in self.reviews:
                lines.append(f"_ {nodeid}: {', '.join(criteria)}")
                lines.extend(f"    {line}" for line in explanation.splitlines())
            if review_blocks:
                lines.append(
                    "Reviews block the run: read each test's votes above, then fix the reply or the rubric. "
                    "Re-run with --laj-review warn to report them without failing."
                )
        if self.budget_errors:
            lines.append(
                f"the judge-call budget ran out: {self.budget_errors} assessment(s) are ERROR because judges were "
                "not called; raise --laj-max-calls / --laj-max-cost or select fewer tests."
            )
        if self.outcomes["error"]:
            lines.append(
                f"{self.outcomes['error']} assessment(s) had no quorum of valid judge verdicts; "
                "see each test's failure for which judges failed and why."
            )
        return lines
