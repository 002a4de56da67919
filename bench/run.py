"""`python bench/run.py`: how fast pytest-laj judges a whole suite, and what being a plugin costs (issue 4).

It writes a throwaway suite (bench/suites.py), runs every scenario as its own `python -m pytest` process with a
time limit, and prints a Markdown table headed with the date and the machine:

1. cold: N cases x K judges on a fresh cache, the plugin's default (suite-level prefetch), against the ideal
   ceil(N*K/C)*L for concurrency C and latency L;
2. test by test: the same suite with `--laj-prefetch off`;
3. warm: (1) again on its full cache, against the same tests with the judge work removed (`-p no:laj`);
4. startup: `pytest --collect-only -q` on an empty directory with the plugin and with `-p no:laj`;
5. peak RSS of the cold run;
6. DeepEval doing the same work, in its own virtual environment at bench/.venv-deepeval (created once);
7. xdist: cold serial beside cold `-n 2`, `-n 3` and `-n 4` (medians of interleaved rounds), then warm serial
   and `-n 2` (`--only xdist` runs these rows alone);
S. scale (`--only scale`, meant for `--cases 2000`): rows 1, 1b and 3 at that size with their targets, the
   time to write the JSON report and the HTML dashboard of the cold run, and the memory the run's records
   take on the controller, per assessment;
R. the verdict store in a local redis-server (`laj_cache_url`), cold and warm, against the diskcache warm rerun
   (`--only redis` runs this part alone).

bench/README.md says what each row means.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO

from suites import CRITERIA, SuitePaths, write_suites

BENCH_DIR = Path(__file__).resolve().parent
DEEPEVAL_VENV = BENCH_DIR / ".venv-deepeval"
DEEPEVAL_VERSION = "4.3.1"
DEEPEVAL_INSTALL_TIMEOUT_S = 900.0
STARTUP_TIMEOUT_S = 60.0
SIMULATOR_START_TIMEOUT_S = 30.0

PARTS = {
    "xdist": "run_xdist",
    "redis": "redis_store",
    "scale": "run_scale",
}  # --only NAME: the Benchmark method that runs that part
_JUDGE_CALLS = re.compile(r"judge calls: (\d+) made, (\d+) from cache")
_PYTEST_TOTALS = re.compile(r"^=*\s*(\d+ [a-z]+.*?) in [\d.]+s")
_UNRECOGNISED = re.compile(r"unrecognized arguments: .*--laj-prefetch")


# --- running one measured process ------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One finished (or killed) process: wall and CPU time, peak RSS and what it printed."""

    wall_s: float
    cpu_s: float
    max_rss_mib: float
    exit_code: int | None  # None when it was killed at its time limit
    output: str
    time_limit_s: float

    @property
    def timed_out(self) -> bool:
        return self.exit_code is None

    def judge_calls(self) -> tuple[int, int] | None:
        """(made, from cache) from the plugin's summary line, when it printed one."""
        found = _JUDGE_CALLS.findall(self.output)
        return (int(found[-1][0]), int(found[-1][1])) if found else None

    def totals(self) -> str:
        """pytest's closing counts, e.g. '200 passed'."""
        for line in reversed(self.output.splitlines()):
            found = _PYTEST_TOTALS.match(line.strip())
            if found:
                return found.group(1)
        return ""

    def tail(self, lines: int = 3) -> str:
        kept = [line.strip() for line in self.output.strip().splitlines() if line.strip()]
        return " / ".join(kept[-lines:])


def run_measured(command: Sequence[str], *, cwd: Path, env: Mapping[str, str], time_limit_s: float) -> Run:
    """Run `command`, killing its process group at the time limit; rusage is this child's alone (wait4)."""
    with tempfile.TemporaryFile() as captured:
        began = time.perf_counter()
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=captured,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        lock = threading.Lock()
        state = {"reaped": False, "killed": False}

        def kill() -> None:
            with lock:
                if state["reaped"]:
                    return
                state["killed"] = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)

        timer = threading.Timer(time_limit_s, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            kill()
            os.wait4(process.pid, 0)
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - began
        with lock:
            state["reaped"] = True
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
        captured.seek(0)
        output = captured.read().decode("utf-8", errors="replace")
    return Run(
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        max_rss_mib=usage.ru_maxrss / 1024,  # KiB on Linux
        exit_code=None if state["killed"] else process.returncode,
        output=output,
        time_limit_s=time_limit_s,
    )


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without pytest's and pytest-laj's variables, so nothing outside changes a scenario.

    PYTHONDONTWRITEBYTECODE goes too: with it every process would compile pytest-laj (an editable install) and
    the generated tests from source, a cost no ordinary install pays after its first run.
    """
    dropped = ("LAJ_", "PYTEST_", "PYTHONDONTWRITEBYTECODE")
    kept = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    return {**kept, **(extra or {})}


def pytest_command(*arguments: str, python: str = sys.executable) -> list[str]:
    return [python, "-m", "pytest", *arguments]


# --- the table -------------------------------------------------------------------------------------------


@dataclass
class Row:
    number: str
    scenario: str
    wall: str = ""
    reference: str = ""
    ratio: str = ""
    requests: str = ""
    cpu: str = ""
    rss: str = ""
    notes: str = ""

    def cells(self) -> list[str]:
        return [
            self.number,
            self.scenario,
            self.wall,
            self.reference,
            self.ratio,
            self.requests,
            self.cpu,
            self.rss,
            self.notes,
        ]


HEADINGS = ["#", "scenario", "wall", "reference", "ratio", "judge requests", "CPU", "peak RSS", "notes"]


_XDIST_WORKERS = (2, 3, 4)  # on the 2-CPU machine: as many workers as cores, then more


def _workers(count: int) -> tuple[str, ...]:
    return ("-n", str(count)) if count > 1 else ()


def seconds(value: float) -> str:
    return f"{value:.2f} s"


def times(value: float) -> str:
    return f"{value:.2f}x"


def mib(value: float) -> str:
    return f"{value:.0f} MiB"


def markdown_table(rows: Sequence[Row]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |"

    out = [line(HEADINGS), line(["---"] * len(HEADINGS))]
    out.extend(line(row.cells()) for row in rows)
    return "\n".join(out)


def problem(run: Run) -> str:
    """Why a run gave no figure, in a few words, or '' when it finished."""
    if run.timed_out:
        return f"killed at its {run.time_limit_s:.0f} s limit"
    return ""


def status_note(run: Run, expected_exit: int = 0) -> str:
    notes = [run.totals() or "no pytest totals"]
    if run.exit_code != expected_exit:
        notes.append(f"exit {run.exit_code}: {run.tail()}")
    return "; ".join(notes)


# --- the benchmark ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parameters:
    cases: int
    judges: int
    latency_ms: int
    concurrency: int
    repeat: int
    startup_runs: int

    @property
    def calls(self) -> int:
        return self.cases * self.judges

    @property
    def ideal_s(self) -> float:
        """ceil(N*K / C) * L: the wall time if every slot of the concurrency bound were always busy."""
        return math.ceil(self.calls / self.concurrency) * self.latency_ms / 1000

    @property
    def judged_time_limit_s(self) -> float:
        """Room for the slowest judged scenario: three times every call made one after the other, plus 2 min."""
        return 120 + 3 * self.calls * self.latency_ms / 1000

    @property
    def quick_time_limit_s(self) -> float:
        return 120 + 0.1 * self.cases


class Benchmark:
    def __init__(self, parameters: Parameters, paths: SuitePaths, skip_deepeval: bool) -> None:
        self.p = parameters
        self.paths = paths
        self.skip_deepeval = skip_deepeval
        self.rows: list[Row] = []
        self.targets: list[str] = []
        self.cold: Run | None = None
        self.cold_external: Run | None = None
        self.external_row: Row | None = None
        self.warm_cpu_s: float | None = None
        self.litellm_cpu_s: float | None = None

    def log(self, message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    def laj_pytest(self, *arguments: str, time_limit_s: float) -> Run:
        command = pytest_command("-q", "-p", "no:cacheprovider", *arguments)
        return run_measured(command, cwd=self.paths.laj, env=child_environment(), time_limit_s=time_limit_s)

    def run_xdist(self) -> None:
        """Rows 7a-7g: cold serial beside cold `-n 2`, `-n 3` and `-n 4`, `repeat` rounds interleaved so that drift
        in the machine's load (another benchmark on it) hits each alike, medians; then warm serial and `-n 2` on
        the last round's caches."""
        self.log(f"7. xdist: {self.p.cases} cases cold ({self.p.repeat} rounds of serial, -n 2, -n 3, -n 4), then warm")
        rounds: list[dict[int, Run]] = []
        for _ in range(self.p.repeat):
            runs = {}
            for workers in (1, *_XDIST_WORKERS):
                cache = self.paths.laj / f".cache-x{workers}"
                shutil.rmtree(cache, ignore_errors=True)
                arguments = ("--laj-cache-dir", cache.name, *_workers(workers))
                runs[workers] = self.laj_pytest(*arguments, time_limit_s=self.p.judged_time_limit_s)
            rounds.append(runs)
        for number, workers, target in (("7a", 1, None), ("7b", 2, 0.75), ("7e", 3, 1.0), ("7f", 4, 1.0)):
            self.xdist_cold_row(number, workers, [r[workers] for r in rounds], [r[1] for r in rounds], target)
        serial_warm = self.xdist_row("7c", "warm rerun of 7a, serial (reference for 7d)", ".cache-x1")
        self.xdist_row("7d", "warm rerun of 7b, `-n 2`", ".cache-x2", "-n", "2", against=serial_warm)
        self.judge_free_xdist()

    def judge_free_xdist(self) -> None:
        """Row 7g, context for 7d: what `-n 2` costs a suite that judges nothing (xdist starting its workers)."""
        runs = [
            run_measured(
                pytest_command("-q", "-p", "no:cacheprovider", "-p", "no:laj", *arguments),
                cwd=self.paths.free,
                env=child_environment(),
                time_limit_s=self.p.quick_time_limit_s,
            )
            for arguments in ((), ("-n", "2"))
        ]
        row = Row("7g", "judge-free suite, `-n 2` (context for 7d)")
        self.rows.append(row)
        serial, spread = runs
        if serial.timed_out or spread.timed_out:
            row.wall = problem(serial if serial.timed_out else spread)
            return
        row.wall, row.cpu = seconds(spread.wall_s), seconds(spread.cpu_s)
        row.reference, row.ratio = f"serial {seconds(serial.wall_s)}", times(spread.wall_s / serial.wall_s)
        row.notes = status_note(spread)

    def xdist_cold_row(
        self, number: str, workers: int, runs: list[Run], serial: list[Run], target: float | None
    ) -> None:
        """One cold row: median wall and CPU of its rounds, and the median of each round's ratio to that round's
        serial run."""
        name = "serial" if workers == 1 else f"`-n {workers}`"
        row = Row(number, f"cold, {name} (median of {len(runs)})")
        self.rows.append(row)
        calls = runs[-1].judge_calls()
        row.requests = f"{calls[0]} made, {calls[1]} cached" if calls else "no summary line"
        if failed := next((run for run in runs if run.timed_out), None):
            row.wall = problem(failed)
            return
        row.wall = seconds(statistics.median(run.wall_s for run in runs))
        row.cpu = seconds(statistics.median(run.cpu_s for run in runs))
        row.rss = mib(max(run.max_rss_mib for run in runs))
        row.notes = status_note(runs[-1]) + "; CPU: every process, xdist workers included"
        if workers == 1 or any(run.timed_out for run in serial):
            return
        ratios = [run.wall_s / alone.wall_s for run, alone in zip(runs, serial, strict=True)]
        ratio = statistics.median(ratios)
        row.reference = f"serial {seconds(statistics.median(run.wall_s for run in serial))}"
        row.ratio = times(ratio)
        row.notes += "; each round's ratio: " + ", ".join(times(r) for r in ratios)
        if target is not None:
            verdict = "met" if ratio <= target else "NOT met"
            self.targets.append(f"{name} cold at most {target}x of serial cold: {verdict} (median {times(ratio)})")

    def xdist_row(
        self,
        number: str,
        scenario: str,
        cache: str,
        *arguments: str,
        against: Run | None = None,
    ) -> Run | None:
        run = self.laj_pytest("--laj-cache-dir", cache, *arguments, time_limit_s=self.p.judged_time_limit_s)
        row = Row(number, scenario, cpu=seconds(run.cpu_s), rss=mib(run.max_rss_mib))
        calls = run.judge_calls()
        row.requests = f"{calls[0]} made, {calls[1]} cached" if calls else "no summary line"
        self.rows.append(row)
        if run.timed_out:
            row.wall = problem(run)
            return None
        row.wall, row.notes = seconds(run.wall_s), status_note(run) + "; CPU: every process, xdist workers included"
        if against is not None:
            row.reference, row.ratio = f"serial {seconds(against.wall_s)}", times(run.wall_s / against.wall_s)
        return run

    def run_all(self) -> None:
        prefetch = self.prefetch_option_present()
        self.cold_run(prefetch)
        self.cold_external_simulator()
        self.test_by_test(prefetch)
        self.warm()
        self.startup()
        self.peak_rss()
        self.litellm_import()
        if self.skip_deepeval:
            self.rows.append(Row("6", "DeepEval 4.3.1", notes="skipped (--skip-deepeval)"))
        else:
            self.deepeval()
        self.cpu_per_call()
        self.run_xdist()
        self.redis_store()

    # S
    def run_scale(self) -> None:
        """A large suite: cold (with its client-CPU bound) and warm against their targets, then what the run's
        record costs at that size."""
        self.cold_run(prefetch=True)
        self.cold_external_simulator()
        self.warm()
        self.report_writing()

    def report_writing(self) -> None:
        """Rows S1-S2, from the cold run's last-run.json: writing the JSON report and the HTML dashboard, and the
        memory its records hold on the controller: as the JSON it keeps while the run goes on (as xdist workers
        send them), and as the models it builds once at the end for the reports."""
        report = self.paths.laj / ".cache-cold" / "last-run.json"
        if not report.exists():
            self.rows.append(Row("S1", "report writing", notes="n/a: the cold run left no last-run.json"))
            return
        self.log(f"S. report writing and record memory at {self.p.cases} assessments")
        run = run_measured(
            [sys.executable, "-c", _REPORT_COST, str(report)],
            cwd=self.paths.root,
            env=child_environment(),
            time_limit_s=300,
        )
        if run.timed_out or run.exit_code != 0:
            self.rows.append(Row("S1", "report writing", notes=f"failed: {run.tail()}"))
            return
        figures = json.loads(run.output.strip().splitlines()[-1])
        n = figures["records"]
        self.rows.append(
            Row(
                "S1",
                f"write the JSON report and the HTML dashboard, {n} assessments",
                wall=seconds(figures["json_s"] + figures["html_s"]),
                notes=(
                    f"JSON {seconds(figures['json_s'])} ({figures['json_mib']:.1f} MiB), HTML "
                    f"{seconds(figures['html_s'])} ({figures['html_mib']:.1f} MiB); the run record (its records "
                    f"validated, agreement, judge health) {seconds(figures['finish_s'])}"
                ),
            )
        )
        per_record = figures["record_bytes"] / n / 1024
        kept = figures["kept_bytes"] / n / 1024
        self.rows.append(
            Row(
                "S2",
                "controller memory per assessment record",
                rss=f"{per_record:.1f} KiB",
                notes=(
                    f"tracemalloc of {n} records: {kept:.1f} KiB each kept as JSON while the run goes on, "
                    f"{per_record:.1f} KiB with their models, built once at the end for the reports"
                ),
            )
        )
        self.targets.append(
            f"controller memory under 50 KiB per assessment record: {'met' if per_record < 50 else 'NOT met'} "
            f"({per_record:.1f} KiB)"
        )

    # 0: is the option of scenario 2 there yet?
    def prefetch_option_present(self) -> bool:
        run = self.laj_pytest("--help", time_limit_s=STARTUP_TIMEOUT_S)
        return "--laj-prefetch" in run.output

    # 1
    def cold_run(self, prefetch: bool) -> None:
        p = self.p
        self.log(f"1. cold: {p.cases} cases x {p.judges} judges at {p.latency_ms} ms, concurrency {p.concurrency}")
        run = self.laj_pytest("--laj-cache-dir", ".cache-cold", time_limit_s=p.judged_time_limit_s)
        row = Row("1", "cold, suite-level prefetch (default)", reference=f"ideal {seconds(p.ideal_s)}")
        row.rss, row.cpu = mib(run.max_rss_mib), seconds(run.cpu_s)
        notes = [f"ideal = ceil({p.calls}/{p.concurrency}) x {p.latency_ms} ms"]
        if not prefetch:
            notes.append("no --laj-prefetch option in this plugin: its default is test by test")
        if run.timed_out:
            row.wall, row.notes = problem(run), "; ".join(notes)
            self.rows.append(row)
            return
        self.cold = run
        row.wall, row.ratio = seconds(run.wall_s), times(run.wall_s / p.ideal_s)
        calls = run.judge_calls()
        row.requests = f"{calls[0]} made, {calls[1]} cached" if calls else "no summary line"
        if calls and calls[0] != p.calls:
            notes.append(f"expected {p.calls} calls")
        notes.append(status_note(run))
        row.notes = "; ".join(notes)
        self.rows.append(row)

    # context for (1) and (6): the same cold run with the simulator in its own process, as DeepEval gets it
    def cold_external_simulator(self) -> None:
        row = Row("1b", "cold, simulator in its own process (context)")
        self.log("1b. cold again, the judges at a standalone simulator")
        try:
            with StandaloneSimulator(self.paths.laj / "judges.sim.yaml") as simulator:
                judges: list[str] = []
                for number in range(1, self.p.judges + 1):
                    judges += ["--laj-judge", f"openai/judge_{number} api_base={simulator.base_url} api_key=sk-bench"]
                run = self.laj_pytest(
                    *judges, "--laj-cache-dir", ".cache-external", time_limit_s=self.p.judged_time_limit_s
                )
                requests = simulator.request_count()
        except SimulatorError as error:
            row.wall, row.notes = "n/a (no simulator)", str(error)
            self.rows.append(row)
            return
        self.cold_external = run
        row.requests = f"{requests} made (counted by the simulator)"
        row.cpu, row.rss = seconds(run.cpu_s), mib(run.max_rss_mib)
        row.reference = f"ideal {seconds(self.p.ideal_s)}"
        if run.timed_out:
            row.wall = problem(run)
        else:
            row.wall, row.ratio = seconds(run.wall_s), times(run.wall_s / self.p.ideal_s)
            row.notes = f"{status_note(run)}; the CPU column is the client's alone here"
            self.external_row = row
        self.rows.append(row)
        self.cold_target()

    def cold_target(self) -> None:
        """Against the ideal, or the client's CPU time (measured in 1b, without the simulator) when higher."""
        if self.cold is None:
            return
        wall, ideal = self.cold.wall_s, self.p.ideal_s
        text = f"ideal {seconds(ideal)}"
        bound = ideal
        external = self.cold_external
        if external is not None and not external.timed_out and external.cpu_s > ideal:
            bound = external.cpu_s
            text = f"client-CPU bound {seconds(bound)} (CPU of run 1b; it is above the ideal {seconds(ideal)})"
        ratio = wall / bound
        self.targets.append(
            f"cold within 1.5x of the ideal or the client-CPU bound, whichever is higher: "
            f"{'met' if ratio <= 1.5 else 'NOT met'} against the {text}: {seconds(wall)}, {times(ratio)}; "
            f"{times(wall / ideal)} of the ideal"
        )

    def cpu_per_call(self) -> None:
        """Row 1b's client CPU less a warm run's (startup, collection, tests) and litellm's import, per call."""
        run, row = self.cold_external, self.external_row
        if run is None or row is None or self.warm_cpu_s is None or self.litellm_cpu_s is None:
            return
        per_call_ms = (run.cpu_s - self.warm_cpu_s - self.litellm_cpu_s) / self.p.calls * 1000
        row.notes += (
            f"; about {per_call_ms:.1f} ms CPU per judge call (CPU less a warm run's and litellm's import (row i), "
            f"over {self.p.calls} calls)"
        )

    # 2
    def test_by_test(self, prefetch: bool) -> None:
        row = Row("2", "test by test (`--laj-prefetch off`)")
        if not prefetch:
            row.wall = "n/a (option missing)"
            row.notes = "`pytest --help` lists no --laj-prefetch yet"
            self.rows.append(row)
            return
        self.log("2. test by test: --laj-prefetch off")
        run = self.laj_pytest(
            "--laj-prefetch", "off", "--laj-cache-dir", ".cache-serial", time_limit_s=self.p.judged_time_limit_s
        )
        if _UNRECOGNISED.search(run.output):
            row.wall, row.notes = "n/a (option missing)", run.tail(1)
        elif run.timed_out:
            row.wall = problem(run)
        else:
            row.wall = seconds(run.wall_s)
            calls = run.judge_calls()
            row.requests = f"{calls[0]} made, {calls[1]} cached" if calls else "no summary line"
            row.cpu, row.rss = seconds(run.cpu_s), mib(run.max_rss_mib)
            row.notes = status_note(run)
            if self.cold is not None:
                row.reference = f"cold {seconds(self.cold.wall_s)}"
                row.ratio = times(run.wall_s / self.cold.wall_s)
        self.rows.append(row)

    # 3
    def warm(self) -> None:
        if self.cold is None:
            self.rows.append(Row("3", "warm rerun on the full cache", notes="n/a: the cold run gave no cache"))
            return
        self.log(f"3. warm: {self.p.repeat} reruns on the cold run's cache, and {self.p.repeat} judge-free runs")
        warm_runs: list[Run] = []
        free_runs: list[Run] = []
        for _ in range(self.p.repeat):  # interleaved, so drift in the machine's load hits both alike
            warm_runs.append(self.laj_pytest("--laj-cache-dir", ".cache-cold", time_limit_s=self.p.quick_time_limit_s))
            free_runs.append(
                run_measured(
                    pytest_command("-q", "-p", "no:cacheprovider", "-p", "no:laj"),
                    cwd=self.paths.free,
                    env=child_environment(),
                    time_limit_s=self.p.quick_time_limit_s,
                )
            )
        row = Row("3", f"warm rerun of (1) on its full cache (median of {self.p.repeat})")
        failed = [problem(run) for run in [*warm_runs, *free_runs] if run.timed_out]
        if failed:
            row.wall, row.notes = failed[0], "warm or judge-free run did not finish"
            self.rows.append(row)
            return
        warm_s = statistics.median(run.wall_s for run in warm_runs)
        free_s = statistics.median(run.wall_s for run in free_runs)
        made = [calls[0] if (calls := run.judge_calls()) else -1 for run in warm_runs]
        cached = [calls[1] if (calls := run.judge_calls()) else -1 for run in warm_runs]
        row.wall, row.reference, row.ratio = seconds(warm_s), f"judge-free {seconds(free_s)}", times(warm_s / free_s)
        row.requests = f"{max(made)} made, {min(cached)} cached" if min(made) >= 0 else "no summary line"
        self.warm_cpu_s = statistics.median(run.cpu_s for run in warm_runs)
        row.cpu = seconds(self.warm_cpu_s)
        row.rss = mib(max(run.max_rss_mib for run in warm_runs))
        per_assessment_ms = (warm_s - free_s) / self.p.cases * 1000
        row.notes = (
            f"{status_note(warm_runs[-1])}; judge-free: {status_note(free_runs[-1])}, "
            f"{mib(max(run.max_rss_mib for run in free_runs))}; "
            f"{per_assessment_ms:+.2f} ms per assessment over judge-free"
        )
        self.rows.append(row)
        ratio = warm_s / free_s
        zero = max(made) == 0
        verdict = "met" if ratio <= 1.3 and zero else "NOT met"
        self.targets.append(
            f"warm within 1.3x of judge-free with 0 requests: {verdict} ({seconds(warm_s)} vs {seconds(free_s)}, "
            f"{times(ratio)}, {max(made)} requests)"
        )

    # R
    def redis_store(self) -> None:
        """The suite cold and warm against a Redis server on this machine, beside the diskcache warm rerun."""
        binary = shutil.which("redis-server")
        if binary is None:
            self.rows.append(Row("R", "Redis store", notes="skipped: redis-server is not installed"))
            return
        limit = self.p.quick_time_limit_s
        if self.cold is None:
            self.log("R. diskcache cold run, to have a full cache to compare with")
            self.cold = self.laj_pytest("--laj-cache-dir", ".cache-cold", time_limit_s=self.p.judged_time_limit_s)
        with redis_server(binary) as url:
            self.log(f"R. Redis store: cold, then {self.p.repeat} warm reruns interleaved with diskcache warm reruns")
            store = ("--laj-cache-url", url, "--laj-cache-dir", ".cache-redis")
            cold = self.laj_pytest(*store, time_limit_s=self.p.judged_time_limit_s)
            redis_runs: list[Run] = []
            disk_runs: list[Run] = []
            commands: list[int] = []  # commands the server processed during each warm rerun
            for _ in range(self.p.repeat):
                before = _commands_processed(url)
                redis_runs.append(self.laj_pytest(*store, time_limit_s=limit))
                commands.append(_commands_processed(url) - before)
                disk_runs.append(self.laj_pytest("--laj-cache-dir", ".cache-cold", time_limit_s=limit))
        cold_row = Row("R1", "Redis store, cold", reference=f"diskcache cold {seconds(self.cold.wall_s)}")
        cold_row.wall, cold_row.ratio = seconds(cold.wall_s), times(cold.wall_s / self.cold.wall_s)
        cold_row.requests, cold_row.cpu, cold_row.notes = _requests(cold), seconds(cold.cpu_s), status_note(cold)
        warm_s = statistics.median(run.wall_s for run in redis_runs)
        disk_s = statistics.median(run.wall_s for run in disk_runs)
        warm_row = Row(
            "R2", f"Redis store, warm (median of {self.p.repeat})", reference=f"diskcache warm {seconds(disk_s)}"
        )
        warm_row.wall, warm_row.ratio = seconds(warm_s), times(warm_s / disk_s)
        warm_row.requests = _requests(redis_runs[-1])
        warm_row.cpu = seconds(statistics.median(run.cpu_s for run in redis_runs))
        warm_row.notes = f"{status_note(redis_runs[-1])}; {max(commands)} commands to the server per rerun"
        self.rows += [cold_row, warm_row]
        made = max(calls[0] if (calls := run.judge_calls()) else -1 for run in redis_runs)
        verdict = "met" if warm_s / disk_s <= 1.5 and made == 0 else "NOT met"
        self.targets.append(
            f"Redis warm within 1.5x of diskcache warm with 0 requests: {verdict} ({seconds(warm_s)} vs "
            f"{seconds(disk_s)}, {times(warm_s / disk_s)}, {made} requests)"
        )

    # 4
    def startup(self) -> None:
        runs = self.p.startup_runs
        self.log(f"4. startup: --collect-only on an empty directory, {runs} runs each with and without the plugin")
        with_plugin: list[Run] = []
        without: list[Run] = []
        for _ in range(runs):
            for arguments, into in (((), with_plugin), (("-p", "no:laj"), without)):
                into.append(
                    run_measured(
                        pytest_command("--collect-only", "-q", *arguments),
                        cwd=self.paths.empty,
                        env=child_environment(),
                        time_limit_s=STARTUP_TIMEOUT_S,
                    )
                )
        failed = [problem(run) for run in [*with_plugin, *without] if run.timed_out]
        row = Row("4", f"startup: `--collect-only -q`, empty dir (median of {runs})")
        if failed:
            row.wall = failed[0]
            self.rows.append(row)
            return
        on = statistics.median(run.wall_s for run in with_plugin)
        off = statistics.median(run.wall_s for run in without)
        difference_ms = (on - off) * 1000
        row.wall, row.reference = seconds(on), f"-p no:laj {seconds(off)}"
        row.ratio = f"{difference_ms:+.0f} ms"
        cpu_on = statistics.median(run.cpu_s for run in with_plugin)
        cpu_off = statistics.median(run.cpu_s for run in without)
        row.cpu = f"{seconds(cpu_on)} vs {seconds(cpu_off)}"
        row.rss = f"{mib(max(r.max_rss_mib for r in with_plugin))} vs {mib(max(r.max_rss_mib for r in without))}"
        row.notes = "ratio column: with - without"
        unexpected = [run for run in [*with_plugin, *without] if run.exit_code != 5]  # 5: no tests collected
        if unexpected:
            row.notes += f"; exit {unexpected[0].exit_code}: {unexpected[0].tail()}"
        self.rows.append(row)
        self.targets.append(
            f"startup within 150 ms of -p no:laj: {'met' if difference_ms <= 150 else 'NOT met'} "
            f"({difference_ms:+.0f} ms: {seconds(on)} vs {seconds(off)})"
        )

    # 5
    def peak_rss(self) -> None:
        row = Row("5", "peak RSS of the cold run")
        if self.cold is None:
            row.notes = "n/a: the cold run did not finish"
        else:
            row.rss = mib(self.cold.max_rss_mib)
            row.notes = "ru_maxrss of the cold pytest process (os.wait4), simulator thread included"
        self.rows.append(row)

    # context for (1): what importing litellm costs on this machine, alone and the way pytest-laj imports it
    def litellm_import(self) -> None:
        plain = "import os; os.environ.setdefault('LITELLM_LOCAL_MODEL_COST_MAP', 'True'); import litellm"
        ours = (
            "import time; from pytest_laj.judges.llm import import_litellm; "
            "t = time.process_time(); import_litellm(); print('import CPU', time.process_time() - t)"
        )
        runs = {
            name: [
                run_measured(
                    [sys.executable, "-c", code], cwd=self.paths.root, env=child_environment(), time_limit_s=120
                )
                for _ in range(3)
            ]
            for name, code in (("plain", plain), ("ours", ours))
        }
        row = Row("i", "context: importing litellm, as pytest-laj does (median of 3)")
        failed = [run for group in runs.values() for run in group if run.timed_out or run.exit_code != 0]
        if failed:
            row.notes = f"failed: {failed[0].tail()}"
        else:
            ours_cpu = [float(run.output.split("import CPU")[-1]) for run in runs["ours"]]
            self.litellm_cpu_s = statistics.median(ours_cpu)
            plain_cpu = statistics.median(run.cpu_s for run in runs["plain"])
            row.cpu = seconds(self.litellm_cpu_s)
            row.rss = mib(max(run.max_rss_mib for run in runs["plain"]))
            row.notes = (
                f"the import alone, measured inside the process; a plain `import litellm` process takes "
                f"{seconds(plain_cpu)} of CPU (pytest-laj pauses the garbage collector for the import and freezes "
                "litellm's objects); paid once by every cold run, never by a warm one"
            )
        self.rows.append(row)

    # 6
    def deepeval(self) -> None:
        row = Row("6", f"DeepEval {DEEPEVAL_VERSION}: 3 GEval metrics per case, `assert_test`")
        self.log(f"6. DeepEval {DEEPEVAL_VERSION} in {DEEPEVAL_VENV}")
        python, why = ensure_deepeval_venv(self.log)
        if python is None:
            row.wall, row.notes = "n/a (could not install)", why
            self.rows.append(row)
            return
        if self.p.judges != len(CRITERIA):
            row.notes = f"{len(CRITERIA)} requests per case vs pytest-laj's {self.p.judges}: not the same work; "
        try:
            with StandaloneSimulator(self.paths.deepeval_rules) as simulator:
                env = child_environment({"DEEPEVAL_TELEMETRY_OPT_OUT": "YES", "LAJ_BENCH_BASE_URL": simulator.base_url})
                env.pop("PYTHONPATH", None)
                run = run_measured(
                    pytest_command("-q", "-p", "no:cacheprovider", python=str(python)),
                    cwd=self.paths.deepeval,
                    env=env,
                    time_limit_s=self.p.judged_time_limit_s,
                )
                requests = simulator.request_count()
        except SimulatorError as error:
            row.wall, row.notes = "n/a (no simulator)", str(error)
            self.rows.append(row)
            return
        row.requests = f"{requests} made (counted by the simulator)"
        row.cpu, row.rss = seconds(run.cpu_s), mib(run.max_rss_mib)
        if run.timed_out:
            row.wall = problem(run)
            if self.cold is not None:
                row.reference = f"pytest-laj cold {seconds(self.cold.wall_s)}"
                row.ratio = f">= {times(run.wall_s / self.cold.wall_s)}"
            row.notes += f"{requests} of {self.p.cases * len(CRITERIA)} requests made before the limit"
            self.rows.append(row)
            return
        row.wall = seconds(run.wall_s)
        row.notes += status_note(run) + f"; {why}"
        if self.cold is not None:
            ratio = run.wall_s / self.cold.wall_s
            row.reference, row.ratio = f"pytest-laj cold {seconds(self.cold.wall_s)}", times(ratio)
            passed = run.exit_code == 0
            verdict = "met" if ratio >= 5 and passed else "NOT met"
            same_setup = ""
            if self.cold_external is not None and not self.cold_external.timed_out:
                external = run.wall_s / self.cold_external.wall_s
                same_setup = f"; {times(external)} against (1b), whose simulator is also in its own process"
                row.notes += f"; {times(external)} vs (1b)"
            self.targets.append(
                f">= 5x faster than DeepEval: {verdict} (DeepEval {seconds(run.wall_s)} vs pytest-laj cold "
                f"{seconds(self.cold.wall_s)}, {times(ratio)}{same_setup})"
            )
        self.rows.append(row)


# --- DeepEval's environment and the simulator it talks to ------------------------------------------------


def _deepeval_version(python: Path) -> str | None:
    code = "import deepeval, pytest; print(deepeval.__version__)"
    run = run_measured([str(python), "-c", code], cwd=BENCH_DIR, env=child_environment(), time_limit_s=120)
    return run.output.strip().splitlines()[-1] if run.exit_code == 0 and run.output.strip() else None


def ensure_deepeval_venv(log: Callable[[str], None]) -> tuple[Path | None, str]:
    """bench/.venv-deepeval with deepeval==4.3.1 and pytest: reused when it is there, else created."""
    python = DEEPEVAL_VENV / "bin" / "python"
    if python.exists() and _deepeval_version(python) == DEEPEVAL_VERSION:
        return python, f"venv reused ({DEEPEVAL_VENV.name})"
    if DEEPEVAL_VENV.exists():
        shutil.rmtree(DEEPEVAL_VENV)
    log(f"creating {DEEPEVAL_VENV} (pip install deepeval=={DEEPEVAL_VERSION} pytest)")
    steps = [
        [sys.executable, "-m", "venv", str(DEEPEVAL_VENV)],
        [str(python), "-m", "pip", "install", "--quiet", f"deepeval=={DEEPEVAL_VERSION}", "pytest"],
    ]
    for step in steps:
        run = run_measured(step, cwd=BENCH_DIR, env=child_environment(), time_limit_s=DEEPEVAL_INSTALL_TIMEOUT_S)
        if run.exit_code != 0:
            return None, f"`{' '.join(step[-3:])}` failed: {problem(run) or run.tail(2)}"
    version = _deepeval_version(python)
    if version != DEEPEVAL_VERSION:
        return None, f"installed, but `import deepeval` gives version {version!r}"
    return python, f"venv created ({DEEPEVAL_VENV.name})"


class SimulatorError(RuntimeError):
    """The standalone simulator did not start."""


class StandaloneSimulator:
    """`python -m pytest_laj.simulator` in its own process, so DeepEval's client does not share its GIL."""

    def __init__(self, rules: Path) -> None:
        self.rules = rules
        self.base_url = ""
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> StandaloneSimulator:
        command = [sys.executable, "-m", "pytest_laj.simulator", "--rules", str(self.rules), "--port", "0"]
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_environment()
        )
        first_line: list[str] = []
        reader = threading.Thread(target=lambda: first_line.append(self._stdout().readline()), daemon=True)
        reader.start()
        reader.join(SIMULATOR_START_TIMEOUT_S)
        url = first_line[0].strip() if first_line else ""
        if not url.startswith("http://127.0.0.1:"):
            self._stop()
            raise SimulatorError(f"the simulator printed {url!r} instead of its base URL")
        self.base_url = url
        self._post("/stats/reset")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop()

    def _stdout(self) -> IO[str]:
        assert self._process is not None and self._process.stdout is not None
        return self._process.stdout

    def _post(self, path: str) -> bytes:
        request = urllib.request.Request(self.base_url + path, data=b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            return bytes(response.read())

    def request_count(self) -> int:
        with urllib.request.urlopen(self.base_url + "/stats", timeout=10) as response:
            return int(json.load(response)["requests"])

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


# --- the command -----------------------------------------------------------------------------------------


_REPORT_COST = """
import json, sys, tempfile, time, tracemalloc
from pathlib import Path
from pytest_laj.core.gcpause import GcPause
from pytest_laj.render.html import render_html
from pytest_laj.results.collect import KeptRecord, RunCollector, keep
from pytest_laj.results.report import read_report, report_json, write_text

run = read_report(Path(sys.argv[1]))
wire = json.dumps([list(keep(record)) for record in run.records])  # as xdist workers send them
del run
collector = RunCollector()
tracemalloc.start()
collector.add_kept([KeptRecord(*data[:3]) for data in json.loads(wire)])  # judged=False: no alpha loading here
kept, _ = tracemalloc.get_traced_memory()
records = collector.records()
held, _ = tracemalloc.get_traced_memory()
tracemalloc.stop()
del records
started = time.perf_counter()
pause = GcPause()  # as a run builds its record and reports it
pause.start()
run = collector.finish(versions=("0", "0"), cache_mode="rw", review_mode="fail", panel=[],
                       stopped_early=False, memo=None)
finish_s = time.perf_counter() - started
out = Path(tempfile.mkdtemp())
started = time.perf_counter()
write_text(out / "run.json", report_json(run, [k.json for k in collector.kept]))  # as a run writes it
json_s = time.perf_counter() - started
started = time.perf_counter()
(out / "run.html").write_text(render_html(run), encoding="utf-8")
html_s = time.perf_counter() - started
pause.stop()
print(json.dumps({"records": len(collector.kept), "kept_bytes": kept, "record_bytes": held, "finish_s": finish_s,
                  "json_s": json_s, "html_s": html_s, "json_mib": (out / "run.json").stat().st_size / 2**20,
                  "html_mib": (out / "run.html").stat().st_size / 2**20}))
"""


def _requests(run: Run) -> str:
    calls = run.judge_calls()
    return f"{calls[0]} made, {calls[1]} cached" if calls else problem(run) or "no summary line"


@contextlib.contextmanager
def redis_server(binary: str) -> Iterator[str]:
    """A throwaway redis-server on a free loopback port, saving nothing; its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="laj-bench-redis-") as directory:
        options = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory]
        server = subprocess.Popen([binary, *options], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + SIMULATOR_START_TIMEOUT_S
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
                time.sleep(0.1)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            server.kill()
            server.wait()


def _commands_processed(url: str) -> int:
    """How many commands the server has processed: round trips, but for pipelines and multi-key commands."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        return int(client.info("stats")["total_commands_processed"])
    finally:
        client.close()


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text}")
    return value


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python bench/run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=_positive, default=200, help="cases in the suite, N (default 200)")
    parser.add_argument("--judges", type=_positive, default=3, help="simulated judges, K (default 3)")
    parser.add_argument("--latency-ms", type=_non_negative, default=200, help="judge latency, L (default 200)")
    parser.add_argument("--concurrency", type=_positive, default=32, help="laj_concurrency, C (default 32)")
    parser.add_argument("--repeat", type=_positive, default=3, help="warm, judge-free, xdist cold runs (default 3)")
    parser.add_argument("--startup-runs", type=_positive, default=7, help="startup runs each, median (default 7)")
    parser.add_argument("--skip-deepeval", action="store_true", help="do not install or run DeepEval")
    parser.add_argument("--markdown", type=Path, help="also write the header and table to this file")
    parser.add_argument("--keep", action="store_true", help="keep the generated suites and print where they are")
    parser.add_argument(
        "--only",
        choices=sorted(PARTS),
        help="run one part alone: 'xdist' (serial and -n 2, cold and warm), 'redis' (the Redis store's rows), "
        "'scale' (cold, warm, report writing and record memory; use with --cases 2000)",
    )
    return parser.parse_args(argv)


def load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def header(parameters: Parameters, load_before: str) -> list[str]:
    def version(distribution: str) -> str:
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            return "not installed"

    p = parameters
    return [
        f"pytest-laj benchmark, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"load average (1, 5, 15 min): {load_before} before the run, {load_average()} after",
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"versions: pytest-laj {version('pytest-laj')}, pytest {version('pytest')}, litellm {version('litellm')}",
        f"parameters: N={p.cases} cases, K={p.judges} judges, L={p.latency_ms} ms, C={p.concurrency}",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    parameters = Parameters(
        cases=arguments.cases,
        judges=arguments.judges,
        latency_ms=arguments.latency_ms,
        concurrency=arguments.concurrency,
        repeat=arguments.repeat,
        startup_runs=arguments.startup_runs,
    )
    if parameters.latency_ms == 0:
        print("--latency-ms 0 makes the ideal 0 s and every ratio infinite; use 1 or more", file=sys.stderr)
        return 2
    load_before = load_average()
    root = Path(tempfile.mkdtemp(prefix="laj-bench-"))
    try:
        paths = write_suites(
            root,
            cases=parameters.cases,
            judges=parameters.judges,
            latency_ms=parameters.latency_ms,
            concurrency=parameters.concurrency,
        )
        benchmark = Benchmark(parameters, paths, arguments.skip_deepeval)
        if arguments.only is None:
            benchmark.run_all()
        else:
            getattr(benchmark, PARTS[arguments.only])()
    finally:
        if arguments.keep:
            print(f"[bench] suites kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    lines = [*header(parameters, load_before), "", markdown_table(benchmark.rows), "", "Targets:"]
    lines.extend(f"- {target}" for target in benchmark.targets)
    text = "\n".join(lines)
    print(text)
    if arguments.markdown is not None:
        arguments.markdown.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
