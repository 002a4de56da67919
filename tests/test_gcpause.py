"""The collector paused while a run builds objects that live on, and always put back as it was found."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from conftest import LajProject

from pytest_laj.core.gcpause import GcPause, paused_gc


@pytest.fixture
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


@pytest.mark.usefixtures("collector_on")
def test_a_pause_puts_the_collector_back_as_it_found_it() -> None:
    pause = GcPause()
    pause.start()
    pause.start()  # a second start changes nothing
    assert not gc.isenabled()
    pause.stop()
    assert gc.isenabled()
    pause.stop()  # nor a second stop
    assert gc.isenabled()

    gc.disable()
    pause.start()
    pause.stop()
    assert not gc.isenabled()  # it was off: a pause never turns it on


@pytest.mark.usefixtures("collector_on")
def test_paused_gc_resumes_after_an_error() -> None:
    with pytest.raises(RuntimeError), paused_gc():
        assert not gc.isenabled()
        raise RuntimeError("boom")
    assert gc.isenabled()


SUMMARY_FAILS = """
import gc

def pytest_terminal_summary(terminalreporter):
    with open("paused.txt", "w") as f:
        f.write(str(not gc.isenabled()))
    raise RuntimeError("a terminal summary that breaks")
"""


@pytest.mark.usefixtures("collector_on")
def test_the_collector_resumes_after_a_run_whose_end_breaks(project: LajProject) -> None:
    """The run record is built and reported with the collector paused, until unconfigure lets it go; a hook
    that breaks in between never leaves the process without it."""
    (project.pytester.path / "conftest.py").write_text(SUMMARY_FAILS)
    project.tests(
        """
        def test_good(laj):
            laj.check("Please call 988 now, I am staying with you.")
        """
    )
    result = project.run()
    assert "a terminal summary that breaks" in result.stdout.str() + result.stderr.str()
    assert (project.pytester.path / "paused.txt").read_text() == "True"
    assert gc.isenabled()
