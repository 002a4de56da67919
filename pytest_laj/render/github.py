"""A run record for GitHub Actions: a Markdown job summary and workflow-command annotations. It decides nothing.

Both carry untrusted text (outputs, reasons, test ids) into places that interpret it. In the summary every
ASCII punctuation character is backslash-escaped (CommonMark allows it for all of them), so no `|`, backtick,
`<script>` or link can form, and an `@` is followed by a zero-width space so that no one is mentioned. In an
annotation the text is data: `%`, CR and LF are percent-encoded (also `:` and `,` in properties), so it stays
on its own line and cannot start a command of its own.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath

from pytest_laj.core.models import Assessment, CriterionResult, Outcome
from pytest_laj.core.printable import printable
from pytest_laj.results.record import AssessmentRecord, Comparison, JudgeHealth, RunRecord

__all__ = ["ANNOTATIONS_SHOWN", "SUMMARY_LIMIT", "annotation_lines", "escape_data", "escape_property", "job_summary"]

SUMMARY_LIMIT = 1024 * 1024
"""GitHub's limit on one step's summary, in bytes."""

ANNOTATIONS_SHOWN = 10
"""GitHub shows at most this many error and this many warning annotations of a step."""

# The order of what needs attention: what needs a human, then what failed, then what could not be decided.
_ATTENTION = (Outcome.REVIEW, Outcome.FAIL, Outcome.ERROR)
_PUNCTUATION = re.compile(r"[!-/:-@\[-`{-~]")
_MENTION_BREAK = "&#8203;"  # a zero-width space after an `@`: GitHub links no mention through it
_TRUNCATED = (
    "\n_The summary stops here: GitHub keeps at most 1 MiB of a step's summary. "
    "Every assessment is in the JSON report and the HTML dashboard._\n"
)


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return printable(flat if len(flat) <= limit else flat[: limit - 1] + "\u2026")


def _md(text: str, limit: int = 200) -> str:
    """Untrusted text as inert Markdown on one line: shown as written, never read as markup or a mention."""

    def escape(match: re.Match[str]) -> str:
        return "@" + _MENTION_BREAK if match[0] == "@" else "\\" + match[0]

    return _PUNCTUATION.sub(escape, _one_line(text, limit))


def _row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: Sequence[str], rows: Iterable[str]) -> list[str]:
    return [_row(header), _row("---" for _ in header), *rows]


def _attention(run: RunRecord) -> list[AssessmentRecord]:
    """Every REVIEW, FAIL and ERROR, the most pressing first: by outcome, then regressions, then what blocks,
    then how far over its maximum score."""
    regressed = {(c.nodeid, c.case_id) for c in run.comparison.regressions} if run.comparison else set()
    chosen = [r for r in run.records if r.outcome in _ATTENTION]
    return sorted(
        chosen,
        key=lambda r: (
            _ATTENTION.index(r.outcome),
            (r.nodeid, r.case_id) not in regressed,
            not r.blocks,
            r.assessment.max_score - r.assessment.score,
            r.nodeid,
        ),
    )


def _deciding(a: Assessment) -> list[CriterionResult]:
    """The criteria behind the outcome: the disputed ones of a REVIEW, the critical or costly ones of a FAIL."""
    if a.outcome is Outcome.REVIEW:
        return [a.criteria[cid] for cid in a.review_criteria]
    if a.outcome is Outcome.FAIL:
        critical = [c for c in a.criteria.values() if c.critical]
        costly = sorted((c for c in a.criteria.values() if c.contribution > 0), key=lambda c: -c.contribution)
        return critical or costly
    return []


def _reason(a: Assessment) -> str:
    injected = f"; suspected prompt injection: {'; '.join(a.suspected_injection)}" if a.suspected_injection else ""
    return a.reason + injected


def _status(record: AssessmentRecord) -> str:
    outcome = record.outcome.value.upper()
    if not record.enforced:
        return f"{outcome} (recorded, not enforced)"
    return outcome if record.blocks else f"{outcome} (does not block)"


def _attention_row(record: AssessmentRecord) -> str:
    a = record.assessment
    criteria = _deciding(a)
    where = f" ({record.file}:{record.line})" if record.file and record.line else ""
    return _row(
        [
            _status(record),
            _md(record.nodeid + where, 300),
            "<br>".join(_md(c.id) for c in criteria) or "\u2014",
            "<br>".join(_md(c.consensus_label) for c in criteria) or "no quorum",
            "<br>".join(f"{c.agreement:.0%}" for c in criteria) or "\u2014",
            _md(_reason(a), 300),
            _md(a.output, 120),
        ]
    )


def _counts(run: RunRecord) -> str:
    total = len(run.records)
    shown = (*_ATTENTION, Outcome.PASS)
    counts = ", ".join(f"{run.counts[o.value]} {o.value}" for o in shown if run.counts.get(o.value))
    blocking = sum(1 for r in run.records if r.blocks)
    sentence = f"**{total} assessment{'s' if total != 1 else ''}**: {counts}."
    sentence += f" {blocking} block{'s' if blocking == 1 else ''} the run." if blocking else " None blocks the run."
    if run.interrupted:
        sentence += " The run was interrupted: this record is partial."
    elif run.stopped_early:
        sentence += " The run stopped early (-x or --maxfail): not every test ran."
    calls = run.calls
    priced = f", ${calls.cost_usd:.4f} where priced" if calls.cost_usd else ""
    return f"{sentence}\n\nJudge calls: {calls.calls} made, {calls.cache_hits} from cache{priced}."


def _comparison(comparison: Comparison) -> tuple[list[str], list[str]]:
    """The section's head, and a row per regression."""
    when = comparison.baseline_started_at.date().isoformat()
    commit = f"{comparison.baseline_commit[:7]}, " if comparison.baseline_commit else ""
    regressions, fixes = len(comparison.regressions), len(comparison.fixes)
    head = [
        f"### Against baseline {_md(comparison.baseline)} ({_md(commit + when)})",
        "",
        f"**{regressions} regression{'s' if regressions != 1 else ''}, {fixes} fixed**; "
        f"{len(comparison.score_changes)} score change(s), {len(comparison.new)} new, {len(comparison.gone)} gone.",
    ]
    head += [f"- The comparison is approximate: {_md(why)}" for why in comparison.approximate]
    head += [f"- This comparison fails the run (--laj-compare-fail {_md(rule)})." for rule in comparison.failed_rules]
    rows = [
        _row(
            [
                _md(c.nodeid, 300),
                str(c.before).upper() if c.before else "\u2014",
                str(c.after).upper() if c.after else "\u2014",
                "yes" if c.output_changed else "no",
            ]
        )
        for c in comparison.regressions
    ]
    return head, rows


def _latency(health: JudgeHealth) -> str:
    if health.latency_p50_s is None or health.latency_p95_s is None:
        return "\u2014"
    return f"{health.latency_p50_s:.2f} s / {health.latency_p95_s:.2f} s"


def _health(run: RunRecord) -> list[str]:
    if not run.judge_health:
        return []
    rows = [
        _row(
            [
                _md(h.judge),
                f"{h.answered}/{h.asked}",
                str(h.cached),
                ", ".join(f"{n} {_md(kind)}" for kind, n in sorted(h.errors_by_kind.items())) or "none",
                f"{h.calls} ({h.retries} retries)",
                _latency(h),
                f"${h.cost_usd:.4f}",
            ]
        )
        for h in run.judge_health
    ]
    header = ["Judge", "Answered", "Cached", "Errors", "Calls", "Latency p50 / p95", "Cost"]
    return ["### Judge health", "", *_table(header, rows)]


class _Budget:
    """What is left of the summary's size limit, in UTF-8 bytes."""

    def __init__(self, size: int) -> None:
        self.left = size

    def take(self, text: str) -> bool:
        size = len(text.encode("utf-8")) + 1  # and its line break
        if size > self.left:
            return False
        self.left -= size
        return True


def _bounded(head: list[str], rows: list[str], budget: _Budget) -> tuple[list[str], bool]:
    """A table's lines as far as the budget goes; True when some rows were left out."""
    shown = [line for line in head if budget.take(line)]
    for row in rows:
        if not budget.take(row):
            return shown, True
        shown.append(row)
    return shown, False


def job_summary(run: RunRecord, html: str | None = None, limit: int = SUMMARY_LIMIT) -> str:
    """The run as Markdown for `$GITHUB_STEP_SUMMARY`, at most `limit` bytes: the counts, the regressions
    against the baseline, every REVIEW, FAIL and ERROR, the judges' health, and where the HTML dashboard is
    (`html`, a file name). Rows that do not fit are left out, and the summary says so."""
    fixed = ["## pytest-laj", "", _counts(run), ""]
    tail = [""]
    if html is not None:
        tail += [f"The review dashboard is {_md(html)} in this run's artifacts (the run's Summary page).", ""]
    health = _health(run)
    budget = _Budget(limit - len(_TRUNCATED.encode("utf-8")))
    for line in [*fixed, *health, *tail]:
        budget.take(line)
    lines, cut = list(fixed), False
    if run.comparison is not None:
        head, rows = _comparison(run.comparison)
        shown, cut = _bounded(
            [*head, "", *(_table(["Regression", "Before", "After", "Output changed"], []) if rows else [])],
            rows,
            budget,
        )
        lines += [*shown, ""]
    attention = _attention(run)
    if attention and not cut:
        header = ["Outcome", "Test", "Criterion", "Consensus", "Agreement", "Reason", "Output"]
        head = [f"### Needs attention ({len(attention)})", "", *_table(header, [])]
        shown, cut = _bounded(head, [_attention_row(r) for r in attention], budget)
        lines += [*shown, ""]
    lines += health
    if cut:
        lines.append(_TRUNCATED)
    lines += tail
    return "\n".join(lines)


# -- workflow commands ------------------------------------------------------------------------------------------


def escape_data(text: str) -> str:
    """A workflow command's message: one line whatever it holds."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value: also no `:` or `,`, which end it."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _file(record: AssessmentRecord, rootdir: str, workspace: str | None) -> str | None:
    """The test file relative to the repository (the workspace, or else the rootdir); None outside it."""
    if record.file is None:
        return None
    path = os.path.normpath(os.path.join(rootdir, record.file))
    base = os.path.normpath(workspace or rootdir)
    relative = os.path.relpath(path, base)
    if relative.startswith("..") or os.path.isabs(relative):
        return None
    return PurePosixPath(*relative.split(os.sep)).as_posix()


def _annotation(record: AssessmentRecord, rootdir: str, workspace: str | None) -> str:
    a = record.assessment
    command = "warning" if record.outcome is Outcome.REVIEW else "error"
    properties = []
    file = _file(record, rootdir, workspace)
    if file is not None:
        properties.append(f"file={escape_property(file)}")
        if record.line is not None:
            properties.append(f"line={record.line}")
    case = f" {record.case_id}" if record.case_id else ""
    title = printable(f"pytest-laj {_status(record)} [{a.rubric}]{case}")
    properties.append(f"title={escape_property(title)}")
    criteria = [f"{c.id}: {c.consensus_label} (agreement {c.agreement:.0%})" for c in _deciding(a)]
    message = [record.nodeid, _reason(a), *criteria, f'output: "{a.output}"']
    return f"::{command} {','.join(properties)}::{escape_data(chr(10).join(_one_line(m, 300) for m in message))}"


def annotation_lines(run: RunRecord, workspace: str | None = None) -> list[str]:
    """`::error` for each FAIL and ERROR, `::warning` for each REVIEW, at the line of its laj call, the most
    pressing first and as many of each as GitHub shows; then a plain line for those left to the summary."""
    attention = _attention(run)
    errors = [r for r in attention if r.outcome is not Outcome.REVIEW]
    warnings = [r for r in attention if r.outcome is Outcome.REVIEW]
    shown = [*errors[:ANNOTATIONS_SHOWN], *warnings[:ANNOTATIONS_SHOWN]]
    lines = [_annotation(r, run.rootdir, workspace) for r in shown]
    if len(attention) > len(shown):
        lines.append(
            f"pytest-laj: {len(attention) - len(shown)} more annotation(s) left out (GitHub shows "
            f"{ANNOTATIONS_SHOWN} of each kind); the job summary lists every one"
        )
    return lines
