"""The pytest-laj section of the terminal summary: a run record in sentences. It decides nothing.

Counts first, then the judges' work and agreement, then what needs a human and why, then the remedy. It
shrinks with `-q` (no explanations) and `-qq` (counts, and how many reviews block).
"""

from __future__ import annotations

from collections import Counter

from pytest_laj.core import gate
from pytest_laj.core.models import Outcome
from pytest_laj.core.modes import ReviewMode
from pytest_laj.core.printable import printable
from pytest_laj.results.record import AssessmentRecord, CallStats, Change, Comparison, RunRecord

__all__ = ["summary_lines"]

_ORDER = ("pass", "fail", "review", "error")


def _counts(run: RunRecord) -> str:
    total = len(run.records)
    counts = ", ".join(f"{run.counts[o]} {o}" for o in _ORDER if run.counts.get(o))
    return f"{total} assessment{'s' if total != 1 else ''}: {counts}"


def _critical_dispute(record: AssessmentRecord) -> bool:
    a = record.assessment
    return any(v.critical for cid in a.review_criteria for v in a.criteria[cid].votes)


def _review_causes(reviews: list[AssessmentRecord]) -> str:
    disagree = sum(1 for r in reviews if _critical_dispute(r))
    missing = sum(1 for r in reviews if r.assessment.review_criteria and not _critical_dispute(r))
    injected = sum(1 for r in reviews if r.assessment.suspected_injection)
    causes = []
    if disagree:
        causes.append(f"{disagree} where judges disagree on a critical judgment")
    if missing:
        causes.append(f"{missing} where too few judges agree because some are missing")
    if injected:
        causes.append(f"{injected} with suspected prompt injection")
    return ", ".join(causes)


def _review_lines(record: AssessmentRecord, review: ReviewMode, explain: bool) -> list[str]:
    a = record.assessment
    what = [*a.review_criteria, *(["suspected prompt injection"] if a.suspected_injection else [])]
    status = ""
    if not record.enforced:
        status = " (not enforced: laj.assess records it without failing the test)"
    elif not record.blocks and gate.blocks(a, record.enforced, review):
        status = " (not blocking: a known failure, the baseline had it too; --laj-gate regressions)"
    elif not record.blocks:
        status = f" (not blocking under --laj-review warn; provisional {a.provisional})"
    lines = [printable(f"_ {record.nodeid}: {', '.join(what)}{status}")]
    if explain:
        lines.extend(f"    {line}" for line in a.explain().splitlines())
    return lines


def _prefetch_lines(run: RunRecord) -> list[str]:
    lines = []
    not_run = [u for u in run.calls.uncollected if not u.test_ran]
    ignored = [u for u in run.calls.uncollected if u.test_ran]
    if ignored:
        lines.append(
            f"{len(ignored)} case(s) judged up front were not collected by their tests: a test judged something "
            "other than its case's output"
        )
    if not_run and run.stopped_early:
        cancelled = (
            f"; {run.calls.prefetch_cancelled} still being judged were cancelled"
            if run.calls.prefetch_cancelled
            else ""
        )
        lines.append(
            f"the run stopped early: {len(not_run)} case(s) judged up front were not run{cancelled}; "
            "what finished is cached for the next run"
        )
    elif not_run:
        lines.append(f"{len(not_run)} case(s) judged up front were not run")
    return lines


def _missing_lines(run: RunRecord) -> list[str]:
    """Assessments decided without some judges: the run's reliability rests on fewer of them than configured."""
    decided = [r for r in run.records if r.assessment.missing_judges and r.outcome is not Outcome.ERROR]
    if not decided:
        return []
    by_judge = Counter(name for r in decided for name in r.assessment.missing_judges)
    names = ", ".join(f"{name} in {count}" for name, count in by_judge.most_common())
    return [
        printable(
            f"{len(decided)} assessment(s) decided with judges missing ({names}); a missing judge counts against "
            "agreement, and each test's reason says why it was missing"
        )
    ]


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _comparison_sentence(c: Comparison) -> str:
    """'3 regressions, 2 fixed against baseline main (abc1234, 2026-11-30)', then what else changed."""
    when = ", ".join(
        [*([c.baseline_commit[:7]] if c.baseline_commit else []), c.baseline_started_at.date().isoformat()]
    )
    more = [
        *([f"{len(c.new)} new"] if c.new else []),
        *([f"{len(c.gone)} gone"] if c.gone else []),
        *([_plural(len(c.score_changes), "score change")] if c.score_changes else []),
        *([_plural(len(c.agreement_changes), "agreement change")] if c.agreement_changes else []),
    ]
    sentence = (
        f"{_plural(len(c.regressions), 'regression')}, {len(c.fixes)} fixed against baseline {c.baseline} ({when})"
    )
    return printable(sentence + (f"; {', '.join(more)}" if more else ""))


def _change_line(change: Change) -> str:
    outcomes = f"{change.before} -> {change.after}" if change.before and change.after else change.kind
    output = " (output changed)" if change.output_changed else ""
    return printable(f"  {change.kind} {change.nodeid}: {outcomes}{output}")


def _comparison_lines(c: Comparison, verbosity: int) -> list[str]:
    """The sentence, each regression (with -v every fix and every test new or gone), why the match may be
    approximate, and the `--laj-compare-fail` rules the changes trip, with the remedy."""
    lines = [_comparison_sentence(c)]
    if verbosity > -2:
        lines += [_change_line(change) for change in c.regressions]
        lines += [_change_line(change) for change in (*c.fixes, *c.new, *c.gone)] if verbosity > 0 else []
        lines += [printable(f"the comparison is approximate: {'; '.join(c.approximate)}")] if c.approximate else []
    if c.failed_rules:
        lines.append("the run fails on these changes (--laj-compare-fail):")
        lines += [printable(f"  {rule}") for rule in c.failed_rules]
    if c.failed_rules and verbosity > -2:
        lines.append(
            "fix what got worse or, once the change is intended, save this run as the baseline (--laj-save NAME)"
        )
    return lines


def _settled_lines(run: RunRecord) -> list[str]:
    """Assessments where people's labels replaced the panel's consensus on some criteria."""
    settled = [r for r in run.records if r.assessment.settled_by_human]
    if not settled:
        return []
    reviewers = sorted(
        {name for r in settled for c in r.assessment.criteria.values() if c.human for name in c.human.reviewers}
    )
    return [
        printable(
            f"{len(settled)} assessment(s) settled by people's labels (by {', '.join(reviewers)}); "
            "their decided criteria take the reviewers' levels"
        )
    ]


def summary_lines(run: RunRecord, verbosity: int = 0) -> list[str]:
    """The section's lines; empty when the run assessed nothing."""
    if not run.records:
        return []
    reviews = [r for r in run.records if r.outcome is Outcome.REVIEW]
    blocking = [r for r in reviews if r.blocks]
    if verbosity <= -2:
        lines = [_counts(run)]
        if blocking:
            lines.append(f"{len(blocking)} need review and block the run")
        return lines + (_comparison_lines(run.comparison, verbosity) if run.comparison else [])
    calls = run.calls
    lines = [
        _counts(run),
        *(_comparison_lines(run.comparison, verbosity) if run.comparison else []),
        f"judge calls: {calls.calls} made, {calls.cache_hits} from cache"
        + (f", ${calls.cost_usd:.4f} spent where priced" if calls.cost_usd else "")
        + _limit_wait(calls),
        *_prefetch_lines(run),
        *_missing_lines(run),
        *_settled_lines(run),
    ]
    if run.alpha is not None:
        lines.append(f"judge agreement (Krippendorff's alpha, ordinal): {run.alpha}")
        if len(run.alpha_by_rubric) > 1 or verbosity > 0:
            lines.extend(f"  {rubric}: {alpha}" for rubric, alpha in run.alpha_by_rubric.items())
    lines.extend(f"VERA-MH score, pooled ({rubric}): {figure}" for rubric, figure in run.vera_by_rubric.items())
    if reviews:
        lines.append(f"needs review ({len(reviews)}): {_review_causes(reviews)}")
        for record in reviews:
            lines.extend(_review_lines(record, ReviewMode(run.review_mode), explain=verbosity >= 0))
        if blocking:
            lines.append(
                f"{len(blocking)} review(s) block the run: read each test's votes above, then fix the reply or the "
                "rubric. Re-run with --laj-review warn to report them without failing (a REVIEW whose consensus "
                "alone would fail still fails)."
            )
    budget = sum(
        1 for r in run.records if r.outcome is Outcome.ERROR and any(j.budget_exhausted for j in r.assessment.judges)
    )
    if budget:
        lines.append(
            f"the judge-call budget ran out: {budget} assessment(s) are ERROR because judges were "
            "not called; raise --laj-max-calls / --laj-max-cost or select fewer tests."
        )
    if run.counts.get("error"):
        lines.append(
            f"{run.counts['error']} assessment(s) had no quorum of valid judge verdicts; "
            "see each test's failure for which judges failed and why."
        )
    return lines


def _limit_wait(calls: CallStats) -> str:
    """`; waited 12.3 s on rate limits (strict 12.3 s)`: the time judges' rpm/tpm and Retry-After pauses cost."""
    if not calls.limit_wait_s:
        return ""
    each = ", ".join(f"{judge} {seconds:.1f} s" for judge, seconds in sorted(calls.limit_wait_s.items()))
    return f"; waited {calls.limit_wait_total:.1f} s on rate limits ({each})"
