"""The resolved configuration of a run, as plain data: the plugin builds it from pytest's options, and anything
else (a script, a test of the engine) can build it directly."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_laj.core.modes import AskMode, CacheMode, GateMode, GithubMode, PrefetchMode, ReviewMode

if TYPE_CHECKING:  # pydantic models: a run that configures no judge never imports them
    from pytest_laj.judges.base import JudgeSpec

__all__ = ["Settings"]


@dataclass
class Settings:
    judges: list[JudgeSpec] = field(default_factory=list)
    judges_source: str = "none"
    simulate: Path | None = None
    cache_mode: CacheMode = CacheMode.RW
    cache_dir: Path = field(default_factory=lambda: Path(".laj_cache"))
    cache_url: str | None = None  # a Redis store (redis://...) instead of the directory; the last run stays there
    rubric_dirs: list[Path] = field(default_factory=lambda: [Path("rubrics")])
    review: ReviewMode = ReviewMode.FAIL
    ask: AskMode = AskMode.WHOLE
    prefetch: PrefetchMode = PrefetchMode.AUTO
    concurrency: int = 16
    timeout: float = 60.0
    retries: int = 3
    max_calls: int | None = None
    max_cost: float | None = None
    max_chars: int = 100_000
    run_id: str | None = None
    base_dir: Path = field(default_factory=Path.cwd)
    # What the run leaves behind: reports, a baseline, and what a comparison with one may fail.
    report: Path | None = None
    html: Path | None = None
    github: GithubMode = GithubMode.AUTO
    save: str | None = None
    compare: Path | None = None  # the report compared with, found at configure
    compare_fail: str | None = None
    gate: GateMode = GateMode.ALL
    baseline_dir: Path = field(default_factory=lambda: Path(".laj") / "baselines")
    labels: Path | None = None  # people's decisions the run honours; None: none
