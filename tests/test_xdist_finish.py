"""The end of an xdist run: the controller builds the run while its workers' processes exit, and removes what
they shared once they are gone."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from conftest import CASES_SUITE, LajProject
from test_prefetch import CASES
from test_xdist_prefetch import AssertOutcomes

# On the controller: xdist's teardown of its workers waits (a minute at most) for the run to be built meanwhile,
# and records whether it was; a teardown that runs before the run is built, not beside it, waits in vain.
AT_TEARDOWN = """
import time

import pytest
import xdist.workermanage


def pytest_configure(config):
    if hasattr(config, "workerinput"):
        return
    original = xdist.workermanage.NodeManager.teardown_nodes
    seen = []

    def teardown_nodes(self):
        reporter = config.pluginmanager.get_plugin("laj-run")
        deadline = time.monotonic() + 60
        while not seen and reporter.run is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if not seen:
            written = (config.rootpath / ".laj_cache" / "last-run.json").exists()
            seen.append(f"built={reporter.run is not None} written={written}")
            (config.rootpath / "during-teardown.txt").write_text(seen[0])
        original(self)

    patch = pytest.MonkeyPatch()
    patch.setattr(xdist.workermanage.NodeManager, "teardown_nodes", teardown_nodes)
    config.add_cleanup(patch.undo)
"""


def test_the_controller_builds_the_run_while_its_workers_exit(
    project: LajProject, assert_laj_outcomes: AssertOutcomes
) -> None:
    """A worker's process takes a few tenths of a second to exit (its interpreter unloads litellm), and begins
    only when xdist tells it to; the run's record, its alpha and its report are built meanwhile, not after."""
    (project.pytester.path / "cases.yaml").write_text(CASES)
    project.tests(CASES_SUITE)
    (project.pytester.path / "conftest.py").write_text(AT_TEARDOWN)
    result = project.run("-n", "2")
    assert_laj_outcomes(result, passed=3, failed=1, review=1)
    result.stdout.fnmatch_lines(["judge calls: 15 made, * from cache"])
    assert (project.pytester.path / "during-teardown.txt").read_text() == "built=True written=True"


def test_the_run_s_shared_budget_and_rate_buckets_are_removed_once_its_workers_are_gone(
    project: LajProject, assert_laj_outcomes: AssertOutcomes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    monkeypatch.setenv("TMPDIR", str(shared))  # the workers' temp directory
    monkeypatch.setattr(tempfile, "tempdir", str(shared))  # the controller's, in this process
    (project.pytester.path / "cases.yaml").write_text(CASES)
    project.tests(CASES_SUITE)
    result = project.run("-n", "2", "--laj-max-calls", "100", "--laj-cache", "off")
    assert_laj_outcomes(result, passed=3, failed=1, review=1)
    result.stdout.fnmatch_lines(["judge calls: 15 made, 0 from cache"])
    assert sorted(p.name for p in shared.iterdir() if p.name.startswith("pytest-laj-")) == []
