"""The `laj` command: what you do with a run's report after the run, without pytest.

`laj schema` prints the JSON Schema of the report; `laj report` renders a report as the HTML dashboard. Each
subcommand is a function taking the parsed arguments and returning the exit status; a `UsageError` (a file that
is not a report, a bad argument) is one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pytest_laj.errors import UsageError

__all__ = ["main"]

Command = Callable[[argparse.Namespace], int]


def _schema(args: argparse.Namespace) -> int:
    from pytest_laj.results.report import report_schema

    print(json.dumps(report_schema(), indent=1, sort_keys=True))
    return 0


def _report(args: argparse.Namespace) -> int:
    from pytest_laj.render.html import render_html
    from pytest_laj.results.report import read_report, write_text

    source: Path = args.report
    target: Path = args.output or source.with_suffix(".html")
    page = render_html(read_report(source))
    try:
        write_text(target, page)
    except OSError as error:
        raise UsageError(f"{target}: cannot write the dashboard ({error.strerror or error})") from None
    print(f"wrote {target}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="laj", description="Work with pytest-laj run reports.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    schema = commands.add_parser("schema", help="print the JSON Schema of the run report")
    schema.set_defaults(run=_schema)
    report = commands.add_parser(
        "report", help="render a JSON run report (e.g. <cache dir>/last-run.json) as a self-contained HTML dashboard"
    )
    report.add_argument("report", type=Path, metavar="REPORT.json", help="a report written by --laj-report")
    report.add_argument(
        "-o", "--output", type=Path, metavar="PATH", help="where to write the dashboard (default: REPORT with .html)"
    )
    report.set_defaults(run=_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command: Command = args.run
    try:
        return command(args)
    except UsageError as error:
        print(f"laj {args.command}: {error}", file=sys.stderr)
        return 2
