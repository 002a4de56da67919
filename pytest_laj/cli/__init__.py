"""The `laj` command: what you do with a run's report after the run, without pytest.

`laj schema` prints the JSON Schema of the report; `laj report` renders a report as the HTML dashboard, and
`laj report merge` joins the reports of a suite's shards (CI machines) into one report; `laj review`
serves the run's review queue to a person, `laj label` records one decision from a script, `laj labels` checks the
labels file against the last run, and `laj calibrate` measures the judges against people's labels. Each subcommand
is a function taking the parsed arguments and returning the exit status; a `UsageError` (a file that is not a
report, a bad argument) is one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_laj.cli import calibrate
from pytest_laj.errors import UsageError

if TYPE_CHECKING:
    from pytest_laj.results.record import RunRecord

__all__ = ["main"]

Command = Callable[[argparse.Namespace], int]


def _schema(args: argparse.Namespace) -> int:
    from pytest_laj.results.report import report_schema

    print(json.dumps(report_schema(), indent=1, sort_keys=True))
    return 0


def _report(args: argparse.Namespace) -> int:
    from pytest_laj.render.html import render_html
    from pytest_laj.results.report import read_report, write_text

    if args.report[0] == Path("merge"):
        return _merge(args.report[1:], args.output)
    if len(args.report) > 1:
        raise UsageError("give one report to render, or: laj report merge A.json B.json... -o ALL.json")
    source: Path = args.report[0]
    target: Path = args.output or source.with_suffix(".html")
    run = read_report(source)
    try:
        write_text(target, render_html(run))
    except OSError as error:
        raise UsageError(f"{target}: cannot write the dashboard ({error.strerror or error})") from None
    print(f"wrote {target}")
    if args.summary is not None:
        _append_summary(args.summary, run, target.name)
    return 0


def _append_summary(path: Path, run: RunRecord, html: str) -> None:
    """The job summary a pytest run writes in CI, from a report: for the job that merged its shards' reports."""
    from pytest_laj.render.github import job_summary

    try:
        with path.open("a", encoding="utf-8") as summary:
            summary.write(job_summary(run, html) + "\n")
    except OSError as error:
        raise UsageError(f"{path}: cannot append the job summary ({error.strerror or error})") from None
    print(f"appended the job summary to {path}")


def _merge(sources: list[Path], target: Path | None) -> int:
    """The shards' reports as one, written whole or not at all."""
    from pytest_laj.results.report import merge_reports, write_report

    if target is None:
        raise UsageError("laj report merge A.json B.json... -o ALL.json: say where to write the merged report")
    merged = merge_reports(sources)
    try:
        write_report(merged, target)
    except OSError as error:
        raise UsageError(f"{target}: cannot write the merged report ({error.strerror or error})") from None
    print(f"wrote {target}: {len(merged.records)} assessments from {len(sources)} reports")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="laj", description="Work with pytest-laj run reports.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    schema = commands.add_parser("schema", help="print the JSON Schema of the run report")
    schema.set_defaults(run=_schema)
    report = commands.add_parser(
        "report",
        help="render a JSON run report (e.g. <cache dir>/last-run.json) as a self-contained HTML dashboard; "
        "'laj report merge A.json B.json -o ALL.json' merges shards' reports into one",
    )
    report.add_argument(
        "report",
        type=Path,
        nargs="+",
        metavar="REPORT.json | merge A.json B.json...",
        help="a report written by --laj-report; or 'merge' and the shards' reports",
    )
    report.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="PATH",
        help="where to write the dashboard (default: REPORT with .html), or the merged report (required)",
    )
    report.add_argument(
        "--summary",
        type=Path,
        metavar="PATH",
        help='also append the run\'s Markdown job summary to PATH (in GitHub Actions: "$GITHUB_STEP_SUMMARY")',
    )
    report.set_defaults(run=_report)
    _review_parsers(commands)
    calibrate.add_parser(commands)
    return parser


def _review(args: argparse.Namespace) -> int:
    from pytest_laj.cli.review import review_command

    return review_command(args)


def _label(args: argparse.Namespace) -> int:
    from pytest_laj.cli.labels import label_command

    return label_command(args)


def _labels(args: argparse.Namespace) -> int:
    from pytest_laj.cli.labels import labels_command

    return labels_command(args)


_LABELS_HELP = "the labels file (default: laj_labels of the project's ini file, else laj-labels.yaml at its rootdir)"
_REPORT_HELP = "a report written by --laj-report (default: <rootdir>/<laj_cache_dir>/last-run.json)"
_REVIEWER_HELP = "who decides (default: $LAJ_REVIEWER, else git config user.name)"


def _review_parsers(commands: Any) -> None:
    """`laj review`, `laj label` and `laj labels`: people's decisions, kept in the labels file."""
    review = commands.add_parser(
        "review", help="review the last run's REVIEW items in a local page (or list them with --list)"
    )
    review.add_argument("report", type=Path, nargs="?", metavar="REPORT.json", help=_REPORT_HELP)
    review.add_argument("--labels", type=Path, metavar="PATH", help=_LABELS_HELP)
    review.add_argument("--reviewer", metavar="NAME", help=_REVIEWER_HELP)
    review.add_argument("--include", metavar="fail,error", help="also queue FAIL and/or ERROR, after the REVIEWs")
    review.add_argument("--no-browser", action="store_true", help="print the page's address, open no browser")
    review.add_argument("--port", type=int, default=0, help="the port on 127.0.0.1 (default 0: a free one)")
    review.add_argument("--list", action="store_true", help="print the queue, one line per item, and exit")
    review.set_defaults(run=_review)

    label = commands.add_parser("label", help="record a reviewer's levels for one assessment of the last run")
    label.add_argument("nodeid", metavar="NODEID", help="the test's node id, as in the report")
    label.add_argument(
        "--criterion", action="append", required=True, metavar="CRITERION=LEVEL", help="a level (repeatable)"
    )
    label.add_argument("--case", metavar="ID", help="the case id, where the test made several assessments")
    label.add_argument("--index", type=int, metavar="N", help="the Nth assessment of the test (from 1)")
    label.add_argument("--reviewer", metavar="NAME", help=_REVIEWER_HELP)
    label.add_argument("--note", default="", help="why, for whoever reads the labels file")
    label.add_argument("--report", type=Path, metavar="PATH", help=_REPORT_HELP)
    label.add_argument("--labels", type=Path, metavar="PATH", help=_LABELS_HELP)
    label.set_defaults(run=_label)

    labels = commands.add_parser("labels", help="list the labels file against the last run; --prune the unmatched")
    labels.add_argument("--prune", action="store_true", help="list labels that match no assessment of the report")
    labels.add_argument("--yes", action="store_true", help="with --prune: remove them")
    labels.add_argument("--report", type=Path, metavar="PATH", help=_REPORT_HELP)
    labels.add_argument("--labels", type=Path, metavar="PATH", help=_LABELS_HELP)
    labels.set_defaults(run=_labels)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command: Command = args.run
    try:
        return command(args)
    except UsageError as error:
        print(f"laj {args.command}: {error}", file=sys.stderr)
        return 2
