"""The run as pytest-laj sees it: records arrive with test reports (from every xdist worker), call counts
with each worker's end; the controller builds the run record once and prints its summary.

Under xdist each worker judges its share of the cases up front for every worker's tests (`plugin.prefetch`).
A worker waits at its end for its share, which other workers' tests may be waiting on, unless the run is
stopping: the controller then leaves a mark in the shared cache and the workers cancel what is pending. What a
worker judged for a test that did not run on it goes to the controller with the assessment's identity: it was
collected if that test ran on another worker and has a record of the same assessment.

Registered as a plugin object at configure, after pytest-xdist's `DSession` and syrupy's session.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import sys
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_laj.core.gcpause import GcPause
from pytest_laj.core.modes import CacheMode, GithubMode
from pytest_laj.engine.settings import Settings
from pytest_laj.plugin import baseline, outcome

if TYPE_CHECKING:
    from pytest_laj.engine.session import Engine
    from pytest_laj.results.collect import RunCollector
    from pytest_laj.results.record import CallStats, RunRecord

__all__ = ["ENGINE", "SETTINGS", "GithubActions", "RunReporter", "reviews_section", "summary_section"]

SETTINGS = pytest.StashKey[Settings]()
ENGINE = pytest.StashKey["Engine"]()

WORKER_CALLS = "laj_calls"
WORKER_FATAL = "laj_fatal"
WORKER_LOST = "laj_store_lost"
WORKER_SHARED = "laj_shared"  # judged up front by a worker for tests that did not run on it
STOPPED = "pytest-laj:stopped:{run}"  # a memo the controller leaves when the run stops early
STOP_POLL_SECONDS = 0.2


class RunReporter:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.session: pytest.Session | None = None
        self._collector: RunCollector | None = None
        self.run: RunRecord | None = None
        self.cancelled = 0
        self.tests_run: set[str] = set()
        self.is_worker = hasattr(config, "workerinput")
        self.stopped_for: str | None = None
        self.worker_fatal: str | None = None  # xdist controller: what stopped a worker, for the exit status
        self.worker_lost: str | None = None  # xdist controller: a shared store a worker went on without
        self.written: list[Path] = []  # reports the user asked for, as written
        self.run_id: str | None = None  # xdist controller: the run's id, known when workers start
        self.stop_told = False
        self.watching: concurrent.futures.Future[int] | None = None  # xdist worker: its watch for a stop
        self.shared: list[tuple[str, bool, str]] = []  # xdist controller: workers' (nodeid, finished, identity)
        self.unwritten: list[str] = []  # reports that could not be written, and why
        self.gc_pause = GcPause()  # from building the run to letting it go
        config.add_cleanup(self.gc_pause.stop)  # whatever happens in between

    @property
    def collector(self) -> RunCollector:
        if self._collector is None:
            from pytest_laj.results.collect import RunCollector

            self._collector = RunCollector()
        return self._collector

    def _engine(self) -> Engine | None:
        return self.config.stash.get(ENGINE, None)

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.session = session
        _redact_captured_logs(self.config)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Every test's records reach the collector; once pytest decides to stop (-x, --maxfail), judging still
        under way up front is cancelled, so no more calls are paid for."""
        if report.when != "call":
            return
        self.tests_run.add(report.nodeid)
        if not self.is_worker:  # a worker has sent its records with the report by now, and keeps none
            # the collector holds them (this process's, or as a worker sent them); the report lives on in
            # pytest's statistics
            if records := getattr(report, "laj_records", None):
                self.collector.add(records)
                del report.laj_records
            if kept := getattr(report, "laj_kept", None):
                self.collector.add_kept(kept)
                del report.laj_kept
        engine = self._engine()
        if self.session is None:
            return
        if not self.is_worker and (self.session.shouldfail or self.session.shouldstop):
            self._tell_stop()
        if engine is None:
            return
        fatal = self._fatal()
        if fatal is not None and not self.session.shouldstop:  # every test after would fail the same way
            self.session.shouldstop, self.stopped_for = f"pytest-laj: {fatal}", fatal
        if self.session.shouldfail or self.session.shouldstop:
            self.cancelled += engine.prefetcher.cancel_pending()

    @pytest.hookimpl(trylast=True)  # after the judging up front has started
    def pytest_collection_finish(self) -> None:
        """xdist worker judging a share: watch for the controller's stop while tests run, since a test may wait
        on a slow verdict for as long as the judging up front takes."""
        engine = self._engine()
        if engine is not None and engine.shares_prefetch:
            self.watching = engine.loop.submit(self._watch_stop(engine))

    async def _watch_stop(self, engine: Engine) -> int:
        while not self._told_to_stop(engine):
            await asyncio.sleep(STOP_POLL_SECONDS)
        return engine.prefetcher.cancel_pending()

    def _told_to_stop(self, engine: Engine) -> bool:
        """xdist worker judging a share: whether the controller has stopped the run (-x or --maxfail reached by
        the failures of several workers, which no worker counts alone)."""
        run = self.config.stash[SETTINGS].run_id
        return engine.shares_prefetch and run is not None and engine.store.get(STOPPED.format(run=run)) is not None

    def _tell_stop(self) -> None:
        """xdist controller: the run is stopping; the workers cancel the judging up front still pending."""
        settings = self.config.stash[SETTINGS]
        if self.stop_told or self.run_id is None or not (settings.cache_mode.reads and settings.cache_mode.writes):
            return
        from pytest_laj.store.cache import Store, open_backend

        self.stop_told = True
        cache = open_backend(settings.cache_dir, settings.cache_url, read_only=False)  # where the workers look
        try:
            Store(cache, settings.cache_mode).set(STOPPED.format(run=self.run_id), True)
        finally:
            cache.close()

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        self.run_id = node.workerinput.get("testrunuid")

    def _fatal(self) -> str | None:
        """A mistake every later judgment would meet again: a judge that cannot be called, an unusable cache
        (here, or in an xdist worker)."""
        engine = self._engine()
        here = (engine.policy.refusal or engine.cache.broken) if engine is not None else None
        return here or self.worker_fatal

    def _lost(self) -> str | None:
        """A shared verdict store that went away mid-run (here, or in an xdist worker): the run went on
        without it, judging instead of reading, and says so once."""
        engine = self._engine()
        return (engine.cache.lost if engine is not None else None) or self.worker_lost

    def _settle_prefetch(self, session: pytest.Session, exitstatus: int) -> None:
        """Judging up front that no test collected finishes before the counts are read, unless the run is
        stopping (early, or interrupted): then it is cancelled."""
        engine = self._engine()
        if engine is None:
            return
        if session.shouldfail or session.shouldstop or exitstatus == pytest.ExitCode.INTERRUPTED:
            self.cancelled += engine.prefetcher.cancel_pending()
        else:  # a worker's share: other workers' tests may wait on it, so stop only when the run is stopping
            self.cancelled += engine.prefetcher.settle(lambda: self.watching is not None and self.watching.done())
        if self.watching is not None:
            self.watching.cancel()
            if self.watching.done() and not self.watching.cancelled():
                self.cancelled += self.watching.result()

    def _calls(self) -> CallStats | None:
        engine = self._engine()
        if engine is None:
            return None
        from pytest_laj.results.record import CallStats, Uncollected

        counts = engine.rater.counts
        unclaimed = engine.prefetcher.uncollected()
        if self.is_worker:  # what a test of another worker may have collected, for the controller to tell
            shared = [(u.owner, u.finished, u.identity) for u in unclaimed if u.owner not in self.tests_run]
            self.config.workeroutput[WORKER_SHARED] = shared  # type: ignore[attr-defined]
            unclaimed = [u for u in unclaimed if u.owner in self.tests_run]
        return CallStats(
            calls=counts.calls,
            cache_hits=counts.cache_hits,
            cost_usd=counts.cost_usd,
            prefetched=engine.prefetcher.judged,
            uncollected=[Uncollected(nodeid=u.owner, finished=u.finished) for u in unclaimed],
            prefetch_cancelled=self.cancelled,
            limit_wait_s=engine.policy.limits.waited(),
        )

    def _shared_uncollected(self) -> CallStats:
        """xdist controller: what workers judged up front for tests that ran elsewhere or nowhere and that no
        record of that test assessed (a test that judged something else, or never ran)."""
        from pytest_laj.results.record import CallStats, Uncollected

        owners = {nodeid for nodeid, _, _ in self.shared}
        judged = {(k.nodeid, k.identity) for k in self.collector.kept if k.nodeid in owners}
        return CallStats(
            uncollected=[
                Uncollected(nodeid=nodeid, finished=finished)
                for nodeid, finished, identity in self.shared
                if (nodeid, identity) not in judged
            ]
        )

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """xdist controller: a worker's call counts, and what stopped it, sent at its end."""
        output = getattr(node, "workeroutput", {})
        self.worker_fatal = self.worker_fatal or output.get(WORKER_FATAL)
        self.worker_lost = self.worker_lost or output.get(WORKER_LOST)
        self.shared += [(str(n), bool(f), str(i)) for n, f, i in output.get(WORKER_SHARED, [])]
        data = output.get(WORKER_CALLS)
        if data:
            from pytest_laj.results.record import CallStats

            self.collector.add_calls(CallStats.model_validate(data))

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """First, so that on the xdist controller the workers' processes exit while the run is built."""
        self._settle_prefetch(session, exitstatus)
        calls = self._calls()
        if self.is_worker:
            if calls is not None:
                self.config.workeroutput[WORKER_CALLS] = calls.model_dump(mode="json")  # type: ignore[attr-defined]
            if (fatal := self._fatal()) is not None:
                self.config.workeroutput[WORKER_FATAL] = fatal  # type: ignore[attr-defined]
            if (lost := self._lost()) is not None:
                self.config.workeroutput[WORKER_LOST] = lost  # type: ignore[attr-defined]
        else:
            workers_down = _tear_down_workers(self.config)
            try:
                self._build_run(session, calls)
            finally:
                if workers_down is not None:
                    workers_down.result()  # as xdist's own teardown would, a failure to stop a worker is raised
        if self._fatal() is not None:  # after the summary's reads of the cache
            session.exitstatus = pytest.ExitCode.USAGE_ERROR

    def _build_run(self, session: pytest.Session, calls: CallStats | None) -> None:
        """The controller's run record from every test's records and every process's call counts, and its files."""
        if calls is not None:
            self.collector.add_calls(calls)
        if self.shared:
            self.collector.add_calls(self._shared_uncollected())
        if self._collector is not None:
            # The run's hundreds of thousands of objects live until unconfigure lets them go: the collector
            # would only walk them meanwhile (0.2 s at 2,000 assessments).
            self.gc_pause.start()
            self.run = self._finish(session)
            self.run.comparison = baseline.compare_run(self.config, self.config.stash[SETTINGS], self.run, session)
            self.unwritten = self._write_reports(self.run)
            saved, unsaved = baseline.save_run(self.config.stash[SETTINGS], self.run)
            self.written, self.unwritten = self.written + saved, self.unwritten + unsaved

    def _write_reports(self, run: RunRecord) -> list[str]:
        """The run's files, each written whole or not at all; a file that cannot be written is said in the
        summary, and never turns the run's outcome. The report's text is made once, with the records as the
        collector kept them."""
        from pytest_laj.results.report import LAST_RUN, report_json, write_text

        @functools.cache
        def report_text() -> str:
            return report_json(run, [kept.json for kept in self.collector.kept])

        def html(path: Path) -> None:
            from pytest_laj.render.html import render_html

            write_text(path, render_html(run))

        def report(path: Path) -> None:
            write_text(path, report_text())

        settings = self.config.stash[SETTINGS]
        targets = [(settings.report, report, True), (settings.html, html, True)]
        if settings.cache_mode is not CacheMode.OFF:
            targets.append((settings.cache_dir / LAST_RUN, report, False))
        problems = []
        for path, write, asked in targets:
            if path is None:
                continue
            try:
                write(path)
            except OSError as error:
                problems.append(f"{path}: {error.strerror or error}")
            else:
                self.written += [path] if asked else []
        return problems

    def _finish(self, session: pytest.Session) -> RunRecord:
        import pytest_laj
        from pytest_laj.core.redact import redact
        from pytest_laj.judges.base import is_transport_key
        from pytest_laj.results.record import JudgeInfo
        from pytest_laj.results.report import git_info

        settings = self.config.stash[SETTINGS]
        engine = self._engine()
        panel = [
            JudgeInfo(
                name=s.label,
                model=s.model,
                weight=s.weight,
                temperature=s.temperature,
                options={k: v for k, v in s.extra.items() if not is_transport_key(k)},  # no key, no endpoint
            )
            for s in (engine.judges.panel_specs() if engine is not None else settings.judges)
        ]
        return self.collector.finish(
            versions=(pytest_laj.__version__, pytest.__version__),
            cache_mode=str(settings.cache_mode),
            review_mode=str(settings.review),
            panel=panel,
            stopped_early=bool(session.shouldfail or session.shouldstop),
            memo=engine.store if engine is not None else None,
            tests_run=self.tests_run,
            interrupted=session.exitstatus == pytest.ExitCode.INTERRUPTED or self._fatal() is not None,
            rootdir=str(self.config.rootpath),
            command=[redact(str(arg)) for arg in self.config.invocation_params.args],
            git=git_info(self.config.rootpath),
        )

    @pytest.hookimpl(tryfirst=True)
    def pytest_unconfigure(self) -> None:
        """Let the run's records go before pytest's closing garbage collections walk them. On the xdist
        controller every worker is gone by now (xdist tears them down at session finish): what they shared for
        this run goes."""
        self._collector = self.run = None
        self.gc_pause.stop()
        if self.run_id is not None:
            from pytest_laj.judges.budget import forget_run

            forget_run(self.run_id)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> Generator[None, None, None]:
        """Outermost, so the REVIEW lines follow pytest's own short test summary, which prints last."""
        result = yield
        fatal = self._fatal()
        if fatal is not None and self.stopped_for != fatal:  # found after the last test: said nowhere yet
            terminalreporter.write_sep("!", f"pytest-laj: {fatal}", red=True)
        if (lost := self._lost()) is not None:
            terminalreporter.write_sep("!", f"pytest-laj: {lost}", yellow=True)
        stats, chars = terminalreporter.stats, terminalreporter.reportchars
        lines = outcome.short_summary_lines(stats.get("review", []), chars)
        lines += baseline.short_summary_lines(stats.get("known", []), chars)
        if self.run is None or terminalreporter.no_summary or not lines:
            return result
        if lines and not _pytest_printed_short_summary(terminalreporter):
            terminalreporter.write_sep("=", "short test summary info", cyan=True, bold=True)
        for line in lines:
            terminalreporter.write_line(line, yellow=True)
        return result


class GithubActions:
    """Under GitHub Actions (`GITHUB_ACTIONS=true`, or `--laj-github on`), on the controller only: the run's
    job summary appended to `$GITHUB_STEP_SUMMARY`, and an annotation at each failing or disputed laj call.

    The annotations are printed at the very end, after pytest's last line, so that nothing pytest prints can
    split one; the summary is written before the terminal summary, which says if it could not be."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.annotations: list[str] = []

    def _enabled(self) -> bool:
        mode = self.config.stash[SETTINGS].github
        return mode is GithubMode.ON or (mode is GithubMode.AUTO and os.environ.get("GITHUB_ACTIONS") == "true")

    @pytest.hookimpl(trylast=True)  # after `RunReporter` has built the run
    def pytest_sessionfinish(self) -> None:
        reporter = self.config.pluginmanager.get_plugin("laj-run")
        if not isinstance(reporter, RunReporter) or reporter.run is None or not self._enabled():
            return
        from pytest_laj.render.github import annotation_lines

        problem = self._write_summary(reporter.run)
        if problem is not None:
            reporter.unwritten.append(problem)
        self.annotations = annotation_lines(reporter.run, os.environ.get("GITHUB_WORKSPACE") or None)

    def _write_summary(self, run: RunRecord) -> str | None:
        """Append the job summary; what went wrong, if anything."""
        from pytest_laj.render.github import SUMMARY_LIMIT, job_summary

        target = os.environ.get("GITHUB_STEP_SUMMARY")
        if not target:
            return "the GitHub job summary: GITHUB_STEP_SUMMARY is not set"
        html = self.config.stash[SETTINGS].html
        try:
            with open(target, "a", encoding="utf-8") as summary:
                before = summary.tell()  # what the step wrote to its summary before: it counts toward the limit
                text = job_summary(run, html.name if html is not None else None, SUMMARY_LIMIT - before - 1)
                summary.write("\n" + text if before else text)
        except OSError as error:
            return f"the GitHub job summary {target}: {error.strerror or error}"
        return None

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self) -> None:
        for line in self.annotations:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _tear_down_workers(config: pytest.Config) -> concurrent.futures.Future[None] | None:
    """xdist controller: start xdist's teardown of its workers now, on a thread. A worker's process begins to
    exit only when told to, and takes a few tenths of a second (its interpreter unloads litellm); told at once,
    it exits while the run is built, and xdist's own teardown at session finish then finds every worker gone.
    None without xdist."""
    nodes = getattr(config.pluginmanager.get_plugin("dsession"), "nodemanager", None)
    if nodes is None:
        return None
    tearing_down = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="laj-xdist-teardown")
    down = tearing_down.submit(nodes.teardown_nodes)  # a failure is raised by the session's thread
    tearing_down.shutdown(wait=False)  # its thread ends with the teardown
    return down


_LOG_HANDLERS = ("caplog_handler", "report_handler", "log_file_handler", "log_cli_handler")


def _redact_captured_logs(config: pytest.Config) -> None:
    """Judges' secrets never reach `--log-file`, live logs or a report's captured log, whichever logger
    wrote them."""
    from pytest_laj.core.redact import install_log_filter

    logging_plugin = config.pluginmanager.get_plugin("logging-plugin")
    install_log_filter(getattr(logging_plugin, name, None) for name in _LOG_HANDLERS)


# Which of pytest's own report characters list which stats in its short test summary.
_PYTEST_SUMMARY_STATS = {"f": "failed", "E": "error", "s": "skipped", "x": "xfailed", "X": "xpassed", "p": "passed"}


def _pytest_printed_short_summary(terminalreporter: pytest.TerminalReporter) -> bool:
    """Whether pytest printed a short test summary header (it does when it has a line to show)."""
    return any(
        terminalreporter.stats.get(stat)
        for char, stat in _PYTEST_SUMMARY_STATS.items()
        if char in terminalreporter.reportchars
    )


def reviews_section(terminalreporter: pytest.TerminalReporter) -> None:
    """Blocking reviews, shown the way pytest shows failures (they are not in its FAILURES section, which lists
    the `failed` category only): each at its `laj.check` call, as much as `--tb` asks."""
    reports = [r for r in terminalreporter.stats.get("review", []) if r.failed]
    style = terminalreporter.config.option.tbstyle
    if not reports or style == "no":
        return
    terminalreporter.write_sep("=", "REVIEWS")
    for report in reports:
        if style == "line":
            crash = getattr(report.longrepr, "reprcrash", None)
            terminalreporter.write_line(str(crash) if crash is not None else str(report.longrepr).splitlines()[0])
            continue
        terminalreporter.write_sep("_", report.head_line or report.nodeid, yellow=True, bold=True)
        report.toterminal(terminalreporter._tw)


def summary_section(terminalreporter: pytest.TerminalReporter, reporter: RunReporter) -> None:
    from pytest_laj.render.terminal import summary_lines

    if reporter.run is None:
        return
    lines = summary_lines(reporter.run, verbosity=terminalreporter.config.get_verbosity())
    lines += [f"report: {path}" for path in reporter.written]
    lines += [f"could not write a report: {problem}" for problem in reporter.unwritten]
    if lines:
        terminalreporter.section("pytest-laj")
        for line in lines:
            terminalreporter.line(line)
