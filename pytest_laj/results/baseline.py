"""Baselines, after pytest-benchmark: a run's JSON report saved under a name, found again, compared with this run
assessment by assessment; small `--laj-compare-fail` rules decide which changes fail the run.

How bad an outcome is, for every comparison here: PASS < REVIEW < FAIL < ERROR. A REVIEW is better than a FAIL
(the panel did not agree that the output fails); an ERROR is the worst, because nothing was decided: a test that
can no longer be judged got worse, and a known FAIL never excuses a new ERROR (fail closed).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import TypeAdapter, ValidationError

from pytest_laj.core.models import Outcome
from pytest_laj.errors import UsageError
from pytest_laj.results.record import AssessmentRecord, Change, Comparison, JudgeInfo, RunRecord
from pytest_laj.results.report import write_report

__all__ = [
    "LATEST",
    "SEVERITY",
    "BaselineError",
    "Key",
    "Rule",
    "baseline_name",
    "check_name",
    "compare",
    "failed_rules",
    "is_known",
    "keyed",
    "outcomes_by_key",
    "parse_rules",
    "resolve",
    "save",
]

SEVERITY = {Outcome.PASS: 0, Outcome.REVIEW: 1, Outcome.FAIL: 2, Outcome.ERROR: 3}
"""How bad an outcome is: a change to a higher number is a regression, to a lower one a fix."""

LATEST = "latest"
"""`--laj-compare` with no value: the saved baseline whose run started last."""

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,99}")
_RULE = re.compile(r"(?P<kind>outcome)|(?P<measure>score|agreement):(?P<limit>[0-9]+(?:\.[0-9]+)?|\.[0-9]+)")
RULE_SYNTAX = (
    "comma-separated rules: 'outcome' (any worse outcome), 'score:D' (a score up by more than D), "
    "'agreement:D' (agreement down by more than D), D a number >= 0; e.g. 'outcome,score:1.5'"
)
_CHANGED = 1e-9  # scores and agreements are sums of floats: a difference below this is the same figure
_SHOWN = 5  # tests named per tripped rule; the comparison lists them all


class BaselineError(UsageError):
    """A baseline that cannot be saved, found or read, or a `--laj-compare-fail` rule that cannot be parsed."""


# -- saving and finding ------------------------------------------------------------------------------------------


def check_name(name: str) -> str:
    """A baseline's name is a file name in the baseline directory: no path separators, no `.json`."""
    if not _NAME.fullmatch(name) or name.endswith(".json") or name == LATEST:
        raise BaselineError(
            f"laj_save: {name!r} is not a baseline name; expected letters, digits and '_.+-' (no '/', at most "
            f"100 characters, not ending in '.json', not {LATEST!r}), e.g. 'main' or 'pr-123'"
        )
    return name


def save(run: RunRecord, directory: Path, name: str) -> Path:
    """Store the run's report as baseline `name`, whole or not at all; the record carries its commit and date."""
    path = directory / f"{check_name(name)}.json"
    write_report(run, path)
    return path


def _saved(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.json")) if directory.is_dir() else []


def _listing(directory: Path) -> str:
    names = [p.stem for p in _saved(directory)]
    return f"saved baselines in {directory}: {', '.join(names)}" if names else f"no baseline is saved in {directory}"


_STARTED = TypeAdapter(datetime)


def _started_at(path: Path) -> datetime:
    """When the run saved at `path` started, read without validating the whole record."""
    try:
        started = json.loads(path.read_text(encoding="utf-8"))["started_at"]
        return _STARTED.validate_python(started)
    except (OSError, ValueError, KeyError, TypeError, ValidationError) as error:
        raise BaselineError(
            f"{path}: not a pytest-laj baseline ({type(error).__name__}); remove it or save it again"
        ) from None


def resolve(spec: str, directory: Path, base: Path) -> Path:
    """The report `--laj-compare` names: `latest` (the newest saved baseline, by when its run started), a saved
    NAME (no '/' and no '.json'), or a PATH to any JSON report, relative to `base`."""
    if spec == LATEST:
        saved = _saved(directory)
        if not saved:
            raise BaselineError(f"laj_compare: {_listing(directory)}; save one with --laj-save NAME")
        return max(saved, key=_started_at)
    if "/" not in spec and "\\" not in spec and not spec.endswith(".json"):
        path = directory / f"{spec}.json"
        if not path.is_file():
            raise BaselineError(f"laj_compare: no baseline named {spec!r}; {_listing(directory)}")
        return path
    path = base / spec
    if path.is_dir():  # `--laj-compare tests/`: the option took the test path for its optional value
        raise BaselineError(
            f"laj_compare: {path} is a directory, not a report; write --laj-compare=NAME, or --laj-compare after "
            "the test paths for the newest baseline"
        )
    if not path.is_file():
        raise BaselineError(f"laj_compare: report not found: {path}")
    return path


def baseline_name(path: Path, directory: Path) -> str:
    """A saved baseline by its name, any other report by its path."""
    return path.stem if path.parent.resolve() == directory.resolve() else str(path)


# -- comparing ---------------------------------------------------------------------------------------------------

Key = tuple[str, str | None, int]
"""An assessment's place in a run: node id, case id, and its position among the test's assessments of that case."""


def keyed(records: Iterable[AssessmentRecord]) -> Iterator[tuple[Key, AssessmentRecord]]:
    """Each record with its key. A test that makes several assessments is matched in the order it made them:
    the first with the first, and so on (a test that reorders its checks matches them wrongly; a different
    rubric then shows in the comparison's approximations)."""
    seen: Counter[tuple[str, str | None]] = Counter()
    for record in records:
        test = (record.nodeid, record.case_id)
        yield (*test, seen[test]), record
        seen[test] += 1


def outcomes_by_key(run: RunRecord) -> dict[Key, Outcome]:
    return {key: record.outcome for key, record in keyed(run.records)}


def is_known(outcome: Outcome, before: Outcome | None) -> bool:
    """A known failure: the baseline had this assessment at the same or a worse outcome."""
    return before is not None and SEVERITY[before] >= SEVERITY[outcome]


def _change(kind: str, key: Key, before: AssessmentRecord | None, after: AssessmentRecord | None) -> Change:
    def decided(record: AssessmentRecord | None) -> bool:
        return record is not None and record.outcome is not Outcome.ERROR  # an ERROR's score means nothing

    return Change(
        nodeid=key[0],
        case_id=key[1],
        kind=kind,
        before=before.outcome if before else None,
        after=after.outcome if after else None,
        score_before=before.assessment.score if before and decided(before) else None,
        score_after=after.assessment.score if after and decided(after) else None,
        agreement_before=before.assessment.lowest_agreement if before and decided(before) else None,
        agreement_after=after.assessment.lowest_agreement if after and decided(after) else None,
        output_changed=bool(before and after and before.output_sha256 != after.output_sha256),
    )


def _moved(before: float | None, after: float | None) -> bool:
    return before is not None and after is not None and abs(after - before) > _CHANGED


def compare(run: RunRecord, baseline: RunRecord, name: str) -> Comparison:
    """This run against `baseline`: every matched assessment whose outcome, score or agreement changed, every
    assessment new here or gone, and why the match may be approximate."""
    before = dict(keyed(baseline.records))
    after = dict(keyed(run.records))
    comparison = Comparison(
        baseline=name,
        baseline_commit=baseline.git.commit if baseline.git else None,
        baseline_started_at=baseline.started_at,
        approximate=_approximations(run, baseline, [(before[k], a) for k, a in after.items() if k in before]),
    )
    for key, now in after.items():
        then = before.get(key)
        if then is None:
            comparison.new.append(_change("new", key, None, now))
            continue
        step = SEVERITY[now.outcome] - SEVERITY[then.outcome]
        if step:
            (comparison.regressions if step > 0 else comparison.fixes).append(
                _change("regression" if step > 0 else "fix", key, then, now)
            )
        score = _change("score", key, then, now)
        if _moved(score.score_before, score.score_after):
            comparison.score_changes.append(score)
        agreement = _change("agreement", key, then, now)
        if _moved(agreement.agreement_before, agreement.agreement_after):
            comparison.agreement_changes.append(agreement)
    comparison.gone = [_change("gone", key, then, None) for key, then in before.items() if key not in after]
    return comparison


def _judge_changes(before: list[JudgeInfo], after: list[JudgeInfo]) -> list[str]:
    old = {j.name: j for j in before}
    new = {j.name: j for j in after}
    changes = [f"judge {name} removed" for name in old if name not in new]
    changes += [f"judge {name} added" for name in new if name not in old]
    for name in old.keys() & new.keys():
        fields = [
            f for f in ("model", "weight", "temperature", "options") if getattr(old[name], f) != getattr(new[name], f)
        ]
        changes += [f"judge {name}: {', '.join(fields)} changed"] if fields else []
    return sorted(changes)


def _approximations(
    run: RunRecord, baseline: RunRecord, pairs: list[tuple[AssessmentRecord, AssessmentRecord]]
) -> list[str]:
    """Why the same test may have been judged differently for reasons other than its output."""
    reasons = []
    old = {r.id: r for r in baseline.rubrics}
    for rubric in run.rubrics:
        was = old.get(rubric.id)
        if was is None:
            continue
        if was.version != rubric.version:
            reasons.append(f"rubric {rubric.id} changed: version {was.version} -> {rubric.version}")
        elif was.fingerprint != rubric.fingerprint:
            reasons.append(f"rubric {rubric.id} changed: its content, under the same version {rubric.version}")
    panel = _judge_changes(baseline.panel, run.panel)
    if panel:
        reasons.append(f"the panel changed: {'; '.join(panel)}")
    crossed = sum(1 for then, now in pairs if then.assessment.rubric != now.assessment.rubric)
    if crossed:
        reasons.append(f"{crossed} assessment(s) matched by position were judged against another rubric")
    if baseline.interrupted or baseline.stopped_early:
        reasons.append("the baseline run ended early: what it did not run shows as new")
    return reasons


# -- --laj-compare-fail ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One `--laj-compare-fail` rule: which changes against the baseline fail the run."""

    kind: Literal["outcome", "score", "agreement"]
    limit: float = 0.0

    def __str__(self) -> str:
        return self.kind if self.kind == "outcome" else f"{self.kind}:{self.limit:g}"

    def tripped_by(self, comparison: Comparison) -> list[Change]:
        if self.kind == "outcome":
            return comparison.regressions
        if self.kind == "score":
            return [c for c in comparison.score_changes if (c.score_after or 0) - (c.score_before or 0) > self.limit]
        return [
            c for c in comparison.agreement_changes if (c.agreement_before or 0) - (c.agreement_after or 0) > self.limit
        ]


def parse_rules(text: str) -> tuple[Rule, ...]:
    """`outcome`, `score:D`, `agreement:D`, comma-separated; anything else is a usage error that says the syntax."""
    rules = []
    for item in text.split(","):
        match = _RULE.fullmatch(item.strip())
        if match is None:
            raise BaselineError(f"laj_compare_fail: {item.strip()!r} is not a rule; expected {RULE_SYNTAX}")
        if match["kind"]:
            rules.append(Rule("outcome"))
        else:
            rules.append(Rule("score" if match["measure"] == "score" else "agreement", float(match["limit"])))
    return tuple(rules)


def _describe(change: Change) -> str:
    if change.kind == "score":
        return f"{change.nodeid} (score {change.score_before:g} -> {change.score_after:g})"
    if change.kind == "agreement":
        return f"{change.nodeid} (agreement {change.agreement_before:.0%} -> {change.agreement_after:.0%})"
    return f"{change.nodeid} ({change.before} -> {change.after})"


def failed_rules(comparison: Comparison, rules: Iterable[Rule]) -> list[str]:
    """Each rule the comparison trips, with the tests that trip it: `rule: test (what changed), ...`."""
    failed = []
    for rule in rules:
        hits = rule.tripped_by(comparison)
        if hits:
            more = f", and {len(hits) - _SHOWN} more" if len(hits) > _SHOWN else ""
            failed.append(f"{rule}: {', '.join(_describe(c) for c in hits[:_SHOWN])}{more}")
    return failed
