"""pytest-laj's pytest wiring: options, hooks and the `laj` fixture. The work lives in the modules named here:
verdicts are decided in `verdict.aggregate`, turned into test outcomes in `outcome`, summarised in `report`.

pytest loads this module for every run in every project where pytest-laj is installed, so it imports only the
light modules; the judging machinery (`session`, `fixture`, pydantic models) loads when a run configures judges
or a test asks for `laj`.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING

import pytest

from pytest_laj import hookspec, outcome
from pytest_laj.modes import CacheMode, PrefetchMode, ReviewMode
from pytest_laj.options import OptionError, Settings, add_options
from pytest_laj.report import SuiteSummary

if TYPE_CHECKING:
    from pytest_laj.fixture import Laj
    from pytest_laj.session import LajSession

SETTINGS = pytest.StashKey[Settings]()
SESSION = pytest.StashKey["LajSession"]()
SUMMARY = pytest.StashKey[SuiteSummary]()
PREFETCHED = pytest.StashKey[int]()

MARKER = (
    "laj(rubric=None, context={}, judges=None, thresholds={}): the rubric, context, judge panel and threshold "
    "overrides for the laj fixture; module, class and function markers merge, the closest winning."
)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspec)


# litellm builds pydantic models lazily during its first call, which pydantic warns about; the warning would be
# blamed on whichever test happened to make that call.
LITELLM_NOISE = "ignore:Item.* using the `ReadOnly` qualifier:UserWarning"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)
    config.addinivalue_line("filterwarnings", LITELLM_NOISE)
    try:
        settings = Settings.from_config(config)
    except (OptionError, ValueError) as error:
        raise pytest.UsageError(f"pytest-laj: {error}") from None
    config.stash[SETTINGS] = settings
    config.stash[SUMMARY] = SuiteSummary()
    config.pluginmanager.register(_SummaryCollector(config.stash[SUMMARY]), "laj-summary")
    if settings.judges or settings.simulate is not None:
        laj_session(config)  # configured for judging: report a bad cache or simulator now, not in every test


def laj_session(config: pytest.Config) -> LajSession:
    """The session, opened on first use."""
    if SESSION not in config.stash:
        from pytest_laj.cache import CacheError
        from pytest_laj.session import LajSession

        settings = config.stash[SETTINGS]
        try:
            session = LajSession(
                settings,
                make_judge=lambda spec: config.hook.pytest_laj_make_judge(spec=spec, config=config),
                find_producer=lambda: config.hook.pytest_laj_producer(config=config),
            )
            if settings.cache_mode is not CacheMode.OFF and not hasattr(config, "workerinput"):
                session.cache.check()
        except (CacheError, ValueError) as error:
            raise pytest.UsageError(f"pytest-laj: {error}") from None
        config.stash[SESSION] = session
    return config.stash[SESSION]


def pytest_unconfigure(config: pytest.Config) -> None:
    if SESSION in config.stash:
        config.stash[SESSION].close()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    if not any("laj" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    laj = laj_session(config)  # opened before any test runs, so a bad cache directory stops the run once
    if config.stash[SETTINGS].prefetch is PrefetchMode.AUTO and not hasattr(config, "workerinput"):
        from pytest_laj.fixture import prefetch_cases

        config.stash[PREFETCHED] = prefetch_cases(laj, session.items)


def pytest_report_collectionfinish(config: pytest.Config) -> str | None:
    count = config.stash.get(PREFETCHED, 0)
    concurrency = config.stash[SETTINGS].concurrency
    return f"pytest-laj: judging {count} selected case(s) up front, {concurrency} calls at a time" if count else None


@pytest.fixture
def laj(request: pytest.FixtureRequest) -> Laj:
    """Assess model outputs with the judge panel: `laj.check(output, input=..., context=...)`."""
    from pytest_laj.fixture import Laj

    return Laj(laj_session(request.config), request.node)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    if call.when == "call":
        outcome.record_properties(item)
    report = yield
    outcome.record_on_report(item, call, report, item.config.stash[SETTINGS].review)
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(
    report: pytest.TestReport,
) -> tuple[str, str, tuple[str, dict[str, bool]]] | None:
    return outcome.report_status(report)


class _SummaryCollector:
    """Feeds every report's assessment digests to the summary; on the xdist controller these are all workers'."""

    def __init__(self, summary: SuiteSummary) -> None:
        self.summary = summary

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.summary.add(report.nodeid, getattr(report, "laj", []), getattr(report, "laj_review", None))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    settings = config.stash[SETTINGS]
    memo = None
    if SESSION in config.stash:
        config.stash[SUMMARY].unused_prefetches = config.stash[SESSION].unused_prefetches()
        memo = config.stash[SESSION].cache.memo(settings.cache_mode)
    lines = config.stash[SUMMARY].lines(
        review_blocks=settings.review is ReviewMode.FAIL, verbose=config.option.verbose > 0, memo=memo
    )
    if lines:
        terminalreporter.section("pytest-laj")
        for line in lines:
            terminalreporter.line(line)
