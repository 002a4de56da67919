"""The terminal side of people's decisions: `laj label` (one decision, for scripts), `laj review --list` (the
queue as lines) and `laj labels` (the labels file against the last run; `--prune` drops what matches nothing).

Every line that shows text from a run (a node id, a reason, a note) goes through `printable`: an output under
test must not be able to paint a terminal or a CI log.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from pytest_laj.cli.project import Project, find_project
from pytest_laj.cli.queue import Item, build_queue, parse_include, record_decision, reviewer_name
from pytest_laj.core.labels import Label
from pytest_laj.core.printable import printable
from pytest_laj.errors import UsageError
from pytest_laj.results.record import AssessmentRecord, RunRecord
from pytest_laj.results.report import read_report
from pytest_laj.store.labels import LabelStore

__all__ = ["label_command", "labels_command", "load_labels", "load_report", "print_queue"]


def load_report(project: Project, given: Path | None) -> tuple[Path, RunRecord]:
    """The report named, else the last run's in the project's cache directory."""
    path = given or project.last_run
    if given is None and not path.is_file():
        raise UsageError(f"no report of the last run at {path}: run the suite first, or name a report")
    return path, read_report(path)


def load_labels(project: Project, given: Path | None) -> LabelStore:
    """The labels file, checked against the project's rubrics: a label naming what a rubric lacks is an error."""
    store = LabelStore.load(project.labels_file(given))
    store.check(project.rubric)
    return store


def _decided(label: Label) -> str:
    return "; ".join(
        f"{d.reviewer} on {d.decided_at[:10]}: " + ", ".join(f"{c}={lv}" for c, lv in sorted(d.levels.items()))
        for d in label.decisions
    )


def _item_line(item: Item) -> str:
    r = item.record
    case = f" [case {r.case_id}]" if r.case_id and r.case_id not in r.nodeid else ""
    criteria = ", ".join(item.at_issue) or "-"
    line = f"{item.assessment.outcome.value.upper():<6}  {r.nodeid}{case}  {criteria}  {item.why}"
    if item.label is not None:
        line += f"  [labelled, rerun to apply: {_decided(item.label)}]"
    for stale in item.stale:
        line += f"  [stale label for an earlier output: {_decided(stale)}]"
    return printable(line)


def print_queue(report: Path, run: RunRecord, store: LabelStore, include: str | None) -> int:
    """`laj review --list`: one line per item (outcome, node id, criteria at issue, why)."""
    items = build_queue(run, store, parse_include(include))
    for item in items:
        print(_item_line(item))
    print(f"{len(items)} to review in {report}" if items else f"nothing to review in {report}")
    return 0


def _criteria(pairs: Sequence[str]) -> dict[str, str]:
    levels: dict[str, str] = {}
    for pair in pairs:
        criterion, sep, level = pair.partition("=")
        if not sep or not criterion.strip() or not level.strip():
            raise UsageError(f"--criterion: expected CRITERION=LEVEL, got {pair!r}")
        if criterion.strip() in levels:
            raise UsageError(f"--criterion: {criterion.strip()!r} is given twice")
        levels[criterion.strip()] = level.strip()
    return levels


def _describe(index: int, record: AssessmentRecord) -> str:
    where = f", line {record.line}" if record.line else ""
    return f"--index {index}: rubric {record.assessment.rubric}, case {record.case_id or '-'}{where}"


def _pick(run: RunRecord, report: Path, nodeid: str, case: str | None, index: int | None) -> AssessmentRecord:
    """The one assessment `laj label` is about: by node id, then case id, then its place in the test."""
    found = [r for r in run.records if r.nodeid == nodeid]
    if not found:
        raise UsageError(f"no assessment of {nodeid!r} in {report}; `laj review --list` shows the queue")
    if case is not None:
        found = [r for r in found if r.case_id == case]
        if not found:
            raise UsageError(f"{nodeid!r} has no assessment of case {case!r} in {report}")
    if index is not None:
        if not 1 <= index <= len(found):
            raise UsageError(f"--index {index}: {nodeid!r} has {len(found)} assessment(s); choose 1 to {len(found)}")
        return found[index - 1]
    if len(found) > 1:
        listed = "; ".join(_describe(i, r) for i, r in enumerate(found, start=1))
        raise UsageError(f"{nodeid!r} has {len(found)} assessments in {report}; choose one: {listed}")
    return found[0]


def label_command(args: argparse.Namespace) -> int:
    """`laj label NODEID --criterion C=L ...`: record one reviewer's decision without the page."""
    project = find_project()
    report, run = load_report(project, args.report)
    record = _pick(run, report, args.nodeid, args.case, args.index)
    levels = _criteria(args.criterion)
    reviewer = reviewer_name(args.reviewer, cwd=project.rootdir)
    path = project.labels_file(args.labels)
    label = record_decision(project, path, record, reviewer, levels, args.note or "")
    decided = ", ".join(f"{c}={lv}" for c, lv in levels.items())
    print(printable(f"labelled {record.nodeid}: {decided} (by {reviewer}) in {path}; rerun the suite to apply it"))
    print(f"{len(label.decisions)} reviewer(s) decided this item")
    return 0


def labels_command(args: argparse.Namespace) -> int:
    """`laj labels`: every label and whether it matches an assessment of the report; `--prune` lists those that
    match nothing and, with `--yes`, removes them."""
    project = find_project()
    report, run = load_report(project, args.report)
    store = load_labels(project, args.labels)
    keys = {r.assessment.label_key for r in run.records}
    unmatched = [label for label in store.labels() if label.key not in keys]
    shown = unmatched if args.prune else store.labels()
    for label in shown:
        state = "matches nothing" if label.key not in keys else "matches"
        where = f"{label.nodeid or '-'}" + (f" [case {label.case_id}]" if label.case_id else "")
        print(printable(f"{state:<15}  {label.rubric}  {where}  {_decided(label)}"))
    if not args.prune:
        print(f"{len(store.labels())} label(s) in {store.path}, {len(unmatched)} matching nothing in {report}")
        return 0
    if not unmatched:
        print(f"every label in {store.path} matches an assessment in {report}")
        return 0
    if not args.yes:
        print(f"would remove {len(unmatched)} label(s) from {store.path}; add --yes to remove them")
        return 0
    if run.interrupted or run.stopped_early:
        raise UsageError(f"{report} is of a run that stopped early: rerun the whole suite before pruning")
    store.remove(label.key for label in unmatched)
    store.save()
    print(f"removed {len(unmatched)} label(s) from {store.path}")
    return 0
