"""Baselines in a pytest run: the report compared with is read at configure, in every process that needs it; a
known failure under `--laj-gate regressions` passes as KNOWN, the way pytest reports an xfail (the standard
`passed` outcome with its own category, letter and short-summary line, so JUnit XML and xdist keep working);
the controller compares, turns tripped `--laj-compare-fail` rules into the exit status, and saves the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_laj.core.modes import GateMode
from pytest_laj.engine.settings import Settings
from pytest_laj.plugin import outcome
from pytest_laj.plugin.options import WORKER_BASELINE

if TYPE_CHECKING:
    from pytest_laj.core.models import Outcome
    from pytest_laj.results.baseline import Key
    from pytest_laj.results.record import Comparison, RunRecord

__all__ = [
    "BASELINE",
    "Baseline",
    "compare_run",
    "configure_node",
    "load",
    "report_status",
    "save_run",
    "settle",
    "short_summary_lines",
]


@dataclass
class Baseline:
    """The report compared with, and its outcomes by key for telling known failures."""

    name: str
    record: RunRecord
    outcomes: dict[Key, Outcome]


BASELINE = pytest.StashKey[Baseline]()
GATE = pytest.StashKey[Baseline]()  # set only under --laj-gate regressions
_LAJ_FAILURES = (outcome.AssessmentFailed, outcome.AssessmentError, outcome.ReviewRequired)


def load(config: pytest.Config, settings: Settings) -> None:
    """Read the baseline before any test: the controller compares with it; an xdist worker needs it only to
    tell known failures, so it reads it only then."""
    gates = settings.gate is GateMode.REGRESSIONS
    if settings.compare is None or (hasattr(config, "workerinput") and not gates):
        return
    from pytest_laj.results.baseline import baseline_name, outcomes_by_key
    from pytest_laj.results.report import read_report

    record = read_report(settings.compare)
    name = baseline_name(settings.compare, settings.baseline_dir)
    config.stash[BASELINE] = baseline = Baseline(name=name, record=record, outcomes=outcomes_by_key(record))
    if gates:
        config.stash[GATE] = baseline


def configure_node(settings: Settings, workerinput: dict[str, Any]) -> None:
    """xdist controller: every worker compares with the report found here, even if a newer one is saved."""
    if settings.compare is not None:
        workerinput[WORKER_BASELINE] = str(settings.compare)


def settle(item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport) -> None:
    """Under `--laj-gate regressions`, a test failed by `laj.check` whose every blocking assessment the baseline
    already had at the same or a worse outcome passes as KNOWN; its records no longer block. A test failed by
    anything else (a plain assert) is never excused, nor one whose assessment is new or worse."""
    baseline = item.config.stash.get(GATE, None)
    if baseline is None or report.when != "call" or not report.failed or call.excinfo is None:
        return
    if not isinstance(call.excinfo.value, _LAJ_FAILURES):
        return
    from pytest_laj.results.baseline import is_known, keyed

    records = getattr(report, "laj_records", [])
    blocking = [(key, r) for key, r in keyed(records) if r.blocks]
    if not blocking or not all(is_known(r.outcome, baseline.outcomes.get(key)) for key, r in blocking):
        return
    report.outcome, report.longrepr = "passed", None
    if hasattr(report, "laj_review"):
        del report.laj_review
    report.laj_records = [r.model_copy(update={"blocks": False}) for r in records]  # type: ignore[attr-defined]
    known = ", ".join(
        f"{r.outcome.value.upper()} (baseline: {baseline.outcomes[key].value.upper()})" for key, r in blocking
    )
    report.laj_known = f"{known}, known in baseline {baseline.name}"  # type: ignore[attr-defined]


def report_status(report: pytest.TestReport) -> tuple[str, str, tuple[str, dict[str, Any]]] | None:
    if report.when == "call" and getattr(report, "laj_known", None):
        return "known", "K", ("KNOWN", {"yellow": True})
    return None


def short_summary_lines(reports: list[pytest.TestReport], reportchars: str) -> list[str]:
    """`KNOWN nodeid - why`, shown like failures (`f`, on by default) or expected failures (`x`)."""
    if "f" not in reportchars and "x" not in reportchars:
        return []
    return [f"KNOWN {r.nodeid} - {getattr(r, 'laj_known', '')}" for r in reports]


def compare_run(
    config: pytest.Config, settings: Settings, run: RunRecord, session: pytest.Session
) -> Comparison | None:
    """The controller's comparison with the baseline, before any report is written; a tripped
    `--laj-compare-fail` rule fails a run that would otherwise pass."""
    baseline = config.stash.get(BASELINE, None)
    if baseline is None:
        return None
    from pytest_laj.results.baseline import compare, failed_rules, parse_rules

    comparison = compare(run, baseline.record, baseline.name)
    if settings.compare_fail is not None:
        comparison.failed_rules = failed_rules(comparison, parse_rules(settings.compare_fail))
    if comparison.failed_rules and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    return comparison


def save_run(settings: Settings, run: RunRecord) -> tuple[list[Path], list[str]]:
    """`--laj-save NAME`: the run's report as a baseline, or why not. A run that ended early is not saved: every
    test it missed would show as gone, and none of its known failures would be excused."""
    if settings.save is None:
        return [], []
    if run.interrupted or run.stopped_early:
        return [], [f"baseline {settings.save} not saved: the run ended early (an interrupt, -x or --maxfail)"]
    from pytest_laj.results.baseline import save

    try:
        return [save(run, settings.baseline_dir, settings.save)], []
    except OSError as error:
        return [], [f"baseline {settings.save} in {settings.baseline_dir}: {error.strerror or error}"]
