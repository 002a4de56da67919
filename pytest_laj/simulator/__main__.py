"""`python -m pytest_laj.simulator --rules RULES.yaml`: serve the scripted judges until SIGINT or SIGTERM.

The base URL is the first stdout line, so a script or another process can start it and read where it is.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from .rules import SimulatorRulesError, load_rules
from .server import Simulator

EXIT_BAD_RULES = 2
EXIT_CANNOT_BIND = 1


def _parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_laj.simulator",
        description="Serve scripted LLM judges on an OpenAI-compatible /v1/chat/completions endpoint.",
    )
    parser.add_argument("--rules", required=True, help="YAML rules file with the judges to play")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default: 0, any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--verbose", action="store_true", help="log every request on stderr")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator until a signal arrives; returns the process exit code."""
    arguments = _parse_arguments(argv)
    try:
        rules = load_rules(arguments.rules)
    except SimulatorRulesError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_RULES
    simulator = Simulator(rules, host=arguments.host, port=arguments.port, verbose=arguments.verbose)
    try:
        base_url = simulator.start()
    except OSError as exc:
        print(f"cannot listen on {arguments.host}:{arguments.port}: {exc}", file=sys.stderr)
        return EXIT_CANNOT_BIND
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    print(base_url, flush=True)
    try:
        stop_requested.wait()
    finally:
        simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
