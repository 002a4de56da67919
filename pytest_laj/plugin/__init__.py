"""pytest-laj's pytest wiring: options, hooks and the `laj` fixture; each hook is a few lines that hand the
work to the layers below. A verdict is decided in `core.aggregate`, what it does to its test and the run in
`core.gate`; tests' records become one run record in `results.collect`, shown by `render.terminal`.

pytest loads this module for every run in every project where pytest-laj is installed, so it imports only
light modules; the judging machinery (engine, judges, pydantic models) loads when a run configures judges or a
test asks for `laj`.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_laj.core.modes import CacheMode, PrefetchMode
from pytest_laj.errors import UsageError
from pytest_laj.plugin import baseline, hookspec, outcome
from pytest_laj.plugin.options import add_options, check_rootdir, settings_from_config
from pytest_laj.plugin.run import ENGINE, SETTINGS, GithubActions, RunReporter, reviews_section, summary_section

if TYPE_CHECKING:
    from pytest_laj.engine.session import Engine
    from pytest_laj.plugin.fixture import Laj

PREFETCHED = pytest.StashKey[int]()

MARKER = (
    "laj(rubric=None, context={}, judges=None, thresholds={}): the rubric, context, judge panel and threshold "
    "overrides for the laj fixture; module, class and function markers merge, the closest winning."
)

# litellm builds pydantic models lazily during its first call, which pydantic warns about; the warning would be
# blamed on whichever test happened to make that call.
LITELLM_NOISE = "ignore:Item.* using the `ReadOnly` qualifier:UserWarning"


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspec)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)
    config.addinivalue_line("filterwarnings", LITELLM_NOISE)
    try:
        check_rootdir(config)
        settings = settings_from_config(config)
        baseline.load(config, settings)
    except UsageError as error:
        raise pytest.UsageError(f"pytest-laj: {error}") from None
    config.stash[SETTINGS] = settings
    config.pluginmanager.register(RunReporter(config), "laj-run")
    if not _is_worker(config):
        config.pluginmanager.register(UsageErrors(), "laj-usage-errors")
        config.pluginmanager.register(GithubActions(config), "laj-github")
    if settings.judges or settings.simulate is not None:
        laj_engine(config)  # configured for judging: report a bad cache or simulator now, not in every test


def laj_engine(config: pytest.Config) -> Engine:
    """The engine, opened on first use."""
    if ENGINE not in config.stash:
        from pytest_laj.engine.session import Engine

        settings = config.stash[SETTINGS]
        try:
            engine = Engine(
                settings,
                make_judge=lambda spec: config.hook.pytest_laj_make_judge(spec=spec, config=config),
                find_producer=lambda: config.hook.pytest_laj_producer(config=config),
            )
        except UsageError as error:
            raise pytest.UsageError(f"pytest-laj: {error}") from None
        try:
            _check_configuration(engine, checks_cache=not _is_worker(config))
        except UsageError as error:
            engine.close()
            raise pytest.UsageError(f"pytest-laj: {error}") from None
        config.stash[ENGINE] = engine
    return config.stash[ENGINE]


def _check_configuration(engine: Engine, checks_cache: bool) -> None:
    """Every rubric file, the simulator rules against them, and the cache, before any test runs: a mistake there
    is one usage error, not a failure repeated by every test."""
    rubrics = engine.rubrics.check_all()
    rules = engine.judges.rules
    if rules is not None and rubrics:
        rules.check_against(rubrics, str(engine.settings.simulate))
    if engine.settings.cache_mode is not CacheMode.OFF and checks_cache:
        engine.cache.check()
    engine.labels = engine.load_labels()


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_unconfigure(config: pytest.Config) -> None:
    if ENGINE in config.stash:
        config.stash[ENGINE].close()


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """A configuration mistake met while collecting (a broken case file read by `cases()`) is marked on the
    report with its message alone, for `UsageErrors` to stop the run (an xdist worker's report carries the mark
    to the controller)."""
    report = yield
    call = getattr(report, "call", None)
    error = call.excinfo.value if call is not None and call.excinfo is not None else None
    if isinstance(error, UsageError):
        report.longrepr = f"pytest-laj: {collector.nodeid or collector.path}: {error}"
        vars(report)["laj_usage_error"] = report.longrepr  # an extra attribute: it travels with the report
    return report


class UsageErrors:
    """Stops the run at the first collection report marked with a usage error: one message, exit status 4, not
    a collection error with pytest-laj's traceback. Not on an xdist worker: its report goes to the controller."""

    @pytest.hookimpl(tryfirst=True)  # before the terminal reporter shows it as a collection error
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        message = getattr(report, "laj_usage_error", None)
        if isinstance(message, str):
            raise pytest.UsageError(message)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    if not any("laj" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    engine = laj_engine(config)  # opened before any test runs, so a bad cache directory stops the run once
    runs_tests = not (config.option.collectonly or getattr(config.option, "showfixtures", False))
    if runs_tests and config.stash[SETTINGS].prefetch is PrefetchMode.AUTO:
        from pytest_laj.plugin.prefetch import prefetch_cases, prefetch_share

        share = prefetch_share(config.stash[SETTINGS], getattr(config, "workerinput", None))
        if share is not None:
            engine.shares_prefetch = share.count > 1
            config.stash[PREFETCHED] = prefetch_cases(engine, session.items, share)


def pytest_report_collectionfinish(config: pytest.Config) -> str | None:
    count = config.stash.get(PREFETCHED, 0)
    concurrency = config.stash[SETTINGS].concurrency
    return f"pytest-laj: judging {count} selected case(s) up front, {concurrency} calls at a time" if count else None


@pytest.fixture
def laj(request: pytest.FixtureRequest) -> Laj:
    """Assess model outputs with the judge panel: `laj.check(output, input=..., context=...)`."""
    from pytest_laj.plugin.fixture import Laj

    return Laj(laj_engine(request.config), request.node)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    if call.when == "call":
        outcome.record_properties(item)
    report = yield
    outcome.settle(item, call, report)  # outermost, so it sees what xfail made of the report
    baseline.settle(item, call, report)  # then a known failure passes as KNOWN under --laj-gate regressions
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(
    report: pytest.TestReport,
) -> tuple[str, str, tuple[str, dict[str, Any]]] | None:
    return baseline.report_status(report) or outcome.report_status(report)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    baseline.configure_node(node.config.stash[SETTINGS], node.workerinput)


@pytest.hookimpl(wrapper=True)
def pytest_report_to_serializable(report: pytest.TestReport) -> Generator[None, Any, Any]:
    """An xdist worker sends its records as the controller keeps them, JSON; the controller never rebuilds them
    one by one (`pytest_report_from_serializable`)."""
    data = yield
    if isinstance(data, dict) and (records := data.pop("laj_records", None)):
        from pytest_laj.results.collect import keep

        data["laj_kept"] = [list(keep(r)) for r in records]
    return data


@pytest.hookimpl(wrapper=True)
def pytest_report_from_serializable(data: Any) -> Generator[None, Any, Any]:
    report = yield
    if isinstance(data, dict) and data.get("laj_kept") and report is not None:
        from pytest_laj.results.collect import KeptRecord

        report.laj_kept = [KeptRecord(*kept) for kept in data["laj_kept"]]
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if not terminalreporter.no_summary:
        reviews_section(terminalreporter)
    reporter = config.pluginmanager.get_plugin("laj-run")
    if isinstance(reporter, RunReporter) and reporter.run is not None:
        summary_section(terminalreporter, reporter)
