"""The `laj` command: what you do with a run's report after the run, without pytest.

`laj schema` prints the JSON Schema of the report. Each subcommand is a function taking the parsed arguments and
returning the exit status; a `UsageError` (a file that is not a report, a bad argument) is one line on stderr
and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from pytest_laj.errors import UsageError

__all__ = ["main"]

Command = Callable[[argparse.Namespace], int]


def _schema(args: argparse.Namespace) -> int:
    from pytest_laj.results.report import report_schema

    print(json.dumps(report_schema(), indent=1, sort_keys=True))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="laj", description="Work with pytest-laj run reports.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    schema = commands.add_parser("schema", help="print the JSON Schema of the run report")
    schema.set_defaults(run=_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command: Command = args.run
    try:
        return command(args)
    except UsageError as error:
        print(f"laj {args.command}: {error}", file=sys.stderr)
        return 2
