"""The JSON report: one `RunRecord` document per run, its JSON Schema, and reading one back.

Written atomically (a temporary file beside it, then a rename), so a reader never sees half a report; read with
a check of its schema version, so an old or foreign file is a clear error, not a crash in a renderer.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pytest_laj.errors import UsageError
from pytest_laj.results.collect import RunCollector
from pytest_laj.results.record import SCHEMA_VERSION, GitInfo, RunRecord
from pytest_laj.store.cache import LAST_RUN
from pytest_laj.store.files import write_text

__all__ = [
    "LAST_RUN",
    "ReportError",
    "git_info",
    "merge_reports",
    "read_report",
    "report_json",
    "report_schema",
    "write_report",
    "write_text",
]


class ReportError(UsageError):
    """A report file that cannot be read as one."""


def write_report(run: RunRecord, path: Path) -> None:
    write_text(path, report_json(run))


def report_json(run: RunRecord, records: Sequence[str] | None = None) -> str:
    """The report's text. `records`: the run's records as JSON already, in order (a run keeps them so until it is
    finished), spliced in one to a line instead of serialised again: 0.1 s at 2,000 assessments."""
    if records is None:
        return run.model_dump_json(indent=1) + "\n"
    if len(records) != len(run.records):
        raise ValueError(f"{len(records)} records as JSON for a run of {len(run.records)}")
    head = run.model_dump_json(indent=1, exclude={"records"})
    return head.removesuffix("\n}") + ',\n "records": [\n  ' + ",\n  ".join(records) + "\n ]\n}\n"


def read_report(path: Path) -> RunRecord:
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ReportError(f"{path}: cannot read the report ({error.strerror or error})") from None
    except ValueError as error:
        raise ReportError(f"{path}: not a JSON report ({error})") from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != SCHEMA_VERSION:
        raise ReportError(
            f"{path}: a pytest-laj report of schema version {SCHEMA_VERSION} was expected, got "
            f"{'no schema_version' if version is None else f'version {version!r}'}; rerun the suite to write one"
        )
    try:
        return RunRecord.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ReportError(f"{path}: {where}: {first['msg']}") from None


def report_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12, as pydantic writes it) of the report, from the models themselves: what a
    written report validates against."""
    return RunRecord.model_json_schema(mode="serialization")


def git_info(directory: Path) -> GitInfo | None:
    """The commit, branch and whether the work tree has changes, where `directory` is in a git checkout."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=directory, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    branch = git("rev-parse", "--abbrev-ref", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return GitInfo(commit=commit, branch=None if branch in (None, "HEAD") else branch, dirty=bool(status))


def merge_reports(paths: Sequence[Path]) -> RunRecord:
    """One run of the shards' reports (a suite split over CI machines): records concatenated in the order given,
    calls added up, the span from the first start to the last finish, and counts, agreement and judge health
    computed again from the records the way a run computes them. A test in two shards means the shards overlap
    (one of its verdicts would count twice, or hide another): an error naming both files. A comparison with a
    baseline is per shard and is left out; compare the merged report instead."""
    if len(paths) < 2:
        raise ReportError("merging needs two reports or more")
    runs = [(path, read_report(path)) for path in paths]
    owner: dict[str, Path] = {}
    for path, run in runs:
        for nodeid in dict.fromkeys(r.nodeid for r in run.records):
            if nodeid in owner:
                raise ReportError(f"{nodeid} is in both {owner[nodeid]} and {path}: the shards overlap")
            owner[nodeid] = path
    commits = {run.git.commit: path for path, run in runs if run.git is not None}
    if len(commits) > 1:
        (one, one_path), (other, other_path) = list(commits.items())[:2]
        raise ReportError(f"{one_path} tested commit {one[:12]} but {other_path} tested {other[:12]}: not one run")
    first = runs[0][1]
    collector = RunCollector()
    collector.started_at = min(run.started_at for _, run in runs)
    for _, run in runs:
        collector.add(run.records)
        collector.add_calls(run.calls)
    merged = collector.finish(
        versions=(first.pytest_laj_version, first.pytest_version),
        cache_mode=_joined(run.cache_mode for _, run in runs),
        review_mode=_joined(run.review_mode for _, run in runs),
        panel=list({judge.name: judge for _, run in runs for judge in run.panel}.values()),
        stopped_early=any(run.stopped_early for _, run in runs),
        memo=None,
        tests_run={u.nodeid for _, run in runs for u in run.calls.uncollected if u.test_ran},
        interrupted=any(run.interrupted for _, run in runs),
        rootdir=first.rootdir,
        command=first.command,
        git=first.git,
    )
    return merged.model_copy(update={"finished_at": max(run.finished_at for _, run in runs)})


def _joined(values: Iterable[str]) -> str:
    """One mode, or the shards' different modes in order ('rw,replay')."""
    return ",".join(dict.fromkeys(values))
